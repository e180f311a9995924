//! Herald over HTTP/1.1: one keep-alive connection per worker, spoken by
//! hand as load generators like `wrk` do. Each request is one `write`, each
//! answer is read into a reused buffer and parsed with `httparse`. The driver
//! shares the 2-core machine with the server it measures, so every
//! microsecond it spends is one the server does not get: hyper's client
//! (a task per connection, a channel hop each way) cost ~20 us per request.

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
        publisher.connection().await?;
        publishers.push(publisher);
    }
    Ok(publishers)
}

impl HeraldPublisher {
    /// The connection, opened again if the server closed it.
    async fn connection(&mut self) -> anyhow::Result<&mut Connection> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            self.connection = Some(Connection { stream, read: BytesMut::with_capacity(READ_BUFFER) });
        }
        Ok(self.connection.as_mut().expect("just set"))
    }

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
        // A kept-alive connection the server closed meanwhile fails the
        // request; retry once on a fresh one (safe: publishing is idempotent).
        let reused = self.connection.is_some();
        match self.send_once().await {
            Err(_) if reused => self.send_once().await,
            result => result,
        }
    }

    async fn send_once(&mut self) -> anyhow::Result<(StatusCode, Bytes)> {
        let out = std::mem::take(&mut self.out);
        let result = async {
            let connection = self.connection().await?;
            connection.stream.write_all(&out).await?;
            connection.answer().await
        }
        .await;
        self.out = out;
        match result {
            Ok((status, body, keep_alive)) => {
                if !keep_alive {
                    self.connection = None;
                }
                Ok((status, body))
            }
            Err(e) => {
                self.connection = None;
                Err(e)
            }
        }
    }
}

impl Connection {
    /// Reads one answer: its status, its body, and whether the connection
    /// may carry the next request.
    async fn answer(&mut self) -> anyhow::Result<(StatusCode, Bytes, bool)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = response.parse(&self.read)? {
                let status = StatusCode::from_u16(response.code.context("no status")?)?;
                let mut body_len = 0;
                let mut keep_alive = true;
                for header in response.headers.iter() {
                    if header.name.eq_ignore_ascii_case("content-length") {
                        body_len = std::str::from_utf8(header.value)?.trim().parse()?;
                    } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                        bail!("a chunked answer: this client reads only Content-Length bodies");
                    } else if header.name.eq_ignore_ascii_case("connection")
                        && header.value.eq_ignore_ascii_case(b"close")
                    {
                        keep_alive = false;
                    }
                }
                while self.read.len() < head_len + body_len {
                    self.fill().await?;
                }
                let mut answer = self.read.split_to(head_len + body_len);
                let body = answer.split_off(head_len).freeze();
                return Ok((status, body, keep_alive));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        self.read.reserve(READ_BUFFER);
        if self.stream.read_buf(&mut self.read).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
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
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn counts_a_batch_answer() {
        let answer = br#"{"results":[{"id":"a","position":1},{"id":"b","position":2,"duplicate":true},{"error":{"status":409}}],"failed":1}"#;
        let mut outcome = Outcome::default();
        count_answer(answer, true, &mut outcome).unwrap();
        assert_eq!((outcome.stored, outcome.duplicates, outcome.conflicts, outcome.failed), (1, 1, 1, 0));
    }

    /// A publisher to a server on loopback that answers each request with
    /// the given bytes, written a few at a time, then closes the connection.
    async fn answered_by(answers: Vec<&'static [u8]>) -> HeraldPublisher {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0; 4096];
            for answer in answers {
                let _ = stream.read(&mut request).await.unwrap();
                for piece in answer.chunks(7) {
                    stream.write_all(piece).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        HeraldPublisher {
            addr,
            authority: addr.to_string(),
            base_path: String::new(),
            path: "/v1/events".into(),
            connection: None,
            out: Vec::new(),
        }
    }

    #[tokio::test]
    async fn reads_answers_in_pieces_and_keeps_the_connection_until_closed() {
        let mut publisher = answered_by(vec![
            b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nx-other: y\r\n\r\nfirst",
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ])
        .await;
        let (status, body) = publisher.send(Method::POST, b"{}").await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::CREATED, &b"first"[..]));
        assert!(publisher.connection.is_some(), "kept alive");
        let (status, body) = publisher.send(Method::POST, b"{}").await.unwrap();
        assert_eq!((status, body.len()), (StatusCode::SERVICE_UNAVAILABLE, 0));
        assert!(publisher.connection.is_none(), "closed as the server said");
    }

    #[tokio::test]
    async fn a_chunked_answer_is_an_error_not_a_misread() {
        let mut publisher =
            answered_by(vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"]).await;
        let err = publisher.send(Method::GET, b"").await.unwrap_err();
        assert!(err.to_string().contains("chunked"), "{err}");
    }

    #[test]
    fn counts_a_single_duplicate() {
        let mut outcome = Outcome::default();
        count_answer(br#"{"id":"a","position":1,"duplicate":true}"#, false, &mut outcome).unwrap();
        assert_eq!(outcome.duplicates, 1);
    }
}
