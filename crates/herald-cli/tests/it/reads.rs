//! Reading: by id, pages with filters, the live SSE tail, and the operational
//! endpoints (health, readiness, metrics, OpenAPI).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{Herald, data_dir, event};

#[tokio::test]
async fn get_by_id_returns_the_envelope_with_its_position() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let mut e = event("o-1", json!({"total": 3}));
    e["time"] = json!("2026-11-28T10:00:00+01:00");
    e["resources"] = json!(["arn:shop:order/1"]);
    e["stream"] = json!("order-1");
    h.post("/v1/events", &e).await;
    let (status, stored) = h.get("/v1/events/o-1").await;
    assert_eq!(status, 200);
    assert_eq!(
        stored,
        json!({"position": 1, "version": "1", "id": "o-1", "detail-type": "Order Placed", "source": "test.shop",
            "time": "2026-11-28T09:00:00Z", "resources": ["arn:shop:order/1"], "detail": {"total": 3}, "stream": "order-1"})
    );
    let (status, problem) = h.get("/v1/events/nope").await;
    assert_eq!((status, problem["type"].clone()), (404, json!("urn:herald:problem:not-found")));
}

#[tokio::test]
async fn a_page_of_large_events_ends_at_a_mebibyte_and_next_reads_on() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let batch: Vec<Value> = (0..12).map(|i| event(&format!("big-{i}"), json!({"pad": "x".repeat(200_000)}))).collect();
    assert_eq!(h.post("/v1/events", &Value::Array(batch)).await.1["failed"], 0);
    let (_, page) = h.get("/v1/events?limit=1000").await;
    let first = page["events"].as_array().unwrap();
    assert_eq!(first.len(), 6, "five events of 200 KB are under 1 MiB, the sixth passes it");
    assert_eq!(page["next"], 6);
    let ids: Vec<Value> = h.all_events().await.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids, (0..12).map(|i| json!(format!("big-{i}"))).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_pages_in_position_order_with_filters() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let batch: Vec<Value> = (0..30)
        .map(|i| {
            json!({"id": format!("e{i}"), "source": if i % 3 == 0 { "a" } else { "b" }, "detail-type": if i % 2 == 0 { "Even" } else { "Odd" },
                "stream": format!("s{}", i % 5), "detail": {"i": i}})
        })
        .collect();
    h.post("/v1/events", &Value::Array(batch)).await;

    let (_, page) = h.get("/v1/events?limit=10").await;
    let positions: Vec<u64> =
        page["events"].as_array().unwrap().iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!((positions, page["next"].clone()), ((1..=10).collect(), json!(10)));
    let (_, page) = h.get("/v1/events?after=25").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 5);
    assert_eq!(page["next"], 30);
    let (_, page) = h.get("/v1/events?after=30").await;
    assert_eq!(page, json!({"events": [], "next": 30}));

    let (_, page) = h.get("/v1/events?source=a&detail-type=Even").await;
    let ids: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["e0", "e6", "e12", "e18", "e24"]);
    let (_, page) = h.get("/v1/events?stream=s4").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 6);

    for bad in ["after=-1", "limit=0", "limit=1001", "limit=ten"] {
        let (status, problem) = h.get(&format!("/v1/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(problem["errors"][0]["parameter"], bad.split('=').next().unwrap());
    }
}

/// Reads SSE frames from a live response until `count` events arrived.
pub(crate) async fn read_events(response: reqwest::Response, count: usize) -> Vec<(u64, Value)> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut out = Vec::new();
    while out.len() < count {
        let chunk =
            tokio::time::timeout(Duration::from_secs(10), body.next()).await.expect("event in time").unwrap().unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let id = frame.lines().find_map(|l| l.strip_prefix("id: ")).map(|v| v.parse().unwrap());
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, serde_json::from_str(data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn live_tail_follows_new_events_and_resumes_from_a_position() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    h.post("/v1/events", &event("before", json!({}))).await;

    let live = h.http.get(h.url("/v1/events/live?source=test.shop")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert!(live.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    h.post("/v1/events", &json!({"id": "other", "source": "elsewhere", "detail-type": "t", "detail": {}})).await;
    for i in 0..3 {
        h.post("/v1/events", &event(&format!("live-{i}"), json!({"i": i}))).await;
    }
    let seen = read_events(live, 3).await;
    let ids: Vec<(u64, &str)> = seen.iter().map(|(p, e)| (*p, e["id"].as_str().unwrap())).collect();
    assert_eq!(ids, vec![(3, "live-0"), (4, "live-1"), (5, "live-2")], "only new events matching the filter");

    let resumed = h.http.get(h.url("/v1/events/live")).header("Last-Event-ID", "3").send().await.unwrap();
    let seen = read_events(resumed, 2).await;
    assert_eq!(seen.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![4, 5]);
    let from_start = h.http.get(h.url("/v1/events/live?after=0")).send().await.unwrap();
    assert_eq!(read_events(from_start, 5).await.len(), 5);
    // A browser's EventSource reconnects to the URL it opened, `after`
    // included, with Last-Event-ID: the position reached wins.
    let reconnected = h.http.get(h.url("/v1/events/live?after=0")).header("Last-Event-ID", "4").send().await.unwrap();
    assert_eq!(read_events(reconnected, 1).await[0].0, 5);
    let twice = h.http.get(h.url("/v1/events/live")).header("Last-Event-ID", "4").header("Last-Event-ID", "1");
    let (status, problem) = h.send(twice).await;
    assert_eq!((status, &problem["errors"][0]["parameter"]), (400, &json!("last-event-id")), "{problem}");
}

#[tokio::test]
async fn one_client_cannot_hold_every_live_stream() {
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_MAX_LIVE_READERS", "4")]);
    let live = |client: &reqwest::Client| client.get(h.url("/v1/events/live")).send();
    // By default a client may hold half: 2 of 4.
    let held = [live(&h.http).await.unwrap(), live(&h.http).await.unwrap()];
    assert!(held.iter().all(|r| r.status() == 200));
    let (status, problem) = h.send(h.http.get(h.url("/v1/events/live"))).await;
    assert_eq!(status, 503, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("this client"), "{problem}");

    // Another client (another loopback address) is still served.
    let other =
        reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    assert_eq!(live(&other).await.unwrap().status(), 200);

    // The first client's share comes back when its streams close.
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while live(&h.http).await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "the client's share did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    assert_eq!(h.get("/healthz").await, (200, json!({"status": "ok"})));
    h.post("/v1/events", &event("m1", json!({}))).await;
    h.post("/v1/events", &event("m1", json!({}))).await;
    h.post("/v1/events", &event("m1", json!({"x": 1}))).await;
    h.post("/v1/events", &json!({})).await;
    assert_eq!(h.get("/readyz").await, (200, json!({"status": "ready", "head": 1})));

    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "herald_events_published_total{outcome=\"created\"} 1",
        "herald_events_published_total{outcome=\"duplicate\"} 1",
        "herald_events_published_total{outcome=\"conflict\"} 1",
        "herald_events_published_total{outcome=\"rejected\"} 1",
        "herald_store_commit_events_count",
        "herald_store_commit_seconds_bucket",
    ] {
        assert!(metrics.contains(line), "metrics lack {line}:\n{metrics}");
    }

    let (status, doc) = h.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/v1/events",
        "/v1/events/{id}",
        "/v1/events/live",
        "/v1/id-rules/{detail_type}",
        "/",
        "/v1/subscriptions",
        "/v1/subscriptions/{name}",
        "/v1/subscriptions/{name}/attempts",
        "/v1/subscriptions/{name}/dead-letters",
        "/v1/subscriptions/{name}/dead-letters/redrive",
        "/v1/subscriptions/{name}/replay",
        "/v1/subscriptions/{name}/pause",
        "/v1/subscriptions/{name}/resume",
        "/v1/subscriptions/{name}/pull",
        "/v1/subscriptions/{name}/ack",
        "/v1/subscriptions/{name}/nack",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    // Every /v1 JSON body, asked or answered, is a named schema (optional at
    // most), never a bare object; the document describes itself as one.
    let named = |schema: &Value| {
        let optional = schema["oneOf"].as_array().filter(|o| o.len() == 2 && o[1] == json!({"type": "null"}));
        schema["$ref"].is_string() || optional.is_some_and(|o| o[0]["$ref"].is_string())
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap().iter().filter(|_| path != "/v1/openapi.json") {
            let request = std::iter::once(&operation["requestBody"]);
            for body in request.chain(operation["responses"].as_object().unwrap().values()) {
                let schema = &body["content"]["application/json"]["schema"];
                assert!(schema.is_null() || !path.starts_with("/v1/") || named(schema), "{method} {path}: {schema}");
            }
        }
    }
    // Every write can meet a full disk; every body can be refused.
    for (path, method) in [
        ("/v1/id-rules/{detail_type}", "put"),
        ("/v1/id-rules/{detail_type}", "delete"),
        ("/v1/subscriptions/{name}", "put"),
        ("/v1/subscriptions/{name}/pause", "post"),
        ("/v1/subscriptions/{name}/ack", "post"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        assert_eq!(
            responses["507"]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert!(responses["503"].is_object(), "{method} {path}: {responses}");
    }
    let put_rule = &doc["paths"]["/v1/id-rules/{detail_type}"]["put"]["responses"];
    assert!(["400", "413", "415", "422"].iter().all(|s| put_rule[s].is_object()), "{put_rule}");
    assert!(doc["paths"]["/v1/events"]["get"]["responses"]["507"].is_null(), "reads do not write");
    assert!(doc["paths"]["/"]["post"]["responses"]["507"].is_null(), "PutEvents answers a 500");
    let (status, problem) = h.get("/v2/nothing").await;
    assert_eq!((status, problem["status"].clone()), (404, json!(404)));
    links_name_operations_that_exist(&doc);
}

/// Every operation has an operationId of its own (OpenAPI requires them
/// unique; generated clients name methods after them), and every link from a
/// created resource names an existing operation and fills a parameter of its path.
fn links_name_operations_that_exist(doc: &Value) {
    let operations = || {
        doc["paths"].as_object().unwrap().iter().flat_map(|(path, item)| {
            item.as_object().unwrap().values().map(move |operation| (path.as_str(), operation))
        })
    };
    let mut paths_by_id = std::collections::HashMap::new();
    for (path, operation) in operations() {
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{path}: no operationId"));
        assert!(paths_by_id.insert(id, path).is_none(), "operationId {id} is used twice");
    }
    let mut linked = Vec::new();
    for (path, operation) in operations() {
        for response in operation["responses"].as_object().unwrap().values() {
            for link in response["links"].as_object().into_iter().flat_map(|links| links.values()) {
                let target = link["operationId"].as_str().unwrap();
                let target_path = paths_by_id.get(target).unwrap_or_else(|| panic!("{path}: a link to {target}"));
                for parameter in link["parameters"].as_object().unwrap().keys() {
                    assert!(target_path.contains(&format!("{{{parameter}}}")), "{path} -> {target}: {parameter}");
                }
                linked.push(target);
            }
        }
    }
    let link = |path: &str, method: &str, status: &str, target: &str| {
        doc["paths"][path][method]["responses"][status]["links"][target]["parameters"].clone()
    };
    assert_eq!(link("/v1/events", "post", "201", "getEvent"), json!({"id": "$response.body#/id"}));
    assert_eq!(link("/v1/events/{id}", "put", "201", "getEvent"), json!({"id": "$request.path.id"}));
    assert_eq!(
        link("/v1/id-rules/{detail_type}", "put", "200", "deleteIdRule"),
        json!({"detail_type": "$request.path.detail_type"})
    );
    for status in ["200", "201"] {
        assert_eq!(link("/v1/subscriptions/{name}", "put", status, "pull"), json!({"name": "$request.path.name"}));
    }
    for target in ["getSubscription", "listDeadLetters", "replay", "ack"] {
        assert!(linked.contains(&target), "nothing links to {target}");
    }
}
