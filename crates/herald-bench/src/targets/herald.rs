//! Herald over HTTP/1.1: one keep-alive connection per worker, driven by a
//! bare hyper client so the driver spends as little CPU as possible on the
//! 2-core machine it shares with the server.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ensure_loopback;
use crate::workload::{Event, Outcome, Publisher};

/// Retry-After is in whole seconds, far coarser than the latencies measured
/// here; a short fixed pause keeps the pressure on while still backing off.
/// Every retry is counted and reported as `overloaded`.
const OVERLOAD_PAUSE: Duration = Duration::from_millis(20);
const MAX_OVERLOAD_RETRIES: u32 = 500;

pub struct HeraldPublisher {
    addr: SocketAddr,
    /// Sent as the Host header (hyper's low-level client does not add it).
    authority: String,
    /// The base URL's path ("" for `http://HOST:PORT`), for [`Self::request`].
    base_path: String,
    path: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// Checks /healthz, then opens one connection per worker.
pub async fn connect(base_url: &str, workers: usize) -> anyhow::Result<Vec<HeraldPublisher>> {
    let uri: Uri = base_url.parse().with_context(|| format!("bad --herald-url {base_url:?}"))?;
    if uri.scheme_str() != Some("http") {
        bail!("--herald-url must be http://HOST:PORT (got {base_url})");
    }
    let host = uri.host().context("--herald-url has no host")?;
    ensure_loopback(host)?;
    let port = uri.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((host, port)).await?.next().with_context(|| format!("cannot resolve {host}"))?;
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let base_path = uri.path().trim_end_matches('/');

    let mut health = HeraldPublisher {
        addr,
        authority: authority.clone(),
        base_path: base_path.to_string(),
        path: format!("{base_path}/healthz"),
        sender: None,
    };
    let (status, _) = health.send(Method::GET, Bytes::new()).await.context("Herald is not reachable")?;
    if status != StatusCode::OK {
        bail!("GET /healthz answered {status}");
    }

    let mut publishers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut publisher = HeraldPublisher {
            addr,
            authority: authority.clone(),
            base_path: base_path.to_string(),
            path: format!("{base_path}/v1/events"),
            sender: None,
        };
        publisher.sender().await?;
        publishers.push(publisher);
    }
    Ok(publishers)
}

impl HeraldPublisher {
    /// The connection, opened again if the server closed it.
    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            // The connection future does the actual I/O; it ends when the
            // sender is dropped or the server closes.
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    /// Any other request on this connection (subscriptions, status): `path`
    /// is relative to the base URL, e.g. `/v1/subscriptions/x`.
    pub async fn request(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let publish_path = std::mem::replace(&mut self.path, format!("{}{path}", self.base_path));
        let result = self.send(method, body).await;
        self.path = publish_path;
        result
    }

    async fn send(&mut self, method: Method, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::builder()
            .method(method)
            .uri(&self.path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        // A kept-alive connection the server closed meanwhile fails the
        // request; retry once on a fresh one (safe: publishing is idempotent).
        let reused = self.sender.is_some();
        match self.send_once(request.clone()).await {
            Err(_) if reused => self.send_once(request).await,
            result => result,
        }
    }

    async fn send_once(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        let result = async {
            let sender = self.sender().await?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            // Read the whole body so the connection can carry the next request.
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

impl Publisher for HeraldPublisher {
    async fn publish(&mut self, events: &[Event]) -> anyhow::Result<Outcome> {
        let batch = events.len() > 1;
        let body = if batch { json_array(events) } else { events[0].body.clone() };
        let mut outcome = Outcome::default();
        loop {
            let (status, answer) = self.send(Method::POST, body.clone()).await?;
            match status {
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                    outcome.overloaded += 1;
                    if outcome.overloaded > u64::from(MAX_OVERLOAD_RETRIES) {
                        bail!("still {status} after {MAX_OVERLOAD_RETRIES} retries");
                    }
                    tokio::time::sleep(OVERLOAD_PAUSE).await;
                }
                StatusCode::CONFLICT if !batch => {
                    outcome.conflicts += 1;
                    return Ok(outcome);
                }
                StatusCode::CREATED if !batch => {
                    outcome.stored += 1;
                    return Ok(outcome);
                }
                status if status.is_success() => {
                    count_answer(&answer, batch, &mut outcome)?;
                    return Ok(outcome);
                }
                status => bail!("{status}: {}", String::from_utf8_lossy(&answer[..answer.len().min(300)])),
            }
        }
    }
}

/// Single: `{"id","position","duplicate":true}` on 200. Batch:
/// `{"results":[...],"failed":K}` where each result may say `duplicate` or
/// carry `{"error": <problem>}` (a 409 problem is a conflict). Read into
/// types that skip the rest, so the driver's share of the CPU stays small.
fn count_answer(answer: &[u8], batch: bool, outcome: &mut Outcome) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Published {
        #[serde(default)]
        duplicate: bool,
        error: Option<Problem>,
    }
    #[derive(serde::Deserialize)]
    struct Problem {
        status: u16,
    }
    #[derive(serde::Deserialize)]
    struct Batch {
        results: Vec<Published>,
        failed: u64,
    }

    if !batch {
        let one: Published = serde_json::from_slice(answer).context("answer is not a publish result")?;
        if one.duplicate {
            outcome.duplicates += 1;
        } else {
            outcome.stored += 1;
        }
        return Ok(());
    }
    let Batch { results, failed } = serde_json::from_slice(answer).context("answer is not a batch result")?;
    let duplicates = results.iter().filter(|r| r.duplicate).count() as u64;
    let conflicts = results.iter().filter(|r| r.error.as_ref().is_some_and(|e| e.status == 409)).count() as u64;
    outcome.duplicates += duplicates;
    outcome.conflicts += conflicts;
    outcome.failed += failed.saturating_sub(conflicts);
    outcome.stored += (results.len() as u64).saturating_sub(duplicates + failed.max(conflicts));
    Ok(())
}

fn json_array(events: &[Event]) -> Bytes {
    let mut out = BytesMut::with_capacity(events.iter().map(|e| e.body.len() + 1).sum::<usize>() + 2);
    out.put_u8(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&event.body);
    }
    out.put_u8(b']');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_batch_answer() {
        let answer = br#"{"results":[{"id":"a","position":1},{"id":"b","position":2,"duplicate":true},{"error":{"status":409}}],"failed":1}"#;
        let mut outcome = Outcome::default();
        count_answer(answer, true, &mut outcome).unwrap();
        assert_eq!((outcome.stored, outcome.duplicates, outcome.conflicts, outcome.failed), (1, 1, 1, 0));
    }

    #[test]
    fn counts_a_single_duplicate() {
        let mut outcome = Outcome::default();
        count_answer(br#"{"id":"a","position":1,"duplicate":true}"#, false, &mut outcome).unwrap();
        assert_eq!(outcome.duplicates, 1);
    }
}
