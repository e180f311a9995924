//! One subscription's delivery loop. It fans out new events into owed
//! deliveries (durably, with the cursor), sends the due ones to the webhook
//! up to the subscription's concurrency (and rate limit), and settles each
//! attempt: delivered, retry later, dead letter, or target gone. Everything it
//! decides goes through the store, so a crash at any point loses nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use herald_core::Position;
use herald_core::pattern::Pattern;
use herald_core::signature::Secret;
use herald_core::subscription::{AfterFailure, Ordering, SubscriptionSpec, SubscriptionState, Target};
use herald_store::{Attempt, Delivery, ListQuery, Settlement, Store, StoreError, SubscriptionRecord};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::bodies::BodyCache;
use super::circuit::{Admission, Breakers};
use super::tail::{Tail, TailEvent};
use super::webhook::{Answer, Request, WebhookClient};
use crate::metrics::DeliveryStats;

/// Events read from the log per fan-out step.
const FAN_OUT_PAGE: usize = 512;
/// How long a cursor that moved past non-matching events only may wait to be stored.
const CURSOR_PERSIST: Duration = Duration::from_millis(500);
/// Longest sleep without a reason to wake (a safety net, not a poll).
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// How soon a worker looks again when other subscriptions hold every place
/// for deliveries in flight.
const PLACE_RETRY: Duration = Duration::from_millis(20);
/// How long a stopping worker waits for deliveries in flight.
const DRAIN: Duration = Duration::from_secs(5);

pub struct Worker {
    pub name: String,
    pub store: Arc<dyn Store>,
    pub client: WebhookClient,
    pub breakers: Arc<Breakers>,
    pub nudge: Arc<Notify>,
    /// Woken by the tail when a new event matches this worker's pattern.
    pub hint: Arc<Notify>,
    pub in_flight: Arc<AtomicUsize>,
    pub stats: Arc<DeliveryStats>,
    pub bodies: Arc<BodyCache>,
    pub dispatcher: std::sync::Weak<super::Dispatcher>,
    pub added: Arc<watch::Sender<u64>>,
    pub tail: Arc<Tail>,
    pub shutdown: watch::Receiver<bool>,
}

/// The declaration, compiled, for as long as it is not updated.
struct Compiled {
    /// Which incarnation of the subscription (its `created_us`).
    generation: i64,
    updated_us: i64,
    spec: SubscriptionSpec,
    pattern: Pattern,
    secret: Option<Secret>,
}

impl Compiled {
    fn new(record: &SubscriptionRecord) -> Result<Self, String> {
        let spec = SubscriptionSpec::from_stored(&record.spec)?;
        let pattern = spec.compile_pattern().map_err(|e| e.to_string())?;
        let secret = match &spec.target {
            Target::Webhook { secret: Some(s), .. } => Some(Secret::parse(s)?),
            _ => None,
        };
        Ok(Self { generation: record.created_us, updated_us: record.updated_us, spec, pattern, secret })
    }
}

type Finished = (Delivery, Answer);

/// Deliveries waiting for an answer: position -> stream.
type InFlight = HashMap<Position, Option<String>>;
/// Attempts made, with what becomes of their deliveries, not yet recorded.
type Unsettled = Vec<(Attempt, Settlement)>;

/// How long a worker waits after a failed step before trying again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
const FULL_DISK_PAUSE: Duration = Duration::from_secs(5);
/// Tries at recording attempts' outcomes before they are given up, on an
/// error other than a full disk (~10 s at [`ERROR_PAUSE`]).
const RECORD_TRIES: u32 = 20;

/// What one fan-out step did.
enum FanOut {
    /// Nothing new after the cursor.
    CaughtUp,
    /// The cursor moved to `to` (also in the store when `persisted`); a
    /// full page means more may be waiting.
    Moved { to: Position, full_page: bool, persisted: bool },
    /// The stored cursor is not where this worker thought (the subscription
    /// was replaced or deleted): read it again.
    Stale,
}

impl Worker {
    pub async fn run(mut self) {
        let newest = self.tail.newest();
        // The cursor as stored, and when it was last stored; `record.cursor`
        // runs ahead of it past events that matched nothing.
        let (mut persisted, mut last_persist) = (0, Instant::now());
        let mut compiled: Option<Compiled> = None;
        // The record is read again only when something may have changed it
        // (a nudge from the API, a stale cursor, a 410); the cursor in
        // between is the worker's own, since only it moves the cursor.
        let mut record: Option<SubscriptionRecord> = None;
        let mut in_flight: InFlight = HashMap::new();
        // Outcomes of attempts made but not yet recorded (the store refused
        // the write); their deliveries stay in flight until they are.
        let mut unsettled: Unsettled = Vec::new();
        let mut record_failures = 0;
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut next_slot = Instant::now();
        let mut registered = false;
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            if record.is_none() {
                match self.store.subscription(&self.name).await {
                    Ok(Some(r)) => {
                        persisted = r.cursor;
                        record = Some(r);
                    }
                    Ok(None) => {
                        // Deleted: its deliveries went with it, so answers still
                        // in flight have nowhere to go.
                        tasks.abort_all();
                        self.retire().await;
                        return;
                    }
                    Err(err) => {
                        self.pause_on_error(&err).await;
                        continue;
                    }
                }
            }
            let r = record.as_mut().expect("loaded above");
            if compiled.as_ref().is_some_and(|c| c.generation != r.created_us) {
                // Deleted and created again under the same name: a new
                // subscription. What the old one had in flight is not its business.
                tasks.abort_all();
                in_flight.clear();
                unsettled.clear();
                compiled = None;
            }
            if compiled.as_ref().is_none_or(|c| c.updated_us != r.updated_us) {
                // The old pattern's registration goes, also if the new
                // declaration is paused or unreadable; an active one
                // registers its pattern below.
                if registered {
                    self.tail.unregister(&self.name, &self.hint);
                    registered = false;
                }
                match Compiled::new(r) {
                    Ok(c) => compiled = Some(c),
                    Err(e) => {
                        // Retiring would start a worker that fails the same
                        // way at once; wait for the declaration to change.
                        tracing::error!(subscription = %self.name, error = %e,
                            "stored declaration is unreadable; nothing is delivered until it is declared again");
                        tokio::select! {
                            () = self.nudge.notified() => {}
                            _ = self.shutdown.changed() => {}
                        }
                        record = None;
                        continue;
                    }
                }
            }
            let c = compiled.as_ref().expect("compiled above");
            if !unsettled.is_empty() {
                // Record what was attempted before attempting more: sending
                // those deliveries again while the store refuses writes
                // would repeat them as fast as the target answers.
                match self.record(c, &mut unsettled, &mut in_flight).await {
                    Ok(gone) => {
                        record_failures = 0;
                        if gone {
                            record = None;
                            continue;
                        }
                    }
                    Err(err) => {
                        record_failures += 1;
                        // A full disk is waited out; another error that keeps
                        // coming back (and fails the writes grouped with it)
                        // is given up: the deliveries stay owed, sent again.
                        if !matches!(err, StoreError::Full { .. }) && record_failures >= RECORD_TRIES {
                            tracing::error!(subscription = %self.name, error = %err,
                                "could not record delivery attempts; their deliveries will be sent again");
                            release(&std::mem::take(&mut unsettled), &mut in_flight);
                            record_failures = 0;
                        }
                        self.pause_on_error(&err).await;
                        continue;
                    }
                }
            }
            let active = r.state == SubscriptionState::Active;
            // Only an active worker wants the tail's wake-ups (and its notes
            // of where the pattern matched); one resumed registers afresh.
            if active && !registered {
                self.tail.register(&self.name, c.pattern.clone(), self.hint.clone());
            } else if !active && registered {
                self.tail.unregister(&self.name, &self.hint);
            }
            registered = active;
            let mut wake = Instant::now() + IDLE_WAKE;
            let mut more = false;

            if active {
                let persist_due = last_persist.elapsed() >= CURSOR_PERSIST;
                match self.fan_out(r.cursor, persisted, persist_due, c).await {
                    Ok(FanOut::Moved { to, full_page, persisted: stored }) => {
                        r.cursor = to;
                        more = full_page;
                        if stored {
                            (persisted, last_persist) = (to, Instant::now());
                        }
                    }
                    Ok(FanOut::CaughtUp) => {}
                    Ok(FanOut::Stale) => {
                        record = None;
                        continue;
                    }
                    Err(err) => self.pause_on_error(&err).await,
                }
                if let (Target::Webhook { url, .. }, Some(secret)) = (&c.spec.target, &c.secret) {
                    let most = (c.spec.concurrency as usize).min(self.client.share());
                    let capacity = most.saturating_sub(in_flight.len());
                    if capacity > 0 {
                        match self.start_due(c, url, secret, capacity, &mut in_flight, &mut tasks, &mut next_slot).await
                        {
                            Ok(next) => wake = wake.min(next),
                            Err(err) => self.pause_on_error(&err).await,
                        }
                    }
                }
            }
            self.in_flight.store(in_flight.len(), AtomicOrdering::Relaxed);

            // Settle whatever finished meanwhile, in one write.
            let mut finished = Vec::new();
            while let Some(Ok(done)) = tasks.try_join_next() {
                finished.push(done);
            }
            if !finished.is_empty() {
                self.settle(c, finished, &mut unsettled);
                continue;
            }
            // Events the tail did not wake this worker for matched nothing
            // here (as far as the tail knew): pass them, and store the
            // cursor, on this round rather than on every event.
            let behind = active && r.cursor < *newest.borrow();
            if r.cursor != persisted || behind {
                wake = wake.min(last_persist + CURSOR_PERSIST);
            }
            if more {
                continue;
            }
            tokio::select! {
                Some(Ok(done)) = tasks.join_next(), if !tasks.is_empty() => self.settle(c, vec![done], &mut unsettled),
                () = self.hint.notified() => {}
                () = self.nudge.notified() => record = None,
                () = tokio::time::sleep_until(wake) => {}
                _ = self.shutdown.changed() => {}
            }
        }
        self.drain(compiled.as_ref(), tasks, &mut unsettled, &mut in_flight).await;
    }

    /// Leaves the dispatcher. A nudge that raced with the decision to leave
    /// (the subscription created again meanwhile) is not lost: after leaving,
    /// look once more and have the dispatcher start a fresh worker if needed.
    async fn retire(&self) {
        self.tail.unregister(&self.name, &self.hint);
        let Some(dispatcher) = self.dispatcher.upgrade() else { return };
        dispatcher.remove(&self.name, &self.nudge);
        if let Ok(Some(_)) = self.store.subscription(&self.name).await {
            dispatcher.nudge(&self.name);
        }
    }

    /// Takes the next events after `cursor` (from the shared tail, or from
    /// the store when the cursor is older than the tail's window), and
    /// records a delivery for each match. The cursor is stored with the
    /// deliveries in one commit; when nothing matched it is stored only
    /// every [`CURSOR_PERSIST`] (re-reading non-matching events after a crash
    /// is harmless), so subscriptions that match little cost no write per event.
    async fn fan_out(
        &self,
        cursor: Position,
        persisted: Position,
        persist_due: bool,
        c: &Compiled,
    ) -> Result<FanOut, StoreError> {
        if let Some(to) = self.tail.nothing_matched_after(&self.name, &self.hint, cursor) {
            // The tail matched these for us and none matched: pass them
            // without reading them, then look again at once (a match may be next).
            if persist_due {
                return self.persist(c, persisted, to, Vec::new(), true).await;
            }
            return Ok(FanOut::Moved { to, full_page: true, persisted: false });
        }
        let (events, from_store, cut_short) = match self.tail.after(cursor, FAN_OUT_PAGE) {
            Some(events) => (events, false, false),
            None => {
                let page =
                    self.store.list(ListQuery { after: cursor, limit: FAN_OUT_PAGE, ..Default::default() }).await?;
                (page.events.iter().map(|e| Arc::new(TailEvent::from_stored(e))).collect(), true, page.cut_short)
            }
        };
        let Some(to) = events.last().map(|e| e.position) else {
            if persist_due && cursor != persisted {
                return self.persist(c, persisted, cursor, Vec::new(), false).await;
            }
            return Ok(FanOut::CaughtUp);
        };
        let now = now_us();
        let mut owed = Vec::new();
        for event in &events {
            if event.value.is_null() || !c.pattern.matches(&event.value) {
                continue;
            }
            owed.push(Delivery::owed(event.position, &event.value, now, false));
            if matches!(c.spec.target, Target::Webhook { .. }) {
                self.bodies.insert(event.position, event.body.clone());
            }
        }
        let full_page = events.len() == FAN_OUT_PAGE || cut_short;
        if owed.is_empty() && !persist_due && !from_store {
            return Ok(FanOut::Moved { to, full_page, persisted: false });
        }
        self.persist(c, persisted, to, owed, full_page).await
    }

    /// Records `owed` and moves the stored cursor from `persisted` to `to`.
    async fn persist(
        &self,
        c: &Compiled,
        persisted: Position,
        to: Position,
        owed: Vec<Delivery>,
        full_page: bool,
    ) -> Result<FanOut, StoreError> {
        let added = !owed.is_empty();
        if !self.store.fan_out(&self.name, c.generation, persisted, to, owed).await? {
            return Ok(FanOut::Stale);
        }
        if added {
            self.added.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(FanOut::Moved { to, full_page, persisted: true })
    }

    /// Starts up to `capacity` due deliveries; returns when to look again.
    #[allow(clippy::too_many_arguments)]
    async fn start_due(
        &self,
        c: &Compiled,
        url: &str,
        secret: &Secret,
        capacity: usize,
        in_flight: &mut InFlight,
        tasks: &mut JoinSet<Finished>,
        next_slot: &mut Instant,
    ) -> Result<Instant, StoreError> {
        // Under a rate limit the next slot is an interval away once one
        // delivery is sent: one per round, none before the slot, and the
        // next round at the slot while more are due.
        let rate_limited = c.spec.rate_limit.is_some();
        if rate_limited && *next_slot > Instant::now() {
            return Ok(*next_slot);
        }
        let now = now_us();
        let per_stream = c.spec.ordering == Ordering::Stream;
        let due = self.store.due_deliveries(&self.name, now, capacity + in_flight.len(), per_stream).await?;
        // With per-stream order, a stream with a delivery in flight waits even
        // when an older event of it became owed meanwhile (a replay or redrive).
        let busy: HashSet<&str> = in_flight.values().flatten().map(String::as_str).collect();
        let mut due: Vec<Delivery> = due
            .into_iter()
            .filter(|d| !in_flight.contains_key(&d.position))
            .filter(|d| !per_stream || d.stream.as_deref().is_none_or(|s| !busy.contains(s)))
            .take(capacity)
            .collect();
        let more_than_a_slot = rate_limited && due.len() > 1;
        if rate_limited {
            due.truncate(1);
        }
        // A place among all deliveries in flight for each, before anything
        // is admitted, so what is admitted is sent at once. Short of places
        // (other subscriptions hold them), look again soon: a wake-up per
        // place freed measured slower, each a round of store reads.
        let mut places = self.client.places(url, due.len());
        let short_of_places = places.len() < due.len();
        if short_of_places {
            due.truncate(places.len());
            if due.is_empty() {
                return Ok(Instant::now() + PLACE_RETRY);
            }
        }
        // The breaker first: what an open circuit holds back (unattempted)
        // needs no body.
        let mut due = due.into_iter();
        let mut admitted = Vec::new();
        let mut held = None;
        for delivery in due.by_ref() {
            match self.breakers.admit(url, Instant::now()) {
                Admission::Send(ticket) => admitted.push((delivery, ticket)),
                Admission::Wait(until) => {
                    held = Some((delivery, until));
                    break;
                }
            }
        }
        // What the circuit holds back needs no place.
        places.truncate(admitted.len());
        // This batch's bodies: from the shared cache, the rest read from the log.
        let mut bodies: HashMap<Position, Bytes> =
            admitted.iter().filter_map(|(d, _)| self.bodies.get(d.position).map(|b| (d.position, b))).collect();
        let missing: Vec<Position> =
            admitted.iter().map(|(d, _)| d.position).filter(|p| !bodies.contains_key(p)).collect();
        if !missing.is_empty() {
            for event in self.store.events_at(missing).await? {
                let body = Bytes::from(event.to_json());
                self.bodies.insert(event.position, body.clone());
                bodies.insert(event.position, body);
            }
        }
        let interval = c.spec.rate_limit.map(|r| Duration::from_secs_f64(1.0 / r));
        for (delivery, ticket) in admitted {
            if let Some(interval) = interval {
                let at = Instant::now();
                if *next_slot > at {
                    return Ok(*next_slot);
                }
                *next_slot = at.max(*next_slot) + interval;
            }
            let Some(body) = bodies.remove(&delivery.position) else {
                // The event itself is gone: nothing can ever deliver it.
                let dead = dead_letter(&delivery, now_us(), "the event is no longer in the log".to_owned());
                self.store.settle(&self.name, c.generation, Arc::new([dead])).await?;
                continue;
            };
            in_flight.insert(delivery.position, delivery.stream.clone());
            let (client, secret, timeout) = (self.client.clone(), secret.clone(), c.spec.retry.timeout);
            let place = places.pop().expect("a place for every admitted delivery");
            tasks.spawn(async move {
                let _place = place;
                let answer = failed_if_it_panics(client.send(Request {
                    url: ticket.url(),
                    secret: &secret,
                    event_id: &delivery.event_id,
                    body,
                    timeout,
                    attempt: delivery.attempts + 1,
                    replay: delivery.replay,
                }))
                .await;
                ticket.record(&answer, Instant::now());
                (delivery, answer)
            });
        }
        if let Some((first, until)) = held {
            return self.hold_back(c, std::iter::once(first).chain(due), until).await;
        }
        // Rows due now are in flight or held behind their stream's head: their
        // turn comes when a delivery finishes (which wakes the loop), so only
        // a later due time is a reason to wake.
        let next_due = self.store.next_due(&self.name, now_us()).await?.map(|due_us| {
            let wait = Duration::from_micros(due_us.saturating_sub(now_us()).max(0) as u64);
            Instant::now() + wait
        });
        let mut next = next_due.unwrap_or_else(|| Instant::now() + IDLE_WAKE);
        if more_than_a_slot {
            next = next.min(*next_slot);
        }
        Ok(if short_of_places { next.min(Instant::now() + PLACE_RETRY) } else { next })
    }

    /// The circuit holds `held` back until `until`: dead-letter those past
    /// their `max_age` (they would otherwise wait for a probe each) and say
    /// when to look again (at once if some were, as more may be behind them).
    async fn hold_back(
        &self,
        c: &Compiled,
        held: impl Iterator<Item = Delivery>,
        until: Instant,
    ) -> Result<Instant, StoreError> {
        let (now, retry) = (now_us(), &c.spec.retry);
        let expired: Vec<(Attempt, Settlement)> = held
            .filter(|d| retry.past_max_age(d.first_due_us, now))
            .map(|d| {
                let reason = format!(
                    "max_age of {}s reached after {} attempts while the target's circuit was open",
                    retry.max_age.as_secs(),
                    d.attempts
                );
                dead_letter(&d, now, reason)
            })
            .collect();
        if expired.is_empty() {
            return Ok(until);
        }
        self.store.settle(&self.name, c.generation, expired.into()).await?;
        Ok(Instant::now())
    }

    /// Decides what becomes of each finished delivery, to be recorded (by
    /// [`Worker::record`], at the top of the next round).
    fn settle(&self, c: &Compiled, finished: Vec<Finished>, unsettled: &mut Unsettled) {
        let now = now_us();
        for (delivery, answer) in finished {
            let attempts = delivery.attempts + 1;
            let (outcome, settlement) = if answer.succeeded() {
                ("delivered", Settlement::Delivered)
            } else if answer.status == Some(410) {
                ("gone", Settlement::Gone)
            } else {
                let error = answer.error.as_deref().unwrap_or("failed");
                match c.spec.retry.after_failure(
                    attempts,
                    delivery.first_due_us,
                    now,
                    answer.retry_after,
                    rand::random::<f64>(),
                    error,
                ) {
                    AfterFailure::RetryAt(due_us) => ("failed", Settlement::Retry { due_us }),
                    AfterFailure::GiveUp(reason) => ("dead", Settlement::Dead { reason }),
                }
            };
            self.stats.record(outcome, answer.latency);
            let mut attempt = Attempt::of(&delivery, attempts, now, outcome, answer.error.clone());
            attempt.status = answer.status;
            attempt.latency_us = answer.latency.as_micros() as i64;
            attempt.response = answer.response;
            if outcome == "gone" {
                tracing::warn!(subscription = %self.name, "target answered 410 Gone: subscription disabled");
            }
            unsettled.push((attempt, settlement));
        }
    }

    /// Records the settled attempts in one write; only then are their
    /// deliveries no longer in flight. Should the store refuse the write,
    /// they are kept for the next try. Returns whether the subscription's
    /// state changed (a 410 disabled it).
    async fn record(
        &self,
        c: &Compiled,
        unsettled: &mut Unsettled,
        in_flight: &mut InFlight,
    ) -> Result<bool, StoreError> {
        // Shared with the write, not copied: copied back only if it fails.
        let settled: Arc<[(Attempt, Settlement)]> = std::mem::take(unsettled).into();
        if let Err(err) = self.store.settle(&self.name, c.generation, settled.clone()).await {
            *unsettled = settled.to_vec();
            return Err(err);
        }
        Ok(release(&settled, in_flight))
    }

    /// On shutdown: let deliveries in flight finish (briefly) and record
    /// them, with any not recorded yet. What cannot be recorded stays owed
    /// and is delivered again after the restart.
    async fn drain(
        &self,
        c: Option<&Compiled>,
        mut tasks: JoinSet<Finished>,
        unsettled: &mut Unsettled,
        in_flight: &mut InFlight,
    ) {
        let Some(c) = c else { return };
        let deadline = Instant::now() + DRAIN;
        let mut finished = Vec::new();
        while let Ok(Some(Ok(done))) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
            finished.push(done);
        }
        self.settle(c, finished, unsettled);
        if !unsettled.is_empty()
            && let Err(err) = self.record(c, unsettled, in_flight).await
        {
            tracing::error!(subscription = %self.name, error = %err, "could not record delivery attempts");
        }
    }

    /// Waits before trying a failed step again: longer when the disk is
    /// full, which takes an operator to fix (the store logs that itself).
    async fn pause_on_error(&self, err: &StoreError) {
        let pause = if matches!(err, StoreError::Full { .. }) {
            FULL_DISK_PAUSE
        } else {
            tracing::error!(subscription = %self.name, error = %err, "dispatch step failed; retrying shortly");
            ERROR_PAUSE
        };
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Takes settled deliveries out of flight; returns whether a 410 disabled
/// the subscription.
fn release(settled: &[(Attempt, Settlement)], in_flight: &mut InFlight) -> bool {
    for (attempt, _) in settled {
        in_flight.remove(&attempt.position);
    }
    settled.iter().any(|(_, s)| *s == Settlement::Gone)
}

/// A delivery whose sending panicked is a failed attempt, retried like any
/// other: a task that ended without an answer would keep its delivery (and
/// its stream, when ordered) in flight until the subscription changed.
async fn failed_if_it_panics(send: impl Future<Output = Answer>) -> Answer {
    let started = std::time::Instant::now();
    std::panic::AssertUnwindSafe(send)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Answer::failed(started, "sending panicked; see the server log".to_owned()))
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Dead-letters a delivery that will not be tried again (the event is gone,
/// or its circuit kept it back past `max_age`). Nothing was sent, so the
/// attempts it records are those made before.
fn dead_letter(delivery: &Delivery, now: i64, reason: String) -> (Attempt, Settlement) {
    (Attempt::of(delivery, delivery.attempts, now, "dead", Some(reason.clone())), Settlement::Dead { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_while_sending_is_a_failed_attempt() {
        let panicking = async {
            if now_us() > 0 {
                panic!("a bug in the client");
            }
            Answer::failed(std::time::Instant::now(), "unreachable".to_owned())
        };
        let answer = failed_if_it_panics(panicking).await;
        assert!(!answer.succeeded());
        assert_eq!(answer.error.as_deref(), Some("sending panicked; see the server log"));

        let fine =
            Answer { status: Some(204), error: None, response: None, latency: Duration::ZERO, retry_after: None };
        assert!(failed_if_it_panics(async { fine }).await.succeeded());
    }
}
