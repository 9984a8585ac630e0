//! Offline scoring (`anomalyd score-file`): a log file scored line by line exactly as the daemon
//! would have scored it live — streamed in `embedder.batch_size` batches through the embedding
//! cache and [`Detector::judge`], so each line is judged against the baseline and the earlier
//! lines only, with the same rule for what joins the index — for evaluation and backfill. Also
//! `anomalyd baseline import`. Neither holds its input whole: lines are read one batch at a time
//! ([`LineReader`]), and a line over [`MAX_LINE_BYTES`] is refused by number.

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
    #[error("creating {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the scores: {source}")]
    Output {
        #[source]
        source: std::io::Error,
    },
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

/// Why an input line has no text in its format.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error(
        "a BGL line has at least 9 fields (label, epoch, date, node, time, node, type, \
         component, level); this one has {0}"
    )]
    BglFields(usize),
    #[error("not a journal JSON object: {0}")]
    NotJournalJson(serde_json::Error),
    #[error("the entry has no MESSAGE field")]
    NoMessage,
}

/// What one input line is to the detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineText {
    pub text: String,
    /// When it was logged (µs since the epoch), where the line says: `plain`'s leading time
    /// stamp, `bgl`'s epoch, the journal's `__REALTIME_TIMESTAMP`. Lines without one are taken
    /// one second apart from the start of the run (line N at N seconds), for the windows after an
    /// anomaly and the hours of periodic texts.
    pub usec: Option<u64>,
}

/// The text of one input line, or why it has none.
pub fn line_text(
    format: Format,
    line: &str,
    volatile: &VolatileRules,
) -> Result<LineText, LineError> {
    let text = |text: String, usec: Option<u64>| Ok(LineText { text, usec });
    match format {
        Format::Plain => text(volatile.scrub_message(line), leading_time_usec(line)),
        Format::Canonical => text(line.to_owned(), None),
        Format::Bgl => {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 {
                return Err(LineError::BglFields(fields.len()));
            }
            let usec = fields[1]
                .parse::<u64>()
                .ok()
                .and_then(|s| s.checked_mul(1_000_000));
            text(volatile.scrub_message(&fields[6..].join(" ")), usec)
        }
        Format::JournalJson => {
            let entry: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).map_err(LineError::NotJournalJson)?;
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
            let message = field("MESSAGE").ok_or(LineError::NoMessage)?;
            let identifier = field("SYSLOG_IDENTIFIER")
                .or_else(|| field("_COMM"))
                .or_else(|| field("_SYSTEMD_UNIT"))
                .unwrap_or_else(|| "unknown".into());
            let usec = field("__REALTIME_TIMESTAMP").and_then(|t| t.parse().ok());
            text(
                format!("journal {identifier} {}", volatile.scrub_message(&message)),
                usec,
            )
        }
    }
}

/// The time stamp a log line starts with, in µs since the epoch: ISO 8601
/// (`2026-11-04T09:17:03.5+01:00`, journalctl's `short-iso`; no offset is UTC) or syslog's
/// `Nov  4 09:17:03` (journalctl's `short`: no year, so this year in UTC, and local time taken
/// as UTC; only hours are compared, and only with each other).
fn leading_time_usec(line: &str) -> Option<u64> {
    let b = line.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i64> {
        let part = line.get(from..from + n)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let iso = b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T';
    let (days, clock) = if iso {
        let days = days_from_civil(digits(0, 4)?, digits(5, 2)?, digits(8, 2)?)?;
        (days, 11)
    } else {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS.iter().position(|m| line.get(..3) == Some(*m))? as i64 + 1;
        let rest = line.get(3..)?.strip_prefix(' ')?.trim_start_matches(' ');
        let day_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=2).contains(&day_len) || rest.as_bytes().get(day_len) != Some(&b' ') {
            return None;
        }
        let day = rest[..day_len].parse().ok()?;
        let year = civil_year(crate::event::now_usec() / 86_400_000_000);
        let clock = line.len() - rest.len() + day_len + 1;
        (days_from_civil(year, month, day)?, clock)
    };
    if b.get(clock + 2) != Some(&b':') || b.get(clock + 5) != Some(&b':') {
        return None;
    }
    let (h, m, sec) = (
        digits(clock, 2)?,
        digits(clock + 3, 2)?,
        digits(clock + 6, 2)?,
    );
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let mut seconds = days * 86_400 + h * 3600 + m * 60 + sec;
    // An ISO offset after the seconds and any fraction: local time minus the offset is UTC.
    let mut at = clock + 8;
    if b.get(at) == Some(&b'.') {
        at += 1 + b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
    }
    if iso && matches!(b.get(at), Some(b'+' | b'-')) {
        let sign = if b[at] == b'+' { 1 } else { -1 };
        let oh = digits(at + 1, 2)?;
        let om = digits(at + 3, 2).or_else(|| digits(at + 4, 2)).unwrap_or(0);
        seconds -= sign * (oh * 3600 + om * 60);
    }
    u64::try_from(seconds).ok()?.checked_mul(1_000_000)
}

/// [`crate::event::days_from_civil`], or `None` for a month or day out of range.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(crate::event::days_from_civil(year, month, day))
}

/// The year of a day since 1970-01-01.
fn civil_year(days: u64) -> i64 {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
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
    mut progress: impl FnMut(&'static str, usize, Option<usize>),
) -> Result<ImportSummary, OfflineError> {
    std::fs::create_dir_all(&config.daemon.state_dir).map_err(|source| OfflineError::Io {
        path: config.daemon.state_dir.clone(),
        source,
    })?;
    let _lock = crate::lock::StateLock::acquire(&config.daemon.state_dir)?;
    let keep =
        |line: &str| !line.trim().is_empty() && (format != Format::Bgl || line.starts_with("- "));
    // Bad input, and a file with nothing to import, are refused before the audit database is
    // opened (or created).
    let total = count_kept(path, format, &config.render.volatile, &keep)?;
    if total == Some(0) {
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
        progress("rebuilding the baseline", d, Some(t))
    })?;
    let before = detector.baseline_len();

    let mut cache = EmbeddingCache::new(config.embedder.cache_entries);
    let mut counts: std::collections::BTreeMap<u64, u64> = Default::default();
    let (reader, events) = learn_file(
        path,
        format,
        &config.render.volatile,
        &keep,
        total,
        None,
        &mut detector,
        embedder,
        &mut cache,
        config.embedder.batch_size,
        |ids, done, total| {
            for &id in ids {
                *counts.entry(id).or_default() += 1;
            }
            progress("importing", done, total);
        },
    )?;
    if events == 0 {
        // From a pipe, known only now.
        return Err(OfflineError::Empty {
            path: path.to_owned(),
        });
    }
    let lines = reader.lines();
    let file_sha256 = reader.sha256_hex();
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
    fields.insert("events".into(), serde_json::json!(events));
    fields.insert("distinct".into(), serde_json::json!(imported.len()));
    fields.insert("new_texts".into(), serde_json::json!(new_texts));
    let record = Event::daemon(
        crate::event::RecordKind::Import,
        format!(
            "anomalyd baseline import {} events={} new_texts={new_texts}",
            path.display(),
            events
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
        events: events as u64,
        skipped: lines - events as u64,
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
    /// The file's own threshold, when the line was judged against another (raised for variable
    /// slots or by its program, or the floor for a failure in context).
    pub source_threshold: Option<f32>,
    /// The log program the line names and its own threshold, when the line was judged against it
    /// too.
    pub program: Option<(String, f32)>,
    /// The new value naming the superuser that made the floor the line's threshold.
    pub superuser: Option<String>,
    /// Judged normal as periodic: flagged hour after hour, it joined the baseline.
    pub periodic: bool,
    /// A follow-on failure: the text of the anomaly whose window it fell in.
    pub follows: Option<String>,
    /// A repeated failure: its occurrences within the window.
    pub repeated: Option<u64>,
}

impl LineScore {
    /// An anomaly that opens an incident: what an operator is asked to look at.
    pub fn alerts(&self) -> bool {
        self.anomaly && self.incident.is_some_and(|(_, repeat)| repeat == 0)
    }
}

/// An input line longer than this is refused, by number: a log line, even a journal entry in
/// JSON, is far shorter, and a text is cut at 2048 bytes anyway. It bounds what one line can make
/// the reader hold.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The lines of an input file, read one at a time (the whole file is never held), each checked
/// for length and UTF-8, with the SHA-256 of every byte read.
pub struct LineReader {
    reader: std::io::BufReader<std::fs::File>,
    path: PathBuf,
    number: u64,
    buf: Vec<u8>,
    digest: sha2::Sha256,
}

impl LineReader {
    pub fn open(path: &Path) -> Result<LineReader, OfflineError> {
        let file = std::fs::File::open(path).map_err(|source| OfflineError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(LineReader {
            reader: std::io::BufReader::with_capacity(1 << 16, file),
            path: path.to_owned(),
            number: 0,
            buf: Vec::new(),
            digest: Default::default(),
        })
    }

    /// The next line, without its line end (`\n`, or `\r\n`), and its 1-based number; `None`
    /// at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<(u64, &str)>, OfflineError> {
        use sha2::Digest;
        use std::io::{BufRead, Read};
        self.buf.clear();
        // Room for the longest line allowed and its `\r\n`.
        let read = (&mut self.reader)
            .take(MAX_LINE_BYTES as u64 + 2)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| OfflineError::Io {
                path: self.path.clone(),
                source,
            })?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        self.digest.update(&self.buf);
        let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_LINE_BYTES {
            return Err(self.bad(format!(
                "longer than {MAX_LINE_BYTES} bytes; is this a log file?"
            )));
        }
        match std::str::from_utf8(line) {
            Ok(text) => Ok(Some((self.number, text))),
            Err(_) => Err(self.bad("not UTF-8 text".into())),
        }
    }

    /// Line `number` (the last one read) is bad for `reason`.
    fn bad(&self, reason: String) -> OfflineError {
        self.bad_line(self.number, reason)
    }

    fn bad_line(&self, line: u64, reason: String) -> OfflineError {
        OfflineError::BadLine {
            path: self.path.clone(),
            line,
            reason,
        }
    }

    /// Lines read so far.
    pub fn lines(&self) -> u64 {
        self.number
    }

    /// The SHA-256 of everything read, as hex.
    pub fn sha256_hex(self) -> String {
        use sha2::Digest;
        hex::encode(self.digest.finalize())
    }

    /// The next line's text in `format` among the lines `keep` accepts; `None` at the end.
    fn next_text(
        &mut self,
        format: Format,
        volatile: &VolatileRules,
        keep: &impl Fn(&str) -> bool,
    ) -> Result<Option<(u64, LineText)>, OfflineError> {
        loop {
            let Some((number, line)) = self.next_line()? else {
                return Ok(None);
            };
            if keep(line) {
                return match line_text(format, line, volatile) {
                    Ok(text) => Ok(Some((number, text))),
                    Err(reason) => Err(self.bad_line(number, reason.to_string())),
                };
            }
        }
    }

    /// Up to `n` texts (with their line numbers) of the lines `keep` accepts; empty at the end.
    fn next_texts(
        &mut self,
        n: usize,
        format: Format,
        volatile: &VolatileRules,
        keep: &impl Fn(&str) -> bool,
    ) -> Result<Vec<(u64, LineText)>, OfflineError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.next_text(format, volatile, keep)? {
                Some(numbered) => out.push(numbered),
                None => break,
            }
        }
        Ok(out)
    }
}

/// How many lines of `path` `keep` accepts, counted in a first pass that holds one line at a
/// time and checks each as the second will (length, UTF-8, its text in `format`), so bad input
/// fails before anything is embedded or written; `None` for what can be read only once (a
/// pipe), whose lines are checked as they come.
fn count_kept(
    path: &Path,
    format: Format,
    volatile: &VolatileRules,
    keep: &impl Fn(&str) -> bool,
) -> Result<Option<usize>, OfflineError> {
    let regular = std::fs::metadata(path)
        .map_err(|source| OfflineError::Io {
            path: path.to_owned(),
            source,
        })?
        .is_file();
    if !regular {
        return Ok(None);
    }
    let mut reader = LineReader::open(path)?;
    let mut kept = 0;
    while reader.next_text(format, volatile, keep)?.is_some() {
        kept += 1;
    }
    Ok(Some(kept))
}

/// Learns the texts of `path` (known-normal history, `total` of them as [`count_kept`] found)
/// into `detector` in `batch` batches, as [`Detector::learn`] does; `each(ids, done, total)` sees
/// each batch's baseline ids. Returns the reader, at the end of the file, and the number of
/// texts learned.
#[allow(clippy::too_many_arguments)]
fn learn_file(
    path: &Path,
    format: Format,
    volatile: &VolatileRules,
    keep: &impl Fn(&str) -> bool,
    total: Option<usize>,
    source: Option<Source>,
    detector: &mut Detector,
    embedder: &mut dyn Embedder,
    cache: &mut EmbeddingCache,
    batch: usize,
    mut each: impl FnMut(&[u64], usize, Option<usize>),
) -> Result<(LineReader, usize), OfflineError> {
    // Calibration scores only the history's last window of texts, so it needs to know where the
    // end is; without a count (a pipe) every text is scored, a search each, and the threshold
    // can come out slightly different (calibration recomputes its quantile every so many scores).
    let mut reader = LineReader::open(path)?;
    let mut done = 0;
    loop {
        let texts = reader.next_texts(batch, format, volatile, keep)?;
        if texts.is_empty() {
            return Ok((reader, done));
        }
        let refs: Vec<&str> = texts.iter().map(|(_, t)| t.text.as_str()).collect();
        let (vectors, _) = cache.embed(embedder, &refs)?;
        done += texts.len();
        let remaining = total.map_or(0, |t| t.saturating_sub(done));
        let ids = detector.learn(&refs, &vectors, remaining, source)?;
        each(&ids, done, total);
    }
}

/// What [`score_file`] found, over the whole file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSummary {
    /// Known-normal history lines learned first, and the file's lines scored.
    pub baseline_lines: u64,
    pub lines: u64,
    pub flagged: u64,
    pub alerts: u64,
    /// The highest source threshold at the end.
    pub threshold: f32,
}

/// Streams the lines of `path` through the embedder and the detector as the daemon would, after
/// `baseline` (known-normal history, same format) has been learned, one batch at a time:
/// `each(score, text)` sees each line's verdict in order, as soon as its batch is judged, so
/// neither file is ever held whole. `progress(what, done, total)` follows both files (`total`
/// unknown for a pipe).
pub fn score_file(
    config: &Config,
    embedder: &mut dyn Embedder,
    path: &Path,
    format: Format,
    baseline: Option<&Path>,
    mut each: impl FnMut(&LineScore, &str) -> std::io::Result<()>,
    mut progress: impl FnMut(&'static str, usize, Option<usize>),
) -> Result<ScoreSummary, OfflineError> {
    let volatile = &config.render.volatile;
    let mut detector = Detector::new(&config.detector)?;
    let mut cache = EmbeddingCache::new(config.embedder.cache_entries);
    let batch = config.embedder.batch_size;
    let all = |_: &str| true;
    // Both files checked before anything is embedded.
    let history_total = match baseline {
        Some(history) => count_kept(history, format, volatile, &all)?,
        None => None,
    };
    let total = count_kept(path, format, volatile, &all)?;
    let baseline_lines = match baseline {
        Some(history) => {
            learn_file(
                history,
                format,
                volatile,
                &all,
                history_total,
                Some(Source::Custom),
                &mut detector,
                embedder,
                &mut cache,
                batch,
                |_, done, total| progress("learning the baseline", done, total),
            )?
            .1 as u64
        }
        None => 0,
    };
    let mut reader = LineReader::open(path)?;
    let mut summary = ScoreSummary {
        baseline_lines,
        lines: 0,
        flagged: 0,
        alerts: 0,
        threshold: 0.0,
    };
    // A file has line numbers, not times: incidents stay open to its end.
    let mut incidents = crate::incident::Incidents::new(0);
    // Lines without a time of their own are taken one second apart from the start, so the
    // windows after an anomaly (`detector.follow_on_s`) span as many lines on every machine,
    // however fast it scores.
    let start_usec = crate::event::now_usec();
    loop {
        let chunk = reader.next_texts(batch, format, volatile, &all)?;
        if chunk.is_empty() {
            break;
        }
        let refs: Vec<&str> = chunk.iter().map(|(_, t)| t.text.as_str()).collect();
        let (vectors, _) = cache.embed(embedder, &refs)?;
        let events = chunk
            .iter()
            .map(|(line, t)| {
                let mut event = Event::observed(Source::Custom, t.text.clone(), Default::default());
                event.observed_usec = t
                    .usec
                    .unwrap_or_else(|| start_usec.saturating_add(line.saturating_mul(1_000_000)));
                event
            })
            .collect();
        let judged = detector.judge(events, &vectors).map_err(|u| u.error)?;
        for (j, (line, text)) in judged.into_iter().zip(&chunk) {
            let (line, text) = (*line, text.text.as_str());
            let anomaly = j.verdict == Verdict::Anomaly;
            let periodic = j.periodic.is_some();
            if periodic {
                incidents.close(&j.event.text);
            }
            let incident = anomaly.then(|| match incidents.observe(&j.event.text, line, 0) {
                crate::incident::Alert::Opens => (line, 0),
                crate::incident::Alert::RepeatOf { first, repeat } => (first, repeat),
            });
            let fields = &j.event.fields;
            let score = LineScore {
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
                source_threshold: fields
                    .get("source_threshold")
                    .and_then(serde_json::Value::as_f64)
                    .map(|t| t as f32),
                program: fields
                    .get("program")
                    .and_then(serde_json::Value::as_str)
                    .zip(
                        fields
                            .get("program_threshold")
                            .and_then(serde_json::Value::as_f64),
                    )
                    .map(|(name, t)| (name.to_owned(), t as f32)),
                superuser: fields
                    .get("superuser")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                periodic,
                follows: fields
                    .get("follows")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                repeated: fields
                    .get("repeated")
                    .and_then(|r| r.get("count"))
                    .and_then(serde_json::Value::as_u64),
            };
            summary.lines += 1;
            summary.flagged += u64::from(score.anomaly);
            summary.alerts += u64::from(score.alerts());
            each(&score, text).map_err(|source| OfflineError::Output { source })?;
        }
        progress("scoring", summary.lines as usize, total);
    }
    summary.threshold = detector.threshold();
    Ok(summary)
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

    /// Where it stands when the total is not known beforehand (input from a pipe).
    pub fn update_open(&mut self, done: usize) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{} {done}", self.what);
        } else if done / 10_000 > self.last_decile {
            self.last_decile = done / 10_000;
            let _ = writeln!(err, "{}: {done}", self.what);
        }
    }

    /// [`Progress::update`] or, without a total, [`Progress::update_open`].
    pub fn update_maybe(&mut self, done: usize, total: Option<usize>) {
        match total {
            Some(total) => self.update(done, total),
            None => self.update_open(done),
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

/// The progress bar for `what`, a new one when the work moved on to another stage.
fn progress_of<'a>(
    bars: &'a mut Vec<(&'static str, Progress)>,
    what: &'static str,
) -> &'a mut Progress {
    if bars.last().is_none_or(|(w, _)| *w != what) {
        bars.push((what, Progress::new(what)));
    }
    &mut bars.last_mut().expect("just pushed").1
}

/// `anomalyd score-file`: [`score_file`] with one JSON line per input line written to `out`
/// (stdout when `None`), progress and a summary on stderr.
pub fn score_file_command(
    config: &Config,
    path: &Path,
    format: Format,
    baseline: Option<&Path>,
    out: Option<&Path>,
) -> Result<ScoreSummary, OfflineError> {
    let mut embedder = crate::embed::build(config)?.embedder;
    eprintln!(
        "anomalyd score-file: {}{}; {} on {}",
        path.display(),
        baseline.map_or(String::new(), |b| format!(
            " after the baseline {}",
            b.display()
        )),
        embedder.model_id(),
        embedder.backend()
    );
    let sink: Box<dyn Write> = match out {
        Some(out) => {
            Box::new(
                std::fs::File::create(out).map_err(|source| OfflineError::Create {
                    path: out.to_owned(),
                    source,
                })?,
            )
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = std::io::BufWriter::new(sink);
    let mut bars: Vec<(&'static str, Progress)> = Vec::new();
    let summary = score_file(
        config,
        embedder.as_mut(),
        path,
        format,
        baseline,
        |s, text| {
            let mut line = serde_json::json!({
                "line": s.line,
                "score": s.score,
                "anomaly": s.anomaly,
                "alert": s.alerts(),
                "text": text,
            });
            if let Some(t) = s.threshold {
                line["threshold"] = serde_json::json!(crate::metrics::decimal_f64(t));
            }
            if let Some((first, repeat)) = s.incident {
                line["incident"] = serde_json::json!(first);
                line["repeat"] = serde_json::json!(repeat);
            }
            if let Some(p) = &s.variable_slots {
                line["variable_slots"] = serde_json::json!(p);
            }
            if let Some(t) = s.source_threshold {
                line["source_threshold"] = serde_json::json!(crate::metrics::decimal_f64(t));
            }
            if let Some((name, t)) = &s.program {
                line["program"] = serde_json::json!(name);
                line["program_threshold"] = serde_json::json!(crate::metrics::decimal_f64(*t));
            }
            if let Some(value) = &s.superuser {
                line["superuser"] = serde_json::json!(value);
            }
            if s.periodic {
                line["periodic"] = serde_json::json!(true);
            }
            if let Some(leader) = &s.follows {
                line["follows"] = serde_json::json!(leader);
            }
            if let Some(count) = s.repeated {
                line["repeated"] = serde_json::json!(count);
            }
            serde_json::to_writer(&mut sink, &line)?;
            sink.write_all(b"\n")
        },
        |what, done, total| progress_of(&mut bars, what).update_maybe(done, total),
    )?;
    sink.flush()
        .map_err(|source| OfflineError::Output { source })?;
    eprintln!(
        "anomalyd score-file: {} baseline lines, then {} lines; {} of {} lines flagged in {} incidents; threshold at the end {:.4}",
        summary.baseline_lines, summary.lines, summary.flagged, summary.lines, summary.alerts, summary.threshold
    );
    Ok(summary)
}

/// `anomalyd baseline import`: [`import_baseline`] with progress on stderr and what was
/// recorded on stdout.
pub fn import_command(
    config: &Config,
    path: &Path,
    format: Format,
) -> Result<ImportSummary, OfflineError> {
    let mut embedder = crate::embed::build(config)?.embedder;
    let mut bars: Vec<(&'static str, Progress)> = Vec::new();
    let summary = import_baseline(config, path, format, embedder.as_mut(), |what, d, t| {
        progress_of(&mut bars, what).update_maybe(d, t)
    })?;
    println!(
        "imported {} events ({} distinct, {} new to the baseline) from {} lines of {}; {} skipped",
        summary.events,
        summary.distinct,
        summary.new_texts,
        summary.lines,
        path.display(),
        summary.skipped
    );
    println!(
        "recorded as seq {} (file sha256 {}) in {}",
        summary.seq,
        summary.file_sha256,
        config.audit_db_path().display()
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-04T09:17:03Z.
    const NOV_4: u64 = 1_793_783_823_000_000;

    #[test]
    fn a_line_s_leading_time_stamp() {
        assert_eq!(
            leading_time_usec("2026-11-04T09:17:03Z mx1 sshd[1]: x"),
            Some(NOV_4)
        );
        assert_eq!(leading_time_usec("2026-11-04T09:17:03 mx1 x"), Some(NOV_4));
        assert_eq!(
            leading_time_usec("2026-11-04T10:17:03.123456+01:00 mx1 x"),
            Some(NOV_4)
        );
        assert_eq!(leading_time_usec("2026-11-04T04:17:03-0500 x"), Some(NOV_4));
        let year = civil_year(crate::event::now_usec() / 86_400_000_000);
        let nov_4_this_year =
            (days_from_civil(year, 11, 4).unwrap() * 86_400 + 9 * 3600 + 17 * 60 + 3) as u64
                * 1_000_000;
        assert_eq!(
            leading_time_usec("Nov  4 09:17:03 mx1 x"),
            Some(nov_4_this_year)
        );
        assert_eq!(
            leading_time_usec("Nov 04 09:17:03 mx1 x"),
            Some(nov_4_this_year)
        );
        for no_time in [
            "sshd[1]: Accepted password",
            "Nov 4 9:17:03 x",
            "Now  4 09:17:03 x",
            "2026-13-04T09:17:03Z x",
            "2026-11-04T25:17:03Z x",
            "2026-11-04",
            "",
        ] {
            assert_eq!(leading_time_usec(no_time), None, "{no_time:?}");
        }
        assert_eq!(civil_year(0), 1970);
        assert_eq!(civil_year(NOV_4 / 86_400_000_000), 2026);
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
    }

    #[test]
    fn every_format_s_time() {
        let volatile = VolatileRules::default();
        let bgl = "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 \
                   R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected";
        assert_eq!(
            line_text(Format::Bgl, bgl, &volatile).unwrap().usec,
            Some(1_117_838_570_000_000)
        );
        let journal = r#"{"__REALTIME_TIMESTAMP":"1793783823000000","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"x"}"#;
        assert_eq!(
            line_text(Format::JournalJson, journal, &volatile).unwrap(),
            LineText {
                text: "journal sshd x".into(),
                usec: Some(NOV_4)
            }
        );
        assert_eq!(
            line_text(Format::Canonical, "systemd unit a", &volatile)
                .unwrap()
                .usec,
            None
        );
    }
}
