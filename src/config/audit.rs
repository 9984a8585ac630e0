//! `[audit]` (the chain's database, durability and checkpoints) and `[api]` (the bus name).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{quoted, ConfigError, Rules, DEFAULT_BUS_NAME};

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

impl RawAudit {
    pub(super) fn validate(&self, rules: &Rules) -> Result<AuditConfig, ConfigError> {
        if self.db.as_os_str().is_empty() || self.db.file_name().is_none() {
            return Err(rules.invalid(
                "audit.db",
                &quoted(&self.db.display().to_string()),
                "must name a file (relative paths are inside daemon.state_dir)",
            ));
        }
        let checkpoint_records = rules.in_range(
            "audit.checkpoint_records",
            self.checkpoint_records,
            1,
            1 << 32,
        )? as u64;
        let checkpoint_interval_s = rules.in_range(
            "audit.checkpoint_interval_s",
            self.checkpoint_interval_s,
            1,
            86_400,
        )? as u64;
        let checkpoint_file = if self.checkpoint_file.as_os_str().is_empty() {
            None
        } else {
            Some(self.checkpoint_file.clone())
        };
        let synchronous = match self.synchronous.as_str() {
            "off" => Synchronous::Off,
            "normal" => Synchronous::Normal,
            "full" => Synchronous::Full,
            "extra" => Synchronous::Extra,
            other => {
                return Err(rules.invalid(
                    "audit.synchronous",
                    &quoted(other),
                    "must be one of off, normal, full, extra",
                ))
            }
        };

        Ok(AuditConfig {
            db: self.db.clone(),
            synchronous,
            checkpoint_records,
            checkpoint_interval: Duration::from_secs(checkpoint_interval_s),
            checkpoint_file,
        })
    }
}

impl RawApi {
    pub(super) fn validate(&self, rules: &Rules) -> Result<ApiConfig, ConfigError> {
        if zbus::names::WellKnownName::try_from(self.bus_name.as_str()).is_err() {
            return Err(rules.invalid(
                "api.bus_name",
                &quoted(&self.bus_name),
                "must be a well-known D-Bus name such as org.anomalyd.Detector1",
            ));
        }

        Ok(ApiConfig {
            bus_name: self.bus_name.clone(),
        })
    }
}
