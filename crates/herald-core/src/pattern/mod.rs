//! AWS EventBridge event patterns: which events a subscription receives.
//!
//! A pattern is JSON with the shape of the events it selects:
//!
//! ```
//! use herald_core::pattern::Pattern;
//! use serde_json::json;
//!
//! let pattern = Pattern::compile(&json!({
//!     "source": ["com.shop.orders"],
//!     "detail": { "total": [{ "numeric": [">", 0, "<=", 100] }] }
//! }))?;
//! assert!(pattern.matches(&json!({ "source": "com.shop.orders", "detail": { "total": 25 } })));
//! assert!(!pattern.matches(&json!({ "source": "com.shop.orders", "detail": { "total": 250 } })));
//! # Ok::<(), herald_core::pattern::PatternError>(())
//! ```
//!
//! Fields are ANDed, the values listed for one field are ORed, and when the
//! event holds an array the field matches if any element does. The operators
//! are those of the EventBridge user guide ("Comparison operators for use in
//! event patterns"): exact values, `prefix`, `suffix`, `equals-ignore-case`
//! (also inside `prefix` / `suffix`), `wildcard`, `anything-but` (values,
//! `prefix`, `suffix`, `equals-ignore-case`, `wildcard`), `numeric`, `cidr`,
//! `exists` and `$or`. An empty pattern `{}` matches every event.
//!
//! # Why this is hand-written
//!
//! Matching is Herald's hot path: every published event is tested against
//! every subscription. So patterns are compiled once ([`Pattern::compile`])
//! into a tree that matching walks without allocating (field names split per
//! level, case-insensitive strings lowercased, numbers parsed, CIDRs turned
//! into masks), and [`PatternSet`] indexes patterns by their exact `source` /
//! `detail-type` so that most of them are skipped with one hash lookup. The
//! only complete implementation, `aws/event-ruler`, is a Java library; a
//! generic JSON query engine would allocate per event and validate nothing.
//!
//! Where EventBridge's guide is silent, behaviour follows `aws/event-ruler`;
//! the choices are noted on the operators in `compile.rs` and `matcher.rs`.

mod compile;
mod matcher;
mod set;

use serde_json::Value;

use crate::error::{FieldError, Invalid};

pub use set::PatternSet;

/// A compiled, validated event pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    root: matcher::Node,
}

/// Why a pattern was refused: a JSON pointer (RFC 6901) into the pattern and a
/// sentence for a human. The API answers it as a 422 problem naming `path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event pattern at \"{path}\": {message}")]
pub struct PatternError {
    /// JSON pointer to the offending part of the pattern, e.g. `/detail/amount/0/numeric/1`;
    /// empty for the pattern as a whole.
    pub path: String,
    pub message: String,
}

impl PatternError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl From<PatternError> for FieldError {
    fn from(error: PatternError) -> Self {
        FieldError::new(error.path, error.message)
    }
}

impl From<PatternError> for Invalid {
    fn from(error: PatternError) -> Self {
        Invalid { errors: vec![error.into()] }
    }
}

impl Pattern {
    /// Validates and compiles a pattern given as JSON.
    pub fn compile(pattern: &Value) -> Result<Self, PatternError> {
        Ok(Self { root: compile::root(pattern)? })
    }

    /// The pattern that matches every event (a subscription without a pattern).
    pub fn any() -> Self {
        Self { root: matcher::Node { fields: Vec::new(), any_of: Vec::new(), accepts_absent: true } }
    }

    /// Whether this pattern matches every event.
    pub fn is_any(&self) -> bool {
        self.root.fields.is_empty() && self.root.any_of.is_empty()
    }

    /// Whether `event`, a full envelope as JSON (`source`, `detail-type`,
    /// `detail`, ...), matches. Does not allocate.
    pub fn matches(&self, event: &Value) -> bool {
        self.root.matches(event.as_object())
    }

    /// What a top-level field must be for this pattern to match, when that is
    /// only exact strings and prefixes (`"source": ["a", {"prefix": "b."}]`):
    /// the keys [`PatternSet`] files the pattern under.
    pub(crate) fn index_keys(&self, field: &str) -> Option<Vec<set::Key<'_>>> {
        let field = self.root.fields.iter().find(|f| &*f.key == field)?;
        let matcher::Child::Leaf(leaf) = &field.child else {
            return None;
        };
        leaf.matchers
            .iter()
            .map(|m| match m {
                matcher::Matcher::Str(s) => Some(set::Key::Exact(s)),
                matcher::Matcher::Prefix(p) => Some(set::Key::Prefix(p)),
                _ => None,
            })
            .collect()
    }
}

impl Default for Pattern {
    fn default() -> Self {
        Self::any()
    }
}
