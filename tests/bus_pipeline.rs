//! The walking skeleton end to end on a real private dbus-daemon: signals emitted by a connection
//! that owns `org.freedesktop.systemd1` (as systemd does) become records in SQLite, counted over
//! D-Bus; forged signals are refused; shutdown drains and closes the chain.

mod common;

use std::collections::HashMap;

use common::{assert_chain_intact, read_rows, unit_changed, RunningDaemon};
use zbus::zvariant::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_signals_become_chained_records_counted_over_dbus() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(dir.path(), "[detector]\nwarmup_events = 4\n").await;

    let systemd = zbus::connection::Builder::address(daemon.bus.address())
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .build()
        .await
        .unwrap();
    // No pause here: the daemon must accept signals from a service that has only just appeared.

    for _ in 0..3 {
        unit_changed(
            &systemd,
            "/org/freedesktop/systemd1/unit/nginx_2eservice",
            "active",
            "running",
        )
        .await;
        unit_changed(
            &systemd,
            "/org/freedesktop/systemd1/unit/nginx_2eservice",
            "inactive",
            "dead",
        )
        .await;
    }
    unit_changed(
        &systemd,
        "/org/freedesktop/systemd1/unit/postgresql_2eservice",
        "failed",
        "failed",
    )
    .await;

    // A connection that does not own the name sends the same signal: broadcast (the bus routes it
    // nowhere, our match rule names the sender) and unicast to the daemon (the bus delivers it;
    // the daemon's own owner check must refuse it).
    let impostor = zbus::connection::Builder::address(daemon.bus.address())
        .unwrap()
        .build()
        .await
        .unwrap();
    unit_changed(
        &impostor,
        "/org/freedesktop/systemd1/unit/sshd_2eservice",
        "failed",
        "failed",
    )
    .await;
    let dbus = zbus::fdo::DBusProxy::new(&impostor).await.unwrap();
    let daemon_unique = dbus
        .get_name_owner(zbus::names::BusName::try_from("org.anomalyd.Detector1").unwrap())
        .await
        .unwrap();
    let mut changed: HashMap<&str, Value<'_>> = HashMap::new();
    changed.insert("ActiveState", Value::from("failed"));
    let invalidated: Vec<&str> = Vec::new();
    impostor
        .emit_signal(
            Some(daemon_unique.as_str()),
            "/org/freedesktop/systemd1/unit/sshd_2eservice",
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
            &("org.freedesktop.systemd1.Unit", changed, invalidated),
        )
        .await
        .unwrap();

    let stats = daemon
        .wait_for("7 events recorded and the forgery refused", |s| {
            s.get("EventsReceived") == Some(&7)
                && s.get("HeadSeq") >= Some(&9)
                && s.get("EventsForged") == Some(&1)
        })
        .await;
    assert_eq!(stats["EventsDropped"], 0);
    assert_eq!(
        (stats["EmbedCacheMisses"], stats["EmbedCacheHits"]),
        (3, 4),
        "three distinct texts embedded once each, the four repeats from the cache"
    );
    assert_eq!(
        stats["Anomalies"], 1,
        "only the failure is anomalous: {stats:?}"
    );
    let summary = daemon.stop().await;
    let rows = read_rows(&dir.path().join("state/audit.sqlite"));

    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"genesis"));
    assert_eq!(kinds.get(1), Some(&"start"));
    assert_eq!(kinds.last(), Some(&"stop"));
    let events: Vec<&common::Row> = rows.iter().filter(|r| r.kind == "event").collect();
    assert_eq!(
        events.len(),
        7,
        "every signal from the owner, none from the impostor"
    );
    assert!(events.iter().all(|r| r.source == "systemd"));
    assert_eq!(
        events[0].text,
        "systemd unit nginx.service ActiveState=active SubState=running"
    );
    assert!(
        !events[0].text.contains("0f3c9d2e"),
        "volatile ids stay out of the text"
    );
    assert!(
        events[0].fields.contains("0f3c9d2e"),
        "but are kept in the fields"
    );
    let failure = events.last().unwrap();
    assert_eq!(
        failure.text,
        "systemd unit postgresql.service ActiveState=failed SubState=failed"
    );
    assert_eq!(failure.verdict, "anomaly");
    assert!(failure.score.unwrap() > 0.2);
    let repeat = &events[4];
    assert_eq!(repeat.verdict, "normal");
    // A text seen twice before: distance 0, plus the rarity term 0.01 / (1 + ln 2).
    let expected = 0.01 / (1.0 + 2f64.ln());
    assert!(
        (repeat.score.unwrap() - expected).abs() < 1e-6,
        "a text seen before scores only its rarity: {:?}",
        repeat.score
    );
    assert!(
        !rows.iter().any(|r| r.text.contains("sshd.service")),
        "forged signal refused"
    );
    assert_eq!(summary.metrics.events_forged, 1);
    assert_chain_intact(&rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_manager_and_login1_signals_are_rendered_with_what_their_services_answer() {
    use anomalyd::emulate::replay::Replayer;
    use anomalyd::emulate::scenario::Signal;

    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(dir.path(), "").await;
    let replayer = Replayer::start(daemon.bus.address()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for (i, signal) in [
        Signal::Device {
            index: 7,
            interface: "enp3s0",
            new: 120,
            old: 100,
            reason: 40,
        },
        Signal::NetworkState(20),
        Signal::SessionNew {
            id: 42,
            user: "alice",
            remote_host: "10.0.4.21",
        },
        Signal::SessionRemoved { id: 42 },
        Signal::PrepareForShutdown(true),
    ]
    .into_iter()
    .enumerate()
    {
        replayer.emit(&signal).await.unwrap();
        // Each signal is recorded before the next is sent: SessionRemoved deletes the session
        // the daemon looks up for SessionNew, and a fixed pause lost that race on a busy machine.
        let recorded = 3 + i as u64;
        daemon
            .wait_for("the signal recorded", |s| {
                s.get("HeadSeq") >= Some(&recorded)
            })
            .await;
    }
    daemon
        .wait_for("5 events recorded", |s| s.get("HeadSeq") >= Some(&7))
        .await;
    drop(replayer);
    daemon.stop().await;
    let texts: Vec<String> = read_rows(&dir.path().join("state/audit.sqlite"))
        .into_iter()
        .filter(|r| r.kind == "event")
        .map(|r| r.text)
        .collect();
    assert_eq!(
        texts,
        [
            "networkmanager device enp3s0 state=failed old=activated reason=carrier",
            "networkmanager state=disconnected",
            "login1 session new user=alice class=user service=sshd remote_host=10.0.4.21",
            "login1 session removed user=alice class=user remote_host=10.0.4.21",
            "login1 prepare-for-shutdown start",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_cannot_take_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(dir.path(), "").await;
    let second_state = dir.path().join("second");
    let config = common::test_config(&second_state, &daemon.bus, "");
    let result = anomalyd::daemon::run(config, &daemon.bus.target(), std::future::pending()).await;
    match result {
        Err(anomalyd::daemon::DaemonError::NameTaken(name)) => {
            assert_eq!(name, "org.anomalyd.Detector1")
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    daemon.stop().await;
}
