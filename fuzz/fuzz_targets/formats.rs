//! A CloudEvent (structured, or binary: `name:value` header lines, then the
//! data) or an EventBridge PutEvents entry, as bytes: mapping onto Herald's
//! envelope never panics, and what maps is a valid event or a refusal that
//! points into it.
#![no_main]

use chrono::{DateTime, Utc};
use herald_core::formats::{aws, cloudevents};
use herald_core::{EventDraft, Invalid, json};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let received = DateTime::<Utc>::UNIX_EPOCH;
    let points_in =
        |invalid: &Invalid| invalid.errors.iter().all(|e| e.pointer.is_empty() || e.pointer.starts_with('/'));
    let mut envelopes = Vec::new();
    if let Ok(value) = json::parse(bytes) {
        envelopes.push(cloudevents::to_envelope(&value));
        envelopes.push(aws::entry_to_envelope(&value, &aws::Origin::default()));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let (headers, data) = text.rsplit_once('\n').unwrap_or((text, "{}"));
        let attributes = headers.lines().filter_map(|l| l.split_once(':')).map(|(n, v)| (n.to_owned(), v.to_owned()));
        let data = json::parse(data.as_bytes()).unwrap_or(Value::Null);
        envelopes.push(cloudevents::to_envelope(&cloudevents::from_binary(attributes, data)));
    }
    for envelope in envelopes {
        match envelope {
            Ok(envelope) => {
                if let Err(invalid) = EventDraft::from_json(&envelope, received) {
                    assert!(points_in(&invalid), "{invalid:?}");
                }
            }
            Err(invalid) => assert!(points_in(&invalid), "{invalid:?}"),
        }
    }
});
