//! Responses that carry events, and the budget of memory they share until
//! their clients have read them.
//!
//! A page of events is up to ~1 MiB of text, held from when it is rendered
//! until the last byte is handed to the connection: a client that reads
//! slowly, or not at all, holds it that long. Without a bound, 10,000 such
//! connections would hold 10 GiB. Every response carrying events (pages,
//! single events, pulled messages, attempts, live streams' pages) is charged
//! to one [`ResponseBudget`], from before it is read from the store until its
//! client has taken it; past the budget, new reads are answered 503 with
//! `Retry-After` (and live streams wait) rather than memory growing. A
//! client that stops reading altogether is cut off by the connection's send
//! timeout (see [`crate::connections`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Buf;
use herald_store::MAX_PAGE_BYTES;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::ApiError;

/// The answer when the [`ResponseBudget`] has no room for a response.
pub const RESPONSES_OVERLOADED: &str =
    "too many responses are waiting for their clients to read them; retry after Retry-After seconds";

/// The smallest response budget: several of the largest pages fit.
pub const MIN_RESPONSE_BUDGET: usize = 16 << 20;

/// The most a connection buffers of what it writes (hyper's `max_buf_size`,
/// its read buffer too). A body is handed to its connection in copies of at
/// most this size, so that what the connection buffers is its own and the
/// whole body is freed, with its charge, once its last part is taken; an
/// answer of one part is not charged at all, the connection holds as much.
pub const PART: usize = 64 << 10;

/// Reserved for an answer of a page (or a pull's lease) before it is read:
/// a page ends past [`MAX_PAGE_BYTES`] by at most one event. While the
/// answer is written out, the page's events and its text both exist for a
/// moment, as many at once as there are threads writing answers and the
/// store's readers; the text alone is charged once it is written.
pub const PAGE_RESERVE: usize = MAX_PAGE_BYTES + (512 << 10);

/// How long a read waits for room before it is refused: reads being
/// answered give theirs back within milliseconds (so many reads at once
/// queue rather than fail), answers held by slow readers do not.
pub const RESERVE_WAIT: Duration = Duration::from_secs(1);

/// The bytes of responses carrying events held in memory at once.
#[derive(Clone)]
pub struct ResponseBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
}

impl ResponseBudget {
    /// At least [`MIN_RESPONSE_BUDGET`].
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(MIN_RESPONSE_BUDGET);
        Self { bytes: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Bytes charged to responses now.
    pub fn held(&self) -> usize {
        self.limit - self.bytes.available_permits()
    }

    /// Charges `bytes` before an answer is read from the store and built,
    /// so that building it is bounded too; waits up to [`RESERVE_WAIT`] for
    /// room, then `503`.
    pub async fn reserve(&self, bytes: usize) -> Result<Charge, ApiError> {
        tokio::time::timeout(RESERVE_WAIT, self.charge(bytes)).await.map_err(|_| {
            metrics::counter!("herald_responses_refused_total").increment(1);
            ApiError::Overloaded(RESPONSES_OVERLOADED)
        })
    }

    /// Charges `bytes` if they fit now.
    pub fn try_charge(&self, bytes: usize) -> Option<Charge> {
        let permit = self.bytes.clone().try_acquire_many_owned(self.permits(bytes)).ok()?;
        Some(Charge { budget: self.clone(), permit })
    }

    /// Waits until `bytes` fit, then charges them (first come, first
    /// served). The caller must hold no other charge while it waits, or
    /// waiters could hold each other up.
    pub async fn charge(&self, bytes: usize) -> Charge {
        let permit =
            self.bytes.clone().acquire_many_owned(self.permits(bytes)).await.expect("the semaphore is never closed");
        Charge { budget: self.clone(), permit }
    }

    /// Never more than the whole budget (which fits a u32), so anything can
    /// be charged once the budget is free.
    fn permits(&self, bytes: usize) -> u32 {
        bytes.min(self.limit) as u32
    }
}

/// Bytes charged to the [`ResponseBudget`], given back when dropped.
pub struct Charge {
    budget: ResponseBudget,
    permit: OwnedSemaphorePermit,
}

impl Charge {
    /// Charges exactly `bytes` from now on: gives back what is over, or
    /// takes what is missing if there is room (if not, says so and keeps
    /// what it held).
    pub fn resize(&mut self, bytes: usize) -> bool {
        let wanted = self.budget.permits(bytes) as usize;
        let held = self.permit.num_permits();
        if wanted <= held {
            drop(self.permit.split(held - wanted));
            true
        } else if let Some(more) = self.budget.try_charge(wanted - held) {
            self.permit.merge(more.permit);
            true
        } else {
            false
        }
    }

    /// A `200 application/json` answer of `text`, charged what the text
    /// takes until the connection has taken all of it (or is gone); `503` if
    /// that is more than was reserved and there is no room for the rest.
    pub fn json(mut self, text: String) -> Result<Response, ApiError> {
        if text.len() > PART && !self.resize(text.capacity()) {
            metrics::counter!("herald_responses_refused_total").increment(1);
            return Err(ApiError::Overloaded(RESPONSES_OVERLOADED));
        }
        Ok(self.held_json(text))
    }

    /// The answer of a read that has changed something (a pull's lease), so
    /// it is never refused: charged what its text takes if there is room,
    /// else what was reserved (short of it by at most one large event).
    pub fn json_after_write(mut self, text: String) -> Response {
        self.resize(text.capacity());
        self.held_json(text)
    }

    fn held_json(self, text: String) -> Response {
        let body = if text.len() <= PART {
            Body::from(text)
        } else {
            Body::new(HeldBody { rest: Bytes::from(text), charge: Some(self) })
        };
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// A response body of more than one part, charged to the [`ResponseBudget`]
/// until its last part is handed to the connection, or it is dropped with
/// the connection. Every part is a copy: a slice would keep the whole body
/// alive in the connection's buffer after its charge is given back.
struct HeldBody {
    rest: Bytes,
    charge: Option<Charge>,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = this.rest.len().min(PART);
        let part = Bytes::copy_from_slice(&this.rest[..n]);
        this.rest.advance(n);
        if this.rest.is_empty() {
            // Free the body and its charge now: the connection holds only its copy.
            this.rest = Bytes::new();
            this.charge = None;
        }
        Poll::Ready(Some(Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_large_body_is_handed_over_in_copied_parts_and_its_charge_given_back_with_the_last() {
        let budget = ResponseBudget::new(0);
        let text: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let mut body = budget.reserve(PAGE_RESERVE).await.unwrap().json(text.clone()).unwrap().into_body();
        assert_eq!(budget.held(), text.capacity(), "the reservation is cut to what the text takes");
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            let part = frame.unwrap().into_data().unwrap();
            assert!(part.len() <= PART);
            received.extend_from_slice(&part);
            let expected = if received.len() < text.len() { text.capacity() } else { 0 };
            assert_eq!(budget.held(), expected, "held after {} bytes", received.len());
        }
        assert_eq!(received, text.as_bytes());
    }

    #[tokio::test]
    async fn a_body_dropped_unread_gives_its_charge_back_and_small_ones_are_not_charged() {
        let budget = ResponseBudget::new(0);
        let mut text = String::with_capacity(3 * PART);
        text.push_str(&"x".repeat(PART + 1));
        let body = budget.reserve(PART).await.unwrap().json(text).unwrap();
        assert_eq!(budget.held(), 3 * PART, "charged the text's capacity, past the reservation");
        drop(body);
        assert_eq!(budget.held(), 0);
        let small = budget.reserve(PAGE_RESERVE).await.unwrap().json("x".repeat(PART)).unwrap();
        assert_eq!(budget.held(), 0);
        assert_eq!(small.into_body().collect().await.unwrap().to_bytes().len(), PART);
    }

    #[tokio::test]
    async fn past_the_budget_a_read_waits_a_while_for_room_then_is_refused() {
        let budget = ResponseBudget::new(0);
        let held = budget.reserve(MIN_RESPONSE_BUDGET - 100).await.unwrap();
        let started = std::time::Instant::now();
        let refused = budget.reserve(101).await.err().unwrap();
        assert!(started.elapsed() >= RESERVE_WAIT);
        assert!(matches!(refused, ApiError::Overloaded(RESPONSES_OVERLOADED)));
        // A text larger than its reservation needs room for the rest, now.
        let small = budget.reserve(100).await.unwrap();
        assert!(small.json("x".repeat(PART + 1)).is_err());
        assert_eq!(budget.held(), MIN_RESPONSE_BUDGET - 100, "the refused answer holds nothing");
        // A read that finds no room is served once room comes back.
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(PART).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        let charge = waiter.await.unwrap().unwrap();
        assert_eq!(budget.held(), PART);
        drop(charge);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn the_answer_to_a_write_is_never_refused() {
        let budget = ResponseBudget::new(0);
        let charge = budget.reserve(PART).await.unwrap();
        let rest = budget.try_charge(MIN_RESPONSE_BUDGET - PART).unwrap();
        let response = charge.json_after_write("x".repeat(2 * PART));
        assert_eq!(budget.held(), MIN_RESPONSE_BUDGET, "charged what was reserved: there is no room for more");
        drop(rest);
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes().len(), 2 * PART);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_charge_resizes_down_always_and_up_only_into_room() {
        let budget = ResponseBudget::new(0);
        let mut charge = budget.try_charge(1000).unwrap();
        assert!(charge.resize(10));
        assert_eq!(budget.held(), 10);
        let other = budget.try_charge(MIN_RESPONSE_BUDGET - 20).unwrap();
        assert!(charge.resize(20), "the last 10 bytes of room");
        assert!(!charge.resize(21), "no room left");
        assert_eq!(budget.held(), MIN_RESPONSE_BUDGET);
        drop(other);
        assert!(charge.resize(MIN_RESPONSE_BUDGET));
    }
}
