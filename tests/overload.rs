//! Overload: a custom source emits far faster than a deliberately slow pipeline (a 16-event intake
//! queue, one event per batch, every batch fsynced) can drain. Nothing may grow without bound, the
//! bus connection must keep answering, and the gap records must account for every event that was
//! not processed: processed + gapped = emitted. Its own test binary, so the process's memory is
//! the daemon's and this test's alone.

mod common;

use std::time::{Duration, Instant};

use common::{assert_chain_intact, read_rows, RunningDaemon};
use serde_json::Value as Json;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn flood(conn: &zbus::Connection, from: u32, count: u32) {
    for i in from..from + count {
        conn.emit_signal(
            None::<&str>,
            "/org/example/Load1",
            "org.example.Load1",
            "Tick",
            &(format!("worker-{} state changed", i % 50), i),
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_bounded_and_every_lost_event_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(
        dir.path(),
        "[sources]\nqueue_capacity = 16\n\
         [[sources.custom]]\nrule = \"type='signal',interface='org.example.Load1'\"\n\
         [embedder]\nbatch_size = 1\nbatch_max_wait_ms = 0\n\
         [audit]\nsynchronous = \"full\"\n",
    )
    .await;
    let emitter = anomalyd::bus::connect(&daemon.bus.target()).await.unwrap();

    const FIRST: u32 = 20_000;
    const SECOND: u32 = 80_000;
    flood(&emitter, 0, FIRST).await;
    let after_first = rss_kib();

    // While the flood goes on, the daemon's connection still answers within a second.
    let flood_task = {
        let emitter = emitter.clone();
        tokio::spawn(async move { flood(&emitter, FIRST, SECOND).await })
    };
    let mut slowest = Duration::ZERO;
    while !flood_task.is_finished() {
        let asked = Instant::now();
        daemon.stats().await;
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flood_task.await.unwrap();
    let after_second = rss_kib();
    assert!(
        slowest < Duration::from_secs(2),
        "Stats took {slowest:?} during the flood: intake blocked the connection"
    );
    // Four times the events may not cost more than a few MiB: every queue is bounded.
    let grew_kib = after_second.saturating_sub(after_first);
    assert!(
        grew_kib < 32 * 1024,
        "RSS grew {grew_kib} KiB over {SECOND} more events ({after_first} → {after_second} KiB)"
    );

    let emitted = u64::from(FIRST + SECOND);
    let db = dir.path().join("state/audit.sqlite");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (processed, gapped) = loop {
        let rows = read_rows(&db);
        let processed = rows.iter().filter(|r| r.kind == "event").count() as u64;
        let gapped: u64 = rows
            .iter()
            .filter(|r| r.kind == "gap")
            .map(|r| {
                let f: Json = serde_json::from_str(&r.fields).unwrap();
                f["dropped"].as_u64().unwrap()
            })
            .sum();
        // Asked only now: a counter moves before the record it counts is committed, so once
        // every event is in the database, every counter has counted it (asked before reading
        // the database, a snapshot could miss the last few).
        let stats = daemon.stats().await;
        if processed + gapped == emitted {
            assert_eq!(stats["EventsDropped"], gapped, "{stats:?}");
            // Drops happen only at a full queue, and everything has drained since.
            assert_eq!(stats["QueueDepthPeak"], 16, "{stats:?}");
            assert_eq!(stats["QueueDepth"], 0, "{stats:?}");
            break (processed, gapped);
        }
        assert!(
            Instant::now() < deadline,
            "processed {processed} + gapped {gapped} != emitted {emitted}; stats {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(gapped > 0, "the pipeline was meant to be overloaded");
    assert!(processed > 0);
    eprintln!(
        "overload: emitted {emitted}, processed {processed}, gapped {gapped}; RSS {after_first} → {after_second} KiB"
    );
    daemon.stop().await;

    let rows = read_rows(&db);
    assert_chain_intact(&rows);
    for gap in rows.iter().filter(|r| r.kind == "gap") {
        let f: Json = serde_json::from_str(&gap.fields).unwrap();
        assert_eq!(f["sources"]["custom"], f["dropped"], "{}", gap.fields);
        assert!(f["first_usec"].as_u64() <= f["last_usec"].as_u64());
        assert!(
            gap.text.starts_with("anomalyd gap dropped="),
            "{}",
            gap.text
        );
    }
}
