//! Starting and stopping the real binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// A running `herald serve` on a port of its own choosing.
pub struct Herald {
    pub url: String,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    child: Child,
    pub http: reqwest::Client,
}

impl Herald {
    /// Starts a server on `data_dir` and waits until it is listening.
    pub fn start(data_dir: &Path) -> Herald {
        Self::start_with_env(data_dir, &[])
    }

    /// Starts with extra environment variables (kept across restarts).
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Herald {
        Self::launch(Command::new(BIN), data_dir, env)
    }

    /// Starts with the open-file limit (`ulimit -n`) set to `soft` and `hard`
    /// (not kept across restarts), and no limit per client below the total.
    pub fn start_with_fd_limit(data_dir: &Path, soft: u32, hard: u32) -> Herald {
        let mut shell = Command::new("sh");
        shell.args(["-c", &format!("ulimit -S -n {soft} && ulimit -H -n {hard} && exec \"$0\" \"$@\""), BIN]);
        Self::launch(shell, data_dir, &[("HERALD_MAX_CONNECTIONS_PER_CLIENT", "10000")])
    }

    /// Starts with its data directory on a tmpfs of `bytes` mounted at
    /// `mount` (an empty directory) in a mount namespace of its own, made
    /// with `unshare` as an unprivileged user. The test reaches that disk
    /// through [`Herald::on_small_disk`]; it goes away with the process, so
    /// this server cannot be restarted.
    pub fn start_on_small_disk(mount: &Path, bytes: u64) -> Herald {
        let mut unshare = Command::new("unshare");
        unshare.args(["--user", "--map-root-user", "--mount", "sh", "-c"]);
        unshare.arg(format!("mount -t tmpfs -o size={bytes} herald-test '{}' && exec \"$0\" \"$@\"", mount.display()));
        unshare.arg(BIN);
        Self::launch(unshare, &mount.join("data"), &[])
    }

    /// A path on the disk of [`Herald::start_on_small_disk`], as this process
    /// reaches it (through the server's own view of the file system).
    pub fn on_small_disk(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").expect("an absolute path");
        Path::new("/proc").join(self.pid().to_string()).join("root").join(relative)
    }

    /// Runs `herald ARGS` in the server's namespaces, so it sees the small disk.
    pub fn run_beside(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "--user", "--mount", "--preserve-credentials", BIN])
            .args(args)
            .output()
            .expect("run nsenter")
    }

    /// Runs `command` (the binary, or something that execs it) with `serve`'s arguments.
    fn launch(mut command: Command, data_dir: &Path, env: &[(&str, &str)]) -> Herald {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("HERALD_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start herald");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let addr =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Herald {
            url: format!("http://{addr}"),
            data_dir: data_dir.to_owned(),
            env,
            child,
            http: reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap(),
        }
    }

    /// `host:port`, for raw TCP.
    pub fn addr(&self) -> &str {
        self.url.strip_prefix("http://").expect("an http URL")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        wait_timeout(&mut self.child, Duration::from_secs(20)).expect("herald exits after SIGTERM")
    }

    pub fn restart(self) -> Herald {
        let (dir, env) = (self.data_dir.clone(), self.env.clone());
        assert!(self.terminate().success());
        Herald::start_with_env(&dir, &env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>())
    }

    /// `kill -9`, then start again on the same data directory.
    pub fn crash_and_restart(mut self) -> Herald {
        let (dir, env) = (self.data_dir.clone(), self.env.clone());
        let _ = self.child.kill();
        let _ = self.child.wait();
        Herald::start_with_env(&dir, &env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>())
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends a request; returns the status and the body as JSON (or as a string when not JSON).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("request reaches herald");
        let status = response.status().as_u16();
        let text = response.text().await.expect("read body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A metric's value as `/metrics` exports it now, if it is exported.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        metric_in(&text, name)
    }

    /// Every stored event, in position order, read page by page.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut after = 0;
        let mut out = Vec::new();
        loop {
            let (status, page) = self.get(&format!("/v1/events?after={after}&limit=1000")).await;
            assert_eq!(status, 200, "{page}");
            let events = page["events"].as_array().unwrap().clone();
            if events.is_empty() {
                return out;
            }
            after = page["next"].as_u64().unwrap();
            out.extend(events);
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap().success();
    assert!(ok, "kill -{name} {pid}");
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().ok()? {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A fresh data directory, removed when dropped.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A valid event with the given id and detail.
pub fn event(id: &str, detail: Value) -> Value {
    serde_json::json!({"id": id, "source": "test.shop", "detail-type": "Order Placed", "detail": detail})
}

/// The pointers named in a problem's `errors`.
pub fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["pointer"].as_str().map(str::to_owned))
        .collect()
}

/// A metric's value in a Prometheus text exposition (the line `name value`).
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
