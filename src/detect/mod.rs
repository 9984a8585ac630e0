//! Scoring against the baseline: the vectors of events judged normal, searched through a FAISS
//! index, all owned by the detector thread.
//!
//! Score = `d + w / (1 + ln n)`: `d` is the exact distance to the nearest baseline vector,
//! `‖a − b‖² / 2`, which for unit vectors is `1 − cos(a, b)` (0 for a text seen before, about 1 for
//! an unrelated one); `n` is how many events that nearest text stands for and `w` is
//! `detector.rarity_weight`, so a text seen once before still scores above a heartbeat seen
//! 10,000 times.
//!
//! Two thresholds: an event scoring above the *alert* threshold (fixed, or calibrated, see
//! [`calibration`]) is an anomaly; only an event scoring at most the *join* threshold
//! (`detector.threshold`, also the alert threshold's floor) joins the baseline. A fault therefore
//! never becomes baseline silently, so a recurring fault keeps alerting; it joins through
//! `MarkBenign` (a `benign` record). Events matched by a suppression rule are recorded with their
//! score but neither alert nor join. Each distinct text is stored once, with a count.

mod baseline;
mod calibration;
mod failures;
pub mod gpu;
mod index;
mod programs;
mod recurrence;
mod slots;
pub mod snapshot;

pub use baseline::{Baseline, BaselineRow};
pub use calibration::Calibrator;
pub use index::{auto_description, check_factory, full_description, IndexError, AUTO, EXACT};

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use tracing::{info, warn};

use crate::config::{Config, ConfigError, DetectorConfig, IndexPlacement, SuppressRule};
use crate::embed::{EmbedError, Embedder, Embeddings};
use crate::event::{now_usec, Event, Judged, Periodic, RecordKind, Source, Verdict};
use index::SearchIndex;

/// Embedding dimension as an index.
pub(crate) const DIM: usize = crate::config::EMBEDDING_DIM as usize;
use snapshot::{Header, SnapshotError};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("FAISS index {description:?}: {source}")]
    Faiss {
        description: String,
        #[source]
        source: faiss::error::Error,
    },
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("{scored} events to score but {rows} vectors")]
    VectorCount { scored: usize, rows: usize },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("re-embedding the baseline: {0}")]
    Embed(#[from] EmbedError),
    #[error("the audit database's baseline table is not dense: row {position} has id {id}")]
    BaselineIds { position: usize, id: u64 },
}

impl DetectError {
    /// Fixed by the operator (a setting the machine cannot honour, a missing model), not by a retry.
    pub fn is_setup_error(&self) -> bool {
        match self {
            DetectError::Config { .. } => true,
            DetectError::Embed(e) => e.is_setup_error(),
            _ => false,
        }
    }
}

/// A dry run's answer: what an event would be judged now.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    pub score: f32,
    pub verdict: Verdict,
    /// What the score was judged against (see [`Detector::judged_against`]).
    pub threshold: f32,
    /// The source's own threshold, before any variable-slot allowance.
    pub source_threshold: f32,
    /// The log program the text names and its own threshold, when it was judged against it too.
    pub program: Option<(String, f32)>,
    /// Word positions where the text differs from its nearest one, all variable slots.
    pub variable_slots: Option<Vec<usize>>,
    /// Nearest first, exact distances.
    pub neighbours: Vec<DryRunNeighbour>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DryRunNeighbour {
    pub id: u64,
    pub distance: f32,
    pub text: String,
    /// Events the text stands for now.
    pub count: u64,
}

/// What one event was judged against.
#[derive(Debug, Clone, PartialEq)]
struct Against {
    threshold: f32,
    source_threshold: f32,
    variable: Option<slots::VariableSlots>,
    /// The program the text names and its threshold, when that applied (`programs`).
    program: Option<(String, f32)>,
    /// The variable-slot factor the detector raises thresholds by.
    factor: f32,
    /// The new value naming the superuser, when the text is a new value in a variable slot that
    /// names it: judged against the floor instead (`names_superuser`).
    superuser: Option<String>,
    /// What the threshold was before the superuser rule: the scale calibration observes on.
    allowed: f32,
}

/// `score` on the scale of `own`, for an event judged against `judged` (`own` raised).
pub(super) fn scaled(score: f32, own: f32, judged: f32) -> f32 {
    if judged > 0.0 {
        score * own / judged
    } else {
        score
    }
}

/// Whether a word names the superuser: `root`, `root(uid=0)`, `user=root`, `<root>`, `uid=0`,
/// `user@0.service`, `user-0.slice`.
pub(super) fn names_superuser(word: &str) -> bool {
    static SUPERUSER: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)^(?:[a-z_]+=)?<?root(?:\(uid=0\))?>?[.,:;]?$|^\(?uid=0\)?[.,:;]?$|^user@0\.|^user-0\.",
        )
            .expect("the superuser pattern compiles")
    });
    SUPERUSER.is_match(word)
}

/// A threshold raised for a new value in variable slots: `factor` times, but to at most 1 (a
/// text unrelated to its nearest one still alerts) unless it was already higher.
fn raise_for_slots(threshold: f32, factor: f32) -> f32 {
    (threshold * factor).min(threshold.max(1.0))
}

impl Against {
    /// The score on its source's scale: what calibration observes. An event judged against a
    /// raised threshold counts as its score divided by the raise, so new values in variable
    /// slots (a new unit's every state) and a chatty program's new lines (an admin's `sudo`
    /// commands) do not lift the source's threshold over its faults.
    fn relative(&self, score: f32) -> f32 {
        scaled(score, self.source_threshold, self.allowed)
    }

    /// `calibration_threshold`, when the threshold the score was judged against is not the one
    /// calibration scaled it by (the floor, for the superuser rule and failures in context), so
    /// that a restart seeds the calibrators with what they observed (`audit::read_recent_scores`).
    fn record_calibration(&self, fields: &mut serde_json::Map<String, serde_json::Value>) {
        if self.allowed != self.threshold {
            fields.insert(
                "calibration_threshold".into(),
                json!(f64::from(self.allowed)),
            );
        }
    }

    /// `threshold` raised by the variable-slot allowance this event got, if any.
    fn raised(&self, threshold: f32) -> f32 {
        match &self.variable {
            Some(_) => raise_for_slots(threshold, self.factor),
            None => threshold,
        }
    }

    /// Into the record's fields: `threshold` (what the score was compared with), and when it
    /// differs, `source_threshold` and `variable_slots` (positions, values seen there).
    fn record(&self, fields: &mut serde_json::Map<String, serde_json::Value>) {
        fields.insert("threshold".into(), json!(f64::from(self.threshold)));
        self.record_calibration(fields);
        if self.variable.is_some() || self.program.is_some() || self.superuser.is_some() {
            fields.insert(
                "source_threshold".into(),
                json!(f64::from(self.source_threshold)),
            );
        }
        if let Some(v) = &self.variable {
            fields.insert(
                "variable_slots".into(),
                json!({"positions": v.positions, "values": v.values}),
            );
        }
        if let Some((name, threshold)) = &self.program {
            fields.insert("program".into(), json!(name));
            fields.insert("program_threshold".into(), json!(f64::from(*threshold)));
        }
        if let Some(value) = &self.superuser {
            fields.insert("superuser".into(), json!(value));
        }
    }
}

/// The source a bare text names by its first word (dry runs, imported history); custom when it
/// names none.
fn source_of_text(text: &str) -> Source {
    text.split_whitespace()
        .next()
        .and_then(Source::from_name)
        .unwrap_or(Source::Custom)
}

/// A batch the detector could not score, handed back whole so the caller can still record it.
#[derive(Debug)]
pub struct Unjudged {
    pub error: DetectError,
    pub events: Vec<Event>,
}

/// Distinct baseline texts before scores count towards calibration: against a nearly empty
/// baseline every text looks new.
const CALIBRATION_MIN_BASELINE: usize = 32;

/// Candidates per neighbour asked of a trained (approximate) index.
pub(crate) const CANDIDATE_FACTOR: usize = 4;

/// Whether `rule` (still in force at `now_usec`) covers `event`.
fn suppresses(rule: &SuppressRule, event: &Event, now_usec: u64) -> bool {
    rule.until_usec.is_none_or(|until| now_usec < until)
        && rule.source.is_none_or(|s| s == event.source)
        && rule.pattern.is_match(&event.text)
}

/// What only the detector can judge in a configuration the config module has already validated:
/// whether FAISS can build `detector.index`, and, with `gpu.index = "gpu"`, whether the index,
/// `detector.k` and `detector.nprobe` fit FAISS's GPU limits. [`crate::load_config`] runs it after
/// loading, so `--check-config` catches these as it catches every other rule.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    let det = &config.detector;
    let rules = crate::config::Rules {
        origin: &config.origin,
    };
    let quoted = crate::config::quoted;
    check_factory(&det.index)
        .map_err(|why| rules.invalid("detector.index", &quoted(&det.index), &why.to_string()))?;
    if det.gpu_search.placement == IndexPlacement::Gpu {
        if let Err(limit) = gpu::gpu_plan(&det.index, det.k * CANDIDATE_FACTOR, det.nprobe) {
            let value = match limit.key {
                "detector.k" => det.k.to_string(),
                "detector.nprobe" => det.nprobe.to_string(),
                _ => quoted(&det.index),
            };
            let rule = format!("with gpu.index = \"gpu\": {}", limit.why);
            return Err(rules.invalid(limit.key, &value, &rule));
        }
    }
    Ok(())
}

/// Texts re-embedded per batch when the baseline is rebuilt at start-up.
const REBUILD_BATCH: usize = 256;

/// How the baseline came back at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Distinct texts taken from the snapshot.
    pub from_snapshot: usize,
    /// Distinct texts embedded again (after the snapshot, or all of them).
    pub embedded: usize,
    /// Why the snapshot was not used, when it was not.
    pub snapshot_problem: Option<String>,
}

/// While the baseline is being embedded again at start-up, the snapshot is saved at least this
/// often (or every `snapshot_interval_s`, when shorter), so that a start cut short (a crash, a
/// kill, a timeout) resumes from what was done instead of starting over.
const REBUILD_SAVE_EVERY: Duration = Duration::from_secs(30);

/// Where and how often the baseline is snapshotted.
#[derive(Debug, Clone)]
pub struct SnapshotPolicy {
    pub path: PathBuf,
    pub interval: Duration,
    pub model_id: String,
}

pub struct Detector {
    k: usize,
    rarity_weight: f32,
    join_threshold: f32,
    /// Each source's own alert threshold: a chatty log and a quiet bus differ in how often
    /// normal traffic brings a new text, and how far from the baseline it lies.
    calibrators: HashMap<Source, Calibrator>,
    /// The calibrator a source gets when its first event arrives.
    calibrator: Calibrator,
    variable_slot_factor: f32,
    variable_slot_values: u32,
    warmup_events: u64,
    suppress: Vec<SuppressRule>,
    /// Flagged texts recurring hour after hour, promoted to the baseline as periodic.
    recurrences: recurrence::Recurrences,
    /// Each log program's own threshold for its lines that report no failure.
    programs: programs::ProgramThresholds,
    /// Follow-on windows after anomalies and recent unknown failures, which make a failure an
    /// anomaly judged against the floor.
    failure_context: failures::FailureContext,
    baseline: Baseline,
    index: SearchIndex,
    snapshot: Option<SnapshotPolicy>,
    last_snapshot: Instant,
    /// (distinct texts, index swaps) when the last snapshot was written.
    snapshot_state: (usize, u64),
}

impl Detector {
    /// An empty baseline that is never snapshotted (offline scoring, tests).
    pub fn new(config: &DetectorConfig) -> Result<Detector, DetectError> {
        Ok(Detector {
            k: config.k,
            rarity_weight: config.rarity_weight,
            join_threshold: config.threshold,
            calibrators: HashMap::new(),
            calibrator: Calibrator::new(
                config.calibration_quantile,
                config.threshold,
                config.alert_ceiling,
                config.calibration_window,
            ),
            variable_slot_factor: config.variable_slot_factor,
            variable_slot_values: config.variable_slot_values,
            warmup_events: config.warmup_events,
            suppress: config.suppress.clone(),
            recurrences: recurrence::Recurrences::new(config.periodic_hours),
            programs: programs::ProgramThresholds::new(
                config.calibration_quantile,
                config.threshold,
                config.program_ceiling,
                config.calibration_window,
                config.follow_on,
            ),
            failure_context: failures::FailureContext::new(
                config.follow_on,
                config.failure_repeats,
                config.failure_repeat,
            ),
            baseline: Baseline::default(),
            index: SearchIndex::new(config)?,
            snapshot: None,
            last_snapshot: Instant::now(),
            snapshot_state: (0, 0),
        })
    }

    /// The baseline the audit database's `baseline` table holds (`rows`, in id order), its
    /// vectors taken from the snapshot where it agrees with the table and embedded again after
    /// that; snapshots are then written by `policy`. `progress(done, total)` follows the
    /// re-embedding.
    pub fn restore(
        config: &DetectorConfig,
        rows: Vec<BaselineRow>,
        policy: SnapshotPolicy,
        embedder: &mut dyn Embedder,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(Detector, Restored), DetectError> {
        for (position, row) in rows.iter().enumerate() {
            if row.id != position as u64 {
                return Err(DetectError::BaselineIds {
                    position,
                    id: row.id,
                });
            }
        }
        let mut detector = Detector::new(config)?;
        let mut restored = Restored::default();
        let snapshot = match snapshot::read(&policy.path) {
            Ok(Some(s)) if s.header.model_id != policy.model_id => {
                restored.snapshot_problem = Some(format!(
                    "made with model {}, the embedder is {}",
                    s.header.model_id, policy.model_id
                ));
                None
            }
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                if !rows.is_empty() {
                    restored.snapshot_problem = Some("no snapshot file".into());
                }
                None
            }
            Err(e) => {
                restored.snapshot_problem = Some(e.to_string());
                None
            }
        };
        if let Some(snap) = snapshot {
            let agree = snap
                .texts
                .iter()
                .zip(&rows)
                .take_while(|(t, row)| **t == row.text)
                .count();
            if agree < snap.header.rows.min(rows.len()) {
                restored.snapshot_problem = Some(format!(
                    "its text {agree} differs from the audit database's; using the {agree} before it"
                ));
            } else if snap.header.rows > rows.len() {
                restored.snapshot_problem = Some(format!(
                    "it is ahead of the audit database ({} texts, the database has {}); using the first {agree}",
                    snap.header.rows,
                    rows.len()
                ));
            }
            for (row, vector) in rows[..agree].iter().zip(snap.vectors.chunks_exact(DIM)) {
                detector.baseline.insert(&row.text, vector, row.count);
            }
            restored.from_snapshot = agree;
            let trained = snap
                .index
                .filter(|_| agree == snap.header.rows && !snap.header.index.is_empty());
            match trained {
                Some(index) => {
                    detector.index.adopt(
                        index,
                        snap.header.index.clone(),
                        snap.header.trained_on,
                        snap.header.drift,
                    )?;
                }
                None => detector.index.add_rows(0, &snap.vectors[..agree * DIM])?,
            }
        }
        let start = restored.from_snapshot;
        let total = rows.len() - start;
        let save_every = match policy.interval {
            Duration::ZERO => REBUILD_SAVE_EVERY,
            interval => interval.min(REBUILD_SAVE_EVERY),
        };
        detector.snapshot = Some(policy);
        let mut last_save = Instant::now();
        if total > 0 {
            progress(0, total);
        }
        for chunk in rows[start..].chunks(REBUILD_BATCH) {
            let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
            let vectors = embedder.embed(&texts)?;
            detector.index.add_rows(chunk[0].id, &vectors.data)?;
            for (i, row) in chunk.iter().enumerate() {
                detector
                    .baseline
                    .insert(&row.text, vectors.row(i), row.count);
            }
            restored.embedded += chunk.len();
            progress(restored.embedded, total);
            if restored.embedded < total && last_save.elapsed() >= save_every {
                // The texts so far agree with the table's first rows: the next start keeps them.
                match detector.save_snapshot() {
                    Ok(()) => info!(
                        texts = detector.baseline.len(),
                        of = rows.len(),
                        "baseline rebuild progress saved"
                    ),
                    Err(e) => warn!(error = %e, "could not save the baseline rebuild's progress"),
                }
                last_save = Instant::now();
            }
        }
        detector.snapshot_state = if restored.embedded == 0 && restored.snapshot_problem.is_none() {
            (detector.baseline.len(), 0)
        } else {
            (usize::MAX, 0)
        };
        Ok((detector, restored))
    }

    pub fn description(&self) -> &str {
        self.index.description()
    }

    /// Where the index is searched: `gpu N`, or `cpu (why)`.
    pub fn search_place(&self) -> String {
        self.index.search_place()
    }

    /// Distinct texts in the baseline.
    pub fn baseline_len(&self) -> u64 {
        self.baseline.len() as u64
    }

    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    /// Trained indexes swapped in since start.
    pub fn index_swaps(&self) -> u64 {
        self.index.swaps
    }

    /// Share, in ‰, of the texts added since the IVF index was trained that lie beyond the
    /// training texts' 90th-percentile distance to a list centre (0 while exact).
    pub fn index_drift_permille(&self) -> u64 {
        self.index
            .drift()
            .map_or(0, |d| (d.share() * 1000.0).round() as u64)
    }

    pub fn is_training(&self) -> bool {
        self.index.is_training()
    }

    /// The highest of the sources' alert thresholds as they stand now (the floor before any
    /// source has calibrated one).
    pub fn threshold(&self) -> f32 {
        self.calibrators
            .values()
            .map(Calibrator::threshold)
            .fold(self.calibrator.threshold(), f32::max)
    }

    /// Each source's alert threshold as it stands now, in source order.
    pub fn thresholds(&self) -> Vec<(Source, f32)> {
        let mut out: Vec<(Source, f32)> = self
            .calibrators
            .iter()
            .map(|(s, c)| (*s, c.threshold()))
            .collect();
        out.sort_by_key(|(s, _)| s.as_str());
        out
    }

    /// The alert threshold of `source` as it stands now.
    pub fn source_threshold(&self, source: Source) -> f32 {
        self.calibrators
            .get(&source)
            .map_or(self.calibrator.threshold(), Calibrator::threshold)
    }

    fn calibrator_mut(&mut self, source: Source) -> &mut Calibrator {
        self.calibrators
            .entry(source)
            .or_insert_with(|| self.calibrator.clone())
    }

    /// What an event of `source` with `text` and these `neighbours`, at `usec`, is judged
    /// against: its source's threshold, raised by `variable_slot_factor` when the text differs
    /// from one of its nearest baseline texts only in slots where the baseline has shown many
    /// values; and the log program's own threshold (raised the same way), when the text names one
    /// that applies (`programs`), whichever is higher.
    fn judged_against(
        &self,
        source: Source,
        text: &str,
        neighbours: &[(u64, f32)],
        usec: u64,
    ) -> Against {
        let source_threshold = self.source_threshold(source);
        // A template of the text that the baseline holds many texts of, looked up directly:
        // the k nearest may all be the unit's own other states. Then a span of a few words
        // that many texts of the template varied in (a register's name in a dump). Failing
        // that, any of the k nearest that differs in at most two variable slots: the nearest
        // may differ in a fixed word (`unloaded` for `loaded`) while the next differs only in
        // the unit's name.
        let variable = match neighbours.first() {
            Some(&(_, distance)) if distance > 0.0 && self.variable_slot_factor > 1.0 => self
                .baseline
                .variable_position(text, self.variable_slot_values)
                .or_else(|| self.baseline.variable_span(text, self.variable_slot_values))
                .or_else(|| {
                    neighbours.iter().find_map(|&(id, _)| {
                        self.baseline
                            .variable_difference(text, id, 2, self.variable_slot_values)
                    })
                }),
            _ => None,
        };
        let program = self
            .programs
            .threshold(source, text, usec)
            .map(|(name, threshold)| (name.to_owned(), threshold));
        // A new value that names the superuser is not just another value: root's first session
        // on a host whose users' sessions are a template looks like any user's (0.07–0.17),
        // and is judged against the floor.
        let superuser = variable.as_ref().and_then(|v| {
            slots::words_at(text, &v.positions)
                .into_iter()
                .find(|w| names_superuser(w))
                .map(str::to_owned)
        });
        let mut against = Against {
            threshold: source_threshold,
            source_threshold,
            variable,
            program,
            factor: self.variable_slot_factor,
            superuser,
            allowed: source_threshold,
        };
        against.allowed = against.raised(source_threshold);
        if let Some((_, program)) = &against.program {
            against.allowed = against.allowed.max(against.raised(*program));
        }
        against.threshold = match against.superuser {
            Some(_) => self.join_threshold,
            None => against.allowed,
        };
        against
    }

    /// Feeds recorded scores (oldest first) to their sources' calibration, as if just observed:
    /// a restart keeps each source's threshold.
    pub fn seed_calibration(&mut self, scores: impl IntoIterator<Item = (Source, f32)>) {
        for (source, score) in scores {
            self.calibrator_mut(source).observe(score);
        }
    }

    /// Starts a retrain at the next batch (when the index plan is a trained one).
    pub fn request_retrain(&mut self) {
        self.index.request_retrain();
    }

    /// Adds known-normal history (an imported baseline) and returns each text's baseline id.
    /// When the threshold is calibrated, each text is also scored against the baseline as it
    /// stood just before it (one search per text, so a burst of new texts is not scored against
    /// none of each other), and the score feeds the calibration: the history seeds the threshold
    /// before the first live event. `remaining` is how many history texts follow this call; only
    /// the last `calibration_window` of them are scored, since the window keeps no more. Their
    /// scores calibrate `source`, or each text's own (the source its first word names).
    pub fn learn(
        &mut self,
        texts: &[&str],
        vectors: &Embeddings,
        remaining: usize,
        source: Option<Source>,
    ) -> Result<Vec<u64>, DetectError> {
        if texts.len() != vectors.rows() {
            return Err(DetectError::VectorCount {
                scored: texts.len(),
                rows: vectors.rows(),
            });
        }
        let mut ids = Vec::with_capacity(texts.len());
        for (row, text) in texts.iter().enumerate() {
            let vector = vectors.row(row);
            let after = texts.len() - row - 1 + remaining;
            if self.calibrator.is_calibrating()
                && after < self.calibrator.capacity()
                && self.baseline.len() >= CALIBRATION_MIN_BASELINE
            {
                let found = self.index.search(vector, self.k)?.pop().unwrap_or_default();
                let neighbours = self.neighbours(text, vector, found);
                let source = source.unwrap_or_else(|| source_of_text(text));
                // History has no time of its own here: no program's anomaly window applies.
                let against = self.judged_against(source, text, &neighbours, 0);
                let score = self.score(&neighbours);
                self.calibrator_mut(source).observe(against.relative(score));
                self.programs
                    .observe(source, text, score, |t| against.raised(t));
            }
            ids.push(self.join_baseline(text, vector)?);
        }
        self.index.maintain(&self.baseline);
        Ok(ids)
    }

    /// The `k` nearest baseline entries of `query`, nearest first, with exact distances. The
    /// index proposes candidates; a text already in the baseline is its own nearest at distance 0,
    /// also when it joined after the index was searched (earlier in the same batch).
    fn neighbours(&self, text: &str, query: &[f32], mut candidates: Vec<u64>) -> Vec<(u64, f32)> {
        if let Some(id) = self.baseline.id_of(text) {
            candidates.push(id);
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut scored: Vec<(u64, f32)> = candidates
            .into_iter()
            .filter(|&id| (id as usize) < self.baseline.len())
            .map(|id| (id, self.baseline.distance(query, id)))
            .collect();
        scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        if let Some(id) = self.baseline.id_of(text) {
            if let Some(pos) = scored.iter().position(|&(i, _)| i == id) {
                scored[pos].1 = 0.0;
                scored[..=pos].rotate_right(1);
            }
        }
        scored.truncate(self.k);
        scored
    }

    /// Candidates asked of the index. An approximate index ranks by compressed codes; a wider
    /// pool re-scored exactly finds the true nearest far more often (benches/README.md, "Search
    /// index").
    fn search_k(&self) -> usize {
        if self.index.trained_on() > 0 {
            self.k * CANDIDATE_FACTOR
        } else {
            self.k
        }
    }

    /// What an event with `text` and `vector` would be judged now, with nothing recorded,
    /// learned or calibrated: `Score`'s dry run. Suppression rules apply to the source the
    /// text's first word names (custom when it names none).
    pub fn dry_run(&mut self, text: &str, vector: &[f32]) -> Result<DryRun, DetectError> {
        if vector.len() != DIM {
            return Err(DetectError::VectorCount {
                scored: 1,
                rows: vector.len() / DIM,
            });
        }
        let found = self
            .index
            .search(vector, self.search_k())?
            .pop()
            .unwrap_or_default();
        let neighbours = self.neighbours(text, vector, found);
        let score = self.score(&neighbours);
        let source = source_of_text(text);
        let against = self.judged_against(source, text, &neighbours, now_usec());
        let threshold = against.threshold;
        let probe = Event::observed(source, text.to_owned(), serde_json::Map::new());
        let suppressed = self.suppressed_by(&probe, now_usec()).is_some();
        let verdict = self.verdict(suppressed, score, threshold);
        let neighbours = neighbours
            .into_iter()
            .map(|(id, distance)| DryRunNeighbour {
                id,
                distance,
                text: self.baseline.text(id).unwrap_or_default().to_owned(),
                count: self.baseline.count(id),
            })
            .collect();
        Ok(DryRun {
            score,
            verdict,
            threshold,
            source_threshold: against.source_threshold,
            program: against.program,
            variable_slots: against.variable.map(|v| v.positions),
            neighbours,
        })
    }

    /// The verdict rule, one for `judge` and `dry_run`: suppression first, then warm-up, then
    /// the score against the alert threshold.
    fn verdict(&self, suppressed: bool, score: f32, threshold: f32) -> Verdict {
        if suppressed {
            Verdict::Suppressed
        } else if self.baseline.events() < self.warmup_events {
            Verdict::Warmup
        } else if score > threshold {
            Verdict::Anomaly
        } else {
            Verdict::Normal
        }
    }

    fn score(&self, neighbours: &[(u64, f32)]) -> f32 {
        match neighbours.first() {
            None => 1.0 + self.rarity_weight,
            Some(&(id, distance)) => {
                let count = self.baseline.count(id).max(1);
                distance.max(0.0) + self.rarity_weight / (1.0 + (count as f32).ln())
            }
        }
    }

    fn suppressed_by(&self, event: &Event, now: u64) -> Option<&SuppressRule> {
        self.suppress.iter().find(|r| suppresses(r, event, now))
    }

    /// Judges a batch. `vectors` holds one row per event that needs one (observed events and
    /// benign marks), in order; the daemon's other records pass through as `NotScored`. Each event
    /// is judged against the baseline as it stood before the batch, plus exact repeats of texts
    /// that joined earlier in the same batch. Every check that can fail runs before the events
    /// are consumed, so a failure hands them back.
    pub fn judge(
        &mut self,
        events: Vec<Event>,
        vectors: &Embeddings,
    ) -> Result<Vec<Judged>, Unjudged> {
        let rows = events.iter().filter(|e| e.kind.needs_vector()).count();
        if rows != vectors.rows() {
            let error = DetectError::VectorCount {
                scored: rows,
                rows: vectors.rows(),
            };
            return Err(Unjudged { error, events });
        }
        let mut candidates = match self.candidates(&events, vectors) {
            Ok(c) => c,
            Err(error) => return Err(Unjudged { error, events }),
        };

        let now = now_usec();
        let mut judged = Vec::with_capacity(events.len());
        let mut row = 0;
        for mut event in events {
            if !event.kind.needs_vector() {
                judged.push(Judged::unscored(event));
                continue;
            }
            let vector = vectors.row(row);
            let found = std::mem::take(&mut candidates[row]);
            row += 1;
            if event.kind == RecordKind::Benign {
                let joined = self.join_or_log(&event.text, vector);
                judged.push(Judged {
                    joined,
                    ..Judged::unscored(event)
                });
                continue;
            }
            let neighbours = self.neighbours(&event.text, vector, found);
            let score = self.score(&neighbours);
            let against =
                self.judged_against(event.source, &event.text, &neighbours, event.observed_usec);
            let suppressed = self.suppressed_by(&event, now).map(|r| r.name.clone());
            let mut verdict = self.verdict(suppressed.is_some(), score, against.threshold);
            let mut periodic = None;
            if verdict == Verdict::Anomaly {
                if let Some(hours) = self.recurrences.flagged(&event.text, event.observed_usec) {
                    // Hour after hour through a day, and not a failure: a schedule nobody has
                    // marked benign yet (`recurrence`).
                    info!(text = %event.text, hours, "a flagged text recurs hourly: periodic, it joins the baseline");
                    verdict = Verdict::Normal;
                    periodic = Some(Periodic {
                        hours,
                        incident: None,
                    });
                }
            }
            // A failure that is not known, soon after an anomaly of its source or again and
            // again: part of a fault (`failures`), judged against the floor.
            let context = if verdict == Verdict::Normal
                && periodic.is_none()
                && score > self.join_threshold
            {
                self.failure_context.of_unknown_normal(
                    event.source,
                    &event.text,
                    event.observed_usec,
                )
            } else {
                None
            };
            if verdict == Verdict::Anomaly {
                self.failure_context
                    .anomaly(event.source, &event.text, event.observed_usec);
            }
            if let Some(rule) = suppressed {
                event.fields.insert("suppressed_by".into(), json!(rule));
            }
            if verdict != Verdict::Warmup {
                against.record(&mut event.fields);
            }
            if let Some(context) = context {
                verdict = Verdict::Anomaly;
                let fields = &mut event.fields;
                fields.insert("threshold".into(), json!(f64::from(self.join_threshold)));
                fields.insert(
                    "source_threshold".into(),
                    json!(f64::from(against.source_threshold)),
                );
                fields.insert(context.key().into(), context.value());
                Against {
                    threshold: self.join_threshold,
                    ..against.clone()
                }
                .record_calibration(fields);
            }
            if verdict == Verdict::Anomaly {
                // The lines right after it are judged against the source's threshold alone.
                self.programs.anomaly(event.source, event.observed_usec);
            }
            // Warm-up scores stay out: against a baseline still being learned, every first text
            // of a kind looks far, and would lift a quiet source's threshold for a long time.
            if verdict != Verdict::Suppressed
                && verdict != Verdict::Warmup
                && self.baseline.len() >= CALIBRATION_MIN_BASELINE
            {
                let relative = against.relative(score);
                self.calibrator_mut(event.source).observe(relative);
                self.programs
                    .observe(event.source, &event.text, score, |t| against.raised(t));
            }
            let joins = verdict == Verdict::Warmup
                || periodic.is_some()
                || (verdict == Verdict::Normal && score <= self.join_threshold);
            let joined = if joins {
                self.join_or_log(&event.text, vector)
            } else {
                None
            };
            if verdict == Verdict::Normal
                && joined.is_none()
                && !recurrence::reports_failure(&event.text)
            {
                // Normal by its source's threshold though too far to join: the traffic has shown
                // it as a value of its template (`slots`), the way a joined text is.
                self.baseline.count_normal(&event.text);
            }
            if periodic.is_some() && joined.is_none() {
                // It could not join (logged): it stays what its score says.
                verdict = Verdict::Anomaly;
                periodic = None;
            }
            judged.push(Judged {
                event,
                score: Some(score),
                verdict,
                neighbours,
                joined,
                periodic,
            });
        }
        Ok(judged)
    }

    /// The index's candidates for each row of `vectors`, asked once per distinct text (the same
    /// text has the same vector). Search is most of this thread's work, and a storm (a flapping
    /// unit, a fleet-wide restart) fills whole batches with one text. The e2e bench's mixed fleet
    /// repeats little within a batch (75 distinct texts in 81 rows), so it gains nothing there.
    fn candidates(
        &mut self,
        events: &[Event],
        vectors: &Embeddings,
    ) -> Result<Vec<Vec<u64>>, DetectError> {
        // Each distinct text's slot, the row it was first seen in, and each row's slot.
        let mut slot_of_text: HashMap<&str, usize> = HashMap::new();
        let mut first_rows = Vec::new();
        let mut slot_of_row = Vec::with_capacity(vectors.rows());
        for (row, event) in events.iter().filter(|e| e.kind.needs_vector()).enumerate() {
            let slot = *slot_of_text.entry(event.text.as_str()).or_insert_with(|| {
                first_rows.push(row);
                first_rows.len() - 1
            });
            slot_of_row.push(slot);
        }
        let k = self.search_k();
        if first_rows.len() == slot_of_row.len() {
            return self.index.search(&vectors.data, k);
        }
        let queries: Vec<f32> = first_rows
            .iter()
            .flat_map(|&row| vectors.row(row))
            .copied()
            .collect();
        let found = self.index.search(&queries, k)?;
        Ok(slot_of_row
            .into_iter()
            .map(|slot| found[slot].clone())
            .collect())
    }

    /// Joins, logging a vector FAISS refused (the verdict stands; the text only misses the
    /// baseline).
    fn join_or_log(&mut self, text: &str, vector: &[f32]) -> Option<u64> {
        match self.join_baseline(text, vector) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, text, "could not add the event to the baseline");
                None
            }
        }
    }

    fn join_baseline(&mut self, text: &str, vector: &[f32]) -> Result<u64, DetectError> {
        if let Some(id) = self.baseline.id_of(text) {
            self.baseline.repeat(id, 1);
            return Ok(id);
        }
        let id = self.baseline.len() as u64;
        self.index.add(id, vector)?;
        Ok(self.baseline.insert(text, vector, 1))
    }

    /// Between batches: index training and swaps, and the periodic snapshot.
    pub fn maintain(&mut self) {
        self.index.maintain(&self.baseline);
        let due = self
            .snapshot
            .as_ref()
            .is_some_and(|p| !p.interval.is_zero() && self.last_snapshot.elapsed() >= p.interval);
        if due {
            if let Err(e) = self.save_snapshot() {
                warn!(error = %e, "could not write the baseline snapshot");
            }
        }
    }

    /// Writes the snapshot if the baseline or its index changed since the last one.
    pub fn save_snapshot(&mut self) -> Result<(), DetectError> {
        self.last_snapshot = Instant::now();
        let Some(policy) = &self.snapshot else {
            return Ok(());
        };
        let state = (self.baseline.len(), self.index.swaps);
        if state == self.snapshot_state {
            return Ok(());
        }
        let trained = self.index.trained_on() > 0;
        let header = Header {
            model_id: policy.model_id.clone(),
            dim: DIM,
            rows: self.baseline.len(),
            index: if trained {
                self.index.description().to_owned()
            } else {
                String::new()
            },
            trained_on: self.index.trained_on(),
            drift: self.index.drift(),
            created_usec: now_usec(),
        };
        let started = Instant::now();
        let bytes = snapshot::write(
            &policy.path,
            &header,
            self.baseline.texts(),
            &self.baseline.shared_rows(),
            trained.then(|| self.index.index()),
        )?;
        self.snapshot_state = state;
        info!(
            path = %policy.path.display(),
            texts = header.rows,
            index = %self.index.description(),
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "baseline snapshot written"
        );
        Ok(())
    }

    /// Waits for a background training to finish and swaps it in.
    pub fn finish_training(&mut self) {
        self.index.finish_training(&self.baseline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::{Embedder, HashingEmbedder};
    use crate::event::Source;

    fn config(warmup_events: i64) -> DetectorConfig {
        DetectorConfig {
            index: "Flat".into(),
            k: 3,
            threshold: 0.25,
            rarity_weight: 0.0,
            calibration_quantile: 0.0,
            calibration_window: 1000,
            alert_ceiling: 2.0,
            program_ceiling: 0.0,
            warmup_events: warmup_events as u64,
            variable_slot_factor: 1.0,
            variable_slot_values: 3,
            incident_quiet: Duration::ZERO,
            periodic_hours: 0,
            follow_on: Duration::ZERO,
            failure_repeats: 0,
            failure_repeat: Duration::from_secs(3600),
            nprobe: 8,
            train_min_vectors: 1000,
            retrain_growth: 2.0,
            retrain_drift: 0.5,
            snapshot_interval: Duration::ZERO,
            suppress: Vec::new(),
            gpu_search: Default::default(),
        }
    }

    /// An event of `source` observed at `usec`.
    fn at(source: Source, text: &str, usec: u64) -> Event {
        let mut event = Event::observed(source, text.to_owned(), Default::default());
        event.observed_usec = usec;
        event
    }

    fn judge(detector: &mut Detector, texts: &[&str]) -> Vec<Judged> {
        let vectors = HashingEmbedder::new(384).embed(texts).unwrap();
        let events = texts
            .iter()
            .map(|t| Event::observed(Source::Systemd, t.to_string(), Default::default()))
            .collect();
        detector.judge(events, &vectors).unwrap()
    }

    #[test]
    fn a_chatty_log_programs_new_lines_are_judged_against_its_own_threshold_too() {
        let mut detector = Detector::new(&DetectorConfig {
            threshold: 0.02,
            calibration_quantile: 0.97,
            alert_ceiling: 0.1,
            program_ceiling: 1.0,
            follow_on: Duration::from_secs(60),
            ..config(40)
        })
        .unwrap();
        let sec = 1_000_000u64;
        let mut clock = 0;
        let mut judge_at = |detector: &mut Detector, texts: &[String]| {
            let events = texts
                .iter()
                .map(|t| {
                    clock += 120 * sec;
                    at(Source::Custom, t, clock)
                })
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = HashingEmbedder::new(384).embed(&refs).unwrap();
            detector.judge(events, &vectors).unwrap()
        };
        // Warm-up: a host's quiet programs, enough distinct texts for calibration to count.
        let quiet: Vec<String> = (0..40)
            .map(|i| format!("CRON[*]: (root) CMD (run-parts /etc/cron.{i})"))
            .collect();
        judge_at(&mut detector, &quiet);
        // Every admin's command is a new line: sudo's scores settle its own threshold, two
        // minutes apart so that no anomaly's window covers the next.
        let command = |i: usize| {
            format!(
                "sudo[*]: admin{i} : TTY=pts/0 ; USER=root ; COMMAND=/usr/bin/tool{i} --opt{i} value{i}"
            )
        };
        let commands: Vec<String> = (0..80).map(command).collect();
        judge_at(&mut detector, &commands);
        let source = detector.source_threshold(Source::Custom);
        let probe = command(80);
        let (name, program) = detector
            .programs
            .threshold(Source::Custom, &probe, u64::MAX)
            .expect("sudo has a threshold of its own");
        assert_eq!(name, "sudo");
        assert!(program > source, "sudo {program}, the source {source}");

        let next = command(81);
        let denied = "sudo[*]: intruder : user NOT in sudoers ; TTY=pts/0 ; USER=root ; \
                      COMMAND=/usr/bin/tool81 --opt81 value81"
            .to_string();
        let score_of = |detector: &mut Detector, text: &str| {
            let v = HashingEmbedder::new(384).embed(&[text]).unwrap();
            detector.dry_run(text, v.row(0)).unwrap()
        };
        let dry = score_of(&mut detector, &next);
        assert!(
            dry.score > source && dry.score <= program,
            "the test needs a score between the two: {} not in ({source}, {program}]",
            dry.score
        );
        assert_eq!(dry.program, Some(("sudo".to_string(), program)));
        assert!(score_of(&mut detector, &denied).score > source);

        let judged = judge_at(&mut detector, std::slice::from_ref(&next));
        assert_eq!(
            judged[0].verdict,
            Verdict::Normal,
            "above the source's threshold, not sudo's"
        );
        let fields = &judged[0].event.fields;
        assert_eq!(fields["program"], json!("sudo"));
        assert_eq!(fields["program_threshold"], json!(f64::from(program)));
        assert_eq!(fields["source_threshold"], json!(f64::from(source)));
        assert!(judged[0].joined.is_none(), "too far to join");
        // A failure is judged against the source's threshold alone.
        let judged = judge_at(&mut detector, &[denied]);
        assert_eq!(judged[0].verdict, Verdict::Anomaly);
        assert!(judged[0].event.fields.get("program").is_none());
        // Right after an anomaly of the source, so is every line: the same command, a minute
        // later, is an anomaly; two minutes later, normal again.
        let soon = at(Source::Custom, &next, clock + 30 * sec);
        let later = at(Source::Custom, &next, clock + 120 * sec);
        let vectors = HashingEmbedder::new(384)
            .embed(&[next.as_str(), next.as_str()])
            .unwrap();
        let judged = detector.judge(vec![soon, later], &vectors).unwrap();
        let verdicts: Vec<Verdict> = judged.iter().map(|j| j.verdict).collect();
        assert_eq!(verdicts, [Verdict::Anomaly, Verdict::Normal]);
        assert!(judged[0].event.fields.get("program").is_none());
    }

    #[test]
    fn a_new_value_naming_the_superuser_is_judged_against_the_floor() {
        for word in [
            "root",
            "root(uid=0)",
            "user=root",
            "<root>",
            "root.",
            "uid=0",
            "(uid=0)",
            "user@0.service:",
            "user-0.slice",
        ] {
            assert!(names_superuser(word), "{word}");
        }
        for word in [
            "rootfs",
            "root=UUID=0b1c",
            "root=/dev/sda1",
            "root.mount",
            "root-fs",
            "alice",
            "uid=0123",
            "user@1000.service",
            "groot",
            "0",
            "UID",
        ] {
            assert!(!names_superuser(word), "{word}");
        }
        let mut detector = Detector::new(&DetectorConfig {
            threshold: 0.05,
            calibration_quantile: 0.97,
            variable_slot_factor: 8.0,
            ..config(4)
        })
        .unwrap();
        // A source threshold above the floor, so that the two can be told apart.
        detector.seed_calibration(std::iter::repeat_n((Source::Systemd, 0.1), 100));
        assert_eq!(detector.source_threshold(Source::Systemd), 0.1);
        judge(
            &mut detector,
            &[
                "sshd[*]: session opened for user alice by (uid=0)",
                "sshd[*]: session opened for user bob by (uid=0)",
                "sshd[*]: session opened for user carol by (uid=0)",
                "sshd[*]: session opened for user dave by (uid=0)",
            ],
        );
        let judged = judge(
            &mut detector,
            &[
                "sshd[*]: session opened for user erin by (uid=0)",
                "sshd[*]: session opened for user root by (uid=0)",
            ],
        );
        let (user, root) = (&judged[0], &judged[1]);
        assert!(
            user.score.unwrap() > 0.05 && root.score.unwrap() > 0.05,
            "neither is known"
        );
        assert_eq!(user.verdict, Verdict::Normal, "a new user is a new value");
        assert!(user.event.fields.get("superuser").is_none());
        assert_eq!(
            root.verdict,
            Verdict::Anomaly,
            "root is not just another user"
        );
        let fields = &root.event.fields;
        assert_eq!(fields["superuser"], json!("root"));
        assert_eq!(fields["threshold"], json!(0.05f32 as f64), "the floor");
        assert_eq!(fields["source_threshold"], json!(0.1f32 as f64));
        // Calibrated as a new value with the allowance: what a restart reads back.
        assert_eq!(fields["calibration_threshold"], json!(0.8f32 as f64));
        assert_eq!(fields["variable_slots"]["positions"], json!([5]));
        assert!(user.event.fields.get("calibration_threshold").is_none());
    }

    #[test]
    fn a_flagged_text_recurring_hour_after_hour_joins_as_periodic_and_a_failure_does_not() {
        let mut detector = Detector::new(&DetectorConfig {
            periodic_hours: 3,
            ..config(1)
        })
        .unwrap();
        judge(
            &mut detector,
            &["systemd unit nginx.service ActiveState=active"],
        );
        let hourly = "systemd job quota-report.service result=done";
        let failing = "systemd unit quota-report.service ActiveState=failed Result=exit-code";
        let hour = 3_600_000_000u64;
        let mut verdicts = Vec::new();
        for h in 0..5u64 {
            let events = vec![
                at(Source::Systemd, hourly, h * hour),
                at(Source::Systemd, failing, h * hour),
                at(Source::Systemd, hourly, h * hour + 60),
            ];
            let vectors = HashingEmbedder::new(384)
                .embed(&[hourly, failing, hourly])
                .unwrap();
            verdicts.push(detector.judge(events, &vectors).unwrap());
        }
        // Flagged in hours 0 and 1; the first of hour 2 is its third hour: periodic, and it joins.
        for j in verdicts[..2].iter().flatten() {
            assert_eq!(j.verdict, Verdict::Anomaly, "{}", j.event.text);
        }
        let promoted = &verdicts[2][0];
        assert_eq!(promoted.verdict, Verdict::Normal);
        assert!(
            promoted.score.unwrap() > 0.25,
            "judged normal above the threshold"
        );
        assert_eq!(
            promoted.periodic,
            Some(Periodic {
                hours: 3,
                incident: None
            })
        );
        assert!(
            promoted.joined.is_some(),
            "a periodic text joins the baseline"
        );
        assert_eq!(
            verdicts[2][2].score,
            Some(0.0),
            "its next occurrence is known"
        );
        // The failure, every hour, stays flagged.
        for batch in &verdicts {
            assert_eq!(batch[1].verdict, Verdict::Anomaly);
            assert!(batch[1].joined.is_none());
        }
    }

    #[test]
    fn a_failure_soon_after_an_anomaly_of_its_source_is_judged_against_the_floor() {
        let mut detector = Detector::new(&DetectorConfig {
            threshold: 0.05,
            calibration_quantile: 0.97,
            follow_on: Duration::from_secs(60),
            ..config(2)
        })
        .unwrap();
        judge(
            &mut detector,
            &[
                "systemd unit web.service ActiveState=active SubState=running",
                "systemd unit web.service ActiveState=failed SubState=failed Result=exit-code",
            ],
        );
        let leader = "kernel Out of memory: Killed process 4242 (postgres) total-vm:2480339kB";
        let failure = "systemd unit db.service ActiveState=failed SubState=failed Result=oom-kill";
        let benign = "systemd unit db.service ActiveState=active SubState=running";
        let mut embedder = HashingEmbedder::new(384);
        let mut alone = |text: &str| {
            let v = embedder.embed(&[text]).unwrap();
            detector.dry_run(text, v.row(0)).unwrap().score
        };
        let (leader_score, failure_score, benign_score) =
            (alone(leader), alone(failure), alone(benign));
        assert!(
            failure_score > 0.05 && benign_score > 0.05,
            "neither is known"
        );
        let between = failure_score.max(benign_score);
        assert!(leader_score > between, "{leader_score} {between}");
        // The source's calibrated threshold lies between them: alone, both are normal.
        let threshold = (between + leader_score) / 2.0;
        for source in [Source::Systemd, Source::Custom] {
            detector.seed_calibration(std::iter::repeat_n((source, threshold), 100));
            assert_eq!(detector.source_threshold(source), threshold);
        }

        let sec = 1_000_000u64;
        let events = vec![
            at(Source::Systemd, failure, 1000 * sec),
            at(Source::Systemd, leader, 1001 * sec),
            at(Source::Systemd, failure, 1002 * sec),
            at(Source::Systemd, benign, 1003 * sec),
            at(Source::Custom, failure, 1004 * sec),
            at(Source::Systemd, failure, 1062 * sec),
        ];
        let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
        let vectors = HashingEmbedder::new(384).embed(&texts).unwrap();
        let judged = detector.judge(events, &vectors).unwrap();
        let verdicts: Vec<Verdict> = judged.iter().map(|j| j.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Normal,
                Verdict::Anomaly,
                Verdict::Anomaly,
                Verdict::Normal,
                Verdict::Normal,
                Verdict::Normal
            ],
            "before the anomaly, within its window, no failure, another source, after the window"
        );
        let follow_on = &judged[2];
        assert_eq!(follow_on.event.fields["follows"], json!(leader));
        assert_eq!(follow_on.event.fields["threshold"], json!(0.05f32 as f64));
        assert_eq!(
            follow_on.event.fields["source_threshold"],
            json!(f64::from(threshold))
        );
        assert!(follow_on.joined.is_none(), "a follow-on never joins");
        assert!(judged[0].event.fields.get("follows").is_none());
        assert!(judged[5].event.fields.get("follows").is_none());
    }

    #[test]
    fn an_unknown_failure_recurring_within_the_window_is_an_anomaly_from_its_third_time() {
        let mut detector = Detector::new(&DetectorConfig {
            threshold: 0.05,
            calibration_quantile: 0.97,
            failure_repeats: 3,
            failure_repeat: Duration::from_secs(3600),
            ..config(1)
        })
        .unwrap();
        judge(
            &mut detector,
            &["systemd unit web.service ActiveState=failed SubState=failed Result=exit-code"],
        );
        let failure = "systemd unit db.service ActiveState=failed SubState=failed Result=oom-kill";
        let benign = "systemd unit db.service ActiveState=active SubState=running";
        // Calibrated above both: alone, each is normal (and too far to join).
        detector.seed_calibration(std::iter::repeat_n((Source::Systemd, 1.5), 100));
        let hour = 3_600_000_000u64;
        let times = [0, 1, 2, 3, 2 * hour, 2 * hour + 1, 2 * hour + 2];
        let mut events = Vec::new();
        for &t in &times {
            events.push(at(Source::Systemd, failure, 10 * hour + t));
            events.push(at(Source::Systemd, benign, 10 * hour + t));
        }
        let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
        let vectors = HashingEmbedder::new(384).embed(&texts).unwrap();
        let judged = detector.judge(events, &vectors).unwrap();
        let failures: Vec<Verdict> = judged.iter().step_by(2).map(|j| j.verdict).collect();
        use Verdict::{Anomaly, Normal};
        assert_eq!(
            failures,
            [Normal, Normal, Anomaly, Anomaly, Normal, Normal, Anomaly],
            "the third within the hour and after; two hours later it starts again"
        );
        assert!(
            judged
                .iter()
                .skip(1)
                .step_by(2)
                .all(|j| j.verdict == Normal && j.joined.is_none()),
            "a text that reports no failure never repeats this way"
        );
        let third = &judged[4];
        assert!(third.score.unwrap() > 0.05 && third.joined.is_none());
        assert_eq!(
            third.event.fields["repeated"],
            json!({"count": 3, "within_s": 3600})
        );
        assert_eq!(third.event.fields["threshold"], json!(0.05f32 as f64));
    }

    #[test]
    fn repeats_score_zero_and_novel_faults_stay_out_of_the_baseline() {
        let mut detector = Detector::new(&config(2)).unwrap();
        let normal = "systemd unit nginx.service ActiveState=active SubState=running";
        let fault =
            "systemd unit postgresql.service ActiveState=failed SubState=failed Result=oom-kill";
        let warm = judge(&mut detector, &[normal, normal]);
        assert!(warm.iter().all(|j| j.verdict == Verdict::Warmup));
        assert_eq!(
            detector.baseline_len(),
            1,
            "identical texts are stored once"
        );
        assert_eq!(warm[1].joined, Some(0));

        let out = judge(&mut detector, &[normal, fault]);
        assert_eq!(out[0].verdict, Verdict::Normal);
        assert_eq!(out[0].score, Some(0.0));
        assert_eq!(out[1].verdict, Verdict::Anomaly, "score {:?}", out[1].score);
        assert_eq!(out[1].joined, None);
        assert_eq!(detector.baseline_len(), 1);

        let again = judge(&mut detector, &[fault]);
        assert_eq!(
            again[0].verdict,
            Verdict::Anomaly,
            "a recurring fault keeps alerting"
        );
    }

    #[test]
    fn repeated_texts_in_a_batch_get_the_candidates_of_their_own_search() {
        let texts = [
            "systemd unit nginx.service ActiveState=active SubState=running",
            "systemd unit sshd.service ActiveState=active SubState=running",
            "networkmanager device eth0 state=activated old=config reason=none",
            "systemd unit cron.service ActiveState=inactive SubState=dead",
        ];
        let mut detector = Detector::new(&config(10)).unwrap();
        judge(&mut detector, &texts);
        assert_eq!(detector.baseline_len(), texts.len() as u64);
        let fault = "systemd unit backup.service ActiveState=failed Result=exit-code";
        // The index is searched once per distinct text, and each repeat gets what a search of
        // its own row would have found. A benign mark is a row too; a gap record is not.
        let batch = [texts[0], fault, texts[1], fault, texts[0], texts[2], fault];
        let mut events: Vec<Event> = batch
            .iter()
            .map(|t| Event::observed(Source::Systemd, t.to_string(), Default::default()))
            .collect();
        events.insert(
            2,
            Event::daemon(RecordKind::Gap, "gap".into(), Default::default()),
        );
        events.push(Event::daemon(
            RecordKind::Benign,
            fault.into(),
            Default::default(),
        ));
        let rows: Vec<&str> = batch.iter().copied().chain([fault]).collect();
        let vectors = HashingEmbedder::new(384).embed(&rows).unwrap();
        let k = detector.search_k();
        let each_row = detector.index.search(&vectors.data, k).unwrap();
        let once_per_text = detector.candidates(&events, &vectors).unwrap();
        assert_eq!(once_per_text, each_row);
        assert_eq!(once_per_text.len(), rows.len());
        assert!(
            once_per_text.iter().all(|c| c.len() == 3),
            "{once_per_text:?}"
        );
    }

    #[test]
    fn a_benign_mark_joins_the_baseline_and_silences_repeats() {
        let mut detector = Detector::new(&config(1)).unwrap();
        let normal = "systemd unit nginx.service ActiveState=active SubState=running";
        let fault = "systemd unit backup.service ActiveState=failed Result=exit-code";
        judge(&mut detector, &[normal]);
        assert_eq!(judge(&mut detector, &[fault])[0].verdict, Verdict::Anomaly);
        let vectors = HashingEmbedder::new(384).embed(&[fault]).unwrap();
        let mark = Event::daemon(RecordKind::Benign, fault.into(), Default::default());
        let marked = detector.judge(vec![mark], &vectors).unwrap();
        assert_eq!(marked[0].joined, Some(1));
        let after = judge(&mut detector, &[fault]);
        assert_eq!(after[0].verdict, Verdict::Normal);
        assert_eq!(after[0].neighbours[0], (1, 0.0));
    }

    #[test]
    fn suppressed_events_neither_alert_nor_join() {
        let mut cfg = config(1);
        cfg.suppress = vec![SuppressRule {
            name: "backup-noise".into(),
            source: Some(Source::Systemd),
            pattern: regex::Regex::new("backup\\.service").unwrap(),
            until_usec: None,
        }];
        let mut detector = Detector::new(&cfg).unwrap();
        judge(
            &mut detector,
            &["systemd unit nginx.service ActiveState=active"],
        );
        let out = judge(
            &mut detector,
            &["systemd unit backup.service ActiveState=failed"],
        );
        assert_eq!(out[0].verdict, Verdict::Suppressed);
        assert_eq!(out[0].event.fields["suppressed_by"], "backup-noise");
        assert_eq!(out[0].joined, None);
        assert!(out[0].score.unwrap() > 0.25);
        cfg.suppress[0].until_usec = Some(1);
        let mut expired = Detector::new(&cfg).unwrap();
        judge(
            &mut expired,
            &["systemd unit nginx.service ActiveState=active"],
        );
        let out = judge(
            &mut expired,
            &["systemd unit backup.service ActiveState=failed"],
        );
        assert_eq!(
            out[0].verdict,
            Verdict::Anomaly,
            "an expired rule no longer applies"
        );
    }

    /// Clustered random unit vectors, deterministic.
    fn clustered(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let centres: Vec<f32> = (0..64 * DIM).map(|_| next()).collect();
        let mut out = Vec::with_capacity(n * DIM);
        for i in 0..n {
            let c = &centres[(i % 64) * DIM..][..DIM];
            let v: Vec<f32> = c.iter().map(|x| x + 0.3 * next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / norm));
        }
        out
    }

    #[test]
    fn the_trained_index_is_swapped_in_without_losing_vectors() {
        let mut cfg = config(0);
        cfg.index = "IVF16,PQ8".into();
        cfg.train_min_vectors = 2000;
        cfg.k = 5;
        let mut detector = Detector::new(&cfg).unwrap();
        assert_eq!(detector.description(), EXACT);
        let data = clustered(3000, 7);
        let texts: Vec<String> = (0..3000).map(|i| format!("text {i}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let first = Embeddings {
            dim: DIM,
            data: data[..2500 * DIM].to_vec(),
        };
        detector.learn(&refs[..2500], &first, 500, None).unwrap();
        assert!(
            detector.is_training(),
            "training starts at train_min_vectors"
        );
        // Vectors joining while the index trains are added after the swap.
        let rest = Embeddings {
            dim: DIM,
            data: data[2500 * DIM..].to_vec(),
        };
        detector.learn(&refs[2500..], &rest, 0, None).unwrap();
        detector.finish_training();
        assert_eq!(detector.description(), "IDMap2,IVF16,PQ8");
        assert_eq!(detector.index.len(), 3000);
        assert_eq!(detector.index_swaps(), 1);
        // Each vector finds itself: candidates come from the index, distances are exact.
        let mut found_self = 0;
        for probe in [3, 1200, 2600, 2999] {
            let q = &data[probe * DIM..][..DIM];
            let candidates = detector.index.search(q, 10).unwrap().pop().unwrap();
            let n = detector.neighbours("not a baseline text", q, candidates);
            if n[0].0 == probe as u64 {
                assert!(n[0].1.abs() < 1e-5);
                found_self += 1;
            }
        }
        assert!(
            found_self >= 3,
            "{found_self} of 4 vectors found themselves"
        );
    }

    #[test]
    fn drift_away_from_the_lists_retrains_and_the_same_data_does_not() {
        let mut cfg = config(0);
        cfg.index = "IVF16,Flat".into();
        cfg.train_min_vectors = 2000;
        cfg.retrain_growth = 10.0;
        let mut detector = Detector::new(&cfg).unwrap();
        let learn = |detector: &mut Detector, data: &[f32], first: usize| {
            let texts: Vec<String> = (0..data.len() / DIM)
                .map(|i| format!("text {}", first + i))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = Embeddings {
                dim: DIM,
                data: data.to_vec(),
            };
            detector.learn(&refs, &vectors, 0, None).unwrap();
        };
        let familiar = clustered(4500, 7);
        learn(&mut detector, &familiar[..3000 * DIM], 0);
        detector.finish_training();
        assert_eq!(detector.index_swaps(), 1);
        let reference = detector.index.drift().expect("an IVF index measures drift");
        assert!(reference.reference > 0.0);
        assert_eq!(reference.added, 0);

        learn(&mut detector, &familiar[3000 * DIM..], 3000);
        let same = detector.index.drift().unwrap();
        assert_eq!(same.added, 1500);
        assert!(
            same.share() < 0.3,
            "texts from the training clusters: share {}",
            same.share()
        );
        assert!(!detector.is_training(), "no drift, no growth: no retrain");

        learn(&mut detector, &clustered(1500, 99), 4500);
        let moved = detector.index.drift().unwrap();
        assert_eq!(moved.added, 3000);
        assert!(moved.share() >= 0.5, "share {}", moved.share());
        assert!(detector.index_drift_permille() >= 500);
        eprintln!(
            "drift share: same clusters {:.3}, after new clusters {:.3}",
            same.share(),
            moved.share()
        );
        assert!(detector.is_training(), "drift starts a retrain");
        detector.finish_training();
        assert_eq!(detector.index_swaps(), 2);
        assert_eq!(detector.index.trained_on(), 6000);
        assert_eq!(detector.index.drift().unwrap().added, 0);
        assert_eq!(detector.index_drift_permille(), 0);
    }

    #[test]
    fn factory_strings_are_checked() {
        assert_eq!(check_factory("Flat"), Ok(false));
        assert_eq!(check_factory("auto"), Ok(true));
        assert_eq!(check_factory("IVF16,PQ8"), Ok(true));
        assert!(check_factory("NoSuchIndex")
            .unwrap_err()
            .to_string()
            .contains("FAISS"));
        assert!(check_factory("").is_err());
        assert_eq!(auto_description(50_000), "IVF1024,SQ8");
        assert_eq!(auto_description(1_000_000), "IVF4096,SQ8");
        assert_eq!(auto_description(10), "IVF16,SQ8");
    }
}
