//! Subscriptions: one bus match rule per signal family, merged per source, rendered to
//! [`Event`]s and handed to the [`Intake`] without ever blocking the bus connection.
//!
//! Every match rule is added to the bus (`AddMatch`), and one **dispatcher** task reads the
//! connection's single incoming stream, in the order the bus delivered it, and moves each signal
//! that matches a source's rules into that source's bounded queue (dropping, counting and
//! reporting as a gap when the queue is full), so a slow renderer can never make zbus stop
//! reading the socket, and a source's signals keep the order its service sent them in. Each
//! source's **renderer** task checks the sender, asks the service for what a signal lacks (with a
//! short timeout), renders, and submits to the intake queue, which drops into the same gap ledger
//! when full.
//!
//! A source's signals are accepted only from the connection that owned its well-known name at
//! the point in bus order where the signal was sent. The match rule names the sender, so the bus
//! routes only the owner's broadcasts; and every message's unique sender is checked against the
//! owner the dispatcher tracks, so a unicast signal aimed at us by another process is refused
//! and counted in `EventsForged`. The dispatcher follows each watched name's `NameOwnerChanged`
//! on the same ordered stream as the signals (believing only those the bus itself,
//! `org.freedesktop.DBus`, sent: a forged one is refused and counted in `EventsForged` too) and
//! hands each signal to its renderer with the owner as of that signal. There is no shared owner
//! map and no second look-up: the bus delivers a sender's signals before the `NameOwnerChanged`
//! that announces its departure, and the one that announces a new owner before that owner's
//! signals, so the signals of a service that exits at once, or while its renderer's lookups to
//! it are pending, are all still accepted, and those of a new owner are accepted from the first.
//!
//! A source whose service is absent keeps its subscription and starts working when the service
//! appears. Its renderer is told in the same order (should a full queue hold that notice up, the
//! renderer acts on the new owner's first signal instead), so it can subscribe (systemd) or learn
//! the current state (NetworkManager's active connections).
//!
//! Bad input (a signature the service never sends, a wrong variant type, an unknown object path)
//! is skipped, counted in `SignalsMalformed`, and warned about at most every few seconds per source.

mod generic;
mod login1;
mod network_manager;
mod systemd;
mod udisks2;

#[cfg(test)]
mod fuzz;

pub use systemd::decode_unit_path;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use zbus::message::Type;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, MatchRule, Message, MessageStream};

use crate::config::SourcesConfig;
use crate::event::{now_usec, Event, Source};
use crate::metrics::Metrics;
use crate::pipeline::Intake;
use crate::render::VolatileRules;

/// Signals waiting for a source's renderer. Bounded in bytes too: each is at most
/// `sources.max_signal_bytes`.
const RENDER_QUEUE: usize = 1024;
/// A source warns about bad input at most this often; the rest is counted.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// The bus itself: the only sender whose `NameOwnerChanged` is believed (its interface, too).
const BUS_DRIVER: &str = "org.freedesktop.DBus";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot subscribe to {what}: {source}")]
    Subscribe {
        what: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("invalid match rule {rule:?}: {source}")]
    Rule {
        rule: String,
        #[source]
        source: Box<zbus::Error>,
    },
}

/// A signal that does not have the shape its service documents.
#[derive(Debug, thiserror::Error)]
#[error("{signal}: {problem}")]
pub struct Malformed {
    pub signal: String,
    pub problem: String,
}

impl Malformed {
    pub fn new(signal: &str, problem: impl std::fmt::Display) -> Malformed {
        Malformed {
            signal: signal.to_owned(),
            problem: problem.to_string(),
        }
    }
}

/// The body of `msg` as `T`, or a [`Malformed`] naming the signal and the signature it had.
pub(crate) fn decode<T>(msg: &Message, signal: &str) -> Result<T, Malformed>
where
    T: serde::de::DeserializeOwned + zbus::zvariant::Type,
{
    let body = msg.body();
    body.deserialize::<T>().map_err(|e| {
        Malformed::new(
            signal,
            format!(
                "body ({}) is not ({}): {e}",
                body.signature(),
                T::SIGNATURE
                    .to_string()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
            ),
        )
    })
}

/// Header fields every renderer needs, or a [`Malformed`] when a signal lacks them.
pub(crate) fn header_names(msg: &Message) -> Result<(String, String, String), Malformed> {
    let header = msg.header();
    let interface = header.interface().map(|i| i.to_string());
    let member = header.member().map(|m| m.to_string());
    let path = header.path().map(|p| p.to_string());
    match (interface, member, path) {
        (Some(i), Some(m), Some(p)) => Ok((i, m, p)),
        _ => Err(Malformed::new("signal", "no interface, member or path")),
    }
}

/// A map that forgets everything when it outgrows `cap`, so per-object caches stay bounded
/// whatever a service sends.
pub(crate) struct BoundedMap<K, V> {
    map: HashMap<K, V>,
    cap: usize,
}

impl<K: Eq + Hash, V> BoundedMap<K, V> {
    pub fn new(cap: usize) -> Self {
        BoundedMap {
            map: HashMap::new(),
            cap,
        }
    }

    pub fn insert(&mut self, key: K, value: V) {
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            debug!(
                entries = self.map.len(),
                "a renderer cache is full; starting it afresh"
            );
            self.map.clear();
        }
        self.map.insert(key, value);
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.map.get(key)
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.map.remove(key)
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

/// Logs a warning at most every [`WARN_INTERVAL`], saying how many were held back.
#[derive(Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn warn(&mut self, source: Source, what: &dyn std::fmt::Display) {
        if self.last.is_some_and(|t| t.elapsed() < WARN_INTERVAL) {
            self.suppressed += 1;
            return;
        }
        warn!(
            source = source.as_str(),
            suppressed = self.suppressed,
            "skipped a signal: {what}"
        );
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// Asks a service for what a signal lacks, with a short timeout so a source never waits long.
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
        self.call(service, path, "GetAll", &(interface,)).await
    }

    /// `org.freedesktop.DBus.Properties.Get(interface, name)`; `None` on error or timeout.
    pub(crate) async fn property(
        &self,
        service: &str,
        path: &str,
        interface: &str,
        name: &str,
    ) -> Option<OwnedValue> {
        self.call(service, path, "Get", &(interface, name)).await
    }

    async fn call<A, R>(&self, service: &str, path: &str, method: &str, args: &A) -> Option<R>
    where
        A: serde::Serialize + zbus::zvariant::DynamicType,
        R: serde::de::DeserializeOwned + zbus::zvariant::Type,
    {
        let call = self.conn.call_method(
            Some(service),
            path,
            Some("org.freedesktop.DBus.Properties"),
            method,
            args,
        );
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(reply)) => reply.body().deserialize().ok(),
            Ok(Err(e)) => {
                debug!(service, path, method, error = %e, "property lookup failed");
                None
            }
            Err(_) => {
                debug!(service, path, method, "property lookup timed out");
                None
            }
        }
    }
}

/// What a renderer works with besides the signal.
pub(crate) struct Context {
    pub lookup: Lookup,
    pub rules: Arc<VolatileRules>,
    pub metrics: Arc<Metrics>,
}

#[cfg(test)]
impl Context {
    /// Default scrubbing rules and fresh counters; property lookups on `conn` give up after
    /// 50 ms.
    fn for_tests(conn: Connection) -> Context {
        Context {
            lookup: Lookup {
                conn,
                timeout: Duration::from_millis(50),
            },
            rules: Arc::new(VolatileRules::default()),
            metrics: Arc::new(Metrics::default()),
        }
    }
}

/// How one source turns its signals into events. One renderer per source, owned by its task.
enum Renderer {
    Systemd(systemd::Renderer),
    NetworkManager(network_manager::Renderer),
    Login1(login1::Renderer),
    Udisks2(udisks2::Renderer),
    Generic(Source),
}

impl Renderer {
    /// The events a signal means: none when it carries nothing worth recording.
    async fn render(&mut self, msg: &Message, cx: &Context) -> Result<Vec<Event>, Malformed> {
        match self {
            Renderer::Systemd(r) => r.render(msg, cx).await,
            Renderer::NetworkManager(r) => r.render(msg, cx).await,
            Renderer::Login1(r) => r.render(msg, cx).await,
            Renderer::Udisks2(r) => r.render(msg, cx),
            Renderer::Generic(source) => generic::render(*source, msg, cx).map(|e| vec![e]),
        }
    }

    /// Signals were dropped just before the next one: forget what repeats are judged against.
    fn signals_lost(&mut self) {
        if let Renderer::Systemd(r) = self {
            r.signals_lost();
        }
    }

    /// The source's service has (re)appeared on the bus.
    async fn owner_appeared(&mut self, cx: &Context) {
        match self {
            Renderer::Systemd(r) => r.owner_appeared(cx),
            Renderer::NetworkManager(r) => r.owner_appeared(cx).await,
            Renderer::Login1(r) => r.owner_appeared(),
            Renderer::Udisks2(r) => r.owner_appeared(),
            Renderer::Generic(_) => {}
        }
    }
}

/// What a source's renderer task receives, in the order the dispatcher read it from the bus.
enum Inbound {
    /// A signal, with the unique name that owned the source's well-known name at that point in
    /// bus order (`None`: nobody did, or the source names no owner).
    Signal {
        msg: Message,
        owner: Option<Arc<str>>,
        /// Signals of this source were dropped between the one before and this one.
        after_gap: bool,
    },
    /// The source's service appeared on the bus under this unique name.
    OwnerAppeared(Arc<str>),
}

/// The dispatcher's view of one watched well-known name.
struct Watched {
    /// Its owner as of the last message the dispatcher read.
    owner: Option<Arc<str>>,
    /// The renderers to tell when it appears.
    renderers: Vec<mpsc::Sender<Inbound>>,
    /// The first source that watches it, for warnings about forged owner changes.
    source: Source,
    limiter: WarnLimiter,
}

struct Subscription {
    source: Source,
    /// The well-known name whose owner alone may send these signals; `None` for custom rules
    /// that name no sender.
    owner: Option<String>,
    rules: Vec<MatchRule<'static>>,
    renderer: Renderer,
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
            renderer: Renderer::Systemd(systemd::Renderer::default()),
        });
    }
    if config.network_manager {
        subs.push(Subscription {
            source: Source::NetworkManager,
            owner: Some(network_manager::SERVICE.into()),
            rules: network_manager::rules(),
            renderer: Renderer::NetworkManager(Default::default()),
        });
    }
    if config.login1 {
        subs.push(Subscription {
            source: Source::Login1,
            owner: Some(login1::SERVICE.into()),
            rules: login1::rules(),
            renderer: Renderer::Login1(Default::default()),
        });
    }
    if config.udisks2 {
        subs.push(Subscription {
            source: Source::Udisks2,
            owner: Some(udisks2::SERVICE.into()),
            rules: udisks2::rules(),
            renderer: Renderer::Udisks2(Default::default()),
        });
    }
    for custom in &config.custom {
        let rule = MatchRule::try_from(custom.rule.as_str())
            .map_err(|source| SourceError::Rule {
                rule: custom.rule.clone(),
                source: Box::new(source),
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
            renderer: Renderer::Generic(Source::Custom),
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
    rules: Arc<VolatileRules>,
    intake: Intake,
    metrics: Arc<Metrics>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, SourceError> {
    let mut tasks = Vec::new();
    match subscribe(conn, config, rules, intake, metrics, &mut tasks).await {
        Ok(()) => Ok(tasks),
        Err(e) => {
            stop(tasks).await;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn subscribe(
    conn: &Connection,
    config: &SourcesConfig,
    rules: Arc<VolatileRules>,
    intake: Intake,
    metrics: Arc<Metrics>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), SourceError> {
    let subs = subscriptions(config)?;
    let lookup = Lookup {
        conn: conn.clone(),
        timeout: config.lookup_timeout,
    };
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(|source| SourceError::Subscribe {
            what: "org.freedesktop.DBus".into(),
            source: Box::new(source),
        })?;

    // Every source's renderer gets its own queue; the dispatcher tells them, in bus order, who
    // owns their service's name and when it appears.
    let mut renderers_of: HashMap<String, (Source, Vec<mpsc::Sender<Inbound>>)> = HashMap::new();
    let mut started = Vec::new();
    for sub in subs {
        let (tx, rx) = mpsc::channel(RENDER_QUEUE);
        if let Some(owner) = &sub.owner {
            renderers_of
                .entry(owner.clone())
                .or_insert_with(|| (sub.source, Vec::new()))
                .1
                .push(tx.clone());
        }
        started.push((sub, tx, rx));
    }

    // The dispatcher's stream exists before any rule is added, so no signal and no owner change
    // can slip past it: owner changes and signals reach it in the one order the bus sent them.
    let stream = MessageStream::from(conn);

    let mut names: Vec<_> = renderers_of.into_iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut watched = HashMap::with_capacity(names.len());
    for (name, (source, renderers)) in names {
        // Follow the owner before asking for it, so no change can slip between the two: a
        // change before the answer reaches the dispatcher after it was applied (and says
        // nothing new), one after it reaches the dispatcher in bus order.
        let subscribe_error = |e: zbus::Error| SourceError::Subscribe {
            what: format!("owner changes of {name}"),
            source: Box::new(e),
        };
        let rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .sender(BUS_DRIVER)
            .and_then(|b| b.interface(BUS_DRIVER))
            .and_then(|b| b.member("NameOwnerChanged"))
            .and_then(|b| b.arg(0, name.clone()))
            .map_err(subscribe_error)?
            .build();
        dbus.add_match_rule(rule)
            .await
            .map_err(|e| subscribe_error(e.into()))?;
        let current = match zbus::names::BusName::try_from(name.as_str()) {
            Ok(bus_name) => dbus
                .get_name_owner(bus_name)
                .await
                .ok()
                .map(|o| Arc::<str>::from(o.to_string())),
            Err(_) => None,
        };
        match &current {
            Some(owner) => {
                info!(service = %name, owner = %owner, "source service present");
                for r in &renderers {
                    tell_appeared(r, owner.clone());
                }
            }
            None => {
                info!(service = %name, "source service absent; its subscription stays, waiting for it")
            }
        }
        watched.insert(
            name,
            Watched {
                owner: current,
                renderers,
                source,
                limiter: WarnLimiter::default(),
            },
        );
    }

    let mut routes = Vec::with_capacity(started.len());
    for (sub, tx, rx) in started {
        for rule in &sub.rules {
            dbus.add_match_rule(rule.clone())
                .await
                .map_err(|source| SourceError::Subscribe {
                    what: rule.to_string(),
                    source: Box::new(source.into()),
                })?;
            debug!(rule = %rule, "subscribed");
        }
        routes.push(Route {
            source: sub.source,
            owner: sub.owner.clone(),
            rules: sub.rules,
            renderer: tx,
        });
        let cx = Context {
            lookup: lookup.clone(),
            rules: rules.clone(),
            metrics: metrics.clone(),
        };
        tasks.push(tokio::spawn(render_signals(
            rx,
            sub.source,
            sub.owner,
            sub.renderer,
            cx,
            intake.clone(),
        )));
    }
    tasks.push(tokio::spawn(dispatch(
        stream,
        routes,
        watched,
        intake,
        metrics,
        config.max_signal_bytes,
    )));
    Ok(())
}

/// Tells a renderer its service appeared, in order with its signals when its queue has room.
/// When it has none, the notice waits for room aside (the renderer must hear of it; the
/// dispatcher must not wait), and the renderer catches up by itself on the new owner's first
/// signal, which carries the owner too.
fn tell_appeared(renderer: &mpsc::Sender<Inbound>, owner: Arc<str>) {
    match renderer.try_send(Inbound::OwnerAppeared(owner)) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(notice)) => {
            let renderer = renderer.clone();
            tokio::spawn(async move {
                let _ = renderer.send(notice).await;
            });
        }
    }
}

/// Applies a `NameOwnerChanged` for a watched name, at its place in bus order. Only the bus
/// sends real ones; one from any other sender (a unicast signal another client aimed at us) is
/// refused, counted in `EventsForged` and warned about.
fn follow_owner(msg: &Message, watched: &mut HashMap<String, Watched>, metrics: &Metrics) {
    let header = msg.header();
    if header.member().map(|m| m.as_str()) != Some("NameOwnerChanged")
        || header.interface().map(|i| i.as_str()) != Some(BUS_DRIVER)
    {
        return;
    }
    let Ok((name, _, new_owner)) = msg.body().deserialize::<(String, String, String)>() else {
        return;
    };
    let Some(w) = watched.get_mut(&name) else {
        return;
    };
    let sender = header.sender().map(|s| s.as_str()).unwrap_or("");
    if sender != BUS_DRIVER {
        metrics.events_forged.fetch_add(1, Relaxed);
        w.limiter.warn(
            w.source,
            &format_args!(
                "a NameOwnerChanged for {name} came from {sender}, not from the bus; refused"
            ),
        );
        return;
    }
    let new_owner = (!new_owner.is_empty()).then(|| Arc::<str>::from(new_owner));
    if w.owner == new_owner {
        return;
    }
    w.owner = new_owner.clone();
    match new_owner {
        None => warn!(service = %name, "source service left the bus"),
        Some(owner) => {
            info!(service = %name, owner = %owner, "source service appeared");
            for r in &w.renderers {
                tell_appeared(r, owner.clone());
            }
        }
    }
}

/// Where the dispatcher sends the signals that match a source's rules.
struct Route {
    source: Source,
    /// The well-known name whose owner alone may send these signals.
    owner: Option<String>,
    rules: Vec<MatchRule<'static>>,
    renderer: mpsc::Sender<Inbound>,
}

/// Moves every subscribed signal from the connection into its source's queue, with the owner of
/// the source's name as of that signal, and does nothing else, so the connection's reader never
/// waits on us. Owner changes of the watched names are applied as they come, in the same order.
/// A full queue drops the signal into the gap ledger; an oversized one is counted and skipped.
async fn dispatch(
    mut stream: MessageStream,
    routes: Vec<Route>,
    mut watched: HashMap<String, Watched>,
    intake: Intake,
    metrics: Arc<Metrics>,
    max_signal_bytes: usize,
) {
    let mut limiters: Vec<WarnLimiter> = routes.iter().map(|_| WarnLimiter::default()).collect();
    let mut gapped = vec![false; routes.len()];
    while let Some(next) = stream.next().await {
        let Ok(msg) = next else { continue };
        if msg.message_type() != Type::Signal {
            continue;
        }
        follow_owner(&msg, &mut watched, &metrics);
        for ((route, limiter), gapped) in routes.iter().zip(limiters.iter_mut()).zip(&mut gapped) {
            if !route.rules.iter().any(|r| r.matches(&msg).unwrap_or(false)) {
                continue;
            }
            let size = msg.body().len();
            if size > max_signal_bytes {
                metrics.signals_oversized.fetch_add(1, Relaxed);
                limiter.warn(
                    route.source,
                    &format_args!(
                        "its body is {size} bytes, more than sources.max_signal_bytes = {max_signal_bytes}"
                    ),
                );
                continue;
            }
            let owner = route
                .owner
                .as_deref()
                .and_then(|name| watched.get(name))
                .and_then(|w| w.owner.clone());
            if !forward(&route.renderer, gapped, msg.clone(), owner) {
                intake.note_drop(route.source, now_usec());
            }
        }
    }
}

/// Queues a signal for a source's renderer, marked when signals were dropped since the last one
/// queued (`gapped`, kept per source by the dispatcher); false when the queue is full and the
/// signal is dropped.
fn forward(
    renderer: &mpsc::Sender<Inbound>,
    gapped: &mut bool,
    msg: Message,
    owner: Option<Arc<str>>,
) -> bool {
    let inbound = Inbound::Signal {
        msg,
        owner,
        after_gap: *gapped,
    };
    match renderer.try_send(inbound) {
        Ok(()) => {
            *gapped = false;
            true
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            *gapped = true;
            false
        }
        // The renderer has stopped: the daemon is shutting down.
        Err(mpsc::error::TrySendError::Closed(_)) => true,
    }
}

async fn render_signals(
    mut inbox: mpsc::Receiver<Inbound>,
    source: Source,
    owner: Option<String>,
    mut renderer: Renderer,
    cx: Context,
    intake: Intake,
) {
    let mut limiter = WarnLimiter::default();
    // The owner the renderer last started afresh for.
    let mut appeared: Option<Arc<str>> = None;
    while let Some(inbound) = inbox.recv().await {
        let (msg, owner_then) = match inbound {
            Inbound::OwnerAppeared(new_owner) => {
                // Already done if the owner's first signal overtook a held-up notice.
                if appeared.as_ref() != Some(&new_owner) {
                    renderer.owner_appeared(&cx).await;
                    appeared = Some(new_owner);
                }
                continue;
            }
            Inbound::Signal {
                msg,
                owner: then,
                after_gap,
            } => {
                if after_gap {
                    renderer.signals_lost();
                }
                (msg, then)
            }
        };
        if let Some(name) = &owner {
            let header = msg.header();
            let sender = header.sender().map(|s| s.as_str()).unwrap_or("");
            // The owner as of this signal in bus order: a sender that has left since still
            // owned the name when it sent what is queued here.
            match &owner_then {
                Some(o) if &**o == sender => {
                    if appeared.as_ref() != Some(o) {
                        renderer.owner_appeared(&cx).await;
                        appeared = Some(o.clone());
                    }
                }
                _ => {
                    cx.metrics.events_forged.fetch_add(1, Relaxed);
                    // Limited like the other skips: a local client flooding forged signals must
                    // not flood the journal (the unit lifts journald's own rate limit).
                    limiter.warn(
                        source,
                        &format_args!("refused a signal from {sender}, which does not own {name}"),
                    );
                    continue;
                }
            }
        }
        match renderer.render(&msg, &cx).await {
            Ok(events) if events.is_empty() => {
                cx.metrics.events_ignored.fetch_add(1, Relaxed);
            }
            Ok(events) => {
                for event in events {
                    intake.submit(event);
                }
            }
            Err(malformed) => {
                cx.metrics.signals_malformed.fetch_add(1, Relaxed);
                limiter.warn(source, &malformed);
            }
        }
    }
}

#[cfg(test)]
mod gap_tests {
    use super::*;

    fn unit_signal(active: &str) -> Message {
        let mut changed: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
        changed.insert("ActiveState", active.into());
        // Given, so the renderer asks nobody.
        changed.insert("Result", "success".into());
        let invalidated: Vec<&str> = Vec::new();
        Message::signal(
            "/org/freedesktop/systemd1/unit/nginx_2eservice",
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
        )
        .unwrap()
        .sender(":1.42")
        .unwrap()
        .build(&("org.freedesktop.systemd1.Unit", changed, invalidated))
        .unwrap()
    }

    fn after_gap(inbound: Inbound) -> bool {
        match inbound {
            Inbound::Signal { after_gap, .. } => after_gap,
            Inbound::OwnerAppeared(_) => panic!("a signal was queued"),
        }
    }

    #[test]
    fn the_first_signal_queued_after_a_drop_says_so() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut gapped = false;
        assert!(forward(&tx, &mut gapped, unit_signal("active"), None));
        assert!(
            !forward(&tx, &mut gapped, unit_signal("inactive"), None),
            "full: dropped"
        );
        assert!(
            !forward(&tx, &mut gapped, unit_signal("active"), None),
            "still full"
        );
        assert!(
            !after_gap(rx.try_recv().unwrap()),
            "queued before the drops"
        );
        assert!(forward(&tx, &mut gapped, unit_signal("inactive"), None));
        assert!(
            after_gap(rx.try_recv().unwrap()),
            "the next one queued follows the gap"
        );
        assert!(forward(&tx, &mut gapped, unit_signal("active"), None));
        assert!(!after_gap(rx.try_recv().unwrap()), "and only that one");
    }

    #[test]
    fn after_a_gap_a_unit_back_in_its_last_recorded_state_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let bus = crate::bus::PrivateBus::spawn(dir.path()).expect("dbus-daemon starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let cx = Context::for_tests(crate::bus::connect(&bus.target()).await.unwrap());
            let mut renderer = Renderer::Systemd(systemd::Renderer::default());
            let first = renderer.render(&unit_signal("active"), &cx).await.unwrap();
            assert_eq!(first.len(), 1);
            let repeat = renderer.render(&unit_signal("active"), &cx).await.unwrap();
            assert!(
                repeat.is_empty(),
                "a repeat of the recorded state: {repeat:?}"
            );
            assert_eq!(cx.metrics.signals_unchanged.load(Relaxed), 1);
            // A → (inactive, dropped) → A: the second A is a change the daemon did not see.
            renderer.signals_lost();
            let again = renderer.render(&unit_signal("active"), &cx).await.unwrap();
            assert_eq!(again.len(), 1, "recorded again after the gap");
            assert_eq!(again[0].text, first[0].text);
            assert_eq!(cx.metrics.signals_unchanged.load(Relaxed), 1);
        });
    }
}
