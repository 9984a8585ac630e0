//! Signals rendered from their header and body alone: udisks2's ObjectManager signals and the
//! operator's custom match rules. The text is `source Interface.Member`, the object path, and the
//! body flattened to `argN=value` tokens (dictionary keys sorted); all of it also goes to fields.

use serde_json::{json, Map};
use zbus::zvariant::{Structure, Value};
use zbus::{MatchRule, Message};

use super::signal_rule;
use crate::event::{Event, Source};
use crate::render::{token, value_json, value_text};

pub const UDISKS2_SERVICE: &str = "org.freedesktop.UDisks2";

pub fn udisks2_rules() -> Vec<MatchRule<'static>> {
    vec![signal_rule(
        UDISKS2_SERVICE,
        "org.freedesktop.DBus.ObjectManager",
        None,
        Some("/org/freedesktop/UDisks2"),
    )]
}

pub fn render(source: Source, msg: &Message) -> Option<Event> {
    let header = msg.header();
    let interface = header.interface()?.as_str().to_owned();
    let member = header.member()?.as_str().to_owned();
    let path = header
        .path()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let body = msg.body();
    let args: Vec<Value<'_>> = if body.signature().to_string().is_empty() {
        Vec::new()
    } else {
        let structure: Structure<'_> = body.deserialize().ok()?;
        structure.into_fields()
    };

    let mut fields = Map::new();
    fields.insert("interface".into(), json!(interface));
    fields.insert("member".into(), json!(member));
    fields.insert("path".into(), json!(path));
    fields.insert(
        "args".into(),
        json!(args.iter().map(value_json).collect::<Vec<_>>()),
    );

    let mut text = format!(
        "{} {}.{} path={}",
        source.as_str(),
        interface,
        member,
        token(&path)
    );
    if interface == "org.freedesktop.DBus.ObjectManager" {
        // InterfacesAdded(o, a{sa{sv}}) / InterfacesRemoved(o, as): the object and which of its
        // interfaces came or went say what happened; the property values stay in fields.
        if let Some(object) = args.first() {
            text = format!(
                "{} {} object={}",
                source.as_str(),
                member,
                token(&value_text(object))
            );
        }
        if let Some(interfaces) = args.get(1) {
            let mut names: Vec<String> = match interfaces {
                Value::Dict(d) => d.iter().map(|(k, _)| value_text(k)).collect(),
                other => value_text(other).split(',').map(str::to_owned).collect(),
            };
            names.retain(|n| !n.starts_with("org.freedesktop.DBus."));
            names.sort();
            text.push_str(&format!(" interfaces={}", token(&names.join(","))));
        }
    } else {
        for (i, arg) in args.iter().enumerate() {
            text.push_str(&format!(" arg{i}={}", token(&value_text(arg))));
        }
    }
    Some(Event::observed(source, text, fields))
}
