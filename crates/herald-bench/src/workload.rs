//! The workload every peer gets: `concurrency` workers, each publishing
//! ~1.1 KB events one request at a time (closed loop) or on a fixed schedule
//! (open loop, `--rate`), with a share of redeliveries of ids it already had
//! acknowledged. Peers plug in through [`Publisher`].

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// A request that takes longer than this counts as an error, so a stuck
/// peer cannot hold the run past its deadline for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many of its own acknowledged ids a worker remembers for redeliveries.
const RECENT_IDS: usize = 1024;

#[derive(Debug, Clone)]
pub struct Workload {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub batch: usize,
    /// Open loop: total events/s over all workers.
    pub rate: Option<f64>,
    pub duplicates: f64,
    pub event_size: usize,
}

/// One event as every peer receives it: the id (idempotency key) and the
/// JSON body Herald would get for it.
pub struct Event {
    pub id: String,
    pub body: Bytes,
    /// True when this id was already acknowledged: the peer should answer
    /// "duplicate" and store nothing new.
    pub redelivery: bool,
}

/// What a peer answered for one request (one event, or a batch).
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Events stored for the first time.
    pub stored: u64,
    /// Events the peer recognised as already stored.
    pub duplicates: u64,
    /// Same id, different content (Herald's 409).
    pub conflicts: u64,
    /// Events of a batch the peer rejected individually.
    pub failed: u64,
    /// Times the peer said "overloaded, retry" (503/429) before accepting.
    pub overloaded: u64,
}

/// A peer's client for one worker. Each worker owns its publisher, so a
/// publisher can hold a connection without locking.
pub trait Publisher: Send + 'static {
    fn publish(&mut self, events: &[Event]) -> impl Future<Output = anyhow::Result<Outcome>> + Send;
}

/// Totals of a measured window, merged over all workers.
pub struct Stats {
    pub requests: u64,
    pub events_sent: u64,
    pub duplicates_sent: u64,
    pub outcome: Outcome,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per request, in microseconds (a batch is one request).
    pub latency_us: Histogram<u64>,
}

impl Stats {
    fn new() -> Self {
        Stats {
            requests: 0,
            events_sent: 0,
            duplicates_sent: 0,
            outcome: Outcome::default(),
            errors: 0,
            first_error: None,
            // 1 us .. 10 min, 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
        }
    }

    fn merge(&mut self, other: Stats) -> anyhow::Result<()> {
        self.requests += other.requests;
        self.events_sent += other.events_sent;
        self.duplicates_sent += other.duplicates_sent;
        self.outcome.stored += other.outcome.stored;
        self.outcome.duplicates += other.outcome.duplicates;
        self.outcome.conflicts += other.outcome.conflicts;
        self.outcome.failed += other.outcome.failed;
        self.outcome.overloaded += other.outcome.overloaded;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency_us.add(&other.latency_us).context("merging histograms")?;
        Ok(())
    }

    /// Events the peer acknowledged (stored or recognised as duplicates).
    pub fn events_acked(&self) -> u64 {
        self.outcome.stored + self.outcome.duplicates
    }
}

/// Builds event bodies. The body is a pure function of the id, so a
/// redelivery is byte-for-byte the original (a duplicate, not a conflict).
///
/// The JSON is rendered once, with a placeholder for the id; each body is
/// then the template's pieces joined by the id, so the driver spends next to
/// no CPU on it (it shares the machine with the peer it measures).
pub struct EventFactory {
    /// The template split where the id (a JSON string, quotes included) goes.
    pieces: Vec<String>,
}

impl EventFactory {
    const PLACEHOLDER: &str = "\u{1}id\u{1}";

    pub fn new(event_size: usize) -> Self {
        let unpadded = Self::render(&new_id(), "").len();
        let template = Self::render(Self::PLACEHOLDER, &"x".repeat(event_size.saturating_sub(unpadded)));
        let placeholder = serde_json::to_string(Self::PLACEHOLDER).expect("a string serialises");
        Self { pieces: template.split(&placeholder).map(str::to_owned).collect() }
    }

    fn render(id: &str, padding: &str) -> String {
        let event = serde_json::json!({
            "id": id,
            "source": "bench.load",
            "detail-type": "Order Placed",
            "detail": {
                "order_id": id,
                "customer_id": "customer-42",
                "currency": "EUR",
                "amount_cents": 4200,
                "padding": padding,
            },
        });
        serde_json::to_string(&event).expect("a json! value serialises")
    }

    pub fn body(&self, id: &str) -> Bytes {
        let id = serde_json::to_string(id).expect("a string serialises");
        let mut out = String::with_capacity(self.pieces.iter().map(String::len).sum::<usize>() + 2 * id.len());
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                out.push_str(&id);
            }
            out.push_str(piece);
        }
        Bytes::from(out)
    }
}

/// Ids sort by time (UUIDv7), like the ids a real producer would mint.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// SplitMix64: enough randomness to pick redeliveries, no extra dependency.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// Runs the workload with one publisher per worker and returns the merged
/// stats of the measured window (`workload.duration` long).
pub async fn run<P: Publisher>(publishers: Vec<P>, workload: &Workload) -> anyhow::Result<Stats> {
    let factory = std::sync::Arc::new(EventFactory::new(workload.event_size));
    let start = Instant::now();
    let measure_from = start + workload.warmup;
    let end = measure_from + workload.duration;
    let workers = publishers.len();

    let mut handles = Vec::with_capacity(workers);
    for (index, publisher) in publishers.into_iter().enumerate() {
        // Open loop: each worker sends one request every `interval`, the
        // workers offset evenly so the total rate is smooth.
        let pace = workload.rate.map(|rate| {
            let interval = Duration::from_secs_f64(workers as f64 * workload.batch as f64 / rate);
            (start + interval.mul_f64(index as f64 / workers as f64), interval)
        });
        let plan = WorkerPlan {
            measure_from,
            end,
            pace,
            batch: workload.batch,
            duplicates: workload.duplicates,
            seed: 0x5EED ^ ((index as u64 + 1) << 32),
        };
        handles.push(tokio::spawn(worker(publisher, plan, factory.clone())));
    }

    let mut total = Stats::new();
    for handle in handles {
        total.merge(handle.await.context("a worker panicked")?)?;
    }
    Ok(total)
}

struct WorkerPlan {
    measure_from: Instant,
    end: Instant,
    /// Open loop: first send time and interval.
    pace: Option<(Instant, Duration)>,
    batch: usize,
    duplicates: f64,
    seed: u64,
}

async fn worker<P: Publisher>(mut publisher: P, plan: WorkerPlan, factory: std::sync::Arc<EventFactory>) -> Stats {
    let mut stats = Stats::new();
    let mut rng = Rng(plan.seed);
    let mut recent: VecDeque<String> = VecDeque::with_capacity(RECENT_IDS);
    let mut next_send = plan.pace.map(|(first, _)| first);

    loop {
        // When the request starts counting. Closed loop: now. Open loop: the
        // scheduled time if we are late (the peer's slowness delayed us, so
        // that wait is latency: no coordinated omission), else the moment we
        // woke up (the timer's ~1 ms granularity is the driver's, not the peer's).
        let started = match (&mut next_send, plan.pace) {
            (Some(at), Some((_, interval))) => {
                let scheduled = *at;
                *at += interval;
                if scheduled >= plan.end {
                    break;
                }
                if scheduled > Instant::now() {
                    sleep_until(scheduled).await;
                    Instant::now()
                } else {
                    scheduled
                }
            }
            _ => Instant::now(),
        };
        if started >= plan.end {
            break;
        }

        let events: Vec<Event> = (0..plan.batch)
            .map(|_| {
                if !recent.is_empty() && rng.next_f64() < plan.duplicates {
                    let id = recent[rng.below(recent.len())].clone();
                    Event { body: factory.body(&id), id, redelivery: true }
                } else {
                    let id = new_id();
                    Event { body: factory.body(&id), id, redelivery: false }
                }
            })
            .collect();

        let result = timeout(REQUEST_TIMEOUT, publisher.publish(&events)).await;
        let done = Instant::now();
        let measured = done >= plan.measure_from && done <= plan.end;
        let ok = matches!(result, Ok(Ok(_)));

        if measured {
            stats.requests += 1;
            stats.events_sent += events.len() as u64;
            stats.duplicates_sent += events.iter().filter(|e| e.redelivery).count() as u64;
            match result {
                Ok(Ok(outcome)) => {
                    stats.outcome.stored += outcome.stored;
                    stats.outcome.duplicates += outcome.duplicates;
                    stats.outcome.conflicts += outcome.conflicts;
                    stats.outcome.failed += outcome.failed;
                    stats.outcome.overloaded += outcome.overloaded;
                    let micros = done.duration_since(started).as_micros() as u64;
                    stats.latency_us.saturating_record(micros.max(1));
                }
                Ok(Err(err)) => stats.note_error(format!("{err:#}")),
                Err(_) => stats.note_error(format!("no answer within {REQUEST_TIMEOUT:?}")),
            }
        }

        if ok {
            // Only acknowledged ids may be redelivered: that is what makes
            // them duplicates rather than first deliveries.
            for event in events.into_iter().filter(|e| !e.redelivery) {
                if recent.len() == RECENT_IDS {
                    recent.pop_front();
                }
                recent.push_back(event.id);
            }
        } else {
            // Do not spin on a peer that refuses connections.
            sleep(Duration::from_millis(10)).await;
        }
    }
    stats
}

impl Stats {
    fn note_error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_requested_size_and_depend_only_on_the_id() {
        let factory = EventFactory::new(1100);
        let id = new_id();
        let body = factory.body(&id);
        assert_eq!(body.len(), 1100);
        assert_eq!(body, factory.body(&id));
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["detail-type"], "Order Placed");
        for id in [id.as_str(), "needs \"escaping\" \\ here"] {
            let value: serde_json::Value = serde_json::from_slice(&factory.body(id)).unwrap();
            assert_eq!((&value["id"], &value["detail"]["order_id"]), (&id.into(), &id.into()));
        }
    }

    #[test]
    fn rng_stays_in_range() {
        let mut rng = Rng(7);
        for _ in 0..10_000 {
            assert!(rng.below(10) < 10);
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
