//! Copying the WAL back into the database file, on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses 1,000
//! WAL frames: that group, and every request queued behind it, waited while
//! ~4 MB were copied and the database file was fsynced. On a slow disk those
//! commits set the publish p99. Here the writer only reports the frames each
//! commit wrote; a second connection checkpoints (PASSIVE: it never blocks
//! the writer or a reader) once `checkpoint_bytes` (4 MiB, about as much as SQLite's
//! default) have been written since its last round, then fsyncs the database file
//! itself. (SQLite fsyncs it only when a checkpoint reaches the WAL's end,
//! which one racing a busy writer rarely does; the writer's backstop would
//! then have flushed every page the rounds before had copied.)

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use super::writer::LogPace;
use super::{classify, schema};
use crate::StoreError;

/// The WAL restarts from its beginning only when a checkpoint has copied it
/// whole between two commits, which a checkpoint racing a busy writer rarely
/// manages. Once the WAL holds this many times the checkpoint threshold, the
/// writer finishes the copy inline (only the frames since the thread's last
/// round are left), so the WAL restarts and stays bounded, also should the
/// thread be stuck; the thread leaves that copy to the writer.
const BACKSTOP_FACTOR: u32 = 4;

thread_local! {
    /// Frames in the WAL after the writer's last commit, set by [`record_wal_frames`].
    static WAL_FRAMES: Cell<u32> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: SQLite calls it right after a commit,
/// on the committing thread, with the WAL's frame count. Only the writer
/// thread commits on that connection. Installing the hook also turns off
/// SQLite's automatic checkpoint.
pub fn record_wal_frames(_: &Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(u32::try_from(frames).unwrap_or(0));
    Ok(())
}

/// What the writer and the thread share: the WAL's progress and its limits.
struct Progress {
    /// Frames between two rounds.
    threshold: u32,
    /// [`BACKSTOP_FACTOR`] times the threshold: from here the writer copies.
    backstop: u32,
    /// Frames written since the store opened: only grows, across WAL restarts.
    written: AtomicU64,
    /// Frames in the WAL now.
    in_wal: AtomicU32,
    /// `written` when the last finished round started (the thread's, or the
    /// writer's backstop); only grows.
    at_last_round: AtomicU64,
}

/// The writer's handle: reports commits; dropping it stops the thread.
pub struct Checkpointer {
    path: PathBuf,
    progress: Arc<Progress>,
    /// The WAL's frame count after the previous commit.
    last_in_wal: u32,
    nudge: SyncSender<()>,
    /// After a failed backstop copy (a full disk, usually): not tried again
    /// before then, rather than after every commit.
    backstop_paused_until: Option<Instant>,
    backstop_failures: LogPace,
}

/// How long the backstop waits after a failed copy.
const BACKSTOP_RETRY: Duration = Duration::from_secs(1);

impl Checkpointer {
    /// Starts the thread; it checkpoints after every `threshold_bytes` of
    /// WAL frames, counted in the file's own page size.
    pub fn start(path: &Path, threshold_bytes: u64) -> Result<(Self, JoinHandle<()>), StoreError> {
        let conn = Connection::open(path).map_err(|e| classify(e, path))?;
        schema::configure_checkpointer(&conn).map_err(|e| classify(e, path))?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0)).map_err(|e| classify(e, path))?;
        let threshold = u32::try_from(threshold_bytes / page_size.unsigned_abs().max(1)).unwrap_or(u32::MAX).max(1);
        let db = File::open(path).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
        let progress = Arc::new(Progress {
            threshold,
            backstop: threshold.saturating_mul(BACKSTOP_FACTOR),
            written: AtomicU64::new(0),
            in_wal: AtomicU32::new(0),
            at_last_round: AtomicU64::new(0),
        });
        let (nudge, nudged) = std::sync::mpsc::sync_channel(1);
        let round = Round { conn, db, path: path.to_owned(), progress: progress.clone() };
        let handle = std::thread::Builder::new()
            .name("herald-checkpoint".into())
            .spawn(move || round.run(&nudged))
            .map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
        let checkpointer = Self {
            path: path.to_owned(),
            progress,
            last_in_wal: 0,
            nudge,
            backstop_paused_until: None,
            backstop_failures: LogPace::default(),
        };
        Ok((checkpointer, handle))
    }

    /// Called by the writer after each commit on `writer` (whose WAL hook is
    /// [`record_wal_frames`]): hands the WAL's growth to the thread, or, if
    /// the WAL is at the backstop, finishes the copy on `writer` itself.
    pub fn committed(&mut self, writer: &Connection) {
        let in_wal = WAL_FRAMES.get();
        // Fewer than before: the commit restarted the WAL and wrote them all.
        let new_frames = u64::from(in_wal.checked_sub(self.last_in_wal).unwrap_or(in_wal));
        self.last_in_wal = in_wal;
        let written = self.progress.written.fetch_add(new_frames, Ordering::Relaxed) + new_frames;
        self.progress.in_wal.store(in_wal, Ordering::Relaxed);
        if in_wal >= self.progress.backstop {
            self.backstop_checkpoint(writer, written);
        } else if self.progress.due(written) {
            // Only when a round is due: waking the thread after every commit
            // cost ~0.5 us of CPU per event for a thread that went back to sleep.
            // Full: a nudge is already pending and will read the new counts.
            let _ = self.nudge.try_send(());
        }
    }

    /// Copies the rest of the WAL on the writer; counts as the thread's round.
    fn backstop_checkpoint(&mut self, writer: &Connection, written: u64) {
        if self.backstop_paused_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        match passive_checkpoint(writer) {
            Ok(copied) if copied >= 0 => self.progress.round_done(written),
            // The thread's round was running: it counts instead.
            Ok(_) => {}
            Err(e) => {
                self.backstop_paused_until = Some(Instant::now() + BACKSTOP_RETRY);
                if let Some(since) = self.backstop_failures.due() {
                    let error = classify(e, &self.path);
                    tracing::warn!(%error, failed_since_last_logged = since, "checkpoint failed; retrying in 1 s");
                }
            }
        }
    }
}

impl Progress {
    /// Whether `threshold` frames have been written since the last round.
    fn due(&self, written: u64) -> bool {
        written - self.at_last_round.load(Ordering::Relaxed) >= u64::from(self.threshold)
    }

    /// A round that started when `written` frames had been written finished.
    fn round_done(&self, written: u64) {
        self.at_last_round.fetch_max(written, Ordering::Relaxed);
    }
}

/// One PASSIVE checkpoint (it never waits for a reader or the writer): the
/// frames it copied, or -1 if another checkpoint was running.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(2))
}

struct Round {
    conn: Connection,
    /// The database file, to fsync after each round.
    db: File,
    path: PathBuf,
    progress: Arc<Progress>,
}

impl Round {
    fn run(self, nudged: &Receiver<()>) {
        let progress = &self.progress;
        while nudged.recv().is_ok() {
            let written = progress.written.load(Ordering::Relaxed);
            // At the backstop the writer copies: a nudge sent before it got there is stale.
            if !progress.due(written) || progress.in_wal.load(Ordering::Relaxed) >= progress.backstop {
                continue;
            }
            match self.checkpoint() {
                Ok(true) => progress.round_done(written),
                // The writer's own checkpoint was running: try again after the next commit.
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "background checkpoint failed; retrying later");
                    // Retry after as many frames again, not on every commit.
                    progress.round_done(written);
                }
            }
        }
    }

    /// One PASSIVE round, then the database file's fsync; false if another
    /// checkpoint was running.
    fn checkpoint(&self) -> Result<bool, String> {
        let copied = passive_checkpoint(&self.conn).map_err(|e| classify(e, &self.path).to_string())?;
        if copied < 0 {
            return Ok(false);
        }
        self.db.sync_data().map_err(|e| format!("fsync of {}: {e}", self.path.display()))?;
        Ok(true)
    }
}
