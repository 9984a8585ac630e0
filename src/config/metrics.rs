//! `[metrics]`: the Prometheus endpoint and the node_exporter textfile.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{quoted, ConfigError, Rules};

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

impl RawMetrics {
    pub(super) fn validate(&self, rules: &Rules) -> Result<MetricsConfig, ConfigError> {
        let m = self;
        let listen = if m.listen.is_empty() {
            None
        } else {
            Some(m.listen.parse::<std::net::SocketAddr>().map_err(|_| {
                rules.invalid(
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
            return Err(rules.invalid(
                "metrics.textfile",
                &quoted(&m.textfile.display().to_string()),
                "must be an absolute path ending in .prom (node_exporter's textfile collector reads only *.prom), such as /var/lib/prometheus/node-exporter/anomalyd.prom",
            ));
        } else {
            Some(m.textfile.clone())
        };
        let textfile_interval_s = rules.in_range(
            "metrics.textfile_interval_s",
            m.textfile_interval_s,
            1,
            3600,
        )? as u64;

        Ok(MetricsConfig {
            listen,
            textfile,
            textfile_interval: Duration::from_secs(textfile_interval_s),
        })
    }
}
