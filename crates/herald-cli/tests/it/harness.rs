//! Starting and stopping the real binary.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
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
    /// The holder of the [`SmallDisk`] it runs on, if any.
    on: Option<u32>,
    child: Child,
    /// The server's stderr: a task that panics (a delivery worker, say)
    /// answers no request with a 5xx, so only this tells.
    stderr: File,
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

    /// Starts on `disk`, in its namespaces (the data directory is `data`
    /// on it); restarts start there again.
    pub fn start_on_small_disk(disk: &SmallDisk, env: &[(&str, &str)]) -> Herald {
        Self::launch_on(disk.holder.id(), &disk.data_dir(), env)
    }

    /// Starts in the namespaces of the small disk `holder` holds.
    fn launch_on(holder: u32, data_dir: &Path, env: &[(&str, &str)]) -> Herald {
        let mut herald = Self::launch(SmallDisk::enter_namespaces_of(holder, BIN), data_dir, env);
        herald.on = Some(holder);
        herald
    }

    /// Runs `command` (the binary, or something that execs it) with `serve`'s arguments.
    fn launch(command: Command, data_dir: &Path, env: &[(&str, &str)]) -> Herald {
        Self::launch_at("127.0.0.1:0", command, data_dir, env)
    }

    /// [`launch`](Self::launch), listening on `listen`.
    fn launch_at(listen: &str, mut command: Command, data_dir: &Path, env: &[(&str, &str)]) -> Herald {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let stderr = tempfile::tempfile().expect("a file for herald's stderr");
        let mut child = command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .env("HERALD_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone().expect("herald's stderr"))
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
            on: None,
            child,
            stderr,
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
        let again = self.again();
        assert!(self.terminate().success());
        again()
    }

    /// SIGTERM, then start again on the same data directory listening on
    /// `addr` (`host:port`), where clients that kept an address find it.
    pub fn restart_at(self, addr: &str) -> Herald {
        assert!(self.on.is_none(), "a server on a small disk restarts with `restart`");
        let (dir, env) = (self.data_dir.clone(), self.env.clone());
        assert!(self.terminate().success());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::launch_at(addr, Command::new(BIN), &dir, &env)
    }

    /// `kill -9`, then start again on the same data directory.
    pub fn crash_and_restart(self) -> Herald {
        let again = self.again();
        self.crash();
        again()
    }

    /// `kill -9`, and wait until the process is gone.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts another server as this one was started.
    fn again(&self) -> impl FnOnce() -> Herald + use<> {
        let (dir, env, on) = (self.data_dir.clone(), self.env.clone(), self.on);
        move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            match on {
                Some(holder) => Self::launch_on(holder, &dir, &env),
                None => Herald::start_with_env(&dir, &env),
            }
        }
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
        let mut log = String::new();
        let _ = self.stderr.rewind().and_then(|()| self.stderr.read_to_string(&mut log));
        if std::thread::panicking() {
            // The test failed: what the server said may tell why.
            eprintln!("herald's stderr:\n{log}");
        } else {
            assert!(!log.contains("panicked"), "herald panicked:\n{log}");
        }
    }
}

/// A tmpfs of a few MiB, so a test can fill Herald's disk: mounted in a
/// user and mount namespace of its own (made with `unshare`, no root
/// needed) that a `sleep` holds until dropped, so servers can crash and
/// restart on it. Processes enter it with `nsenter`.
pub struct SmallDisk {
    /// The mount point, the same path inside and outside the namespace.
    pub mount: PathBuf,
    holder: Child,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn new(bytes: u64) -> SmallDisk {
        let dir = data_dir();
        let mount = dir.path().to_owned();
        let script = format!("mount -t tmpfs -o size={bytes} herald-test \"$0\" && echo mounted && exec sleep 3600");
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
            .arg(&mount)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "mounted", "a tmpfs in a namespace of its own (are user namespaces enabled?)");
        SmallDisk { mount, holder, _dir: dir }
    }

    /// `path` on this disk, as the test process reaches it (through the
    /// holder's view of the file system).
    pub fn reach(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").expect("an absolute path");
        Path::new("/proc").join(self.holder.id().to_string()).join("root").join(relative)
    }

    /// Writes zeros to `name` in the mount until the disk is full; returns
    /// its path, to remove when the test frees the space.
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.reach(&self.mount.join(name));
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 << 10];
        loop {
            match file.write(&chunk) {
                Ok(0) => return path,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => return path, // ENOSPC
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }

    /// Where a Herald started on this disk keeps its data.
    fn data_dir(&self) -> PathBuf {
        self.mount.join("data")
    }

    /// `herald check` of the data directory, run in the disk's namespaces.
    pub fn check(&self) -> std::process::Output {
        let mut command = Self::enter_namespaces_of(self.holder.id(), BIN);
        command.arg("check").arg("--data-dir").arg(self.data_dir()).output().unwrap()
    }

    fn enter_namespaces_of(holder: u32, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &holder.to_string(), "--user", "--mount", "--preserve-credentials", program]);
        command
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap().success();
    assert!(ok, "kill -{name} {pid}");
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
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
