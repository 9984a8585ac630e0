//! What flows through the pipeline: an observed [`Event`], and the verdict it ends up with.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Where an event came from; its name is the first word of the canonical text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Systemd,
    NetworkManager,
    Login1,
    Udisks2,
    Custom,
    /// The daemon's own records (start, stop, gaps).
    Daemon,
}

impl Source {
    /// The source an operator names in configuration (not the daemon's own).
    pub fn from_name(name: &str) -> Option<Source> {
        [
            Source::Systemd,
            Source::NetworkManager,
            Source::Login1,
            Source::Udisks2,
            Source::Custom,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Systemd => "systemd",
            Source::NetworkManager => "networkmanager",
            Source::Login1 => "login1",
            Source::Udisks2 => "udisks2",
            Source::Custom => "custom",
            Source::Daemon => "anomalyd",
        }
    }
}

/// The kind of audit record an event becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Binds the chain to the host and its creation time; always seq 1.
    Genesis,
    Start,
    Stop,
    /// An infrastructure state change seen on the bus.
    Event,
    /// Events were dropped because the intake queue was full; the record says how many.
    Gap,
    /// An operator marked an event benign (`MarkBenign`): its text joins the baseline.
    Benign,
    /// Known-normal history imported into the baseline (`anomalyd baseline import`).
    Import,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Genesis => "genesis",
            RecordKind::Start => "start",
            RecordKind::Stop => "stop",
            RecordKind::Event => "event",
            RecordKind::Gap => "gap",
            RecordKind::Benign => "benign",
            RecordKind::Import => "import",
        }
    }

    /// Only observed events are embedded and scored; the daemon's own records are not.
    pub fn is_scored(self) -> bool {
        self == RecordKind::Event
    }

    /// Embedded: observed events, and benign marks, whose text joins the baseline.
    pub fn needs_vector(self) -> bool {
        matches!(self, RecordKind::Event | RecordKind::Benign)
    }
}

/// One observation, rendered. `text` is what gets embedded: stable fields in a fixed order, with
/// volatile values (PIDs, job ids, timestamps) left out; `fields` keeps everything, volatile values
/// included, for the audit record.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: RecordKind,
    pub observed_usec: u64,
    pub source: Source,
    pub text: String,
    pub fields: Map<String, Value>,
}

impl Event {
    pub fn observed(source: Source, text: String, fields: Map<String, Value>) -> Event {
        Event {
            kind: RecordKind::Event,
            observed_usec: now_usec(),
            source,
            text,
            fields,
        }
    }

    pub fn daemon(kind: RecordKind, text: String, fields: Map<String, Value>) -> Event {
        Event {
            kind,
            observed_usec: now_usec(),
            source: Source::Daemon,
            text,
            fields,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Scored below the threshold; the event joined the baseline.
    Normal,
    /// Scored above the threshold; kept out of the baseline so a recurring fault keeps alerting.
    Anomaly,
    /// The baseline is still too small to judge; the event joined it.
    Warmup,
    /// Matched a suppression rule (`detector.suppress`): scored, but neither alerted nor joined.
    Suppressed,
    /// Not scored: the daemon's own records.
    NotScored,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Normal => "normal",
            Verdict::Anomaly => "anomaly",
            Verdict::Warmup => "warmup",
            Verdict::Suppressed => "suppressed",
            Verdict::NotScored => "none",
        }
    }
}

/// A scored event, ready for the audit log.
#[derive(Debug, Clone)]
pub struct Judged {
    pub event: Event,
    pub score: Option<f32>,
    pub verdict: Verdict,
    /// Baseline entries nearest to the event: (baseline id, distance).
    pub neighbours: Vec<(u64, f32)>,
    /// The baseline id the event's text counts towards, when it joined the baseline.
    pub joined: Option<u64>,
    /// Judged normal and joined as periodic (`detect::recurrence`); recorded by the audit
    /// writer as `fields.periodic`.
    pub periodic: Option<Periodic>,
}

/// Why an anomaly's text joined the baseline by itself: flagged hour after hour through a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periodic {
    /// Distinct clock hours of the last 24 in which it was flagged.
    pub hours: u32,
    /// The incident this closed (set by the audit thread, before the record is hashed).
    pub incident: Option<u64>,
}

impl Judged {
    /// An event recorded without a score: the daemon's own records, or a batch that could not be
    /// embedded or scored.
    pub fn unscored(event: Event) -> Judged {
        Judged {
            event,
            score: None,
            verdict: Verdict::NotScored,
            neighbours: Vec::new(),
            joined: None,
            periodic: None,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm), for a month
/// in 1..=12 and a day in 1..=31 (the caller checks them).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
