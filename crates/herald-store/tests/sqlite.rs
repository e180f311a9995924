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
        SqliteStore::open(dir.path(), SqliteConfig { queue_capacity: 1, max_group_events: 1 }).unwrap(),
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
    let mut corrupt_seen = false;
    for i in (0..2000).step_by(50) {
        match store.get(&format!("event-{i:05}")).await {
            Err(StoreError::Corrupt { path: p, .. }) => {
                assert_eq!(p, path);
                corrupt_seen = true;
            }
            Ok(Some(e)) => assert!(e.body.contains(&format!("event-{i:05}")), "served data must be the real data"),
            Ok(None) | Err(_) => {}
        }
    }
    assert!(corrupt_seen, "reading damaged pages must report the damaged file");
}

/// Overwrites the middle of the file (past the header and schema pages) with garbage.
fn corrupt_pages(path: &std::path::Path) {
    use std::io::{Seek, SeekFrom, Write};
    let len = std::fs::metadata(path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let page = 4096;
    let mut offset = 4 * page;
    while offset + page < len {
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&[0xA5; 64]).unwrap();
        offset += 3 * page;
    }
    f.sync_all().unwrap();
}
