//! The audit chain against tampering, on real SQLite files: every kind of edit an attacker with
//! write access to the database can make is caught, at the right seq, by `audit::verify` and by
//! `anomalyctl verify`; checkpoints catch what the chain alone cannot (a cut or re-hashed tail).
//! Also: schema migration from version 1, and offline `anomalyctl head`.

use std::path::{Path, PathBuf};

use anomalyd::audit::{verify, AuditWriter, Checkpoint, Problem};
use anomalyd::config::Synchronous;
use anomalyd::detect::BaselineRow;
use anomalyd::event::{Event, Judged, RecordKind, Source, Verdict};
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
        periodic: None,
    }
}

/// A chain of exactly 50 records (genesis + 49), with checkpoints at 20, 40 and 50; the normal
/// events join the baseline (ids in the order their texts first joined), the anomalies do not.
fn build(dir: &Path) -> (PathBuf, Vec<Checkpoint>) {
    build_with(dir, true)
}

/// [`build`], its joins recorded or (as before schema 4) not.
fn build_with(dir: &Path, record_joins: bool) -> (PathBuf, Vec<Checkpoint>) {
    let db = dir.join("audit.sqlite");
    let mut writer = AuditWriter::open(&db, Synchronous::Normal, MODEL).unwrap();
    let mut checkpoints = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for i in 0..49u64 {
        if record_joins && i == 13 {
            // Seq 15: an import, adding to a text already known and a new one.
            ids.push("custom imported history line".into());
            let rows = [(0, 5), (ids.len() as u64 - 1, 3)].map(|(id, count)| BaselineRow {
                id,
                text: ids[id as usize].clone(),
                count,
            });
            let import = Event::daemon(
                RecordKind::Import,
                "anomalyd baseline import history.txt events=8 new_texts=1".into(),
                serde_json::Map::new(),
            );
            writer
                .append_with_baseline(&[Judged::unscored(import)], MODEL, &rows)
                .unwrap();
            continue;
        }
        let mut judged = judged(i);
        if record_joins && judged.verdict == Verdict::Normal {
            let text = &judged.event.text;
            judged.joined = Some(match ids.iter().position(|t| t == text) {
                Some(id) => id as u64,
                None => {
                    ids.push(text.clone());
                    ids.len() as u64 - 1
                }
            });
        }
        writer.append(&[judged], MODEL).unwrap();
        let (seq, hash) = writer.head();
        if [20, 40, 50].contains(&seq) {
            checkpoints.push(Checkpoint { seq, hash });
        }
    }
    assert_eq!(writer.head().0, 50);
    (db, checkpoints)
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

/// The reference verifier in ARCHITECTURE.md, as written there.
fn reference_verifier(dir: &Path) -> PathBuf {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    let section = &doc[doc.find("### A reference verifier").expect("the section")..];
    let body = &section[section.find("```python\n").expect("its code") + 10..];
    let script = dir.join("reference_verifier.py");
    std::fs::write(&script, &body[..body.find("```").unwrap()]).unwrap();
    script
}

/// One tampering, and what each verifier must say about it.
struct Tamper {
    name: &'static str,
    sql: String,
    /// Every hash from this seq on recomputed afterwards, as an attacker covering an edit would.
    rehash_from: Option<u64>,
    /// `audit::verify` with every checkpoint (and `anomalyctl verify --checkpoints`): the first
    /// bad seq and what is wrong there.
    caught: (u64, fn(&Problem) -> bool),
    /// Only the checkpoints catch it: without them, the chain (and the baseline table) verify.
    needs_checkpoints: bool,
    /// Where the reference verifier finds it, which leaves checkpoints, encodings and the
    /// baseline table to anomalyctl (`None`: it says the chain is intact).
    reference: Option<u64>,
}

#[test]
fn every_tampering_is_caught_at_the_right_seq_by_every_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, checkpoints) = build(dir.path());
    let script = reference_verifier(dir.path());
    let file = dir.path().join("checkpoints");
    let lines: Vec<String> = checkpoints.iter().map(|c| c.to_string()).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let flip_verdict = |seq: u64| {
        format!("UPDATE records SET verdict = CASE verdict WHEN 'normal' THEN 'anomaly' ELSE 'normal' END WHERE seq = {seq}")
    };
    let hash_mismatch: fn(&Problem) -> bool = |p| *p == Problem::HashMismatch;
    let baseline: fn(&Problem) -> bool = |p| matches!(p, Problem::Baseline(_));
    let cases = vec![
        Tamper {
            name: "text",
            sql: "UPDATE records SET text = 'systemd unit x.service ActiveState=active' WHERE seq = 10".into(),
            rehash_from: None,
            caught: (10, hash_mismatch),
            needs_checkpoints: false,
            reference: Some(10),
        },
        Tamper {
            name: "score",
            sql: "UPDATE records SET score = 0.0 WHERE seq = 11".into(),
            rehash_from: None,
            caught: (11, hash_mismatch),
            needs_checkpoints: false,
            reference: Some(11),
        },
        Tamper {
            name: "verdict",
            sql: flip_verdict(12),
            rehash_from: None,
            caught: (12, hash_mismatch),
            needs_checkpoints: false,
            reference: Some(12),
        },
        Tamper {
            name: "deleted",
            sql: "DELETE FROM records WHERE seq = 20".into(),
            rehash_from: None,
            caught: (21, |p| *p == Problem::SeqGap { expected: 20 }),
            needs_checkpoints: false,
            reference: Some(21),
        },
        Tamper {
            name: "swapped",
            // Two rows' contents exchanged under their seqs.
            sql: "UPDATE records SET seq = -31 WHERE seq = 31;
                  UPDATE records SET seq = 31 WHERE seq = 30;
                  UPDATE records SET seq = 30 WHERE seq = -31;"
                .into(),
            rehash_from: None,
            caught: (30, |p| *p == Problem::BrokenLink),
            needs_checkpoints: false,
            reference: Some(30),
        },
        Tamper {
            name: "inserted",
            // A forged row slipped into the middle, the rest renumbered behind it.
            sql: "UPDATE records SET seq = seq + 1000 WHERE seq >= 25;
                  UPDATE records SET seq = seq - 999 WHERE seq >= 1025;
                  INSERT INTO records (seq, ts_usec, kind, source, text, fields, score, verdict, neighbours, model, prev_hash, hash, encoding)
                    SELECT 25, ts_usec, kind, source, 'forged', fields, score, verdict, neighbours, model, hash, hash, 1 FROM records WHERE seq = 24;"
                .into(),
            rehash_from: None,
            caught: (25, hash_mismatch),
            needs_checkpoints: false,
            reference: Some(25),
        },
        Tamper {
            name: "encoding",
            sql: "UPDATE records SET encoding = 7 WHERE seq = 5".into(),
            rehash_from: None,
            caught: (5, |p| *p == Problem::UnknownEncoding(7)),
            needs_checkpoints: false,
            reference: None,
        },
        Tamper {
            name: "emptied",
            sql: "DELETE FROM records".into(),
            rehash_from: None,
            caught: (1, |p| *p == Problem::MissingGenesis { first_seq: None }),
            needs_checkpoints: false,
            reference: Some(1),
        },
        Tamper {
            name: "front cut",
            sql: "DELETE FROM records WHERE seq < 4".into(),
            rehash_from: None,
            caught: (1, |p| *p == Problem::MissingGenesis { first_seq: Some(4) }),
            needs_checkpoints: false,
            reference: Some(1),
        },
        Tamper {
            // A valid chain on its own; the checkpoint at 50 catches it.
            name: "tail cut",
            // The baseline's counts made to agree, as a careful attacker would.
            sql: "DELETE FROM records WHERE seq > 44;
                  UPDATE baseline SET count =
                      (SELECT COUNT(*) FROM records WHERE json_extract(fields, '$.joined') = baseline.id)
                    + (SELECT COALESCE(SUM(count), 0) FROM baseline_imports WHERE id = baseline.id);
                  DELETE FROM baseline WHERE count = 0;"
                .into(),
            rehash_from: None,
            caught: (50, |p| *p == Problem::Truncated { last_seq: 44 }),
            needs_checkpoints: true,
            reference: None,
        },
        Tamper {
            // Valid on its own; the next checkpoint catches it.
            name: "edited and rehashed",
            sql: flip_verdict(27),
            rehash_from: Some(27),
            caught: (40, |p| matches!(p, Problem::CheckpointMismatch { .. })),
            needs_checkpoints: true,
            reference: None,
        },
        Tamper {
            name: "deleted and rehashed",
            // An anomaly's record (it joined nothing), the rest renumbered behind it.
            sql: "DELETE FROM records WHERE seq = 29;
                  UPDATE records SET seq = seq + 1000 WHERE seq > 29;
                  UPDATE records SET seq = seq - 1001 WHERE seq > 1000;"
                .into(),
            rehash_from: Some(29),
            caught: (40, |p| matches!(p, Problem::CheckpointMismatch { .. })),
            needs_checkpoints: true,
            reference: None,
        },
        Tamper {
            // Records moved back in time, and re-hashed: caught without any checkpoint.
            name: "reordered",
            sql: "UPDATE records SET ts_usec = ts_usec - 3600000000 WHERE seq = 33".into(),
            rehash_from: Some(33),
            caught: (33, |p| matches!(p, Problem::TimeReversed { .. })),
            needs_checkpoints: false,
            reference: Some(33),
        },
        Tamper {
            // The attack the baseline table invited: a fault's text made "normal" by hand.
            name: "baseline row inserted",
            sql: "INSERT INTO baseline (id, text, count, first_seq)
                    SELECT MAX(id) + 1, 'systemd unit evil.service ActiveState=active', 1, 3 FROM baseline"
                .into(),
            rehash_from: None,
            caught: (3, baseline),
            needs_checkpoints: false,
            reference: None,
        },
        Tamper {
            // The same, pointed at an anomaly's own record.
            name: "anomaly made normal",
            sql: "INSERT INTO baseline (id, text, count, first_seq)
                    SELECT (SELECT MAX(id) + 1 FROM baseline), text, 1, seq FROM records WHERE seq = 10"
                .into(),
            rehash_from: None,
            caught: (10, baseline),
            needs_checkpoints: false,
            reference: None,
        },
        Tamper {
            name: "baseline count raised",
            sql: "UPDATE baseline SET count = count + 100 WHERE id = 1".into(),
            rehash_from: None,
            caught: (first_join(&reference, 1), baseline),
            needs_checkpoints: false,
            reference: None,
        },
        Tamper {
            name: "baseline text replaced",
            sql: "UPDATE baseline SET text = 'systemd unit evil.service ActiveState=active' WHERE id = 2".into(),
            rehash_from: None,
            caught: (first_join(&reference, 2), baseline),
            needs_checkpoints: false,
            reference: None,
        },
        Tamper {
            name: "baseline row deleted",
            sql: "DELETE FROM baseline WHERE id = 3".into(),
            rehash_from: None,
            caught: (first_join(&reference, 3), baseline),
            needs_checkpoints: false,
            reference: None,
        },
        Tamper {
            // An import's kept rows no longer what its record's digest covers.
            name: "import row edited",
            sql: "UPDATE baseline_imports SET count = count + 1 WHERE id = 0;
                  UPDATE baseline SET count = count + 1 WHERE id = 0;"
                .into(),
            rehash_from: None,
            caught: (15, baseline),
            needs_checkpoints: false,
            reference: None,
        },
        Tamper {
            name: "import row added",
            sql: "INSERT INTO baseline_imports (seq, id, text, count, first_seq)
                    VALUES (15, 99, 'systemd unit evil.service ActiveState=active', 1, 15);
                  INSERT INTO baseline (id, text, count, first_seq)
                    VALUES (99, 'systemd unit evil.service ActiveState=active', 1, 15);"
                .into(),
            rehash_from: None,
            caught: (15, baseline),
            needs_checkpoints: false,
            reference: None,
        },
        Tamper {
            name: "import rows dropped",
            sql: "DELETE FROM baseline_imports".into(),
            rehash_from: None,
            caught: (15, baseline),
            needs_checkpoints: false,
            reference: None,
        },
        Tamper {
            // Which would have the next start adopt whatever the table then holds.
            name: "schema version lowered",
            sql: "PRAGMA user_version = 3".into(),
            rehash_from: None,
            caught: (3, baseline),
            needs_checkpoints: false,
            reference: None,
        },
    ];
    for case in &cases {
        let db = tampered(&reference, &case.name.replace(' ', "_"), &case.sql);
        if let Some(from) = case.rehash_from {
            rehash_from(&db, from);
        }
        let name = case.name;
        let db_arg = db.to_str().unwrap();

        let (seq, problem_is) = case.caught;
        let report = verify(&db, &checkpoints).unwrap();
        let Some((at, problem)) = report.failure else {
            panic!("{name}: audit::verify with checkpoints passed it");
        };
        assert!(
            at == seq && problem_is(&problem),
            "{name}: {at}: {problem:?}"
        );
        let alone = verify(&db, &[]).unwrap().failure.map(|f| f.0);
        let expected = (!case.needs_checkpoints).then_some(seq);
        assert_eq!(alone, expected, "{name}: audit::verify without checkpoints");

        let (code, out) = anomalyctl(&[
            "verify",
            "--db",
            db_arg,
            "--checkpoints",
            file.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{name}: anomalyctl: {out}");
        assert!(
            out.starts_with(&format!("chain BROKEN at seq {seq}: {problem}")),
            "{name}: anomalyctl: {out}"
        );

        let run = std::process::Command::new("python3")
            .arg(&script)
            .arg(&db)
            .output()
            .expect("python3 runs the reference verifier (scripts/setup installs it)");
        let said = String::from_utf8_lossy(&run.stderr).into_owned()
            + &String::from_utf8_lossy(&run.stdout);
        match case.reference {
            Some(1) => {
                assert!(
                    !run.status.success() && said.starts_with("no genesis record"),
                    "{name}: reference: {said}"
                )
            }
            Some(seq) => assert!(
                !run.status.success() && said.starts_with(&format!("seq {seq}:")),
                "{name}: reference: {said}"
            ),
            None => assert!(
                run.status.success() && said.starts_with("chain intact"),
                "{name}: reference: {said}"
            ),
        }
    }

    // A lowered version is refused by the writer too: it would adopt a forged baseline.
    let lowered = reference.with_file_name("schema_version_lowered.sqlite");
    let err = AuditWriter::open(&lowered, Synchronous::Normal, MODEL)
        .err()
        .expect("a lowered schema version is refused");
    assert!(err.to_string().contains("its version was lowered"), "{err}");

    // And the untouched chain passes all three.
    let (code, out) = anomalyctl(&[
        "verify",
        "--db",
        reference.to_str().unwrap(),
        "--checkpoints",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let run = std::process::Command::new("python3")
        .arg(&script)
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(verify(&reference, &checkpoints).unwrap().ok());
}

/// The seq of the record through which baseline id `id` first joined.
fn first_join(db: &Path, id: u64) -> u64 {
    Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT first_seq FROM baseline WHERE id = ?1",
            [id as i64],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64
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
    let (db, checkpoints) = build_with(dir.path(), false);
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "ALTER TABLE records DROP COLUMN encoding; DROP TABLE baseline; DROP TABLE baseline_imports;
             PRAGMA user_version = 1;",
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
    // The baseline rebuilt from the v1 records is adopted through one import record (seq 51),
    // which the baseline table is then held to.
    let report = verify(&db, &checkpoints).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 52);
    let (kind, fields): (String, String) = conn
        .query_row("SELECT kind, fields FROM records WHERE seq = 51", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(kind, "import");
    assert!(
        fields.contains("\"adopted\":true") && fields.contains("\"baseline_rows\":7"),
        "{fields}"
    );
    conn.execute("UPDATE baseline SET count = count + 1 WHERE id = 0", [])
        .unwrap();
    let Some((_, Problem::Baseline(_))) = verify(&db, &checkpoints).unwrap().failure else {
        panic!("an adopted row changed afterwards is caught");
    };
    conn.execute("UPDATE baseline SET count = count - 1 WHERE id = 0", [])
        .unwrap();

    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    let err = AuditWriter::open(&db, Synchronous::Normal, MODEL)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("schema version 99 is newer"),
        "{err}"
    );
}

#[test]
fn an_observed_field_named_like_a_join_is_kept_aside_and_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.sqlite");
    let mut writer = AuditWriter::open(&db, Synchronous::Normal, MODEL).unwrap();
    // A custom signal's arguments are the sender's to choose, keys included.
    let mut fields = serde_json::Map::new();
    fields.insert("joined".into(), serde_json::json!(0));
    fields.insert("baseline_sha256".into(), serde_json::json!("00"));
    let forged = Judged {
        event: Event::observed(Source::Custom, "custom Probe.Ping arg0=x".into(), fields),
        score: Some(0.9),
        verdict: Verdict::Anomaly,
        neighbours: vec![],
        joined: None,
        periodic: None,
    };
    writer.append(&[forged], MODEL).unwrap();
    drop(writer);
    let report = verify(&db, &[]).unwrap();
    assert!(report.ok(), "{report:?}");
    let fields: String = Connection::open(&db)
        .unwrap()
        .query_row("SELECT fields FROM records WHERE seq = 2", [], |r| r.get(0))
        .unwrap();
    let fields: serde_json::Value = serde_json::from_str(&fields).unwrap();
    assert_eq!(fields.get("joined"), None, "{fields}");
    assert_eq!(fields["observed_reserved"]["joined"], 0, "{fields}");
}
