//! Offline verification: recompute every hash from a read-only connection (it works while the
//! daemon appends; WAL readers see a consistent snapshot) and report the first bad record, then
//! hold the chain against checkpoints kept outside the database.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::checkpoint::Checkpoint;
use super::{record_hash, AuditError, RecordFields, ENCODING_VERSION, GENESIS_PREV_HASH};

/// What is wrong at the first bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The stored hash is not the hash of the record's fields and the previous hash.
    HashMismatch,
    /// `prev_hash` is not the previous record's hash.
    BrokenLink,
    /// A record is missing: the seq after `expected - 1` is not `expected`.
    SeqGap { expected: u64 },
    /// The timestamp is earlier than the previous record's.
    TimeReversed { previous_usec: u64 },
    /// The record says it was hashed with an encoding this build does not know.
    UnknownEncoding(i64),
    /// Seq 1 is not a genesis record with the all-zero previous hash.
    BadGenesis,
    /// There is no genesis record: the chain holds no records at all (`first_seq` is `None`), or
    /// its first record is `first_seq`, not 1. A chain always starts with its genesis record, so
    /// records were removed.
    MissingGenesis { first_seq: Option<u64> },
    /// A stored hash is not 32 bytes.
    Malformed(String),
    /// The chain ends before a checkpoint: its tail was cut off.
    Truncated { last_seq: u64 },
    /// The record at a checkpoint's seq has another hash: the chain was rewritten at or before it.
    CheckpointMismatch { expected: [u8; 32] },
    /// The baseline table (or an import's rows) is not what the chain's joins and imports made
    /// it: a text was made normal, or forgotten, outside the chain.
    Baseline(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::HashMismatch => write!(f, "hash mismatch: the record was changed"),
            Problem::BrokenLink => write!(f, "broken link: prev_hash is not the previous record's hash"),
            Problem::SeqGap { expected } => write!(f, "gap in seq: record {expected} is missing"),
            Problem::TimeReversed { previous_usec } => {
                write!(f, "reordered timestamps: earlier than the previous record ({previous_usec})")
            }
            Problem::UnknownEncoding(v) => write!(f, "unknown encoding version {v}"),
            Problem::BadGenesis => write!(f, "seq 1 is not a genesis record linked to 32 zero bytes"),
            Problem::MissingGenesis { first_seq: None } => write!(
                f,
                "no genesis record: the chain holds no records, and a chain starts with its genesis record at seq 1"
            ),
            Problem::MissingGenesis {
                first_seq: Some(first),
            } => write!(
                f,
                "no genesis record: the chain starts at seq {first}, not with its genesis record at seq 1"
            ),
            Problem::Malformed(what) => write!(f, "malformed record: {what}"),
            Problem::Truncated { last_seq } => write!(
                f,
                "truncated: the chain ends at seq {last_seq}, before this checkpoint"
            ),
            Problem::CheckpointMismatch { expected } => write!(
                f,
                "checkpoint mismatch: expected hash {}, so the chain was rewritten at or before this record",
                hex::encode(expected)
            ),
            Problem::Baseline(what) => write!(f, "baseline table tampered with: {what}"),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records whose hashes were checked (up to the first bad one).
    pub records: u64,
    /// The last good record.
    pub head: Option<Checkpoint>,
    /// The first bad record and what is wrong with it; `None` when the chain is intact.
    pub failure: Option<(u64, Problem)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Opens `path` read-only and verifies it; `expected` are heads the chain must contain (every
/// one of them: two different hashes expected for one seq cannot both match). A chain with no
/// records, or whose first record is not seq 1, has lost its genesis record and is broken.
pub fn verify(path: &Path, expected: &[Checkpoint]) -> Result<Report, AuditError> {
    let display = path.display().to_string();
    let sqlite = |source| AuditError::Sqlite {
        path: display.clone(),
        source,
    };
    let (conn, version) = super::open_reader(path)?;
    let encoding_column = if version >= 2 { "encoding" } else { "1" };
    // One read transaction: a consistent snapshot however fast the daemon appends.
    conn.execute_batch("BEGIN").map_err(sqlite)?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT seq, ts_usec, kind, source, text, fields, score, verdict, neighbours, model,
                    {encoding_column}, prev_hash, hash
             FROM records ORDER BY seq"
        ))
        .map_err(sqlite)?;
    let mut rows = stmt.query([]).map_err(sqlite)?;

    let mut wanted: HashMap<u64, Vec<[u8; 32]>> = HashMap::new();
    for c in expected {
        let hashes = wanted.entry(c.seq).or_default();
        if !hashes.contains(&c.hash) {
            hashes.push(c.hash);
        }
    }
    let mut report = Report {
        records: 0,
        head: None,
        failure: None,
    };
    let mut ledger = BaselineLedger::default();
    let mut prev_hash = GENESIS_PREV_HASH;
    let mut prev_ts = 0u64;
    let mut expected_seq = 1u64;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let seq = row.get::<_, i64>(0).map_err(sqlite)? as u64;
        let fail = |problem| Some((seq, problem));
        if expected_seq == 1 && seq != 1 {
            // Deleting from the front leaves a chain that links on its own from its first row.
            report.failure = Some((
                1,
                Problem::MissingGenesis {
                    first_seq: Some(seq),
                },
            ));
            break;
        }
        if seq != expected_seq {
            report.failure = Some((
                seq,
                Problem::SeqGap {
                    expected: expected_seq,
                },
            ));
            break;
        }
        let encoding: i64 = row.get(10).map_err(sqlite)?;
        if encoding != i64::from(ENCODING_VERSION) {
            report.failure = fail(Problem::UnknownEncoding(encoding));
            break;
        }
        let text = |i: usize| -> Result<&str, AuditError> {
            row.get_ref(i)
                .and_then(|v| v.as_str().map_err(Into::into))
                .map_err(sqlite)
        };
        let record = RecordFields {
            seq,
            ts_usec: row.get::<_, i64>(1).map_err(sqlite)? as u64,
            kind: text(2)?,
            source: text(3)?,
            text: text(4)?,
            fields: text(5)?,
            score: row.get(6).map_err(sqlite)?,
            verdict: text(7)?,
            neighbours: text(8)?,
            model: text(9)?,
        };
        let stored_prev = row
            .get_ref(11)
            .and_then(|v| v.as_blob().map_err(Into::into))
            .map_err(sqlite)?;
        let stored_hash = row
            .get_ref(12)
            .and_then(|v| v.as_blob().map_err(Into::into))
            .map_err(sqlite)?;
        let Ok(stored_hash) = <[u8; 32]>::try_from(stored_hash) else {
            report.failure = fail(Problem::Malformed(format!(
                "hash is {} bytes",
                stored_hash.len()
            )));
            break;
        };
        if seq == 1 && (record.kind != "genesis" || stored_prev != GENESIS_PREV_HASH) {
            report.failure = fail(Problem::BadGenesis);
            break;
        }
        if stored_prev != prev_hash {
            report.failure = fail(Problem::BrokenLink);
            break;
        }
        if record_hash(&prev_hash, &record) != stored_hash {
            report.failure = fail(Problem::HashMismatch);
            break;
        }
        if record.ts_usec < prev_ts {
            report.failure = fail(Problem::TimeReversed {
                previous_usec: prev_ts,
            });
            break;
        }
        if let Some(other) = wanted
            .get(&seq)
            .and_then(|hashes| hashes.iter().find(|h| **h != stored_hash))
        {
            report.failure = fail(Problem::CheckpointMismatch { expected: *other });
            break;
        }
        if version >= 3 {
            if let Err(problem) = ledger.note(&conn, &record, version).map_err(sqlite)? {
                report.failure = fail(problem);
                break;
            }
        }
        prev_hash = stored_hash;
        prev_ts = record.ts_usec;
        report.records += 1;
        report.head = Some(Checkpoint {
            seq,
            hash: stored_hash,
        });
        expected_seq += 1;
    }
    if report.failure.is_none() && report.head.is_none() {
        report.failure = Some((1, Problem::MissingGenesis { first_seq: None }));
    }
    if report.failure.is_none() {
        let last_seq = report.head.map_or(0, |h| h.seq);
        if let Some(beyond) = expected
            .iter()
            .filter(|c| c.seq > last_seq)
            .map(|c| c.seq)
            .min()
        {
            report.failure = Some((beyond, Problem::Truncated { last_seq }));
        }
    }
    if report.failure.is_none() && version >= 4 {
        report.failure = ledger.compare(&conn).map_err(sqlite)?;
    }
    Ok(report)
}

/// A baseline text as the chain says it must stand.
struct Admitted {
    text: String,
    count: u64,
    first_seq: u64,
}

/// The baseline table rebuilt from the chain: each record whose fields name a join
/// (`joined`), each import record's rows (`baseline_imports`, held to the record's
/// `baseline_sha256`).
#[derive(Default)]
struct BaselineLedger {
    admitted: HashMap<u64, Admitted>,
    /// A record so far named a join or an import (only schema 4 writes them).
    recorded: bool,
}

/// At most 80 characters of `text`, for a message.
fn shown(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

impl BaselineLedger {
    fn admit(&mut self, id: u64, text: &str, count: u64, first_seq: u64) -> Result<(), Problem> {
        match self.admitted.get_mut(&id) {
            None => {
                self.admitted.insert(
                    id,
                    Admitted {
                        text: text.to_owned(),
                        count,
                        first_seq,
                    },
                );
                Ok(())
            }
            Some(known) if known.text == text => {
                known.count += count;
                Ok(())
            }
            Some(known) => Err(Problem::Baseline(format!(
                "baseline id {id} is {} here but {} since seq {}",
                shown(text),
                shown(&known.text),
                known.first_seq
            ))),
        }
    }

    /// Takes in what `record` (already verified) adds to the baseline, in a file of schema
    /// `version`.
    fn note(
        &mut self,
        conn: &rusqlite::Connection,
        record: &RecordFields<'_>,
        version: i64,
    ) -> rusqlite::Result<Result<(), Problem>> {
        let joins =
            matches!(record.kind, "event" | "benign") && record.fields.contains("\"joined\"");
        let imports = record.kind == "import" && record.fields.contains("\"baseline_sha256\"");
        if !joins && !imports {
            return Ok(Ok(()));
        }
        let Ok(fields) = serde_json::from_str::<serde_json::Value>(record.fields) else {
            return Ok(Ok(()));
        };
        let joined = fields["joined"].as_u64().filter(|_| joins);
        let digest = fields["baseline_sha256"].as_str().filter(|_| imports);
        if joined.is_none() && digest.is_none() {
            return Ok(Ok(()));
        }
        if version < 4 {
            return Ok(Err(Problem::Baseline(format!(
                "this record names a baseline join or import, which only schema 4 writes, but the \
                 file says schema {version}: its version was lowered"
            ))));
        }
        if fields["adopted"] == true && self.recorded {
            return Ok(Err(Problem::Baseline(
                "a baseline adopted as if from an older schema, after records had named their \
                 joins: the version was lowered to slip a baseline in"
                    .into(),
            )));
        }
        self.recorded = true;
        if let Some(id) = joined {
            if let Err(p) = self.admit(id, record.text, 1, record.seq) {
                return Ok(Err(p));
            }
        }
        let Some(digest) = digest else {
            return Ok(Ok(()));
        };
        let rows = conn
            .prepare_cached(
                "SELECT id, text, count, first_seq FROM baseline_imports WHERE seq = ?1 ORDER BY id",
            )?
            .query_map([record.seq as i64], |r| {
                Ok(super::ImportedRow {
                    id: r.get::<_, i64>(0)? as u64,
                    text: r.get(1)?,
                    count: r.get::<_, i64>(2)? as u64,
                    first_seq: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let rows_named = fields["baseline_rows"].as_u64();
        if hex::encode(super::import_digest(&rows)) != digest
            || rows_named != Some(rows.len() as u64)
        {
            return Ok(Err(Problem::Baseline(format!(
                "the {} rows kept for this import do not match the {} rows and digest its record holds",
                rows.len(),
                rows_named.map_or("unknown".into(), |n| n.to_string())
            ))));
        }
        for row in &rows {
            if let Err(p) = self.admit(row.id, &row.text, row.count, row.first_seq) {
                return Ok(Err(p));
            }
        }
        Ok(Ok(()))
    }

    /// The first row of the baseline table that differs from the chain's, with the seq it
    /// claims (or the chain gives) as the failing record.
    fn compare(mut self, conn: &rusqlite::Connection) -> rusqlite::Result<Option<(u64, Problem)>> {
        let mut stmt =
            conn.prepare("SELECT id, text, count, first_seq FROM baseline ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id = row.get::<_, i64>(0)? as u64;
            let text: String = row.get(1)?;
            let count = row.get::<_, i64>(2)? as u64;
            let first_seq = row.get::<_, i64>(3)? as u64;
            let Some(admitted) = self.admitted.remove(&id) else {
                return Ok(Some((
                    first_seq,
                    Problem::Baseline(format!(
                        "id {id} ({}) was admitted by no record of the chain",
                        shown(&text)
                    )),
                )));
            };
            let differs = if admitted.text != text {
                Some(format!("the chain admitted {}", shown(&admitted.text)))
            } else if admitted.count != count {
                Some(format!("the chain records {} joins", admitted.count))
            } else if admitted.first_seq != first_seq {
                Some(format!(
                    "the chain first admitted it at seq {}",
                    admitted.first_seq
                ))
            } else {
                None
            };
            if let Some(chain_says) = differs {
                return Ok(Some((
                    admitted.first_seq,
                    Problem::Baseline(format!(
                        "id {id} is {} with count {count} from seq {first_seq}, but {chain_says}",
                        shown(&text)
                    )),
                )));
            }
        }
        Ok(self
            .admitted
            .into_iter()
            .min_by_key(|(id, _)| *id)
            .map(|(id, admitted)| {
                (
                    admitted.first_seq,
                    Problem::Baseline(format!(
                        "id {id} ({}) was admitted at seq {} but is missing from the table",
                        shown(&admitted.text),
                        admitted.first_seq
                    )),
                )
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditWriter;
    use crate::config::Synchronous;
    use crate::event::{Event, Judged, RecordKind};

    const MODEL: &str = "test-model";

    /// A chain of `records` records: the genesis, then `start` records.
    fn chain(dir: &Path, records: usize) -> std::path::PathBuf {
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
        drop(writer);
        db
    }

    fn edit(db: &Path, sql: &str) {
        rusqlite::Connection::open(db)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    #[test]
    fn a_chain_without_records_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let db = chain(dir.path(), 1);
        assert!(verify(&db, &[]).unwrap().ok());
        edit(&db, "DELETE FROM records");
        let report = verify(&db, &[]).unwrap();
        assert!(!report.ok());
        assert_eq!(report.records, 0);
        assert_eq!(report.head, None);
        let (seq, problem) = report.failure.unwrap();
        assert_eq!(
            (seq, &problem),
            (1, &Problem::MissingGenesis { first_seq: None })
        );
        assert!(
            problem.to_string().contains("no genesis record"),
            "{problem}"
        );
    }

    #[test]
    fn a_chain_cut_at_the_front_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let db = chain(dir.path(), 3);
        edit(&db, "DELETE FROM records WHERE seq = 1");
        let failure = verify(&db, &[]).unwrap().failure;
        assert_eq!(
            failure,
            Some((1, Problem::MissingGenesis { first_seq: Some(2) }))
        );
        assert!(failure.unwrap().1.to_string().contains("starts at seq 2"));
    }

    #[test]
    fn every_expected_hash_for_a_seq_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let db = chain(dir.path(), 2);
        let head = verify(&db, &[]).unwrap().head.unwrap();
        let forged = Checkpoint {
            seq: head.seq,
            hash: [0; 32],
        };
        for expected in [[head, forged], [forged, head]] {
            assert_eq!(
                verify(&db, &expected).unwrap().failure,
                Some((head.seq, Problem::CheckpointMismatch { expected: [0; 32] })),
                "{expected:?}"
            );
        }
        assert!(verify(&db, &[head, head]).unwrap().ok());
    }
}
