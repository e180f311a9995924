//! The client subcommands against a running server.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{BIN, Herald, data_dir, event, pointers, wait_timeout};

fn herald(h: &Herald, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    herald_at(&h.url, args, stdin)
}

fn herald_at(server: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("HERALD_SERVER", server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_get_list_and_tail_from_the_command_line() {
    let dir = data_dir();
    let h = Herald::start(dir.path());

    let mut tail = Command::new(BIN)
        .args(["tail", "--after", "0"])
        .env("HERALD_SERVER", &h.url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    let (ok, out, err) = herald(
        &h,
        &["publish", "--source", "cli", "--detail-type", "Note", "--detail", r#"{"n":1}"#, "--id", "n-1"],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"id": "n-1", "position": 1, "duplicate": false}));

    let lines = "{\"id\":\"n-2\",\"source\":\"cli\",\"detail-type\":\"Note\",\"detail\":{}}\n\n{\"id\":\"n-1\",\"source\":\"cli\",\"detail-type\":\"Note\",\"detail\":{\"n\":1}}\n";
    let (ok, out, err) = herald(&h, &["publish", "--file", "-"], Some(lines));
    assert!(ok, "{err}");
    let results: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        results,
        vec![
            json!({"id": "n-2", "position": 2, "duplicate": false}),
            json!({"id": "n-1", "position": 1, "duplicate": true})
        ]
    );

    let (ok, out, _) = herald(&h, &["publish", "--file", "-"], Some("{\"id\":\"bad\",\"source\":\"cli\"}\n"));
    assert!(!ok, "a refused event fails the command");
    let refused: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(refused["line"], 1, "{out}");
    assert_eq!(pointers(&refused["error"]), vec!["/detail-type", "/detail"]);
    // A member named twice is refused before anything is sent (the server
    // would never see it: sending re-encodes what the CLI read). The list
    // below shows nothing was stored.
    let twice = "{\"id\":\"t-1\",\"source\":\"cli\",\"detail-type\":\"Note\",\"detail\":{\"n\":1,\"n\":2}}\n";
    let (ok, out, _) = herald(&h, &["publish", "--file", "-"], Some(twice));
    let refused: Value = serde_json::from_str(&out).unwrap();
    assert!(!ok && refused["line"] == 1 && out.contains("member /detail/n is named twice"), "{out}");
    assert_eq!(pointers(&refused["error"]), vec!["/detail/n"]);
    let flags = ["publish", "--source", "cli", "--detail-type", "Note", "--detail", r#"{"n":1,"n":2}"#, "--id", "t-2"];
    let (ok, _, err) = herald(&h, &flags, None);
    assert!(!ok && err.contains("member /n is named twice"), "{err}");

    let (ok, out, _) = herald(&h, &["events", "get", "n-2"], None);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["position"], 2);
    let (ok, _, err) = herald(&h, &["events", "get", "missing"], None);
    assert!(!ok && err.contains("404"), "{err}");

    let (ok, out, err) = herald(&h, &["events", "list", "--after", "1"], None);
    assert!(ok);
    assert_eq!(out.lines().count(), 1);
    assert!(err.contains("next: 2"), "{err}");

    let mut tail_out = BufReader::new(tail.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&tail_out.next().unwrap().unwrap()).unwrap();
    let second: Value = serde_json::from_str(&tail_out.next().unwrap().unwrap()).unwrap();
    assert_eq!((first["id"].as_str(), second["id"].as_str()), (Some("n-1"), Some("n-2")));
    tail.kill().unwrap();
    tail.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_dead_letters_and_replay_from_the_command_line() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    // A pull subscription with one attempt: a nack dead-letters at once.
    let spec = r#"{"target": {"type": "pull"}, "retry": {"max_attempts": 1}, "start": "earliest"}"#;
    let (ok, out, err) = herald(&h, &["subs", "apply", "jobs", "--file", "-"], Some(spec));
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["target"]["type"], "pull");
    let (ok, _, err) =
        herald(&h, &["publish", "--source", "s", "--detail-type", "t", "--detail", "{}", "--id", "j1"], None);
    assert!(ok, "{err}");

    let (_, pulled) = h.post("/v1/subscriptions/jobs/pull", &json!({"wait": "5s"})).await;
    let ack_id = pulled["messages"][0]["ack_id"].clone();
    h.post("/v1/subscriptions/jobs/nack", &json!({"ack_ids": [ack_id]})).await;

    let (ok, out, _) = herald(&h, &["subs", "list"], None);
    assert!(ok && out.starts_with("jobs\tactive") && out.contains("dead 1"), "{out}");
    let (ok, out, _) = herald(&h, &["dlq", "list", "jobs"], None);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["dead_letters"][0]["event_id"], "j1");
    let (ok, out, _) = herald(&h, &["dlq", "redrive", "jobs", "j1"], None);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"redriven": 1}));
    let (ok, out, err) = herald(&h, &["replay", "jobs", "--from-position", "1"], None);
    assert!(ok && err.contains("1/1 positions (100%)"), "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["enqueued"], 0, "j1 is already owed again");
    let (ok, _, _) = herald(&h, &["subs", "pause", "jobs"], None);
    assert!(ok);
    let (ok, out, _) = herald(&h, &["subs", "get", "jobs"], None);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["state"], "paused");
    let (ok, _, err) = herald(&h, &["subs", "get", "nope"], None);
    assert!(!ok && err.contains("404"), "{err}");
}

#[tokio::test]
async fn serve_reads_a_config_file_below_flags_and_variables() {
    use std::time::{Duration, Instant};

    use crate::hostile::{get_and_close, open_connections, read_to_close};

    let dir = data_dir();
    let config = dir.path().join("herald.toml");
    // The harness's `--listen 127.0.0.1:0` must win over the file's address
    // (not one of this machine's: serving would fail), and
    // HERALD_HEADER_READ_TIMEOUT over the file's hour.
    std::fs::write(
        &config,
        "listen = \"192.0.2.1:8787\"\nmax-connections = 2\nmax-connections-per-client = 2\nheader-read-timeout = 3600\n",
    )
    .unwrap();
    let env = [("HERALD_CONFIG", config.to_str().unwrap()), ("HERALD_HEADER_READ_TIMEOUT", "1")];
    let h = Herald::start_with_env(&dir.path().join("data"), &env);

    // From the file: two connections, then 503.
    let held = open_connections(h.addr(), 2).await;
    let answer = get_and_close(h.addr(), "").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(held);

    // From the environment: a silent connection is closed after a second.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    read_to_close(&mut silent).await;
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
}

#[test]
fn a_bad_config_file_stops_serve_with_an_error_naming_the_setting() {
    let dir = data_dir();
    for (text, expected) in
        [("max-conections = 5\n", "`max-conections`"), ("max-connections = 0\n", "--max-connections")]
    {
        let config = dir.path().join("herald.toml");
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("herald served with {text:?} in its config file");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected) && stderr.contains("herald.toml"), "{stderr}");
    }
}

#[test]
fn check_takes_its_data_dir_from_the_config_file() {
    let dir = data_dir();
    let store = dir.path().join("store");
    drop(Herald::start(&store));
    let config = dir.path().join("herald.toml");
    // `max-connections` is for `serve` only: `check` passes it by.
    std::fs::write(&config, format!("data-dir = {:?}\nmax-connections = 5\n", store.to_str().unwrap())).unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("{}", store.join("herald.db").display())), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_without_after_prints_what_was_published_while_it_reconnected() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    h.post("/v1/events", &event("before", json!({}))).await;
    let addr = h.addr().to_owned();
    let mut tail = Command::new(BIN).arg("tail").env("HERALD_SERVER", &h.url).stdout(Stdio::piped()).spawn().unwrap();
    let printed = lines_of(tail.stdout.take().unwrap());
    // The tail's connection is open (with this test's own): it has its start.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.metric("herald_connections_open").await < Some(2.0) {
        assert!(Instant::now() < deadline, "tail did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Published on another address, where the tail cannot reconnect yet:
    // when it does, the event is behind the head.
    let elsewhere = h.restart();
    elsewhere.post("/v1/events", &event("while-away", json!({}))).await;
    let _h = elsewhere.restart_at(&addr);

    let line = printed.recv_timeout(Duration::from_secs(15));
    tail.kill().unwrap();
    tail.wait().unwrap();
    let first: Value = serde_json::from_str(&line.expect("tail printed the event")).unwrap();
    assert_eq!((&first["id"], &first["position"]), (&json!("while-away"), &json!(2)));
}

#[test]
fn publish_file_cuts_batches_at_the_servers_body_limit() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    // 60 events of 200 KiB: 12 MiB, over the 10 MiB limit in one batch of
    // the default 500; and on line 31 an event over the limit alone.
    let blob = "x".repeat(200 << 10);
    let mut lines: Vec<String> =
        (0..60).map(|i| event(&format!("big-{i}"), json!({"blob": blob})).to_string()).collect();
    lines.insert(30, event("huge", json!({"blob": "x".repeat(11 << 20)})).to_string());
    let input = data_dir();
    let file = input.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();

    let (ok, out, err) = herald(&h, &["publish", "--file", file.to_str().unwrap()], None);
    assert!(!ok, "the event too large is not published");
    let results: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.len(), 61, "{err}");
    assert_eq!((&results[30]["line"], &results[30]["error"]["status"]), (&json!(31), &json!(413)), "{err}");
    let positions: Vec<&Value> = results.iter().filter_map(|r| r.get("position")).collect();
    assert_eq!(positions, (1..=60).map(|p| json!(p)).collect::<Vec<_>>().iter().collect::<Vec<_>>());
}

#[test]
fn publish_file_reports_each_line_not_published_by_its_number_and_carries_on() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let note = |id: &str| format!("{{\"id\":\"{id}\",\"source\":\"cli\",\"detail-type\":\"Note\",\"detail\":{{}}}}");
    let lines = [
        note("a"),
        "{\"id\": ".to_owned(),
        note("b"),
        note("c"),
        "{\"id\":\"no-type\",\"source\":\"cli\",\"detail\":{}}".to_owned(),
        "{\"id\":\"twice\",\"source\":\"cli\",\"detail-type\":\"Note\",\"detail\":{\"n\":1,\"n\":2}}".to_owned(),
        note("d"),
    ];
    // Two events a request: line 5's event is the second of its request.
    let (ok, out, err) = herald(&h, &["publish", "--file", "-", "--batch", "2"], Some(&lines.join("\n")));
    assert!(!ok, "lines were not published: {err}");
    let results: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let outcomes: Vec<(Value, Vec<String>)> = results
        .iter()
        .map(|r| match r.get("error") {
            Some(error) => (r["line"].clone(), pointers(error)),
            None => (r["id"].clone(), Vec::new()),
        })
        .collect();
    let at = |pointer: &str| vec![pointer.to_owned()];
    assert_eq!(
        outcomes,
        vec![
            (json!("a"), vec![]),
            (json!(2), at("")),
            (json!("b"), vec![]),
            (json!("c"), vec![]),
            (json!(5), at("/detail-type")),
            (json!(6), at("/detail/n")),
            (json!("d"), vec![]),
        ],
        "{out}"
    );
    assert_eq!(results[4]["error"]["status"], 422);
    assert!(results[1]["error"]["detail"].as_str().unwrap().contains("column"), "{out}");
    assert_eq!(results.last().unwrap()["position"], 4, "publishing went on past the malformed line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_ids_and_names_are_refused_rather_than_sent_to_another_path() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    for id in [".", ".."] {
        h.post("/v1/events", &event(id, json!({}))).await;
        let (ok, _, err) = herald(&h, &["events", "get", id], None);
        assert!(!ok && err.contains(&format!("`{id}` cannot be sent in a URL path")), "{id}: {err}");
    }
    // `/v1/subscriptions/./dead-letters` is `/v1/subscriptions/dead-letters`
    // once parsed: purging `.` must not delete the subscription of that name.
    let spec = json!({"target": {"type": "pull"}});
    assert_eq!(h.put("/v1/subscriptions/dead-letters", &spec).await.0, 201);
    let (ok, _, err) = herald(&h, &["dlq", "purge", "."], None);
    assert!(!ok && err.contains("cannot be sent in a URL path"), "{err}");
    assert_eq!(h.get("/v1/subscriptions/dead-letters").await.0, 200);
}

#[test]
fn client_commands_give_up_on_a_server_that_never_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    // Accepts connections and holds them open, never answering.
    std::thread::spawn(move || listener.incoming().collect::<Vec<_>>());

    let started = Instant::now();
    let mut get = Command::new(BIN)
        .args(["--timeout", "1", "events", "get", "e-1"])
        .env("HERALD_SERVER", &server)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut get, Duration::from_secs(10)).expect("events get gave up");
    let mut err = String::new();
    get.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success() && err.contains("no answer within 1 s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // `tail` waits for its stream as long as it runs, but not for a first answer.
    let mut tail = Command::new(BIN)
        .args(["--timeout", "1", "tail"])
        .env("HERALD_SERVER", &server)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = lines_of(tail.stderr.take().unwrap()).recv_timeout(Duration::from_secs(5));
    tail.kill().unwrap();
    tail.wait().unwrap();
    let said = said.expect("tail said why it is retrying");
    assert!(said.contains("no answer within 1 s") && said.contains("retrying"), "{said}");
}

#[test]
fn tail_takes_no_limit_and_publish_says_the_detail_is_optional() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let mut tail = Command::new(BIN)
        .args(["tail", "--limit", "5"])
        .env("HERALD_SERVER", &h.url)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut tail, Duration::from_secs(10));
    if status.is_none() {
        tail.kill().unwrap();
    }
    let mut err = String::new();
    tail.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    assert!(err.contains("--limit"), "{err}");

    let (ok, _, err) = herald(&h, &["publish", "--source", "cli"], None);
    assert!(!ok && err.contains("--detail is optional"), "{err}");
}

/// The lines `from` writes, as they come.
fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

#[tokio::test]
async fn a_reader_that_goes_away_ends_a_command_quietly() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let pad = "x".repeat(1000);
    let batch: Vec<Value> = (0..1000).map(|i| event(&format!("p{i}"), json!({ "pad": pad }))).collect();
    assert_eq!(h.post("/v1/events", &json!(batch)).await.0, 200);
    // `herald events list --limit 1000 | head -1`: ~1 MB, more than a pipe holds.
    let mut list = Command::new(BIN)
        .args(["events", "list", "--limit", "1000"])
        .env("HERALD_SERVER", &h.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(list.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"p0\""), "{first}");
    let out = list.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "as a command killed by SIGPIPE: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn publish_file_reports_a_line_that_is_not_utf8_and_carries_on() {
    let dir = data_dir();
    let h = Herald::start(dir.path());
    let note = |id: &str| format!("{{\"id\":\"{id}\",\"source\":\"cli\",\"detail-type\":\"Note\",\"detail\":{{}}}}\n");
    let mut bytes = note("u1").into_bytes();
    bytes.extend_from_slice(b"{\"id\":\"u\xff\",\"source\":\"cli\",\"detail-type\":\"Note\",\"detail\":{}}\n");
    bytes.extend_from_slice(note("u2").as_bytes());
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, bytes).unwrap();
    let (ok, out, err) = herald(&h, &["publish", "--file", file.to_str().unwrap()], None);
    assert!(!ok, "a line was not published: {err}");
    let results: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.len(), 3, "{out}");
    assert_eq!((results[0]["id"].as_str(), results[2]["id"].as_str()), (Some("u1"), Some("u2")), "{out}");
    assert_eq!(results[1]["line"], 2, "{out}");

    // An Idempotency-Key is one event's: with a file it is refused, not ignored.
    let (ok, _, err) = herald(&h, &["publish", "--file", file.to_str().unwrap(), "--idempotency-key", "k"], None);
    assert!(!ok && err.contains("--idempotency-key"), "{err}");
}

#[test]
fn tail_waits_out_a_busy_server_instead_of_giving_up() {
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_MAX_LIVE_READERS", "1")]);
    // The one live stream this server allows, held by another client.
    let held = Command::new(BIN)
        .args(["tail", "--after", "0"])
        .env("HERALD_SERVER", &h.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut waiting = Command::new(BIN)
        .args(["tail", "--after", "0"])
        .env("HERALD_SERVER", &h.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(waiting.try_wait().unwrap().is_none(), "tail gave up on a 503");
    let mut held = held;
    held.kill().unwrap();
    held.wait().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(h.post("/v1/events", &event("after-busy", json!({}))));
    let (send, lines) = mpsc::channel();
    let stdout = waiting.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = send.send(line.unwrap());
        }
    });
    let line = lines.recv_timeout(Duration::from_secs(10)).expect("tail got the stream once it was free");
    assert!(line.contains("after-busy"), "{line}");
    waiting.kill().unwrap();
    let mut err = String::new();
    waiting.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("busy"), "{err}");
}

#[test]
fn publish_file_sends_again_what_a_busy_server_refused() {
    let dir = data_dir();
    let h = Herald::start_with_env(dir.path(), &[("HERALD_MAX_IN_FLIGHT", "1")]);
    // The one request this server handles at once: a body that is slow to come.
    let mut held = std::net::TcpStream::connect(h.addr()).unwrap();
    held.write_all(
        b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let lines = (0..3)
        .map(|i| format!("{{\"id\":\"busy-{i}\",\"source\":\"cli\",\"detail-type\":\"Note\",\"detail\":{{}}}}"))
        .collect::<Vec<_>>()
        .join("\n");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(held);
    });
    let (ok, out, err) = herald(&h, &["publish", "--file", "-"], Some(&lines));
    release.join().unwrap();
    assert!(ok, "{out}{err}");
    assert!(err.contains("busy"), "it was refused first: {err}");
    let ids: Vec<String> = out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].to_string()).collect();
    assert_eq!(ids, ["\"busy-0\"", "\"busy-1\"", "\"busy-2\""], "{out}");
}
