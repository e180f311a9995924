//! Accepting connections, with the limits a server facing untrusted clients
//! needs and `axum::serve` does not set:
//!
//! - at most `max_connections` open at once; past that a connection is
//!   answered `503` with `Retry-After` and closed, so idle or hostile clients
//!   cannot grow memory (or exhaust file descriptors) without bound;
//! - a deadline for each request's head (`header_read_timeout`), from the
//!   connection's first byte on, which also closes keep-alive connections
//!   idle that long, so silent or slow clients (slowloris) cannot hold
//!   connections forever;
//! - on shutdown: stop accepting, let every connection finish the request it
//!   is serving, then close it.
//!
//! HTTP/1.1 only: that is Herald's API (no HTTP/2, no upgrades).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::ServerConfig;
use crate::problem::{ApiError, RETRY_AFTER_SECONDS};

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
    let rejecting = Arc::new(Semaphore::new(MAX_REJECTING));
    let overloaded = overloaded_answer();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    let draining = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("herald_connections_rejected_total").increment(1);
            if let Ok(turn) = rejecting.clone().try_acquire_owned() {
                let answer = overloaded.clone();
                tokio::spawn(async move {
                    turn_away(tcp, &answer).await;
                    drop(turn);
                });
            }
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = draining.watch(http.serve_connection(TokioIo::new(tcp), service));
        metrics::gauge!("herald_connections_open").increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            metrics::gauge!("herald_connections_open").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    draining.shutdown().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset)
}

/// The fixed answer for a connection over the limit: a 503 problem, written
/// before the request is read (HTTP/1.1 allows a server to answer early and
/// close), so turning a client away costs no parsing.
fn overloaded_answer() -> Arc<[u8]> {
    let problem = ApiError::Overloaded("too many connections; retry after Retry-After seconds").problem();
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
