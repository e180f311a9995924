//! The embedded SQLite backend: the store contract, plus what only a file on
//! disk can show (reopening, integrity checks, damaged files).

use herald_store::sqlite::{SqliteConfig, SqliteStore, check};
use herald_store::{AppendOutcome, NewEvent, Store, StoreError};

/// A store in a fresh temporary directory; the directory lives as long as the test process.
async fn fresh() -> SqliteStore {
    let dir = tempfile::tempdir().unwrap().keep();
    SqliteStore::open(&dir, SqliteConfig::default()).unwrap()
}

herald_store::store_contract_tests!(fresh());

fn event(id: &str) -> NewEvent {
    NewEvent {
        id: id.into(),
        content_hash: [7; 32],
        source: "s".into(),
        detail_type: "t".into(),
        stream: None,
        time_micros: 0,
        body: format!(r#"{{"id":"{id}","detail":{{}}}}"#),
    }
}

#[tokio::test]
async fn reopening_keeps_events_positions_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    store.append(vec![event("a"), event("b")]).await.unwrap();
    store.close().await;

    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    assert_eq!(*store.head().borrow(), 2);
    assert_eq!(
        store.append(vec![event("a"), event("c")]).await.unwrap(),
        vec![AppendOutcome::Duplicate(1), AppendOutcome::Appended(3)]
    );
    store.close().await;
    assert!(check(dir.path()).unwrap().is_empty(), "a healthy file passes the check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pushes_back_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        SqliteStore::open(
            dir.path(),
            SqliteConfig { queue_capacity: 1, max_group_events: 1, ..SqliteConfig::default() },
        )
        .unwrap(),
    );
    // All tasks append at the same moment, faster than one commit takes.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (store, start) = (store.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store.append(vec![event(&format!("e{i}"))]).await
        }));
    }
    let mut overloaded = 0;
    let mut stored = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => stored += 1,
            Err(StoreError::Overloaded) => overloaded += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(overloaded > 0, "200 simultaneous appends into a queue of 1 must be refused in part");
    assert_eq!(stored + overloaded, 200);
    assert_eq!(*store.head().borrow(), stored as u64, "exactly the accepted appends are stored");
}

#[tokio::test]
async fn a_damaged_file_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    let events: Vec<NewEvent> = (0..2000).map(|i| event(&format!("event-{i:05}"))).collect();
    store.append(events).await.unwrap();
    store.close().await;
    drop(store);

    let path = dir.path().join(herald_store::sqlite::DB_FILE);
    corrupt_pages(&path);
    let problems = check(dir.path());
    assert!(
        matches!(&problems, Err(StoreError::Corrupt { .. })) || !problems.as_ref().unwrap().is_empty(),
        "{problems:?}"
    );

    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    let (mut corrupt_seen, mut served) = (false, 0);
    for i in (0..2000).step_by(50) {
        match store.get(&format!("event-{i:05}")).await {
            Err(StoreError::Corrupt { path: p, .. }) => {
                assert_eq!(p, path);
                corrupt_seen = true;
            }
            Ok(Some(e)) => {
                assert!(e.body.contains(&format!("event-{i:05}")), "served data must be the real data");
                served += 1;
            }
            Ok(None) | Err(_) => {}
        }
    }
    assert!(corrupt_seen, "reading damaged pages must report the damaged file");
    assert!(served > 0, "events on undamaged pages are still served");
}

/// The page size a database file records in its header (bytes 16-17, big-endian).
fn page_size_of(path: &std::path::Path) -> u64 {
    let header = std::fs::read(path).unwrap();
    u64::from(u16::from_be_bytes([header[16], header[17]]))
}

/// Overwrites the start of every third page after the schema's root pages
/// (those created first), so some lookups meet damage and others do not.
fn corrupt_pages(path: &std::path::Path) {
    use std::io::{Seek, SeekFrom, Write};
    let last_root: i64 = rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT max(rootpage) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    let len = std::fs::metadata(path).unwrap().len();
    let page = page_size_of(path);
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    // Page n (from 1) starts at (n - 1) * page.
    let mut offset = (last_root.unsigned_abs() + 1) * page;
    while offset + page < len {
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&[0xA5; 64]).unwrap();
        offset += 3 * page;
    }
    f.sync_all().unwrap();
}

#[tokio::test]
async fn the_page_size_is_chosen_when_the_file_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(herald_store::sqlite::DB_FILE);
    let small = SqliteConfig { page_size: 4096, ..SqliteConfig::default() };
    let store = SqliteStore::open(dir.path(), small).unwrap();
    store.append(vec![event("a")]).await.unwrap();
    store.close().await;
    assert_eq!(page_size_of(&path), 4096);

    // Opened again with the default: the existing file keeps its pages and events.
    assert_ne!(SqliteConfig::default().page_size, 4096);
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    assert_eq!(
        store.append(vec![event("a"), event("b")]).await.unwrap(),
        vec![AppendOutcome::Duplicate(1), AppendOutcome::Appended(2)]
    );
    store.close().await;
    assert_eq!(page_size_of(&path), 4096);
    assert!(check(dir.path()).unwrap().is_empty());

    let fresh_dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(fresh_dir.path(), SqliteConfig::default()).unwrap();
    store.append(vec![event("a")]).await.unwrap();
    store.close().await;
    let created = page_size_of(&fresh_dir.path().join(herald_store::sqlite::DB_FILE));
    assert_eq!(created, u64::from(SqliteConfig::default().page_size));
}

/// An event whose body fills about one page of the checkpoint test's file,
/// so commits add WAL frames fast.
fn page_sized_event(i: usize) -> NewEvent {
    let mut e = event(&format!("big{i}"));
    e.body = format!(r#"{{"id":"big{i}","detail":{{"pad":"{}"}}}}"#, "x".repeat(16_000));
    e
}

/// Events in the database file alone, without its WAL: what checkpoints have copied.
fn events_in_database_file(dir: &std::path::Path) -> i64 {
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join(herald_store::sqlite::DB_FILE), copy.path().join("alone.db")).unwrap();
    let conn = rusqlite::Connection::open(copy.path().join("alone.db")).unwrap();
    conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap_or(0)
}

#[tokio::test]
async fn checkpoints_copy_the_wal_in_the_background_and_keep_it_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let page = 16 * 1024;
    let created = SqliteStore::open(dir.path(), SqliteConfig { page_size: page, ..SqliteConfig::default() }).unwrap();
    created.close().await;
    // Reopened with another page size configured: the thresholds must follow
    // the file's own (with 4 KiB they would be four times as many frames).
    let config = SqliteConfig { page_size: 4096, checkpoint_bytes: 50 * u64::from(page), ..SqliteConfig::default() };
    let store = SqliteStore::open(dir.path(), config).unwrap();
    let wal = dir.path().join(format!("{}-wal", herald_store::sqlite::DB_FILE));

    // ~150 frames: past the checkpoint threshold, below the writer's backstop
    // (4 x 50), so only the checkpoint thread can copy them.
    for i in 0..10 {
        store.append((i * 10..i * 10 + 10).map(page_sized_event).collect()).await.unwrap();
    }
    let mut copied = 0;
    for _ in 0..500 {
        copied = events_in_database_file(dir.path());
        if copied > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(copied > 0, "the checkpoint thread copies committed events into the database file");

    // ~3,000 frames, back to back: the WAL restarts instead of growing with them.
    let mut largest_wal = 0;
    for i in 10..300 {
        store.append((i * 10..i * 10 + 10).map(page_sized_event).collect()).await.unwrap();
        largest_wal = largest_wal.max(std::fs::metadata(&wal).unwrap().len());
    }
    let bound = 2 * 4 * 50 * u64::from(page) + 64 * 1024;
    assert!(largest_wal <= bound, "the WAL grew to {largest_wal} bytes, more than {bound}");
    store.close().await;
    assert!(check(dir.path()).unwrap().is_empty(), "checkpoints leave a healthy file");
}
