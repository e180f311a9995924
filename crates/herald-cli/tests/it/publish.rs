//! Publishing: every answer of the publish contract (201 / 200 duplicate /
//! 409 / 400 / 413 / 415 / 422), batches, ids from keys and rules, PUT.

use serde_json::{Value, json};

use crate::harness::{Herald, data_dir, event, pointers};

#[tokio::test]
async fn new_event_is_201_and_same_event_again_is_200_with_the_original_position() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let (status, body) = h.post("/v1/events", &event("order-1", json!({"total": 10}))).await;
    assert_eq!((status, &body), (201, &json!({"id": "order-1", "position": 1, "duplicate": false})));
    h.post("/v1/events", &event("order-2", json!({}))).await;

    // Same content with other key order and whitespace is still the same event.
    let raw = r#"{ "detail": {"total":10}, "detail-type": "Order Placed", "source": "test.shop", "id": "order-1", "region": "eu" }"#;
    let (status, body) =
        h.send(h.http.post(h.url("/v1/events")).header("content-type", "application/json").body(raw)).await;
    assert_eq!((status, body), (200, json!({"id": "order-1", "position": 1, "duplicate": true})));
    assert_eq!(h.all_events().await.len(), 2, "a duplicate stores nothing");
}

#[tokio::test]
async fn same_id_with_different_content_is_409_naming_the_fields_and_changes_nothing() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    h.post("/v1/events", &event("order-1", json!({"total": 10, "items": [1]}))).await;
    let before = h.get("/v1/events/order-1").await.1;

    let mut changed = event("order-1", json!({"total": 11, "items": [1]}));
    changed["version"] = json!("2");
    let response = h.http.post(h.url("/v1/events")).json(&changed).send().await.unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(pointers(&problem), vec!["/version", "/detail/total"]);
    assert_eq!((problem["status"].clone(), problem["position"].clone()), (json!(409), json!(1)));
    assert_eq!(h.get("/v1/events/order-1").await.1, before);
    assert_eq!(h.all_events().await.len(), 1);
}

#[tokio::test]
async fn idempotency_key_makes_a_retried_post_a_duplicate() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let body = json!({"source": "billing", "detail-type": "Invoice Paid", "detail": {"invoice": 7}});
    let post = |key: &'static str, body: Value| {
        let request = h.http.post(h.url("/v1/events")).header("Idempotency-Key", key).json(&body);
        h.send(request)
    };
    let (s1, first) = post("retry-abc", body.clone()).await;
    let (s2, again) = post("retry-abc", body.clone()).await;
    let (s3, other) = post("retry-xyz", body.clone()).await;
    assert_eq!((s1, s2, s3), (201, 200, 201));
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["duplicate"], true);
    assert_ne!(first["id"], other["id"]);

    for refused in ["", "retry\tabc"] {
        let (status, problem) = post(refused, body.clone()).await;
        assert_eq!((status, &problem["errors"][0]["parameter"]), (400, &json!("Idempotency-Key")), "{refused:?}");
    }
    // Two keys: which one the client meant is not Herald's guess.
    let twice = h
        .http
        .post(h.url("/v1/events"))
        .header("Idempotency-Key", "retry-abc")
        .header("Idempotency-Key", "retry-new")
        .json(&body);
    let (status, problem) = h.send(twice).await;
    assert_eq!((status, &problem["errors"][0]["parameter"]), (400, &json!("Idempotency-Key")), "{problem}");
    assert_eq!(h.all_events().await.len(), 2, "nothing stored");
}

#[tokio::test]
async fn events_without_id_or_key_get_a_fresh_uuid_v7() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let body = json!({"source": "s", "detail-type": "t", "detail": {}});
    let (_, a) = h.post("/v1/events", &body).await;
    let (_, b) = h.post("/v1/events", &body).await;
    let (a, b) = (a["id"].as_str().unwrap().to_owned(), b["id"].as_str().unwrap().to_owned());
    assert_ne!(a, b);
    assert_eq!(&a[14..15], "7", "UUID version 7: {a}");
}

#[tokio::test]
async fn id_rules_make_redelivered_webhooks_one_event() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let rule = json!({"fields": ["/detail/user_id", "/detail/tweet_id"]});
    let (status, stored) = h.put("/v1/id-rules/Tweet%20Liked", &rule).await;
    assert_eq!(
        (status, stored),
        (200, json!({"detail-type": "Tweet Liked", "fields": ["/detail/user_id", "/detail/tweet_id"]}))
    );

    let like = |at: &str| json!({"source": "twitter", "detail-type": "Tweet Liked", "time": at, "detail": {"user_id": 1, "tweet_id": "42"}});
    let (s1, first) = h.post("/v1/events", &like("2026-11-28T10:00:00Z")).await;
    let (s2, redelivered) = h.post("/v1/events", &like("2026-11-28T10:00:05Z")).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(first["id"], redelivered["id"]);

    let missing = json!({"source": "twitter", "detail-type": "Tweet Liked", "detail": {"user_id": 1}});
    let (status, problem) = h.post("/v1/events", &missing).await;
    assert_eq!((status, pointers(&problem)), (422, vec!["/detail/tweet_id".to_owned()]));

    // The rule survives a restart.
    let h = h.restart();
    let (status, again) = h.post("/v1/events", &like("2026-11-28T11:00:00Z")).await;
    assert_eq!((status, &again["id"]), (200, &first["id"]));
    assert_eq!(h.get("/v1/id-rules").await.1["rules"].as_array().unwrap().len(), 1);

    let (status, problem) = h.put("/v1/id-rules/Other", &json!({"fields": ["detail/x"]})).await;
    assert_eq!((status, pointers(&problem)), (422, vec!["/fields/0".to_owned()]));
    assert_eq!(problem["type"], "urn:herald:problem:invalid-request", "a rule is not an event: {problem}");
    // A detail-type no event can have (a control character, 257 characters)
    // would make a rule that never applies.
    for name in ["a%09b".to_owned(), "x".repeat(257)] {
        let (status, problem) = h.put(&format!("/v1/id-rules/{name}"), &rule).await;
        assert_eq!((status, &problem["errors"][0]["parameter"]), (400, &json!("detail_type")), "{problem}");
    }
    assert_eq!(h.get("/v1/id-rules").await.1["rules"].as_array().unwrap().len(), 1);
    assert_eq!(h.send(h.http.delete(h.url("/v1/id-rules/Tweet%20Liked"))).await.0, 204);
    assert_eq!(h.get("/v1/id-rules/Tweet%20Liked").await.0, 404);
    let (status, _) = h.post("/v1/events", &like("2026-11-28T12:00:00Z")).await;
    assert_eq!(status, 201, "without the rule the event gets a fresh id");
}

#[tokio::test]
async fn concurrent_id_rule_writes_leave_the_rule_served_and_the_rule_applied_alike() {
    let dir = data_dir();
    // Several request workers, so the handlers one group commit answers run at once.
    let h = Herald::start_with_env(dir.path(), &[("TOKIO_WORKER_THREADS", "4")]);
    for round in 0..150 {
        let path = format!("/v1/id-rules/Race{round}");
        let writes = (0..12).map(|i| {
            let path = path.clone();
            let h = &h;
            async move {
                match i % 3 {
                    0 => h.put(&path, &json!({"fields": ["/detail/a"]})).await.0,
                    1 => h.put(&path, &json!({"fields": ["/detail/b"]})).await.0,
                    _ => h.delete(&path).await.0,
                }
            }
        });
        futures_util::future::join_all(writes).await;
        let (status, rule) = h.get(&path).await;
        let served = if status == 404 { None } else { rule["fields"][0].as_str().map(str::to_owned) };

        // The rule publishing applies, told by an event that carries only `a`:
        // a rule on `a` makes it a duplicate, on `b` refuses it, none stores it twice.
        let event = json!({"source": "race", "detail-type": format!("Race{round}"), "detail": {"a": 1}});
        let answers = (h.post("/v1/events", &event).await.0, h.post("/v1/events", &event).await.0);
        let applied = match answers {
            (201, 200) => Some("/detail/a"),
            (422, 422) => Some("/detail/b"),
            (201, 201) => None,
            other => panic!("round {round}: {other:?}"),
        };
        assert_eq!(served.as_deref(), applied, "round {round}: GET {path} and publishing disagree");
    }
}

/// Posts a JSON body as written (numbers untouched by any client library).
async fn post_raw(h: &Herald, body: &str) -> (u16, Value) {
    h.send(h.http.post(h.url("/v1/events")).header("content-type", "application/json").body(body.to_owned())).await
}

fn order_with(detail: &str) -> String {
    format!(r#"{{"id": "order-n", "source": "test.shop", "detail-type": "Order Placed", "detail": {detail}}}"#)
}

#[tokio::test]
async fn numbers_keep_every_digit_and_compare_by_exact_value() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let written = r#"{"big": 123456789012345678901234567890, "amount": 10.50, "tiny": 1e-7}"#;
    assert_eq!(post_raw(&h, &order_with(written)).await.0, 201);

    // Stored and served as written: no digit rounded away by a double.
    let served = h.http.get(h.url("/v1/events/order-n")).send().await.unwrap().text().await.unwrap();
    for number in [r#""big":123456789012345678901234567890"#, r#""amount":10.50"#, r#""tiny":1e-7"#] {
        assert!(served.contains(number), "{number} in {served}");
    }
    let listed = h.http.get(h.url("/v1/events")).send().await.unwrap().text().await.unwrap();
    assert!(listed.contains(r#""big":123456789012345678901234567890"#), "{listed}");

    // The same values written another way: the same event.
    let respelt = r#"{"tiny": 0.0000001, "amount": 1.05e1, "big": 1.23456789012345678901234567890E+29}"#;
    let (status, body) = post_raw(&h, &order_with(respelt)).await;
    assert_eq!((status, body), (200, json!({"id": "order-n", "position": 1, "duplicate": true})));

    // One digit apart, past a double's 17: different content, not a duplicate.
    let other = r#"{"big": 123456789012345678901234567891, "amount": 10.5, "tiny": 1e-7}"#;
    let (status, problem) = post_raw(&h, &order_with(other)).await;
    assert_eq!((status, pointers(&problem)), (409, vec!["/detail/big".to_owned()]));

    // Id rules derive ids from exact values too.
    h.put("/v1/id-rules/Payment", &json!({"fields": ["/detail/account"]})).await;
    let payment = |account: &str| {
        format!(r#"{{"source": "bank", "detail-type": "Payment", "detail": {{"account": {account}}}}}"#)
    };
    let (s1, first) = post_raw(&h, &payment("98765432109876543210987")).await;
    let (s2, next) = post_raw(&h, &payment("98765432109876543210988")).await;
    let (s3, again) = post_raw(&h, &payment("9.8765432109876543210987e22")).await;
    assert_eq!((s1, s2, s3), (201, 201, 200));
    assert_ne!(first["id"], next["id"]);
    assert_eq!(first["id"], again["id"]);

    let (status, problem) = post_raw(&h, &order_with(r#"{"ok": 1e400, "list": [1, 2e1000000000]}"#)).await;
    assert_eq!((status, pointers(&problem)), (422, vec!["/detail/list/1".to_owned()]));
    assert_eq!(h.all_events().await.len(), 3);
}

#[tokio::test]
async fn events_stored_under_an_older_content_hash_are_still_recognised_as_duplicates() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    assert_eq!(post_raw(&h, &order_with(r#"{"total": 10.0}"#)).await.0, 201);
    assert!(h.terminate().success());
    // A store written before numbers were compared by value hashed `10.0` as
    // written. Any other hash of equal content must still be a duplicate.
    // Stored under older rules too: a whitespace-only stream, refused now
    // at intake, must not make the comparison fail. (Such a store has no
    // body checksums either.)
    let db = rusqlite::Connection::open(dir.path().join("herald.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE events SET content_hash = zeroblob(32), body = json_set(body, '$.stream', '  '), body_crc = NULL
             WHERE id = 'order-n'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let h = Herald::start(dir.path());
    let (status, body) = post_raw(&h, &order_with(r#"{"total": 10}"#)).await;
    assert_eq!((status, body), (200, json!({"id": "order-n", "position": 1, "duplicate": true})));
    let (status, problem) = post_raw(&h, &order_with(r#"{"total": 10.01}"#)).await;
    assert_eq!((status, pointers(&problem)), (409, vec!["/detail/total".to_owned()]));
    assert_eq!(h.all_events().await.len(), 1);
}

#[tokio::test]
async fn a_batch_stores_the_valid_events_and_reports_the_rest() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    h.post("/v1/events", &event("seen", json!({"n": 0}))).await;
    let batch = json!([
        event("b1", json!({"n": 1})),
        {"id": "bad", "source": "s", "detail": "not an object"},
        event("seen", json!({"n": 0})),
        event("seen", json!({"n": 99})),
        event("b1", json!({"n": 1})),
    ]);
    let (status, body) = h.post("/v1/events", &batch).await;
    assert_eq!(status, 200);
    assert_eq!(body["failed"], 2);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0], json!({"id": "b1", "position": 2, "duplicate": false}));
    assert_eq!(pointers(&results[1]["error"]), vec!["/1/detail-type", "/1/detail"]);
    assert_eq!(results[1]["error"]["status"], 422);
    assert_eq!(results[2], json!({"id": "seen", "position": 1, "duplicate": true}));
    assert_eq!(results[3]["error"]["status"], 409);
    assert_eq!(pointers(&results[3]["error"]), vec!["/3/detail/n"], "pointers into the request, as for 422s");
    assert_eq!(results[4], json!({"id": "b1", "position": 2, "duplicate": true}));
    assert_eq!(h.all_events().await.len(), 2);
}

#[tokio::test]
async fn batch_limits_are_enforced() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let too_many: Vec<Value> = (0..1001).map(|i| event(&format!("e{i}"), json!({}))).collect();
    let (status, problem) = h.post("/v1/events", &Value::Array(too_many)).await;
    assert_eq!((status, problem["status"].clone()), (413, json!(413)));
    let (status, problem) = h.post("/v1/events", &json!([])).await;
    assert_eq!((status, pointers(&problem)), (422, vec![String::new()]));
    let exactly: Vec<Value> = (0..1000).map(|i| event(&format!("e{i}"), json!({}))).collect();
    let (status, body) = h.post("/v1/events", &Value::Array(exactly)).await;
    assert_eq!((status, body["failed"].clone()), (200, json!(0)));
    assert_eq!(h.all_events().await.len(), 1000);
}

#[tokio::test]
async fn malformed_oversized_and_mistyped_bodies_get_problems() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let post_raw = |content_type: &'static str, body: Vec<u8>| {
        h.send(h.http.post(h.url("/v1/events")).header("content-type", content_type).body(body))
    };

    let (status, problem) = post_raw("application/json", b"{\"id\": ".to_vec()).await;
    assert_eq!((status, problem["type"].clone()), (400, json!("urn:herald:problem:malformed-json")));
    assert!(problem["detail"].as_str().unwrap().contains("line 1"), "{problem}");
    assert_eq!(pointers(&problem), vec![String::new()], "the body as a whole: {problem}");

    let (status, problem) = post_raw("text/plain", b"{}".to_vec()).await;
    assert_eq!((status, &problem["errors"][0]["parameter"]), (415, &json!("Content-Type")), "{problem}");
    // JSON is UTF-8: a body declared in another charset is not misread.
    for content_type in ["application/json; charset=utf-16", "application/cloudevents+json; charset=latin1"] {
        let (status, problem) = post_raw(content_type, b"{}".to_vec()).await;
        assert_eq!((status, &problem["type"]), (415, &json!("urn:herald:problem:unsupported-media-type")));
    }
    let (status, _) = h.send(h.http.post(h.url("/v1/events")).body("{}")).await;
    assert_eq!(status, 415, "no content type");

    // A declared length over 10 MiB is refused before any of the body is read.
    let answer = raw_request(
        &h,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485761\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    let problem: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(pointers(&problem), vec![String::new()], "{answer}");

    let big_detail =
        json!({"id": "big", "source": "s", "detail-type": "t", "detail": {"blob": "x".repeat(256 * 1024)}});
    let (status, problem) = h.post("/v1/events", &big_detail).await;
    assert_eq!((status, pointers(&problem)), (422, vec!["/detail".to_owned()]));

    let (status, problem) =
        h.post("/v1/events", &json!({"id": 5, "source": "", "detail-type": "t", "detail": {}, "time": "noon"})).await;
    assert_eq!(status, 422);
    assert_eq!(pointers(&problem), vec!["/id", "/source", "/time"]);
    assert_eq!(problem["title"], "Invalid event");
    let blank = json!({"id": "  ", "source": "\t", "detail-type": "\u{2003}", "detail": {}});
    let (status, problem) = h.post("/v1/events", &blank).await;
    assert_eq!((status, pointers(&problem)), (422, vec!["/id".into(), "/detail-type".into(), "/source".into()]));
    // Well-formed, but deeper than Herald reads: refused, not called malformed.
    let deep =
        format!(r#"{{"source": "s", "detail-type": "t", "detail": {}1{}}}"#, r#"{"a":"#.repeat(200), "}".repeat(200));
    let (status, problem) = post_raw("application/json", deep.into_bytes()).await;
    assert_eq!((status, pointers(&problem)), (422, vec![String::new()]), "{problem}");
    // A member named twice has no one reading (serde_json would keep the
    // last, other parsers the first): refused at the member, in a batch too.
    let twice = r#"{"id": "twice", "source": "s", "detail-type": "t", "detail": {"total": 1, "total": 2}}"#;
    let (status, problem) = post_raw("application/json", twice.into()).await;
    assert_eq!((status, pointers(&problem)), (422, vec!["/detail/total".to_owned()]), "{problem}");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("named twice"), "{problem}");
    let (status, problem) = post_raw("application/json", format!("[{{}}, {twice}]").into_bytes()).await;
    assert_eq!((status, pointers(&problem)), (422, vec!["/1/detail/total".to_owned()]), "{problem}");
    // serde_json would read these objects as the number 5 and as [1].
    for token in ["Number\": \"5", "RawValue\": \"[1]"] {
        let body =
            format!(r#"{{"source": "s", "detail-type": "t", "detail": {{"n": {{"$serde_json::private::{token}"}}}}}}"#);
        let (status, problem) = post_raw("application/json", body.into_bytes()).await;
        let name = token.split('"').next().unwrap();
        let at = format!("/detail/n/$serde_json::private::{name}");
        assert_eq!((status, pointers(&problem)), (422, vec![at]), "{problem}");
    }
    assert!(h.all_events().await.is_empty(), "nothing invalid is stored");

    let utf8 = event("utf8", json!({"name": "Zoë"})).to_string().into_bytes();
    let (status, answer) = post_raw("application/json; charset=\"UTF-8\"", utf8).await;
    assert_eq!(status, 201, "UTF-8 declared is fine: {answer}");
    // A byte order mark, which RFC 8259 lets a parser ignore, is ignored.
    let with_mark = [b"\xEF\xBB\xBF".as_slice(), event("marked", json!({})).to_string().as_bytes()].concat();
    let (status, answer) = post_raw("application/json", with_mark).await;
    assert_eq!((status, &answer["id"]), (201, &json!("marked")), "{answer}");
}

/// Sends raw bytes on a fresh connection and returns what comes back.
fn raw_request(h: &Herald, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(h.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = vec![0; 4096];
    let n = stream.read(&mut answer).unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn put_by_id_is_idempotent_and_checks_the_id() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let body = json!({"source": "users", "detail-type": "User Renamed", "detail": {"name": "Ada"}});
    let (s1, first) = h.put("/v1/events/user-1%2Frename", &body).await;
    let (s2, again) = h.put("/v1/events/user-1%2Frename", &body).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(first, json!({"id": "user-1/rename", "position": 1, "duplicate": false}));
    assert_eq!(again["duplicate"], true);

    let mut changed = body.clone();
    changed["detail"]["name"] = json!("Grace");
    assert_eq!(h.put("/v1/events/user-1%2Frename", &changed).await.0, 409);

    let mut mismatched = body.clone();
    mismatched["id"] = json!("someone-else");
    let (status, problem) = h.put("/v1/events/user-2", &mismatched).await;
    assert_eq!((status, pointers(&problem)), (422, vec!["/id".to_owned()]));
    // An id that is not a string is refused as a POST refuses it, not replaced.
    mismatched["id"] = json!(5);
    let (status, problem) = h.put("/v1/events/user-2", &mismatched).await;
    assert_eq!((status, pointers(&problem)), (422, vec!["/id".to_owned()]), "{problem}");
    assert_eq!(h.get("/v1/events/user-2").await.0, 404, "nothing stored");
    assert_eq!(h.get("/v1/events/user-1%2Frename").await.1["detail"]["name"], "Ada");
}

#[tokio::test]
async fn a_binary_mode_cloudevent_without_a_body_has_no_data_as_in_structured_mode() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let binary = |id: &str| {
        h.http
            .post(h.url("/v1/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "/shop")
            .header("ce-type", "order.placed")
    };
    let (status, answer) = h.send(binary("bin-1")).await;
    assert_eq!(status, 201, "{answer}");
    // With a JSON content type (the event's datacontenttype) and no data.
    let (status, answer) = h.send(binary("bin-2").header("content-type", "application/json")).await;
    assert_eq!(status, 201, "{answer}");
    let structured = json!({"specversion": "1.0", "id": "str-1", "source": "/shop", "type": "order.placed"});
    let request = h
        .http
        .post(h.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .body(structured.to_string());
    assert_eq!(h.send(request).await.0, 201);
    for id in ["bin-1", "bin-2", "str-1"] {
        assert_eq!(h.get(&format!("/v1/events/{id}")).await.1["detail"], json!({}), "{id}");
    }

    // An attribute sent twice is refused, not settled by picking one.
    let (status, problem) = h.send(binary("bin-3").header("ce-id", "bin-4")).await;
    assert_eq!((status, &problem["errors"][0]["parameter"]), (400, &json!("ce-id")), "{problem}");
    assert_eq!(h.get("/v1/events/bin-4").await.0, 404);
}

#[tokio::test]
async fn the_content_type_alone_decides_a_cloudevent_mode_whatever_ce_headers_come_along() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let with_ce_headers = |content_type: &str, body: Value| {
        h.http
            .post(h.url("/v1/events"))
            .header("content-type", content_type)
            .header("ce-specversion", "1.0")
            .header("ce-id", "from-headers")
            .header("ce-source", "/shop")
            .header("ce-type", "order.placed")
            .body(body.to_string())
    };
    let structured =
        json!({"specversion": "1.0", "id": "from-body", "source": "/shop", "type": "order.placed", "data": {"n": 1}});
    let (status, answer) = h.send(with_ce_headers("application/cloudevents+json", structured.clone())).await;
    assert_eq!((status, &answer["id"]), (201, &json!("from-body")), "{answer}");
    assert_eq!(h.get("/v1/events/from-body").await.1["detail"], json!({"n": 1}));

    let (status, answer) = h.send(with_ce_headers("application/cloudevents-batch+json", json!([structured]))).await;
    assert_eq!((status, &answer["results"][0]["duplicate"]), (200, &json!(true)), "{answer}");

    // PUT takes the envelope only: a CloudEvent sent to it is refused as such,
    // not read as an envelope with unknown fields.
    let put = h.http.put(h.url("/v1/events/from-body")).header("content-type", "application/cloudevents+json");
    let (status, problem) = h.send(put.body(structured.to_string())).await;
    assert_eq!((status, &problem["errors"][0]["parameter"]), (415, &json!("Content-Type")), "{problem}");

    // Not a CloudEvent, though headers would make one of it in binary mode.
    let (status, problem) = h.send(with_ce_headers("application/cloudevents+json", json!({"n": 2}))).await;
    assert_eq!((status, pointers(&problem).join(" ")), (422, "/specversion /id /source /type".to_owned()), "{problem}");
    assert_eq!(h.get("/v1/events/from-headers").await.0, 404, "nothing stored under the headers' id");
}

#[tokio::test]
async fn put_events_takes_at_most_ten_entries_as_eventbridge_does() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let put_events = |count: usize| {
        let entries: Vec<Value> = (0..count)
            .map(|i| json!({"Source": "shop", "DetailType": "Order Placed", "Detail": format!("{{\"n\":{i}}}")}))
            .collect();
        h.http
            .post(h.url("/"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "AWSEvents.PutEvents")
            .body(json!({"Entries": entries}).to_string())
    };
    let (status, error) = h.send(put_events(11)).await;
    assert_eq!((status, &error["__type"]), (400, &json!("ValidationException")), "{error}");
    assert!(error["message"].as_str().unwrap().contains("Entries"), "{error}");
    assert!(h.all_events().await.is_empty(), "nothing stored");
    // Every request EventBridge cannot take is a 400 ValidationException.
    for body in [r#"{"Entries": [], "Entries": []}"#, "[", r#"{"Entries": "none"}"#] {
        let request = h
            .http
            .post(h.url("/"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "AWSEvents.PutEvents")
            .body(body);
        let (status, error) = h.send(request).await;
        assert_eq!((status, &error["__type"]), (400, &json!("ValidationException")), "{body}: {error}");
    }
    let (status, answer) = h.send(put_events(10)).await;
    assert_eq!((status, &answer["FailedEntryCount"]), (200, &json!(0)), "{answer}");
    assert_eq!(h.all_events().await.len(), 10);
}
