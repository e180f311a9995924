//! The event envelope, in AWS EventBridge's shape, and its validation.
//!
//! Validation reads a `serde_json::Value` field by field (rather than deriving
//! `Deserialize`) so that every problem is reported at once, each with the JSON
//! pointer of the field at fault.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::canonical;
use crate::error::{FieldError, Invalid};
use crate::limits::{MAX_DETAIL_BYTES, MAX_ID_CHARS, MAX_NAME_CHARS, MAX_RESOURCES};

/// Place of an event in the log: strictly increasing in commit order, starting at 1.
pub type Position = u64;

/// The highest position: the stores keep positions as signed 64-bit integers.
pub const MAX_POSITION: Position = i64::MAX as u64;

/// A position as a request gives it in JSON: a whole number up to [`MAX_POSITION`].
pub fn position_in(value: &Value) -> Option<Position> {
    value.as_u64().filter(|p| *p <= MAX_POSITION)
}

/// The schema version an event gets when the producer names none.
pub const DEFAULT_VERSION: &str = "1";

/// A valid event whose id may still be missing (see [`crate::identity`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub id: Option<String>,
    pub version: String,
    pub detail_type: String,
    pub source: String,
    pub account: Option<String>,
    pub time: DateTime<Utc>,
    pub region: Option<String>,
    pub resources: Vec<String>,
    pub detail: Map<String, Value>,
    pub stream: Option<String>,
}

/// A valid, identified event: what the store keeps. [`Event::to_json_string`]
/// gives the wire envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub version: String,
    pub id: String,
    pub detail_type: String,
    pub source: String,
    pub account: Option<String>,
    pub time: DateTime<Utc>,
    pub region: Option<String>,
    pub resources: Vec<String>,
    pub detail: Map<String, Value>,
    pub stream: Option<String>,
}

/// Every envelope field but `detail`, as serde writes them. `detail` is
/// rendered canonically and spliced in after them (see [`Event::render`]).
#[derive(Serialize)]
struct Head<'a> {
    version: &'a str,
    id: &'a str,
    #[serde(rename = "detail-type")]
    detail_type: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    #[serde(serialize_with = "serialize_time")]
    time: &'a DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
    resources: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
}

/// Fields that decide whether two events with one id are "the same event".
pub const CONTENT_FIELDS: [&str; 4] = ["source", "detail-type", "version", "detail"];

impl EventDraft {
    /// Validates a JSON value as an event. `received` is the default `time`.
    pub fn from_json(value: &Value, received: DateTime<Utc>) -> Result<Self, Invalid> {
        Self::from_value(value.clone(), received)
    }

    /// [`from_json`](Self::from_json) taking ownership, so `detail` is moved
    /// rather than copied (the publish hot path).
    pub fn from_value(value: Value, received: DateTime<Utc>) -> Result<Self, Invalid> {
        let Value::Object(object) = value else {
            return Err(Invalid::one("", "an event must be a JSON object"));
        };
        let mut errors = Vec::new();
        for key in object.keys() {
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                errors.push(FieldError::new(
                    pointer_to(key),
                    format!("unknown field; expected one of: {}", KNOWN_FIELDS[..10].join(", ")),
                ));
            }
        }
        let mut fields = Fields { object, errors };
        let id = fields.text("id", MAX_ID_CHARS, false);
        if id.as_deref().is_some_and(crate::identity::is_dot_segment) {
            fields.errors.push(FieldError::new("/id", "must not be \".\" or \"..\": no URL can address it"));
        }
        let version = fields.text("version", MAX_NAME_CHARS, false);
        let detail_type = fields.text("detail-type", MAX_NAME_CHARS, true);
        let source = fields.text("source", MAX_NAME_CHARS, true);
        let account = fields.text("account", MAX_NAME_CHARS, false);
        let region = fields.text("region", MAX_NAME_CHARS, false);
        let stream = fields.text("stream", MAX_NAME_CHARS, false);
        let time = fields.time();
        let resources = fields.resources();
        let detail = fields.detail();
        let Fields { errors, .. } = fields;
        if !errors.is_empty() {
            return Err(Invalid { errors });
        }
        Ok(Self {
            id,
            version: version.unwrap_or_else(|| DEFAULT_VERSION.to_owned()),
            detail_type: detail_type.unwrap_or_default(),
            source: source.unwrap_or_default(),
            account,
            time: time.unwrap_or(received),
            region,
            resources,
            detail: detail.unwrap_or_default(),
            stream,
        })
    }

    pub fn with_id(self, id: String) -> Event {
        Event {
            version: self.version,
            id,
            detail_type: self.detail_type,
            source: self.source,
            account: self.account,
            time: self.time,
            region: self.region,
            resources: self.resources,
            detail: self.detail,
            stream: self.stream,
        }
    }

    /// The draft as an envelope JSON object (without `id` when it has none),
    /// so id rules can point into it.
    pub fn to_json(&self) -> Value {
        let event = self.clone().with_id(self.id.clone().unwrap_or_default());
        let mut value = serde_json::to_value(event.head()).expect("an envelope head always serializes");
        if let Some(map) = value.as_object_mut() {
            if self.id.is_none() {
                map.remove("id");
            }
            map.insert("detail".to_owned(), Value::Object(event.detail));
        }
        value
    }
}

/// Bytes reserved for an envelope's text before rendering it.
const RENDER_CAPACITY: usize = 2048;

impl Event {
    /// Hash of the content fields ([`CONTENT_FIELDS`]) in canonical JSON: two
    /// events with one id and equal hashes are duplicates of each other.
    pub fn content_hash(&self) -> [u8; 32] {
        self.hash_with_detail(canonical::Part::Object(&self.detail))
    }

    /// The envelope as JSON text, as it is stored and served.
    pub fn to_json_string(&self) -> String {
        self.render().0
    }

    /// The envelope text and the content hash together, from one rendering of
    /// `detail`: the publish hot path would otherwise write it out twice.
    pub fn to_stored(&self) -> (String, [u8; 32]) {
        let (text, detail, canonical) = self.render();
        let hash = if canonical {
            self.hash_with_detail(canonical::Part::Canonical(&text[detail]))
        } else {
            self.content_hash()
        };
        (text, hash)
    }

    fn hash_with_detail(&self, detail: canonical::Part<'_>) -> [u8; 32] {
        use canonical::Part;
        canonical::sha256_of_list(&[
            Part::Str(&self.source),
            Part::Str(&self.detail_type),
            Part::Str(&self.version),
            detail,
        ])
    }

    /// Writes the envelope with `detail` last, keys sorted; returns the text,
    /// where `detail` is in it and whether that part is canonical.
    fn render(&self) -> (String, std::ops::Range<usize>, bool) {
        // Sized for a typical event up front: grown from serde's default of
        // 128 bytes, the text was reallocated and copied four times.
        let mut head = Vec::with_capacity(RENDER_CAPACITY);
        serde_json::to_writer(&mut head, &self.head()).expect("an envelope head always serializes");
        let mut text = String::from_utf8(head).expect("serde_json writes UTF-8");
        text.pop(); // the head's closing brace
        text.push_str(",\"detail\":");
        let start = text.len();
        let canonical = canonical::write_object_into(&self.detail, &mut text);
        let end = text.len();
        text.push('}');
        (text, start..end, canonical)
    }

    fn head(&self) -> Head<'_> {
        Head {
            version: &self.version,
            id: &self.id,
            detail_type: &self.detail_type,
            source: &self.source,
            account: self.account.as_deref(),
            time: &self.time,
            region: self.region.as_deref(),
            resources: &self.resources,
            stream: self.stream.as_deref(),
        }
    }

    /// Pointers to the content fields where the `stored` envelope (as the
    /// store holds it) differs from this event, at most `limit` of them;
    /// inside `detail` the pointers go down to the leaf. Read straight from
    /// the stored JSON, not validated again: an event stored under older
    /// rules is compared, not refused.
    pub fn content_differences(&self, stored: &Value, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let text = |field: &str| stored.get(field).and_then(Value::as_str);
        if text("source") != Some(self.source.as_str()) {
            out.push("/source".to_owned());
        }
        if text("detail-type") != Some(self.detail_type.as_str()) {
            out.push("/detail-type".to_owned());
        }
        if text("version").unwrap_or(DEFAULT_VERSION) != self.version {
            out.push("/version".to_owned());
        }
        match stored.get("detail") {
            Some(Value::Object(stored_detail)) => diff_objects(stored_detail, &self.detail, "/detail", &mut out, limit),
            _ => out.push("/detail".to_owned()),
        }
        out.truncate(limit);
        out
    }
}

/// Top-level envelope fields a producer may send. `position` is accepted and
/// ignored so an event read from Herald can be published again unchanged.
const KNOWN_FIELDS: [&str; 11] = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
    "stream",
    "position",
];

/// What is wrong with `s` as a text field of the envelope (an id, a name),
/// if anything: empty, only whitespace, longer than `max_chars` characters,
/// or holding a control character.
pub fn text_problem(s: &str, max_chars: usize) -> Option<String> {
    if s.is_empty() {
        Some("must not be empty".to_owned())
    } else if s.trim().is_empty() {
        Some("must not be only whitespace".to_owned())
    } else if s.len() > max_chars && s.chars().count() > max_chars {
        Some(format!("must be at most {max_chars} characters"))
    } else if s.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    }
}

struct Fields {
    object: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    fn text(&mut self, name: &str, max_chars: usize, required: bool) -> Option<String> {
        let problem = match self.object.remove(name) {
            None | Some(Value::Null) if required => "is required".to_owned(),
            None | Some(Value::Null) => return None,
            Some(Value::String(s)) => match text_problem(&s, max_chars) {
                Some(problem) => problem,
                None => return Some(s),
            },
            Some(other) => format!("must be a string, not {}", kind(&other)),
        };
        self.errors.push(FieldError::new(pointer_to(name), problem));
        None
    }

    fn time(&mut self) -> Option<DateTime<Utc>> {
        match self.object.get("time") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Some(t.with_timezone(&Utc)),
                Err(e) => {
                    self.errors.push(FieldError::new("/time", format!("must be an RFC 3339 timestamp: {e}")));
                    None
                }
            },
            Some(other) => {
                self.errors.push(FieldError::new("/time", format!("must be an RFC 3339 string, not {}", kind(other))));
                None
            }
        }
    }

    fn resources(&mut self) -> Vec<String> {
        match self.object.get("resources") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() > MAX_RESOURCES => {
                self.errors.push(FieldError::new("/resources", format!("must have at most {MAX_RESOURCES} entries")));
                Vec::new()
            }
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) if !s.is_empty() && s.len() <= 2048 => out.push(s.clone()),
                        _ => self.errors.push(FieldError::new(
                            format!("/resources/{i}"),
                            "must be a non-empty string of at most 2048 bytes",
                        )),
                    }
                }
                out
            }
            Some(other) => {
                self.errors
                    .push(FieldError::new("/resources", format!("must be an array of strings, not {}", kind(other))));
                Vec::new()
            }
        }
    }

    fn detail(&mut self) -> Option<Map<String, Value>> {
        match self.object.remove("detail") {
            None | Some(Value::Null) => {
                self.errors.push(FieldError::new("/detail", "is required"));
                None
            }
            Some(Value::Object(map)) => {
                let size = canonical::object_len(&map);
                if size > MAX_DETAIL_BYTES {
                    self.errors
                        .push(FieldError::new("/detail", format!("is {size} bytes; the limit is {MAX_DETAIL_BYTES}")));
                    return None;
                }
                if let Some(below) = canonical::unsupported_number(&map) {
                    let limit = canonical::MAX_EXPONENT_DIGITS;
                    let message = format!("is a number with an exponent of more than {limit} digits");
                    self.errors.push(FieldError::new(format!("/detail{below}"), message));
                    return None;
                }
                Some(map)
            }
            Some(other) => {
                self.errors.push(FieldError::new("/detail", format!("must be a JSON object, not {}", kind(&other))));
                None
            }
        }
    }
}

/// JSON pointer to a top-level field (RFC 6901 escaping).
pub fn pointer_to(field: &str) -> String {
    format!("/{}", crate::error::pointer_token(field))
}

/// How a JSON value is named in error messages ("a string", "an object").
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn serialize_time<S: serde::Serializer>(time: &&DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(time))
}

/// RFC 3339 in UTC with a `Z`, as EventBridge writes it.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn diff_paths(a: &Value, b: &Value, path: String, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit || canonical::equal(a, b) {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => diff_objects(x, y, &path, out, limit),
        _ => out.push(path),
    }
}

fn diff_objects(x: &Map<String, Value>, y: &Map<String, Value>, path: &str, out: &mut Vec<String>, limit: usize) {
    let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let child = format!("{path}{}", pointer_to(key));
        match (x.get(key.as_str()), y.get(key.as_str())) {
            (Some(l), Some(r)) => diff_paths(l, r, child, out, limit),
            _ => out.push(child),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn pointers(err: Invalid) -> Vec<String> {
        err.errors.into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn minimal_event_gets_defaults() {
        let draft = EventDraft::from_json(&json!({"source": "s", "detail-type": "t", "detail": {}}), now()).unwrap();
        assert_eq!(draft.version, "1");
        assert_eq!(draft.time, now());
        assert_eq!(draft.id, None);
        let event = draft.with_id("e1".into());
        assert_eq!(
            event.to_json_string(),
            r#"{"version":"1","id":"e1","detail-type":"t","source":"s","time":"2026-11-28T10:00:00Z","resources":[],"detail":{}}"#
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = EventDraft::from_json(
            &json!({"id": "", "detail-type": 3, "time": "yesterday", "resources": ["ok", 1], "detail": [], "colour": "red"}),
            now(),
        )
        .unwrap_err();
        assert_eq!(
            pointers(err),
            vec!["/colour", "/id", "/detail-type", "/source", "/time", "/resources/1", "/detail"]
        );
    }

    #[test]
    fn whitespace_is_not_a_name() {
        let err = EventDraft::from_json(
            &json!({"id": " ", "detail-type": "\t", "source": "\u{3000}", "stream": "  ", "detail": {}}),
            now(),
        )
        .unwrap_err();
        assert_eq!(pointers(err.clone()), vec!["/id", "/detail-type", "/source", "/stream"]);
        assert!(
            err.errors.iter().all(|e| e.message.contains("whitespace") || e.message.contains("control")),
            "{err:?}"
        );
        let padded = json!({"id": " a ", "detail-type": "t", "source": "s", "detail": {}});
        assert_eq!(EventDraft::from_json(&padded, now()).unwrap().id.as_deref(), Some(" a "));
    }

    #[test]
    fn non_object_is_rejected_at_the_root() {
        assert_eq!(pointers(EventDraft::from_json(&json!([1]), now()).unwrap_err()), vec![""]);
    }

    #[test]
    fn oversized_detail_is_rejected() {
        let big = "x".repeat(MAX_DETAIL_BYTES);
        let err = EventDraft::from_json(&json!({"source": "s", "detail-type": "t", "detail": {"b": big}}), now())
            .unwrap_err();
        assert_eq!(pointers(err), vec!["/detail"]);
    }

    #[test]
    fn id_longer_than_256_chars_is_rejected() {
        let long = "é".repeat(257);
        let err = EventDraft::from_json(&json!({"id": long, "source": "s", "detail-type": "t", "detail": {}}), now())
            .unwrap_err();
        assert_eq!(pointers(err), vec!["/id"]);
        let ok = "é".repeat(256);
        assert!(
            EventDraft::from_json(&json!({"id": ok, "source": "s", "detail-type": "t", "detail": {}}), now()).is_ok()
        );
    }

    #[test]
    fn time_is_normalised_to_utc() {
        let draft = EventDraft::from_json(
            &json!({"source": "s", "detail-type": "t", "detail": {}, "time": "2026-11-28T12:00:00.5+02:00"}),
            now(),
        )
        .unwrap();
        assert_eq!(format_time(&draft.time), "2026-11-28T10:00:00.500Z");
    }

    #[test]
    fn dot_segments_are_refused_as_ids() {
        for id in [".", ".."] {
            let err = EventDraft::from_json(&json!({"id": id, "source": "s", "detail-type": "t", "detail": {}}), now())
                .unwrap_err();
            assert_eq!(err.errors[0].pointer, "/id", "{id}");
        }
        for id in ["...", ".a", "a.."] {
            let ok = json!({"id": id, "source": "s", "detail-type": "t", "detail": {}});
            assert!(EventDraft::from_json(&ok, now()).is_ok(), "{id}");
        }
    }

    #[test]
    fn content_hash_ignores_metadata_but_not_content() {
        let base = json!({"source": "s", "detail-type": "t", "detail": {"a": 1, "b": 2}});
        let a = EventDraft::from_json(&base, now()).unwrap().with_id("x".into());
        let mut reordered = EventDraft::from_json(
            &json!({"detail": {"b": 2, "a": 1}, "detail-type": "t", "source": "s", "region": "eu"}),
            now(),
        )
        .unwrap()
        .with_id("x".into());
        assert_eq!(a.content_hash(), reordered.content_hash());
        reordered.version = "2".into();
        assert_ne!(a.content_hash(), reordered.content_hash());
    }

    #[test]
    fn a_draft_as_json_keeps_its_id_and_detail() {
        let draft =
            EventDraft::from_json(&json!({"source": "s", "detail-type": "t", "detail": {"k": 1}}), now()).unwrap();
        let without = draft.to_json();
        assert_eq!((without.get("id"), &without["detail"]), (None, &json!({"k": 1})));
        let with = EventDraft { id: Some("e-1".into()), ..draft }.to_json();
        assert_eq!(with["id"], "e-1");
    }

    /// An event as the store holds it.
    fn stored(event: &Event) -> Value {
        serde_json::from_str(&event.to_json_string()).unwrap()
    }

    #[test]
    fn differences_point_into_detail() {
        let a = EventDraft::from_json(
            &json!({"source": "s", "detail-type": "t", "detail": {"n": {"x": 1}, "k": 1}}),
            now(),
        )
        .unwrap()
        .with_id("x".into());
        let b = EventDraft::from_json(
            &json!({"source": "s2", "detail-type": "t", "detail": {"n": {"x": 2}, "k": 1, "new": 0}}),
            now(),
        )
        .unwrap()
        .with_id("x".into());
        assert_eq!(a.content_differences(&stored(&b), 10), vec!["/source", "/detail/n/x", "/detail/new"]);
    }

    #[test]
    fn numbers_differ_by_value_not_by_spelling() {
        let parse = |detail: &str| {
            let text = format!(r#"{{"source": "s", "detail-type": "t", "detail": {detail}}}"#);
            EventDraft::from_json(&serde_json::from_str(&text).unwrap(), now()).unwrap().with_id("x".into())
        };
        let a = parse(r#"{"n": [1, 2.5], "m": 100}"#);
        let b = parse(r#"{"n": [1.0, 25e-1], "m": 1E2}"#);
        assert_eq!(a.content_differences(&stored(&b), 10), Vec::<String>::new());
        assert_eq!(a.content_hash(), b.content_hash());
        assert_eq!(a.to_stored().1, b.to_stored().1, "the stored hash is the content hash");
        assert_eq!(b.to_stored().1, b.content_hash());
        assert!(b.to_json_string().ends_with(r#""detail":{"m":1e+2,"n":[1.0,25e-1]}}"#), "{}", b.to_json_string());
        let c = parse(r#"{"n": [1, 2.51], "m": 100}"#);
        assert_eq!(a.content_differences(&stored(&c), 10), vec!["/detail/n"]);
    }
}
