//! `anomalyctl verify` through the daemon holds the chain against every head it is given, older
//! ones included (D-Bus `VerifyChainWith`): a record before the head rewritten and every later
//! hash recomputed, with no checkpoint file left, verifies alone but not against a head kept
//! from before.

mod common;

#[path = "common/chain.rs"]
mod chain;

use chain::{anomalyctl, rehash_from};
use common::{fake_systemd, unit_changed, RunningDaemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_older_than_the_daemons_catch_a_rehashed_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(
        dir.path(),
        "[detector]\nwarmup_events = 4\n[audit]\ncheckpoint_file = \"\"\n",
    )
    .await;
    let systemd = fake_systemd(&daemon.bus).await;
    let emit = |from: usize, to: usize| {
        let systemd = systemd.clone();
        async move {
            for i in from..to {
                let path = format!("/org/freedesktop/systemd1/unit/verify{i}_2eservice");
                unit_changed(&systemd, &path, "active", "running").await;
            }
        }
    };
    emit(0, 8).await;
    daemon
        .wait_for("the first changes", |s| s["RecordsWritten"] > 8)
        .await;
    let address = daemon.bus.address().to_owned();
    let ctl = |args: &[&str]| {
        let mut all = vec!["--address", address.as_str()];
        all.extend_from_slice(args);
        anomalyctl(&all)
    };
    let (code, kept) = ctl(&["head"]);
    assert_eq!(code, 0, "{kept}");
    let kept = kept.trim().to_owned();
    let kept_seq: u64 = kept.split(':').next().unwrap().parse().unwrap();
    emit(8, 14).await;
    daemon
        .wait_for("the later changes", |s| s["RecordsWritten"] > 14)
        .await;

    let (code, said) = ctl(&["verify", "--expect-head", &kept]);
    assert_eq!(code, 0, "untouched, the chain holds the kept head: {said}");

    // Rewrite a record before the kept head and recompute every hash after it (the daemon is
    // idle: nothing is appended meanwhile).
    let edited = kept_seq - 2;
    rusqlite::Connection::open(daemon.db())
        .unwrap()
        .execute(
            "UPDATE records SET text = text || ' (edited)' WHERE seq = ?1",
            [edited as i64],
        )
        .unwrap();
    rehash_from(&daemon.db(), edited);

    let (code, said) = ctl(&["verify"]);
    assert_eq!(
        code, 0,
        "re-hashed and with no checkpoint file, the chain alone verifies: {said}"
    );
    let (code, said) = ctl(&["verify", "--expect-head", &kept]);
    assert_eq!(
        code, 1,
        "the kept head, older than the daemon's, catches it: {said}"
    );
    assert!(
        said.contains(&format!("BROKEN at seq {kept_seq}")),
        "{said}"
    );
    daemon.stop().await;
}
