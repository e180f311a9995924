//! Canonical JSON: object keys sorted, no insignificant whitespace.
//!
//! Two JSON values that are equal (key order and whitespace aside) have the same
//! canonical text. Herald hashes it to compare event content and to derive ids.
//! Written out here rather than relying on `serde_json`'s map ordering, because a
//! `preserve_order` feature enabled anywhere in the build would silently change it.

use std::fmt::Write;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

pub fn sha256(value: &Value) -> [u8; 32] {
    let mut hasher = HashWriter(Sha256::new());
    write(value, &mut hasher);
    hasher.0.finalize().into()
}

/// One element of a list to hash, borrowed from wherever it lives.
pub enum Part<'a> {
    Str(&'a str),
    Object(&'a Map<String, Value>),
    /// Text already in canonical form (from [`write_object_into`]): hashed as is.
    Canonical(&'a str),
}

/// Hash of the canonical text of the JSON array `[parts...]`, streamed into
/// the hasher: no copy of the values, no intermediate string.
pub fn sha256_of_list(parts: &[Part<'_>]) -> [u8; 32] {
    let mut hasher = HashWriter(Sha256::new());
    let _ = (|| {
        hasher.write_char('[')?;
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                hasher.write_char(',')?;
            }
            match part {
                Part::Str(s) => write_str(s, &mut hasher)?,
                Part::Object(map) => write_object(map, &mut hasher)?,
                Part::Canonical(text) => hasher.write_str(text)?,
            }
        }
        hasher.write_char(']')
    })();
    hasher.0.finalize().into()
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// Appends the canonical text of an object to `out`.
pub fn write_object_into(map: &Map<String, Value>, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = write_object(map, out);
}

/// Length in bytes of an object's canonical text (also its compact JSON
/// length: only the key order differs), counted without writing it out.
pub fn object_len(map: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = write_object(map, &mut count);
    count.0
}

fn write<W: Write>(value: &Value, out: &mut W) {
    // Writing to a String or a hasher cannot fail.
    let _ = try_write(value, out);
}

fn try_write<W: Write>(value: &Value, out: &mut W) -> std::fmt::Result {
    match value {
        Value::Object(map) => write_object(map, out),
        Value::Array(items) => {
            out.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                try_write(item, out)?;
            }
            out.write_char(']')
        }
        Value::String(s) => write_str(s, out),
        Value::Null => out.write_str("null"),
        Value::Bool(b) => out.write_str(if *b { "true" } else { "false" }),
        // serde_json prints numbers canonically (shortest round-trip form).
        Value::Number(n) => write!(out, "{n}"),
    }
}

fn write_object<W: Write>(map: &Map<String, Value>, out: &mut W) -> std::fmt::Result {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.write_char('{')?;
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        write_str(key, out)?;
        out.write_char(':')?;
        try_write(value, out)?;
    }
    out.write_char('}')
}

/// JSON string escaping as serde_json does it: short escapes where JSON has
/// them, `\u00XX` for other control characters, everything else verbatim.
fn write_str<W: Write>(s: &str, out: &mut W) -> std::fmt::Result {
    out.write_char('"')?;
    let bytes = s.as_bytes();
    let mut start = 0;
    // Scan bytes, not chars: only ASCII needs escaping, and multi-byte UTF-8
    // sequences never contain ASCII bytes, so slicing at these indexes is safe.
    while let Some(i) = next_escape(bytes, start) {
        out.write_str(&s[start..i])?;
        match bytes[i] {
            b'"' => out.write_str("\\\"")?,
            b'\\' => out.write_str("\\\\")?,
            b'\n' => out.write_str("\\n")?,
            b'\r' => out.write_str("\\r")?,
            b'\t' => out.write_str("\\t")?,
            0x08 => out.write_str("\\b")?,
            0x0c => out.write_str("\\f")?,
            control => write!(out, "\\u{control:04x}")?,
        }
        start = i + 1;
    }
    out.write_str(&s[start..])?;
    out.write_char('"')
}

/// Index of the first byte at or after `from` that JSON must escape: `"`,
/// `\\` or a control character. Eight bytes at a time (SWAR), because event
/// bodies are mostly long plain strings, where the byte-by-byte scan was ~7%
/// of the batch publish path's CPU.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Exact as a yes/no per word: some byte of `word` is below `n` (n <= 128).
    let any_below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0;
    let any_equal = |word: u64, b: u8| any_below(word ^ (ONES * u64::from(b)), 1);
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("an 8-byte slice"));
        if any_below(word, 0x20) || any_equal(word, b'"') || any_equal(word, b'\\') {
            break; // it is in this word: the byte scan below finds it
        }
        i += 8;
    }
    bytes[i..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|offset| i + offset)
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
    fn escaping_matches_serde_json() {
        for s in ["plain", "q\"uote", "back\\slash", "\u{1}\u{1f}\u{7f}", "tab\tnl\ncr\rbs\u{8}ff\u{c}", "é中/🎉"] {
            assert_eq!(to_string(&json!(s)), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn hashing_a_list_equals_hashing_the_array() {
        let a = json!({"y": 1, "x": [true, null]});
        let parts = [Part::Str("s"), Part::Object(a.as_object().unwrap())];
        assert_eq!(sha256_of_list(&parts), sha256(&json!(["s", a])));
    }

    #[test]
    fn pre_rendered_text_hashes_like_the_object() {
        let a = json!({"y": 1, "x": ["é", null]});
        let mut text = String::new();
        write_object_into(a.as_object().unwrap(), &mut text);
        assert_eq!(text, to_string(&a));
        let rendered = [Part::Str("s"), Part::Canonical(&text)];
        assert_eq!(sha256_of_list(&rendered), sha256_of_list(&[Part::Str("s"), Part::Object(a.as_object().unwrap())]));
    }

    #[test]
    fn the_word_scan_finds_what_a_byte_scan_finds() {
        let naive = |b: &[u8], from: usize| b[from..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for len in 0..24 {
                for at in 0..=len {
                    let mut bytes = vec![b'a'; len];
                    bytes.extend([0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']']);
                    if at < len {
                        bytes[at] = special;
                    }
                    for from in 0..=bytes.len() {
                        assert_eq!(
                            next_escape(&bytes, from),
                            naive(&bytes, from).map(|o| o + from),
                            "{bytes:?} from {from}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn object_len_is_the_compact_json_length() {
        let value = json!({
            "b": [1, -2.5, 1e300, 9e15, 0.1, null, true, false, {}, []],
            "a": "quote \" backslash \\ newline \n tab \t bell \u{7} \u{1f} é ✓ 😀",
            "nested": {"z": {"y": "x"}, "": ""}
        });
        let map = value.as_object().unwrap();
        assert_eq!(object_len(map), serde_json::to_string(map).unwrap().len());
        assert_eq!(object_len(map), to_string(&value).len());
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(to_string(&json!({"k\"": "line\nbreak"})), r#"{"k\"":"line\nbreak"}"#);
    }
}
