//! The audit chain against tampering, on real SQLite files: every kind of edit an attacker with
//! write access to the database can make is caught, at the right seq, by `audit::verify` and by
//! `anomalyctl verify`; checkpoints catch what the chain alone cannot (a cut or re-hashed tail).
//! Also: schema migration from version 1, and offline `anomalyctl head`.

use std::path::{Path, PathBuf};

use anomalyd::audit::{verify, AuditWriter, Checkpoint, Problem};
use anomalyd::config::Synchronous;
use anomalyd::event::{Event, Judged, Source, Verdict};
use rusqlite::Connection;

#[path = "common/chain.rs"]
mod chain;
use chain::{anomalyctl, rehash_from, tampered};

const MODEL: &str = "test-model";

fn judged(i: u64) -> Judged {
    Judged {
        event: Event::observed(
            Source::Systemd,
            format!(
                "systemd unit unit{}.service ActiveState=active SubState=running",
                i % 7
            ),
            serde_json::Map::new(),
        ),
        score: Some(0.01 * (i % 10) as f32),
        verdict: if i.is_multiple_of(9) {
            Verdict::Anomaly
        } else {
            Verdict::Normal
        },
        neighbours: vec![(i, 0.1)],
        joined: None,
    }
}

/// A chain of exactly 50 records (genesis + 49), with checkpoints at 20, 40 and 50.
fn build(dir: &Path) -> (PathBuf, Vec<Checkpoint>) {
    let db = dir.join("audit.sqlite");
    let mut writer = AuditWriter::open(&db, Synchronous::Normal, MODEL).unwrap();
    let mut checkpoints = Vec::new();
    for i in 0..49u64 {
        writer.append(&[judged(i)], MODEL).unwrap();
        let (seq, hash) = writer.head();
        if [20, 40, 50].contains(&seq) {
            checkpoints.push(Checkpoint { seq, hash });
        }
    }
    assert_eq!(writer.head().0, 50);
    (db, checkpoints)
}

/// A copy of the reference chain in `dir`, edited by `sql`.
fn failure(db: &Path, checkpoints: &[Checkpoint]) -> Option<(u64, Problem)> {
    verify(db, checkpoints).unwrap().failure
}

#[test]
fn an_untouched_chain_verifies_with_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (db, checkpoints) = build(dir.path());
    let report = verify(&db, &checkpoints).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 50);
    assert_eq!(report.head, checkpoints.last().copied());
}

#[test]
fn every_tampering_is_caught_at_the_right_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, checkpoints) = build(dir.path());
    let flip_verdict = |seq: u64| {
        format!("UPDATE records SET verdict = CASE verdict WHEN 'normal' THEN 'anomaly' ELSE 'normal' END WHERE seq = {seq}")
    };

    let text = tampered(
        &reference,
        "text",
        "UPDATE records SET text = 'systemd unit x.service ActiveState=active' WHERE seq = 10",
    );
    assert_eq!(failure(&text, &[]), Some((10, Problem::HashMismatch)));

    let score = tampered(
        &reference,
        "score",
        "UPDATE records SET score = 0.0 WHERE seq = 11",
    );
    assert_eq!(failure(&score, &[]), Some((11, Problem::HashMismatch)));

    let verdict = tampered(&reference, "verdict", &flip_verdict(12));
    assert_eq!(failure(&verdict, &[]), Some((12, Problem::HashMismatch)));

    let middle = tampered(&reference, "middle", "DELETE FROM records WHERE seq = 20");
    assert_eq!(
        failure(&middle, &[]),
        Some((21, Problem::SeqGap { expected: 20 }))
    );

    // Two rows' contents exchanged under their seqs.
    let swapped = tampered(
        &reference,
        "swapped",
        "UPDATE records SET seq = -31 WHERE seq = 31;
         UPDATE records SET seq = 31 WHERE seq = 30;
         UPDATE records SET seq = 30 WHERE seq = -31;",
    );
    assert_eq!(failure(&swapped, &[]), Some((30, Problem::BrokenLink)));

    // A forged row slipped into the middle, the rest renumbered behind it.
    let inserted = tampered(
        &reference,
        "inserted",
        "UPDATE records SET seq = seq + 1000 WHERE seq >= 25;
         UPDATE records SET seq = seq - 999 WHERE seq >= 1025;
         INSERT INTO records (seq, ts_usec, kind, source, text, fields, score, verdict, neighbours, model, prev_hash, hash, encoding)
           SELECT 25, ts_usec, kind, source, 'forged', fields, score, verdict, neighbours, model, hash, hash, 1 FROM records WHERE seq = 24;",
    );
    assert_eq!(failure(&inserted, &[]), Some((25, Problem::HashMismatch)));

    let encoding = tampered(
        &reference,
        "encoding",
        "UPDATE records SET encoding = 7 WHERE seq = 5",
    );
    assert_eq!(
        failure(&encoding, &[]),
        Some((5, Problem::UnknownEncoding(7)))
    );

    // The tail cut off: a valid chain on its own; the checkpoint at 50 catches it.
    let tail = tampered(&reference, "tail", "DELETE FROM records WHERE seq > 44");
    assert_eq!(failure(&tail, &[]), None);
    assert_eq!(
        failure(&tail, &checkpoints),
        Some((50, Problem::Truncated { last_seq: 44 }))
    );

    // An edit with every later hash recomputed: valid on its own; the next checkpoint catches it.
    let rehashed = tampered(&reference, "rehashed", &flip_verdict(27));
    rehash_from(&rehashed, 27);
    assert_eq!(failure(&rehashed, &[]), None);
    let at_40 = checkpoints.iter().find(|c| c.seq == 40).unwrap();
    assert_eq!(
        failure(&rehashed, &checkpoints),
        Some((
            40,
            Problem::CheckpointMismatch {
                expected: at_40.hash
            }
        ))
    );

    // Records moved back in time (and re-hashed): caught without any checkpoint.
    let reordered = tampered(
        &reference,
        "reordered",
        "UPDATE records SET ts_usec = ts_usec - 3600000000 WHERE seq = 33",
    );
    rehash_from(&reordered, 33);
    let Some((33, Problem::TimeReversed { .. })) = failure(&reordered, &[]) else {
        panic!("{:?}", failure(&reordered, &[]));
    };
}

#[test]
fn anomalyctl_verifies_offline_against_heads_and_checkpoint_files() {
    let dir = tempfile::tempdir().unwrap();
    let (db, checkpoints) = build(dir.path());
    let db_arg = db.to_str().unwrap();

    let (code, head) = anomalyctl(&["head", "--db", db_arg]);
    assert_eq!(code, 0, "{head}");
    assert_eq!(head.trim(), checkpoints.last().unwrap().to_string());

    let (code, out) = anomalyctl(&["verify", "--db", db_arg, "--expect-head", head.trim()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("chain OK: 50 records, head {}", head.trim())),
        "{out}"
    );

    let file = dir.path().join("checkpoints");
    let lines: Vec<String> = checkpoints.iter().map(|c| c.to_string()).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let tail = tampered(&db, "tail", "DELETE FROM records WHERE seq > 44");
    let (code, out) = anomalyctl(&[
        "verify",
        "--db",
        tail.to_str().unwrap(),
        "--checkpoints",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("chain BROKEN at seq 50: truncated"),
        "{out}"
    );

    let edited = tampered(
        &db,
        "edited",
        "UPDATE records SET text = 'x' WHERE seq = 17",
    );
    let (code, out) = anomalyctl(&["verify", "--db", edited.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("chain BROKEN at seq 17: hash mismatch"),
        "{out}"
    );
    assert!(out.contains("16 records verified before it"), "{out}");

    // Bad input: exit 2 with the reason.
    let (code, out) = anomalyctl(&["verify", "--db", "/nonexistent/audit.sqlite"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("/nonexistent/audit.sqlite does not exist"),
        "{out}"
    );
    let junk = dir.path().join("junk.sqlite");
    std::fs::write(
        &junk,
        b"this is not a database, just text that is long enough to have a header",
    )
    .unwrap();
    let (code, out) = anomalyctl(&["verify", "--db", junk.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a database"), "{out}");
    let (code, out) = anomalyctl(&["verify", "--db", db_arg, "--expect-head", "12:zz"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("the hash is not hex"), "{out}");
}

#[test]
fn a_version_1_file_is_migrated_and_its_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (db, checkpoints) = build(dir.path());
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "ALTER TABLE records DROP COLUMN encoding; DROP TABLE baseline; PRAGMA user_version = 1;",
        )
            .unwrap();
    }
    assert!(
        verify(&db, &checkpoints).unwrap().ok(),
        "a v1 file verifies as it is"
    );
    let mut writer = AuditWriter::open(&db, Synchronous::Normal, MODEL).unwrap();
    writer.append(&[judged(99)], MODEL).unwrap();
    drop(writer);
    let conn = Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, anomalyd::audit::SCHEMA_VERSION);
    let report = verify(&db, &checkpoints).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 51);

    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    let err = AuditWriter::open(&db, Synchronous::Normal, MODEL)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("schema version 99 is newer"),
        "{err}"
    );
}
