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
    /// The checkpoint file the daemon writes, held against the chain by `VerifyChain`.
    pub checkpoint_file: Option<String>,
    pub started_usec: u64,
    pub hardware: crate::hw::Summary,
}

pub struct DetectorApi {
    pub metrics: Arc<Metrics>,
    pub info: Arc<DaemonInfo>,
    /// One verification at a time: each reads the whole database.
    pub verifying: Arc<tokio::sync::Semaphore>,
}

impl DetectorApi {
    pub fn new(metrics: Arc<Metrics>, info: Arc<DaemonInfo>) -> DetectorApi {
        DetectorApi {
            metrics,
            info,
            verifying: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

/// Errors as D-Bus error names under `org.anomalyd.Error`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.anomalyd.Error")]
pub enum ApiError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The request cannot be served right now (another verification runs); try again.
    Busy(String),
    /// The daemon failed to serve the request.
    Internal(String),
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

    /// Recomputes every hash of the audit chain from a read-only connection (appends go on) and
    /// holds it against the daemon's checkpoint file. Returns (ok, records checked, head seq,
    /// head hash hex, first bad seq or 0, what is wrong or "").
    async fn verify_chain(&self) -> Result<(bool, u64, u64, String, u64, String), ApiError> {
        let _permit = self
            .verifying
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy("a verification is already running".into()))?;
        let db = std::path::PathBuf::from(&self.info.audit_db);
        let checkpoint_file = self.info.checkpoint_file.clone();
        let report = tokio::task::spawn_blocking(move || {
            // No file yet (no checkpoint written so far) holds no expectations.
            let expected = match checkpoint_file.map(std::path::PathBuf::from) {
                Some(f) if f.exists() => crate::audit::checkpoint::read_checkpoint_file(&f)?,
                _ => Vec::new(),
            };
            crate::audit::verify(&db, &expected).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::Internal)?;
        let (head_seq, head_hash) = report
            .head
            .map_or((0, String::new()), |h| (h.seq, hex::encode(h.hash)));
        let (bad_seq, problem) = report
            .failure
            .as_ref()
            .map_or((0, String::new()), |(seq, p)| (*seq, p.to_string()));
        Ok((
            report.ok(),
            report.records,
            head_seq,
            head_hash,
            bad_seq,
            problem,
        ))
    }

    /// The chain's head as committed: (seq, hash hex).
    async fn head(&self) -> Result<(u64, String), ApiError> {
        let db = std::path::PathBuf::from(&self.info.audit_db);
        let head = tokio::task::spawn_blocking(move || crate::audit::read_head(&db))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(head.map_or((0, String::new()), |h| (h.seq, hex::encode(h.hash))))
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
