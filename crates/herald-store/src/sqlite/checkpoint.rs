//! Copying the WAL back into the database file, on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses 1,000
//! WAL frames: that group, and every request queued behind it, waited while
//! ~4 MB were copied and the database file was fsynced. On a slow disk those
//! commits set the publish p99. Here the writer only reports how many frames
//! the WAL holds after each commit; a second connection checkpoints (PASSIVE:
//! it never blocks the writer or a reader) once `checkpoint_frames` (1,000,
//! SQLite's default) have piled up since its last copy. That is as often as
//! SQLite would, so the database file is fsynced no more often than before,
//! just not on the commit path.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use super::{classify, schema};
use crate::StoreError;

/// Under steady load the writer commits back to back, so a checkpoint racing
/// it rarely finds the WAL copied whole, which is when SQLite restarts the WAL
/// from its beginning. Once the WAL holds this many times the checkpoint
/// threshold, the writer finishes the copy inline (by then only the frames
/// since the thread's last round are left) so the WAL restarts and stays
/// bounded, also should the thread be stuck.
pub const BACKSTOP_FACTOR: u32 = 8;

thread_local! {
    /// Frames in the WAL after the writer's last commit, set by [`record_wal_frames`].
    static WAL_FRAMES: Cell<u32> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: SQLite calls it on the committing thread
/// (the writer's) with the WAL's frame count. Installing it also turns off
/// SQLite's automatic checkpoint.
pub fn record_wal_frames(_: &Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(u32::try_from(frames).unwrap_or(0));
    Ok(())
}

/// The frames the writer's last commit left in the WAL.
pub fn wal_frames() -> u32 {
    WAL_FRAMES.get()
}

/// The writer's handle: reports commits; dropping it stops the thread.
pub struct Checkpointer {
    frames: Arc<AtomicU32>,
    nudge: SyncSender<()>,
}

impl Checkpointer {
    pub fn start(path: &Path, threshold: u32) -> Result<(Self, JoinHandle<()>), StoreError> {
        let conn = Connection::open(path).map_err(|e| classify(e, path))?;
        schema::configure_checkpointer(&conn).map_err(|e| classify(e, path))?;
        let frames = Arc::new(AtomicU32::new(0));
        let (nudge, nudged) = std::sync::mpsc::sync_channel(1);
        let (file, seen) = (path.to_owned(), frames.clone());
        let handle = std::thread::Builder::new()
            .name("herald-checkpoint".into())
            .spawn(move || run(&conn, &file, threshold, &seen, &nudged))
            .map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
        Ok((Self { frames, nudge }, handle))
    }

    /// A commit left `frames` frames in the WAL.
    pub fn committed(&self, frames: u32) {
        self.frames.store(frames, Ordering::Relaxed);
        // Full: a nudge is already pending and will read the new count.
        let _ = self.nudge.try_send(());
    }
}

fn run(conn: &Connection, path: &Path, threshold: u32, frames: &AtomicU32, nudged: &Receiver<()>) {
    // Frames of the current WAL already in the database file.
    let mut copied = 0;
    while nudged.recv().is_ok() {
        let now = frames.load(Ordering::Relaxed);
        if now < copied {
            // The writer restarted the WAL from its beginning.
            copied = 0;
        }
        if now - copied < threshold {
            continue;
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(2)) {
            Ok(done) if done >= 0 => copied = u32::try_from(done).unwrap_or(now),
            // -1: the writer's own checkpoint was running; try again after the next commit.
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %classify(e, path), "background checkpoint failed; retrying later");
                // Retry after as many frames again, not on every commit.
                copied = now;
            }
        }
    }
}
