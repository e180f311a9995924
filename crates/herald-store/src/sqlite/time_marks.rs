//! Finding the first event at or after a time without scanning the log.
//!
//! An event's `time` is the producer's and need not grow with its position,
//! so "the first position whose time is >= T" has no index to use: it
//! scanned the log from its start, seconds per million events. But the
//! running maximum of `time` over the log does grow with position, and the
//! first position where it reaches T is exactly that first event. The writer
//! records the running maximum in the commit that reaches a multiple of
//! [`EVERY`] positions (a row per ~1,000 events), so a lookup is one index
//! probe and a scan of one span: fewer than [`EVERY`] positions plus a group.
//!
//! Marks start at the `base` row written by the migration that added them: a
//! store older than that has no marks for its earlier positions, which are
//! scanned as before, from position 1 to the first match; a time later than
//! all of them scans them all, on every lookup.

use std::path::Path;

use herald_core::Position;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::classify;
use crate::StoreError;

/// A mark goes into each commit that reaches a multiple of this position.
pub const EVERY: Position = 1024;

/// The writer's side: the running maximum of `time` since the base mark.
#[derive(Clone, Copy)]
pub struct RunningMax {
    max_time_us: i64,
}

impl RunningMax {
    /// Restores the maximum from the last mark and the events after it (fewer
    /// than [`EVERY`]): start-up stays flat. Should those events be damaged
    /// (a damaged file still serves what it can), the maximum is taken as the
    /// largest time there is, from here on: lookups then scan from here to
    /// the head, but never miss an event.
    pub fn load(conn: &Connection, path: &Path) -> Result<Self, StoreError> {
        let last_mark = "SELECT position, max_time_us FROM time_marks ORDER BY position DESC LIMIT 1";
        let (position, mark): (i64, i64) =
            conn.query_row(last_mark, [], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| classify(e, path))?;
        let since = "SELECT max(time_us) FROM events WHERE position > ?1";
        let since: Option<i64> = match conn.query_row(since, [position], |r| r.get(0)) {
            Ok(since) => since,
            Err(e) => match classify(e, path) {
                StoreError::Corrupt { .. } => Some(i64::MAX),
                other => return Err(other),
            },
        };
        Ok(Self { max_time_us: since.map_or(mark, |t| t.max(mark)) })
    }

    /// Notes the time of an event just appended.
    pub fn note(&mut self, time_us: i64) {
        self.max_time_us = self.max_time_us.max(time_us);
    }

    /// Writes a mark if this group's positions (`first..=last`) reached a
    /// multiple of [`EVERY`].
    pub fn mark(&self, tx: &Transaction<'_>, first: Position, last: Position) -> rusqlite::Result<()> {
        if last < first || last / EVERY == (first - 1) / EVERY {
            return Ok(());
        }
        tx.prepare_cached("INSERT INTO time_marks (position, max_time_us) VALUES (?1, ?2)")?
            .execute(params![last as i64, self.max_time_us])?;
        Ok(())
    }
}

/// The position just before the first event whose time is >= `time_us`, or
/// the head if there is none.
pub fn position_before(conn: &Connection, time_us: i64) -> rusqlite::Result<Position> {
    // One snapshot for every statement: an event committed between two of
    // them could otherwise be counted in the head but missed by the scan.
    let tx = conn.unchecked_transaction()?;
    let position = match first_at_or_after(&tx, time_us)? {
        Some(p) => p - 1,
        None => tx.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| r.get(0))?,
    };
    Ok(position as Position)
}

fn first_at_or_after(conn: &Connection, time_us: i64) -> rusqlite::Result<Option<i64>> {
    let first_in = |after: i64, up_to: i64| -> rusqlite::Result<Option<i64>> {
        conn.prepare_cached(
            "SELECT min(position) FROM events WHERE position > ?1 AND position <= ?2 AND time_us >= ?3",
        )?
        .query_row(params![after, up_to, time_us], |r| r.get(0))
    };
    // Before the base mark: no marks, scan (stops at the first match).
    let base: i64 = conn.query_row("SELECT min(position) FROM time_marks", [], |r| r.get(0))?;
    if base > 0
        && let Some(p) = first_in(0, base)?
    {
        return Ok(Some(p));
    }
    // The first mark whose running maximum reached the time: the event is in
    // the span that mark closes. Marks grow in both columns.
    let mark: Option<i64> = conn
        .prepare_cached(
            "SELECT position FROM time_marks WHERE max_time_us >= ?1 ORDER BY max_time_us, position LIMIT 1",
        )?
        .query_row([time_us], |r| r.get(0))
        .optional()?;
    let previous = |before: i64| -> rusqlite::Result<i64> {
        // Nothing before the base mark, which only `time_us` = i64::MIN finds.
        conn.prepare_cached("SELECT coalesce(max(position), 0) FROM time_marks WHERE position < ?1")?
            .query_row([before], |r| r.get(0))
    };
    match mark {
        // Past the span only if a maximum was taken larger than it was (see `load`).
        Some(mark) => match first_in(previous(mark)?, mark)? {
            Some(p) => Ok(Some(p)),
            None => first_in(mark, i64::MAX),
        },
        // Not reached by any mark: only the events after the last one can be.
        None => first_in(previous(i64::MAX)?, i64::MAX),
    }
}
