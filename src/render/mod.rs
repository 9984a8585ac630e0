//! Canonical text: what every source's renderer shares. A canonical text is the source name, then
//! stable words and `Key=value` pairs in a fixed order, separated by single spaces. Values pass
//! through the [`VolatileRules`] and are then escaped, so a value can never add a token, a pair or a
//! line of its own: the text splits on spaces back into the same words and pairs.
//!
//! Escaping of a value (see [`escape`]): a space becomes `_`; `%`, `=`, every other whitespace
//! character, control character and Unicode bidi/format character becomes `%XX` per UTF-8 byte; the
//! empty value becomes `-`. Values longer than [`MAX_VALUE_CHARS`] are cut and end in `…`; a text
//! never exceeds [`MAX_TEXT_BYTES`].
//!
//! Structured fields ([`value_json`]) keep every value, volatile ones included, bounded in size.

pub mod volatile;

use serde_json::{json, Map, Value as Json};
use zbus::zvariant::Value;

use crate::event::Source;
pub use volatile::VolatileRules;

/// A value in the text is cut after this many characters.
pub const MAX_VALUE_CHARS: usize = 160;
/// A text is cut (at a token boundary) beyond this many bytes; MiniLM reads 256 tokens at most.
pub const MAX_TEXT_BYTES: usize = 2048;
/// A string in the structured fields is cut beyond this many bytes.
pub const MAX_FIELD_STRING_BYTES: usize = 4096;
/// Arrays and dictionaries in the structured fields keep at most this many entries.
pub const MAX_FIELD_ENTRIES: usize = 256;

/// Builds one canonical text.
pub struct Canon<'r> {
    text: String,
    rules: &'r VolatileRules,
}

impl<'r> Canon<'r> {
    pub fn new(rules: &'r VolatileRules, source: Source) -> Canon<'r> {
        Canon {
            text: source.as_str().to_owned(),
            rules,
        }
    }

    /// A word of the renderer's own vocabulary (`unit`, `job`, `new`), trusted as written.
    pub fn word(&mut self, word: &str) -> &mut Self {
        debug_assert!(!word.is_empty() && !word.contains(char::is_whitespace));
        self.push(word);
        self
    }

    /// A value from the bus: scrubbed of volatile parts, then escaped into one token.
    pub fn value(&mut self, value: &str) -> &mut Self {
        let scrubbed = self.rules.scrub(value);
        self.push(&escape(&scrubbed));
        self
    }

    /// ` key=value`, unless the key is volatile. Keys from the bus are escaped like values.
    pub fn pair(&mut self, key: &str, value: &str) -> &mut Self {
        if self.rules.is_volatile_key(key) {
            return self;
        }
        let scrubbed = self.rules.scrub(value);
        self.push(&format!("{}={}", escape(key), escape(&scrubbed)));
        self
    }

    /// Whether a pair with this key would be written.
    pub fn keeps(&self, key: &str) -> bool {
        !self.rules.is_volatile_key(key)
    }

    pub fn finish(self) -> String {
        self.text
    }

    fn push(&mut self, token: &str) {
        if self.text.len() + 1 + token.len() > MAX_TEXT_BYTES {
            if !self.text.ends_with(" …") {
                self.text.push_str(" …");
            }
            return;
        }
        self.text.push(' ');
        self.text.push_str(token);
    }
}

/// A value as a single, unforgeable token (see the module documentation for the rules).
pub fn escape(value: &str) -> String {
    if value.is_empty() {
        return "-".into();
    }
    let mut out = String::with_capacity(value.len().min(MAX_VALUE_CHARS * 4));
    for (taken, c) in value.chars().enumerate() {
        if taken == MAX_VALUE_CHARS {
            out.push('…');
            break;
        }
        match c {
            ' ' => out.push('_'),
            '%' | '=' => push_percent(&mut out, c),
            c if c.is_whitespace() || c.is_control() || is_format_char(c) => {
                push_percent(&mut out, c)
            }
            c => out.push(c),
        }
    }
    out
}

fn push_percent(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("%{b:02X}"));
    }
}

/// Invisible characters that reorder or hide text: bidi controls, zero-width characters.
fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// A D-Bus value as plain text, before escaping: scalars as written, byte strings decoded,
/// containers as comma lists (dictionaries as `key:value`, sorted by key).
pub fn value_text(value: &Value<'_>) -> String {
    match value {
        Value::Str(s) => s.to_string(),
        Value::ObjectPath(p) => p.to_string(),
        Value::Signature(s) => s.to_string(),
        Value::Value(inner) => value_text(inner),
        Value::Array(a) if a.element_signature().to_string() == "y" => byte_string(a),
        Value::Array(a) => a
            .iter()
            .take(MAX_FIELD_ENTRIES)
            .map(value_text)
            .collect::<Vec<_>>()
            .join(","),
        Value::Structure(s) => s
            .fields()
            .iter()
            .map(value_text)
            .collect::<Vec<_>>()
            .join(","),
        Value::Dict(d) => {
            let mut entries: Vec<String> = d
                .iter()
                .take(MAX_FIELD_ENTRIES)
                .map(|(k, v)| format!("{}:{}", value_text(k), value_text(v)))
                .collect();
            entries.sort();
            entries.join(",")
        }
        other => value_json(other).to_string(),
    }
}

/// A byte array as text: a NUL-terminated UTF-8 string (udisks2 device paths) as the string,
/// anything else as `hex:…`.
fn byte_string(array: &zbus::zvariant::Array<'_>) -> String {
    let bytes: Vec<u8> = array
        .iter()
        .filter_map(|v| if let Value::U8(b) = v { Some(*b) } else { None })
        .collect();
    let trimmed = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
    match std::str::from_utf8(trimmed) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let shown = &bytes[..bytes.len().min(MAX_FIELD_STRING_BYTES / 2)];
            format!("hex:{}", hex::encode(shown))
        }
    }
}

/// A string cut to at most `max` bytes at a character boundary, saying how much was cut.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…(+{} bytes)", &s[..end], s.len() - end)
}

/// A D-Bus value as JSON, for the structured fields of an audit record: every value kept,
/// strings and containers bounded in size.
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
        Value::Str(s) => json!(bounded(s.as_str(), MAX_FIELD_STRING_BYTES)),
        Value::Signature(s) => json!(s.to_string()),
        Value::ObjectPath(p) => json!(bounded(p.as_str(), MAX_FIELD_STRING_BYTES)),
        Value::Value(inner) => value_json(inner),
        Value::Array(a) if a.element_signature().to_string() == "y" => {
            json!(bounded(&byte_string(a), MAX_FIELD_STRING_BYTES))
        }
        Value::Array(a) => {
            let mut items: Vec<Json> = a.iter().take(MAX_FIELD_ENTRIES).map(value_json).collect();
            if a.len() > MAX_FIELD_ENTRIES {
                items.push(json!(format!(
                    "…(+{} entries)",
                    a.len() - MAX_FIELD_ENTRIES
                )));
            }
            Json::Array(items)
        }
        Value::Dict(d) => {
            let mut map = Map::new();
            for (k, v) in d.iter().take(MAX_FIELD_ENTRIES) {
                map.insert(
                    bounded(&value_text(k), MAX_FIELD_STRING_BYTES),
                    value_json(v),
                );
            }
            Json::Object(map)
        }
        Value::Structure(s) => Json::Array(s.fields().iter().map(value_json).collect()),
        #[cfg(unix)]
        Value::Fd(_) => json!("<fd>"),
        #[allow(unreachable_patterns)]
        _ => json!(null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_cannot_forge_a_pair_a_token_or_a_line() {
        assert_eq!(escape("exit code"), "exit_code");
        assert_eq!(escape(""), "-");
        assert_eq!(escape("a\nActiveState=active"), "a%0AActiveState%3Dactive");
        assert_eq!(escape("a\r\tb"), "a%0D%09b");
        assert_eq!(escape("50%"), "50%25");
        assert_eq!(escape("x\u{2028}y\u{202E}z"), "x%E2%80%A8y%E2%80%AEz");
        assert_eq!(escape("nginx.service"), "nginx.service");
        let long = escape(&"x".repeat(1000));
        assert_eq!(long.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn canon_scrubs_escapes_and_skips_volatile_keys() {
        let rules = VolatileRules::default();
        let mut text = Canon::new(&rules, Source::Systemd);
        text.word("unit")
            .value("run-u42.service")
            .pair("ActiveState", "failed")
            .pair("MainPID", "4242")
            .pair("Result", "exit code\nSubState=running");
        assert_eq!(
            text.finish(),
            "systemd unit run-*.service ActiveState=failed Result=exit_code%0ASubState%3Drunning"
        );
        let words: Vec<&str> = "systemd unit run-*.service ActiveState=failed"
            .split(' ')
            .collect();
        assert_eq!(words.len(), 4);
    }

    #[test]
    fn texts_stay_bounded() {
        let rules = VolatileRules::default();
        let mut text = Canon::new(&rules, Source::Custom);
        for i in 0..1000 {
            text.pair(&format!("k{i}"), &"v".repeat(100));
        }
        let text = text.finish();
        assert!(text.len() <= MAX_TEXT_BYTES + " …".len());
        assert!(text.ends_with(" …"));
    }

    #[test]
    fn byte_strings_decode_or_show_as_hex() {
        let path = Value::from(b"/dev/sda1\0".to_vec());
        assert_eq!(value_text(&path), "/dev/sda1");
        assert_eq!(value_json(&path), json!("/dev/sda1"));
        let invalid = Value::from(vec![0xffu8, 0xfe, 0x00]);
        assert_eq!(value_text(&invalid), "hex:fffe00");
    }

    #[test]
    fn field_strings_are_bounded() {
        let huge = "y".repeat(1 << 20);
        let json = value_json(&Value::from(huge.as_str()));
        let s = json.as_str().unwrap();
        assert!(s.len() < MAX_FIELD_STRING_BYTES + 32);
        assert!(s.ends_with(&format!("(+{} bytes)", (1 << 20) - MAX_FIELD_STRING_BYTES)));
    }
}
