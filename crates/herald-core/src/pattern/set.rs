//! Many patterns against one event: the dispatcher's question "which
//! subscriptions want this event?".

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::Pattern;

/// Compiled patterns, each known by the index [`push`](Self::push) returned.
///
/// Most subscriptions name the exact `source` they want, or its prefix, or at
/// least the `detail-type`. Such patterns are filed under those strings, so an
/// event only visits the patterns filed under its own `source` and
/// `detail-type` (one hash lookup each, plus one per distinct prefix length),
/// and the patterns that constrain neither that way (wildcards,
/// `anything-but`, `$or`...), which are scanned. Every visited pattern is
/// still matched in full, so the index only skips work, never decides.
///
/// Apart from `push`, the set is immutable: rebuild it when subscriptions change.
#[derive(Debug, Clone, Default)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
    source: Index,
    detail_type: Index,
    /// Patterns filed under neither field.
    scan: Vec<usize>,
}

/// What a pattern requires of an indexed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

/// Patterns filed by the strings one top-level field must equal or start with.
#[derive(Debug, Clone, Default)]
struct Index {
    exact: HashMap<Box<str>, Vec<usize>>,
    prefix: HashMap<Box<str>, Vec<usize>>,
    /// The distinct byte lengths of the keys of `prefix`, ascending.
    prefix_lengths: Vec<usize>,
    /// Every pattern filed here, once: for the unusual event whose field is an
    /// array (any element may match, so no single bucket is enough).
    all: Vec<usize>,
}

impl Index {
    fn insert(&mut self, keys: &[Key<'_>], index: usize) {
        for key in keys {
            let (map, value) = match *key {
                Key::Exact(value) => (&mut self.exact, value),
                Key::Prefix(value) => (&mut self.prefix, value),
            };
            let bucket = map.entry(value.into()).or_default();
            // `["a", "a"]` files the pattern once.
            if bucket.last() != Some(&index) {
                bucket.push(index);
            }
            if let Key::Prefix(value) = key
                && let Err(at) = self.prefix_lengths.binary_search(&value.len())
            {
                self.prefix_lengths.insert(at, value.len());
            }
        }
        self.all.push(index);
    }

    /// Calls `visit` with the buckets of patterns that can match an event whose
    /// field holds `value`. A missing field, or one that is neither a string
    /// nor an array, can neither equal nor start with a string.
    fn visit(&self, value: Option<&Value>, mut visit: impl FnMut(&[usize])) {
        match value {
            Some(Value::String(s)) => {
                if let Some(bucket) = self.exact.get(s.as_str()) {
                    visit(bucket);
                }
                for &len in self.prefix_lengths.iter().take_while(|&&len| len <= s.len()) {
                    if let Some(bucket) = s.get(..len).and_then(|head| self.prefix.get(head)) {
                        visit(bucket);
                    }
                }
            }
            Some(Value::Array(_)) => visit(&self.all),
            _ => {}
        }
    }
}

impl PatternSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pattern; returns its index (0, 1, 2... in order of addition).
    ///
    /// A pattern is filed under `source` if it requires exact values there,
    /// else under `detail-type` if it does; failing both, under a field that
    /// requires exact values or prefixes; failing that, it is scanned.
    pub fn push(&mut self, pattern: Pattern) -> usize {
        let index = self.patterns.len();
        let source = pattern.index_keys("source");
        let detail_type = pattern.index_keys("detail-type");
        let exact = |keys: &[Key<'_>]| keys.iter().all(|k| matches!(k, Key::Exact(_)));
        match (&source, &detail_type) {
            (Some(keys), _) if exact(keys) => self.source.insert(keys, index),
            (_, Some(keys)) if exact(keys) => self.detail_type.insert(keys, index),
            (Some(keys), _) => self.source.insert(keys, index),
            (_, Some(keys)) => self.detail_type.insert(keys, index),
            (None, None) => self.scan.push(index),
        }
        self.patterns.push(pattern);
        index
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Pattern> {
        self.patterns.get(index)
    }

    /// The indices of the patterns `event` matches, ascending.
    pub fn matches(&self, event: &Value) -> Vec<usize> {
        let mut out = Vec::new();
        self.matches_into(event, &mut out);
        out
    }

    /// [`matches`](Self::matches) into a buffer the caller reuses (it is
    /// cleared first), so that matching allocates nothing once the buffer is big enough.
    pub fn matches_into(&self, event: &Value, out: &mut Vec<usize>) {
        out.clear();
        let object = event.as_object();
        let field = |name: &str| object.and_then(|o| o.get(name));
        let mut visit = |bucket: &[usize]| self.collect(bucket, object, out);
        self.source.visit(field("source"), &mut visit);
        self.detail_type.visit(field("detail-type"), &mut visit);
        visit(&self.scan);
        // A pattern filed under several keys (`["a", {"prefix": "a"}]`) can be
        // found twice.
        out.sort_unstable();
        out.dedup();
    }

    fn collect(&self, bucket: &[usize], object: Option<&Map<String, Value>>, out: &mut Vec<usize>) {
        for &index in bucket {
            if self.patterns[index].root.matches(object) {
                out.push(index);
            }
        }
    }
}

impl FromIterator<Pattern> for PatternSet {
    fn from_iter<I: IntoIterator<Item = Pattern>>(patterns: I) -> Self {
        let mut set = Self::new();
        for pattern in patterns {
            set.push(pattern);
        }
        set
    }
}
