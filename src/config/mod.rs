//! Configuration: a TOML file deserialised into [`RawConfig`] (every key optional, unknown keys
//! rejected), then validated section by section into the immutable [`Config`] the daemon runs with.
//!
//! Each section has its own module: its raw form as written, its typed form, and the one
//! validation between them. A broken rule becomes a [`ConfigError::Invalid`] that names the file,
//! the key, the value and the rule, e.g.
//! `config/anomalyd.toml: detector.k = 0: must be between 1 and 1024`.
//!
//! This module is a leaf: other modules read it, it reads none of theirs beyond two that import
//! nothing from the crate (`event`'s source names, `render::volatile`'s rule compiler). What only
//! the detector knows (what FAISS can build, what fits a GPU) is checked by `detect::check` after
//! loading; [`crate::load_config`] runs both.

mod audit;
mod daemon;
mod detector;
mod embedder;
mod hardware;
mod metrics;
mod render;
mod sources;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use audit::{ApiConfig, AuditConfig, RawApi, RawAudit, Synchronous};
pub use daemon::{BusTarget, BusTargetError, DaemonConfig, LogTarget, RawBus, RawDaemon};
pub use detector::{DetectorConfig, RawDetector, RawSuppressRule, SuppressRule};
pub use embedder::{EmbedderConfig, EmbedderKind, Precision, RawEmbedder, DEFAULT_MODEL_DIR};
pub use hardware::{
    GpuConfig, GpuSearchConfig, GpuSelection, IndexPlacement, NameOrIndex, NumaBinding, NumaConfig,
    RawGpu, RawNuma,
};
pub use metrics::{MetricsConfig, RawMetrics};
pub use render::{RawRender, RawVolatileValue, RenderConfig};
pub use sources::{CustomSource, RawCustomSource, RawSources, SourcesConfig};

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

    /// Validates every section in the file's order, so the first broken rule is the one reported
    /// (the detector's own checks, `detect::check`, come after all of them).
    pub fn validate(self, origin: &str) -> Result<Config, ConfigError> {
        let rules = Rules { origin };
        let daemon = self.daemon.validate(&rules)?;
        let bus = self.bus.validate(&rules)?;
        let sources = self.sources.validate(&rules)?;
        let render = self.render.validate(&rules)?;
        let embedder = self.embedder.validate(&rules, &daemon.state_dir)?;
        let mut detector = self.detector.validate(&rules)?;
        let audit = self.audit.validate(&rules)?;
        let api = self.api.validate(&rules)?;
        let metrics = self.metrics.validate(&rules)?;
        let numa = self.numa.validate(&rules)?;
        let (gpu, gpu_search) = self.gpu.validate(&rules)?;
        detector.gpu_search = gpu_search;
        Ok(Config {
            origin: origin.to_owned(),
            daemon,
            bus,
            sources,
            render,
            embedder,
            detector,
            audit,
            api,
            metrics,
            numa,
            gpu,
        })
    }
}

/// The file being validated, for the errors the section rules build.
pub(crate) struct Rules<'a> {
    pub(crate) origin: &'a str,
}

impl Rules<'_> {
    /// `key = value` breaks `rule`.
    pub(crate) fn invalid(&self, key: &str, value: &dyn Display, rule: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.to_owned(),
            key: key.to_owned(),
            value: value.to_string(),
            rule: rule.to_owned(),
        }
    }

    /// `value`, when it lies in `lo..=hi`.
    fn in_range(&self, key: &str, value: i64, lo: i64, hi: i64) -> Result<i64, ConfigError> {
        if (lo..=hi).contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(key, &value, &format!("must be between {lo} and {hi}")))
        }
    }

    /// `value`, when it is 0 (never) or lies in `lo..=hi`.
    fn never_or_in_range(
        &self,
        key: &str,
        value: i64,
        lo: i64,
        hi: i64,
    ) -> Result<i64, ConfigError> {
        if value == 0 || (lo..=hi).contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(
                key,
                &value,
                &format!("must be 0 (never) or between {lo} and {hi}"),
            ))
        }
    }
}

/// A string value as an error shows it: quoted, escaped.
pub(crate) fn quoted(s: &str) -> String {
    format!("{s:?}")
}
