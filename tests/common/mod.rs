//! Shared by the integration tests: a private bus, the daemon in-process on it, and readers of
//! what it wrote.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anomalyd::bus::PrivateBus;
use anomalyd::config::{Config, Overrides};
use tokio::sync::oneshot;
use zbus::zvariant::OwnedValue;

pub struct RunningDaemon {
    pub bus: PrivateBus,
    pub state_dir: PathBuf,
    pub conn: zbus::Connection,
    stop: Option<oneshot::Sender<()>>,
    task: Option<
        tokio::task::JoinHandle<
            Result<anomalyd::daemon::RunSummary, anomalyd::daemon::DaemonError>,
        >,
    >,
}

/// The real all-MiniLM-L6-v2 that `scripts/setup` (via `scripts/fetch-model`) installs into the
/// checkout; every test daemon embeds with it.
pub fn model_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} has no model: run scripts/fetch-model (scripts/setup does)",
        dir.display()
    );
    dir
}

/// A config for tests: the shipped defaults with `extra` TOML merged over them, on `state_dir`.
pub fn test_config(state_dir: &Path, bus: &PrivateBus, extra: &str) -> Config {
    let path = state_dir.join("test.toml");
    std::fs::create_dir_all(state_dir).unwrap();
    std::fs::write(&path, format!("[daemon]\nlog = \"stderr\"\n{extra}")).unwrap();
    Config::load(
        Some(&path),
        &Overrides {
            bus: Some(bus.address().to_owned()),
            state_dir: Some(state_dir.to_owned()),
            log: None,
            model: Some(model_dir()),
        },
    )
    .unwrap()
}

impl RunningDaemon {
    /// Spawns a private dbus-daemon under `dir` and runs anomalyd on it in-process, returning once
    /// it owns its bus name.
    pub async fn start(dir: &Path, extra_config: &str) -> RunningDaemon {
        Self::start_in(&dir.join("bus"), &dir.join("state"), extra_config).await
    }

    /// As [`RunningDaemon::start`], with the bus and the state directory named apart (a restart
    /// on the same state directory).
    pub async fn start_in(bus_dir: &Path, state_dir: &Path, extra_config: &str) -> RunningDaemon {
        let bus = PrivateBus::spawn(bus_dir).expect("dbus-daemon starts");
        let state_dir = state_dir.to_owned();
        let config = test_config(&state_dir, &bus, extra_config);
        let target = bus.target();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            anomalyd::daemon::run(config, &target, async {
                let _ = stopped.await;
            })
            .await
        });
        let conn = anomalyd::bus::connect(&bus.target()).await.unwrap();
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let name = zbus::names::BusName::try_from("org.anomalyd.Detector1").unwrap();
            if dbus.name_has_owner(name).await.unwrap_or(false) {
                break;
            }
            assert!(
                !task.is_finished(),
                "the daemon stopped during start-up: {:?}",
                task.await
            );
            assert!(
                Instant::now() < deadline,
                "the daemon did not take its bus name in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        RunningDaemon {
            bus,
            state_dir,
            conn,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stats(&self) -> HashMap<String, u64> {
        let proxy = api_proxy(&self.conn).await;
        let stats: HashMap<String, OwnedValue> = proxy.call("Stats", &()).await.unwrap();
        anomalyd::api::counters(&stats)
    }

    /// Polls `Stats` until `done` holds or 30 s pass; returns the last stats.
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&HashMap<String, u64>) -> bool,
    ) -> HashMap<String, u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stats = self.stats().await;
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; stats: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM's path: stop, drain, return the summary.
    pub async fn stop(mut self) -> anomalyd::daemon::RunSummary {
        let _ = self.stop.take().unwrap().send(());
        self.task
            .take()
            .unwrap()
            .await
            .unwrap()
            .expect("daemon ran cleanly")
    }

    pub fn db(&self) -> PathBuf {
        self.state_dir.join("audit.sqlite")
    }
}

/// One row of the audit table.
#[derive(Debug, Clone)]
pub struct Row {
    pub seq: u64,
    pub ts_usec: u64,
    pub kind: String,
    pub source: String,
    pub text: String,
    pub fields: String,
    pub score: Option<f64>,
    pub verdict: String,
    pub neighbours: String,
    pub model: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

pub fn read_rows(db: &Path) -> Vec<Row> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, ts_usec, kind, source, text, fields, score, verdict, neighbours, model, prev_hash, hash FROM records ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            seq: r.get::<_, i64>(0)? as u64,
            ts_usec: r.get::<_, i64>(1)? as u64,
            kind: r.get(2)?,
            source: r.get(3)?,
            text: r.get(4)?,
            fields: r.get(5)?,
            score: r.get(6)?,
            verdict: r.get(7)?,
            neighbours: r.get(8)?,
            model: r.get(9)?,
            prev_hash: r.get(10)?,
            hash: r.get(11)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Recomputes every hash and link; panics naming the first bad seq.
pub fn assert_chain_intact(rows: &[Row]) {
    let mut prev = anomalyd::audit::GENESIS_PREV_HASH;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, i as u64 + 1, "seq is dense from 1");
        assert_eq!(
            row.prev_hash, prev,
            "seq {}: prev_hash links to the previous record",
            row.seq
        );
        let fields = anomalyd::audit::RecordFields {
            seq: row.seq,
            ts_usec: row.ts_usec,
            kind: &row.kind,
            source: &row.source,
            text: &row.text,
            fields: &row.fields,
            score: row.score,
            verdict: &row.verdict,
            neighbours: &row.neighbours,
            model: &row.model,
        };
        let hash = anomalyd::audit::record_hash(&prev, &fields);
        assert_eq!(row.hash, hash, "seq {}: hash", row.seq);
        prev = hash;
    }
}

/// Emits a systemd unit's PropertiesChanged from `conn` (which should own
/// `org.freedesktop.systemd1`, as systemd does).
pub async fn unit_changed(conn: &zbus::Connection, unit_path: &str, active: &str, sub: &str) {
    use zbus::zvariant::Value;
    let mut changed: HashMap<&str, Value<'_>> = HashMap::new();
    changed.insert("ActiveState", Value::from(active));
    changed.insert("SubState", Value::from(sub));
    changed.insert("InvocationID", Value::from("0f3c9d2e"));
    let invalidated: Vec<&str> = Vec::new();
    conn.emit_signal(
        None::<&str>,
        unit_path,
        "org.freedesktop.DBus.Properties",
        "PropertiesChanged",
        &("org.freedesktop.systemd1.Unit", changed, invalidated),
    )
    .await
    .unwrap();
}

/// A connection to `bus` that owns `org.freedesktop.systemd1`, so the daemon accepts its signals.
pub async fn fake_systemd(bus: &PrivateBus) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address())
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .build()
        .await
        .unwrap()
}

/// The daemon's API object.
pub async fn api_proxy(conn: &zbus::Connection) -> zbus::Proxy<'static> {
    zbus::Proxy::new(
        conn,
        "org.anomalyd.Detector1",
        "/org/anomalyd/Detector1",
        "org.anomalyd.Detector1",
    )
    .await
    .unwrap()
}
