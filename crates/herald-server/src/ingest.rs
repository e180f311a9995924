//! The ingest path every producer goes through: validate -> identify -> append.
//!
//! Entry points (native JSON, CloudEvents, AWS PutEvents) first map their
//! format onto envelope-shaped JSON; from there on, one code path decides ids
//! and outcomes, so idempotency behaves the same whichever way an event came in.

use chrono::Utc;
use herald_core::identity;
use herald_core::{Event, EventDraft, FieldError, Invalid, Position};
use herald_store::{AppendOutcome, NewEvent};
use serde_json::Value;

use crate::metrics;
use crate::problem::ApiError;
use crate::state::AppState;

/// One event as offered by a producer, already mapped onto the envelope shape,
/// or the reason its format mapping failed.
pub type Offered = Result<Value, Invalid>;

/// What became of one offered event.
#[derive(Debug)]
pub enum Outcome {
    Created { id: String, position: Position },
    Duplicate { id: String, position: Position },
    Conflict { id: String, position: Position, differences: Vec<String> },
    Invalid(Invalid),
}

impl Outcome {
    pub fn into_result(self) -> Result<(String, Position, bool), ApiError> {
        match self {
            Outcome::Created { id, position } => Ok((id, position, false)),
            Outcome::Duplicate { id, position } => Ok((id, position, true)),
            Outcome::Conflict { id, position, differences } => Err(ApiError::Conflict { id, position, differences }),
            Outcome::Invalid(invalid) => Err(ApiError::Invalid(invalid)),
        }
    }
}

/// The wire format events came in: errors are reported in its field names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Native,
    CloudEvents,
    AwsPutEvents,
}

impl Format {
    fn rename(self, invalid: Invalid) -> Invalid {
        match self {
            Format::Native => invalid,
            Format::CloudEvents => herald_core::formats::cloudevents::rename_errors(invalid),
            Format::AwsPutEvents => herald_core::formats::aws::rename_errors(invalid),
        }
    }

    /// Pointer to the `index`th event of a batch request body.
    fn batch_pointer(self, index: usize) -> String {
        match self {
            Format::AwsPutEvents => format!("/Entries/{index}"),
            _ => format!("/{index}"),
        }
    }
}

/// What a request says about its events as a whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub format: Format,
    /// The request's `Idempotency-Key`: events without an id get one derived from it.
    pub idempotency_key: Option<&'a str>,
    /// A batch request: error pointers and derived ids include each event's index.
    pub batch: bool,
}

impl Request<'_> {
    /// Envelope pointers of the `index`th event as pointers into the request
    /// body: in its format's field names, under its index in a batch (as
    /// the errors of invalid events are).
    fn pointers(&self, index: usize, pointers: Vec<String>) -> Vec<String> {
        let invalid = Invalid { errors: pointers.into_iter().map(|p| FieldError::new(p, "")).collect() };
        let invalid = self.format.rename(invalid);
        let invalid = if self.batch { invalid.under(&self.format.batch_pointer(index)) } else { invalid };
        invalid.errors.into_iter().map(|e| e.pointer).collect()
    }
}

/// Validates, identifies and appends. Invalid events are reported, valid ones
/// stored, in one durable commit; outcomes come back in the offered order.
pub async fn publish(state: &AppState, offered: Vec<Offered>, request: Request<'_>) -> Result<Vec<Outcome>, ApiError> {
    let received = Utc::now();
    let events: Vec<Result<Event, Invalid>> = offered
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let index = request.batch.then_some(i);
            let event = value.and_then(|value| {
                let draft = EventDraft::from_value(value, received).map_err(|e| request.format.rename(e))?;
                identify(state, draft, request.idempotency_key, index)
            });
            event.map_err(|e| if request.batch { e.under(&request.format.batch_pointer(i)) } else { e })
        })
        .collect();

    let valid: Vec<NewEvent> = events.iter().filter_map(|e| e.as_ref().ok()).map(NewEvent::from_event).collect();
    let mut stored = state.store.append(valid).await?.into_iter();

    let mut outcomes = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        outcomes.push(match event {
            Err(invalid) => Outcome::Invalid(invalid),
            Ok(event) => match stored.next().expect("one append outcome per valid event") {
                AppendOutcome::Appended(position) => Outcome::Created { id: event.id, position },
                AppendOutcome::Duplicate(position) => Outcome::Duplicate { id: event.id, position },
                AppendOutcome::Conflict(existing) => {
                    let differences = event.content_differences(&existing.json_value()?, 20);
                    if differences.is_empty() {
                        // Equal content under another hash: stored before numbers were
                        // compared by value, with a number written another way.
                        Outcome::Duplicate { id: event.id, position: existing.position }
                    } else {
                        let differences = request.pointers(i, differences);
                        Outcome::Conflict { id: event.id, position: existing.position, differences }
                    }
                }
            },
        });
    }
    record(&outcomes);
    Ok(outcomes)
}

/// Gives a draft its id (see [`herald_core::identity`] for the precedence).
fn identify(state: &AppState, draft: EventDraft, key: Option<&str>, index: Option<usize>) -> Result<Event, Invalid> {
    let id = match (&draft.id, key) {
        (Some(id), _) => id.clone(),
        (None, Some(key)) => identity::from_idempotency_key(&draft.source, key, index),
        (None, None) => match state.id_rule(&draft.detail_type) {
            Some(rule) => rule.derive_id(&draft)?,
            None => identity::generated(),
        },
    };
    Ok(draft.with_id(id))
}

fn record(outcomes: &[Outcome]) {
    let (mut created, mut duplicate, mut conflict, mut rejected) = (0, 0, 0, 0);
    for o in outcomes {
        match o {
            Outcome::Created { .. } => created += 1,
            Outcome::Duplicate { .. } => duplicate += 1,
            Outcome::Conflict { .. } => conflict += 1,
            Outcome::Invalid(_) => rejected += 1,
        }
    }
    for (name, n) in [("created", created), ("duplicate", duplicate), ("conflict", conflict), ("rejected", rejected)] {
        if n > 0 {
            metrics::published(name, n);
        }
    }
}

/// The value of a header that carries one value, if sent: two copies are
/// refused, since which one counts would be a guess.
pub fn sent_once<'h>(
    headers: &'h axum::http::HeaderMap,
    name: &str,
) -> Result<Option<&'h axum::http::HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::InvalidParameter { name: name.into(), message: "must be sent once".into() });
    }
    Ok(first)
}

/// Validates an `Idempotency-Key` header value.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    const NAME: &str = "Idempotency-Key";
    let invalid = |message: &str| ApiError::InvalidParameter { name: NAME.into(), message: message.into() };
    let Some(value) = sent_once(headers, NAME)? else {
        return Ok(None);
    };
    // `to_str` takes visible ASCII and tabs.
    let key = value.to_str().ok().filter(|k| !k.contains('\t')).ok_or_else(|| invalid("must be visible ASCII"))?;
    if key.is_empty() || key.len() > 256 {
        return Err(invalid("must be 1 to 256 characters"));
    }
    Ok(Some(key))
}
