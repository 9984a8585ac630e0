//! Subscriptions: one bus match rule per signal family, each read by its own task, rendered to an
//! [`Event`] and handed to the [`Intake`] without blocking.
//!
//! A source's signals are accepted only from the current owner of its well-known name: the match
//! rule names the sender (so the bus routes only the owner's broadcasts), and every message's
//! unique sender is checked against the owner we track through `NameOwnerChanged` (so a unicast
//! signal aimed at us by another process is refused too). A source whose service is absent keeps
//! its subscription and starts working when the service appears.

mod generic;
mod login1;
mod network_manager;
mod systemd;

pub use systemd::decode_unit_path;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use tracing::{debug, info, warn};
use zbus::message::Type;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, MatchRule, Message, MessageStream};

use crate::config::SourcesConfig;
use crate::event::{Event, Source};
use crate::metrics::Metrics;
use crate::pipeline::Intake;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot subscribe to {what}: {source}")]
    Subscribe {
        what: String,
        #[source]
        source: zbus::Error,
    },
    #[error("invalid match rule {rule:?}: {source}")]
    Rule {
        rule: String,
        #[source]
        source: zbus::Error,
    },
}

/// Well-known name → its current unique owner.
#[derive(Clone, Default)]
struct Owners(Arc<RwLock<HashMap<String, String>>>);

impl Owners {
    fn set(&self, name: &str, owner: Option<String>) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        match owner {
            Some(o) => map.insert(name.to_owned(), o),
            None => map.remove(name),
        };
    }

    fn is_owner(&self, name: &str, sender: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_some_and(|o| o == sender)
    }
}

/// Asks a service for what a signal lacks, with a short timeout so intake never waits long.
#[derive(Clone)]
pub(crate) struct Lookup {
    conn: Connection,
    timeout: Duration,
}

impl Lookup {
    /// `org.freedesktop.DBus.Properties.GetAll(interface)` on `path`; `None` on error or timeout.
    pub(crate) async fn properties(
        &self,
        service: &str,
        path: &str,
        interface: &str,
    ) -> Option<HashMap<String, OwnedValue>> {
        let args = (interface,);
        let call = self.conn.call_method(
            Some(service),
            path,
            Some("org.freedesktop.DBus.Properties"),
            "GetAll",
            &args,
        );
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(reply)) => reply.body().deserialize().ok(),
            Ok(Err(e)) => {
                debug!(service, path, error = %e, "property lookup failed");
                None
            }
            Err(_) => {
                debug!(service, path, "property lookup timed out");
                None
            }
        }
    }
}

impl Lookup {
    /// Asks the bus who owns `name` now, records the answer, and says whether it is `sender`.
    async fn confirm_owner(&self, name: &str, sender: &str, owners: &Owners) -> bool {
        let Ok(bus_name) = zbus::names::BusName::try_from(name) else {
            return false;
        };
        let ask = async {
            let dbus = zbus::fdo::DBusProxy::new(&self.conn).await.ok()?;
            dbus.get_name_owner(bus_name)
                .await
                .ok()
                .map(|o| o.to_string())
        };
        let owner = tokio::time::timeout(self.timeout, ask).await.ok().flatten();
        let confirmed = owner.as_deref() == Some(sender);
        owners.set(name, owner);
        confirmed
    }
}

/// How one source turns its signals into events.
enum Renderer {
    Systemd,
    NetworkManager(network_manager::Renderer),
    Login1(login1::Renderer),
    Generic(Source),
}

impl Renderer {
    async fn render(&self, msg: &Message, lookup: &Lookup) -> Option<Event> {
        match self {
            Renderer::Systemd => systemd::render(msg),
            Renderer::NetworkManager(r) => r.render(msg, lookup).await,
            Renderer::Login1(r) => r.render(msg, lookup).await,
            Renderer::Generic(source) => generic::render(*source, msg),
        }
    }
}

struct Subscription {
    source: Source,
    /// The well-known name whose owner alone may send these signals; `None` for custom rules
    /// that name no sender.
    owner: Option<String>,
    rules: Vec<MatchRule<'static>>,
    renderer: Arc<Renderer>,
}

fn signal_rule(
    sender: &str,
    interface: &str,
    member: Option<&str>,
    path_namespace: Option<&str>,
) -> MatchRule<'static> {
    let mut b = MatchRule::builder().msg_type(Type::Signal);
    // The names below are literals of this module; they are valid by construction.
    b = b.sender(sender.to_owned()).expect("valid sender");
    b = b.interface(interface.to_owned()).expect("valid interface");
    if let Some(m) = member {
        b = b.member(m.to_owned()).expect("valid member");
    }
    if let Some(p) = path_namespace {
        b = b
            .path_namespace(p.to_owned())
            .expect("valid path namespace");
    }
    b.build()
}

fn subscriptions(config: &SourcesConfig) -> Result<Vec<Subscription>, SourceError> {
    let mut subs = Vec::new();
    if config.systemd {
        subs.push(Subscription {
            source: Source::Systemd,
            owner: Some(systemd::SERVICE.into()),
            rules: systemd::rules(),
            renderer: Arc::new(Renderer::Systemd),
        });
    }
    if config.network_manager {
        subs.push(Subscription {
            source: Source::NetworkManager,
            owner: Some(network_manager::SERVICE.into()),
            rules: network_manager::rules(),
            renderer: Arc::new(Renderer::NetworkManager(Default::default())),
        });
    }
    if config.login1 {
        subs.push(Subscription {
            source: Source::Login1,
            owner: Some(login1::SERVICE.into()),
            rules: login1::rules(),
            renderer: Arc::new(Renderer::Login1(Default::default())),
        });
    }
    if config.udisks2 {
        subs.push(Subscription {
            source: Source::Udisks2,
            owner: Some(generic::UDISKS2_SERVICE.into()),
            rules: generic::udisks2_rules(),
            renderer: Arc::new(Renderer::Generic(Source::Udisks2)),
        });
    }
    for custom in &config.custom {
        let rule = MatchRule::try_from(custom.rule.as_str())
            .map_err(|source| SourceError::Rule {
                rule: custom.rule.clone(),
                source,
            })?
            .to_owned();
        let owner = match rule.sender() {
            Some(zbus::names::BusName::WellKnown(name)) => Some(name.to_string()),
            _ => None,
        };
        subs.push(Subscription {
            source: Source::Custom,
            owner,
            rules: vec![rule],
            renderer: Arc::new(Renderer::Generic(Source::Custom)),
        });
    }
    Ok(subs)
}

/// Stops intake: ends every source task and waits until each has dropped its `Intake`.
pub async fn stop(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Subscribes every enabled source on `conn` and starts the tasks that feed `intake`. Returns
/// once the bus has accepted every match rule; [`stop`] the returned tasks to stop intake. On
/// error, the tasks already started are stopped before returning.
pub async fn start(
    conn: &Connection,
    config: &SourcesConfig,
    intake: Intake,
    metrics: Arc<Metrics>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, SourceError> {
    let mut tasks = Vec::new();
    match subscribe(conn, config, intake, metrics, &mut tasks).await {
        Ok(()) => Ok(tasks),
        Err(e) => {
            stop(tasks).await;
            Err(e)
        }
    }
}

async fn subscribe(
    conn: &Connection,
    config: &SourcesConfig,
    intake: Intake,
    metrics: Arc<Metrics>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), SourceError> {
    let subs = subscriptions(config)?;
    let owners = Owners::default();
    let lookup = Lookup {
        conn: conn.clone(),
        timeout: config.lookup_timeout,
    };
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(|source| SourceError::Subscribe {
            what: "org.freedesktop.DBus".into(),
            source,
        })?;

    let mut watched: Vec<String> = subs.iter().filter_map(|s| s.owner.clone()).collect();
    watched.sort();
    watched.dedup();
    for name in watched {
        // Follow the owner before asking for it, so no change can slip between the two.
        let rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .sender("org.freedesktop.DBus")
            .and_then(|b| b.member("NameOwnerChanged"))
            .and_then(|b| b.arg(0, name.clone()))
            .map_err(|source| SourceError::Subscribe {
                what: format!("owner changes of {name}"),
                source,
            })?
            .build();
        let stream = MessageStream::for_match_rule(rule, conn, Some(64))
            .await
            .map_err(|source| SourceError::Subscribe {
                what: format!("owner changes of {name}"),
                source,
            })?;
        let current = match zbus::names::BusName::try_from(name.as_str()) {
            Ok(bus_name) => dbus
                .get_name_owner(bus_name)
                .await
                .ok()
                .map(|o| o.to_string()),
            Err(_) => None,
        };
        match &current {
            Some(owner) => {
                info!(service = %name, owner = %owner, "source service present");
                on_owner_appeared(conn, &name);
            }
            None => {
                info!(service = %name, "source service absent; its subscription stays, waiting for it")
            }
        }
        owners.set(&name, current);
        tasks.push(tokio::spawn(follow_owner(
            stream,
            name,
            owners.clone(),
            conn.clone(),
        )));
    }

    for sub in subs {
        // One task per source reads all of its rules' streams merged, so a source's events keep
        // the order the service sent them in, even while a lookup is pending.
        let mut streams = Vec::with_capacity(sub.rules.len());
        for rule in sub.rules {
            let what = rule.to_string();
            let stream = MessageStream::for_match_rule(rule, conn, Some(config.queue_capacity))
                .await
                .map_err(|source| SourceError::Subscribe {
                    what: what.clone(),
                    source,
                })?;
            debug!(rule = %what, "subscribed");
            streams.push(stream);
        }
        tasks.push(tokio::spawn(read_signals(
            futures_util::stream::select_all(streams),
            sub.source,
            sub.owner.clone(),
            sub.renderer.clone(),
            owners.clone(),
            lookup.clone(),
            intake.clone(),
            metrics.clone(),
        )));
    }
    Ok(())
}

async fn follow_owner(mut stream: MessageStream, name: String, owners: Owners, conn: Connection) {
    while let Some(Ok(msg)) = stream.next().await {
        let Ok((_, _, new_owner)) = msg.body().deserialize::<(String, String, String)>() else {
            continue;
        };
        if new_owner.is_empty() {
            warn!(service = %name, "source service left the bus");
            owners.set(&name, None);
        } else {
            info!(service = %name, owner = %new_owner, "source service appeared");
            owners.set(&name, Some(new_owner));
            on_owner_appeared(&conn, &name);
        }
    }
}

/// systemd sends unit and job signals on the system bus only to clients that called
/// `Subscribe()`; ask again whenever systemd (re)appears. Runs aside so intake never waits.
fn on_owner_appeared(conn: &Connection, name: &str) {
    if name != systemd::SERVICE {
        return;
    }
    let conn = conn.clone();
    tokio::spawn(async move {
        let call = conn.call_method(
            Some(systemd::SERVICE),
            "/org/freedesktop/systemd1",
            Some("org.freedesktop.systemd1.Manager"),
            "Subscribe",
            &(),
        );
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(_)) => debug!("subscribed to systemd's unit and job signals"),
            Ok(Err(e)) => {
                warn!(error = %e, "systemd refused Subscribe(); unit signals may not arrive")
            }
            Err(_) => warn!("systemd did not answer Subscribe() within 5s"),
        }
    });
}

#[allow(clippy::too_many_arguments)]
async fn read_signals(
    mut stream: futures_util::stream::SelectAll<MessageStream>,
    source: Source,
    owner: Option<String>,
    renderer: Arc<Renderer>,
    owners: Owners,
    lookup: Lookup,
    intake: Intake,
    metrics: Arc<Metrics>,
) {
    while let Some(next) = stream.next().await {
        let Ok(msg) = next else { continue };
        if let Some(name) = &owner {
            let header = msg.header();
            let sender = header.sender().map(|s| s.as_str()).unwrap_or("");
            // A signal can outrun the NameOwnerChanged that announces its sender (a service
            // that just started); ask the bus once before calling it forged.
            if !owners.is_owner(name, sender) && !lookup.confirm_owner(name, sender, &owners).await
            {
                metrics.events_forged.fetch_add(1, Relaxed);
                warn!(source = source.as_str(), sender, service = %name, "refused a signal from a connection that does not own the service's name");
                continue;
            }
        }
        match renderer.render(&msg, &lookup).await {
            Some(event) => intake.submit(event),
            None => {
                metrics.events_ignored.fetch_add(1, Relaxed);
            }
        }
    }
}
