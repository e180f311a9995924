//! JSON text into `serde_json::Value`, refusing an object that names a
//! member twice.
//!
//! RFC 8259 leaves an object with a repeated name to each parser
//! ("unpredictable"): serde_json keeps the last, others keep the first or
//! fail. Herald compares, hashes and derives ids from the parsed value, so
//! it refuses such an object rather than store one reading of it.
//!
//! [`parse`] builds the value as serde_json's own `Value` does, checking each
//! name as it is inserted (no cost beyond the insert it already does); on a
//! repeat it fails with a data error, and [`repeated_member`], run only then,
//! reads the text again to find where.

use std::fmt::{self, Write};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

use crate::error::pointer_token;

/// The key serde_json's `arbitrary_precision` passes a number's digits
/// under (`serde_json::number::TOKEN`, private): a number reaches a visitor
/// as a one-member map of its digits.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Parses a JSON text; an object naming a member twice is a data error
/// (`serde_json::Error::is_data`), whose member [`repeated_member`] finds.
pub fn parse(bytes: &[u8]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = deserializer.deserialize_any(Build)?;
    deserializer.end()?;
    Ok(value)
}

/// The JSON pointer of the first member named twice in its object, if the
/// text holds one (and parses up to it).
pub fn repeated_member(bytes: &[u8]) -> Option<String> {
    let (mut at, mut found) = (String::new(), None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let _ = Locate { at: &mut at, found: &mut found }.deserialize(&mut deserializer);
    found
}

/// Builds a `Value` as serde_json's does, but for the repeated name check.
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
            let digits: String = map.next_value()?;
            return digits.parse().map(Value::Number).map_err(de::Error::custom);
        }
        let mut members = Map::new();
        members.insert(first, map.next_value_seed(Build)?);
        while let Some(name) = map.next_key::<String>()? {
            // The name is checked before its value is read, as `Locate` checks
            // it, so both name the same member.
            let Entry::Vacant(slot) = members.entry(name) else {
                return Err(de::Error::custom("a member appears twice"));
            };
            slot.insert(map.next_value_seed(Build)?);
        }
        Ok(Value::Object(members))
    }
}

/// Walks a JSON text without building it, keeping the pointer of where it
/// is (one buffer, each level appending its token and cutting it off again,
/// so a deep body costs no copy per level), until it finds a repeated name.
struct Locate<'a> {
    at: &'a mut String,
    found: &'a mut Option<String>,
}

/// Stops the walk once the repeated name is found.
#[derive(Debug)]
struct Found;

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
            if name == NUMBER_TOKEN && seen.is_empty() {
                return map.next_value::<IgnoredAny>().map(drop);
            }
            self.at.truncate(parent);
            self.at.push('/');
            self.at.push_str(&pointer_token(&name));
            if !seen.insert(name) {
                *self.found = Some(self.at.clone());
                return Err(de::Error::custom(Found));
            }
            map.next_value_seed(Locate { at: &mut *self.at, found: &mut *self.found })?;
        }
        self.at.truncate(parent);
        Ok(())
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("found a repeated member")
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

    #[test]
    fn a_member_named_twice_is_a_data_error_and_located() {
        for (text, pointer) in [
            (r#"{"a": 1, "a": 1}"#, "/a"),
            (r#"{"detail": {"x": [1, {"k": 1, "j": 2, "k": 3}]}}"#, "/detail/x/1/k"),
            (r#"[0, {"a/b~": 1, "a/b~": {}}]"#, "/1/a~1b~0"),
            (r#"{"é": 1, "\u00e9": 2}"#, "/é"),
        ] {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.is_data(), "{text}: {err}");
            assert!(err.to_string().contains("appears twice"), "{text}: {err}");
            assert_eq!(repeated_member(text.as_bytes()).as_deref(), Some(pointer), "{text}");
        }
        // The outer member is found first by both walks.
        assert_eq!(repeated_member(br#"{"a":1,"a":{"b":1,"b":2}}"#).as_deref(), Some("/a"));
    }

    #[test]
    fn malformed_text_and_trailing_data_fail_as_syntax() {
        for text in ["{", r#"{"a": 1} x"#, "[1,]", ""] {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(!err.is_data(), "{text}: {err}");
            assert_eq!(repeated_member(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn the_same_name_in_different_objects_is_fine() {
        let text = r#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}"#;
        assert!(parse(text.as_bytes()).is_ok());
        assert_eq!(repeated_member(text.as_bytes()), None);
    }
}
