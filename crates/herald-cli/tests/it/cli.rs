//! The client subcommands against a running server.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{BIN, Herald, data_dir};

fn herald(h: &Herald, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("HERALD_SERVER", &h.url)
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
    assert!(out.contains("/0/detail-type"), "{out}");
    // A member named twice is refused before anything is sent (the server
    // would never see it: sending re-encodes what the CLI read). The list
    // below shows nothing was stored.
    let twice = "{\"id\":\"t-1\",\"source\":\"cli\",\"detail-type\":\"Note\",\"detail\":{\"n\":1,\"n\":2}}\n";
    let (ok, _, err) = herald(&h, &["publish", "--file", "-"], Some(twice));
    assert!(!ok && err.contains("line 1") && err.contains("member /detail/n is named twice"), "{err}");
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
