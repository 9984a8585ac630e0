//! The D-Bus face of the daemon: `org.anomalyd.Detector1` at `/org/anomalyd/Detector1`. Thin: it
//! reads counters and forwards; it owns no pipeline state.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};

use crate::event::{Event, RecordKind};
use crate::metrics::Metrics;
use crate::pipeline::Intake;

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

/// The API's door into the pipeline. Shutdown empties it before draining, so the pipeline is not
/// kept open by the API object.
pub type IntakeSlot = Arc<std::sync::Mutex<Option<Intake>>>;

pub struct DetectorApi {
    pub metrics: Arc<Metrics>,
    pub info: Arc<DaemonInfo>,
    /// One verification at a time: each reads the whole database.
    pub verifying: Arc<tokio::sync::Semaphore>,
    pub intake: IntakeSlot,
}

impl DetectorApi {
    pub fn new(metrics: Arc<Metrics>, info: Arc<DaemonInfo>, intake: IntakeSlot) -> DetectorApi {
        DetectorApi {
            metrics,
            info,
            verifying: Arc::new(tokio::sync::Semaphore::new(1)),
            intake,
        }
    }

    fn intake(&self) -> Result<Intake, ApiError> {
        self.intake
            .lock()
            .map_err(|_| ApiError::Internal("intake lock poisoned".into()))?
            .clone()
            .ok_or_else(|| ApiError::Busy("the daemon is shutting down".into()))
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&std::path::Path) -> Result<T, crate::audit::AuditError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let db = std::path::PathBuf::from(&self.info.audit_db);
        tokio::task::spawn_blocking(move || query(&db))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(e.to_string()))
    }
}

/// Longest note `MarkBenign` keeps.
pub const MAX_NOTE_BYTES: usize = 1024;

/// How long `MarkBenign` waits for its record to be committed.
const MARK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A neighbour as `Explain` returns it: (baseline id, distance, text, count now, first seq).
pub type NeighbourTuple = (u64, f64, String, u64, u64);

/// Errors as D-Bus error names under `org.anomalyd.Error`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.anomalyd.Error")]
pub enum ApiError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No record has that sequence number.
    NotFound(String),
    /// An argument is out of range or of the wrong kind.
    InvalidArgument(String),
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

    /// Why the event `seq` got its verdict: (text, verdict, score or NaN, threshold or NaN,
    /// neighbours). Each neighbour is (baseline id, distance, text, how many events the text
    /// stands for now, seq of the record through which it joined the baseline), nearest first.
    async fn explain(
        &self,
        seq: u64,
    ) -> Result<(String, String, f64, f64, Vec<NeighbourTuple>), ApiError> {
        let explained = self
            .read(move |db| crate::audit::query::explain(db, seq))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no record has seq {seq}")))?;
        let neighbours = explained
            .neighbours
            .into_iter()
            .map(|n| (n.id, n.distance, n.text, n.count, n.first_seq))
            .collect();
        Ok((
            explained.record.text,
            explained.record.verdict,
            explained.record.score.unwrap_or(f64::NAN),
            explained.threshold.unwrap_or(f64::NAN),
            neighbours,
        ))
    }

    /// Marks the event `seq` benign: its text joins the baseline, so it and texts like it stop
    /// alerting. Recorded in the chain as a `benign` record naming the event, the note and the
    /// caller's uid; returns that record's seq once it is committed.
    async fn mark_benign(
        &self,
        seq: u64,
        note: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<u64, ApiError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "the note is {} bytes; at most {MAX_NOTE_BYTES}",
                note.len()
            )));
        }
        let record = self
            .read(move |db| crate::audit::query::read_record(db, seq))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no record has seq {seq}")))?;
        if record.kind != RecordKind::Event.as_str() {
            return Err(ApiError::InvalidArgument(format!(
                "seq {seq} is a {} record; only observed events can be marked benign",
                record.kind
            )));
        }
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        let uid = match header.sender() {
            Some(name) => zbus::fdo::DBusProxy::new(conn)
                .await?
                .get_connection_unix_user(zbus::names::BusName::Unique(name.to_owned()))
                .await
                .ok(),
            None => None,
        };
        let mut fields = serde_json::Map::new();
        fields.insert("target_seq".into(), serde_json::json!(seq));
        fields.insert("target_verdict".into(), serde_json::json!(record.verdict));
        fields.insert("note".into(), serde_json::json!(note));
        fields.insert("uid".into(), serde_json::json!(uid));
        fields.insert("sender".into(), serde_json::json!(sender));
        let intake = self.intake()?;
        intake
            .submit_wait(Event::daemon(RecordKind::Benign, record.text, fields))
            .await
            .map_err(|_| ApiError::Busy("the daemon is shutting down".into()))?;
        if !intake.probe(MARK_TIMEOUT).await {
            return Err(ApiError::Busy(format!(
                "the benign mark was queued but not committed within {}s",
                MARK_TIMEOUT.as_secs()
            )));
        }
        let mark = self
            .read(move |db| crate::audit::query::benign_mark_of(db, seq))
            .await?
            .ok_or_else(|| {
                ApiError::Internal("the benign record is missing after commit".into())
            })?;
        self.metrics
            .marked_benign
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(seq, mark, ?uid, "event marked benign");
        Ok(mark)
    }

    /// Trains the index again in the background now (when `detector.index` is a trained one).
    async fn retrain(&self) -> Result<(), ApiError> {
        self.intake()?
            .retrain()
            .await
            .map_err(|_| ApiError::Busy("the daemon is shutting down".into()))
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

    /// The index as configured at start-up; a trained index swapped in later is counted in
    /// Stats' IndexSwaps.
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
