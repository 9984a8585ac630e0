//! Owner changes are applied in bus order with the signals. The bus delivers a sender's signals
//! before the `NameOwnerChanged` that announces its departure, so a service that signals and
//! exits at once, or exits while the daemon's lookups to it are pending, must have every signal
//! recorded, and none counted as forged. A `NameOwnerChanged` that the bus did not send (a
//! unicast one from an ordinary client) must change nothing.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_chain_intact, fake_systemd, read_rows, unit_changed, RunningDaemon};
use zbus::names::BusName;
use zbus::zvariant::Value;
use zbus::Connection;

const SYSTEMD: &str = "org.freedesktop.systemd1";

/// One restart as systemd signals it: four state changes, each the type interface's
/// `PropertiesChanged` (with `Result`) first, then the Unit interface's.
const RESTART: [(&str, &str); 4] = [
    ("deactivating", "stop-sigterm"),
    ("inactive", "dead"),
    ("activating", "start"),
    ("active", "running"),
];

/// Every way the daemon accounts for a signal it was routed.
fn accounted(stats: &HashMap<String, u64>) -> u64 {
    [
        "EventsReceived",
        "EventsIgnored",
        "EventsForged",
        "SignalsUnchanged",
        "SignalsMalformed",
        "EventsDropped",
    ]
    .iter()
    .map(|k| stats.get(*k).copied().unwrap_or(0))
    .sum()
}

/// `PropertiesChanged` of a unit's type interface, as systemd sends it before the Unit one.
async fn result_changed(conn: &Connection, unit_path: &str, result: &str) {
    let mut changed: HashMap<&str, Value<'_>> = HashMap::new();
    changed.insert("Result", Value::from(result));
    changed.insert("MainPID", Value::from(0u32));
    conn.emit_signal(
        None::<&str>,
        unit_path,
        "org.freedesktop.DBus.Properties",
        "PropertiesChanged",
        &(
            "org.freedesktop.systemd1.Service",
            changed,
            Vec::<&str>::new(),
        ),
    )
    .await
    .unwrap();
}

/// Closes `conn` at once (no goodbye, as a crashing service) and waits until the bus has let
/// its names go.
async fn exit(conn: Connection, daemon: &RunningDaemon) {
    conn.close().await.unwrap();
    let dbus = zbus::fdo::DBusProxy::new(&daemon.conn).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dbus
        .name_has_owner(BusName::try_from(SYSTEMD).unwrap())
        .await
        .unwrap()
    {
        assert!(
            Instant::now() < deadline,
            "the bus did not release {SYSTEMD}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the daemon accounted for `signals` signals in all; returns the stats then.
async fn settled(daemon: &RunningDaemon, signals: u64) -> HashMap<String, u64> {
    daemon
        .wait_for(&format!("{signals} signals accounted for"), |s| {
            accounted(s) >= signals
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_signals_and_exits_at_once_loses_nothing() {
    const ROUNDS: u64 = 20;
    const RESTARTS: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(dir.path(), "").await;
    let nginx = "/org/freedesktop/systemd1/unit/nginx_2eservice";
    let changes_per_round = RESTARTS * RESTART.len() as u64;

    for round in 0..ROUNDS {
        let systemd = fake_systemd(&daemon.bus).await;
        for _ in 0..RESTARTS {
            for (active, sub) in RESTART {
                result_changed(&systemd, nginx, "success").await;
                unit_changed(&systemd, nginx, active, sub).await;
            }
        }
        exit(systemd, &daemon).await;

        let changes = (round + 1) * changes_per_round;
        let stats = settled(&daemon, 2 * changes).await;
        assert_eq!(
            (stats["EventsReceived"], stats["EventsForged"]),
            (changes, 0),
            "round {round}: every change recorded, none refused: {stats:?}"
        );
        assert_eq!(stats["EventsDropped"], 0, "{stats:?}");
        assert_eq!(stats["SignalsUnchanged"], 0, "{stats:?}");
    }

    let total = ROUNDS * changes_per_round;
    daemon
        .wait_for("every change committed", |s| {
            s.get("HeadSeq") >= Some(&(total + 2))
        })
        .await;
    let db = daemon.db();
    daemon.stop().await;
    let rows = read_rows(&db);
    assert_chain_intact(&rows);
    let texts: Vec<&str> = rows
        .iter()
        .filter(|r| r.kind == "event")
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(texts.len() as u64, total);
    for (i, text) in texts.iter().enumerate() {
        let (active, sub) = RESTART[i % RESTART.len()];
        assert_eq!(
            *text,
            format!(
                "systemd unit nginx.service ActiveState={active} SubState={sub} Result=success"
            ),
            "change {i}, in the order sent"
        );
    }
}

/// The type interface of a unit, answering `Result` only long after its service is gone.
struct SlowUnit {
    asked: Arc<tokio::sync::Notify>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Service")]
impl SlowUnit {
    #[zbus(property)]
    async fn result(&self) -> String {
        self.asked.notify_one();
        tokio::time::sleep(Duration::from_secs(60)).await;
        "success".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_exits_while_looked_up_loses_nothing() {
    const ROUNDS: u64 = 5;
    const UNITS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(dir.path(), "[sources]\nlookup_timeout_ms = 2000\n").await;
    let paths: Vec<String> = (0..UNITS)
        .map(|u| format!("/org/freedesktop/systemd1/unit/u{u}_2eservice"))
        .collect();
    let changes_per_round = (UNITS * RESTART.len()) as u64;

    for round in 0..ROUNDS {
        let systemd = fake_systemd(&daemon.bus).await;
        let asked = Arc::new(tokio::sync::Notify::new());
        for path in &paths {
            systemd
                .object_server()
                .at(
                    path.as_str(),
                    SlowUnit {
                        asked: asked.clone(),
                    },
                )
                .await
                .unwrap();
        }
        // Unit signals alone: the daemon asks for each unit's Result, and waits for the answer.
        for (active, sub) in RESTART {
            for path in &paths {
                unit_changed(&systemd, path, active, sub).await;
            }
        }
        tokio::time::timeout(Duration::from_secs(10), asked.notified())
            .await
            .expect("the daemon asks for a Result");
        // Gone with the lookup pending and the rest of its signals still queued in the daemon.
        exit(systemd, &daemon).await;

        let changes = (round + 1) * changes_per_round;
        let stats = settled(&daemon, changes).await;
        assert_eq!(
            (stats["EventsReceived"], stats["EventsForged"]),
            (changes, 0),
            "round {round}: every change recorded, none refused: {stats:?}"
        );
        assert_eq!(stats["EventsDropped"], 0, "{stats:?}");
    }

    let total = ROUNDS * changes_per_round;
    daemon
        .wait_for("every change committed", |s| {
            s.get("HeadSeq") >= Some(&(total + 2))
        })
        .await;
    let db = daemon.db();
    daemon.stop().await;
    let rows = read_rows(&db);
    assert_chain_intact(&rows);
    let events = rows.iter().filter(|r| r.kind == "event").count() as u64;
    assert_eq!(events, total);
}

/// A unit's `PropertiesChanged` sent straight to the daemon (`destination`), not broadcast.
async fn unicast_unit_changed(conn: &Connection, destination: &str, unit_path: &str) {
    let mut changed: HashMap<&str, Value<'_>> = HashMap::new();
    changed.insert("ActiveState", Value::from("failed"));
    changed.insert("SubState", Value::from("failed"));
    conn.emit_signal(
        Some(destination),
        unit_path,
        "org.freedesktop.DBus.Properties",
        "PropertiesChanged",
        &("org.freedesktop.systemd1.Unit", changed, Vec::<&str>::new()),
    )
    .await
    .unwrap();
}

/// A `NameOwnerChanged` for systemd's name sent straight to the daemon by `conn`.
async fn forged_owner_change(conn: &Connection, destination: &str, old: &str, new: &str) {
    conn.emit_signal(
        Some(destination),
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameOwnerChanged",
        &(SYSTEMD, old, new),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_owner_change_the_bus_did_not_send_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(dir.path(), "").await;
    let systemd = fake_systemd(&daemon.bus).await;
    let owner = systemd.unique_name().unwrap().to_string();
    let nginx = "/org/freedesktop/systemd1/unit/nginx_2eservice";
    let sshd = "/org/freedesktop/systemd1/unit/sshd_2eservice";
    unit_changed(&systemd, nginx, "active", "running").await;
    settled(&daemon, 1).await;

    let impostor = anomalyd::bus::connect(&daemon.bus.target()).await.unwrap();
    let me = impostor.unique_name().unwrap().to_string();
    let dbus = zbus::fdo::DBusProxy::new(&impostor).await.unwrap();
    let daemon_name = dbus
        .get_name_owner(BusName::try_from("org.anomalyd.Detector1").unwrap())
        .await
        .unwrap()
        .to_string();

    // "systemd's name passed to me", then a signal as its owner: both refused.
    forged_owner_change(&impostor, &daemon_name, &owner, &me).await;
    unicast_unit_changed(&impostor, &daemon_name, sshd).await;
    let stats = settled(&daemon, 3).await;
    assert_eq!(
        (stats["EventsReceived"], stats["EventsForged"]),
        (1, 2),
        "the forged owner change and the impostor's signal are refused: {stats:?}"
    );

    // "systemd left": the real owner's next signal is still accepted. The impostor's signal
    // after its forgery shows when the daemon has read the forgery.
    forged_owner_change(&impostor, &daemon_name, &owner, "").await;
    unicast_unit_changed(&impostor, &daemon_name, sshd).await;
    settled(&daemon, 5).await;
    unit_changed(&systemd, nginx, "inactive", "dead").await;
    let stats = settled(&daemon, 6).await;
    assert_eq!(
        (stats["EventsReceived"], stats["EventsForged"]),
        (2, 4),
        "the owner's signal is accepted after a forged departure: {stats:?}"
    );

    let db = daemon.db();
    daemon.stop().await;
    let rows = read_rows(&db);
    assert_chain_intact(&rows);
    let texts: Vec<&str> = rows
        .iter()
        .filter(|r| r.kind == "event")
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(
        texts,
        [
            "systemd unit nginx.service ActiveState=active SubState=running",
            "systemd unit nginx.service ActiveState=inactive SubState=dead",
        ]
    );
    drop(systemd);
}
