//! A real webhook receiver on loopback: it records every request and answers
//! as the test's behaviour says (fail N times, time out, answer 410, ...).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub raw: Bytes,
    pub body: Value,
    pub at: Instant,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn event_id(&self) -> &str {
        self.header("webhook-id")
    }
}

/// How to answer a request, given it and how many earlier requests carried
/// the same `webhook-id`.
pub type Behaviour = Arc<dyn Fn(&Hit, usize) -> Reply + Send + Sync>;

#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Wait this long, then answer.
    Slow(Duration, u16),
    /// 429/503 with `Retry-After: seconds`.
    RetryAfter(u16, u64),
}

pub struct Receiver {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start(behaviour: impl Fn(&Hit, usize) -> Reply + Send + Sync + 'static) -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap(), behaviour).await
    }

    pub async fn start_on(
        addr: SocketAddr,
        behaviour: impl Fn(&Hit, usize) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let behaviour: Behaviour = Arc::new(behaviour);
        let recorded = hits.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, raw: Bytes| {
            let (hits, behaviour) = (recorded.clone(), behaviour.clone());
            async move { answer(hits, behaviour, uri.path().to_owned(), headers, raw).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, hits, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until `done` holds for the hits so far; returns them.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let start = Instant::now();
        loop {
            let hits = self.hits();
            if done(&hits) {
                return hits;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}; hits: {}", hits.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    hits: Arc<Mutex<Vec<Hit>>>,
    behaviour: Behaviour,
    path: String,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let hit = Hit { path, body: serde_json::from_slice(&raw).unwrap_or(Value::Null), headers, raw, at: Instant::now() };
    let earlier = {
        let mut hits = hits.lock().unwrap();
        let earlier = hits.iter().filter(|h| h.event_id() == hit.event_id()).count();
        hits.push(hit.clone());
        earlier
    };
    let status = |code: u16| StatusCode::from_u16(code).unwrap();
    match behaviour(&hit, earlier) {
        Reply::Status(code) => (status(code), "receiver says hi").into_response(),
        Reply::Slow(wait, code) => {
            tokio::time::sleep(wait).await;
            status(code).into_response()
        }
        Reply::RetryAfter(code, seconds) => (status(code), [("retry-after", seconds.to_string())]).into_response(),
    }
}
