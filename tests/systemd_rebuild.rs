//! A big baseline rebuilt at start-up under real systemd (`../shared/tools/systemd-sandbox`), with
//! the start timeout lowered far below the rebuild's length: the daemon asks for more time as it
//! goes (`EXTEND_TIMEOUT_USEC`) and starts without a restart, and a rebuild cut short by a kill
//! resumes from the progress it saved instead of starting over.
//!
//! Needs root (the sandbox uses namespaces and overlayfs), as CI has.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/sandbox.rs"]
mod sandbox;
use sandbox::common;
use sandbox::{boot, inside, inside_ok, prepare, wait_until};

/// Snapshots every 2 s, so the rebuild saves its progress often enough to be cut short after.
const CONFIG: &str = "[detector]\nsnapshot_interval_s = 2\n";
/// Far below how long the rebuild takes: about 10 s for these texts on two cores with bf16 on
/// AMX (the fastest path), 25 s in fp32. The count is what keeps the rebuild longer than the
/// timeout, so it is sized for the fastest embedder.
const START_TIMEOUT: &str = "[Service]\nTimeoutStartSec=4\n";
const TEXTS: usize = 8000;

/// `TEXTS` distinct canonical texts imported as the baseline, on the host, into the sandbox's
/// state directory; the snapshot removed, so the service must embed them all again.
fn import_baseline(upper: &Path) {
    let history: String = (0..TEXTS)
        .map(|i| {
            format!(
                "custom backup job shard-{i} volume {} finished status ok\n",
                ["alpha", "beta", "gamma", "delta"][i % 4]
            )
        })
        .collect();
    let file = upper.join("history.txt");
    std::fs::write(&file, history).unwrap();
    let state = upper.join("var/lib/anomalyd");
    let out = Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .arg("--config")
        .arg(upper.join("etc/anomalyd/anomalyd.toml"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--model")
        .arg(common::model_dir())
        .args(["baseline", "import"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "baseline import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(file).unwrap();
    std::fs::remove_file(state.join("baseline.snapshot")).unwrap();
}

/// A property of the service, as `systemctl show` gives it.
fn property(name: &str) -> String {
    inside_ok(&format!(
        "systemctl show anomalyd.service -p {name} --value"
    ))
    .trim()
    .to_owned()
}

/// The `FIELD` of each journal entry of the service whose message is `message`, oldest first.
fn logged(message: &str, field: &str) -> Vec<u64> {
    inside_ok(&format!(
        "journalctl -u anomalyd.service -o json --output-fields={field} MESSAGE='{message}'"
    ))
    .lines()
    .filter_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        entry[field].as_str()?.parse().ok()
    })
    .collect()
}

#[test]
fn a_big_baseline_rebuild_extends_the_start_timeout_and_resumes_after_a_kill() {
    let upper = prepare(CONFIG, &[]);
    let drop_in = upper.join("etc/systemd/system/anomalyd.service.d");
    std::fs::create_dir_all(&drop_in).unwrap();
    std::fs::write(drop_in.join("timeout.conf"), START_TIMEOUT).unwrap();
    import_baseline(&upper);
    let _guard = boot();
    // The import ran as root on the host; the service user owns its state.
    inside_ok("chown -R anomalyd:anomalyd /var/lib/anomalyd");
    assert_eq!(property("TimeoutStartUSec"), "4s");

    // 1. Started from nothing but the table: longer than the timeout, yet one start.
    let started = Instant::now();
    let (code, out) = inside("systemctl start anomalyd.service");
    let took = started.elapsed();
    assert_eq!(code, 0, "the start survived the rebuild: {out}");
    assert!(
        took > Duration::from_secs(4),
        "the rebuild took {took:?}, no longer than the timeout: the test proves nothing"
    );
    assert_eq!(property("ActiveState"), "active");
    assert_eq!(property("NRestarts"), "0");
    assert_eq!(logged("baseline loaded", "EMBEDDED"), [TEXTS as u64]);
    let saves_before = logged("baseline rebuild progress saved", "TEXTS").len();

    // 2. Cut short by a kill after it saved some progress: the restart keeps what was done.
    inside_ok("systemctl stop anomalyd.service && rm /var/lib/anomalyd/baseline.snapshot");
    inside_ok("systemctl start --no-block anomalyd.service");
    let saved = wait_until(
        "the rebuild to save progress",
        Duration::from_secs(120),
        || {
            logged("baseline rebuild progress saved", "TEXTS")
                .get(saves_before)
                .map(u64::to_string)
        },
    )
    .parse::<u64>()
    .unwrap();
    assert!(saved > 0 && saved < TEXTS as u64, "{saved}");
    inside_ok("systemctl kill -s KILL anomalyd.service");
    // Killed mid-rebuild, still starting: not after a finished one.
    let killed_in = logged("baseline loaded", "EMBEDDED").len();
    assert_eq!(
        killed_in, 1,
        "the second start had not finished its rebuild when killed"
    );
    wait_until("the restarted service", Duration::from_secs(120), || {
        (property("NRestarts") == "1" && property("ActiveState") == "active").then(String::new)
    });
    let from_snapshot = logged("baseline loaded", "FROM_SNAPSHOT");
    let embedded = logged("baseline loaded", "EMBEDDED");
    assert_eq!(
        from_snapshot.len(),
        2,
        "two complete starts: {from_snapshot:?}"
    );
    assert!(
        from_snapshot[1] >= saved && embedded[1] > 0 && from_snapshot[1] + embedded[1] == TEXTS as u64,
        "the restart resumed from the saved {saved}: from_snapshot {from_snapshot:?}, embedded {embedded:?}"
    );

    // The chain, the import's rows and every join in it, holds.
    let verify = inside_ok("anomalyctl verify --db /var/lib/anomalyd/audit.sqlite");
    assert!(verify.starts_with("chain OK"), "{verify}");
}
