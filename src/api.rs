//! The D-Bus face of the daemon: `org.anomalyd.Detector1` at `/org/anomalyd/Detector1`. Thin: it
//! reads counters and forwards; it owns no pipeline state.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};

use crate::metrics::Metrics;

pub const OBJECT_PATH: &str = "/org/anomalyd/Detector1";
pub const INTERFACE: &str = "org.anomalyd.Detector1";

/// Facts fixed at start-up, reported by `Stats` and the properties.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub embedder_backend: String,
    pub model_id: String,
    pub index_description: String,
    pub state_dir: String,
    pub audit_db: String,
    pub started_usec: u64,
    pub hardware: crate::hw::Summary,
}

pub struct DetectorApi {
    pub metrics: Arc<Metrics>,
    pub info: Arc<DaemonInfo>,
}

/// The numeric entries of a `Stats` reply (the counters), for clients that compare them.
pub fn counters(stats: &HashMap<String, OwnedValue>) -> HashMap<String, u64> {
    stats
        .iter()
        .filter_map(|(k, v)| u64::try_from(v).ok().map(|n| (k.clone(), n)))
        .collect()
}

fn owned(value: Value<'_>) -> OwnedValue {
    // Plain values (no file descriptors) always convert.
    value.try_to_owned().expect("plain value converts to owned")
}

#[zbus::interface(name = "org.anomalyd.Detector1")]
impl DetectorApi {
    /// Counters and facts as a{sv}: EventsReceived, EventsDropped, RecordsWritten, Anomalies,
    /// HeadSeq, BaselineSize, EmbedderBackend, ModelId, IndexDescription, NumaNodes, …
    async fn stats(&self) -> HashMap<String, OwnedValue> {
        let mut out: HashMap<String, OwnedValue> = self
            .metrics
            .snapshot()
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), owned(Value::U64(v))))
            .collect();
        let info = &self.info;
        for (k, v) in [
            ("Version", env!("CARGO_PKG_VERSION").to_owned()),
            ("EmbedderBackend", info.embedder_backend.clone()),
            ("ModelId", info.model_id.clone()),
            ("IndexDescription", info.index_description.clone()),
            ("StateDir", info.state_dir.clone()),
            ("AuditDb", info.audit_db.clone()),
            ("Gpu", info.hardware.gpu.clone()),
        ] {
            out.insert(k.to_owned(), owned(Value::from(v)));
        }
        out.insert("StartedUsec".into(), owned(Value::U64(info.started_usec)));
        out.insert(
            "NumaNodes".into(),
            owned(Value::U32(info.hardware.numa_nodes)),
        );
        out.insert("Cpus".into(), owned(Value::U32(info.hardware.cpus)));
        out
    }

    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    #[zbus(property)]
    fn embedder_backend(&self) -> String {
        self.info.embedder_backend.clone()
    }

    #[zbus(property)]
    fn index_description(&self) -> String {
        self.info.index_description.clone()
    }

    /// Emitted once per event judged anomalous, after its record is committed.
    #[zbus(signal)]
    pub async fn anomaly_detected(
        emitter: &SignalEmitter<'_>,
        seq: u64,
        usec: u64,
        source: &str,
        text: &str,
        score: f64,
    ) -> zbus::Result<()>;
}
