//! Where events live: the [`Store`] trait every backend implements, the
//! contract tests every backend must pass ([`contract`]), and the embedded
//! SQLite backend ([`sqlite`]).
//!
//! A store is an append-only log with a permanent id index: appending an event
//! whose id is already stored never writes, it reports a duplicate (same
//! content) or a conflict (different content).

pub mod contract;
pub mod error;
pub mod sqlite;
pub mod subscriptions;

use std::sync::Arc;

use async_trait::async_trait;
use herald_core::subscription::{RetryPolicy, SubscriptionState};
use herald_core::{Event, IdRule, Position};
use tokio::sync::watch;

pub use error::StoreError;
pub use subscriptions::{
    ATTEMPT_OUTCOMES, Attempt, AttemptQuery, DeadLetter, Decide, Delivery, Settlement, SubscriptionRecord,
};

/// An event ready to append: validated, identified and serialized once.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub content_hash: [u8; 32],
    pub source: String,
    pub detail_type: String,
    pub stream: Option<String>,
    pub time_micros: i64,
    /// The envelope as JSON text (without `position`).
    pub body: String,
}

impl NewEvent {
    /// Roughly the memory the event holds: itself and its strings.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.source.len()
            + self.detail_type.len()
            + self.stream.as_ref().map_or(0, String::len)
            + self.body.len()
    }

    pub fn from_event(event: &Event) -> Self {
        let (body, content_hash) = event.to_stored();
        Self {
            id: event.id.clone(),
            content_hash,
            source: event.source.clone(),
            detail_type: event.detail_type.clone(),
            stream: event.stream.clone(),
            time_micros: event.time.timestamp_micros(),
            body,
        }
    }
}

/// What happened to one appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored now, at this position.
    Appended(Position),
    /// An event with this id and the same content was already stored there.
    Duplicate(Position),
    /// An event with this id but different content is stored; nothing changed.
    Conflict(StoredEvent),
}

/// An event as read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub position: Position,
    /// The envelope as JSON text, as it was appended.
    pub body: String,
}

impl StoredEvent {
    /// Most bytes [`Self::write_json`] adds to the body: `"position":N,`
    /// with N of up to 20 digits.
    pub const POSITION_FIELD_MAX: usize = 33;

    /// The envelope with `"position"` added as its first field. Splices text
    /// rather than re-serializing: reads are the hot path of every consumer.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.body.len() + Self::POSITION_FIELD_MAX);
        self.write_json(&mut out);
        out
    }

    /// [`Self::to_json`] appended to `out`: an answer of many events is
    /// written in one buffer, without a string per event.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        let rest = self.body.strip_prefix('{').unwrap_or(&self.body);
        let _ = write!(out, "{{\"position\":{}", self.position);
        if rest.trim_start() != "}" {
            out.push(',');
        }
        out.push_str(rest);
    }

    /// The stored event as a value, read as it was accepted (Herald's parser:
    /// serde_json's own would give its private tokens a meaning).
    pub fn json_value(&self) -> Result<serde_json::Value, StoreError> {
        herald_core::json::parse(self.body.as_bytes())
            .map_err(|e| StoreError::BadRecord { position: self.position, detail: e.to_string() })
    }
}

/// A page of the log in position order, optionally filtered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only events strictly after this position.
    pub after: Position,
    pub limit: usize,
    pub source: Option<String>,
    pub detail_type: Option<String>,
    pub stream: Option<String>,
}

/// The most bytes of event bodies a page holds, past which it ends early
/// (with one event at least, whatever its size). A page is read whole into
/// memory and written out whole, for every reader at once: 1,000 events of
/// 256 KiB each would be 256 MiB per reader.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// One page of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Matching events in position order.
    pub events: Vec<StoredEvent>,
    /// Where to continue (`after` of the next query): the last event returned,
    /// or how far a filtered scan got when it found fewer than `limit` (and
    /// the page was not cut short). Equal to the query's `after` with no
    /// events means the reader is caught up.
    pub next: Position,
    /// The page ended at [`MAX_PAGE_BYTES`] before `limit` events: more may
    /// follow right after `next`.
    pub cut_short: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends events in order, durably: when this returns `Ok`, every
    /// `Appended` event survives a crash. Positions are strictly increasing in
    /// commit order. One outcome per event, in the same order.
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<AppendOutcome>, StoreError>;

    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, StoreError>;

    async fn list(&self, query: ListQuery) -> Result<Page, StoreError>;

    /// The position just before the first event whose `time` is at or after
    /// `time_us` (the head when there is none): a cursor that starts there
    /// delivers the events from that time on. Scans the log.
    async fn position_before(&self, time_us: i64) -> Result<Position, StoreError>;

    /// The events at these positions, in position order (missing ones left out).
    async fn events_at(&self, positions: Vec<Position>) -> Result<Vec<StoredEvent>, StoreError>;

    /// The position of the last committed event (0 when empty), updated after
    /// every commit: a live reader waits on it.
    fn head(&self) -> watch::Receiver<Position>;

    /// Creates or replaces the id rule of `rule.detail_type`.
    async fn put_id_rule(&self, rule: IdRule) -> Result<(), StoreError>;

    /// Returns whether a rule was there to delete.
    async fn delete_id_rule(&self, detail_type: &str) -> Result<bool, StoreError>;

    async fn id_rules(&self) -> Result<Vec<IdRule>, StoreError>;

    // Subscriptions: see [`subscriptions`] for the delivery model. Times are
    // microseconds since the epoch, given by the caller.

    /// Creates the subscription with its cursor at `start`, or replaces the
    /// declaration of an existing one (cursor, state and history kept).
    /// Returns whether it was created.
    async fn put_subscription(
        &self,
        name: &str,
        spec: String,
        start: Position,
        now_us: i64,
    ) -> Result<bool, StoreError>;

    async fn subscription(&self, name: &str) -> Result<Option<SubscriptionRecord>, StoreError>;

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError>;

    /// Deletes it with its deliveries, attempts and dead letters.
    async fn delete_subscription(&self, name: &str) -> Result<bool, StoreError>;

    /// Returns whether the subscription exists. `last_error` replaces the
    /// recorded one when given.
    async fn set_subscription_state(
        &self,
        name: &str,
        state: SubscriptionState,
        last_error: Option<String>,
        now_us: i64,
    ) -> Result<bool, StoreError>;

    /// Atomically records `deliveries` (the events in `(from, to]` that match)
    /// and moves the cursor from `from` to `to`. Returns false, changing
    /// nothing, when the cursor is no longer at `from` or the subscription is
    /// not the same `generation` (its `created_us`: deleted and created again).
    async fn fan_out(
        &self,
        name: &str,
        generation: i64,
        from: Position,
        to: Position,
        deliveries: Vec<Delivery>,
    ) -> Result<bool, StoreError>;

    /// Adds deliveries without moving the cursor (replay); events already
    /// owed are not added twice. Returns how many were added (`None`: no
    /// such subscription).
    async fn enqueue(&self, name: &str, deliveries: Vec<Delivery>) -> Result<Option<u64>, StoreError>;

    /// Owed deliveries due at `now_us`, earliest first. With `per_stream`,
    /// only the oldest owed delivery of each stream.
    async fn due_deliveries(
        &self,
        name: &str,
        now_us: i64,
        limit: usize,
        per_stream: bool,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// When the earliest owed delivery due after `after_us` falls due.
    async fn next_due(&self, name: &str, after_us: i64) -> Result<Option<i64>, StoreError>;

    /// Leases up to `max` due deliveries (and at most ~4 MiB of events) to a
    /// pull consumer under the lease id `lease` until `now_us + lease_us`
    /// (each lease is an attempt); deliveries past `retry`'s `max_attempts`
    /// or `max_age` go to the dead letters instead.
    #[allow(clippy::too_many_arguments)]
    async fn lease(
        &self,
        name: &str,
        lease: String,
        now_us: i64,
        lease_us: i64,
        max: usize,
        per_stream: bool,
        retry: RetryPolicy,
    ) -> Result<Vec<(Delivery, StoredEvent)>, StoreError>;

    /// Settles pull deliveries, each named by position and the lease that
    /// holds it: `decide` turns a still-held delivery into its attempt
    /// record and settlement; ones no longer held are skipped. Returns how
    /// many were settled.
    async fn settle_leased(
        &self,
        name: &str,
        leases: Vec<(Position, String)>,
        decide: Decide,
    ) -> Result<u64, StoreError>;

    /// Records attempts and settles their deliveries, durably; nothing, when
    /// the subscription is no longer the same `generation` (see [`Store::fan_out`]).
    /// Shared rather than owned: a caller keeps its copy to try again
    /// should the write fail.
    async fn settle(
        &self,
        name: &str,
        generation: i64,
        settled: Arc<[(Attempt, Settlement)]>,
    ) -> Result<(), StoreError>;

    async fn attempts(&self, name: &str, query: AttemptQuery) -> Result<Vec<Attempt>, StoreError>;

    async fn dead_letters(&self, name: &str, after: Position, limit: usize) -> Result<Vec<DeadLetter>, StoreError>;

    /// Moves dead letters (all, or those with these event ids) back to owed
    /// deliveries, due at `now_us`. Returns how many.
    async fn redrive(&self, name: &str, ids: Option<Vec<String>>, now_us: i64) -> Result<u64, StoreError>;

    /// Deletes dead letters (all, or those with these event ids). Returns how many.
    async fn purge_dead_letters(&self, name: &str, ids: Option<Vec<String>>) -> Result<u64, StoreError>;

    /// A cheap probe that the store can read and has room to write (for
    /// `/readyz`); [`StoreError::Full`] when its disk is full.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and releases the store.
    async fn close(&self);
}
