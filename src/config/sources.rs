//! `[sources]`: which services are watched, the intake queue, and operators' own match rules.

use std::time::Duration;

use serde::Deserialize;

use super::{quoted, ConfigError, Rules};

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

/// A custom D-Bus match rule from `[[sources.custom]]`, already parsed.
#[derive(Debug, Clone)]
pub struct CustomSource {
    pub rule: String,
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

impl RawSources {
    pub(super) fn validate(&self, rules: &Rules) -> Result<SourcesConfig, ConfigError> {
        let s = self;
        let queue_capacity =
            rules.in_range("sources.queue_capacity", s.queue_capacity, 16, 1 << 20)? as usize;
        let lookup_timeout_ms =
            rules.in_range("sources.lookup_timeout_ms", s.lookup_timeout_ms, 1, 10_000)?;
        let max_signal_bytes = rules.in_range(
            "sources.max_signal_bytes",
            s.max_signal_bytes,
            1024,
            64 << 20,
        )? as usize;
        let mut custom = Vec::with_capacity(s.custom.len());
        for (i, c) in s.custom.iter().enumerate() {
            let key = format!("sources.custom[{i}].rule");
            let rule = zbus::MatchRule::try_from(c.rule.as_str()).map_err(|e| {
                rules.invalid(
                    &key,
                    &quoted(&c.rule),
                    &format!("must be a D-Bus match rule ({e})"),
                )
            })?;
            if rule.msg_type() != Some(zbus::message::Type::Signal) {
                return Err(rules.invalid(
                    &key,
                    &quoted(&c.rule),
                    "must select signals: include type='signal'",
                ));
            }
            if rule.sender().is_none() && rule.interface().is_none() {
                return Err(rules.invalid(
                    &key,
                    &quoted(&c.rule),
                    "must name a sender= or an interface=, so it cannot match every signal on the bus",
                ));
            }
            custom.push(CustomSource {
                rule: c.rule.clone(),
            });
        }

        Ok(SourcesConfig {
            systemd: s.systemd,
            network_manager: s.network_manager,
            login1: s.login1,
            udisks2: s.udisks2,
            queue_capacity,
            lookup_timeout: Duration::from_millis(lookup_timeout_ms as u64),
            max_signal_bytes,
            custom,
        })
    }
}
