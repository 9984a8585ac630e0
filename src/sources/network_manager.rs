//! NetworkManager: the overall state, device state changes (with the interface name, asked once
//! per device and cached), connectivity changes, and active connections coming and going (NM
//! reports the new list of active connections; the difference from the last list is the event,
//! each connection described by its id, type and devices, asked once when it appears).

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Map};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{MatchRule, Message};

use super::{decode, header_names, signal_rule, BoundedMap, Context, Lookup, Malformed};
use crate::event::{Event, Source};
use crate::render::{value_json, value_text, Canon};

pub const SERVICE: &str = "org.freedesktop.NetworkManager";
const ROOT_PATH: &str = "/org/freedesktop/NetworkManager";
const DEVICE_INTERFACE: &str = "org.freedesktop.NetworkManager.Device";
const ACTIVE_INTERFACE: &str = "org.freedesktop.NetworkManager.Connection.Active";
const CACHE_ENTRIES: usize = 4096;

pub fn rules() -> Vec<MatchRule<'static>> {
    vec![
        signal_rule(SERVICE, SERVICE, Some("StateChanged"), None),
        signal_rule(SERVICE, DEVICE_INTERFACE, Some("StateChanged"), None),
        signal_rule(
            SERVICE,
            "org.freedesktop.DBus.Properties",
            Some("PropertiesChanged"),
            Some(ROOT_PATH),
        ),
    ]
}

/// NMState.
pub fn state_name(state: u32) -> &'static str {
    match state {
        10 => "asleep",
        20 => "disconnected",
        30 => "disconnecting",
        40 => "connecting",
        50 => "connected-local",
        60 => "connected-site",
        70 => "connected-global",
        _ => "unknown",
    }
}

/// NMDeviceState.
pub fn device_state_name(state: u32) -> &'static str {
    match state {
        10 => "unmanaged",
        20 => "unavailable",
        30 => "disconnected",
        40 => "prepare",
        50 => "config",
        60 => "need-auth",
        70 => "ip-config",
        80 => "ip-check",
        90 => "secondaries",
        100 => "activated",
        110 => "deactivating",
        120 => "failed",
        _ => "unknown",
    }
}

/// NMDeviceStateReason, for the reasons an operator meets most; others print as `reason-N`.
pub fn reason_name(reason: u32) -> String {
    let name = match reason {
        0 => "none",
        1 => "unknown",
        2 => "now-managed",
        3 => "now-unmanaged",
        4 => "config-failed",
        5 => "ip-config-unavailable",
        6 => "ip-config-expired",
        7 => "no-secrets",
        8 => "supplicant-disconnect",
        15 => "dhcp-start-failed",
        16 => "dhcp-error",
        17 => "dhcp-failed",
        35 => "firmware-missing",
        36 => "removed",
        37 => "sleeping",
        38 => "connection-removed",
        39 => "user-requested",
        40 => "carrier",
        41 => "connection-assumed",
        42 => "supplicant-available",
        _ => return format!("reason-{reason}"),
    };
    name.to_owned()
}

/// NMConnectivityState.
fn connectivity_name(state: u32) -> &'static str {
    match state {
        1 => "none",
        2 => "portal",
        3 => "limited",
        4 => "full",
        _ => "unknown",
    }
}

/// An active connection as the text describes it: `id`, `type`, `devices`.
type Described = Vec<(&'static str, String)>;

pub struct Renderer {
    /// Device object path → interface name.
    interfaces: BoundedMap<String, String>,
    /// The active connections NM last reported, each as described when it appeared.
    active: HashMap<String, Described>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer {
            interfaces: BoundedMap::new(CACHE_ENTRIES),
            active: HashMap::new(),
        }
    }
}

impl Renderer {
    /// NetworkManager (re)started: device paths are new, and the active connections are learnt
    /// afresh so only later changes become events.
    pub async fn owner_appeared(&mut self, cx: &Context) {
        self.interfaces.clear();
        self.active.clear();
        let Some(list) = cx
            .lookup
            .property(SERVICE, ROOT_PATH, SERVICE, "ActiveConnections")
            .await
        else {
            return;
        };
        let paths: Vec<OwnedObjectPath> = list.try_into().unwrap_or_default();
        for path in paths {
            let described = self.describe_active(path.as_str(), &cx.lookup).await;
            self.active.insert(path.to_string(), described);
        }
    }

    async fn interface_of(&mut self, device_path: &str, lookup: &Lookup) -> Option<String> {
        if let Some(name) = self.interfaces.get(device_path) {
            return Some(name.clone());
        }
        let name = lookup
            .property(SERVICE, device_path, DEVICE_INTERFACE, "Interface")
            .await
            .map(|v| value_text(&v))?;
        self.interfaces.insert(device_path.to_owned(), name.clone());
        Some(name)
    }

    async fn describe_active(&mut self, path: &str, lookup: &Lookup) -> Described {
        let Some(props) = lookup.properties(SERVICE, path, ACTIVE_INTERFACE).await else {
            return Vec::new();
        };
        let mut described = Vec::new();
        for (key, prop) in [("id", "Id"), ("type", "Type")] {
            if let Some(v) = props.get(prop) {
                described.push((key, value_text(v)));
            }
        }
        if let Some(devices) = props.get("Devices") {
            let paths: Vec<OwnedObjectPath> = devices
                .try_clone()
                .ok()
                .and_then(|d| d.try_into().ok())
                .unwrap_or_default();
            let mut names = Vec::new();
            for p in paths.iter().take(16) {
                if let Some(name) = self.interface_of(p.as_str(), lookup).await {
                    names.push(name);
                }
            }
            if !names.is_empty() {
                described.push(("devices", names.join(",")));
            }
        }
        described
    }

    pub async fn render(&mut self, msg: &Message, cx: &Context) -> Result<Vec<Event>, Malformed> {
        let (interface, _member, path) = header_names(msg)?;
        let mut fields = Map::new();
        fields.insert("path".into(), json!(path));
        let mut text = Canon::new(&cx.rules, Source::NetworkManager);
        match interface.as_str() {
            DEVICE_INTERFACE => {
                let (new, old, reason): (u32, u32, u32) = decode(msg, "Device.StateChanged")?;
                let device = self.interface_of(&path, &cx.lookup).await;
                fields.insert("new_state".into(), json!(new));
                fields.insert("old_state".into(), json!(old));
                fields.insert("reason".into(), json!(reason));
                fields.insert("interface".into(), json!(device));
                text.word("device")
                    .value(device.as_deref().unwrap_or("unknown"))
                    .pair("state", device_state_name(new))
                    .pair("old", device_state_name(old))
                    .pair("reason", &reason_name(reason));
            }
            SERVICE => {
                let (state,): (u32,) = decode(msg, "StateChanged")?;
                fields.insert("state".into(), json!(state));
                text.pair("state", state_name(state));
            }
            "org.freedesktop.DBus.Properties" if path == ROOT_PATH => {
                let (_iface, changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
                    decode(msg, "PropertiesChanged")?;
                return self.root_changed(changed, fields, cx).await;
            }
            _ => return Ok(Vec::new()),
        }
        Ok(vec![Event::observed(
            Source::NetworkManager,
            text.finish(),
            fields,
        )])
    }

    /// Connectivity and the list of active connections; one signal can carry both.
    async fn root_changed(
        &mut self,
        changed: HashMap<String, OwnedValue>,
        fields: Map<String, serde_json::Value>,
        cx: &Context,
    ) -> Result<Vec<Event>, Malformed> {
        let mut events = Vec::new();
        if let Some(connectivity) = changed.get("Connectivity") {
            let value: u32 = connectivity
                .try_into()
                .map_err(|_| Malformed::new("PropertiesChanged", "Connectivity is not a u32"))?;
            let mut f = fields.clone();
            f.insert("Connectivity".into(), value_json(connectivity));
            let mut text = Canon::new(&cx.rules, Source::NetworkManager);
            text.pair("connectivity", connectivity_name(value));
            events.push(Event::observed(Source::NetworkManager, text.finish(), f));
        }
        if let Some(list) = changed.get("ActiveConnections") {
            let paths: Vec<OwnedObjectPath> = list
                .try_clone()
                .ok()
                .and_then(|l| l.try_into().ok())
                .ok_or_else(|| {
                    Malformed::new(
                        "PropertiesChanged",
                        "ActiveConnections is not an array of object paths",
                    )
                })?;
            let now: BTreeSet<String> = paths.iter().map(|p| p.to_string()).collect();
            let mut gone: Vec<String> = self
                .active
                .keys()
                .filter(|p| !now.contains(*p))
                .cloned()
                .collect();
            gone.sort();
            for path in gone {
                let described = self.active.remove(&path).unwrap_or_default();
                events.push(active_event("removed", &path, &described, &fields, cx));
            }
            for path in now {
                if self.active.contains_key(&path) || self.active.len() >= CACHE_ENTRIES {
                    continue;
                }
                let described = self.describe_active(&path, &cx.lookup).await;
                events.push(active_event("added", &path, &described, &fields, cx));
                self.active.insert(path, described);
            }
        }
        Ok(events)
    }
}

fn active_event(
    what: &str,
    path: &str,
    described: &Described,
    fields: &Map<String, serde_json::Value>,
    cx: &Context,
) -> Event {
    let mut f = fields.clone();
    f.insert("active_connection".into(), json!(path));
    let mut text = Canon::new(&cx.rules, Source::NetworkManager);
    text.word("active-connection").word(what);
    for (key, value) in described {
        f.insert((*key).into(), json!(value));
        text.pair(key, value);
    }
    Event::observed(Source::NetworkManager, text.finish(), f)
}
