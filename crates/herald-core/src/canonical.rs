//! Canonical JSON: object keys sorted, no insignificant whitespace, every
//! number in one canonical form.
//!
//! Two JSON values that are equal (key order, whitespace and the spelling of
//! numbers aside: `1`, `1.0` and `1E0` are one number) have the same canonical
//! text. Herald hashes it to compare event content and to derive ids.
//! Written out here rather than relying on `serde_json`'s map ordering, because a
//! `preserve_order` feature enabled anywhere in the build would silently change it.
//!
//! Numbers arrive with the digits the producer wrote (serde_json's
//! `arbitrary_precision`; it only spells a positive exponent `e+`), so no
//! digit is lost to a double: events are stored with their numbers so
//! ([`write_object_into`]) and compared by exact value ([`number`]).

use std::borrow::Cow;
use std::fmt::Write;

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    let _ = Writer::canonical(&mut out).value(value);
    out
}

pub fn sha256(value: &Value) -> [u8; 32] {
    let mut hasher = HashWriter(Sha256::new());
    let _ = Writer::canonical(&mut hasher).value(value);
    hasher.0.finalize().into()
}

/// One element of a list to hash, borrowed from wherever it lives.
pub enum Part<'a> {
    Str(&'a str),
    Object(&'a Map<String, Value>),
    /// Text already in canonical form (from [`write_object_into`] when it
    /// says so): hashed as is.
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
                Part::Object(map) => Writer::canonical(&mut hasher).object(map)?,
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

/// Appends an object's text as Herald stores it: keys sorted, numbers as the
/// producer wrote them. Returns whether that text is also canonical (every
/// number already in canonical form, as integers and most decimals are; not
/// `1.0` or `1e6`), so the caller can hash it instead of writing the object a
/// second time.
pub fn write_object_into(map: &Map<String, Value>, out: &mut String) -> bool {
    let mut writer = Writer { out, numbers: Numbers::AsWritten, all_canonical: true };
    // Writing to a String cannot fail.
    let _ = writer.object(map);
    writer.all_canonical
}

/// Length in bytes of an object's text as stored (also its compact JSON
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
    let _ = Writer { out: &mut count, numbers: Numbers::AsWritten, all_canonical: false }.object(map);
    count.0
}

/// Whether two JSON values are equal as Herald compares content: numbers by
/// exact value, object keys in any order.
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || number(x) == number(y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, x)| y.get(key).is_some_and(|y| equal(x, y)))
        }
        _ => a == b,
    }
}

/// How many digits a number's exponent may have. Beyond them, the exact
/// arithmetic of [`number`] would need more than 64 bits for the exponent;
/// no real value needs one (a double ends at 1e308).
pub const MAX_EXPONENT_DIGITS: usize = 9;

/// Pointer (below the object) to the first number whose exponent has more
/// than [`MAX_EXPONENT_DIGITS`] digits, if any.
pub fn unsupported_number(map: &Map<String, Value>) -> Option<String> {
    fn in_object(map: &Map<String, Value>) -> Option<String> {
        map.iter()
            .find_map(|(key, item)| in_value(item).map(|below| format!("/{}{below}", crate::error::pointer_token(key))))
    }
    fn in_value(value: &Value) -> Option<String> {
        match value {
            Value::Number(n) => (exponent_digits(n.as_str()).len() > MAX_EXPONENT_DIGITS).then(String::new),
            Value::Array(items) => {
                items.iter().enumerate().find_map(|(i, item)| in_value(item).map(|below| format!("/{i}{below}")))
            }
            Value::Object(map) => in_object(map),
            _ => None,
        }
    }
    in_object(map)
}

/// The significant digits of a number's exponent, without sign or leading zeros.
fn exponent_digits(text: &str) -> &str {
    match text.find(['e', 'E']) {
        Some(at) => text[at + 1..].trim_start_matches(['+', '-']).trim_start_matches('0'),
        None => "",
    }
}

/// The canonical text of a JSON number: its exact decimal value, formatted as
/// ECMAScript formats numbers (and so as RFC 8785 does, for every number a
/// double holds), but without rounding to a double. `1.0`, `1E0` and `10e-1`
/// are all `1`; `1e21` is `1e+21`; `12345678901234567890123` keeps every digit.
pub fn number(n: &Number) -> Cow<'_, str> {
    let text = n.as_str();
    if is_canonical_integer(text) {
        return Cow::Borrowed(text);
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], exponent(&unsigned[at + 1..])),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // value = digits × 10^(exponent - fraction.len()), digits without the point
    let digits: String = [whole, fraction].concat();
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Cow::Borrowed("0"); // -0 and 0.000 too
    }
    let trailing_zeros = (significant.len() - trimmed.len()) as i64;
    let k = trimmed.len() as i64;
    // ECMAScript's n: the value is 0.<trimmed> × 10^n
    let n = k + exponent - fraction.len() as i64 + trailing_zeros;

    let mut out = String::with_capacity(trimmed.len() + 8);
    if negative {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(trimmed);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (before, after) = trimmed.split_at(n as usize);
        out.push_str(before);
        out.push('.');
        out.push_str(after);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(trimmed);
    } else {
        let (first, rest) = trimmed.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        let _ = write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    Cow::Owned(out)
}

/// A plain integer of at most 21 digits is its own canonical form: the
/// common case, answered without arithmetic.
fn is_canonical_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty() && digits.len() <= 21 && digits.bytes().all(|b| b.is_ascii_digit());
    plain && (!digits.starts_with('0') || text == "0")
}

/// A number's exponent (the text after `e`). Events never hold one of more
/// than [`MAX_EXPONENT_DIGITS`] digits (see [`unsupported_number`]); longer
/// ones are clamped rather than overflowing, so [`number`] is exact only for
/// numbers that passed that check.
fn exponent(text: &str) -> i64 {
    let negative = text.starts_with('-');
    let digits = text.trim_start_matches(['+', '-']).trim_start_matches('0');
    let magnitude = if digits.len() > 15 { 10_i64.pow(15) } else { digits.parse().unwrap_or(0) };
    if negative { -magnitude } else { magnitude }
}

/// How a [`Writer`] writes numbers.
#[derive(Clone, Copy, PartialEq)]
enum Numbers {
    /// As the producer wrote them: what Herald stores and serves.
    AsWritten,
    /// In canonical form ([`number`]): what Herald hashes.
    Canonical,
}

/// Writes JSON values with sorted keys to any `fmt::Write`: a String, a
/// hasher, a byte counter.
struct Writer<'w, W> {
    out: &'w mut W,
    numbers: Numbers,
    /// Every number written so far was already in canonical form (checked
    /// only when writing as written and this starts true).
    all_canonical: bool,
}

impl<'w, W: Write> Writer<'w, W> {
    fn canonical(out: &'w mut W) -> Self {
        Self { out, numbers: Numbers::Canonical, all_canonical: true }
    }

    fn value(&mut self, value: &Value) -> std::fmt::Result {
        match value {
            Value::Object(map) => self.object(map),
            Value::Array(items) => {
                self.out.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.write_char(',')?;
                    }
                    self.value(item)?;
                }
                self.out.write_char(']')
            }
            Value::String(s) => write_str(s, self.out),
            Value::Null => self.out.write_str("null"),
            Value::Bool(b) => self.out.write_str(if *b { "true" } else { "false" }),
            Value::Number(n) if self.numbers == Numbers::Canonical => self.out.write_str(&number(n)),
            Value::Number(n) => {
                // Checked only while it can still matter: not once one number
                // was not canonical, nor when only counting bytes.
                if self.all_canonical {
                    self.all_canonical = number(n) == n.as_str();
                }
                self.out.write_str(n.as_str())
            }
        }
    }

    fn object(&mut self, map: &Map<String, Value>) -> std::fmt::Result {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.out.write_char('{')?;
        for (i, (key, value)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.out.write_char(',')?;
            }
            write_str(key, self.out)?;
            self.out.write_char(':')?;
            self.value(value)?;
        }
        self.out.write_char('}')
    }
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
        let mut stored = String::new();
        write_object_into(map, &mut stored);
        assert_eq!(object_len(map), stored.len());
    }

    fn canonical_number(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        number(value.as_number().unwrap()).into_owned()
    }

    #[test]
    fn numbers_have_one_exact_canonical_form() {
        for (written, canonical) in [
            ("0", "0"),
            ("-0", "0"),
            ("0.000", "0"),
            ("0e5", "0"),
            ("1", "1"),
            ("1.0", "1"),
            ("1E0", "1"),
            ("10e-1", "1"),
            ("100", "100"),
            ("1e2", "100"),
            ("1.5E+2", "150"),
            ("-4200.00", "-4200"),
            ("1.50", "1.5"),
            ("123e-2", "1.23"),
            ("0.1", "0.1"),
            ("0.000001", "0.000001"),
            ("1e-6", "0.000001"),
            ("1e-7", "1e-7"),
            ("0.00000012", "1.2e-7"),
            ("1e20", "100000000000000000000"),
            ("1e21", "1e+21"),
            ("1.5e300", "1.5e+300"),
            ("-1e400", "-1e+400"),
            ("123456789012345678901", "123456789012345678901"),
            ("12345678901234567890123", "1.2345678901234567890123e+22"),
            ("12345678901234567890123.0e-2", "123456789012345678901.23"),
            ("0.10000000000000000000000000001", "0.10000000000000000000000000001"),
        ] {
            assert_eq!(canonical_number(written), canonical, "{written}");
            assert_eq!(canonical_number(canonical), canonical, "{canonical} is its own canonical form");
        }
    }

    #[test]
    fn numbers_compare_by_exact_value() {
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        let a = parse(r#"{"n": 1, "list": [2.50, {"x": 1e2}], "big": 18446744073709551616000}"#);
        let b = parse(r#"{"big": 1.8446744073709551616E+22, "list": [2.5, {"x": 100.0}], "n": 1.0}"#);
        assert!(equal(&a, &b));
        assert_eq!(sha256(&a), sha256(&b));
        assert_eq!(to_string(&a), r#"{"big":1.8446744073709551616e+22,"list":[2.5,{"x":100}],"n":1}"#);
        // Beyond a double's 17 digits: one digit apart is a different number.
        let c = parse(r#"{"id": 123456789012345678901234567890}"#);
        let d = parse(r#"{"id": 123456789012345678901234567891}"#);
        assert!(!equal(&c, &d));
        assert_ne!(sha256(&c), sha256(&d));
        assert!(!equal(&parse("[1, 2]"), &parse("[1]")));
        assert!(!equal(&parse(r#"{"a": 1}"#), &parse(r#"{"a": 1, "b": 1}"#)));
    }

    #[test]
    fn stored_text_keeps_numbers_as_written_and_says_whether_it_is_canonical() {
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        let mut text = String::new();
        assert!(write_object_into(parse(r#"{"b": 42, "a": [-7, 0.5]}"#).as_object().unwrap(), &mut text));
        assert_eq!(text, r#"{"a":[-7,0.5],"b":42}"#);
        let mut text = String::new();
        let written = parse(r#"{"price": 10.50, "n": 1E3}"#);
        assert!(!write_object_into(written.as_object().unwrap(), &mut text));
        assert_eq!(text, r#"{"n":1e+3,"price":10.50}"#);
        assert_eq!(object_len(written.as_object().unwrap()), text.len());
    }

    #[test]
    fn only_absurd_exponents_are_unsupported() {
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        let fine = parse(r#"{"a": 1e999999999, "b": [1E-000000000000999999999]}"#);
        assert_eq!(unsupported_number(fine.as_object().unwrap()), None);
        let absurd = parse(r#"{"a": 1, "b/c": [0, {"d": 1e1000000000}]}"#);
        assert_eq!(unsupported_number(absurd.as_object().unwrap()).as_deref(), Some("/b~1c/1/d"));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(to_string(&json!({"k\"": "line\nbreak"})), r#"{"k\"":"line\nbreak"}"#);
    }
}
