//! Canonical JSON: object keys sorted, no insignificant whitespace.
//!
//! Two JSON values that are equal (key order and whitespace aside) have the same
//! canonical text. Herald hashes it to compare event content and to derive ids.
//! Written out here rather than relying on `serde_json`'s map ordering, because a
//! `preserve_order` feature enabled anywhere in the build would silently change it.

use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

pub fn sha256(value: &Value) -> [u8; 32] {
    Sha256::digest(to_string(value).as_bytes()).into()
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(key, out);
                out.push(':');
                write(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_str(s, out),
        // Null, booleans and numbers print canonically already.
        other => out.push_str(&other.to_string()),
    }
}

fn write_str(s: &str, out: &mut String) {
    // serde_json's string escaping is canonical (shortest escapes, \u for controls).
    out.push_str(&Value::String(s.to_owned()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(to_string(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
        assert_eq!(to_string(&a), to_string(&b));
        assert_eq!(sha256(&a), sha256(&b));
    }

    #[test]
    fn different_values_differ() {
        assert_ne!(sha256(&json!({"a": 1})), sha256(&json!({"a": 2})));
        assert_ne!(sha256(&json!(["a", "b"])), sha256(&json!(["b", "a"])));
        assert_ne!(to_string(&json!({"a": "1"})), to_string(&json!({"a": 1})));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            to_string(&json!({"k\"": "line\nbreak"})),
            r#"{"k\"":"line\nbreak"}"#
        );
    }
}
