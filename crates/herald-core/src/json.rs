//! JSON text into `serde_json::Value`, refusing what has no one reading.
//!
//! RFC 8259 leaves an object with a repeated name to each parser
//! ("unpredictable"): serde_json keeps the last, others keep the first or
//! fail. Herald compares, hashes and derives ids from the parsed value, so
//! it refuses such an object rather than store one reading of it. It also
//! refuses a member named with one of serde_json's private tokens
//! (`$serde_json::private::Number`, `...::RawValue`), which serde_json would
//! silently read as something else.
//!
//! [`parse`] builds the value as serde_json's own `Value` does, checking each
//! name as it is inserted (no cost beyond the insert it already does); on a
//! refusal it reads the text again, without building anything, to find where.
//!
//! A leading UTF-8 byte order mark is ignored, as RFC 8259 lets a parser do
//! (some Windows clients send one); positions still count it.

use std::fmt::{self, Write};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

use crate::error::pointer_token;

/// How deep serde_json parses arrays and objects into one another.
pub const MAX_DEPTH: usize = 127;

/// The key serde_json's `arbitrary_precision` passes a number's digits
/// under (`serde_json::number::TOKEN`, private): a number reaches a visitor
/// as a one-member map of its digits.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// What serde_json's private tokens start with. Each makes serde_json read a
/// one-member object as something else (`...::Number` as a number,
/// `...::RawValue`, with the `raw_value` feature axum turns on, as the JSON
/// text in its string), so a text naming a member so is refused: read back
/// later, it would not be what was stored.
const PRIVATE_PREFIX: &str = "$serde_json::private::";

const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Why a member is refused; `Build` fails with this text, which tells its
/// refusals apart from serde_json's own data errors.
const REPEATED: &str = "is named twice in one object, which JSON leaves ambiguous";
const RESERVED: &str = "has a name serde_json reserves ($serde_json::private::...), which Herald cannot keep as sent";

/// Why a text is not one JSON value Herald reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not well-formed JSON.
    Malformed { message: String, line: usize, column: usize },
    /// Arrays and objects nested deeper than [`MAX_DEPTH`] (serde_json's
    /// limit, which keeps a hostile text from exhausting the stack).
    TooDeep { line: usize, column: usize },
    /// Well-formed, but the member at `pointer` has no one reading: it is
    /// named twice in its object, or named with one of serde_json's private
    /// tokens.
    Refused { pointer: String, why: &'static str, line: usize, column: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Malformed { message, line, column } => write!(f, "{message} at line {line} column {column}"),
            Self::TooDeep { line, column } => {
                write!(f, "nests arrays and objects more than {MAX_DEPTH} deep (line {line} column {column})")
            }
            Self::Refused { pointer, why, line, column } => {
                write!(f, "member {pointer} {why} (line {line} column {column})")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Parses a JSON text (after an optional byte order mark).
pub fn parse(bytes: &[u8]) -> Result<Value, Error> {
    let (text, shift) = match bytes.strip_prefix(BYTE_ORDER_MARK) {
        Some(text) => (text, BYTE_ORDER_MARK.len()),
        None => (bytes, 0),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let parsed = deserializer.deserialize_any(Build).and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|e| {
        let (line, column) = (e.line(), if e.line() == 1 { e.column() + shift } else { e.column() });
        // serde_json's message ends in its own position, which the byte
        // order mark may have shifted.
        let full = e.to_string();
        let message = full.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())).unwrap_or(&full);
        if let Some(why) = [REPEATED, RESERVED].into_iter().find(|why| e.is_data() && message == *why)
            && let Some(pointer) = refused_member(text)
        {
            return Error::Refused { pointer, why, line, column };
        }
        if message == "recursion limit exceeded" {
            return Error::TooDeep { line, column };
        }
        Error::Malformed { message: message.to_owned(), line, column }
    })
}

/// Whether a body holds nothing but whitespace (and a byte order mark).
pub fn is_blank(bytes: &[u8]) -> bool {
    bytes.strip_prefix(BYTE_ORDER_MARK).unwrap_or(bytes).iter().all(u8::is_ascii_whitespace)
}

/// The JSON pointer of the first member [`Build`] refuses, if the text
/// holds one (and parses up to it).
fn refused_member(text: &[u8]) -> Option<String> {
    let (mut at, mut found) = (String::new(), None);
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let _ = Locate { at: &mut at, found: &mut found }.deserialize(&mut deserializer);
    found
}

/// Builds a `Value` as serde_json's does, but for the refusals.
struct Build;

impl<'de> DeserializeSeed<'de> for Build {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element_seed(Build)? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Value::Object(Map::new()));
        };
        if first == NUMBER_TOKEN {
            return map.next_value_seed(Digits).map(Value::Number);
        }
        if first.starts_with(PRIVATE_PREFIX) {
            return Err(de::Error::custom(RESERVED));
        }
        let mut members = Map::new();
        members.insert(first, map.next_value_seed(Build)?);
        while let Some(name) = map.next_key::<String>()? {
            // The name is checked before its value is read, as `Locate` checks
            // it, so both name the same member.
            if name.starts_with(PRIVATE_PREFIX) {
                return Err(de::Error::custom(RESERVED));
            }
            let Entry::Vacant(slot) = members.entry(name) else {
                return Err(de::Error::custom(REPEATED));
            };
            slot.insert(map.next_value_seed(Build)?);
        }
        Ok(Value::Object(members))
    }
}

/// A number's digits under [`NUMBER_TOKEN`]. serde_json hands them over as
/// an owned `String`; a text that names a member so hands its value over
/// any other way (a string from the text arrives borrowed or copied, never
/// owned), which is how the two are told apart. Malformed text in that
/// value stays a syntax error.
struct Digits;

impl<'de> DeserializeSeed<'de> for Digits {
    type Value = Number;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Number, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Digits {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_string<E: de::Error>(self, digits: String) -> Result<Number, E> {
        digits.parse().map_err(E::custom)
    }

    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Number, E> {
        Err(E::custom(RESERVED))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Number, E> {
        Err(E::custom(RESERVED))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Number, E> {
        Err(E::custom(RESERVED))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Number, E> {
        Err(E::custom(RESERVED))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Number, E> {
        Err(E::custom(RESERVED))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Number, E> {
        Err(E::custom(RESERVED))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Number, E> {
        Err(E::custom(RESERVED))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Number, A::Error> {
        Err(de::Error::custom(RESERVED))
    }

    /// An object (or a number, where `arbitrary_precision` hands it over as one).
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Number, A::Error> {
        Err(de::Error::custom(RESERVED))
    }
}

/// Walks a JSON text without building it, keeping the pointer of where it
/// is (one buffer, each level appending its token and cutting it off again,
/// so a deep body costs no copy per level), until it finds a member `Build`
/// refuses.
struct Locate<'a> {
    at: &'a mut String,
    found: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let parent = self.at.len();
        for index in 0usize.. {
            self.at.truncate(parent);
            let _ = write!(self.at, "/{index}");
            if seq.next_element_seed(Locate { at: &mut *self.at, found: &mut *self.found })?.is_none() {
                break;
            }
        }
        self.at.truncate(parent);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let parent = self.at.len();
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            self.at.truncate(parent);
            self.at.push('/');
            self.at.push_str(&pointer_token(&name));
            if name == NUMBER_TOKEN && seen.is_empty() {
                // A number, or else what `Build` refused.
                return map.next_value_seed(Digits).map(drop).inspect_err(|_| *self.found = Some(self.at.clone()));
            }
            let refusal = if name.starts_with(PRIVATE_PREFIX) {
                Some(RESERVED)
            } else {
                (!seen.insert(name)).then_some(REPEATED)
            };
            if let Some(why) = refusal {
                *self.found = Some(self.at.clone());
                return Err(de::Error::custom(why));
            }
            map.next_value_seed(Locate { at: &mut *self.at, found: &mut *self.found })?;
        }
        self.at.truncate(parent);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_serde_json_does() {
        let texts = [
            r#"{"a": 1, "b": [true, null, "x", -2.50, 1e400, 123456789012345678901234567890], "c": {"d": {}}}"#,
            r#"[{}, [], "", 0, -0, 0.1]"#,
            r#""\u00e9\n""#,
            "  17 ",
        ];
        for text in texts {
            let ours = parse(text.as_bytes()).unwrap();
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
            assert_eq!(ours.to_string(), theirs.to_string(), "{text}: numbers keep their digits");
        }
    }

    /// The pointer and reason of a refusal, or what else `parse` answered.
    fn refusal(text: &str) -> Result<(String, &'static str), String> {
        match parse(text.as_bytes()) {
            Err(Error::Refused { pointer, why, .. }) => Ok((pointer, why)),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn a_member_named_twice_is_refused_where_it_is() {
        for (text, pointer) in [
            (r#"{"a": 1, "a": 1}"#, "/a"),
            (r#"{"detail": {"x": [1, {"k": 1, "j": 2, "k": 3}]}}"#, "/detail/x/1/k"),
            (r#"[0, {"a/b~": 1, "a/b~": {}}]"#, "/1/a~1b~0"),
            (r#"{"é": 1, "\u00e9": 2}"#, "/é"),
            // The outer member is found first by both walks.
            (r#"{"a":1,"a":{"b":1,"b":2}}"#, "/a"),
        ] {
            assert_eq!(refusal(text), Ok((pointer.to_owned(), REPEATED)), "{text}");
        }
        let err = parse(b"{\"a\": 1,\n \"a\": 2}").unwrap_err();
        assert_eq!(err.to_string(), format!("member /a {REPEATED} (line 2 column 4)"));
    }

    #[test]
    fn serde_json_private_tokens_as_names_are_refused_not_read_as_something_else() {
        for (text, pointer) in [
            (r#"{"$serde_json::private::Number": "5"}"#, "/$serde_json::private::Number"),
            (r#"{"x": {"$serde_json::private::Number": "1e5"}}"#, "/x/$serde_json::private::Number"),
            (r#"{"x": {"$serde_json::private::Number": 7}}"#, "/x/$serde_json::private::Number"),
            (r#"[{"$serde_json::private::Number": "\u0031"}]"#, "/0/$serde_json::private::Number"),
            (r#"{"a": 1, "$serde_json::private::Number": "5"}"#, "/$serde_json::private::Number"),
            (r#"{"x": {"$serde_json::private::Number": {}}}"#, "/x/$serde_json::private::Number"),
            // With `raw_value`, serde_json reads this as the JSON in the string.
            (r#"{"x": {"$serde_json::private::RawValue": "[1]"}}"#, "/x/$serde_json::private::RawValue"),
            (r#"[{"a": 1, "$serde_json::private::Other": 1}]"#, "/0/$serde_json::private::Other"),
        ] {
            assert_eq!(refusal(text), Ok((pointer.to_owned(), RESERVED)), "{text}");
        }
        // Malformed text in the value is still malformed, not refused.
        for text in [r#"{"$serde_json::private::Number": "5"#, r#"{"$serde_json::private::Number": tru}"#] {
            assert!(matches!(parse(text.as_bytes()), Err(Error::Malformed { .. })), "{text}");
        }
        // A name that only looks alike is fine.
        assert!(parse(br#"{"$serde_json::private": 1, "serde_json::private::Number": 2}"#).is_ok());
    }

    #[test]
    fn a_byte_order_mark_is_ignored_but_counted_in_columns() {
        assert_eq!(parse(b"\xEF\xBB\xBF {\"a\": 1}").unwrap(), serde_json::json!({"a": 1}));
        let Err(Error::Malformed { line: 1, column, .. }) = parse(b"\xEF\xBB\xBF{\"a\" 1}") else { panic!() };
        let Err(Error::Malformed { column: without, .. }) = parse(b"{\"a\" 1}") else { panic!() };
        assert_eq!(column, without + 3);
        let Err(Error::Refused { line: 1, column, .. }) = parse(b"\xEF\xBB\xBF{\"a\":1,\"a\":2}") else { panic!() };
        let Err(Error::Refused { column: without, .. }) = parse(b"{\"a\":1,\"a\":2}") else { panic!() };
        assert_eq!(column, without + 3);
        assert!(is_blank(b"\xEF\xBB\xBF \n") && is_blank(b"") && !is_blank(b"\xEF\xBB\xBF0"));
    }

    #[test]
    fn malformed_and_too_deep_text_are_told_apart() {
        for text in ["{", r#"{"a": 1} x"#, "[1,]", "", "{} \u{feff}"] {
            assert!(matches!(parse(text.as_bytes()), Err(Error::Malformed { .. })), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(parse(deep.as_bytes()), Err(Error::TooDeep { line: 1, .. })));
        let deepest = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(deepest.as_bytes()).is_ok());
    }

    #[test]
    fn the_same_name_in_different_objects_is_fine() {
        let text = r#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}"#;
        assert!(parse(text.as_bytes()).is_ok());
    }
}
