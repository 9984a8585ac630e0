//! anomalyd: watches infrastructure state changes on D-Bus, embeds each as a short canonical text,
//! scores it by its distance to the nearest past events in a FAISS index, writes every event and
//! verdict to a SHA-256 hash-chained audit log in SQLite, and answers queries on D-Bus.
//!
//! # Layout
//! - [`config`]: the TOML file → validated, immutable [`config::Config`], one module per section;
//!   [`load_config`] adds the detector's own checks.
//! - [`error`]: what the `anomalyd` command fails with, and its exit status.
//! - [`daemon`]: start-up order, serving, shutdown; [`daemon::run`] is what tests call, and
//!   [`daemon::serve`] (its runtime and the signals) what `main` calls.
//! - [`sources`]: bus subscriptions per service, sender-checked, rendered to [`event::Event`]s.
//! - [`render`]: canonical-text helpers shared by the sources.
//! - [`pipeline`]: intake queue → batcher → embed → detect → audit threads, with health probes.
//! - [`embed`]: the [`embed::Embedder`] trait and its backends.
//! - [`detect`]: the baseline (texts, counts, vectors, template slots), its FAISS index and
//!   training, the snapshot, each source's threshold and the verdict.
//! - [`incident`]: which anomaly alerts (opens an incident) and which repeats an open one.
//! - [`journal`]: the structured journal entries a fleet collects (anomalies, checkpoints,
//!   start and stop), each under its own `MESSAGE_ID`.
//! - [`offline`]: `anomalyd score-file` and `anomalyd baseline import`.
//! - [`lock`]: one writer per state directory.
//! - [`audit`]: the hash-chained SQLite log (one writer).
//! - [`api`]: the `org.anomalyd.Detector1` D-Bus interface.
//! - [`access`]: who may call the admin methods.
//! - [`event`]: what flows through the pipeline: events, record kinds, verdicts.
//! - [`metrics`]: the atomic counters behind `Stats`; [`prometheus`]: the same, as Prometheus
//!   metrics (an HTTP endpoint, a node_exporter textfile).
//! - [`hw`]: hwloc topology and CUDA library probe; [`numa`]: binding near a GPU.
//! - [`notify`], [`logging`]: systemd integration; [`manpages`]: man pages from the command line.
//! - [`bus`]: bus connections and a private `dbus-daemon` for the demo and tests.
//! - [`emulate`]: stand-ins for systemd, NetworkManager and login1 on a bus (replayed and generated
//!   signals, fleet load) and the daemon as a child process, for the demo (part of the `anomalyd`
//!   binary), the tests and the benchmarks.

pub mod access;
pub mod api;
pub mod audit;
pub mod bus;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod embed;
pub mod emulate;
pub mod error;
pub mod event;
pub mod hw;
pub mod incident;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod manpages;
pub mod metrics;
pub mod notify;
pub mod numa;
pub mod offline;
pub mod pipeline;
pub mod prometheus;
pub mod render;
pub mod sources;

pub use error::{Error, EXIT_CONFIG};

/// The configuration the daemon and its subcommands run with: `path` (or the default file) with
/// `overrides` applied, validated by [`config`], then checked by the detector for what only it
/// knows ([`detect::check`]: what FAISS can build, what fits a GPU).
pub fn load_config(
    path: Option<&std::path::Path>,
    overrides: &config::Overrides,
) -> Result<config::Config, config::ConfigError> {
    let config = config::Config::load(path, overrides)?;
    detect::check(&config)?;
    Ok(config)
}
