//! Detection quality on real data, with a fixed protocol: ../shared/data/loghub/BGL_2k.log (143 of
//! 2000 lines anomalous); baseline = the normal lines whose 1-based line number is divisible by 3;
//! test = every other line, in file order, streamed through `anomalyd score-file` (the daemon's
//! own scoring, real MiniLM weights, real FAISS). Side by side, the template-novelty peer: a line
//! is anomalous when its `EventTemplate` (structured CSV, an idealised parser) never occurred in
//! the baseline. Prints every figure, with the shipped defaults and with one fixed threshold;
//! fails when ranking falls below 0.983 / 0.839 or the peer, or the verdicts below their floors.

use std::collections::HashSet;
use std::path::Path;

#[path = "common/evaluation.rs"]
mod evaluation;
use evaluation::{figures, score_file, verdicts};

/// The fields of one CSV record (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[test]
fn bgl_2k_beats_the_template_novelty_peer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data/loghub");
    let log = std::fs::read_to_string(data.join("BGL_2k.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2000);
    let structured = std::fs::read_to_string(data.join("BGL_2k.log_structured.csv")).unwrap();
    let templates: Vec<String> = structured
        .lines()
        .skip(1)
        .map(|l| csv_fields(l).pop().unwrap())
        .collect();
    assert_eq!(templates.len(), 2000);

    let anomalous = |line: &str| !line.starts_with("- ");
    let in_baseline = |n: usize| n.is_multiple_of(3) && !anomalous(lines[n - 1]);
    let dir = tempfile::tempdir().unwrap();
    let (mut baseline, mut test, mut labels, mut test_numbers) =
        (String::new(), String::new(), Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        if in_baseline(n) {
            baseline.push_str(line);
            baseline.push('\n');
        } else {
            test.push_str(line);
            test.push('\n');
            labels.push(anomalous(line));
            test_numbers.push(n);
        }
    }
    std::fs::write(dir.path().join("baseline.log"), baseline).unwrap();
    std::fs::write(dir.path().join("test.log"), &test).unwrap();
    // Normal traffic only: the test lines labelled normal, for the false-alarm rate.
    let normal_only: String = test
        .lines()
        .filter(|l| !anomalous(l))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("normal.log"), normal_only).unwrap();
    let positives = labels.iter().filter(|&&l| l).count();
    println!(
        "protocol: {} baseline lines, {} test lines ({positives} anomalous)",
        2000 - labels.len(),
        labels.len()
    );

    // The shipped defaults, and the rule before per-source calibration and template slots (one
    // fixed threshold) for comparison: the figures of both are printed.
    let shipped = root.join("config/anomalyd.toml");
    let fixed_config = dir.path().join("fixed.toml");
    std::fs::write(
        &fixed_config,
        "[detector]\ncalibration_quantile = 0\nvariable_slot_factor = 1\n",
    )
    .unwrap();
    let run = |config: &Path, file: &str| {
        score_file(
            config,
            &dir.path().join(file),
            "bgl",
            &dir.path().join("baseline.log"),
            &dir.path().join("scores.jsonl"),
        )
    };
    let (scored, summary) = run(&shipped, "test.log");
    evaluation::keep_for_study(dir.path(), &labels);
    let scores: Vec<f64> = scored.iter().map(|s| s.score).collect();
    let ours = figures(&scores, &labels);
    let shipped_verdicts = verdicts(&scored, &labels);
    let (fixed_scored, _) = run(&fixed_config, "test.log");
    let fixed_verdicts = verdicts(&fixed_scored, &labels);
    let normal_labels = vec![false; labels.iter().filter(|&&l| !l).count()];
    let (normal_scored, _) = run(&shipped, "normal.log");
    let normal_verdicts = verdicts(&normal_scored, &normal_labels);

    let baseline_templates: HashSet<&str> = (1..=2000)
        .filter(|&n| in_baseline(n))
        .map(|n| templates[n - 1].as_str())
        .collect();
    let peer_scores: Vec<f64> = test_numbers
        .iter()
        .map(|&n| f64::from(!baseline_templates.contains(templates[n - 1].as_str())))
        .collect();
    let peer = figures(&peer_scores, &labels);

    println!("{:<34}{:>9}{:>9}{:>9}", "", "ROC-AUC", "PR-AUC", "best F1");
    println!(
        "{:<34}{:>9.3}{:>9.3}{:>9.3}",
        "kNN on MiniLM (anomalyd)", ours.roc_auc, ours.pr_auc, ours.best_f1
    );
    println!(
        "{:<34}{:>9.3}{:>9.3}{:>9.3}",
        "template novelty (peer)", peer.roc_auc, peer.pr_auc, peer.best_f1
    );
    shipped_verdicts.print(&format!("shipped defaults ({summary})"));
    fixed_verdicts.print("one fixed threshold (0.05), no slot allowance");
    normal_verdicts.print("normal lines only, shipped defaults");

    // Ranking: not below what the fixed rule reached before the verdict rule changed
    // (0.983 / 0.839), and ahead of the template peer.
    assert!(
        ours.roc_auc >= 0.983,
        "ROC-AUC {:.3} below 0.983",
        ours.roc_auc
    );
    assert!(
        ours.pr_auc >= 0.839,
        "PR-AUC {:.3} below 0.839",
        ours.pr_auc
    );
    assert!(
        ours.pr_auc > peer.pr_auc,
        "PR-AUC {:.3} does not beat the template-novelty peer's {:.3}",
        ours.pr_auc,
        peer.pr_auc
    );
    // Verdicts with the shipped defaults: the goal, at most 2% of normal lines at recall 0.9,
    // which the rule reaches (benches/README.md, "Verdicts"), so a change that loses ground
    // fails here.
    assert!(
        shipped_verdicts.false_alarm_rate <= 0.02,
        "false alarms {:.2}% of normal lines",
        shipped_verdicts.false_alarm_rate * 100.0
    );
    assert!(
        shipped_verdicts.recall >= 0.9,
        "recall {:.3}",
        shipped_verdicts.recall
    );
    assert!(
        shipped_verdicts.false_alarm_rate < fixed_verdicts.false_alarm_rate / 2.0,
        "the shipped rule flags {:.2}% of normal lines, the fixed one {:.2}%",
        shipped_verdicts.false_alarm_rate * 100.0,
        fixed_verdicts.false_alarm_rate * 100.0
    );
    assert!(
        normal_verdicts.false_alarm_rate <= 0.03,
        "false alarms on normal traffic alone: {:.2}% of lines",
        normal_verdicts.false_alarm_rate * 100.0
    );
}
