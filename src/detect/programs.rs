//! Each log program's own threshold. A journal read by `score-file` is one source, but its
//! programs differ in how much new normal text they bring: every admin's `sudo` command is a new
//! line far from all before it (0.3–0.7), while the kernel, cron or postfix repeat theirs. One
//! threshold for the whole log either flags every such command or is lifted over the quiet
//! programs' faults. So the lines of each program (the syslog tag their text starts with) keep a
//! calibrator of their own, and a line that reports no failure is an anomaly only above both its
//! source's threshold and its program's. What it leaves alone:
//!
//! - **failures**: a text that reports one is judged against its source's threshold (at most
//!   `alert_ceiling`, raised for variable slots) without its program's, and its score stays out
//!   of the program's window, so an attacker's
//!   brute force (`Failed password …`) lifts neither sshd's threshold nor anything over the root
//!   login that follows it, and `user NOT in sudoers` alerts however chatty sudo is;
//! - **the lines after an anomaly**: within `detector.follow_on_s` of an anomaly of the source,
//!   its lines are judged against the source's threshold without their programs' (an oops's `RIP:` and `Code:`
//!   lines after the kernel's `BUG:`, systemd starting `systemd-coredump@…` after a segfault);
//! - **the daemon's own D-Bus texts**, which name their source first and no program: their source's
//!   threshold is the whole rule;
//! - **a program's first line naming the superuser** (`root`, `uid=0`, …: sshd's first `Accepted
//!   password for root` where the users log in by key): new in kind, it gets no allowance for
//!   the program's chatter (its users' new addresses and commands). Once a line of the program
//!   that names the superuser has been scored (sudo's `USER=root` on every command), the
//!   program's threshold applies to such lines as to the others;
//! - a program with fewer than the calibrator's minimum of scores.
//!
//! The windows live in memory: a restart starts them again from the baseline history and the
//! live lines. At most [`MAX_PROGRAMS`] programs are kept per detector; later ones have their
//! source's threshold alone.

use std::collections::HashMap;
use std::time::Duration;

use crate::event::Source;

use super::calibration::Calibrator;

/// Programs with a window of their own.
pub const MAX_PROGRAMS: usize = 1024;
/// Scores a program's window keeps at most (`calibration_window`, when smaller): 1,024 windows of
/// `calibration_window`'s largest allowed size would take 40 GB.
pub const MAX_PROGRAM_WINDOW: usize = 10_000;

/// How many leading words may come before a log line's syslog tag (a time stamp and host name
/// that the scrubbing did not recognise, Loghub's label and node columns).
const TAG_WITHIN_WORDS: usize = 8;

/// One program's window, and whether a line of it naming the superuser has been scored.
#[derive(Debug)]
struct Program {
    calibrator: Calibrator,
    names_superuser: bool,
}

#[derive(Debug)]
pub struct ProgramThresholds {
    /// Every program's calibrator starts as a clone of this one.
    template: Calibrator,
    /// `false` when `program_ceiling` is 0: programs add nothing.
    enabled: bool,
    after_anomaly_usec: u64,
    /// Each source's programs, by name (looked up by `&str`: no key is built per event).
    programs: HashMap<Source, HashMap<String, Program>>,
    /// How many programs `programs` holds over every source, at most [`MAX_PROGRAMS`].
    program_count: usize,
    last_anomaly_usec: HashMap<Source, u64>,
}

impl ProgramThresholds {
    /// Programs calibrated at `quantile` of their last `window` scores (at most
    /// [`MAX_PROGRAM_WINDOW`]), between `floor` and `ceiling` (0: off), and set aside for
    /// `after_anomaly` after an anomaly of their source.
    pub fn new(
        quantile: f64,
        floor: f32,
        ceiling: f32,
        window: usize,
        after_anomaly: Duration,
    ) -> ProgramThresholds {
        ProgramThresholds {
            template: Calibrator::new(quantile, floor, ceiling, window.min(MAX_PROGRAM_WINDOW)),
            enabled: ceiling > 0.0 && quantile > 0.0,
            after_anomaly_usec: u64::try_from(after_anomaly.as_micros()).unwrap_or(u64::MAX),
            programs: HashMap::new(),
            program_count: 0,
            last_anomaly_usec: HashMap::new(),
        }
    }

    /// The threshold of the program `text` names, for an event of `source` at `usec`, when it
    /// applies: the text names a program that has calibrated one, reports no failure, and the
    /// source has had no anomaly within `follow_on_s` before `usec`.
    pub fn threshold<'t>(
        &self,
        source: Source,
        text: &'t str,
        usec: u64,
    ) -> Option<(&'t str, f32)> {
        if !self.enabled || super::recurrence::reports_failure(text) {
            return None;
        }
        let name = program_of(text)?;
        let program = self.programs.get(&source)?.get(name)?;
        if !program.calibrator.is_settled()
            || (!program.names_superuser && text_names_superuser(text))
        {
            return None;
        }
        let after_anomaly = self
            .last_anomaly_usec
            .get(&source)
            .is_some_and(|&t| usec >= t && usec - t <= self.after_anomaly_usec);
        (!after_anomaly).then_some((name, program.calibrator.threshold()))
    }

    /// Records the score of a scored event that reports no failure, on its program's scale:
    /// divided by the raise `raise` gives the program's current threshold (the variable-slot
    /// allowance the event got, if any), whether or not that threshold applied to it.
    pub fn observe(&mut self, source: Source, text: &str, score: f32, raise: impl Fn(f32) -> f32) {
        if !self.enabled || super::recurrence::reports_failure(text) {
            return;
        }
        if let Some(program) = self.program_mut(source, text) {
            if !program.names_superuser {
                program.names_superuser = text_names_superuser(text);
            }
            let calibrator = &mut program.calibrator;
            let own = calibrator.threshold();
            let raised = raise(own);
            // Only a raise rescales: `own / own` is not always exactly 1.
            calibrator.observe(if raised != own {
                super::scaled(score, own, raised)
            } else {
                score
            });
        }
    }

    /// An anomaly of `source` at `usec`: for `follow_on_s` its lines are judged against the
    /// source's threshold (raised for variable slots) without their programs'.
    pub fn anomaly(&mut self, source: Source, usec: u64) {
        let last = self.last_anomaly_usec.entry(source).or_insert(usec);
        *last = (*last).max(usec);
    }

    fn program_mut(&mut self, source: Source, text: &str) -> Option<&mut Program> {
        let name = program_of(text)?;
        let programs = self.programs.entry(source).or_default();
        if !programs.contains_key(name) {
            if self.program_count >= MAX_PROGRAMS {
                return None;
            }
            self.program_count += 1;
            let program = Program {
                calibrator: self.template.clone(),
                names_superuser: false,
            };
            programs.insert(name.to_owned(), program);
        }
        programs.get_mut(name)
    }
}

/// Whether a word of `text` names the superuser as who acts or is acted for, not the service
/// that acts (PAM's `session opened for user alice(uid=1000) by (uid=0)` on every login).
fn text_names_superuser(text: &str) -> bool {
    let mut after_by = false;
    text.split_whitespace().any(|word| {
        let names = !after_by && super::names_superuser(word);
        after_by = word == "by";
        names
    })
}

/// The program a log line's text names: the identifier of a `journal IDENTIFIER MESSAGE` text
/// (`score-file --format journal-json`), or the first of its first eight words shaped as a syslog
/// tag (`sshd[*]:`, `kernel:`, `postfix/smtpd[*]:`, `crond(pam_unix)[*]:`, and BGL's `ciod:`).
/// None for the daemon's own texts, whose first word names their source (`systemd unit …`), and
/// for lines without a tag.
pub fn program_of(text: &str) -> Option<&str> {
    let mut words = text.split_whitespace();
    let first = words.next()?;
    if first == "journal" {
        return words.next();
    }
    if Source::from_name(first).is_some() {
        return None;
    }
    std::iter::once(first)
        .chain(words)
        .take(TAG_WITHIN_WORDS)
        .find_map(syslog_tag)
}

/// `name`, when `word` is `name:` or `name[pid]:`: a name that starts with a letter or `/` (a
/// program's path) and holds only letters, digits and `_ . / ( ) @ -`.
fn syslog_tag(word: &str) -> Option<&str> {
    let head = word.strip_suffix(':')?;
    let name = match head.strip_suffix(']') {
        Some(h) => &h[..h.rfind('[')?],
        None => head,
    };
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/');
    (starts_well && chars.all(|c| c.is_ascii_alphanumeric() || "_./()@-".contains(c)))
        .then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_names_its_program_and_a_bus_text_none() {
        for (text, program) in [
            (
                "sudo[*]: alice : TTY=pts/0 ; COMMAND=/usr/bin/htop",
                Some("sudo"),
            ),
            (
                "kernel: usb 1-4: USB disconnect, device number 9",
                Some("kernel"),
            ),
            (
                "postfix/smtpd[*]: connect from x[10.0.0.1]",
                Some("postfix/smtpd"),
            ),
            (
                "- <n> 2005.11.09 dn228 <date> dn228/dn228 crond(pam_unix)[*]: session closed",
                Some("crond(pam_unix)"),
            ),
            ("RAS APP FATAL ciod: Error loading /home/x", Some("ciod")),
            (
                "- <hex> <date> tbird-admin1 <date> local@tbird-admin1 /apps/sbin/gmetad[*]: data",
                Some("/apps/sbin/gmetad"),
            ),
            ("journal sshd Accepted publickey for alice", Some("sshd")),
            (
                "RAS KERNEL INFO instruction cache parity error corrected",
                None,
            ),
            ("systemd unit nginx.service ActiveState=failed", None),
            ("custom org.example.Backup1.Finished arg0=ok:", None),
            ("login1 session new user=root", None),
            ("[*]: no name", None),
            ("1234: a number is no program", None),
            ("", None),
            (
                "one two three four five six seven eight nine: too late",
                None,
            ),
        ] {
            assert_eq!(program_of(text), program, "{text}");
        }
    }

    /// 100 distinct lines like `text`, each scoring `score`.
    fn settled(thresholds: &mut ProgramThresholds, text: &str, score: f32) {
        settled_on(thresholds, Source::Custom, text, score);
    }

    fn settled_on(thresholds: &mut ProgramThresholds, source: Source, text: &str, score: f32) {
        for i in 0..100 {
            thresholds.observe(source, &format!("{text} {i}"), score, |t| t);
        }
    }

    #[test]
    fn a_program_whose_lines_are_all_new_gets_a_threshold_of_its_own() {
        let mut p = ProgramThresholds::new(0.97, 0.05, 1.0, 1000, Duration::from_secs(60));
        let command = "sudo[*]: alice : COMMAND=/usr/bin/htop";
        assert_eq!(
            p.threshold(Source::Custom, command, 0),
            None,
            "nothing seen yet"
        );
        for i in 0..49 {
            p.observe(
                Source::Custom,
                &format!("{command} x{i}"),
                0.4 + i as f32 / 1000.0,
                |t| t,
            );
        }
        assert_eq!(
            p.threshold(Source::Custom, command, 0),
            None,
            "too few scores"
        );
        settled(&mut p, command, 0.5);
        let (name, threshold) = p.threshold(Source::Custom, command, 0).unwrap();
        assert_eq!((name, threshold), ("sudo", 0.5));
        // Another program, and the same program of another source, have their own.
        assert_eq!(p.threshold(Source::Custom, "kernel: x", 0), None);
        assert_eq!(p.threshold(Source::Systemd, command, 0), None);
        // A failure of the program is judged against its source's threshold alone.
        assert_eq!(
            p.threshold(Source::Custom, "sudo[*]: mallory : user NOT in sudoers", 0),
            None
        );
    }

    #[test]
    fn failures_stay_out_of_the_window() {
        let mut p = ProgramThresholds::new(0.97, 0.05, 1.0, 1000, Duration::from_secs(60));
        settled(&mut p, "sshd[*]: Accepted publickey for alice", 0.1);
        for i in 0..500 {
            p.observe(
                Source::Custom,
                &format!("sshd[*]: Failed password for invalid user admin{i}"),
                0.6,
                |t| t,
            );
        }
        let login = "sshd[*]: Accepted password for bob";
        assert_eq!(p.threshold(Source::Custom, login, 0), Some(("sshd", 0.1)));
    }

    #[test]
    fn a_program_s_first_line_naming_the_superuser_has_no_allowance() {
        let mut p = ProgramThresholds::new(0.97, 0.05, 1.0, 1000, Duration::from_secs(60));
        settled(&mut p, "sshd[*]: Accepted publickey for alice", 0.4);
        let root = "sshd[*]: Accepted password for root from 203.0.113.9";
        assert_eq!(p.threshold(Source::Custom, root, 0), None);
        assert!(p
            .threshold(Source::Custom, "sshd[*]: Accepted password for bob", 0)
            .is_some());
        p.observe(Source::Custom, root, 0.5, |t| t);
        assert_eq!(p.threshold(Source::Custom, root, 0), Some(("sshd", 0.4)));
        // sudo names root on every command: once one is scored, its threshold applies.
        settled(
            &mut p,
            "sudo[*]: alice : USER=root ; COMMAND=/usr/bin/htop",
            0.5,
        );
        let command = "sudo[*]: bob : USER=root ; COMMAND=/usr/bin/du -sh";
        assert!(p.threshold(Source::Custom, command, 0).is_some());
    }

    #[test]
    fn after_an_anomaly_of_the_source_its_lines_have_the_sources_threshold_alone() {
        let second = 1_000_000;
        let mut p = ProgramThresholds::new(0.97, 0.05, 1.0, 1000, Duration::from_secs(60));
        let line = "kernel: RIP: 0010:native_queued_spin_lock_slowpath";
        settled(&mut p, line, 0.6);
        // An anomaly of the source (the kernel's `BUG:`, or a crash that systemd's coredump
        // lines follow).
        p.anomaly(Source::Custom, 100 * second);
        assert_eq!(p.threshold(Source::Custom, line, 100 * second), None);
        assert_eq!(p.threshold(Source::Custom, line, 160 * second), None);
        assert_eq!(
            p.threshold(Source::Custom, line, 161 * second),
            Some(("kernel", 0.6))
        );
        // Before the anomaly (a clock stepped back) the window is not open.
        assert!(p.threshold(Source::Custom, line, 50 * second).is_some());
        // Every program of the source, and no other source.
        settled(&mut p, "smbd[*]: started", 0.3);
        assert_eq!(
            p.threshold(Source::Custom, "smbd[*]: started", 100 * second),
            None
        );
        settled_on(&mut p, Source::Systemd, line, 0.6);
        assert!(p.threshold(Source::Systemd, line, 100 * second).is_some());
    }

    #[test]
    fn off_at_ceiling_zero_and_bounded_in_programs() {
        let mut off = ProgramThresholds::new(0.97, 0.05, 0.0, 1000, Duration::from_secs(60));
        settled(&mut off, "sudo[*]: x", 0.5);
        assert_eq!(off.threshold(Source::Custom, "sudo[*]: x", 0), None);
        let mut fixed = ProgramThresholds::new(0.0, 0.05, 1.0, 1000, Duration::from_secs(60));
        settled(&mut fixed, "sudo[*]: x", 0.5);
        assert_eq!(fixed.threshold(Source::Custom, "sudo[*]: x", 0), None);

        let mut p = ProgramThresholds::new(0.97, 0.05, 1.0, 100, Duration::from_secs(60));
        for i in 0..MAX_PROGRAMS + 10 {
            settled(&mut p, &format!("prog{i}: x"), 0.5);
        }
        assert_eq!(p.program_count, MAX_PROGRAMS);
        assert_eq!(p.programs[&Source::Custom].len(), MAX_PROGRAMS);
        assert!(p.threshold(Source::Custom, "prog0: x", 0).is_some());
        assert_eq!(
            p.threshold(Source::Custom, &format!("prog{}: x", MAX_PROGRAMS + 5), 0),
            None
        );
    }
}
