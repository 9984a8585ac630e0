//! `[detector]`: the index, the verdict rule's thresholds and calibration, incidents, training
//! and suppression rules. What FAISS can build, and what fits a GPU, the detector checks itself
//! (`detect::check`), so this module needs nothing from it.

use std::time::Duration;

use serde::Deserialize;

use super::{quoted, ConfigError, GpuSearchConfig, Rules};

#[derive(Debug, Clone)]
pub struct DetectorConfig {
    pub index: String,
    pub k: usize,
    /// The fixed threshold, or the floor under the calibrated one.
    pub threshold: f32,
    /// Quantile of recent baseline scores that sets the threshold; 0 = fixed threshold.
    pub calibration_quantile: f64,
    /// Recent baseline scores the quantile is taken over.
    pub calibration_window: usize,
    /// The calibrated threshold never rises above this.
    pub alert_ceiling: f32,
    /// A log program's own threshold, for its lines that report no failure, never rises above
    /// this (0: programs have no threshold of their own).
    pub program_ceiling: f32,
    /// Added to the distance as `rarity_weight / (1 + ln count)` of the nearest baseline text.
    pub rarity_weight: f32,
    pub warmup_events: u64,
    /// An event that is a new value in a variable template slot or span is an anomaly above this
    /// many times its source's threshold (1 = no such allowance).
    pub variable_slot_factor: f32,
    /// Distinct baseline texts a slot must have held to count as variable.
    pub variable_slot_values: u32,
    /// An incident closes after this long without a repeat (zero: only by a benign mark).
    pub incident_quiet: Duration,
    /// A flagged text recurring in this many distinct clock hours of one day joins the baseline
    /// as periodic (0 = never).
    pub periodic_hours: u32,
    /// After an anomaly, how long a new text of the same source that reports a failure is judged
    /// against the floor (`threshold`) rather than the calibrated threshold (zero: never).
    pub follow_on: Duration,
    /// The occurrence of one unknown failure text within `failure_repeat` that makes it, and
    /// every later one in that time, an anomaly judged against the floor (0 = never).
    pub failure_repeats: u32,
    pub failure_repeat: Duration,
    /// Candidates probed per query once the index is IVF.
    pub nprobe: usize,
    /// Distinct vectors before a trained index is built (exact search until then).
    pub train_min_vectors: usize,
    /// Retrain once the baseline has grown by this factor since the last training.
    pub retrain_growth: f64,
    /// Retrain once this share of the texts added since the last training lie farther from
    /// every IVF list centre than 90% of the training texts did; 0 = never for drift.
    pub retrain_drift: f64,
    /// How often the baseline snapshot is rewritten while it changes; 0 = only at shutdown.
    pub snapshot_interval: Duration,
    pub suppress: Vec<SuppressRule>,
    /// From `[gpu]`: whether the trained index is mirrored to a GPU for search.
    pub gpu_search: GpuSearchConfig,
}

/// Known noise: events from `source` (any source when `None`) whose text matches `pattern`,
/// until `until_usec` (for ever when `None`), are recorded as `suppressed`.
#[derive(Debug, Clone)]
pub struct SuppressRule {
    pub name: String,
    pub source: Option<crate::event::Source>,
    pub pattern: regex::Regex,
    pub until_usec: Option<u64>,
}

impl SuppressRule {
    /// The rule as recorded in the start record.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "source": self.source.map(|s| s.as_str()),
            "pattern": self.pattern.as_str(),
            "until_usec": self.until_usec,
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetector {
    pub index: String,
    pub k: i64,
    pub threshold: f64,
    pub calibration_quantile: f64,
    pub calibration_window: i64,
    pub alert_ceiling: f64,
    pub program_ceiling: f64,
    pub rarity_weight: f64,
    pub warmup_events: i64,
    pub variable_slot_factor: f64,
    pub variable_slot_values: i64,
    pub incident_quiet_s: i64,
    pub periodic_hours: i64,
    pub follow_on_s: i64,
    pub failure_repeats: i64,
    pub failure_repeat_s: i64,
    pub nprobe: i64,
    pub train_min_vectors: i64,
    pub retrain_growth: f64,
    pub retrain_drift: f64,
    pub snapshot_interval_s: i64,
    pub suppress: Vec<RawSuppressRule>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSuppressRule {
    pub name: String,
    #[serde(default)]
    pub source: Option<String>,
    pub pattern: String,
    #[serde(default)]
    pub until: Option<toml::value::Datetime>,
}

/// Microseconds since the epoch of a TOML offset date-time (`2026-12-31T00:00:00Z`).
fn datetime_usec(dt: &toml::value::Datetime) -> Result<u64, &'static str> {
    let (Some(date), Some(time), Some(offset)) = (dt.date, dt.time, dt.offset) else {
        return Err("must be a full date-time with an offset, such as 2026-12-31T00:00:00Z");
    };
    let days = crate::event::days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let seconds = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    let usec = seconds * 1_000_000 + i64::from(time.nanosecond) / 1000;
    u64::try_from(usec).map_err(|_| "must be after 1970")
}

impl Default for RawDetector {
    fn default() -> Self {
        RawDetector {
            index: "auto".into(),
            k: 5,
            threshold: 0.05,
            calibration_quantile: 0.97,
            calibration_window: 10_000,
            alert_ceiling: 0.25,
            program_ceiling: 1.0,
            rarity_weight: 0.01,
            warmup_events: 200,
            variable_slot_factor: 8.0,
            variable_slot_values: 3,
            incident_quiet_s: 86_400,
            periodic_hours: 12,
            follow_on_s: 60,
            failure_repeats: 3,
            failure_repeat_s: 3600,
            nprobe: 4,
            train_min_vectors: 20_000,
            retrain_growth: 2.0,
            retrain_drift: 0.5,
            snapshot_interval_s: 300,
            suppress: Vec::new(),
        }
    }
}

impl RawDetector {
    /// The `[gpu]` half of the result (`gpu_search`) is filled in by the caller.
    pub(super) fn validate(&self, rules: &Rules) -> Result<DetectorConfig, ConfigError> {
        let det = self;
        let k = rules.in_range("detector.k", det.k, 1, 1024)? as usize;
        if !(det.threshold.is_finite() && det.threshold > 0.0 && det.threshold <= 2.0) {
            return Err(rules.invalid(
                "detector.threshold",
                &det.threshold,
                "must be greater than 0 and at most 2",
            ));
        }
        let warmup_events =
            rules.in_range("detector.warmup_events", det.warmup_events, 0, 10_000_000)? as u64;
        let q = det.calibration_quantile;
        if !(q == 0.0 || (q.is_finite() && (0.5..1.0).contains(&q))) {
            return Err(rules.invalid(
                "detector.calibration_quantile",
                &q,
                "must be 0 (a fixed threshold) or at least 0.5 and below 1",
            ));
        }
        let calibration_window = rules.in_range(
            "detector.calibration_window",
            det.calibration_window,
            100,
            10_000_000,
        )? as usize;
        if !(det.alert_ceiling.is_finite() && det.alert_ceiling > 0.0 && det.alert_ceiling <= 2.0) {
            return Err(rules.invalid(
                "detector.alert_ceiling",
                &det.alert_ceiling,
                "must be greater than 0 and at most 2 (below detector.threshold it is the threshold)",
            ));
        }
        if !(det.program_ceiling.is_finite() && (0.0..=2.0).contains(&det.program_ceiling)) {
            return Err(rules.invalid(
                "detector.program_ceiling",
                &det.program_ceiling,
                "must be 0 (no program thresholds) or greater than 0 and at most 2",
            ));
        }
        if !(det.rarity_weight.is_finite() && (0.0..=1.0).contains(&det.rarity_weight)) {
            return Err(rules.invalid(
                "detector.rarity_weight",
                &det.rarity_weight,
                "must be between 0 and 1",
            ));
        }
        if !(det.variable_slot_factor.is_finite()
            && (1.0..=1000.0).contains(&det.variable_slot_factor))
        {
            return Err(rules.invalid(
                "detector.variable_slot_factor",
                &det.variable_slot_factor,
                "must be between 1 (no allowance) and 1000",
            ));
        }
        let variable_slot_values = rules.in_range(
            "detector.variable_slot_values",
            det.variable_slot_values,
            2,
            1_000_000,
        )? as u32;
        let incident_quiet_s = rules.in_range(
            "detector.incident_quiet_s",
            det.incident_quiet_s,
            0,
            31_536_000,
        )? as u64;
        // One hour is no recurrence, and more than a day's hours cannot happen in a day.
        let periodic_hours =
            rules.never_or_in_range("detector.periodic_hours", det.periodic_hours, 2, 24)? as u32;
        let follow_on_s = rules.in_range("detector.follow_on_s", det.follow_on_s, 0, 3600)? as u64;
        // Once is no repeat.
        let failure_repeats =
            rules.never_or_in_range("detector.failure_repeats", det.failure_repeats, 2, 1000)?
                as u32;
        let failure_repeat_s =
            rules.in_range("detector.failure_repeat_s", det.failure_repeat_s, 1, 86_400)? as u64;
        // FAISS's GPU IVF search caps nprobe at 2048; the same bound keeps CPU configs portable.
        let nprobe = rules.in_range("detector.nprobe", det.nprobe, 1, 2048)? as usize;
        let train_min_vectors = rules.in_range(
            "detector.train_min_vectors",
            det.train_min_vectors,
            1000,
            100_000_000,
        )? as usize;
        if !(det.retrain_growth.is_finite() && (1.1..=100.0).contains(&det.retrain_growth)) {
            return Err(rules.invalid(
                "detector.retrain_growth",
                &det.retrain_growth,
                "must be between 1.1 and 100",
            ));
        }
        // Without drift about 10% of new texts lie beyond the training texts' 90th percentile
        // (a little more, since k-means fitted the training texts): a bar that low retrains for ever.
        if !(det.retrain_drift == 0.0
            || (det.retrain_drift.is_finite() && (0.2..=1.0).contains(&det.retrain_drift)))
        {
            return Err(rules.invalid(
                "detector.retrain_drift",
                &det.retrain_drift,
                "must be 0 (off) or between 0.2 and 1",
            ));
        }
        let snapshot_interval_s = rules.in_range(
            "detector.snapshot_interval_s",
            det.snapshot_interval_s,
            0,
            7 * 86_400,
        )?;
        let mut suppress = Vec::with_capacity(det.suppress.len());
        for (i, rule) in det.suppress.iter().enumerate() {
            let key = |field: &str| format!("detector.suppress[{i}].{field}");
            if rule.name.trim().is_empty() {
                return Err(rules.invalid(&key("name"), &quoted(&rule.name), "must not be empty"));
            }
            let source = match rule.source.as_deref() {
                None => None,
                Some(name) => Some(crate::event::Source::from_name(name).ok_or_else(|| {
                    rules.invalid(
                        &key("source"),
                        &quoted(name),
                        "must be one of systemd, networkmanager, login1, udisks2, custom",
                    )
                })?),
            };
            let pattern = regex::Regex::new(&rule.pattern).map_err(|e| {
                rules.invalid(
                    &key("pattern"),
                    &quoted(&rule.pattern),
                    &format!("not a regular expression: {e}"),
                )
            })?;
            let until_usec = match &rule.until {
                None => None,
                Some(dt) => {
                    Some(datetime_usec(dt).map_err(|why| rules.invalid(&key("until"), dt, why))?)
                }
            };
            suppress.push(SuppressRule {
                name: rule.name.clone(),
                source,
                pattern,
                until_usec,
            });
        }

        Ok(DetectorConfig {
            index: det.index.clone(),
            k,
            threshold: det.threshold as f32,
            calibration_quantile: q,
            calibration_window,
            alert_ceiling: det.alert_ceiling as f32,
            program_ceiling: det.program_ceiling as f32,
            rarity_weight: det.rarity_weight as f32,
            warmup_events,
            variable_slot_factor: det.variable_slot_factor as f32,
            variable_slot_values,
            incident_quiet: Duration::from_secs(incident_quiet_s),
            periodic_hours,
            follow_on: Duration::from_secs(follow_on_s),
            failure_repeats,
            failure_repeat: Duration::from_secs(failure_repeat_s),
            nprobe,
            train_min_vectors,
            retrain_growth: det.retrain_growth,
            retrain_drift: det.retrain_drift,
            snapshot_interval: Duration::from_secs(snapshot_interval_s as u64),
            suppress,
            gpu_search: GpuSearchConfig::default(),
        })
    }
}
