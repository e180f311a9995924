//! The one place where errors become HTTP answers: RFC 9457
//! `application/problem+json` with a stable `type`, the `status`, a `detail`,
//! and `errors` naming each field at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_core::{FieldError, Invalid, Position};
use herald_store::StoreError;
use serde::Serialize;
use serde_json::{Value, json};

/// The error of herald-server: every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 400: a query parameter or header is invalid.
    #[error("invalid parameter {name}: {message}")]
    InvalidParameter { name: String, message: String },
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, not for this method (axum adds `Allow`).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: an event with this id and different content is stored.
    #[error("event {id} is already stored with different content")]
    Conflict { id: String, position: Position, differences: Vec<String> },
    /// 409: the resource is not in a state that allows this request.
    #[error("{0}")]
    WrongState(String),
    /// 408: the request's body did not arrive in time.
    #[error("{0}")]
    TimedOut(String),
    /// 413: the body, a batch or an event is too large.
    #[error("{0}")]
    TooLarge(String),
    /// 415
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 415: a body sent compressed (or otherwise encoded), which Herald
    /// does not decode; read as it is, it would be taken for garbage.
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// 422: well-formed JSON that is not a valid event (or rule).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// 422: a well-formed request body (a subscription, a pull, a replay)
    /// that is not valid.
    #[error(transparent)]
    InvalidRequest(Invalid),
    /// 503 with Retry-After: too much work queued; retry shortly.
    #[error("{0}")]
    Overloaded(&'static str),
    /// 500 / 503: the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Seconds a client should wait after a 503 before retrying.
pub(crate) const RETRY_AFTER_SECONDS: &str = "1";

/// A full disk is freed by an operator, not within a second.
const STORAGE_FULL_RETRY_AFTER_SECONDS: &str = "10";

const STORAGE_FULL: &str = "the disk holding Herald's data is full; nothing of this request was stored. \
    Retry once space is freed";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } | ApiError::WrongState(_) => StatusCode::CONFLICT,
            ApiError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) | ApiError::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded(_) | ApiError::Store(StoreError::Overloaded | StoreError::Closed) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Store(StoreError::Full { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::MalformedJson(_) => ("malformed-json", "Malformed JSON"),
            ApiError::InvalidParameter { .. } => ("invalid-parameter", "Invalid parameter"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            ApiError::Conflict { .. } => ("id-conflict", "Same id, different content"),
            ApiError::WrongState(_) => ("wrong-state", "Not possible in the current state"),
            ApiError::TimedOut(_) => ("request-timeout", "Request timeout"),
            ApiError::TooLarge(_) => ("too-large", "Content too large"),
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedEncoding(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::Invalid(_) => ("invalid-event", "Invalid event"),
            ApiError::InvalidRequest(_) => ("invalid-request", "Invalid request"),
            ApiError::Overloaded(_) | ApiError::Store(StoreError::Overloaded) => ("overloaded", "Overloaded"),
            ApiError::Store(StoreError::Closed) => ("shutting-down", "Shutting down"),
            ApiError::Store(StoreError::Corrupt { .. }) => ("storage-damaged", "Storage damaged"),
            ApiError::Store(StoreError::Full { .. }) => ("storage-full", "Storage full"),
            ApiError::Store(_) => ("storage-error", "Storage error"),
        }
    }

    /// The problem document. Store errors are described without their
    /// internals; the log has those.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let status = self.status().as_u16();
        let (detail, errors, extra) = match self {
            ApiError::Invalid(invalid) | ApiError::InvalidRequest(invalid) => (
                format!("{} field(s) are invalid", invalid.errors.len()),
                invalid.errors.iter().map(field_error).collect(),
                None,
            ),
            ApiError::InvalidParameter { name, message } => {
                (format!("{name} {message}"), vec![json!({"parameter": name, "message": message})], None)
            }
            // The body as a whole is at fault: the empty pointer names it.
            ApiError::MalformedJson(message) | ApiError::TooLarge(message) => {
                (self.to_string(), vec![json!({"pointer": "", "message": message})], None)
            }
            ApiError::UnsupportedMediaType(message) => {
                (self.to_string(), vec![json!({"parameter": "Content-Type", "message": message})], None)
            }
            ApiError::UnsupportedEncoding(message) => {
                (self.to_string(), vec![json!({"parameter": "Content-Encoding", "message": message})], None)
            }
            ApiError::Conflict { id, position, differences } => (
                format!("event {id} is stored at position {position} with different content; nothing was changed"),
                differences
                    .iter()
                    .map(|p| field_error(&FieldError::new(p.clone(), "differs from the stored event")))
                    .collect(),
                Some(json!({"id": id, "position": position})),
            ),
            ApiError::Store(StoreError::Corrupt { .. }) => {
                ("a data file is damaged; see the server log".to_owned(), Vec::new(), None)
            }
            ApiError::Store(StoreError::Full { .. }) => (STORAGE_FULL.to_owned(), Vec::new(), None),
            ApiError::Store(StoreError::Overloaded | StoreError::Closed) => (self.to_string(), Vec::new(), None),
            ApiError::Store(_) => ("the store failed; see the server log".to_owned(), Vec::new(), None),
            other => (other.to_string(), Vec::new(), None),
        };
        Problem { kind: format!("urn:herald:problem:{slug}"), title, status, detail, errors, extra }
    }

    /// Logs a failure of Herald's own: not a 4xx, nor an overload (503) or
    /// a full disk (507), which the store logs itself, not once per request.
    pub fn log_failure(&self) {
        let status = self.status();
        if status.is_server_error()
            && status != StatusCode::SERVICE_UNAVAILABLE
            && status != StatusCode::INSUFFICIENT_STORAGE
        {
            tracing::error!(error = %self, "request failed");
        }
    }
}

fn field_error(e: &FieldError) -> Value {
    json!({"pointer": e.pointer, "message": e.message})
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Each field at fault: `{"pointer": "/detail-type", "message": ...}`, or
    /// `{"parameter": "limit", ...}` for a query parameter or header; empty
    /// when none is (a missing resource, an overload), but always present so
    /// a client reads every problem the same way.
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
    /// Problem-specific members (`id`, `position`, `parameter`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub extra: Option<Value>,
}

impl Problem {
    pub fn into_response_with(self, status: StatusCode) -> Response {
        let mut response = (status, serde_json::to_string(&self).unwrap_or_default()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        } else if status == StatusCode::INSUFFICIENT_STORAGE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(STORAGE_FULL_RETRY_AFTER_SECONDS));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        self.log_failure();
        metrics::counter!("herald_requests_failed_total", "status" => status.as_str().to_owned()).increment(1);
        self.problem().into_response_with(status)
    }
}
