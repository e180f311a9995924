//! An event pattern and an event, as bytes split at the first newline.
//! Compiling never panics and errors point into the pattern; the indexed
//! matcher (`PatternSet`) agrees with matching the pattern alone.
#![no_main]

use herald_core::json;
use herald_core::pattern::{Pattern, PatternSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let split = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let (Ok(pattern), Ok(event)) = (json::parse(&bytes[..split]), json::parse(bytes.get(split + 1..).unwrap_or(b"{}")))
    else {
        return;
    };
    match Pattern::compile(&pattern) {
        Ok(compiled) => {
            let alone = compiled.matches(&event);
            let mut set = PatternSet::new();
            set.push(compiled);
            assert_eq!(set.matches(&event), if alone { vec![0] } else { vec![] }, "{pattern} on {event}");
        }
        Err(e) => {
            assert!(e.path.is_empty() || pattern.pointer(&e.path).is_some(), "{} not in {pattern}", e.path);
            assert!(!e.message.is_empty());
        }
    }
});
