//! Reads on their own connections, run on tokio's blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use herald_core::Position;
use rusqlite::{Connection, OptionalExtension, params_from_iter, types::Value as SqlValue};

use super::{classify, schema};
use crate::{ListQuery, MAX_PAGE_BYTES, Page, StoreError, StoredEvent};

/// Read connections, reused. At most [`MAX_READERS`] reads run at once (the
/// others wait their turn), so connections, threads and page caches stay
/// bounded however many requests and delivery workers read at the same time.
#[derive(Clone)]
pub struct ReadPool {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

const MAX_READERS: usize = 16;

impl ReadPool {
    pub fn new(path: PathBuf) -> Self {
        Self { path, idle: Arc::default(), permits: Arc::new(Semaphore::new(MAX_READERS)) }
    }

    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.clone();
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match pool.idle.lock().ok().and_then(|mut idle| idle.pop()) {
                Some(conn) => conn,
                None => pool.open().map_err(|e| classify(e, &pool.path))?,
            };
            let result = f(&conn).map_err(|e| classify(e, &pool.path));
            if let Ok(mut idle) = pool.idle.lock()
                && idle.len() < MAX_READERS
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        schema::configure_reader(&conn)?;
        Ok(conn)
    }
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<StoredEvent>> {
    conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?
        .query_row([id], stored_event)
        .optional()
}

pub fn at(conn: &Connection, positions: &[Position]) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE position = ?1"))?;
    let mut sorted = positions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut events = Vec::with_capacity(sorted.len());
    for position in sorted {
        if let Some(event) = stmt.query_row([position as i64], stored_event).optional()? {
            events.push(event);
        }
    }
    Ok(events)
}

/// Positions a filtered read may scan past `after` in one call. Source and
/// detail-type have no index, so this bounds the work of one request; the
/// page's `next` tells the caller where the scan stopped.
pub const SCAN_SPAN: u64 = 100_000;

pub fn list(conn: &Connection, query: &ListQuery) -> rusqlite::Result<Page> {
    let after = query.after.min(i64::MAX as u64 - SCAN_SPAN);
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > ?");
    let mut args = vec![SqlValue::Integer(after as i64)];
    for (column, value) in [("source", &query.source), ("detail_type", &query.detail_type), ("stream", &query.stream)] {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(SqlValue::Text(value.clone()));
        }
    }
    // The stream filter has an index; the others scan, so they get a bound.
    let bounded = query.stream.is_none() && (query.source.is_some() || query.detail_type.is_some());
    if bounded {
        sql.push_str(" AND position <= ?");
        args.push(SqlValue::Integer((after + SCAN_SPAN) as i64));
    }
    sql.push_str(" ORDER BY position LIMIT ?");
    args.push(SqlValue::Integer(query.limit as i64));

    // One snapshot for the page and the head, so `next` never skips a commit
    // that landed between the two reads.
    let tx = conn.unchecked_transaction()?;
    let (mut events, mut bytes) = (Vec::new(), 0);
    {
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        while bytes < MAX_PAGE_BYTES
            && let Some(row) = rows.next()?
        {
            let event = stored_event(row)?;
            bytes += event.body.len();
            events.push(event);
        }
    }
    let cut_short = bytes >= MAX_PAGE_BYTES && events.len() < query.limit;
    let filtered = query.stream.is_some() || bounded;
    let next = match events.last() {
        Some(last) if cut_short || events.len() == query.limit => last.position,
        // A filtered scan that ran out read every position up to the head (or
        // its bound), matching or not: the reader moves on to there, whichever
        // filter it used.
        _ if filtered => {
            let head: i64 =
                tx.prepare_cached("SELECT coalesce(max(position), 0) FROM events")?.query_row([], |r| r.get(0))?;
            let scanned = if bounded { (after + SCAN_SPAN).min(head as Position) } else { head as Position };
            scanned.max(query.after)
        }
        Some(last) => last.position,
        None => query.after,
    };
    tx.commit()?;
    Ok(Page { events, next, cut_short })
}

/// What [`stored_event`] reads, in its order.
pub const EVENT_COLUMNS: &str = "position, body, body_crc";

/// An event from a row of [`EVENT_COLUMNS`], its body checked against its
/// checksum: SQLite notices damage to its pages' structure, not to the bytes
/// of a value, which would otherwise be served as the event. A mismatch is
/// reported as SQLite reports damage, so it fails the request the same way.
pub fn stored_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let position = row.get::<_, i64>(0)? as Position;
    let body: String = row.get(1)?;
    match row.get::<_, Option<u32>>(2)? {
        Some(crc) if crc != body_crc(&body) => Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!("event at position {position}: its body does not match its checksum")),
        )),
        _ => Ok(StoredEvent { position, body }),
    }
}

/// The checksum stored beside each body (CRC-32, which `crc32fast` computes
/// at gigabytes per second, so every read can afford it).
pub fn body_crc(body: &str) -> u32 {
    crc32fast::hash(body.as_bytes())
}
