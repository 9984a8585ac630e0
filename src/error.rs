//! What the `anomalyd` command can fail with, and the exit status each failure gives.

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::daemon::DaemonError;
use crate::embed::tools::ToolError;
use crate::logging::LoggingError;
use crate::offline::OfflineError;

/// The exit status for configuration errors (sysexits.h EX_CONFIG); the unit's
/// `RestartPreventExitStatus=` names it so systemd does not restart into the same error.
pub const EXIT_CONFIG: u8 = 78;

/// A failure of the daemon or of one of its subcommands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // No #[source]: the configuration error's own message is the whole story, and a source would
    // print it twice in `logging::error_chain`.
    #[error("configuration error: {0}")]
    Config(ConfigError),
    #[error(transparent)]
    Logging(#[from] LoggingError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("writing the man pages: {0}")]
    ManPages(#[source] std::io::Error),
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl Error {
    /// Fixed by the operator (the configuration, a missing model, an impossible device), not by
    /// a restart.
    pub fn is_setup_error(&self) -> bool {
        match self {
            Error::Config(_) => true,
            Error::Daemon(e) => e.is_setup_error(),
            Error::Offline(e) => e.is_setup_error(),
            Error::Tool(e) => e.is_setup_error(),
            Error::Logging(_) | Error::ManPages(_) => false,
        }
    }
}

/// EX_CONFIG for what the operator must fix (the unit's `RestartPreventExitStatus=` names it),
/// 1 for the rest.
impl From<&Error> for ExitCode {
    fn from(e: &Error) -> ExitCode {
        if e.is_setup_error() {
            ExitCode::from(EXIT_CONFIG)
        } else {
            ExitCode::FAILURE
        }
    }
}
