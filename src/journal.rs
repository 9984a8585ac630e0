//! The journal contract: the structured entries a fleet collects from each host (through
//! systemd-journal-upload/remote, or the journald readers of Vector, Fluent Bit and the
//! OpenTelemetry Collector). Each entry type has a fixed `MESSAGE_ID`, explained by the shipped
//! catalog (`config/anomalyd.catalog`, installed as `/usr/lib/systemd/catalog/anomalyd.catalog`,
//! so `journalctl -x` says what it means and what to do), and fields named `ANOMALYD_*`
//! (checkpoints keep `CHECKPOINT_SEQ`/`CHECKPOINT_HASH`).
//!
//! The entries are tracing events with this module's target, [`TARGET`]. The logging set-up lets
//! that target through whatever the configured level (`log_level = "error"` still emits every
//! anomaly and checkpoint), and tracing-journald maps `warn!` to `PRIORITY=4` (warning) and
//! `info!` to `PRIORITY=5` (notice), with field names upper-cased and unprefixed.
//! `docs/fleet.md` is the operator's reference.

use tracing::{info, warn};

/// The tracing target of every contract entry (this module's path).
pub const TARGET: &str = module_path!();

/// An anomaly that opened an incident (`PRIORITY=4`).
pub const ANOMALY_DETECTED_MESSAGE_ID: &str = "f9cfe82dd25b472085f12ffd3d18cce2";
/// An anomaly of an open incident's text, flagged again (`PRIORITY=4`).
pub const ANOMALY_REPEATED_MESSAGE_ID: &str = "e22e06ceb8284f5ca602f4d689e77793";
/// The chain's head, written outside the database (`PRIORITY=5`).
pub const CHECKPOINT_MESSAGE_ID: &str = "5b1c0e2a9f7d4e3c8a6b2d1f0e9c8b7a";
/// An incident closed by a benign mark (`PRIORITY=5`). An incident that closes by staying quiet
/// (`incident_quiet_s`) has no entry of its own: the text's next anomaly opens a new one.
pub const INCIDENT_CLOSED_MESSAGE_ID: &str = "378bd813d594413283edbc77f788bf5d";
/// The daemon started and recorded its start record (`PRIORITY=5`).
pub const STARTED_MESSAGE_ID: &str = "867858adca9e43e4a727307d4527e557";
/// The daemon stopped; the head at shutdown (`PRIORITY=5`).
pub const STOPPED_MESSAGE_ID: &str = "ad1afd7600624656819f9872304e83b6";

/// Every entry type: its `MESSAGE_ID` and the catalog subject's first words (the catalog test
/// checks each has an entry).
pub const MESSAGE_IDS: [(&str, &str); 6] = [
    (ANOMALY_DETECTED_MESSAGE_ID, "anomaly detected"),
    (ANOMALY_REPEATED_MESSAGE_ID, "anomaly repeated"),
    (INCIDENT_CLOSED_MESSAGE_ID, "incident closed"),
    (CHECKPOINT_MESSAGE_ID, "audit checkpoint"),
    (STARTED_MESSAGE_ID, "anomalyd started"),
    (STOPPED_MESSAGE_ID, "anomalyd stopped"),
];

/// One committed anomaly, as its journal entry carries it.
#[derive(Debug, Clone, Copy)]
pub struct AnomalyEntry<'a> {
    pub seq: u64,
    pub source: &'a str,
    pub text: &'a str,
    pub score: f64,
    /// What the score was judged against (the source's threshold, or the slot allowance).
    pub threshold: Option<f64>,
    /// The record's chain hash.
    pub hash: &'a [u8; 32],
    /// The seq that opened the incident (its own for the first) and the repeat number (0 first).
    pub incident: u64,
    pub repeat: u64,
}

/// `ANOMALY_DETECTED` for the first of an incident, `ANOMALY_REPEATED` for the rest.
pub fn anomaly(entry: &AnomalyEntry<'_>) {
    let hash = hex::encode(entry.hash);
    // A missing threshold (a record from before thresholds were kept) is written as empty
    // rather than as a made-up number.
    let threshold = entry.threshold.map_or(String::new(), |t| format!("{t:.6}"));
    let score = format!("{:.6}", entry.score);
    let (message_id, summary) = if entry.repeat == 0 {
        (
            ANOMALY_DETECTED_MESSAGE_ID,
            format!("score {score} above {threshold}"),
        )
    } else {
        (
            ANOMALY_REPEATED_MESSAGE_ID,
            format!(
                "repeat {} of incident {}, score {score}",
                entry.repeat, entry.incident
            ),
        )
    };
    // ANOMALYD_REPEAT is 0 on the entry that opened the incident.
    warn!(
        target: TARGET,
        message_id,
        anomalyd_seq = entry.seq,
        anomalyd_source = entry.source,
        anomalyd_score = %score,
        anomalyd_threshold = %threshold,
        anomalyd_text = entry.text,
        anomalyd_hash = %hash,
        anomalyd_incident = entry.incident,
        anomalyd_repeat = entry.repeat,
        "anomaly {}: {} ({summary}, seq {})",
        if entry.repeat == 0 { "detected" } else { "repeated" },
        entry.text,
        entry.seq,
    );
}

/// The benign mark recorded at `seq` closed the incident that `incident` opened.
pub fn incident_closed(
    seq: u64,
    hash: &[u8; 32],
    incident: u64,
    text: &str,
    end: crate::incident::IncidentEnd,
) {
    let hash = hex::encode(hash);
    let why = match end {
        crate::incident::IncidentEnd::Benign => "marked benign",
        crate::incident::IncidentEnd::Periodic => "periodic, it joined the baseline",
    };
    info!(
        target: TARGET,
        message_id = INCIDENT_CLOSED_MESSAGE_ID,
        anomalyd_seq = seq,
        anomalyd_hash = %hash,
        anomalyd_incident = incident,
        anomalyd_text = text,
        anomalyd_reason = end.as_str(),
        "incident {incident} closed: {why} (seq {seq}): {text}"
    );
}

/// A checkpoint: the head `(seq, hash)` a chain must contain.
pub fn checkpoint(seq: u64, hash: &[u8; 32]) {
    let hash = hex::encode(hash);
    info!(
        target: TARGET,
        message_id = CHECKPOINT_MESSAGE_ID,
        checkpoint_seq = seq,
        checkpoint_hash = %hash,
        "audit checkpoint {seq}:{hash}"
    );
}

/// The start record `(seq, hash)` is committed.
pub fn started(seq: u64, hash: &[u8; 32], version: &str, model: &str) {
    let hash = hex::encode(hash);
    info!(
        target: TARGET,
        message_id = STARTED_MESSAGE_ID,
        anomalyd_seq = seq,
        anomalyd_hash = %hash,
        anomalyd_version = version,
        anomalyd_model = model,
        "anomalyd started (version {version}, start record {seq})"
    );
}

/// The stop record `(seq, hash)` is committed: the head at shutdown.
pub fn stopped(seq: u64, hash: &[u8; 32]) {
    let hash = hex::encode(hash);
    info!(
        target: TARGET,
        message_id = STOPPED_MESSAGE_ID,
        anomalyd_seq = seq,
        anomalyd_hash = %hash,
        "anomalyd stopped (head {seq}:{hash})"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `journalctl -x` explains an entry only if the catalog has its id; a renamed or new entry
    /// must not go out without one.
    #[test]
    fn the_catalog_explains_every_entry_type() {
        let catalog = include_str!("../config/anomalyd.catalog");
        for (id, subject) in MESSAGE_IDS {
            assert_eq!(id.len(), 32, "{id} is not 128 bits of hex");
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            let header = format!("-- {id}");
            let at = catalog
                .find(&header)
                .unwrap_or_else(|| panic!("the catalog has no entry {header} ({subject})"));
            let subject_line = catalog[at..]
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap_or_default()
                .to_lowercase();
            assert!(
                subject_line.contains(subject),
                "{header}: subject {subject_line:?} is not about {subject:?}"
            );
        }
        let mut ids: Vec<&str> = MESSAGE_IDS.iter().map(|(id, _)| *id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), MESSAGE_IDS.len(), "two entry types share an id");
    }
}
