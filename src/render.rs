//! Canonical text: the pieces every source's renderer shares. A canonical text is the source name,
//! then stable words and `Key=value` pairs in a fixed order, separated by single spaces; values
//! never contain whitespace, so the text splits back into the same tokens.

use serde_json::{json, Map, Value as Json};
use zbus::zvariant::Value;

/// A value as a single token: whitespace becomes `_`, the empty value becomes `-`.
pub fn token(value: &str) -> String {
    if value.is_empty() {
        return "-".into();
    }
    value
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// Appends ` Key=value` for each pair, in the order given.
pub fn push_pairs<'a>(text: &mut String, pairs: impl IntoIterator<Item = (&'a str, String)>) {
    for (key, value) in pairs {
        text.push(' ');
        text.push_str(key);
        text.push('=');
        text.push_str(&token(&value));
    }
}

/// A D-Bus value as plain text (scalars as written, containers as comma lists).
pub fn value_text(value: &Value<'_>) -> String {
    match value {
        Value::Str(s) => s.to_string(),
        Value::ObjectPath(p) => p.to_string(),
        Value::Signature(s) => s.to_string(),
        Value::Value(inner) => value_text(inner),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(","),
        Value::Structure(s) => s
            .fields()
            .iter()
            .map(value_text)
            .collect::<Vec<_>>()
            .join(","),
        Value::Dict(_) => value_json(value).to_string(),
        other => value_json(other).to_string(),
    }
}

/// A D-Bus value as JSON, for the structured fields of an audit record.
pub fn value_json(value: &Value<'_>) -> Json {
    match value {
        Value::U8(v) => json!(v),
        Value::Bool(v) => json!(v),
        Value::I16(v) => json!(v),
        Value::U16(v) => json!(v),
        Value::I32(v) => json!(v),
        Value::U32(v) => json!(v),
        Value::I64(v) => json!(v),
        Value::U64(v) => json!(v),
        Value::F64(v) => json!(v),
        Value::Str(s) => json!(s.as_str()),
        Value::Signature(s) => json!(s.to_string()),
        Value::ObjectPath(p) => json!(p.as_str()),
        Value::Value(inner) => value_json(inner),
        Value::Array(a) => {
            // Byte arrays are usually NUL-terminated strings (udisks2 paths) or opaque blobs.
            if a.element_signature().to_string() == "y" {
                let bytes: Vec<u8> = a
                    .iter()
                    .filter_map(|v| if let Value::U8(b) = v { Some(*b) } else { None })
                    .collect();
                let trimmed = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
                return match std::str::from_utf8(trimmed) {
                    Ok(s) => json!(s),
                    Err(_) => json!(hex::encode(&bytes)),
                };
            }
            Json::Array(a.iter().map(value_json).collect())
        }
        Value::Dict(d) => {
            let mut map = Map::new();
            for (k, v) in d.iter() {
                map.insert(value_text(k), value_json(v));
            }
            Json::Object(map)
        }
        Value::Structure(s) => Json::Array(s.fields().iter().map(value_json).collect()),
        #[allow(unreachable_patterns)]
        _ => json!(null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_split() {
        assert_eq!(token("exit code"), "exit_code");
        assert_eq!(token(""), "-");
        let mut text = String::from("systemd unit a.service");
        push_pairs(
            &mut text,
            [
                ("ActiveState", "failed".to_string()),
                ("Result", "exit code".to_string()),
            ],
        );
        assert_eq!(
            text,
            "systemd unit a.service ActiveState=failed Result=exit_code"
        );
    }
}
