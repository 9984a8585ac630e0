//! Volatile-value scrubbing of free-text log lines, by its own measure: distinct texts per 1,000
//! events, before (the value rules applied word by word, as they were before the message rules)
//! and after (`VolatileRules::scrub_message`: the message rules over the whole line, then the
//! value rules per word). Fewer distinct texts means fewer lines that look new only because of a
//! pid, a port, a duration or a queue id. Counts, not times: the figures are the same on any
//! machine. Also the cost per line of each.
//!
//!     cargo bench --bench scrub

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use anomalyd::render::VolatileRules;

#[path = "../tests/common/host_week.rs"]
mod host_week;
#[path = "../tests/common/web_week.rs"]
mod web_week;

/// The words of `line`, each through the value rules: the scrubbing before the message rules.
fn per_word(rules: &VolatileRules, line: &str) -> String {
    line.split_whitespace()
        .map(|w| rules.scrub(w).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn measure(name: &str, lines: &[String]) {
    let rules = VolatileRules::default();
    let per_thousand = |texts: &HashSet<String>| texts.len() as f64 * 1000.0 / lines.len() as f64;
    let started = Instant::now();
    let before: HashSet<String> = lines.iter().map(|l| per_word(&rules, l)).collect();
    let before_ns = started.elapsed().as_nanos() as f64 / lines.len() as f64;
    let started = Instant::now();
    let after: HashSet<String> = lines.iter().map(|l| rules.scrub_message(l)).collect();
    let after_ns = started.elapsed().as_nanos() as f64 / lines.len() as f64;
    let raw: HashSet<&String> = lines.iter().collect();
    println!(
        "{name:<34} {:>7} lines  raw {:>6.1}  before {:>6.1}  after {:>6.1} distinct/1000 ({:.2}x fewer); {:.1} vs {:.1} µs/line",
        lines.len(),
        raw.len() as f64 * 1000.0 / lines.len() as f64,
        per_thousand(&before),
        per_thousand(&after),
        before.len() as f64 / after.len() as f64,
        before_ns / 1000.0,
        after_ns / 1000.0,
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bgl = std::fs::read_to_string(root.join("../shared/data/loghub/BGL_2k.log"))
        .expect("../shared/data/loghub/BGL_2k.log");
    // The text `score-file --format bgl` scores: type, component, level and content.
    let bgl: Vec<String> = bgl
        .lines()
        .map(|l| l.split_whitespace().skip(6).collect::<Vec<_>>().join(" "))
        .collect();
    measure("BGL_2k (bgl)", &bgl);
    for seed in [1, 2, 3] {
        let week: Vec<String> = host_week::generate(seed)
            .iter()
            .map(|l| l.plain().replace('\n', " "))
            .collect();
        measure(&format!("mail server week, seed {seed} (plain)"), &week);
    }
    for seed in [1, 2, 3] {
        let week: Vec<String> = web_week::generate(seed)
            .iter()
            .map(|l| l.plain().replace('\n', " "))
            .collect();
        measure(&format!("web shop week, seed {seed} (plain)"), &week);
    }
}
