//! Prometheus metrics, encoded by the Prometheus project's own `prometheus-client` crate from the
//! pipeline's counters at each scrape ([`crate::metrics::Metrics`] stays the one home of every
//! count; this module only names and encodes them). Two ways out, both opt-in (`[metrics]`):
//! - an HTTP endpoint, `GET /metrics`: OpenMetrics when the scraper asks for it (Prometheus
//!   does), the classic text format 0.0.4 otherwise (curl, `promtool check metrics`);
//! - a file for node_exporter's textfile collector, in the text format it parses, replaced by
//!   a temporary file renamed over it so the collector never reads half a file.
//!
//! Names follow Prometheus conventions: base units (`_seconds`), `_total` counters, and no label
//! of high cardinality (only `source`, five values). docs/metrics.md lists them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::metrics::{Metrics, THRESHOLD_SOURCES};

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("metrics.listen {addr}: cannot listen there: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics.textfile {}: {source}", path.display())]
    Textfile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What `anomalyd_build_info` says about this daemon.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: String,
    /// The embedding model's id.
    pub model: String,
    /// The FAISS index factory string.
    pub index: String,
}

/// How many events wait in the intake queue now (read at each scrape).
pub type QueueDepth = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The daemon's metrics as Prometheus sees them.
pub struct Exposition {
    registry: Registry,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition").finish_non_exhaustive()
    }
}

impl Exposition {
    pub fn new(metrics: Arc<Metrics>, build: BuildInfo, queue_depth: QueueDepth) -> Exposition {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Collector {
            metrics,
            build,
            queue_depth: QueueDepthFn(queue_depth),
        }));
        Exposition { registry }
    }

    /// OpenMetrics text, `# EOF` last.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The classic text format 0.0.4, which node_exporter's textfile collector and promtool parse.
    pub fn text(&self) -> String {
        openmetrics_to_text(&self.openmetrics())
    }
}

/// OpenMetrics → text format 0.0.4. The two differ, for what this module writes, only in that
/// OpenMetrics names a counter family without its `_total` (its samples carry it), and has `# UNIT`
/// and `# EOF` lines; the 0.0.4 parsers would otherwise see each counter as an untyped family of
/// its own, without help.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_owned());
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

struct QueueDepthFn(QueueDepth);

impl std::fmt::Debug for QueueDepthFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueDepthFn")
    }
}

#[derive(Debug)]
struct Collector {
    metrics: Arc<Metrics>,
    build: BuildInfo,
    queue_depth: QueueDepthFn,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One counter per bus source, labelled `source`.
fn counter_by_source(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[std::sync::atomic::AtomicU64; 5],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (source, value) in THRESHOLD_SOURCES.iter().zip(values) {
        let labels = [("source", source.as_str())];
        ConstCounter::new(value.load(Relaxed)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &*self.metrics;
        let e = &mut encoder;
        {
            let labels = [
                ("version", self.build.version.as_str()),
                ("model", self.build.model.as_str()),
                ("index", self.build.index.as_str()),
            ];
            let mut family = e.encode_descriptor(
                "anomalyd_build_info",
                "The daemon's version, embedding model and FAISS index factory; always 1.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
        counter_by_source(
            e,
            "anomalyd_events",
            "Events accepted from the bus (queued or dropped), by source.",
            &m.events_by_source,
        )?;
        counter_by_source(
            e,
            "anomalyd_anomalies",
            "Records committed with the anomaly verdict, by source.",
            &m.anomalies_by_source,
        )?;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        for (name, help, value) in [
            (
                "anomalyd_incidents",
                "Anomalies that opened an incident (the rest repeated an open one).",
                load(&m.incidents),
            ),
            (
                "anomalyd_records",
                "Records committed to the audit chain.",
                load(&m.records_written),
            ),
            (
                "anomalyd_dropped",
                "Events dropped because a queue was full (each run of drops is a gap record).",
                load(&m.events_dropped),
            ),
            (
                "anomalyd_forged",
                "Signals refused because their sender does not own the source's name.",
                load(&m.events_forged),
            ),
            (
                "anomalyd_malformed",
                "Signals whose shape was not what the service documents.",
                load(&m.signals_malformed),
            ),
            (
                "anomalyd_oversized",
                "Signals skipped for exceeding sources.max_signal_bytes.",
                load(&m.signals_oversized),
            ),
            (
                "anomalyd_suppressed",
                "Events recorded as suppressed by a suppression rule.",
                load(&m.suppressed),
            ),
            (
                "anomalyd_marked_benign",
                "Events marked benign through the API.",
                load(&m.marked_benign),
            ),
            (
                "anomalyd_access_denied",
                "Admin calls refused to the caller.",
                load(&m.access_denied),
            ),
            (
                "anomalyd_embed_errors",
                "Batches whose embedding failed (recorded unscored).",
                load(&m.embed_errors),
            ),
            (
                "anomalyd_embed_cache_hits",
                "Texts whose vector came from the embedding cache.",
                load(&m.embed_cache_hits),
            ),
            (
                "anomalyd_embed_cache_misses",
                "Texts that had to be embedded.",
                load(&m.embed_cache_misses),
            ),
            (
                "anomalyd_audit_retries",
                "Audit commits that failed and were retried.",
                load(&m.audit_retries),
            ),
            (
                "anomalyd_index_swaps",
                "Trained FAISS indexes swapped in since start.",
                load(&m.index_swaps),
            ),
        ] {
            counter(e, name, help, value)?;
        }
        gauge(
            e,
            "anomalyd_queue_depth",
            "Events waiting in the intake queue now.",
            (self.queue_depth.0)() as i64,
        )?;
        gauge(
            e,
            "anomalyd_queue_depth_max",
            "The most events the intake queue has held at once since start.",
            load(&m.queue_depth_peak) as i64,
        )?;
        gauge(
            e,
            "anomalyd_baseline_texts",
            "Distinct texts (vectors) in the baseline index.",
            load(&m.baseline_size) as i64,
        )?;
        gauge(
            e,
            "anomalyd_chain_head",
            "The audit chain's last record number.",
            load(&m.head_seq) as i64,
        )?;
        gauge(
            e,
            "anomalyd_index_drift_ratio",
            "Share of texts added since training that lie beyond the training texts' 90th percentile distance to a list centre.",
            load(&m.index_drift_permille) as f64 / 1000.0,
        )?;
        {
            let mut family = e.encode_descriptor(
                "anomalyd_threshold",
                "Each source's alert threshold now (cosine distance), once it has sent something.",
                None,
                MetricType::Gauge,
            )?;
            for (source, threshold) in m.source_thresholds() {
                let labels = [("source", source.as_str())];
                ConstGauge::new(threshold).encode(family.encode_family(&labels)?)?;
            }
        }
        m.commit_latency.0.encode(e.encode_descriptor(
            "anomalyd_commit_latency",
            "Seconds from an event's observation to its committed, scored record.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?)?;
        m.embed_duration.0.encode(e.encode_descriptor(
            "anomalyd_embed_duration",
            "Seconds to embed one batch, the embedding cache's lookups included.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?)?;
        Ok(())
    }
}

/// Binds the endpoint (at start-up, so a taken port is a clear start-up error).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, PrometheusError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| PrometheusError::Bind { addr, source })
}

/// Serves `GET /metrics` until `shutdown` turns true. One short request per connection: a
/// scraper that sends more than a request head, or takes longer than 10 s to send it, is cut off.
pub async fn serve(
    listener: TcpListener,
    exposition: Arc<Exposition>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Beyond the bound a connection is closed at once: a client that opens many
                    // and sends nothing must not take the daemon's file descriptors.
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        debug!(%peer, "metrics endpoint: too many connections; closed one");
                        continue;
                    };
                    let exposition = exposition.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = answer(stream, &exposition).await {
                            debug!(%peer, error = %e, "metrics request failed");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // A dropped sender (the daemon's start failed) stops it too.
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// Connections the endpoint serves at once; a scrape needs one.
const MAX_CONNECTIONS: usize = 16;

/// The largest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

async fn answer(mut stream: TcpStream, exposition: &Exposition) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let complete = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 2048];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    match complete {
        Ok(result) => result?,
        Err(_) => return Ok(()), // too slow: drop the connection
    }
    let response = respond(&String::from_utf8_lossy(&head), exposition);
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// The HTTP/1.1 response to a request head.
fn respond(head: &str, exposition: &Exposition) -> Vec<u8> {
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, value)| value.to_ascii_lowercase())
        .unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") if accept.contains("application/openmetrics-text") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            exposition.openmetrics(),
        ),
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            exposition.text(),
        ),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "anomalyd: metrics at /metrics\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
    };
    let mut response = String::new();
    let _ = write!(
        response,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    let mut bytes = response.into_bytes();
    if method != "HEAD" {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

/// Replaces `path` with `text`: written to a temporary file beside it, flushed, then renamed over
/// it, so a reader sees the old file or the new one, never a part.
pub fn write_textfile(path: &Path, text: &str) -> Result<(), PrometheusError> {
    let error = |source| PrometheusError::Textfile {
        path: path.to_owned(),
        source,
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // node_exporter reads only `*.prom`: the temporary name must not end so. It is unique and
    // created exclusively (O_EXCL), so a link planted under it by another user of the directory
    // is refused rather than followed.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temporary = path.with_file_name(format!(".{name}.{}.{nanos:09}.tmp", std::process::id()));
    let written = (|| {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = &written {
        // Not ours when it already existed: leave it.
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(&temporary);
        }
    }
    written.map_err(error)
}

/// Rewrites the textfile every `interval` until `shutdown`, then once more (the final counts).
/// A failed write is logged once per change of error and retried at the next tick.
pub async fn write_textfile_every(
    path: PathBuf,
    interval: Duration,
    exposition: Arc<Exposition>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_error: Option<String> = None;
    let mut tick = tokio::time::interval(interval);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
        };
        let text = exposition.text();
        let path = path.clone();
        let written = tokio::task::spawn_blocking(move || write_textfile(&path, &text))
            .await
            .unwrap_or(Ok(()));
        match written {
            Ok(()) => last_error = None,
            Err(e) => {
                let message = e.to_string();
                if last_error.as_deref() != Some(message.as_str()) {
                    warn!(error = %crate::logging::error_chain(&e), "cannot write the metrics textfile");
                }
                last_error = Some(message);
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition() -> (Arc<Metrics>, Exposition) {
        let metrics = Arc::new(Metrics::default());
        let exposition = Exposition::new(
            metrics.clone(),
            BuildInfo {
                version: "0.1.0".into(),
                model: "all-MiniLM-L6-v2".into(),
                index: "IVF64,SQ8".into(),
            },
            Arc::new(|| 3),
        );
        (metrics, exposition)
    }

    #[test]
    fn counters_carry_total_and_sources_are_labels() {
        let (metrics, exposition) = exposition();
        metrics.count_event(crate::event::Source::Login1);
        metrics.count_event(crate::event::Source::Login1);
        metrics.count_anomaly(crate::event::Source::Systemd);
        metrics.commit_latency.observe(0.004);
        let om = exposition.openmetrics();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("anomalyd_events_total{source=\"login1\"} 2"),
            "{om}"
        );
        assert!(
            om.contains("anomalyd_anomalies_total{source=\"systemd\"} 1"),
            "{om}"
        );
        assert!(om.contains("anomalyd_queue_depth 3"), "{om}");
        assert!(
            om.contains(
                "anomalyd_build_info{version=\"0.1.0\",model=\"all-MiniLM-L6-v2\",index=\"IVF64,SQ8\"} 1"
            ),
            "{om}"
        );
        assert!(
            om.contains("anomalyd_commit_latency_seconds_count 1"),
            "{om}"
        );
    }

    #[test]
    fn the_text_format_names_counter_families_with_total_and_drops_openmetrics_lines() {
        let (_, exposition) = exposition();
        let text = exposition.text();
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE anomalyd_events_total counter"),
            "{text}"
        );
        assert!(text.contains("# HELP anomalyd_events_total "), "{text}");
        assert!(text.contains("# TYPE anomalyd_queue_depth gauge"), "{text}");
        assert!(
            text.contains("# TYPE anomalyd_commit_latency_seconds histogram"),
            "{text}"
        );
        // Every sample belongs to a family declared before it, under its own name or a
        // histogram's suffix.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|base| declared.iter().any(|d| d == base))
                    .unwrap_or(name);
                assert!(
                    declared.iter().any(|d| d == family),
                    "{name} undeclared in\n{text}"
                );
            }
        }
    }

    #[test]
    fn requests_get_metrics_in_the_format_they_ask_for() {
        let (_, exposition) = exposition();
        let text = |head: &str| String::from_utf8(respond(head, &exposition)).unwrap();
        let plain = text("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(plain.starts_with("HTTP/1.1 200 OK\r\n"), "{plain}");
        assert!(plain.contains("text/plain; version=0.0.4"), "{plain}");
        let om = text("GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n");
        assert!(
            om.contains("application/openmetrics-text") && om.ends_with("# EOF\n"),
            "{om}"
        );
        assert!(text("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let post = text("POST /metrics HTTP/1.1\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"),
            "{post}"
        );
        let head = text("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.ends_with("\r\n\r\n"),
            "a HEAD answer has no body: {head}"
        );
    }

    #[test]
    fn the_textfile_is_replaced_whole_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anomalyd.prom");
        write_textfile(&path, "a 1\n").unwrap();
        write_textfile(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("anomalyd.prom")]);
        let missing = dir.path().join("no/such/dir/anomalyd.prom");
        let e = write_textfile(&missing, "a 1\n").unwrap_err().to_string();
        assert!(
            e.contains("metrics.textfile") && e.contains("no/such/dir"),
            "{e}"
        );
    }
}
