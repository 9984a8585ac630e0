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

    // Each "injecting" line is followed by the anomalies it caused, before the next injection.
    let mut current: Option<&str> = None;
    let mut caught = std::collections::BTreeMap::<&str, usize>::new();
    for line in stdout.lines() {
        if let Some(what) = line.trim().strip_prefix("✱ injecting: ") {
            current = Some(what);
            caught.insert(what, 0);
        } else if line.contains("ANOMALY") {
            let fault =
                current.unwrap_or_else(|| panic!("anomaly before any fault (false alarm): {line}"));
            *caught.get_mut(fault).unwrap() += 1;
        }
    }
    assert_eq!(caught.len(), 7, "{stdout}");
    for (fault, n) in &caught {
        assert!(*n >= 1, "fault not detected: {fault}\n{stdout}");
    }
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
