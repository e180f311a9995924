//! Copying the WAL back into the database file, on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: that commit, and every request in its group, waited for ~4 MB
//! to be copied and the database file to be fsynced. Those commits were the
//! slowest 1% and set the publish p99. Here a second connection checkpoints
//! in the background (PASSIVE: it never blocks the writer), a little after
//! each burst of commits. The writer keeps SQLite's automatic checkpoint, which
//! then finds little left to copy; it also restarts the WAL from its
//! beginning, which a checkpoint racing the writer rarely manages.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{classify, schema};
use crate::StoreError;

/// Checkpoint at most this often: each round copies what the commits since
/// the last one wrote, so rounds stay small without running after every commit.
const INTERVAL: Duration = Duration::from_millis(100);
/// Rounds run back to back while commits keep adding frames during a round:
/// the WAL restarts from its beginning only once it has been copied whole.
const CHASES: usize = 4;

/// The writer's handle: nudges the thread after commits; dropping it stops it.
pub struct Checkpointer {
    nudge: SyncSender<()>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> Result<(Self, JoinHandle<()>), StoreError> {
        let conn = Connection::open(path).map_err(|e| classify(e, path))?;
        schema::configure_checkpointer(&conn).map_err(|e| classify(e, path))?;
        let (nudge, nudged) = std::sync::mpsc::sync_channel(1);
        let file = path.to_owned();
        let handle = std::thread::Builder::new()
            .name("herald-checkpoint".into())
            .spawn(move || run(&conn, &file, &nudged))
            .map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
        Ok((Self { nudge }, handle))
    }

    /// Something was committed: checkpoint soon.
    pub fn committed(&self) {
        // Full: a nudge is already pending. Gone (only after a panic): the
        // writer's automatic checkpoint still keeps the WAL bounded.
        let _ = self.nudge.try_send(());
    }
}

fn run(conn: &Connection, path: &Path, nudged: &Receiver<()>) {
    let mut last = Instant::now();
    while nudged.recv().is_ok() {
        // Let commits accumulate for the rest of the interval (or until the
        // writer hangs up at shutdown, when one last round runs).
        let stop =
            matches!(nudged.recv_timeout(INTERVAL.saturating_sub(last.elapsed())), Err(RecvTimeoutError::Disconnected));
        for _ in 0..CHASES {
            match checkpoint(conn) {
                Ok(caught_up) if caught_up => break,
                Ok(_) => {}
                Err(e) => {
                    let err = classify(e, path);
                    tracing::warn!(error = %err, "background checkpoint failed; retrying later");
                    break;
                }
            }
        }
        last = Instant::now();
        if stop {
            break;
        }
    }
}

/// One PASSIVE checkpoint; true when every frame in the WAL is now in the
/// database file.
fn checkpoint(conn: &Connection) -> rusqlite::Result<bool> {
    let (busy, log, copied): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(busy == 0 && log == copied)
}
