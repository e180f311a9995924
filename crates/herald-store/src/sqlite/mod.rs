//! The embedded backend: one SQLite file in WAL mode under the data directory.
//!
//! One writer thread owns the only write connection and group-commits (see
//! [`writer`]); reads use a small pool of separate connections on the blocking
//! thread pool, so they never wait for a commit.

mod check;
mod checkpoint;
mod id_rules;
mod lock;
mod reader;
mod schema;
mod subscriptions;
mod time_marks;
mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use herald_core::subscription::{RetryPolicy, SubscriptionState};
use herald_core::{IdRule, Position};
use rusqlite::{Connection, ErrorCode, Transaction};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::subscriptions::{Attempt, AttemptQuery, DeadLetter, Decide, Delivery, Settlement, SubscriptionRecord};
use crate::{AppendOutcome, ListQuery, NewEvent, Page, Store, StoreError, StoredEvent};
pub use check::check;
use checkpoint::Checkpointer;
use lock::DirLock;
use reader::ReadPool;
use writer::{Job, Op, Writer};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "herald.db";

/// Tuning of the embedded store; the defaults suit a laptop and a server alike.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Append requests that may wait for the writer before callers get
    /// [`StoreError::Overloaded`].
    pub queue_capacity: usize,
    /// Bytes of events those appends may hold, waiting or being committed,
    /// before callers get [`StoreError::Overloaded`] (an append larger than
    /// this is taken alone).
    pub queue_bytes: usize,
    /// Most events committed in one transaction.
    pub max_group_events: usize,
    /// Bytes of WAL written between background checkpoints.
    pub checkpoint_bytes: u64,
    /// Page size of a database file created with this config; a file keeps
    /// the size it was created with.
    pub page_size: u32,
}

impl Default for SqliteConfig {
    /// 16 KiB pages rather than SQLite's 4 KiB: an event (~1-2 KB) fills a
    /// third of a small page, so bulk appends split pages and write WAL frames
    /// (two syscalls each) four times as often. Measured on 2 cores: batches
    /// +18%; but a commit of one event writes ~3x the bytes (see
    /// BENCHMARKS.md). 4 MiB between checkpoints is about SQLite's own
    /// default (1,000 frames of 4 KiB).
    fn default() -> Self {
        Self {
            queue_capacity: 4096,
            queue_bytes: 256 << 20,
            max_group_events: 8192,
            checkpoint_bytes: 4 << 20,
            page_size: 16 << 10,
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    /// Bytes of appended events queued or in the writer's group, up to
    /// `queue_bytes` (the job holds its share until it is answered).
    queued_bytes: Arc<Semaphore>,
    queue_bytes: u32,
    head: watch::Receiver<Position>,
    readers: ReadPool,
    /// The writer, then the checkpoint thread (which stops once the writer has).
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// When `ready` last found room on the disk.
    room_seen: tokio::sync::Mutex<Option<Instant>>,
    /// Released once the writer has stopped (on close, or when dropped).
    lock: Mutex<Option<DirLock>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`. Start-up reads only
    /// the highest position and the events since the last time mark, so it
    /// takes the same time at any size.
    pub fn open(data_dir: &Path, config: SqliteConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Open { path: data_dir.to_owned(), source })?;
        let lock = DirLock::take(data_dir)?;
        let path = data_dir.join(DB_FILE);
        refuse_damaged_wal(&path)?;
        let mut conn = Connection::open(&path).map_err(|e| classify(e, &path))?;
        schema::configure_writer(&conn, config.page_size).map_err(|e| classify(e, &path))?;
        if schema::is_foreign(&conn).map_err(|e| classify(e, &path))? {
            return Err(StoreError::NotAStore {
                path,
                detail: "its database holds tables that are not Herald's".into(),
            });
        }
        schema::migrate(&mut conn).map_err(|e| classify(e, &path))?;
        // Replaces SQLite's automatic checkpoint: the checkpoint thread copies.
        conn.wal_hook(Some(checkpoint::record_wal_frames));
        let last: Position = conn
            .query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| r.get::<_, i64>(0))
            .map_err(|e| classify(e, &path))? as Position;
        let times = time_marks::RunningMax::load(&conn, &path)?;

        let (checkpointer, checkpoints) = Checkpointer::start(&path, config.checkpoint_bytes)?;
        let (head_tx, head) = watch::channel(last);
        let (jobs, queue) = mpsc::channel(config.queue_capacity);
        let queue_bytes = u32::try_from(config.queue_bytes).unwrap_or(u32::MAX).max(1);
        let writer = Writer {
            conn,
            path: path.clone(),
            next_position: last + 1,
            head: head_tx,
            max_group_events: config.max_group_events,
            checkpointer,
            times,
            failures: writer::FailureLog::default(),
        };
        let handle = std::thread::Builder::new()
            .name("herald-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        Ok(Self {
            readers: ReadPool::new(path.clone()),
            path,
            jobs,
            queued_bytes: Arc::new(Semaphore::new(queue_bytes as usize)),
            queue_bytes,
            head,
            threads: Mutex::new(vec![handle, checkpoints]),
            room_seen: tokio::sync::Mutex::new(None),
            lock: Mutex::new(Some(lock)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs.try_send(job(tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` in the writer's next group commit; answers once durable.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(|reply| Job::Write(Box::new(Op::new(f, reply)))).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.readers.run(f).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<AppendOutcome>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // Counted before the queue: the number of jobs alone does not bound
        // memory when one append may hold megabytes.
        let bytes = events.iter().map(NewEvent::size).sum::<usize>();
        let share = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.queue_bytes);
        let queued = self.queued_bytes.clone().try_acquire_many_owned(share).map_err(|_| StoreError::Overloaded)?;
        self.submit(|reply| Job::Append { events, reply, _queued: queued }).await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| reader::get(conn, &id)).await
    }

    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.read(move |conn| reader::list(conn, &query)).await
    }

    async fn position_before(&self, time_us: i64) -> Result<Position, StoreError> {
        self.read(move |conn| time_marks::position_before(conn, time_us)).await
    }

    async fn events_at(&self, positions: Vec<Position>) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |conn| reader::at(conn, &positions)).await
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.head.clone()
    }

    async fn put_id_rule(&self, rule: IdRule) -> Result<(), StoreError> {
        self.write(move |tx| id_rules::put(tx, &rule)).await
    }

    async fn delete_id_rule(&self, detail_type: &str) -> Result<bool, StoreError> {
        let detail_type = detail_type.to_owned();
        self.write(move |tx| id_rules::delete(tx, &detail_type)).await
    }

    async fn id_rules(&self) -> Result<Vec<IdRule>, StoreError> {
        self.read(id_rules::list).await
    }

    async fn put_subscription(
        &self,
        name: &str,
        spec: String,
        start: Position,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| subscriptions::put(tx, &name, &spec, start, now_us)).await
    }

    async fn subscription(&self, name: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| subscriptions::get(conn, &name)).await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        self.read(subscriptions::list).await
    }

    async fn delete_subscription(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| subscriptions::delete(tx, &name)).await
    }

    async fn set_subscription_state(
        &self,
        name: &str,
        state: SubscriptionState,
        last_error: Option<String>,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| subscriptions::set_state(tx, &name, state, last_error.as_deref(), now_us)).await
    }

    async fn fan_out(
        &self,
        name: &str,
        generation: i64,
        from: Position,
        to: Position,
        deliveries: Vec<Delivery>,
    ) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| subscriptions::fan_out(tx, &name, generation, from, to, &deliveries)).await
    }

    async fn enqueue(&self, name: &str, deliveries: Vec<Delivery>) -> Result<Option<u64>, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| subscriptions::enqueue(tx, &name, &deliveries)).await
    }

    async fn due_deliveries(
        &self,
        name: &str,
        now_us: i64,
        limit: usize,
        per_stream: bool,
    ) -> Result<Vec<Delivery>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| subscriptions::due(conn, &name, now_us, limit, per_stream)).await
    }

    async fn next_due(&self, name: &str, after_us: i64) -> Result<Option<i64>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| subscriptions::next_due(conn, &name, after_us)).await
    }

    async fn lease(
        &self,
        name: &str,
        lease: String,
        now_us: i64,
        lease_us: i64,
        max: usize,
        per_stream: bool,
        retry: RetryPolicy,
    ) -> Result<Vec<(Delivery, StoredEvent)>, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| subscriptions::lease(tx, &name, &lease, now_us, lease_us, max, per_stream, retry)).await
    }

    async fn settle_leased(
        &self,
        name: &str,
        leases: Vec<(Position, String)>,
        decide: Decide,
    ) -> Result<u64, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| {
            let mut settled = Vec::new();
            for (position, lease) in &leases {
                if let Some(delivery) = subscriptions::leased(tx, &name, *position, lease)? {
                    settled.push(decide(&delivery));
                }
            }
            subscriptions::settle(tx, &name, &settled)?;
            Ok(settled.len() as u64)
        })
        .await
    }

    async fn settle(
        &self,
        name: &str,
        generation: i64,
        settled: Arc<[(Attempt, Settlement)]>,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |tx| {
            if subscriptions::generation(tx, &name)? == Some(generation) {
                subscriptions::settle(tx, &name, &settled)?;
            }
            Ok(())
        })
        .await
    }

    async fn attempts(&self, name: &str, query: AttemptQuery) -> Result<Vec<Attempt>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| subscriptions::attempts(conn, &name, &query)).await
    }

    async fn dead_letters(&self, name: &str, after: Position, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| subscriptions::dead_letters(conn, &name, after, limit)).await
    }

    async fn redrive(&self, name: &str, ids: Option<Vec<String>>, now_us: i64) -> Result<u64, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| subscriptions::redrive(tx, &name, ids.as_deref(), now_us)).await
    }

    async fn purge_dead_letters(&self, name: &str, ids: Option<Vec<String>>) -> Result<u64, StoreError> {
        let name = name.to_owned();
        self.write(move |tx| subscriptions::purge(tx, &name, ids.as_deref())).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.jobs.is_closed() {
            return Err(StoreError::Closed);
        }
        self.read(|conn| conn.query_row("SELECT count(*) FROM id_rules", [], |_| Ok(()))).await?;
        // One probe at a time, so a flood of `/readyz` cannot fill the disk
        // (or the blocking pool) itself, and room found is trusted for a
        // second. No room is probed again each time: it fails at once, and
        // space freed is seen at once.
        let mut room_seen = self.room_seen.lock().await;
        if room_seen.is_some_and(|at| at.elapsed() < ROOM_PROBE_EVERY) {
            return Ok(());
        }
        let path = self.path.clone();
        let room = tokio::task::spawn_blocking(move || has_room(&path))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        *room_seen = room.then(Instant::now);
        if room { Ok(()) } else { Err(StoreError::Full { path: self.path.clone() }) }
    }

    async fn close(&self) {
        // The writer commits everything queued before the shutdown job, then exits;
        // jobs sent later find the queue closed.
        let _ = self.jobs.send(Job::Shutdown).await;
        let threads = self.threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for thread in threads {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        drop(self.lock.lock().map(|mut lock| lock.take()));
    }
}

/// Bytes the data file's disk must still take for the store to be ready: a
/// full disk refuses every commit (each needs WAL frames), so `/readyz`
/// should fail before publishes do, not only after.
const ROOM_FOR_READY: usize = 1 << 20;

/// How long room found by [`has_room`] is trusted.
const ROOM_PROBE_EVERY: Duration = Duration::from_secs(1);

/// Whether the disk holding `db` takes [`ROOM_FOR_READY`] more bytes, found
/// by writing them to an unnamed file beside it (gone when closed, even on
/// a crash, and never written back: only the page cache is charged).
fn has_room(db: &Path) -> Result<bool, StoreError> {
    use std::io::{ErrorKind, Write};
    let dir = db.parent().unwrap_or(Path::new("."));
    let probe = tempfile::tempfile_in(dir).and_then(|mut file| file.write_all(&vec![0; ROOM_FOR_READY]));
    match probe {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded) => Ok(false),
        Err(source) => Err(StoreError::Open { path: dir.to_owned(), source }),
    }
}

/// SQLite would open a WAL damaged in the middle by dropping the
/// acknowledged transactions after the damage (see [`wal`]): refuse instead,
/// naming the file.
fn refuse_damaged_wal(db: &Path) -> Result<(), StoreError> {
    let wal = wal_path(db);
    match wal::damage_in(&wal) {
        Ok(None) => Ok(()),
        Ok(Some(detail)) => {
            tracing::error!(file = %wal.display(), %detail, "data file is damaged");
            Err(StoreError::Corrupt { path: wal, detail })
        }
        Err(source) => Err(StoreError::Open { path: wal, source }),
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// Turns a SQLite error into a [`StoreError`], singling out damaged files so
/// they are reported (and logged with the file's name) instead of served,
/// and a full disk, which the caller may retry once space is freed.
fn classify(err: rusqlite::Error, path: &Path) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(e.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) =>
        {
            tracing::error!(file = %path.display(), error = %err, "data file is damaged");
            StoreError::Corrupt { path: path.to_owned(), detail: err.to_string() }
        }
        // The shared-memory index growing on a full disk fails as SHMSIZE.
        rusqlite::Error::SqliteFailure(e, _)
            if e.code == ErrorCode::DiskFull || e.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE =>
        {
            StoreError::Full { path: path.to_owned() }
        }
        _ => StoreError::Sqlite(err),
    }
}
