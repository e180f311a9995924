//! `herald-load deliver`: webhook delivery measured end to end against one
//! running Herald. An in-process receiver (axum on 127.0.0.1:0) answers 204
//! and notes when each `webhook-id` arrived; publisher and receiver share one
//! process, so their `Instant`s are comparable. Three scenarios:
//!
//! 1. latency: one subscription, open-loop publishing; publish-to-delivery
//!    latency per event (receive - send);
//! 2. fan-out: many subscriptions, a burst of batches; deliveries/s until all
//!    have arrived;
//! 3. dead target: a subscription whose target refuses connections owes
//!    thousands of retries; Herald's memory and the publish rate meanwhile.
//!
//! Every scenario deletes the subscriptions it created, also when it fails.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::post;
use axum::serve::ListenerExt;
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

use crate::machine::{self, PeakRss};
use crate::report::Output;
use crate::targets::herald::{self, HeraldPublisher};
use crate::targets::jetstream;
use crate::workload::{self, Event, EventFactory, Outcome, Publisher, Stats, Workload};

/// How often the driver looks at the receiver's counts while waiting.
const INBOX_POLL: Duration = Duration::from_millis(10);
/// How often it asks Herald for a subscription's status while waiting.
const STATUS_POLL: Duration = Duration::from_millis(250);
/// How often Herald's RSS is sampled during the dead-target scenario.
const RSS_SAMPLE: Duration = Duration::from_millis(100);
/// Progress lines on stderr while waiting for deliveries.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Publish-to-delivery latency to one subscription at a steady rate.
    Latency,
    /// One burst of events delivered to many subscriptions.
    Fanout,
    /// A subscription whose target refuses connections: memory and publish rate.
    Dead,
}

/// The settings of all three scenarios.
#[derive(Debug, Clone)]
pub struct DeliverConfig {
    pub herald_url: String,
    /// The peer of the latency scenario: NATS JetStream (file storage) with a
    /// pull consumer; `None` skips it.
    pub jetstream_url: Option<String>,
    pub herald_pid: u32,
    pub scenarios: Vec<Scenario>,
    /// Concurrent publishers (one connection each) of the steady loads.
    pub publishers: usize,
    pub event_size: usize,
    /// Latency: open-loop events/s, measured window and warm-up.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    /// Latency: longest wait for outstanding deliveries after publishing.
    pub drain_timeout: Duration,
    pub fanout_subscriptions: usize,
    pub fanout_events: u64,
    pub fanout_batch: usize,
    pub fanout_timeout: Duration,
    pub dead_events: u64,
    pub dead_rate: f64,
    pub dead_duration: Duration,
    pub dead_timeout: Duration,
}

pub struct LatencyResult {
    pub rate: f64,
    pub publishers: usize,
    pub event_size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Events acknowledged whose publish was sent in the measured window.
    pub published: u64,
    /// Of those, how many reached the receiver.
    pub delivered: u64,
    /// Receipts of an id already received (at-least-once), whole run.
    pub redeliveries: u64,
    /// Receive - send, per event, in microseconds.
    pub delivery_us: Histogram<u64>,
    /// Per publish request (one event each), as in the publish benchmark.
    pub publish: Stats,
    pub status: SubscriptionStatus,
}

pub struct FanOutResult {
    pub subscriptions: usize,
    pub events: u64,
    pub batch: usize,
    /// Events Herald acknowledged (the deliveries owed are this x subscriptions).
    pub published: u64,
    pub publish_time: Duration,
    pub expected: u64,
    /// Distinct (subscription, event) pairs received.
    pub arrived: u64,
    pub redeliveries: u64,
    /// From the first publish to the last new delivery.
    pub drain: Duration,
    pub timed_out: bool,
}

impl FanOutResult {
    pub fn deliveries_per_s(&self) -> f64 {
        per_second(self.arrived, self.drain)
    }
}

pub struct DeadTargetResult {
    pub events: u64,
    pub batch: usize,
    /// Publishing the events until `status.pending` reached them.
    pub fill_time: Duration,
    pub pending_reached: bool,
    /// Before anything (what the earlier scenarios left), before the dead
    /// subscription (after the baseline load), with it filled, at the end.
    pub rss_start: PeakRss,
    pub rss_before: PeakRss,
    pub rss_filled: PeakRss,
    pub rss_after: PeakRss,
    /// Highest VmRSS sampled every 100 ms in each of [`DEAD_PHASES`].
    pub rss_max_kib: [u64; 3],
    /// VmHWM was reset at the start, so `rss_after.peak_kib` is this
    /// scenario's peak (else it is the process's lifetime peak).
    pub hwm_reset: bool,
    /// The same steady load before the dead subscription existed, and with it.
    pub baseline: Stats,
    pub loaded: Stats,
    pub load_rate: f64,
    pub load_duration: Duration,
    pub status_filled: SubscriptionStatus,
    pub status_after: SubscriptionStatus,
    /// Failed attempts per second between those two status reads.
    pub attempts_per_s: f64,
}

/// The dead-target scenario's phases, for the RSS sampled in each.
pub const DEAD_PHASES: [&str; 3] = ["baseline load", "filling", "load with dead target"];

/// `status` of `GET /v1/subscriptions/{name}`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SubscriptionStatus {
    pub cursor: u64,
    pub lag: u64,
    pub pending: u64,
    pub in_flight: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dead_letters: u64,
    pub last_error: Option<String>,
}

pub async fn run(config: &DeliverConfig, out: &Output) -> anyhow::Result<()> {
    if config.publishers == 0 || config.fanout_subscriptions == 0 || !(1..=1000).contains(&config.fanout_batch) {
        bail!("--publishers and --fanout-subscriptions must be at least 1, --fanout-batch from 1 to 1000");
    }
    let receiver = Receiver::start().await?;
    let mut control = Control::connect(&config.herald_url).await?;
    out.progress(&format!("receiver listening on {}", receiver.addr));
    let mut failed = Vec::new();
    for &scenario in &config.scenarios {
        let result = match scenario {
            Scenario::Latency => {
                out.progress("latency: one subscription, open-loop publishing ...");
                let herald = latency(config, &receiver, &mut control).await;
                let peer = match (&herald, &config.jetstream_url) {
                    (Ok(_), Some(url)) => {
                        out.progress("latency: the same load through NATS JetStream to a pull consumer ...");
                        Some(jetstream_latency(config, url).await)
                    }
                    _ => None,
                };
                herald.and_then(|r| {
                    out.deliver_latency(&r);
                    match peer {
                        Some(Ok(peer)) => {
                            out.deliver_latency_peer("jetstream", &peer, &r.delivery_us);
                            Ok(())
                        }
                        Some(Err(err)) => Err(err.context("the JetStream peer")),
                        None => Ok(()),
                    }
                })
            }
            Scenario::Fanout => {
                out.progress(&format!("fan-out: {} subscriptions ...", config.fanout_subscriptions));
                fan_out(config, &receiver, &mut control).await.map(|r| out.deliver_fanout(&r))
            }
            Scenario::Dead => {
                out.progress("dead target: filling retries ...");
                dead_target(config, &mut control).await.map(|r| out.deliver_dead(&r))
            }
        };
        if let Err(err) = result {
            out.progress(&format!("{scenario:?}: FAILED: {err:#}"));
            failed.push(format!("{scenario:?}").to_lowercase());
        }
    }
    if !failed.is_empty() {
        bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

// ---------------------------------------------------------------- scenarios

async fn latency(config: &DeliverConfig, receiver: &Receiver, control: &mut Control) -> anyhow::Result<LatencyResult> {
    const NAME: &str = "bench-latency";
    receiver.inbox.reset();
    control.delete_subscription(NAME).await?;
    control.put_subscription(NAME, &declaration(&receiver.url(0), fast_retry())).await?;
    let result = async {
        let sends = Arc::new(Mutex::new(Vec::new()));
        let publishers = herald::connect(&config.herald_url, config.publishers)
            .await?
            .into_iter()
            .map(|inner| Recording { inner, sends: sends.clone() })
            .collect();
        let workload = latency_workload(config);
        let started = Instant::now();
        let publish = workload::run(publishers, &workload).await?;
        let sends = std::mem::take(&mut *lock(&sends));

        // Every acknowledged event should arrive; wait for the stragglers.
        let expected = sends.len() as u64;
        wait_for(receiver, expected, config.drain_timeout, "latency").await;
        let (_, receipts, _) = receiver.inbox.counts();
        let received = receiver.inbox.take(0);
        let measure_from = started + config.warmup;
        let window = measure_from..measure_from + config.duration;
        let (delivery_us, published, delivered) = delivery_latencies(&sends, |id| received.get(id).copied(), window);
        let status = control.status(NAME).await?;
        anyhow::Ok(LatencyResult {
            rate: config.rate,
            publishers: config.publishers,
            event_size: config.event_size,
            warmup: config.warmup,
            duration: config.duration,
            published,
            delivered,
            redeliveries: receipts.saturating_sub(received.len() as u64),
            delivery_us,
            publish,
            status,
        })
    }
    .await;
    let cleanup = control.delete_subscription(NAME).await;
    let result = result?;
    cleanup?;
    Ok(result)
}

/// The latency scenario's load through JetStream: publish (acked once
/// stored) and a pull consumer that receives and acks each message.
pub struct PeerLatency {
    pub published: u64,
    pub delivered: u64,
    pub delivery_us: Histogram<u64>,
}

/// The latency scenario's steady load: one event per request, open loop.
fn latency_workload(config: &DeliverConfig) -> Workload {
    Workload {
        concurrency: config.publishers,
        warmup: config.warmup,
        duration: config.duration,
        batch: 1,
        rate: Some(config.rate),
        duplicates: 0.0,
        event_size: config.event_size,
    }
}

async fn jetstream_latency(config: &DeliverConfig, url: &str) -> anyhow::Result<PeerLatency> {
    let workload = latency_workload(config);
    let stream = jetstream::BenchStream::create(url, &workload).await?;
    let arrivals = Arc::new(Mutex::new(HashMap::new()));
    let consumer = stream.record_arrivals(arrivals.clone()).await?;
    let sends = Arc::new(Mutex::new(Vec::new()));
    let publishers = stream
        .publishers(config.publishers)
        .into_iter()
        .map(|inner| Recording { inner, sends: sends.clone() })
        .collect();
    let started = Instant::now();
    workload::run(publishers, &workload).await?;
    let sends = std::mem::take(&mut *lock(&sends));
    let deadline = Instant::now() + config.drain_timeout;
    while (lock(&arrivals).len() as u64) < sends.len() as u64 && Instant::now() < deadline {
        sleep(INBOX_POLL).await;
    }
    consumer.abort();
    let arrivals = std::mem::take(&mut *lock(&arrivals));
    let measure_from = started + config.warmup;
    let (delivery_us, published, delivered) =
        delivery_latencies(&sends, |id| arrivals.get(id).copied(), measure_from..measure_from + config.duration);
    stream.delete().await?;
    Ok(PeerLatency { published, delivered, delivery_us })
}

async fn fan_out(config: &DeliverConfig, receiver: &Receiver, control: &mut Control) -> anyhow::Result<FanOutResult> {
    let names: Vec<String> = (0..config.fanout_subscriptions).map(|i| format!("bench-fanout-{i:03}")).collect();
    receiver.inbox.reset();
    let result = async {
        for (i, name) in names.iter().enumerate() {
            control.delete_subscription(name).await?;
            control.put_subscription(name, &declaration(&receiver.url(i as u32), fast_retry())).await?;
        }
        let mut publisher = herald::connect(&config.herald_url, 1).await?.pop().context("no publisher")?;
        let factory = EventFactory::new(config.event_size);
        let started = Instant::now();
        let outcome = publish_batches(&mut publisher, &factory, config.fanout_events, config.fanout_batch).await?;
        let publish_time = started.elapsed();
        let published = outcome.stored + outcome.duplicates;
        let expected = published * config.fanout_subscriptions as u64;
        let timed_out = !wait_for(receiver, expected, config.fanout_timeout, "fan-out").await;
        let (arrived, receipts, last_new) = receiver.inbox.counts();
        anyhow::Ok(FanOutResult {
            subscriptions: config.fanout_subscriptions,
            events: config.fanout_events,
            batch: config.fanout_batch,
            published,
            publish_time,
            expected,
            arrived,
            redeliveries: receipts - arrived,
            drain: last_new.map_or(Duration::ZERO, |t| t.saturating_duration_since(started)),
            timed_out,
        })
    }
    .await;
    let mut cleanup = Ok(());
    for name in &names {
        if let Err(err) = control.delete_subscription(name).await {
            cleanup = Err(err);
        }
    }
    let result = result?;
    cleanup?;
    Ok(result)
}

async fn dead_target(config: &DeliverConfig, control: &mut Control) -> anyhow::Result<DeadTargetResult> {
    const NAME: &str = "bench-dead";
    const BATCH: usize = 100;
    let pid = config.herald_pid;
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}/dead");
    let retry = json!({"max_attempts": 185, "min_backoff": "1s", "max_backoff": "60s"});
    let steady = Workload {
        concurrency: config.publishers,
        warmup: Duration::ZERO,
        duration: config.dead_duration,
        batch: 1,
        rate: Some(config.dead_rate),
        duplicates: 0.0,
        event_size: config.event_size,
    };

    let hwm_reset = reset_peak_rss(pid);
    let rss_start = machine::peak_rss(pid)?;
    let sampler = RssSampler::start(pid);
    let baseline = workload::run(herald::connect(&config.herald_url, config.publishers).await?, &steady).await?;
    let rss_before = machine::peak_rss(pid)?;

    control.delete_subscription(NAME).await?;
    control.put_subscription(NAME, &declaration(&url, retry)).await?;
    let result = async {
        sampler.phase(1);
        let mut publisher = herald::connect(&config.herald_url, 1).await?.pop().context("no publisher")?;
        let factory = EventFactory::new(config.event_size);
        let started = Instant::now();
        let outcome = publish_batches(&mut publisher, &factory, config.dead_events, BATCH).await?;
        let owed = outcome.stored + outcome.duplicates;
        let deadline = started + config.dead_timeout;
        let mut status_filled = control.status(NAME).await?;
        while status_filled.pending < owed && Instant::now() < deadline {
            sleep(STATUS_POLL).await;
            status_filled = control.status(NAME).await?;
        }
        let fill_time = started.elapsed();
        let pending_reached = status_filled.pending >= owed;
        let filled_at = Instant::now();
        let rss_filled = machine::peak_rss(pid)?;

        sampler.phase(2);
        let loaded = workload::run(herald::connect(&config.herald_url, config.publishers).await?, &steady).await?;
        let status_after = control.status(NAME).await?;
        let attempts_per_s = per_second(status_after.failed.saturating_sub(status_filled.failed), filled_at.elapsed());
        let rss_after = machine::peak_rss(pid)?;
        anyhow::Ok(DeadTargetResult {
            events: config.dead_events,
            batch: BATCH,
            fill_time,
            pending_reached,
            rss_start,
            rss_before,
            rss_filled,
            rss_after,
            rss_max_kib: sampler.max_kib(),
            hwm_reset,
            baseline,
            loaded,
            load_rate: config.dead_rate,
            load_duration: config.dead_duration,
            status_filled,
            status_after,
            attempts_per_s,
        })
    }
    .await;
    drop(sampler);
    let cleanup = control.delete_subscription(NAME).await;
    let result = result?;
    cleanup?;
    Ok(result)
}

// ---------------------------------------------------------------- helpers

/// A subscription to `url` with every event, 16 deliveries in parallel.
fn declaration(url: &str, retry: Value) -> Value {
    json!({
        "target": {"type": "webhook", "url": url},
        "retry": retry,
        "concurrency": 16,
        "ordering": "none",
        "start": "latest",
    })
}

/// For a receiver that answers at once: retry soon, give up soon.
fn fast_retry() -> Value {
    json!({"max_attempts": 10, "min_backoff": "20ms", "max_backoff": "1s", "timeout": "2s"})
}

fn per_second(count: u64, time: Duration) -> f64 {
    if time.is_zero() { 0.0 } else { count as f64 / time.as_secs_f64() }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Publish-to-delivery latency of the events sent inside `window`: the
/// histogram (us), how many were sent in it, and how many of those arrived.
fn delivery_latencies(
    sends: &[(String, Instant)],
    received: impl Fn(&str) -> Option<Instant>,
    window: std::ops::Range<Instant>,
) -> (Histogram<u64>, u64, u64) {
    // 1 us .. 10 min, 3 significant digits, like the publish latencies.
    let mut histogram = Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
    let (mut sent, mut delivered) = (0, 0);
    for (id, at) in sends.iter().filter(|(_, at)| window.contains(at)) {
        sent += 1;
        if let Some(arrived) = received(id) {
            delivered += 1;
            let micros = arrived.saturating_duration_since(*at).as_micros() as u64;
            histogram.saturating_record(micros.max(1));
        }
    }
    (histogram, sent, delivered)
}

/// Waits until the receiver holds `expected` distinct deliveries, or
/// `limit` passed without them; says which.
async fn wait_for(receiver: &Receiver, expected: u64, limit: Duration, what: &str) -> bool {
    let deadline = Instant::now() + limit;
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    loop {
        let (arrived, _, _) = receiver.inbox.counts();
        if arrived >= expected {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            eprintln!("{what}: gave up after {limit:?} with {arrived}/{expected} deliveries");
            return false;
        }
        if now >= next_progress {
            eprintln!("{what}: {arrived}/{expected} deliveries");
            next_progress += PROGRESS_EVERY;
        }
        sleep(INBOX_POLL).await;
    }
}

/// Publishes `count` new events in batches, one request after the other.
async fn publish_batches(
    publisher: &mut HeraldPublisher,
    factory: &EventFactory,
    count: u64,
    batch: usize,
) -> anyhow::Result<Outcome> {
    let mut total = Outcome::default();
    let mut left = count;
    while left > 0 {
        let n = left.min(batch as u64);
        let events: Vec<Event> = (0..n)
            .map(|_| {
                let id = workload::new_id();
                Event { body: factory.body(&id), id, redelivery: false }
            })
            .collect();
        let outcome = publisher.publish(&events).await?;
        total.stored += outcome.stored;
        total.duplicates += outcome.duplicates;
        total.conflicts += outcome.conflicts;
        total.failed += outcome.failed;
        total.overloaded += outcome.overloaded;
        left -= n;
    }
    Ok(total)
}

/// Best effort: writing 5 to /proc/PID/clear_refs resets VmHWM (Linux 4.0+).
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Samples a process's VmRSS until dropped, keeping the highest seen in
/// each phase.
struct RssSampler {
    task: JoinHandle<()>,
    samples: Arc<RssSamples>,
}

#[derive(Default)]
struct RssSamples {
    phase: AtomicUsize,
    max_kib: [AtomicU64; 3],
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let samples = Arc::new(RssSamples::default());
        let shared = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(rss) = machine::peak_rss(pid) {
                    let phase = shared.phase.load(Ordering::Relaxed);
                    shared.max_kib[phase].fetch_max(rss.current_kib, Ordering::Relaxed);
                }
                sleep(RSS_SAMPLE).await;
            }
        });
        Self { task, samples }
    }

    fn phase(&self, phase: usize) {
        self.samples.phase.store(phase.min(2), Ordering::Relaxed);
    }

    fn max_kib(&self) -> [u64; 3] {
        self.samples.max_kib.each_ref().map(|max| max.load(Ordering::Relaxed))
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A publisher that notes, per acknowledged event, when its request was sent.
struct Recording<P> {
    inner: P,
    sends: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl<P: Publisher> Publisher for Recording<P> {
    async fn publish(&mut self, events: &[Event]) -> anyhow::Result<Outcome> {
        let sent = Instant::now();
        let outcome = self.inner.publish(events).await?;
        if outcome.stored == events.len() as u64 {
            lock(&self.sends).extend(events.iter().map(|e| (e.id.clone(), sent)));
        }
        Ok(outcome)
    }
}

/// Subscription requests on one connection of their own.
struct Control(HeraldPublisher);

impl Control {
    async fn connect(herald_url: &str) -> anyhow::Result<Self> {
        Ok(Self(herald::connect(herald_url, 1).await?.pop().context("no connection")?))
    }

    async fn put_subscription(&mut self, name: &str, declaration: &Value) -> anyhow::Result<()> {
        let body = Bytes::from(declaration.to_string());
        let (status, answer) = self.0.request(Method::PUT, &format!("/v1/subscriptions/{name}"), body).await?;
        if !status.is_success() {
            bail!("PUT subscription {name}: {status}: {}", String::from_utf8_lossy(&answer));
        }
        Ok(())
    }

    /// Deletes it if it exists.
    async fn delete_subscription(&mut self, name: &str) -> anyhow::Result<()> {
        let (status, answer) =
            self.0.request(Method::DELETE, &format!("/v1/subscriptions/{name}"), Bytes::new()).await?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            bail!("DELETE subscription {name}: {status}: {}", String::from_utf8_lossy(&answer));
        }
        Ok(())
    }

    async fn status(&mut self, name: &str) -> anyhow::Result<SubscriptionStatus> {
        let (status, answer) = self.0.request(Method::GET, &format!("/v1/subscriptions/{name}"), Bytes::new()).await?;
        if status != StatusCode::OK {
            bail!("GET subscription {name}: {status}: {}", String::from_utf8_lossy(&answer));
        }
        parse_status(&answer)
    }
}

fn parse_status(answer: &[u8]) -> anyhow::Result<SubscriptionStatus> {
    let value: Value = serde_json::from_slice(answer).context("subscription is not JSON")?;
    let status = value.get("status").context("subscription has no status")?;
    let number = |key: &str| status.get(key).and_then(Value::as_u64).unwrap_or(0);
    Ok(SubscriptionStatus {
        cursor: number("cursor"),
        lag: number("lag"),
        pending: number("pending"),
        in_flight: number("in_flight"),
        delivered: number("delivered"),
        failed: number("failed"),
        dead_letters: number("dead_letters"),
        last_error: status.get("last_error").and_then(Value::as_str).map(str::to_owned),
    })
}

// ---------------------------------------------------------------- receiver

/// The webhook receiver: `POST /s/{index}` answers 204 and is noted in the inbox.
struct Receiver {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    server: JoinHandle<()>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the receiver")?;
        let addr = listener.local_addr()?;
        let inbox = Arc::new(Inbox::default());
        let app = Router::new().route("/s/{index}", post(receive)).with_state(inbox.clone());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("receiver stopped: {err}");
            }
        });
        Ok(Self { addr, inbox, server })
    }

    fn url(&self, index: u32) -> String {
        format!("http://{}/s/{index}", self.addr)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The body is read (so the connection stays reusable) before the handler
/// runs: the time noted is when the whole delivery had arrived.
async fn receive(
    State(inbox): State<Arc<Inbox>>,
    Path(index): Path<u32>,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    inbox.record(index, id, at);
    StatusCode::NO_CONTENT
}

/// First arrival of each event id per receiver path, and counts.
#[derive(Default)]
struct Inbox(Mutex<InboxState>);

#[derive(Default)]
struct InboxState {
    first: HashMap<u32, HashMap<String, Instant>>,
    distinct: u64,
    receipts: u64,
    last_new: Option<Instant>,
}

impl Inbox {
    fn record(&self, index: u32, id: &str, at: Instant) {
        let mut state = lock(&self.0);
        state.receipts += 1;
        let first = state.first.entry(index).or_default();
        if !first.contains_key(id) {
            first.insert(id.to_owned(), at);
            state.distinct += 1;
            state.last_new = Some(at);
        }
    }

    /// Distinct deliveries, all receipts, and when the last new one arrived.
    fn counts(&self) -> (u64, u64, Option<Instant>) {
        let state = lock(&self.0);
        (state.distinct, state.receipts, state.last_new)
    }

    /// The first arrivals at one path.
    fn take(&self, index: u32) -> HashMap<String, Instant> {
        lock(&self.0).first.remove(&index).unwrap_or_default()
    }

    fn reset(&self) {
        *lock(&self.0) = InboxState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_count_only_the_window_and_missing_deliveries() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let sends = vec![
            ("warmup".to_string(), ms(0)),
            ("a".to_string(), ms(10)),
            ("b".to_string(), ms(11)),
            ("lost".to_string(), ms(12)),
            ("after".to_string(), ms(30)),
        ];
        let received: HashMap<&str, Instant> =
            [("warmup", ms(1)), ("a", ms(12)), ("b", ms(16)), ("after", ms(31))].into_iter().collect();
        let (histogram, sent, delivered) = delivery_latencies(&sends, |id| received.get(id).copied(), ms(10)..ms(30));
        assert_eq!((sent, delivered), (3, 2));
        assert_eq!(histogram.len(), 2);
        assert_eq!(histogram.value_at_quantile(0.5), 2000);
        assert_eq!(histogram.max(), histogram.highest_equivalent(5000));
    }

    #[test]
    fn a_receipt_before_the_send_counts_as_the_smallest_latency() {
        let t0 = Instant::now();
        let sends = vec![("a".to_string(), t0 + Duration::from_millis(5))];
        let (histogram, _, delivered) = delivery_latencies(&sends, |_| Some(t0), t0..t0 + Duration::from_secs(1));
        assert_eq!((delivered, histogram.min()), (1, 1));
    }

    #[test]
    fn inbox_keeps_first_arrivals_and_counts_redeliveries() {
        let inbox = Inbox::default();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(3);
        inbox.record(0, "a", t0);
        inbox.record(0, "a", later);
        inbox.record(1, "a", later);
        assert_eq!(inbox.counts(), (2, 3, Some(later)));
        assert_eq!(inbox.take(0).get("a"), Some(&t0));
        inbox.reset();
        assert_eq!(inbox.counts(), (0, 0, None));
    }

    #[test]
    fn parses_a_subscription_status() {
        let answer = br#"{"name":"x","status":{"cursor":7,"lag":1,"pending":10000,"in_flight":16,
            "delivered":3,"failed":42,"dead_letters":0,"last_error":"connection refused"}}"#;
        let status = parse_status(answer).unwrap();
        assert_eq!((status.cursor, status.pending, status.in_flight, status.failed), (7, 10000, 16, 42));
        assert_eq!(status.last_error.as_deref(), Some("connection refused"));
        assert!(parse_status(br#"{"name":"x"}"#).is_err());
    }

    #[test]
    fn rates_of_an_empty_time_are_zero() {
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(per_second(10, Duration::from_millis(500)), 20.0);
    }
}
