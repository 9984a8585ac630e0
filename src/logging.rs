//! Logging: journald (structured fields such as SEQ, SOURCE, SCORE kept as journal fields) under
//! systemd, human-readable stderr otherwise.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogTarget;

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot connect to journald: {0}")]
    Journald(#[source] std::io::Error),
    #[error("invalid log filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`.
pub fn init(target: LogTarget, level: &str) -> Result<(), LoggingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ => level.to_owned(),
    };
    let filter = EnvFilter::try_new(&filter).map_err(|e| LoggingError::Filter {
        filter: filter.clone(),
        message: e.to_string(),
    })?;
    let journald = match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    if journald {
        let layer = tracing_journald::layer()
            .map_err(LoggingError::Journald)?
            .with_syslog_identifier("anomalyd".into())
            .with_field_prefix(None);
        tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init();
    }
    Ok(())
}
