//! Accepting connections, with the limits a server facing untrusted clients
//! needs and `axum::serve` does not set:
//!
//! - at most `max_connections` open at once; past that a connection is
//!   answered `503` with `Retry-After` and closed, so idle or hostile clients
//!   cannot grow memory (or exhaust file descriptors) without bound;
//! - at most `max_connections_per_client` of them from one client (by
//!   default half), so one client cannot take every slot;
//! - a deadline for each request's head (`header_read_timeout`), from the
//!   connection's first byte on, which also closes keep-alive connections
//!   idle that long, so silent or slow clients (slowloris) cannot hold
//!   connections forever;
//! - a deadline for each write the client's window holds back
//!   (`send_timeout`), so a client that stops reading cannot hold its answer,
//!   and the memory it is charged to, forever;
//! - each request carries its [`Client`], so that what one client's answers
//!   hold of the response budget can be limited too;
//! - on shutdown: stop accepting, let every connection finish the request it
//!   is serving, then close it; connections still open `shutdown_timeout`
//!   later (a client reading a trickle of a large answer) are closed anyway,
//!   so a stop always ends.
//!
//! HTTP/1.1 only: that is Herald's API (no HTTP/2, no upgrades).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;
use tower::Layer;

use crate::client::{Client, ClientSlot, PerClient};
use crate::config::ServerConfig;
use crate::problem::{ApiError, RETRY_AFTER_SECONDS};
use crate::response::PART;

/// Connections being turned away at once; past this they are closed unanswered.
const MAX_REJECTING: usize = 64;
/// How long a turned-away client gets to read the answer.
const REJECT_TIMEOUT: Duration = Duration::from_secs(1);
/// After an accept error (typically out of file descriptors), wait this long
/// before accepting again rather than spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// File descriptors for the store's files and connections, DNS and logs.
const STORE_AND_MORE_FDS: u64 = 128;
/// When the hard limit is "unlimited" (macOS, BSD), the soft limit is raised
/// this far (macOS's `OPEN_MAX`): setting it to infinity fails there.
const UNLIMITED_CAP: u64 = 10_240;

/// Raises the process's open-file limit to its hard maximum (the soft limit
/// is often 1,024) and returns how many of the `requested` connections fit
/// under it, so that past the limit clients get a 503, not a failed accept.
/// Kept aside: descriptors for `deliveries` in flight, for clients being
/// turned away and for the store (at most half the limit).
#[cfg(unix)]
fn fit_to_fd_limit(requested: usize, deliveries: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let target = limit.maximum.unwrap_or(UNLIMITED_CAP);
    if limit.current.is_some_and(|current| current < target) {
        let raised = Rlimit { current: Some(target), maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-file limit to {target}");
        }
    }
    let Some(open_files) = getrlimit(Resource::Nofile).current else {
        return requested;
    };
    let reserved = (deliveries as u64 + MAX_REJECTING as u64 + STORE_AND_MORE_FDS).min(open_files / 2);
    let room = usize::try_from(open_files - reserved).unwrap_or(usize::MAX).max(1);
    if requested > room {
        tracing::warn!(
            requested,
            allowed = room,
            open_files,
            "max connections lowered to fit the open-file limit (ulimit -Hn) less {reserved} kept for deliveries and the store"
        );
    }
    requested.min(room)
}

#[cfg(not(unix))]
fn fit_to_fd_limit(requested: usize, _deliveries: usize) -> usize {
    requested
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn serve(listener: TcpListener, app: Router, config: &ServerConfig, shutdown: impl Future<Output = ()>) {
    let max_connections = fit_to_fd_limit(config.max_connections, config.max_deliveries_in_flight);
    let slots = Arc::new(Semaphore::new(max_connections));
    let open = Arc::new(PerClient::new(config.connections_per_client(max_connections)));
    let rejecting = Arc::new(Semaphore::new(MAX_REJECTING));
    let overloaded = overloaded_answer("too many connections; retry after Retry-After seconds");
    let client_overloaded = overloaded_answer("too many connections from this client; retry after Retry-After seconds");
    let mut http = http1::Builder::new();
    // A connection's read buffer, and what it queues to write, may grow to
    // 64 KiB (hyper's default is ~400 KiB): bytes outside the body and
    // response budgets, times every connection.
    http.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout).max_buf_size(PART);
    // hyper's default, kept on purpose: the end of a client's input closes
    // the connection, even mid-request. Serving half-closed clients (`nc -N`)
    // would keep a departed live stream's slot until its next keep-alive write.
    let draining = GracefulShutdown::new();
    let (close_now, closing) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // The client gave up before we accepted: nothing to do.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers go out as soon as they are written: without TCP_NODELAY a
        // response can wait for the client's delayed ACK of the previous one.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY on a connection");
        }
        let client = Client::of(peer.ip());
        let slot = match slots.clone().try_acquire_owned() {
            Err(_) => Err((&overloaded, "herald_connections_rejected_total")),
            Ok(slot) => match ClientSlot::try_take(&open, client) {
                Some(client_slot) => Ok((slot, client_slot)),
                None => Err((&client_overloaded, "herald_connections_rejected_per_client_total")),
            },
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err((answer, counter)) => {
                metrics::counter!(counter).increment(1);
                if let Ok(turn) = rejecting.clone().try_acquire_owned() {
                    let answer = answer.clone();
                    tokio::spawn(async move {
                        turn_away(tcp, &answer).await;
                        drop(turn);
                    });
                }
                continue;
            }
        };
        let service = TowerToHyperService::new(Extension(client).layer(app.clone()));
        let tcp = SendDeadline { tcp, timeout: config.send_timeout, stalled: None };
        let connection = draining.watch(http.serve_connection(TokioIo::new(tcp), service));
        metrics::gauge!("herald_connections_open").increment(1.0);
        let mut closing = closing.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                // Dropping the connection closes it, with any request it serves.
                _ = closing.wait_for(|close| *close) => {}
            }
            metrics::gauge!("herald_connections_open").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(config.shutdown_timeout, draining.shutdown()).await.is_err() {
        let open = max_connections - slots.available_permits();
        tracing::warn!(
            open,
            "connections still open {}s after shutdown began: closing them",
            config.shutdown_timeout.as_secs()
        );
        let _ = close_now.send(true);
        // Every slot back means every connection's task has ended.
        let _ = slots.acquire_many(max_connections as u32).await;
    }
}

/// A connection whose writes must make progress: one the client's window
/// holds back for `timeout` fails, which ends the connection (as nginx's
/// `send_timeout` does), so a client that stops reading cannot hold its
/// answer forever. The timer starts only when a write has to wait.
struct SendDeadline {
    tcp: TcpStream,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl SendDeadline {
    fn progress<T>(&mut self, cx: &mut Context<'_>, write: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if write.is_ready() {
            self.stalled = None;
            return write;
        }
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing of its answer for {}s", timeout.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for SendDeadline {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendDeadline {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.progress(cx, write)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.progress(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset)
}

/// The fixed answer for a connection over a limit: a 503 problem, written
/// before the request is read (HTTP/1.1 allows a server to answer early and
/// close), so turning a client away costs no parsing.
fn overloaded_answer(detail: &'static str) -> Arc<[u8]> {
    let problem = ApiError::Overloaded(detail).problem();
    let body = serde_json::to_string(&problem).expect("a problem serialises");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: {RETRY_AFTER_SECONDS}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into()
}

async fn turn_away(mut tcp: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(REJECT_TIMEOUT, async {
        tcp.write_all(answer).await?;
        tcp.shutdown().await?;
        // Read what the client sent until it closes: closing a socket with
        // unread data resets the connection, and the client could lose the
        // answer before reading it.
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_takes_at_most_its_limit_and_gets_slots_back() {
        let open = Arc::new(PerClient::new(2));
        let [a, b] = ["192.0.2.1", "192.0.2.2"].map(|ip| Client::of(ip.parse().unwrap()));
        let held = [ClientSlot::try_take(&open, a).unwrap(), ClientSlot::try_take(&open, a).unwrap()];
        assert!(ClientSlot::try_take(&open, a).is_none());
        assert!(ClientSlot::try_take(&open, b).is_some(), "another client is not limited by the first");
        drop(held);
        assert!(ClientSlot::try_take(&open, a).is_some());
        assert!(open.is_empty(), "clients without connections leave no entry");
    }
}
