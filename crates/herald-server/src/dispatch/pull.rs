//! Pull consumers: leasing due deliveries to whoever asks, waiting a while
//! for the first when none is due. The store makes each lease exclusive, so
//! competing consumers never receive the same message at once.

use std::time::Duration;

use herald_core::subscription::{DEFAULT_ACK_TIMEOUT, Ordering, SubscriptionSpec, Target};
use herald_store::{Delivery, Store, StoredEvent};
use tokio::sync::watch;
use tokio::time::Instant;

use super::worker::now_us;
use crate::problem::ApiError;
use crate::response::{Charge, PAGE_RESERVE, ResponseBudget};

/// How often a waiting pull looks again without being woken: messages also
/// fall due by time (a lease that ran out, a nack's delay).
const POLL: Duration = Duration::from_millis(100);

/// One leased message; `ack_id` names the delivery and the lease holding it.
pub struct Leased {
    pub ack_id: String,
    pub delivery: Delivery,
    pub event: StoredEvent,
}

/// Leases up to `max` due messages for `ack_timeout`, waiting up to `wait`
/// (or until shutdown) for the first one; `added` wakes it when a worker
/// records new deliveries; `None` if none came. Their answer is charged to
/// `budget` before they are leased (a 503 leases nothing), not while waiting.
/// While `sending()` (webhook deliveries from before the subscription became
/// a pull one are still in flight) nothing is leased: those rows are owed
/// until their answers are recorded, and leasing them would send them twice.
#[allow(clippy::too_many_arguments)]
pub async fn lease(
    store: &dyn Store,
    name: &str,
    spec: &SubscriptionSpec,
    max: usize,
    wait: Duration,
    mut added: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
    budget: &ResponseBudget,
    sending: impl Fn() -> bool,
) -> Result<Option<(Vec<Leased>, Charge)>, ApiError> {
    let per_stream = spec.ordering == Ordering::Stream;
    let ack_timeout = match spec.target {
        Target::Pull { ack_timeout } => ack_timeout,
        Target::Webhook { .. } => DEFAULT_ACK_TIMEOUT,
    };
    let deadline = Instant::now() + wait;
    loop {
        // Look before leasing: a lease is a write (a commit), an empty look is a read.
        if !sending() && !store.due_deliveries(name, now_us(), 1, per_stream).await?.is_empty() {
            let charge = budget.reserve(PAGE_RESERVE).await?;
            let lease = format!("{:016x}", rand::random::<u64>());
            let lease_us = ack_timeout.as_micros() as i64;
            let leased = store.lease(name, lease.clone(), now_us(), lease_us, max, per_stream, spec.retry).await?;
            if !leased.is_empty() {
                let leased = leased
                    .into_iter()
                    .map(|(delivery, event)| Leased {
                        ack_id: format!("{}.{lease}", delivery.position),
                        delivery,
                        event,
                    })
                    .collect();
                return Ok(Some((leased, charge)));
            }
        }
        if Instant::now() >= deadline || *shutdown.borrow() {
            return Ok(None);
        }
        tokio::select! {
            _ = added.changed() => {}
            () = tokio::time::sleep(POLL) => {}
            () = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}
