//! The pipeline from intake to audit log: one bounded intake queue, a batcher task, and three
//! stage threads, each the only owner of its state:
//!
//! ```text
//! sources ──Intake──► batcher ──► embed thread ──► detect thread ──► audit thread ──► notices
//!  (tokio)  bounded    (tokio)    (Embedder)       (FAISS index)     (SQLite writer)   (API signals)
//! ```
//!
//! Every channel is bounded, so a slow stage pushes back to the intake queue, whose overflow is
//! counted and written as a gap record instead of growing memory. A [`Flow::Probe`] travels the
//! same channels as the data, so a probe that comes back proves every stage is alive and moving
//! (the systemd watchdog is fed by it). Shutdown is channel closure: when every `Intake` is dropped
//! the batcher flushes, and each stage finishes its input and closes its output in turn.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::audit::{AuditWriter, Checkpoint, CheckpointPolicy, Checkpointer, Committed};
use crate::config::Config;
use crate::detect::{Detector, DryRun};
use crate::embed::{Embedder, EmbeddingCache, Embeddings};
use crate::event::{now_usec, Event, Judged, RecordKind, Source, Verdict};
use crate::incident::{Alert, IncidentEnd, Incidents};
use crate::metrics::Metrics;

/// Batches in flight between two stages: one being worked on, one waiting.
const STAGE_DEPTH: usize = 2;

/// While no event arrives, pending drops are still written as a gap record this often.
const GAP_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot start the {stage} thread: {source}")]
    Spawn {
        stage: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot record the start in the audit log: {0}")]
    StartRecord(#[source] crate::audit::AuditError),
}

/// Why a dry run ([`Intake::score`]) has no answer. Kept apart from [`PipelineError`] (starting),
/// so that each caller matches only what its own call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The intake is closed: the daemon is stopping.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// A stage let go of the request unanswered: it stopped on the way.
    #[error("the pipeline dropped the request")]
    Dropped,
    /// No answer within the caller's timeout (the request is skipped once reached).
    #[error("no answer within {}s", .0.as_secs())]
    TimedOut(Duration),
    /// The text could not be embedded.
    #[error("embedding failed: {0}")]
    Embed(#[source] crate::embed::EmbedError),
    /// The detector could not score it.
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
}

/// What travels between stages.
pub enum Flow<T> {
    Data(T),
    /// Answered by the last stage once everything queued before it has been committed.
    Probe(oneshot::Sender<()>),
    /// Asks the detector to train its index again; goes no further.
    Retrain,
    /// A dry run (`Score`): embedded, scored and answered by the detector; goes no further and
    /// changes nothing.
    Score(ScoreRequest),
}

impl<T> Flow<T> {
    /// A control message re-typed for the next stage's data, or the data itself.
    fn control<U>(self) -> Result<Flow<U>, T> {
        match self {
            Flow::Data(data) => Err(data),
            Flow::Probe(p) => Ok(Flow::Probe(p)),
            Flow::Retrain => Ok(Flow::Retrain),
            Flow::Score(s) => Ok(Flow::Score(s)),
        }
    }
}

/// What `Score` asks: the text, its vector once the embed stage has it, and where the answer goes.
pub struct ScoreRequest {
    pub text: String,
    vector: Option<Vec<f32>>,
    reply: oneshot::Sender<Result<DryRun, ScoreError>>,
}

/// Messages waiting in a queue.
fn depth<T>(tx: &mpsc::Sender<T>) -> usize {
    tx.max_capacity() - tx.capacity()
}

/// How long one shared commit probe may take before its waiters are told it did not come back:
/// a caller may wait for two (the one in flight when it joined, then its own), well within the
/// API's timeouts.
const COMMIT_PROBE_TIMEOUT: Duration = Duration::from_secs(9);

/// The door into the pipeline; sources and the API hold clones. Never blocks.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Flow<Event>>,
    metrics: Arc<Metrics>,
    commits: Arc<CommitWaiters>,
}

/// Callers waiting for what they queued to be committed, served by one probe for all of them:
/// a probe cuts the batch being filled, so one per caller would shrink batches under load.
#[derive(Default)]
struct CommitWaiters {
    state: std::sync::Mutex<CommitState>,
}

#[derive(Default)]
struct CommitState {
    waiting: Vec<oneshot::Sender<bool>>,
    probing: bool,
}

impl Intake {
    /// Queues an event; when the queue is full the event is dropped, counted, and later reported
    /// by a gap record, so intake never blocks the bus.
    pub fn submit(&self, event: Event) {
        self.metrics.count_event(event.source);
        match self.tx.try_send(Flow::Data(event)) {
            Ok(()) => self.note_depth(),
            Err(full) => {
                if let Flow::Data(event) = full.into_inner() {
                    self.note_drop(event.source, event.observed_usec);
                }
            }
        }
    }

    /// Events waiting in the intake queue now.
    pub fn queue_depth(&self) -> usize {
        depth(&self.tx)
    }

    /// Reads the queue's depth without keeping the queue open: the pipeline drains once every
    /// `Intake` is gone, which a reader (the metrics exposition) must not prevent.
    pub fn depth_reader(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let weak = self.tx.downgrade();
        move || weak.upgrade().map_or(0, |tx| depth(&tx) as u64)
    }

    fn note_depth(&self) {
        self.metrics
            .queue_depth_peak
            .fetch_max(self.queue_depth() as u64, Relaxed);
    }

    /// Counts an event lost before it reached this queue (a source's own queue was full); the
    /// next gap record accounts for it.
    pub fn note_drop(&self, source: Source, observed_usec: u64) {
        self.metrics.events_dropped.fetch_add(1, Relaxed);
        self.metrics.gaps.note(source, observed_usec);
    }

    /// A bare intake queue of `capacity` and its receiving end, for benchmarks and tests that
    /// drive the sources without the rest of the pipeline.
    pub fn channel(
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Intake, mpsc::Receiver<Flow<Event>>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Intake {
                tx,
                metrics,
                commits: Arc::default(),
            },
            rx,
        )
    }

    /// Queues an event, waiting for room: for the API's own records (a benign mark), which must
    /// not be dropped. Fails only when the pipeline is gone.
    pub async fn submit_wait(&self, event: Event) -> Result<(), ()> {
        self.tx.send(Flow::Data(event)).await.map_err(|_| ())
    }

    /// Queues an event unless the queue is full, handing it back then: for the API's `Submit`,
    /// whose caller is told to retry rather than have the event dropped.
    pub fn try_submit(&self, event: Event) -> Result<(), Event> {
        let source = event.source;
        match self.tx.try_send(Flow::Data(event)) {
            Ok(()) => {
                self.metrics.count_event(source);
                self.note_depth();
                Ok(())
            }
            Err(refused) => match refused.into_inner() {
                Flow::Data(event) => Err(event),
                _ => unreachable!("only data was sent"),
            },
        }
    }

    /// Scores `text` as the detector would judge it now, recording and learning nothing. It
    /// queues behind the events before it; `Err` says why there is no answer.
    pub async fn score(&self, text: String, timeout: Duration) -> Result<DryRun, ScoreError> {
        let (reply, answer) = oneshot::channel();
        let request = ScoreRequest {
            text,
            vector: None,
            reply,
        };
        let round_trip = async {
            self.tx
                .send(Flow::Score(request))
                .await
                .map_err(|_| ScoreError::ShuttingDown)?;
            answer.await.map_err(|_| ScoreError::Dropped)?
        };
        tokio::time::timeout(timeout, round_trip)
            .await
            .map_err(|_| ScoreError::TimedOut(timeout))?
    }

    /// Asks the detector to retrain its index. Fails only when the pipeline is gone.
    pub async fn retrain(&self) -> Result<(), ()> {
        self.tx.send(Flow::Retrain).await.map_err(|_| ())
    }

    /// Waits until everything this caller queued before the call has been committed; false when
    /// that is not known within `timeout` (it may still commit). Callers waiting at once share
    /// one probe: each joins the waiters after queuing its event, and a probe serves only the
    /// waiters that were there before it was sent.
    pub async fn committed(&self, timeout: Duration) -> bool {
        let (reply, answer) = oneshot::channel();
        let start_prober = {
            let Ok(mut state) = self.commits.state.lock() else {
                return false;
            };
            state.waiting.push(reply);
            !std::mem::replace(&mut state.probing, true)
        };
        if start_prober {
            let intake = self.clone();
            tokio::spawn(async move {
                loop {
                    let waiting = match intake.commits.state.lock() {
                        Ok(mut state) if state.waiting.is_empty() => {
                            state.probing = false;
                            break;
                        }
                        Ok(mut state) => std::mem::take(&mut state.waiting),
                        Err(_) => break,
                    };
                    let done = intake.probe(COMMIT_PROBE_TIMEOUT).await;
                    for reply in waiting {
                        let _ = reply.send(done);
                    }
                }
            });
        }
        tokio::time::timeout(timeout, answer)
            .await
            .is_ok_and(|done| done.unwrap_or(false))
    }

    /// Sends a probe through every stage; true when it comes back within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> bool {
        let (reply, answer) = oneshot::channel();
        let round_trip =
            async { self.tx.send(Flow::Probe(reply)).await.is_ok() && answer.await.is_ok() };
        tokio::time::timeout(timeout, round_trip)
            .await
            .unwrap_or(false)
    }
}

/// Handles to the running stages; [`Pipeline::finish`] waits for them to drain.
pub struct Pipeline {
    batcher: tokio::task::JoinHandle<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub embedder_backend: String,
    pub model_id: String,
    pub index_description: String,
}

impl Pipeline {
    /// Starts the stages. `embedder` has passed its health check; `detector` holds the restored
    /// baseline; `audit` is open at the chain's head. Committed anomalies are sent to `notices` (dropped if the receiver lags).
    pub fn start(
        config: &Config,
        embedder: Box<dyn Embedder>,
        detector: Detector,
        audit: AuditWriter,
        metrics: Arc<Metrics>,
        notices: mpsc::Sender<Committed>,
    ) -> Result<(Intake, Pipeline), PipelineError> {
        let (intake_tx, intake_rx) = mpsc::channel(config.sources.queue_capacity);
        let (batch_tx, batch_rx) = mpsc::channel(STAGE_DEPTH);
        let (embedded_tx, embedded_rx) = std::sync::mpsc::sync_channel(STAGE_DEPTH);
        let (judged_tx, judged_rx) = std::sync::mpsc::sync_channel(STAGE_DEPTH);

        let embedder_backend = embedder.backend();
        let embedder_model = embedder.model_id();
        let mut threads = Vec::new();

        let index_description = detector.description().to_owned();
        let baseline_len = detector.baseline_len();
        let model_id = format!("{embedder_model}+{index_description}");
        let start_fields = {
            let mut f = Map::new();
            f.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
            f.insert("pid".into(), json!(std::process::id()));
            // The uid it ran as, for whoever reads its journal entries on another host.
            // SAFETY: getuid has no preconditions and cannot fail.
            f.insert("uid".into(), json!(unsafe { libc::getuid() }));
            f.insert("embedder".into(), json!(embedder_backend));
            f.insert("model".into(), json!(model_id));
            f.insert("baseline".into(), json!(baseline_len));
            f.insert(
                "suppress".into(),
                json!(config
                    .detector
                    .suppress
                    .iter()
                    .map(|r| r.describe())
                    .collect::<Vec<_>>()),
            );
            f
        };
        // Committed here, before any stage runs: a chain that cannot take its start record (a
        // full disk, a read-only file) fails the start, rather than READY followed by a stage
        // retrying for ever.
        let mut audit = audit;
        let started = audit
            .append(
                &[Judged::unscored(Event::daemon(
                    RecordKind::Start,
                    "anomalyd start".to_owned(),
                    start_fields,
                ))],
                &model_id,
            )
            .map_err(PipelineError::StartRecord)?;

        let detect_metrics = metrics.clone();
        threads.push(spawn("detect", move || {
            detect_stage(detector, embedded_rx, judged_tx, &detect_metrics);
        })?);

        let embed_metrics = metrics.clone();
        let cache = EmbeddingCache::new(config.embedder.cache_entries);
        threads.push(spawn("embed", move || {
            embed_stage(embedder, cache, batch_rx, embedded_tx, &embed_metrics)
        })?);

        let audit_metrics = metrics.clone();
        let audit_model = model_id.clone();
        let checkpointer = Checkpointer::new(
            CheckpointPolicy {
                every_records: config.audit.checkpoint_records,
                interval: config.audit.checkpoint_interval,
                file: config.checkpoint_path(),
            },
            audit.head().0,
        );
        let incidents = audit
            .open_incidents(config.detector.incident_quiet)
            .unwrap_or_else(|e| {
                warn!(error = %e, "could not read the open incidents; starting with none");
                Incidents::new(config.detector.incident_quiet.as_micros() as u64)
            });
        threads.push(spawn("audit", move || {
            audit_stage(
                checkpointer,
                incidents,
                audit,
                &audit_model,
                started,
                judged_rx,
                notices,
                &audit_metrics,
            )
        })?);

        let batcher = tokio::spawn(batcher(
            intake_rx,
            batch_tx,
            config.embedder.batch_size,
            config.embedder.batch_max_wait,
            metrics.clone(),
        ));
        Ok((
            Intake {
                tx: intake_tx,
                metrics,
                commits: Arc::default(),
            },
            Pipeline {
                batcher,
                threads,
                embedder_backend,
                model_id,
                index_description,
            },
        ))
    }

    /// Waits until every stage has drained and the audit thread has written its stop record.
    /// Call after every [`Intake`] has been dropped.
    pub async fn finish(self) {
        let _ = self.batcher.await;
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

fn spawn(
    stage: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, PipelineError> {
    std::thread::Builder::new()
        .name(format!("anomalyd-{stage}"))
        .spawn(f)
        .map_err(|source| PipelineError::Spawn { stage, source })
}

/// How far past `batch_size` a batch may grow with events that are already queued (never by
/// waiting): when the intake queue is behind, one batch's fixed costs (a commit, a search call, a
/// model pass for its cache misses) are shared by more events. At 1% novel texts, flat out on two
/// cores, this took the daemon from 7,200 to 12,100 events/s (benches/README.md, "End to end").
const BACKLOG_FACTOR: usize = 16;

/// Groups events into batches of up to `batch_size`, waiting at most `max_wait` after the first;
/// up to `BACKLOG_FACTOR` times as many when that many are already waiting.
async fn batcher(
    mut intake: mpsc::Receiver<Flow<Event>>,
    out: mpsc::Sender<Flow<Vec<Event>>>,
    batch_size: usize,
    max_wait: Duration,
    metrics: Arc<Metrics>,
) {
    let mut batch: Vec<Event> = Vec::with_capacity(batch_size);
    let mut open = true;
    while open {
        let first = match tokio::time::timeout(GAP_FLUSH_INTERVAL, intake.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => break,
            Err(_idle) => {
                // Nothing arrived: a pending gap is written now rather than with the next event.
                if !flush(&mut batch, &out, &metrics).await {
                    return;
                }
                continue;
            }
        };
        // A control message closes the batch and follows it, keeping its place in the order.
        let mut control = None;
        match first {
            Flow::Data(e) => batch.push(e),
            other => control = Some(other),
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        while control.is_none() && batch.len() < batch_size {
            match tokio::time::timeout_at(deadline, intake.recv()).await {
                Ok(Some(Flow::Data(e))) => batch.push(e),
                Ok(Some(other)) => control = Some(other),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_deadline) => break,
            }
        }
        while control.is_none() && open && batch.len() < batch_size * BACKLOG_FACTOR {
            match intake.try_recv() {
                Ok(Flow::Data(e)) => batch.push(e),
                Ok(other) => control = Some(other),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if !flush(&mut batch, &out, &metrics).await {
            return;
        }
        if let Some(Ok(control)) = control.map(Flow::control) {
            if out.send(control).await.is_err() {
                return;
            }
        }
    }
    flush(&mut batch, &out, &metrics).await;
}

/// Sends the batch on, preceded by a gap record when events were dropped since the last one.
/// False when the next stage is gone.
async fn flush(
    batch: &mut Vec<Event>,
    out: &mpsc::Sender<Flow<Vec<Event>>>,
    metrics: &Metrics,
) -> bool {
    if let Some(gap) = metrics.gaps.take() {
        let sources: Vec<&str> = gap.by_source.keys().copied().collect();
        warn!(
            dropped = gap.dropped,
            sources = %sources.join(","),
            "queues overflowed; writing a gap record"
        );
        let mut fields = Map::new();
        fields.insert("dropped".into(), json!(gap.dropped));
        fields.insert("first_usec".into(), json!(gap.first_usec));
        fields.insert("last_usec".into(), json!(gap.last_usec));
        fields.insert("sources".into(), json!(gap.by_source));
        batch.insert(
            0,
            Event::daemon(
                RecordKind::Gap,
                format!(
                    "anomalyd gap dropped={} sources={}",
                    gap.dropped,
                    sources.join(",")
                ),
                fields,
            ),
        );
    }
    if batch.is_empty() {
        return true;
    }
    out.send(Flow::Data(std::mem::take(batch))).await.is_ok()
}

type EmbeddedBatch = (Vec<Event>, Option<Embeddings>);

fn embed_stage(
    mut embedder: Box<dyn Embedder>,
    mut cache: EmbeddingCache,
    mut input: mpsc::Receiver<Flow<Vec<Event>>>,
    output: std::sync::mpsc::SyncSender<Flow<EmbeddedBatch>>,
    metrics: &Metrics,
) {
    while let Some(message) = input.blocking_recv() {
        let forwarded = match message {
            Flow::Probe(p) => Flow::Probe(p),
            Flow::Retrain => Flow::Retrain,
            // A caller that has gone (timed out, disconnected) gets no work done for it.
            Flow::Score(request) if request.reply.is_closed() => continue,
            Flow::Score(mut request) => {
                match cache.embed(embedder.as_mut(), &[request.text.as_str()]) {
                    Ok((v, _)) => request.vector = Some(v.data),
                    Err(e) => {
                        let _ = request.reply.send(Err(ScoreError::Embed(e)));
                        continue;
                    }
                }
                Flow::Score(request)
            }
            Flow::Data(events) => {
                let texts: Vec<&str> = events
                    .iter()
                    .filter(|e| e.kind.needs_vector())
                    .map(|e| e.text.as_str())
                    .collect();
                let started = std::time::Instant::now();
                let embedded = cache.embed(embedder.as_mut(), &texts);
                metrics
                    .embed_duration
                    .observe(started.elapsed().as_secs_f64());
                let vectors = match embedded {
                    Ok((v, lookups)) => {
                        metrics.embed_cache_hits.fetch_add(lookups.hits, Relaxed);
                        metrics
                            .embed_cache_misses
                            .fetch_add(lookups.misses, Relaxed);
                        Some(v)
                    }
                    Err(e) => {
                        metrics.embed_errors.fetch_add(1, Relaxed);
                        error!(error = %e, events = texts.len(), "embedding failed; recording the batch unscored");
                        None
                    }
                };
                Flow::Data((events, vectors))
            }
        };
        if output.send(forwarded).is_err() {
            break;
        }
    }
    info!(
        hit_rate = format!("{:.1}%", cache.hit_rate() * 100.0),
        entries = cache.len(),
        "embedding cache at stop"
    );
}

fn detect_stage(
    mut detector: Detector,
    input: std::sync::mpsc::Receiver<Flow<EmbeddedBatch>>,
    output: std::sync::mpsc::SyncSender<Flow<Vec<Judged>>>,
    metrics: &Metrics,
) {
    for message in input {
        let forwarded = match message {
            Flow::Probe(p) => Flow::Probe(p),
            Flow::Retrain => {
                info!("retrain requested");
                detector.request_retrain();
                detector.maintain();
                continue;
            }
            Flow::Score(request) if request.reply.is_closed() => continue,
            Flow::Score(request) => {
                let vector = request.vector.unwrap_or_default();
                let answer = detector
                    .dry_run(&request.text, &vector)
                    .map_err(ScoreError::Detect);
                let _ = request.reply.send(answer);
                continue;
            }
            Flow::Data((events, vectors)) => {
                let judged = match vectors {
                    Some(v) => match detector.judge(events, &v) {
                        Ok(j) => j,
                        Err(failed) => {
                            error!(error = %failed.error, "scoring failed; recording the batch unscored");
                            unscored(failed.events)
                        }
                    },
                    None => unscored(events),
                };
                detector.maintain();
                metrics
                    .baseline_size
                    .store(detector.baseline_len(), Relaxed);
                metrics.index_swaps.store(detector.index_swaps(), Relaxed);
                metrics.store_thresholds(detector.threshold(), &detector.thresholds());
                metrics
                    .index_drift_permille
                    .store(detector.index_drift_permille(), Relaxed);
                Flow::Data(judged)
            }
        };
        if output.send(forwarded).is_err() {
            break;
        }
    }
    // Every batch the detector judged is on its way to the audit stage, which commits it before
    // its stop record; the table and the snapshot then agree.
    if let Err(e) = detector.save_snapshot() {
        error!(error = %e, "could not write the baseline snapshot at stop");
    }
}

fn unscored(events: Vec<Event>) -> Vec<Judged> {
    events.into_iter().map(Judged::unscored).collect()
}

#[allow(clippy::too_many_arguments)]
fn audit_stage(
    mut checkpointer: Checkpointer,
    mut incidents: Incidents,
    mut audit: AuditWriter,
    model: &str,
    started: Vec<Committed>,
    input: std::sync::mpsc::Receiver<Flow<Vec<Judged>>>,
    notices: mpsc::Sender<Committed>,
    metrics: &Metrics,
) {
    let daemon_record = |kind: RecordKind, text: &str, fields: Map<String, serde_json::Value>| {
        Judged::unscored(Event::daemon(kind, text.to_owned(), fields))
    };
    account(&started, &notices, metrics);
    let (seq, hash) = audit.head();
    crate::journal::started(seq, &hash, env!("CARGO_PKG_VERSION"), model);
    for message in input {
        match message {
            Flow::Probe(reply) => {
                if let Err(e) = audit.ping() {
                    error!(error = %e, "health probe: audit database does not answer");
                    continue;
                }
                let _ = reply.send(());
            }
            Flow::Retrain | Flow::Score(_) => {}
            Flow::Data(mut judged) => {
                let closed = attach_incidents(&mut incidents, &mut judged, audit.head().0);
                let committed = commit(&mut audit, model, &judged, &notices, metrics);
                for (seq, first, end) in closed {
                    if let Some(record) = committed.iter().find(|c| c.seq == seq) {
                        crate::journal::incident_closed(
                            seq,
                            &record.hash,
                            first,
                            &record.text,
                            end,
                        );
                    }
                }
            }
        }
        checkpointer.maybe(head_of(&audit));
    }
    commit(
        &mut audit,
        model,
        &[daemon_record(RecordKind::Stop, "anomalyd stop", Map::new())],
        &notices,
        metrics,
    );
    checkpointer.finish(head_of(&audit));
    let (seq, hash) = audit.head();
    crate::journal::stopped(seq, &hash);
}

/// Names each anomaly's incident in its fields before the batch is hashed: `incident` (the seq
/// of the record that opened it; its own when it opens one) and, for a repeat, `repeat` (1, 2,
/// …). A benign mark closes the incident of its text, and so does an event that joined as
/// periodic (`Judged::periodic`'s `incident` names it). The batch's records take the seqs after
/// `head_seq`, in order (a failed commit is retried with the same batch and the same seqs).
/// Returns the records that closed an open incident: (the record's seq, the incident's, why).
fn attach_incidents(
    incidents: &mut Incidents,
    batch: &mut [Judged],
    head_seq: u64,
) -> Vec<(u64, u64, IncidentEnd)> {
    let mut closed = Vec::new();
    for (i, judged) in batch.iter_mut().enumerate() {
        let seq = head_seq + 1 + i as u64;
        if judged.event.kind == RecordKind::Benign {
            // An incident already closed by staying quiet is not closed again by the mark.
            incidents.expire(judged.event.observed_usec);
            if let Some(first) = incidents.close(&judged.event.text) {
                closed.push((seq, first, IncidentEnd::Benign));
            }
            continue;
        }
        if let Some(periodic) = judged.periodic.as_mut() {
            // Joined as periodic: its incident ends here, and the record names it.
            incidents.expire(judged.event.observed_usec);
            if let Some(first) = incidents.close(&judged.event.text) {
                periodic.incident = Some(first);
                closed.push((seq, first, IncidentEnd::Periodic));
            }
            continue;
        }
        if judged.verdict != Verdict::Anomaly {
            continue;
        }
        let fields = &mut judged.event.fields;
        match incidents.observe(&judged.event.text, seq, judged.event.observed_usec) {
            Alert::Opens => {
                fields.insert("incident".into(), json!(seq));
                // Whatever the signal carried under that name, this is no repeat.
                fields.remove("repeat");
            }
            Alert::RepeatOf { first, repeat } => {
                fields.insert("incident".into(), json!(first));
                fields.insert("repeat".into(), json!(repeat));
            }
        }
    }
    closed
}

fn head_of(audit: &AuditWriter) -> Checkpoint {
    let (seq, hash) = audit.head();
    Checkpoint { seq, hash }
}

/// Commits a batch, retrying with back-off until SQLite takes it: accepted events are not
/// discarded on a transient error (disk full, a locked file). While it retries the health probe
/// cannot pass, so systemd's watchdog sees the stall.
fn commit(
    audit: &mut AuditWriter,
    model: &str,
    batch: &[Judged],
    notices: &mpsc::Sender<Committed>,
    metrics: &Metrics,
) -> Vec<Committed> {
    let mut backoff = Duration::from_millis(50);
    let committed = loop {
        match audit.append(batch, model) {
            Ok(c) => break c,
            Err(e) => {
                metrics.audit_retries.fetch_add(1, Relaxed);
                error!(error = %e, records = batch.len(), retry_in_ms = backoff.as_millis() as u64, "audit append failed");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    account(&committed, notices, metrics);
    committed
}

/// Everything that follows a commit: counters, latencies, the journal's anomaly entries, the
/// notices for the API's signals.
fn account(committed: &[Committed], notices: &mpsc::Sender<Committed>, metrics: &Metrics) {
    let now = now_usec();
    if let Some(oldest) = committed
        .iter()
        .filter(|c| c.verdict != Verdict::NotScored)
        .map(|c| c.ts_usec)
        .min()
    {
        metrics
            .last_batch_latency_usec
            .store(now.saturating_sub(oldest), Relaxed);
    }
    for record in committed.iter().filter(|c| c.verdict != Verdict::NotScored) {
        metrics
            .commit_latency
            .observe(now.saturating_sub(record.ts_usec) as f64 / 1e6);
    }
    metrics.batches.fetch_add(1, Relaxed);
    metrics
        .records_written
        .fetch_add(committed.len() as u64, Relaxed);
    if let Some(last) = committed.last() {
        metrics.head_seq.store(last.seq, Relaxed);
    }
    for record in committed {
        let score = record.score.unwrap_or(f32::NAN) as f64;
        if record.verdict == Verdict::Suppressed {
            metrics.suppressed.fetch_add(1, Relaxed);
        }
        if record.verdict == Verdict::Anomaly {
            metrics.count_anomaly(record.source);
            let (incident, repeat) = record.incident.unwrap_or((record.seq, 0));
            if repeat == 0 {
                metrics.incidents.fetch_add(1, Relaxed);
            }
            crate::journal::anomaly(&crate::journal::AnomalyEntry {
                seq: record.seq,
                source: record.source.as_str(),
                text: &record.text,
                score,
                threshold: record.threshold,
                hash: &record.hash,
                incident,
                repeat,
            });
            if notices.try_send(record.clone()).is_err() {
                debug!("anomaly notice dropped: the API is not keeping up");
            }
        } else {
            debug!(
                seq = record.seq,
                source = record.source.as_str(),
                score,
                verdict = record.verdict.as_str(),
                text = %record.text,
                "event recorded"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Synchronous;

    fn event(i: usize) -> Flow<Event> {
        Flow::Data(Event::observed(
            Source::Systemd,
            format!("systemd unit u{i}.service ActiveState=active"),
            Map::new(),
        ))
    }

    async fn next_batch(out: &mut mpsc::Receiver<Flow<Vec<Event>>>) -> Option<usize> {
        match tokio::time::timeout(Duration::from_secs(10), out.recv()).await {
            Ok(Some(Flow::Data(batch))) => Some(batch.len()),
            Ok(None) => None,
            Ok(Some(_)) => panic!("only data was sent"),
            Err(_) => panic!("the batcher waited instead of taking what was queued"),
        }
    }

    /// An anomaly of `text`, or (`periodic`) its join as periodic, as the detector hands them on.
    fn judged(text: &str, periodic: bool, joined: Option<u64>) -> Judged {
        let event = Event::observed(Source::Systemd, text.to_owned(), Map::new());
        Judged {
            event,
            score: Some(0.4),
            verdict: if periodic {
                Verdict::Normal
            } else {
                Verdict::Anomaly
            },
            neighbours: Vec::new(),
            joined,
            periodic: periodic.then_some(crate::event::Periodic {
                hours: 12,
                incident: None,
            }),
        }
    }

    #[test]
    fn a_periodic_join_closes_its_incident_in_the_chain_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.sqlite");
        let hourly = "systemd job quota-report.service result=done";
        let other = "systemd unit smbd.service ActiveState=failed";
        let mut audit = AuditWriter::open(&db, Synchronous::Full, "test").unwrap();
        let mut incidents = Incidents::new(0);
        let mut batch = vec![
            judged(hourly, false, None),
            judged(other, false, None),
            judged(hourly, false, None),
            judged(hourly, true, Some(0)),
        ];
        let head = audit.head().0;
        let closed = attach_incidents(&mut incidents, &mut batch, head);
        assert_eq!(closed, [(head + 4, head + 1, IncidentEnd::Periodic)]);
        assert_eq!(batch[0].event.fields["incident"], json!(head + 1));
        assert_eq!(batch[2].event.fields["repeat"], json!(1));
        assert_eq!(
            batch[3].periodic.unwrap().incident,
            Some(head + 1),
            "the periodic join names the incident it closes"
        );
        assert_eq!(incidents.len(), 1, "the other incident stays open");
        audit.append(&batch, "test").unwrap();
        drop(audit);

        let audit = AuditWriter::open(&db, Synchronous::Full, "test").unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        let (seq, periodic): (u64, String) = conn
            .query_row(
                "SELECT seq, json_extract(fields, '$.periodic') FROM records
                  WHERE json_extract(fields, '$.periodic') IS NOT NULL",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(seq, head + 4);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&periodic).unwrap(),
            json!({"hours": 12, "incident": head + 1})
        );
        drop(conn);
        let mut reopened = audit.open_incidents(Duration::ZERO).unwrap();
        assert_eq!(reopened.len(), 1, "{reopened:?}");
        assert!(reopened.close(other).is_some());
        assert!(crate::audit::verify::verify(&db, &[]).unwrap().ok());
    }

    #[tokio::test]
    async fn a_backlog_is_taken_in_larger_batches_without_waiting_longer() {
        let (intake, rx) = mpsc::channel(1000);
        let (out_tx, mut out) = mpsc::channel(8);
        for i in 0..100 {
            intake.send(event(i)).await.unwrap();
        }
        // A wait this long would fail the test: every batch below must go without it.
        let task = tokio::spawn(batcher(
            rx,
            out_tx,
            4,
            Duration::from_secs(3600),
            Arc::new(Metrics::default()),
        ));
        assert_eq!(next_batch(&mut out).await, Some(4 * BACKLOG_FACTOR));
        assert_eq!(next_batch(&mut out).await, Some(100 - 4 * BACKLOG_FACTOR));
        intake.send(event(100)).await.unwrap();
        intake.send(event(101)).await.unwrap();
        drop(intake);
        // Fewer than batch_size and the intake closed: flushed at once.
        assert_eq!(next_batch(&mut out).await, Some(2));
        assert_eq!(next_batch(&mut out).await, None);
        task.await.unwrap();
    }
}
