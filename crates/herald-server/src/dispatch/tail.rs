//! The newest events of the log, read and parsed once for all workers. With
//! many subscriptions, each reading and parsing every new event itself cost
//! more than publishing it; now a worker that keeps up matches its pattern
//! against events already in memory, and only one that has fallen behind the
//! window reads the store.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use herald_core::Position;
use herald_store::{ListQuery, Store};
use serde_json::Value;
use tokio::sync::watch;

/// Events kept in memory (positions are gap-free, so this is a window of
/// the log's newest positions).
const CAPACITY: usize = 4096;
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

pub struct Tail {
    events: RwLock<VecDeque<Arc<TailEvent>>>,
    /// The newest position in the window (the head once it has caught up).
    newest: watch::Sender<Position>,
}

impl Tail {
    /// Starts following the log from its current head until `shutdown`.
    pub fn start(store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let head = *store.head().borrow();
        let tail = Arc::new(Self { events: RwLock::default(), newest: watch::channel(head).0 });
        let follower = tail.clone();
        tokio::spawn(async move {
            let mut head = store.head();
            loop {
                let newest = *follower.newest.borrow();
                let latest = *head.borrow_and_update();
                if follower.newest.receiver_count() == 0 {
                    // No worker follows: reading and parsing each event would
                    // cost publishers CPU for nothing. Skip to the head; a
                    // worker that starts later reads what it needs from the store.
                    follower.skip_to(latest);
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
        let mut last = None;
        if let Ok(mut window) = self.events.write() {
            for event in events {
                last = Some(event.position);
                window.push_back(Arc::new(event));
            }
            while window.len() > CAPACITY {
                window.pop_front();
            }
        }
        if let Some(last) = last {
            self.newest.send_replace(last);
        }
    }

    /// Empties the window and moves it to `head` without reading anything.
    fn skip_to(&self, head: Position) {
        if let Ok(mut window) = self.events.write() {
            window.clear();
        }
        self.newest.send_replace(head);
    }

    /// Workers hold one each: the window is kept only while one is held.
    pub fn newest(&self) -> watch::Receiver<Position> {
        self.newest.subscribe()
    }

    /// Up to `limit` events after `cursor`, when the window still holds the
    /// event right after it (or nothing newer exists yet); `None` when the
    /// cursor is older than the window and the store must be read instead.
    pub fn after(&self, cursor: Position, limit: usize) -> Option<Vec<Arc<TailEvent>>> {
        let window = self.events.read().ok()?;
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
