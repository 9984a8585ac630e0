//! `[daemon]` (where state and logs go) and `[bus]` (which bus is watched and served on).

use std::fmt::Display;
use std::path::PathBuf;

use serde::Deserialize;

use super::{quoted, ConfigError, Rules};

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub log: LogTarget,
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// journald when started by systemd (JOURNAL_STREAM set), stderr otherwise.
    Auto,
    Journald,
    Stderr,
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
    pub fn parse(text: &str) -> Result<BusTarget, BusTargetError> {
        match text {
            "system" => Ok(BusTarget::System),
            "session" => Ok(BusTarget::Session),
            address if address.contains(':') => {
                zbus::Address::try_from(address).map_err(BusTargetError::Address)?;
                Ok(BusTarget::Address(address.to_owned()))
            }
            _ => Err(BusTargetError::Unknown),
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

/// Why a `--bus` value is neither `system`, `session` nor a D-Bus address.
#[derive(Debug, thiserror::Error)]
pub enum BusTargetError {
    #[error("not a D-Bus address: {0}")]
    Address(#[source] zbus::Error),
    #[error("must be system, session, or a D-Bus address such as unix:path=/run/bus")]
    Unknown,
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

impl RawDaemon {
    pub(super) fn validate(&self, rules: &Rules) -> Result<DaemonConfig, ConfigError> {
        let d = self;

        if d.state_dir.as_os_str().is_empty() {
            return Err(rules.invalid("daemon.state_dir", &quoted(""), "must name a directory"));
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
                return Err(rules.invalid(
                    "daemon.log",
                    &quoted(other),
                    "must be one of auto, journald, stderr",
                ))
            }
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&d.log_level) {
            return Err(rules.invalid(
                "daemon.log_level",
                &quoted(&d.log_level),
                &format!("must be a tracing filter such as info or anomalyd=debug,zbus=warn ({e})"),
            ));
        }

        Ok(DaemonConfig {
            state_dir,
            log,
            log_level: d.log_level.clone(),
        })
    }
}

impl RawBus {
    pub(super) fn validate(&self, rules: &Rules) -> Result<BusTarget, ConfigError> {
        let bus = match (self.kind.as_str(), self.address.is_empty()) {
            ("system", true) => BusTarget::System,
            ("session", true) => BusTarget::Session,
            ("system" | "session", false) => {
                return Err(rules.invalid(
                    "bus.address",
                    &quoted(&self.address),
                    "must be empty unless bus.kind = \"address\"",
                ))
            }
            ("address", _) => match BusTarget::parse(&self.address) {
                Ok(BusTarget::Address(a)) => BusTarget::Address(a),
                _ => {
                    return Err(rules.invalid(
                        "bus.address",
                        &quoted(&self.address),
                        "must be a D-Bus address such as unix:path=/run/dbus/system_bus_socket",
                    ))
                }
            },
            (other, _) => {
                return Err(rules.invalid(
                    "bus.kind",
                    &quoted(other),
                    "must be one of system, session, address",
                ))
            }
        };

        Ok(bus)
    }
}
