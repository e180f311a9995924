//! Herald over HTTP/1.1: one keep-alive connection per worker, spoken by
//! hand as load generators like `wrk` do. Each request is one `write`, each
//! answer is read into a reused buffer and parsed with `httparse`. The driver
//! shares the 2-core machine with the server it measures, so every
//! microsecond it spends is one the server does not get: with hyper's client
//! (a task per connection, a channel hop each way) the driver took ~10 us of
//! CPU per request, twice the user time it takes now (BENCHMARKS.md).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::http::{Method, StatusCode, Uri};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ensure_loopback;
use crate::workload::{Event, Outcome, Publisher};

/// Retry-After is in whole seconds, far coarser than the latencies measured
/// here; a short fixed pause keeps the pressure on while still backing off.
/// Every retry is counted and reported as `overloaded`.
const OVERLOAD_PAUSE: Duration = Duration::from_millis(20);
const MAX_OVERLOAD_RETRIES: u32 = 500;
/// Herald's publish answers are ~100 bytes; batch answers ~6 KB.
const READ_BUFFER: usize = 16 * 1024;
/// Headers an answer may carry; Herald sends about six.
const MAX_HEADERS: usize = 32;
/// Limits on what one answer may make the driver buffer.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;

pub struct HeraldPublisher {
    addr: SocketAddr,
    /// Sent as the Host header.
    authority: String,
    /// The base URL's path ("" for `http://HOST:PORT`), for [`Self::request`].
    base_path: String,
    path: String,
    connection: Option<Connection>,
    /// The request being written, reused from one request to the next.
    out: Vec<u8>,
}

/// One open connection and the bytes read from it but not yet consumed.
struct Connection {
    stream: TcpStream,
    read: BytesMut,
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
    let publisher = |path: &str| HeraldPublisher {
        addr,
        authority: authority.clone(),
        base_path: base_path.to_string(),
        path: format!("{base_path}{path}"),
        connection: None,
        out: Vec::new(),
    };

    let (status, _) = publisher("/healthz").send(Method::GET, b"").await.context("Herald is not reachable")?;
    if status != StatusCode::OK {
        bail!("GET /healthz answered {status}");
    }
    let mut publishers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut publisher = publisher("/v1/events");
        publisher.connection = Some(Connection::open(addr).await?);
        publishers.push(publisher);
    }
    Ok(publishers)
}

impl HeraldPublisher {
    /// Any other request on this connection (subscriptions, status): `path`
    /// is relative to the base URL, e.g. `/v1/subscriptions/x`.
    pub async fn request(&mut self, method: Method, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let publish_path = std::mem::replace(&mut self.path, format!("{}{path}", self.base_path));
        let result = self.send(method, &body).await;
        self.path = publish_path;
        result
    }

    async fn send(&mut self, method: Method, body: &[u8]) -> anyhow::Result<(StatusCode, Bytes)> {
        self.out.clear();
        write!(
            self.out,
            "{method} {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        )
        .expect("writing into a Vec cannot fail");
        self.out.extend_from_slice(body);
        // A kept-alive connection the server closed meanwhile fails before
        // any answer arrives; only then is the request sent again, on a fresh
        // connection. Any other failure may come after the server acted.
        let reused = self.connection.is_some();
        match self.send_once().await {
            Err(e) if reused && e.is::<StaleConnection>() => self.send_once().await,
            result => result,
        }
    }

    async fn send_once(&mut self) -> anyhow::Result<(StatusCode, Bytes)> {
        // Taken out for the exchange: should the caller's timeout drop this
        // future mid-request, the connection is dropped with it instead of
        // handing the late answer to the next request.
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => Connection::open(self.addr).await?,
        };
        let (status, body, keep_alive) = connection.exchange(&self.out).await?;
        if keep_alive {
            self.connection = Some(connection);
        }
        Ok((status, body))
    }
}

/// The connection was closed before any of the answer arrived: the server
/// did not act on the request, so it may be sent again.
#[derive(Debug)]
struct StaleConnection;

impl std::fmt::Display for StaleConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server closed the connection before answering")
    }
}

impl std::error::Error for StaleConnection {}

impl Connection {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, read: BytesMut::with_capacity(READ_BUFFER) })
    }

    /// Sends one request and reads its answer: the status, the body, and
    /// whether the connection may carry the next request.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<(StatusCode, Bytes, bool)> {
        if self.stream.write_all(request).await.is_err() {
            return Err(StaleConnection.into());
        }
        // Nothing of the answer has arrived yet (the buffer holds no leftovers:
        // each answer is taken out whole).
        let mut awaiting_first_byte = self.read.is_empty();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head_len) = response.parse(&self.read)? else {
                if self.read.len() > MAX_HEAD {
                    bail!("an answer's head is over {MAX_HEAD} bytes");
                }
                self.fill(awaiting_first_byte).await?;
                awaiting_first_byte = false;
                continue;
            };
            let status = StatusCode::from_u16(response.code.context("no status")?)?;
            if status.is_informational() {
                // 100 Continue and the like: the real answer follows.
                let _ = self.read.split_to(head_len);
                continue;
            }
            let mut body_len = None;
            let mut keep_alive = true;
            for header in response.headers.iter() {
                if header.name.eq_ignore_ascii_case("content-length") {
                    body_len = Some(std::str::from_utf8(header.value)?.trim().parse::<usize>()?);
                } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("a chunked answer: this client reads only Content-Length bodies");
                } else if header.name.eq_ignore_ascii_case("connection") && header.value.eq_ignore_ascii_case(b"close")
                {
                    keep_alive = false;
                }
            }
            let body_len = match body_len {
                _ if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED => 0,
                Some(len) if len <= MAX_BODY => len,
                Some(len) => bail!("an answer of {len} bytes; this client reads at most {MAX_BODY}"),
                None => bail!("an answer without Content-Length ({status})"),
            };
            while self.read.len() < head_len + body_len {
                self.fill(false).await?;
            }
            let mut answer = self.read.split_to(head_len + body_len);
            let body = answer.split_off(head_len).freeze();
            return Ok((status, body, keep_alive));
        }
    }

    /// Reads more of the answer. `first` says nothing of it has arrived yet:
    /// a connection closed then is a [`StaleConnection`].
    async fn fill(&mut self, first: bool) -> anyhow::Result<()> {
        self.read.reserve(READ_BUFFER);
        match self.stream.read_buf(&mut self.read).await {
            Ok(0) | Err(_) if first => Err(StaleConnection.into()),
            Ok(0) => bail!("the server closed the connection in the middle of an answer"),
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Publisher for HeraldPublisher {
    async fn publish(&mut self, events: &[Event]) -> anyhow::Result<Outcome> {
        let batch = events.len() > 1;
        let body = if batch { json_array(events) } else { events[0].body.clone() };
        let mut outcome = Outcome::default();
        loop {
            let (status, answer) = self.send(Method::POST, &body).await?;
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn counts_a_batch_answer() {
        let answer = br#"{"results":[{"id":"a","position":1},{"id":"b","position":2,"duplicate":true},{"error":{"status":409}}],"failed":1}"#;
        let mut outcome = Outcome::default();
        count_answer(answer, true, &mut outcome).unwrap();
        assert_eq!((outcome.stored, outcome.duplicates, outcome.conflicts, outcome.failed), (1, 1, 1, 0));
    }

    /// What the test server does on one connection: for each request, wait
    /// this many milliseconds, then write these bytes (a few at a time);
    /// after the last, close.
    type Script = Vec<(u64, &'static [u8])>;

    /// A publisher to a server on loopback that plays one script per
    /// connection it accepts, and the number of connections it accepted.
    async fn scripted(connections: Vec<Script>) -> (HeraldPublisher, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            for script in connections {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let mut request = [0; 4096];
                for (delay_ms, answer) in script {
                    // A client that gave up makes these fail; the script goes on.
                    let _ = stream.read(&mut request).await;
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    for piece in answer.chunks(7) {
                        let _ = stream.write_all(piece).await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            std::future::pending::<()>().await;
        });
        let publisher = HeraldPublisher {
            addr,
            authority: addr.to_string(),
            base_path: String::new(),
            path: "/v1/events".into(),
            connection: None,
            out: Vec::new(),
        };
        (publisher, accepted)
    }

    const CREATED: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nx-other: y\r\n\r\nfirst";

    #[tokio::test]
    async fn reads_answers_in_pieces_and_keeps_the_connection_until_closed() {
        let (mut publisher, _) = scripted(vec![vec![
            (0, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nfirst"),
            (0, b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"),
        ]])
        .await;
        let (status, body) = publisher.send(Method::POST, b"{}").await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::CREATED, &b"first"[..]));
        assert!(publisher.connection.is_some(), "kept alive");
        let (status, body) = publisher.send(Method::POST, b"{}").await.unwrap();
        assert_eq!((status, body.len()), (StatusCode::SERVICE_UNAVAILABLE, 0));
        assert!(publisher.connection.is_none(), "closed as the server said");
    }

    #[tokio::test]
    async fn a_request_cut_short_by_a_timeout_leaves_its_late_answer_behind() {
        let late = b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nlate";
        let (mut publisher, _) = scripted(vec![vec![(300, late)], vec![(0, CREATED)]]).await;
        let cut = tokio::time::timeout(Duration::from_millis(50), publisher.send(Method::POST, b"{}")).await;
        assert!(cut.is_err(), "timed out");
        let (_, body) = publisher.send(Method::POST, b"{}").await.unwrap();
        assert_eq!(&body[..], b"first", "the next request gets its own answer");
    }

    #[tokio::test]
    async fn only_a_connection_closed_before_answering_is_retried() {
        // Answers, then closes without saying so: the next request goes again on a new one.
        let (mut publisher, accepted) = scripted(vec![vec![(0, CREATED)], vec![(0, CREATED)]]).await;
        publisher.send(Method::POST, b"{}").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (status, _) = publisher.send(Method::POST, b"{}").await.unwrap();
        assert_eq!((status, accepted.load(Ordering::SeqCst)), (StatusCode::CREATED, 2));

        // Closed in the middle of an answer: the server may have acted, so no retry.
        let (mut publisher, accepted) =
            scripted(vec![vec![(0, CREATED), (0, b"HTTP/1.1 201 Cre")], vec![(0, CREATED)]]).await;
        publisher.send(Method::POST, b"{}").await.unwrap();
        let err = publisher.send(Method::POST, b"{}").await.unwrap_err();
        assert!(err.to_string().contains("middle of an answer"), "{err}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "not sent again");
    }

    #[tokio::test]
    async fn answers_it_cannot_frame_are_errors_not_misreads() {
        let (mut publisher, _) =
            scripted(vec![vec![(0, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")]])
                .await;
        let err = publisher.send(Method::GET, b"").await.unwrap_err();
        assert!(err.to_string().contains("chunked"), "{err}");
        let (mut publisher, _) = scripted(vec![vec![(0, b"HTTP/1.1 200 OK\r\n\r\nbody")]]).await;
        let err = publisher.send(Method::GET, b"").await.unwrap_err();
        assert!(err.to_string().contains("without Content-Length"), "{err}");
    }

    #[test]
    fn counts_a_single_duplicate() {
        let mut outcome = Outcome::default();
        count_answer(br#"{"id":"a","position":1,"duplicate":true}"#, false, &mut outcome).unwrap();
        assert_eq!(outcome.duplicates, 1);
    }
}
