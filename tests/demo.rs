//! The README's main job on a machine without a system bus: `anomalyd demo` starts its own bus,
//! runs the daemon binary on it, replays the generated stream, and prints every injected fault as
//! an anomaly — and nothing from the normal traffic.

use std::process::Command;

#[test]
fn demo_detects_every_injected_fault_and_no_normal_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(["demo", "--rate", "2000", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Anomalies print as the daemon's signals arrive, which can trail the next "injecting" line,
    // so each is matched to a fault by what its text says, not by where it was printed.
    let faults: [(&str, &[&str]); 7] = [
        (
            "postgresql killed by the OOM killer",
            &[
                "postgresql.service ActiveState=failed",
                "Result=oom-kill",
                "job postgresql.service result=failed",
            ],
        ),
        (
            "nginx exits with an error",
            &[
                "nginx.service ActiveState=failed",
                "nginx.service ActiveState=deactivating SubState=stop-sigterm Result=exit-code",
                "job nginx.service result=failed",
            ],
        ),
        ("a mount times out", &["job srv-data.mount result=timeout"]),
        (
            "root logs in from an unknown host",
            &["session new user=root"],
        ),
        (
            "eth0 loses carrier, the host goes offline",
            &[
                "device eth0 state=failed",
                "networkmanager state=disconnected",
            ],
        ),
        ("unplanned shutdown", &["prepare-for-shutdown start"]),
        (
            "postgresql OOM again (a recurring fault keeps alerting)",
            &["postgresql.service ActiveState=failed"],
        ),
    ];
    for (fault, _) in &faults {
        assert!(
            stdout.contains(&format!("✱ injecting: {fault}")),
            "{fault} injected:\n{stdout}"
        );
    }
    // An alert opens an incident (ANOMALY); a repeat of an open one prints as REPEAT.
    let anomalies: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("ANOMALY") || l.contains("REPEAT"))
        .collect();
    for line in &anomalies {
        assert!(
            faults
                .iter()
                .any(|(_, texts)| texts.iter().any(|t| line.contains(t))),
            "false alarm on normal traffic: {line}\n{stdout}"
        );
    }
    for (fault, texts) in &faults[..6] {
        assert!(
            anomalies
                .iter()
                .any(|l| texts.iter().any(|t| l.contains(t))),
            "fault not detected: {fault}\n{stdout}"
        );
    }
    let postgres_failures = anomalies
        .iter()
        .filter(|l| l.contains("postgresql.service ActiveState=failed"))
        .count();
    assert_eq!(
        postgres_failures, 2,
        "the recurring fault is flagged both times:\n{stdout}"
    );
    let repeat = anomalies
        .iter()
        .find(|l| l.contains("REPEAT") && l.contains("postgresql.service ActiveState=failed"))
        .unwrap_or_else(|| {
            panic!("the second OOM kill repeats the first one's incident:\n{stdout}")
        });
    let first = anomalies
        .iter()
        .find(|l| l.contains("ANOMALY") && l.contains("postgresql.service ActiveState=failed"))
        .unwrap_or_else(|| panic!("the first OOM kill opened an incident:\n{stdout}"));
    let first_seq = first
        .split('#')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        repeat.contains(&format!("(incident #{first_seq}, repeat 1)")),
        "{repeat} names {first}"
    );
    assert!(stdout.contains("Try next:"), "{stdout}");
    assert!(stdout.contains("0 dropped"), "{stdout}");

    let conn = rusqlite::Connection::open(dir.path().join("audit.sqlite")).unwrap();
    let stop: String = conn
        .query_row(
            "SELECT kind FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        stop, "stop",
        "the daemon drained and stopped cleanly on SIGTERM"
    );
}
