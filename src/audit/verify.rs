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
    /// A stored hash is not 32 bytes.
    Malformed(String),
    /// The chain ends before a checkpoint: its tail was cut off.
    Truncated { last_seq: u64 },
    /// The record at a checkpoint's seq has another hash: the chain was rewritten at or before it.
    CheckpointMismatch { expected: [u8; 32] },
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

/// Opens `path` read-only and verifies it; `expected` are heads the chain must contain.
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

    let wanted: HashMap<u64, [u8; 32]> = expected.iter().map(|c| (c.seq, c.hash)).collect();
    let mut report = Report {
        records: 0,
        head: None,
        failure: None,
    };
    let mut prev_hash = GENESIS_PREV_HASH;
    let mut prev_ts = 0u64;
    let mut expected_seq = 1u64;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let seq = row.get::<_, i64>(0).map_err(sqlite)? as u64;
        let fail = |problem| Some((seq, problem));
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
        if let Some(hash) = wanted.get(&seq) {
            if *hash != stored_hash {
                report.failure = fail(Problem::CheckpointMismatch { expected: *hash });
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
    Ok(report)
}
