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
    let filter = EnvFilter::try_new(&filter)
        .map_err(|e| LoggingError::Filter {
            filter: filter.clone(),
            message: e.to_string(),
        })?
        // The journal contract (anomalies, checkpoints, start and stop) goes out whatever the
        // level: a fleet and `anomalyctl verify --journal` depend on it, not on verbosity.
        .add_directive(contract_directive());
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

/// `anomalyd::journal=info`: lets every contract entry through (they are info and warn).
fn contract_directive() -> tracing_subscriber::filter::Directive {
    format!("{}=info", crate::journal::TARGET)
        .parse()
        .expect("a target=level directive parses")
}

/// An error and its causes on one line, `outer: inner: …`, each cause once. Many of our errors
/// put their cause in their own message *and* return it as `source()` (so a journal line read
/// alone is complete); printing the whole chain would say such a cause twice.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("{key}: {reason}")]
        Config { key: &'static str, reason: String },
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        /// Says its cause and returns it as the source too.
        #[error("baseline: {0}")]
        Repeats(#[from] Inner),
        /// Says only what it was doing; the cause comes from the chain.
        #[error("reading {path}")]
        Quiet {
            path: &'static str,
            #[source]
            source: std::io::Error,
        },
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let e = Outer::Repeats(Inner::Config {
            key: "gpu.index",
            reason: "no GPU".into(),
        });
        assert_eq!(error_chain(&e), "baseline: gpu.index: no GPU");
    }

    #[test]
    fn a_cause_not_in_the_message_is_appended() {
        let e = Outer::Quiet {
            path: "/x",
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(error_chain(&e), "reading /x: gone");
    }

    #[test]
    fn an_anyhow_chain_with_context_keeps_every_distinct_link() {
        let inner = Outer::Repeats(Inner::Config {
            key: "detector.k",
            reason: "too large".into(),
        });
        let e = anyhow::Error::new(inner).context("starting");
        assert_eq!(
            error_chain(e.as_ref()),
            "starting: baseline: detector.k: too large"
        );
    }
}
