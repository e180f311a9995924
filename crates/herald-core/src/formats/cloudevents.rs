//! CloudEvents 1.0 (structured JSON and binary HTTP modes) onto the envelope.
//!
//! | CloudEvents | envelope |
//! | --- | --- |
//! | `id`, `source`, `time` | same |
//! | `type` | `detail-type` |
//! | `subject` | `stream` |
//! | `data` (a JSON object) | `detail` |
//! | extension `dataversion` | `version` |
//! | extensions `account`, `region` | same |
//!
//! Other extension attributes have no place in the envelope and are dropped.

use serde_json::{Map, Value};

use crate::error::{FieldError, Invalid};

const SPEC_VERSION: &str = "1.0";

/// Maps one structured-mode CloudEvent (a JSON object) to an envelope object.
pub fn to_envelope(ce: &Value) -> Result<Value, Invalid> {
    let Some(ce) = ce.as_object() else {
        return Err(Invalid::one("", "a CloudEvent must be a JSON object"));
    };
    let mut errors = Vec::new();
    match ce.get("specversion") {
        Some(Value::String(v)) if v == SPEC_VERSION => {}
        Some(_) => errors.push(FieldError::new("/specversion", "must be \"1.0\"")),
        None => errors.push(FieldError::new("/specversion", "is required")),
    }
    for required in ["id", "source", "type"] {
        if !ce.contains_key(required) {
            errors.push(FieldError::new(format!("/{required}"), "is required"));
        }
    }
    if ce.contains_key("data_base64") {
        errors.push(FieldError::new("/data_base64", "binary data is not supported: send a JSON object as data"));
    }
    if let Some(Value::String(ct)) = ce.get("datacontenttype")
        && !is_json_media_type(ct)
    {
        errors.push(FieldError::new("/datacontenttype", "must be a JSON media type"));
    }
    match ce.get("data") {
        None | Some(Value::Object(_)) => {}
        Some(_) => errors.push(FieldError::new("/data", "must be a JSON object")),
    }
    if !errors.is_empty() {
        return Err(Invalid { errors });
    }

    let mut envelope = Map::new();
    for (from, to) in [
        ("id", "id"),
        ("source", "source"),
        ("type", "detail-type"),
        ("subject", "stream"),
        ("time", "time"),
        ("dataversion", "version"),
        ("account", "account"),
        ("region", "region"),
    ] {
        if let Some(v) = ce.get(from) {
            envelope.insert(to.to_owned(), v.clone());
        }
    }
    envelope.insert("detail".into(), ce.get("data").cloned().unwrap_or_else(|| Value::Object(Map::new())));
    Ok(Value::Object(envelope))
}

/// Field pointers in errors from the envelope's validation, renamed back to
/// the CloudEvents attribute the client sent.
pub fn rename_errors(invalid: Invalid) -> Invalid {
    let rename = |p: &str| -> String {
        for (envelope, ce) in
            [("/detail-type", "/type"), ("/stream", "/subject"), ("/detail", "/data"), ("/version", "/dataversion")]
        {
            if let Some(rest) = p.strip_prefix(envelope)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{ce}{rest}");
            }
        }
        p.to_owned()
    };
    Invalid { errors: invalid.errors.into_iter().map(|e| FieldError { pointer: rename(&e.pointer), ..e }).collect() }
}

/// Builds the structured form of a binary-mode CloudEvent from its `ce-*`
/// headers (name without the prefix, value percent-decoded) and its body
/// (`None` when empty: an event without `data`).
pub fn from_binary(attributes: impl IntoIterator<Item = (String, String)>, data: Option<Value>) -> Value {
    let mut ce = Map::new();
    for (name, value) in attributes {
        ce.insert(name, Value::String(percent_decode(&value)));
    }
    if let Some(data) = data {
        ce.insert("data".into(), data);
    }
    Value::Object(ce)
}

pub fn is_json_media_type(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json") || essence == "text/json"
}

/// The HTTP binding percent-encodes attribute values outside printable ASCII.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Two hex digits exactly (`from_str_radix` alone would take "+1").
        if bytes[i] == b'%'
            && let Some(&[high, low]) = bytes.get(i + 1..i + 3)
            && high.is_ascii_hexdigit()
            && low.is_ascii_hexdigit()
        {
            let digit = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
            out.push(digit(high) << 4 | digit(low));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn structured_event_maps_onto_the_envelope() {
        let ce = json!({"specversion": "1.0", "id": "c1", "source": "/orders", "type": "order.placed",
            "subject": "order-7", "time": "2026-11-28T10:00:00Z", "dataversion": "2", "data": {"n": 1}, "traceparent": "x"});
        assert_eq!(
            to_envelope(&ce).unwrap(),
            json!({"id": "c1", "source": "/orders", "detail-type": "order.placed", "stream": "order-7",
                "time": "2026-11-28T10:00:00Z", "version": "2", "detail": {"n": 1}})
        );
    }

    #[test]
    fn missing_attributes_are_named() {
        let err = to_envelope(&json!({"specversion": "0.3", "data": [1]})).unwrap_err();
        let pointers: Vec<_> = err.errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/specversion", "/id", "/source", "/type", "/data"]);
    }

    #[test]
    fn envelope_errors_are_renamed_to_cloudevents_attributes() {
        let renamed = rename_errors(Invalid {
            errors: vec![
                FieldError::new("/detail-type", "x"),
                FieldError::new("/detail", "y"),
                FieldError::new("/id", "z"),
            ],
        });
        let pointers: Vec<_> = renamed.errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/type", "/data", "/id"]);
    }

    #[test]
    fn binary_attributes_are_percent_decoded() {
        let ce = from_binary(
            [("id".to_owned(), "a%20b".to_owned()), ("type".to_owned(), "100%".to_owned())],
            Some(json!({})),
        );
        assert_eq!(ce["id"], "a b");
        assert_eq!(ce["type"], "100%");
        for (encoded, decoded) in [
            ("Zo%C3%AB%2fx", "Zoë/x"),
            // Not two hex digits: kept as sent.
            ("%+1 %-1 %1 %g0 %", "%+1 %-1 %1 %g0 %"),
            ("%é1", "%é1"),
            // Not UTF-8 once decoded: kept as sent.
            ("%FF", "%FF"),
        ] {
            assert_eq!(percent_decode(encoded), decoded, "{encoded}");
        }
    }

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("application/cloudevents+json"));
        assert!(!is_json_media_type("text/plain"));
    }
}
