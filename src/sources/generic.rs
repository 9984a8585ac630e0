//! Signals from the operator's custom match rules, rendered from their header and body alone:
//! `custom Interface.Member path=/obj arg0=… arg1.Key=…`. Arguments are flattened with their
//! D-Bus types understood: variants unwrapped, byte strings decoded, dictionaries (a{sv} and
//! friends) spread into `argN.key=value` pairs sorted by key with volatile keys left out, other
//! containers as comma lists. Every argument also goes to the fields as JSON.

use serde_json::{json, Map};
use zbus::zvariant::{Structure, Value};
use zbus::Message;

use super::{header_names, Context, Malformed};
use crate::event::{Event, Source};
use crate::render::{value_json, value_text, Canon};

/// Dictionary entries spread into the text per argument; the rest stay in the fields.
const MAX_ENTRIES_PER_ARG: usize = 32;

pub fn render(source: Source, msg: &Message, cx: &Context) -> Result<Event, Malformed> {
    let (interface, member, path) = header_names(msg)?;
    let body = msg.body();
    let args: Vec<Value<'_>> = if body.signature().to_string().is_empty() {
        Vec::new()
    } else {
        let structure: Structure<'_> = body
            .deserialize()
            .map_err(|e| Malformed::new(&member, format!("body ({}): {e}", body.signature())))?;
        structure.into_fields()
    };

    let mut fields = Map::new();
    fields.insert("interface".into(), json!(interface));
    fields.insert("member".into(), json!(member));
    fields.insert("path".into(), json!(path));
    if let Some(sender) = msg.header().sender() {
        fields.insert("sender".into(), json!(sender.as_str()));
    }
    fields.insert(
        "args".into(),
        json!(args.iter().map(value_json).collect::<Vec<_>>()),
    );

    let mut text = Canon::new(&cx.rules, source);
    text.value(&format!("{interface}.{member}"))
        .pair("path", &path);
    for (i, arg) in args.iter().enumerate() {
        let arg = match arg {
            Value::Value(inner) => inner.as_ref(),
            other => other,
        };
        match arg {
            Value::Dict(dict) => {
                let mut entries: Vec<(String, String)> = dict
                    .iter()
                    .map(|(k, v)| (value_text(k), value_text(v)))
                    .filter(|(k, _)| text.keeps(k))
                    .collect();
                entries.sort();
                for (key, value) in entries.iter().take(MAX_ENTRIES_PER_ARG) {
                    text.pair(&format!("arg{i}.{key}"), value);
                }
            }
            other => {
                text.pair(&format!("arg{i}"), &value_text(other));
            }
        }
    }
    Ok(Event::observed(source, text.finish(), fields))
}
