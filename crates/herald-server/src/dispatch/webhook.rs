//! Webhook targets: one signed POST per delivery (Standard Webhooks headers),
//! with bounded time and answer size, and refusal of internal addresses
//! unless the configuration allows them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use herald_core::network::{Network, is_internal};
use herald_core::signature::Secret;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderValue, RETRY_AFTER};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::{PerKey, Slot};

/// Bytes of an answer kept in the attempt log.
const RESPONSE_KEPT: usize = 1024;
/// Bytes of an answer read at most; the rest is not waited for.
const RESPONSE_READ: usize = 64 * 1024;

/// Which internal addresses deliveries may reach.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Every internal address (loopback, private, link-local) is allowed.
    pub allow_internal: bool,
    /// These networks are allowed even though internal.
    pub allowed: Vec<Network>,
}

impl EgressPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_internal || !is_internal(ip) || self.allowed.iter().any(|n| n.contains(ip))
    }
}

/// Resolves names, then drops the addresses the policy forbids, so a name
/// that points at an internal address cannot smuggle a delivery there.
struct CheckedResolver(Arc<EgressPolicy>);

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| policy.permits(a.ip())).collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(format!("{host} resolves only to internal addresses, which are not allowed").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: Option<u16>,
    /// Why it failed, when it did (connection error, timeout, non-2xx).
    pub error: Option<String>,
    pub response: Option<String>,
    pub latency: Duration,
    /// The target's `Retry-After` on a 429 or 503.
    pub retry_after: Option<Duration>,
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    pub(crate) fn failed(started: Instant, error: String) -> Self {
        Self { status: None, error: Some(error), response: None, latency: started.elapsed(), retry_after: None }
    }
}

/// The `webhook-id` header for an event id, signed as sent: percent-encoded
/// outside printable ASCII (and `%` itself), since many HTTP servers (Node's,
/// Python's) read header bytes as Latin-1 and would verify a mangled id.
fn webhook_id(event_id: &str) -> std::borrow::Cow<'_, str> {
    const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'%');
    percent_encoding::utf8_percent_encode(event_id, ENCODED).into()
}

/// A webhook URL's target: its scheme, host and port (the URL itself if it
/// does not parse; such a URL fails on its own).
fn target_of(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.origin().ascii_serialization())
}

/// One delivery to send.
pub struct Request<'a> {
    pub url: &'a str,
    pub secret: &'a Secret,
    pub event_id: &'a str,
    pub body: Bytes,
    pub timeout: Duration,
    pub attempt: u32,
    pub replay: bool,
}

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    policy: Arc<EgressPolicy>,
    /// Places for deliveries in flight, over every subscription: however
    /// many there are, open connections (and file descriptors) stay bounded.
    places: Arc<Semaphore>,
    /// The most places one subscription may hold: half, so one slow target
    /// cannot stall every other subscription.
    share: usize,
    /// Places held by target (scheme, host and port), each within the same
    /// half: several subscriptions to one slow target cannot take them all.
    targets: Arc<PerKey<String>>,
}

/// A place among the deliveries in flight, over all and for its target,
/// held until the delivery ends.
pub type Place = (OwnedSemaphorePermit, Slot<String>);

impl WebhookClient {
    pub fn new(policy: EgressPolicy, max_in_flight: usize) -> Self {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver(policy.clone())))
            // A redirect could lead anywhere, also inside; a 3xx is a failed attempt.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            // Connections beyond this are closed once idle: a wide fan-out
            // (every subscription's concurrency at once) does not stay resident.
            .pool_max_idle_per_host(64)
            .build()
            .expect("the HTTP client's settings are valid");
        let places = Arc::new(Semaphore::new(max_in_flight));
        let share = (max_in_flight / 2).max(1);
        Self { http, policy, places, share, targets: Arc::new(PerKey::new(share)) }
    }

    /// Up to `wanted` places for deliveries to `url`, as many as are free
    /// now, over all targets and for its target.
    pub fn places(&self, url: &str, wanted: usize) -> Vec<Place> {
        let target = target_of(url);
        std::iter::from_fn(|| {
            let place = self.places.clone().try_acquire_owned().ok()?;
            Some((place, Slot::try_take(&self.targets, target.clone())?))
        })
        .take(wanted)
        .collect()
    }

    /// The most places one subscription may hold.
    pub fn share(&self) -> usize {
        self.share
    }

    pub async fn send(&self, request: Request<'_>) -> Answer {
        let started = Instant::now();
        if let Some(refusal) = self.refuse_literal(request.url) {
            return Answer::failed(started, refusal);
        }
        let timestamp = chrono::Utc::now().timestamp();
        let id = webhook_id(request.event_id);
        let signature = request.secret.sign(&id, timestamp, &request.body);
        let mut builder = self
            .http
            .post(request.url)
            .timeout(request.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", id.as_ref())
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .header("herald-attempt", request.attempt);
        if request.replay {
            builder = builder.header("herald-replay", "true");
        }
        let response = match builder.body(request.body).send().await {
            Ok(response) => response,
            Err(e) => return Answer::failed(started, describe(&e)),
        };
        let status = response.status().as_u16();
        let retry_after = matches!(status, 429 | 503)
            .then(|| response.headers().get(RETRY_AFTER).and_then(|v| retry_after(v, Utc::now())))
            .flatten();
        let body = read_bounded(response).await;
        let succeeded = (200..300).contains(&status);
        Answer {
            status: Some(status),
            error: (!succeeded).then(|| format!("HTTP {status}")),
            response: (!body.is_empty())
                .then(|| String::from_utf8_lossy(&body[..body.len().min(RESPONSE_KEPT)]).into()),
            latency: started.elapsed(),
            retry_after,
        }
    }

    /// URLs naming an IP address are not resolved, so check them here.
    fn refuse_literal(&self, url: &str) -> Option<String> {
        let url = reqwest::Url::parse(url).ok()?;
        let ip = match url.host()? {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(_) => return None,
        };
        (!self.policy.permits(ip)).then(|| format!("{ip} is an internal address, which is not allowed"))
    }
}

/// Reads at most [`RESPONSE_READ`] bytes of the answer.
async fn read_bounded(response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk[..chunk.len().min(RESPONSE_READ - body.len())]);
        if body.len() >= RESPONSE_READ {
            break;
        }
    }
    body
}

/// `Retry-After`: delay-seconds, or an HTTP-date in the IMF-fixdate form that
/// RFC 9110 requires senders to write (`Sun, 06 Nov 1994 08:49:37 GMT`). A date
/// already past means "now"; anything else unreadable is ignored.
fn retry_after(value: &HeaderValue, now: DateTime<Utc>) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

/// The error with its causes (reqwest's own message alone says little).
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() { "timed out".to_owned() } else { err.to_string() };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_id_is_percent_encoded_outside_printable_ascii() {
        assert_eq!(webhook_id("order-7/x:1"), "order-7/x:1");
        assert_eq!(webhook_id("café 50%"), "caf%C3%A9%2050%25");
        assert_eq!(webhook_id("tab\there"), "tab%09here");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z").unwrap().with_timezone(&Utc);
        let read = |text: &str| retry_after(&HeaderValue::from_str(text).unwrap(), now);
        assert_eq!(read("120"), Some(Duration::from_secs(120)));
        assert_eq!(read(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(read("Sun, 29 Nov 2026 12:01:30 GMT"), Some(Duration::from_secs(90)));
        assert_eq!(read("Sun, 29 Nov 2026 11:00:00 GMT"), Some(Duration::ZERO), "a past date means now");
        assert_eq!(read("-5"), None);
        assert_eq!(read("soon"), None);
    }
}
