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
pub struct FollowOns {
    length_usec: u64,
    windows: HashMap<Source, Window>,
}

impl FollowOns {
    /// Windows of `length` (zero: follow-ons are off).
    pub fn new(length: Duration) -> FollowOns {
        FollowOns {
            length_usec: u64::try_from(length.as_micros()).unwrap_or(u64::MAX),
            windows: HashMap::new(),
        }
    }

    /// An anomaly of `source` with `text` at `usec`, judged on its own score: opens its
    /// source's window, or extends it to `usec + length` and makes `text` its leader.
    pub fn opened(&mut self, source: Source, text: &str, usec: u64) {
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

    /// The leader of the window an event of `source` with `text` at `usec` follows, when the
    /// window is open at `usec` and `text` reports a failure.
    pub fn leader(&self, source: Source, text: &str, usec: u64) -> Option<&str> {
        let w = self.windows.get(&source)?;
        if usec < w.start_usec || usec > w.end_usec || !reports_failure(text) {
            return None;
        }
        Some(&w.leader)
    }
}

/// Recent occurrences of each failure text that was judged normal without joining, by a hash of
/// the text (a collision only merges two texts' counts; the texts, up to 2 KiB each, are not
/// kept).
#[derive(Debug, Default)]
pub struct RepeatedFailures {
    /// Occurrences that make a repeat; 0 = never.
    count: usize,
    window_usec: u64,
    seen: HashMap<u64, VecDeque<u64>>,
}

impl RepeatedFailures {
    /// The `count`-th occurrence of a text within `window` is a repeat (`count` 0: never).
    pub fn new(count: u32, window: Duration) -> RepeatedFailures {
        RepeatedFailures {
            count: count as usize,
            window_usec: u64::try_from(window.as_micros()).unwrap_or(u64::MAX),
            seen: HashMap::new(),
        }
    }

    /// An occurrence of `text` at `usec`, judged normal and not known: `Some(n)` when it
    /// reports a failure and this is at least its `count`-th occurrence (`n`) within the window.
    pub fn observed(&mut self, text: &str, usec: u64) -> Option<u32> {
        if self.count == 0 || !reports_failure(text) {
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

    /// The window, in seconds.
    pub fn window_s(&self) -> u64 {
        self.window_usec / 1_000_000
    }

    /// Texts followed now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    #[test]
    fn a_failure_within_the_window_of_its_source_follows_and_nothing_else_does() {
        let mut f = FollowOns::new(Duration::from_secs(60));
        let oom = "kernel: Out of memory: Killed process <n> (clamd)";
        let exit = "systemd[*]: clamav-daemon.service: Failed with result 'oom-kill'.";
        f.opened(Source::Custom, oom, 100 * SEC);
        assert_eq!(f.leader(Source::Custom, exit, 130 * SEC), Some(oom));
        assert_eq!(
            f.leader(Source::Custom, exit, 160 * SEC),
            Some(oom),
            "the end is in"
        );
        assert_eq!(f.leader(Source::Custom, exit, 161 * SEC), None, "closed");
        assert_eq!(
            f.leader(Source::Custom, exit, 99 * SEC),
            None,
            "before it opened"
        );
        assert_eq!(
            f.leader(
                Source::Custom,
                "systemd[*]: Started clamav-daemon.service.",
                130 * SEC
            ),
            None,
            "no failure reported"
        );
        assert_eq!(
            f.leader(Source::Systemd, exit, 130 * SEC),
            None,
            "another source"
        );

        // A second anomaly inside the window extends it and leads.
        let second = "kernel: oom_reaper: reaped process <n> (clamd)";
        f.opened(Source::Custom, second, 150 * SEC);
        assert_eq!(f.leader(Source::Custom, exit, 200 * SEC), Some(second));
        // One long after opens a new window.
        f.opened(Source::Custom, oom, 1000 * SEC);
        assert_eq!(f.leader(Source::Custom, exit, 200 * SEC), None);
        assert_eq!(f.leader(Source::Custom, exit, 1010 * SEC), Some(oom));
    }

    #[test]
    fn a_zero_window_never_opens() {
        let mut f = FollowOns::new(Duration::ZERO);
        f.opened(Source::Custom, "kernel: panic", SEC);
        assert_eq!(f.leader(Source::Custom, "x failed", SEC), None);
    }

    #[test]
    fn the_third_failure_within_the_window_is_a_repeat_and_other_texts_are_not() {
        let mut r = RepeatedFailures::new(3, Duration::from_secs(3600));
        let storm = "RAS KERNEL FATAL data storage interrupt";
        assert_eq!(r.observed(storm, 10 * SEC), None);
        assert_eq!(r.observed(storm, 20 * SEC), None);
        assert_eq!(r.observed(storm, 30 * SEC), Some(3));
        assert_eq!(
            r.observed(storm, 40 * SEC),
            Some(3),
            "still within the window"
        );
        // An hour and more after the last two: they fall out.
        assert_eq!(r.observed(storm, 3641 * SEC), None);
        let quiet = "sudo[*]: pam_unix(sudo:session): session opened for user root";
        for i in 0..10 {
            assert_eq!(r.observed(quiet, i * SEC), None, "no failure reported");
        }
        assert_eq!(r.len(), 1, "only failure texts are kept");
        // A daily failure never repeats within an hour.
        let daily = "certbot.service: Failed with result 'exit-code'.";
        for day in 0..5 {
            assert_eq!(r.observed(daily, day * 86_400 * SEC), None);
        }
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
