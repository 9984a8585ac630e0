//! Offline scoring (`anomalyd score-file`): a log file scored line by line exactly as the daemon
//! would have scored it live — streamed in `embedder.batch_size` batches through the embedding
//! cache and [`Detector::judge`], so each line is judged against the baseline and the earlier
//! lines only, with the same rule for what joins the index — for evaluation and backfill.

use std::io::{BufRead, IsTerminal, Write};
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
}

/// How a line of the input becomes a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The line is the text (a canonical event text, or any message).
    Plain,
    /// A Loghub BGL line: `LABEL EPOCH DATE NODE TIME NODE TYPE COMPONENT LEVEL CONTENT…`. The label
    /// and the per-line identifiers (times, node names) stay out; `TYPE COMPONENT LEVEL CONTENT`
    /// is the text, with the volatile-value rules applied to each word as the daemon's renderers
    /// apply them to each value.
    Bgl,
}

/// The text of one input line, or why it has none.
pub fn line_text(format: Format, line: &str, volatile: &VolatileRules) -> Result<String, String> {
    match format {
        Format::Plain => Ok(line.to_owned()),
        Format::Bgl => {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 {
                return Err(format!(
                    "a BGL line has at least 9 fields (label, epoch, date, node, time, node, type, \
                     component, level); this one has {}",
                    fields.len()
                ));
            }
            Ok(fields[6..]
                .iter()
                .map(|word| volatile.scrub(word).into_owned())
                .collect::<Vec<_>>()
                .join(" "))
        }
    }
}

/// The verdict of one scored line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineScore {
    /// 1-based line number in the scored file.
    pub line: u64,
    pub score: f32,
    pub anomaly: bool,
}

/// Reads `path` as texts in `format`; a line that cannot be read names its number.
pub fn read_texts(
    path: &Path,
    format: Format,
    volatile: &VolatileRules,
) -> Result<Vec<String>, OfflineError> {
    let io = |source| OfflineError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut texts = Vec::new();
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let bytes = line.map_err(io)?;
        let bad = |reason: String| OfflineError::BadLine {
            path: path.to_owned(),
            line: i as u64 + 1,
            reason,
        };
        let line = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        texts.push(line_text(format, line, volatile).map_err(bad)?);
    }
    Ok(texts)
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
        detector.learn(&refs, &vectors)?;
        done += chunk.len();
        progress(done, total);
    }
    let mut scores = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let (vectors, _) = cache.embed(embedder, &refs)?;
        let events = chunk
            .iter()
            .map(|t| Event::observed(Source::Custom, t.clone(), Default::default()))
            .collect();
        let judged = detector.judge(events, &vectors).map_err(|u| u.error)?;
        for j in judged {
            scores.push(LineScore {
                line: scores.len() as u64 + 1,
                score: j.score.unwrap_or(f32::NAN),
                anomaly: j.verdict == Verdict::Anomaly,
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
