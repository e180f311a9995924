//! Reading request bodies: size limit first, then media type, then JSON;
//! the deadline a body must arrive by, and the budget all bodies held in
//! memory at once share, their bytes and what parsing them will take.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use herald_core::limits::MAX_BODY_BYTES;
use herald_core::{Invalid, json};
use http_body::{Frame, SizeHint};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::problem::ApiError;

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] without
/// buffering past the limit.
pub async fn read_limited(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    require_identity_encoding(headers)?;
    let too_large = || ApiError::TooLarge(TooLarge.to_string());
    if declared_length(headers).is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        if let Some(late) = caused_by::<BodyTimedOut>(&e) {
            ApiError::TimedOut(late.to_string())
        } else if caused_by::<OverBudget>(&e).is_some() {
            ApiError::Overloaded(BODIES_OVERLOADED)
        } else if let Some(beyond) = caused_by::<BeyondBudget>(&e) {
            ApiError::TooLarge(beyond.to_string())
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

/// The smallest body budget: a body of the largest size that parses into
/// strings with escapes (its bytes, and three times them: see [`Shape`])
/// fits alone.
pub const MIN_BODY_BUDGET: usize = 48 << 20;

/// The memory request bodies take at once, over every request: their bytes,
/// and an estimate of what parsing them into `serde_json::Value`s takes
/// (see [`Shape`]), which for a hostile body is 80 times its size.
///
/// A request is charged for its body's bytes as they arrive, not for the
/// length it declares, and for the parse only once the body is whole, just
/// before it is parsed: a client must send bytes to hold any of the budget,
/// and no more than it sends until it has sent them all.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
}

impl BodyBudget {
    /// At least [`MIN_BODY_BUDGET`].
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(MIN_BODY_BUDGET);
        Self { bytes: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Whether a client waiting for `100 Continue` before it sends its body
    /// should be refused at once: the budget has no room for the length it
    /// declares. A hint only, nothing is reserved (a client told to go on
    /// may still be refused); but it spares most clients sending a body that
    /// would be discarded.
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
        BodyCharge(Arc::new(Charge { budget: self.clone(), held: Mutex::new(None) }))
    }

    /// Bytes charged to requests now.
    pub fn held(&self) -> usize {
        self.limit - self.bytes.available_permits()
    }
}

fn count_refusal() {
    metrics::counter!("herald_request_bodies_refused_total").increment(1);
}

/// What one request holds of the [`BodyBudget`]: the bytes of its body read
/// so far and, once it is whole, the estimate of its parse; kept until the
/// last clone is dropped (when its handler returns: the bytes, and what is
/// parsed from them, live that long).
#[derive(Clone)]
pub struct BodyCharge(Arc<Charge>);

struct Charge {
    budget: BodyBudget,
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

/// Why a charge was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Other requests hold the budget: the body may fit later.
    Full,
    /// The body alone would take more than the whole budget.
    Never,
}

impl BodyCharge {
    /// Charges `bytes` more, or charges nothing and says why not.
    fn try_charge(&self, bytes: usize) -> Result<(), Refusal> {
        // Never more than the limit, which fits a u32 (`--max-body-buffer-mib`).
        let permits = u32::try_from(bytes).map_err(|_| Refusal::Never)?;
        let permit = self.0.budget.bytes.clone().try_acquire_many_owned(permits).map_err(|_| Refusal::Full)?;
        let mut held = self.0.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(charged) => charged.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }

    /// The budget's size: a body charged more could never fit.
    fn limit(&self) -> usize {
        self.0.budget.limit
    }
}

/// What a body's bytes so far hold that its parse into `serde_json::Value`s
/// turns into memory: each string is copied out (at most the body's size),
/// and a string with escapes goes through the parser's scratch buffer
/// first, which doubles as it grows (up to twice the body's size more); a
/// value is 32 bytes in a `Vec` that doubles as it grows, up to 96 while it
/// moves (96 per `,`; 64 more per `:`, for an object member's key); a new
/// array holds 4 (128 per `[`); an object's first B-tree node is ~630 bytes
/// (640 per `{`); a number keeps its digits in a string of its own, parsed
/// through a scratch buffer (16 per number, 1 per digit). Commas and digits
/// inside strings count too: it may overestimate, never under. A test holds it to
/// the bytes a counting allocator sees requested for bodies that take from
/// 1x (one string) to 80x (arrays of tiny objects) their size once parsed;
/// the allocator rounds small blocks up by a few bytes more.
#[derive(Default)]
struct Shape {
    bytes: usize,
    members: usize,
    colons: usize,
    arrays: usize,
    objects: usize,
    /// Digits and '-' right after `[`, `,`, `:` or whitespace: numbers'
    /// starts (or a string's digit after a comma: an overestimate).
    numbers: usize,
    /// Digits anywhere (each number keeps its digits in a string of its own).
    digits: usize,
    escapes: bool,
    /// The last byte of the previous frame, to see a number start across frames.
    last: u8,
}

impl Shape {
    fn add(&mut self, data: &[u8]) {
        let Some((&first, _)) = data.split_first() else { return };
        self.bytes += data.len();
        self.count(&[self.last], &[first]);
        // Each byte beside the one before it, in aligned chunks.
        for (before, chunk) in data[..data.len() - 1].chunks(255).zip(data[1..].chunks(255)) {
            self.count(before, chunk);
        }
        self.last = data[data.len() - 1];
    }

    /// Counts `chunk` (at most 255 bytes), whose bytes follow those of
    /// `before`. Byte-wide counters let the compiler count 32 bytes at a
    /// time (~8 GB/s, against ~60 MB/s for the parse itself).
    fn count(&mut self, before: &[u8], chunk: &[u8]) {
        let (mut members, mut arrays, mut objects, mut escapes) = (0u8, 0u8, 0u8, 0u8);
        let (mut colons, mut numbers, mut digits) = (0u8, 0u8, 0u8);
        for (&prev, &b) in before.iter().zip(chunk) {
            members += u8::from(b == b',');
            colons += u8::from(b == b':');
            arrays += u8::from(b == b'[');
            objects += u8::from(b == b'{');
            escapes += u8::from(b == b'\\');
            let digit = b.is_ascii_digit();
            digits += u8::from(digit);
            let after = matches!(prev, b'[' | b',' | b':' | b' ' | b'\n' | b'\r' | b'\t');
            numbers += u8::from((digit || b == b'-') && after);
        }
        self.members += usize::from(members);
        self.colons += usize::from(colons);
        self.arrays += usize::from(arrays);
        self.objects += usize::from(objects);
        self.numbers += usize::from(numbers);
        self.digits += usize::from(digits);
        self.escapes |= escapes > 0;
    }

    /// What parsing takes beyond the body's own bytes. A number keeps its
    /// digits in a string of its own, parsed through a scratch buffer.
    fn parse_cost(&self) -> usize {
        let strings = if self.escapes { 3 * self.bytes } else { self.bytes };
        let numbers = self.numbers * 16 + self.digits;
        strings + numbers + self.members * 96 + self.colons * 64 + self.arrays * 128 + self.objects * 640
    }
}

/// A request body as the API reads it: it must arrive whole within a time
/// limit, so a client trickling its body (slowloris past the head) cannot
/// hold a request, and its place among those in flight, forever; and it is
/// charged to the [`BodyBudget`]: its bytes as they arrive, what parsing
/// them takes once it is whole. (The size limit is [`read_limited`]'s.)
pub struct AdmittedBody {
    inner: Body,
    read_timeout: Duration,
    deadline: Instant,
    /// Started the first time the body is not ready: a body that came with
    /// its head, as most do, costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    charge: BodyCharge,
    /// What the bytes read so far, charged or discarded, hold.
    shape: Shape,
    /// The budget ran out: the rest is read and discarded, then refused.
    refused: Option<Refusal>,
    /// The whole body is read: its parse is charged, or its refusal yielded.
    whole: bool,
}

impl AdmittedBody {
    pub fn new(inner: Body, read_timeout: Duration, charge: BodyCharge) -> Self {
        let deadline = Instant::now() + read_timeout;
        Self {
            inner,
            read_timeout,
            deadline,
            timer: None,
            charge,
            shape: Shape::default(),
            refused: None,
            whole: false,
        }
    }

    fn refuse(&mut self, refusal: Refusal) {
        if self.refused.is_none() {
            count_refusal();
        }
        self.refused = Some(refusal);
    }

    /// At the end of the body: the answer to a refused body (read to its
    /// end, so the client is answered without being reset while still
    /// sending), or the parse charged.
    fn finish(&mut self) -> Result<(), BoxError> {
        if self.refused.is_none()
            && let Err(refusal) = self.charge.try_charge(self.shape.parse_cost())
        {
            self.refuse(refusal);
        }
        self.whole = true;
        match self.refused {
            None => Ok(()),
            Some(Refusal::Full) => Err(OverBudget.into()),
            Some(Refusal::Never) => Err(BeyondBudget(self.charge.limit()).into()),
        }
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

#[derive(Debug, thiserror::Error)]
#[error(
    "once parsed, this body would take more memory than the server's budget for request bodies \
     ({} MiB, --max-body-buffer-mib): send it in smaller parts", .0 >> 20
)]
struct BeyondBudget(usize);

impl http_body::Body for AdmittedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.whole {
            return Poll::Ready(None);
        }
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
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => return Poll::Ready(this.finish().err().map(Err)),
            };
            let data = frame.data_ref().map_or(&[][..], |data| &data[..]);
            this.shape.add(data);
            // Costed even while discarding: a body too large for the whole
            // budget gets a 413, not a 503 that would be retried forever.
            if this.shape.bytes + this.shape.parse_cost() > this.charge.limit() {
                this.refuse(Refusal::Never);
            } else if this.refused.is_none() {
                match this.charge.try_charge(data.len()) {
                    Ok(()) => return Poll::Ready(Some(Ok(frame))),
                    Err(refusal) => this.refuse(refusal),
                }
            }
            // Discarding is bounded too.
            if this.shape.bytes > MAX_BODY_BYTES {
                return Poll::Ready(Some(Err(TooLarge.into())));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // The end is where the parse is charged, or a refusal yielded.
        self.whole
    }

    fn size_hint(&self) -> SizeHint {
        if self.refused.is_some() { SizeHint::with_exact(0) } else { self.inner.size_hint() }
    }
}

/// A body that may be left empty (whitespace only): `None`, or the JSON it holds.
pub async fn optional_json(headers: &HeaderMap, body: Body) -> Result<Option<Value>, ApiError> {
    let bytes = read_limited(headers, body).await?;
    if json::is_blank(&bytes) {
        return Ok(None);
    }
    require_json(headers)?;
    parse_json(&bytes).map(Some)
}

/// Parses JSON: malformed text is a 400 naming its line and column; a
/// well-formed text Herald will not read (too deep, a member it refuses) is a
/// 422 naming where.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if json::is_blank(bytes) {
        return Err(ApiError::MalformedJson("the body is empty".into()));
    }
    json::parse(bytes).map_err(|e| match &e {
        json::Error::Malformed { .. } => ApiError::MalformedJson(e.to_string()),
        json::Error::TooDeep { .. } => ApiError::InvalidRequest(Invalid::one("", e.to_string())),
        json::Error::Refused { pointer, .. } => ApiError::InvalidRequest(Invalid::one(pointer.clone(), e.to_string())),
    })
}

/// The media type's essence (`application/json`), lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// JSON is UTF-8 (RFC 8259): a body declared in another charset is refused
/// rather than misread.
pub fn require_utf8(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    for parameter in value.split(';').skip(1) {
        if let Some((name, charset)) = parameter.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
        {
            let charset = charset.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(ApiError::UnsupportedMediaType(format!("JSON is UTF-8; got charset {charset}")));
            }
        }
    }
    Ok(())
}

/// Refuses a body sent with a content coding (gzip, br, ...): Herald reads
/// bodies as they are, and a compressed one would be taken for malformed
/// JSON, or a plain one labelled compressed for what it is not.
fn require_identity_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    let encodings = headers.get_all(axum::http::header::CONTENT_ENCODING).iter();
    let mut codings = encodings.flat_map(|v| v.to_str().unwrap_or("?").split(',')).map(str::trim);
    match codings.find(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity")) {
        Some(coding) => Err(ApiError::UnsupportedEncoding(format!(
            "bodies are read as sent, not decoded: send this one without Content-Encoding {coding}"
        ))),
        None => Ok(()),
    }
}

/// Requires a JSON body (`application/json` or any `+json` type, in UTF-8).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    require_utf8(headers)?;
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

    /// A body whose frames are sent one by one on the returned channel.
    fn sent_frames() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let frames = futures_util::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|frame| (Ok::<_, std::io::Error>(frame), rx))
        });
        (tx, Body::from_stream(frames))
    }

    #[tokio::test]
    async fn a_body_past_the_budget_is_refused_and_its_charge_released_with_the_request() {
        let budget = BodyBudget::new(0); // the smallest there is
        let other = budget.charge();
        assert!(other.try_charge(MIN_BODY_BUDGET - 100_000).is_ok());
        let charge = budget.charge();
        let admitted = AdmittedBody::new(chunked(200_000), Duration::from_secs(5), charge.clone());
        let err = read_limited(&HeaderMap::new(), Body::new(admitted)).await.unwrap_err();
        assert!(matches!(err, ApiError::Overloaded(_)), "{err:?}");
        assert_eq!(budget.held(), MIN_BODY_BUDGET - 100_000 + 65536, "the first chunk fit and is held");
        drop(charge);
        assert_eq!(budget.held(), MIN_BODY_BUDGET - 100_000);
        drop(other);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn the_parse_is_charged_once_the_body_is_whole() {
        use http_body::Body as _;
        use http_body_util::BodyExt;
        let budget = BodyBudget::new(0);
        let charge = budget.charge();
        let (tx, body) = sent_frames();
        let mut admitted = AdmittedBody::new(body, Duration::from_secs(5), charge.clone());
        // 16 KB of `{` would parse into ~10 MB: a client holds only what it
        // has sent until it has sent all of it.
        tx.send(Bytes::from(vec![b'{'; 16 << 10])).await.unwrap();
        admitted.frame().await.unwrap().unwrap();
        assert_eq!(budget.held(), 16 << 10);
        tx.send(Bytes::from(vec![b'}'; 16 << 10])).await.unwrap();
        admitted.frame().await.unwrap().unwrap();
        assert!(!admitted.is_end_stream());
        drop(tx);
        assert!(admitted.frame().await.is_none());
        assert!(admitted.is_end_stream());
        assert_eq!(
            budget.held(),
            (32 << 10) + (32 << 10) + (16 << 10) * 640,
            "its bytes, its strings' bound, its objects"
        );
        drop((admitted, charge));
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_refused_body_is_discarded_only_up_to_the_body_limit() {
        let budget = BodyBudget::new(0);
        let full = budget.charge();
        assert!(full.try_charge(MIN_BODY_BUDGET).is_ok());
        for (len, too_large) in [(MAX_BODY_BYTES, false), (MAX_BODY_BYTES + 1, true)] {
            let admitted = AdmittedBody::new(chunked(len), Duration::from_secs(5), budget.charge());
            match read_limited(&HeaderMap::new(), Body::new(admitted)).await.unwrap_err() {
                ApiError::TooLarge(_) => assert!(too_large, "{len} bytes"),
                ApiError::Overloaded(_) => assert!(!too_large, "{len} bytes"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_body_that_would_take_more_than_the_whole_budget_once_parsed_is_too_large() {
        let budget = BodyBudget::new(0);
        // 1 MiB of tiny objects: ~90 MiB once parsed, past a 48 MiB budget.
        let body = format!("[{}{{}}]", "{\"a\":0},".repeat(1 << 17));
        let charge = budget.charge();
        let admitted = AdmittedBody::new(Body::from(body.clone()), Duration::from_secs(5), charge.clone());
        match read_limited(&HeaderMap::new(), Body::new(admitted)).await.unwrap_err() {
            ApiError::TooLarge(message) => assert!(message.contains("48 MiB, --max-body-buffer-mib"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(budget.held(), 0, "nothing is charged for a body that cannot fit");

        // Also when it began while the budget was full: a 503 would be retried forever.
        let full = budget.charge();
        assert!(full.try_charge(MIN_BODY_BUDGET).is_ok());
        let (tx, frames) = sent_frames();
        let admitted = AdmittedBody::new(frames, Duration::from_secs(5), budget.charge());
        let read = tokio::spawn(async move { read_limited(&HeaderMap::new(), Body::new(admitted)).await });
        tx.send(Bytes::from_static(b" ")).await.unwrap();
        tx.send(Bytes::from(body)).await.unwrap();
        drop(tx);
        assert!(matches!(read.await.unwrap(), Err(ApiError::TooLarge(_))));
        drop(full);

        // A body of the same size that parses into one string fits, and is
        // charged its bytes and its string until the request ends.
        let body = serde_json::to_string(&"x".repeat(1 << 20)).unwrap();
        let charge = budget.charge();
        let admitted = AdmittedBody::new(Body::from(body.clone()), Duration::from_secs(5), charge.clone());
        assert_eq!(read_limited(&HeaderMap::new(), Body::new(admitted)).await.unwrap(), body);
        assert_eq!(budget.held(), 2 * body.len());
        drop(charge);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn the_parse_estimate_covers_what_parsing_allocates() {
        let n = (1 << 14) + 1; // just past a doubling: the arrays' worst case
        let event = serde_json::json!({
            "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "detail-type": "order.placed", "source": "shop",
            "detail": {"order": {"id": 42, "lines": [{"sku": "a-1", "qty": 2}]}, "tags": ["new", "web"], "note": "x".repeat(800)}
        })
        .to_string();
        let ordinary = [
            format!("[{}]", vec![event; 100].join(",")),
            format!("[{}0]", "0,".repeat(n)),
            // Numbers keep their digits (arbitrary_precision): each is a string.
            format!("[{}0.5]", "0.5,".repeat(n)),
            format!("[{}1e5]", "1e5,".repeat(n)),
            format!("[{}0]", "0.1234567890123456789,".repeat(n)),
            format!("[{}0]", "-12345678901234567890123456789012,".repeat(n)),
            format!("{{{}\"end\":0}}", (0..n).map(|i| format!("\"{i}\":{i}.25,")).collect::<String>()),
            format!("[{}[0]]", "[0],".repeat(n)),
            format!("[{}{{\"a\":0}}]", "{\"a\":0},".repeat(n)),
            format!("{{{}\"end\":0}}", (0..n).map(|i| format!("\"{i}\":0,")).collect::<String>()),
            format!("[{}\"\"]", "\"\",".repeat(n)),
            format!("{}{}", "[".repeat(127), "]".repeat(127)),
            serde_json::to_string(&"x".repeat(n)).unwrap(),
            serde_json::to_string(&format!("\n{}", "x".repeat(n))).unwrap(),
            // The first escape just before half way: the scratch buffer has
            // doubled past the string's length by its end.
            serde_json::to_string(&format!("{}\n{}", "x".repeat(n / 2 - 8), "x".repeat(n / 2 + 8))).unwrap(),
        ];
        for body in &ordinary {
            let peak = allocation::peak_while(|| drop(parse_json(body.as_bytes()).unwrap()));
            let mut shape = Shape::default();
            shape.add(body.as_bytes());
            let charged = shape.parse_cost();
            let start = &body[..body.len().min(30)];
            assert!(charged >= peak, "{start}...: charged {charged} for a parse that took {peak}");
            assert!(charged <= 2 * peak, "{start}...: charged {charged}, more than twice the {peak} it took");
        }
    }

    /// A global allocator that counts the bytes each thread holds, so a test
    /// can see the peak its own code reached while other tests run.
    mod allocation {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static HELD: Cell<usize> = const { Cell::new(0) };
            static PEAK: Cell<usize> = const { Cell::new(0) };
        }

        /// The most bytes `f` held at once on this thread, beyond what was held before.
        pub fn peak_while(f: impl FnOnce()) -> usize {
            let before = HELD.get();
            PEAK.set(before);
            f();
            PEAK.get() - before
        }

        fn add(bytes: usize) {
            // `try_with`: a thread being torn down has no counters left.
            let _ = HELD.try_with(|held| {
                held.set(held.get() + bytes);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(held.get())));
            });
        }

        fn sub(bytes: usize) {
            let _ = HELD.try_with(|held| held.set(held.get().saturating_sub(bytes)));
        }

        struct Counting;

        // SAFETY: every call is passed on to the system allocator unchanged.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                add(layout.size());
                unsafe { System.alloc(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                sub(layout.size());
                unsafe { System.dealloc(ptr, layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                // Counted as moving: the old and the new block are both held for a moment.
                add(new_size);
                let moved = unsafe { System.realloc(ptr, layout, new_size) };
                sub(layout.size());
                moved
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;
    }

    #[test]
    fn empty_and_broken_json_are_malformed() {
        assert!(matches!(parse_json(b"  "), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse_json(b"{"), Err(ApiError::MalformedJson(_))));
        assert!(parse_json(b"{}").is_ok());
    }

    #[test]
    fn json_nested_past_the_limit_is_refused_as_too_deep_not_malformed() {
        let depth = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse_json(depth(json::MAX_DEPTH).as_bytes()).is_ok());
        match parse_json(depth(json::MAX_DEPTH + 1).as_bytes()) {
            Err(ApiError::InvalidRequest(invalid)) => {
                assert_eq!(invalid.errors[0].pointer, "");
                assert!(invalid.errors[0].message.contains("more than 127 deep"), "{invalid:?}");
            }
            other => panic!("{other:?}"),
        }
        let deep_object = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
        assert!(matches!(parse_json(deep_object.as_bytes()), Err(ApiError::InvalidRequest(_))));
    }
}
