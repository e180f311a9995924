//! `/v1/subscriptions`: declaring subscriptions, their status, attempts and
//! dead letters. Delivery itself is the dispatcher's ([`crate::dispatch`]).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::envelope::{format_time, position_in};
use herald_core::identity::is_dot_segment;
use herald_core::signature::Secret;
use herald_core::subscription::{Start, SubscriptionSpec, SubscriptionState, Target};
use herald_core::{Invalid, MAX_POSITION, Position};
use herald_store::{ATTEMPT_OUTCOMES, Attempt, AttemptQuery, DeadLetter, SubscriptionRecord};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::events::parse_param;
use super::extract::{Path, Query};
use super::wire::documented::{SubscriptionIn, SubscriptionList, SubscriptionOut};
use super::wire::{AttemptList, AttemptOut, DeadLetterOut, DeadLetterPage, Purged, Redriven};
use crate::body::{optional_json, parse_json, read_limited, require_json};
use crate::client::Client;
use crate::dispatch::circuit::CircuitState;
use crate::dispatch::replay::{self, Bound, Replayed};
use crate::dispatch::worker::now_us;
use crate::problem::ApiError;
use crate::state::AppState;

pub const MAX_NAME_CHARS: usize = 128;

/// Create or update a subscription (idempotent).
///
/// Body: `pattern` (EventBridge event pattern; none = every event), `target`
/// (`{"type": "webhook", "url", "secret"}`), `start` (`"latest"`,
/// `"earliest"`, `{"time"}`, `{"position"}`; only used on creation), `retry`
/// (`max_attempts`, `max_age`, `min_backoff`, `max_backoff`, `timeout`),
/// `ordering` (`"none"` or `"stream"`), `concurrency`, `rate_limit`.
/// A webhook secret left out is generated on creation and kept on update.
#[utoipa::path(put, path = "/v1/subscriptions/{name}", operation_id = "putSubscription", tag = "subscriptions",
    params(("name" = String, Path, description = "1-128 of A-Z a-z 0-9 . _ -")),
    request_body(content = SubscriptionIn),
    responses(
        (status = 201, description = "Created", body = SubscriptionOut),
        (status = 200, description = "Updated", body = SubscriptionOut),
        (status = 422, description = "Invalid declaration (the pointer names the field, also inside the pattern)",
            body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    require_json(&headers)?;
    let mut spec = SubscriptionSpec::from_json(&parse_json(&read_limited(&headers, body).await?)?)
        .map_err(ApiError::InvalidRequest)?;
    // Held from reading the stored declaration to writing the new one, so
    // concurrent creations agree on the secret generated for the first.
    let _writing = state.subscription_writes.lock().await;
    let existing = state.store.subscription(&name).await?;
    if let Target::Webhook { secret: secret @ None, .. } = &mut spec.target {
        *secret = Some(
            existing.as_ref().and_then(stored_secret).unwrap_or_else(|| Secret::encode(&rand::random::<[u8; 32]>())),
        );
    }
    let head = *state.store.head().borrow();
    let start = match spec.start {
        Start::Latest => head,
        Start::Earliest => 0,
        // A position past the head (one copied from another store, say)
        // would deliver nothing until the log reached it, silently.
        Start::Position(p) if p > head => {
            let message = format!("is past the last position, {head}: events after it do not exist yet");
            return Err(ApiError::InvalidRequest(Invalid::one("/start/position", message)));
        }
        Start::Position(p) => p,
        Start::Time(t) => state.store.position_before(t.timestamp_micros()).await?,
    };
    let created = state.store.put_subscription(&name, spec.to_json().to_string(), start, now_us()).await?;
    state.dispatcher.nudge(&name);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view(&state, &load(&state, &name).await?))).into_response())
}

/// The secret of a stored webhook subscription, kept when an update leaves it out.
fn stored_secret(record: &SubscriptionRecord) -> Option<String> {
    let spec = herald_core::json::parse(record.spec.as_bytes()).ok()?;
    spec.pointer("/target/secret")?.as_str().map(str::to_owned)
}

#[utoipa::path(get, path = "/v1/subscriptions", operation_id = "listSubscriptions", tag = "subscriptions",
    responses((status = 200, description = "Every subscription with its status", body = SubscriptionList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let records = state.store.subscriptions().await?;
    Ok(Json(json!({ "subscriptions": records.iter().map(|r| view(&state, r)).collect::<Vec<_>>() })))
}

/// A subscription: its declaration and status (lag, in flight, delivered,
/// failed, dead letters, last error, state).
#[utoipa::path(get, path = "/v1/subscriptions/{name}", operation_id = "getSubscription", tag = "subscriptions", params(("name" = String, Path)),
    responses((status = 200, description = "The subscription", body = SubscriptionOut),
        (status = 404, description = "No such subscription", body = crate::problem::Problem)))]
pub async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(view(&state, &load(&state, &name).await?)))
}

/// Delete a subscription with its owed deliveries, attempts and dead letters.
#[utoipa::path(delete, path = "/v1/subscriptions/{name}", operation_id = "deleteSubscription", tag = "subscriptions", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such subscription", body = crate::problem::Problem)))]
pub async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if !state.store.delete_subscription(&name).await? {
        return Err(not_found(&name));
    }
    state.dispatcher.nudge(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// Stop delivering; the cursor waits where it is.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/pause", operation_id = "pauseSubscription", tag = "subscriptions", params(("name" = String, Path)),
    responses((status = 200, description = "The subscription, paused", body = SubscriptionOut),
        (status = 404, description = "No such subscription", body = crate::problem::Problem)))]
pub async fn pause(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    set_state(state, name, SubscriptionState::Paused).await
}

/// Deliver again, also after the target answered 410 Gone.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/resume", operation_id = "resumeSubscription", tag = "subscriptions", params(("name" = String, Path)),
    responses((status = 200, description = "The subscription, active", body = SubscriptionOut),
        (status = 404, description = "No such subscription", body = crate::problem::Problem)))]
pub async fn resume(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    set_state(state, name, SubscriptionState::Active).await
}

async fn set_state(state: AppState, name: String, to: SubscriptionState) -> Result<Json<Value>, ApiError> {
    if !state.store.set_subscription_state(&name, to, None, now_us()).await? {
        return Err(not_found(&name));
    }
    state.dispatcher.nudge(&name);
    Ok(Json(view(&state, &load(&state, &name).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptParams {
    /// Only attempts to deliver this event.
    pub event_id: Option<String>,
    /// Only attempts that ended so: `delivered`, `failed`, `dead` or `gone`.
    pub outcome: Option<String>,
    /// At most this many, newest first (1-1000, default 100).
    pub limit: Option<String>,
}

/// What one attempt's answer is charged to the response budget while it is
/// read and written: its fields and up to 1 KiB of the target's response.
const ATTEMPT_RESERVE: usize = 4 << 10;

/// Delivery attempts, newest first: time, status code, latency, error and the
/// start of the answer's body.
#[utoipa::path(get, path = "/v1/subscriptions/{name}/attempts", operation_id = "listAttempts", tag = "subscriptions",
    params(("name" = String, Path), AttemptParams),
    responses((status = 200, description = "Attempts", body = AttemptList),
        (status = 404, description = "No such subscription", body = crate::problem::Problem),
        (status = 503, description = "Answers held fill the response budget, or this client's share of it: retry after Retry-After", body = crate::problem::Problem)))]
pub async fn attempts(
    State(state): State<AppState>,
    client: Client,
    Path(name): Path<String>,
    Query(params): Query<AttemptParams>,
) -> Result<Response, ApiError> {
    load(&state, &name).await?;
    if let Some(outcome) = &params.outcome
        && !ATTEMPT_OUTCOMES.contains(&outcome.as_str())
    {
        return Err(ApiError::InvalidParameter {
            name: "outcome".into(),
            message: "must be delivered, failed, dead or gone".into(),
        });
    }
    let query = AttemptQuery {
        event_id: params.event_id,
        outcome: params.outcome,
        limit: parse_param("limit", params.limit.as_deref(), 100, 1..=1000)? as usize,
    };
    // Each attempt keeps up to 1 KiB of its response: up to ~4 MiB for 1,000.
    let charge = state.response_budget.for_client(client).reserve(query.limit * ATTEMPT_RESERVE).await?;
    let attempts = state.store.attempts(&name, query).await?;
    let list = AttemptList { attempts: attempts.iter().map(attempt_out).collect() };
    // Strings and numbers only: serializing cannot fail.
    charge.json(serde_json::to_string(&list).expect("attempts serialize"))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only dead letters of events after this position.
    pub after: Option<String>,
    /// At most this many (1-1000, default 100).
    pub limit: Option<String>,
}

/// Events the subscription gave up on, with the reason, in position order.
#[utoipa::path(get, path = "/v1/subscriptions/{name}/dead-letters", operation_id = "listDeadLetters", tag = "subscriptions",
    params(("name" = String, Path), DeadLetterParams),
    responses((status = 200, description = "Dead letters", body = DeadLetterPage),
        (status = 404, description = "No such subscription", body = crate::problem::Problem)))]
pub async fn dead_letters(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<DeadLetterParams>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    load(&state, &name).await?;
    let after = parse_param("after", params.after.as_deref(), 0, 0..=MAX_POSITION)?;
    let limit = parse_param("limit", params.limit.as_deref(), 100, 1..=1000)? as usize;
    let letters = state.store.dead_letters(&name, after, limit).await?;
    let next = letters.last().map_or(after, |l| l.position);
    Ok(Json(DeadLetterPage { dead_letters: letters.iter().map(dead_letter_out).collect(), next }))
}

/// Put dead letters back for delivery: all, or `{"ids": [event ids]}`.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/dead-letters/redrive", operation_id = "redriveDeadLetters", tag = "subscriptions",
    params(("name" = String, Path)), request_body(content = Option<super::wire::documented::IdsIn>, description = r#"optional {"ids": ["..."]}"#),
    responses((status = 200, description = "How many were put back", body = Redriven),
        (status = 404, description = "No such subscription", body = crate::problem::Problem)))]
pub async fn redrive(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Redriven>, ApiError> {
    load(&state, &name).await?;
    let ids = selected_ids(&headers, body).await?;
    let redriven = state.store.redrive(&name, ids, now_us()).await?;
    state.dispatcher.nudge(&name);
    Ok(Json(Redriven { redriven }))
}

/// Delete dead letters: all, or `{"ids": [event ids]}`.
#[utoipa::path(delete, path = "/v1/subscriptions/{name}/dead-letters", operation_id = "purgeDeadLetters", tag = "subscriptions",
    params(("name" = String, Path)), request_body(content = Option<super::wire::documented::IdsIn>, description = r#"optional {"ids": ["..."]}"#),
    responses((status = 200, description = "How many were deleted", body = Purged),
        (status = 404, description = "No such subscription", body = crate::problem::Problem)))]
pub async fn purge(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Purged>, ApiError> {
    load(&state, &name).await?;
    let ids = selected_ids(&headers, body).await?;
    Ok(Json(Purged { purged: state.store.purge_dead_letters(&name, ids).await? }))
}

/// Deliver a stored range again (without moving the live cursor):
/// `{"from": {"position": N} | {"time": RFC 3339}, "to": ...}`, up to what the
/// subscription has already fanned out (its cursor, also the default `to`).
/// Replayed webhook deliveries carry `herald-replay: true`.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/replay", operation_id = "replay", tag = "subscriptions",
    params(("name" = String, Path)),
    request_body(content = super::wire::documented::ReplayIn, description = r#"{"from": {"position": 1}, "to": {"time": "2026-01-01T00:00:00Z"}}"#),
    responses((status = 200, description = "What was scanned, matched and enqueued", body = Replayed),
        (status = 404, description = "No such subscription", body = crate::problem::Problem),
        (status = 422, description = "Invalid range", body = crate::problem::Problem)))]
pub async fn replay(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Replayed>, ApiError> {
    require_json(&headers)?;
    let value = parse_json(&read_limited(&headers, body).await?)?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::InvalidRequest(Invalid::one("", "must be a JSON object with \"from\" (and \"to\")")));
    };
    if let Some(key) = object.keys().find(|k| !["from", "to"].contains(&k.as_str())) {
        return Err(ApiError::InvalidRequest(Invalid::one(format!("/{key}"), "unknown field; expected from and to")));
    }
    let from = bound(object.get("from"), "/from")
        .and_then(|from| from.ok_or_else(|| Invalid::one("/from", "required")))
        .map_err(ApiError::InvalidRequest)?;
    let to = bound(object.get("to"), "/to").map_err(ApiError::InvalidRequest)?;
    let backwards = match (from, to) {
        (Bound::Position(a), Some(Bound::Position(b))) => b < a,
        (Bound::Time(a), Some(Bound::Time(b))) => b <= a,
        _ => false,
    };
    if backwards {
        return Err(ApiError::InvalidRequest(Invalid::one("/to", "must come after from")));
    }
    let record = load(&state, &name).await?;
    let spec = SubscriptionSpec::from_stored(&record.spec).ok();
    let pattern = spec.map(|s| s.compile_pattern()).transpose().map_err(ApiError::InvalidRequest)?.unwrap_or_default();
    let report = replay::replay(state.store.as_ref(), &name, &pattern, record.cursor, from, to)
        .await?
        .ok_or_else(|| not_found(&name))?;
    state.dispatcher.nudge(&name);
    Ok(Json(report))
}

fn bound(value: Option<&Value>, pointer: &str) -> Result<Option<Bound>, Invalid> {
    let invalid =
        || Invalid::one(pointer, format!(r#"must be {{"position": 0 to {MAX_POSITION}}} or {{"time": RFC 3339}}"#));
    let Some(value) = value else { return Ok(None) };
    let object = value.as_object().filter(|o| o.len() == 1).ok_or_else(invalid)?;
    if let Some(position) = object.get("position") {
        return position_in(position).map(|p| Some(Bound::Position(p))).ok_or_else(invalid);
    }
    let time = object.get("time").ok_or_else(invalid)?;
    let bad_time = || Invalid::one(format!("{pointer}/time"), "must be an RFC 3339 timestamp");
    let time = chrono::DateTime::parse_from_rfc3339(time.as_str().ok_or_else(bad_time)?).map_err(|_| bad_time())?;
    Ok(Some(Bound::Time(time.with_timezone(&chrono::Utc))))
}

/// An optional body `{"ids": [...]}`; no body means all.
async fn selected_ids(headers: &HeaderMap, body: Body) -> Result<Option<Vec<String>>, ApiError> {
    let Some(value) = optional_json(headers, body).await? else { return Ok(None) };
    let invalid = |pointer: String, message: &str| ApiError::InvalidRequest(Invalid::one(pointer, message));
    let Some(object) = value.as_object() else {
        return Err(invalid(String::new(), "must be an object: {\"ids\": [...]}"));
    };
    if let Some(unknown) = object.keys().find(|k| *k != "ids") {
        return Err(invalid(herald_core::envelope::pointer_to(unknown), "unknown field; expected only \"ids\""));
    }
    let Some(ids) = object.get("ids").and_then(Value::as_array) else {
        return Err(invalid("/ids".into(), "must be an array of event ids (strings)"));
    };
    let ids = ids.iter().enumerate().map(|(i, v)| {
        v.as_str().map(str::to_owned).ok_or_else(|| invalid(format!("/ids/{i}"), "must be an event id (a string)"))
    });
    Ok(Some(ids.collect::<Result<Vec<_>, _>>()?))
}

pub(super) async fn load(state: &AppState, name: &str) -> Result<SubscriptionRecord, ApiError> {
    state.store.subscription(name).await?.ok_or_else(|| not_found(name))
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no subscription named {name}"))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && !is_dot_segment(name)
        && name.chars().count() <= MAX_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::InvalidParameter {
            name: "name".into(),
            message: format!("must be 1-{MAX_NAME_CHARS} characters of A-Z a-z 0-9 . _ -, and not \".\" or \"..\""),
        })
    }
}

/// The declaration with the subscription's status.
fn view(state: &AppState, record: &SubscriptionRecord) -> Value {
    let mut out = herald_core::json::parse(record.spec.as_bytes()).unwrap_or_else(|_| json!({}));
    let head: Position = *state.store.head().borrow();
    if let Some(object) = out.as_object_mut() {
        object.insert("name".into(), json!(record.name));
        object.insert("state".into(), json!(record.state.as_str()));
        object.insert(
            "status".into(),
            json!({
                "cursor": record.cursor,
                "lag": head.saturating_sub(record.cursor),
                "pending": record.pending,
                "in_flight": state.dispatcher.in_flight(&record.name),
                "delivered": record.delivered,
                "failed": record.failed,
                "dead_letters": record.dead_letters,
                "last_error": record.last_error,
            }),
        );
        if let Some(url) = object.get("target").and_then(|t| t.get("url")).and_then(Value::as_str) {
            let circuit = circuit_json(state.dispatcher.circuit(url));
            object["status"]["circuit"] = circuit;
        }
        object.insert("created".into(), json!(time_text(record.created_us)));
        object.insert("updated".into(), json!(time_text(record.updated_us)));
    }
    out
}

/// A webhook URL's circuit breaker: `closed`, `open` (with when it will let
/// a probe through) or `half-open` (a probe decides).
fn circuit_json(circuit: CircuitState) -> Value {
    match circuit {
        CircuitState::Closed => json!({"state": "closed"}),
        CircuitState::HalfOpen => json!({"state": "half-open"}),
        CircuitState::Open { until } => {
            let wait = until.saturating_duration_since(tokio::time::Instant::now());
            let at = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            json!({"state": "open", "until": format_time(&at)})
        }
    }
}

fn time_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map(|t| format_time(&t)).unwrap_or_default()
}

fn attempt_out(a: &Attempt) -> AttemptOut {
    AttemptOut {
        event_id: a.event_id.clone(),
        position: a.position,
        attempt: a.attempt,
        time: time_text(a.time_us),
        outcome: a.outcome.clone(),
        status: a.status,
        latency_ms: a.latency_us as f64 / 1000.0,
        error: a.error.clone(),
        response: a.response.clone(),
        replay: a.replay,
    }
}

fn dead_letter_out(l: &DeadLetter) -> DeadLetterOut {
    DeadLetterOut {
        event_id: l.event_id.clone(),
        position: l.position,
        stream: l.stream.clone(),
        attempts: l.attempts,
        reason: l.reason.clone(),
        time: time_text(l.time_us),
    }
}
