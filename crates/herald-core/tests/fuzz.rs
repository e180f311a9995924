//! Property tests over arbitrary JSON: the parsers never panic, every error
//! names a field, and what is accepted survives a round trip unchanged.

use chrono::{DateTime, Utc};
use herald_core::error::pointer_token;
use herald_core::formats::{aws, cloudevents};
use herald_core::subscription::SubscriptionSpec;
use herald_core::{EventDraft, canonical, json};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![Just("1"), Just("2026-11-28T10:00:00Z"), Just("detail"), Just("")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly the envelope's, CloudEvents' and PutEvents' own field names, so
/// generated objects get deep into validation.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "id",
            "version",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
            "stream",
            "specversion",
            "type",
            "subject",
            "data",
            "dataversion",
            "Source",
            "DetailType",
            "Detail",
            "Time",
            "Resources",
            "target",
            "url",
            "pattern",
            "retry",
            "max_attempts",
            "start",
            "position",
            "ordering",
        ])
        .prop_map(str::to_owned),
        "[a-z~/]{0,6}",
    ]
}

fn received() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T00:00:00Z").unwrap().with_timezone(&Utc)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn envelope_validation_is_total_and_round_trips(value in any_json()) {
        match EventDraft::from_json(&value, received()) {
            Ok(draft) => {
                let event = draft.with_id("x".into());
                let text = event.to_json_string();
                let again = EventDraft::from_json(&serde_json::from_str(&text).unwrap(), received()).unwrap().with_id("x".into());
                prop_assert_eq!(&again, &event);
                prop_assert_eq!(again.content_hash(), event.content_hash());
                prop_assert_eq!(event.to_stored(), (text, event.content_hash()));
            }
            Err(invalid) => {
                prop_assert!(!invalid.errors.is_empty());
                for e in &invalid.errors {
                    prop_assert!(e.pointer.is_empty() || e.pointer.starts_with('/'), "pointer {:?}", e.pointer);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }

    #[test]
    fn valid_envelopes_with_random_detail_are_accepted(detail in prop::collection::btree_map(".{0,8}", any_json(), 0..6)) {
        let value = json!({"source": "s", "detail-type": "t", "detail": detail});
        let draft = EventDraft::from_json(&value, received()).unwrap();
        prop_assert_eq!(Value::Object(draft.detail.clone()), value["detail"].clone());
    }

    #[test]
    fn subscription_declarations_are_total_and_round_trip(value in any_json()) {
        match SubscriptionSpec::from_json(&value) {
            Ok(spec) => prop_assert_eq!(SubscriptionSpec::from_json(&spec.to_json()).unwrap(), spec),
            Err(invalid) => {
                prop_assert!(!invalid.errors.is_empty());
                for e in &invalid.errors {
                    prop_assert!(e.pointer.is_empty() || e.pointer.starts_with('/'), "{:?}", e);
                }
            }
        }
        let mut declared = json!({"target": {"type": "pull"}});
        declared["pattern"] = value;
        if let Err(invalid) = SubscriptionSpec::from_json(&declared) {
            prop_assert!(invalid.errors.iter().all(|e| e.pointer.starts_with("/pattern")), "{:?}", invalid);
        }
    }

    #[test]
    fn format_mappings_never_panic(value in any_json()) {
        if let Ok(envelope) = cloudevents::to_envelope(&value) {
            prop_assert!(envelope.get("detail").is_some());
        }
        let _ = aws::entry_to_envelope(&value, &aws::Origin::default());
    }

    #[test]
    fn canonical_text_is_valid_json_equal_to_the_input(value in any_json()) {
        let text = canonical::to_string(&value);
        let again = serde_json::from_str::<Value>(&text).unwrap();
        prop_assert!(canonical::equal(&again, &value), "{} from {}", text, value);
        prop_assert_eq!(canonical::to_string(&again), text);
    }

    /// One number written many ways has one canonical form, which a double
    /// reads as the same double.
    #[test]
    fn every_spelling_of_a_number_is_one_canonical_number(
        digits in "[1-9][0-9]{0,30}",
        point in 0usize..32,
        exponent in -400i64..400,
        padding in 0usize..4,
        negative in any::<bool>(),
    ) {
        let point = point.min(digits.len());
        let sign = if negative { "-" } else { "" };
        // value = digits × 10^exponent, spelt four ways
        let (whole, fraction) = digits.split_at(point);
        let whole = if whole.is_empty() { "0" } else { whole };
        let shifted = exponent + fraction.len() as i64;
        let zeros = "0".repeat(padding);
        let decimals = if fraction.is_empty() && padding == 0 { "0".to_owned() } else { format!("{fraction}{zeros}") };
        let spellings = [
            format!("{sign}{digits}e{exponent}"),
            format!("{sign}{digits}{zeros}E{}", exponent - padding as i64),
            format!("{sign}{whole}.{decimals}e{shifted:+}"),
            format!("{sign}0.{zeros}{digits}e{}", exponent + (padding + digits.len()) as i64),
        ];
        let canonical: Vec<String> = spellings
            .iter()
            .map(|text| {
                let number: serde_json::Number = serde_json::from_str(text).unwrap();
                canonical::number(&number).into_owned()
            })
            .collect();
        for (text, form) in spellings.iter().zip(&canonical) {
            prop_assert_eq!(form, &canonical[0], "{} and {}", text, spellings[0]);
        }
        let form: serde_json::Number = serde_json::from_str(&canonical[0]).unwrap();
        prop_assert_eq!(canonical::number(&form).into_owned(), canonical[0].clone(), "idempotent");
        let parsed = spellings[0].parse::<f64>().unwrap();
        if parsed.is_finite() && parsed != 0.0 {
            prop_assert_eq!(canonical[0].parse::<f64>().unwrap(), parsed);
        }
    }

    /// Herald's parser reads any text as serde_json does, but for refusing
    /// a member named twice, which it locates.
    #[test]
    fn the_strict_parser_agrees_with_serde_json(value in any_json(), repeat in any::<prop::sample::Index>()) {
        let text = value.to_string();
        prop_assert_eq!(json::parse(text.as_bytes()).unwrap(), value.clone());
        // Repeat one member of the outermost object, if it has one.
        if let Value::Object(members) = &value
            && !members.is_empty()
        {
            let (name, member) = members.iter().nth(repeat.index(members.len())).unwrap();
            let repeated = format!("{}, {}: {}}}", &text[..text.len() - 1], Value::from(name.as_str()), member);
            let pointer = format!("/{}", pointer_token(name));
            match json::parse(repeated.as_bytes()) {
                Err(json::Error::Refused { pointer: at, why, .. }) => {
                    prop_assert_eq!(at, pointer);
                    prop_assert!(why.contains("twice"), "{}", why);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }

    #[test]
    fn the_strict_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64), text in "[\\[\\]{}:,\" a0-9.e-]{0,40}") {
        for input in [&bytes[..], text.as_bytes()] {
            let theirs = serde_json::from_slice::<Value>(input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input));
            match (json::parse(input), theirs) {
                (Ok(ours), Ok(theirs)) => prop_assert_eq!(ours, theirs),
                // Refusing is Herald's own; anything else fails as serde_json does.
                (Err(json::Error::Refused { .. }), _) | (Err(_), Err(_)) => {}
                (ours, theirs) => prop_assert!(false, "{:?}: ours {:?}, serde_json's {:?}", input, ours, theirs),
            }
        }
    }
}
