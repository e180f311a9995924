//! What the store keeps for each subscription: its declaration and cursor,
//! the deliveries it owes (due now or later), every attempt made, and the
//! dead letters it gave up on.
//!
//! The delivery model: the dispatcher reads the log after the cursor, and in
//! one transaction records a [`Delivery`] for every matching event and moves
//! the cursor past them ([`Store::fan_out`](crate::Store::fan_out)). A
//! delivery leaves the table only when it is settled (delivered, dead-lettered
//! or dropped), in the same transaction that records the attempt. So a crash
//! at any moment loses no matching event: it is either behind the cursor with
//! a delivery row, or ahead of the cursor and read again.

use herald_core::Position;
use herald_core::subscription::SubscriptionState;

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub name: String,
    /// The declaration (JSON text, every default filled in).
    pub spec: String,
    pub state: SubscriptionState,
    /// Events up to here have been fanned out into deliveries.
    pub cursor: Position,
    pub created_us: i64,
    pub updated_us: i64,
    /// Deliveries that succeeded.
    pub delivered: u64,
    /// Attempts that failed.
    pub failed: u64,
    pub last_error: Option<String>,
    /// Deliveries owed (due now or waiting for a retry).
    pub pending: u64,
    pub dead_letters: u64,
}

/// An event owed to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub position: Position,
    pub event_id: String,
    pub stream: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not to be attempted before this time (µs since the epoch).
    pub due_us: i64,
    /// When it was first due: the retry policy's `max_age` counts from here.
    pub first_due_us: i64,
    /// Re-delivered by a replay rather than by the live cursor.
    pub replay: bool,
}

impl Delivery {
    /// A delivery of the envelope `event` (at `position`), owed from `now_us`.
    pub fn owed(position: Position, event: &serde_json::Value, now_us: i64, replay: bool) -> Self {
        Self {
            position,
            event_id: event["id"].as_str().unwrap_or_default().to_owned(),
            stream: event["stream"].as_str().map(str::to_owned),
            attempts: 0,
            due_us: now_us,
            first_due_us: now_us,
            replay,
        }
    }
}

/// How one attempt ended, and what becomes of its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: the delivery is removed.
    Delivered,
    /// Try again at this time.
    Retry { due_us: i64 },
    /// Give up: the delivery moves to the dead letters with this reason.
    Dead { reason: String },
    /// The target is gone (410): the delivery stays owed and the subscription
    /// is disabled until someone resumes it.
    Gone,
}

/// Decides what becomes of a leased delivery: its attempt record and settlement.
pub type Decide = Box<dyn Fn(&Delivery) -> (Attempt, Settlement) + Send + 'static>;

/// What an [`Attempt`] came to.
pub const ATTEMPT_OUTCOMES: [&str; 4] = ["delivered", "failed", "dead", "gone"];

/// One delivery attempt, as shown by `GET .../attempts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub event_id: String,
    pub position: Position,
    /// 1 for the first attempt. A `dead` row for a delivery dead-lettered
    /// without being sent again repeats the number of the last attempt made
    /// (0 if none was).
    pub attempt: u32,
    pub time_us: i64,
    /// One of [`ATTEMPT_OUTCOMES`].
    pub outcome: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub latency_us: i64,
    pub error: Option<String>,
    /// The start of the answer's body.
    pub response: Option<String>,
    pub replay: bool,
}

impl Attempt {
    /// Attempt number `attempt` of `delivery`, without an HTTP answer (fill
    /// in `status`, `latency_us` and `response` when there was one).
    pub fn of(delivery: &Delivery, attempt: u32, time_us: i64, outcome: &str, error: Option<String>) -> Self {
        Self {
            event_id: delivery.event_id.clone(),
            position: delivery.position,
            attempt,
            time_us,
            outcome: outcome.to_owned(),
            status: None,
            latency_us: 0,
            error,
            response: None,
            replay: delivery.replay,
        }
    }
}

/// Which attempts to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AttemptQuery {
    pub event_id: Option<String>,
    pub outcome: Option<String>,
    pub limit: usize,
}

/// An event a subscription gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub position: Position,
    pub event_id: String,
    pub stream: Option<String>,
    pub attempts: u32,
    pub reason: String,
    pub time_us: i64,
}

/// Attempts kept per subscription; older ones are pruned.
pub const ATTEMPTS_KEPT: u64 = 10_000;

/// Most bytes of events one pull lease hands out (always at least one event):
/// bounds the memory of a pull whatever its `max` and the events' size, as
/// [`crate::MAX_PAGE_BYTES`] bounds a page's.
pub const LEASE_BYTES: usize = crate::MAX_PAGE_BYTES;
