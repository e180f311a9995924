//! Shapes on the wire that the API writes (and documents in OpenAPI).

use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::ingest::Outcome;
use crate::problem::Problem;

/// The answer to publishing one event.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishOut {
    pub id: String,
    /// Where the event is in the log: for a duplicate, the original position.
    pub position: u64,
    /// True when the event was already stored (nothing new was written).
    pub duplicate: bool,
}

/// The answer to a batch: one entry per event, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<BatchResult>,
    /// How many events of the batch were not stored.
    pub failed: usize,
}

/// One event's entry in [`BatchOut`]: what a single publish would answer, or
/// `{"error": <problem>}`. Typed rather than built as `Value`s, because a
/// batch writes a thousand of them.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BatchResult {
    Published(PublishOut),
    Failed { error: Problem },
}

impl BatchOut {
    pub fn from_outcomes(outcomes: Vec<Outcome>) -> Self {
        let results: Vec<BatchResult> = outcomes
            .into_iter()
            .map(|o| match o.into_result() {
                Ok((id, position, duplicate)) => BatchResult::Published(PublishOut { id, position, duplicate }),
                Err(e) => BatchResult::Failed { error: e.problem() },
            })
            .collect();
        let failed = results.iter().filter(|r| matches!(r, BatchResult::Failed { .. })).count();
        Self { results, failed }
    }
}

/// An event as served: the envelope plus its `position`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StoredEvent)]
pub struct EventOut {
    pub position: u64,
    pub version: String,
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    pub account: Option<String>,
    pub time: String,
    pub region: Option<String>,
    pub resources: Vec<String>,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub stream: Option<String>,
}

/// An event as published (documentation of the accepted fields; validation
/// reports every problem at once, see `herald_core::envelope`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EventIn)]
pub struct EventIn {
    /// 1-256 characters: the idempotency key. Omit it to have one derived or assigned.
    pub id: Option<String>,
    /// Schema version of `detail`; default "1".
    pub version: Option<String>,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    pub account: Option<String>,
    /// RFC 3339; default: the time received.
    pub time: Option<String>,
    pub region: Option<String>,
    pub resources: Option<Vec<String>>,
    /// A JSON object of at most 256 KiB.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// The entity the event belongs to, e.g. `tweet-42`.
    pub stream: Option<String>,
}

/// `GET /v1/subscriptions/{name}/attempts`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<AttemptOut>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub event_id: String,
    pub position: u64,
    /// 1 for the first attempt; a `dead` entry repeats the last attempt's number (0 if none was made).
    pub attempt: u32,
    #[schema(format = DateTime)]
    pub time: String,
    /// `delivered`, `failed`, `dead` or `gone`.
    pub outcome: String,
    /// The target's HTTP status, when it answered.
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub error: Option<String>,
    /// The start of the target's answer.
    pub response: Option<String>,
    /// Made for a replay.
    pub replay: bool,
}

/// `GET /v1/subscriptions/{name}/dead-letters`: in position order.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetterOut>,
    /// Pass as `after` to read on.
    pub next: u64,
}

/// An event the subscription gave up on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterOut {
    pub event_id: String,
    pub position: u64,
    pub stream: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    pub reason: String,
    /// When it was dead-lettered.
    #[schema(format = DateTime)]
    pub time: String,
}

/// The answer to a redrive: dead letters put back for delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redriven {
    pub redriven: u64,
}

/// The answer to a purge: dead letters deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Purged {
    pub purged: u64,
}

/// The answer to an ack.
#[derive(Debug, Serialize, ToSchema)]
pub struct Acked {
    pub acked: u64,
}

/// The answer to a nack.
#[derive(Debug, Serialize, ToSchema)]
pub struct Nacked {
    pub nacked: u64,
}

/// `GET /v1/id-rules`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdRuleList {
    #[schema(value_type = Vec<documented::IdRuleOut>)]
    pub rules: Vec<herald_core::IdRule>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    /// `ok`
    pub status: &'static str,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`
    pub status: &'static str,
    /// The last position committed.
    pub head: u64,
}

/// Bodies as the OpenAPI document describes them. Documentation only: the
/// handlers read bodies themselves, to name each problem's field, and answer
/// `POST /v1/events` with one of two types.
pub mod documented {
    #![allow(dead_code)]

    use serde::Serialize;
    use serde_json::Value;
    use utoipa::ToSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

    use super::{BatchOut, EventIn, PublishOut};

    /// What `POST /v1/events` takes: one event, or an array of up to 1,000. A
    /// batch's entries are validated one by one and each answered in `results`,
    /// so any JSON value is taken as an entry.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum PublishBody {
        One(Box<EventIn>),
        #[schema(value_type = Vec<Value>)]
        Batch(Vec<Value>),
    }

    /// `PUT /v1/id-rules/{detail_type}`: where in an event the values that make
    /// its id are.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct IdRuleIn {
        /// JSON pointers into the envelope, e.g. `/detail/user_id`.
        #[schema(min_items = 1)]
        pub fields: Vec<String>,
    }

    /// `POST /v1/subscriptions/{name}/pull`.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct PullIn {
        /// At most this many messages (default 10).
        #[schema(minimum = 1, maximum = 1000, nullable = false)]
        pub max: Option<u32>,
        /// How long to wait for a first message, at most 30 s (default none), e.g. `"5s"`.
        #[schema(nullable = false)]
        pub wait: Option<TimeSpan>,
    }

    /// `POST /v1/subscriptions/{name}/ack`.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct AckIn {
        /// The `ack_id`s of messages a pull handed out, at most 1,000.
        #[schema(max_items = 1000)]
        pub ack_ids: Vec<String>,
    }

    /// `POST /v1/subscriptions/{name}/nack`.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct NackIn {
        /// The `ack_id`s of messages a pull handed out, at most 1,000.
        #[schema(max_items = 1000)]
        pub ack_ids: Vec<String>,
        /// Deliver them again after this long, at most 12 h (default 0), e.g. `"1s"`.
        #[schema(nullable = false)]
        pub delay: Option<TimeSpan>,
    }

    /// Which dead letters a redrive or purge takes: all (no body), or those of
    /// these event ids.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct IdsIn {
        pub ids: Vec<String>,
    }

    /// `POST /v1/subscriptions/{name}/replay`.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ReplayIn {
        pub from: LogPoint,
        /// Default: what the subscription has fanned out so far.
        #[schema(nullable = false)]
        pub to: Option<LogPoint>,
    }

    /// A point in the log: a position, or a time (the events' own `time`).
    #[derive(Serialize, serde::Deserialize, ToSchema)]
    #[serde(untagged, deny_unknown_fields)]
    pub enum LogPoint {
        Position {
            #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
            position: i64,
        },
        Time {
            #[schema(format = DateTime)]
            time: String,
        },
    }

    /// `PUT /v1/subscriptions/{name}`: which events, where to, and how.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct SubscriptionIn {
        /// An EventBridge event pattern; none: every event.
        #[schema(value_type = Option<Object>)]
        pub pattern: Option<Value>,
        pub target: TargetIn,
        /// Where a new subscription starts (default `"latest"`); an update keeps its cursor.
        pub start: Option<Start>,
        pub retry: Option<RetryIn>,
        /// Default `"none"`.
        pub ordering: Option<Ordering>,
        /// Deliveries in flight at once (default 16).
        #[schema(minimum = 1, maximum = 256)]
        pub concurrency: Option<u32>,
        /// Most deliveries per second to the target, 0.001 to 1,000,000 (default: no limit).
        #[schema(minimum = 0.001, maximum = 1_000_000)]
        pub rate_limit: Option<f64>,
    }

    /// Where deliveries go.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
    pub enum TargetIn {
        /// POSTed to `url`, signed with `secret` (Standard Webhooks).
        Webhook {
            /// An absolute http(s) URL.
            #[schema(max_length = 2048, pattern = "^https?://[^/]")]
            url: String,
            /// `whsec_` and the base64 of 24 to 64 bytes: generated when left
            /// out, and kept when an update leaves it out.
            #[schema(pattern = "^whsec_")]
            secret: Option<String>,
        },
        /// Consumers pull leased messages and acknowledge them.
        Pull {
            /// Time to acknowledge before a message is handed out again, 10 ms to 12 h (default 30 s).
            ack_timeout: Option<TimeSpan>,
        },
    }

    /// Where a new subscription's cursor starts: after a position, or at the
    /// first event whose `time` is not before a time.
    #[derive(Serialize, serde::Deserialize, ToSchema)]
    #[serde(untagged)]
    pub enum Start {
        Named(StartNamed),
        At(LogPoint),
    }

    /// `latest`: only events published from now on; `earliest`: the whole log.
    #[derive(Serialize, serde::Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum StartNamed {
        Latest,
        Earliest,
    }

    /// Retries with exponential backoff and full jitter.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RetryIn {
        /// Attempts in all, the first included (default 185).
        #[schema(minimum = 1, maximum = 185, nullable = false)]
        pub max_attempts: Option<u32>,
        /// Dead-letter a delivery this long after it was first due, 1 s to 24 h (default 24 h).
        #[schema(nullable = false)]
        pub max_age: Option<TimeSpan>,
        /// The first retry waits up to this long, each further one twice as long (default 1 s).
        #[schema(nullable = false)]
        pub min_backoff: Option<TimeSpan>,
        /// No retry waits longer (default 300 s).
        #[schema(nullable = false)]
        pub max_backoff: Option<TimeSpan>,
        /// One attempt's time limit, 10 ms to 60 s (default 10 s).
        #[schema(nullable = false)]
        pub timeout: Option<TimeSpan>,
    }

    /// `none`: deliveries in parallel; `stream`: one at a time per `stream`.
    #[derive(Serialize, serde::Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Ordering {
        None,
        Stream,
    }

    /// Seconds (a number), or text with a unit: `"500ms"`, `"30s"`, `"5m"`, `"24h"`.
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    pub enum TimeSpan {
        Seconds(f64),
        Text(String),
    }

    impl utoipa::PartialSchema for TimeSpan {
        fn schema() -> RefOr<Schema> {
            OneOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0)))
                .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9.]+(ms|s|m|h)$")))
                .description(Some("Seconds (a number), or text with a unit: \"500ms\", \"30s\", \"5m\", \"24h\""))
                .into()
        }
    }

    impl ToSchema for TimeSpan {}

    /// A subscription as served: its declaration with every default written
    /// out (durations in seconds), and how its deliveries are going.
    #[derive(Serialize, ToSchema)]
    pub struct SubscriptionOut {
        pub name: String,
        pub state: State,
        #[schema(value_type = Option<Object>)]
        pub pattern: Option<Value>,
        pub target: TargetOut,
        pub start: Start,
        pub retry: RetryOut,
        pub ordering: Ordering,
        pub concurrency: u32,
        pub rate_limit: Option<f64>,
        pub status: Status,
        #[schema(format = DateTime)]
        pub created: String,
        #[schema(format = DateTime)]
        pub updated: String,
    }

    /// `paused` by an operator, or `disabled` by a target that answered 410 Gone.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum State {
        Active,
        Paused,
        Disabled,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(tag = "type", rename_all = "lowercase")]
    pub enum TargetOut {
        Webhook { url: String, secret: String },
        Pull { ack_timeout: f64 },
    }

    /// Every duration in seconds.
    #[derive(Serialize, ToSchema)]
    pub struct RetryOut {
        pub max_attempts: u32,
        pub max_age: f64,
        pub min_backoff: f64,
        pub max_backoff: f64,
        pub timeout: f64,
    }

    #[derive(Serialize, ToSchema)]
    pub struct Status {
        /// Events up to here have been matched and fanned out.
        pub cursor: u64,
        /// Events in the log past the cursor.
        pub lag: u64,
        /// Deliveries owed: due now, or waiting for a retry.
        pub pending: u64,
        pub in_flight: u64,
        /// Deliveries that succeeded.
        pub delivered: u64,
        /// Attempts that failed.
        pub failed: u64,
        pub dead_letters: u64,
        pub last_error: Option<String>,
        /// A webhook target's circuit breaker.
        pub circuit: Option<Circuit>,
    }

    /// A webhook URL's circuit breaker.
    #[derive(Serialize, ToSchema)]
    pub struct Circuit {
        pub state: CircuitState,
        /// When an `open` circuit lets a probe through.
        #[schema(format = DateTime)]
        pub until: Option<String>,
    }

    /// `open` while the target keeps failing, then `half-open`: one probe decides.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum CircuitState {
        Closed,
        Open,
        HalfOpen,
    }

    /// The answer to a pull (written by splicing the stored events' text).
    #[derive(Serialize, ToSchema)]
    pub struct PullAnswer {
        pub messages: Vec<Message>,
    }

    /// One leased message.
    #[derive(Serialize, ToSchema)]
    pub struct Message {
        /// Pass to ack or nack.
        pub ack_id: String,
        /// 1 for the first delivery.
        pub attempt: u32,
        /// Delivered for a replay.
        pub replay: bool,
        pub event: super::EventOut,
    }

    /// An id rule as stored (`herald_core::IdRule`).
    #[derive(Serialize, ToSchema)]
    pub struct IdRuleOut {
        #[serde(rename = "detail-type")]
        pub detail_type: String,
        /// JSON pointers into the envelope.
        pub fields: Vec<String>,
    }

    /// `GET /v1/subscriptions`.
    #[derive(Serialize, ToSchema)]
    pub struct SubscriptionList {
        pub subscriptions: Vec<SubscriptionOut>,
    }

    /// The answer to `POST /v1/events`: one event's, or a batch's.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum PublishAnswer {
        One(PublishOut),
        Batch(BatchOut),
    }
}

/// A page of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// In position order.
    pub events: Vec<EventOut>,
    /// Pass as `after` to read on.
    pub next: u64,
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only events after this position (default 0). Read as text, so that
    /// a bad value gets Herald's own problem.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// At most this many events (1-1000, default 100); a page also ends
    /// once it holds 1 MiB of events, so read on from `next` until a page is empty.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    pub source: Option<String>,
    #[serde(rename = "detail-type")]
    #[param(rename = "detail-type")]
    pub detail_type: Option<String>,
    pub stream: Option<String>,
}
