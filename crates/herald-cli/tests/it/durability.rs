//! Durability: restart persistence, SIGTERM drain, `kill -9` mid-stream, and
//! damaged files reported rather than served.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{BIN, Herald, SmallDisk, data_dir, event, wait_timeout};

#[tokio::test]
async fn a_restart_keeps_events_positions_and_dedup() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    for i in 0..5 {
        h.post("/v1/events", &event(&format!("e{i}"), json!({"i": i}))).await;
    }
    let before = h.all_events().await;
    let h = h.restart();
    assert_eq!(h.all_events().await, before);
    assert_eq!(
        h.post("/v1/events", &event("e3", json!({"i": 3}))).await,
        (200, json!({"id": "e3", "position": 4, "duplicate": true}))
    );
    assert_eq!(h.post("/v1/events", &event("e5", json!({}))).await.1["position"], 6, "positions continue");
}

/// Ids of events whose request was answered 507 (a full disk).
type Refused = Arc<Mutex<Vec<String>>>;

/// Publishes from many connections until told to stop; returns what was
/// acknowledged. A 507 is expected only where `refused` collects them.
async fn publish_until(
    h: &Herald,
    stop: Arc<AtomicBool>,
    workers: usize,
    batch: usize,
    refused: Option<Refused>,
) -> Vec<(String, u64, Instant)> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (http, url, stop, refused) = (h.http.clone(), h.url("/v1/events"), stop.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let events: Vec<Value> =
                    (0..batch).map(|i| event(&format!("w{w}-{n}-{i}"), json!({"w": w, "n": n, "i": i}))).collect();
                n += 1;
                let body = if batch == 1 { events[0].clone() } else { Value::Array(events.clone()) };
                let Ok(response) = http.post(&url).json(&body).send().await else {
                    break;
                };
                let status = response.status().as_u16();
                let Ok(answer) = response.json::<Value>().await else {
                    break;
                };
                let at = Instant::now();
                if let (507, Some(refused)) = (status, &refused) {
                    refused.lock().unwrap().extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
                    continue;
                }
                assert!(status == 200 || status == 201, "unexpected {status}: {answer}");
                if batch == 1 {
                    acked.push((answer["id"].as_str().unwrap().to_owned(), answer["position"].as_u64().unwrap(), at));
                } else {
                    for r in answer["results"].as_array().unwrap() {
                        acked.push((r["id"].as_str().unwrap().to_owned(), r["position"].as_u64().unwrap(), at));
                    }
                }
            }
            acked
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Publishes to `h` from `workers` connections for at least 1.5 s and until
/// `under_way()`, and kills the server with SIGKILL mid-stream; returns what
/// was acknowledged.
async fn publish_then_kill_9(
    h: Herald,
    workers: usize,
    batch: usize,
    refused: Option<Refused>,
    under_way: impl Fn() -> bool,
) -> Vec<(String, u64, Instant)> {
    let h = Arc::new(h);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (h, stop) = (h.clone(), stop.clone());
        tokio::spawn(async move { publish_until(&h, stop, workers, batch, refused).await })
    };
    // At least 1.5 s, and until what the test is about is under way (on a
    // slow machine that takes longer).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !under_way() {
        assert!(Instant::now() < deadline, "not under way after a minute of publishing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::harness::signal(h.pid(), "KILL");
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let dir = data_dir();
    let h = Arc::new(Herald::start(dir.path()));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (h, stop) = (h.clone(), stop.clone());
        tokio::spawn(async move { publish_until(&h, stop, 8, 200, None).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    crate::harness::signal(h.pid(), "TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = publisher.await.unwrap();
    let h = Arc::try_unwrap(h).ok().expect("publisher finished");
    let status = h.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(
        acked.iter().any(|(_, _, at)| *at > signalled),
        "some requests were in flight when SIGTERM came and were answered"
    );

    let h = Herald::start(dir.path());
    let stored: HashMap<String, u64> = ids_and_positions(&h.all_events().await).into_iter().collect();
    for (id, position, _) in &acked {
        assert_eq!(stored.get(id), Some(position), "acknowledged event {id} kept its position");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_acknowledged_event() {
    let dir = data_dir();
    let acked = publish_then_kill_9(Herald::start(dir.path()), 16, 1, None, || true).await;
    assert!(acked.len() > 100, "the stream was under way: {} acknowledged", acked.len());

    let h = Herald::start(dir.path());
    let stored = acknowledged_survived(&h, &acked).await;
    assert_republished_as_duplicates(&h, &acked).await;
    assert_eq!(h.all_events().await.len(), stored.len());
}

/// Every acknowledged event is stored once at its position, and positions
/// are strictly increasing; returns what is stored, by id.
async fn acknowledged_survived(h: &Herald, acked: &[(String, u64, Instant)]) -> HashMap<String, u64> {
    let events = h.all_events().await;
    let positions: Vec<u64> = events.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions strictly increasing");
    let stored: HashMap<String, u64> = ids_and_positions(&events).into_iter().collect();
    assert_eq!(stored.len(), events.len(), "each id stored once");
    for (id, position, _) in acked {
        assert_eq!(stored.get(id), Some(position), "acknowledged {id} survives kill -9 at its position");
    }
    stored
}

/// Publishing everything acknowledged again yields only duplicates.
async fn assert_republished_as_duplicates(h: &Herald, acked: &[(String, u64, Instant)]) {
    let republish: Vec<Value> = acked
        .iter()
        .map(|(id, _, _)| {
            let mut parts = id.trim_start_matches('w').split('-').map(|p| p.parse::<u64>().unwrap());
            let (w, n, i) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            event(id, json!({"w": w, "n": n, "i": i}))
        })
        .collect();
    for chunk in republish.chunks(1000) {
        let (status, body) = h.post("/v1/events", &Value::Array(chunk.to_vec())).await;
        assert_eq!((status, body["failed"].clone()), (200, json!(0)));
        assert!(body["results"].as_array().unwrap().iter().all(|r| r["duplicate"] == true), "only duplicates");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_checkpoints_copy_the_wal_keeps_the_store_whole() {
    let dir = data_dir();
    // Batches write WAL frames fast, so checkpoint rounds run all along; the
    // database file only grows when a checkpoint copies pages into it.
    let db_size = || std::fs::metadata(dir.path().join("herald.db")).map_or(0, |m| m.len());
    let acked = publish_then_kill_9(Herald::start(dir.path()), 8, 200, None, || db_size() > 1 << 20).await;
    assert!(db_size() > 1 << 20, "checkpoints had copied the WAL into the database file");
    let check = std::process::Command::new(BIN).args(["check", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(check.status.success(), "intact after kill -9: {}", String::from_utf8_lossy(&check.stderr));

    let h = Herald::start(dir.path());
    assert!(acked.len() > 1000, "the stream was under way: {} acknowledged", acked.len());
    acknowledged_survived(&h, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_a_full_disk_refuses_concurrent_publishes_loses_nothing_acknowledged() {
    let disk = SmallDisk::new(24 << 20);
    let h = Herald::start_on_small_disk(&disk, &[]);
    let refused: Refused = Arc::default();
    let ballast = std::sync::OnceLock::new();
    let started = Instant::now();
    // Publishing from 8 connections: the disk fills after a second, and the
    // server is killed once refusals (507) have come for a while, while
    // some commits may still find room in the WAL.
    let under_way = || {
        if started.elapsed() > Duration::from_secs(1) {
            ballast.get_or_init(|| disk.fill("ballast"));
        }
        refused.lock().unwrap().len() >= 100
    };
    let acked = publish_then_kill_9(h, 8, 10, Some(refused.clone()), under_way).await;
    let refused = refused.lock().unwrap().clone();
    assert!(acked.len() > 100 && refused.len() >= 100, "{} acknowledged, {} refused", acked.len(), refused.len());

    // Restarted on the disk still full: everything acknowledged is there,
    // nothing refused is, and positions have no gaps.
    let h = Herald::start_on_small_disk(&disk, &[]);
    let stored = acknowledged_survived(&h, &acked).await;
    let positions: HashSet<u64> = stored.values().copied().collect();
    assert_eq!(positions, (1..=stored.len() as u64).collect(), "no gaps");
    let refused_stored: Vec<&String> = refused.iter().filter(|id| stored.contains_key(*id)).collect();
    assert!(refused_stored.is_empty(), "refused events were stored: {refused_stored:?}");

    // Space freed: everything acknowledged is a duplicate, and the store is whole.
    std::fs::remove_file(ballast.get().unwrap()).unwrap();
    assert_republished_as_duplicates(&h, &acked).await;
    assert!(h.terminate().success());
    let check = disk.check();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[tokio::test]
async fn a_damaged_data_file_is_reported_by_check_and_never_served() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let batch: Vec<Value> = (0..1000).map(|i| event(&format!("e{i:04}"), json!({"pad": "x".repeat(200)}))).collect();
    h.post("/v1/events", &Value::Array(batch)).await;
    assert!(h.terminate().success());

    let check = std::process::Command::new(BIN).args(["check", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(check.status.success(), "healthy: {}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("ok"));

    let file = dir.path().join("herald.db");
    damage(&file);
    let check = std::process::Command::new(BIN).args(["check", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(check.status.code(), Some(2), "damaged file fails the check");
    assert!(String::from_utf8_lossy(&check.stderr).contains("herald.db"), "names the file");

    let h = Herald::start(dir.path());
    let (mut server_errors, mut served) = (0, 0);
    for i in (0..1000).step_by(25) {
        let (status, body) = h.get(&format!("/v1/events/e{i:04}")).await;
        match status {
            200 => {
                assert_eq!(body["id"], format!("e{i:04}"), "served data is real data");
                served += 1;
            }
            500 => {
                assert_eq!(body["type"], "urn:herald:problem:storage-damaged");
                server_errors += 1;
            }
            other => assert_eq!(other, 404, "{body}"),
        }
    }
    assert!(server_errors > 0, "damaged pages answer 5xx");
    assert!(served > 0, "events on undamaged pages are still served");
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_loses_nothing_survives_kill_9_and_recovers_when_freed() {
    let disk = SmallDisk::new(24 << 20);
    let h = Herald::start_on_small_disk(&disk, &[]);
    let batch = |prefix: &str, n: usize| -> Value {
        (0..n).map(|i| event(&format!("{prefix}-{i}"), json!({"pad": "x".repeat(4000)}))).collect()
    };
    let (status, before) = h.post("/v1/events", &batch("before", 50)).await;
    assert_eq!((status, &before["failed"]), (200, &json!(0)), "{before}");
    assert_eq!(h.get("/readyz").await.0, 200);

    // Fill the disk: not ready, before any publish is refused; then publish
    // until a commit finds no room.
    let ballast = disk.fill("ballast");
    // Room found is trusted for a second; a full disk is seen at the next probe.
    let not_ready = |(status, problem): (u16, Value)| {
        assert_eq!((status, &problem["type"]), (507, &json!("urn:herald:problem:storage-full")), "{problem}");
    };
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    not_ready(h.get("/readyz").await);
    let mut acked = ids_and_positions(before["results"].as_array().unwrap());
    let mut refused = None;
    for n in 0..1000 {
        let prefix = format!("full{n}");
        let response = h.http.post(h.url("/v1/events")).json(&batch(&prefix, 50)).send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body: Value = response.json().await.unwrap();
        if status == 507 {
            assert_eq!(headers["content-type"], "application/problem+json");
            assert_eq!(headers["retry-after"], "10", "a full disk is not freed within a second");
            assert_eq!(body["type"], "urn:herald:problem:storage-full", "{body}");
            assert!(body["detail"].as_str().unwrap().contains("nothing of this request was stored"), "{body}");
            refused = Some(prefix);
            break;
        }
        assert_eq!((status, &body["failed"]), (200, &json!(0)), "stored while room was left: {body}");
        acked.extend(ids_and_positions(body["results"].as_array().unwrap()));
    }
    let refused = refused.expect("a full disk refuses writes");
    let (status, single) = h.post("/v1/events", &event("single", json!({"pad": "y".repeat(4000)}))).await;
    assert_eq!((status, &single["type"]), (507, &json!("urn:herald:problem:storage-full")), "{single}");
    let (status, put) = h.put("/v1/events/put-1", &event("put-1", json!({"pad": "z".repeat(4000)}))).await;
    assert_eq!(status, 507, "{put}");
    let entry = json!({"Source": "test.shop", "DetailType": "Order Placed", "Detail": "{\"pad\": 1}"});
    let aws = h
        .http
        .post(h.url("/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "AWSEvents.PutEvents")
        .body(json!({"Entries": [entry]}).to_string());
    let response = aws.send().await.unwrap();
    assert_eq!(response.status(), 500, "EventBridge's SDKs retry a 500, not a 507");
    assert_eq!(response.json::<Value>().await.unwrap()["__type"], "InternalException");
    assert!(h.metric("herald_store_commits_failed_total{reason=\"full\"}").await.unwrap() >= 4.0);

    // Reads go on, and hold exactly what was acknowledged, at its positions;
    // also after kill -9 and a restart on the disk still full.
    assert_eq!(ids_and_positions(&h.all_events().await), acked, "every acknowledged event, nothing refused, no gaps");
    let h = h.crash_and_restart();
    assert_eq!(ids_and_positions(&h.all_events().await), acked, "the same after kill -9 and a restart on a full disk");
    not_ready(h.get("/readyz").await);

    // Space freed: writes succeed again, and the refused events were never stored.
    std::fs::remove_file(&ballast).unwrap();
    assert_eq!(h.get("/readyz").await.0, 200, "ready again once space is freed, before any write");
    let (status, again) = h.post("/v1/events", &batch(&refused, 50)).await;
    assert_eq!((status, &again["failed"]), (200, &json!(0)), "{again}");
    for (i, result) in again["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(result["duplicate"], false, "a refused event was not stored");
        assert_eq!(result["position"].as_u64().unwrap(), acked.len() as u64 + 1 + i as u64, "positions go on");
    }
    let (id, position) = &acked[0];
    let (status, duplicate) = h.post("/v1/events", &event(id, json!({"pad": "x".repeat(4000)}))).await;
    assert_eq!((status, &duplicate["position"]), (200, &json!(position)), "dedup survives: {duplicate}");

    assert!(h.terminate().success(), "check runs with the server stopped");
    let check = disk.check();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("ok"));
}

#[tokio::test]
async fn a_body_damaged_byte_for_byte_is_reported_by_check_and_never_served() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let batch: Vec<Value> =
        (0..100).map(|i| event(&format!("b{i:03}"), json!({"k": format!("value-{i:03}")}))).collect();
    h.post("/v1/events", &Value::Array(batch)).await;
    assert!(h.terminate().success());

    // One character of one event's detail changed, the same length: every
    // page stays well-formed, so SQLite's own check cannot see it. (Every
    // copy of it: a free page may still hold one from before a page split.)
    let file = dir.path().join("herald.db");
    let mut bytes = std::fs::read(&file).unwrap();
    let copies: Vec<usize> =
        bytes.windows(9).enumerate().filter(|(_, w)| *w == b"value-042").map(|(at, _)| at).collect();
    assert!(!copies.is_empty(), "the event's detail is in the file");
    for at in copies {
        bytes[at + 8] = b'9';
    }
    std::fs::write(&file, &bytes).unwrap();

    let check = run_check(dir.path());
    assert_eq!(check.status.code(), Some(2), "{}", String::from_utf8_lossy(&check.stdout));
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(said.contains("herald.db") && said.contains("checksum"), "{said}");

    let h = Herald::start(dir.path());
    let (status, body) = h.get("/v1/events/b042").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["type"], "urn:herald:problem:storage-damaged");
    let (status, page) = h.get("/v1/events?limit=100").await;
    assert_eq!(status, 500, "a page holding it fails too: {page}");
    let (status, body) = h.get("/v1/events/b041").await;
    assert_eq!((status, &body["detail"]["k"]), (200, &json!("value-041")), "its neighbours are served");
}

#[tokio::test]
async fn a_second_server_on_a_data_dir_in_use_is_refused_and_so_is_check() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let said = serve_refused(dir.path());
    assert!(said.contains("in use"), "{said}");

    let check = run_check(dir.path());
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr).contains("in use"));

    let (status, _) = h.post("/v1/events", &event("still-mine", json!({}))).await;
    assert_eq!(status, 201, "the first server carries on");
    assert!(h.terminate().success());
    assert!(run_check(dir.path()).status.success(), "free once it has stopped");
}

#[tokio::test]
async fn check_leaves_a_crashed_store_as_it_was_and_a_wal_damaged_mid_file_is_refused() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    for i in 0..40 {
        let (status, _) = h.post("/v1/events", &event(&format!("w{i:02}"), json!({"i": i}))).await;
        assert_eq!(status, 201);
    }
    h.crash();
    let wal = dir.path().join("herald.db-wal");
    let before = std::fs::read(&wal).expect("a crash leaves the WAL");

    let check = run_check(dir.path());
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(std::fs::read(&wal).unwrap(), before, "check changed nothing");

    // Damage the third frame's page: 40 acknowledged commits follow it.
    let page = u32::from_be_bytes(before[8..12].try_into().unwrap()) as usize;
    let mut damaged = before.clone();
    damaged[32 + 2 * (24 + page) + 24 + 100] ^= 0xff;
    std::fs::write(&wal, &damaged).unwrap();

    let check = run_check(dir.path());
    assert_eq!(check.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("WAL frame 3"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let said = serve_refused(dir.path());
    assert!(said.contains("herald.db-wal"), "names the file: {said}");

    // Undamaged again, everything acknowledged is there.
    std::fs::write(&wal, &before).unwrap();
    let h = Herald::start(dir.path());
    assert_eq!(h.all_events().await.len(), 40);
}

#[tokio::test]
async fn check_refuses_what_is_not_a_herald_store() {
    let dir = data_dir();
    let check = run_check(dir.path());
    assert_eq!(check.status.code(), Some(1));
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(said.contains("not a Herald store") && said.matches("database file").count() == 1, "{said}");

    std::fs::write(dir.path().join("herald.db"), b"").unwrap();
    assert_eq!(run_check(dir.path()).status.code(), Some(2), "an empty file is no store");

    let other = rusqlite::Connection::open(dir.path().join("herald.db")).unwrap();
    other.execute_batch("CREATE TABLE foo (x); INSERT INTO foo VALUES (1);").unwrap();
    drop(other);
    assert_eq!(run_check(dir.path()).status.code(), Some(2), "another program's database is no store");
    assert!(serve_refused(dir.path()).contains("not a Herald store"));
}

/// Runs `serve` on `dir`, which must exit with an error rather than serve;
/// returns what it said.
fn serve_refused(dir: &std::path::Path) -> String {
    let mut serve = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut serve, Duration::from_secs(20));
    if status.is_none() {
        let _ = serve.kill();
    }
    let mut said = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut said).unwrap();
    assert!(status.is_some_and(|s| !s.success()), "serve must refuse, not serve: {status:?} {said}");
    said
}

fn run_check(dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(BIN).args(["check", "--data-dir"]).arg(dir).output().unwrap()
}

/// The `id` and `position` of stored events or of publish results.
fn ids_and_positions(items: &[Value]) -> Vec<(String, u64)> {
    items.iter().map(|e| (e["id"].as_str().unwrap().to_owned(), e["position"].as_u64().unwrap())).collect()
}

/// Overwrites the start of every other page after the schema's root pages
/// (those created first), so some reads meet damage and others do not.
fn damage(path: &std::path::Path) {
    use std::io::{Seek, SeekFrom, Write};
    let (last_root, page): (u64, u64) = rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT max(rootpage), (SELECT page_size FROM pragma_page_size) FROM sqlite_schema", [], |r| {
            Ok((r.get::<_, i64>(0)?.unsigned_abs(), r.get::<_, i64>(1)?.unsigned_abs()))
        })
        .unwrap();
    let len = std::fs::metadata(path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    // Page n (from 1) starts at (n - 1) * page.
    let mut offset = (last_root + 1) * page;
    while offset + page < len {
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&[0x5A; 48]).unwrap();
        offset += 2 * page;
    }
    f.sync_all().unwrap();
}
