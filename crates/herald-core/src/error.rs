use serde::Serialize;

/// One JSON pointer (RFC 6901) reference token: `~` becomes `~0`, `/` becomes `~1`.
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// One problem with one field of the input, named by a JSON pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), message: message.into() }
    }

    /// The same error, with its pointer moved under `prefix` (e.g. `/3` for the
    /// fourth event of a batch).
    pub fn under(mut self, prefix: &str) -> Self {
        self.pointer = format!("{prefix}{}", self.pointer);
        self
    }
}

/// The error of herald-core: input that is not a valid event, with every field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event: {}", .errors.iter().map(|e| format!("{} {}", e.pointer, e.message)).collect::<Vec<_>>().join("; "))]
pub struct Invalid {
    pub errors: Vec<FieldError>,
}

impl Invalid {
    pub fn one(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self { errors: vec![FieldError::new(pointer, message)] }
    }

    pub fn under(self, prefix: &str) -> Self {
        Self { errors: self.errors.into_iter().map(|e| e.under(prefix)).collect() }
    }
}
