//! `[render]`: what stays out of the embedded text (volatile keys and values).

use serde::Deserialize;

use super::{quoted, ConfigError, Rules};

/// What stays out of the embedded text; see [`crate::render::volatile`].
#[derive(Debug, Clone)]
pub struct RenderConfig {
    pub volatile: std::sync::Arc<crate::render::VolatileRules>,
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

impl RawRender {
    pub(super) fn validate(&self, rules: &Rules) -> Result<RenderConfig, ConfigError> {
        let r = self;
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
            rules.invalid(&key, &value, &bad.error.to_string())
        })?;

        Ok(RenderConfig {
            volatile: std::sync::Arc::new(volatile),
        })
    }
}
