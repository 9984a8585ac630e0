//! Verdicts on real systemd traffic with the shipped defaults: anomalyd installed as the service
//! in `../shared/tools/systemd-sandbox`, ordinary churn (oneshot jobs, a service restarted, new
//! benign units appearing after the warm-up), then real faults (a unit that fails, a missing
//! binary, a service killed by SIGKILL, a failed dependency). Every fault must be flagged and at
//! most 1% of the normal events after the warm-up.
//!
//! Needs root (the sandbox uses namespaces and overlayfs), as CI has.

#[path = "common/sandbox.rs"]
mod sandbox;
use sandbox::{boot, inside, inside_ok, prepare, query, wait_until};
use std::time::Duration;

/// Oneshot jobs that run all day (each a different program, as a host's timers are).
const DAILY: [&str; 6] = [
    "logrotate",
    "man-db",
    "apt-daily",
    "fstrim",
    "e2scrub",
    "backup",
];
/// Benign units installed by the operator after the warm-up, each then run a few times.
const NEW: [&str; 4] = ["report-export", "cert-sync", "cache-warm", "db-vacuum"];

fn oneshot(description: &str, seconds: &str) -> String {
    format!("[Unit]\nDescription={description}\n\n[Service]\nType=oneshot\nExecStart=/bin/sleep {seconds}\n")
}

#[test]
fn real_churn_is_normal_and_real_faults_are_flagged() {
    let mut units: Vec<(String, String)> = Vec::new();
    for (i, name) in DAILY.iter().chain(&NEW).enumerate() {
        // Not /bin/true: a oneshot that ends within one loop iteration never shows `activating`.
        let seconds = format!("0.{}", 3 + i % 4);
        units.push((format!("{name}.service"), oneshot(name, &seconds)));
    }
    units.push((
        "webapp.service".into(),
        "[Unit]\nDescription=a long-running service\n\n[Service]\nExecStart=/bin/sleep infinity\n"
            .into(),
    ));
    // The faults.
    units.push((
        "nightly-import.service".into(),
        "[Service]\nType=oneshot\nExecStart=/bin/false\n".into(),
    ));
    units.push((
        "metrics-agent.service".into(),
        "[Service]\nExecStart=/nonexistent/metrics-agent\n".into(),
    ));
    units.push((
        "report-mail.service".into(),
        "[Unit]\nRequires=nightly-import.service\nAfter=nightly-import.service\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n"
            .into(),
    ));
    let units: Vec<(&str, &str)> = units
        .iter()
        .map(|(n, u)| (n.as_str(), u.as_str()))
        .collect();
    let shipped = std::fs::read_to_string(sandbox::root().join("config/anomalyd.toml")).unwrap();
    prepare(&shipped, &units);
    let _guard = boot();
    inside_ok("systemctl start anomalyd.service");
    wait_until("the daemon answers", Duration::from_secs(120), || {
        let (code, _) = inside("anomalyctl status >/dev/null 2>&1");
        (code == 0).then(String::new)
    });

    // Learning: the daily jobs and the service's restarts, until the warm-up is over.
    let round = |jobs: &[&str]| {
        let starts: Vec<String> = jobs
            .iter()
            .map(|j| format!("systemctl start {j}.service"))
            .collect();
        inside_ok(&format!(
            "{} && systemctl restart webapp.service",
            starts.join(" && ")
        ));
    };
    let warm_up_over = || {
        query("SELECT COUNT(*) FROM records WHERE verdict IN ('normal', 'anomaly')")
            .first()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    };
    for _ in 0..30 {
        if warm_up_over() {
            break;
        }
        round(&DAILY);
    }
    assert!(warm_up_over(), "the warm-up ended");
    let first_judged: u64 =
        query("SELECT MIN(seq) FROM records WHERE verdict IN ('normal', 'anomaly')")[0]
            .parse()
            .unwrap();

    // Normal traffic after the warm-up, with new benign units appearing and recurring.
    for _ in 0..4 {
        round(&DAILY);
        round(&NEW);
    }

    // Faults.
    inside("systemctl start nightly-import.service");
    inside("systemctl start metrics-agent.service");
    inside_ok("systemctl kill --signal=SIGKILL webapp.service");
    inside("systemctl start report-mail.service");
    let faults = [
        "nightly-import.service",
        "metrics-agent.service",
        "webapp.service ActiveState=failed",
        "report-mail.service",
    ];
    wait_until("every fault recorded", Duration::from_secs(60), || {
        faults
            .iter()
            .all(|f| {
                !query(&format!(
                    "SELECT seq FROM records WHERE text LIKE '%{f}%' AND verdict != 'warmup'"
                ))
                .is_empty()
            })
            .then(String::new)
    });
    // The records of the last signals are committed within a batch's wait.
    std::thread::sleep(Duration::from_secs(2));

    // verdict|text|score|threshold, so a false alarm shows what it was judged against.
    let rows = query(&format!(
        "SELECT verdict, text || ' (score ' || round(score, 4) || ', threshold ' || round(json_extract(fields, '$.threshold'), 4) || ')' FROM records WHERE seq >= {first_judged} AND kind = 'event' AND verdict IN ('normal', 'anomaly') ORDER BY seq"
    ));
    let is_fault = |text: &str| {
        faults.iter().any(|f| text.contains(f))
            || text.contains("webapp.service ActiveState=failed")
            || (text.contains("webapp.service") && text.contains("Result=signal"))
    };
    let (mut normal, mut false_alarms) = (0, Vec::new());
    for row in &rows {
        let (verdict, text) = row.split_once('|').unwrap();
        if !is_fault(text) {
            normal += 1;
            if verdict == "anomaly" {
                false_alarms.push(text.to_owned());
            }
        }
    }
    let flagged: Vec<&String> = rows.iter().filter(|r| r.starts_with("anomaly|")).collect();
    println!(
        "{} judged events after the warm-up, {normal} of them normal; {} normal flagged ({:.2}%): {false_alarms:#?}",
        rows.len(),
        false_alarms.len(),
        100.0 * false_alarms.len() as f64 / normal.max(1) as f64
    );
    println!("flagged: {flagged:#?}");
    let webapp: Vec<&String> = rows
        .iter()
        .filter(|r| r.contains("webapp.service"))
        .collect();
    println!("webapp.service: {webapp:#?}");
    for fault in faults {
        assert!(
            flagged.iter().any(|r| r.contains(fault)),
            "fault {fault} not flagged; flagged: {flagged:#?}"
        );
    }
    assert!(normal >= 100, "enough normal traffic to measure: {normal}");
    assert!(
        false_alarms.len() as f64 <= 0.01 * normal as f64,
        "{} of {normal} normal events flagged: {false_alarms:#?}",
        false_alarms.len()
    );
}
