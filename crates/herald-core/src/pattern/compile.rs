//! JSON event pattern -> [`Node`] tree, validating as EventBridge does.
//!
//! The rules follow the EventBridge user guide ("Content filtering in event
//! patterns", "Comparison operators") and, where the guide is silent, the rule
//! compiler of `aws/event-ruler`, the library behind EventBridge: leaf values
//! are non-empty arrays, an operator object has exactly one key, numeric ranges
//! go lower bound first, `anything-but` lists are all strings or all numbers,
//! `$or` takes at least two objects, and empty objects are refused below the
//! top level.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::PatternError;
use crate::envelope::kind;
use crate::error::pointer_token;

use super::matcher::{Child, Cidr, Field, Leaf, Matcher, Negated, Node, Num, Range, Wildcard};

/// Operator names, refused as field names inside `$or` (they would be ambiguous there).
pub(crate) const OPERATORS: [&str; 9] =
    ["prefix", "suffix", "equals-ignore-case", "wildcard", "anything-but", "numeric", "cidr", "exists", "$or"];

pub(crate) fn root(pattern: &Value) -> Result<Node, PatternError> {
    let Value::Object(object) = pattern else {
        return Err(PatternError::new("", format!("an event pattern must be a JSON object, not {}", kind(pattern))));
    };
    if object.is_empty() {
        return Ok(Node { fields: Vec::new(), any_of: Vec::new(), accepts_absent: true });
    }
    node(object, "", false)
}

fn node(object: &Map<String, Value>, path: &str, in_or: bool) -> Result<Node, PatternError> {
    if object.is_empty() {
        return Err(PatternError::new(path, "an empty object matches nothing and is not allowed here"));
    }
    let mut fields = Vec::with_capacity(object.len());
    let mut any_of = Vec::new();
    for (key, value) in object {
        let here = format!("{path}/{}", pointer_token(key));
        if key == "$or" {
            any_of.push(or_group(value, &here)?);
            continue;
        }
        if in_or && OPERATORS.contains(&key.as_str()) {
            return Err(PatternError::new(
                &here,
                format!("`{key}` is an operator name and cannot be used as a field name inside `$or`"),
            ));
        }
        let child = match value {
            Value::Array(items) => Child::Leaf(leaf(items, &here)?),
            Value::Object(inner) => Child::Object(node(inner, &here, in_or)?),
            other => {
                return Err(PatternError::new(
                    &here,
                    format!(
                        "must be an array of values to match (e.g. [{}]) or an object of nested fields, not {}",
                        other,
                        kind(other)
                    ),
                ));
            }
        };
        fields.push(Field { key: key.as_str().into(), child });
    }
    // AND is commutative: run cheap, selective checks first so that most
    // non-matching events are rejected after one comparison.
    fields.sort_by_key(|f| cost(&f.child));
    let accepts_absent = fields.iter().all(|f| child_accepts_absent(&f.child))
        && any_of.iter().all(|group: &Vec<Node>| group.iter().any(|n| n.accepts_absent));
    Ok(Node { fields, any_of, accepts_absent })
}

fn or_group(value: &Value, path: &str) -> Result<Vec<Node>, PatternError> {
    let Value::Array(branches) = value else {
        return Err(PatternError::new(
            path,
            format!("`$or` must be an array of at least 2 objects, not {}", kind(value)),
        ));
    };
    if branches.len() < 2 {
        return Err(PatternError::new(path, "`$or` must be an array of at least 2 objects"));
    }
    branches
        .iter()
        .enumerate()
        .map(|(i, branch)| {
            let here = format!("{path}/{i}");
            match branch {
                Value::Object(object) => node(object, &here, true),
                other => Err(PatternError::new(&here, format!("`$or` branches must be objects, not {}", kind(other)))),
            }
        })
        .collect()
}

fn child_accepts_absent(child: &Child) -> bool {
    match child {
        Child::Leaf(leaf) => leaf.accepts_absent,
        Child::Object(node) => node.accepts_absent,
    }
}

/// Rough cost rank of checking a field: exact values first, nested objects last.
fn cost(child: &Child) -> u8 {
    match child {
        Child::Leaf(leaf) => {
            let exact = leaf.matchers.iter().all(|m| matches!(m, Matcher::Str(_) | Matcher::Num(_) | Matcher::Bool(_)));
            if exact { 0 } else { 1 }
        }
        Child::Object(_) => 2,
    }
}

fn leaf(items: &[Value], path: &str) -> Result<Leaf, PatternError> {
    if items.is_empty() {
        return Err(PatternError::new(path, "the array of values to match must not be empty"));
    }
    let mut matchers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let here = format!("{path}/{i}");
        let matcher = match item {
            Value::String(s) => Matcher::Str(s.as_str().into()),
            Value::Number(n) => Matcher::Num(number(n, &here)?),
            Value::Bool(b) => Matcher::Bool(*b),
            Value::Null => Matcher::Null,
            Value::Object(op) => operator(op, &here)?,
            Value::Array(_) => {
                return Err(PatternError::new(
                    &here,
                    "a value to match must be a string, number, boolean, null or an operator object, not an array",
                ));
            }
        };
        matchers.push(matcher);
    }
    let accepts_absent = matchers.iter().any(|m| matches!(m, Matcher::Exists(false)));
    Ok(Leaf { matchers, accepts_absent })
}

fn operator(object: &Map<String, Value>, path: &str) -> Result<Matcher, PatternError> {
    let mut entries = object.iter();
    let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
        return Err(PatternError::new(
            path,
            format!(
                "an operator object must have exactly one key (one of {}), found {}",
                operator_list(),
                object.len()
            ),
        ));
    };
    let here = format!("{path}/{}", pointer_token(name));
    let here = here.as_str();
    Ok(match name.as_str() {
        "prefix" => match arg {
            Value::String(s) => Matcher::Prefix(s.as_str().into()),
            Value::Object(inner) => Matcher::PrefixIgnoreCase(ignore_case_string(inner, here, "prefix")?),
            other => return Err(expected(here, "`prefix` takes a string or {\"equals-ignore-case\": string}", other)),
        },
        "suffix" => match arg {
            Value::String(s) => Matcher::Suffix(s.as_str().into()),
            Value::Object(inner) => Matcher::SuffixIgnoreCase(ignore_case_string(inner, here, "suffix")?),
            other => return Err(expected(here, "`suffix` takes a string or {\"equals-ignore-case\": string}", other)),
        },
        "equals-ignore-case" => match arg {
            Value::String(s) => Matcher::EqualsIgnoreCase(s.to_lowercase().into()),
            other => return Err(expected(here, "`equals-ignore-case` takes a string", other)),
        },
        "wildcard" => match arg {
            Value::String(s) => Matcher::Wildcard(wildcard(s, here)?),
            other => return Err(expected(here, "`wildcard` takes a string", other)),
        },
        "numeric" => match arg {
            Value::Array(terms) => Matcher::Numeric(numeric(terms, here)?),
            other => return Err(expected(here, "`numeric` takes an array such as [\">\", 0, \"<=\", 5]", other)),
        },
        "cidr" => match arg {
            Value::String(s) => Matcher::Cidr(cidr(s, here)?),
            other => return Err(expected(here, "`cidr` takes a string such as \"10.0.0.0/24\"", other)),
        },
        "exists" => match arg {
            Value::Bool(b) => Matcher::Exists(*b),
            other => return Err(expected(here, "`exists` takes true or false", other)),
        },
        "anything-but" => Matcher::AnythingBut(anything_but(arg, here)?),
        other => {
            return Err(PatternError::new(
                here,
                format!("unknown operator `{other}`; expected one of {}", operator_list()),
            ));
        }
    })
}

fn operator_list() -> String {
    OPERATORS[..8].iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
}

/// `{"equals-ignore-case": "..."}` under `prefix` / `suffix`; returns it lowercased.
fn ignore_case_string(object: &Map<String, Value>, path: &str, under: &str) -> Result<Box<str>, PatternError> {
    let mut entries = object.iter();
    match (entries.next(), entries.next()) {
        (Some((key, value)), None) if key == "equals-ignore-case" => match value {
            Value::String(s) => Ok(s.to_lowercase().into()),
            other => Err(expected(&format!("{path}/equals-ignore-case"), "`equals-ignore-case` takes a string", other)),
        },
        (Some((key, _)), None) => Err(PatternError::new(
            format!("{path}/{}", pointer_token(key)),
            format!("unsupported `{under}` option `{key}`; only `equals-ignore-case` is allowed"),
        )),
        _ => Err(PatternError::new(
            path,
            format!("the object under `{under}` must have exactly one key, `equals-ignore-case`"),
        )),
    }
}

fn number(n: &serde_json::Number, path: &str) -> Result<Num, PatternError> {
    Num::of(n).ok_or_else(|| PatternError::new(path, "number is out of range"))
}

fn numeric(terms: &[Value], path: &str) -> Result<Range, PatternError> {
    const SHAPE: &str = "`numeric` takes [operator, number] or [\">\" or \">=\", number, \"<\" or \"<=\", number]";
    let operator_at = |i: usize| -> Result<&str, PatternError> {
        match &terms[i] {
            Value::String(op) if matches!(op.as_str(), "<" | "<=" | "=" | ">" | ">=") => Ok(op.as_str()),
            Value::String(op) => Err(PatternError::new(
                format!("{path}/{i}"),
                format!("unknown numeric operator `{op}`; expected one of `<`, `<=`, `=`, `>`, `>=`"),
            )),
            other => Err(expected(&format!("{path}/{i}"), "expected a numeric operator", other)),
        }
    };
    let number_at = |i: usize| -> Result<f64, PatternError> {
        match terms.get(i) {
            Some(Value::Number(n)) => Ok(number(n, &format!("{path}/{i}"))?.float),
            Some(other) => Err(expected(&format!("{path}/{i}"), "expected a number", other)),
            None => Err(PatternError::new(path, format!("{SHAPE}: the operator has no number"))),
        }
    };
    if terms.is_empty() {
        return Err(PatternError::new(path, format!("{SHAPE}, not an empty array")));
    }
    let first = operator_at(0)?;
    let first_value = number_at(1)?;
    let mut range = match first {
        "=" => Range { lower: Some((first_value, true)), upper: Some((first_value, true)) },
        "<" => Range { lower: None, upper: Some((first_value, false)) },
        "<=" => Range { lower: None, upper: Some((first_value, true)) },
        ">" => Range { lower: Some((first_value, false)), upper: None },
        _ => Range { lower: Some((first_value, true)), upper: None },
    };
    if terms.len() == 2 {
        return Ok(range);
    }
    if !matches!(first, ">" | ">=") {
        return Err(PatternError::new(
            format!("{path}/2"),
            format!("`{first}` cannot be followed by another comparison; a range starts with `>` or `>=`"),
        ));
    }
    let second = operator_at(2)?;
    if !matches!(second, "<" | "<=") {
        return Err(PatternError::new(
            format!("{path}/2"),
            format!("the second comparison of a range must be `<` or `<=`, not `{second}`"),
        ));
    }
    let upper = number_at(3)?;
    if terms.len() > 4 {
        return Err(PatternError::new(format!("{path}/4"), format!("{SHAPE}: too many elements")));
    }
    if upper <= first_value {
        return Err(PatternError::new(
            format!("{path}/3"),
            format!("the upper bound ({upper}) must be greater than the lower bound ({first_value})"),
        ));
    }
    range.upper = Some((upper, second == "<="));
    Ok(range)
}

fn cidr(text: &str, path: &str) -> Result<Cidr, PatternError> {
    let invalid = |why: &str| PatternError::new(path, format!("`{text}` is not a valid CIDR block: {why}"));
    let (address, bits) = text.split_once('/').ok_or_else(|| invalid("expected address/prefix-length"))?;
    let address: IpAddr = address.parse().map_err(|_| invalid("the address is not an IPv4 or IPv6 address"))?;
    // Digits only: `u32::from_str` would also take a leading `+`.
    if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("the prefix length is not a number"));
    }
    let bits: u32 = bits.parse().map_err(|_| invalid("the prefix length is not a number"))?;
    Ok(match address {
        IpAddr::V4(ip) => {
            if bits > 32 {
                return Err(invalid("an IPv4 prefix length is at most 32"));
            }
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            Cidr::V4 { net: u32::from(ip) & mask, mask }
        }
        IpAddr::V6(ip) => {
            if bits > 128 {
                return Err(invalid("an IPv6 prefix length is at most 128"));
            }
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            Cidr::V6 { net: u128::from(ip) & mask, mask }
        }
    })
}

/// Splits at unescaped `*`. `\*` is a literal star, `\\` a literal backslash;
/// any other escape, and two stars in a row, are refused (as EventBridge does).
fn wildcard(text: &str, path: &str) -> Result<Wildcard, PatternError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    let mut previous_was_star = false;
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                if previous_was_star {
                    return Err(PatternError::new(path, "consecutive wildcard characters (`**`) are not allowed"));
                }
                parts.push(std::mem::take(&mut current).into_boxed_str());
                previous_was_star = true;
                continue;
            }
            '\\' => match chars.next() {
                Some(escaped @ ('*' | '\\')) => current.push(escaped),
                _ => {
                    return Err(PatternError::new(
                        path,
                        "a backslash may only escape `*` or another backslash (write `\\\\*` or `\\\\\\\\` in JSON)",
                    ));
                }
            },
            other => current.push(other),
        }
        previous_was_star = false;
    }
    parts.push(current.into_boxed_str());
    Ok(Wildcard { parts })
}

fn anything_but(arg: &Value, path: &str) -> Result<Negated, PatternError> {
    match arg {
        Value::String(s) => Ok(Negated::Strings(vec![s.as_str().into()])),
        Value::Number(n) => Ok(Negated::Numbers(vec![number(n, path)?])),
        Value::Array(items) => {
            let Some(first) = items.first() else {
                return Err(PatternError::new(path, "the `anything-but` list must not be empty"));
            };
            let want_strings = first.is_string();
            let mut strings = Vec::new();
            let mut numbers = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let here = format!("{path}/{i}");
                match item {
                    Value::String(s) if want_strings => strings.push(Box::from(s.as_str())),
                    Value::Number(n) if !want_strings => numbers.push(number(n, &here)?),
                    Value::String(_) | Value::Number(_) => {
                        return Err(PatternError::new(
                            here,
                            "an `anything-but` list must hold only strings or only numbers, not both",
                        ));
                    }
                    other => {
                        return Err(expected(&here, "`anything-but` list values must be strings or numbers", other));
                    }
                }
            }
            Ok(if want_strings { Negated::Strings(strings) } else { Negated::Numbers(numbers) })
        }
        Value::Object(object) => {
            let mut entries = object.iter();
            let (Some((name, inner)), None) = (entries.next(), entries.next()) else {
                return Err(PatternError::new(
                    path,
                    "the object under `anything-but` must have exactly one key: `prefix`, `suffix`, \
                     `equals-ignore-case` or `wildcard`",
                ));
            };
            let here = format!("{path}/{}", pointer_token(name));
            let at = |i: usize| if inner.is_array() { format!("{here}/{i}") } else { here.clone() };
            match name.as_str() {
                "prefix" | "suffix" => {
                    let strings = strings_of(inner, &here, name)?;
                    if let Some(i) = strings.iter().position(|s| s.is_empty()) {
                        return Err(PatternError::new(at(i), format!("an `anything-but` {name} must not be empty")));
                    }
                    let list = strings.into_iter().map(Box::from).collect();
                    Ok(if name == "prefix" { Negated::Prefixes(list) } else { Negated::Suffixes(list) })
                }
                "equals-ignore-case" => Ok(Negated::IgnoreCase(
                    strings_of(inner, &here, name)?.into_iter().map(|s| s.to_lowercase().into()).collect(),
                )),
                "wildcard" => strings_of(inner, &here, name)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| wildcard(s, &at(i)))
                    .collect::<Result<_, _>>()
                    .map(Negated::Wildcards),
                other => Err(PatternError::new(
                    here.clone(),
                    format!(
                        "unsupported `anything-but` operator `{other}`; expected `prefix`, `suffix`, \
                         `equals-ignore-case` or `wildcard`"
                    ),
                )),
            }
        }
        other => Err(expected(
            path,
            "`anything-but` takes a string, a number, a list of strings or of numbers, or an operator object",
            other,
        )),
    }
}

/// A string, or a non-empty array of strings (for the `anything-but` operator forms).
fn strings_of<'a>(value: &'a Value, path: &str, name: &str) -> Result<Vec<&'a str>, PatternError> {
    match value {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) if items.is_empty() => {
            Err(PatternError::new(path, format!("the `{name}` list must not be empty")))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.as_str()),
                other => Err(expected(&format!("{path}/{i}"), &format!("`{name}` values must be strings"), other)),
            })
            .collect(),
        other => Err(expected(path, &format!("`{name}` takes a string or a list of strings"), other)),
    }
}

fn expected(path: &str, what: &str, found: &Value) -> PatternError {
    PatternError::new(path, format!("{what}, not {}", kind(found)))
}
