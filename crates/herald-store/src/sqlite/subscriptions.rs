//! Subscriptions, their deliveries, attempts and dead letters in SQLite.
//! Writes take the writer's transaction; reads take a reader connection.

use herald_core::Position;
use herald_core::subscription::{RetryPolicy, SubscriptionState};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::StoredEvent;
use crate::subscriptions::{
    ATTEMPTS_KEPT, Attempt, AttemptQuery, DeadLetter, Delivery, LEASE_BYTES, Settlement, SubscriptionRecord,
};

/// Creates the subscription, or replaces its declaration (keeping its cursor,
/// state and history). Returns whether it was created.
pub fn put(tx: &Transaction<'_>, name: &str, spec: &str, start: Position, now_us: i64) -> rusqlite::Result<bool> {
    let updated = tx
        .prepare_cached("UPDATE subscriptions SET spec = ?2, updated_us = ?3 WHERE name = ?1")?
        .execute(params![name, spec, now_us])?;
    if updated == 1 {
        return Ok(false);
    }
    tx.prepare_cached(
        "INSERT INTO subscriptions (name, spec, state, cursor, created_us, updated_us) VALUES (?1, ?2, 'active', ?3, ?4, ?4)",
    )?
    .execute(params![name, spec, start as i64, now_us])?;
    Ok(true)
}

const SELECT_SUBSCRIPTION: &str =
    "SELECT name, spec, state, cursor, created_us, updated_us, delivered, failed, last_error,
        (SELECT count(*) FROM deliveries d WHERE d.subscription = s.name),
        (SELECT count(*) FROM dead_letters l WHERE l.subscription = s.name)
    FROM subscriptions s";

pub fn get(conn: &Connection, name: &str) -> rusqlite::Result<Option<SubscriptionRecord>> {
    conn.prepare_cached(&format!("{SELECT_SUBSCRIPTION} WHERE name = ?1"))?.query_row([name], record).optional()
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<SubscriptionRecord>> {
    conn.prepare_cached(&format!("{SELECT_SUBSCRIPTION} ORDER BY name"))?.query_map([], record)?.collect()
}

fn record(row: &Row<'_>) -> rusqlite::Result<SubscriptionRecord> {
    let state: String = row.get(2)?;
    Ok(SubscriptionRecord {
        name: row.get(0)?,
        spec: row.get(1)?,
        state: SubscriptionState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, format!("state {state}").into())
        })?,
        cursor: row.get::<_, i64>(3)? as Position,
        created_us: row.get(4)?,
        updated_us: row.get(5)?,
        delivered: row.get::<_, i64>(6)? as u64,
        failed: row.get::<_, i64>(7)? as u64,
        last_error: row.get(8)?,
        pending: row.get::<_, i64>(9)? as u64,
        dead_letters: row.get::<_, i64>(10)? as u64,
    })
}

/// Which incarnation of the subscription this is (its `created_us`), if it exists.
pub fn generation(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached("SELECT created_us FROM subscriptions WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

/// Deletes the subscription with everything it owed and recorded.
pub fn delete(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<bool> {
    for table in ["deliveries", "attempts", "dead_letters"] {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE subscription = ?1"))?.execute([name])?;
    }
    Ok(tx.prepare_cached("DELETE FROM subscriptions WHERE name = ?1")?.execute([name])? > 0)
}

/// Sets the state, and the last error when one is given. Returns whether the
/// subscription exists.
pub fn set_state(
    tx: &Transaction<'_>,
    name: &str,
    state: SubscriptionState,
    last_error: Option<&str>,
    now_us: i64,
) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE subscriptions SET state = ?2, last_error = coalesce(?3, last_error), updated_us = ?4 WHERE name = ?1",
        )?
        .execute(params![name, state.as_str(), last_error, now_us])?
        > 0)
}

/// Records deliveries for the matching events in `(from, to]` and moves the
/// cursor to `to`, if it is still at `from` (a deleted or concurrently moved
/// subscription changes nothing). Returns whether it moved.
pub fn fan_out(
    tx: &Transaction<'_>,
    name: &str,
    generation: i64,
    from: Position,
    to: Position,
    deliveries: &[Delivery],
) -> rusqlite::Result<bool> {
    let moved = tx
        .prepare_cached("UPDATE subscriptions SET cursor = ?3 WHERE name = ?1 AND cursor = ?2 AND created_us = ?4")?
        .execute(params![name, from as i64, to as i64, generation])?;
    if moved == 0 {
        return Ok(false);
    }
    insert_deliveries(tx, name, deliveries)?;
    Ok(true)
}

/// Adds deliveries (a replay) without moving the cursor; an event already
/// owed is not added twice. Returns how many were added, or `None` when the
/// subscription does not exist.
pub fn enqueue(tx: &Transaction<'_>, name: &str, deliveries: &[Delivery]) -> rusqlite::Result<Option<u64>> {
    let exists = tx.prepare_cached("SELECT 1 FROM subscriptions WHERE name = ?1")?.exists([name])?;
    if !exists {
        return Ok(None);
    }
    insert_deliveries(tx, name, deliveries).map(Some)
}

fn insert_deliveries(tx: &Transaction<'_>, name: &str, deliveries: &[Delivery]) -> rusqlite::Result<u64> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO deliveries (subscription, position, event_id, stream, attempts, due_us, first_due_us, replay)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
    )?;
    let mut added = 0;
    for d in deliveries {
        added += insert.execute(params![
            name,
            d.position as i64,
            d.event_id,
            d.stream,
            d.attempts,
            d.due_us,
            d.first_due_us,
            d.replay
        ])? as u64;
    }
    Ok(added)
}

/// Deliveries due at `now_us`, earliest first. With `per_stream`, only the
/// oldest owed delivery of each stream is eligible: a later event of a stream
/// waits behind an earlier one, also while that one waits for a retry.
pub fn due(
    conn: &Connection,
    name: &str,
    now_us: i64,
    limit: usize,
    per_stream: bool,
) -> rusqlite::Result<Vec<Delivery>> {
    let sql = if per_stream {
        "SELECT position, event_id, stream, attempts, due_us, first_due_us, replay FROM deliveries d
         WHERE subscription = ?1 AND due_us <= ?2
           AND (stream IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries e
                WHERE e.subscription = d.subscription AND e.stream = d.stream AND e.position < d.position))
         ORDER BY due_us, position LIMIT ?3"
    } else {
        "SELECT position, event_id, stream, attempts, due_us, first_due_us, replay FROM deliveries
         WHERE subscription = ?1 AND due_us <= ?2 ORDER BY due_us, position LIMIT ?3"
    };
    conn.prepare_cached(sql)?.query_map(params![name, now_us, limit as i64], delivery)?.collect()
}

/// The earliest due time after `after_us` of an owed delivery, if any.
pub fn next_due(conn: &Connection, name: &str, after_us: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT min(due_us) FROM deliveries WHERE subscription = ?1 AND due_us > ?2")?
        .query_row(params![name, after_us], |r| r.get(0))
}

fn delivery(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        position: row.get::<_, i64>(0)? as Position,
        event_id: row.get(1)?,
        stream: row.get(2)?,
        attempts: row.get(3)?,
        due_us: row.get(4)?,
        first_due_us: row.get(5)?,
        replay: row.get(6)?,
    })
}

/// Records attempts and what became of their deliveries. A delivery that is
/// no longer owed (its subscription was deleted or purged meanwhile) is
/// ignored.
pub fn settle(tx: &Transaction<'_>, name: &str, settled: &[(Attempt, Settlement)]) -> rusqlite::Result<()> {
    let mut record = tx.prepare_cached(
        "INSERT INTO attempts (subscription, event_id, position, attempt, time_us, outcome, status, latency_us, error, response, replay)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    // Attempts this subscription has recorded so far (each adds one to
    // delivered or failed): pruning runs whenever that count passes a multiple of 256.
    let recorded_before: i64 = tx
        .prepare_cached("SELECT delivered + failed FROM subscriptions WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let mut recorded = 0;
    for (attempt, settlement) in settled {
        let position = attempt.position as i64;
        let owed = tx
            .prepare_cached("SELECT stream FROM deliveries WHERE subscription = ?1 AND position = ?2")?
            .query_row(params![name, position], |r| r.get::<_, Option<String>>(0))
            .optional()?;
        let Some(stream) = owed else { continue };
        record.execute(params![
            name,
            attempt.event_id,
            position,
            attempt.attempt,
            attempt.time_us,
            attempt.outcome,
            attempt.status,
            attempt.latency_us,
            attempt.error,
            attempt.response,
            attempt.replay
        ])?;
        recorded += 1;
        let counters = match settlement {
            Settlement::Delivered => {
                remove_delivery(tx, name, position)?;
                "delivered = delivered + 1"
            }
            Settlement::Retry { due_us } => {
                tx.prepare_cached(
                    "UPDATE deliveries SET attempts = ?3, due_us = ?4, lease = NULL WHERE subscription = ?1 AND position = ?2",
                )?
                .execute(params![name, position, attempt.attempt, due_us])?;
                "failed = failed + 1"
            }
            Settlement::Dead { reason } => {
                remove_delivery(tx, name, position)?;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO dead_letters (subscription, position, event_id, stream, attempts, reason, time_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![name, position, attempt.event_id, stream, attempt.attempt, reason, attempt.time_us])?;
                "failed = failed + 1"
            }
            Settlement::Gone => {
                tx.prepare_cached("UPDATE deliveries SET attempts = ?3 WHERE subscription = ?1 AND position = ?2")?
                    .execute(params![name, position, attempt.attempt])?;
                "failed = failed + 1, state = 'disabled'"
            }
        };
        tx.prepare_cached(&format!(
            "UPDATE subscriptions SET {counters}, last_error = coalesce(?2, last_error) WHERE name = ?1"
        ))?
        .execute(params![name, attempt.error])?;
    }
    // Pruning walks ATTEMPTS_KEPT index entries, so do it now and then, not every time.
    if recorded_before / 256 != (recorded_before + recorded) / 256 {
        tx.prepare_cached(
            "DELETE FROM attempts WHERE subscription = ?1 AND seq <= (SELECT seq FROM attempts
                WHERE subscription = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![name, ATTEMPTS_KEPT as i64])?;
    }
    Ok(())
}

fn remove_delivery(tx: &Transaction<'_>, name: &str, position: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM deliveries WHERE subscription = ?1 AND position = ?2")?
        .execute(params![name, position])?;
    Ok(())
}

/// Leases up to `max` due deliveries to a pull consumer until
/// `now_us + lease_us`: each counts as an attempt, and comes back when the
/// lease runs out unacknowledged. Deliveries that already had `max_attempts`,
/// or were first due longer than `max_age` ago, go to the dead letters
/// instead, as a webhook's do.
#[allow(clippy::too_many_arguments)]
pub fn lease(
    tx: &Transaction<'_>,
    name: &str,
    lease: &str,
    now_us: i64,
    lease_us: i64,
    max: usize,
    per_stream: bool,
    retry: RetryPolicy,
) -> rusqlite::Result<Vec<(Delivery, StoredEvent)>> {
    let (mut leased, mut expired, mut bytes) = (Vec::new(), Vec::new(), 0);
    for mut d in due(tx, name, now_us, max, per_stream)? {
        let reason = if d.attempts >= retry.max_attempts {
            Some(format!("not acknowledged after {} deliveries", d.attempts))
        } else if retry.past_max_age(d.first_due_us, now_us) {
            Some(format!("max_age of {}s reached after {} deliveries", retry.max_age.as_secs(), d.attempts))
        } else {
            None
        };
        if let Some(reason) = reason {
            let attempt = Attempt::of(&d, d.attempts, now_us, "dead", Some(reason.clone()));
            expired.push((attempt, Settlement::Dead { reason }));
            continue;
        }
        let Some(event) = super::reader::at(tx, &[d.position])?.pop() else {
            continue; // not in the log (cannot happen while events are never deleted)
        };
        if !leased.is_empty() && bytes + event.body.len() > LEASE_BYTES {
            break;
        }
        bytes += event.body.len();
        d.attempts += 1;
        d.due_us = now_us + lease_us;
        tx.prepare_cached(
            "UPDATE deliveries SET attempts = ?3, due_us = ?4, lease = ?5 WHERE subscription = ?1 AND position = ?2",
        )?
        .execute(params![name, d.position as i64, d.attempts, d.due_us, lease])?;
        leased.push((d, event));
    }
    settle(tx, name, &expired)?;
    Ok(leased)
}

/// The delivery at `position` if `lease` still holds it.
pub fn leased(tx: &Transaction<'_>, name: &str, position: Position, lease: &str) -> rusqlite::Result<Option<Delivery>> {
    tx.prepare_cached(
        "SELECT position, event_id, stream, attempts, due_us, first_due_us, replay FROM deliveries
         WHERE subscription = ?1 AND position = ?2 AND lease = ?3",
    )?
    .query_row(params![name, position as i64, lease], delivery)
    .optional()
}

/// Attempts, newest first.
pub fn attempts(conn: &Connection, name: &str, query: &AttemptQuery) -> rusqlite::Result<Vec<Attempt>> {
    conn.prepare_cached(
        "SELECT event_id, position, attempt, time_us, outcome, status, latency_us, error, response, replay
         FROM attempts WHERE subscription = ?1 AND (?2 IS NULL OR event_id = ?2) AND (?3 IS NULL OR outcome = ?3)
         ORDER BY seq DESC LIMIT ?4",
    )?
    .query_map(params![name, query.event_id, query.outcome, query.limit as i64], |r| {
        Ok(Attempt {
            event_id: r.get(0)?,
            position: r.get::<_, i64>(1)? as Position,
            attempt: r.get(2)?,
            time_us: r.get(3)?,
            outcome: r.get(4)?,
            status: r.get(5)?,
            latency_us: r.get(6)?,
            error: r.get(7)?,
            response: r.get(8)?,
            replay: r.get(9)?,
        })
    })?
    .collect()
}

/// Dead letters in position order, after `after`.
pub fn dead_letters(conn: &Connection, name: &str, after: Position, limit: usize) -> rusqlite::Result<Vec<DeadLetter>> {
    conn.prepare_cached(
        "SELECT position, event_id, stream, attempts, reason, time_us FROM dead_letters
         WHERE subscription = ?1 AND position > ?2 ORDER BY position LIMIT ?3",
    )?
    .query_map(params![name, after as i64, limit as i64], |r| {
        Ok(DeadLetter {
            position: r.get::<_, i64>(0)? as Position,
            event_id: r.get(1)?,
            stream: r.get(2)?,
            attempts: r.get(3)?,
            reason: r.get(4)?,
            time_us: r.get(5)?,
        })
    })?
    .collect()
}

/// Moves dead letters (all, or those with these event ids) back to the owed
/// deliveries, due now with a fresh attempt count. Returns how many moved.
pub fn redrive(tx: &Transaction<'_>, name: &str, ids: Option<&[String]>, now_us: i64) -> rusqlite::Result<u64> {
    const MOVE: &str =
        "INSERT INTO deliveries (subscription, position, event_id, stream, attempts, due_us, first_due_us, replay)
        SELECT subscription, position, event_id, stream, 0, ?2, ?2, 0 FROM dead_letters WHERE subscription = ?1";
    match ids {
        None => tx.prepare_cached(&format!("{MOVE} ON CONFLICT DO NOTHING"))?.execute(params![name, now_us])?,
        Some(ids) => {
            let mut one = tx.prepare_cached(&format!("{MOVE} AND event_id = ?3 ON CONFLICT DO NOTHING"))?;
            ids.iter().map(|id| one.execute(params![name, now_us, id])).sum::<rusqlite::Result<usize>>()?
        }
    };
    purge(tx, name, ids)
}

/// Deletes dead letters (all, or those with these event ids). Returns how many.
pub fn purge(tx: &Transaction<'_>, name: &str, ids: Option<&[String]>) -> rusqlite::Result<u64> {
    let deleted = match ids {
        None => tx.prepare_cached("DELETE FROM dead_letters WHERE subscription = ?1")?.execute([name])?,
        Some(ids) => ids
            .iter()
            .map(|id| {
                tx.prepare_cached("DELETE FROM dead_letters WHERE subscription = ?1 AND event_id = ?2")?
                    .execute(params![name, id])
            })
            .sum::<rusqlite::Result<usize>>()?,
    };
    Ok(deleted as u64)
}
