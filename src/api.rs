//! The D-Bus face of the daemon: `org.anomalyd.Detector1` at `/org/anomalyd/Detector1`. Thin: it
//! reads counters and forwards; it owns no pipeline state.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Type, Value};

use crate::access::ADMIN_GROUP;
use crate::audit::query::{ListFilter, RecordView};
use crate::event::{Event, RecordKind, Source};
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
    /// What readers may take from the pipeline and the machine at once.
    limits: Arc<ReaderLimits>,
}

/// Dry runs in flight at once, daemon-wide: each takes a place in the intake queue and cuts a
/// batch, so their number is bounded well below the queue's and the batches'.
const MAX_DRY_RUNS: usize = 4;
/// Database reads at once (listings, explanations, records): each may scan on a blocking thread,
/// and the pipeline's stages need the cores.
const MAX_READS: usize = 2;
/// Calls one caller (one bus connection) may have in flight across `Score` and `ListEvents`,
/// the two a client can make expensive (a dry run, a `contains` scan); every read is also under
/// MAX_READS.
const MAX_CALLS_PER_CALLER: usize = 2;
/// Most heads one `VerifyChainWith` call holds the chain against.
const MAX_HEADS: usize = 100_000;
/// How long a read waits for its turn before the caller is told `Busy`.
const READ_WAIT: Duration = Duration::from_secs(5);

/// The bounds on what the read side of the API can take. Callers beyond them hear `Busy`: the
/// events the daemon is there to record come first.
#[derive(Debug)]
struct ReaderLimits {
    dry_runs: Arc<tokio::sync::Semaphore>,
    reads: Arc<tokio::sync::Semaphore>,
    per_caller: std::sync::Mutex<HashMap<String, usize>>,
}

/// A caller's place among its in-flight calls; given back when dropped.
struct CallerSlot {
    limits: Arc<ReaderLimits>,
    caller: String,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut calls = self
            .limits
            .per_caller
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = calls.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                calls.remove(&self.caller);
            }
        }
    }
}

impl ReaderLimits {
    fn new() -> ReaderLimits {
        ReaderLimits {
            dry_runs: Arc::new(tokio::sync::Semaphore::new(MAX_DRY_RUNS)),
            reads: Arc::new(tokio::sync::Semaphore::new(MAX_READS)),
            per_caller: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more call of `caller`, or `Busy` when it has MAX_CALLS_PER_CALLER.
    fn enter(self: &Arc<Self>, caller: &str) -> Result<CallerSlot, ApiError> {
        let mut calls = self.per_caller.lock().unwrap_or_else(|e| e.into_inner());
        let n = calls.entry(caller.to_owned()).or_default();
        if *n >= MAX_CALLS_PER_CALLER {
            return Err(ApiError::Busy(format!(
                "{caller} already has {MAX_CALLS_PER_CALLER} calls in flight; wait for their answers"
            )));
        }
        *n += 1;
        Ok(CallerSlot {
            limits: self.clone(),
            caller: caller.to_owned(),
        })
    }
}

/// The caller's unique bus name, which the per-caller bound counts by.
fn connection_of(header: &zbus::message::Header<'_>) -> String {
    header.sender().map(|s| s.to_string()).unwrap_or_default()
}

impl DetectorApi {
    pub fn new(metrics: Arc<Metrics>, info: Arc<DaemonInfo>, intake: IntakeSlot) -> DetectorApi {
        DetectorApi {
            metrics,
            info,
            verifying: Arc::new(tokio::sync::Semaphore::new(1)),
            intake,
            limits: Arc::new(ReaderLimits::new()),
        }
    }

    /// Recomputes every hash and holds the chain against the daemon's checkpoint file and
    /// `heads`.
    async fn verify_against(
        &self,
        heads: Vec<crate::audit::Checkpoint>,
    ) -> Result<ChainReport, ApiError> {
        let _permit = self
            .verifying
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy("a verification is already running".into()))?;
        let db = std::path::PathBuf::from(&self.info.audit_db);
        let checkpoint_file = self.info.checkpoint_file.clone();
        let report = tokio::task::spawn_blocking(move || {
            // No file yet (no checkpoint written so far) holds no expectations.
            let mut expected = match checkpoint_file.map(std::path::PathBuf::from) {
                Some(f) if f.exists() => {
                    crate::audit::checkpoint::read_checkpoint_file(&f).map_err(|e| e.to_string())?
                }
                _ => Vec::new(),
            };
            expected.extend(heads);
            crate::audit::verify(&db, &expected).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::Internal)?;
        let head = ChainHead::of(report.head.as_ref());
        let (bad_seq, problem) = report
            .failure
            .as_ref()
            .map_or((0, String::new()), |(seq, p)| (*seq, p.to_string()));
        Ok(ChainReport {
            ok: report.ok(),
            records: report.records,
            head_seq: head.seq,
            head_hash: head.hash,
            bad_seq,
            problem,
        })
    }

    fn intake(&self) -> Result<Intake, ApiError> {
        self.intake
            .lock()
            .map_err(|_| ApiError::Internal("intake lock poisoned".into()))?
            .clone()
            .ok_or_else(|| ApiError::Busy("the daemon is shutting down".into()))
    }

    /// Admits the caller of an admin method, or refuses, logs and counts it.
    async fn admit(
        &self,
        method: &str,
        header: &zbus::message::Header<'_>,
        conn: &zbus::Connection,
    ) -> Result<Caller, ApiError> {
        let caller = caller_of(header, conn).await;
        match caller.uid.and_then(crate::access::admit) {
            Some(admission) => {
                tracing::debug!(method, sender = %caller.sender, uid = ?caller.uid, ?admission, "admin call admitted");
                Ok(caller)
            }
            None => {
                self.metrics.access_denied.fetch_add(1, Relaxed);
                tracing::warn!(method, sender = %caller.sender, uid = ?caller.uid, "admin call refused");
                let who = caller
                    .uid
                    .map_or("a caller of unknown uid".to_owned(), |u| format!("uid {u}"));
                Err(ApiError::AccessDenied(format!(
                    "{method} is for root, the service user and members of group {ADMIN_GROUP}; {who} is none of them"
                )))
            }
        }
    }

    /// The values behind the properties that change, for PropertiesChanged.
    fn live_properties(&self) -> [u64; 4] {
        let m = &self.metrics;
        [
            m.events_received.load(Relaxed),
            m.anomalies.load(Relaxed),
            m.events_dropped.load(Relaxed),
            m.threshold_bits.load(Relaxed),
        ]
    }

    /// One page of a listing, for `ListAnomalies` and `ListEvents`.
    async fn list(&self, filter: ListFilter, limit: i32) -> Result<Page, ApiError> {
        let limit = page_limit(limit)?;
        let (records, cursor) = self
            .read(move |db| crate::audit::query::list_records(db, &filter, limit))
            .await?;
        Ok(Page {
            rows: records.into_iter().map(RecordRow::from).collect(),
            cursor,
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&std::path::Path) -> Result<T, crate::audit::AuditError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(READ_WAIT, self.limits.reads.clone().acquire_owned())
            .await
            .map_err(|_| {
                ApiError::Busy(format!(
                    "{MAX_READS} reads of the audit log are running; retry shortly"
                ))
            })?
            .map_err(|_| ApiError::Busy("the daemon is shutting down".into()))?;
        self.read_unbounded(move |db| {
            let _permit = permit;
            query(db)
        })
        .await
    }

    /// A read outside the readers' bound: only for the daemon's own short, indexed lookups that
    /// must not fail once their work is done (a benign mark's record after its commit).
    async fn read_unbounded<T: Send + 'static>(
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

/// Most records one listing returns; the reply's cursor continues it.
pub const MAX_PAGE: i32 = 1000;

/// Longest text `Score` and `Submit` accept (canonical texts are far shorter), and longest
/// `contains` filter.
pub const MAX_TEXT_BYTES: usize = 4096;

/// How long `Score` waits for its place in the pipeline and its answer.
const SCORE_TIMEOUT: Duration = Duration::from_secs(30);

// The types on the wire. Each derives `Type` as a D-Bus struct of its fields in declaration
// order, so the order of the fields *is* the signature: moving one changes the wire format
// (the tests at the end of this file pin every signature).
//
// Two kinds:
// - Elements (`RecordRow`, `IncidentRow`, `ScoredNeighbour`, `ExplainNeighbour`, `ChainHead`
//   in `VerifyChainWith`): D-Bus structs inside arrays.
// - Replies of several out arguments (`Page`, `ScoreReply`, `ExplainReply`, `ChainReport`,
//   `ChainHead` from `Head`) and signal bodies (`AnomalyDetectedArgs`, `AnomalyRepeatedArgs`):
//   a message body is the fields of its top-level struct, so a client deserialises a reply of
//   signature `a(ttsssds)t` straight into a `Page`. The interface methods still return a
//   literal tuple (through `From`): zbus introspects a tuple return type as one out argument per
//   element, but any other type as a single `(...)` argument, which would misdescribe the reply.

/// A listed record, as `ListAnomalies` and `ListEvents` return it: D-Bus `(ttsssds)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct RecordRow {
    /// The record's place in the chain.
    pub seq: u64,
    /// When it was observed, µs since the epoch.
    pub usec: u64,
    /// genesis, start, stop, event, gap, benign or import.
    pub kind: String,
    /// systemd, networkmanager, login1, udisks2, custom, or anomalyd for the daemon's own.
    pub source: String,
    /// normal, anomaly, warmup, suppressed, or none for records that are not judged.
    pub verdict: String,
    /// The score; NaN when the record was not scored (D-Bus has no optional values).
    pub score: f64,
    /// The canonical text.
    pub text: String,
}

impl From<RecordView> for RecordRow {
    fn from(r: RecordView) -> RecordRow {
        RecordRow {
            seq: r.seq,
            usec: r.ts_usec,
            kind: r.kind,
            source: r.source,
            verdict: r.verdict,
            score: r.score.unwrap_or(f64::NAN),
            text: r.text,
        }
    }
}

/// One page of a listing, the reply of `ListAnomalies` and `ListEvents`: two out arguments,
/// `a(ttsssds) rows, t cursor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct Page {
    /// The records of this page, in the listing's order.
    pub rows: Vec<RecordRow>,
    /// The last row's seq when more follow, else 0: `after_seq` (oldest first) or `before_seq`
    /// (newest first) of the next page.
    pub cursor: u64,
}

impl From<Page> for (Vec<RecordRow>, u64) {
    fn from(p: Page) -> Self {
        (p.rows, p.cursor)
    }
}

/// One incident as `ListIncidents` returns it: D-Bus `(tttttssd)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct IncidentRow {
    /// The record that opened it, the one `AnomalyDetected` announced.
    pub first_seq: u64,
    /// When that record was observed, µs since the epoch.
    pub first_usec: u64,
    /// Its last repeat (`first_seq` when it has none).
    pub last_seq: u64,
    /// When the last repeat was observed, µs since the epoch.
    pub last_usec: u64,
    /// Anomalies in it, the opening one included.
    pub anomalies: u64,
    /// The source of its records.
    pub source: String,
    /// The text of the record that opened it.
    pub text: String,
    /// The highest score among its anomalies.
    pub max_score: f64,
}

impl From<crate::audit::query::IncidentView> for IncidentRow {
    fn from(i: crate::audit::query::IncidentView) -> IncidentRow {
        IncidentRow {
            first_seq: i.first_seq,
            first_usec: i.first_usec,
            last_seq: i.last_seq,
            last_usec: i.last_usec,
            anomalies: i.events,
            source: i.source,
            text: i.text,
            max_score: i.max_score,
        }
    }
}

/// A neighbour as `Score` returns it: D-Bus `(tdst)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct ScoredNeighbour {
    /// Its id in the baseline.
    pub id: u64,
    /// Its distance from the scored text.
    pub distance: f64,
    /// Its text.
    pub text: String,
    /// Events the text stands for now.
    pub count: u64,
}

/// The reply of `Score`, a dry run: four out arguments, `d score, s verdict, d threshold,
/// a(tdst) neighbours`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct ScoreReply {
    /// The score the text would get now.
    pub score: f64,
    /// The verdict it would get (normal, anomaly, warmup, suppressed).
    pub verdict: String,
    /// What the score is judged against.
    pub threshold: f64,
    /// Its nearest baseline texts, nearest first.
    pub neighbours: Vec<ScoredNeighbour>,
}

impl From<ScoreReply> for (f64, String, f64, Vec<ScoredNeighbour>) {
    fn from(r: ScoreReply) -> Self {
        (r.score, r.verdict, r.threshold, r.neighbours)
    }
}

/// A neighbour as `Explain` returns it: D-Bus `(tdstt)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct ExplainNeighbour {
    /// Its id in the baseline.
    pub id: u64,
    /// Its distance from the record's text.
    pub distance: f64,
    /// Its text; "" when the baseline table has no such id.
    pub text: String,
    /// Events the text stands for now.
    pub count: u64,
    /// The record through which it joined the baseline (an event, a benign mark or an import);
    /// 0 when unknown.
    pub first_seq: u64,
}

/// The reply of `Explain`: five out arguments, `s text, s verdict, d score, d threshold,
/// a(tdstt) neighbours`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct ExplainReply {
    /// The record's text.
    pub text: String,
    /// Its verdict.
    pub verdict: String,
    /// Its score; NaN when not scored.
    pub score: f64,
    /// What the score was judged against; NaN when not scored.
    pub threshold: f64,
    /// The baseline texts it was judged against, nearest first.
    pub neighbours: Vec<ExplainNeighbour>,
}

impl From<ExplainReply> for (String, String, f64, f64, Vec<ExplainNeighbour>) {
    fn from(r: ExplainReply) -> Self {
        (r.text, r.verdict, r.score, r.threshold, r.neighbours)
    }
}

/// A head of the chain: the record `seq` and its hash in hex. The reply of `Head` (two out
/// arguments, `t seq, s hash`; seq 0 and "" while the log holds no records) and an element of
/// `VerifyChainWith`'s `a(ts) heads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ChainHead {
    /// The record's seq; 0 for none.
    pub seq: u64,
    /// Its hash, 64 hex digits; "" for none.
    pub hash: String,
}

impl ChainHead {
    /// The head `head` on the wire, or seq 0 and "" for none.
    fn of(head: Option<&crate::audit::Checkpoint>) -> ChainHead {
        head.map_or(
            ChainHead {
                seq: 0,
                hash: String::new(),
            },
            |h| ChainHead {
                seq: h.seq,
                hash: hex::encode(h.hash),
            },
        )
    }
}

impl From<ChainHead> for (u64, String) {
    fn from(h: ChainHead) -> Self {
        (h.seq, h.hash)
    }
}

/// The reply of `VerifyChain` and `VerifyChainWith`: six out arguments, `b ok, t records,
/// t head_seq, s head_hash, t bad_seq, s problem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ChainReport {
    /// Whether every hash, link and expected head holds.
    pub ok: bool,
    /// Records whose hashes were checked (up to the first bad one).
    pub records: u64,
    /// The last good record's seq; 0 for none.
    pub head_seq: u64,
    /// The last good record's hash in hex; "" for none.
    pub head_hash: String,
    /// The first bad record's seq; 0 when `ok`.
    pub bad_seq: u64,
    /// What is wrong with it; "" when `ok`.
    pub problem: String,
}

impl From<ChainReport> for (bool, u64, u64, String, u64, String) {
    fn from(r: ChainReport) -> Self {
        (
            r.ok,
            r.records,
            r.head_seq,
            r.head_hash,
            r.bad_seq,
            r.problem,
        )
    }
}

/// The body of the `AnomalyDetected` signal, for clients: D-Bus `ttssd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct AnomalyDetectedArgs {
    /// The anomaly's record, which opens an incident.
    pub seq: u64,
    /// When it was observed, µs since the epoch.
    pub usec: u64,
    /// Its source.
    pub source: String,
    /// Its text.
    pub text: String,
    /// Its score.
    pub score: f64,
}

/// The body of the `AnomalyRepeated` signal, for clients: D-Bus `ttssdtt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct AnomalyRepeatedArgs {
    /// The repeat's record.
    pub seq: u64,
    /// When it was observed, µs since the epoch.
    pub usec: u64,
    /// Its source.
    pub source: String,
    /// Its text.
    pub text: String,
    /// Its score.
    pub score: f64,
    /// The record that opened the incident (the one `AnomalyDetected` announced).
    pub incident: u64,
    /// Which repeat of the incident this is, from 1.
    pub repeat: u64,
}

/// The verdicts a listing can filter on.
const VERDICTS: [&str; 5] = ["normal", "anomaly", "warmup", "suppressed", "none"];
/// The record kinds a listing can filter on.
const KINDS: [&str; 7] = [
    "genesis", "start", "stop", "event", "gap", "benign", "import",
];
/// The sources a listing can filter on (`anomalyd` = the daemon's own records).
const SOURCES: [&str; 6] = [
    "systemd",
    "networkmanager",
    "login1",
    "udisks2",
    "custom",
    "anomalyd",
];

fn page_limit(limit: i32) -> Result<usize, ApiError> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit as usize)
    } else {
        Err(ApiError::InvalidArgument(format!(
            "limit {limit}: must be 1 to {MAX_PAGE}; continue a listing with the cursor it returns"
        )))
    }
}

fn one_of(key: &str, value: String, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(ApiError::InvalidArgument(format!(
            "filter {key} = {value:?}: must be one of {}",
            allowed.join(", ")
        )))
    }
}

/// `ListEvents`' filter dictionary, checked key by key.
fn parse_filter(
    since_usec: u64,
    filter: &HashMap<String, OwnedValue>,
) -> Result<ListFilter, ApiError> {
    let mut out = ListFilter {
        since_usec,
        ..ListFilter::default()
    };
    let wrong_type = |key: &str, wanted: &str, value: &OwnedValue| {
        ApiError::InvalidArgument(format!(
            "filter {key}: must be of type {wanted}, not {}",
            value.value_signature()
        ))
    };
    for (key, value) in filter {
        let text = || -> Result<String, ApiError> {
            <&str>::try_from(value)
                .map(str::to_owned)
                .map_err(|_| wrong_type(key, "s", value))
        };
        let seq = || u64::try_from(value).map_err(|_| wrong_type(key, "t", value));
        match key.as_str() {
            "after_seq" => out.after_seq = seq()?,
            "before_seq" => out.before_seq = seq()?,
            "newest_first" => {
                out.newest_first = bool::try_from(value).map_err(|_| wrong_type(key, "b", value))?
            }
            "verdict" => out.verdict = Some(one_of(key, text()?, &VERDICTS)?),
            "kind" => out.kind = Some(one_of(key, text()?, &KINDS)?),
            "source" => out.source = Some(one_of(key, text()?, &SOURCES)?),
            "incident" => out.incident = Some(seq()?),
            "contains" => {
                let needle = text()?;
                if needle.is_empty() || needle.len() > MAX_TEXT_BYTES {
                    return Err(ApiError::InvalidArgument(format!(
                        "filter contains: must be 1 to {MAX_TEXT_BYTES} bytes"
                    )));
                }
                out.contains = Some(needle);
            }
            other => {
                return Err(ApiError::InvalidArgument(format!(
                    "filter key {other:?} is unknown; known: after_seq, before_seq, newest_first, verdict, kind, source, contains"
                )))
            }
        }
    }
    Ok(out)
}

/// A text for `Score` or `Submit`: not empty, not oversized.
fn check_text(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::InvalidArgument("the text is empty".into()));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "the text is {} bytes; at most {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

/// Who sent a call: the unique name, and the uid the bus knows for it.
struct Caller {
    sender: String,
    uid: Option<u32>,
}

async fn caller_of(header: &zbus::message::Header<'_>, conn: &zbus::Connection) -> Caller {
    let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
    let uid = match header.sender() {
        Some(name) => match zbus::fdo::DBusProxy::new(conn).await {
            Ok(bus) => bus
                .get_connection_unix_user(zbus::names::BusName::Unique(name.to_owned()))
                .await
                .ok(),
            Err(_) => None,
        },
        None => None,
    };
    Caller { sender, uid }
}

/// How long `MarkBenign` waits for its record to be committed.
const MARK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long `Submit` waits for its event's commit; below the bus clients' usual 25 s call timeout.
const SUBMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

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
    /// The caller may not call this method (admin methods: root and group anomalyd-admin).
    AccessDenied(String),
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
        for (source, threshold) in self.metrics.source_thresholds() {
            out.insert(
                format!("Threshold.{}", source.as_str()),
                owned(Value::F64(threshold)),
            );
        }
        // Zero once shutdown has closed the intake.
        let queue_depth = self.intake().map_or(0, |i| i.queue_depth());
        out.insert("QueueDepth".into(), owned(Value::U64(queue_depth as u64)));
        out.insert(
            "GpuWeightBytes".into(),
            owned(Value::U64(info.hardware.gpu_weight_bytes)),
        );
        out.insert(
            "GpuMemoryUsedBytes".into(),
            owned(Value::U64(info.hardware.gpu_used_bytes)),
        );
        out
    }

    /// Recomputes every hash of the audit chain from a read-only connection (appends go on) and
    /// holds it against the daemon's checkpoint file. Returns a [`ChainReport`]: (ok, records
    /// checked, head seq, head hash hex, first bad seq or 0, what is wrong or "").
    #[zbus(out_args("ok", "records", "head_seq", "head_hash", "bad_seq", "problem"))]
    async fn verify_chain(&self) -> Result<(bool, u64, u64, String, u64, String), ApiError> {
        Ok(self.verify_against(Vec::new()).await?.into())
    }

    /// As `VerifyChain`, also holding the chain against `heads` (seq, hash hex), every one of
    /// them, older ones included: heads a client read from the journal or kept from earlier,
    /// which the daemon's database must contain. At most 100,000 per call.
    #[zbus(out_args("ok", "records", "head_seq", "head_hash", "bad_seq", "problem"))]
    async fn verify_chain_with(
        &self,
        heads: Vec<ChainHead>,
    ) -> Result<(bool, u64, u64, String, u64, String), ApiError> {
        if heads.len() > MAX_HEADS {
            return Err(ApiError::InvalidArgument(format!(
                "{} heads: at most {MAX_HEADS} per call",
                heads.len()
            )));
        }
        let heads = heads
            .into_iter()
            .map(|ChainHead { seq, hash }| {
                format!("{seq}:{hash}")
                    .parse::<crate::audit::Checkpoint>()
                    .map_err(|e| ApiError::InvalidArgument(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.verify_against(heads).await?.into())
    }

    /// Why the event `seq` got its verdict: an [`ExplainReply`], (text, verdict, score or NaN,
    /// threshold or NaN, neighbours). Each neighbour is an [`ExplainNeighbour`], (baseline id,
    /// distance, text, how many events the text stands for now, seq of the record through which
    /// it joined the baseline), nearest first.
    #[zbus(out_args("text", "verdict", "score", "threshold", "neighbours"))]
    async fn explain(
        &self,
        seq: u64,
    ) -> Result<(String, String, f64, f64, Vec<ExplainNeighbour>), ApiError> {
        let explained = self
            .read(move |db| crate::audit::query::explain(db, seq))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no record has seq {seq}")))?;
        let neighbours = explained
            .neighbours
            .into_iter()
            .map(|n| ExplainNeighbour {
                id: n.id,
                distance: n.distance,
                text: n.text,
                count: n.count,
                first_seq: n.first_seq,
            })
            .collect();
        Ok(ExplainReply {
            text: explained.record.text,
            verdict: explained.record.verdict,
            score: explained.record.score.unwrap_or(f64::NAN),
            threshold: explained.threshold.unwrap_or(f64::NAN),
            neighbours,
        }
        .into())
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
        let Caller { sender, uid } = self.admit("MarkBenign", &header, conn).await?;
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
        if !intake.committed(MARK_TIMEOUT).await {
            return Err(ApiError::Busy(format!(
                "the benign mark was queued but not committed within {}s",
                MARK_TIMEOUT.as_secs()
            )));
        }
        // Committed already: a busy read side must not make the caller retry (and mark twice).
        let mark = self
            .read_unbounded(move |db| crate::audit::query::benign_mark_of(db, seq))
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
    /// Admin only.
    async fn retrain(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), ApiError> {
        let caller = self.admit("Retrain", &header, conn).await?;
        tracing::info!(sender = %caller.sender, uid = ?caller.uid, "retrain requested over D-Bus");
        self.intake()?
            .retrain()
            .await
            .map_err(|_| ApiError::Busy("the daemon is shutting down".into()))
    }

    /// The chain's head as committed: a [`ChainHead`], (seq, hash hex); 0 and "" while the log
    /// holds no records.
    #[zbus(out_args("seq", "hash"))]
    async fn head(&self) -> Result<(u64, String), ApiError> {
        let db = std::path::PathBuf::from(&self.info.audit_db);
        let head = tokio::task::spawn_blocking(move || crate::audit::read_head(&db))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(ChainHead::of(head.as_ref()).into())
    }

    /// Anomalies observed at or after `since_usec` (µs since the epoch), oldest first, at most
    /// `limit` (1 to 1000). Returns a [`Page`], (rows, cursor); each row is a [`RecordRow`],
    /// (seq, usec, kind, source, verdict, score, text). A cursor other than 0 means more follow:
    /// continue with `ListEvents(since_usec, limit, {"verdict": "anomaly", "after_seq": cursor})`.
    #[zbus(out_args("rows", "cursor"))]
    async fn list_anomalies(
        &self,
        since_usec: u64,
        limit: i32,
    ) -> Result<(Vec<RecordRow>, u64), ApiError> {
        let filter = ListFilter {
            since_usec,
            verdict: Some("anomaly".into()),
            ..ListFilter::default()
        };
        Ok(self.list(filter, limit).await?.into())
    }

    /// The incidents opened at or after `since_usec`, newest first, at most `limit` (1 to 1000).
    /// Each is an [`IncidentRow`], (first seq, first usec, last seq, last usec, anomalies in it,
    /// source, text, highest score): the record that opened it (and was announced by
    /// `AnomalyDetected`) and the last of its repeats; `ListEvents` with filter `incident` lists
    /// them all.
    async fn list_incidents(
        &self,
        since_usec: u64,
        limit: i32,
    ) -> Result<Vec<IncidentRow>, ApiError> {
        let limit = page_limit(limit)?;
        let incidents = self
            .read(move |db| crate::audit::query::list_incidents(db, since_usec, limit))
            .await?;
        Ok(incidents.into_iter().map(IncidentRow::from).collect())
    }

    /// Records observed at or after `since_usec`, at most `limit` (1 to 1000), filtered by
    /// `filter` (a{sv}; every key optional): verdict (s: normal, anomaly, warmup, suppressed,
    /// none), kind (s: event, benign, import, gap, start, stop, genesis), source (s), contains (s,
    /// a substring of the text), incident (t: the anomalies of the incident that record opened),
    /// newest_first (b), after_seq (t) / before_seq (t) (the cursor
    /// of the previous page, oldest-first / newest-first). Returns a [`Page`], (rows, cursor), as
    /// ListAnomalies does; the cursor is the last row's seq when more follow, else 0.
    #[zbus(out_args("rows", "cursor"))]
    async fn list_events(
        &self,
        since_usec: u64,
        limit: i32,
        filter: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<(Vec<RecordRow>, u64), ApiError> {
        let _slot = self.limits.enter(&connection_of(&header))?;
        let filter = parse_filter(since_usec, &filter)?;
        Ok(self.list(filter, limit).await?.into())
    }

    /// Every field of the record `seq` as a{sv}: Seq, Usec, Kind, Source, Text, Verdict, Score
    /// and Threshold (d, when scored), Fields (s, JSON), Neighbours (a(td): baseline id,
    /// distance), Model, PrevHash and Hash (s, hex).
    async fn get_event(&self, seq: u64) -> Result<HashMap<String, OwnedValue>, ApiError> {
        let r = self
            .read(move |db| crate::audit::query::read_record(db, seq))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no record has seq {seq}")))?;
        let mut out: HashMap<String, OwnedValue> = HashMap::new();
        let mut put = |k: &str, v: Value<'_>| {
            out.insert(k.to_owned(), owned(v));
        };
        put("Seq", Value::U64(r.seq));
        put("Usec", Value::U64(r.ts_usec));
        put("Kind", Value::from(r.kind.as_str()));
        put("Source", Value::from(r.source.as_str()));
        put("Text", Value::from(r.text.as_str()));
        put("Verdict", Value::from(r.verdict.as_str()));
        if let Some(score) = r.score {
            put("Score", Value::F64(score));
        }
        if let Some(threshold) = r.fields.get("threshold").and_then(|v| v.as_f64()) {
            put("Threshold", Value::F64(threshold));
        }
        put(
            "Fields",
            Value::from(serde_json::Value::Object(r.fields.clone()).to_string()),
        );
        put("Neighbours", Value::from(r.neighbours.clone()));
        put("Model", Value::from(r.model.as_str()));
        put("PrevHash", Value::from(hex::encode(&r.prev_hash)));
        put("Hash", Value::from(hex::encode(&r.hash)));
        Ok(out)
    }

    /// Dry run: how `text` would be judged now, against the baseline as it stands. Records,
    /// learns and calibrates nothing. Returns a [`ScoreReply`], (score, verdict, threshold,
    /// neighbours), each neighbour a [`ScoredNeighbour`], (baseline id, distance, text, count).
    /// Suppression rules apply to the source the text's first word names.
    #[zbus(out_args("score", "verdict", "threshold", "neighbours"))]
    async fn score(
        &self,
        text: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<(f64, String, f64, Vec<ScoredNeighbour>), ApiError> {
        check_text(&text)?;
        let _slot = self.limits.enter(&connection_of(&header))?;
        let _dry_run = self
            .limits
            .dry_runs
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                ApiError::Busy(format!(
                    "{MAX_DRY_RUNS} dry runs are in flight; retry shortly"
                ))
            })?;
        // Every failure is Busy: the pipeline is stopping, slow, or could not embed or score this
        // one text, and a later call may well be answered.
        let dry = self
            .intake()?
            .score(text, SCORE_TIMEOUT)
            .await
            .map_err(|e| ApiError::Busy(e.to_string()))?;
        let neighbours = dry
            .neighbours
            .into_iter()
            .map(|n| ScoredNeighbour {
                id: n.id,
                distance: f64::from(n.distance),
                text: n.text,
                count: n.count,
            })
            .collect();
        Ok(ScoreReply {
            score: f64::from(dry.score),
            verdict: dry.verdict.as_str().to_owned(),
            threshold: f64::from(dry.threshold),
            neighbours,
        }
        .into())
    }

    /// Ingests an event from another agent: `source` (systemd, networkmanager, login1, udisks2,
    /// custom) and its text, which is prefixed with the source's name unless it starts with it.
    /// It is judged and recorded like an observed event, with the caller's uid and unique name
    /// in its fields. Admin only. Busy when the intake queue is full: retry later.
    async fn submit(
        &self,
        source: String,
        text: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), ApiError> {
        let Caller { sender, uid } = self.admit("Submit", &header, conn).await?;
        let Some(parsed) = Source::from_name(&source) else {
            return Err(ApiError::InvalidArgument(format!(
                "source {source:?}: must be one of systemd, networkmanager, login1, udisks2, custom"
            )));
        };
        check_text(&text)?;
        let text = text.trim();
        let canonical = if text
            .strip_prefix(parsed.as_str())
            .is_some_and(|rest| rest.starts_with(' '))
        {
            text.to_owned()
        } else {
            format!("{} {text}", parsed.as_str())
        };
        let mut fields = serde_json::Map::new();
        fields.insert("submitted_by_uid".into(), serde_json::json!(uid));
        fields.insert("submitted_by".into(), serde_json::json!(sender));
        let intake = self.intake()?;
        intake
            .try_submit(Event::observed(parsed, canonical, fields))
            .map_err(|_| ApiError::Busy("the intake queue is full; retry shortly".into()))?;
        // Acknowledged once committed: a caller told "done" can rely on the record existing.
        if !intake.committed(SUBMIT_TIMEOUT).await {
            return Err(ApiError::Busy(format!(
                "the event was queued, but its commit was not confirmed within {}s (the pipeline \
                 is slow or stuck); it may still be committed: look for it (ListEvents) before \
                 submitting it again",
                SUBMIT_TIMEOUT.as_secs()
            )));
        }
        Ok(())
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

    /// Events received from the sources and Submit since start.
    #[zbus(property)]
    fn events_total(&self) -> u64 {
        self.metrics.events_received.load(Relaxed)
    }

    /// Events judged anomalous since start.
    #[zbus(property)]
    fn anomalies_total(&self) -> u64 {
        self.metrics.anomalies.load(Relaxed)
    }

    /// Events dropped because a queue was full, since start (each is accounted for by a gap
    /// record).
    #[zbus(property)]
    fn dropped_total(&self) -> u64 {
        self.metrics.events_dropped.load(Relaxed)
    }

    /// The alert threshold now (calibrated or fixed).
    #[zbus(property)]
    fn threshold(&self) -> f64 {
        f64::from_bits(self.metrics.threshold_bits.load(Relaxed))
    }

    /// The NUMA node the daemon is bound to; -1 while unbound.
    #[zbus(property(emits_changed_signal = "const"))]
    fn numa_node(&self) -> i32 {
        self.info.hardware.numa_node
    }

    /// The CPUs the daemon may run on, as a list such as "0-15".
    #[zbus(property(emits_changed_signal = "const"))]
    fn cpu_set(&self) -> String {
        self.info.hardware.cpuset.clone()
    }

    /// Emitted once per anomaly that opens an incident (the first of its text, or the first
    /// since its incident closed), after its record is committed.
    #[zbus(signal)]
    pub async fn anomaly_detected(
        emitter: &SignalEmitter<'_>,
        seq: u64,
        usec: u64,
        source: &str,
        text: &str,
        score: f64,
    ) -> zbus::Result<()>;

    /// Emitted once per anomaly that repeats an open incident, after its record is committed:
    /// `incident` is the seq of the record that opened it (and announced it with
    /// `AnomalyDetected`), `repeat` counts its repeats from 1.
    #[zbus(signal)]
    pub async fn anomaly_repeated(
        emitter: &SignalEmitter<'_>,
        seq: u64,
        usec: u64,
        source: &str,
        text: &str,
        score: f64,
        incident: u64,
        repeat: u64,
    ) -> zbus::Result<()>;
}

/// Emits PropertiesChanged for EventsTotal, AnomaliesTotal, DroppedTotal and Threshold at most
/// once per `period`, for those that changed. Runs until aborted.
pub async fn publish_property_changes(conn: zbus::Connection, period: Duration) {
    let iface = match conn
        .object_server()
        .interface::<_, DetectorApi>(OBJECT_PATH)
        .await
    {
        Ok(iface) => iface,
        Err(e) => {
            tracing::error!(error = %e, "cannot publish property changes");
            return;
        }
    };
    let mut last = iface.get().await.live_properties();
    loop {
        tokio::time::sleep(period).await;
        let api = iface.get().await;
        let now = api.live_properties();
        let emitter = iface.signal_emitter();
        let mut emitted = Vec::new();
        if now[0] != last[0] {
            emitted.push(api.events_total_changed(emitter).await);
        }
        if now[1] != last[1] {
            emitted.push(api.anomalies_total_changed(emitter).await);
        }
        if now[2] != last[2] {
            emitted.push(api.dropped_total_changed(emitter).await);
        }
        if now[3] != last[3] {
            emitted.push(api.threshold_changed(emitter).await);
        }
        for e in emitted.into_iter().filter_map(Result::err) {
            tracing::warn!(error = %e, "could not emit PropertiesChanged");
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A method call whose body is `body`, serialised as a reply's would be.
    fn message_of<B: Serialize + Type>(body: &B) -> zbus::Message {
        zbus::Message::method_call(OBJECT_PATH, "Test")
            .unwrap()
            .build(body)
            .unwrap()
    }

    /// `reply`, sent as the tuple `W` the interface returns, has the body signature `signature`
    /// (as docs/dbus-api.md documents it), and a client reads that body back as the named type.
    fn round_trip<T, W>(reply: T, signature: &str)
    where
        T: Clone + std::fmt::Debug + PartialEq + Into<W> + for<'d> Deserialize<'d> + Type,
        W: Serialize + Type,
    {
        let wire: W = reply.clone().into();
        let msg = message_of(&wire);
        let body = msg.body();
        assert_eq!(body.signature().to_string_no_parens(), signature);
        let back: T = body.deserialize().unwrap();
        assert_eq!(back, reply);
    }

    fn row(seq: u64) -> RecordRow {
        RecordRow {
            seq,
            usec: 1_700_000_000_000_000 + seq,
            kind: "event".into(),
            source: "systemd".into(),
            verdict: "anomaly".into(),
            score: 0.25,
            text: format!("systemd unit u{seq}.service ActiveState=failed"),
        }
    }

    #[test]
    fn element_types_keep_their_struct_signatures() {
        // The signatures the tuples these types replaced had: the wire format is unchanged.
        for (named, tuple, wire) in [
            (
                RecordRow::SIGNATURE,
                <(u64, u64, String, String, String, f64, String)>::SIGNATURE,
                "(ttsssds)",
            ),
            (
                IncidentRow::SIGNATURE,
                <(u64, u64, u64, u64, u64, String, String, f64)>::SIGNATURE,
                "(tttttssd)",
            ),
            (
                ScoredNeighbour::SIGNATURE,
                <(u64, f64, String, u64)>::SIGNATURE,
                "(tdst)",
            ),
            (
                ExplainNeighbour::SIGNATURE,
                <(u64, f64, String, u64, u64)>::SIGNATURE,
                "(tdstt)",
            ),
            (ChainHead::SIGNATURE, <(u64, String)>::SIGNATURE, "(ts)"),
        ] {
            assert_eq!(named.to_string(), wire);
            assert_eq!(tuple.to_string(), wire);
        }
        // VerifyChainWith's argument.
        assert_eq!(<Vec<ChainHead>>::SIGNATURE.to_string(), "a(ts)");
    }

    #[test]
    fn replies_are_several_out_arguments_that_read_back_as_named_structs() {
        round_trip::<Page, (Vec<RecordRow>, u64)>(
            Page {
                rows: vec![row(7), row(9)],
                cursor: 9,
            },
            "a(ttsssds)t",
        );
        round_trip::<ScoreReply, (f64, String, f64, Vec<ScoredNeighbour>)>(
            ScoreReply {
                score: 0.5,
                verdict: "anomaly".into(),
                threshold: 0.1,
                neighbours: vec![ScoredNeighbour {
                    id: 3,
                    distance: 0.5,
                    text: "systemd unit nginx.service ActiveState=active".into(),
                    count: 12,
                }],
            },
            "dsda(tdst)",
        );
        round_trip::<ExplainReply, (String, String, f64, f64, Vec<ExplainNeighbour>)>(
            ExplainReply {
                text: "systemd unit cron.service ActiveState=failed".into(),
                verdict: "anomaly".into(),
                score: 0.4,
                threshold: 0.05,
                neighbours: vec![ExplainNeighbour {
                    id: 1,
                    distance: 0.4,
                    text: "systemd unit cron.service ActiveState=active".into(),
                    count: 2,
                    first_seq: 5,
                }],
            },
            "ssdda(tdstt)",
        );
        round_trip::<ChainReport, (bool, u64, u64, String, u64, String)>(
            ChainReport {
                ok: false,
                records: 41,
                head_seq: 41,
                head_hash: "ab".repeat(32),
                bad_seq: 42,
                problem: "the hash does not match".into(),
            },
            "bttsts",
        );
        round_trip::<ChainHead, (u64, String)>(
            ChainHead {
                seq: 41,
                hash: "cd".repeat(32),
            },
            "ts",
        );
        // ListIncidents' reply is one array.
        let incidents = vec![IncidentRow {
            first_seq: 10,
            first_usec: 1,
            last_seq: 12,
            last_usec: 3,
            anomalies: 3,
            source: "systemd".into(),
            text: "systemd unit cron.service ActiveState=failed".into(),
            max_score: 0.75,
        }];
        let msg = message_of(&incidents);
        let body = msg.body();
        assert_eq!(body.signature().to_string_no_parens(), "a(tttttssd)");
        assert_eq!(body.deserialize::<Vec<IncidentRow>>().unwrap(), incidents);
    }

    #[test]
    fn signal_bodies_read_back_as_named_structs() {
        // What the signal methods send: their arguments after the emitter, in order.
        let detected = message_of(&(7u64, 100u64, "systemd", "systemd unit x failed", 0.5f64));
        let detected_body = detected.body();
        assert_eq!(detected_body.signature().to_string_no_parens(), "ttssd");
        assert_eq!(
            detected_body.deserialize::<AnomalyDetectedArgs>().unwrap(),
            AnomalyDetectedArgs {
                seq: 7,
                usec: 100,
                source: "systemd".into(),
                text: "systemd unit x failed".into(),
                score: 0.5,
            }
        );
        let repeated = message_of(&(
            9u64,
            200u64,
            "systemd",
            "systemd unit x failed",
            0.6f64,
            7u64,
            2u64,
        ));
        let repeated_body = repeated.body();
        assert_eq!(repeated_body.signature().to_string_no_parens(), "ttssdtt");
        assert_eq!(
            repeated_body.deserialize::<AnomalyRepeatedArgs>().unwrap(),
            AnomalyRepeatedArgs {
                seq: 9,
                usec: 200,
                source: "systemd".into(),
                text: "systemd unit x failed".into(),
                score: 0.6,
                incident: 7,
                repeat: 2,
            }
        );
    }
}
