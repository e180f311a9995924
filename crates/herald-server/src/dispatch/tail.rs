//! The newest events of the log, read and parsed once for all workers. With
//! many subscriptions, each reading and parsing every new event itself cost
//! more than publishing it; now a worker that keeps up matches its pattern
//! against events already in memory, and only one that has fallen behind the
//! window reads the store.
//!
//! The tail also matches each new event once against every worker's pattern
//! (a [`PatternSet`], indexed by `source` and `detail-type`) and wakes only
//! the workers it matched. Waking every worker for every event cost each
//! publish a task wake-up per subscription. The wake-up is a hint: a worker
//! still matches events itself, and one that was not woken moves its cursor
//! past what it missed on its own periodic round.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use herald_core::Position;
use herald_core::pattern::{Pattern, PatternSet};
use herald_store::{ListQuery, Store};
use serde_json::Value;
use tokio::sync::{Notify, watch};

/// Events kept in memory (positions are gap-free, so this is a window of
/// the log's newest positions).
const CAPACITY: usize = 4096;
/// And at most this many bytes of their bodies (with their parsed values,
/// several times that): 4,096 events of 256 KiB would be gigabytes.
const CAPACITY_BYTES: usize = 16 << 20;
/// Events read from the store per step.
const PAGE: usize = 1024;

pub struct TailEvent {
    pub position: Position,
    pub value: Value,
    /// The envelope with its position, as delivered to webhooks.
    pub body: Bytes,
}

impl TailEvent {
    /// An unreadable record keeps its place (positions must stay gap-free)
    /// with a null value, which workers report instead of matching.
    pub fn from_stored(event: &herald_store::StoredEvent) -> Self {
        let value = event.json_value().unwrap_or_else(|err| {
            tracing::error!(error = %err, "stored event is unreadable");
            Value::Null
        });
        Self { position: event.position, value, body: Bytes::from(event.to_json()) }
    }
}

/// The newest events, and the bytes of their bodies.
#[derive(Default)]
struct Window {
    events: VecDeque<Arc<TailEvent>>,
    bytes: usize,
}

impl Window {
    fn extend(&mut self, events: &[Arc<TailEvent>]) {
        for event in events {
            self.bytes += event.body.len();
            self.events.push_back(event.clone());
        }
        while self.events.len() > CAPACITY || self.bytes > CAPACITY_BYTES {
            let Some(oldest) = self.events.pop_front() else { break };
            self.bytes -= oldest.body.len();
        }
    }

    fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

pub struct Tail {
    events: RwLock<Window>,
    /// The newest position in the window (the head once it has caught up).
    newest: watch::Sender<Position>,
    interest: RwLock<Interest>,
}

/// Which worker wants which events: its pattern and the hint that wakes it.
#[derive(Default)]
struct Interest {
    by_worker: HashMap<String, Registration>,
    /// Built from `by_worker` before the next match after a change (`dirty`):
    /// pattern `i` is `names[i]`'s.
    set: PatternSet,
    names: Vec<String>,
    dirty: bool,
    /// Every event up to here has been matched against the registered patterns
    /// (or passed while none was registered).
    matched_through: Position,
}

struct Registration {
    pattern: Pattern,
    hint: Arc<Notify>,
    /// The positions of those that matched and the worker may not have
    /// passed yet, ascending, at most [`CAPACITY`].
    matches: VecDeque<Position>,
    /// Events up to here were not matched against `pattern` by the tail:
    /// they predate the registration, or their matches were forgotten to
    /// keep `matches` bounded.
    forgotten_through: Position,
}

impl Interest {
    fn rebuild(&mut self) {
        let (names, patterns): (Vec<String>, Vec<Pattern>) =
            self.by_worker.iter().map(|(name, r)| (name.clone(), r.pattern.clone())).unzip();
        self.set = patterns.into_iter().collect();
        self.names = names;
        self.dirty = false;
    }
}

impl Tail {
    /// An empty window at `head`: nothing before it was matched.
    fn new(head: Position) -> Self {
        let interest = Interest { matched_through: head, ..Interest::default() };
        Self { events: RwLock::default(), newest: watch::channel(head).0, interest: RwLock::new(interest) }
    }

    /// Starts following the log from its current head until `shutdown`.
    pub fn start(store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let tail = Arc::new(Self::new(*store.head().borrow()));
        let follower = tail.clone();
        tokio::spawn(async move {
            let mut head = store.head();
            // Checked on every turn, not only when caught up: a tail behind
            // the head would otherwise go on reading a closed store.
            while !*shutdown.borrow() {
                let newest = *follower.newest.borrow();
                let latest = *head.borrow_and_update();
                if follower.skip_if_unwatched(latest) {
                    // No worker follows: reading and parsing each event would
                    // cost publishers CPU for nothing. A worker that registers
                    // later reads what it needs from the store.
                } else if newest < latest {
                    match store.list(ListQuery { after: newest, limit: PAGE, ..Default::default() }).await {
                        Ok(page) => follower.push(page.events.iter().map(TailEvent::from_stored)),
                        Err(err) => {
                            tracing::error!(error = %err, "reading new events for dispatch failed; retrying");
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                    }
                    continue;
                }
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                }
            }
        });
        tail
    }

    fn push(&self, events: impl Iterator<Item = TailEvent>) {
        let events: Vec<Arc<TailEvent>> = events.map(Arc::new).collect();
        if let Ok(mut window) = self.events.write() {
            window.extend(&events);
        }
        if let Some(last) = events.last() {
            self.newest.send_replace(last.position);
        }
        // After the events are in the window, so a woken worker finds them.
        self.wake_interested(&events);
    }

    /// Wakes each worker whose pattern matches one of `events` and notes
    /// where it matched.
    fn wake_interested(&self, events: &[Arc<TailEvent>]) {
        let Ok(mut interest) = self.interest.write() else { return };
        let interest = &mut *interest;
        if interest.dirty {
            interest.rebuild();
        }
        let mut matched = Vec::new();
        for event in events {
            interest.set.matches_into(&event.value, &mut matched);
            for &i in &matched {
                if let Some(worker) = interest.by_worker.get_mut(&interest.names[i]) {
                    // Wake-ups not yet taken fold into one.
                    worker.hint.notify_one();
                    worker.matches.push_back(event.position);
                    if worker.matches.len() > CAPACITY {
                        worker.forgotten_through = worker.matches.pop_front().unwrap_or_default();
                    }
                }
            }
        }
        if let Some(last) = events.last() {
            interest.matched_through = last.position;
        }
    }

    /// Wake `hint` when a new event matches `pattern` (replacing what the
    /// worker `name` registered before). Only events from now on count: the
    /// worker matches older ones itself.
    pub fn register(&self, name: &str, pattern: Pattern, hint: Arc<Notify>) {
        if let Ok(mut interest) = self.interest.write() {
            let since = interest.matched_through;
            let registration = Registration { pattern, hint, matches: VecDeque::new(), forgotten_through: since };
            interest.by_worker.insert(name.to_owned(), registration);
            interest.dirty = true;
        }
    }

    /// Forgets the worker `name` if `hint` is still its hint (a worker started
    /// since under the same name keeps its own).
    pub fn unregister(&self, name: &str, hint: &Arc<Notify>) {
        if let Ok(mut interest) = self.interest.write()
            && interest.by_worker.get(name).is_some_and(|r| Arc::ptr_eq(&r.hint, hint))
        {
            interest.by_worker.remove(name);
            interest.dirty = true;
        }
    }

    /// How far a worker at `cursor` may move without looking at the events:
    /// the tail matched every event after `cursor` against its pattern, so it
    /// may pass those up to the next match (or, with none, all the tail has
    /// matched). `None` when the next event must be read: it matched, or it
    /// predates the registration, or its matches were forgotten.
    pub fn nothing_matched_after(&self, name: &str, hint: &Arc<Notify>, cursor: Position) -> Option<Position> {
        let mut interest = self.interest.write().ok()?;
        let matched_through = interest.matched_through;
        let worker = interest.by_worker.get_mut(name).filter(|r| Arc::ptr_eq(&r.hint, hint))?;
        if cursor < worker.forgotten_through {
            return None;
        }
        while worker.matches.front().is_some_and(|&m| m <= cursor) {
            worker.matches.pop_front();
        }
        let to = worker.matches.front().map_or(matched_through, |&next| next - 1);
        (to > cursor).then_some(to)
    }

    /// With no worker registered, empties the window and moves it to `head`
    /// without reading anything. Decided under the lock that registration
    /// takes, so a worker registers either before (and nothing is skipped)
    /// or after (and its registration starts at `head`).
    fn skip_if_unwatched(&self, head: Position) -> bool {
        let Ok(mut interest) = self.interest.write() else { return false };
        if !interest.by_worker.is_empty() {
            return false;
        }
        interest.matched_through = head;
        if let Ok(mut window) = self.events.write() {
            window.clear();
        }
        self.newest.send_replace(head);
        true
    }

    /// The newest position in the window.
    pub fn newest(&self) -> watch::Receiver<Position> {
        self.newest.subscribe()
    }

    /// Up to `limit` events after `cursor`, when the window still holds the
    /// event right after it (or nothing newer exists yet); `None` when the
    /// cursor is older than the window and the store must be read instead.
    pub fn after(&self, cursor: Position, limit: usize) -> Option<Vec<Arc<TailEvent>>> {
        let window = self.events.read().ok()?;
        let window = &window.events;
        let Some(oldest) = window.front().map(|e| e.position) else {
            return (cursor >= *self.newest.borrow()).then(Vec::new);
        };
        if cursor + 1 < oldest {
            return None;
        }
        let skip = (cursor + 1 - oldest) as usize;
        Some(window.iter().skip(skip).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn tail() -> Tail {
        Tail::new(0)
    }

    fn event(position: Position, source: &str) -> TailEvent {
        let value = json!({"source": source, "detail-type": "Order Placed", "detail": {}});
        TailEvent { position, value, body: Bytes::new() }
    }

    fn wants(source: &str) -> Pattern {
        Pattern::compile(&json!({"source": [source]})).unwrap()
    }

    async fn woken(hint: &Notify) -> bool {
        tokio::time::timeout(Duration::from_millis(20), hint.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn only_workers_whose_pattern_matches_are_woken() {
        let tail = tail();
        let (shop, billing) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        tail.register("shop", wants("shop"), shop.clone());
        tail.register("billing", wants("billing"), billing.clone());

        tail.push([event(1, "shop"), event(2, "shop")].into_iter());
        assert!(woken(&shop).await);
        assert!(!woken(&shop).await, "one wake-up for the batch");
        assert!(!woken(&billing).await);
        assert_eq!(tail.after(0, 10).unwrap().len(), 2, "the events are in the window either way");

        // Another worker under the same name replaced it: the old one's
        // leaving does not unregister the new one.
        let replacement = Arc::new(Notify::new());
        tail.register("shop", wants("shop"), replacement.clone());
        tail.unregister("shop", &shop);
        tail.push([event(3, "shop")].into_iter());
        assert!(woken(&replacement).await);
        assert!(!woken(&shop).await);

        tail.unregister("shop", &replacement);
        tail.push([event(4, "shop"), event(5, "billing")].into_iter());
        assert!(!woken(&replacement).await);
        assert!(woken(&billing).await);
    }

    #[test]
    fn a_worker_passes_what_the_tail_matched_for_it_up_to_its_next_match() {
        let tail = tail();
        let shop = Arc::new(Notify::new());
        tail.register("shop", wants("shop"), shop.clone());
        tail.push([event(1, "billing"), event(2, "billing"), event(3, "shop"), event(4, "billing")].into_iter());
        let skip = |cursor| tail.nothing_matched_after("shop", &shop, cursor);
        assert_eq!(skip(0), Some(2), "up to the match at 3");
        assert_eq!(skip(2), None, "3 matched: read it");
        assert_eq!(skip(3), Some(4));
        assert_eq!(skip(4), None, "nothing newer");
        assert_eq!(tail.nothing_matched_after("shop", &Arc::new(Notify::new()), 0), None, "another worker's name");

        let late = Arc::new(Notify::new());
        tail.register("late", wants("shop"), late.clone());
        assert_eq!(tail.nothing_matched_after("late", &late, 0), None, "events before it registered");
        tail.push([event(5, "billing")].into_iter());
        assert_eq!(tail.nothing_matched_after("late", &late, 4), Some(5));
    }

    #[test]
    fn the_window_is_bounded_in_events_and_in_bytes() {
        let tail = tail();
        tail.register("shop", wants("shop"), Arc::new(Notify::new()));
        tail.push((1..=CAPACITY as u64 + 10).map(|p| event(p, "shop")));
        assert!(tail.after(9, 1).is_none(), "the oldest ten left the window");
        assert_eq!(tail.after(10, CAPACITY + 1).unwrap().len(), CAPACITY);

        // Bodies of 1 MiB: the window keeps 16 of them, not 4,096.
        let big = |position| TailEvent { body: Bytes::from(vec![b'x'; 1 << 20]), ..event(position, "shop") };
        let newest = CAPACITY as u64 + 10;
        tail.push((newest + 1..=newest + 20).map(big));
        let window = tail.events.read().unwrap();
        assert_eq!(window.events.len(), CAPACITY_BYTES >> 20);
        assert_eq!(window.bytes, CAPACITY_BYTES);
        assert_eq!(window.events.front().unwrap().position, newest + 20 - (CAPACITY_BYTES >> 20) as u64 + 1);
    }

    #[test]
    fn events_the_tail_never_matched_are_never_passed_unread() {
        // Started at a head of 100 (after a restart): 1..=100 were never matched.
        let tail = Tail::new(100);
        let a = Arc::new(Notify::new());
        tail.register("a", wants("shop"), a.clone());
        tail.push([event(101, "billing")].into_iter());
        assert_eq!(tail.nothing_matched_after("a", &a, 50), None);
        assert_eq!(tail.nothing_matched_after("a", &a, 100), Some(101));

        // Skipped while nobody was registered: a later worker reads those itself.
        tail.unregister("a", &a);
        assert!(tail.skip_if_unwatched(200));
        tail.register("a", wants("shop"), a.clone());
        assert!(!tail.skip_if_unwatched(300), "a registered worker keeps the tail reading");
        tail.push([event(201, "billing")].into_iter());
        assert_eq!(tail.nothing_matched_after("a", &a, 150), None);
        assert_eq!(tail.nothing_matched_after("a", &a, 200), Some(201));
    }
}
