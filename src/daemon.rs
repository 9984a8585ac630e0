//! Start-up, serving, and shutdown. Start-up order is readiness: hardware probe → embedder health
//! and warm-up → audit chain head → pipeline stages → objects served → subscriptions → bus name →
//! READY=1. Shutdown: stop intake → drain every stage → stop record committed → release the name.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};
use zbus::fdo::{RequestNameFlags, RequestNameReply};

use crate::api::{DaemonInfo, DetectorApi, OBJECT_PATH};
use crate::audit::{AuditError, AuditWriter, Committed};
use crate::bus::BusError;
use crate::config::{BusTarget, Config};
use crate::embed::EmbedError;
use crate::event::now_usec;
use crate::metrics::{Metrics, Snapshot};
use crate::notify::{watchdog_interval, Notifier};
use crate::pipeline::{Intake, Pipeline, PipelineError};
use crate::sources::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("state directory {path}: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("baseline: {0}")]
    Detect(#[from] crate::detect::DetectError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Sources(#[from] SourceError),
    // Boxed: zbus::Error is large, and every Result of the daemon carries this enum.
    #[error("cannot serve {what}: {source}")]
    Serve {
        what: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("the bus name {0} is owned by another process (is another anomalyd running?)")]
    NameTaken(String),
    #[error(transparent)]
    Metrics(#[from] crate::prometheus::PrometheusError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl DaemonError {
    /// Errors an operator fixes in the configuration or the install (a missing model), not by a
    /// restart; `main` exits with EX_CONFIG for them.
    pub fn is_setup_error(&self) -> bool {
        match self {
            DaemonError::Config(_) => true,
            DaemonError::Embed(e) => e.is_setup_error(),
            // e.g. `gpu.index = "gpu"` on a machine or build that cannot search on a GPU.
            DaemonError::Detect(e) => e.is_setup_error(),
            _ => false,
        }
    }
}

/// Serves `config` on its own runtime until SIGTERM (`systemctl stop`) or SIGINT: what the
/// `anomalyd` service runs. Tests call [`run`] with their own bus and shutdown instead.
pub fn serve(config: Config) -> Result<RunSummary, DaemonError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("anomalyd-io")
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(async {
        let bus = config.bus.clone();
        run(config, &bus, termination()).await
    })
}

/// Resolves on SIGTERM (systemctl stop) or SIGINT (Ctrl-C).
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}

/// What a clean run leaves behind.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub metrics: Snapshot,
}

/// Runs the daemon on `bus` until `shutdown` resolves, then drains and returns. Tests call this
/// in-process with a private bus; `main` calls it with the configured bus and SIGTERM/SIGINT.
pub async fn run(
    config: Config,
    bus: &BusTarget,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, DaemonError> {
    // `load_config` has run this for `main`; a configuration built another way (tests, benches)
    // is held to the same rules before anything is created.
    crate::detect::check(&config)?;
    let notifier = Notifier::from_env();
    let state_dir = &config.daemon.state_dir;
    std::fs::create_dir_all(state_dir).map_err(|source| DaemonError::StateDir {
        path: state_dir.display().to_string(),
        source,
    })?;

    let _lock = crate::lock::StateLock::acquire(state_dir)?;
    // Bound first, so a port already taken fails the start before any slow work.
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(crate::prometheus::bind(addr).await?),
        None => None,
    };

    notifier.status("probing hardware");
    let mut hardware = crate::hw::probe(config.gpu.device, config.numa.bind);
    info!(numa_nodes = hardware.numa_nodes, cpus = hardware.cpus, gpu = %hardware.gpu, openblas = %crate::embed::blas::core_name(), "hardware");

    notifier.status("warming up the embedder");
    let selection = crate::embed::build(&config)?;
    hardware.placed(&selection);
    let mut embedder = selection.embedder;
    embedder.health()?;
    info!(backend = %embedder.backend(), model = %embedder.model_id(), "embedder healthy");

    notifier.status("opening the audit log");
    let audit_path = config.audit_db_path();
    let audit = AuditWriter::open(&audit_path, config.audit.synchronous, &embedder.model_id())?;
    let (head_seq, head_hash) = audit.head();
    info!(db = %audit_path.display(), head_seq, head_hash = %hex::encode(head_hash), "audit log open");

    notifier.status("loading the baseline");
    let detector = restore_baseline(&config, &audit_path, embedder.as_mut(), &notifier)?;

    let metrics = Arc::new(Metrics::default());
    metrics.baseline_size.store(
        detector.baseline_len(),
        std::sync::atomic::Ordering::Relaxed,
    );
    metrics.store_thresholds(detector.threshold(), &detector.thresholds());
    let embedding_model = embedder.model_id();
    let (notice_tx, notice_rx) = mpsc::channel::<Committed>(1024);
    let (intake, pipeline) = Pipeline::start(
        &config,
        embedder,
        detector,
        audit,
        metrics.clone(),
        notice_tx,
    )?;
    let info = Arc::new(DaemonInfo {
        embedder_backend: pipeline.embedder_backend.clone(),
        model_id: pipeline.model_id.clone(),
        index_description: pipeline.index_description.clone(),
        state_dir: state_dir.display().to_string(),
        audit_db: audit_path.display().to_string(),
        checkpoint_file: config.checkpoint_path().map(|p| p.display().to_string()),
        started_usec: now_usec(),
        hardware,
    });

    let (exporters_stop, exporters) = start_exporters(
        &config,
        metrics_listener,
        &metrics,
        crate::prometheus::BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            model: embedding_model,
            index: info.index_description.clone(),
        },
        &intake,
    );

    let api_intake: crate::api::IntakeSlot = Arc::new(std::sync::Mutex::new(Some(intake.clone())));
    let served = serve_on_bus(
        &config,
        bus,
        &notifier,
        intake.clone(),
        api_intake.clone(),
        metrics.clone(),
        info,
    )
    .await;
    let (conn, source_tasks) = match served {
        Ok(s) => s,
        Err(e) => {
            drop(intake);
            api_intake.lock().map(|mut i| i.take()).ok();
            pipeline.finish().await;
            return Err(e);
        }
    };

    let forwarder = tokio::spawn(forward_anomalies(conn.clone(), notice_rx));
    let publisher = tokio::spawn(crate::api::publish_property_changes(
        conn.clone(),
        Duration::from_secs(1),
    ));
    let watchdog =
        watchdog_interval().map(|interval| tokio::spawn(feed_watchdog(intake.clone(), interval)));
    notifier.notify(&format!(
        "READY=1\nSTATUS=watching {} as {}",
        bus, config.api.bus_name
    ));
    info!(bus = %bus, name = %config.api.bus_name, "ready");

    shutdown.await;

    info!("shutting down: stopping intake and draining the pipeline");
    notifier.notify("STOPPING=1\nSTATUS=draining the pipeline");
    crate::sources::stop(source_tasks).await;
    if let Some(w) = watchdog {
        w.abort();
        let _ = w.await;
    }
    publisher.abort();
    let _ = publisher.await;
    drop(intake);
    // Once the sources and the API's door are gone the pipeline drains.
    api_intake.lock().map(|mut i| i.take()).ok();
    pipeline.finish().await;
    // After the drain, so the textfile's last write holds the final counts.
    let _ = exporters_stop.send(true);
    for exporter in exporters {
        let _ = exporter.await;
    }
    let _ = forwarder.await;
    if let Err(e) = conn.release_name(config.api.bus_name.as_str()).await {
        warn!(error = %e, "could not release the bus name");
    }
    let snapshot = metrics.snapshot();
    info!(
        records = snapshot.records_written,
        anomalies = snapshot.anomalies,
        dropped = snapshot.events_dropped,
        "stopped"
    );
    Ok(RunSummary { metrics: snapshot })
}

/// Starts the Prometheus endpoint and the textfile writer that `[metrics]` asks for; both stop
/// when `true` is sent on the returned channel.
fn start_exporters(
    config: &Config,
    listener: Option<tokio::net::TcpListener>,
    metrics: &Arc<Metrics>,
    build: crate::prometheus::BuildInfo,
    intake: &crate::pipeline::Intake,
) -> (
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    if listener.is_none() && config.metrics.textfile.is_none() {
        return (stop, tasks);
    }
    let exposition = Arc::new(crate::prometheus::Exposition::new(
        metrics.clone(),
        build,
        Arc::new(intake.depth_reader()),
    ));
    if let Some(listener) = listener {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "serving Prometheus metrics at /metrics");
        }
        tasks.push(tokio::spawn(crate::prometheus::serve(
            listener,
            exposition.clone(),
            stopped.clone(),
        )));
    }
    if let Some(path) = config.metrics.textfile.clone() {
        tasks.push(tokio::spawn(crate::prometheus::write_textfile_every(
            path,
            config.metrics.textfile_interval,
            exposition,
            stopped,
        )));
    }
    (stop, tasks)
}

/// How long systemd is asked to wait for the next step of a baseline rebuild (256 texts, about a
/// second on two cores).
const REBUILD_STEP_ALLOWANCE: std::time::Duration = std::time::Duration::from_secs(60);

/// The baseline the audit database holds, its vectors from the snapshot where it agrees and
/// embedded again after that (a missing or damaged snapshot is rebuilt, never fatal).
fn restore_baseline(
    config: &Config,
    audit_path: &std::path::Path,
    embedder: &mut dyn crate::embed::Embedder,
    notifier: &Notifier,
) -> Result<crate::detect::Detector, DaemonError> {
    let rows = crate::audit::read_baseline(audit_path)?;
    let policy = crate::detect::SnapshotPolicy {
        path: config.snapshot_path(),
        interval: config.detector.snapshot_interval,
        model_id: embedder.model_id(),
    };
    let mut bar = crate::offline::Progress::new("rebuilding the baseline");
    let started = std::time::Instant::now();
    let (mut detector, restored) = crate::detect::Detector::restore(
        &config.detector,
        rows,
        policy,
        embedder,
        |done, total| {
            bar.update(done, total);
            // Each step asks systemd for more time to start: a big baseline takes longer than
            // TimeoutStartSec, and a timeout would restart the rebuild for ever. One that stops
            // making progress still times out.
            notifier.notify(&format!(
                "STATUS=rebuilding the baseline: {done}/{total} texts\nEXTEND_TIMEOUT_USEC={}",
                REBUILD_STEP_ALLOWANCE.as_micros()
            ));
        },
    )?;
    // Each source's threshold as it was calibrated before the restart: the recorded scores of
    // its last calibration_window scored events.
    if config.detector.calibration_quantile > 0.0 {
        match crate::audit::read_recent_scores(audit_path, config.detector.calibration_window) {
            Ok(scores) => detector.seed_calibration(scores),
            Err(e) => {
                warn!(error = %e, "could not read the recorded scores; thresholds start at the floor")
            }
        }
    }
    if let Some(problem) = &restored.snapshot_problem {
        warn!(
            snapshot = %config.snapshot_path().display(),
            %problem,
            "baseline snapshot not used in full; re-embedding from the audit log"
        );
    }
    info!(
        texts = detector.baseline_len(),
        events = detector.baseline().events(),
        from_snapshot = restored.from_snapshot,
        embedded = restored.embedded,
        index = %detector.description(),
        search = %detector.search_place(),
        ms = started.elapsed().as_millis() as u64,
        "baseline loaded"
    );
    Ok(detector)
}

/// Serves the API object, subscribes the sources, and only then takes the bus name, so a client
/// that sees the name finds every object in place.
async fn serve_on_bus(
    config: &Config,
    bus: &BusTarget,
    notifier: &Notifier,
    intake: Intake,
    api_intake: crate::api::IntakeSlot,
    metrics: Arc<Metrics>,
    info: Arc<DaemonInfo>,
) -> Result<(zbus::Connection, Vec<tokio::task::JoinHandle<()>>), DaemonError> {
    notifier.status("connecting to the bus");
    let api = DetectorApi::new(metrics.clone(), info, api_intake);
    let conn = crate::bus::builder(bus)?
        .serve_at(OBJECT_PATH, api)
        .map_err(|source| DaemonError::Serve {
            what: OBJECT_PATH.into(),
            source: Box::new(source),
        })?
        .build()
        .await
        .map_err(|source| BusError::Connect {
            target: bus.to_string(),
            source: Box::new(source),
        })?;

    notifier.status("subscribing to infrastructure signals");
    let tasks = crate::sources::start(
        &conn,
        &config.sources,
        config.render.volatile.clone(),
        intake,
        metrics,
    )
    .await?;

    let name = config.api.bus_name.as_str();
    let refused = match conn
        .request_name_with_flags(name, RequestNameFlags::DoNotQueue.into())
        .await
    {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {
            return Ok((conn, tasks))
        }
        Ok(_) | Err(zbus::Error::NameTaken) => DaemonError::NameTaken(name.to_owned()),
        // Typically AccessDenied: the bus policy (config/dbus/) is not installed or names another user.
        Err(source) => DaemonError::Serve {
            what: format!("the bus name {name}"),
            source: Box::new(source),
        },
    };
    crate::sources::stop(tasks).await;
    Err(refused)
}

/// Emits `AnomalyDetected` for each committed anomaly that opens an incident, and
/// `AnomalyRepeated` for each repeat of an open one. Ends when the audit thread is done.
async fn forward_anomalies(conn: zbus::Connection, mut notices: mpsc::Receiver<Committed>) {
    let emitter = match zbus::object_server::SignalEmitter::new(&conn, OBJECT_PATH) {
        Ok(e) => e,
        Err(e) => {
            error!(error = %e, "cannot emit AnomalyDetected");
            return;
        }
    };
    while let Some(c) = notices.recv().await {
        let score = c.score.map(f64::from).unwrap_or(f64::NAN);
        let source = c.source.as_str();
        let emitted = match c.incident {
            Some((incident, repeat)) if repeat > 0 => {
                DetectorApi::anomaly_repeated(
                    &emitter, c.seq, c.ts_usec, source, &c.text, score, incident, repeat,
                )
                .await
            }
            _ => {
                DetectorApi::anomaly_detected(&emitter, c.seq, c.ts_usec, source, &c.text, score)
                    .await
            }
        };
        if let Err(e) = emitted {
            warn!(error = %e, seq = c.seq, "could not emit the anomaly signal");
        }
    }
}

/// Pings systemd's watchdog only while a probe makes it through every pipeline stage: a wedged
/// stage stops the pings and systemd restarts the service.
async fn feed_watchdog(intake: Intake, interval: Duration) {
    let notifier = Notifier::from_env();
    let period = interval / 3;
    info!(
        interval_ms = interval.as_millis() as u64,
        "feeding the systemd watchdog from pipeline health probes"
    );
    loop {
        let started = tokio::time::Instant::now();
        if intake.probe(period).await {
            notifier.notify("WATCHDOG=1");
        } else {
            error!(
                timeout_ms = period.as_millis() as u64,
                "pipeline health probe did not return; withholding the watchdog ping"
            );
        }
        tokio::time::sleep_until(started + period).await;
    }
}
