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

/// Bodies as the OpenAPI document describes them. Documentation only: the
/// handlers read bodies themselves, to name each problem's field, and answer
/// `POST /v1/events` with one of two types.
pub mod documented {
    #![allow(dead_code)]

    use serde::Serialize;
    use serde_json::Value;
    use utoipa::ToSchema;

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
        #[schema(minimum = 1, maximum = 1000)]
        pub max: Option<u32>,
        /// How long to wait for a first message, at most 30 s (default none), e.g. `"5s"`.
        pub wait: Option<String>,
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
        pub delay: Option<String>,
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
        pub from: ReplayBound,
        /// Default: what the subscription has fanned out so far.
        pub to: Option<ReplayBound>,
    }

    /// One end of a replayed range: a position, or a time.
    #[derive(serde::Deserialize, ToSchema)]
    #[serde(untagged, deny_unknown_fields)]
    pub enum ReplayBound {
        Position {
            #[schema(minimum = 0)]
            position: i64,
        },
        Time {
            #[schema(format = DateTime)]
            time: String,
        },
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
