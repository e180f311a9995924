//! Responses that carry events, and the budget of memory they share until
//! their clients have read them.
//!
//! A page of events is up to ~1 MiB of text, held from when it is rendered
//! until the last byte is handed to the connection: a client that reads
//! slowly, or not at all, holds it that long. Without a bound, 10,000 such
//! connections would hold 10 GiB. Every response carrying events (pages,
//! single events, pulled messages, live streams' pages) is charged to one
//! [`ResponseBudget`] while it is held; past it, new reads are answered 503
//! with `Retry-After` (and live streams wait) rather than memory growing.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Buf;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::ApiError;

/// The answer when the [`ResponseBudget`] has no room for a response.
pub const RESPONSES_OVERLOADED: &str =
    "too many responses are waiting for their clients to read them; retry after Retry-After seconds";

/// The smallest response budget: several of the largest pages fit.
pub const MIN_RESPONSE_BUDGET: usize = 16 << 20;

/// A body is handed to its connection in copies of at most this size, so
/// that what the connection buffers (64 KiB, `max_buf_size`) is its own and
/// the whole body is freed, with its charge, once its last part is taken.
const PART: usize = 64 << 10;

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

    /// A `200 application/json` response of `text`, holding its share of the
    /// budget until the connection has taken all of it (or is gone); `503`
    /// when the budget has no room. A text of one part is not charged: the
    /// connection's own buffer, bounded with the connections, holds as much.
    pub fn json(&self, text: String) -> Result<Response, ApiError> {
        let body = if text.len() <= PART {
            Body::from(text)
        } else {
            let Some(held) = self.try_hold(text.len()) else {
                metrics::counter!("herald_responses_refused_total").increment(1);
                return Err(ApiError::Overloaded(RESPONSES_OVERLOADED));
            };
            Body::new(HeldBody { rest: Bytes::from(text), held: Some(held) })
        };
        Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
    }

    /// Holds `bytes` until the permit is dropped, if they fit now.
    pub fn try_hold(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        self.bytes.clone().try_acquire_many_owned(self.permits(bytes)).ok()
    }

    /// Waits until `bytes` fit, then holds them until the permit is dropped:
    /// for a live stream, which waits rather than ends when reads are busy.
    pub async fn wait_for(&self, bytes: usize) -> OwnedSemaphorePermit {
        self.bytes
            .clone()
            .acquire_many_owned(self.permits(bytes))
            .await
            .expect("the budget's semaphore is never closed")
    }

    /// Never more than the whole budget (which fits a u32), so anything can
    /// be charged once the budget is free.
    fn permits(&self, bytes: usize) -> u32 {
        bytes.min(self.limit) as u32
    }
}

/// A response body of more than one part, charged to the [`ResponseBudget`]
/// until its last part is handed to the connection, or it is dropped with
/// the connection. Every part is a copy: a slice would keep the whole body
/// alive in the connection's buffer after its charge is given back.
struct HeldBody {
    rest: Bytes,
    held: Option<OwnedSemaphorePermit>,
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
            this.held = None;
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
        let mut body = budget.json(text.clone()).unwrap().into_body();
        assert_eq!(budget.held(), text.len());
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            let part = frame.unwrap().into_data().unwrap();
            assert!(part.len() <= PART);
            received.extend_from_slice(&part);
            let expected = if received.len() < text.len() { text.len() } else { 0 };
            assert_eq!(budget.held(), expected, "held after {} bytes", received.len());
        }
        assert_eq!(received, text.as_bytes());
    }

    #[tokio::test]
    async fn a_body_dropped_unread_gives_its_charge_back_and_small_ones_are_not_charged() {
        let budget = ResponseBudget::new(0);
        let body = budget.json("x".repeat(PART + 1)).unwrap();
        assert_eq!(budget.held(), PART + 1);
        drop(body);
        assert_eq!(budget.held(), 0);
        let small = budget.json("x".repeat(PART)).unwrap();
        assert_eq!(budget.held(), 0);
        assert_eq!(small.into_body().collect().await.unwrap().to_bytes().len(), PART);
    }

    #[tokio::test]
    async fn past_the_budget_a_response_is_refused_and_a_waiter_waits_for_room() {
        let budget = ResponseBudget::new(0);
        let held = budget.json("x".repeat(MIN_RESPONSE_BUDGET - 100)).unwrap();
        let refused = budget.json("x".repeat(PART + 1)).unwrap_err();
        assert!(matches!(refused, ApiError::Overloaded(RESPONSES_OVERLOADED)));
        assert!(budget.try_hold(101).is_none());
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.wait_for(PART).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        let permit = waiter.await.unwrap();
        assert_eq!((permit.num_permits(), budget.held()), (PART, PART));
    }
}
