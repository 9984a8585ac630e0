//! login1 (systemd-logind): sessions and users coming and going, shutdown and sleep. The session
//! object is asked once for its user, seat and remote host; the session number itself is volatile
//! and stays out of the text.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Map};
use zbus::zvariant::OwnedObjectPath;
use zbus::{MatchRule, Message};

use super::{signal_rule, Lookup};
use crate::event::{Event, Source};
use crate::render::{push_pairs, value_json, value_text};

pub const SERVICE: &str = "org.freedesktop.login1";
const MANAGER: &str = "org.freedesktop.login1.Manager";

pub fn rules() -> Vec<MatchRule<'static>> {
    vec![signal_rule(
        SERVICE,
        MANAGER,
        None,
        Some("/org/freedesktop/login1"),
    )]
}

#[derive(Default)]
pub struct Renderer {
    /// Session id → the stable part of its description, for SessionRemoved (the object is gone).
    sessions: Mutex<HashMap<String, Vec<(&'static str, String)>>>,
    /// User object path → user name.
    users: Mutex<HashMap<String, String>>,
}

impl Renderer {
    pub async fn render(&self, msg: &Message, lookup: &Lookup) -> Option<Event> {
        let header = msg.header();
        let member = header.member()?.as_str().to_owned();
        let body = msg.body();
        let mut fields = Map::new();
        let text = match member.as_str() {
            "SessionNew" => {
                let (id, path): (String, OwnedObjectPath) = body.deserialize().ok()?;
                fields.insert("session_id".into(), json!(id));
                fields.insert("session_path".into(), json!(path.as_str()));
                let mut described = Vec::new();
                if let Some(props) = lookup
                    .properties(SERVICE, path.as_str(), "org.freedesktop.login1.Session")
                    .await
                {
                    for (key, prop) in [
                        ("user", "Name"),
                        ("seat", "Seat"),
                        ("class", "Class"),
                        ("service", "Service"),
                        ("remote_host", "RemoteHost"),
                    ] {
                        if let Some(v) = props.get(prop) {
                            fields.insert(prop.into(), value_json(v));
                            // Seat is (so): its name is the first field.
                            let text = value_text(v);
                            let text = text.split(',').next().unwrap_or("").to_owned();
                            if !text.is_empty() {
                                described.push((key, text));
                            }
                        }
                    }
                }
                self.sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, described.clone());
                let mut text = "login1 session new".to_owned();
                push_pairs(&mut text, described.iter().map(|(k, v)| (*k, v.clone())));
                text
            }
            "SessionRemoved" => {
                let (id, path): (String, OwnedObjectPath) = body.deserialize().ok()?;
                fields.insert("session_id".into(), json!(id));
                fields.insert("session_path".into(), json!(path.as_str()));
                let described = self
                    .sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id)
                    .unwrap_or_default();
                let mut text = "login1 session removed".to_owned();
                push_pairs(
                    &mut text,
                    described
                        .into_iter()
                        .filter(|(k, _)| *k == "user" || *k == "remote_host"),
                );
                text
            }
            "UserNew" | "UserRemoved" => {
                let (uid, path): (u32, OwnedObjectPath) = body.deserialize().ok()?;
                fields.insert("uid".into(), json!(uid));
                fields.insert("user_path".into(), json!(path.as_str()));
                let name = if member == "UserNew" {
                    let name = lookup
                        .properties(SERVICE, path.as_str(), "org.freedesktop.login1.User")
                        .await
                        .and_then(|p| p.get("Name").map(|v| value_text(v)))
                        .unwrap_or_else(|| format!("uid{uid}"));
                    self.users
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(path.to_string(), name.clone());
                    name
                } else {
                    self.users
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(path.as_str())
                        .unwrap_or_else(|| format!("uid{uid}"))
                };
                let what = if member == "UserNew" {
                    "new"
                } else {
                    "removed"
                };
                let mut text = format!("login1 user {what}");
                push_pairs(&mut text, [("name", name)]);
                text
            }
            "PrepareForShutdown" | "PrepareForSleep" => {
                let (start,): (bool,) = body.deserialize().ok()?;
                fields.insert("start".into(), json!(start));
                let what = if member == "PrepareForShutdown" {
                    "prepare-for-shutdown"
                } else {
                    "prepare-for-sleep"
                };
                format!("login1 {what} {}", if start { "start" } else { "done" })
            }
            _ => return None,
        };
        Some(Event::observed(Source::Login1, text, fields))
    }
}
