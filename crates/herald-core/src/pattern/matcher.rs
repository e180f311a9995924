//! The compiled form of an event pattern and how it is matched against an event.
//!
//! Everything here was prepared by [`super::compile`]: field names are split per
//! level, strings for case-insensitive operators are lowercased, numbers are
//! parsed, CIDRs are turned into masks. Matching walks the pattern tree and the
//! event side by side and never allocates.

use std::net::IpAddr;

use serde_json::{Map, Value};

/// An object level of a pattern: every field must match (AND), and every `$or`
/// group must have at least one branch that matches the same object.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Ordered so cheap, selective checks run first (see `compile::cost`).
    pub(crate) fields: Vec<Field>,
    pub(crate) any_of: Vec<Vec<Node>>,
    /// Whether this node matches where the event has nothing at all (only
    /// possible through `exists: false`); computed once at compile time.
    pub(crate) accepts_absent: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) key: Box<str>,
    pub(crate) child: Child,
}

#[derive(Debug, Clone)]
pub(crate) enum Child {
    /// `"key": [ ...values or operators... ]`
    Leaf(Leaf),
    /// `"key": { ...nested fields... }`
    Object(Node),
}

/// A list of alternatives (OR) for one leaf field.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub(crate) matchers: Vec<Matcher>,
    /// Some alternative is `{"exists": false}`.
    pub(crate) accepts_absent: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    Str(Box<str>),
    Num(Num),
    Bool(bool),
    Null,
    Prefix(Box<str>),
    /// Lowercased.
    PrefixIgnoreCase(Box<str>),
    Suffix(Box<str>),
    /// Lowercased.
    SuffixIgnoreCase(Box<str>),
    /// Lowercased.
    EqualsIgnoreCase(Box<str>),
    Wildcard(Wildcard),
    Numeric(Range),
    Cidr(Cidr),
    Exists(bool),
    AnythingBut(Negated),
}

/// What an `anything-but` excludes. A present leaf value matches when it is
/// *not* matched by any of these.
#[derive(Debug, Clone)]
pub(crate) enum Negated {
    Strings(Vec<Box<str>>),
    Numbers(Vec<Num>),
    Prefixes(Vec<Box<str>>),
    Suffixes(Vec<Box<str>>),
    /// Lowercased.
    IgnoreCase(Vec<Box<str>>),
    Wildcards(Vec<Wildcard>),
}

/// A JSON number from a pattern. Integers keep their exact value so that large
/// ids (account numbers, snowflakes) compare exactly; anything else compares as `f64`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Num {
    pub(crate) float: f64,
    pub(crate) int: Option<i128>,
}

impl Num {
    pub(crate) fn of(n: &serde_json::Number) -> Option<Self> {
        let int = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
        let float = n.as_f64().filter(|f| f.is_finite())?;
        Some(Self { float, int })
    }

    fn equals(&self, n: &serde_json::Number) -> bool {
        if let Some(int) = self.int {
            if let Some(i) = n.as_i64() {
                return int == i128::from(i);
            }
            if let Some(u) = n.as_u64() {
                return int == i128::from(u);
            }
        }
        n.as_f64() == Some(self.float)
    }
}

/// `numeric` bounds; `=` is a range whose bounds are equal and inclusive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Range {
    /// (bound, inclusive)
    pub(crate) lower: Option<(f64, bool)>,
    pub(crate) upper: Option<(f64, bool)>,
}

impl Range {
    fn contains(&self, x: f64) -> bool {
        let above = match self.lower {
            None => true,
            Some((b, true)) => x >= b,
            Some((b, false)) => x > b,
        };
        let below = match self.upper {
            None => true,
            Some((b, true)) => x <= b,
            Some((b, false)) => x < b,
        };
        above && below
    }
}

/// A network as address bits and mask bits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Cidr {
    fn contains(&self, s: &str) -> bool {
        let Ok(ip) = s.parse::<IpAddr>() else {
            return false;
        };
        // Like Java's `InetAddress` (which event-ruler uses), an IPv4-mapped
        // IPv6 address (`::ffff:10.0.0.1`) is taken as the IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self, ip) {
            (Cidr::V4 { net, mask }, IpAddr::V4(ip)) => u32::from(ip) & mask == *net,
            (Cidr::V6 { net, mask }, IpAddr::V6(ip)) => u128::from(ip) & mask == *net,
            _ => false,
        }
    }
}

/// A wildcard pattern split at its (unescaped) `*`: `parts.len()` is the number
/// of stars plus one; the first part must start the string, the last must end
/// it, the others must appear in order in between.
#[derive(Debug, Clone)]
pub(crate) struct Wildcard {
    pub(crate) parts: Vec<Box<str>>,
}

impl Wildcard {
    fn matches(&self, s: &str) -> bool {
        let parts = &self.parts;
        let (first, last) = match parts.as_slice() {
            [only] => return s == &**only,
            [first, .., last] => (first, last),
            [] => return false,
        };
        if s.len() < first.len() + last.len() || !s.starts_with(&**first) || !s.ends_with(&**last) {
            return false;
        }
        // With `*` as the only metacharacter, taking the leftmost occurrence of
        // each middle part is optimal: it leaves the most room for the rest.
        let mut rest = &s[first.len()..s.len() - last.len()];
        for part in &parts[1..parts.len() - 1] {
            match rest.find(&**part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

impl Node {
    /// Matches this level against an event object; `None` means the event has
    /// nothing here (field missing, or not an object).
    pub(crate) fn matches(&self, object: Option<&Map<String, Value>>) -> bool {
        let Some(object) = object else {
            return self.accepts_absent;
        };
        self.fields.iter().all(|field| field.child.matches(object.get(&*field.key)))
            && self.any_of.iter().all(|group| group.iter().any(|branch| branch.matches(Some(object))))
    }
}

impl Child {
    fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Child::Leaf(leaf) => leaf.matches(value),
            Child::Object(node) => match value {
                Some(Value::Object(object)) => node.matches(Some(object)),
                // An array of objects: the nested pattern must match within one
                // element (EventBridge's "array-consistent" matching). With no
                // object in the array there is nothing here.
                Some(Value::Array(items)) => match node_in_array(node, items) {
                    Some(matched) => matched,
                    None => node.accepts_absent,
                },
                _ => node.accepts_absent,
            },
        }
    }
}

/// `Some(true)` if some object in `items` (or in nested arrays) matches,
/// `Some(false)` if there were objects but none matched, `None` if there were none.
fn node_in_array(node: &Node, items: &[Value]) -> Option<bool> {
    let mut saw_object = false;
    for item in items {
        match item {
            Value::Object(object) => {
                saw_object = true;
                if node.matches(Some(object)) {
                    return Some(true);
                }
            }
            Value::Array(inner) => match node_in_array(node, inner) {
                Some(true) => return Some(true),
                Some(false) => saw_object = true,
                None => {}
            },
            _ => {}
        }
    }
    saw_object.then_some(false)
}

impl Leaf {
    fn matches(&self, value: Option<&Value>) -> bool {
        match value {
            // Exists matching only sees leaf values: an object is not one.
            None | Some(Value::Object(_)) => self.accepts_absent,
            Some(Value::Array(items)) => match self.any_in_array(items) {
                Some(matched) => matched,
                None => self.accepts_absent,
            },
            Some(scalar) => self.matches_scalar(scalar),
        }
    }

    /// Like [`node_in_array`]: `None` when the array holds no leaf value at all.
    fn any_in_array(&self, items: &[Value]) -> Option<bool> {
        let mut saw_leaf = false;
        for item in items {
            match item {
                Value::Object(_) => {}
                Value::Array(inner) => match self.any_in_array(inner) {
                    Some(true) => return Some(true),
                    Some(false) => saw_leaf = true,
                    None => {}
                },
                scalar => {
                    saw_leaf = true;
                    if self.matches_scalar(scalar) {
                        return Some(true);
                    }
                }
            }
        }
        saw_leaf.then_some(false)
    }

    fn matches_scalar(&self, value: &Value) -> bool {
        self.matchers.iter().any(|m| m.matches(value))
    }
}

impl Matcher {
    /// `value` is a present leaf: a string, number, boolean or null.
    fn matches(&self, value: &Value) -> bool {
        match self {
            Matcher::Exists(exists) => *exists,
            Matcher::Null => value.is_null(),
            Matcher::Bool(b) => value.as_bool() == Some(*b),
            Matcher::Num(num) => matches!(value, Value::Number(n) if num.equals(n)),
            Matcher::Numeric(range) => {
                matches!(value, Value::Number(n) if n.as_f64().is_some_and(|x| range.contains(x)))
            }
            Matcher::AnythingBut(negated) => !negated.matches(value),
            _ => {
                let Value::String(s) = value else {
                    return false;
                };
                match self {
                    Matcher::Str(want) => s == &**want,
                    Matcher::Prefix(p) => s.starts_with(&**p),
                    Matcher::Suffix(p) => s.ends_with(&**p),
                    Matcher::PrefixIgnoreCase(p) => starts_with_ignore_case(s, p),
                    Matcher::SuffixIgnoreCase(p) => ends_with_ignore_case(s, p),
                    Matcher::EqualsIgnoreCase(p) => equals_ignore_case(s, p),
                    Matcher::Wildcard(w) => w.matches(s),
                    Matcher::Cidr(c) => c.contains(s),
                    _ => false,
                }
            }
        }
    }
}

impl Negated {
    fn matches(&self, value: &Value) -> bool {
        if let Negated::Numbers(numbers) = self {
            return matches!(value, Value::Number(n) if numbers.iter().any(|num| num.equals(n)));
        }
        let Value::String(s) = value else {
            return false;
        };
        match self {
            Negated::Strings(list) => list.iter().any(|x| s == &**x),
            Negated::Prefixes(list) => list.iter().any(|p| s.starts_with(&**p)),
            Negated::Suffixes(list) => list.iter().any(|p| s.ends_with(&**p)),
            Negated::IgnoreCase(list) => list.iter().any(|p| equals_ignore_case(s, p)),
            Negated::Wildcards(list) => list.iter().any(|w| w.matches(s)),
            Negated::Numbers(_) => false,
        }
    }
}

// Case-insensitive comparisons against a pattern string lowercased at compile
// time. ASCII text (the common case) is compared bytewise; anything else goes
// through `char::to_lowercase` one character at a time, without allocating.

fn equals_ignore_case(s: &str, lower: &str) -> bool {
    if s.is_ascii() && lower.is_ascii() {
        return s.eq_ignore_ascii_case(lower);
    }
    s.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

fn starts_with_ignore_case(s: &str, lower: &str) -> bool {
    if lower.is_ascii()
        && let Some(head) = s.as_bytes().get(..lower.len())
        && head.is_ascii()
    {
        return head.eq_ignore_ascii_case(lower.as_bytes());
    }
    let mut chars = s.chars().flat_map(char::to_lowercase);
    lower.chars().all(|want| chars.next() == Some(want))
}

fn ends_with_ignore_case(s: &str, lower: &str) -> bool {
    if lower.is_ascii()
        && let Some(start) = s.len().checked_sub(lower.len())
        && s.as_bytes()[start..].is_ascii()
    {
        return s.as_bytes()[start..].eq_ignore_ascii_case(lower.as_bytes());
    }
    let mut chars = s.chars().rev().flat_map(|c| c.to_lowercase().rev());
    lower.chars().rev().all(|want| chars.next() == Some(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wildcard(parts: &[&str]) -> Wildcard {
        Wildcard { parts: parts.iter().map(|p| Box::from(*p)).collect() }
    }

    #[test]
    fn wildcard_parts() {
        assert!(wildcard(&["a", "c"]).matches("abc"));
        assert!(wildcard(&["a", "c"]).matches("ac"));
        assert!(!wildcard(&["ab", "bc"]).matches("abc"), "parts must not overlap");
        assert!(wildcard(&["", "/lib/", ""]).matches("x/lib/y"));
        assert!(wildcard(&["", "b", "b", ""]).matches("abab"));
        assert!(!wildcard(&["", "b", "b", ""]).matches("ab"));
        assert!(wildcard(&["", ""]).matches(""));
        assert!(!wildcard(&["x"]).matches("xx"));
    }

    #[test]
    fn ignore_case_helpers() {
        assert!(equals_ignore_case("EventBridge", "eventbridge"));
        assert!(!equals_ignore_case("EventBridg", "eventbridge"));
        assert!(equals_ignore_case("ÄPFEL", "äpfel"));
        assert!(starts_with_ignore_case("EVENTBRIDGE", "eventb"));
        assert!(!starts_with_ignore_case("EVE", "eventb"));
        assert!(starts_with_ignore_case("ÄPFEL und", "äpfel"));
        assert!(ends_with_ignore_case("image.PNG", ".png"));
        assert!(!ends_with_ignore_case("png", ".png"));
        assert!(ends_with_ignore_case("GROSSE ÄPFEL", "äpfel"));
        // A multi-byte character right at the ASCII boundary takes the slow path.
        assert!(!ends_with_ignore_case("éa", "xa"));
        assert!(!starts_with_ignore_case("aé", "ax"));
    }
}
