//! A CloudEvent or an EventBridge PutEvents entry, as bytes: mapping onto
//! Herald's envelope never panics, and what maps is a valid event or a
//! refusal that points into it.
#![no_main]

use chrono::{DateTime, Utc};
use herald_core::formats::{aws, cloudevents};
use herald_core::{EventDraft, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(value) = json::parse(bytes) else { return };
    let received = DateTime::<Utc>::UNIX_EPOCH;
    for envelope in [cloudevents::to_envelope(&value), aws::entry_to_envelope(&value, &aws::Origin::default())] {
        match envelope {
            Ok(envelope) => {
                if let Err(invalid) = EventDraft::from_json(&envelope, received) {
                    assert!(invalid.errors.iter().all(|e| e.pointer.is_empty() || e.pointer.starts_with('/')));
                }
            }
            Err(invalid) => assert!(invalid.errors.iter().all(|e| e.pointer.is_empty() || e.pointer.starts_with('/'))),
        }
    }
});
