//! Shared by the chain tests: tampering with a real SQLite chain as an attacker with write access
//! would (an edit, then every later hash recomputed), and running `anomalyctl`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anomalyd::audit::GENESIS_PREV_HASH;
use rusqlite::Connection;

/// A copy of `reference` named `name`, with `sql` run on it.
pub fn tampered(reference: &Path, name: &str, sql: &str) -> PathBuf {
    let db = reference.with_file_name(format!("{name}.sqlite"));
    std::fs::copy(reference, &db).unwrap();
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    db
}

/// Recomputes every hash from seq `from` on, as an attacker covering an edit would.
pub fn rehash_from(db: &Path, from: u64) {
    let conn = Connection::open(db).unwrap();
    let mut prev: [u8; 32] = if from == 1 {
        GENESIS_PREV_HASH
    } else {
        conn.query_row(
            "SELECT hash FROM records WHERE seq = ?1",
            [from as i64 - 1],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .unwrap()
        .try_into()
        .unwrap()
    };
    type Row = (
        i64,
        i64,
        String,
        String,
        String,
        String,
        Option<f64>,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = conn
        .prepare("SELECT seq, ts_usec, kind, source, text, fields, score, verdict, neighbours, model FROM records WHERE seq >= ?1 ORDER BY seq")
        .unwrap()
        .query_map([from as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (seq, ts, kind, source, text, fields, score, verdict, neighbours, model) in rows {
        let hash = anomalyd::audit::record_hash(
            &prev,
            &anomalyd::audit::RecordFields {
                seq: seq as u64,
                ts_usec: ts as u64,
                kind: &kind,
                source: &source,
                text: &text,
                fields: &fields,
                score,
                verdict: &verdict,
                neighbours: &neighbours,
                model: &model,
            },
        );
        conn.execute(
            "UPDATE records SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![&prev[..], &hash[..], seq],
        )
        .unwrap();
        prev = hash;
    }
}

/// Runs the built anomalyctl; its exit status and everything it printed.
pub fn anomalyctl(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_anomalyctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
