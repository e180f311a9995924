//! The dispatcher: one [`worker`] task per subscription, each with its own
//! durable cursor, so subscriptions never hold each other back and a slow
//! target never slows publishing. The API nudges a worker when its
//! subscription changes; workers find everything else in the store.

pub mod bodies;
pub mod circuit;
pub mod pull;
pub mod replay;
pub mod tail;
pub mod webhook;
pub mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use herald_store::{Store, StoreError};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use self::bodies::BodyCache;
use self::circuit::{Breakers, CircuitState};
use self::tail::Tail;
use self::webhook::WebhookClient;
use self::worker::Worker;
use crate::metrics::DeliveryStats;

struct Handle {
    nudge: Arc<Notify>,
    in_flight: Arc<AtomicUsize>,
    stats: Arc<DeliveryStats>,
    task: JoinHandle<()>,
}

/// Bytes of event bodies kept for delivery, across all subscriptions.
const BODY_CACHE_BYTES: usize = 16 * 1024 * 1024;

pub struct Dispatcher {
    me: std::sync::Weak<Dispatcher>,
    store: Arc<dyn Store>,
    client: WebhookClient,
    /// Shared by every worker: a failing URL is held back for all of them.
    breakers: Arc<Breakers>,
    bodies: Arc<BodyCache>,
    workers: Mutex<HashMap<String, Handle>>,
    /// Bumped whenever a worker records new deliveries: waiting pulls wake on it.
    added: Arc<watch::Sender<u64>>,
    tail: Arc<Tail>,
    shutdown: watch::Receiver<bool>,
}

impl Dispatcher {
    /// Starts a worker for every stored subscription.
    pub async fn start(
        store: Arc<dyn Store>,
        client: WebhookClient,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, StoreError> {
        let bodies = Arc::new(BodyCache::new(BODY_CACHE_BYTES));
        let tail = Tail::start(store.clone(), shutdown.clone());
        let dispatcher = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            store,
            client,
            breakers: Breakers::new(),
            bodies,
            workers: Mutex::default(),
            added: Arc::new(watch::channel(0).0),
            tail,
            shutdown,
        });
        for record in dispatcher.store.subscriptions().await? {
            dispatcher.nudge(&record.name);
        }
        Ok(dispatcher)
    }

    /// Tells the subscription's worker to look again (its declaration, state
    /// or deliveries changed), starting one if none runs.
    pub fn nudge(&self, name: &str) {
        let Ok(mut workers) = self.workers.lock() else { return };
        if let Some(handle) = workers.get(name).filter(|h| !h.task.is_finished()) {
            handle.nudge.notify_one();
            return;
        }
        let nudge = Arc::new(Notify::new());
        let in_flight = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(DeliveryStats::default());
        let worker = Worker {
            name: name.to_owned(),
            store: self.store.clone(),
            client: self.client.clone(),
            breakers: self.breakers.clone(),
            nudge: nudge.clone(),
            hint: Arc::new(Notify::new()),
            in_flight: in_flight.clone(),
            stats: stats.clone(),
            bodies: self.bodies.clone(),
            dispatcher: self.me.clone(),
            added: self.added.clone(),
            tail: self.tail.clone(),
            shutdown: self.shutdown.clone(),
        };
        let task = tokio::spawn(worker.run());
        workers.insert(name.to_owned(), Handle { nudge, in_flight, stats, task });
    }

    /// Forgets the worker whose nudge is `nudge` (it is leaving), unless
    /// another has taken its place.
    fn remove(&self, name: &str, nudge: &Arc<Notify>) {
        if let Ok(mut workers) = self.workers.lock()
            && workers.get(name).is_some_and(|h| Arc::ptr_eq(&h.nudge, nudge))
        {
            workers.remove(name);
        }
    }

    /// Changes whenever new deliveries were recorded for any subscription.
    pub fn deliveries_added(&self) -> watch::Receiver<u64> {
        self.added.subscribe()
    }

    /// Deliveries of this subscription waiting for an answer now.
    pub fn in_flight(&self, name: &str) -> usize {
        let workers = self.workers.lock().ok();
        workers.and_then(|w| w.get(name).map(|h| h.in_flight.load(Ordering::Relaxed))).unwrap_or(0)
    }

    /// Each subscription's delivery attempts so far, by name.
    pub fn delivery_stats(&self) -> Vec<(String, Arc<DeliveryStats>)> {
        let Ok(workers) = self.workers.lock() else { return Vec::new() };
        let mut rows: Vec<_> = workers.iter().map(|(name, h)| (name.clone(), h.stats.clone())).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// The circuit breaker of a webhook URL (see [`circuit`]).
    pub fn circuit(&self, url: &str) -> CircuitState {
        self.breakers.state(url, tokio::time::Instant::now())
    }

    /// Webhook URLs whose circuit is open or half-open now.
    pub fn open_circuits(&self) -> usize {
        self.breakers.open_count(tokio::time::Instant::now())
    }

    /// Waits for every worker to stop (they stop when shutdown turns true),
    /// so their last attempts are recorded before the store closes.
    pub async fn stopped(&self) {
        let tasks: Vec<JoinHandle<()>> = match self.workers.lock() {
            Ok(mut workers) => workers.drain().map(|(_, h)| h.task).collect(),
            Err(_) => return,
        };
        for task in tasks {
            let _ = task.await;
        }
    }
}
