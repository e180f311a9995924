//! `/v1/events`: publish (POST, PUT by id) and read (by id, pages).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::formats::cloudevents;
use herald_core::json;
use herald_core::limits::MAX_BATCH_EVENTS;
use herald_core::{Invalid, MAX_POSITION};
use herald_store::{ListQuery, Page, StoredEvent};
use serde_json::Value;

use super::extract::{Path, Query};
use super::wire::{BatchOut, ListParams, PublishOut};
use crate::body::{media_type, parse_json, read_limited, require_json, require_utf8};
use crate::client::Client;
use crate::ingest::{self, Format, Offered, Outcome, Request};
use crate::problem::ApiError;
use crate::response::PAGE_RESERVE;
use crate::state::AppState;

/// Publish one event or a batch (a JSON array of up to 1,000).
///
/// Also takes CloudEvents: structured (`application/cloudevents+json`), batch
/// (`application/cloudevents-batch+json`) and binary mode (`ce-*` headers).
#[utoipa::path(post, path = "/v1/events", operation_id = "publishEvents", tag = "events",
    request_body(content = super::wire::documented::PublishBody, description = "One event, or an array of up to 1,000"),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 256, pattern = "^[!-~]([ -~]*[!-~])?$",
        description = "Derive ids from (source, key) so a retried request is a duplicate: 1-256 visible ASCII characters")),
    responses(
        (status = 201, description = "Stored", body = PublishOut),
        (status = 200, description = "Duplicate of a stored event (one event), or the results of a batch", body = super::wire::documented::PublishAnswer),
        (status = 400, description = "Malformed JSON", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Same id, different content", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Too large", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid event", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded: retry after Retry-After", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let key = ingest::idempotency_key(&headers)?;
    let bytes = read_limited(&headers, body).await?;
    let (offered, format, batch) = offered_events(&headers, &bytes)?;
    let outcomes = ingest::publish(&state, offered, Request { format, idempotency_key: key, batch }).await?;
    Ok(if batch { Json(BatchOut::from_outcomes(outcomes)).into_response() } else { single(outcomes)? })
}

/// Turns a publish body, in whichever format its headers declare, into
/// envelope-shaped events, with the format and whether it was a batch.
fn offered_events(headers: &HeaderMap, bytes: &[u8]) -> Result<(Vec<Offered>, Format, bool), ApiError> {
    // The Content-Type alone decides a CloudEvent's mode (HTTP binding, 3):
    // a structured event's `ce-*` headers, if any, are not its attributes.
    match media_type(headers).as_deref() {
        Some("application/cloudevents+json") => {
            require_utf8(headers)?;
            Ok((vec![cloudevents::to_envelope(&parse_json(bytes)?)], Format::CloudEvents, false))
        }
        Some("application/cloudevents-batch+json") => {
            require_utf8(headers)?;
            let items = batch_items(parse_json(bytes)?, "a CloudEvents batch must be a JSON array")?;
            Ok((items.iter().map(cloudevents::to_envelope).collect(), Format::CloudEvents, true))
        }
        _ if headers.contains_key("ce-specversion") => binary_cloud_event(headers, bytes),
        _ => {
            require_json(headers)?;
            match parse_json(bytes)? {
                array @ Value::Array(_) => {
                    Ok((batch_items(array, "")?.into_iter().map(Ok).collect(), Format::Native, true))
                }
                one => Ok((vec![Ok(one)], Format::Native, false)),
            }
        }
    }
}

/// A binary-mode CloudEvent: attributes in `ce-*` headers, `data` the body.
fn binary_cloud_event(headers: &HeaderMap, bytes: &[u8]) -> Result<(Vec<Offered>, Format, bool), ApiError> {
    // SDKs omit Content-Type when the event names no datacontenttype; the
    // body must then parse as JSON.
    if headers.contains_key(axum::http::header::CONTENT_TYPE) {
        require_json(headers)?;
    }
    // An attribute has one value (`ce-id` twice would name two events).
    for name in headers.keys().filter(|n| n.as_str().starts_with("ce-")) {
        ingest::sent_once(headers, name.as_str())?;
    }
    let attributes = headers.iter().filter_map(|(name, value)| {
        let name = name.as_str().strip_prefix("ce-")?;
        Some((name.to_owned(), value.to_str().ok()?.to_owned()))
    });
    // `data` is optional (CloudEvents 1.0): an empty body is an event
    // without it, as a structured-mode event without `data` is.
    let data = if json::is_blank(bytes) { None } else { Some(parse_json(bytes)?) };
    let ce = cloudevents::from_binary(attributes, data);
    Ok((vec![cloudevents::to_envelope(&ce)], Format::CloudEvents, false))
}

fn batch_items(value: Value, not_array: &str) -> Result<Vec<Value>, ApiError> {
    let Value::Array(items) = value else {
        return Err(Invalid::one("", not_array).into());
    };
    if items.is_empty() {
        return Err(Invalid::one("", "a batch must hold at least one event").into());
    }
    if items.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::TooLarge(format!(
            "a batch holds at most {MAX_BATCH_EVENTS} events, not {}",
            items.len()
        )));
    }
    Ok(items)
}

/// The answer for a single-event publish: 201 new, 200 duplicate, or the problem.
fn single(outcomes: Vec<Outcome>) -> Result<Response, ApiError> {
    let outcome = outcomes.into_iter().next().expect("one outcome for one event");
    let (id, position, duplicate) = outcome.into_result()?;
    let status = if duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(PublishOut { id, position, duplicate })).into_response())
}

/// Publish one event by id: an `id` in the body must equal the path.
#[utoipa::path(put, path = "/v1/events/{id}", operation_id = "putEvent", tag = "events",
    params(("id" = String, Path, description = "The event id (its idempotency key)")),
    request_body = super::wire::EventIn,
    responses(
        (status = 201, description = "Stored", body = PublishOut),
        (status = 200, description = "Duplicate of the stored event", body = PublishOut),
        (status = 409, description = "Same id, different content", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid event", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded: retry after Retry-After", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    if media_type(&headers).is_some_and(|t| t.starts_with("application/cloudevents")) {
        return Err(ApiError::UnsupportedMediaType(
            "PUT takes Herald's envelope; publish CloudEvents with POST /v1/events".into(),
        ));
    }
    let bytes = read_limited(&headers, body).await?;
    let mut value = parse_json(&bytes)?;
    let Some(object) = value.as_object_mut() else {
        return Err(Invalid::one("", "an event must be a JSON object").into());
    };
    match object.get("id") {
        Some(Value::String(body_id)) if *body_id != id => {
            return Err(Invalid::one("/id", format!("must equal the id in the path ({id})")).into());
        }
        None | Some(Value::Null | Value::String(_)) => drop(object.insert("id".into(), Value::String(id))),
        // Not a string: validation names `/id`, as for a POST.
        Some(_) => {}
    }
    single(ingest::publish(&state, vec![Ok(value)], Request::default()).await?)
}

/// Read one stored event, with its position.
#[utoipa::path(get, path = "/v1/events/{id}", operation_id = "getEvent", tag = "events",
    params(("id" = String, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event", body = super::wire::EventOut),
        (status = 404, description = "No such event", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Answers held fill the response budget, or this client's share of it: retry after Retry-After", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(state): State<AppState>, client: Client, Path(id): Path<String>) -> Result<Response, ApiError> {
    let charge = state.response_budget.for_client(client).reserve(PAGE_RESERVE).await?;
    match state.store.get(&id).await? {
        Some(event) => charge.json(event.to_json()),
        None => Err(ApiError::NotFound(format!("no event with id {id}"))),
    }
}

/// Read the log in position order, optionally filtered.
#[utoipa::path(get, path = "/v1/events", operation_id = "listEvents", tag = "events", params(ListParams),
    responses(
        (status = 200, description = "A page of events; pass `next` as `after` to read on", body = super::wire::EventPage),
        (status = 400, description = "Invalid parameter", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Answers held fill the response budget, or this client's share of it: retry after Retry-After", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    client: Client,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let query = list_query(&params)?;
    let charge = state.response_budget.for_client(client).reserve(PAGE_RESERVE).await?;
    let page = state.store.list(query).await?;
    charge.json(page_json(&page))
}

pub fn list_query(params: &ListParams) -> Result<ListQuery, ApiError> {
    Ok(ListQuery {
        after: parse_param("after", params.after.as_deref(), 0, 0..=MAX_POSITION)?,
        limit: parse_param("limit", params.limit.as_deref(), 100, 1..=1000)? as usize,
        source: params.source.clone(),
        detail_type: params.detail_type.clone(),
        stream: params.stream.clone(),
    })
}

/// A whole-number parameter in `range`, or `default` when absent.
pub fn parse_param(
    name: &str,
    value: Option<&str>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ApiError::InvalidParameter {
            name: name.to_owned(),
            message: format!("must be a whole number from {} to {}", range.start(), range.end()),
        }),
    }
}

/// `{"events": [...], "next": N}`, written from the stored JSON text without re-parsing.
fn page_json(page: &Page) -> String {
    // Sized up front: the answer is charged what its text takes.
    let per_event = StoredEvent::POSITION_FIELD_MAX + 1; // and a comma
    let size = page.events.iter().map(|e| e.body.len() + per_event).sum::<usize>() + 64;
    let mut out = String::with_capacity(size);
    out.push_str("{\"events\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        e.write_json(&mut out);
    }
    out.push_str(&format!("],\"next\":{}}}", page.next));
    out
}
