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

/// Appends 200 single events at the same moment (faster than one commit
/// takes); returns how many were stored and how many refused as overloaded.
async fn append_200_at_once(store: &std::sync::Arc<SqliteStore>) -> (u64, u64) {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (store, start) = (store.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store.append(vec![event(&format!("e{i:03}"))]).await
        }));
    }
    let (mut stored, mut overloaded) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => stored += 1,
            Err(StoreError::Overloaded) => overloaded += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    (stored, overloaded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pushes_back_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig { queue_capacity: 1, max_group_events: 1, ..SqliteConfig::default() };
    let store = std::sync::Arc::new(SqliteStore::open(dir.path(), config).unwrap());
    let (stored, overloaded) = append_200_at_once(&store).await;
    assert!(overloaded > 0, "200 simultaneous appends into a queue of 1 must be refused in part");
    assert_eq!(stored + overloaded, 200);
    assert_eq!(*store.head().borrow(), stored, "exactly the accepted appends are stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded_in_bytes_too() {
    let dir = tempfile::tempdir().unwrap();
    let one = event("sizing").size();
    let config = SqliteConfig { queue_bytes: 3 * one, max_group_events: 1, ..SqliteConfig::default() };
    let store = std::sync::Arc::new(SqliteStore::open(dir.path(), config).unwrap());
    // An append larger than the whole budget is taken alone.
    let big: Vec<NewEvent> = (0..10).map(|i| event(&format!("big-{i}"))).collect();
    assert_eq!(store.append(big).await.unwrap().len(), 10);

    // In a queue of 4,096 jobs but 3 events' bytes.
    let (stored, overloaded) = append_200_at_once(&store).await;
    assert!(overloaded > 0, "200 simultaneous appends into 3 events' bytes must be refused in part");
    assert_eq!(*store.head().borrow(), 10 + stored, "exactly the accepted appends are stored");
    // Every share came back.
    let again: Vec<NewEvent> = (0..3).map(|i| event(&format!("again-{i}"))).collect();
    assert_eq!(store.append(again).await.unwrap().len(), 3);
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

/// Event times that mostly grow with position but jump back and ahead, as
/// producers' own clocks and late webhooks make them.
fn wandering_times(n: usize, seed: u64) -> Vec<i64> {
    let mut state = seed;
    let mut clock = 1_000_000i64;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let roll = (state >> 33) % 100;
            clock += 10;
            match roll {
                0..=4 => clock - 50_000 + (roll as i64) * 1_000, // late by far
                5 => clock + 20_000,                             // ahead of its time
                _ => clock - (roll as i64 % 7) * 10,             // a little out of order
            }
        })
        .collect()
}

/// Appends events with these times, 300 per commit, from position `first`.
async fn append_at_times(store: &SqliteStore, first: usize, times: &[i64]) {
    for (chunk_index, chunk) in times.chunks(300).enumerate() {
        let events = chunk.iter().enumerate().map(|(i, &t)| {
            let mut e = event(&format!("e{}", first + chunk_index * 300 + i));
            e.time_micros = t;
            e
        });
        store.append(events.collect()).await.unwrap();
    }
}

/// Every time that matters (each event's, one either side, the extremes)
/// against the answer of a scan over `times` (position = index + 1).
async fn assert_positions_before_agree_with_a_scan(store: &SqliteStore, times: &[i64]) {
    let mut probes: Vec<i64> = times.iter().flat_map(|&t| [t - 1, t, t + 1]).collect();
    probes.extend([i64::MIN, 0, i64::MAX]);
    probes.sort_unstable();
    probes.dedup();
    for t in probes {
        let expected = times.iter().position(|&time| time >= t).unwrap_or(times.len()) as u64;
        assert_eq!(store.position_before(t).await.unwrap(), expected, "first event at or after {t}");
    }
}

/// Appends events at `times` up to `restart_at`, reopens the store after
/// `between` has had the file to itself, appends the rest, and checks every
/// lookup by time against a scan.
async fn lookups_by_time_across_a_restart(
    times: &[i64],
    restart_at: usize,
    between: impl FnOnce(&rusqlite::Connection),
) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    append_at_times(&store, 0, &times[..restart_at]).await;
    store.close().await;
    between(&rusqlite::Connection::open(dir.path().join(herald_store::sqlite::DB_FILE)).unwrap());

    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    append_at_times(&store, restart_at, &times[restart_at..]).await;
    assert_positions_before_agree_with_a_scan(&store, times).await;
}

fn last_time_mark(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT max(position) FROM time_marks", [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_found_by_time_through_marks_across_a_restart() {
    let mut times = wandering_times(5_000, 42);
    // Far ahead, after the last mark before the restart: only the events
    // after that mark tell the reopened writer its running maximum.
    times[2_200] = 1 << 50;
    lookups_by_time_across_a_restart(&times, 2_500, |conn| {
        assert_eq!(last_time_mark(conn), 2_100, "marks in the commits that reached 1,024 and 2,048");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_older_than_the_marks_still_finds_its_early_events_by_time() {
    // As the migration that added marks leaves a store that had 1,700
    // events: only the base row, at its head.
    lookups_by_time_across_a_restart(&wandering_times(4_000, 7), 1_700, |conn| {
        conn.execute_batch("DELETE FROM time_marks; INSERT INTO time_marks VALUES (1700, -9223372036854775807 - 1);")
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overstated_time_mark_costs_a_longer_scan_never_a_wrong_answer() {
    // As if the writer could not read the latest times at start-up: from the
    // last mark on, the running maximum is the largest time there is.
    lookups_by_time_across_a_restart(&wandering_times(4_000, 3), 2_500, |conn| {
        let sql = "UPDATE time_marks SET max_time_us = 9223372036854775807 WHERE position = ?1";
        assert_eq!(conn.execute(sql, [last_time_mark(conn)]).unwrap(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_by_time_sees_one_snapshot_while_events_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap());
    // Event n (at position n) has time 10 n.
    let appender = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 1..=3_000i64 {
                let mut e = event(&format!("e{n}"));
                e.time_micros = 10 * n;
                store.append(vec![e]).await.unwrap();
            }
        })
    };
    let mut lookups = 0;
    while !appender.is_finished() {
        let head = *store.head().borrow();
        // The first event at 10 (head + 2) is at head + 2 if it is stored yet,
        // so the answer is head + 1 at most, whenever the lookup ran.
        let before = store.position_before(10 * (head as i64 + 2)).await.unwrap();
        assert!((head..=head + 1).contains(&before), "head was {head}, the lookup said {before}");
        lookups += 1;
    }
    appender.await.unwrap();
    assert!(lookups > 100, "lookups ran while appends did ({lookups})");
}
