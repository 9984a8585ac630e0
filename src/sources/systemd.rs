//! systemd (`org.freedesktop.systemd1`): unit property changes and Manager signals.
//!
//! systemd signals a unit change as two `PropertiesChanged` signals, first for the unit type's own
//! interface (`…systemd1.Service`, which carries `Result`), then for `…systemd1.Unit` (the
//! states). The first is remembered, the second becomes the event, so the text reads
//! `systemd unit nginx.service ActiveState=failed SubState=failed Result=exit-code`. Only when no
//! `Result` was seen for a unit is systemd asked for it. A unit signal that repeats the unit's last
//! recorded text (a job was queued, nothing changed) is counted, not recorded again.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::{json, Map};
use tracing::{debug, warn};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{MatchRule, Message};

use super::{decode, header_names, signal_rule, BoundedMap, Context, Malformed};
use crate::event::{Event, Source};
use crate::render::{value_json, value_text, Canon};

pub const SERVICE: &str = "org.freedesktop.systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
const JOB_INTERFACE: &str = "org.freedesktop.systemd1.Job";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit/";
/// Units and jobs remembered at once; far more than a host has.
const CACHE_ENTRIES: usize = 65_536;

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
            PROPERTIES,
            Some("PropertiesChanged"),
            Some("/org/freedesktop/systemd1/unit"),
        ),
        signal_rule(SERVICE, MANAGER, None, Some("/org/freedesktop/systemd1")),
    ]
}

/// The interface that carries a unit type's `Result`, from the unit name's suffix.
fn result_interface(unit: &str) -> Option<&'static str> {
    Some(match unit.rsplit_once('.')?.1 {
        "service" => "org.freedesktop.systemd1.Service",
        "socket" => "org.freedesktop.systemd1.Socket",
        "mount" => "org.freedesktop.systemd1.Mount",
        "swap" => "org.freedesktop.systemd1.Swap",
        "timer" => "org.freedesktop.systemd1.Timer",
        "automount" => "org.freedesktop.systemd1.Automount",
        "path" => "org.freedesktop.systemd1.Path",
        "scope" => "org.freedesktop.systemd1.Scope",
        _ => return None,
    })
}

pub struct Renderer {
    /// Unit → the `Result` its type interface last reported (`None`: systemd was asked and
    /// did not say, so it is not asked again).
    results: BoundedMap<String, Option<String>>,
    /// Unit → the text last recorded for it.
    last_text: BoundedMap<String, String>,
    /// Job id → its type (start, stop, restart, …), from JobNew until JobRemoved.
    job_types: BoundedMap<u32, String>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer {
            results: BoundedMap::new(CACHE_ENTRIES),
            last_text: BoundedMap::new(CACHE_ENTRIES),
            job_types: BoundedMap::new(CACHE_ENTRIES),
        }
    }
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

impl Renderer {
    /// systemd sends unit and job signals on the system bus only to clients that called
    /// `Subscribe()`; ask whenever systemd (re)appears. Runs aside so rendering never waits.
    /// Signals of this source were dropped just before the next one (its queue was full): the
    /// text last recorded for a unit may no longer be the state before its next change, so no
    /// next text is taken for a repeat of it. A unit that went A → B (dropped) → A records its
    /// second A.
    pub fn signals_lost(&mut self) {
        self.last_text.clear();
    }

    pub fn owner_appeared(&mut self, cx: &Context) {
        self.results.clear();
        self.last_text.clear();
        self.job_types.clear();
        let conn = cx.lookup.conn.clone();
        tokio::spawn(async move {
            let call = conn.call_method(
                Some(SERVICE),
                "/org/freedesktop/systemd1",
                Some(MANAGER),
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

    pub async fn render(&mut self, msg: &Message, cx: &Context) -> Result<Vec<Event>, Malformed> {
        let (interface, member, path) = header_names(msg)?;
        let mut fields = Map::new();
        fields.insert("path".into(), json!(path));
        if interface == PROPERTIES {
            return self.unit_changed(msg, &path, fields, cx).await;
        }
        let mut text = Canon::new(&cx.rules, Source::Systemd);
        match member.as_str() {
            "JobNew" => {
                let (id, job, unit): (u32, OwnedObjectPath, String) = decode(msg, "JobNew")?;
                let job_type = cx
                    .lookup
                    .property(SERVICE, job.as_str(), JOB_INTERFACE, "JobType")
                    .await
                    .map(|v| value_text(&v));
                fields.insert("job_id".into(), json!(id));
                fields.insert("job".into(), json!(job.as_str()));
                fields.insert("unit".into(), json!(unit));
                fields.insert("job_type".into(), json!(job_type));
                // The type stays out of the text: a job that finishes at once is gone before
                // it can be asked, so the same restart would read two ways by a race (and the
                // second looks new). The unit's own changes say what the job did.
                text.word("job").value(&unit).word("new");
                if let Some(t) = job_type {
                    self.job_types.insert(id, t);
                }
            }
            "JobRemoved" => {
                let (id, job, unit, result): (u32, OwnedObjectPath, String, String) =
                    decode(msg, "JobRemoved")?;
                let job_type = self.job_types.remove(&id);
                fields.insert("job_id".into(), json!(id));
                fields.insert("job".into(), json!(job.as_str()));
                fields.insert("unit".into(), json!(unit));
                fields.insert("job_type".into(), json!(job_type));
                fields.insert("result".into(), json!(result));
                text.word("job").value(&unit).pair("result", &result);
            }
            "UnitNew" | "UnitRemoved" => {
                let (unit, unit_path): (String, OwnedObjectPath) = decode(msg, &member)?;
                fields.insert("unit".into(), json!(unit));
                fields.insert("unit_path".into(), json!(unit_path.as_str()));
                if member == "UnitRemoved" {
                    self.results.remove(&unit);
                    self.last_text.remove(&unit);
                }
                text.word("unit").value(&unit).word(if member == "UnitNew" {
                    "loaded"
                } else {
                    "unloaded"
                });
            }
            "Reloading" => {
                let (active,): (bool,) = decode(msg, "Reloading")?;
                fields.insert("active".into(), json!(active));
                text.word("manager")
                    .pair("reloading", if active { "start" } else { "done" });
            }
            "UnitFilesChanged" => {
                text.word("manager").word("unit-files-changed");
            }
            "StartupFinished" => {
                let t: (u64, u64, u64, u64, u64, u64) = decode(msg, "StartupFinished")?;
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
                text.word("manager").word("startup-finished");
            }
            _ => return Ok(Vec::new()),
        }
        Ok(vec![Event::observed(
            Source::Systemd,
            text.finish(),
            fields,
        )])
    }

    async fn unit_changed(
        &mut self,
        msg: &Message,
        path: &str,
        mut fields: Map<String, serde_json::Value>,
        cx: &Context,
    ) -> Result<Vec<Event>, Malformed> {
        let unit = decode_unit_path(path).ok_or_else(|| {
            Malformed::new("PropertiesChanged", format!("{path:?} is not a unit path"))
        })?;
        let (iface, changed, invalidated): (String, HashMap<String, OwnedValue>, Vec<String>) =
            decode(msg, "PropertiesChanged")?;
        if iface != UNIT_INTERFACE {
            // The unit type's own interface comes first; keep its Result for the Unit signal.
            if let Some(result) = changed.get("Result") {
                self.results.insert(unit, Some(value_text(result)));
            }
            return Ok(Vec::new());
        }
        if !UNIT_KEYS.iter().any(|k| changed.contains_key(*k)) {
            return Ok(Vec::new());
        }
        let result = match (changed.get("Result"), self.results.get(&unit)) {
            (Some(v), _) => Some(value_text(v)),
            (None, Some(known)) => known.clone(),
            (None, None) => match result_interface(&unit) {
                Some(type_interface) => {
                    let asked = cx
                        .lookup
                        .property(SERVICE, path, type_interface, "Result")
                        .await
                        .map(|v| value_text(&v));
                    self.results.insert(unit.clone(), asked.clone());
                    asked
                }
                None => None,
            },
        };

        let mut text = Canon::new(&cx.rules, Source::Systemd);
        text.word("unit").value(&unit);
        for key in UNIT_KEYS {
            let value = match key {
                "Result" => result.clone(),
                _ => changed.get(key).map(|v| value_text(v)),
            };
            if let Some(v) = value {
                text.pair(key, &v);
            }
        }
        let text = text.finish();
        if self.last_text.get(&unit) == Some(&text) {
            cx.metrics.signals_unchanged.fetch_add(1, Relaxed);
            return Ok(Vec::new());
        }
        self.last_text.insert(unit.clone(), text.clone());

        fields.insert("unit".into(), json!(unit));
        fields.insert("interface".into(), json!(iface));
        if let Some(r) = &result {
            fields.insert("Result".into(), json!(r));
        }
        for (k, v) in &changed {
            fields.insert(k.clone(), value_json(v));
        }
        if !invalidated.is_empty() {
            fields.insert("invalidated".into(), json!(invalidated));
        }
        Ok(vec![Event::observed(Source::Systemd, text, fields)])
    }
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
