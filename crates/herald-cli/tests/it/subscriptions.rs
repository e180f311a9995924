//! Subscriptions end to end: the real binary delivering to real receivers on
//! loopback, through failures, timeouts, 410s, restarts and `kill -9`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::harness::{Herald, SmallDisk, data_dir, event, pointers};
use crate::receiver::{Hit, Receiver, Reply};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LOOPBACK_ALLOWED: &[(&str, &str)] = &[("HERALD_ALLOW_PRIVATE_TARGETS", "true")];

fn start() -> (tempfile::TempDir, Herald) {
    let dir = data_dir();
    let herald = Herald::start_with_env(dir.path(), LOOPBACK_ALLOWED);
    (dir, herald)
}

/// A webhook subscription to `url` with fast retries; `extra` overrides fields.
fn webhook(url: &str, extra: Value) -> Value {
    let mut spec = json!({
        "target": {"type": "webhook", "url": url, "secret": SECRET},
        "retry": {"min_backoff": "20ms", "max_backoff": "100ms", "timeout": "2s"},
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

async fn subscribe(h: &Herald, name: &str, spec: Value) {
    let (status, body) = h.put(&format!("/v1/subscriptions/{name}"), &spec).await;
    assert_eq!(status, 201, "{body}");
}

async fn publish(h: &Herald, event: Value) {
    let (status, body) = h.post("/v1/events", &event).await;
    assert_eq!(status, 201, "{body}");
}

fn stream_event(id: &str, stream: &str, n: u64) -> Value {
    json!({"id": id, "source": "test.shop", "detail-type": "Order Placed", "stream": stream, "detail": {"n": n}})
}

/// A receiver answering `down` until the returned flag is set, then `up`.
async fn switchable_receiver(up: u16, down: u16) -> (Arc<AtomicBool>, Receiver) {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let receiver =
        Receiver::start(move |_, _| Reply::Status(if flag.load(Ordering::SeqCst) { up } else { down })).await;
    (healthy, receiver)
}

/// Checks the Standard Webhooks signature with HMAC-SHA256 computed here.
fn signature_is_valid(hit: &Hit) -> bool {
    let key = STANDARD.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", hit.event_id(), hit.header("webhook-timestamp")).as_bytes());
    mac.update(&hit.raw);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    hit.header("webhook-signature").split(' ').any(|s| s == expected)
}

async fn status(h: &Herald, name: &str) -> Value {
    let (code, body) = h.get(&format!("/v1/subscriptions/{name}")).await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Waits until the subscription's status satisfies `done`.
async fn wait_status(h: &Herald, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let body = status(h, name).await;
        if done(&body) {
            return body;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Attempts made while the disk is full cannot be recorded: their
/// deliveries stay in flight until they are, rather than being sent again
/// as fast as the target answers.
#[tokio::test]
async fn on_a_full_disk_finished_deliveries_wait_to_be_recorded_and_are_not_sent_again() {
    let disk = SmallDisk::new(24 << 20);
    let h = Herald::start_on_small_disk(&disk, LOOPBACK_ALLOWED);
    // Answers come back 3 s after the requests: the disk is full by then.
    let receiver = Receiver::start(|_, _| Reply::Slow(Duration::from_secs(3), 204)).await;
    let retry = json!({"min_backoff": "20ms", "max_backoff": "100ms", "timeout": "10s"});
    subscribe(&h, "slow", webhook(&receiver.url(), json!({"retry": retry}))).await;
    for i in 0..5 {
        publish(&h, event(&format!("e{i}"), json!({"i": i}))).await;
    }
    // All five are at the receiver, their answers not yet back: fill the disk.
    receiver.wait_for("five deliveries under way", |hits| hits.len() >= 5).await;
    let ballast = disk.fill("ballast");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(receiver.hits().len(), 5, "nothing sent again while the attempts cannot be recorded");
    assert_eq!(status(&h, "slow").await["status"]["delivered"], 0, "not recorded on a full disk");

    std::fs::remove_file(&ballast).unwrap();
    wait_status(&h, "slow", "the attempts recorded once space is freed", |s| s["status"]["delivered"] == 5).await;
    let mut ids: Vec<String> = receiver.hits().iter().map(|hit| hit.event_id().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4"], "each delivered once");
}

#[tokio::test]
async fn matching_events_are_delivered_signed_with_their_id() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(204)).await;
    let pattern = json!({"detail-type": ["Order Placed"], "detail": {"amount": [{"numeric": [">", 100]}]}});
    subscribe(&h, "big-orders", webhook(&receiver.url(), json!({"pattern": pattern}))).await;
    publish(&h, event("small", json!({"amount": 5}))).await;
    publish(&h, event("big", json!({"amount": 500}))).await;
    publish(&h, event("huge", json!({"amount": 5000}))).await;

    let hits = receiver.wait_for("two deliveries", |hits| hits.len() >= 2).await;
    let mut ids: Vec<&str> = hits.iter().map(Hit::event_id).collect();
    ids.sort();
    assert_eq!(ids, ["big", "huge"]);
    for hit in &hits {
        assert!(signature_is_valid(hit), "signature of {}", hit.event_id());
        assert_eq!(hit.body["id"], hit.event_id(), "the body is the event");
        assert_eq!(hit.body["detail-type"], "Order Placed");
        assert!(hit.body["position"].as_u64().is_some());
        assert_eq!(hit.header("content-type"), "application/json");
    }
    let s = wait_status(&h, "big-orders", "delivered counted", |s| s["status"]["delivered"] == 2).await;
    assert_eq!((s["status"]["lag"].as_u64(), s["status"]["pending"].as_u64()), (Some(0), Some(0)), "{s}");
    assert_eq!(s["state"], "active");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.hits().len(), 2, "nothing is delivered twice");

    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = |name: &str, labels: &[&str]| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
            .map(str::to_owned)
    };
    let delivered = line("herald_deliveries_total", &[r#"subscription="big-orders""#, r#"outcome="delivered""#]);
    assert!(delivered.as_deref().is_some_and(|l| l.ends_with(" 2")), "{metrics}");
    let timed = line("herald_delivery_seconds_count", &[r#"subscription="big-orders""#]);
    assert!(timed.as_deref().is_some_and(|l| l.ends_with(" 2")), "{metrics}");
    assert!(line("herald_subscription_lag", &[r#"subscription="big-orders""#]).is_some(), "{metrics}");

    // A deleted subscription's series go with it (kept, they would grow
    // memory with every subscription ever created).
    assert_eq!(h.delete("/v1/subscriptions/big-orders").await.0, 204);
    let start = std::time::Instant::now();
    loop {
        let metrics = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if !metrics.contains(r#"subscription="big-orders""#) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "series of a deleted subscription remain:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_id_outside_printable_ascii_is_sent_percent_encoded_and_signed_as_sent() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(204)).await;
    subscribe(&h, "all", webhook(&receiver.url(), json!({}))).await;
    publish(&h, event("café 50%", json!({}))).await;
    let hits = receiver.wait_for("one delivery", |hits| hits.len() == 1).await;
    assert_eq!(hits[0].event_id(), "caf%C3%A9%2050%25", "a header any server reads alike");
    assert_eq!(hits[0].body["id"], "café 50%", "the body keeps the id");
    assert!(signature_is_valid(&hits[0]), "signed over the id as sent");
}

#[tokio::test]
async fn a_failing_receiver_is_retried_until_it_recovers() {
    let (_dir, h) = start();
    let receiver =
        Receiver::start(|_, earlier| if earlier < 3 { Reply::Status(500) } else { Reply::Status(200) }).await;
    subscribe(&h, "flaky", webhook(&receiver.url(), json!({}))).await;
    publish(&h, event("e1", json!({}))).await;

    let hits = receiver.wait_for("four attempts", |hits| hits.len() >= 4).await;
    assert!(hits.iter().all(|hit| hit.event_id() == "e1"));
    let attempts: Vec<&str> = hits.iter().map(|hit| hit.header("herald-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);
    wait_status(&h, "flaky", "delivered", |s| s["status"]["delivered"] == 1).await;

    let (_, log) = h.get("/v1/subscriptions/flaky/attempts?event_id=e1").await;
    let log = log["attempts"].as_array().unwrap();
    let outcomes: Vec<(&str, u64)> =
        log.iter().map(|a| (a["outcome"].as_str().unwrap(), a["status"].as_u64().unwrap())).collect();
    assert_eq!(outcomes, [("delivered", 200), ("failed", 500), ("failed", 500), ("failed", 500)], "newest first");
    assert_eq!(log[1]["response"], "receiver says hi");
    let (_, failed) = h.get("/v1/subscriptions/flaky/attempts?outcome=failed").await;
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 3);
    let s = status(&h, "flaky").await;
    assert_eq!((s["status"]["failed"].as_u64(), s["status"]["last_error"].as_str()), (Some(3), Some("HTTP 500")));
}

#[tokio::test]
async fn exhausted_retries_dead_letter_and_redrive_delivers() {
    let (_dir, h) = start();
    let (healthy, receiver) = switchable_receiver(200, 503).await;
    subscribe(&h, "dlq", webhook(&receiver.url(), json!({"retry": {"max_attempts": 2, "min_backoff": "10ms"}}))).await;
    publish(&h, event("d1", json!({}))).await;
    publish(&h, event("d2", json!({}))).await;

    wait_status(&h, "dlq", "two dead letters", |s| s["status"]["dead_letters"] == 2).await;
    assert_eq!(receiver.hits().len(), 4, "two attempts each");
    let (_, dead) = h.get("/v1/subscriptions/dlq/dead-letters").await;
    let dead = dead["dead_letters"].as_array().unwrap().clone();
    assert_eq!(dead.iter().map(|d| d["event_id"].as_str().unwrap()).collect::<Vec<_>>(), ["d1", "d2"]);
    assert!(dead[0]["reason"].as_str().unwrap().contains("HTTP 503"), "{dead:?}");
    assert_eq!(dead[0]["attempts"], 2);

    // A selection that is not one is refused at the member at fault, and redrives nothing.
    for (body, pointer) in [(json!({"ids": ["d2"], "x": 1}), "/x"), (json!({"ids": ["d2", 1]}), "/ids/1")] {
        let (code, problem) = h.post("/v1/subscriptions/dlq/dead-letters/redrive", &body).await;
        assert_eq!((code, pointers(&problem)), (422, vec![pointer.to_owned()]), "{problem}");
    }
    assert_eq!(status(&h, "dlq").await["status"]["dead_letters"], 2);

    healthy.store(true, Ordering::SeqCst);
    let (code, redriven) = h.post("/v1/subscriptions/dlq/dead-letters/redrive", &json!({"ids": ["d2"]})).await;
    assert_eq!((code, redriven), (200, json!({"redriven": 1})));
    receiver.wait_for("d2 delivered", |hits| hits.iter().filter(|hit| hit.event_id() == "d2").count() == 3).await;
    let s = wait_status(&h, "dlq", "d2 delivered", |s| s["status"]["delivered"] == 1).await;
    assert_eq!(s["status"]["dead_letters"], 1, "d1 is still dead");

    let (code, purged) = h.delete("/v1/subscriptions/dlq/dead-letters").await;
    assert_eq!((code, purged), (200, json!({"purged": 1})));
    assert_eq!(status(&h, "dlq").await["status"]["dead_letters"], 0);
}

#[tokio::test]
async fn a_410_disables_the_subscription_until_resumed() {
    let (_dir, h) = start();
    let first = AtomicBool::new(true);
    let receiver =
        Receiver::start(move |_, _| Reply::Status(if first.swap(false, Ordering::SeqCst) { 410 } else { 200 })).await;
    subscribe(&h, "gone", webhook(&receiver.url(), json!({}))).await;
    publish(&h, event("g1", json!({}))).await;
    let s = wait_status(&h, "gone", "disabled", |s| s["state"] == "disabled").await;
    assert_eq!(s["status"]["pending"], 1, "the event is still owed");
    publish(&h, event("g2", json!({}))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 1, "nothing is delivered while disabled");

    let (code, resumed) = h.post("/v1/subscriptions/gone/resume", &json!({})).await;
    assert_eq!((code, resumed["state"].as_str()), (200, Some("active")));
    let s = wait_status(&h, "gone", "both delivered", |s| s["status"]["delivered"] == 2).await;
    assert_eq!(s["state"], "active");
    let hits = receiver.hits();
    let mut ids: Vec<&str> = hits[1..].iter().map(Hit::event_id).collect();
    ids.sort();
    assert_eq!(ids, ["g1", "g2"]);
}

#[tokio::test]
async fn a_receiver_that_times_out_is_retried() {
    let (_dir, h) = start();
    let receiver =
        Receiver::start(
            |_, earlier| {
                if earlier == 0 { Reply::Slow(Duration::from_secs(3), 200) } else { Reply::Status(200) }
            },
        )
        .await;
    subscribe(&h, "slow", webhook(&receiver.url(), json!({"retry": {"timeout": "200ms", "min_backoff": "10ms"}})))
        .await;
    publish(&h, event("t1", json!({}))).await;
    wait_status(&h, "slow", "delivered", |s| s["status"]["delivered"] == 1).await;
    let (_, log) = h.get("/v1/subscriptions/slow/attempts?outcome=failed").await;
    let failed = &log["attempts"][0];
    assert!(failed["error"].as_str().unwrap().contains("timed out"), "{failed}");
    assert!(failed["status"].is_null());
}

#[tokio::test]
async fn a_receiver_that_is_down_then_up_gets_everything() {
    let (_dir, h) = start();
    // Find a free port, then leave it closed for a while.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hook");
    subscribe(&h, "later", webhook(&url, json!({}))).await;
    for i in 0..5 {
        publish(&h, event(&format!("u{i}"), json!({}))).await;
    }
    wait_status(&h, "later", "failed attempts", |s| s["status"]["failed"].as_u64() >= Some(5)).await;
    let receiver = Receiver::start_on(format!("127.0.0.1:{port}").parse().unwrap(), |_, _| Reply::Status(200)).await;
    wait_status(&h, "later", "all delivered", |s| s["status"]["delivered"] == 5).await;
    let mut ids: Vec<String> = receiver.hits().iter().map(|hit| hit.event_id().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids, ["u0", "u1", "u2", "u3", "u4"]);
    let (_, log) = h.get("/v1/subscriptions/later/attempts?outcome=failed&limit=1").await;
    assert!(log["attempts"][0]["error"].as_str().unwrap().contains("error"), "{log}");
}

#[tokio::test]
async fn retry_after_from_the_receiver_is_honoured() {
    let (_dir, h) = start();
    let receiver =
        Receiver::start(|_, earlier| if earlier == 0 { Reply::RetryAfter(429, 1) } else { Reply::Status(200) }).await;
    subscribe(&h, "polite", webhook(&receiver.url(), json!({}))).await;
    publish(&h, event("r1", json!({}))).await;
    let hits = receiver.wait_for("the retry", |hits| hits.len() >= 2).await;
    let waited = hits[1].at - hits[0].at;
    assert!(waited >= Duration::from_millis(950), "retried after {waited:?}, not after Retry-After: 1");
}

#[tokio::test]
async fn per_stream_order_holds_while_one_stream_fails() {
    let (_dir, h) = start();
    // The first event of stream "a" fails three times, each failure taking
    // 50 ms (so a0's retries cannot all finish before stream b has had its
    // turn, whatever the jitter); "b" is healthy.
    let receiver = Receiver::start(|hit, earlier| {
        if hit.event_id() == "a0" && earlier < 3 {
            Reply::Slow(Duration::from_millis(50), 500)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    subscribe(&h, "ordered", webhook(&receiver.url(), json!({"ordering": "stream", "concurrency": 8}))).await;
    // One request, so both streams are owed from the same moment.
    let batch: Vec<Value> =
        (0..4).flat_map(|n| [stream_event(&format!("a{n}"), "a", n), stream_event(&format!("b{n}"), "b", n)]).collect();
    let (code, answer) = h.post("/v1/events", &json!(batch)).await;
    assert_eq!((code, answer["failed"].as_u64()), (200, Some(0)), "{answer}");
    let hits = receiver.wait_for("all of both streams", |hits| hits.len() >= 11).await;
    let delivered = |stream: &str| -> Vec<String> {
        let mut seen = Vec::new();
        for hit in &hits {
            let id = hit.event_id().to_owned();
            if id.starts_with(stream) && !seen.contains(&id) {
                seen.push(id);
            }
        }
        seen
    };
    assert_eq!(delivered("a"), ["a0", "a1", "a2", "a3"], "stream a in order despite failures");
    assert_eq!(delivered("b"), ["b0", "b1", "b2", "b3"]);
    let first_a1 = hits.iter().position(|hit| hit.event_id() == "a1").unwrap();
    let last_a0 = hits.iter().rposition(|hit| hit.event_id() == "a0").unwrap();
    assert!(first_a1 > last_a0, "a1 waits until a0 succeeded");
    let last_b = hits.iter().rposition(|hit| hit.event_id() == "b3").unwrap();
    assert!(last_b < last_a0, "stream b is not held back by stream a");
}

#[tokio::test]
async fn pause_holds_deliveries_and_resume_releases_them() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    subscribe(&h, "p", webhook(&receiver.url(), json!({}))).await;
    let (code, paused) = h.post("/v1/subscriptions/p/pause", &json!({})).await;
    assert_eq!((code, paused["state"].as_str()), (200, Some("paused")));
    publish(&h, event("p1", json!({}))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.hits().is_empty(), "nothing while paused");
    assert_eq!(status(&h, "p").await["status"]["lag"], 1);
    h.post("/v1/subscriptions/p/resume", &json!({})).await;
    receiver.wait_for("p1", |hits| hits.len() == 1).await;
}

#[tokio::test]
async fn internal_targets_are_refused_unless_allowed() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    let by_name = format!("http://localhost:{}/hook", receiver.addr.port());
    subscribe(&h, "literal", webhook(&receiver.url(), json!({"retry": {"max_attempts": 1}}))).await;
    subscribe(&h, "named", webhook(&by_name, json!({"retry": {"max_attempts": 1}}))).await;
    publish(&h, event("x", json!({}))).await;
    for name in ["literal", "named"] {
        let s = wait_status(&h, name, "a dead letter", |s| s["status"]["dead_letters"] == 1).await;
        assert!(s["status"]["last_error"].as_str().unwrap().contains("internal address"), "{s}");
    }
    assert!(receiver.hits().is_empty(), "the receiver was never reached");
}

#[tokio::test]
async fn declarations_are_validated_idempotent_and_survive_restarts() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    let (code, problem) = h
        .put(
            "/v1/subscriptions/bad",
            &webhook(&receiver.url(), json!({"pattern": {"detail": {"n": [{"numeric": [">", "x"]}]}}})),
        )
        .await;
    assert_eq!(code, 422, "{problem}");
    assert!(pointers(&problem)[0].starts_with("/pattern/detail/n"), "{problem}");
    assert_eq!(problem["type"], "urn:herald:problem:invalid-request", "{problem}");
    let (code, problem) =
        h.put("/v1/subscriptions/bad", &json!({"target": {"type": "webhook", "url": "ftp://x"}})).await;
    assert_eq!((code, pointers(&problem)), (422, vec!["/target/url".to_owned()]));
    let (code, _) = h.put("/v1/subscriptions/no%20spaces", &webhook(&receiver.url(), json!({}))).await;
    assert_eq!(code, 400);
    assert_eq!(h.get("/v1/subscriptions/missing").await.0, 404);

    // Without a secret one is generated, and kept when the same declaration is applied again.
    let spec = json!({"target": {"type": "webhook", "url": receiver.url()}});
    let (code, first) = h.put("/v1/subscriptions/s", &spec).await;
    assert_eq!(code, 201);
    let secret = first["target"]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let (code, again) = h.put("/v1/subscriptions/s", &spec).await;
    assert_eq!((code, again["target"]["secret"].as_str()), (200, Some(secret.as_str())));
    assert_eq!(again["retry"]["max_attempts"], 185, "defaults are spelled out");

    publish(&h, event("k1", json!({}))).await;
    receiver.wait_for("k1", |hits| hits.len() == 1).await;
    let h = h.restart();
    publish(&h, event("k2", json!({}))).await;
    let hits = receiver.wait_for("k2", |hits| hits.len() == 2).await;
    assert_eq!(hits[1].event_id(), "k2", "the cursor survived: k1 is not redelivered");
    let (_, all) = h.get("/v1/subscriptions").await;
    assert_eq!(all["subscriptions"].as_array().unwrap().len(), 1);
    assert_eq!(h.delete("/v1/subscriptions/s").await.0, 204);
    assert_eq!(h.delete("/v1/subscriptions/s").await.0, 404);
}

#[tokio::test]
async fn kill_9_during_deliveries_loses_none_and_keeps_stream_order() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Slow(Duration::from_millis(5), 200)).await;
    subscribe(&h, "all", webhook(&receiver.url(), json!({"concurrency": 16}))).await;
    subscribe(&h, "ordered", webhook(&receiver.url(), json!({"ordering": "stream"}))).await;
    let mut expected = Vec::new();
    let mut batch = Vec::new();
    for n in 0..300 {
        let id = format!("k{n}");
        batch.push(stream_event(&id, &format!("s{}", n % 5), n));
        expected.push(id);
    }
    for chunk in batch.chunks(100) {
        let (code, _) = h.post("/v1/events", &Value::Array(chunk.to_vec())).await;
        assert_eq!(code, 200);
    }
    receiver.wait_for("some deliveries", |hits| hits.len() >= 50).await;
    let h = h.crash_and_restart();

    // Every event reaches the receiver at least once per subscription. Each
    // subscription signs alike, so count per event id: two subscriptions, two at least.
    receiver
        .wait_for("every event twice", |hits| {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for hit in hits {
                *counts.entry(hit.event_id()).or_default() += 1;
            }
            expected.iter().all(|id| counts.get(id.as_str()).copied().unwrap_or(0) >= 2)
        })
        .await;
    for name in ["all", "ordered"] {
        let s = wait_status(&h, name, "nothing owed", |s| s["status"]["pending"] == 0 && s["status"]["lag"] == 0).await;
        assert!(s["status"]["delivered"].as_u64().unwrap() > 0, "{s}");
    }
    // Per stream, the ordered subscription's deliveries (after the restart,
    // its first delivery of each event) never go backwards past an event it had not delivered yet.
    let (_, log) = h.get("/v1/subscriptions/ordered/attempts?outcome=delivered&limit=1000").await;
    let mut delivered: Vec<(u64, String)> = log["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["position"].as_u64().unwrap(), a["event_id"].as_str().unwrap().to_owned()))
        .collect();
    delivered.reverse(); // oldest first
    let mut last_per_stream: HashMap<u64, u64> = HashMap::new();
    for (position, id) in &delivered {
        let n: u64 = id[1..].parse().unwrap();
        let last = last_per_stream.entry(n % 5).or_insert(0);
        assert!(*position > *last, "stream s{} went back from position {last} to {position}", n % 5);
        *last = *position;
    }
    assert_eq!(delivered.len(), 300, "each event recorded as delivered once for the ordered subscription");
}

async fn pull(h: &Herald, name: &str, request: Value) -> Vec<Value> {
    let (code, body) = h.post(&format!("/v1/subscriptions/{name}/pull"), &request).await;
    assert_eq!(code, 200, "{body}");
    body["messages"].as_array().unwrap().clone()
}

fn ack_ids(messages: &[Value]) -> Value {
    json!({"ack_ids": messages.iter().map(|m| m["ack_id"].clone()).collect::<Vec<_>>()})
}

#[tokio::test]
async fn competing_pull_consumers_share_the_work_and_expired_leases_come_back() {
    let (_dir, h) = start();
    subscribe(&h, "queue", json!({"target": {"type": "pull", "ack_timeout": "2s"}, "start": "earliest"})).await;
    let batch: Vec<Value> = (0..20).map(|i| event(&format!("q{i}"), json!({"i": i}))).collect();
    assert_eq!(h.post("/v1/events", &Value::Array(batch)).await.0, 200);

    // Two consumers at once: every message goes to exactly one of them.
    let (a, b) = tokio::join!(
        pull(&h, "queue", json!({"max": 12, "wait": "2s"})),
        pull(&h, "queue", json!({"max": 12, "wait": "2s"}))
    );
    let ids = |messages: &[Value]| -> Vec<String> {
        messages.iter().map(|m| m["event"]["id"].as_str().unwrap().to_owned()).collect()
    };
    let mut more = Vec::new();
    while ids(&a).len() + ids(&b).len() + more.len() < 20 {
        more.extend(pull(&h, "queue", json!({"max": 20, "wait": "1s"})).await);
    }
    let mut got: Vec<String> = [ids(&a), ids(&b), ids(&more)].concat();
    got.sort();
    let handed_out = got.len();
    got.dedup();
    assert_eq!((handed_out, got.len()), (20, 20), "twenty distinct messages, none leased twice");
    assert!(a.iter().chain(&b).all(|m| m["attempt"] == 1 && m["replay"] == false));

    // Ack all but q0; its lease runs out and it comes back as attempt 2.
    let everything: Vec<Value> = a.iter().chain(&b).chain(&more).cloned().collect();
    let (held, rest): (Vec<Value>, Vec<Value>) = everything.into_iter().partition(|m| m["event"]["id"] == "q0");
    let (code, acked) = h.post("/v1/subscriptions/queue/ack", &ack_ids(&rest)).await;
    assert_eq!((code, acked), (200, json!({"acked": 19})));
    let again = pull(&h, "queue", json!({"max": 5, "wait": "5s"})).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0]["event"]["id"].as_str(), again[0]["attempt"].as_u64()), (Some("q0"), Some(2)));
    let (_, stale) = h.post("/v1/subscriptions/queue/ack", &ack_ids(&held)).await;
    assert_eq!(stale, json!({"acked": 0}), "an expired lease cannot ack");
    h.post("/v1/subscriptions/queue/ack", &ack_ids(&again)).await;
    let s = status(&h, "queue").await;
    assert_eq!((s["status"]["delivered"].as_u64(), s["status"]["pending"].as_u64()), (Some(20), Some(0)), "{s}");
}

#[tokio::test]
async fn a_long_poll_waits_for_the_next_event_and_nack_delays_it() {
    let (_dir, h) = start();
    subscribe(&h, "waiter", json!({"target": {"type": "pull"}, "ordering": "stream"})).await;
    let started = std::time::Instant::now();
    let (messages, ()) = tokio::join!(pull(&h, "waiter", json!({"max": 10, "wait": "10s"})), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        publish(&h, stream_event("w0", "s", 0)).await;
        publish(&h, stream_event("w1", "s", 1)).await;
    });
    assert!(started.elapsed() < Duration::from_secs(5), "answered when the event came");
    assert_eq!(messages.len(), 1, "per-stream order: only the head of the stream is handed out");
    assert_eq!(messages[0]["event"]["id"], "w0");

    let (code, nacked) =
        h.post("/v1/subscriptions/waiter/nack", &json!({"delay": "400ms", "ack_ids": [messages[0]["ack_id"]]})).await;
    assert_eq!((code, nacked), (200, json!({"nacked": 1})));
    assert!(pull(&h, "waiter", json!({"max": 10})).await.is_empty(), "w0 waits out its delay and w1 waits for w0");
    let again = pull(&h, "waiter", json!({"max": 10, "wait": "5s"})).await;
    assert_eq!((again[0]["event"]["id"].as_str(), again[0]["attempt"].as_u64()), (Some("w0"), Some(2)));
    let (code, problem) = h.post("/v1/subscriptions/waiter/ack", &json!({"ack_ids": ["nonsense"]})).await;
    assert_eq!((code, pointers(&problem)), (422, vec!["/ack_ids/0".to_owned()]));
    assert_eq!(problem["title"], "Invalid request");
}

#[tokio::test]
async fn pulling_a_webhook_subscription_is_a_conflict() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    subscribe(&h, "hook", webhook(&receiver.url(), json!({}))).await;
    let (code, problem) = h.post("/v1/subscriptions/hook/pull", &json!({})).await;
    assert_eq!((code, problem["type"].as_str()), (409, Some("urn:herald:problem:wrong-state")), "{problem}");
    assert_eq!(h.post("/v1/subscriptions/nope/pull", &json!({})).await.0, 404);
}

#[tokio::test]
async fn a_subscription_turned_to_pull_does_not_lease_what_its_webhook_still_sends() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Slow(Duration::from_millis(1500), 204)).await;
    subscribe(&h, "switch", webhook(&receiver.url(), json!({"concurrency": 4}))).await;
    for i in 0..4 {
        publish(&h, event(&format!("w{i}"), json!({}))).await;
    }
    receiver.wait_for("four deliveries in flight", |hits| hits.len() == 4).await;
    let (code, _) = h.put("/v1/subscriptions/switch", &json!({"target": {"type": "pull"}})).await;
    assert_eq!(code, 200);
    publish(&h, event("p0", json!({}))).await;

    // The pull waits for the webhook's answers to be recorded; what they
    // delivered is not leased again.
    let messages = pull(&h, "switch", json!({"max": 10, "wait": "5s"})).await;
    let ids: Vec<&str> = messages.iter().map(|m| m["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["p0"], "only what the webhook did not send");
    assert_eq!(receiver.hits().len(), 4);
}

#[tokio::test]
async fn replay_redelivers_a_range_without_moving_the_cursor() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    let pattern = json!({"detail": {"keep": [true]}});
    subscribe(&h, "r", webhook(&receiver.url(), json!({"pattern": pattern}))).await;
    for i in 1..=6 {
        publish(&h, event(&format!("e{i}"), json!({"keep": i != 3}))).await;
    }
    receiver.wait_for("live deliveries", |hits| hits.len() == 5).await;

    let (code, report) =
        h.post("/v1/subscriptions/r/replay", &json!({"from": {"position": 2}, "to": {"position": 4}})).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        (report["scanned"].as_u64(), report["matched"].as_u64(), report["enqueued"].as_u64()),
        (Some(3), Some(2), Some(2))
    );
    let hits = receiver.wait_for("replayed deliveries", |hits| hits.len() == 7).await;
    let mut replayed: Vec<&str> = hits[5..].iter().map(Hit::event_id).collect();
    replayed.sort();
    assert_eq!(replayed, ["e2", "e4"], "the matching events of the range, pattern applied");
    assert!(hits[5..].iter().all(|hit| hit.header("herald-replay") == "true"));
    assert!(hits[..5].iter().all(|hit| hit.header("herald-replay").is_empty()));

    publish(&h, event("e7", json!({"keep": true}))).await;
    let hits = receiver.wait_for("the next live event", |hits| hits.len() == 8).await;
    assert_eq!(hits[7].event_id(), "e7", "the live cursor did not move back");
    let (code, problem) = h.post("/v1/subscriptions/r/replay", &json!({"from": {"when": 1}})).await;
    assert_eq!((code, pointers(&problem)), (422, vec!["/from".to_owned()]));
    let (code, problem) = h.post("/v1/subscriptions/r/replay", &json!({"from": {"time": "yesterday"}})).await;
    assert_eq!((code, pointers(&problem)), (422, vec!["/from/time".to_owned()]));
    // Past the highest position a store can hold (i64::MAX).
    let (code, problem) = h.post("/v1/subscriptions/r/replay", &json!({"from": {"position": 1u64 << 63}})).await;
    assert_eq!((code, pointers(&problem)), (422, vec!["/from".to_owned()]));
    let backwards = json!({"from": {"position": 5}, "to": {"position": 2}});
    let (code, problem) = h.post("/v1/subscriptions/r/replay", &backwards).await;
    assert_eq!((code, pointers(&problem)), (422, vec!["/to".to_owned()]));

    // Events the subscription has not fanned out yet are not replayed: they are still to come live.
    h.post("/v1/subscriptions/r/pause", &json!({})).await;
    publish(&h, event("e8", json!({"keep": true}))).await;
    let (_, report) = h.post("/v1/subscriptions/r/replay", &json!({"from": {"position": 7}})).await;
    assert_eq!((report["to"].as_u64(), report["enqueued"].as_u64()), (Some(7), Some(1)), "{report}");
    h.post("/v1/subscriptions/r/resume", &json!({})).await;
    let hits = receiver.wait_for("e7 replayed and e8 live", |hits| hits.len() == 10).await;
    let e8 = hits.iter().find(|hit| hit.event_id() == "e8").unwrap();
    assert_eq!(e8.header("herald-replay"), "", "e8 came live, not as a replay");
}

#[tokio::test]
async fn rate_limit_spaces_out_deliveries() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    subscribe(&h, "gentle", webhook(&receiver.url(), json!({"rate_limit": 5, "concurrency": 16}))).await;
    let batch: Vec<Value> = (0..6).map(|i| event(&format!("g{i}"), json!({}))).collect();
    assert_eq!(h.post("/v1/events", &Value::Array(batch)).await.0, 200);
    let hits = receiver.wait_for("six deliveries", |hits| hits.len() == 6).await;
    let span = hits[5].at - hits[0].at;
    assert!(span >= Duration::from_millis(950), "6 deliveries at 5/s take at least 1 s, took {span:?}");
}

#[tokio::test]
async fn a_rate_limit_is_not_slowed_to_one_delivery_at_a_time_by_a_slow_target() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Slow(Duration::from_millis(400), 200)).await;
    subscribe(&h, "paced", webhook(&receiver.url(), json!({"rate_limit": 20, "concurrency": 16}))).await;
    let batch: Vec<Value> = (0..10).map(|i| event(&format!("r{i}"), json!({}))).collect();
    assert_eq!(h.post("/v1/events", &Value::Array(batch)).await.0, 200);
    let hits = receiver.wait_for("ten deliveries", |hits| hits.len() == 10).await;
    // Ten at 20/s start within ~0.45 s; one at a time behind a 400 ms answer would take 3.6 s.
    let span = hits[9].at - hits[0].at;
    assert!(span >= Duration::from_millis(420), "the limit holds: {span:?}");
    assert!(span < Duration::from_millis(1500), "deliveries overlap up to the rate: {span:?}");
}

#[tokio::test]
async fn a_listed_network_is_allowed_while_other_internal_addresses_stay_refused() {
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_ALLOWED_TARGET_NETWORKS", "127.0.0.0/8")]);
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    subscribe(&h, "listed", webhook(&receiver.url(), json!({}))).await;
    let ipv6 = format!("http://[::1]:{}/hook", receiver.addr.port());
    subscribe(&h, "unlisted", webhook(&ipv6, json!({"retry": {"max_attempts": 1}}))).await;
    publish(&h, event("n1", json!({}))).await;
    receiver.wait_for("delivery inside 127.0.0.0/8", |hits| hits.len() == 1).await;
    let s = wait_status(&h, "unlisted", "refusal", |s| s["status"]["dead_letters"] == 1).await;
    assert!(s["status"]["last_error"].as_str().unwrap().contains("internal address"), "{s}");
}

#[tokio::test]
async fn a_subscription_starts_where_it_is_told() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(200)).await;
    publish(&h, event("s1", json!({}))).await;
    publish(&h, event("s2", json!({}))).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish(&h, event("s3", json!({}))).await;

    subscribe(&h, "from-position", webhook(&format!("{}/p", receiver.url()), json!({"start": {"position": 1}}))).await;
    subscribe(&h, "from-time", webhook(&format!("{}/t", receiver.url()), json!({"start": {"time": between}}))).await;
    subscribe(&h, "earliest", webhook(&format!("{}/e", receiver.url()), json!({"start": "earliest"}))).await;
    subscribe(&h, "latest", webhook(&format!("{}/l", receiver.url()), json!({}))).await;
    publish(&h, event("s4", json!({}))).await;

    receiver.wait_for("3 + 2 + 4 + 1 deliveries", |hits| hits.len() >= 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), 10, "nothing more");
    let ids_for = |path: &str| {
        let mut ids: Vec<&str> = hits.iter().filter(|hit| hit.path == path).map(Hit::event_id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids_for("/hook/p"), ["s2", "s3", "s4"], "after position 1");
    assert_eq!(ids_for("/hook/t"), ["s3", "s4"], "from a time on");
    assert_eq!(ids_for("/hook/e"), ["s1", "s2", "s3", "s4"]);
    assert_eq!(ids_for("/hook/l"), ["s4"]);

    // A position past the head (here 4) is refused: it would deliver nothing, silently.
    let (code, problem) =
        h.put("/v1/subscriptions/ahead", &webhook(&receiver.url(), json!({"start": {"position": 5}}))).await;
    assert_eq!((code, pointers(&problem)), (422, vec!["/start/position".to_owned()]), "{problem}");
    assert_eq!(h.get("/v1/subscriptions/ahead").await.0, 404);
    let (code, _) =
        h.put("/v1/subscriptions/at-head", &webhook(&receiver.url(), json!({"start": {"position": 4}}))).await;
    assert_eq!(code, 201);
}

#[tokio::test]
async fn concurrent_creations_without_a_secret_all_answer_the_one_kept() {
    let (_dir, h) = start();
    for round in 0..10 {
        let path = format!("/v1/subscriptions/apply-{round}");
        let spec = json!({"target": {"type": "webhook", "url": "http://example.com/hook"}});
        let answers = futures_util::future::join_all((0..12).map(|_| h.put(&path, &spec))).await;
        let stored = h.get(&path).await.1["target"]["secret"].clone();
        assert!(stored.as_str().is_some_and(|s| s.starts_with("whsec_")), "{stored}");
        for (code, answer) in answers {
            assert!(code == 200 || code == 201, "{answer}");
            assert_eq!(answer["target"]["secret"], stored, "round {round}: an answer's secret is not the one kept");
        }
    }
}

#[tokio::test]
async fn a_subscription_deleted_mid_delivery_and_created_again_starts_afresh() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|hit, _| {
        if hit.path == "/hook/old" { Reply::Slow(Duration::from_millis(800), 200) } else { Reply::Status(200) }
    })
    .await;
    subscribe(&h, "x", webhook(&format!("{}/old", receiver.url()), json!({}))).await;
    publish(&h, event("x1", json!({}))).await;
    receiver.wait_for("x1 in flight to the old target", |hits| hits.len() == 1).await;
    assert_eq!(h.delete("/v1/subscriptions/x").await.0, 204);
    subscribe(&h, "x", webhook(&format!("{}/new", receiver.url()), json!({}))).await;
    publish(&h, event("x2", json!({}))).await;

    let hits = receiver.wait_for("x2 at the new target", |hits| hits.iter().any(|hit| hit.path == "/hook/new")).await;
    let new: Vec<&str> = hits.iter().filter(|hit| hit.path == "/hook/new").map(Hit::event_id).collect();
    assert_eq!(new, ["x2"], "the new subscription starts at the head");
    tokio::time::sleep(Duration::from_millis(1200)).await; // the old delivery's answer comes back meanwhile
    let s = status(&h, "x").await;
    assert_eq!((s["status"]["delivered"].as_u64(), s["status"]["pending"].as_u64()), (Some(1), Some(0)), "{s}");
    let (_, log) = h.get("/v1/subscriptions/x/attempts").await;
    assert_eq!(
        log["attempts"].as_array().unwrap().len(),
        1,
        "the old subscription's attempt is not recorded here: {log}"
    );
}

#[tokio::test]
async fn a_replayed_older_event_waits_for_its_streams_delivery_in_flight() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Slow(Duration::from_millis(600), 200)).await;
    subscribe(&h, "ordered", webhook(&receiver.url(), json!({"ordering": "stream"}))).await;
    publish(&h, stream_event("a1", "s", 1)).await;
    wait_status(&h, "ordered", "a1 delivered", |s| s["status"]["delivered"] == 1).await;
    publish(&h, stream_event("a2", "s", 2)).await;
    receiver.wait_for("a2 in flight", |hits| hits.len() == 2).await;
    let (code, report) =
        h.post("/v1/subscriptions/ordered/replay", &json!({"from": {"position": 1}, "to": {"position": 1}})).await;
    assert_eq!((code, report["enqueued"].as_u64()), (200, Some(1)), "{report}");
    let hits = receiver.wait_for("a1 again", |hits| hits.len() == 3).await;
    assert_eq!(hits[2].event_id(), "a1");
    let gap = hits[2].at - hits[1].at;
    assert!(gap >= Duration::from_millis(550), "a1 was sent {gap:?} after a2, while a2 was still in flight");
}

#[tokio::test]
async fn a_subscription_that_matches_nothing_still_keeps_up() {
    let (_dir, h) = start();
    subscribe(&h, "quiet", json!({"target": {"type": "pull"}, "pattern": {"source": ["nobody"]}})).await;
    for i in 0..5 {
        publish(&h, event(&format!("q{i}"), json!({}))).await;
    }
    let s = wait_status(&h, "quiet", "the cursor stored past non-matching events", |s| s["status"]["lag"] == 0).await;
    assert_eq!((s["status"]["cursor"].as_u64(), s["status"]["pending"].as_u64()), (Some(5), Some(0)), "{s}");
    let h = h.restart();
    assert_eq!(status(&h, "quiet").await["status"]["cursor"], 5, "the stored cursor survives a restart");
}

#[tokio::test]
async fn a_failing_target_trips_its_circuit_and_a_probe_closes_it() {
    let (_dir, h) = start();
    let (healthy, receiver) = switchable_receiver(204, 503).await;
    let spec = webhook(
        &receiver.url(),
        json!({"concurrency": 4, "retry": {"max_attempts": 185, "min_backoff": "10ms", "max_backoff": "50ms", "timeout": "2s"}}),
    );
    subscribe(&h, "tripped", spec).await;
    let ids: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let batch: Vec<Value> = ids.iter().map(|id| event(id, json!({}))).collect();
    let (code, answer) = h.post("/v1/events", &json!(batch)).await;
    assert_eq!((code, answer["failed"].as_u64()), (200, Some(0)), "{answer}");

    let s = wait_status(&h, "tripped", "the circuit to open", |s| s["status"]["circuit"]["state"] == "open").await;
    assert!(s["status"]["circuit"]["until"].is_string(), "{s}");
    // Without the breaker, 20 deliveries retried every 10-50 ms would make
    // hundreds of attempts in this time; with it: the failures that opened it,
    // what was in flight then, and one probe a second at most.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = receiver.hits().len();
    assert!(during <= 5 + 4 + 2, "{during} attempts reached a failing target");
    let failed = status(&h, "tripped").await["status"]["failed"].as_u64().unwrap();
    assert_eq!(failed as usize, during, "held-back deliveries count no attempt");

    healthy.store(true, Ordering::SeqCst);
    let s = wait_status(&h, "tripped", "all delivered", |s| s["status"]["delivered"] == 20).await;
    assert_eq!(s["status"]["circuit"]["state"], "closed", "{s}");
    let hits = receiver.hits();
    let mut delivered: Vec<&str> = hits[during..].iter().map(Hit::event_id).collect();
    delivered.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(delivered, expected, "each event once after recovery");
}

#[tokio::test]
async fn a_deleted_subscription_leaves_the_metrics() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(204)).await;
    subscribe(&h, "short-lived", webhook(&receiver.url(), json!({}))).await;
    let metrics = || async { h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let gauge = r#"herald_subscription_lag{subscription="short-lived"} 0"#;
    let before = metrics().await;
    assert!(before.lines().any(|l| l == gauge), "{before}");
    assert!(before.lines().any(|l| l == "herald_webhook_circuits_open 0"), "{before}");
    let (code, _) = h.delete("/v1/subscriptions/short-lived").await;
    assert_eq!(code, 204);
    let after = metrics().await;
    assert!(!after.contains("short-lived"), "{after}");
}

#[tokio::test]
async fn deliveries_held_back_by_an_open_circuit_still_expire_at_max_age() {
    let (_dir, h) = start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spec = webhook(
        &format!("http://127.0.0.1:{port}/hook"),
        json!({"concurrency": 2, "retry": {"max_age": "1s", "min_backoff": "10ms", "max_backoff": "20ms"}}),
    );
    subscribe(&h, "expiring", spec).await;
    let batch: Vec<Value> = (0..12).map(|i| event(&format!("x{i}"), json!({}))).collect();
    let (code, _) = h.post("/v1/events", &json!(batch)).await;
    assert_eq!(code, 200);

    // Once the circuit opens, the rest would each wait for a probe of their
    // own (1 s, 2 s, 4 s, ... apart); past max_age they are dead-lettered instead.
    let started = std::time::Instant::now();
    let s = wait_status(&h, "expiring", "all dead-lettered", |s| s["status"]["dead_letters"] == 12).await;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(s["status"]["pending"], 0, "{s}");
    let (_, dead) = h.get("/v1/subscriptions/expiring/dead-letters").await;
    let reasons: Vec<&str> =
        dead["dead_letters"].as_array().unwrap().iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.contains("circuit was open")), "{reasons:?}");
    assert!(reasons.iter().all(|r| r.contains("max_age of 1s")), "{reasons:?}");
    // Held back, they were not sent again: they count only the attempts made.
    for letter in dead["dead_letters"].as_array().unwrap() {
        if !letter["reason"].as_str().unwrap().contains("circuit was open") {
            continue;
        }
        let url = format!("/v1/subscriptions/expiring/attempts?event_id={}&outcome=failed", letter["event_id"]);
        let (_, made) = h.get(&url.replace('"', "")).await;
        assert_eq!(letter["attempts"].as_u64(), Some(made["attempts"].as_array().unwrap().len() as u64), "{letter}");
    }
}

#[tokio::test]
async fn a_subscription_behind_at_restart_gets_every_matching_event() {
    let (_dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(204)).await;
    subscribe(&h, "behind", webhook(&receiver.url(), json!({"pattern": {"source": ["test.shop"]}}))).await;
    let (code, _) = h.post("/v1/subscriptions/behind/pause", &json!({})).await;
    assert_eq!(code, 200);
    for i in 0..5 {
        publish(&h, stream_event(&format!("b{i}"), "s", i)).await;
    }
    // After a restart the log's head is past the subscription's cursor; an
    // event published then must not let the worker jump over the others.
    let h = h.restart();
    publish(&h, stream_event("b5", "s", 5)).await;
    let other = json!({"id": "other", "source": "test.billing", "detail-type": "Invoice Sent", "detail": {}});
    publish(&h, other).await;
    let (code, _) = h.post("/v1/subscriptions/behind/resume", &json!({})).await;
    assert_eq!(code, 200);
    wait_status(&h, "behind", "all six delivered", |s| s["status"]["delivered"] == 6).await;
    let mut ids: Vec<String> = receiver.hits().iter().map(|hit| hit.event_id().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["b0", "b1", "b2", "b3", "b4", "b5"]);
}

#[tokio::test]
async fn deliveries_in_flight_are_bounded_over_all_subscriptions_and_shared() {
    let dir = data_dir();
    let env = [LOOPBACK_ALLOWED, &[("HERALD_MAX_DELIVERIES_IN_FLIGHT", "4")]].concat();
    let h = Herald::start_with_env(dir.path(), &env);
    let slow = Duration::from_millis(200);
    // A target each (one target may hold half of the places too: see below).
    let mut receivers = Vec::new();
    for name in ["a", "b", "c"] {
        let receiver = Receiver::start(move |_, _| Reply::Slow(slow, 204)).await;
        subscribe(&h, name, webhook(&format!("http://{}/{name}", receiver.addr), json!({"concurrency": 8}))).await;
        receivers.push(receiver);
    }
    let batch: Vec<Value> = (0..12).map(|i| event(&format!("w{i}"), json!({}))).collect();
    assert_eq!(h.post("/v1/events", &json!(batch)).await.0, 200);
    for receiver in &receivers {
        receiver.wait_for("every event to each", |hits| hits.len() >= 12).await;
    }

    // Each request is open for `slow` after it arrives: count the overlaps,
    // over all (three subscriptions of 2 each could reach 6), and per
    // subscription (each may hold half of the places).
    let most_at_once = |arrivals: Vec<Instant>| {
        arrivals.iter().map(|&t| arrivals.iter().filter(|&&u| u >= t && u < t + slow).count()).max().unwrap()
    };
    let all = most_at_once(receivers.iter().flat_map(|r| r.hits()).map(|hit| hit.at).collect());
    let each: Vec<usize> =
        receivers.iter().map(|r| most_at_once(r.hits().iter().map(|hit| hit.at).collect())).collect();
    assert!(all <= 4 && each.iter().all(|&n| n <= 2), "in flight at once: {all} in all, {each:?} each");
    assert!(all >= 3, "subscriptions delivered side by side: {all}");
}

#[tokio::test]
async fn subscriptions_to_one_slow_target_leave_places_for_other_targets() {
    let dir = data_dir();
    let env = [LOOPBACK_ALLOWED, &[("HERALD_MAX_DELIVERIES_IN_FLIGHT", "8")]].concat();
    let h = Herald::start_with_env(dir.path(), &env);
    let slow = Receiver::start(|_, _| Reply::Slow(Duration::from_secs(5), 204)).await;
    let fast = Receiver::start(|_, _| Reply::Status(204)).await;
    // Two subscriptions of 4 could hold all 8 places; one target holds at most half.
    for name in ["slow-1", "slow-2"] {
        subscribe(&h, name, webhook(&format!("http://{}/{name}", slow.addr), json!({"concurrency": 4}))).await;
    }
    subscribe(&h, "fast", webhook(&fast.url(), json!({}))).await;
    let batch = |prefix: &str| json!((0..6).map(|i| event(&format!("{prefix}{i}"), json!({}))).collect::<Vec<_>>());
    assert_eq!(h.post("/v1/events", &batch("a")).await.0, 200);
    slow.wait_for("the slow target's first deliveries", |hits| hits.len() >= 4).await;
    // Time for the slow subscriptions to take every place they can.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    assert_eq!(h.post("/v1/events", &batch("b")).await.0, 200);
    fast.wait_for("the fast target's twelve", |hits| hits.len() == 12).await;
    assert!(started.elapsed() < Duration::from_secs(3), "the fast target waited {:?} for places", started.elapsed());
    assert_eq!(slow.hits().len(), 4, "the slow target holds half of the places");
}

/// CPU time the process has used, in clock ticks (user and system).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime: the stat file's 14th and 15th fields.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn an_unreadable_stored_declaration_waits_for_a_new_one_without_spinning() {
    let (dir, h) = start();
    let receiver = Receiver::start(|_, _| Reply::Status(204)).await;
    subscribe(&h, "broken", webhook(&receiver.url(), json!({}))).await;
    assert!(h.terminate().success());
    // As a newer version's declaration might look to this one.
    let db = rusqlite::Connection::open(dir.path().join("herald.db")).unwrap();
    let changed =
        db.execute("UPDATE subscriptions SET spec = '{\"target\": {\"type\": \"carrier-pigeon\"}}'", []).unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let h = Herald::start_with_env(dir.path(), LOOPBACK_ALLOWED);
    publish(&h, event("while-broken", json!({}))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_ticks(h.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(h.pid()) - before;
    assert!(used < 40, "{used} ticks of CPU in 2 s: the worker spins on the declaration it cannot read");
    assert!(receiver.hits().is_empty());

    // Declared again, it delivers what it owes.
    assert_eq!(h.put("/v1/subscriptions/broken", &webhook(&receiver.url(), json!({}))).await.0, 200);
    let hits = receiver.wait_for("the event", |hits| !hits.is_empty()).await;
    assert_eq!(hits[0].event_id(), "while-broken");
}
