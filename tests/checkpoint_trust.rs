//! Checkpoints held against real SQLite chains, through `audit::verify` and `anomalyctl verify`:
//! a journal entry that journald does not attribute to the service (any local user can log one
//! with `logger --journald`) is ignored and counted, one seq with two hashes is tampering, and a
//! chain without its genesis record is broken.

use std::path::{Path, PathBuf};

use anomalyd::audit::checkpoint::{
    parse_checkpoints_trusted, CheckpointError, JournalTrust, ParsedCheckpoints,
};
use anomalyd::audit::{verify, AuditWriter, Checkpoint, Problem, CHECKPOINT_MESSAGE_ID};
use anomalyd::config::Synchronous;
use anomalyd::event::{Event, Judged, RecordKind};

#[path = "common/chain.rs"]
mod chain;
use chain::anomalyctl;

const MODEL: &str = "test-model";

/// A chain of `records` records (the genesis, then `start` records) and its head.
fn build(dir: &Path, records: usize) -> (PathBuf, Checkpoint) {
    let db = dir.join("audit.sqlite");
    let mut writer = AuditWriter::open(&db, Synchronous::Normal, MODEL).unwrap();
    for _ in 1..records {
        let start = Event::daemon(
            RecordKind::Start,
            "anomalyd start".into(),
            serde_json::Map::new(),
        );
        writer.append(&[Judged::unscored(start)], MODEL).unwrap();
    }
    let (seq, hash) = writer.head();
    (db, Checkpoint { seq, hash })
}

/// A `journalctl -o json` line with a checkpoint, marked with journald's trusted fields `marks`.
fn journal_entry(checkpoint: &Checkpoint, marks: &[(&str, &str)]) -> String {
    let mut entry = serde_json::json!({
        "MESSAGE_ID": CHECKPOINT_MESSAGE_ID,
        "MESSAGE": format!("audit checkpoint {checkpoint}"),
        "CHECKPOINT_SEQ": checkpoint.seq.to_string(),
        "CHECKPOINT_HASH": hex::encode(checkpoint.hash),
    });
    for (key, value) in marks {
        entry[*key] = serde_json::json!(value);
    }
    entry.to_string()
}

/// How journald marks the daemon's own entries (here run as root, which is always trusted).
const SERVICE: &[(&str, &str)] = &[("_UID", "0"), ("_SYSTEMD_UNIT", "anomalyd.service")];
/// How journald marks `logger --journald` run by an ordinary user.
const USER: &[(&str, &str)] = &[("_UID", "1000"), ("_COMM", "logger")];

#[test]
fn a_checkpoint_forged_by_a_local_user_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (db, head) = build(dir.path(), 10);
    let forged = Checkpoint {
        seq: 999_999_999,
        hash: [0; 32],
    };
    // Believed, the forgery would make a good chain look truncated.
    assert_eq!(
        verify(&db, &[head, forged]).unwrap().failure,
        Some((999_999_999, Problem::Truncated { last_seq: 10 }))
    );

    let journal = [journal_entry(&head, SERVICE), journal_entry(&forged, USER)].join("\n");
    let parsed = parse_checkpoints_trusted(&journal, &JournalTrust::service()).unwrap();
    assert_eq!(
        parsed,
        ParsedCheckpoints {
            checkpoints: vec![head],
            untrusted: 1,
            torn: false,
        }
    );
    let report = verify(&db, &parsed.checkpoints).unwrap();
    assert!(report.ok(), "{report:?}");

    // The same through anomalyctl, with the journal's output saved to a file.
    let file = dir.path().join("journal.json");
    std::fs::write(&file, journal + "\n").unwrap();
    let (code, out) = anomalyctl(&[
        "verify",
        "--db",
        db.to_str().unwrap(),
        "--checkpoints",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("chain OK: 10 records, head {head}")),
        "{out}"
    );
}

#[test]
fn two_hashes_for_one_seq_are_reported_as_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (db, head) = build(dir.path(), 10);
    let rewritten = Checkpoint {
        seq: head.seq,
        hash: [0x5a; 32],
    };

    let journal = [
        journal_entry(&head, SERVICE),
        journal_entry(&rewritten, SERVICE),
    ]
    .join("\n");
    let conflict = parse_checkpoints_trusted(&journal, &JournalTrust::service()).unwrap_err();
    assert_eq!(
        conflict,
        CheckpointError::Conflict {
            seq: 10,
            first: head.hash,
            second: [0x5a; 32],
        }
    );
    assert!(
        conflict
            .to_string()
            .starts_with("checkpoint seq 10 appears with two different hashes"),
        "{conflict}"
    );

    // A checkpoint file and the journal disagreeing: verify checks both hashes.
    assert_eq!(
        verify(&db, &[head, rewritten]).unwrap().failure,
        Some((
            10,
            Problem::CheckpointMismatch {
                expected: [0x5a; 32]
            }
        ))
    );

    let file = dir.path().join("checkpoints");
    std::fs::write(&file, format!("{head}\n{rewritten}\n")).unwrap();
    let (code, out) = anomalyctl(&[
        "verify",
        "--db",
        db.to_str().unwrap(),
        "--checkpoints",
        file.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("checkpoint seq 10 appears with two different hashes"),
        "{out}"
    );
}

#[test]
fn a_chain_without_its_genesis_record_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = build(dir.path(), 3);
    let front = dir.path().join("front.sqlite");
    std::fs::copy(&db, &front).unwrap();
    rusqlite::Connection::open(&front)
        .unwrap()
        .execute_batch("DELETE FROM records WHERE seq = 1")
        .unwrap();
    assert_eq!(
        verify(&front, &[]).unwrap().failure,
        Some((1, Problem::MissingGenesis { first_seq: Some(2) }))
    );

    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DELETE FROM records")
        .unwrap();
    let report = verify(&db, &[]).unwrap();
    assert_eq!(
        report.failure,
        Some((1, Problem::MissingGenesis { first_seq: None }))
    );
    assert_eq!(report.records, 0);

    let (code, out) = anomalyctl(&["verify", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("chain BROKEN at seq 1: no genesis record"),
        "{out}"
    );
}
