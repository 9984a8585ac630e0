//! Readers must not make the daemon drop real events: a steady stream of unit changes goes on
//! while many clients call `Score` (dry runs) and `ListEvents` with a `contains` filter (full
//! scans) as fast as they are answered. Every event is committed (no drops, no gap record), the
//! daemon keeps answering `Stats` promptly, its systemd watchdog keeps being fed (the pings a
//! real `$NOTIFY_SOCKET` receives never stop for as long as `WatchdogSec`), and the callers hear
//! `Busy` rather than queueing without bound.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anomalyd::api::{Page, ScoreReply};
use common::{api_proxy, fake_systemd, unit_changed, RunningDaemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_and_list_callers_cannot_make_the_daemon_drop_events() {
    let dir = tempfile::tempdir().unwrap();
    // systemd's side of the watchdog: a notify socket, and the pings' arrival times. 6 s, so the
    // daemon probes its pipeline every 2 s and must get through within that.
    let watchdog = Duration::from_secs(6);
    let socket = std::os::unix::net::UnixDatagram::bind(dir.path().join("notify")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Set before the daemon starts, while nothing else in this test binary (one test) reads
    // the environment.
    std::env::set_var("NOTIFY_SOCKET", dir.path().join("notify"));
    std::env::set_var("WATCHDOG_USEC", watchdog.as_micros().to_string());
    let listening = Arc::new(AtomicBool::new(true));
    let pings = {
        let listening = listening.clone();
        std::thread::spawn(move || {
            let mut pings = Vec::new();
            let mut buf = [0u8; 4096];
            while listening.load(Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                        pings.push(Instant::now());
                    }
                }
            }
            pings
        })
    };
    // A small intake queue, so that anything the readers take from the events shows as drops.
    let daemon = RunningDaemon::start(
        dir.path(),
        "[sources]\nqueue_capacity = 400\n[detector]\nwarmup_events = 20\n",
    )
    .await;
    let systemd = fake_systemd(&daemon.bus).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, busy, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );

    // The events: 12 units each changing state 300 times, about 1,500 changes a second. Their
    // 48 texts are embedded once, before the readers start, as a host's unit states are: the
    // load is the bus's and the readers', not the model's.
    let units = 12;
    let rounds = 300;
    let states = [
        ("activating", "start"),
        ("active", "running"),
        ("deactivating", "stop-sigterm"),
        ("inactive", "dead"),
    ];
    for (active, sub) in states {
        for u in 0..units {
            let path = format!("/org/freedesktop/systemd1/unit/load{u}_2eservice");
            unit_changed(&systemd, &path, active, sub).await;
        }
    }
    let warm = (units * states.len()) as u64;
    daemon
        .wait_for("the unit states embedded", |s| s["RecordsWritten"] > warm)
        .await;
    // The readers: 12 dry-run callers and 4 scanners, each on its own connection.
    let mut readers = Vec::new();
    for i in 0..16 {
        let conn = anomalyd::bus::connect(&daemon.bus.target()).await.unwrap();
        let (stop, answered, busy, failed) =
            (stop.clone(), answered.clone(), busy.clone(), failed.clone());
        readers.push(tokio::spawn(async move {
            let proxy = api_proxy(&conn).await;
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                n += 1;
                let result: zbus::Result<()> = if i < 12 {
                    proxy
                        .call::<_, _, ScoreReply>(
                            "Score",
                            &(format!(
                                "systemd unit reader{i}-{n}.service ActiveState=failed"
                            ),),
                        )
                        .await
                        .map(|_| ())
                } else {
                    let mut filter: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
                    filter.insert(
                        "contains",
                        zbus::zvariant::Value::from("nothing-matches-this"),
                    );
                    proxy
                        .call::<_, _, Page>("ListEvents", &(0u64, 1000i32, filter))
                        .await
                        .map(|_| ())
                };
                match result {
                    Ok(()) => answered.fetch_add(1, Relaxed),
                    Err(zbus::Error::MethodError(name, _, _))
                        if name.as_str() == "org.anomalyd.Error.Busy" =>
                    {
                        busy.fetch_add(1, Relaxed)
                    }
                    Err(_) => failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }

    let mut slowest_stats = Duration::ZERO;
    let started = Instant::now();
    for round in 0..rounds {
        for u in 0..units {
            let (active, sub) = states[(round + u) % states.len()];
            let path = format!("/org/freedesktop/systemd1/unit/load{u}_2eservice");
            unit_changed(&systemd, &path, active, sub).await;
        }
        if round % 10 == 0 {
            let asked = Instant::now();
            daemon.stats().await;
            slowest_stats = slowest_stats.max(asked.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(12)).await;
    }
    let sent = (units * rounds) as u64 + warm;
    let stats = daemon
        .wait_for("every change received and committed", |s| {
            // A change that repeats a unit's last state is counted as unchanged, not received.
            s["EventsReceived"] + s["SignalsUnchanged"] + s["EventsIgnored"] + s["EventsDropped"]
                >= sent
                && s["QueueDepth"] == 0
        })
        .await;
    stop.store(true, Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    let elapsed = started.elapsed();
    listening.store(false, Relaxed);
    let pings = pings.join().unwrap();
    let during: Vec<Instant> = pings.iter().copied().filter(|p| *p >= started).collect();
    let mut widest = during.first().map_or(elapsed, |first| *first - started);
    for pair in during.windows(2) {
        widest = widest.max(pair[1] - pair[0]);
    }
    eprintln!(
        "watchdog: {} pings under load, widest gap {widest:?}",
        during.len()
    );
    assert!(
        widest < watchdog && during.len() as u32 >= (elapsed.as_secs() / 3) as u32,
        "the watchdog would have tripped under API load: {} pings in {elapsed:?}, widest gap {widest:?}",
        during.len()
    );
    eprintln!(
        "{sent} changes in {elapsed:?}; readers: {} answered, {} busy, {} failed; slowest Stats {slowest_stats:?}; {stats:?}",
        answered.load(Relaxed),
        busy.load(Relaxed),
        failed.load(Relaxed)
    );
    assert_eq!(
        stats["EventsDropped"], 0,
        "events dropped under API load: {stats:?}"
    );
    assert_eq!(
        failed.load(Relaxed),
        0,
        "a reader got an error other than Busy"
    );
    assert!(answered.load(Relaxed) > 0, "the readers were served");
    assert!(
        slowest_stats < Duration::from_secs(2),
        "Stats took {slowest_stats:?} under load"
    );
    let summary = daemon.stop().await;
    assert_eq!(summary.metrics.events_dropped, 0);
    let rows = common::read_rows(&dir.path().join("state/audit.sqlite"));
    assert!(
        rows.iter().all(|r| r.kind != "gap"),
        "a gap record says events were lost"
    );
}
