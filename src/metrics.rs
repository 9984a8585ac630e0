//! Counters the pipeline stages bump and the API reads. Each counter has one writer stage; atomics
//! let the API read them without a round trip through the pipeline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::event::Source;

/// Events lost since the last gap record: how many, when, and from which sources. Touched only
/// when something is dropped, so the lock is off the normal path.
#[derive(Debug, Default)]
pub struct GapLedger(Mutex<Option<Gap>>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub dropped: u64,
    pub first_usec: u64,
    pub last_usec: u64,
    pub by_source: BTreeMap<&'static str, u64>,
}

impl GapLedger {
    pub fn note(&self, source: Source, usec: u64) {
        let mut gap = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let gap = gap.get_or_insert_with(|| Gap {
            dropped: 0,
            first_usec: usec,
            last_usec: usec,
            by_source: BTreeMap::new(),
        });
        gap.dropped += 1;
        gap.first_usec = gap.first_usec.min(usec);
        gap.last_usec = gap.last_usec.max(usec);
        *gap.by_source.entry(source.as_str()).or_default() += 1;
    }

    /// The drops not yet written, leaving the ledger empty.
    pub fn take(&self) -> Option<Gap> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// Signals accepted from the bus and rendered (queued or dropped).
    pub events_received: AtomicU64,
    /// Signals that matched a subscription but carried nothing worth recording.
    pub events_ignored: AtomicU64,
    /// Signals refused because their sender does not own the source's well-known name, and
    /// `NameOwnerChanged` signals refused because the bus (`org.freedesktop.DBus`) did not send
    /// them.
    pub events_forged: AtomicU64,
    /// Signals whose shape was not what the service documents (signature, types, paths).
    pub signals_malformed: AtomicU64,
    /// Signals skipped because their body exceeded `sources.max_signal_bytes`.
    pub signals_oversized: AtomicU64,
    /// Unit property signals that repeated the unit's last recorded state (a job came or went).
    pub signals_unchanged: AtomicU64,
    /// Events dropped because a queue was full; each run of drops becomes a gap record.
    pub events_dropped: AtomicU64,
    /// Drops not yet written as a gap record.
    pub gaps: GapLedger,
    pub records_written: AtomicU64,
    pub anomalies: AtomicU64,
    /// Anomalies that opened an incident (alerted); the rest repeated an open one.
    pub incidents: AtomicU64,
    pub batches: AtomicU64,
    pub embed_errors: AtomicU64,
    /// Texts whose vector came from the embedding cache, and texts that had to be embedded.
    pub embed_cache_hits: AtomicU64,
    pub embed_cache_misses: AtomicU64,
    pub audit_retries: AtomicU64,
    /// Distinct vectors in the baseline index.
    pub baseline_size: AtomicU64,
    /// Trained indexes swapped in since start.
    pub index_swaps: AtomicU64,
    /// Share in ‰ of the texts added since training that lie beyond the training texts' 90th
    /// percentile distance to an IVF list centre; `detector.retrain_drift` retrains on it.
    pub index_drift_permille: AtomicU64,
    /// Events recorded as `suppressed` by a suppression rule.
    pub suppressed: AtomicU64,
    /// Events marked benign through the API.
    pub marked_benign: AtomicU64,
    /// Admin calls refused because the caller is neither root, the service user, nor in the
    /// admin group.
    pub access_denied: AtomicU64,
    /// The alert threshold now (the highest of the sources'), as `f64::to_bits`.
    pub threshold_bits: AtomicU64,
    /// Each source's own alert threshold now, as `f64::to_bits`, in [`THRESHOLD_SOURCES`]
    /// order (0 bits: the source has sent nothing yet).
    pub source_threshold_bits: [AtomicU64; 5],
    pub head_seq: AtomicU64,
    /// Microseconds from observation to commit, for the last batch's oldest event.
    pub last_batch_latency_usec: AtomicU64,
    /// The most events the intake queue has held at once since start (of
    /// `sources.queue_capacity`): how close a burst came to dropping.
    pub queue_depth_peak: AtomicU64,
    /// Events accepted per source, in [`THRESHOLD_SOURCES`] order (others are not counted here).
    pub events_by_source: [AtomicU64; 5],
    /// Anomalies committed per source, in [`THRESHOLD_SOURCES`] order.
    pub anomalies_by_source: [AtomicU64; 5],
    /// Seconds from an event's observation to its committed record, per scored record.
    pub commit_latency: SecondsHistogram,
    /// Seconds to embed one batch (the cache's lookups included).
    pub embed_duration: SecondsHistogram,
}

/// A histogram of durations in seconds, 0.5 ms to about 16 s in powers of two: the range from
/// one cached batch to a stalled commit.
#[derive(Debug)]
pub struct SecondsHistogram(pub prometheus_client::metrics::histogram::Histogram);

impl Default for SecondsHistogram {
    fn default() -> Self {
        SecondsHistogram(prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16),
        ))
    }
}

impl SecondsHistogram {
    pub fn observe(&self, seconds: f64) {
        self.0.observe(seconds);
    }
}

/// The sources whose thresholds [`Metrics::source_threshold_bits`] holds, in its order.
pub const THRESHOLD_SOURCES: [crate::event::Source; 5] = [
    crate::event::Source::Systemd,
    crate::event::Source::NetworkManager,
    crate::event::Source::Login1,
    crate::event::Source::Udisks2,
    crate::event::Source::Custom,
];

impl Metrics {
    /// Counts an accepted event under its source.
    pub fn count_event(&self, source: crate::event::Source) {
        self.events_received.fetch_add(1, Relaxed);
        if let Some(i) = THRESHOLD_SOURCES.iter().position(|s| *s == source) {
            self.events_by_source[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a committed anomaly under its source.
    pub fn count_anomaly(&self, source: crate::event::Source) {
        self.anomalies.fetch_add(1, Relaxed);
        if let Some(i) = THRESHOLD_SOURCES.iter().position(|s| *s == source) {
            self.anomalies_by_source[i].fetch_add(1, Relaxed);
        }
    }

    /// Stores the alert thresholds as the detector has them now.
    pub fn store_thresholds(&self, highest: f32, per_source: &[(crate::event::Source, f32)]) {
        self.threshold_bits
            .store(decimal_f64(highest).to_bits(), Relaxed);
        for (source, threshold) in per_source {
            if let Some(i) = THRESHOLD_SOURCES.iter().position(|s| s == source) {
                self.source_threshold_bits[i].store(decimal_f64(*threshold).to_bits(), Relaxed);
            }
        }
    }

    /// Each source's alert threshold, for the sources that have one.
    pub fn source_thresholds(&self) -> Vec<(crate::event::Source, f64)> {
        THRESHOLD_SOURCES
            .iter()
            .zip(&self.source_threshold_bits)
            .filter_map(|(s, bits)| match bits.load(Relaxed) {
                0 => None,
                b => Some((*s, f64::from_bits(b))),
            })
            .collect()
    }
}

/// A consistent-enough copy of every counter, for `Stats` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub events_received: u64,
    pub events_ignored: u64,
    pub events_forged: u64,
    pub signals_malformed: u64,
    pub signals_oversized: u64,
    pub signals_unchanged: u64,
    pub events_dropped: u64,
    pub records_written: u64,
    pub anomalies: u64,
    pub incidents: u64,
    pub batches: u64,
    pub embed_errors: u64,
    pub embed_cache_hits: u64,
    pub embed_cache_misses: u64,
    pub audit_retries: u64,
    pub baseline_size: u64,
    pub index_swaps: u64,
    pub index_drift_permille: u64,
    pub suppressed: u64,
    pub marked_benign: u64,
    pub access_denied: u64,
    pub head_seq: u64,
    pub last_batch_latency_usec: u64,
    pub queue_depth_peak: u64,
}

impl Metrics {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            events_received: self.events_received.load(Relaxed),
            events_ignored: self.events_ignored.load(Relaxed),
            events_forged: self.events_forged.load(Relaxed),
            signals_malformed: self.signals_malformed.load(Relaxed),
            signals_oversized: self.signals_oversized.load(Relaxed),
            signals_unchanged: self.signals_unchanged.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            records_written: self.records_written.load(Relaxed),
            anomalies: self.anomalies.load(Relaxed),
            incidents: self.incidents.load(Relaxed),
            batches: self.batches.load(Relaxed),
            embed_errors: self.embed_errors.load(Relaxed),
            embed_cache_hits: self.embed_cache_hits.load(Relaxed),
            embed_cache_misses: self.embed_cache_misses.load(Relaxed),
            audit_retries: self.audit_retries.load(Relaxed),
            baseline_size: self.baseline_size.load(Relaxed),
            index_swaps: self.index_swaps.load(Relaxed),
            index_drift_permille: self.index_drift_permille.load(Relaxed),
            suppressed: self.suppressed.load(Relaxed),
            marked_benign: self.marked_benign.load(Relaxed),
            access_denied: self.access_denied.load(Relaxed),
            head_seq: self.head_seq.load(Relaxed),
            last_batch_latency_usec: self.last_batch_latency_usec.load(Relaxed),
            queue_depth_peak: self.queue_depth_peak.load(Relaxed),
        }
    }
}

impl Snapshot {
    /// Name/value pairs, in the order `Stats` reports them.
    pub fn pairs(&self) -> [(&'static str, u64); 24] {
        [
            ("EventsReceived", self.events_received),
            ("EventsIgnored", self.events_ignored),
            ("EventsForged", self.events_forged),
            ("SignalsMalformed", self.signals_malformed),
            ("SignalsOversized", self.signals_oversized),
            ("SignalsUnchanged", self.signals_unchanged),
            ("EventsDropped", self.events_dropped),
            ("RecordsWritten", self.records_written),
            ("Anomalies", self.anomalies),
            ("Incidents", self.incidents),
            ("Batches", self.batches),
            ("EmbedErrors", self.embed_errors),
            ("EmbedCacheHits", self.embed_cache_hits),
            ("EmbedCacheMisses", self.embed_cache_misses),
            ("AuditRetries", self.audit_retries),
            ("BaselineSize", self.baseline_size),
            ("IndexSwaps", self.index_swaps),
            ("IndexDriftPermille", self.index_drift_permille),
            ("Suppressed", self.suppressed),
            ("MarkedBenign", self.marked_benign),
            ("AccessDenied", self.access_denied),
            ("HeadSeq", self.head_seq),
            ("LastBatchLatencyUsec", self.last_batch_latency_usec),
            ("QueueDepthPeak", self.queue_depth_peak),
        ]
    }
}

/// An `f32` widened to the `f64` nearest its shortest decimal form (0.05f32 → 0.05, not
/// 0.05000000074505806), for values shown to people and compared by scripts.
pub fn decimal_f64(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}
