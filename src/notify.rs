//! The systemd notification protocol (sd_notify): READY=1, STATUS=…, WATCHDOG=1, STOPPING=1 as
//! datagrams to `$NOTIFY_SOCKET`. A no-op when not started by systemd.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Option<SocketAddr>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            match path.strip_prefix('@') {
                Some(abstract_name) => {
                    SocketAddr::from_abstract_name(abstract_name.as_bytes()).ok()
                }
                None => SocketAddr::from_pathname(&path).ok(),
            }
        });
        Notifier { target }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated assignments). Failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), target));
        if let Err(e) = sent {
            tracing::warn!(error = %e, state, "sd_notify failed");
        }
    }

    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={status}"));
    }
}

/// The watchdog interval systemd asks for (`$WATCHDOG_USEC`, when `$WATCHDOG_PID` is ours or unset).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}
