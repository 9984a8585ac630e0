//! Failures the calibrated threshold lets through. A chatty source's threshold sits high
//! (docs/scoring.md, "Each source's alert threshold"), and a text that reports a failure can lie
//! below it, close to other failures the traffic has shown, yet be part of a fault. Two kinds of
//! context make such a text an anomaly, judged against the floor (`detector.threshold`) instead;
//! both apply only to a text that is not known (it scores above the floor) and reports a failure
//! (`recurrence::reports_failure`), and neither opens a window or counts for the other.
//!
//! **Follow-ons** ([`FollowOns`]): the lines a fault drags after it. An OOM kill is one kernel
//! line far from anything normal, then `clamav-daemon.service: Main process exited,
//! code=killed` and `Failed with result 'oom-kill'`, which lie close to every other unit's exits
//! and failures. So an anomaly judged on its own score opens a window (`detector.follow_on_s`)
//! on its source, and a failure within it records which anomaly it followed.
//!
//! **Repeats** ([`RepeatedFailures`]): one unexplained failure text, again and again. BGL's
//! `RAS KERNEL FATAL data storage interrupt` from 30 nodes within minutes scores 0.18 each time,
//! below the threshold and above the floor, so it neither alerts nor joins. The
//! `detector.failure_repeats`-th occurrence within `detector.failure_repeat_s`, and every one
//! after it in the window, is an anomaly.
//!
//! Why failures only: the lines near a false alarm are mostly as novel as it is (a package run,
//! an admin's sudo session), and judging every one against the floor flagged about twice as
//! many normal lines as it caught faults on the host week (benches/README.md, "Verdicts"); a
//! normal text that never joins (an admin's `sudo` session line) recurs all day.
//!
//! Both live in memory only: a restart forgets at most one window of each.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::event::Source;

use super::recurrence::{forget_oldest, reports_failure, text_key};

/// Failure texts whose recent occurrences are kept; beyond it the quarter whose last occurrence
/// is oldest is forgotten (a rare sweep).
const MAX_TEXTS: usize = 65_536;

#[derive(Debug, Clone)]
struct Window {
    start_usec: u64,
    end_usec: u64,
    /// The text of the anomaly that opened or last extended the window.
    leader: String,
}

#[derive(Debug, Default)]
struct FollowOns {
    length_usec: u64,
    windows: HashMap<Source, Window>,
}

impl FollowOns {
    /// Windows of `length` (zero: follow-ons are off).
    fn new(length: Duration) -> FollowOns {
        FollowOns {
            length_usec: u64::try_from(length.as_micros()).unwrap_or(u64::MAX),
            windows: HashMap::new(),
        }
    }

    /// An anomaly of `source` with `text` at `usec`, judged on its own score: opens its
    /// source's window, or extends it to `usec + length` and makes `text` its leader.
    fn opened(&mut self, source: Source, text: &str, usec: u64) {
        if self.length_usec == 0 {
            return;
        }
        let end_usec = usec.saturating_add(self.length_usec);
        match self.windows.get_mut(&source) {
            Some(w) if w.end_usec >= usec && w.start_usec <= usec => {
                w.end_usec = w.end_usec.max(end_usec);
                text.clone_into(&mut w.leader);
            }
            _ => {
                self.windows.insert(
                    source,
                    Window {
                        start_usec: usec,
                        end_usec,
                        leader: text.to_owned(),
                    },
                );
            }
        }
    }

    /// The leader of the window of `source` open at `usec`.
    fn leader(&self, source: Source, usec: u64) -> Option<&str> {
        let w = self.windows.get(&source)?;
        (w.start_usec..=w.end_usec)
            .contains(&usec)
            .then_some(w.leader.as_str())
    }
}

/// Recent occurrences of each failure text that was judged normal without joining, by a hash of
/// the text (a collision only merges two texts' counts; the texts, up to 2 KiB each, are not
/// kept).
#[derive(Debug, Default)]
struct RepeatedFailures {
    /// Occurrences that make a repeat; 0 = never.
    count: usize,
    window_usec: u64,
    seen: HashMap<u64, VecDeque<u64>>,
}

impl RepeatedFailures {
    /// The `count`-th occurrence of a text within `window` is a repeat (`count` 0: never).
    fn new(count: u32, window: Duration) -> RepeatedFailures {
        RepeatedFailures {
            count: count as usize,
            window_usec: u64::try_from(window.as_micros()).unwrap_or(u64::MAX),
            seen: HashMap::new(),
        }
    }

    /// An occurrence of the failure `text` at `usec`, judged normal and not known: `Some(n)`
    /// when this is at least its `count`-th occurrence (`n`) within the window.
    fn observed(&mut self, text: &str, usec: u64) -> Option<u32> {
        if self.count == 0 {
            return None;
        }
        let key = text_key(text);
        if !self.seen.contains_key(&key) && self.seen.len() >= MAX_TEXTS {
            forget_oldest(&mut self.seen);
        }
        let times = self.seen.entry(key).or_default();
        // Out of order (a clock stepped back): counted at the latest time seen, so the window
        // only moves forward.
        let usec = times.back().map_or(usec, |&last| last.max(usec));
        times.push_back(usec);
        while times
            .front()
            .is_some_and(|&t| t.saturating_add(self.window_usec) < usec)
        {
            times.pop_front();
        }
        // More than `count` kept says no more than `count` does.
        while times.len() > self.count {
            times.pop_front();
        }
        (times.len() >= self.count).then_some(u32::try_from(times.len()).unwrap_or(u32::MAX))
    }

    /// Texts followed now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

/// What made a failure an anomaly, recorded in its fields under [`Context::key`].
#[derive(Debug, Clone, PartialEq)]
pub enum Context {
    /// The text of the anomaly whose window it fell in.
    Follows(String),
    /// Its occurrences within the window, and the window.
    Repeated { count: u32, within_s: u64 },
}

impl Context {
    /// The field the record keeps it in.
    pub fn key(&self) -> &'static str {
        match self {
            Context::Follows(_) => "follows",
            Context::Repeated { .. } => "repeated",
        }
    }

    pub fn value(&self) -> serde_json::Value {
        match self {
            Context::Follows(leader) => serde_json::json!(leader),
            Context::Repeated { count, within_s } => {
                serde_json::json!({"count": count, "within_s": within_s})
            }
        }
    }
}

/// Both kinds of context, as the detector thread keeps them.
#[derive(Debug, Default)]
pub struct FailureContext {
    follow_ons: FollowOns,
    repeats: RepeatedFailures,
    repeat_window_s: u64,
}

impl FailureContext {
    /// Follow-on windows of `follow_on`; the `failure_repeats`-th occurrence within
    /// `failure_repeat` is a repeat (zero and 0 turn each off).
    pub fn new(follow_on: Duration, failure_repeats: u32, failure_repeat: Duration) -> Self {
        FailureContext {
            follow_ons: FollowOns::new(follow_on),
            repeats: RepeatedFailures::new(failure_repeats, failure_repeat),
            repeat_window_s: failure_repeat.as_secs(),
        }
    }

    /// An anomaly judged on its own score: it opens or extends its source's window.
    pub fn anomaly(&mut self, source: Source, text: &str, usec: u64) {
        self.follow_ons.opened(source, text, usec);
    }

    /// An event judged normal that is not known (it scores above the floor): its context when
    /// its text reports a failure and it follows an anomaly of its source, or repeats. Every
    /// such failure counts towards its repeats, a follow-on too.
    pub fn of_unknown_normal(&mut self, source: Source, text: &str, usec: u64) -> Option<Context> {
        if !reports_failure(text) {
            return None;
        }
        let repeats = self.repeats.observed(text, usec);
        if let Some(leader) = self.follow_ons.leader(source, usec) {
            return Some(Context::Follows(leader.to_owned()));
        }
        repeats.map(|count| Context::Repeated {
            count,
            within_s: self.repeat_window_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    fn follows(leader: &str) -> Option<Context> {
        Some(Context::Follows(leader.to_owned()))
    }

    #[test]
    fn a_failure_within_the_window_of_its_source_follows_and_nothing_else_does() {
        let mut c = FailureContext::new(Duration::from_secs(60), 0, Duration::from_secs(3600));
        let oom = "kernel: Out of memory: Killed process <n> (clamd)";
        let exit = "systemd[*]: clamav-daemon.service: Failed with result 'oom-kill'.";
        c.anomaly(Source::Custom, oom, 100 * SEC);
        let mut at = |source, text, usec| c.of_unknown_normal(source, text, usec);
        assert_eq!(at(Source::Custom, exit, 130 * SEC), follows(oom));
        assert_eq!(
            at(Source::Custom, exit, 160 * SEC),
            follows(oom),
            "the end is in"
        );
        assert_eq!(at(Source::Custom, exit, 161 * SEC), None, "closed");
        assert_eq!(at(Source::Custom, exit, 99 * SEC), None, "before it opened");
        assert_eq!(
            at(
                Source::Custom,
                "systemd[*]: Started clamav-daemon.service.",
                130 * SEC
            ),
            None,
            "no failure reported"
        );
        assert_eq!(at(Source::Systemd, exit, 130 * SEC), None, "another source");

        // A second anomaly inside the window extends it and leads.
        let second = "kernel: oom_reaper: reaped process <n> (clamd)";
        c.anomaly(Source::Custom, second, 150 * SEC);
        assert_eq!(
            c.of_unknown_normal(Source::Custom, exit, 200 * SEC),
            follows(second)
        );
        // One long after opens a new window.
        c.anomaly(Source::Custom, oom, 1000 * SEC);
        assert_eq!(c.of_unknown_normal(Source::Custom, exit, 200 * SEC), None);
        assert_eq!(
            c.of_unknown_normal(Source::Custom, exit, 1010 * SEC),
            follows(oom)
        );
    }

    #[test]
    fn a_zero_window_never_opens() {
        let mut c = FailureContext::new(Duration::ZERO, 0, Duration::from_secs(3600));
        c.anomaly(Source::Custom, "kernel: panic", SEC);
        assert_eq!(c.of_unknown_normal(Source::Custom, "x failed", SEC), None);
    }

    #[test]
    fn the_third_failure_within_the_window_is_a_repeat_and_other_texts_are_not() {
        let mut c = FailureContext::new(Duration::ZERO, 3, Duration::from_secs(3600));
        let third = Some(Context::Repeated {
            count: 3,
            within_s: 3600,
        });
        let storm = "RAS KERNEL FATAL data storage interrupt";
        let mut at = |text, usec| c.of_unknown_normal(Source::Custom, text, usec);
        assert_eq!(at(storm, 10 * SEC), None);
        assert_eq!(at(storm, 20 * SEC), None);
        assert_eq!(at(storm, 30 * SEC), third);
        assert_eq!(at(storm, 40 * SEC), third, "still within the window");
        // An hour and more after the last two: they fall out.
        assert_eq!(at(storm, 3641 * SEC), None);
        let quiet = "sudo[*]: pam_unix(sudo:session): session opened for user root";
        for i in 0..10 {
            assert_eq!(at(quiet, i * SEC), None, "no failure reported");
        }
        // A daily failure never repeats within an hour.
        let daily = "certbot.service: Failed with result 'exit-code'.";
        for day in 0..5 {
            assert_eq!(at(daily, day * 86_400 * SEC), None);
        }
        assert_eq!(c.repeats.len(), 2, "only failure texts are kept");
        // A clock stepped back counts at the latest time.
        let mut back = RepeatedFailures::new(2, Duration::from_secs(60));
        assert_eq!(back.observed(storm, 1000 * SEC), None);
        assert_eq!(back.observed(storm, 10 * SEC), Some(2));
        assert_eq!(
            RepeatedFailures::new(0, Duration::from_secs(60)).observed(storm, SEC),
            None,
            "off"
        );
    }

    #[test]
    fn a_failure_in_a_window_that_also_repeats_follows_and_still_counts() {
        let mut c = FailureContext::new(Duration::from_secs(60), 2, Duration::from_secs(3600));
        let leader = "kernel: Out of memory: Killed process <n> (clamd)";
        let exit = "systemd[*]: clamav-daemon.service: Failed with result 'oom-kill'.";
        c.anomaly(Source::Custom, leader, 100 * SEC);
        assert_eq!(
            c.of_unknown_normal(Source::Custom, exit, 110 * SEC),
            follows(leader)
        );
        assert_eq!(
            c.of_unknown_normal(Source::Custom, exit, 500 * SEC),
            Some(Context::Repeated {
                count: 2,
                within_s: 3600
            }),
            "the follow-on counted"
        );
        assert_eq!(Context::Follows(leader.into()).key(), "follows");
        assert_eq!(
            Context::Repeated {
                count: 2,
                within_s: 3600
            }
            .value(),
            serde_json::json!({"count": 2, "within_s": 3600})
        );
    }

    #[test]
    fn the_texts_kept_are_bounded() {
        let mut r = RepeatedFailures::new(3, Duration::from_secs(3600));
        for i in 0..(MAX_TEXTS as u64 + 10) {
            r.observed(&format!("disk {i} failed"), i);
        }
        assert!(r.len() <= MAX_TEXTS, "{}", r.len());
        // The newest is still counted.
        let newest = format!("disk {} failed", MAX_TEXTS as u64 + 9);
        r.observed(&newest, MAX_TEXTS as u64 + 20);
        assert_eq!(r.observed(&newest, MAX_TEXTS as u64 + 30), Some(3));
    }
}
