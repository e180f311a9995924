//! `/v1/events/live`: a Server-Sent Events tail of the log.
//!
//! Each reader keeps only a cursor and one page of events: it reads a page
//! from the store after its cursor, sends it, and when caught up waits for the
//! store's head to move. A slow reader therefore costs at most one page of
//! memory, charged to the response budget while it is held (a page that does
//! not fit waits for room); it just reads from further back.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use herald_store::{ListQuery, Store, StoredEvent};
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::events::list_query;
use super::extract::Query;
use super::wire::ListParams;
use crate::client::{Client, ClientSlot};
use crate::problem::ApiError;
use crate::response::{Charge, ResponseBudget};
use crate::state::AppState;

const PAGE: usize = 500;

/// Follow the log as Server-Sent Events: `id` is the position, `data` the
/// event. Starts after `Last-Event-ID` (a reconnection's), or `after`, or
/// else at the head.
#[utoipa::path(get, path = "/v1/events/live", operation_id = "tailEvents", tag = "events", params(ListParams),
    responses((status = 200, description = "text/event-stream of events", content_type = "text/event-stream"),
        (status = 503, description = "Too many live readers: retry after Retry-After", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn tail(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let slot = ClientSlot::try_take(&state.live_readers_per_client, client)
        .ok_or(ApiError::Overloaded("this client holds its share of live readers"))?;
    let permit =
        state.live_readers.clone().try_acquire_owned().map_err(|_| ApiError::Overloaded("too many live readers"))?;
    let mut query = list_query(&params)?;
    query.limit = PAGE;
    // A reconnecting EventSource sends Last-Event-ID to the URL it first
    // opened, `after` included: the position it has reached wins over it.
    let last_seen = crate::ingest::sent_once(&headers, "last-event-id")?;
    match (last_seen, params.after) {
        (Some(id), _) => {
            let id = id.to_str().unwrap_or("?");
            query.after = super::events::parse_param("Last-Event-ID", Some(id), 0, 0..=herald_core::MAX_POSITION)?;
        }
        (None, None) => query.after = *state.store.head().borrow(),
        (None, Some(_)) => {}
    }
    let reader = Reader {
        store: state.store.clone(),
        head: state.store.head(),
        shutdown: state.shutdown.clone(),
        query,
        buffer: VecDeque::new(),
        budget: state.response_budget.for_client(client),
        charge: None,
        _permit: permit,
        _slot: slot,
    };
    Ok(Sse::new(events(reader)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

struct Reader {
    store: Arc<dyn Store>,
    head: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    query: ListQuery,
    buffer: VecDeque<StoredEvent>,
    budget: ResponseBudget,
    /// What the buffered page is charged; or, before a read, what was
    /// waited for when the last one did not fit.
    charge: Option<Charge>,
    _permit: OwnedSemaphorePermit,
    _slot: ClientSlot,
}

fn events(reader: Reader) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(reader, |mut r| async move {
        loop {
            if let Some(e) = r.buffer.pop_front() {
                if r.buffer.is_empty()
                    && let Some(charge) = &mut r.charge
                {
                    // The page is sent but for this event, on its way to the
                    // connection; the charge is the next read's reservation.
                    charge.resize(e.body.len());
                }
                let event = SseEvent::default().id(e.position.to_string()).data(e.to_json());
                return Some((Ok(event), r));
            }
            if *r.shutdown.borrow() {
                return None;
            }
            // Mark the head seen before reading, so a commit during the read wakes us.
            r.head.borrow_and_update();
            match r.store.list(r.query.clone()).await {
                Ok(page) if page.next > r.query.after => {
                    // Charge what the page holds. With no room, give it up and
                    // wait for room, holding nothing else meanwhile (so waiting
                    // readers cannot hold each other up), then read again.
                    let bytes: usize = page.events.iter().map(|e| e.body.len()).sum();
                    let fits = match &mut r.charge {
                        Some(reserved) => reserved.resize(bytes),
                        None => {
                            r.charge = r.budget.try_charge(bytes);
                            r.charge.is_some()
                        }
                    };
                    if !fits {
                        drop((page, r.charge.take()));
                        r.charge = tokio::select! {
                            charge = r.budget.charge(bytes) => Some(charge),
                            _ = r.shutdown.changed() => return None,
                        };
                        continue;
                    }
                    r.query.after = page.next;
                    r.buffer.extend(page.events);
                }
                Ok(_) => {
                    r.charge = None;
                    tokio::select! {
                        changed = r.head.changed() => if changed.is_err() { return None },
                        _ = r.shutdown.changed() => return None,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "live reader stopped");
                    return None;
                }
            }
        }
    })
}
