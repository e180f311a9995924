//! Hostile input: random bytes, deep nesting and junk at every endpoint get a
//! 4xx problem, never a 5xx, and never change what is stored; too many
//! connections get a 503, and clients too slow with their headers are cut off.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::harness::{Herald, data_dir, event, metric_in};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % max;
        const ALPHABET: &[u8] = b"{}[]\":,0123456789.eE+-truefalsnl \\u\xff\x00abc";
        (0..len)
            .map(|_| {
                if self.next().is_multiple_of(4) {
                    self.next() as u8
                } else {
                    ALPHABET[(self.next() as usize) % ALPHABET.len()]
                }
            })
            .collect()
    }
}

#[tokio::test]
async fn junk_gets_a_problem_and_changes_nothing() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    h.post("/v1/events", &event("keep", json!({"k": 1}))).await;
    h.put("/v1/id-rules/Rule", &json!({"fields": ["/detail/k"]})).await;
    let subscription = json!({"target": {"type": "pull"}, "pattern": {"source": ["test.shop"]}});
    assert_eq!(h.put("/v1/subscriptions/keep", &subscription).await.0, 201);
    let subscription_before = h.get("/v1/subscriptions/keep").await.1;
    let before = h.all_events().await;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut bodies: Vec<Vec<u8>> = (0..300).map(|_| rng.bytes(300)).collect();
    bodies.push(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes());
    bodies.push(
        format!(
            "{{\"id\":\"keep\",\"source\":\"test.shop\",\"detail-type\":\"Order Placed\",\"detail\":{}{}}}",
            "{\"a\":".repeat(200),
            "}".repeat(200)
        )
        .into_bytes(),
    );
    bodies.push(br#"{"id":"keep","source":"test.shop","detail-type":"Order Placed","detail":{"k":2}}"#.to_vec());
    bodies.push(br#"{"detail-type":"Rule","source":"s","detail":{"k":null}}"#.to_vec());
    bodies.push(b"\xef\xbb\xbf{}".to_vec());

    for (i, body) in bodies.iter().enumerate() {
        for (method, path, content_type) in [
            ("POST", "/v1/events", "application/json"),
            ("POST", "/v1/events", "application/cloudevents+json"),
            ("POST", "/v1/events", "application/cloudevents-batch+json"),
            ("PUT", "/v1/events/keep", "application/json"),
            ("PUT", "/v1/id-rules/Rule", "application/json"),
            ("POST", "/", "application/x-amz-json-1.1"),
            ("PUT", "/v1/subscriptions/keep", "application/json"),
            ("POST", "/v1/subscriptions/keep/replay", "application/json"),
            ("POST", "/v1/subscriptions/keep/pull", "application/json"),
            ("POST", "/v1/subscriptions/keep/ack", "application/json"),
            ("POST", "/v1/subscriptions/keep/nack", "application/json"),
            ("POST", "/v1/subscriptions/keep/dead-letters/redrive", "application/json"),
        ] {
            let request = h
                .http
                .request(method.parse().unwrap(), h.url(path))
                .header("content-type", content_type)
                .header("x-amz-target", "AWSEvents.PutEvents")
                .body(body.clone());
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            // A random body can by chance be a valid new event; anything else is a 4xx.
            assert!(status < 500, "body #{i} to {method} {path} got {status}: {text}");
            if status >= 400 {
                let problem: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
                assert!(problem["type"].is_string() || problem["__type"].is_string(), "{problem}");
            }
        }
    }
    let after = h.all_events().await;
    assert_eq!(after, before, "no stored event changed");
    assert_eq!(h.get("/v1/id-rules/Rule").await.1["fields"], json!(["/detail/k"]));
    let mut subscription_after = h.get("/v1/subscriptions/keep").await.1;
    // Pulls by the junk may have leased the event; the declaration must be as it was.
    subscription_after["status"] = subscription_before["status"].clone();
    assert_eq!(subscription_after, subscription_before, "the subscription's declaration did not change");
}

/// Sends one raw HTTP/1.1 request on `tcp` and reads the answer (head and
/// `content-length` body), leaving the connection ready for the next.
async fn raw_get(tcp: &mut TcpStream, path: &str) -> String {
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: herald\r\n\r\n").as_bytes()).await.unwrap();
    read_answer(tcp, b"").await
}

/// Reads the rest of one answer (head and `content-length` body), of which
/// `start` was read already, and no more.
async fn read_answer(tcp: &mut TcpStream, start: &[u8]) -> String {
    let mut head = start.to_vec();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = timeout(Duration::from_secs(10), tcp.read(&mut byte)).await.expect("an answer in time").unwrap();
        assert_eq!(n, 1, "the connection closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
        .expect("a content-length");
    let mut body = vec![0u8; length];
    timeout(Duration::from_secs(10), tcp.read_exact(&mut body)).await.expect("the body in time").unwrap();
    head + std::str::from_utf8(&body).unwrap()
}

/// Reads until the server closes the connection (or 10 s pass).
pub(crate) async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut all = Vec::new();
    timeout(Duration::from_secs(10), tcp.read_to_end(&mut all)).await.expect("closed in time").unwrap();
    String::from_utf8(all).unwrap()
}

/// Asks a new connection for `/healthz` (with `extra` header lines) and
/// reads until the server closes it.
pub(crate) async fn get_and_close(addr: &str, extra: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET /healthz HTTP/1.1\r\nhost: herald\r\n{extra}\r\n").as_bytes()).await.unwrap();
    read_to_close(&mut tcp).await
}

/// Opens `n` connections, each answered once, and keeps them open.
pub(crate) async fn open_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let answer = raw_get(&mut tcp, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "connection {i}: {answer}");
        held.push(tcp);
    }
    held
}

/// What axum's routing and extractors reject (a repeated query parameter,
/// a path that is not UTF-8, a method a route does not take) is a problem
/// too, not axum's plain text.
#[tokio::test]
async fn routing_and_parameter_rejections_are_problems() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    h.post("/v1/events", &json!({"source": "\u{fffd}", "detail-type": "t", "detail": {}})).await;
    let cases = [
        ("GET", "/v1/events?limit=1&limit=2", 400, "invalid-parameter", "duplicate field `limit`"),
        ("GET", "/v1/events/live?after=1&after=2", 400, "invalid-parameter", "duplicate field `after`"),
        ("GET", "/v1/subscriptions/x/attempts?limit=1&limit=1", 400, "invalid-parameter", "duplicate field"),
        // Not decoded lossily into U+FFFD, which would match the event above.
        ("GET", "/v1/events?source=%FF", 400, "invalid-parameter", "UTF-8"),
        ("GET", "/v1/events/live?stream=a%C3", 400, "invalid-parameter", "UTF-8"),
        ("GET", "/v1/events/%FF", 400, "invalid-parameter", "UTF-8"),
        ("PUT", "/v1/id-rules/%C3%28", 400, "invalid-parameter", "UTF-8"),
        ("DELETE", "/v1/events", 405, "method-not-allowed", "DELETE is not allowed on /v1/events"),
        ("POST", "/healthz", 405, "method-not-allowed", "POST is not allowed on /healthz"),
    ];
    let parameters = ["limit", "after", "limit", "source", "stream", "path", "path"];
    for (i, (method, path, status, kind, detail)) in cases.into_iter().enumerate() {
        let response = h.http.request(method.parse().unwrap(), h.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{method} {path}");
        if status == 405 {
            assert!(response.headers().contains_key("allow"), "{method} {path} names the methods it takes");
        }
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], format!("urn:herald:problem:{kind}"), "{method} {path}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(detail), "{method} {path}: {problem}");
        assert!(problem["errors"].is_array(), "every problem lists its errors, if none: {problem}");
        if let Some(parameter) = parameters.get(i) {
            assert_eq!(problem["errors"][0]["parameter"], *parameter, "{method} {path}: {problem}");
        }
    }
}

#[tokio::test]
async fn dot_segments_are_refused_as_event_ids_and_subscription_names() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    for id in [".", ".."] {
        let (status, problem) = h.post("/v1/events", &event(id, json!({}))).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["pointer"], "/id", "{problem}");
    }
    // Clients resolve `%2E` as `.` before sending; a raw request does not.
    let body = r#"{"target": {"type": "queue"}}"#;
    for name in ["%2E", "%2E%2E"] {
        let mut tcp = TcpStream::connect(h.addr()).await.unwrap();
        let request = format!(
            "PUT /v1/subscriptions/{name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer)).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{name}: {answer}");
        assert!(answer.contains(r#""parameter":"name""#), "{name}: {answer}");
    }
    assert_eq!(h.get("/v1/subscriptions").await.1["subscriptions"], json!([]), "nothing was declared");
}

#[tokio::test]
async fn connections_past_the_limit_get_a_503_problem_and_slots_come_back() {
    let dir = data_dir();
    let limits = [("HERALD_MAX_CONNECTIONS", "3"), ("HERALD_MAX_CONNECTIONS_PER_CLIENT", "3")];
    let h = Herald::start_with_env(dir.path(), &limits);
    let mut held = open_connections(h.addr(), 3).await;

    let answer = get_and_close(h.addr(), "").await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 503"), "{answer}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("retry-after: 1") && head.contains("content-type: application/problem+json"), "{head}");
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (problem["status"].as_u64(), problem["type"].as_str()),
        (Some(503), Some("urn:herald:problem:overloaded"))
    );
    assert!(problem["detail"].as_str().unwrap().contains("too many connections"), "{problem}");

    // A held connection still works, and counts the rejection.
    let metrics = raw_get(&mut held[0], "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let rejected = metric_in(&metrics, "herald_connections_rejected_total").expect("the rejection counter is exported");
    assert!(rejected >= 1.0, "{rejected}");
    assert_eq!(metric_in(&metrics, "herald_connections_open"), Some(3.0), "{metrics}");

    // Closing one frees its slot.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get_and_close(h.addr(), "connection: close\r\n").await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503") && Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_client_cannot_take_every_connection() {
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_MAX_CONNECTIONS", "4")]);
    // By default a client may hold half: 2 of 4.
    let held = open_connections(h.addr(), 2).await;
    let answer = get_and_close(h.addr(), "").await;
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("from this client"), "{answer}");

    // Another client (another loopback address) is still served.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(h.addr().parse().unwrap()).await.unwrap();
    assert!(raw_get(&mut other, "/healthz").await.starts_with("HTTP/1.1 200"));

    // The first client's slots come back when its connections close.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get_and_close(h.addr(), "connection: close\r\n").await.starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "the client's slots did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = h.metric("herald_connections_rejected_per_client_total").await;
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
    assert_eq!(h.metric("herald_connections_rejected_total").await, None, "the total was never reached");
}

#[tokio::test]
async fn silent_and_slow_clients_are_disconnected_but_live_tails_stay() {
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_HEADER_READ_TIMEOUT", "1")]);
    let addr = h.addr();
    let live = h.http.get(h.url("/v1/events/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);

    // A client that connects and says nothing.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "closed after {waited:?}");

    // Slowloris: a request head that never ends.
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n").await.unwrap();
    let answer = read_to_close(&mut slow).await;
    let waited = started.elapsed();
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "closed after {waited:?}");

    // An idle keep-alive connection is closed after the same time.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(raw_get(&mut idle, "/healthz").await.starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    read_to_close(&mut idle).await;
    assert!(started.elapsed() >= Duration::from_millis(900), "closed after {:?}", started.elapsed());

    // A live tail reads no request head while it streams: it outlives the timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(h.post("/v1/events", &event("after-the-wait", json!({}))).await.0, 201);
    let seen = crate::reads::read_events(live, 1).await;
    assert_eq!(seen[0].1["id"], "after-the-wait");
}

#[tokio::test]
async fn the_open_file_limit_is_raised_and_bounds_the_connections() {
    // The soft limit is raised to the hard one: 400 connections fit under a
    // soft 300 (a hard 2,048 less 1,216 kept for deliveries and the store).
    let dir = data_dir();
    let h = Herald::start_with_fd_limit(dir.path(), 300, 2048);
    let held = open_connections(h.addr(), 400).await;
    drop((held, h));

    // Under a hard 300, half is kept for the store: 150 connections, then 503.
    let h = Herald::start_with_fd_limit(dir.path(), 300, 300);
    let mut held = open_connections(h.addr(), 150).await;
    let answer = get_and_close(h.addr(), "").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(raw_get(&mut held[0], "/healthz").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_body_trickled_past_its_deadline_gets_a_408_and_stores_nothing() {
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_BODY_READ_TIMEOUT", "1")]);
    let body = event("late", json!({})).to_string();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: herald\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );

    // Half the body, then silence.
    let started = Instant::now();
    let mut slow = TcpStream::connect(h.addr()).await.unwrap();
    slow.write_all(format!("{head}{}", &body[..body.len() / 2]).as_bytes()).await.unwrap();
    let answer = read_to_close(&mut slow).await;
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let problem: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:request-timeout", "{problem}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "answered after {waited:?}");

    // A body in two parts, well within the deadline, is stored.
    let mut fine = TcpStream::connect(h.addr()).await.unwrap();
    let on_time = body.replace("late", "on-time");
    let head = head.replace(&format!("content-length: {}", body.len()), &format!("content-length: {}", on_time.len()));
    fine.write_all(format!("{head}{}", &on_time[..10]).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fine.write_all(&on_time.as_bytes()[10..]).await.unwrap();
    let mut answer = [0u8; 12];
    timeout(Duration::from_secs(10), fine.read_exact(&mut answer)).await.unwrap().unwrap();
    assert_eq!(&answer, b"HTTP/1.1 201");

    let ids: Vec<Value> = h.all_events().await.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids, vec![json!("on-time")]);
}

/// Waits until a metric satisfies `ok`, or fails after 10 s.
async fn until_metric(h: &Herald, name: &str, ok: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = h.metric(name).await.unwrap_or(0.0);
        if ok(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is still {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bodies_past_the_buffer_budget_get_a_503_and_nothing_is_held_for_bytes_not_sent() {
    const LIMIT: usize = 10 << 20; // one body's limit
    const BUDGET: usize = 48 << 20; // the smallest budget
    const FULL: usize = BUDGET / LIMIT; // bodies of the largest size that fit in it
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_MAX_BODY_BUFFER_MIB", "48")]);
    let open = |declared: usize, sent: usize| {
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nhost: herald\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n["
        );
        let addr = h.addr();
        async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(&[head.into_bytes(), vec![b' '; sent - 1]].concat()).await.unwrap();
            tcp
        }
    };
    let padded = |id: &str| event(id, json!({"pad": "x".repeat(200_000)}));

    // Declaring bodies of the largest size, and sending one byte of each,
    // holds one byte each: others still publish.
    let mut declared = Vec::new();
    for _ in 0..FULL {
        declared.push(open(LIMIT, 1).await);
    }
    until_metric(&h, "herald_request_body_bytes_held", |held| held == FULL as f64).await;
    assert_eq!(h.post("/v1/events", &padded("declared-only")).await.0, 201);

    // Those send all but the last byte of their bodies, one more all but
    // 100,000 bytes of what is left: a 200 KB body no longer fits.
    for tcp in &mut declared {
        tcp.write_all(&vec![b' '; LIMIT - 2]).await.unwrap();
    }
    let rest = BUDGET - FULL * (LIMIT - 1) - 100_000;
    declared.push(open(LIMIT, rest).await);
    until_metric(&h, "herald_request_body_bytes_held", |held| held == (BUDGET - 100_000) as f64).await;
    let response = h.http.post(h.url("/v1/events")).json(&padded("refused")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:overloaded", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("request bodies"), "{problem}");
    assert_eq!(h.get("/v1/events/refused").await.0, 404, "a refused body stores nothing");
    assert_eq!(h.metric("herald_request_bodies_refused_total").await, Some(1.0));

    // A client that waits for 100 Continue is refused before it sends its body.
    let mut waiting = TcpStream::connect(h.addr()).await.unwrap();
    waiting
        .write_all(b"POST /v1/events HTTP/1.1\r\nhost: herald\r\nexpect: 100-continue\r\ncontent-type: application/json\r\ncontent-length: 200000\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut waiting).await;
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("request bodies"), "{answer}");

    // The others leave, and the first body ends (an empty batch): whole, it
    // is charged what parsing it takes as well, and still fits; once it is
    // answered, nothing is held.
    let mut big = declared.swap_remove(0);
    drop(declared);
    until_metric(&h, "herald_request_body_bytes_held", |held| held == (LIMIT - 1) as f64).await;
    big.write_all(b"]").await.unwrap();
    let mut status = [0u8; 12];
    timeout(Duration::from_secs(10), big.read_exact(&mut status)).await.unwrap().unwrap();
    assert_eq!(&status, b"HTTP/1.1 422", "the body that fit is read and answered");
    until_metric(&h, "herald_request_body_bytes_held", |held| held == 0.0).await;
    assert_eq!(h.post("/v1/events", &padded("refused")).await.0, 201, "a retry is stored");
}

#[tokio::test]
async fn a_body_that_would_parse_into_more_than_the_budget_gets_a_413_and_stores_nothing() {
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_MAX_BODY_BUFFER_MIB", "48")]);
    // Eight events, each valid alone (128 KiB of tiny objects in `detail`,
    // under its 256 KiB limit): 1 MiB that parses into ~100 MiB of values.
    let tiny = vec![json!({"b": 0}); 16 << 10];
    let hostile: Vec<Value> = (0..8).map(|i| event(&format!("hostile-{i}"), json!({"a": tiny}))).collect();
    let response = h.http.post(h.url("/v1/events")).json(&hostile).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:too-large", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("--max-body-buffer-mib"), "{problem}");
    until_metric(&h, "herald_request_body_bytes_held", |held| held == 0.0).await;
    assert_eq!(h.post("/v1/events", &hostile[0]).await.0, 201, "one of them alone is stored");

    // A batch of a thousand ordinary events, as large, is stored.
    let ordinary: Vec<Value> = (0..1000)
        .map(|i| {
            event(
                &format!("e{i}"),
                json!({"user": {"id": i, "name": "ada"}, "tags": ["a", "b"], "note": "x".repeat(900)}),
            )
        })
        .collect();
    let (status, answer) = h.post("/v1/events", &Value::Array(ordinary)).await;
    assert_eq!((status, answer["failed"].clone()), (200, json!(0)));
    let stored: Vec<Value> = h.all_events().await.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(stored.len(), 1001);
    assert_eq!(stored[0], "hostile-0");
    assert!(!stored.contains(&json!("hostile-1")));
}

/// Six events of 208 KB, `big-0` to `big-5`: a page of them (it ends past
/// 1 MiB) is ~1.25 MB.
async fn publish_six_big_events(h: &Herald) {
    let big: Vec<Value> = (0..6).map(|i| event(&format!("big-{i}"), json!({"pad": "x".repeat(208_000)}))).collect();
    assert_eq!(h.post("/v1/events", &Value::Array(big)).await.0, 200);
}

/// Sends `GET path` on a connection that reads nothing of the answer, with
/// a small receive window and segments (1,460 bytes, as on an Ethernet, not
/// loopback's 64 KiB, for which the kernel would buffer a few MB), so the
/// server is left holding the answer.
async fn stalled_get(addr: &str, path: &str) -> TcpStream {
    stalled_get_from([127, 0, 0, 1], addr, path).await
}

/// [`stalled_get`] from the loopback address `source`: another client
/// (Linux answers on all of 127.0.0.0/8).
async fn stalled_get_from(source: [u8; 4], addr: &str, path: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_tcp_mss(1460).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(&std::net::SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut tcp = TcpStream::from_std(socket.into()).unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: herald\r\n\r\n").as_bytes()).await.unwrap();
    tcp
}

/// Asks for the page from `source`, reading nothing, until a read is
/// refused; returns the refusal's text. The stalled connections go to `stalled`.
async fn stall_until_refused(h: &Herald, source: [u8; 4], stalled: &mut Vec<TcpStream>) -> String {
    loop {
        let mut tcp = stalled_get_from(source, h.addr(), "/v1/events?limit=1000").await;
        let mut status = [0u8; 12];
        timeout(Duration::from_secs(10), tcp.read_exact(&mut status)).await.expect("an answer begins").unwrap();
        if &status != b"HTTP/1.1 200" {
            assert_eq!(&status, b"HTTP/1.1 503");
            return read_answer(&mut tcp, &status).await;
        }
        stalled.push(tcp);
        assert!(stalled.len() < 20, "16 MiB hold at most 13 pages");
    }
}

#[tokio::test]
async fn responses_clients_do_not_read_are_bounded_by_the_budget_and_nothing_is_lost() {
    const BUDGET: usize = 16 << 20; // the smallest budget
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_MAX_RESPONSE_BUFFER_MIB", "16")]);
    let subscription = json!({"target": {"type": "pull"}, "start": "earliest"});
    assert_eq!(h.put("/v1/subscriptions/queue", &subscription).await.0, 201);
    publish_six_big_events(&h).await;
    let herald = &h;
    let read = move |path: &'static str| async move {
        herald.http.get(herald.url(path)).send().await.unwrap().text().await.unwrap()
    };
    let page = read("/v1/events?limit=1000").await;
    assert_eq!(serde_json::from_str::<Value>(&page).unwrap()["events"].as_array().unwrap().len(), 6);
    until_metric(&h, "herald_response_bytes_held", |held| held == 0.0).await;

    // Clients that ask for the page and read nothing hold it, each charged
    // what its text takes, until the next is refused: a read is charged
    // what its answer may take (1.5 MiB) before it is read. One client holds
    // at most its share, half the budget; others read on.
    let mut stalled = Vec::new();
    let refusal = stall_until_refused(&h, [127, 0, 0, 2], &mut stalled).await;
    assert!(refusal.contains("this client") && refusal.contains("share"), "{refusal}");
    let held = h.metric("herald_response_bytes_held").await.unwrap();
    assert!(stalled.len() >= 5 && held <= (BUDGET / 2) as f64, "{} pages, {held} bytes held", stalled.len());
    assert_eq!(read("/v1/events?limit=1000").await, page, "another client reads on");
    // Clients filling their shares fill the budget: then anyone's read is refused.
    let mut share_refusals = 1;
    for source in 3.. {
        let refusal = stall_until_refused(&h, [127, 0, 0, source], &mut stalled).await;
        if refusal.contains("share") {
            share_refusals += 1;
        } else {
            assert!(refusal.contains("responses"), "{refusal}");
            break;
        }
    }
    let n = stalled.len();
    // Each charged its text's capacity: its length and a little.
    until_metric(&h, "herald_response_bytes_held", |held| {
        held >= (n * page.len()) as f64 && held <= (n * (page.len() + 512)) as f64
    })
    .await;
    let room = BUDGET as f64 - h.metric("herald_response_bytes_held").await.unwrap();
    assert!(n >= 10 && room < page.len() as f64 - 512.0, "{n} pages held, {room} bytes of room: less than a page");

    // Another read gets the same 503 problem at once; so does a pull, which
    // leases nothing.
    let response = h.http.get(h.url("/v1/events?limit=1000")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:overloaded", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("responses"), "{problem}");
    let (status, problem) = h.post("/v1/subscriptions/queue/pull", &json!({"max": 10, "wait": "5s"})).await;
    assert_eq!(status, 503, "{problem}");
    let by_share = h.metric(r#"herald_responses_refused_total{reason="client_share"}"#).await;
    assert_eq!(by_share, Some(share_refusals as f64));
    let by_budget = h.metric(r#"herald_responses_refused_total{reason="budget"}"#).await;
    assert_eq!(by_budget, Some(3.0), "the last stalled client's, the read's and the pull's");
    // Publishing, and answers of less than one part (64 KiB), go on.
    assert_eq!(h.post("/v1/events", &event("small", json!({"k": 1}))).await.0, 201);
    // A live reader waits for room rather than failing.
    let live = h.http.get(h.url("/v1/events/live?after=0")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let mut live_body = live.bytes_stream();
    assert!(timeout(Duration::from_millis(500), live_body.next()).await.is_err(), "the live reader waits");

    // One stalled client reads its answer after all: the page, byte for
    // byte. The others leave; their shares come back.
    let mut reader = stalled.swap_remove(0);
    let answer = read_answer(&mut reader, b"HTTP/1.1 200").await;
    assert!(answer.ends_with(&page), "the page arrives whole and unchanged");
    drop(stalled);
    let first = timeout(Duration::from_secs(10), live_body.next()).await.expect("the live reader goes on").unwrap();
    assert!(String::from_utf8_lossy(&first.unwrap()).contains("id: 1"), "from the first event");
    // Only the live reader's page may still be held.
    until_metric(&h, "herald_response_bytes_held", |held| held < 2.0 * page.len() as f64).await;
    assert_eq!(read("/v1/events?limit=1000").await, page);

    // The refused pull leased nothing: its messages come at their first attempt.
    let (status, pulled) = h.post("/v1/subscriptions/queue/pull", &json!({"max": 10})).await;
    assert_eq!(status, 200, "{pulled}");
    let messages = pulled["messages"].as_array().unwrap();
    let ids: Vec<&str> = messages.iter().map(|m| m["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["big-0", "big-1", "big-2", "big-3", "big-4"], "up to 1 MiB of events in one pull");
    assert!(messages.iter().all(|m| m["attempt"] == 1), "{pulled}");
}

/// Publishes six big events, then asks for their page on a connection that
/// reads nothing, once the server holds it.
async fn stalled_on_a_page(h: &Herald) -> TcpStream {
    publish_six_big_events(h).await;
    let stalled = stalled_get(h.addr(), "/v1/events?limit=1000").await;
    until_metric(h, "herald_response_bytes_held", |held| held > 1e6).await;
    stalled
}

/// The server closed `stalled`: its client gets what the kernel had
/// buffered of the answer, not the page.
async fn assert_cut_off(mut stalled: TcpStream) {
    let mut got = Vec::new();
    let _ = timeout(Duration::from_secs(10), stalled.read_to_end(&mut got)).await.expect("closed");
    assert!(got.starts_with(b"HTTP/1.1 200") && got.len() < 1_000_000, "{} bytes", got.len());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_send_timeout_and_its_answer_freed() {
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_SEND_TIMEOUT", "3")]);
    let stalled = stalled_on_a_page(&h).await;
    // Past the timeout the connection is closed and its answer freed.
    until_metric(&h, "herald_response_bytes_held", |held| held == 0.0).await;
    assert_cut_off(stalled).await;
    // A client that reads gets its page as ever.
    let page = h.http.get(h.url("/v1/events?limit=1000")).send().await.unwrap().text().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&page).unwrap()["events"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn a_client_that_stops_reading_holds_up_sigterm_only_until_the_shutdown_timeout() {
    let dir = data_dir();
    // The send timeout alone would hold the stop up for a minute.
    let h = Herald::start_with_env(dir.path(), &[("HERALD_SHUTDOWN_TIMEOUT", "2")]);
    let stalled = stalled_on_a_page(&h).await;
    let signalled = Instant::now();
    let h = h.restart();
    let stop = signalled.elapsed();
    assert!(stop >= Duration::from_secs(2) && stop < Duration::from_secs(15), "stopped after {stop:?}");
    assert_cut_off(stalled).await;
    assert_eq!(h.all_events().await.len(), 6, "everything published is there after the restart");
}

#[tokio::test]
async fn a_body_sent_with_a_content_coding_is_refused_naming_it() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let body = event("encoded", json!({})).to_string();
    for coding in ["gzip", "br", "identity, gzip"] {
        let request = h
            .http
            .post(h.url("/v1/events"))
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(body.clone());
        let (status, problem) = h.send(request).await;
        assert_eq!((status, &problem["errors"][0]["parameter"]), (415, &json!("Content-Encoding")), "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("gzip") || coding == "br", "{problem}");
    }
    assert!(h.all_events().await.is_empty(), "nothing stored");
    // PutEvents reads its body the same way, and answers in AWS's shape.
    let put_events = h
        .http
        .post(h.url("/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "AWSEvents.PutEvents")
        .header("content-encoding", "gzip")
        .body(r#"{"Entries": [{"Source": "s", "DetailType": "t", "Detail": "{}"}]}"#);
    let (status, error) = h.send(put_events).await;
    assert_eq!((status, &error["__type"]), (400, &json!("ValidationException")), "{error}");
    assert!(h.all_events().await.is_empty(), "nothing stored");

    let plain = h.http.post(h.url("/v1/events")).header("content-type", "application/json");
    assert_eq!(h.send(plain.header("content-encoding", "identity").body(body)).await.0, 201);
}
