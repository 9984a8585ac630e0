//! Offline scoring (`anomalyd score-file`): a log file scored line by line exactly as the daemon
//! would have scored it live — streamed in `embedder.batch_size` batches through the embedding
//! cache and [`Detector::judge`], so each line is judged against the baseline and the earlier
//! lines only, with the same rule for what joins the index — for evaluation and backfill.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::detect::{DetectError, Detector};
use crate::embed::{EmbedError, Embedder, EmbeddingCache};
use crate::event::{Event, Source, Verdict};
use crate::render::VolatileRules;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: line {line}: {reason}", path.display())]
    BadLine {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("{}: no line to import", path.display())]
    Empty { path: PathBuf },
}

impl OfflineError {
    /// Fixed by the operator (see [`DetectError::is_setup_error`]), not by running again.
    pub fn is_setup_error(&self) -> bool {
        match self {
            OfflineError::Embed(e) => e.is_setup_error(),
            OfflineError::Detect(e) => e.is_setup_error(),
            _ => false,
        }
    }
}

/// How a line of the input becomes a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The line is a log message: its text is the line with a leading time stamp and volatile
    /// values taken out ([`VolatileRules::scrub_message`]).
    Plain,
    /// The line is a canonical event text as the daemon's renderers write it (its volatile
    /// values are already out): taken as it is.
    Canonical,
    /// A Loghub BGL line: `LABEL EPOCH DATE NODE TIME NODE TYPE COMPONENT LEVEL CONTENT…`. The label
    /// and the per-line identifiers (times, node names) stay out; `TYPE COMPONENT LEVEL CONTENT`
    /// is the text, scrubbed as `plain` is.
    Bgl,
    /// `journalctl -o json` output: `journal IDENTIFIER MESSAGE`, the message scrubbed as for
    /// `plain` (IDENTIFIER is `SYSLOG_IDENTIFIER`, else `_COMM`, else `_SYSTEMD_UNIT`).
    JournalJson,
}

/// The text of one input line, or why it has none.
pub fn line_text(format: Format, line: &str, volatile: &VolatileRules) -> Result<String, String> {
    match format {
        Format::Plain => Ok(volatile.scrub_message(line)),
        Format::Canonical => Ok(line.to_owned()),
        Format::Bgl => {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 {
                return Err(format!(
                    "a BGL line has at least 9 fields (label, epoch, date, node, time, node, type, \
                     component, level); this one has {}",
                    fields.len()
                ));
            }
            Ok(volatile.scrub_message(&fields[6..].join(" ")))
        }
        Format::JournalJson => {
            let entry: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .map_err(|e| format!("not a journal JSON object: {e}"))?;
            let field = |name: &str| -> Option<String> {
                match entry.get(name)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    // journalctl writes non-UTF-8 or binary values as arrays of bytes.
                    serde_json::Value::Array(bytes) => Some(
                        String::from_utf8_lossy(
                            &bytes
                                .iter()
                                .filter_map(|b| b.as_u64().map(|b| b as u8))
                                .collect::<Vec<u8>>(),
                        )
                        .into_owned(),
                    ),
                    _ => None,
                }
            };
            let message = field("MESSAGE").ok_or("the entry has no MESSAGE field")?;
            let identifier = field("SYSLOG_IDENTIFIER")
                .or_else(|| field("_COMM"))
                .or_else(|| field("_SYSTEMD_UNIT"))
                .unwrap_or_else(|| "unknown".into());
            Ok(format!(
                "journal {identifier} {}",
                volatile.scrub_message(&message)
            ))
        }
    }
}

/// What `anomalyd baseline import` added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Seq of the import record.
    pub seq: u64,
    pub lines: u64,
    /// Lines imported (blank lines and, for `bgl`, lines labelled anomalous are left out).
    pub events: u64,
    pub skipped: u64,
    /// Distinct texts in the import, and how many of them were new to the baseline.
    pub distinct: u64,
    pub new_texts: u64,
    pub file_sha256: String,
}

/// `anomalyd baseline import`: adds the lines of `path` to the baseline as known-normal, in
/// the state directory the daemon uses (it must not be running: the state directory's lock is
/// taken), recorded in the chain as one `import` record (file digest, counts) and in the
/// baseline table, then snapshotted.
pub fn import_baseline(
    config: &Config,
    path: &Path,
    format: Format,
    embedder: &mut dyn Embedder,
    mut progress: impl FnMut(&'static str, usize, usize),
) -> Result<ImportSummary, OfflineError> {
    use sha2::{Digest, Sha256};
    std::fs::create_dir_all(&config.daemon.state_dir).map_err(|source| OfflineError::Io {
        path: config.daemon.state_dir.clone(),
        source,
    })?;
    let _lock = crate::lock::StateLock::acquire(&config.daemon.state_dir)?;
    let bytes = std::fs::read(path).map_err(|source| OfflineError::Io {
        path: path.to_owned(),
        source,
    })?;
    let file_sha256 = hex::encode(Sha256::digest(&bytes));
    let (texts, lines) = texts_of(path, &bytes, format, &config.render.volatile, |line| {
        !line.trim().is_empty() && (format != Format::Bgl || line.starts_with("- "))
    })?;
    if texts.is_empty() {
        return Err(OfflineError::Empty {
            path: path.to_owned(),
        });
    }

    let audit_path = config.audit_db_path();
    let model_id = embedder.model_id();
    let mut audit =
        crate::audit::AuditWriter::open(&audit_path, config.audit.synchronous, &model_id)?;
    let rows = crate::audit::read_baseline(&audit_path)?;
    let policy = crate::detect::SnapshotPolicy {
        path: config.snapshot_path(),
        interval: std::time::Duration::ZERO,
        model_id: model_id.clone(),
    };
    let (mut detector, _) = Detector::restore(&config.detector, rows, policy, embedder, |d, t| {
        progress("rebuilding the baseline", d, t)
    })?;
    let before = detector.baseline_len();

    let mut cache = EmbeddingCache::new(config.embedder.cache_entries);
    let mut counts: std::collections::BTreeMap<u64, u64> = Default::default();
    let mut done = 0;
    for chunk in texts.chunks(config.embedder.batch_size) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let (vectors, _) = cache.embed(embedder, &refs)?;
        let remaining = texts.len() - done - chunk.len();
        for id in detector.learn(&refs, &vectors, remaining, None)? {
            *counts.entry(id).or_default() += 1;
        }
        done += chunk.len();
        progress("importing", done, texts.len());
    }
    let imported: Vec<crate::detect::BaselineRow> = counts
        .iter()
        .map(|(&id, &count)| crate::detect::BaselineRow {
            id,
            text: detector
                .baseline()
                .text(id)
                .expect("learned ids are in the baseline")
                .to_owned(),
            count,
        })
        .collect();
    let new_texts = detector.baseline_len() - before;
    let mut fields = serde_json::Map::new();
    fields.insert("file".into(), serde_json::json!(path.display().to_string()));
    fields.insert("file_sha256".into(), serde_json::json!(file_sha256));
    fields.insert("format".into(), serde_json::json!(format.name()));
    fields.insert("lines".into(), serde_json::json!(lines));
    fields.insert("events".into(), serde_json::json!(texts.len()));
    fields.insert("distinct".into(), serde_json::json!(imported.len()));
    fields.insert("new_texts".into(), serde_json::json!(new_texts));
    let record = Event::daemon(
        crate::event::RecordKind::Import,
        format!(
            "anomalyd baseline import {} events={} new_texts={new_texts}",
            path.display(),
            texts.len()
        ),
        fields,
    );
    let model = format!("{model_id}+{}", detector.description());
    let committed =
        audit.append_with_baseline(&[crate::event::Judged::unscored(record)], &model, &imported)?;
    detector.finish_training();
    detector.save_snapshot()?;
    Ok(ImportSummary {
        seq: committed.last().map_or(0, |c| c.seq),
        lines,
        events: texts.len() as u64,
        skipped: lines - texts.len() as u64,
        distinct: imported.len() as u64,
        new_texts,
        file_sha256,
    })
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Canonical => "canonical",
            Format::Bgl => "bgl",
            Format::JournalJson => "journal-json",
        }
    }
}

/// The verdict of one scored line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineScore {
    /// 1-based line number in the scored file.
    pub line: u64,
    pub score: f32,
    pub anomaly: bool,
    /// What the score was judged against (none during warm-up).
    pub threshold: Option<f32>,
    /// For an anomaly, the line that opened its incident (its own when it opened one) and its
    /// repeat number (0 for the opening line): only an opening line alerts.
    pub incident: Option<(u64, u64)>,
    /// The word positions where it differs from its nearest text, when all are variable
    /// template slots (the reason its threshold was raised).
    pub variable_slots: Option<Vec<u64>>,
}

impl LineScore {
    /// An anomaly that opens an incident: what an operator is asked to look at.
    pub fn alerts(&self) -> bool {
        self.anomaly && self.incident.is_some_and(|(_, repeat)| repeat == 0)
    }
}

/// Reads `path` as texts in `format`; a line that cannot be read names its number.
pub fn read_texts(
    path: &Path,
    format: Format,
    volatile: &VolatileRules,
) -> Result<Vec<String>, OfflineError> {
    let bytes = std::fs::read(path).map_err(|source| OfflineError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(texts_of(path, &bytes, format, volatile, |_| true)?.0)
}

/// The texts of the lines of `bytes` (the contents of `path`) that `keep` accepts, and how many
/// lines there were; a line that cannot be read names its number.
fn texts_of(
    path: &Path,
    bytes: &[u8],
    format: Format,
    volatile: &VolatileRules,
    keep: impl Fn(&str) -> bool,
) -> Result<(Vec<String>, u64), OfflineError> {
    let mut texts = Vec::new();
    let mut lines = 0u64;
    if bytes.is_empty() {
        return Ok((texts, lines));
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        lines += 1;
        let bad = |reason: String| OfflineError::BadLine {
            path: path.to_owned(),
            line: i as u64 + 1,
            reason,
        };
        let line = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8 text".into()))?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if keep(line) {
            texts.push(line_text(format, line, volatile).map_err(bad)?);
        }
    }
    Ok((texts, lines))
}

/// Streams `texts` through the embedder and the detector as the daemon would, after `baseline`
/// (known-normal texts) has been learned. `progress(done, total)` is called after each batch.
pub fn score_texts(
    config: &Config,
    embedder: &mut dyn Embedder,
    baseline: &[String],
    texts: &[String],
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<LineScore>, f32), OfflineError> {
    let mut detector = Detector::new(&config.detector)?;
    let mut cache = EmbeddingCache::new(config.embedder.cache_entries);
    let batch = config.embedder.batch_size;
    let total = baseline.len() + texts.len();
    let mut done = 0;
    for chunk in baseline.chunks(batch) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let (vectors, _) = cache.embed(embedder, &refs)?;
        done += chunk.len();
        detector.learn(&refs, &vectors, baseline.len() - done, Some(Source::Custom))?;
        progress(done, total);
    }
    let mut scores = Vec::with_capacity(texts.len());
    // A file has line numbers, not times: incidents stay open to its end.
    let mut incidents = crate::incident::Incidents::new(0);
    for chunk in texts.chunks(batch) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let (vectors, _) = cache.embed(embedder, &refs)?;
        let events = chunk
            .iter()
            .map(|t| Event::observed(Source::Custom, t.clone(), Default::default()))
            .collect();
        let judged = detector.judge(events, &vectors).map_err(|u| u.error)?;
        for j in judged {
            let line = scores.len() as u64 + 1;
            let anomaly = j.verdict == Verdict::Anomaly;
            let incident = anomaly.then(|| match incidents.observe(&j.event.text, line, 0) {
                crate::incident::Alert::Opens => (line, 0),
                crate::incident::Alert::RepeatOf { first, repeat } => (first, repeat),
            });
            let fields = &j.event.fields;
            scores.push(LineScore {
                line,
                score: j.score.unwrap_or(f32::NAN),
                anomaly,
                threshold: fields
                    .get("threshold")
                    .and_then(serde_json::Value::as_f64)
                    .map(|t| t as f32),
                incident,
                variable_slots: fields
                    .get("variable_slots")
                    .and_then(|v| v.get("positions"))
                    .and_then(|p| serde_json::from_value(p.clone()).ok()),
            });
        }
        done += chunk.len();
        progress(done, total);
    }
    Ok((scores, detector.threshold()))
}

/// A progress line on stderr: redrawn in place on a terminal, every 10% otherwise.
pub struct Progress {
    what: &'static str,
    terminal: bool,
    last_decile: usize,
}

impl Progress {
    pub fn new(what: &'static str) -> Progress {
        Progress {
            what,
            terminal: std::io::stderr().is_terminal(),
            last_decile: 0,
        }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        let total = total.max(1);
        let percent = done * 100 / total;
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let filled = percent / 5;
            let _ = write!(
                err,
                "\r{} [{}{}] {done}/{total} ({percent}%)",
                self.what,
                "#".repeat(filled),
                " ".repeat(20 - filled)
            );
            if done == total {
                let _ = writeln!(err);
            }
        } else if percent / 10 > self.last_decile || done == total {
            self.last_decile = percent / 10;
            let _ = writeln!(err, "{}: {done}/{total} ({percent}%)", self.what);
        }
    }
}
