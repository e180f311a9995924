//! Hostile input: random bytes, deep nesting and junk at every endpoint get a
//! 4xx problem, never a 5xx, and never change what is stored.

use serde_json::{Value, json};

use crate::harness::{Herald, data_dir, event};

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
