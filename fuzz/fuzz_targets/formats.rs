//! A CloudEvent (structured, or binary: `name:value` header lines, then the
//! data) or an EventBridge PutEvents entry, as bytes: mapping onto Herald's
//! envelope never panics, and what maps is a valid event or a refusal whose
//! every pointer, in the format's own field names (as the server answers),
//! points into what was sent.
#![no_main]

use chrono::{DateTime, Utc};
use herald_core::formats::{aws, cloudevents};
use herald_core::{EventDraft, Invalid, json};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let mut sent = Vec::new();
    if let Ok(value) = json::parse(bytes) {
        sent.push((value.clone(), Format::CloudEvents));
        sent.push((value, Format::Aws));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let (headers, data) = text.rsplit_once('\n').unwrap_or((text, "{}"));
        let attributes = headers.lines().filter_map(|l| l.split_once(':')).map(|(n, v)| (n.to_owned(), v.to_owned()));
        // An empty body is an event without data, as the server takes it.
        let data = (!json::is_blank(data.as_bytes())).then(|| json::parse(data.as_bytes()).unwrap_or(Value::Null));
        // Binary mode is answered as the structured event its headers make.
        sent.push((cloudevents::from_binary(attributes, data), Format::CloudEvents));
    }
    for (value, format) in sent {
        let refused = match format.to_envelope(&value) {
            Ok(envelope) => {
                EventDraft::from_json(&envelope, DateTime::<Utc>::UNIX_EPOCH).err().map(|e| format.rename(e))
            }
            Err(invalid) => Some(invalid),
        };
        for error in refused.map(|i| i.errors).unwrap_or_default() {
            assert!(points_into(&value, &error.pointer), "{error:?} does not point into {value}");
        }
    }
});

#[derive(Clone, Copy)]
enum Format {
    CloudEvents,
    Aws,
}

impl Format {
    fn to_envelope(self, value: &Value) -> Result<Value, Invalid> {
        match self {
            Format::CloudEvents => cloudevents::to_envelope(value),
            Format::Aws => aws::entry_to_envelope(value, &aws::Origin::default()),
        }
    }

    /// Envelope pointers in the format's field names, as the server renames them.
    fn rename(self, invalid: Invalid) -> Invalid {
        match self {
            Format::CloudEvents => cloudevents::rename_errors(invalid),
            Format::Aws => aws::rename_errors(invalid),
        }
    }
}

/// `pointer` names a value of `sent`, or a member missing from one of its
/// objects ("required").
fn points_into(sent: &Value, pointer: &str) -> bool {
    if sent.pointer(pointer).is_some() {
        return true;
    }
    let parent = pointer.rsplit_once('/').map_or("", |(parent, _)| parent);
    pointer.starts_with('/') && sent.pointer(parent).is_some_and(Value::is_object)
}
