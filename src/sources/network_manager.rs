//! NetworkManager: the overall state, device state changes (with the interface name, asked once
//! per device and cached), and connectivity changes.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Map};
use zbus::zvariant::OwnedValue;
use zbus::{MatchRule, Message};

use super::{signal_rule, Lookup};
use crate::event::{Event, Source};
use crate::render::{token, value_json, value_text};

pub const SERVICE: &str = "org.freedesktop.NetworkManager";
const ROOT_PATH: &str = "/org/freedesktop/NetworkManager";
const DEVICE_INTERFACE: &str = "org.freedesktop.NetworkManager.Device";

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

#[derive(Default)]
pub struct Renderer {
    /// Device object path → interface name.
    interfaces: Mutex<HashMap<String, String>>,
}

impl Renderer {
    async fn interface_of(&self, device_path: &str, lookup: &Lookup) -> Option<String> {
        if let Some(name) = self
            .interfaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_path)
        {
            return Some(name.clone());
        }
        let props = lookup
            .properties(SERVICE, device_path, DEVICE_INTERFACE)
            .await?;
        let name = value_text(props.get("Interface")?);
        self.interfaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device_path.to_owned(), name.clone());
        Some(name)
    }

    pub async fn render(&self, msg: &Message, lookup: &Lookup) -> Option<Event> {
        let header = msg.header();
        let interface = header.interface()?.as_str().to_owned();
        let path = header.path()?.as_str().to_owned();
        let mut fields = Map::new();
        fields.insert("path".into(), json!(path));
        let text = match interface.as_str() {
            DEVICE_INTERFACE => {
                let (new, old, reason): (u32, u32, u32) = msg.body().deserialize().ok()?;
                let device = self.interface_of(&path, lookup).await;
                fields.insert("new_state".into(), json!(new));
                fields.insert("old_state".into(), json!(old));
                fields.insert("reason".into(), json!(reason));
                fields.insert("interface".into(), json!(device));
                format!(
                    "networkmanager device {} state={} old={} reason={}",
                    token(device.as_deref().unwrap_or("unknown")),
                    device_state_name(new),
                    device_state_name(old),
                    reason_name(reason)
                )
            }
            SERVICE => {
                let (state,): (u32,) = msg.body().deserialize().ok()?;
                fields.insert("state".into(), json!(state));
                format!("networkmanager state={}", state_name(state))
            }
            "org.freedesktop.DBus.Properties" if path == ROOT_PATH => {
                let (_iface, changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
                    msg.body().deserialize().ok()?;
                let connectivity = changed.get("Connectivity")?;
                let value: u32 = connectivity.try_into().ok()?;
                fields.insert("Connectivity".into(), value_json(connectivity));
                format!("networkmanager connectivity={}", connectivity_name(value))
            }
            _ => return None,
        };
        Some(Event::observed(Source::NetworkManager, text, fields))
    }
}
