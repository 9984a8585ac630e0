//! Read-only queries the API answers from the audit database (its own connection per call, so
//! the writer is never blocked: WAL).

use std::path::Path;

use rusqlite::{params, OptionalExtension};

use super::{open_reader, AuditError};

/// One record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    pub seq: u64,
    pub ts_usec: u64,
    pub kind: String,
    pub source: String,
    pub text: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub score: Option<f64>,
    pub verdict: String,
    /// (baseline id, distance), nearest first.
    pub neighbours: Vec<(u64, f64)>,
    /// The embedding model the record was judged with.
    pub model: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The columns [`record_of_row`] reads, in its order.
const RECORD_COLUMNS: &str =
    "seq, ts_usec, kind, source, text, fields, score, verdict, neighbours, model, prev_hash, hash";

fn record_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordView> {
    Ok(RecordView {
        seq: r.get::<_, i64>(0)? as u64,
        ts_usec: r.get::<_, i64>(1)? as u64,
        kind: r.get(2)?,
        source: r.get(3)?,
        text: r.get(4)?,
        fields: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
        score: r.get(6)?,
        verdict: r.get(7)?,
        neighbours: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default(),
        model: r.get(9)?,
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

/// Which records a listing returns. Empty options match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    /// Records observed at or after this time.
    pub since_usec: u64,
    /// Cursor: records after this seq (oldest first) …
    pub after_seq: u64,
    /// … or, newest first, records before this seq (0 = from the head).
    pub before_seq: u64,
    pub newest_first: bool,
    pub verdict: Option<String>,
    pub source: Option<String>,
    pub kind: Option<String>,
    /// A substring the text must contain.
    pub contains: Option<String>,
    /// Only the anomalies of this incident (the seq of the record that opened it).
    pub incident: Option<u64>,
}

/// Up to `limit` records matching `filter`, in seq order (newest first when asked), and the
/// cursor to continue from: the last returned seq when more match, else 0.
pub fn list_records(
    path: &Path,
    filter: &ListFilter,
    limit: usize,
) -> Result<(Vec<RecordView>, u64), AuditError> {
    let (conn, _) = open_reader(path)?;
    let order = if filter.newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM records
         WHERE seq > ?1 AND (?2 = 0 OR seq < ?2) AND ts_usec >= ?3
           AND (?4 IS NULL OR verdict = ?4) AND (?5 IS NULL OR source = ?5)
           AND (?6 IS NULL OR kind = ?6) AND (?7 IS NULL OR instr(text, ?7) > 0)
           AND (?9 IS NULL OR json_extract(fields, '$.incident') = ?9)
         ORDER BY seq {order} LIMIT ?8"
    );
    let mut statement = conn.prepare(&sql).map_err(sqlite(path))?;
    let rows = statement
        .query_map(
            params![
                filter.after_seq as i64,
                filter.before_seq as i64,
                filter.since_usec.min(i64::MAX as u64) as i64,
                filter.verdict,
                filter.source,
                filter.kind,
                filter.contains,
                // One more than asked, to know whether the listing goes on.
                (limit + 1) as i64,
                filter.incident.map(|i| i as i64),
            ],
            record_of_row,
        )
        .map_err(sqlite(path))?;
    let mut records = rows.collect::<Result<Vec<_>, _>>().map_err(sqlite(path))?;
    let more = records.len() > limit;
    records.truncate(limit);
    let cursor = if more {
        records.last().map_or(0, |r| r.seq)
    } else {
        0
    };
    Ok((records, cursor))
}

/// One incident: the anomalies of one text from the record that opened it until it closed.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentView {
    /// The seq of the record that opened it (and alerted).
    pub first_seq: u64,
    pub first_usec: u64,
    pub last_seq: u64,
    pub last_usec: u64,
    /// Anomalies in it, the opening one included.
    pub events: u64,
    pub source: String,
    pub text: String,
    /// The highest score among them.
    pub max_score: f64,
}

/// The incidents opened at or after `since_usec`, newest first, at most `limit`.
pub fn list_incidents(
    path: &Path,
    since_usec: u64,
    limit: usize,
) -> Result<Vec<IncidentView>, AuditError> {
    let (conn, _) = open_reader(path)?;
    let mut statement = conn
        .prepare(
            "SELECT json_extract(fields, '$.incident') AS incident, MAX(seq),
                    MIN(ts_usec), MAX(ts_usec), COUNT(*), MIN(source), MIN(text), MAX(score)
               FROM records
              WHERE verdict = 'anomaly' AND incident IS NOT NULL
                AND seq >= (SELECT COALESCE(MIN(seq), 9223372036854775807)
                              FROM records WHERE ts_usec >= ?1)
                AND incident >= (SELECT COALESCE(MIN(seq), 9223372036854775807)
                                   FROM records WHERE ts_usec >= ?1)
              GROUP BY incident ORDER BY incident DESC LIMIT ?2",
        )
        .map_err(sqlite(path))?;
    let rows = statement
        .query_map(
            params![since_usec.min(i64::MAX as u64) as i64, limit as i64],
            |r| {
                Ok(IncidentView {
                    first_seq: r.get::<_, i64>(0)? as u64,
                    last_seq: r.get::<_, i64>(1)? as u64,
                    first_usec: r.get::<_, i64>(2)? as u64,
                    last_usec: r.get::<_, i64>(3)? as u64,
                    events: r.get::<_, i64>(4)? as u64,
                    source: r.get(5)?,
                    text: r.get(6)?,
                    max_score: r.get::<_, Option<f64>>(7)?.unwrap_or(f64::NAN),
                })
            },
        )
        .map_err(sqlite(path))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sqlite(path))
}

/// A baseline entry named by a verdict, as the baseline table holds it now.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedNeighbour {
    pub id: u64,
    pub distance: f64,
    /// The text, or "" when the baseline table has no such id.
    pub text: String,
    /// Events the text stands for now.
    pub count: u64,
    /// The record through which the text first joined the baseline (an event, a benign mark or
    /// an import), 0 when unknown.
    pub first_seq: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub record: RecordView,
    /// The alert threshold the verdict was given against, when the record holds it.
    pub threshold: Option<f64>,
    pub neighbours: Vec<ExplainedNeighbour>,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |source| AuditError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// The record `seq`, or `None`.
pub fn read_record(path: &Path, seq: u64) -> Result<Option<RecordView>, AuditError> {
    let (conn, _) = open_reader(path)?;
    conn.query_row(
        &format!("SELECT {RECORD_COLUMNS} FROM records WHERE seq = ?1"),
        params![seq as i64],
        record_of_row,
    )
    .optional()
    .map_err(sqlite(path))
}

/// The record `seq` with its neighbours' texts and counts, or `None`.
pub fn explain(path: &Path, seq: u64) -> Result<Option<Explanation>, AuditError> {
    let Some(record) = read_record(path, seq)? else {
        return Ok(None);
    };
    let (conn, version) = open_reader(path)?;
    let mut neighbours = Vec::with_capacity(record.neighbours.len());
    for &(id, distance) in &record.neighbours {
        let entry = if version >= 3 {
            conn.query_row(
                "SELECT text, count, first_seq FROM baseline WHERE id = ?1",
                params![id as i64],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(sqlite(path))?
        } else {
            None
        };
        let (text, count, first_seq) = entry.unwrap_or_default();
        neighbours.push(ExplainedNeighbour {
            id,
            distance,
            text,
            count: count as u64,
            first_seq: first_seq as u64,
        });
    }
    let threshold = record.fields.get("threshold").and_then(|v| v.as_f64());
    Ok(Some(Explanation {
        record,
        threshold,
        neighbours,
    }))
}

/// The latest `benign` record that marks `target_seq`, or `None`.
pub fn benign_mark_of(path: &Path, target_seq: u64) -> Result<Option<u64>, AuditError> {
    let (conn, _) = open_reader(path)?;
    conn.query_row(
        "SELECT seq FROM records WHERE kind = 'benign'
           AND json_extract(fields, '$.target_seq') = ?1 ORDER BY seq DESC LIMIT 1",
        params![target_seq as i64],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|s| s.map(|s| s as u64))
    .map_err(sqlite(path))
}
