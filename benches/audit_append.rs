//! Audit log throughput, measured against baselines in the same run (this machine is shared and
//! noisy; absolute figures are not comparable across runs):
//!
//! - **append**: records/s committed by `AuditWriter::append` (SHA-256 chain) in batches of 256,
//!   against plain inserts of the same rows into the same table and indexes without hashing, for
//!   `synchronous = NORMAL` and `FULL` (WAL). Goals: ≥ 200k records/s and ≥ 0.8× plain (NORMAL).
//! - **verify**: `audit::verify` over 1,000,000 records. Goal: < 1 s.
//!
//!     cargo bench --bench audit_append

use std::path::Path;
use std::time::Instant;

use anomalyd::audit::{verify, AuditWriter};
use anomalyd::config::Synchronous;
use anomalyd::event::{Event, Judged, Source, Verdict};
use serde_json::json;

const BATCH: usize = 256;
const BATCHES: usize = 200;
const VERIFY_RECORDS: usize = 1_000_000;

fn batch(i: usize) -> Vec<Judged> {
    (0..BATCH)
        .map(|j| {
            let n = i * BATCH + j;
            let mut fields = serde_json::Map::new();
            fields.insert("unit".into(), json!(format!("unit{}.service", n % 97)));
            fields.insert("MainPID".into(), json!(1000 + n));
            Judged {
                event: Event::observed(
                    Source::Systemd,
                    format!(
                        "systemd unit unit{}.service ActiveState=active SubState=running Result=success",
                        n % 97
                    ),
                    fields,
                ),
                score: Some(0.01),
                verdict: Verdict::Normal,
                neighbours: vec![(1, 0.01), (2, 0.02), (3, 0.03), (4, 0.04), (5, 0.05)],
                joined: None,
                periodic: None,
            }
        })
        .collect()
}

fn chained(dir: &Path, mode: Synchronous, batches: &[Vec<Judged>]) -> f64 {
    let mut writer = AuditWriter::open(&dir.join("chain.sqlite"), mode, "bench").expect("open");
    let started = Instant::now();
    for b in batches {
        writer.append(b, "bench").expect("append");
    }
    (BATCH * batches.len()) as f64 / started.elapsed().as_secs_f64()
}

/// The same rows, serialised the same way, into the same schema, with no hashing.
fn plain(dir: &Path, mode: Synchronous, batches: &[Vec<Judged>]) -> f64 {
    let path = dir.join("plain.sqlite");
    drop(AuditWriter::open(&path, mode, "bench").expect("schema"));
    let mut conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", mode.pragma_value())
        .unwrap();
    let zero = [0u8; 32];
    let mut seq = 1i64;
    let started = Instant::now();
    for b in batches {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO records (seq, ts_usec, kind, source, text, fields, score, verdict,
                                          neighbours, model, prev_hash, hash, encoding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1)",
                )
                .unwrap();
            for j in b {
                seq += 1;
                let fields = serde_json::to_string(&j.event.fields).unwrap();
                let neighbours = serde_json::Value::from(
                    j.neighbours
                        .iter()
                        .map(|&(id, d)| json!([id, d]))
                        .collect::<Vec<_>>(),
                )
                .to_string();
                insert
                    .execute(rusqlite::params![
                        seq,
                        j.event.observed_usec as i64,
                        j.event.kind.as_str(),
                        j.event.source.as_str(),
                        j.event.text,
                        fields,
                        j.score.map(f64::from),
                        j.verdict.as_str(),
                        neighbours,
                        "bench",
                        &zero[..],
                        &zero[..],
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    (BATCH * batches.len()) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let batches: Vec<_> = (0..BATCHES).map(batch).collect();
    println!(
        "audit append: {} records in batches of {BATCH}, best of 3 interleaved rounds",
        BATCH * BATCHES
    );
    println!(
        "{:<8} {:>14} {:>14} {:>8}",
        "mode", "chain rec/s", "plain rec/s", "ratio"
    );
    for mode in [Synchronous::Normal, Synchronous::Full] {
        let (mut chain, mut flat) = (0f64, 0f64);
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            chain = chain.max(chained(dir.path(), mode, &batches));
            flat = flat.max(plain(dir.path(), mode, &batches));
        }
        println!(
            "{:<8} {:>14.0} {:>14.0} {:>7.2}x",
            mode.pragma_value(),
            chain,
            flat,
            chain / flat
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("verify.sqlite");
    let mut writer = AuditWriter::open(&db, Synchronous::Off, "bench").expect("open");
    let mut written = 1;
    let mut i = 0;
    while written < VERIFY_RECORDS {
        let mut b = batch(i);
        b.truncate(VERIFY_RECORDS - written);
        written += b.len();
        writer.append(&b, "bench").expect("append");
        i += 1;
    }
    drop(writer);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let report = verify(&db, &[]).expect("verify");
        best = best.min(started.elapsed().as_secs_f64());
        assert!(report.ok() && report.records as usize == VERIFY_RECORDS);
    }
    println!(
        "verify: {VERIFY_RECORDS} records in {best:.3} s (best of 3) = {:.0} records/s",
        VERIFY_RECORDS as f64 / best
    );
}
