//! Pull consumers: `POST /v1/subscriptions/{name}/pull`, `.../ack`, `.../nack`.
//! Several consumers pulling one subscription share its messages (each
//! message is leased to one of them); an unacknowledged lease runs out after
//! the target's `ack_timeout` and the message is delivered again.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use herald_core::subscription::{AfterFailure, SubscriptionSpec, SubscriptionState, Target};
use herald_core::{FieldError, Invalid, Position};
use herald_store::{Attempt, Delivery, Settlement};
use serde_json::{Map, Value, json};

use super::extract::Path;
use super::wire::{Acked, Nacked};
use crate::body::optional_json;
use crate::client::Client;
use crate::dispatch::pull;
use crate::dispatch::worker::now_us;
use crate::problem::ApiError;
use crate::state::AppState;

const MAX_MESSAGES: u64 = 1000;
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Lease up to `max` messages (default 10), waiting up to `wait` (default 0,
/// at most 30 s) for the first to arrive.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/pull", operation_id = "pull", tag = "pull", params(("name" = String, Path)),
    request_body(content = Option<super::wire::documented::PullIn>, description = r#"optional: {"max": 10, "wait": "5s"}"#),
    responses((status = 200, description = "The messages leased, oldest first", body = super::wire::documented::PullAnswer),
        (status = 404, description = "No such subscription", body = crate::problem::Problem),
        (status = 409, description = "Not a pull subscription", body = crate::problem::Problem),
        (status = 503, description = "Answers held fill the response budget, or this client's share of it: nothing was leased; retry after Retry-After", body = crate::problem::Problem)))]
pub async fn pull(
    State(state): State<AppState>,
    client: Client,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request = object(&headers, body).await?;
    let max = match request.get("max") {
        None => 10,
        Some(v) => v.as_u64().filter(|n| (1..=MAX_MESSAGES).contains(n)).ok_or_else(|| {
            ApiError::InvalidRequest(Invalid::one("/max", format!("must be an integer from 1 to {MAX_MESSAGES}")))
        })?,
    } as usize;
    let wait = match request.get("wait") {
        None => Duration::ZERO,
        Some(v) => herald_core::subscription::duration(v).filter(|d| *d <= MAX_WAIT).ok_or_else(|| {
            ApiError::InvalidRequest(Invalid::one("/wait", "must be a duration of at most 30 s, e.g. \"5s\""))
        })?,
    };
    if let Some(key) = request.keys().find(|k| !["max", "wait"].contains(&k.as_str())) {
        return Err(ApiError::InvalidRequest(Invalid::one(format!("/{key}"), "unknown field; expected max and wait")));
    }
    let spec = pull_spec(&state, &name, true).await?;
    let Some((leased, charge)) = pull::lease(
        state.store.as_ref(),
        &name,
        &spec,
        max,
        wait,
        state.dispatcher.deliveries_added(),
        state.shutdown.clone(),
        &state.response_budget.for_client(client),
        || state.dispatcher.in_flight(&name) > 0,
    )
    .await?
    else {
        return Ok(Json(json!({ "messages": [] })).into_response());
    };
    Ok(charge.json_after_write(messages_json(&leased)))
}

/// Most bytes a message adds to its event's body: `ack_id`, `attempt`,
/// `replay`, the event's position and the separators.
const MESSAGE_FIELDS_MAX: usize = 160;

/// `{"messages": [{"ack_id", "attempt", "replay", "event"}]}`, the events
/// spliced in as stored rather than re-parsed, in a text sized up front
/// (it is charged what it takes: within what a lease reserves).
fn messages_json(leased: &[pull::Leased]) -> String {
    let size = leased.iter().map(|m| m.event.body.len() + MESSAGE_FIELDS_MAX).sum::<usize>() + 16;
    let mut out = String::with_capacity(size);
    out.push_str("{\"messages\":[");
    for (i, m) in leased.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let head = json!({ "ack_id": m.ack_id, "attempt": m.delivery.attempts, "replay": m.delivery.replay });
        let head = head.to_string();
        out.push_str(&head[..head.len() - 1]);
        out.push_str(",\"event\":");
        m.event.write_json(&mut out);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// Acknowledge messages: they are done and never delivered again.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/ack", operation_id = "ack", tag = "pull", params(("name" = String, Path)),
    request_body(content = super::wire::documented::AckIn, description = r#"{"ack_ids": ["..."]}"#),
    responses((status = 200, description = "How many were acknowledged: messages leased again since (their lease ran out) are not counted", body = Acked),
        (status = 404, description = "No such subscription", body = crate::problem::Problem),
        (status = 409, description = "Not a pull subscription", body = crate::problem::Problem)))]
pub async fn ack(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Acked>, ApiError> {
    let request = object(&headers, body).await?;
    let leases = ack_ids(&request, &["ack_ids"])?;
    pull_spec(&state, &name, false).await?;
    let now = now_us();
    let decide =
        Box::new(move |d: &Delivery| (Attempt::of(d, d.attempts, now, "delivered", None), Settlement::Delivered));
    Ok(Json(Acked { acked: state.store.settle_leased(&name, leases, decide).await? }))
}

/// Give messages back, to be delivered again after `delay` (default 0);
/// past the retry policy's `max_attempts` they go to the dead letters.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/nack", operation_id = "nack", tag = "pull", params(("name" = String, Path)),
    request_body(content = super::wire::documented::NackIn, description = r#"{"ack_ids": ["..."], "delay": "1s"}"#),
    responses((status = 200, description = "How many were given back", body = Nacked),
        (status = 404, description = "No such subscription", body = crate::problem::Problem),
        (status = 409, description = "Not a pull subscription", body = crate::problem::Problem)))]
pub async fn nack(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Nacked>, ApiError> {
    let request = object(&headers, body).await?;
    let leases = ack_ids(&request, &["ack_ids", "delay"])?;
    let delay = match request.get("delay") {
        None => Duration::ZERO,
        Some(v) => herald_core::subscription::duration(v).filter(|d| *d <= Duration::from_secs(12 * 3600)).ok_or_else(
            || ApiError::InvalidRequest(Invalid::one("/delay", "must be a duration of at most 12 h, e.g. \"1s\"")),
        )?,
    };
    let spec = pull_spec(&state, &name, false).await?;
    let now = now_us();
    let decide = Box::new(move |d: &Delivery| {
        let error = "negatively acknowledged";
        let settlement = match spec.retry.after_failure(d.attempts, d.first_due_us, now, Some(delay), 0.0, error) {
            AfterFailure::RetryAt(due_us) => Settlement::Retry { due_us },
            AfterFailure::GiveUp(reason) => Settlement::Dead { reason },
        };
        let outcome = if matches!(settlement, Settlement::Dead { .. }) { "dead" } else { "failed" };
        (Attempt::of(d, d.attempts, now, outcome, Some(error.to_owned())), settlement)
    });
    Ok(Json(Nacked { nacked: state.store.settle_leased(&name, leases, decide).await? }))
}

/// The subscription's declaration; 409 unless it is a pull
/// subscription, and, when `to_lease`, an active one (messages already held
/// can be acked or nacked while it is paused).
async fn pull_spec(state: &AppState, name: &str, to_lease: bool) -> Result<SubscriptionSpec, ApiError> {
    let record = super::subscriptions::load(state, name).await?;
    let spec = SubscriptionSpec::from_stored(&record.spec)
        .map_err(|_| ApiError::WrongState(format!("subscription {name} has an unreadable declaration")))?;
    match spec.target {
        Target::Pull { .. } if !to_lease || record.state == SubscriptionState::Active => Ok(spec),
        Target::Pull { .. } => Err(ApiError::WrongState(format!("subscription {name} is {}", record.state.as_str()))),
        Target::Webhook { .. } => {
            Err(ApiError::WrongState(format!("subscription {name} delivers to a webhook; it cannot be pulled")))
        }
    }
}

async fn object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, ApiError> {
    match optional_json(headers, body).await? {
        None => Ok(Map::new()),
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(ApiError::InvalidRequest(Invalid::one("", "must be a JSON object"))),
    }
}

/// `ack_ids` as (position, lease) pairs; each must be one Herald handed out.
fn ack_ids(request: &Map<String, Value>, known: &[&str]) -> Result<Vec<(Position, String)>, ApiError> {
    if let Some(key) = request.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::InvalidRequest(Invalid::one(
            format!("/{key}"),
            format!("unknown field; expected {known:?}"),
        )));
    }
    let Some(Value::Array(ids)) = request.get("ack_ids") else {
        return Err(ApiError::InvalidRequest(Invalid::one(
            "/ack_ids",
            "required: an array of ack_id strings from a pull",
        )));
    };
    if ids.len() > MAX_MESSAGES as usize {
        return Err(ApiError::InvalidRequest(Invalid::one("/ack_ids", format!("at most {MAX_MESSAGES} at once"))));
    }
    let mut errors = Vec::new();
    let mut leases = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let parsed = id.as_str().and_then(|s| s.split_once('.')).and_then(|(position, lease)| {
            let position = position.parse::<Position>().ok().filter(|p| *p <= herald_core::MAX_POSITION)?;
            Some((position, lease.to_owned())).filter(|(_, l)| !l.is_empty())
        });
        match parsed {
            Some(lease) => leases.push(lease),
            None => errors.push(FieldError::new(format!("/ack_ids/{i}"), "not an ack_id handed out by a pull")),
        }
    }
    if errors.is_empty() { Ok(leases) } else { Err(ApiError::InvalidRequest(Invalid { errors })) }
}

#[cfg(test)]
mod tests {
    use herald_store::StoredEvent;

    use super::*;

    #[test]
    fn a_pull_answer_is_sized_up_front_and_splices_the_stored_events() {
        // The widest message there is: the largest position, attempt and ack_id.
        let message = |i: u64| pull::Leased {
            ack_id: format!("{}.{:016x}", u64::MAX, u64::MAX),
            delivery: Delivery {
                position: u64::MAX,
                event_id: format!("e{i}"),
                stream: None,
                attempts: u32::MAX,
                due_us: 0,
                first_due_us: 0,
                replay: false,
            },
            event: StoredEvent { position: u64::MAX - i, body: format!(r#"{{"id":"e{i}","detail":{{}}}}"#) },
        };
        let leased: Vec<pull::Leased> = (0..MAX_MESSAGES).map(message).collect();
        let size = leased.iter().map(|m| m.event.body.len() + MESSAGE_FIELDS_MAX).sum::<usize>() + 16;
        let text = messages_json(&leased);
        assert_eq!(text.capacity(), size, "never grown: charged no more than a lease reserves");
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let first = &parsed["messages"][0];
        assert_eq!(first["event"], json!({"position": u64::MAX, "id": "e0", "detail": {}}));
        assert_eq!((first["attempt"].as_u64(), first["replay"].as_bool()), (Some(u32::MAX as u64), Some(false)));
        assert_eq!(parsed["messages"].as_array().unwrap().len(), MAX_MESSAGES as usize);
    }
}
