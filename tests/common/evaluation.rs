//! Detection-quality figures over `anomalyd score-file`'s output, shared by the evaluations.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

// For `common::model_dir()`, the one place that says where the checkout's model is.
#[path = "mod.rs"]
mod common;

/// Ranking quality of the scores.
pub struct Figures {
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub best_f1: f64,
}

/// ROC-AUC, PR-AUC (average precision) and the best F1 over every cut, ties taken as one group.
pub fn figures(scores: &[f64], labels: &[bool]) -> Figures {
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen) = (0.0, 0.0);
    let (mut auc, mut ap, mut best_f1) = (0.0, 0.0, 0.0f64);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let group_tp = order[i..j].iter().filter(|&&k| labels[k]).count() as f64;
        let group_fp = (j - i) as f64 - group_tp;
        auc += group_fp * (tp + group_tp / 2.0);
        tp += group_tp;
        seen += (j - i) as f64;
        ap += group_tp / positives * tp / seen;
        best_f1 = best_f1.max(2.0 * tp / (seen + positives));
        i = j;
    }
    Figures {
        roc_auc: auc / (positives * negatives),
        pr_auc: ap,
        best_f1,
    }
}

/// One line of `score-file`'s output.
pub struct Scored {
    pub score: f64,
    /// The verdict: flagged as an anomaly.
    pub anomaly: bool,
    /// Flagged and the first of its incident: what an operator is asked to look at.
    pub alert: bool,
}

/// Runs `anomalyd score-file FILE --format FORMAT --baseline BASELINE` with `config`; each line's
/// output, and score-file's last stderr line (its summary).
pub fn score_file(
    config: &Path,
    file: &Path,
    format: &str,
    baseline: &Path,
    out: &Path,
) -> (Vec<Scored>, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .arg("--config")
        .arg(config)
        .arg("--model")
        .arg(common::model_dir())
        .arg("score-file")
        .arg(file)
        .args(["--format", format, "--baseline"])
        .arg(baseline)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "score-file failed: {stderr}");
    let mut scored = Vec::new();
    for (i, line) in std::fs::read_to_string(out).unwrap().lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["line"], i as u64 + 1, "lines numbered from 1, in order");
        let anomaly = v["anomaly"].as_bool().unwrap();
        let alert = v["alert"].as_bool().unwrap();
        assert!(!alert || anomaly, "only an anomaly alerts: {line}");
        scored.push(Scored {
            score: v["score"].as_f64().unwrap(),
            anomaly,
            alert,
        });
    }
    let summary = stderr
        .lines()
        .last()
        .unwrap_or("")
        .trim_start_matches("anomalyd score-file: ")
        .to_owned();
    (scored, summary)
}

/// With `ANOMALYD_EVAL_KEEP=DIR` set, copies an evaluation's inputs and `score-file` output to
/// DIR, with `labels.txt` (one 0 or 1 per test line), for a study of what was flagged and why.
pub fn keep_for_study(dir: &Path, labels: &[bool]) {
    let Some(keep) = std::env::var_os("ANOMALYD_EVAL_KEEP") else {
        return;
    };
    let keep = Path::new(&keep);
    std::fs::create_dir_all(keep).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), keep.join(entry.file_name())).unwrap();
    }
    let labels: String = labels
        .iter()
        .map(|&l| if l { "1\n" } else { "0\n" })
        .collect();
    std::fs::write(keep.join("labels.txt"), labels).unwrap();
    println!("kept in {}", keep.display());
}

/// The verdicts against the labels.
pub struct Verdicts {
    pub flagged: usize,
    pub precision: f64,
    /// Anomalous lines flagged.
    pub recall: f64,
    /// Normal lines flagged, per normal line.
    pub false_alarm_rate: f64,
    /// Normal lines that opened an incident (alerted), per normal line.
    pub false_alert_rate: f64,
}

pub fn verdicts(scored: &[Scored], labels: &[bool]) -> Verdicts {
    assert_eq!(scored.len(), labels.len(), "one verdict per line");
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let count = |pick: &dyn Fn(&Scored) -> bool, want: bool| {
        scored
            .iter()
            .zip(labels)
            .filter(|(s, l)| pick(s) && **l == want)
            .count() as f64
    };
    let (tp, fp) = (count(&|s| s.anomaly, true), count(&|s| s.anomaly, false));
    Verdicts {
        flagged: (tp + fp) as usize,
        precision: tp / (tp + fp).max(1.0),
        recall: tp / positives.max(1.0),
        false_alarm_rate: fp / negatives.max(1.0),
        false_alert_rate: count(&|s| s.alert, false) / negatives.max(1.0),
    }
}

impl Verdicts {
    pub fn print(&self, what: &str) {
        println!(
            "{what}: {} flagged, precision {:.3}, recall {:.3}, false alarms {:.2}% of normal lines ({:.2}% alerting)",
            self.flagged,
            self.precision,
            self.recall,
            self.false_alarm_rate * 100.0,
            self.false_alert_rate * 100.0,
        );
    }
}

/// Recall per fault: a kind of fault on one day, caught when any of its lines is flagged.
pub struct Faults<'a> {
    /// Each (kind, day) and whether it was caught.
    pub by_day: std::collections::BTreeMap<(&'a str, u64), bool>,
}

impl<'a> Faults<'a> {
    /// From each line's label and day, beside its verdict.
    pub fn of(
        labelled: impl IntoIterator<Item = (Option<&'a str>, u64)>,
        scored: &[Scored],
    ) -> Self {
        let mut by_day = std::collections::BTreeMap::new();
        for ((label, day), s) in labelled.into_iter().zip(scored) {
            if let Some(kind) = label {
                *by_day.entry((kind, day)).or_default() |= s.anomaly;
            }
        }
        Faults { by_day }
    }

    pub fn caught(&self) -> usize {
        self.by_day.values().filter(|&&c| c).count()
    }

    pub fn missed(&self) -> Vec<(&'a str, u64)> {
        self.by_day
            .iter()
            .filter(|(_, &c)| !c)
            .map(|(&k, _)| k)
            .collect()
    }

    pub fn kinds(&self) -> std::collections::BTreeSet<&'a str> {
        self.by_day.keys().map(|(k, _)| *k).collect()
    }

    /// Days on which `kind` happened.
    pub fn days_of(&self, kind: &str) -> usize {
        self.by_day.keys().filter(|(k, _)| *k == kind).count()
    }

    pub fn print(&self) {
        println!(
            "faults caught: {} of {} (missed: {:?})",
            self.caught(),
            self.by_day.len(),
            self.missed()
        );
    }

    /// Asserts at least `share` of the faults were caught.
    pub fn assert_caught(&self, share: f64) {
        assert!(
            self.caught() as f64 >= share * self.by_day.len() as f64,
            "{} of {} faults caught; missed {:?}",
            self.caught(),
            self.by_day.len(),
            self.missed()
        );
    }
}

/// A week of journal lines scored as the week evaluations do, and its figures.
pub struct Week {
    pub scored: Vec<Scored>,
    pub ranking: Figures,
    pub verdicts: Verdicts,
}

/// Scores a week: `lines` as `journalctl -o short-iso` prints them, each with whether it is
/// anomalous; the first `baseline_lines` (which must all be normal) are the baseline, the rest
/// go through `anomalyd score-file --format plain` with the shipped defaults. Prints the
/// figures under `name`, and keeps the files for study (`ANOMALYD_EVAL_KEEP`).
pub fn score_week(name: &str, lines: &[(String, bool)], baseline_lines: usize) -> Week {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let (baseline, test) = lines.split_at(baseline_lines);
    assert!(baseline.iter().all(|(_, anomalous)| !anomalous));
    let text = |part: &[(String, bool)]| -> String {
        part.iter()
            .map(|(line, _)| format!("{}\n", line.replace('\n', " ")))
            .collect()
    };
    std::fs::write(dir.path().join("baseline.log"), text(baseline)).unwrap();
    std::fs::write(dir.path().join("test.log"), text(test)).unwrap();
    let labels: Vec<bool> = test.iter().map(|&(_, anomalous)| anomalous).collect();
    println!(
        "{name}: {} baseline lines, {} test lines ({} anomalous)",
        baseline.len(),
        test.len(),
        labels.iter().filter(|&&l| l).count()
    );
    let (scored, summary) = score_file(
        &root.join("config/anomalyd.toml"),
        &dir.path().join("test.log"),
        "plain",
        &dir.path().join("baseline.log"),
        &dir.path().join("scores.jsonl"),
    );
    keep_for_study(dir.path(), &labels);
    let scores: Vec<f64> = scored.iter().map(|s| s.score).collect();
    let ranking = figures(&scores, &labels);
    let verdicts = verdicts(&scored, &labels);
    println!(
        "ROC-AUC {:.3}, PR-AUC {:.3}, best F1 {:.3}",
        ranking.roc_auc, ranking.pr_auc, ranking.best_f1
    );
    verdicts.print(&format!("shipped defaults ({summary})"));
    Week {
        scored,
        ranking,
        verdicts,
    }
}
