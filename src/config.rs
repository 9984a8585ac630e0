//! Configuration: a TOML file deserialised into [`RawConfig`] (every key optional, unknown keys
//! rejected), then validated into the immutable [`Config`] the daemon runs with.
//!
//! Every rule lives in [`RawConfig::validate`]; a broken rule becomes a [`ConfigError::Invalid`] that
//! names the file, the key, the value and the rule, e.g.
//! `config/anomalyd.toml: detector.k = 0: must be between 1 and 1024`.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the daemon reads its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/anomalyd/anomalyd.toml";
/// The well-known name the daemon takes once every object is served.
pub const DEFAULT_BUS_NAME: &str = "org.anomalyd.Detector1";
/// Dimension of every embedding (MiniLM-L6's hidden size; the hashing embedder matches it).
pub const EMBEDDING_DIM: u32 = 384;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    /// A key holds a value its rule forbids.
    #[error("{path}: {key} = {value}: {rule}")]
    Invalid {
        path: String,
        key: String,
        value: String,
        rule: String,
    },
}

/// Which bus the daemon watches and serves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusTarget {
    System,
    Session,
    /// A D-Bus address such as `unix:path=/run/dbus/system_bus_socket`.
    Address(String),
}

impl BusTarget {
    /// Parses the `--bus` flag: `system`, `session`, or a D-Bus address.
    pub fn parse(text: &str) -> Result<BusTarget, String> {
        match text {
            "system" => Ok(BusTarget::System),
            "session" => Ok(BusTarget::Session),
            address if address.contains(':') => {
                zbus::Address::try_from(address)
                    .map_err(|e| format!("not a D-Bus address: {e}"))?;
                Ok(BusTarget::Address(address.to_owned()))
            }
            _ => {
                Err("must be system, session, or a D-Bus address such as unix:path=/run/bus".into())
            }
        }
    }
}

impl Display for BusTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusTarget::System => f.write_str("system"),
            BusTarget::Session => f.write_str("session"),
            BusTarget::Address(a) => f.write_str(a),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// journald when started by systemd (JOURNAL_STREAM set), stderr otherwise.
    Auto,
    Journald,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2 from `embedder.model_dir`.
    MiniLm,
    /// Deterministic feature hashing: only for installs without the model, and only when asked for.
    Hashing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Off,
    Normal,
    Full,
    Extra,
}

impl Synchronous {
    pub fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumaBinding {
    /// The node local to the GPU in use; no binding when there is no GPU.
    Auto,
    Off,
    Node(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuSelection {
    /// The GPU when the driver, NVRTC and cuBLAS load and a warm-up batch matches the CPU.
    Auto,
    Off,
    Device(u32),
}

/// A custom D-Bus match rule from `[[sources.custom]]`, already parsed.
#[derive(Debug, Clone)]
pub struct CustomSource {
    pub rule: String,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub log: LogTarget,
    pub log_level: String,
}

#[derive(Debug, Clone)]
pub struct SourcesConfig {
    pub systemd: bool,
    pub network_manager: bool,
    pub login1: bool,
    pub udisks2: bool,
    pub queue_capacity: usize,
    pub lookup_timeout: Duration,
    /// Signals larger than this (serialised body, in bytes) are skipped and counted.
    pub max_signal_bytes: usize,
    pub custom: Vec<CustomSource>,
}

/// What stays out of the embedded text; see [`crate::render::volatile`].
#[derive(Debug, Clone)]
pub struct RenderConfig {
    pub volatile: std::sync::Arc<crate::render::VolatileRules>,
}

#[derive(Debug, Clone)]
pub struct EmbedderConfig {
    pub kind: EmbedderKind,
    /// Absolute: a relative `embedder.model_dir` is resolved against the state directory.
    pub model_dir: PathBuf,
    /// Threads for the CPU backend; 0 = every core this process may run on.
    pub threads: usize,
    /// Vectors kept by canonical text; 0 turns the cache off.
    pub cache_entries: usize,
    pub batch_size: usize,
    pub batch_max_wait: Duration,
}

/// Where the trained index is searched (`gpu.index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexPlacement {
    /// On a GPU when this build has FAISS GPU support and the index fits its limits.
    Auto,
    /// On a GPU, or start-up stops.
    Gpu,
    #[default]
    Cpu,
    /// Every GPU use is off (`gpu.device = "off"`).
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuSearchConfig {
    pub placement: IndexPlacement,
    /// The CUDA device a mirror goes to: the first GPU named in `[gpu]`, else 0.
    pub device: u32,
    /// Scratch memory FAISS may hold on that GPU.
    pub temp_memory_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct DetectorConfig {
    pub index: String,
    pub k: usize,
    /// The fixed threshold, or the floor under the calibrated one.
    pub threshold: f32,
    /// Quantile of recent baseline scores that sets the threshold; 0 = fixed threshold.
    pub calibration_quantile: f64,
    /// Recent baseline scores the quantile is taken over.
    pub calibration_window: usize,
    /// The calibrated threshold never rises above this.
    pub alert_ceiling: f32,
    /// Added to the distance as `rarity_weight / (1 + ln count)` of the nearest baseline text.
    pub rarity_weight: f32,
    pub warmup_events: u64,
    /// An event that differs from its nearest baseline text only in variable template slots is
    /// an anomaly above this many times its source's threshold (1 = no such allowance).
    pub variable_slot_factor: f32,
    /// Distinct baseline texts a slot must have held to count as variable.
    pub variable_slot_values: u32,
    /// An incident closes after this long without a repeat (zero: only by a benign mark).
    pub incident_quiet: Duration,
    /// Candidates probed per query once the index is IVF.
    pub nprobe: usize,
    /// Distinct vectors before a trained index is built (exact search until then).
    pub train_min_vectors: usize,
    /// Retrain once the baseline has grown by this factor since the last training.
    pub retrain_growth: f64,
    /// Retrain once this share of the texts added since the last training lie farther from
    /// every IVF list centre than 90% of the training texts did; 0 = never for drift.
    pub retrain_drift: f64,
    /// How often the baseline snapshot is rewritten while it changes; 0 = only at shutdown.
    pub snapshot_interval: Duration,
    pub suppress: Vec<SuppressRule>,
    /// From `[gpu]`: whether the trained index is mirrored to a GPU for search.
    pub gpu_search: GpuSearchConfig,
}

/// Known noise: events from `source` (any source when `None`) whose text matches `pattern`,
/// until `until_usec` (for ever when `None`), are recorded as `suppressed`.
#[derive(Debug, Clone)]
pub struct SuppressRule {
    pub name: String,
    pub source: Option<crate::event::Source>,
    pub pattern: regex::Regex,
    pub until_usec: Option<u64>,
}

impl SuppressRule {
    pub fn matches(&self, event: &crate::event::Event, now_usec: u64) -> bool {
        self.until_usec.is_none_or(|until| now_usec < until)
            && self.source.is_none_or(|s| s == event.source)
            && self.pattern.is_match(&event.text)
    }

    /// The rule as recorded in the start record.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "source": self.source.map(|s| s.as_str()),
            "pattern": self.pattern.as_str(),
            "until_usec": self.until_usec,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub db: PathBuf,
    pub synchronous: Synchronous,
    /// A checkpoint `(seq, hash)` is written after this many records…
    pub checkpoint_records: u64,
    /// …or this long after the last one, whichever comes first.
    pub checkpoint_interval: Duration,
    /// The checkpoint file, outside the database; `None` writes checkpoints to the log only.
    pub checkpoint_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub bus_name: String,
}

/// The Prometheus exposition: an HTTP endpoint, a node_exporter textfile, both or neither.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// `GET /metrics` served here; `None`: no endpoint.
    pub listen: Option<std::net::SocketAddr>,
    /// The textfile collector's file (`*.prom`), replaced atomically; `None`: none.
    pub textfile: Option<PathBuf>,
    /// How often the textfile is rewritten.
    pub textfile_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct NumaConfig {
    pub bind: NumaBinding,
}

#[derive(Debug, Clone)]
pub struct GpuConfig {
    pub device: GpuSelection,
    /// Several GPUs, one embedder thread each; empty = as `device` says.
    pub devices: Vec<u32>,
    /// Batches in flight per GPU, each on its own CUDA stream.
    pub streams: usize,
}

impl GpuConfig {
    /// The GPUs named explicitly (`devices`, or `device = N`); `None` for "auto" and "off".
    pub fn named_devices(&self) -> Option<Vec<u32>> {
        match self.device {
            GpuSelection::Device(n) => Some(vec![n]),
            _ if !self.devices.is_empty() => Some(self.devices.clone()),
            _ => None,
        }
    }
}

/// The validated, immutable configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages ("built-in defaults" when no file was read).
    pub origin: String,
    pub daemon: DaemonConfig,
    pub bus: BusTarget,
    pub sources: SourcesConfig,
    pub render: RenderConfig,
    pub embedder: EmbedderConfig,
    pub detector: DetectorConfig,
    pub audit: AuditConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
    pub numa: NumaConfig,
    pub gpu: GpuConfig,
}

impl Config {
    /// The audit database path, resolved against the state directory.
    pub fn audit_db_path(&self) -> PathBuf {
        self.daemon.state_dir.join(&self.audit.db)
    }

    /// The baseline snapshot (vectors and trained index), beside the audit database.
    pub fn snapshot_path(&self) -> PathBuf {
        self.daemon.state_dir.join("baseline.snapshot")
    }

    /// The checkpoint file, resolved against the state directory; `None` when turned off.
    pub fn checkpoint_path(&self) -> Option<PathBuf> {
        self.audit
            .checkpoint_file
            .as_ref()
            .map(|f| self.daemon.state_dir.join(f))
    }

    /// Reads and validates `path`; `None` reads [`DEFAULT_CONFIG_PATH`] when it exists and uses the
    /// built-in defaults otherwise. `overrides` (command-line flags) win over the file and are
    /// validated with it.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let (origin, text) = match path {
            Some(p) => (p.display().to_string(), Some(read(p)?)),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                let p = Path::new(DEFAULT_CONFIG_PATH);
                (DEFAULT_CONFIG_PATH.to_owned(), Some(read(p)?))
            }
            None => ("built-in defaults".to_owned(), None),
        };
        let raw = match text {
            Some(t) => RawConfig::parse(&t, &origin)?,
            None => RawConfig::default(),
        };
        raw.apply(overrides).validate(&origin)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        RawConfig::parse(text, origin)?.validate(origin)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Command-line flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bus: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub log: Option<String>,
    /// `--model DIR`; relative to the working directory.
    pub model: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// The file as written: every key optional (its default applies), unknown keys rejected.

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub daemon: RawDaemon,
    pub bus: RawBus,
    pub sources: RawSources,
    pub render: RawRender,
    pub embedder: RawEmbedder,
    pub detector: RawDetector,
    pub audit: RawAudit,
    pub api: RawApi,
    pub metrics: RawMetrics,
    pub numa: RawNuma,
    pub gpu: RawGpu,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawDaemon {
    pub state_dir: PathBuf,
    pub log: String,
    pub log_level: String,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            state_dir: PathBuf::from("/var/lib/anomalyd"),
            log: "auto".into(),
            log_level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawBus {
    pub kind: String,
    pub address: String,
}

impl Default for RawBus {
    fn default() -> Self {
        RawBus {
            kind: "system".into(),
            address: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSources {
    pub systemd: bool,
    pub network_manager: bool,
    pub login1: bool,
    pub udisks2: bool,
    pub queue_capacity: i64,
    pub lookup_timeout_ms: i64,
    pub max_signal_bytes: i64,
    pub custom: Vec<RawCustomSource>,
}

impl Default for RawSources {
    fn default() -> Self {
        RawSources {
            systemd: true,
            network_manager: true,
            login1: true,
            udisks2: true,
            queue_capacity: 8192,
            lookup_timeout_ms: 250,
            max_signal_bytes: 65536,
            custom: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawCustomSource {
    pub rule: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRender {
    pub volatile_keys: Vec<String>,
    pub volatile_values: Vec<RawVolatileValue>,
}

impl Default for RawRender {
    fn default() -> Self {
        use crate::render::volatile::{DEFAULT_VOLATILE_KEYS, DEFAULT_VOLATILE_VALUES};
        RawRender {
            volatile_keys: DEFAULT_VOLATILE_KEYS
                .iter()
                .map(|k| k.to_string())
                .collect(),
            volatile_values: DEFAULT_VOLATILE_VALUES
                .iter()
                .map(|(pattern, replace)| RawVolatileValue {
                    pattern: pattern.to_string(),
                    replace: replace.to_string(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawVolatileValue {
    pub pattern: String,
    pub replace: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawEmbedder {
    pub kind: String,
    pub model_dir: PathBuf,
    pub threads: i64,
    pub cache_entries: i64,
    pub batch_size: i64,
    pub batch_max_wait_ms: i64,
}

/// Where the service finds the model; `scripts/fetch-model DIR` installs it.
pub const DEFAULT_MODEL_DIR: &str = "/var/lib/anomalyd/models/all-MiniLM-L6-v2";

impl Default for RawEmbedder {
    fn default() -> Self {
        RawEmbedder {
            kind: "minilm".into(),
            model_dir: PathBuf::from(DEFAULT_MODEL_DIR),
            threads: 0,
            cache_entries: 16384,
            batch_size: 64,
            batch_max_wait_ms: 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetector {
    pub index: String,
    pub k: i64,
    pub threshold: f64,
    pub calibration_quantile: f64,
    pub calibration_window: i64,
    pub alert_ceiling: f64,
    pub rarity_weight: f64,
    pub warmup_events: i64,
    pub variable_slot_factor: f64,
    pub variable_slot_values: i64,
    pub incident_quiet_s: i64,
    pub nprobe: i64,
    pub train_min_vectors: i64,
    pub retrain_growth: f64,
    pub retrain_drift: f64,
    pub snapshot_interval_s: i64,
    pub suppress: Vec<RawSuppressRule>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSuppressRule {
    pub name: String,
    #[serde(default)]
    pub source: Option<String>,
    pub pattern: String,
    #[serde(default)]
    pub until: Option<toml::value::Datetime>,
}

/// Microseconds since the epoch of a TOML offset date-time (`2026-12-31T00:00:00Z`).
fn datetime_usec(dt: &toml::value::Datetime) -> Result<u64, &'static str> {
    let (Some(date), Some(time), Some(offset)) = (dt.date, dt.time, dt.offset) else {
        return Err("must be a full date-time with an offset, such as 2026-12-31T00:00:00Z");
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, d) = (
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let seconds = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    let usec = seconds * 1_000_000 + i64::from(time.nanosecond) / 1000;
    u64::try_from(usec).map_err(|_| "must be after 1970")
}

impl Default for RawDetector {
    fn default() -> Self {
        RawDetector {
            index: "auto".into(),
            k: 5,
            threshold: 0.05,
            calibration_quantile: 0.97,
            calibration_window: 10_000,
            alert_ceiling: 0.25,
            rarity_weight: 0.01,
            warmup_events: 200,
            variable_slot_factor: 8.0,
            variable_slot_values: 3,
            incident_quiet_s: 86_400,
            nprobe: 4,
            train_min_vectors: 20_000,
            retrain_growth: 2.0,
            retrain_drift: 0.5,
            snapshot_interval_s: 300,
            suppress: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    pub db: PathBuf,
    pub synchronous: String,
    pub checkpoint_records: i64,
    pub checkpoint_interval_s: i64,
    pub checkpoint_file: PathBuf,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            db: PathBuf::from("audit.sqlite"),
            synchronous: "full".into(),
            checkpoint_records: 1000,
            checkpoint_interval_s: 60,
            checkpoint_file: PathBuf::from("checkpoints"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    pub bus_name: String,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            bus_name: DEFAULT_BUS_NAME.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// `host:port`; empty: no endpoint.
    pub listen: String,
    /// An absolute path ending in `.prom`; empty: none.
    pub textfile: PathBuf,
    pub textfile_interval_s: i64,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: String::new(),
            textfile: PathBuf::new(),
            textfile_interval_s: 15,
        }
    }
}

/// `bind` is a string (`"auto"`, `"off"`) or a node number.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum NameOrIndex {
    Name(String),
    Index(i64),
}

impl Display for NameOrIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameOrIndex::Name(n) => write!(f, "{n:?}"),
            NameOrIndex::Index(i) => write!(f, "{i}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawNuma {
    pub bind: NameOrIndex,
}

impl Default for RawNuma {
    fn default() -> Self {
        RawNuma {
            bind: NameOrIndex::Name("auto".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawGpu {
    pub device: NameOrIndex,
    pub devices: Vec<i64>,
    pub streams: i64,
    pub index: String,
    pub index_temp_memory_mib: i64,
}

impl Default for RawGpu {
    fn default() -> Self {
        RawGpu {
            device: NameOrIndex::Name("auto".into()),
            devices: Vec::new(),
            streams: 2,
            index: "auto".into(),
            index_temp_memory_mib: 256,
        }
    }
}

impl RawConfig {
    pub fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })
    }

    /// Command-line flags replace the file's values before validation, so they obey the same rules.
    pub fn apply(mut self, overrides: &Overrides) -> RawConfig {
        if let Some(bus) = &overrides.bus {
            match bus.as_str() {
                "system" | "session" => {
                    self.bus.kind = bus.clone();
                    self.bus.address.clear();
                }
                address => {
                    self.bus.kind = "address".into();
                    self.bus.address = address.to_owned();
                }
            }
        }
        if let Some(dir) = &overrides.state_dir {
            self.daemon.state_dir = dir.clone();
        }
        if let Some(log) = &overrides.log {
            self.daemon.log = log.clone();
        }
        if let Some(model) = &overrides.model {
            self.embedder.model_dir = std::path::absolute(model).unwrap_or_else(|_| model.clone());
        }
        self
    }

    pub fn validate(self, origin: &str) -> Result<Config, ConfigError> {
        let invalid = |key: &str, value: &dyn Display, rule: &str| ConfigError::Invalid {
            path: origin.to_owned(),
            key: key.to_owned(),
            value: value.to_string(),
            rule: rule.to_owned(),
        };
        let quoted = |s: &str| format!("{s:?}");
        let in_range = |key: &str, value: i64, lo: i64, hi: i64| {
            if (lo..=hi).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(
                    key,
                    &value,
                    &format!("must be between {lo} and {hi}"),
                ))
            }
        };

        // [daemon]
        let d = &self.daemon;
        if d.state_dir.as_os_str().is_empty() {
            return Err(invalid(
                "daemon.state_dir",
                &quoted(""),
                "must name a directory",
            ));
        }
        let state_dir = if d.state_dir.is_absolute() {
            d.state_dir.clone()
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(&d.state_dir))
                .unwrap_or_else(|_| d.state_dir.clone())
        };
        let log = match d.log.as_str() {
            "auto" => LogTarget::Auto,
            "journald" => LogTarget::Journald,
            "stderr" => LogTarget::Stderr,
            other => {
                return Err(invalid(
                    "daemon.log",
                    &quoted(other),
                    "must be one of auto, journald, stderr",
                ))
            }
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&d.log_level) {
            return Err(invalid(
                "daemon.log_level",
                &quoted(&d.log_level),
                &format!("must be a tracing filter such as info or anomalyd=debug,zbus=warn ({e})"),
            ));
        }

        // [bus]
        let bus = match (self.bus.kind.as_str(), self.bus.address.is_empty()) {
            ("system", true) => BusTarget::System,
            ("session", true) => BusTarget::Session,
            ("system" | "session", false) => {
                return Err(invalid(
                    "bus.address",
                    &quoted(&self.bus.address),
                    "must be empty unless bus.kind = \"address\"",
                ))
            }
            ("address", _) => match BusTarget::parse(&self.bus.address) {
                Ok(BusTarget::Address(a)) => BusTarget::Address(a),
                _ => {
                    return Err(invalid(
                        "bus.address",
                        &quoted(&self.bus.address),
                        "must be a D-Bus address such as unix:path=/run/dbus/system_bus_socket",
                    ))
                }
            },
            (other, _) => {
                return Err(invalid(
                    "bus.kind",
                    &quoted(other),
                    "must be one of system, session, address",
                ))
            }
        };

        // [sources]
        let s = &self.sources;
        let queue_capacity =
            in_range("sources.queue_capacity", s.queue_capacity, 16, 1 << 20)? as usize;
        let lookup_timeout_ms =
            in_range("sources.lookup_timeout_ms", s.lookup_timeout_ms, 1, 10_000)?;
        let max_signal_bytes = in_range(
            "sources.max_signal_bytes",
            s.max_signal_bytes,
            1024,
            64 << 20,
        )? as usize;
        let mut custom = Vec::with_capacity(s.custom.len());
        for (i, c) in s.custom.iter().enumerate() {
            let key = format!("sources.custom[{i}].rule");
            let rule = zbus::MatchRule::try_from(c.rule.as_str()).map_err(|e| {
                invalid(
                    &key,
                    &quoted(&c.rule),
                    &format!("must be a D-Bus match rule ({e})"),
                )
            })?;
            if rule.msg_type() != Some(zbus::message::Type::Signal) {
                return Err(invalid(
                    &key,
                    &quoted(&c.rule),
                    "must select signals: include type='signal'",
                ));
            }
            if rule.sender().is_none() && rule.interface().is_none() {
                return Err(invalid(
                    &key,
                    &quoted(&c.rule),
                    "must name a sender= or an interface=, so it cannot match every signal on the bus",
                ));
            }
            custom.push(CustomSource {
                rule: c.rule.clone(),
            });
        }

        // [render]
        let r = &self.render;
        let volatile = crate::render::VolatileRules::new(
            r.volatile_keys.iter().cloned(),
            r.volatile_values
                .iter()
                .map(|v| (v.pattern.clone(), v.replace.clone())),
        )
        .map_err(|bad| {
            let (key, value) = if bad.list == "keys" {
                (
                    format!("render.volatile_keys[{}]", bad.index),
                    quoted(&r.volatile_keys[bad.index]),
                )
            } else {
                (
                    format!("render.volatile_values[{}].pattern", bad.index),
                    quoted(&r.volatile_values[bad.index].pattern),
                )
            };
            invalid(&key, &value, &bad.error.to_string())
        })?;

        // [embedder]
        let e = &self.embedder;
        let kind = match e.kind.as_str() {
            "minilm" => EmbedderKind::MiniLm,
            "hashing" => EmbedderKind::Hashing,
            other => {
                return Err(invalid(
                    "embedder.kind",
                    &quoted(other),
                    "must be minilm or hashing",
                ))
            }
        };
        if e.model_dir.as_os_str().is_empty() {
            return Err(invalid(
                "embedder.model_dir",
                &quoted(""),
                "must name the model directory",
            ));
        }
        let model_dir = state_dir.join(&e.model_dir);
        let threads = in_range("embedder.threads", e.threads, 0, 1024)? as usize;
        let cache_entries =
            in_range("embedder.cache_entries", e.cache_entries, 0, 1 << 24)? as usize;
        let batch_size = in_range("embedder.batch_size", e.batch_size, 1, 4096)? as usize;
        let batch_max_wait_ms =
            in_range("embedder.batch_max_wait_ms", e.batch_max_wait_ms, 0, 10_000)?;

        // [detector]
        let det = &self.detector;
        let k = in_range("detector.k", det.k, 1, 1024)? as usize;
        if !(det.threshold.is_finite() && det.threshold > 0.0 && det.threshold <= 2.0) {
            return Err(invalid(
                "detector.threshold",
                &det.threshold,
                "must be greater than 0 and at most 2",
            ));
        }
        let warmup_events =
            in_range("detector.warmup_events", det.warmup_events, 0, 10_000_000)? as u64;
        let q = det.calibration_quantile;
        if !(q == 0.0 || (q.is_finite() && (0.5..1.0).contains(&q))) {
            return Err(invalid(
                "detector.calibration_quantile",
                &q,
                "must be 0 (a fixed threshold) or at least 0.5 and below 1",
            ));
        }
        let calibration_window = in_range(
            "detector.calibration_window",
            det.calibration_window,
            100,
            10_000_000,
        )? as usize;
        if !(det.alert_ceiling.is_finite() && det.alert_ceiling > 0.0 && det.alert_ceiling <= 2.0) {
            return Err(invalid(
                "detector.alert_ceiling",
                &det.alert_ceiling,
                "must be greater than 0 and at most 2 (below detector.threshold it is the threshold)",
            ));
        }
        if !(det.rarity_weight.is_finite() && (0.0..=1.0).contains(&det.rarity_weight)) {
            return Err(invalid(
                "detector.rarity_weight",
                &det.rarity_weight,
                "must be between 0 and 1",
            ));
        }
        if !(det.variable_slot_factor.is_finite()
            && (1.0..=1000.0).contains(&det.variable_slot_factor))
        {
            return Err(invalid(
                "detector.variable_slot_factor",
                &det.variable_slot_factor,
                "must be between 1 (no allowance) and 1000",
            ));
        }
        let variable_slot_values = in_range(
            "detector.variable_slot_values",
            det.variable_slot_values,
            2,
            1_000_000,
        )? as u32;
        let incident_quiet_s = in_range(
            "detector.incident_quiet_s",
            det.incident_quiet_s,
            0,
            31_536_000,
        )? as u64;
        crate::detect::check_factory(&det.index)
            .map_err(|why| invalid("detector.index", &quoted(&det.index), &why))?;
        // FAISS's GPU IVF search caps nprobe at 2048; the same bound keeps CPU configs portable.
        let nprobe = in_range("detector.nprobe", det.nprobe, 1, 2048)? as usize;
        let train_min_vectors = in_range(
            "detector.train_min_vectors",
            det.train_min_vectors,
            1000,
            100_000_000,
        )? as usize;
        if !(det.retrain_growth.is_finite() && (1.1..=100.0).contains(&det.retrain_growth)) {
            return Err(invalid(
                "detector.retrain_growth",
                &det.retrain_growth,
                "must be between 1.1 and 100",
            ));
        }
        // Without drift about 10% of new texts lie beyond the training texts' 90th percentile
        // (a little more, since k-means fitted the training texts): a bar that low retrains for ever.
        if !(det.retrain_drift == 0.0
            || (det.retrain_drift.is_finite() && (0.2..=1.0).contains(&det.retrain_drift)))
        {
            return Err(invalid(
                "detector.retrain_drift",
                &det.retrain_drift,
                "must be 0 (off) or between 0.2 and 1",
            ));
        }
        let snapshot_interval_s = in_range(
            "detector.snapshot_interval_s",
            det.snapshot_interval_s,
            0,
            7 * 86_400,
        )?;
        let mut suppress = Vec::with_capacity(det.suppress.len());
        for (i, rule) in det.suppress.iter().enumerate() {
            let key = |field: &str| format!("detector.suppress[{i}].{field}");
            if rule.name.trim().is_empty() {
                return Err(invalid(
                    &key("name"),
                    &quoted(&rule.name),
                    "must not be empty",
                ));
            }
            let source = match rule.source.as_deref() {
                None => None,
                Some(name) => Some(crate::event::Source::from_name(name).ok_or_else(|| {
                    invalid(
                        &key("source"),
                        &quoted(name),
                        "must be one of systemd, networkmanager, login1, udisks2, custom",
                    )
                })?),
            };
            let pattern = regex::Regex::new(&rule.pattern).map_err(|e| {
                invalid(
                    &key("pattern"),
                    &quoted(&rule.pattern),
                    &format!("not a regular expression: {e}"),
                )
            })?;
            let until_usec = match &rule.until {
                None => None,
                Some(dt) => Some(datetime_usec(dt).map_err(|why| invalid(&key("until"), dt, why))?),
            };
            suppress.push(SuppressRule {
                name: rule.name.clone(),
                source,
                pattern,
                until_usec,
            });
        }

        // [audit]
        if self.audit.db.as_os_str().is_empty() || self.audit.db.file_name().is_none() {
            return Err(invalid(
                "audit.db",
                &quoted(&self.audit.db.display().to_string()),
                "must name a file (relative paths are inside daemon.state_dir)",
            ));
        }
        let checkpoint_records = in_range(
            "audit.checkpoint_records",
            self.audit.checkpoint_records,
            1,
            1 << 32,
        )? as u64;
        let checkpoint_interval_s = in_range(
            "audit.checkpoint_interval_s",
            self.audit.checkpoint_interval_s,
            1,
            86_400,
        )? as u64;
        let checkpoint_file = if self.audit.checkpoint_file.as_os_str().is_empty() {
            None
        } else {
            Some(self.audit.checkpoint_file.clone())
        };
        let synchronous = match self.audit.synchronous.as_str() {
            "off" => Synchronous::Off,
            "normal" => Synchronous::Normal,
            "full" => Synchronous::Full,
            "extra" => Synchronous::Extra,
            other => {
                return Err(invalid(
                    "audit.synchronous",
                    &quoted(other),
                    "must be one of off, normal, full, extra",
                ))
            }
        };

        // [api]
        if zbus::names::WellKnownName::try_from(self.api.bus_name.as_str()).is_err() {
            return Err(invalid(
                "api.bus_name",
                &quoted(&self.api.bus_name),
                "must be a well-known D-Bus name such as org.anomalyd.Detector1",
            ));
        }

        // [metrics]
        let m = &self.metrics;
        let listen = if m.listen.is_empty() {
            None
        } else {
            Some(m.listen.parse::<std::net::SocketAddr>().map_err(|_| {
                invalid(
                    "metrics.listen",
                    &quoted(&m.listen),
                    "must be an IP address and port, such as 127.0.0.1:9464 or [::1]:9464",
                )
            })?)
        };
        let textfile = if m.textfile.as_os_str().is_empty() {
            None
        } else if !m.textfile.is_absolute()
            || m.textfile.extension().and_then(|e| e.to_str()) != Some("prom")
            || m.textfile.file_name().is_none()
        {
            return Err(invalid(
                "metrics.textfile",
                &quoted(&m.textfile.display().to_string()),
                "must be an absolute path ending in .prom (node_exporter's textfile collector reads only *.prom), such as /var/lib/prometheus/node-exporter/anomalyd.prom",
            ));
        } else {
            Some(m.textfile.clone())
        };
        let textfile_interval_s = in_range(
            "metrics.textfile_interval_s",
            m.textfile_interval_s,
            1,
            3600,
        )? as u64;

        // [numa]
        let bind = match &self.numa.bind {
            NameOrIndex::Name(n) if n == "auto" => NumaBinding::Auto,
            NameOrIndex::Name(n) if n == "off" => NumaBinding::Off,
            NameOrIndex::Index(i) => NumaBinding::Node(in_range("numa.bind", *i, 0, 1023)? as u32),
            other => {
                return Err(invalid(
                    "numa.bind",
                    other,
                    "must be \"auto\", \"off\" or a NUMA node number",
                ))
            }
        };

        // [gpu]
        let device = match &self.gpu.device {
            NameOrIndex::Name(n) if n == "auto" => GpuSelection::Auto,
            NameOrIndex::Name(n) if n == "off" => GpuSelection::Off,
            NameOrIndex::Index(i) => {
                GpuSelection::Device(in_range("gpu.device", *i, 0, 63)? as u32)
            }
            other => {
                return Err(invalid(
                    "gpu.device",
                    other,
                    "must be \"auto\", \"off\" or a CUDA device number",
                ))
            }
        };
        let mut devices = Vec::with_capacity(self.gpu.devices.len());
        for &d in &self.gpu.devices {
            let d = in_range("gpu.devices", d, 0, 63)? as u32;
            if devices.contains(&d) {
                return Err(invalid(
                    "gpu.devices",
                    &format!("{:?}", self.gpu.devices),
                    "names a device twice",
                ));
            }
            devices.push(d);
        }
        if !devices.is_empty() && device != GpuSelection::Auto {
            return Err(invalid(
                "gpu.devices",
                &format!("{:?}", self.gpu.devices),
                "is set, so gpu.device must stay \"auto\": use one or the other",
            ));
        }
        let streams = in_range("gpu.streams", self.gpu.streams, 1, 8)? as usize;
        let placement = match (self.gpu.index.as_str(), device) {
            ("gpu", GpuSelection::Off) => {
                return Err(invalid(
                    "gpu.index",
                    &quoted(&self.gpu.index),
                    "needs a GPU, and gpu.device = \"off\"",
                ))
            }
            ("auto" | "cpu", GpuSelection::Off) => IndexPlacement::Off,
            ("auto", _) => IndexPlacement::Auto,
            ("gpu", _) => IndexPlacement::Gpu,
            ("cpu", _) => IndexPlacement::Cpu,
            (other, _) => {
                return Err(invalid(
                    "gpu.index",
                    &quoted(other),
                    "must be \"auto\", \"gpu\" or \"cpu\"",
                ))
            }
        };
        if placement == IndexPlacement::Gpu {
            let candidates = k * crate::detect::CANDIDATE_FACTOR;
            if let Err(limit) = crate::detect::gpu::gpu_plan(&det.index, candidates, nprobe) {
                let value = match limit.key {
                    "detector.k" => k.to_string(),
                    "detector.nprobe" => nprobe.to_string(),
                    _ => quoted(&det.index),
                };
                let rule = format!("with gpu.index = \"gpu\": {}", limit.why);
                return Err(invalid(limit.key, &value, &rule));
            }
        }
        let temp_memory_mib = in_range(
            "gpu.index_temp_memory_mib",
            self.gpu.index_temp_memory_mib,
            16,
            65536,
        )? as usize;
        let gpu_search = GpuSearchConfig {
            placement,
            device: match device {
                GpuSelection::Device(n) => n,
                _ => devices.first().copied().unwrap_or(0),
            },
            temp_memory_bytes: temp_memory_mib << 20,
        };

        Ok(Config {
            origin: origin.to_owned(),
            daemon: DaemonConfig {
                state_dir,
                log,
                log_level: d.log_level.clone(),
            },
            bus,
            sources: SourcesConfig {
                systemd: s.systemd,
                network_manager: s.network_manager,
                login1: s.login1,
                udisks2: s.udisks2,
                queue_capacity,
                lookup_timeout: Duration::from_millis(lookup_timeout_ms as u64),
                max_signal_bytes,
                custom,
            },
            render: RenderConfig {
                volatile: std::sync::Arc::new(volatile),
            },
            embedder: EmbedderConfig {
                kind,
                model_dir,
                threads,
                cache_entries,
                batch_size,
                batch_max_wait: Duration::from_millis(batch_max_wait_ms as u64),
            },
            detector: DetectorConfig {
                index: det.index.clone(),
                k,
                threshold: det.threshold as f32,
                calibration_quantile: q,
                calibration_window,
                alert_ceiling: det.alert_ceiling as f32,
                rarity_weight: det.rarity_weight as f32,
                warmup_events,
                variable_slot_factor: det.variable_slot_factor as f32,
                variable_slot_values,
                incident_quiet: Duration::from_secs(incident_quiet_s),
                nprobe,
                train_min_vectors,
                retrain_growth: det.retrain_growth,
                retrain_drift: det.retrain_drift,
                snapshot_interval: Duration::from_secs(snapshot_interval_s as u64),
                suppress,
                gpu_search,
            },
            audit: AuditConfig {
                db: self.audit.db.clone(),
                synchronous,
                checkpoint_records,
                checkpoint_interval: Duration::from_secs(checkpoint_interval_s),
                checkpoint_file,
            },
            api: ApiConfig {
                bus_name: self.api.bus_name.clone(),
            },
            metrics: MetricsConfig {
                listen,
                textfile,
                textfile_interval: Duration::from_secs(textfile_interval_s),
            },
            numa: NumaConfig { bind },
            gpu: GpuConfig {
                device,
                devices,
                streams,
            },
        })
    }
}
