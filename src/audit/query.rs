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
    let row = conn
        .query_row(
            "SELECT seq, ts_usec, kind, source, text, fields, score, verdict, neighbours
             FROM records WHERE seq = ?1",
            params![seq as i64],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<f64>>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                ))
            },
        )
        .optional()
        .map_err(sqlite(path))?;
    Ok(row.map(
        |(seq, ts, kind, source, text, fields, score, verdict, neighbours)| RecordView {
            seq: seq as u64,
            ts_usec: ts as u64,
            kind,
            source,
            text,
            fields: serde_json::from_str(&fields).unwrap_or_default(),
            score,
            verdict,
            neighbours: serde_json::from_str::<Vec<(u64, f64)>>(&neighbours).unwrap_or_default(),
        },
    ))
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
