//! Connecting to a bus, and starting a private `dbus-daemon` (for the demo and the tests).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::config::BusTarget;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to the {target} bus: {source}")]
    Connect {
        target: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("cannot start dbus-daemon (is the dbus-daemon package installed?): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("dbus-daemon printed no address")]
    NoAddress,
}

/// A connection builder for `target`, ready for objects to be served on it.
pub fn builder(target: &BusTarget) -> Result<zbus::connection::Builder<'static>, BusError> {
    let connect = |source| BusError::Connect {
        target: target.to_string(),
        source: Box::new(source),
    };
    let builder = match target {
        BusTarget::System => zbus::connection::Builder::system().map_err(connect)?,
        BusTarget::Session => zbus::connection::Builder::session().map_err(connect)?,
        BusTarget::Address(a) => zbus::connection::Builder::address(a.as_str()).map_err(connect)?,
    };
    // Room for a burst while the signal dispatcher is scheduled out; it drains at once.
    Ok(builder.max_queued(INCOMING_QUEUE))
}

/// Incoming messages zbus buffers before its socket reader waits for us.
const INCOMING_QUEUE: usize = 1024;

pub async fn connect(target: &BusTarget) -> Result<zbus::Connection, BusError> {
    builder(target)?
        .build()
        .await
        .map_err(|source| BusError::Connect {
            target: target.to_string(),
            source: Box::new(source),
        })
}

/// A `dbus-daemon` of our own, with a session-bus policy (anyone may own any name), listening on a
/// socket under `dir`. Killed on drop.
pub struct PrivateBus {
    child: Child,
    address: String,
    socket: PathBuf,
}

impl PrivateBus {
    pub fn spawn(dir: &Path) -> Result<PrivateBus, BusError> {
        std::fs::create_dir_all(dir).map_err(BusError::Spawn)?;
        let socket = dir.join("bus.socket");
        let _ = std::fs::remove_file(&socket);
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .map_err(BusError::Spawn)?;
        let log = std::fs::File::create(dir.join("bus.log")).map_err(BusError::Spawn)?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--print-address=1")
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(BusError::Spawn)?;
        let stdout = child.stdout.take().ok_or(BusError::NoAddress)?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(BusError::Spawn)?;
        let address = line.trim().to_owned();
        if address.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BusError::NoAddress);
        }
        Ok(PrivateBus {
            child,
            address,
            socket,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn target(&self) -> BusTarget {
        BusTarget::Address(self.address.clone())
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}
