//! Reading request bodies: size limit first, then media type, then JSON;
//! and the deadline a body must arrive by.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use herald_core::limits::MAX_BODY_BYTES;
use http_body::{Frame, SizeHint};
use serde_json::Value;
use tokio::time::{Instant, Sleep};

use crate::problem::ApiError;

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] without
/// buffering past the limit.
pub async fn read_limited(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::TooLarge(format!("the body limit is {MAX_BODY_BYTES} bytes"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        if let Some(late) = caused_by::<BodyTimedOut>(&e) {
            ApiError::TimedOut(late.to_string())
        } else if caused_by::<http_body_util::LengthLimitError>(&e).is_some() {
            too_large()
        } else {
            ApiError::MalformedJson(format!("could not read the body: {e}"))
        }
    })
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

/// A request body that must arrive whole within a time limit, so a client
/// trickling its body (slowloris past the head) cannot hold a request, and
/// its place among those in flight, forever.
pub struct DeadlineBody {
    inner: Body,
    limit: Duration,
    deadline: Instant,
    /// Started the first time the body is not ready: a body that came with
    /// its head, as most do, costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    pub fn new(inner: Body, limit: Duration) -> Self {
        Self { inner, limit, deadline: Instant::now() + limit, timer: None }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}s", .0.as_secs())]
struct BodyTimedOut(Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        ready!(this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline))).as_mut().poll(cx));
        Poll::Ready(Some(Err(BodyTimedOut(this.limit).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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

    #[test]
    fn empty_and_broken_json_are_malformed() {
        assert!(matches!(parse_json(b"  "), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_json(b"{"), Err(ApiError::MalformedJson(_))));
        assert!(parse_json(b"{}").is_ok());
    }
}
