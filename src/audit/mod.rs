//! The audit log: every event and verdict as one record in SQLite, each record's hash covering the
//! previous record's hash, so editing, removing or reordering records breaks the chain.
//!
//! Only the writer thread holds [`AuditWriter`]; readers open their own read-only connections.
//! The record encoding that is hashed is specified in ARCHITECTURE.md ("Audit chain").

mod chain;
pub mod checkpoint;
pub mod query;
pub mod verify;

pub use crate::journal::CHECKPOINT_MESSAGE_ID;
pub use chain::{record_hash, RecordFields, ENCODING_VERSION, GENESIS_PREV_HASH};
pub use checkpoint::{Checkpoint, CheckpointPolicy, Checkpointer};
pub use verify::{verify, Problem, Report};

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};

use crate::config::Synchronous;
use crate::event::{now_usec, Judged, RecordKind, Source, Verdict};

/// The schema version this build writes; older files are migrated at open.
pub const SCHEMA_VERSION: i64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("audit database {path}: schema version {found} is newer than this build understands ({SCHEMA_VERSION})")]
    NewerSchema { path: String, found: i64 },
    #[error("audit database {path}: it says schema version 3 or older, but record {seq} names a baseline join or import, which only version 4 writes: its version was lowered (tampering?); check it with anomalyctl verify")]
    LoweredSchema { path: String, seq: u64 },
    #[error("audit database {path} does not exist")]
    Missing { path: String },
    #[error("audit database {path}: cannot create its directory: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `[[id, distance], …]`, written directly: it is built for every record.
fn neighbours_json(neighbours: &[(u64, f32)]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(2 + neighbours.len() * 16);
    out.push('[');
    for (i, &(id, d)) in neighbours.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // serde_json's own float formatting, so the text matches what it would write.
        let _ = write!(out, "[{id},{}]", serde_json::Value::from(d));
    }
    out.push(']');
    out
}

/// The file's schema version, refusing one newer than this build understands. Reads only, so a
/// refused file is left exactly as it was.
fn schema_version(conn: &Connection, display: &str) -> Result<i64, AuditError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|source| AuditError::Sqlite {
            path: display.to_owned(),
            source,
        })?;
    if version > SCHEMA_VERSION {
        return Err(AuditError::NewerSchema {
            path: display.to_owned(),
            found: version,
        });
    }
    Ok(version)
}

/// A read-only connection to an existing audit database this build understands, and its schema
/// version: what verifiers and queries read through, never blocking the writer (WAL).
fn open_reader(path: &Path) -> Result<(Connection, i64), AuditError> {
    let display = path.display().to_string();
    if !path.exists() {
        return Err(AuditError::Missing { path: display });
    }
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| AuditError::Sqlite {
        path: display.clone(),
        source,
    })?;
    let version = schema_version(&conn, &display)?;
    Ok((conn, version))
}

/// The last committed record's `(seq, hash)`, read through a read-only connection; `None` for an
/// empty database.
pub fn read_head(path: &Path) -> Result<Option<Checkpoint>, AuditError> {
    let display = path.display().to_string();
    let sqlite = |source| AuditError::Sqlite {
        path: display.clone(),
        source,
    };
    let (conn, _) = open_reader(path)?;
    let head: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sqlite)?;
    Ok(head.map(|(seq, hash)| Checkpoint {
        seq: seq as u64,
        hash: hash.try_into().unwrap_or([0u8; 32]),
    }))
}

/// The machine the chain was started on: the genesis record's `machine_id` (`None` when the
/// chain has no genesis record or it names none). A central journal holds many hosts' entries;
/// this picks the chain's own (their `_MACHINE_ID`).
pub fn read_machine_id(path: &Path) -> Result<Option<String>, AuditError> {
    let display = path.display().to_string();
    let (conn, _) = open_reader(path)?;
    let fields: Option<String> = conn
        .query_row(
            "SELECT fields FROM records WHERE seq = 1 AND kind = 'genesis'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|source| AuditError::Sqlite {
            path: display,
            source,
        })?;
    Ok(fields
        .and_then(|f| serde_json::from_str::<Value>(&f).ok())
        .and_then(|f| f["machine_id"].as_str().map(str::to_owned))
        .filter(|id| !id.is_empty()))
}

/// One committed record, as the API reports it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub seq: u64,
    pub ts_usec: u64,
    pub source: Source,
    pub text: String,
    pub score: Option<f32>,
    pub verdict: Verdict,
    /// For an anomaly: the seq of the record that opened its incident (its own when it opened
    /// one) and its repeat number (0 for the opening one), from the record's fields.
    pub incident: Option<(u64, u64)>,
    /// What an anomaly's score was judged against (`fields.threshold`), when recorded.
    pub threshold: Option<f64>,
    /// The record's chain hash.
    pub hash: [u8; 32],
}

pub struct AuditWriter {
    conn: Connection,
    path: String,
    head_seq: u64,
    head_hash: [u8; 32],
    /// The last record's timestamp: record timestamps never go backwards, so verification can
    /// tell a reordered chain from the concurrent sources' slightly unordered observations.
    head_ts: u64,
}

const SCHEMA_V1: &str = "
CREATE TABLE records (
    seq        INTEGER PRIMARY KEY,
    ts_usec    INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    fields     TEXT    NOT NULL,
    score      REAL,
    verdict    TEXT    NOT NULL,
    neighbours TEXT    NOT NULL,
    model      TEXT    NOT NULL,
    prev_hash  BLOB    NOT NULL,
    hash       BLOB    NOT NULL
);
CREATE INDEX records_by_time    ON records(ts_usec);
CREATE INDEX records_by_verdict ON records(verdict, seq);
CREATE INDEX records_by_source  ON records(source, seq);
";

/// Version 2: each record names the encoding its hash was computed with.
const MIGRATE_V1_TO_V2: &str = "
ALTER TABLE records ADD COLUMN encoding INTEGER NOT NULL DEFAULT 1;
";

/// Version 3: the baseline's distinct texts (ids as the detector's index uses them) with their
/// counts, updated in the same transaction as the records that join it. An older file's baseline
/// is rebuilt from its normal and warm-up events.
const MIGRATE_V2_TO_V3: &str = "
CREATE TABLE baseline (
    id        INTEGER PRIMARY KEY,
    text      TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    first_seq INTEGER NOT NULL
);
INSERT INTO baseline (id, text, count, first_seq)
    SELECT ROW_NUMBER() OVER (ORDER BY MIN(seq)) - 1, text, COUNT(*), MIN(seq)
    FROM records WHERE kind = 'event' AND verdict IN ('normal', 'warmup') GROUP BY text;
";

/// Version 4: the rows each import added to the baseline, bound to the chain by the digest its
/// import record holds (`baseline_sha256`, [`import_digest`]), so that verification can rebuild
/// the whole baseline table from the chain. A file migrated from an older version adopts its
/// baseline as it stood through one such record.
const MIGRATE_V3_TO_V4: &str = "
CREATE TABLE baseline_imports (
    seq       INTEGER NOT NULL,
    id        INTEGER NOT NULL,
    text      TEXT    NOT NULL,
    count     INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    PRIMARY KEY (seq, id)
);
";

const INSERT_IMPORTED: &str =
    "INSERT INTO baseline_imports (seq, id, text, count, first_seq) VALUES (?1, ?2, ?3, ?4, ?5)";

/// One row an import adds to the baseline: `first_seq` is the record through which the text first
/// joined (the import record itself, or, for a migrated file's adopted baseline, the original one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRow {
    pub id: u64,
    pub text: String,
    pub count: u64,
    pub first_seq: u64,
}

/// The digest an import record holds over the rows it added, in id order: SHA-256 over each row
/// as id, count and first_seq (u64 big-endian), then the text's length (u32 big-endian) and its
/// UTF-8 bytes.
pub fn import_digest<'a>(rows: impl IntoIterator<Item = &'a ImportedRow>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for row in rows {
        h.update(row.id.to_be_bytes());
        h.update(row.count.to_be_bytes());
        h.update(row.first_seq.to_be_bytes());
        h.update((row.text.len() as u32).to_be_bytes());
        h.update(row.text.as_bytes());
    }
    h.finalize().into()
}

/// The fields through which records name what they added to the baseline; set only by the
/// writer (verification trusts them).
const RESERVED_FIELDS: &[&str] = &[
    "joined",
    "baseline_rows",
    "baseline_sha256",
    "adopted",
    "periodic",
];

const UPSERT_BASELINE: &str =
    "INSERT INTO baseline (id, text, count, first_seq) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT(id) DO UPDATE SET count = count + excluded.count";

/// The baseline's distinct texts in id order, read through a read-only connection.
pub fn read_baseline(path: &Path) -> Result<Vec<crate::detect::BaselineRow>, AuditError> {
    let display = path.display().to_string();
    let sqlite = |source| AuditError::Sqlite {
        path: display.clone(),
        source,
    };
    let (conn, version) = open_reader(path)?;
    if version < 3 {
        // The writer migrates at open; a reader of an older file sees no baseline table yet.
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare("SELECT id, text, count FROM baseline ORDER BY id")
        .map_err(sqlite)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(crate::detect::BaselineRow {
                id: r.get::<_, i64>(0)? as u64,
                text: r.get(1)?,
                count: r.get::<_, i64>(2)? as u64,
            })
        })
        .map_err(sqlite)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite)?;
    Ok(rows)
}

/// The scores of the last `per_source` scored events of each source (normal and anomaly
/// verdicts), on their source's scale as calibration observed them, oldest first, so a restarted daemon judges each source
/// against the threshold it had calibrated, not the floor.
pub fn read_recent_scores(
    path: &Path,
    per_source: usize,
) -> Result<Vec<(Source, f32)>, AuditError> {
    let display = path.display().to_string();
    let sqlite = |source| AuditError::Sqlite {
        path: display.clone(),
        source,
    };
    let (conn, _) = open_reader(path)?;
    let mut out = Vec::new();
    for source in crate::metrics::THRESHOLD_SOURCES {
        let mut stmt = conn
            .prepare_cached(
                // Scaled as calibration observed them: by the source's threshold over the one
                // calibration scaled by (`calibration_threshold` when the event was judged
                // against another, as the floor of the superuser rule; else the one judged
                // against, which differs under a variable-slot allowance or a program's).
                "SELECT score * COALESCE(json_extract(fields, '$.source_threshold')
                                         / COALESCE(json_extract(fields, '$.calibration_threshold'),
                                                    json_extract(fields, '$.threshold')), 1.0)
                   FROM records INDEXED BY records_by_source
                  WHERE source = ?1 AND kind = 'event' AND verdict IN ('normal', 'anomaly')
                    AND score IS NOT NULL
                  ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(sqlite)?;
        let mut scores: Vec<f64> = stmt
            .query_map(params![source.as_str(), per_source as i64], |r| r.get(0))
            .map_err(sqlite)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite)?;
        scores.reverse();
        out.extend(scores.into_iter().map(|s| (source, s as f32)));
    }
    Ok(out)
}

impl AuditWriter {
    /// Opens (creating and migrating as needed) the database and finds the chain's head. A new
    /// database starts with a genesis record that binds it to this host and its creation time.
    pub fn open(
        path: &Path,
        synchronous: Synchronous,
        model: &str,
    ) -> Result<AuditWriter, AuditError> {
        let display = path.display().to_string();
        let sqlite = |source| AuditError::Sqlite {
            path: display.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| AuditError::Directory {
                path: display.clone(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        // Before anything writes (even switching to WAL rewrites the header).
        let version = schema_version(&conn, &display)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", synchronous.pragma_value())
            .map_err(sqlite)?;
        // Each step runs in its own transaction, so a crash leaves the file at one version.
        if version < 1 {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
            ))
            .map_err(sqlite)?;
        }
        if version < 2 {
            conn.execute_batch(&format!(
                "BEGIN; {MIGRATE_V1_TO_V2} PRAGMA user_version = 2; COMMIT;"
            ))
            .map_err(sqlite)?;
        }
        if version < 3 {
            conn.execute_batch(&format!(
                "BEGIN; {MIGRATE_V2_TO_V3} PRAGMA user_version = 3; COMMIT;"
            ))
            .map_err(sqlite)?;
        }
        let head: Option<(u64, Vec<u8>, i64)> = conn
            .query_row(
                "SELECT seq, hash, ts_usec FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sqlite)?;
        let (head_seq, head_hash, head_ts) = match head {
            Some((seq, hash, ts)) => (seq, hash.try_into().unwrap_or([0u8; 32]), ts as u64),
            None => (0, GENESIS_PREV_HASH, 0),
        };
        let mut writer = AuditWriter {
            conn,
            path: display,
            head_seq,
            head_hash,
            head_ts,
        };
        if version < 4 {
            writer.migrate_to_v4(model)?;
        }
        if head_seq == 0 {
            let machine_id = std::fs::read_to_string("/etc/machine-id")
                .unwrap_or_default()
                .trim()
                .to_owned();
            let mut fields = Map::new();
            fields.insert("machine_id".into(), json!(machine_id));
            fields.insert("created_usec".into(), json!(now_usec()));
            let genesis = crate::event::Event::daemon(
                RecordKind::Genesis,
                format!("anomalyd audit chain genesis machine_id={machine_id}"),
                fields,
            );
            writer.append(&[Judged::unscored(genesis)], model)?;
        }
        Ok(writer)
    }

    pub fn head(&self) -> (u64, [u8; 32]) {
        (self.head_seq, self.head_hash)
    }

    /// Version 4. A file that has records adopts its baseline as it stands through one import
    /// record, since its records named no joins, in the same transaction as the new table, so no
    /// crash can leave a version-4 file whose table no record vouches for. A file that says it is
    /// older but holds records only version 4 writes had its version lowered, which would have
    /// this adopt a forged baseline: it is refused.
    fn migrate_to_v4(&mut self, model: &str) -> Result<(), AuditError> {
        let migration = format!("{MIGRATE_V3_TO_V4} PRAGMA user_version = 4;");
        let sqlite = |source| AuditError::Sqlite {
            path: self.path.clone(),
            source,
        };
        if self.head_seq == 0 {
            return self
                .conn
                .execute_batch(&format!("BEGIN; {migration} COMMIT;"))
                .map_err(sqlite);
        }
        let lowered: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM records
                  WHERE (kind IN ('event', 'benign') AND json_extract(fields, '$.joined') IS NOT NULL)
                     OR (kind = 'import' AND json_extract(fields, '$.baseline_sha256') IS NOT NULL)
                  ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite)?;
        if let Some(seq) = lowered {
            return Err(AuditError::LoweredSchema {
                path: self.path.clone(),
                seq: seq as u64,
            });
        }
        let rows = self
            .conn
            .prepare("SELECT id, text, count, first_seq FROM baseline ORDER BY id")
            .map_err(sqlite)?
            .query_map([], |r| {
                Ok(ImportedRow {
                    id: r.get::<_, i64>(0)? as u64,
                    text: r.get(1)?,
                    count: r.get::<_, i64>(2)? as u64,
                    first_seq: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(sqlite)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite)?;
        if rows.is_empty() {
            return self
                .conn
                .execute_batch(&format!("BEGIN; {migration} COMMIT;"))
                .map_err(sqlite);
        }
        let mut fields = Map::new();
        fields.insert("adopted".into(), json!(true));
        let record = crate::event::Event::daemon(
            RecordKind::Import,
            format!(
                "anomalyd baseline adopted at schema 4: {} texts recorded before joins were",
                rows.len()
            ),
            fields,
        );
        self.append_imported(&[Judged::unscored(record)], model, &rows, Some(&migration))?;
        Ok(())
    }

    /// Appends a batch in one transaction and returns what was committed. Nothing is visible to
    /// readers, and the head does not move, unless the whole batch commits.
    pub fn append(&mut self, batch: &[Judged], model: &str) -> Result<Vec<Committed>, AuditError> {
        self.append_with_baseline(batch, model, &[])
    }

    /// [`AuditWriter::append`], also adding `imported` (baseline ids, texts and counts) to the
    /// baseline table in the same transaction, attributed to the batch's last record (an import
    /// record).
    pub fn append_with_baseline(
        &mut self,
        batch: &[Judged],
        model: &str,
        imported: &[crate::detect::BaselineRow],
    ) -> Result<Vec<Committed>, AuditError> {
        let rows: Vec<ImportedRow> = imported
            .iter()
            .map(|row| ImportedRow {
                id: row.id,
                text: row.text.clone(),
                count: row.count,
                first_seq: 0,
            })
            .collect();
        self.append_imported(batch, model, &rows, None)
    }

    /// The batch, with `imported` added to the baseline through its last record, which holds
    /// their digest (`baseline_rows`, `baseline_sha256`); each row's first_seq is that record's
    /// seq. With `adopting` (the version-4 migration, run first in the same transaction), the
    /// rows are the table's own, first_seq and all, and only their digest is added.
    fn append_imported(
        &mut self,
        batch: &[Judged],
        model: &str,
        imported: &[ImportedRow],
        adopting: Option<&str>,
    ) -> Result<Vec<Committed>, AuditError> {
        let first_seq_is_record = adopting.is_none();
        let path = self.path.clone();
        let sqlite = |source| AuditError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sqlite)?;
        if let Some(migration) = adopting {
            tx.execute_batch(migration).map_err(sqlite)?;
        }
        let mut seq = self.head_seq;
        let mut prev = self.head_hash;
        let mut last_ts = self.head_ts;
        let mut committed = Vec::with_capacity(batch.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO records (seq, ts_usec, kind, source, text, fields, score, verdict,
                                          neighbours, model, prev_hash, hash, encoding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(sqlite)?;
            let mut join = tx.prepare_cached(UPSERT_BASELINE).map_err(sqlite)?;
            for judged in batch {
                seq += 1;
                // Sources observe concurrently, so an event can be a little older than the record
                // before it; the record keeps time order and the observation is kept in fields.
                let observed = judged.event.observed_usec;
                let ts_usec = observed.max(last_ts);
                last_ts = ts_usec;
                let last = std::ptr::eq(judged, batch.last().expect("in the batch"));
                let imports_here = last && !imported.is_empty();
                let rows: Vec<ImportedRow> = if imports_here {
                    imported
                        .iter()
                        .map(|row| ImportedRow {
                            first_seq: if first_seq_is_record {
                                seq
                            } else {
                                row.first_seq
                            },
                            ..row.clone()
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                // What verification rebuilds the baseline table from: each join and each
                // import is named in the hashed fields of the record that made it.
                let foreign = judged.event.kind == RecordKind::Event
                    && RESERVED_FIELDS
                        .iter()
                        .any(|k| judged.event.fields.contains_key(*k));
                let fields_json = if ts_usec == observed
                    && judged.joined.is_none()
                    && judged.periodic.is_none()
                    && !imports_here
                    && !foreign
                {
                    serde_json::to_string(&judged.event.fields).unwrap_or_else(|_| "{}".into())
                } else {
                    let mut fields = judged.event.fields.clone();
                    // Only this writer names joins and imports: the same keys observed on the
                    // bus (a custom signal's argument, a property) are kept aside.
                    let mut shadowed = Map::new();
                    for key in RESERVED_FIELDS.iter().filter(|_| foreign) {
                        if let Some(value) = fields.remove(*key) {
                            shadowed.insert((*key).to_owned(), value);
                        }
                    }
                    if !shadowed.is_empty() {
                        fields.insert("observed_reserved".into(), Value::Object(shadowed));
                    }
                    if ts_usec != observed {
                        fields.insert("observed_usec".into(), json!(observed));
                    }
                    if let Some(id) = judged.joined {
                        fields.insert("joined".into(), json!(id));
                    }
                    if let Some(periodic) = judged.periodic {
                        let mut why = Map::new();
                        why.insert("hours".into(), json!(periodic.hours));
                        if let Some(incident) = periodic.incident {
                            why.insert("incident".into(), json!(incident));
                        }
                        fields.insert("periodic".into(), Value::Object(why));
                    }
                    if imports_here {
                        fields.insert("baseline_rows".into(), json!(rows.len()));
                        fields.insert(
                            "baseline_sha256".into(),
                            json!(hex::encode(import_digest(&rows))),
                        );
                    }
                    Value::Object(fields).to_string()
                };
                let neighbours_json = neighbours_json(&judged.neighbours);
                let record = RecordFields {
                    seq,
                    ts_usec,
                    kind: judged.event.kind.as_str(),
                    source: judged.event.source.as_str(),
                    text: &judged.event.text,
                    fields: &fields_json,
                    score: judged.score.map(f64::from),
                    verdict: judged.verdict.as_str(),
                    neighbours: &neighbours_json,
                    model,
                };
                let hash = record_hash(&prev, &record);
                insert
                    .execute(params![
                        seq as i64,
                        record.ts_usec as i64,
                        record.kind,
                        record.source,
                        record.text,
                        record.fields,
                        record.score,
                        record.verdict,
                        record.neighbours,
                        record.model,
                        &prev[..],
                        &hash[..],
                        i64::from(ENCODING_VERSION),
                    ])
                    .map_err(sqlite)?;
                if let Some(id) = judged.joined {
                    join.execute(params![id as i64, record.text, 1i64, seq as i64])
                        .map_err(sqlite)?;
                }
                if imports_here {
                    let mut keep = tx.prepare_cached(INSERT_IMPORTED).map_err(sqlite)?;
                    for row in &rows {
                        let (id, count, first) =
                            (row.id as i64, row.count as i64, row.first_seq as i64);
                        keep.execute(params![seq as i64, id, row.text, count, first])
                            .map_err(sqlite)?;
                        // An adopted row is in the table already.
                        if first_seq_is_record {
                            join.execute(params![id, row.text, count, first])
                                .map_err(sqlite)?;
                        }
                    }
                }
                prev = hash;
                let field = |name: &str| judged.event.fields.get(name).and_then(Value::as_u64);
                committed.push(Committed {
                    seq,
                    ts_usec: record.ts_usec,
                    source: judged.event.source,
                    text: judged.event.text.clone(),
                    score: judged.score,
                    verdict: judged.verdict,
                    incident: field("incident").map(|first| (first, field("repeat").unwrap_or(0))),
                    threshold: judged.event.fields.get("threshold").and_then(Value::as_f64),
                    hash,
                });
            }
        }
        tx.commit().map_err(sqlite)?;
        self.head_seq = seq;
        self.head_hash = prev;
        self.head_ts = last_ts;
        Ok(committed)
    }

    /// The incidents still open at start-up: every anomaly, benign mark and periodic join of the
    /// last `quiet` (all of them when `quiet` is zero) replayed in chain order, each anomaly
    /// resuming the incident its record names.
    pub fn open_incidents(
        &self,
        quiet: std::time::Duration,
    ) -> Result<crate::incident::Incidents, AuditError> {
        let quiet_usec = quiet.as_micros() as u64;
        let since = if quiet_usec == 0 {
            0
        } else {
            crate::event::now_usec().saturating_sub(quiet_usec)
        };
        let sqlite = |source| AuditError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let mut incidents = crate::incident::Incidents::new(quiet_usec);
        let mut rows = self
            .conn
            .prepare(
                "SELECT seq, ts_usec, kind, text, json_extract(fields, '$.incident'),
                        json_extract(fields, '$.repeat'), verdict
                   FROM records
                  WHERE ts_usec >= ?1 AND (verdict = 'anomaly' OR kind = 'benign'
                        OR (kind = 'event' AND verdict = 'normal'
                            AND instr(fields, '\"periodic\"') > 0
                            AND json_extract(fields, '$.periodic') IS NOT NULL
                            AND json_extract(fields, '$.joined') IS NOT NULL))
                  ORDER BY seq",
            )
            .map_err(sqlite)?;
        let mut query = rows.query([since as i64]).map_err(sqlite)?;
        while let Some(row) = query.next().map_err(sqlite)? {
            let seq: i64 = row.get(0).map_err(sqlite)?;
            let ts: i64 = row.get(1).map_err(sqlite)?;
            let kind: String = row.get(2).map_err(sqlite)?;
            let text: String = row.get(3).map_err(sqlite)?;
            let verdict: String = row.get(6).map_err(sqlite)?;
            // A benign mark, or an event that joined as periodic, ends its text's incident.
            if kind == "benign" || verdict != "anomaly" {
                incidents.close(&text);
                continue;
            }
            let first: Option<i64> = row.get(4).map_err(sqlite)?;
            let repeat: Option<i64> = row.get(5).map_err(sqlite)?;
            incidents.resume(
                &text,
                first.unwrap_or(seq) as u64,
                repeat.unwrap_or(0) as u64,
                ts as u64,
            );
        }
        Ok(incidents)
    }

    /// A cheap round trip through SQLite, for the pipeline health check.
    pub fn ping(&self) -> Result<(), AuditError> {
        self.conn
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(|source| AuditError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }
}
