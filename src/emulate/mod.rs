//! Stand-ins for the infrastructure the daemon watches, for the demo, the tests and the
//! benchmarks: connections that own `org.freedesktop.systemd1`, `org.freedesktop.NetworkManager`
//! and `org.freedesktop.login1` on a bus and send what those services send, serving the objects
//! the daemon asks about ([`replay`]); a generated day of such signals with injected faults
//! ([`scenario`]); a busy fleet's load ([`load`]); and the daemon itself as a child process.
//! Nothing in the daemon uses this module: it is a client of the daemon, as `anomalyd demo` is.

pub mod load;
pub mod replay;
pub mod scenario;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the bus: {0}")]
    ZBus(#[from] zbus::Error),
    #[error("the bus: {0}")]
    Fdo(#[from] zbus::fdo::Error),
    #[error("bus name {name:?}: {source}")]
    BadName {
        name: String,
        #[source]
        source: zbus::names::Error,
    },
    #[error("the daemon did not take {name} within {timeout:?}; its log:\n{log}")]
    NoDaemon {
        name: String,
        timeout: Duration,
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmulateError {
    let what = what.into();
    move |source| EmulateError::Io { what, source }
}

/// Where `scripts/fetch-model` puts the model when given no directory, relative to the checkout.
pub const PROJECT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// The daemon as a child process, stopped with SIGTERM (as `systemctl stop` would) when dropped.
pub struct DaemonProcess(pub Child);

impl DaemonProcess {
    /// Starts `anomalyd` (the binary at `exe`) on the bus at `address`, its output into `log`.
    pub fn spawn(
        exe: &Path,
        config: &Path,
        address: &str,
        model: Option<&Path>,
        state_dir: &Path,
        log: &Path,
    ) -> Result<DaemonProcess, EmulateError> {
        let out = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        let child = Command::new(exe)
            .arg("--config")
            .arg(config)
            .arg("--bus")
            .arg(address)
            .args(
                model
                    .iter()
                    .flat_map(|m| [std::ffi::OsStr::new("--model"), m.as_os_str()]),
            )
            .arg("--state-dir")
            .arg(state_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("cannot start the daemon {}", exe.display())))?;
        Ok(DaemonProcess(child))
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SIGTERM, as systemctl stop would; the daemon drains and exits 0.
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe {
                libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = self.0.wait();
        }
    }
}

/// Waits until `name` has an owner on the bus; past `timeout` the error quotes the end of `log`.
pub async fn wait_for_name(
    conn: &zbus::Connection,
    name: &str,
    timeout: Duration,
    log: &Path,
) -> Result<(), EmulateError> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let deadline = Instant::now() + timeout;
    let name = zbus::names::BusName::try_from(name).map_err(|source| EmulateError::BadName {
        name: name.to_owned(),
        source,
    })?;
    while Instant::now() < deadline {
        if dbus.name_has_owner(name.clone()).await.unwrap_or(false) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    Err(EmulateError::NoDaemon {
        name: name.to_string(),
        timeout,
        log: tail,
    })
}
