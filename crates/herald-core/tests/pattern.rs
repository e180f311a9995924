//! EventBridge event patterns: every operator against the examples of the AWS
//! EventBridge user guide (matching and non-matching events), validation
//! errors with the exact JSON pointer they name, properties over generated
//! patterns and events, and the no-allocation promise of matching.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use herald_core::FieldError;
use herald_core::pattern::{Pattern, PatternError, PatternSet};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// helpers

fn compile(pattern: &Value) -> Pattern {
    match Pattern::compile(pattern) {
        Ok(p) => p,
        Err(e) => panic!("pattern {pattern} should compile: {e}"),
    }
}

/// Asserts, for each `(label, event, expected)`, whether `pattern` matches.
fn check(pattern: Value, cases: &[(&str, Value, bool)]) {
    let compiled = compile(&pattern);
    for (label, event, expected) in cases {
        assert_eq!(compiled.matches(event), *expected, "{label}\n  pattern: {pattern}\n  event:   {event}");
    }
}

/// `event` with the field at JSON pointer `at` set to `value` (parents must exist).
fn with(mut event: Value, at: &str, value: Value) -> Value {
    let (parent, key) = at.rsplit_once('/').expect("a pointer");
    let slot = event.pointer_mut(parent).and_then(Value::as_object_mut).expect("parent object");
    slot.insert(key.to_owned(), value);
    event
}

/// `event` without the field at JSON pointer `at`.
fn without(mut event: Value, at: &str) -> Value {
    let (parent, key) = at.rsplit_once('/').expect("a pointer");
    event.pointer_mut(parent).and_then(Value::as_object_mut).expect("parent object").remove(key);
    event
}

fn error_of(pattern: Value) -> PatternError {
    match Pattern::compile(&pattern) {
        Ok(_) => panic!("pattern {pattern} should be refused"),
        Err(e) => e,
    }
}

/// The EC2 event of the event-ruler README, which the EventBridge guide's
/// content-filtering examples are written against.
fn ec2_event() -> Value {
    json!({
        "version": "0",
        "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "012345679012",
        "time": "2017-10-02T16:24:49Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
        "detail": {
            "c-count": 5,
            "d-count": 3,
            "x-limit": 301.8,
            "source-ip": "10.0.0.33",
            "instance-id": "i-000000aaaaaa00000",
            "state": "running"
        }
    })
}

// ---------------------------------------------------------------------------
// exact values, arrays, null and empty strings

// Guide: "Creating Amazon EventBridge event patterns" (the EC2 termination example).
#[test]
fn exact_values_are_anded_across_fields() {
    let terminated = with(ec2_event(), "/detail/state", json!("terminated"));
    check(
        json!({
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": { "state": ["terminated"] }
        }),
        &[
            ("all three fields equal", terminated.clone(), true),
            ("state differs", ec2_event(), false),
            ("source differs", with(terminated.clone(), "/source", json!("aws.ec3")), false),
            ("matching is case-sensitive", with(terminated.clone(), "/source", json!("AWS.EC2")), false),
            ("a named field is missing", without(terminated.clone(), "/detail-type"), false),
            ("the nesting differs", with(without(terminated, "/detail/state"), "/state", json!("terminated")), false),
        ],
    );
}

// Guide: "Creating event patterns" > "Matching event values": values in the array are ORed.
#[test]
fn alternatives_in_a_value_array_are_ored() {
    check(
        json!({ "source": ["aws.ec2", "aws.fargate"] }),
        &[
            ("first alternative", with(ec2_event(), "/source", json!("aws.ec2")), true),
            ("second alternative", with(ec2_event(), "/source", json!("aws.fargate")), true),
            ("neither", with(ec2_event(), "/source", json!("aws.s3")), false),
        ],
    );
}

// Guide: "Arrays in Amazon EventBridge event patterns": an event array matches
// if its intersection with the pattern array is non-empty.
#[test]
fn event_arrays_match_when_any_element_matches() {
    let pattern = json!({
        "resources": [
            "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f"
        ]
    });
    check(
        pattern,
        &[
            (
                "second event element equals the first pattern element",
                with(
                    ec2_event(),
                    "/resources",
                    json!([
                        "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:autoScalingGroupName/ASGTerminate",
                        "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"
                    ]),
                ),
                true,
            ),
            ("no common element", ec2_event(), false),
            ("empty event array", with(ec2_event(), "/resources", json!([])), false),
        ],
    );
}

// Guide: "Matching null values and empty strings in Amazon EventBridge event patterns".
#[test]
fn null_and_empty_string_match_only_themselves() {
    let event = json!({
        "version": "0",
        "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
        "detail-type": "EC2 Instance Launch Successful",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2015-11-11T21:31:47Z",
        "region": "us-east-1",
        "resources": [],
        "detail": { "eventVersion": "", "responseElements": null }
    });
    check(json!({ "detail": { "eventVersion": [""] } }), &[("empty string", event.clone(), true)]);
    check(json!({ "detail": { "responseElements": [null] } }), &[("null", event.clone(), true)]);
    // "Null values and empty strings are not interchangeable in pattern matching."
    check(json!({ "detail": { "responseElements": [""] } }), &[("\"\" does not match null", event.clone(), false)]);
    check(json!({ "detail": { "eventVersion": [null] } }), &[("null does not match \"\"", event.clone(), false)]);
    check(json!({ "detail": { "missing": [null] } }), &[("null does not match a missing field", event, false)]);
}

// Guide: "Matching events on event field values" (numbers and booleans are JSON values too).
#[test]
fn numbers_compare_numerically_and_booleans_exactly() {
    let event = json!({ "detail": { "severity": { "score": 1 }, "count": 2, "archived": false, "id": "2" } });
    check(
        json!({ "detail": { "severity": { "score": [1] }, "count": [2.0] } }),
        &[
            ("1 == 1 and 2 == 2.0", event.clone(), true),
            ("1 == 1.0e0", with(event.clone(), "/detail/count", json!(2e0)), true),
            ("3 != 2", with(event.clone(), "/detail/count", json!(3)), false),
            ("the string \"2\" is not the number 2", with(event.clone(), "/detail/count", json!("2")), false),
        ],
    );
    check(json!({ "detail": { "id": [2] } }), &[("a number does not match a string", event.clone(), false)]);
    check(
        json!({ "detail": { "archived": [false] } }),
        &[
            ("false", event.clone(), true),
            ("true", with(event.clone(), "/detail/archived", json!(true)), false),
            ("the string \"false\"", with(event, "/detail/archived", json!("false")), false),
        ],
    );
    // Integers beyond 2^53 (account numbers, snowflake ids) compare exactly.
    check(
        json!({ "id": [9007199254740993_u64] }),
        &[
            ("same big integer", json!({ "id": 9007199254740993_u64 }), true),
            ("neighbour big integer", json!({ "id": 9007199254740992_u64 }), false),
        ],
    );
}

// event-ruler README, "JSON Array Matching": an array of objects is matched one
// element at a time, never by mixing fields of different elements.
#[test]
fn nested_patterns_match_within_one_array_element() {
    let event = json!({
        "employees": [
            { "firstName": "John", "lastName": "Doe" },
            { "firstName": "Anna", "lastName": "Smith" },
            { "firstName": "Peter", "lastName": "Jones" }
        ]
    });
    check(json!({ "employees": { "firstName": ["Anna"] } }), &[("one element has it", event.clone(), true)]);
    check(
        json!({ "employees": { "firstName": ["Anna"], "lastName": ["Smith"] } }),
        &[("both in the same element", event.clone(), true)],
    );
    check(
        json!({ "employees": { "firstName": ["Anna"], "lastName": ["Jones"] } }),
        &[("fields from different elements do not combine", event, false)],
    );
    let nested = json!({ "employees": [[{ "firstName": "John" }], [{ "firstName": "Anna" }]] });
    check(json!({ "employees": { "firstName": ["Anna"] } }), &[("arrays of arrays", nested, true)]);
}

#[test]
fn the_empty_pattern_and_any_match_everything() {
    for pattern in [compile(&json!({})), Pattern::any(), Pattern::default()] {
        assert!(pattern.is_any());
        assert!(pattern.matches(&ec2_event()));
        assert!(pattern.matches(&json!({})));
    }
    assert!(!compile(&json!({ "source": ["aws.ec2"] })).is_any());
    assert!(!compile(&json!({ "source": ["aws.ec2"] })).matches(&json!({})));
}

// ---------------------------------------------------------------------------
// string operators

// Guide: "Comparison operators" > "Prefix matching".
#[test]
fn prefix() {
    check(
        json!({ "time": [{ "prefix": "2017-10-02" }] }),
        &[
            ("starts with the date", with(ec2_event(), "/time", json!("2017-10-02T18:43:48Z")), true),
            ("equal to the prefix", with(ec2_event(), "/time", json!("2017-10-02")), true),
            ("another day", with(ec2_event(), "/time", json!("2017-10-03T18:43:48Z")), false),
            ("a number is not a string", json!({ "time": 20171002 }), false),
            ("missing", without(ec2_event(), "/time"), false),
        ],
    );
    // Prefix matching example: AWS Auto Scaling events from European regions.
    check(
        json!({ "source": ["aws.autoscaling"], "region": [{ "prefix": "eu-" }] }),
        &[
            ("eu-west-1", json!({ "source": "aws.autoscaling", "region": "eu-west-1" }), true),
            ("us-east-1", json!({ "source": "aws.autoscaling", "region": "us-east-1" }), false),
            ("EU- in capitals", json!({ "source": "aws.autoscaling", "region": "EU-west-1" }), false),
        ],
    );
}

// Guide: "Comparison operators" > "Prefix matching while ignoring case".
#[test]
fn prefix_equals_ignore_case() {
    check(
        json!({ "detail": { "service": [{ "prefix": { "equals-ignore-case": "EventB" } }] } }),
        &[
            ("EventBridge", json!({ "detail": { "service": "EventBridge" } }), true),
            ("EVENTBRIDGE", json!({ "detail": { "service": "EVENTBRIDGE" } }), true),
            ("eventb", json!({ "detail": { "service": "eventb" } }), true),
            ("Event alone is too short", json!({ "detail": { "service": "Event" } }), false),
            ("SNS", json!({ "detail": { "service": "SNS" } }), false),
            ("non-ASCII text is compared too", json!({ "detail": { "service": "ÉventBridge" } }), false),
        ],
    );
    check(
        json!({ "city": [{ "prefix": { "equals-ignore-case": "Ärh" } }] }),
        &[("Unicode case folding", json!({ "city": "ÄRHUS" }), true), ("other", json!({ "city": "Arhus" }), false)],
    );
}

// Guide: "Comparison operators" > "Suffix matching".
#[test]
fn suffix() {
    check(
        json!({ "FileName": [{ "suffix": ".png" }] }),
        &[
            ("image.png", json!({ "FileName": "image.png" }), true),
            (".png", json!({ "FileName": ".png" }), true),
            ("image.PNG is another suffix", json!({ "FileName": "image.PNG" }), false),
            ("image.png.zip", json!({ "FileName": "image.png.zip" }), false),
            ("any element of an array", json!({ "FileName": ["a.txt", "b.png"] }), true),
        ],
    );
}

// Guide: "Comparison operators" > "Suffix matching while ignoring case".
#[test]
fn suffix_equals_ignore_case() {
    check(
        json!({ "detail": { "FileName": [{ "suffix": { "equals-ignore-case": ".png" } }] } }),
        &[
            (".png", json!({ "detail": { "FileName": "a.png" } }), true),
            (".PNG", json!({ "detail": { "FileName": "a.PNG" } }), true),
            (".pNg", json!({ "detail": { "FileName": "a.pNg" } }), true),
            (".jpg", json!({ "detail": { "FileName": "a.jpg" } }), false),
            ("too short", json!({ "detail": { "FileName": "png" } }), false),
        ],
    );
    check(
        json!({ "service": [{ "suffix": { "equals-ignore-case": "tBridge" } }] }),
        &[("TBRIDGE", json!({ "service": "EVENTBRIDGE" }), true), ("bridge", json!({ "service": "bridge" }), false)],
    );
}

// Guide: "Comparison operators" > "Equals-ignore-case matching".
#[test]
fn equals_ignore_case() {
    check(
        json!({ "Name": [{ "equals-ignore-case": "alice" }] }),
        &[
            ("Alice", json!({ "Name": "Alice" }), true),
            ("ALICE", json!({ "Name": "ALICE" }), true),
            ("alice", json!({ "Name": "alice" }), true),
            ("Alicia", json!({ "Name": "Alicia" }), false),
            ("Alic", json!({ "Name": "Alic" }), false),
            ("not a string", json!({ "Name": 1 }), false),
        ],
    );
    check(
        json!({ "word": [{ "equals-ignore-case": "ÉTÉ" }] }),
        &[("été", json!({ "word": "été" }), true), ("ete", json!({ "word": "ete" }), false)],
    );
}

// Guide: "Comparison operators" > "Wildcard matching"; escapes from the event-ruler README.
#[test]
fn wildcard() {
    check(
        json!({ "EventBusArn": [{ "wildcard": "arn:aws:events:us-east-1:*:event-bus/*" }] }),
        &[
            (
                "any account, any bus",
                json!({ "EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/default" }),
                true,
            ),
            (
                "another region",
                json!({ "EventBusArn": "arn:aws:events:us-west-2:123456789012:event-bus/default" }),
                false,
            ),
            ("empty stars", json!({ "EventBusArn": "arn:aws:events:us-east-1::event-bus/" }), true),
        ],
    );
    // Operators table: "Any file with a .png extension, located within the folder dir".
    check(
        json!({ "FileName": [{ "wildcard": "dir/*.png" }] }),
        &[
            ("dir/a.png", json!({ "FileName": "dir/a.png" }), true),
            ("dir/sub/a.png", json!({ "FileName": "dir/sub/a.png" }), true),
            ("other/a.png", json!({ "FileName": "other/a.png" }), false),
            ("dir/a.jpg", json!({ "FileName": "dir/a.jpg" }), false),
        ],
    );
    check(
        json!({ "source": [{ "wildcard": "Simple*Service" }] }),
        &[
            ("SimpleQueueService", json!({ "source": "SimpleQueueService" }), true),
            ("SimpleService", json!({ "source": "SimpleService" }), true),
            ("SimpleServices", json!({ "source": "SimpleServices" }), false),
        ],
    );
    // `\*` is a literal star and `\\` a literal backslash.
    check(
        json!({ "s": [{ "wildcard": "a\\*b*c\\\\" }] }),
        &[
            ("literal star then anything", json!({ "s": "a*bXYZc\\" }), true),
            ("star is not a wildcard when escaped", json!({ "s": "aXbc\\" }), false),
        ],
    );
    check(json!({ "s": [{ "wildcard": "*" }] }), &[("* matches any string", json!({ "s": "" }), true)]);
    check(json!({ "s": [{ "wildcard": "*" }] }), &[("but only strings", json!({ "s": 3 }), false)]);
    check(json!({ "s": [{ "wildcard": "abc" }] }), &[("no star is equality", json!({ "s": "abcd" }), false)]);
}

// ---------------------------------------------------------------------------
// anything-but

// Guide: "Comparison operators" > "Anything-but matching".
#[test]
fn anything_but_values() {
    let state = |s: &str| json!({ "detail": { "state": s } });
    check(
        json!({ "detail": { "state": [{ "anything-but": "initializing" }] } }),
        &[
            ("running", state("running"), true),
            ("initializing", state("initializing"), false),
            ("missing field: nothing to compare", json!({ "detail": {} }), false),
        ],
    );
    let limit = |x: Value| json!({ "detail": { "x-limit": x } });
    check(
        json!({ "detail": { "x-limit": [{ "anything-but": 123 }] } }),
        &[
            ("301.8", limit(json!(301.8)), true),
            ("123", limit(json!(123)), false),
            ("123.0", limit(json!(123.0)), false),
        ],
    );
    check(
        json!({ "detail": { "state": [{ "anything-but": ["stopped", "overloaded"] }] } }),
        &[
            ("running", state("running"), true),
            ("stopped", state("stopped"), false),
            ("overloaded", state("overloaded"), false),
        ],
    );
    check(
        json!({ "detail": { "x-limit": [{ "anything-but": [100, 200, 300] }] } }),
        &[("301.8", limit(json!(301.8)), true), ("200", limit(json!(200)), false), ("300.0", limit(json!(3e2)), false)],
    );
}

// Guide: "Anything-but matching" > begins with / ends with / ignore case / wildcard.
#[test]
fn anything_but_operators() {
    check(
        json!({ "detail": { "state": [{ "anything-but": { "prefix": "init" } }] } }),
        &[
            ("running", json!({ "detail": { "state": "running" } }), true),
            ("initializing", json!({ "detail": { "state": "initializing" } }), false),
        ],
    );
    check(
        json!({ "Region": [{ "anything-but": { "prefix": ["us-", "eu-"] } }] }),
        &[
            ("ap-south-1", json!({ "Region": "ap-south-1" }), true),
            ("eu-west-1", json!({ "Region": "eu-west-1" }), false),
        ],
    );
    check(
        json!({ "FileName": [{ "anything-but": { "suffix": ".png" } }] }),
        &[("a.txt", json!({ "FileName": "a.txt" }), true), ("a.png", json!({ "FileName": "a.png" }), false)],
    );
    check(
        json!({ "FileName": [{ "anything-but": { "suffix": [".png", ".jpg"] } }] }),
        &[("a.gif", json!({ "FileName": "a.gif" }), true), ("a.jpg", json!({ "FileName": "a.jpg" }), false)],
    );
    check(
        json!({ "state": [{ "anything-but": { "equals-ignore-case": "initializing" } }] }),
        &[
            ("running", json!({ "state": "running" }), true),
            ("INITIALIZING", json!({ "state": "INITIALIZING" }), false),
            ("Initializing", json!({ "state": "Initializing" }), false),
        ],
    );
    check(
        json!({ "state": [{ "anything-but": { "equals-ignore-case": ["Stopped", "OVERLOADED"] } }] }),
        &[("running", json!({ "state": "running" }), true), ("overloaded", json!({ "state": "overloaded" }), false)],
    );
    check(
        json!({ "FilePath": [{ "anything-but": { "wildcard": "*/lib/*" } }] }),
        &[
            ("/usr/bin/x", json!({ "FilePath": "/usr/bin/x" }), true),
            ("/usr/lib/x", json!({ "FilePath": "/usr/lib/x" }), false),
        ],
    );
    check(
        json!({ "FilePath": [{ "anything-but": { "wildcard": ["*/lib/*", "*.tmp"] } }] }),
        &[("a.txt", json!({ "FilePath": "a.txt" }), true), ("a.tmp", json!({ "FilePath": "a.tmp" }), false)],
    );
}

// With an array, "any element matches" applies to anything-but too: one other
// element is enough (the event-ruler behaviour).
#[test]
fn anything_but_on_arrays_needs_one_other_element() {
    let pattern = json!({ "tags": [{ "anything-but": "internal" }] });
    check(
        pattern,
        &[
            ("only the excluded value", json!({ "tags": ["internal"] }), false),
            ("another value too", json!({ "tags": ["internal", "public"] }), true),
            ("empty array: nothing to compare", json!({ "tags": [] }), false),
        ],
    );
}

// ---------------------------------------------------------------------------
// numeric, cidr, exists

// Guide: "Comparison operators" > "Numeric matching".
#[test]
fn numeric() {
    let pattern = json!({
        "detail": {
            "c-count": [{ "numeric": [">", 0, "<=", 5] }],
            "d-count": [{ "numeric": ["<", 10] }],
            "x-limit": [{ "numeric": ["=", 3.018e2] }]
        }
    });
    check(
        pattern,
        &[
            ("the guide's event", ec2_event(), true),
            ("c-count = 0 is not > 0", with(ec2_event(), "/detail/c-count", json!(0)), false),
            ("c-count = 5.0 is <= 5", with(ec2_event(), "/detail/c-count", json!(5.0)), true),
            ("c-count = 5.000001", with(ec2_event(), "/detail/c-count", json!(5.000001)), false),
            ("d-count = 10 is not < 10", with(ec2_event(), "/detail/d-count", json!(10)), false),
            ("d-count = -1e9", with(ec2_event(), "/detail/d-count", json!(-1e9)), true),
            ("x-limit = 301.8 exactly", with(ec2_event(), "/detail/x-limit", json!(301.8)), true),
            ("x-limit = 301.81", with(ec2_event(), "/detail/x-limit", json!(301.81)), false),
            ("a numeric string is not a number", with(ec2_event(), "/detail/d-count", json!("3")), false),
            ("missing", without(ec2_event(), "/detail/d-count"), false),
        ],
    );
    let price = |x: Value| json!({ "Price": x });
    check(
        json!({ "Price": [{ "numeric": [">=", 10, "<", 20] }] }),
        &[
            ("10", price(json!(10)), true),
            ("19.99", price(json!(19.99)), true),
            ("20", price(json!(20)), false),
            ("9.999", price(json!(9.999)), false),
            ("any element of an array", price(json!([1, 15])), true),
        ],
    );
    check(
        json!({ "Price": [{ "numeric": [">", 10] }, { "numeric": ["<=", -10] }] }),
        &[("11", price(json!(11)), true), ("-10", price(json!(-10)), true), ("0", price(json!(0)), false)],
    );
}

// Guide: "Comparison operators" > "IP address matching" (IPv4 and IPv6).
#[test]
fn cidr() {
    let ip = |s: &str| json!({ "detail": { "sourceIPAddress": s } });
    check(
        json!({ "detail": { "sourceIPAddress": [{ "cidr": "10.0.0.0/24" }] } }),
        &[
            ("10.0.0.0", ip("10.0.0.0"), true),
            ("10.0.0.255", ip("10.0.0.255"), true),
            ("10.0.1.0", ip("10.0.1.0"), false),
            ("not an address", ip("example.com"), false),
            ("an IPv4-mapped IPv6 address is its IPv4 address", ip("::ffff:10.0.0.1"), true),
            ("other IPv6 addresses are not in an IPv4 block", ip("::a00:1"), false),
        ],
    );
    check(
        json!({ "ip": [{ "cidr": "2001:db8::/32" }] }),
        &[
            ("2001:db8::1", json!({ "ip": "2001:db8::1" }), true),
            ("2001:db8:ffff:ffff::", json!({ "ip": "2001:db8:ffff:ffff::" }), true),
            ("2001:db9::1", json!({ "ip": "2001:db9::1" }), false),
            ("IPv4", json!({ "ip": "10.0.0.1" }), false),
        ],
    );
    check(
        json!({ "ip": [{ "cidr": "192.168.1.7/32" }, { "cidr": "0.0.0.0/0" }] }),
        &[("/0 holds every IPv4 address", json!({ "ip": "8.8.8.8" }), true), ("IPv6", json!({ "ip": "::1" }), false)],
    );
    check(
        json!({ "ip": [{ "cidr": "192.168.1.7/32" }] }),
        &[
            ("/32 is one host", json!({ "ip": "192.168.1.7" }), true),
            ("neighbour", json!({ "ip": "192.168.1.8" }), false),
        ],
    );
}

// Guide: "Comparison operators" > "Exists matching".
#[test]
fn exists() {
    check(
        json!({ "detail": { "c-count": [{ "exists": true }] } }),
        &[
            ("present", ec2_event(), true),
            ("absent", without(ec2_event(), "/detail/c-count"), false),
            ("null is a present value", with(ec2_event(), "/detail/c-count", json!(null)), true),
            ("an object is not a leaf", with(ec2_event(), "/detail/c-count", json!({ "c1": 100 })), false),
            ("an empty array has no leaf", with(ec2_event(), "/detail/c-count", json!([])), false),
            ("an array of values", with(ec2_event(), "/detail/c-count", json!([1])), true),
        ],
    );
    // "The following event pattern matches any event that does not have a detail.c-count field."
    check(
        json!({ "detail": { "c-count": [{ "exists": false }] } }),
        &[
            ("present", ec2_event(), false),
            ("absent", without(ec2_event(), "/detail/c-count"), true),
            // "...also matches the following event because c-count isn't a leaf node."
            ("not a leaf", with(ec2_event(), "/detail/c-count", json!({ "c1": 100 })), true),
            ("no detail at all", without(ec2_event(), "/detail"), true),
            ("detail is not an object", with(ec2_event(), "/detail", json!("x")), true),
            ("null is present", with(ec2_event(), "/detail/c-count", json!(null)), false),
        ],
    );
    // Operators table: "ProductName does not exist", combined with an exact field.
    check(
        json!({ "source": ["shop"], "detail": { "ProductName": [{ "exists": false }] } }),
        &[
            ("other source", json!({ "source": "other", "detail": {} }), false),
            ("shop without ProductName", json!({ "source": "shop", "detail": {} }), true),
        ],
    );
}

// ---------------------------------------------------------------------------
// $or and a complex pattern

// Guide: "Comparison operators" > "Or matching": Location is "New York", or Day is "Monday".
#[test]
fn or_across_fields() {
    check(
        json!({ "$or": [{ "Location": ["New York"] }, { "Day": ["Monday"] }] }),
        &[
            ("Location only", json!({ "Location": "New York", "Day": "Friday" }), true),
            ("Day only", json!({ "Location": "Boston", "Day": "Monday" }), true),
            ("both", json!({ "Location": "New York", "Day": "Monday" }), true),
            ("neither", json!({ "Location": "Boston", "Day": "Friday" }), false),
        ],
    );
}

// event-ruler README: "Or" has an "And" inside, and nested "Or" and "And".
#[test]
fn or_with_and_inside_and_nested() {
    let pattern = json!({
        "source": ["aws.cloudwatch"],
        "$or": [
            { "metricName": ["CPUUtilization", "ReadLatency"] },
            {
                "metricType": ["MetricType"],
                "namespace": ["AWS/EC2", "AWS/ES"],
                "$or": [{ "metricId": [1234] }, { "spaceId": [1000] }]
            },
            { "scope": ["Service"] }
        ]
    });
    let cw = |extra: Value| {
        let mut event = json!({ "source": "aws.cloudwatch" });
        event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        event
    };
    check(
        pattern,
        &[
            ("first branch", cw(json!({ "metricName": "ReadLatency" })), true),
            (
                "second branch with metricId",
                cw(json!({ "metricType": "MetricType", "namespace": "AWS/ES", "metricId": 1234 })),
                true,
            ),
            (
                "second branch with spaceId",
                cw(json!({ "metricType": "MetricType", "namespace": "AWS/EC2", "spaceId": 1000 })),
                true,
            ),
            (
                "second branch without the inner or",
                cw(json!({ "metricType": "MetricType", "namespace": "AWS/EC2" })),
                false,
            ),
            ("second branch half", cw(json!({ "namespace": "AWS/EC2", "metricId": 1234 })), false),
            ("third branch", cw(json!({ "scope": "Service" })), true),
            ("no branch", cw(json!({ "scope": "Other" })), false),
            ("branches but wrong source", json!({ "source": "aws.ec2", "scope": "Service" }), false),
        ],
    );
}

// event-ruler README: parallel "Or" at two levels.
#[test]
fn parallel_or_at_two_levels() {
    let pattern = json!({
        "$or": [{ "metricName": ["CPUUtilization"] }, { "namespace": ["AWS/EC2"] }],
        "detail": { "$or": [{ "source": ["aws.cloudwatch"] }, { "detail-type": ["CloudWatch Alarm State Change"] }] }
    });
    check(
        pattern,
        &[
            ("both groups", json!({ "namespace": "AWS/EC2", "detail": { "source": "aws.cloudwatch" } }), true),
            ("outer only", json!({ "namespace": "AWS/EC2", "detail": { "source": "x" } }), false),
            (
                "inner only",
                json!({ "namespace": "x", "detail": { "detail-type": "CloudWatch Alarm State Change" } }),
                false,
            ),
        ],
    );
}

// Guide: "Comparison operators" > "Complex example with multiple matching".
#[test]
fn complex_example() {
    let pattern = json!({
        "time": [{ "prefix": "2017-10-02" }],
        "detail": {
            "state": [{ "anything-but": "initializing" }],
            "c-count": [{ "numeric": [">", 0, "<=", 5] }],
            "d-count": [{ "numeric": ["<", 10] }],
            "x-limit": [{ "anything-but": [100, 200, 300] }],
            "source-ip": [{ "cidr": "10.0.0.0/8" }]
        }
    });
    check(
        pattern,
        &[
            ("the guide's event", ec2_event(), true),
            ("initializing", with(ec2_event(), "/detail/state", json!("initializing")), false),
            ("x-limit 200", with(ec2_event(), "/detail/x-limit", json!(200)), false),
            ("outside 10/8", with(ec2_event(), "/detail/source-ip", json!("11.0.0.1")), false),
            ("another day", with(ec2_event(), "/time", json!("2017-10-03T00:00:00Z")), false),
        ],
    );
}

// ---------------------------------------------------------------------------
// validation: each refused pattern names the offending place

#[test]
fn validation_errors_name_the_exact_path() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!([]), "", "must be a JSON object"),
        (json!("source"), "", "must be a JSON object"),
        (json!({ "source": "aws.ec2" }), "/source", "must be an array"),
        (json!({ "source": [] }), "/source", "must not be empty"),
        (json!({ "source": [["aws.ec2"]] }), "/source/0", "not an array"),
        (json!({ "detail": {} }), "/detail", "empty object"),
        (json!({ "detail": { "n": 5 } }), "/detail/n", "must be an array"),
        (json!({ "detail": { "n": [{}] } }), "/detail/n/0", "exactly one key"),
        (json!({ "detail": { "n": [{ "prefix": "a", "suffix": "b" }] } }), "/detail/n/0", "exactly one key"),
        (json!({ "detail": { "name": [{ "regex": "a.*" }] } }), "/detail/name/0/regex", "unknown operator `regex`"),
        // numeric
        (
            json!({ "detail": { "amount": [{ "numeric": [">", "ten"] }] } }),
            "/detail/amount/0/numeric/1",
            "expected a number",
        ),
        (
            json!({ "detail": { "amount": [{ "numeric": [">", 0, "<=", "five"] }] } }),
            "/detail/amount/0/numeric/3",
            "expected a number",
        ),
        (
            json!({ "detail": { "amount": [{ "numeric": ["!=", 5] }] } }),
            "/detail/amount/0/numeric/0",
            "unknown numeric operator",
        ),
        (
            json!({ "detail": { "amount": [{ "numeric": [5, ">"] }] } }),
            "/detail/amount/0/numeric/0",
            "expected a numeric operator",
        ),
        (
            json!({ "detail": { "amount": [{ "numeric": [">", 10, "<", 5] }] } }),
            "/detail/amount/0/numeric/3",
            "greater than the lower",
        ),
        (
            json!({ "detail": { "amount": [{ "numeric": [">=", 5, "<=", 5] }] } }),
            "/detail/amount/0/numeric/3",
            "greater than the lower",
        ),
        (
            json!({ "detail": { "amount": [{ "numeric": ["<", 5, ">", 1] }] } }),
            "/detail/amount/0/numeric/2",
            "cannot be followed",
        ),
        (
            json!({ "detail": { "amount": [{ "numeric": ["=", 5, "<", 9] }] } }),
            "/detail/amount/0/numeric/2",
            "cannot be followed",
        ),
        (
            json!({ "detail": { "amount": [{ "numeric": [">", 0, ">", 5] }] } }),
            "/detail/amount/0/numeric/2",
            "must be `<` or `<=`",
        ),
        (
            json!({ "detail": { "amount": [{ "numeric": [">", 0, "<"] }] } }),
            "/detail/amount/0/numeric",
            "has no number",
        ),
        (json!({ "detail": { "amount": [{ "numeric": [">"] }] } }), "/detail/amount/0/numeric", "has no number"),
        (
            json!({ "detail": { "amount": [{ "numeric": [">", 0, "<", 5, "<", 6] }] } }),
            "/detail/amount/0/numeric/4",
            "too many",
        ),
        (json!({ "detail": { "amount": [{ "numeric": [] }] } }), "/detail/amount/0/numeric", "empty array"),
        (json!({ "detail": { "amount": [{ "numeric": 5 }] } }), "/detail/amount/0/numeric", "takes an array"),
        // cidr
        (json!({ "ip": [{ "cidr": "10.0.0.0/33" }] }), "/ip/0/cidr", "at most 32"),
        (json!({ "ip": [{ "cidr": "2001:db8::/129" }] }), "/ip/0/cidr", "at most 128"),
        (json!({ "ip": [{ "cidr": "10.0.0/24" }] }), "/ip/0/cidr", "not an IPv4 or IPv6"),
        (json!({ "ip": [{ "cidr": "10.0.0.1" }] }), "/ip/0/cidr", "address/prefix-length"),
        (json!({ "ip": [{ "cidr": "10.0.0.0/+8" }] }), "/ip/0/cidr", "not a number"),
        (json!({ "ip": [{ "cidr": 10 }] }), "/ip/0/cidr", "takes a string"),
        // exists, wildcard, string operators
        (json!({ "x": [{ "exists": "yes" }] }), "/x/0/exists", "true or false"),
        (json!({ "x": [{ "wildcard": "a**b" }] }), "/x/0/wildcard", "consecutive"),
        (json!({ "x": [{ "wildcard": "a\\b" }] }), "/x/0/wildcard", "backslash"),
        (json!({ "x": [{ "wildcard": "trailing\\" }] }), "/x/0/wildcard", "backslash"),
        (json!({ "x": [{ "wildcard": ["a*"] }] }), "/x/0/wildcard", "takes a string"),
        (json!({ "x": [{ "prefix": 5 }] }), "/x/0/prefix", "takes a string"),
        (
            json!({ "x": [{ "prefix": { "equals-ignore-case": 5 } }] }),
            "/x/0/prefix/equals-ignore-case",
            "takes a string",
        ),
        (json!({ "x": [{ "prefix": { "wildcard": "a*" } }] }), "/x/0/prefix/wildcard", "only `equals-ignore-case`"),
        (json!({ "x": [{ "suffix": {} }] }), "/x/0/suffix", "exactly one key"),
        (json!({ "x": [{ "equals-ignore-case": ["a"] }] }), "/x/0/equals-ignore-case", "takes a string"),
        // anything-but
        (json!({ "state": [{ "anything-but": ["a", 1] }] }), "/state/0/anything-but/1", "only strings or only numbers"),
        (json!({ "state": [{ "anything-but": [1, "a"] }] }), "/state/0/anything-but/1", "only strings or only numbers"),
        (json!({ "state": [{ "anything-but": [null] }] }), "/state/0/anything-but/0", "strings or numbers"),
        (json!({ "state": [{ "anything-but": null }] }), "/state/0/anything-but", "`anything-but` takes"),
        (json!({ "state": [{ "anything-but": true }] }), "/state/0/anything-but", "`anything-but` takes"),
        (json!({ "state": [{ "anything-but": [] }] }), "/state/0/anything-but", "must not be empty"),
        (json!({ "state": [{ "anything-but": {} }] }), "/state/0/anything-but", "exactly one key"),
        (
            json!({ "state": [{ "anything-but": { "prefix": "" } }] }),
            "/state/0/anything-but/prefix",
            "must not be empty",
        ),
        (
            json!({ "state": [{ "anything-but": { "suffix": ["a", ""] } }] }),
            "/state/0/anything-but/suffix/1",
            "must not be empty",
        ),
        (
            json!({ "state": [{ "anything-but": { "prefix": [] } }] }),
            "/state/0/anything-but/prefix",
            "must not be empty",
        ),
        (
            json!({ "state": [{ "anything-but": { "prefix": 5 } }] }),
            "/state/0/anything-but/prefix",
            "a string or a list",
        ),
        (
            json!({ "state": [{ "anything-but": { "wildcard": ["ok*", "bad**"] } }] }),
            "/state/0/anything-but/wildcard/1",
            "consecutive",
        ),
        (
            json!({ "state": [{ "anything-but": { "equals-ignore-case": [1] } }] }),
            "/state/0/anything-but/equals-ignore-case/0",
            "must be strings",
        ),
        (
            json!({ "state": [{ "anything-but": { "numeric": [">", 1] } }] }),
            "/state/0/anything-but/numeric",
            "unsupported `anything-but` operator",
        ),
        // $or
        (json!({ "$or": { "a": ["x"] } }), "/$or", "at least 2 objects"),
        (json!({ "$or": [{ "a": ["x"] }] }), "/$or", "at least 2 objects"),
        (json!({ "$or": [{ "a": ["x"] }, "b"] }), "/$or/1", "must be objects"),
        (json!({ "$or": [{ "a": ["x"] }, {}] }), "/$or/1", "empty object"),
        (json!({ "$or": [{ "a": ["x"] }, { "prefix": ["x"] }] }), "/$or/1/prefix", "operator name"),
        (json!({ "$or": [{ "a": ["x"] }, { "b": { "numeric": ["x"] } }] }), "/$or/1/b/numeric", "operator name"),
        (
            json!({ "detail": { "$or": [{ "a": ["x"] }, { "amount": [{ "numeric": [">", "0"] }] }] } }),
            "/detail/$or/1/amount/0/numeric/1",
            "expected a number",
        ),
        // JSON pointer escaping (RFC 6901): `~` -> `~0`, `/` -> `~1`.
        (json!({ "a/b~c": "x" }), "/a~1b~0c", "must be an array"),
    ];
    for (pattern, path, message) in cases {
        let error = error_of(pattern.clone());
        assert_eq!(error.path, path, "pattern {pattern}: {error}");
        assert!(error.message.contains(message), "pattern {pattern}: message {:?} lacks {message:?}", error.message);
        assert!(error.path.is_empty() || pattern.pointer(&error.path).is_some(), "{path} must point into {pattern}");
    }
}

#[test]
fn field_named_like_an_operator_is_fine_outside_or() {
    check(
        json!({ "detail": { "prefix": ["x"] } }),
        &[("a field called prefix", json!({ "detail": { "prefix": "x" } }), true)],
    );
}

#[test]
fn errors_display_and_convert_to_field_errors() {
    let error = error_of(json!({ "detail": { "amount": [{ "numeric": [">", "ten"] }] } }));
    let shown = error.to_string();
    assert!(shown.contains("/detail/amount/0/numeric/1"), "{shown}");
    assert!(shown.contains("expected a number"), "{shown}");
    let field: FieldError = error.clone().into();
    assert_eq!(field.pointer, "/detail/amount/0/numeric/1");
    assert_eq!(field.message, error.message);
    let invalid: herald_core::Invalid = error.into();
    assert_eq!(invalid.errors[0].clone().under("/pattern").pointer, "/pattern/detail/amount/0/numeric/1");
}

// ---------------------------------------------------------------------------
// PatternSet

#[test]
fn pattern_set_returns_the_matching_indices_in_order() {
    let patterns = [
        json!({ "source": ["aws.ec2"] }), // 0: indexed by source
        json!({ "source": ["aws.s3"] }),  // 1: other source
        json!({ "detail-type": ["EC2 Instance State-change Notification"] }), // 2: indexed by detail-type
        json!({ "detail-type": ["Other"] }), // 3
        json!({ "source": [{ "prefix": "aws." }] }), // 4: scanned
        json!({}),                        // 5: everything
        json!({ "source": ["aws.ec2", "aws.s3"], "detail": { "state": ["stopped"] } }), // 6: indexed, fails on detail
        json!({ "$or": [{ "source": ["aws.ec2"] }, { "region": ["nowhere"] }] }), // 7: scanned
        json!({ "source": ["aws.ec2", "aws.ec2"] }), // 8: duplicate value, found once
        json!({ "source": ["aws.ec2", { "prefix": "aws.ec" }] }), // 9: found twice, listed once
        json!({ "detail-type": [{ "prefix": "EC2 " }] }), // 10: detail-type prefix
        json!({ "source": [{ "prefix": "aws.ec2.longer" }] }), // 11: prefix longer than the value
    ];
    let set: PatternSet = patterns.iter().map(compile).collect();
    assert_eq!(set.len(), 12);
    assert!(!set.is_empty());
    assert!(set.get(11).is_some() && set.get(12).is_none());
    assert_eq!(set.matches(&ec2_event()), vec![0, 2, 4, 5, 7, 8, 9, 10]);
    assert_eq!(set.matches(&with(ec2_event(), "/detail/state", json!("stopped"))), vec![0, 2, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(set.matches(&json!({ "source": "aws.s3", "detail-type": "Other" })), vec![1, 3, 4, 5]);
    assert_eq!(set.matches(&json!({})), vec![5]);
    assert_eq!(set.matches(&json!("not an object")), vec![5]);
    // An array where the envelope has a string: any element may match, so no bucket is skipped.
    assert_eq!(set.matches(&json!({ "source": ["x", "aws.s3"] })), vec![1, 4, 5]);

    let mut buffer = vec![99];
    set.matches_into(&json!({ "source": "aws.s3" }), &mut buffer);
    assert_eq!(buffer, vec![1, 4, 5], "the buffer is cleared first");
    assert!(PatternSet::new().matches(&ec2_event()).is_empty());
}

// ---------------------------------------------------------------------------
// matching does not allocate

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers to `System`; only counts allocations of the current thread.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn matching_does_not_allocate() {
    let patterns = [
        json!({ "source": ["aws.ec2"], "detail": { "state": ["running"], "c-count": [{ "numeric": [">", 0, "<=", 5] }] } }),
        json!({ "detail-type": [{ "equals-ignore-case": "ec2 instance state-change notification" }] }),
        json!({ "detail": { "state": [{ "anything-but": { "prefix": ["init", "stop"] } }] } }),
        json!({ "detail": { "source-ip": [{ "cidr": "10.0.0.0/8" }], "x-limit": [{ "anything-but": [1, 2] }] } }),
        json!({ "resources": [{ "wildcard": "arn:aws:ec2:*:instance/*" }], "detail": { "gone": [{ "exists": false }] } }),
        json!({ "$or": [{ "region": [{ "suffix": { "equals-ignore-case": "EAST-1" } }] }, { "account": [12] }] }),
        json!({ "time": [{ "prefix": { "equals-ignore-case": "2017-10-02t" } }] }),
    ];
    let set: PatternSet = patterns.iter().map(compile).collect();
    let event = ec2_event();
    let mut out = Vec::with_capacity(set.len());
    let before = ALLOCATIONS.with(Cell::get);
    set.matches_into(&event, &mut out);
    let after = ALLOCATIONS.with(Cell::get);
    assert_eq!(out, vec![0, 1, 2, 3, 4, 5, 6], "every pattern should match, so every code path ran");
    assert_eq!(after - before, 0, "matching allocated");
}

// ---------------------------------------------------------------------------
// properties

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
        prop_oneof![Just(">"), Just("<="), Just("="), Just("10.0.0.0/8"), Just("a*b"), Just("")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly operator names, so generated patterns get deep into validation.
fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "prefix",
            "suffix",
            "equals-ignore-case",
            "wildcard",
            "anything-but",
            "numeric",
            "cidr",
            "exists",
            "$or",
            "source",
            "detail",
        ])
        .prop_map(String::from),
        "[a-z~/]{1,4}",
    ]
}

/// An event made of nested objects whose leaves are scalars or arrays of scalars.
fn any_event() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1000i64..1000).prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-cA-C.*\\\\]{0,6}".prop_map(Value::String),
    ];
    let leaf = prop_oneof![
        4 => scalar.clone(),
        1 => prop::collection::vec(scalar, 1..4).prop_map(Value::Array),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop::collection::btree_map("[a-e]{1,2}", inner, 1..5)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
    })
    .prop_map(|v| if v.is_object() { v } else { json!({ "a": v }) })
}

/// The pattern listing every leaf of `event` as its own value (`exists` for
/// every leaf instead, when `exists` is set).
fn pattern_from(event: &Value, exists: bool) -> Value {
    match event {
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), pattern_from(v, exists))).collect())
        }
        _ if exists => json!([{ "exists": true }]),
        Value::Array(items) => Value::Array(items.clone()),
        scalar => json!([scalar]),
    }
}

/// A leaf condition over string fields, as JSON.
fn string_condition() -> impl Strategy<Value = Value> {
    let text = "[a-cA-C]{0,3}";
    prop_oneof![
        text.prop_map(|s| json!(s)),
        text.prop_map(|s| json!({ "prefix": s })),
        text.prop_map(|s| json!({ "suffix": s })),
        text.prop_map(|s| json!({ "equals-ignore-case": s })),
        text.prop_map(|s| json!({ "prefix": { "equals-ignore-case": s } })),
        "[a-cA-C]{1,3}".prop_map(|s| json!({ "wildcard": format!("*{s}*") })),
        text.prop_map(|s| json!({ "anything-but": s })),
        "[a-cA-C]{1,3}".prop_map(|s| json!({ "anything-but": { "prefix": s } })),
        any::<bool>().prop_map(|b| json!({ "exists": b })),
        (0i64..5).prop_map(|n| json!({ "numeric": [">=", n] })),
    ]
}

/// A small pattern over fields `a`, `b` and `detail.c`.
fn small_pattern() -> impl Strategy<Value = Value> {
    let leaf = prop::collection::vec(string_condition(), 1..3).prop_map(Value::Array).boxed();
    (prop::option::of(leaf.clone()), prop::option::of(leaf.clone()), prop::option::of(leaf)).prop_map(|(a, b, c)| {
        let mut p = Map::new();
        if let Some(a) = a {
            p.insert("a".into(), a);
        }
        if let Some(b) = b {
            p.insert("b".into(), b);
        }
        if let Some(c) = c {
            p.insert("detail".into(), json!({ "c": c }));
        }
        if p.is_empty() {
            p.insert("a".into(), json!([{ "exists": true }]));
        }
        Value::Object(p)
    })
}

fn small_event() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        4 => "[a-cA-C]{0,4}".prop_map(Value::String),
        1 => (0i64..6).prop_map(Value::from),
        1 => prop::collection::vec("[a-c]{0,2}".prop_map(Value::String), 0..3).prop_map(Value::Array),
    ];
    (prop::option::of(value.clone()), prop::option::of(value.clone()), prop::option::of(value)).prop_map(|(a, b, c)| {
        let mut e = Map::new();
        if let Some(a) = a {
            e.insert("a".into(), a);
        }
        if let Some(b) = b {
            e.insert("b".into(), b);
        }
        if let Some(c) = c {
            e.insert("detail".into(), json!({ "c": c }));
        }
        Value::Object(e)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compile_never_panics_and_errors_point_into_the_pattern(pattern in any_json(), event in any_json()) {
        match Pattern::compile(&pattern) {
            Ok(compiled) => {
                let _ = compiled.matches(&event);
            }
            Err(e) => {
                prop_assert!(e.path.is_empty() || pattern.pointer(&e.path).is_some(), "{} not in {}", e.path, pattern);
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn an_event_matches_the_pattern_of_its_own_leaves(event in any_event()) {
        let by_value = pattern_from(&event, false);
        prop_assert!(compile(&by_value).matches(&event), "{} should match {}", by_value, event);
        let by_existence = pattern_from(&event, true);
        prop_assert!(compile(&by_existence).matches(&event), "{} should match {}", by_existence, event);
    }

    #[test]
    fn anything_but_is_the_negation_on_present_strings(
        value in "[a-cA-C]{0,4}",
        listed in prop::collection::vec("[a-cA-C]{1,3}", 1..3),
    ) {
        let event = json!({ "f": value });
        let pairs = [
            (json!(listed), json!({ "anything-but": listed })),
            (
                Value::Array(listed.iter().map(|s| json!({ "prefix": s })).collect()),
                json!({ "anything-but": { "prefix": listed } }),
            ),
            (
                Value::Array(listed.iter().map(|s| json!({ "suffix": s })).collect()),
                json!({ "anything-but": { "suffix": listed } }),
            ),
            (
                Value::Array(listed.iter().map(|s| json!({ "equals-ignore-case": s })).collect()),
                json!({ "anything-but": { "equals-ignore-case": listed } }),
            ),
            (
                Value::Array(listed.iter().map(|s| json!({ "wildcard": format!("{s}*") })).collect()),
                json!({ "anything-but": { "wildcard": listed.iter().map(|s| format!("{s}*")).collect::<Vec<_>>() } }),
            ),
        ];
        for (positive, negative) in pairs {
            let yes = compile(&json!({ "f": positive })).matches(&event);
            let no = compile(&json!({ "f": [negative] })).matches(&event);
            prop_assert_ne!(yes, no, "{} vs {} on {}", positive, negative, event);
        }
    }

    #[test]
    fn or_is_the_union_of_its_branches(p in small_pattern(), q in small_pattern(), event in small_event()) {
        let either = compile(&json!({ "$or": [p, q] })).matches(&event);
        prop_assert_eq!(either, compile(&p).matches(&event) || compile(&q).matches(&event));
    }

    #[test]
    fn pattern_set_agrees_with_matching_one_by_one(
        patterns in prop::collection::vec(
            (
                small_pattern(),
                prop::option::of(prop::collection::vec(
                    prop_oneof![
                        prop::sample::select(vec!["s1", "s2", "s3", "sé"]).prop_map(|s| json!(s)),
                        prop::sample::select(vec!["", "s", "s1", "s2x", "s\u{e9}"]).prop_map(|p| json!({ "prefix": p })),
                        Just(json!({ "suffix": "1" })),
                    ],
                    1..3,
                )),
                any::<bool>(),
            ),
            0..24,
        ),
        event in small_event(),
        source in prop::sample::select(vec!["s1", "s2", "s4", "sé", "", "s"]),
        as_array in any::<bool>(),
    ) {
        // Many patterns get exact values or prefixes for `source` or
        // `detail-type` (filed in the index), the rest are scanned.
        let patterns: Vec<Value> = patterns
            .into_iter()
            .map(|(mut p, required, on_source)| {
                if let Some(values) = required {
                    p[if on_source { "source" } else { "detail-type" }] = Value::Array(values);
                }
                p
            })
            .collect();
        let mut event = event;
        event["source"] = if as_array { json!([source, "s3"]) } else { json!(source) };
        event["detail-type"] = json!("s2");
        let compiled: Vec<Pattern> = patterns.iter().map(compile).collect();
        let expected: Vec<usize> = (0..compiled.len()).filter(|&i| compiled[i].matches(&event)).collect();
        let set: PatternSet = compiled.into_iter().collect();
        prop_assert_eq!(set.matches(&event), expected);
    }

    #[test]
    fn numeric_range_is_the_interval(lo in -1e6f64..1e6, width in 1e-3f64..1e6, x in -2e6f64..2e6) {
        let hi = lo + width;
        prop_assume!(hi > lo);
        let pattern = compile(&json!({ "n": [{ "numeric": [">=", lo, "<", hi] }] }));
        prop_assert_eq!(pattern.matches(&json!({ "n": x })), lo <= x && x < hi);
        let (at_lo, at_hi) = (json!({ "n": lo }), json!({ "n": hi }));
        prop_assert!(pattern.matches(&at_lo), "the lower bound is included");
        prop_assert!(!pattern.matches(&at_hi), "the upper bound is excluded");
    }

    #[test]
    fn equals_ignore_case_ignores_case(s in "[a-zA-Z0-9äöüéÄÖÜÉ ]{0,8}") {
        let pattern = compile(&json!({ "f": [{ "equals-ignore-case": s }] }));
        let (upper, lower, longer) =
            (json!({ "f": s.to_uppercase() }), json!({ "f": s.to_lowercase() }), json!({ "f": format!("{s}x") }));
        prop_assert!(pattern.matches(&upper), "upper case");
        prop_assert!(pattern.matches(&lower), "lower case");
        prop_assert!(!pattern.matches(&longer), "a longer string");
    }

    #[test]
    fn a_wildcard_made_by_cutting_pieces_out_matches(s in "[ab*\\\\]{0,10}", cuts in prop::collection::vec(any::<bool>(), 0..10)) {
        // Split `s` into single characters; replace each run of chosen ones by `*`.
        let escape = |c: char| if c == '*' || c == '\\' { format!("\\{c}") } else { c.to_string() };
        let mut wildcard = String::new();
        let mut in_star = false;
        for (i, c) in s.chars().enumerate() {
            if cuts.get(i).copied().unwrap_or(false) {
                if !in_star {
                    wildcard.push('*');
                    in_star = true;
                }
            } else {
                wildcard.push_str(&escape(c));
                in_star = false;
            }
        }
        let pattern = compile(&json!({ "f": [{ "wildcard": wildcard }] }));
        prop_assert!(pattern.matches(&json!({ "f": s })), "{} should match {:?}", wildcard, s);
    }
}
