//! systemd (`org.freedesktop.systemd1`): unit property changes and Manager signals.

use std::collections::HashMap;

use serde_json::{json, Map};
use zbus::zvariant::OwnedValue;
use zbus::{MatchRule, Message};

use super::signal_rule;
use crate::event::{Event, Source};
use crate::render::{push_pairs, token, value_json, value_text};

pub const SERVICE: &str = "org.freedesktop.systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit/";

/// The unit properties an operator acts on, in the order they appear in the text.
const UNIT_KEYS: [&str; 5] = [
    "ActiveState",
    "SubState",
    "Result",
    "LoadState",
    "UnitFileState",
];

pub fn rules() -> Vec<MatchRule<'static>> {
    vec![
        signal_rule(
            SERVICE,
            "org.freedesktop.DBus.Properties",
            Some("PropertiesChanged"),
            Some("/org/freedesktop/systemd1/unit"),
        ),
        signal_rule(SERVICE, MANAGER, None, Some("/org/freedesktop/systemd1")),
    ]
}

/// Decodes a unit object path (`/org/freedesktop/systemd1/unit/nginx_2eservice`) to the unit name
/// (`nginx.service`): systemd escapes every byte outside `[A-Za-z0-9]` as `_xx` (lower-case hex).
pub fn decode_unit_path(path: &str) -> Option<String> {
    let escaped = path.strip_prefix(UNIT_PATH_PREFIX)?;
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if bytes[i] == b'_' {
            return None;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn render(msg: &Message) -> Option<Event> {
    let header = msg.header();
    let member = header.member()?.as_str().to_owned();
    let path = header.path()?.as_str().to_owned();
    let interface = header.interface()?.as_str().to_owned();
    let mut fields = Map::new();
    fields.insert("path".into(), json!(path));

    if interface == "org.freedesktop.DBus.Properties" {
        let unit = decode_unit_path(&path)?;
        let (iface, changed, _invalidated): (String, HashMap<String, OwnedValue>, Vec<String>) =
            msg.body().deserialize().ok()?;
        let pairs: Vec<(&str, String)> = UNIT_KEYS
            .iter()
            .filter_map(|k| changed.get(*k).map(|v| (*k, value_text(v))))
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let mut text = format!("systemd unit {}", token(&unit));
        push_pairs(&mut text, pairs);
        fields.insert("unit".into(), json!(unit));
        fields.insert("interface".into(), json!(iface));
        for (k, v) in &changed {
            fields.insert(k.clone(), value_json(v));
        }
        return Some(Event::observed(Source::Systemd, text, fields));
    }

    let body = msg.body();
    let text = match member.as_str() {
        "JobNew" => {
            let (id, job, unit): (u32, zbus::zvariant::OwnedObjectPath, String) =
                body.deserialize().ok()?;
            fields.insert("job_id".into(), json!(id));
            fields.insert("job".into(), json!(job.as_str()));
            fields.insert("unit".into(), json!(unit));
            format!("systemd job {} new", token(&unit))
        }
        "JobRemoved" => {
            let (id, job, unit, result): (u32, zbus::zvariant::OwnedObjectPath, String, String) =
                body.deserialize().ok()?;
            fields.insert("job_id".into(), json!(id));
            fields.insert("job".into(), json!(job.as_str()));
            fields.insert("unit".into(), json!(unit));
            fields.insert("result".into(), json!(result));
            format!("systemd job {} result={}", token(&unit), token(&result))
        }
        "UnitNew" | "UnitRemoved" => {
            let (unit, unit_path): (String, zbus::zvariant::OwnedObjectPath) =
                body.deserialize().ok()?;
            fields.insert("unit".into(), json!(unit));
            fields.insert("unit_path".into(), json!(unit_path.as_str()));
            let what = if member == "UnitNew" {
                "loaded"
            } else {
                "unloaded"
            };
            format!("systemd unit {} {what}", token(&unit))
        }
        "Reloading" => {
            let (active,): (bool,) = body.deserialize().ok()?;
            fields.insert("active".into(), json!(active));
            format!(
                "systemd manager reloading={}",
                if active { "start" } else { "done" }
            )
        }
        "StartupFinished" => {
            let t: (u64, u64, u64, u64, u64, u64) = body.deserialize().ok()?;
            for (k, v) in [
                "firmware",
                "loader",
                "kernel",
                "initrd",
                "userspace",
                "total",
            ]
            .iter()
            .zip([t.0, t.1, t.2, t.3, t.4, t.5])
            {
                fields.insert(format!("{k}_usec"), json!(v));
            }
            "systemd manager startup-finished".to_owned()
        }
        _ => return None,
    };
    Some(Event::observed(Source::Systemd, text, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_decode_without_a_round_trip() {
        assert_eq!(
            decode_unit_path("/org/freedesktop/systemd1/unit/nginx_2eservice").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            decode_unit_path("/org/freedesktop/systemd1/unit/getty_40tty1_2eservice").as_deref(),
            Some("getty@tty1.service")
        );
        assert_eq!(
            decode_unit_path(
                "/org/freedesktop/systemd1/unit/sys_2ddevices_2dvirtual_2dnet_2dlo_2edevice"
            )
            .as_deref(),
            Some("sys-devices-virtual-net-lo.device")
        );
        assert_eq!(
            decode_unit_path("/org/freedesktop/systemd1/unit/bad_2"),
            None
        );
        assert_eq!(decode_unit_path("/org/freedesktop/systemd1/job/12"), None);
    }
}
