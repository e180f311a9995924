//! How an event gets its id, which is also its idempotency key, forever.
//!
//! In order of precedence:
//! 1. the producer's own `id`;
//! 2. an `Idempotency-Key` header: UUIDv5 of (source, key), so a retried request
//!    is a duplicate;
//! 3. an [`IdRule`] for the event's detail-type: UUIDv5 of (source, detail-type,
//!    the values the rule points at), so a webhook redelivered is stored once;
//! 4. otherwise a fresh UUIDv7 (time-ordered, so the id index stays append-mostly).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::canonical;
use crate::envelope::EventDraft;
use crate::error::{FieldError, Invalid};
use crate::limits::{MAX_ID_RULE_FIELDS, MAX_NAME_CHARS};

/// Namespace of every id Herald derives (a fixed, random UUID).
const HERALD_NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_4c0e_9b57_4f6a_a1e3_52c8_0d7b_91a4);

/// Constructs ids for one detail-type from fields of the event itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRule {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// JSON pointers into the envelope, e.g. `/detail/user_id`.
    pub fields: Vec<String>,
}

impl IdRule {
    /// Validates the pointers of a rule.
    pub fn new(detail_type: String, fields: Vec<String>) -> Result<Self, Invalid> {
        let mut errors = Vec::new();
        // A detail-type no event can have would make a rule that never applies.
        if let Some(problem) = crate::envelope::text_problem(&detail_type, MAX_NAME_CHARS) {
            errors.push(FieldError::new("/detail-type", problem));
        }
        if fields.is_empty() || fields.len() > MAX_ID_RULE_FIELDS {
            errors.push(FieldError::new("/fields", format!("must list 1 to {MAX_ID_RULE_FIELDS} JSON pointers")));
        }
        for (i, field) in fields.iter().enumerate() {
            let top = field.split('/').nth(1).unwrap_or("");
            if !field.starts_with('/') {
                errors.push(FieldError::new(format!("/fields/{i}"), "must be a JSON pointer starting with '/'"));
            } else if field.split('~').skip(1).any(|escaped| !escaped.starts_with(['0', '1'])) {
                errors.push(FieldError::new(format!("/fields/{i}"), "has a '~' not followed by 0 or 1 (RFC 6901)"));
            } else if !RULE_ROOTS.contains(&top) {
                errors.push(FieldError::new(
                    format!("/fields/{i}"),
                    format!("must point into one of: {}", RULE_ROOTS.join(", ")),
                ));
            }
        }
        if errors.is_empty() { Ok(Self { detail_type, fields }) } else { Err(Invalid { errors }) }
    }

    /// The id this rule constructs for `draft`. Every pointed-at value must be
    /// present and not null: an id built from missing data would merge
    /// unrelated events.
    pub fn derive_id(&self, draft: &EventDraft) -> Result<String, Invalid> {
        let envelope = draft.to_json();
        let mut values = Vec::with_capacity(self.fields.len());
        let mut errors = Vec::new();
        for field in &self.fields {
            match envelope.pointer(field) {
                Some(v) if !v.is_null() => values.push(v.clone()),
                _ => errors.push(FieldError::new(
                    field.clone(),
                    format!("is required: the id rule for detail-type '{}' builds the id from it", self.detail_type),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(Invalid { errors });
        }
        let name = Value::Array(vec![
            "id-rule".into(),
            draft.source.clone().into(),
            draft.detail_type.clone().into(),
            Value::Array(values),
        ]);
        Ok(derived(&name))
    }
}

/// Envelope fields an id rule may use. `time` and `id` are left out: a
/// redelivered webhook usually carries a new time, and the id is the output.
pub const RULE_ROOTS: [&str; 6] = ["detail", "source", "account", "region", "resources", "stream"];

/// The id for a request carrying `Idempotency-Key: key`; `index` tells apart
/// the events of one batch request.
pub fn from_idempotency_key(source: &str, key: &str, index: Option<usize>) -> String {
    let mut parts = vec![Value::from("idempotency-key"), source.into(), key.into()];
    if let Some(i) = index {
        parts.push(i.into());
    }
    derived(&Value::Array(parts))
}

/// A fresh, time-ordered id.
pub fn generated() -> String {
    Uuid::now_v7().to_string()
}

fn derived(name: &Value) -> String {
    Uuid::new_v5(&HERALD_NAMESPACE, canonical::to_string(name).as_bytes()).to_string()
}

/// Whether `name` is `.` or `..`. Event ids and subscription names travel as
/// one URL path segment, and URL parsing (WHATWG, as every HTTP client here
/// does it) resolves these away even percent-encoded, so nothing so named
/// could be addressed: `GET /v1/events/..` is `/v1/`.
pub fn is_dot_segment(name: &str) -> bool {
    matches!(name, "." | "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn draft(value: Value) -> EventDraft {
        EventDraft::from_json(&value, Utc::now()).unwrap()
    }

    #[test]
    fn rule_ids_depend_only_on_the_named_fields() {
        let rule =
            IdRule::new("Tweet Liked".into(), vec!["/detail/user_id".into(), "/detail/tweet_id".into()]).unwrap();
        let a = draft(
            json!({"source": "x", "detail-type": "Tweet Liked", "detail": {"user_id": 1, "tweet_id": "9", "at": 1}}),
        );
        let b = draft(
            json!({"source": "x", "detail-type": "Tweet Liked", "detail": {"tweet_id": "9", "user_id": 1, "at": 2}}),
        );
        let c = draft(json!({"source": "x", "detail-type": "Tweet Liked", "detail": {"user_id": 2, "tweet_id": "9"}}));
        let d = draft(json!({"source": "y", "detail-type": "Tweet Liked", "detail": {"user_id": 1, "tweet_id": "9"}}));
        assert_eq!(rule.derive_id(&a).unwrap(), rule.derive_id(&b).unwrap());
        assert_ne!(rule.derive_id(&a).unwrap(), rule.derive_id(&c).unwrap());
        assert_ne!(rule.derive_id(&a).unwrap(), rule.derive_id(&d).unwrap());
    }

    #[test]
    fn missing_rule_field_is_named() {
        let rule = IdRule::new("t".into(), vec!["/detail/user_id".into()]).unwrap();
        let err = rule
            .derive_id(&draft(json!({"source": "x", "detail-type": "t", "detail": {"user_id": null}})))
            .unwrap_err();
        assert_eq!(err.errors[0].pointer, "/detail/user_id");
    }

    #[test]
    fn bad_rules_are_rejected() {
        let fields = ["detail/x", "/time", "/detail/~2", "/detail/a~", "/detail/~0k~1/~01"];
        let err = IdRule::new("t".into(), fields.map(str::to_owned).to_vec()).unwrap_err();
        let pointers: Vec<_> = err.errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/fields/0", "/fields/1", "/fields/2", "/fields/3"]);
        assert!(IdRule::new("t".into(), vec![]).is_err());
        assert!(IdRule::new(" ".into(), vec!["/detail/x".into()]).is_err(), "no event has a blank detail-type");
    }

    #[test]
    fn idempotency_keys_are_scoped_by_source_and_index() {
        assert_eq!(from_idempotency_key("s", "k", None), from_idempotency_key("s", "k", None));
        assert_ne!(from_idempotency_key("s", "k", None), from_idempotency_key("t", "k", None));
        assert_ne!(from_idempotency_key("s", "k", Some(0)), from_idempotency_key("s", "k", Some(1)));
    }

    #[test]
    fn generated_ids_are_unique_and_ordered() {
        let a = generated();
        let b = generated();
        assert_ne!(a, b);
        assert!(a < b, "UUIDv7 sort by time");
    }
}
