//! login1 (systemd-logind): sessions and users coming and going, shutdown and sleep. The session
//! object is asked once for its user, seat and remote host; the session number itself is volatile
//! and stays out of the text (it is in the fields).

use serde_json::{json, Map};
use zbus::zvariant::OwnedObjectPath;
use zbus::{MatchRule, Message};

use super::{decode, header_names, signal_rule, BoundedMap, Context, Malformed};
use crate::event::{Event, Source};
use crate::render::{value_json, value_text, Canon};

pub const SERVICE: &str = "org.freedesktop.login1";
const MANAGER: &str = "org.freedesktop.login1.Manager";
const CACHE_ENTRIES: usize = 65_536;

pub fn rules() -> Vec<MatchRule<'static>> {
    vec![signal_rule(
        SERVICE,
        MANAGER,
        None,
        Some("/org/freedesktop/login1"),
    )]
}

/// The session properties that describe it, as (text key, property name).
const SESSION_PROPERTIES: [(&str, &str); 6] = [
    ("user", "Name"),
    ("seat", "Seat"),
    ("class", "Class"),
    ("type", "Type"),
    ("service", "Service"),
    ("remote_host", "RemoteHost"),
];

pub struct Renderer {
    /// Session id → its description, for SessionRemoved (by then the object is gone).
    sessions: BoundedMap<String, Vec<(&'static str, String)>>,
    /// User object path → user name.
    users: BoundedMap<String, String>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer {
            sessions: BoundedMap::new(CACHE_ENTRIES),
            users: BoundedMap::new(CACHE_ENTRIES),
        }
    }
}

impl Renderer {
    pub fn owner_appeared(&mut self) {
        self.sessions.clear();
        self.users.clear();
    }

    pub async fn render(&mut self, msg: &Message, cx: &Context) -> Result<Vec<Event>, Malformed> {
        let (_interface, member, _path) = header_names(msg)?;
        let mut fields = Map::new();
        let mut text = Canon::new(&cx.rules, Source::Login1);
        match member.as_str() {
            "SessionNew" => {
                let (id, path): (String, OwnedObjectPath) = decode(msg, "SessionNew")?;
                fields.insert("session_id".into(), json!(id));
                fields.insert("session_path".into(), json!(path.as_str()));
                let mut described = Vec::new();
                if let Some(props) = cx
                    .lookup
                    .properties(SERVICE, path.as_str(), "org.freedesktop.login1.Session")
                    .await
                {
                    for (key, prop) in SESSION_PROPERTIES {
                        if let Some(v) = props.get(prop) {
                            fields.insert(prop.into(), value_json(v));
                            // Seat is (so): its name is the first field.
                            let value = value_text(v);
                            let value = value.split(',').next().unwrap_or("").to_owned();
                            if !value.is_empty() {
                                described.push((key, value));
                            }
                        }
                    }
                }
                text.word("session").word("new");
                for (key, value) in &described {
                    text.pair(key, value);
                }
                self.sessions.insert(id, described);
            }
            "SessionRemoved" => {
                let (id, path): (String, OwnedObjectPath) = decode(msg, "SessionRemoved")?;
                fields.insert("session_id".into(), json!(id));
                fields.insert("session_path".into(), json!(path.as_str()));
                let described = self.sessions.remove(&id).unwrap_or_default();
                text.word("session").word("removed");
                for (key, value) in &described {
                    fields.insert((*key).into(), json!(value));
                    if matches!(*key, "user" | "class" | "remote_host") {
                        text.pair(key, value);
                    }
                }
            }
            "UserNew" | "UserRemoved" => {
                let (uid, path): (u32, OwnedObjectPath) = decode(msg, &member)?;
                fields.insert("uid".into(), json!(uid));
                fields.insert("user_path".into(), json!(path.as_str()));
                let name = if member == "UserNew" {
                    let name = cx
                        .lookup
                        .property(
                            SERVICE,
                            path.as_str(),
                            "org.freedesktop.login1.User",
                            "Name",
                        )
                        .await
                        .map(|v| value_text(&v))
                        .unwrap_or_else(|| format!("uid{uid}"));
                    self.users.insert(path.to_string(), name.clone());
                    name
                } else {
                    self.users
                        .remove(path.as_str())
                        .unwrap_or_else(|| format!("uid{uid}"))
                };
                fields.insert("name".into(), json!(name));
                text.word("user")
                    .word(if member == "UserNew" {
                        "new"
                    } else {
                        "removed"
                    })
                    .pair("name", &name);
            }
            "PrepareForShutdown" | "PrepareForSleep" => {
                let (start,): (bool,) = decode(msg, &member)?;
                fields.insert("start".into(), json!(start));
                text.word(if member == "PrepareForShutdown" {
                    "prepare-for-shutdown"
                } else {
                    "prepare-for-sleep"
                })
                .word(if start { "start" } else { "done" });
            }
            _ => return Ok(Vec::new()),
        }
        Ok(vec![Event::observed(Source::Login1, text.finish(), fields)])
    }
}
