//! AWS EventBridge `PutEvents` entries onto the envelope, so the AWS SDKs and
//! CLI publish to Herald unchanged.
//!
//! An entry carries `Source`, `DetailType`, `Detail` (a JSON *string*),
//! `Resources`, `Time` (epoch seconds in the JSON protocol, or RFC 3339) and
//! `EventBusName`. It has no id: entries get one from an id rule or a UUIDv7,
//! exactly like native events without one.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::envelope::format_time;
use crate::error::{FieldError, Invalid};

/// Where the request came from, for envelope fields an entry does not carry.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub account: Option<String>,
    pub region: Option<String>,
}

/// Maps one `PutEvents` entry to an envelope object. Pointers in errors are
/// relative to the entry (`/Detail`).
pub fn entry_to_envelope(entry: &Value, origin: &Origin) -> Result<Value, Invalid> {
    let Some(entry) = entry.as_object() else {
        return Err(Invalid::one("", "an entry must be a JSON object"));
    };
    let mut envelope = Map::new();
    let mut errors = Vec::new();
    for (from, to) in [("Source", "source"), ("DetailType", "detail-type"), ("Resources", "resources")] {
        if let Some(v) = entry.get(from) {
            envelope.insert(to.into(), v.clone());
        }
    }
    match entry.get("Detail") {
        Some(Value::String(text)) => match crate::json::parse(text.as_bytes()) {
            Ok(detail @ Value::Object(_)) => drop(envelope.insert("detail".into(), detail)),
            Ok(_) => errors.push(FieldError::new("/Detail", "must be a JSON object")),
            Err(e @ crate::json::Error::Malformed { .. }) => {
                errors.push(FieldError::new("/Detail", format!("is not valid JSON: {e}")))
            }
            Err(e) => errors.push(FieldError::new("/Detail", format!("is not JSON Herald reads: {e}"))),
        },
        Some(_) => errors.push(FieldError::new("/Detail", "must be a string holding a JSON object")),
        None => errors.push(FieldError::new("/Detail", "is required")),
    }
    match entry.get("Time") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_f64().and_then(epoch_seconds) {
            Some(time) => drop(envelope.insert("time".into(), format_time(&time).into())),
            None => errors.push(FieldError::new("/Time", "is not a valid epoch time")),
        },
        Some(other) => drop(envelope.insert("time".into(), other.clone())),
    }
    if let Some(account) = &origin.account {
        envelope.insert("account".into(), account.clone().into());
    }
    if let Some(region) = &origin.region {
        envelope.insert("region".into(), region.clone().into());
    }
    if errors.is_empty() { Ok(Value::Object(envelope)) } else { Err(Invalid { errors }) }
}

/// Field pointers from the envelope's validation, renamed to the entry's fields.
pub fn rename_errors(invalid: Invalid) -> Invalid {
    let rename = |p: &str| -> String {
        for (envelope, aws) in [
            ("/source", "/Source"),
            ("/detail-type", "/DetailType"),
            ("/detail", "/Detail"),
            ("/resources", "/Resources"),
            ("/time", "/Time"),
        ] {
            if let Some(rest) = p.strip_prefix(envelope)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{aws}{rest}");
            }
        }
        p.to_owned()
    };
    Invalid { errors: invalid.errors.into_iter().map(|e| FieldError { pointer: rename(&e.pointer), ..e }).collect() }
}

/// The region an AWS SDK signed for, read from the SigV4 credential scope
/// (`Credential=AKID/20261128/eu-west-1/events/aws4_request`). Signatures
/// themselves are not verified.
pub fn region_from_authorization(header: &str) -> Option<String> {
    let scope = header.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    let region = scope.split('/').nth(2)?;
    (!region.is_empty()).then(|| region.to_owned())
}

fn epoch_seconds(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    DateTime::from_timestamp_micros((secs * 1_000_000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entry_maps_onto_the_envelope() {
        let origin = Origin { account: Some("123".into()), region: Some("eu-west-1".into()) };
        let entry = json!({"Source": "shop", "DetailType": "Order Placed", "Detail": "{\"n\":1}", "Resources": ["arn:x"], "Time": 1764324000.5, "EventBusName": "default"});
        assert_eq!(
            entry_to_envelope(&entry, &origin).unwrap(),
            json!({"source": "shop", "detail-type": "Order Placed", "detail": {"n": 1}, "resources": ["arn:x"],
                "time": "2025-11-28T10:00:00.500Z", "account": "123", "region": "eu-west-1"})
        );
    }

    #[test]
    fn bad_detail_is_named() {
        let err = entry_to_envelope(&json!({"Source": "s", "DetailType": "t", "Detail": "{oops"}), &Origin::default())
            .unwrap_err();
        assert_eq!(err.errors[0].pointer, "/Detail");
        let err = entry_to_envelope(&json!({"Source": "s", "DetailType": "t", "Detail": "[1]"}), &Origin::default())
            .unwrap_err();
        assert_eq!(err.errors[0].pointer, "/Detail");
        let twice = json!({"Source": "s", "DetailType": "t", "Detail": r#"{"n": 1, "n": 2}"#});
        let err = entry_to_envelope(&twice, &Origin::default()).unwrap_err();
        assert_eq!(err.errors[0].pointer, "/Detail");
        assert!(err.errors[0].message.contains("member /n is named twice"), "{err}");
    }

    #[test]
    fn region_comes_from_the_credential_scope() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/eu-central-1/events/aws4_request, SignedHeaders=host, Signature=abc";
        assert_eq!(region_from_authorization(h).as_deref(), Some("eu-central-1"));
        assert_eq!(region_from_authorization("Bearer x"), None);
    }
}
