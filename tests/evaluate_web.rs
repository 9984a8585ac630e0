//! Detection quality on a second, independent host's week (`tests/common/web_week.rs`: a small
//! company's web shop and database server, with a database crash, recurring OOM kills of a
//! postgres backend, I/O errors on the backup volume, a web shell, SSH brute force, an unknown
//! root login, a failing certificate renewal, an nginx upstream burst, segfaulting php-fpm
//! children and a full disk injected after the first day, and benign novelties: a new
//! developer, a new timer, two deploys, an unattended upgrade). It keeps the detector from being
//! tuned to `evaluate_host.rs`'s one stream. The first 1,000 lines are the baseline; the rest is
//! streamed through `anomalyd score-file --format plain` with the shipped defaults, as
//! `journalctl -o short-iso` prints it (time stamp and host name first).
//!
//! Recall is counted two ways: per line, and per fault (a kind of fault on one day, caught when
//! any of its lines is flagged): an intrusion's side effects (`user@0.service` starting for
//! root's login) are labelled but look like every other login's.
//!
//! The floors are for seed 1 and sit a little under what it measures. The stream was written
//! apart from the detector, by someone who had not read it; its first measurement (2.07% of
//! normal lines flagged at line recall 0.874) led to four general rules, each measured on both
//! weeks and BGL (benches/README.md, "Verdicts"): a systemd unit's description dropped, a
//! duration with a space before its unit scrubbed, the periodic rule counting a text's shape,
//! and a program's first line naming the superuser given no program allowance.

#[path = "common/evaluation.rs"]
mod evaluation;
#[path = "common/web_week.rs"]
mod web_week;
use evaluation::Faults;

/// The week's seed: 1, or `ANOMALYD_WEB_SEED` (other weeks for a study; the floors are for 1).
fn seed() -> u64 {
    std::env::var("ANOMALYD_WEB_SEED").map_or(1, |s| s.parse().expect("a seed is a number"))
}
const BASELINE_LINES: usize = 1000;
/// Normal lines flagged, at most (seed 1 measures 1.39%: scanners' nginx and sshd noise, the
/// deploys' reloads and restarts, admins' commands). The goal is 1%.
const MAX_FALSE_ALARMS: f64 = 0.016;
/// Normal lines that alert, at most (seed 1 measures 1.15%).
const MAX_FALSE_ALERTS: f64 = 0.013;
/// Anomalous lines flagged, at least (seed 1 measures 0.864; most misses are the repeats of
/// nginx's `upstream timed out` and of the web shell's cron job, and root's session lines).
const MIN_RECALL: f64 = 0.84;

#[test]
fn a_week_of_a_web_shop_server_flags_its_faults_and_few_normal_lines() {
    let seed = seed();
    let lines = web_week::generate(seed);
    let printed: Vec<(String, bool)> = lines
        .iter()
        .map(|l| (l.short_iso(), l.label.is_some()))
        .collect();
    let week = evaluation::score_week(
        &format!("web shop week (seed {seed})"),
        &printed,
        BASELINE_LINES,
    );
    let (scored, ranking, v) = (&week.scored, &week.ranking, &week.verdicts);
    let test = &lines[BASELINE_LINES..];
    let faults = Faults::of(test.iter().map(|line| (line.label, line.day())), scored);
    faults.print();
    assert_eq!(
        faults.kinds().len(),
        web_week::KINDS.len(),
        "every kind injected"
    );
    let recurring_oom = faults.days_of("oom");
    assert!(
        recurring_oom >= 3,
        "the OOM kill recurs on {recurring_oom} days"
    );

    // Floors: a little under what the shipped rule reaches on this stream with seed 1 (the
    // measured figures are in the constants' comments).
    assert!(ranking.roc_auc >= 0.95, "ROC-AUC {:.3}", ranking.roc_auc);
    assert!(
        v.false_alarm_rate <= MAX_FALSE_ALARMS,
        "false alarms {:.2}% of normal lines",
        v.false_alarm_rate * 100.0
    );
    assert!(
        v.false_alert_rate <= MAX_FALSE_ALERTS,
        "alerts on normal lines {:.2}%",
        v.false_alert_rate * 100.0
    );
    assert!(v.recall >= MIN_RECALL, "line recall {:.3}", v.recall);
    faults.assert_caught(0.9);
}
