//! Audit append throughput: records/s committed through `AuditWriter::append` in batches of 64,
//! for each `audit.synchronous` mode, reported as a ratio against `off` measured in the same run
//! (this machine is shared and noisy; absolute figures are not comparable across runs).
//!
//!     cargo bench --bench audit_append

use std::time::Instant;

use anomalyd::audit::AuditWriter;
use anomalyd::config::Synchronous;
use anomalyd::event::{Event, Judged, Source, Verdict};

const BATCH: usize = 64;
const BATCHES: usize = 300;

fn batch(i: usize) -> Vec<Judged> {
    (0..BATCH)
        .map(|j| Judged {
            event: Event::observed(
                Source::Systemd,
                format!(
                    "systemd unit unit{}.service ActiveState=active SubState=running",
                    (i * BATCH + j) % 97
                ),
                serde_json::Map::new(),
            ),
            score: Some(0.01),
            verdict: Verdict::Normal,
            neighbours: vec![(1, 0.01), (2, 0.02)],
        })
        .collect()
}

fn records_per_second(mode: Synchronous) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut writer =
        AuditWriter::open(&dir.path().join("audit.sqlite"), mode, "bench").expect("open");
    let batches: Vec<_> = (0..BATCHES).map(batch).collect();
    let started = Instant::now();
    for b in &batches {
        writer.append(b, "bench").expect("append");
    }
    (BATCH * BATCHES) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let modes = [
        Synchronous::Off,
        Synchronous::Normal,
        Synchronous::Full,
        Synchronous::Extra,
    ];
    // Interleave three rounds so a burst of load elsewhere touches every mode alike.
    let mut best = [0f64; 4];
    for _ in 0..3 {
        for (i, mode) in modes.iter().enumerate() {
            best[i] = best[i].max(records_per_second(*mode));
        }
    }
    println!("audit append, {BATCH} records per transaction, best of 3 rounds");
    println!("{:<8} {:>12} {:>10}", "mode", "records/s", "vs off");
    for (mode, rate) in modes.iter().zip(best) {
        println!(
            "{:<8} {:>12.0} {:>9.2}x",
            mode.pragma_value(),
            rate,
            rate / best[0]
        );
    }
}
