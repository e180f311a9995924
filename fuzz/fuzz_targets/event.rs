//! A publish body, as bytes: parsed as Herald parses it, then validated as
//! events. Never panics; every refusal points into the body; what is
//! accepted survives being stored and read back with the same content hash.
#![no_main]

use chrono::{DateTime, Utc};
use herald_core::{EventDraft, json};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let Ok(body) = json::parse(bytes) else { return };
    let received = DateTime::<Utc>::UNIX_EPOCH;
    let events = match &body {
        Value::Array(events) => events.iter().collect(),
        one => vec![one],
    };
    for value in events {
        match EventDraft::from_json(value, received) {
            Ok(draft) => {
                let event = draft.with_id("fuzz".into());
                let (text, hash) = event.to_stored();
                let stored = json::parse(text.as_bytes()).expect("a stored event is JSON Herald reads");
                let again =
                    EventDraft::from_json(&stored, received).expect("a stored event is valid").with_id("fuzz".into());
                assert_eq!(again, event, "{text}");
                assert_eq!(again.content_hash(), hash, "{text}");
            }
            Err(invalid) => {
                assert!(!invalid.errors.is_empty());
                for e in &invalid.errors {
                    assert!(e.pointer.is_empty() || e.pointer.starts_with('/'), "{e:?}");
                    assert!(!e.message.is_empty(), "{e:?}");
                }
            }
        }
    }
});
