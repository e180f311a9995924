//! `herald check`: the full check of a data directory, with the server
//! stopped.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::lock::DirLock;
use super::reader::{EVENT_COLUMNS, stored_event};
use super::{DB_FILE, classify, refuse_damaged_wal};
use crate::StoreError;

/// Problems beyond this many are counted, not listed.
const LISTED: usize = 100;

/// Checks the WAL's frames, SQLite's structure (`PRAGMA integrity_check`),
/// that the file is a Herald store, and every stored event: its body
/// against its checksum, and its id against the id index's column. Returns
/// the problems found; empty means healthy.
///
/// Holds the directory's lock, so a store in use is refused, and opens the
/// database read-only, so it changes nothing: a read-write connection would
/// checkpoint the WAL into the database and delete it.
pub fn check(data_dir: &Path) -> Result<Vec<String>, StoreError> {
    let path = data_dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::NotAStore { path, detail: "there is no database file".into() });
    }
    let _lock = DirLock::take(data_dir)?;
    match refuse_damaged_wal(&path) {
        Ok(()) => {}
        Err(StoreError::Corrupt { detail, .. }) => return Ok(vec![detail]),
        Err(other) => return Err(other),
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| classify(e, &path))?;
    let problems = structure(&conn).map_err(|e| classify(e, &path))?;
    if !problems.is_empty() {
        return Ok(problems);
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| classify(e, &path))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'events'", [], |r| r.get(0))
        .map_err(|e| classify(e, &path))?;
    if version == 0 || tables == 0 {
        return Ok(vec!["not a Herald store: the database holds no Herald tables".into()]);
    }
    events(&conn).map_err(|e| classify(e, &path))
}

fn structure(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.filter(|row| row.as_ref().map_or(true, |row| row != "ok")).collect()
}

/// Every stored event, in position order. Events stored before bodies had
/// checksums are checked for a body that parses and names the row's id.
fn events(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut found = 0;
    let mut note = |problem: String| {
        found += 1;
        if problems.len() < LISTED {
            problems.push(problem);
        }
    };
    // A store no server has opened since checksums came has no such column
    // (check does not migrate: it changes nothing).
    let has_crc: bool =
        conn.query_row("SELECT count(*) > 0 FROM pragma_table_info('events') WHERE name = 'body_crc'", [], |r| {
            r.get(0)
        })?;
    let columns = if has_crc { EVENT_COLUMNS } else { "position, body, NULL" };
    let mut stmt = conn.prepare(&format!("SELECT {columns}, id FROM events ORDER BY position"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(3)?;
        let event = match stored_event(row) {
            Ok(event) => event,
            Err(e) => {
                note(e.to_string());
                continue;
            }
        };
        let named = serde_json::from_str::<serde_json::Value>(&event.body)
            .ok()
            .and_then(|body| body.get("id").and_then(|v| v.as_str()).map(|named| named == id));
        if named != Some(true) {
            note(format!("event at position {}: its body does not name its id {id:?}", event.position));
        }
    }
    if found > problems.len() {
        problems.push(format!("... {} more problems", found - problems.len()));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema::MIGRATIONS;

    #[test]
    fn a_store_from_before_checksums_is_checked_without_changing_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        for (i, migration) in MIGRATIONS[..3].iter().enumerate() {
            conn.execute_batch(migration).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64).unwrap();
        }
        let insert = "INSERT INTO events (position, id, content_hash, source, detail_type, time_us, body)
                      VALUES (?1, ?2, zeroblob(32), 's', 't', 0, ?3)";
        conn.execute(insert, rusqlite::params![1, "a", r#"{"id":"a"}"#]).unwrap();
        conn.execute(insert, rusqlite::params![2, "b", r#"{"id":"not-b"}"#]).unwrap();
        drop(conn);

        let problems = check(dir.path()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("event at position 2"), "{problems:?}");
        let version: i64 = Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3, "not migrated");
    }
}
