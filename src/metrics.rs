//! Counters the pipeline stages bump and the API reads. Each counter has one writer stage; atomics
//! let the API read them without a round trip through the pipeline.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Signals accepted from the bus and rendered (queued or dropped).
    pub events_received: AtomicU64,
    /// Signals that matched a subscription but carried nothing worth recording.
    pub events_ignored: AtomicU64,
    /// Signals refused because their sender does not own the source's well-known name.
    pub events_forged: AtomicU64,
    /// Events dropped because the intake queue was full; each run of drops becomes a gap record.
    pub events_dropped: AtomicU64,
    /// Drops not yet written as a gap record.
    pub(crate) gap_pending: AtomicU64,
    pub records_written: AtomicU64,
    pub anomalies: AtomicU64,
    pub batches: AtomicU64,
    pub embed_errors: AtomicU64,
    pub audit_retries: AtomicU64,
    /// Distinct vectors in the baseline index.
    pub baseline_size: AtomicU64,
    pub head_seq: AtomicU64,
    /// Microseconds from observation to commit, for the last batch's oldest event.
    pub last_batch_latency_usec: AtomicU64,
}

/// A consistent-enough copy of every counter, for `Stats` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub events_received: u64,
    pub events_ignored: u64,
    pub events_forged: u64,
    pub events_dropped: u64,
    pub records_written: u64,
    pub anomalies: u64,
    pub batches: u64,
    pub embed_errors: u64,
    pub audit_retries: u64,
    pub baseline_size: u64,
    pub head_seq: u64,
    pub last_batch_latency_usec: u64,
}

impl Metrics {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            events_received: self.events_received.load(Relaxed),
            events_ignored: self.events_ignored.load(Relaxed),
            events_forged: self.events_forged.load(Relaxed),
            events_dropped: self.events_dropped.load(Relaxed),
            records_written: self.records_written.load(Relaxed),
            anomalies: self.anomalies.load(Relaxed),
            batches: self.batches.load(Relaxed),
            embed_errors: self.embed_errors.load(Relaxed),
            audit_retries: self.audit_retries.load(Relaxed),
            baseline_size: self.baseline_size.load(Relaxed),
            head_seq: self.head_seq.load(Relaxed),
            last_batch_latency_usec: self.last_batch_latency_usec.load(Relaxed),
        }
    }
}

impl Snapshot {
    /// Name/value pairs, in the order `Stats` reports them.
    pub fn pairs(&self) -> [(&'static str, u64); 12] {
        [
            ("EventsReceived", self.events_received),
            ("EventsIgnored", self.events_ignored),
            ("EventsForged", self.events_forged),
            ("EventsDropped", self.events_dropped),
            ("RecordsWritten", self.records_written),
            ("Anomalies", self.anomalies),
            ("Batches", self.batches),
            ("EmbedErrors", self.embed_errors),
            ("AuditRetries", self.audit_retries),
            ("BaselineSize", self.baseline_size),
            ("HeadSeq", self.head_seq),
            ("LastBatchLatencyUsec", self.last_batch_latency_usec),
        ]
    }
}
