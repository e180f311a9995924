//! AWS EventBridge `PutEvents` (AWS JSON 1.1 on `POST /`), so
//! `boto3.client("events", endpoint_url=...).put_events(...)` and the AWS CLI
//! publish to Herald unchanged. Signatures are accepted as they are.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_core::formats::aws::{self, Origin};
use serde_json::{Value, json};

use crate::body::{parse_json, read_limited};
use crate::ingest::{self, Format, Outcome, Request};
use crate::problem::ApiError;
use crate::state::AppState;

const TARGET: &str = "AWSEvents.PutEvents";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Most entries in one request: EventBridge refuses more with a
/// ValidationException, so a client that works here works there.
const MAX_ENTRIES: usize = 10;

/// AWS EventBridge PutEvents.
#[utoipa::path(post, path = "/", operation_id = "putEvents", tag = "aws",
    params(("X-Amz-Target" = String, Header, description = "AWSEvents.PutEvents")),
    request_body(content = Object, content_type = "application/x-amz-json-1.1", description = "PutEvents request"),
    responses((status = 200, description = "PutEvents response: FailedEntryCount and Entries", body = Object, content_type = "application/x-amz-json-1.1"),
        (status = "4XX", description = "Not a valid PutEvents request (ValidationException and others), in AWS's error shape: `{\"__type\", \"message\"}`", body = Object, content_type = "application/x-amz-json-1.1"),
        (status = "5XX", description = "Not stored (InternalException: a full disk, an internal error; ThrottlingException: overloaded), in AWS's error shape: SDKs retry", body = Object, content_type = "application/x-amz-json-1.1")))]
pub async fn put_events(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match handle(&state, &headers, body).await {
        Ok(response) => response,
        Err((status, kind, message)) => aws_error(status, kind, &message),
    }
}

type AwsError = (StatusCode, &'static str, String);

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, AwsError> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    if target != TARGET {
        return Err((
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("unsupported X-Amz-Target '{target}'"),
        ));
    }
    let bytes = read_limited(headers, body).await.map_err(from_api)?;
    let request = parse_json(&bytes).map_err(from_api)?;
    let Some(Value::Array(entries)) = request.get("Entries") else {
        return Err(validation("Entries must be an array of entries"));
    };
    if entries.is_empty() || entries.len() > MAX_ENTRIES {
        return Err(validation(&format!("Entries must hold 1 to {MAX_ENTRIES} entries, not {}", entries.len())));
    }
    let origin = Origin {
        account: state.config.account.clone(),
        region: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(aws::region_from_authorization)
            .or_else(|| state.config.region.clone()),
    };
    let offered = entries.iter().map(|entry| aws::entry_to_envelope(entry, &origin)).collect();
    let request = Request { format: Format::AwsPutEvents, idempotency_key: None, batch: true };
    let outcomes = ingest::publish(state, offered, request).await.map_err(from_api)?;

    let mut failed = 0;
    let entries: Vec<Value> = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Created { id, .. } | Outcome::Duplicate { id, .. } => json!({ "EventId": id }),
            Outcome::Conflict { id, .. } => {
                failed += 1;
                json!({ "ErrorCode": "ConflictException", "ErrorMessage": format!("event {id} is stored with different content") })
            }
            Outcome::Invalid(invalid) => {
                failed += 1;
                let code = if invalid.errors.iter().any(|e| e.pointer.ends_with("/Detail")) { "MalformedDetail" } else { "InvalidArgument" };
                json!({ "ErrorCode": code, "ErrorMessage": invalid.to_string() })
            }
        })
        .collect();
    let body = json!({ "FailedEntryCount": failed, "Entries": entries });
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response())
}

fn validation(message: &str) -> AwsError {
    (StatusCode::BAD_REQUEST, "ValidationException", message.to_owned())
}

fn from_api(e: ApiError) -> AwsError {
    e.log_failure();
    let (status, kind) = match e.status() {
        StatusCode::SERVICE_UNAVAILABLE => (StatusCode::SERVICE_UNAVAILABLE, "ThrottlingException"),
        // SDKs retry this one (botocore counts it as transient).
        StatusCode::REQUEST_TIMEOUT => (StatusCode::REQUEST_TIMEOUT, "RequestTimeoutException"),
        // EventBridge never answers 507, and the SDKs retry a 500.
        s if s.is_server_error() => (StatusCode::INTERNAL_SERVER_ERROR, "InternalException"),
        // EventBridge answers every request it cannot take 400 ValidationException.
        _ => (StatusCode::BAD_REQUEST, "ValidationException"),
    };
    // A server error's problem text leaves out internals such as file paths.
    let message = if status.is_server_error() { e.problem().detail } else { e.to_string() };
    (status, kind, message)
}

/// An error in the AWS JSON 1.1 protocol's shape, which the SDKs parse.
fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let mut response = (status, json!({ "__type": kind, "message": message }).to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
