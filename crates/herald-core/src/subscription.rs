//! What a subscription asks for: which events (an EventBridge pattern), where
//! they go (a webhook or a pull queue), from where in the log, and how hard to
//! retry. Parsed by hand from JSON so every mistake names its field.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::envelope::{Position, format_time, pointer_to};
use crate::error::{FieldError, Invalid};
use crate::pattern::Pattern;

/// A subscription as declared with `PUT /v1/subscriptions/{name}`, with every
/// default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionSpec {
    /// The pattern as given (`None`: every event). Compile with [`Self::compile_pattern`].
    pub pattern: Option<Value>,
    pub target: Target,
    pub start: Start,
    pub retry: RetryPolicy,
    pub ordering: Ordering,
    /// Deliveries in flight at once (with `ordering: "stream"`, across streams).
    pub concurrency: u32,
    /// Most deliveries per second to the target.
    pub rate_limit: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `secret` in Standard Webhooks form (`whsec_` + base64). `None` when the
    /// declaration left it out: the server generates one before storing.
    Webhook { url: String, secret: Option<String> },
    /// Consumers pull leased messages; one not acknowledged within
    /// `ack_timeout` is delivered again.
    Pull { ack_timeout: Duration },
}

/// Default time a pull consumer has to acknowledge a message.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a new subscription's cursor starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Latest,
    Earliest,
    Time(DateTime<Utc>),
    /// Deliver events after this position.
    Position(Position),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Deliveries in parallel, up to `concurrency`.
    None,
    /// One at a time per `stream`; a failing event holds back only its stream.
    Stream,
}

/// Retries with exponential backoff and full jitter, like EventBridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// After this long since the event was first due, it is dead-lettered.
    pub max_age: Duration,
    /// The first retry waits up to this long; each further retry doubles it.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// One attempt's time limit.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 185,
            max_age: Duration::from_secs(24 * 3600),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A delivery first due at `first_due_us` may no longer be tried at `at_us`.
    pub fn past_max_age(&self, first_due_us: i64, at_us: i64) -> bool {
        at_us.saturating_sub(first_due_us) > self.max_age.as_micros() as i64
    }

    /// The wait before attempt `attempt + 1`, given that `attempt` attempts
    /// failed: uniform in `[0, min(max_backoff, min_backoff * 2^(attempt-1))]`
    /// ("full jitter"). `jitter` is a random number in `[0, 1)`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let ceiling = self.min_backoff.saturating_mul(1u32 << doublings.min(31)).min(self.max_backoff);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time (µs since the epoch).
    RetryAt(i64),
    /// Give up: dead-letter with this reason.
    GiveUp(String),
}

impl RetryPolicy {
    /// Decides after attempt number `attempts` failed with `error`. The wait is
    /// the jittered backoff, or the target's `Retry-After` when that is longer;
    /// past `max_attempts` or `max_age` (counted from `first_due_us`) it gives up.
    pub fn after_failure(
        &self,
        attempts: u32,
        first_due_us: i64,
        now_us: i64,
        retry_after: Option<Duration>,
        jitter: f64,
        error: &str,
    ) -> AfterFailure {
        if attempts >= self.max_attempts {
            return AfterFailure::GiveUp(format!("gave up after {attempts} attempts; last: {error}"));
        }
        let wait = self.backoff(attempts, jitter).max(retry_after.unwrap_or_default());
        let due_us = now_us.saturating_add(wait.as_micros().min(i64::MAX as u128) as i64);
        if self.past_max_age(first_due_us, due_us) {
            let age = Duration::from_micros(now_us.saturating_sub(first_due_us).max(0) as u64);
            let max_age = self.max_age.as_secs();
            // Say which: the age reached, or a wait (the target's Retry-After,
            // most often) that would take the next attempt past it.
            let when = if self.past_max_age(first_due_us, now_us) {
                format!("reached after {attempts} attempts over {:.1}s", age.as_secs_f64())
            } else {
                let asked = if retry_after.is_some_and(|r| r >= wait) { "the target's Retry-After" } else { "backoff" };
                format!(
                    "would be passed by the next attempt, {}s away ({asked}), after {attempts} attempts",
                    wait.as_secs()
                )
            };
            return AfterFailure::GiveUp(format!("max_age of {max_age}s {when}; last: {error}"));
        }
        AfterFailure::RetryAt(due_us)
    }
}

/// Limits on what a declaration may ask for.
const MAX_ATTEMPTS: u32 = 185;
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_CONCURRENCY: u32 = 256;
const MAX_URL_CHARS: usize = 2048;
/// Deliveries per second: at least one per 1,000 s (the interval between two
/// must be a time the dispatcher can wait), at most a million.
const RATE_LIMITS: std::ops::RangeInclusive<f64> = 0.001..=1e6;

impl SubscriptionSpec {
    /// Parses and validates a declaration; every problem found is reported,
    /// each with the JSON pointer of its field.
    pub fn from_json(value: &Value) -> Result<Self, Invalid> {
        let Some(object) = value.as_object() else {
            return Err(Invalid::one("", "must be a JSON object"));
        };
        let mut errors = Vec::new();
        const KNOWN: [&str; 7] = ["pattern", "target", "start", "retry", "ordering", "concurrency", "rate_limit"];
        for key in object.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            errors.push(FieldError::new(pointer_to(key), format!("unknown field; expected one of {KNOWN:?}")));
        }
        let pattern = match object.get("pattern") {
            None | Some(Value::Null) => None,
            Some(pattern) => {
                if let Err(e) = Pattern::compile(pattern) {
                    errors.push(FieldError::new(format!("/pattern{}", e.path), e.message));
                }
                Some(pattern.clone())
            }
        };
        let target = collect(&mut errors, target(object.get("target")));
        let start = collect(&mut errors, start(object.get("start")));
        let retry = collect(&mut errors, retry(object.get("retry")));
        let ordering = collect(
            &mut errors,
            match object.get("ordering") {
                None | Some(Value::Null) => Ok(Ordering::None),
                Some(Value::String(s)) if s == "none" => Ok(Ordering::None),
                Some(Value::String(s)) if s == "stream" => Ok(Ordering::Stream),
                Some(_) => Err(vec![FieldError::new("/ordering", "must be \"none\" or \"stream\"")]),
            },
        );
        let concurrency = collect(
            &mut errors,
            match object.get("concurrency") {
                None | Some(Value::Null) => Ok(16),
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=MAX_CONCURRENCY as u64).contains(&n) => Ok(n as u32),
                    _ => Err(vec![FieldError::new(
                        "/concurrency",
                        format!("must be an integer from 1 to {MAX_CONCURRENCY}"),
                    )]),
                },
            },
        );
        let rate_limit = collect(
            &mut errors,
            match object.get("rate_limit") {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_f64() {
                    Some(r) if RATE_LIMITS.contains(&r) => Ok(Some(r)),
                    _ => {
                        Err(vec![FieldError::new("/rate_limit", "must be from 0.001 to 1000000 deliveries per second")])
                    }
                },
            },
        );
        if !errors.is_empty() {
            return Err(Invalid { errors });
        }
        let (Some(target), Some(start), Some(retry), Some(ordering), Some(concurrency), Some(rate_limit)) =
            (target, start, retry, ordering, concurrency, rate_limit)
        else {
            unreachable!("every field parsed when no error was collected");
        };
        Ok(Self { pattern, target, start, retry, ordering, concurrency, rate_limit })
    }

    /// A declaration as stored (the JSON text of [`Self::to_json`]). Its
    /// `start` is not read back (it is [`Start::Latest`]): it counted once,
    /// when the subscription was created, and one stored before a limit was
    /// tightened must not make the subscription unreadable.
    pub fn from_stored(text: &str) -> Result<Self, String> {
        let mut value = crate::json::parse(text.as_bytes()).map_err(|e| e.to_string())?;
        if let Some(declaration) = value.as_object_mut() {
            declaration.remove("start");
        }
        Self::from_json(&value).map_err(|e| e.to_string())
    }

    /// The compiled pattern; [`Pattern::any`] without one. Cannot fail for a
    /// spec that came from [`Self::from_json`].
    pub fn compile_pattern(&self) -> Result<Pattern, Invalid> {
        match &self.pattern {
            None => Ok(Pattern::any()),
            Some(p) => Pattern::compile(p).map_err(|e| Invalid::one(format!("/pattern{}", e.path), e.message)),
        }
    }

    /// The declaration as stored and shown, with every default spelled out.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        if let Some(pattern) = &self.pattern {
            out.insert("pattern".into(), pattern.clone());
        }
        out.insert(
            "target".into(),
            match &self.target {
                Target::Webhook { url, secret } => json!({"type": "webhook", "url": url, "secret": secret}),
                Target::Pull { ack_timeout } => json!({"type": "pull", "ack_timeout": seconds(*ack_timeout)}),
            },
        );
        out.insert(
            "start".into(),
            match &self.start {
                Start::Latest => json!("latest"),
                Start::Earliest => json!("earliest"),
                Start::Time(t) => json!({ "time": format_time(t) }),
                Start::Position(p) => json!({ "position": p }),
            },
        );
        let r = &self.retry;
        out.insert(
            "retry".into(),
            json!({
                "max_attempts": r.max_attempts,
                "max_age": seconds(r.max_age),
                "min_backoff": seconds(r.min_backoff),
                "max_backoff": seconds(r.max_backoff),
                "timeout": seconds(r.timeout),
            }),
        );
        out.insert(
            "ordering".into(),
            json!(match self.ordering {
                Ordering::None => "none",
                Ordering::Stream => "stream",
            }),
        );
        out.insert("concurrency".into(), json!(self.concurrency));
        if let Some(rate) = self.rate_limit {
            out.insert("rate_limit".into(), json!(rate));
        }
        Value::Object(out)
    }
}

fn seconds(d: Duration) -> Value {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { json!(d.as_secs()) } else { json!(s) }
}

/// Keeps a parsed value, or moves its errors into `errors`.
fn collect<T>(errors: &mut Vec<FieldError>, parsed: Result<T, Vec<FieldError>>) -> Option<T> {
    parsed.map_err(|e| errors.extend(e)).ok()
}

fn target(value: Option<&Value>) -> Result<Target, Vec<FieldError>> {
    let Some(object) = value.and_then(Value::as_object) else {
        return Err(vec![FieldError::new(
            "/target",
            "required: {\"type\": \"webhook\", \"url\": ...} or {\"type\": \"pull\"}",
        )]);
    };
    match object.get("type").and_then(Value::as_str) {
        Some("pull") => {
            if let Some(k) = object.keys().find(|k| !["type", "ack_timeout"].contains(&k.as_str())) {
                return Err(vec![FieldError::new(
                    format!("/target{}", pointer_to(k)),
                    "unknown field of a pull target",
                )]);
            }
            match object.get("ack_timeout") {
                None | Some(Value::Null) => Ok(Target::Pull { ack_timeout: DEFAULT_ACK_TIMEOUT }),
                Some(v) => match duration(v) {
                    Some(d) if d >= Duration::from_millis(10) && d <= Duration::from_secs(12 * 3600) => {
                        Ok(Target::Pull { ack_timeout: d })
                    }
                    _ => Err(vec![FieldError::new("/target/ack_timeout", "must be a duration from 10 ms to 12 h")]),
                },
            }
        }
        Some("webhook") => {
            let mut errors = Vec::new();
            for k in object.keys().filter(|k| !["type", "url", "secret"].contains(&k.as_str())) {
                errors.push(FieldError::new(format!("/target{}", pointer_to(k)), "unknown field of a webhook target"));
            }
            let url = match object.get("url").and_then(Value::as_str) {
                Some(url) if url.len() > MAX_URL_CHARS => {
                    errors.push(FieldError::new("/target/url", format!("longer than {MAX_URL_CHARS} characters")));
                    None
                }
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    // The parser the HTTP client uses: a URL it cannot send to
                    // (a port past 65535, an unclosed IPv6 literal, no host) is
                    // refused here rather than retried until it is dead-lettered.
                    let parsed = url::Url::parse(url);
                    let has_host = parsed.as_ref().is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()));
                    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
                    if !has_host || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
                        let why = parsed.err().map_or_else(|| "no host".to_owned(), |e| e.to_string());
                        errors.push(FieldError::new(
                            "/target/url",
                            format!("must be an absolute http(s) URL with a host ({why})"),
                        ));
                        None
                    } else {
                        Some(url.to_owned())
                    }
                }
                _ => {
                    errors.push(FieldError::new("/target/url", "required: an absolute http:// or https:// URL"));
                    None
                }
            };
            let secret = match object.get("secret") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if crate::signature::Secret::parse(s).is_ok() => Some(s.clone()),
                Some(_) => {
                    errors.push(FieldError::new(
                        "/target/secret",
                        "must be \"whsec_\" followed by base64 of 24 to 64 bytes",
                    ));
                    None
                }
            };
            match url {
                Some(url) if errors.is_empty() => Ok(Target::Webhook { url, secret }),
                _ => Err(errors),
            }
        }
        _ => Err(vec![FieldError::new("/target/type", "must be \"webhook\" or \"pull\"")]),
    }
}

fn start(value: Option<&Value>) -> Result<Start, Vec<FieldError>> {
    let invalid =
        || vec![FieldError::new("/start", r#"must be "latest", "earliest", {"time": RFC 3339} or {"position": N}"#)];
    match value {
        None | Some(Value::Null) => Ok(Start::Latest),
        Some(Value::String(s)) if s == "latest" => Ok(Start::Latest),
        Some(Value::String(s)) if s == "earliest" => Ok(Start::Earliest),
        Some(Value::Object(o)) if o.len() == 1 => {
            if let Some(time) = o.get("time") {
                time.as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| Start::Time(t.with_timezone(&Utc)))
                    .ok_or_else(|| vec![FieldError::new("/start/time", "must be an RFC 3339 timestamp")])
            } else if let Some(position) = o.get("position") {
                crate::envelope::position_in(position).map(Start::Position).ok_or_else(|| {
                    vec![FieldError::new(
                        "/start/position",
                        format!("must be an integer from 0 to {}", crate::MAX_POSITION),
                    )]
                })
            } else {
                Err(invalid())
            }
        }
        Some(_) => Err(invalid()),
    }
}

fn retry(value: Option<&Value>) -> Result<RetryPolicy, Vec<FieldError>> {
    let mut policy = RetryPolicy::default();
    let object = match value {
        None | Some(Value::Null) => return Ok(policy),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(vec![FieldError::new("/retry", "must be an object")]),
    };
    let mut errors = Vec::new();
    for (key, v) in object {
        let pointer = format!("/retry{}", pointer_to(key));
        match key.as_str() {
            "max_attempts" => match v.as_u64() {
                Some(n) if (1..=MAX_ATTEMPTS as u64).contains(&n) => policy.max_attempts = n as u32,
                _ => errors.push(FieldError::new(pointer, format!("must be an integer from 1 to {MAX_ATTEMPTS}"))),
            },
            "max_age" | "min_backoff" | "max_backoff" | "timeout" => match duration(v) {
                Some(d) => match key.as_str() {
                    "max_age" if d >= Duration::from_secs(1) && d <= MAX_AGE => policy.max_age = d,
                    "min_backoff" if d >= Duration::from_millis(1) => policy.min_backoff = d,
                    "max_backoff" if d >= Duration::from_millis(1) => policy.max_backoff = d,
                    "timeout" if d >= Duration::from_millis(10) && d <= MAX_TIMEOUT => policy.timeout = d,
                    "max_age" => errors.push(FieldError::new(pointer, "must be from 1 s to 24 h")),
                    "timeout" => errors.push(FieldError::new(pointer, "must be from 10 ms to 60 s")),
                    _ => errors.push(FieldError::new(pointer, "must be at least 1 ms")),
                },
                None => errors.push(FieldError::new(
                    pointer,
                    "must be seconds (a number) or a duration such as \"500ms\", \"30s\", \"5m\", \"24h\"",
                )),
            },
            _ => errors.push(FieldError::new(
                pointer,
                "unknown field; expected max_attempts, max_age, min_backoff, max_backoff, timeout",
            )),
        }
    }
    if policy.min_backoff > policy.max_backoff {
        errors.push(FieldError::new("/retry/min_backoff", "must not exceed max_backoff"));
    }
    if errors.is_empty() { Ok(policy) } else { Err(errors) }
}

/// Seconds as a number, or a string with a unit: `"500ms"`, `"30s"`, `"5m"`, `"24h"`.
pub fn duration(value: &Value) -> Option<Duration> {
    let seconds = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let (number, unit) = s.split_at(split);
            let number: f64 = number.parse().ok()?;
            number
                * match unit {
                    "ms" => 0.001,
                    "s" => 1.0,
                    "m" => 60.0,
                    "h" => 3600.0,
                    _ => return None,
                }
        }
        _ => return None,
    };
    (seconds.is_finite() && (0.0..=1e9).contains(&seconds)).then(|| Duration::from_secs_f64(seconds))
}

/// Lifecycle of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    Active,
    /// Paused by an operator: nothing is delivered, the cursor waits.
    Paused,
    /// The target answered 410 Gone: nothing is delivered until resumed.
    Disabled,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "paused" => Some(Self::Paused),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Result<SubscriptionSpec, Invalid> {
        SubscriptionSpec::from_json(&value)
    }

    fn pointers(result: Result<SubscriptionSpec, Invalid>) -> Vec<String> {
        result.unwrap_err().errors.into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn defaults_are_filled_in() {
        let spec = parse(json!({"target": {"type": "webhook", "url": "http://example.com/hook"}})).unwrap();
        assert_eq!(spec.start, Start::Latest);
        assert_eq!(spec.ordering, Ordering::None);
        assert_eq!(spec.retry, RetryPolicy::default());
        assert_eq!(spec.retry.max_attempts, 185);
        assert_eq!(spec.concurrency, 16);
        assert_eq!(spec.to_json()["retry"]["max_age"], json!(86400));
    }

    #[test]
    fn a_webhook_url_the_http_client_cannot_send_to_is_refused() {
        for url in ["http://127.0.0.1:99999/x", "http://[::1/", "http://@/", "https://", "http:///path", "http://a b/"]
        {
            let got = pointers(parse(json!({"target": {"type": "webhook", "url": url}})));
            assert_eq!(got, vec!["/target/url"], "{url}");
        }
        for url in ["http://127.0.0.1:8080/x", "https://[::1]:443/h?q=1", "http://user@example.com/h"] {
            assert!(parse(json!({"target": {"type": "webhook", "url": url}})).is_ok(), "{url}");
        }
    }

    #[test]
    fn every_mistake_is_named_by_its_pointer() {
        let got = pointers(parse(json!({
            "target": {"type": "webhook", "url": "ftp://x"},
            "start": "yesterday",
            "retry": {"max_attempts": 0, "timeout": "2d"},
            "ordering": "total",
            "colour": 1,
        })));
        for expected in ["/colour", "/target/url", "/start", "/retry/max_attempts", "/retry/timeout", "/ordering"] {
            assert!(got.contains(&expected.to_string()), "{expected} missing from {got:?}");
        }
    }

    #[test]
    fn a_rate_limit_is_one_the_dispatcher_can_space_out() {
        let rated = |rate: f64| parse(json!({"target": {"type": "pull"}, "rate_limit": rate}));
        for fine in [0.001, 5.0, 1e6] {
            assert_eq!(rated(fine).unwrap().rate_limit, Some(fine));
        }
        // 5e-324 made an interval of infinite seconds, which panicked the subscription's worker.
        for refused in [0.0, -1.0, 5e-324, 0.0009, 1.1e6] {
            assert_eq!(pointers(rated(refused)), ["/rate_limit"], "{refused}");
        }
    }

    #[test]
    fn a_start_position_must_fit_the_store() {
        let at = |position: u64| parse(json!({"target": {"type": "pull"}, "start": {"position": position}}));
        assert_eq!(at(crate::MAX_POSITION).unwrap().start, Start::Position(crate::MAX_POSITION));
        assert_eq!(pointers(at(crate::MAX_POSITION + 1)), ["/start/position"]);
        // Stored before the limit: the subscription still reads.
        let stored = json!({"target": {"type": "pull"}, "start": {"position": crate::MAX_POSITION + 1}});
        let spec = SubscriptionSpec::from_stored(&stored.to_string()).unwrap();
        assert_eq!((spec.target, spec.start), (Target::Pull { ack_timeout: DEFAULT_ACK_TIMEOUT }, Start::Latest));
    }

    #[test]
    fn an_invalid_pattern_names_the_path_inside_it() {
        let got = pointers(parse(json!({
            "target": {"type": "pull"},
            "pattern": {"detail": {"amount": [{"numeric": [">", "ten"]}]}},
        })));
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("/pattern/detail/amount"), "{got:?}");
    }

    #[test]
    fn round_trips_through_its_json() {
        let spec = parse(json!({
            "pattern": {"source": ["shop"]},
            "target": {"type": "webhook", "url": "https://example.com/h", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            "start": {"position": 7},
            "retry": {"max_attempts": 3, "max_age": "1h", "min_backoff": "100ms", "max_backoff": 2},
            "ordering": "stream",
            "rate_limit": 5,
        }))
        .unwrap();
        assert_eq!(parse(spec.to_json()).unwrap(), spec);
        assert_eq!(spec.retry.min_backoff, Duration::from_millis(100));
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_full_jitter() {
        let policy = RetryPolicy {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(1, 0.999_999).as_millis(), 99);
        assert_eq!(policy.backoff(3, 0.5), Duration::from_millis(200));
        assert_eq!(policy.backoff(30, 1.0), Duration::from_secs(1));
        assert_eq!(policy.backoff(2, 0.0), Duration::ZERO);
        assert_eq!(policy.backoff(u32::MAX, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn gives_up_after_max_attempts_or_max_age() {
        let policy = RetryPolicy {
            max_attempts: 3,
            max_age: Duration::from_secs(10),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.after_failure(1, 0, 0, None, 0.5, "HTTP 500"), AfterFailure::RetryAt(500_000));
        let retry_after = Some(Duration::from_secs(3));
        assert_eq!(policy.after_failure(1, 0, 0, retry_after, 0.5, "HTTP 503"), AfterFailure::RetryAt(3_000_000));
        assert!(
            matches!(policy.after_failure(3, 0, 0, None, 0.5, "HTTP 500"), AfterFailure::GiveUp(r) if r.contains("3 attempts"))
        );
        assert!(
            matches!(policy.after_failure(2, 0, 9_900_000, None, 0.5, "x"), AfterFailure::GiveUp(r) if r.contains("max_age"))
        );
        // A Retry-After past max_age gives up at once, and says so rather than
        // that an age was reached.
        let far = Some(Duration::from_secs(100_000));
        let AfterFailure::GiveUp(reason) = policy.after_failure(1, 0, 0, far, 0.5, "HTTP 429") else {
            panic!("a wait past max_age gives up")
        };
        assert!(
            reason.contains("Retry-After") && reason.contains("100000s") && !reason.contains("reached"),
            "{reason}"
        );
    }
}
