//! One Herald per data directory.
//!
//! SQLite's own locks let two processes share a file, but each Herald's
//! writer assigns positions from what it read at start-up, so a second
//! server on the same directory would hand out positions the first already
//! used. An exclusive lock on a file beside the database keeps it out; the
//! kernel drops the lock when the holder exits, even on `kill -9`.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::StoreError;

/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "herald.lock";

/// Held for as long as the store is open (or `herald check` runs).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the data directory's lock, or says it is held.
    pub fn take(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(LOCK_FILE);
        let open = |source| StoreError::Open { path: path.clone(), source };
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(open)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::InUse { path: data_dir.to_owned() }),
            Err(TryLockError::Error(source)) => Err(open(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::take(dir.path()).unwrap();
        assert!(matches!(DirLock::take(dir.path()), Err(StoreError::InUse { .. })));
        drop(first);
        DirLock::take(dir.path()).unwrap();
    }
}
