//! Crash safety, for real: the daemon binary runs on a private bus under a continuous flood of
//! signals and is killed with SIGKILL at pseudo-random moments, 24 times. Before each kill the
//! committed head is read over D-Bus (`Head`, which reads the database); after each kill the file
//! must verify, contain that acknowledged record with the same hash, and the next run must
//! continue the chain.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anomalyd::api::ChainHead;
use anomalyd::audit::{read_head, verify};
use anomalyd::bus::PrivateBus;

const KILLS: usize = 24;

fn spawn_daemon(config: &std::path::Path, bus: &str, state: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(["--config"])
        .arg(config)
        .arg("--model")
        .arg(common::model_dir())
        .args(["--bus", bus, "--log", "stderr", "--state-dir"])
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_for_name(conn: &zbus::Connection, child: &mut Child) {
    let dbus = zbus::fdo::DBusProxy::new(conn).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let name = zbus::names::BusName::try_from("org.anomalyd.Detector1").unwrap();
        if dbus.name_has_owner(name).await.unwrap_or(false) {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited during start-up"
        );
        assert!(
            Instant::now() < deadline,
            "the daemon did not start in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_moment_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::spawn(&dir.path().join("bus")).unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("anomalyd.toml");
    std::fs::write(
        &config,
        "[[sources.custom]]\nrule = \"type='signal',interface='org.example.Load1'\"\n\
         [embedder]\nbatch_max_wait_ms = 5\n\
         [audit]\ncheckpoint_records = 50\n",
    )
    .unwrap();
    let client = anomalyd::bus::connect(&bus.target()).await.unwrap();

    // The load: signals flat out for the whole test, from another task.
    let emitter = anomalyd::bus::connect(&bus.target()).await.unwrap();
    let load = tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            let _ = emitter
                .emit_signal(
                    None::<&str>,
                    "/org/example/Load1",
                    "org.example.Load1",
                    "Tick",
                    &(format!("worker-{} state changed", i % 40), i),
                )
                .await;
            i += 1;
            if i.is_multiple_of(64) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });

    let db = state.join("audit.sqlite");
    let mut seed: u64 = 0x2026_1121;
    for round in 0..KILLS {
        let mut child = spawn_daemon(&config, bus.address(), &state);
        wait_for_name(&client, &mut child).await;
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(30 + (seed >> 33) % 400)).await;
        let proxy = zbus::Proxy::new(
            &client,
            "org.anomalyd.Detector1",
            "/org/anomalyd/Detector1",
            "org.anomalyd.Detector1",
        )
        .await
        .unwrap();
        let ChainHead {
            seq: acked_seq,
            hash: acked_hash,
        } = proxy.call("Head", &()).await.unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let report = verify(&db, &[]).unwrap();
        assert!(report.ok(), "round {round}: {report:?}");
        let head = read_head(&db).unwrap().unwrap();
        assert!(
            head.seq >= acked_seq,
            "round {round}: acknowledged seq {acked_seq} but the file ends at {}",
            head.seq
        );
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let hash: Vec<u8> = conn
            .query_row(
                "SELECT hash FROM records WHERE seq = ?1",
                [acked_seq as i64],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            hex::encode(hash),
            acked_hash,
            "round {round}: the acknowledged record changed"
        );
    }

    // A last, clean run continues the chain after all of it.
    let mut child = spawn_daemon(&config, bus.address(), &state);
    wait_for_name(&client, &mut child).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // SIGTERM: drain and write the stop record.
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    load.abort();

    let report = verify(&db, &[]).unwrap();
    assert!(report.ok(), "{report:?}");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let count = |kind: &str| -> i64 {
        conn.query_row(
            "SELECT count(*) FROM records WHERE kind = ?1",
            [kind],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (starts, stops, events) = (count("start"), count("stop"), count("event"));
    assert_eq!(starts, KILLS as i64 + 1, "one start per run");
    assert_eq!(stops, 1, "only the last run stopped cleanly");
    assert!(
        events > 100,
        "the daemon recorded under load ({events} events)"
    );
    eprintln!(
        "crash: {KILLS} SIGKILLs, {} records, {events} events, chain intact",
        report.records
    );

    // The checkpoint file holds heads the final chain contains.
    let text = std::fs::read_to_string(state.join("checkpoints")).unwrap();
    let checkpoints = anomalyd::audit::checkpoint::parse_checkpoints(&text).unwrap();
    assert!(!checkpoints.is_empty());
    assert!(verify(&db, &checkpoints).unwrap().ok());
}
