//! Replay: deliver a stored range of the log to a subscription again, as an
//! EventBridge archive replay does, without moving its live cursor. Matching
//! events become deliveries marked `replay` (webhooks get `herald-replay:
//! true`, pulled messages `"replay": true`).

use chrono::{DateTime, Utc};
use herald_core::Position;
use herald_core::pattern::Pattern;
use herald_store::{Delivery, ListQuery, Store, StoreError};

use super::worker::now_us;

/// One end of a replay range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Position(Position),
    /// By the events' own `time`.
    Time(DateTime<Utc>),
}

/// Events read per step.
const PAGE: usize = 1000;

/// What a replay did.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Positions scanned, from first to last.
    #[schema(value_type = u64)]
    pub from: Position,
    #[schema(value_type = u64)]
    pub to: Position,
    pub scanned: u64,
    pub matched: u64,
    /// Deliveries added (an event already owed is not added twice).
    pub enqueued: u64,
}

/// Enqueues the events of `[from, to]` (positions inclusive, times half-open
/// `[from, to)`) that match `pattern`, up to the subscription's `cursor` at
/// most: events past it are still to come live, and marking them as replays
/// would hide the live delivery. `to` defaults to the cursor. Returns `None`
/// when the subscription is gone.
pub async fn replay(
    store: &dyn Store,
    name: &str,
    pattern: &Pattern,
    cursor: Position,
    from: Bound,
    to: Option<Bound>,
) -> Result<Option<Replayed>, StoreError> {
    let head = (*store.head().borrow()).min(cursor);
    let mut after = match from {
        Bound::Position(p) => p.saturating_sub(1),
        Bound::Time(t) => store.position_before(t.timestamp_micros()).await?,
    };
    let last = match to {
        Some(Bound::Position(p)) => p.min(head),
        _ => head,
    };
    let (since, until) = (
        match from {
            Bound::Time(t) => Some(t),
            Bound::Position(_) => None,
        },
        match to {
            Some(Bound::Time(t)) => Some(t),
            _ => None,
        },
    );
    let mut report = Replayed { from: after + 1, to: last, ..Replayed::default() };
    while after < last {
        let page = store.list(ListQuery { after, limit: PAGE, ..Default::default() }).await?;
        if page.events.is_empty() {
            break;
        }
        let now = now_us();
        let mut owed = Vec::new();
        for event in page.events.iter().take_while(|e| e.position <= last) {
            report.scanned += 1;
            let value = event.json_value()?;
            let time = value["time"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            let in_time = time.is_none_or(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u));
            if !in_time || !pattern.matches(&value) {
                continue;
            }
            report.matched += 1;
            owed.push(Delivery::owed(event.position, &value, now, true));
        }
        match store.enqueue(name, owed).await? {
            Some(added) => report.enqueued += added,
            None => return Ok(None),
        }
        after = page.next;
    }
    Ok(Some(report))
}
