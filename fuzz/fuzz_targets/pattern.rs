//! Event patterns and an event, as bytes: one pattern per line, the event
//! on the last. Compiling never panics and errors point into the pattern;
//! the indexed matcher (`PatternSet`) finds exactly the patterns that match
//! one by one, also when several share its index.
#![no_main]

use herald_core::json;
use herald_core::pattern::{Pattern, PatternSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let event = lines.pop().filter(|_| !lines.is_empty()).unwrap_or(b"{}");
    let Ok(event) = json::parse(event) else { return };
    let mut set = PatternSet::new();
    let mut expected = Vec::new();
    for text in lines {
        let Ok(pattern) = json::parse(text) else { continue };
        match Pattern::compile(&pattern) {
            Ok(compiled) => {
                let matches = compiled.matches(&event);
                let index = set.push(compiled);
                if matches {
                    expected.push(index);
                }
            }
            Err(e) => {
                assert!(e.path.is_empty() || pattern.pointer(&e.path).is_some(), "{} not in {pattern}", e.path);
                assert!(!e.message.is_empty());
            }
        }
    }
    let mut found = set.matches(&event);
    found.sort_unstable();
    assert_eq!(found, expected, "on {event}");
});
