//! Emits [`Signal`]s on a bus exactly as systemd, NetworkManager and logind do: from a connection
//! that owns the service's well-known name, on the same object paths, with the same bodies, and
//! serving the objects (devices, sessions) the daemon asks about.

use std::collections::HashMap;

use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};
use zbus::Connection;

use super::scenario::Signal;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const NETWORK_MANAGER: &str = "org.freedesktop.NetworkManager";
const LOGIN1: &str = "org.freedesktop.login1";

/// A NetworkManager device object: the daemon asks it for its interface name.
struct Device {
    interface: String,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
impl Device {
    #[zbus(property)]
    fn interface(&self) -> String {
        self.interface.clone()
    }
}

/// A logind session object: the daemon asks it who, from where, and how.
struct Session {
    user: String,
    remote_host: String,
}

#[zbus::interface(name = "org.freedesktop.login1.Session")]
impl Session {
    #[zbus(property)]
    fn name(&self) -> String {
        self.user.clone()
    }
    #[zbus(property)]
    fn seat(&self) -> (String, OwnedObjectPath) {
        (
            String::new(),
            OwnedObjectPath::try_from("/").expect("root path"),
        )
    }
    #[zbus(property)]
    fn class(&self) -> String {
        "user".into()
    }
    #[zbus(property)]
    fn service(&self) -> String {
        "sshd".into()
    }
    #[zbus(property)]
    fn remote_host(&self) -> String {
        self.remote_host.clone()
    }
}

/// systemd's Manager, as far as the daemon uses it: `Subscribe()` asks for unit and job signals.
struct Manager;

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn subscribe(&self) {}
}

/// NetworkManager's root object: the daemon learns the active connections when NM appears.
struct NetworkManagerRoot;

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl NetworkManagerRoot {
    #[zbus(property)]
    fn active_connections(&self) -> Vec<OwnedObjectPath> {
        Vec::new()
    }
}

pub struct Replayer {
    systemd: Connection,
    network_manager: Connection,
    login1: Connection,
}

/// systemd's object-path escaping: every byte outside `[A-Za-z0-9]` becomes `_xx`.
pub fn unit_path(unit: &str) -> String {
    let mut path = String::from("/org/freedesktop/systemd1/unit/");
    for b in unit.bytes() {
        if b.is_ascii_alphanumeric() {
            path.push(b as char);
        } else {
            path.push_str(&format!("_{b:02x}"));
        }
    }
    path
}

/// logind's object path for session `id` (the leading digit escaped, as logind does).
fn session_path(id: u32) -> String {
    format!("/org/freedesktop/login1/session/_3{id}")
}

async fn owner_of(address: &str, name: &'static str) -> zbus::Result<Connection> {
    zbus::connection::Builder::address(address)?
        .name(name)?
        .build()
        .await
}

impl Replayer {
    pub async fn start(address: &str) -> zbus::Result<Replayer> {
        Ok(Replayer {
            systemd: zbus::connection::Builder::address(address)?
                .serve_at("/org/freedesktop/systemd1", Manager)?
                .name(SYSTEMD)?
                .build()
                .await?,
            network_manager: zbus::connection::Builder::address(address)?
                .serve_at("/org/freedesktop/NetworkManager", NetworkManagerRoot)?
                .name(NETWORK_MANAGER)?
                .build()
                .await?,
            login1: owner_of(address, LOGIN1).await?,
        })
    }

    /// Emits the signal (and serves what it refers to); returns how many bus signals were sent.
    pub async fn emit(&self, signal: &Signal) -> zbus::Result<usize> {
        self.emit_stamped(signal, None).await
    }

    /// As [`Replayer::emit`]; a unit change also carries `StateChangeTimestamp` = `stamp_usec`,
    /// as systemd's own do. The daemon keeps it in the record's fields (never in the text), so a
    /// load generator can tell when each committed change was sent.
    pub async fn emit_stamped(
        &self,
        signal: &Signal,
        stamp_usec: Option<u64>,
    ) -> zbus::Result<usize> {
        match signal {
            Signal::Unit {
                unit,
                active,
                sub,
                result,
            } => {
                let path = unit_path(unit);
                // systemd sends the unit type's own interface first, then the Unit interface.
                if let Some(result) = result {
                    let mut changed: HashMap<&str, Value<'_>> = HashMap::new();
                    changed.insert("Result", Value::from(*result));
                    // Volatile: must not reach the embedded text.
                    changed.insert("MainPID", Value::from(0u32));
                    self.properties_changed(&path, "org.freedesktop.systemd1.Service", changed)
                        .await?;
                }
                let mut changed: HashMap<&str, Value<'_>> = HashMap::new();
                changed.insert("ActiveState", Value::from(*active));
                changed.insert("SubState", Value::from(*sub));
                if let Some(stamp) = stamp_usec {
                    changed.insert("StateChangeTimestamp", Value::from(stamp));
                }
                self.properties_changed(&path, "org.freedesktop.systemd1.Unit", changed)
                    .await?;
                if result.is_some() {
                    return Ok(2);
                }
            }
            Signal::JobRemoved { id, unit, result } => {
                let job = ObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}"))?;
                self.systemd
                    .emit_signal(
                        None::<&str>,
                        "/org/freedesktop/systemd1",
                        "org.freedesktop.systemd1.Manager",
                        "JobRemoved",
                        &(*id, job, *unit, *result),
                    )
                    .await?;
            }
            Signal::Device {
                index,
                interface,
                new,
                old,
                reason,
            } => {
                let path = format!("/org/freedesktop/NetworkManager/Devices/{index}");
                let server = self.network_manager.object_server();
                if server.interface::<_, Device>(path.as_str()).await.is_err() {
                    server
                        .at(
                            path.as_str(),
                            Device {
                                interface: interface.to_string(),
                            },
                        )
                        .await?;
                }
                self.network_manager
                    .emit_signal(
                        None::<&str>,
                        path.as_str(),
                        "org.freedesktop.NetworkManager.Device",
                        "StateChanged",
                        &(*new, *old, *reason),
                    )
                    .await?;
            }
            Signal::NetworkState(state) => {
                self.network_manager
                    .emit_signal(
                        None::<&str>,
                        "/org/freedesktop/NetworkManager",
                        NETWORK_MANAGER,
                        "StateChanged",
                        &(*state,),
                    )
                    .await?;
            }
            Signal::SessionNew {
                id,
                user,
                remote_host,
            } => {
                let path = session_path(*id);
                self.login1
                    .object_server()
                    .at(
                        path.as_str(),
                        Session {
                            user: user.to_string(),
                            remote_host: remote_host.to_string(),
                        },
                    )
                    .await?;
                let object = ObjectPath::try_from(path.as_str())?;
                self.login1_manager_signal("SessionNew", &(id.to_string(), object))
                    .await?;
            }
            Signal::SessionRemoved { id } => {
                let path = session_path(*id);
                let object = ObjectPath::try_from(path.as_str())?;
                self.login1_manager_signal("SessionRemoved", &(id.to_string(), object))
                    .await?;
                // logind drops the object at once; the replay keeps it a moment longer so the
                // daemon's lookup of a short-lived session never races its removal at high rates.
                let server = self.login1.object_server().clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    let _ = server.remove::<Session, _>(path.as_str()).await;
                });
            }
            Signal::PrepareForShutdown(start) => {
                self.login1_manager_signal("PrepareForShutdown", &(*start,))
                    .await?;
            }
        }
        Ok(1)
    }

    /// A broadcast signal of logind's Manager object.
    async fn login1_manager_signal<B>(&self, member: &str, body: &B) -> zbus::Result<()>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.login1
            .emit_signal(
                None::<&str>,
                "/org/freedesktop/login1",
                "org.freedesktop.login1.Manager",
                member,
                body,
            )
            .await
    }

    async fn properties_changed(
        &self,
        path: &str,
        interface: &str,
        changed: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<()> {
        let invalidated: Vec<&str> = Vec::new();
        self.systemd
            .emit_signal(
                None::<&str>,
                path,
                "org.freedesktop.DBus.Properties",
                "PropertiesChanged",
                &(interface, changed, invalidated),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_round_trip_through_the_daemons_decoder() {
        for unit in [
            "nginx.service",
            "getty@tty1.service",
            "srv-data.mount",
            "php8.2-fpm.service",
        ] {
            let path = unit_path(unit);
            assert_eq!(
                crate::sources::decode_unit_path(&path).as_deref(),
                Some(unit),
                "{path}"
            );
        }
    }
}
