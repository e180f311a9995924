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
//! timeout (see [`crate::connections`]). One client (an address, as
//! connections count them) may hold only its share of the budget, so a
//! client that reads nothing of many answers cannot turn everyone else's
//! reads away.

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

use crate::client::{Client, PerClient};
use crate::problem::ApiError;

/// The answer when the [`ResponseBudget`] has no room for a response.
pub const RESPONSES_OVERLOADED: &str =
    "too many responses are waiting for their clients to read them; retry after Retry-After seconds";

/// The answer when one client's answers fill its share of the budget.
pub const CLIENT_SHARE_OVERLOADED: &str = "answers held for this client fill its share of the response budget; \
     read them, or retry after Retry-After seconds";

/// The smallest response budget: several of the largest pages fit.
pub const MIN_RESPONSE_BUDGET: usize = 16 << 20;

/// The smallest share of the budget a client may hold: half the smallest
/// budget, room for the largest reservation (1,000 attempts) and then some.
pub const MIN_CLIENT_SHARE: usize = MIN_RESPONSE_BUDGET / 2;

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

/// The bytes of responses carrying events held in memory at once. A handle
/// charges one client's answers ([`ResponseBudget::for_client`]).
#[derive(Clone)]
pub struct ResponseBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
    /// What each client holds, within its share.
    clients: Arc<PerClient>,
    client: Client,
}

impl ResponseBudget {
    /// At least [`MIN_RESPONSE_BUDGET`], of which one client may hold
    /// `share` (at least [`MIN_CLIENT_SHARE`], at most all of it).
    pub fn new(limit: usize, share: usize) -> Self {
        let limit = limit.max(MIN_RESPONSE_BUDGET);
        Self {
            bytes: Arc::new(Semaphore::new(limit)),
            limit,
            clients: Arc::new(PerClient::new(share.clamp(MIN_CLIENT_SHARE, limit))),
            client: Client::default(),
        }
    }

    /// The same budget, charging `client`'s answers.
    pub fn for_client(&self, client: Client) -> Self {
        Self { client, ..self.clone() }
    }

    /// Bytes charged to responses now.
    pub fn held(&self) -> usize {
        self.limit - self.bytes.available_permits()
    }

    /// Charges `bytes` before an answer is read from the store and built,
    /// so that building it is bounded too; waits up to [`RESERVE_WAIT`] for
    /// room in the budget and in the client's share, then `503`.
    pub async fn reserve(&self, bytes: usize) -> Result<Charge, ApiError> {
        tokio::time::timeout(RESERVE_WAIT, self.charge(bytes)).await.map_err(|_| self.refuse(bytes))
    }

    /// Charges `bytes` if they fit now, in the budget and the client's share.
    pub fn try_charge(&self, bytes: usize) -> Option<Charge> {
        let claim = self.claim(bytes)?;
        let permit = self.bytes.clone().try_acquire_many_owned(claim.bytes as u32).ok()?;
        Some(Charge { claim, permit })
    }

    /// Waits until `bytes` fit, then charges them (first come, first
    /// served). The caller must hold no other charge while it waits, or
    /// waiters could hold each other up.
    pub async fn charge(&self, bytes: usize) -> Charge {
        let claim = loop {
            match self.claim(bytes) {
                Some(claim) => break claim,
                // Only the client's own answers can make room: look again soon.
                None => tokio::time::sleep(SHARE_POLL).await,
            }
        };
        let permit =
            self.bytes.clone().acquire_many_owned(claim.bytes as u32).await.expect("the semaphore is never closed");
        Charge { claim, permit }
    }

    /// The `503` for `bytes` that found no room, counted in
    /// `herald_responses_refused_total` by its reason: the client's share
    /// (unless a client may hold the whole budget), else the budget. A
    /// guess when both are full: the client's own reads waiting for room
    /// count against its share.
    fn refuse(&self, bytes: usize) -> ApiError {
        let share = self.clients.limit();
        let (reason, detail) = if share < self.limit && self.clients.held(&self.client) + self.capped(bytes) > share {
            ("client_share", CLIENT_SHARE_OVERLOADED)
        } else {
            ("budget", RESPONSES_OVERLOADED)
        };
        metrics::counter!("herald_responses_refused_total", "reason" => reason).increment(1);
        ApiError::Overloaded(detail)
    }

    fn capped(&self, bytes: usize) -> usize {
        bytes.min(self.clients.limit())
    }

    /// Counts `bytes` (never more than a share, which fits a u32, so
    /// anything can be charged once the client's share and the budget are
    /// free) against the client's share, if they fit in it.
    fn claim(&self, bytes: usize) -> Option<Claim> {
        let bytes = self.capped(bytes);
        self.clients.try_add(&self.client, bytes).then(|| Claim { budget: self.clone(), bytes })
    }
}

/// How often a live stream waiting for its client's share looks again.
const SHARE_POLL: Duration = Duration::from_millis(50);

/// Bytes counted against a client's share, given back when dropped.
struct Claim {
    budget: ResponseBudget,
    bytes: usize,
}

impl Claim {
    /// Gives `bytes` of the claim back.
    fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        self.budget.clients.remove(&self.budget.client, bytes);
    }

    /// Takes `other`'s bytes into this claim.
    fn absorb(&mut self, mut other: Claim) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

/// Bytes charged to the [`ResponseBudget`] and to a client's share, given
/// back when dropped.
pub struct Charge {
    claim: Claim,
    permit: OwnedSemaphorePermit,
}

impl Charge {
    /// Charges exactly `bytes` from now on: gives back what is over, or
    /// takes what is missing if there is room (if not, says so and keeps
    /// what it held).
    pub fn resize(&mut self, bytes: usize) -> bool {
        let wanted = self.claim.budget.capped(bytes);
        let held = self.permit.num_permits();
        if wanted <= held {
            drop(self.permit.split(held - wanted));
            self.claim.shrink(held - wanted);
            true
        } else if let Some(more) = self.claim.budget.try_charge(wanted - held) {
            self.permit.merge(more.permit);
            self.claim.absorb(more.claim);
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
            let budget = &self.claim.budget;
            // What the failed resize asked for.
            return Err(budget.refuse(budget.capped(text.capacity()) - self.permit.num_permits()));
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
        let budget = ResponseBudget::new(0, usize::MAX);
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
        let budget = ResponseBudget::new(0, usize::MAX);
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
        let budget = ResponseBudget::new(0, usize::MAX);
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
        let budget = ResponseBudget::new(0, usize::MAX);
        let charge = budget.reserve(PART).await.unwrap();
        let rest = budget.try_charge(MIN_RESPONSE_BUDGET - PART).unwrap();
        let response = charge.json_after_write("x".repeat(2 * PART));
        assert_eq!(budget.held(), MIN_RESPONSE_BUDGET, "charged what was reserved: there is no room for more");
        drop(rest);
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes().len(), 2 * PART);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_client_holds_at_most_its_share_and_others_read_on() {
        let budget = ResponseBudget::new(0, MIN_CLIENT_SHARE);
        let [greedy, other] = ["192.0.2.1", "192.0.2.2"].map(|ip| budget.for_client(Client::of(ip.parse().unwrap())));
        let held = greedy.reserve(MIN_CLIENT_SHARE - 100).await.unwrap();
        let started = std::time::Instant::now();
        let refused = greedy.reserve(101).await.err().unwrap();
        assert!(matches!(refused, ApiError::Overloaded(CLIENT_SHARE_OVERLOADED)));
        assert!(started.elapsed() >= RESERVE_WAIT, "a read waits a while for its client's answers to be read");
        assert!(greedy.try_charge(101).is_none());
        let mut charge = greedy.reserve(100).await.unwrap();
        assert!(!charge.resize(101), "a resize stays within the share");
        let past_share = greedy.reserve(0).await.unwrap().json("x".repeat(PART + 1)).err().unwrap();
        assert!(
            matches!(past_share, ApiError::Overloaded(CLIENT_SHARE_OVERLOADED)),
            "an answer past the share says so"
        );
        // Another client reads as ever, up to its own share.
        let others = other.reserve(MIN_CLIENT_SHARE).await.unwrap();
        assert_eq!(budget.held(), 2 * MIN_CLIENT_SHARE);
        // What a client gives back, shrunk or dropped, it may take again.
        assert!(charge.resize(50));
        assert!(greedy.try_charge(50).is_some());
        drop((held, charge, others));
        let nothing = other.try_charge(0).unwrap();
        assert_eq!(budget.held(), 0);
        assert!(budget.clients.is_empty(), "clients holding nothing leave no entry");
        drop(nothing);
        // More than a share is charged as a share: it can be had.
        let waiting = tokio::time::timeout(Duration::from_secs(5), greedy.charge(2 * MIN_CLIENT_SHARE)).await;
        assert_eq!(budget.held(), MIN_CLIENT_SHARE);
        drop(waiting.expect("anything can be charged once the client's share is free"));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_charge_resizes_down_always_and_up_only_into_room() {
        let budget = ResponseBudget::new(0, usize::MAX);
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
