//! Reading request bodies: size limit first, then media type, then JSON;
//! the deadline a body must arrive by, and the budget all bodies held in
//! memory at once share.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use herald_core::limits::MAX_BODY_BYTES;
use http_body::{Frame, SizeHint};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::problem::ApiError;

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] without
/// buffering past the limit.
pub async fn read_limited(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::TooLarge(TooLarge.to_string());
    if declared_length(headers).is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        if let Some(late) = caused_by::<BodyTimedOut>(&e) {
            ApiError::TimedOut(late.to_string())
        } else if caused_by::<OverBudget>(&e).is_some() {
            ApiError::Overloaded(BODIES_OVERLOADED)
        } else if caused_by::<http_body_util::LengthLimitError>(&e).is_some() || caused_by::<TooLarge>(&e).is_some() {
            too_large()
        } else {
            ApiError::MalformedJson(format!("could not read the body: {e}"))
        }
    })
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn caused_by<E: std::error::Error + 'static>(err: &axum::Error) -> Option<&E> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        source = e.source();
    }
    None
}

/// The answer when the [`BodyBudget`] has no room for a body.
pub const BODIES_OVERLOADED: &str = "too many request bodies are being read at once; retry after Retry-After seconds";

/// The bytes of request bodies held in memory at once, over every request.
///
/// A request is charged for its body as the bytes arrive, not for the length
/// it declares: a client must send bytes to hold any of the budget, so
/// declaring large bodies and sending nothing costs the server nothing.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
}

impl BodyBudget {
    /// At least one body's limit, so any acceptable body can be read alone.
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(MAX_BODY_BYTES);
        Self { bytes: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Whether a client waiting for `100 Continue` before it sends its body
    /// should be refused at once: the budget has no room for the length it
    /// declares. A hint only, nothing is reserved; but it spares the client
    /// sending a body that would be discarded.
    pub fn refuses_before_continue(&self, headers: &HeaderMap) -> bool {
        let expects_continue =
            headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // A body past the size limit is left to get its 413.
        let refused = expects_continue
            && declared_length(headers)
                .is_some_and(|len| len <= MAX_BODY_BYTES as u64 && len > self.bytes.available_permits() as u64);
        if refused {
            count_refusal();
        }
        refused
    }

    /// A new request's charge, holding nothing yet.
    pub fn charge(&self) -> BodyCharge {
        BodyCharge(Arc::new(Charge { bytes: self.bytes.clone(), held: Mutex::new(None) }))
    }

    /// Bytes charged to requests now.
    pub fn held(&self) -> usize {
        self.limit - self.bytes.available_permits()
    }
}

fn count_refusal() {
    metrics::counter!("herald_request_bodies_refused_total").increment(1);
}

/// What one request holds of the [`BodyBudget`]: the raw bytes of its body
/// read so far, kept until the last clone is dropped (when its handler
/// returns: the bytes live that long). What is parsed from them is not
/// counted.
#[derive(Clone)]
pub struct BodyCharge(Arc<Charge>);

struct Charge {
    /// The budget's bytes.
    bytes: Arc<Semaphore>,
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl BodyCharge {
    /// Charges `bytes` more, or returns false (charging nothing) when the
    /// budget has not that much left.
    fn try_charge(&self, bytes: usize) -> bool {
        let Some(permit) = u32::try_from(bytes).ok().and_then(|n| self.0.bytes.clone().try_acquire_many_owned(n).ok())
        else {
            return false;
        };
        let mut held = self.0.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(charged) => charged.merge(permit),
            None => *held = Some(permit),
        }
        true
    }
}

/// A request body as the API reads it: it must arrive whole within a time
/// limit, so a client trickling its body (slowloris past the head) cannot
/// hold a request, and its place among those in flight, forever; and its
/// bytes are charged to the [`BodyBudget`] as they arrive. (The size limit
/// is [`read_limited`]'s.)
pub struct AdmittedBody {
    inner: Body,
    read_timeout: Duration,
    deadline: Instant,
    /// Started the first time the body is not ready: a body that came with
    /// its head, as most do, costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    charge: BodyCharge,
    /// Bytes read so far, charged or discarded.
    read: usize,
    /// The budget ran out: the rest is read and discarded, then refused.
    refused: bool,
}

impl AdmittedBody {
    pub fn new(inner: Body, read_timeout: Duration, charge: BodyCharge) -> Self {
        let deadline = Instant::now() + read_timeout;
        Self { inner, read_timeout, deadline, timer: None, charge, read: 0, refused: false }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}s", .0.as_secs())]
struct BodyTimedOut(Duration);

#[derive(Debug, thiserror::Error)]
#[error("{BODIES_OVERLOADED}")]
struct OverBudget;

#[derive(Debug, thiserror::Error)]
#[error("the body limit is {MAX_BODY_BYTES} bytes")]
struct TooLarge;

impl http_body::Body for AdmittedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) else {
                let deadline = this.deadline;
                ready!(
                    this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline))).as_mut().poll(cx)
                );
                return Poll::Ready(Some(Err(BodyTimedOut(this.read_timeout).into())));
            };
            let frame = match frame {
                Some(Ok(frame)) => frame,
                // Refused, and now read to its end: the client is answered
                // 503 without being reset while still sending.
                None if this.refused => return Poll::Ready(Some(Err(OverBudget.into()))),
                other => return Poll::Ready(other.map(|f| f.map_err(Into::into))),
            };
            let len = frame.data_ref().map_or(0, Bytes::len);
            this.read += len;
            if !this.refused {
                if this.charge.try_charge(len) {
                    return Poll::Ready(Some(Ok(frame)));
                }
                count_refusal();
                this.refused = true;
            }
            // Discarding is bounded too.
            if this.read > MAX_BODY_BYTES {
                return Poll::Ready(Some(Err(TooLarge.into())));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // A refused body still has its error to yield.
        !self.refused && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.refused { SizeHint::with_exact(0) } else { self.inner.size_hint() }
    }
}

/// Parses JSON, naming the line and column of a syntax error.
/// A body that may be left empty (whitespace only): `None`, or the JSON it holds.
pub async fn optional_json(headers: &HeaderMap, body: Body) -> Result<Option<Value>, ApiError> {
    let bytes = read_limited(headers, body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    require_json(headers)?;
    parse_json(&bytes).map(Some)
}

pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson("the body is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// The media type's essence (`application/json`), lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// Requires a JSON body (`application/json` or any `+json` type).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers) {
        Some(t) if herald_core::formats::cloudevents::is_json_media_type(&t) => Ok(()),
        Some(t) => Err(ApiError::UnsupportedMediaType(format!("expected Content-Type application/json, got {t}"))),
        None => Err(ApiError::UnsupportedMediaType("expected Content-Type application/json".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(total: usize) -> Body {
        let chunks = (0..total.div_ceil(65536))
            .map(move |i| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 65536.min(total - i * 65536)])));
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_streamed_body_past_the_limit_is_too_large() {
        let err = read_limited(&HeaderMap::new(), chunked(MAX_BODY_BYTES + 1)).await.unwrap_err();
        assert!(matches!(err, ApiError::TooLarge(_)), "{err:?}");
        assert_eq!(read_limited(&HeaderMap::new(), chunked(MAX_BODY_BYTES)).await.unwrap().len(), MAX_BODY_BYTES);
    }

    #[tokio::test]
    async fn a_body_past_the_budget_is_refused_and_its_charge_released_with_the_request() {
        let budget = BodyBudget::new(0); // one body's limit
        let other = budget.charge();
        assert!(other.try_charge(MAX_BODY_BYTES - 100_000));
        let charge = budget.charge();
        let admitted = AdmittedBody::new(chunked(200_000), Duration::from_secs(5), charge.clone());
        let err = read_limited(&HeaderMap::new(), Body::new(admitted)).await.unwrap_err();
        assert!(matches!(err, ApiError::Overloaded(_)), "{err:?}");
        assert_eq!(budget.held(), MAX_BODY_BYTES - 100_000 + 65536, "the first chunk fit and is held");
        drop(charge);
        assert_eq!(budget.held(), MAX_BODY_BYTES - 100_000);
        drop(other);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_refused_body_is_discarded_only_up_to_the_body_limit() {
        let budget = BodyBudget::new(0);
        let full = budget.charge();
        assert!(full.try_charge(MAX_BODY_BYTES));
        for (len, too_large) in [(MAX_BODY_BYTES, false), (MAX_BODY_BYTES + 1, true)] {
            let admitted = AdmittedBody::new(chunked(len), Duration::from_secs(5), budget.charge());
            match read_limited(&HeaderMap::new(), Body::new(admitted)).await.unwrap_err() {
                ApiError::TooLarge(_) => assert!(too_large, "{len} bytes"),
                ApiError::Overloaded(_) => assert!(!too_large, "{len} bytes"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn empty_and_broken_json_are_malformed() {
        assert!(matches!(parse_json(b"  "), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_json(b"{"), Err(ApiError::MalformedJson(_))));
        assert!(parse_json(b"{}").is_ok());
    }
}
