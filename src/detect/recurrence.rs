//! Periodic texts: a flagged text that recurs through a day, hour after hour (an hourly cron job
//! nobody has marked benign, a timer added last week), is ordinary traffic the baseline has not
//! met yet. Once it has been flagged in `periodic_hours` distinct clock hours within 24 hours,
//! its next occurrence is judged normal and joins the baseline, recorded with `fields.periodic`.
//!
//! What stays flagged: a burst (a brute force, a storm of one error) fills one or two hours; a
//! fault that recurs daily (a nightly OOM kill) never fills enough hours of one day; and a text
//! that reports a failure ([`reports_failure`]) is never promoted by recurrence alone, however
//! regular: an hourly `I/O error` is a fault that recurs, not a schedule. Those keep their
//! incident open until an operator marks them benign.
//!
//! The counts are the detector thread's memory, not the chain's: a restart starts them again.

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;

use regex::Regex;

const HOUR_USEC: u64 = 3_600_000_000;
/// The hours a text's recurrences are counted over.
const WINDOW_HOURS: u64 = 24;
/// Texts followed at once; past it those flagged longest ago are forgotten first.
const MAX_TEXTS: usize = 65_536;

/// Words by which a message says something went wrong (and class names ending in `Exception` or
/// `Error`: `java.io.IOException`, `ConnectionRefusedError`), and systemd's unit and job results other
/// than success (`Result=exit-code`, `SubState=auto-restart`, `result=dependency`).
static FAILURE_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:errors?|err|fail(?:ed|s|ure|ures|ing)?|fatal|panic|critical|crit|denied|refused|rejected|killed|kill|oom(?:-kill(?:er)?)?|segfault|segv|abrt|sigsegv|sigabrt|sigkill|corrupt(?:ed|ion)?|invalid|illegal|unable|cannot|can't|timed?[ _-]?out|unreachable|abort(?:ed)?|emerg(?:ency)?|alert|violation|unauthori[sz]ed|bad|preauth|dumped|core-dump|exit-code|auto-restart|start-limit-hit|watchdog|no space left|not permitted|no such file|not found|exceptions?|not in sudoers|not allowed|not authori[sz]ed|incorrect password)\b|(?-i:\b[A-Za-z0-9_.]+(?:Exception|Error)s?\b)|\boom_|\bResult=(?:signal|resources|protocol|timeout)\b|\bresult=(?:dependency|canceled|skipped|timeout|invalid)\b",
    )
    .expect("the failure words compile")
});

/// Whether the text says something failed (`Failed with result`, `I/O error`, `killed by the
/// OOM killer`, `Permission denied`, `user NOT in sudoers`, `exception Emask`): such a text is
/// never promoted as periodic.
pub fn reports_failure(text: &str) -> bool {
    FAILURE_WORDS.is_match(text)
}

/// The distinct hours in which each flagged text was flagged, over the last day.
#[derive(Debug)]
pub struct Recurrences {
    /// Distinct hours that make a text periodic; 0 = never.
    hours: u32,
    /// Each text's hours (since the epoch) in which it was flagged, oldest first, by a hash of
    /// its shape ([`shape_key`]: a collision only merges two texts' counts; the texts
    /// themselves, up to 2 KiB each, are not kept).
    flagged: HashMap<u64, VecDeque<u64>>,
}

impl Recurrences {
    pub fn new(hours: u32) -> Recurrences {
        Recurrences {
            hours,
            flagged: HashMap::new(),
        }
    }

    /// An anomaly of `text` observed at `usec`: `Some(hours)` when, counting this one, it has been
    /// flagged in `hours` distinct clock hours of the last 24 and is now periodic (it is
    /// forgotten here, as it joins the baseline); `None` while it is not, or never can be.
    pub fn flagged(&mut self, text: &str, usec: u64) -> Option<u32> {
        if self.hours == 0 || reports_failure(text) {
            return None;
        }
        let hour = usec / HOUR_USEC;
        let key = shape_key(text);
        if !self.flagged.contains_key(&key) && self.flagged.len() >= MAX_TEXTS {
            forget_oldest(&mut self.flagged);
        }
        let hours = self.flagged.entry(key).or_default();
        // An occurrence from before the latest hour counted (a clock stepped back, lines out of
        // order) adds nothing: the count only moves forward.
        if hours.back().is_some_and(|&h| h > hour) {
            return None;
        }
        while hours.front().is_some_and(|&h| h + WINDOW_HOURS <= hour) {
            hours.pop_front();
        }
        if hours.back() != Some(&hour) {
            hours.push_back(hour);
        }
        let distinct = hours.len() as u32;
        if distinct >= self.hours {
            self.flagged.remove(&key);
            Some(distinct)
        } else {
            None
        }
    }

    /// Texts followed now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.flagged.len()
    }
}

/// The key of a text in a map of its recent times: a hash (a collision only merges two texts'
/// counts; the texts, up to 2 KiB each, are not kept).
pub(super) fn text_key(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(text, &mut h);
    std::hash::Hasher::finish(&h)
}

/// The key of a text's shape: its hash with every free-standing number taken as one `#`. A
/// scheduled job's line often carries what it measured (`Exported 1182 products, 3 skipped`),
/// which the scrubbing keeps (a count can mean something), so no two of its hours would share a
/// text; they share a shape. Numbers that name something stay: a part of an address or version
/// (next to `.` or `:`), an id after `=` or `@` (`uid=0`, `user@1000.service`). Only the count
/// of hours is by shape: what joins is the text itself, and a near variant of it is then judged
/// against it.
fn shape_key(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if !bytes[at].is_ascii_digit() {
            std::hash::Hash::hash(&bytes[at], &mut h);
            at += 1;
            continue;
        }
        let end = at
            + bytes[at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(end).copied();
        let names =
            matches!(before, Some(b'.' | b':' | b'@' | b'=')) || matches!(after, Some(b'.' | b':'));
        if names {
            std::hash::Hash::hash(&bytes[at..end], &mut h);
        } else {
            std::hash::Hash::hash(&b'#', &mut h);
        }
        at = end;
    }
    std::hash::Hasher::finish(&h)
}

/// Drops the quarter of the texts whose last time is oldest: a rare, bounded sweep.
pub(super) fn forget_oldest(times: &mut HashMap<u64, VecDeque<u64>>) {
    let mut last: Vec<(u64, u64)> = times
        .iter()
        .map(|(&key, t)| (t.back().copied().unwrap_or(0), key))
        .collect();
    let cut = last.len() / 4;
    last.select_nth_unstable(cut);
    for (_, key) in &last[..cut] {
        times.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = HOUR_USEC;

    #[test]
    fn an_hourly_text_is_periodic_after_its_twelfth_hour() {
        let mut r = Recurrences::new(12);
        let cron = "CRON[*]: (root) CMD (/usr/local/sbin/quota-report)";
        for hour in 0..11 {
            // Twice an hour counts once.
            assert_eq!(r.flagged(cron, 1000 * H + hour * H), None);
            assert_eq!(r.flagged(cron, 1000 * H + hour * H + H / 2), None);
        }
        assert_eq!(r.flagged(cron, 1011 * H), Some(12));
        assert_eq!(r.len(), 0, "a periodic text is forgotten: it joins");
    }

    #[test]
    fn an_hourly_job_s_measurements_do_not_make_each_hour_a_new_text() {
        let mut r = Recurrences::new(12);
        let line = |hour: u64| {
            format!(
                "php[*]: Exported {} products, {} skipped, in <duration>",
                1100 + hour * 7,
                hour % 9
            )
        };
        for hour in 0..11 {
            assert_eq!(r.flagged(&line(hour), 1000 * H + hour * H), None);
        }
        assert_eq!(r.flagged(&line(11), 1011 * H), Some(12));
        // Another text of the same program is not the same shape.
        for hour in 0..11 {
            assert_eq!(
                r.flagged(
                    &format!("php[*]: Imported {hour} products"),
                    1000 * H + hour * H
                ),
                None
            );
        }
        assert_eq!(r.flagged("php[*]: Exported products", 1011 * H), None);
        assert_ne!(shape_key("a 12 b"), shape_key("a 1 2 b"));
        assert_eq!(shape_key("a 12 b 3"), shape_key("a 7 b 4555"));
        // Addresses, versions and ids are not counts.
        assert_ne!(
            shape_key("from 10.0.0.7 port"),
            shape_key("from 10.0.0.9 port")
        );
        assert_ne!(shape_key("uid=0"), shape_key("uid=1000"));
        assert_ne!(shape_key("user@0.service"), shape_key("user@1000.service"));
    }

    #[test]
    fn bursts_daily_faults_and_failures_stay_flagged() {
        let mut r = Recurrences::new(12);
        // A burst: a hundred times in two hours.
        for i in 0..100 {
            assert_eq!(
                r.flagged("sshd[*]: Invalid user admin", 5000 * H + i * H / 50),
                None
            );
        }
        // Once a day for a month: never 12 hours within a day.
        for day in 0..30 {
            assert_eq!(
                r.flagged("clamd: database reload", (100 + 24 * day) * H),
                None
            );
        }
        // Every hour, but a failure.
        for hour in 0..48 {
            assert_eq!(
                r.flagged("kernel: blk_update_request: I/O error, dev sdb", hour * H),
                None
            );
            assert_eq!(
                r.flagged(
                    "systemd[*]: backup.service: Failed with result 'exit-code'.",
                    hour * H
                ),
                None
            );
        }
        // A clock that steps back adds nothing, and does not lose what was counted.
        let mut stepped = Recurrences::new(3);
        assert_eq!(stepped.flagged("stepped", 10 * H), None);
        assert_eq!(stepped.flagged("stepped", 11 * H), None);
        assert_eq!(stepped.flagged("stepped", 2 * H), None);
        assert_eq!(stepped.flagged("stepped", 12 * H), Some(3));
        // Hours spread over more than a day do not add up.
        for hour in (0..60).step_by(3) {
            assert_eq!(r.flagged("every three hours", hour * H), None);
        }
    }

    #[test]
    fn off_means_never_and_the_text_count_is_bounded() {
        let mut off = Recurrences::new(0);
        for hour in 0..48 {
            assert_eq!(off.flagged("hourly", hour * H), None);
        }
        let mut r = Recurrences::new(2);
        for i in 0..(MAX_TEXTS as u64 + 10) {
            // Distinct shapes: the number's digits as letters.
            let name: String = i
                .to_string()
                .bytes()
                .map(|d| char::from(d - b'0' + b'a'))
                .collect();
            r.flagged(&format!("text {name}"), i * 1000);
        }
        assert!(r.len() <= MAX_TEXTS, "{}", r.len());
        assert!(r.len() > MAX_TEXTS / 2, "{}", r.len());
    }

    #[test]
    fn failure_words() {
        for text in [
            "systemd[*]: certbot.service: Main process exited, code=exited, status=1/FAILURE",
            "kernel: Out of memory: Killed process <n> (clamd)",
            "sshd[*]: Failed password for root",
            "su[*]: pam_unix(su:auth): authentication failure",
            "sudo[*]: mallory : user NOT in sudoers ; COMMAND=/bin/bash : permission denied",
            "sudo[*]: mallory : user NOT in sudoers ; TTY=pts/0 ; USER=root ; COMMAND=/bin/bash",
            "sudo[*]: eve : 3 incorrect password attempts ; TTY=pts/1 ; USER=root",
            "sudo[*]: eve : command not allowed ; TTY=pts/1 ; USER=root ; COMMAND=/bin/sh",
            "kernel: ata3.00: exception Emask 0x<hex> SAct 0x<hex> SErr 0x<hex> action 0x<hex>",
            "kernel: EXT4-fs error (device sdb1)",
            "systemd unit backup.service ActiveState=failed SubState=failed Result=exit-code",
            "dhclient[*]: connection timed out",
            "systemd unit app.service ActiveState=activating SubState=auto-restart Result=exit-code",
            "systemd unit app.service ActiveState=failed SubState=failed Result=signal",
            "systemd job db.service result=dependency",
            "systemd-coredump[*]: Process <n> (smbd) of user 0 dumped core.",
            "kernel: oom_reaper: reaped process <n> (clamd)",
            "postdrop[*]: warning: No space left on device",
            "sshd[*]: Connection closed by 203.0.113.9 port <n> [preauth]",
            "java[*]: java.io.IOException: Broken pipe",
            "python3[*]: ConnectionRefusedError: [Errno <n>] Connection refused",
        ] {
            assert!(reports_failure(text), "{text}");
        }
        for text in [
            "CRON[*]: (root) CMD (/usr/local/sbin/quota-report --warn 90 >/dev/null 2>&1)",
            "systemd[*]: man-db.service: Deactivated successfully.",
            "systemd job backup.service result=done",
            "systemd unit backup.service ActiveState=inactive SubState=dead Result=success",
            "sudo[*]: xavier : TTY=pts/0 ; PWD=/home/xavier ; USER=root ; COMMAND=/usr/bin/htop",
            "php-fpm[*]: [NOTICE] ready to handle connections, stderr to /var/log/php-fpm.log",
        ] {
            assert!(!reports_failure(text), "{text}");
        }
    }
}
