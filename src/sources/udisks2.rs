//! udisks2: drives, block devices, filesystems and jobs appearing and disappearing, from its
//! ObjectManager's `InterfacesAdded(o, a{sa{sv}})` and `InterfacesRemoved(o, as)`. The text names
//! the object (relative to udisks2's root), the interfaces that came or went, and a few stable
//! properties (device node, filesystem type, drive model); every property stays in the fields.
//! What an object was is remembered, so its removal says the same.

use std::collections::HashMap;

use serde_json::{json, Map};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{MatchRule, Message};

use super::{decode, header_names, signal_rule, BoundedMap, Context, Malformed};
use crate::event::{Event, Source};
use crate::render::{value_json, value_text, Canon};

pub const SERVICE: &str = "org.freedesktop.UDisks2";
const ROOT: &str = "/org/freedesktop/UDisks2/";
const INTERFACE_PREFIX: &str = "org.freedesktop.UDisks2.";
const CACHE_ENTRIES: usize = 65_536;

/// Per interface, the properties that say what the object is, in text order.
const DESCRIBING: [(&str, &[&str]); 5] = [
    ("Block", &["Device", "IdUsage", "IdType"]),
    ("Drive", &["Vendor", "Model", "ConnectionBus", "Removable"]),
    ("Loop", &["BackingFile"]),
    ("MDRaid", &["Level"]),
    ("Job", &["Operation"]),
];

pub fn rules() -> Vec<MatchRule<'static>> {
    vec![signal_rule(
        SERVICE,
        "org.freedesktop.DBus.ObjectManager",
        None,
        Some("/org/freedesktop/UDisks2"),
    )]
}

type Described = Vec<(String, String)>;

pub struct Renderer {
    /// Object path → its description, for InterfacesRemoved.
    objects: BoundedMap<String, Described>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer {
            objects: BoundedMap::new(CACHE_ENTRIES),
        }
    }
}

fn short_interface(name: &str) -> &str {
    name.strip_prefix(INTERFACE_PREFIX).unwrap_or(name)
}

impl Renderer {
    pub fn owner_appeared(&mut self) {
        self.objects.clear();
    }

    pub fn render(&mut self, msg: &Message, cx: &Context) -> Result<Vec<Event>, Malformed> {
        let (_interface, member, _path) = header_names(msg)?;
        let mut fields = Map::new();
        let (object, interfaces, described) = match member.as_str() {
            "InterfacesAdded" => {
                let (object, added): (
                    OwnedObjectPath,
                    HashMap<String, HashMap<String, OwnedValue>>,
                ) = decode(msg, "InterfacesAdded")?;
                let mut names: Vec<String> = added.keys().cloned().collect();
                names.sort();
                let mut described = Described::new();
                for (short, props) in DESCRIBING {
                    let Some(values) = added.get(&format!("{INTERFACE_PREFIX}{short}")) else {
                        continue;
                    };
                    for prop in props {
                        if let Some(v) = values.get(*prop) {
                            described.push((prop.to_string(), value_text(v)));
                        }
                    }
                }
                let mut json_props = Map::new();
                for (iface, values) in &added {
                    let mut m = Map::new();
                    for (k, v) in values {
                        m.insert(k.clone(), value_json(v));
                    }
                    json_props.insert(iface.clone(), serde_json::Value::Object(m));
                }
                fields.insert("properties".into(), serde_json::Value::Object(json_props));
                let mut known = self
                    .objects
                    .get(object.as_str())
                    .cloned()
                    .unwrap_or_default();
                known.extend(described.iter().cloned());
                self.objects.insert(object.to_string(), known);
                (object, names, described)
            }
            "InterfacesRemoved" => {
                let (object, removed): (OwnedObjectPath, Vec<String>) =
                    decode(msg, "InterfacesRemoved")?;
                let mut names = removed;
                names.sort();
                let described = self.objects.remove(object.as_str()).unwrap_or_default();
                (object, names, described)
            }
            _ => return Ok(Vec::new()),
        };
        fields.insert("object".into(), json!(object.as_str()));
        fields.insert("interfaces".into(), json!(interfaces));
        for (k, v) in &described {
            fields.insert(k.clone(), json!(v));
        }

        let scrubbed = cx.rules.scrub(object.as_str());
        let relative = scrubbed.strip_prefix(ROOT).unwrap_or(&scrubbed);
        let shown: Vec<&str> = interfaces
            .iter()
            .map(|i| short_interface(i))
            .filter(|i| !i.starts_with("org.freedesktop.DBus."))
            .collect();
        let mut text = Canon::new(&cx.rules, Source::Udisks2);
        text.word(if member == "InterfacesAdded" {
            "added"
        } else {
            "removed"
        })
        .pair("object", relative)
        .pair("interfaces", &shown.join(","));
        for (key, value) in &described {
            text.pair(key, value);
        }
        Ok(vec![Event::observed(
            Source::Udisks2,
            text.finish(),
            fields,
        )])
    }
}
