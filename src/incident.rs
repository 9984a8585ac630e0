//! Incidents: what an operator is asked to look at. The first anomaly of a text opens an
//! incident and alerts; later anomalies of the same text are repeats of it: each still gets its
//! own `anomaly` verdict and record in the chain, naming the record that opened the incident
//! (`incident`) and its place in it (`repeat`), but does not alert again. An incident closes when
//! its text has been quiet for `quiet` (the next occurrence opens a new one and alerts), or when
//! the text is marked benign.
//!
//! Why a recurring anomaly does not simply join the baseline after a while: a fault that recurs
//! (a nightly OOM kill) would then become normal without anyone deciding so. An open incident
//! keeps it in view, counted, at the cost of one alert. The one exception is a text flagged hour
//! after hour through a day that reports no failure (`detect::recurrence`): it joins as
//! periodic, and that event closes its incident.
//!
//! The tracker is a pure state machine over `(text, id, time)`: the audit thread feeds it record
//! seqs, `anomalyd score-file` line numbers.

use std::collections::HashMap;

/// Why an open incident closed before its quiet time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentEnd {
    /// Its text was marked benign.
    Benign,
    /// Its text joined the baseline as periodic (`detect::recurrence`).
    Periodic,
}

impl IncidentEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentEnd::Benign => "benign",
            IncidentEnd::Periodic => "periodic",
        }
    }
}

/// What one anomaly is to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// The first of its text (or the first since the last incident closed): alerts.
    Opens,
    /// A repeat of the open incident that `first` opened; `repeat` counts from 1.
    RepeatOf { first: u64, repeat: u64 },
}

impl Alert {
    pub fn alerts(self) -> bool {
        self == Alert::Opens
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Open {
    first: u64,
    repeats: u64,
    last_usec: u64,
}

/// Distinct open incidents kept; beyond it the longest-quiet one is closed (its next anomaly
/// alerts again, which errs on the side of the operator's attention).
const MAX_OPEN: usize = 65_536;

#[derive(Debug, Clone)]
pub struct Incidents {
    quiet_usec: u64,
    open: HashMap<String, Open>,
}

impl Incidents {
    /// Incidents that close after `quiet_usec` without a repeat (0: never by time).
    pub fn new(quiet_usec: u64) -> Incidents {
        Incidents {
            quiet_usec,
            open: HashMap::new(),
        }
    }

    /// An anomaly of `text`, recorded as `id` at `usec`.
    pub fn observe(&mut self, text: &str, id: u64, usec: u64) -> Alert {
        let quiet = self.quiet_usec;
        if let Some(open) = self.open.get_mut(text) {
            let expired = quiet > 0 && usec.saturating_sub(open.last_usec) > quiet;
            if !expired {
                open.repeats += 1;
                open.last_usec = open.last_usec.max(usec);
                return Alert::RepeatOf {
                    first: open.first,
                    repeat: open.repeats,
                };
            }
        }
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(text) {
            self.expire(usec);
            if self.open.len() >= MAX_OPEN {
                let quietest = self
                    .open
                    .iter()
                    .min_by_key(|(_, o)| o.last_usec)
                    .map(|(t, _)| t.clone());
                if let Some(t) = quietest {
                    self.open.remove(&t);
                }
            }
        }
        self.open.insert(
            text.to_owned(),
            Open {
                first: id,
                repeats: 0,
                last_usec: usec,
            },
        );
        Alert::Opens
    }

    /// Takes up an incident as the chain recorded it (start-up): `first` opened it, `repeat` is
    /// the repeat recorded last (0 for the opening record), at `usec`.
    pub fn resume(&mut self, text: &str, first: u64, repeat: u64, usec: u64) {
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(text) {
            self.expire(usec);
            if self.open.len() >= MAX_OPEN {
                return;
            }
        }
        self.open.insert(
            text.to_owned(),
            Open {
                first,
                repeats: repeat,
                last_usec: usec,
            },
        );
    }

    /// Closes the incident of `text` (marked benign): its next anomaly alerts.
    /// Returns the record that opened it, when one was open.
    pub fn close(&mut self, text: &str) -> Option<u64> {
        self.open.remove(text).map(|o| o.first)
    }

    /// Drops the incidents quiet for longer than `quiet` at `now_usec`.
    pub fn expire(&mut self, now_usec: u64) {
        if self.quiet_usec > 0 {
            let quiet = self.quiet_usec;
            self.open
                .retain(|_, o| now_usec.saturating_sub(o.last_usec) <= quiet);
        }
    }

    /// Open incidents.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000_000;

    #[test]
    fn repeats_attach_to_the_first_until_the_incident_closes() {
        let mut incidents = Incidents::new(24 * HOUR);
        assert_eq!(incidents.observe("oom", 10, 0), Alert::Opens);
        assert_eq!(incidents.observe("disk", 11, HOUR), Alert::Opens);
        assert_eq!(
            incidents.observe("oom", 20, 2 * HOUR),
            Alert::RepeatOf {
                first: 10,
                repeat: 1
            }
        );
        // Each repeat keeps it open: 23 h after the last repeat is still within the quiet time.
        assert_eq!(
            incidents.observe("oom", 30, 25 * HOUR),
            Alert::RepeatOf {
                first: 10,
                repeat: 2
            }
        );
        // Quiet for longer than a day: a new incident, a new alert.
        assert_eq!(incidents.observe("oom", 40, 50 * HOUR), Alert::Opens);
        assert_eq!(
            incidents.observe("oom", 41, 50 * HOUR),
            Alert::RepeatOf {
                first: 40,
                repeat: 1
            }
        );
        // Closing (a benign mark) makes the next one alert.
        assert_eq!(incidents.close("oom"), Some(40));
        assert_eq!(incidents.observe("oom", 42, 50 * HOUR), Alert::Opens);
        assert_eq!(incidents.close("oom"), Some(42));
        assert_eq!(incidents.close("oom"), None);
        incidents.expire(100 * HOUR);
        assert!(incidents.is_empty(), "{incidents:?}");
    }

    #[test]
    fn without_a_quiet_time_incidents_stay_open() {
        let mut incidents = Incidents::new(0);
        assert!(incidents.observe("t", 1, 0).alerts());
        assert!(!incidents.observe("t", 2, u64::MAX).alerts());
        incidents.expire(u64::MAX);
        assert_eq!(incidents.len(), 1);
    }
}
