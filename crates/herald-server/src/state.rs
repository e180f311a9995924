use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use herald_core::IdRule;
use herald_store::{Store, StoreError};
use tokio::sync::{Semaphore, watch};

use crate::body::BodyBudget;
use crate::client::PerClient;
use crate::config::ServerConfig;
use crate::dispatch::Dispatcher;
use crate::response::{MIN_RESPONSE_BUDGET, ResponseBudget};

/// What every handler shares: a handle, cloned for every request, so it is
/// one reference count rather than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Arc<dyn Store>,
    /// Id rules by detail-type, read on every publish without an id; the store
    /// is the truth, this is its cache (updated on every write through the API).
    pub id_rules: RwLock<HashMap<String, IdRule>>,
    /// Held across an id rule's write to the store and to [`Self::id_rules`],
    /// so the cache changes in the order the store did: two writes answered
    /// by one group commit could otherwise update it in the other order.
    pub id_rule_writes: tokio::sync::Mutex<()>,
    /// Held across a subscription's declaration, from reading the stored one
    /// (whose secret an update keeps) to writing the new one.
    pub subscription_writes: tokio::sync::Mutex<()>,
    pub config: ServerConfig,
    pub in_flight: Arc<Semaphore>,
    pub body_budget: BodyBudget,
    pub response_budget: ResponseBudget,
    pub live_readers: Arc<Semaphore>,
    /// Live readers by client, so one client cannot hold every one.
    pub live_readers_per_client: Arc<PerClient>,
    pub dispatcher: Arc<Dispatcher>,
    /// Turns true when the server begins to shut down; live streams end on it.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    pub async fn new(
        store: Arc<dyn Store>,
        config: ServerConfig,
        dispatcher: Arc<Dispatcher>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, StoreError> {
        let rules = store.id_rules().await?.into_iter().map(|r| (r.detail_type.clone(), r)).collect();
        Ok(Self(Arc::new(Shared {
            store,
            id_rules: RwLock::new(rules),
            id_rule_writes: tokio::sync::Mutex::new(()),
            subscription_writes: tokio::sync::Mutex::new(()),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            body_budget: BodyBudget::new(config.max_body_buffer),
            response_budget: ResponseBudget::new(
                config.max_response_buffer,
                config.client_part(config.max_response_buffer.max(MIN_RESPONSE_BUDGET)),
            ),
            live_readers: Arc::new(Semaphore::new(config.max_live_readers)),
            live_readers_per_client: Arc::new(PerClient::new(config.client_part(config.max_live_readers).max(1))),
            config,
            dispatcher,
            shutdown,
        })))
    }
}

impl Shared {
    pub fn id_rule(&self, detail_type: &str) -> Option<IdRule> {
        self.id_rules.read().ok()?.get(detail_type).cloned()
    }
}
