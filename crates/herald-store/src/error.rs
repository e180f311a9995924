use std::path::PathBuf;

use herald_core::Position;

/// The error of herald-store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write queue is full: the caller should retry later (HTTP 503).
    #[error("the store's write queue is full")]
    Overloaded,
    /// The store has been closed (shutting down).
    #[error("the store is closed")]
    Closed,
    /// A data file is damaged; never served as data.
    #[error("data file {} is damaged: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// The disk holding the data file is full: nothing of the write was
    /// stored, and writes succeed again once space is freed (HTTP 507).
    #[error("the disk holding {} is full", path.display())]
    Full { path: PathBuf },
    /// A stored record could not be decoded.
    #[error("stored record at position {position} is unreadable: {detail}")]
    BadRecord { position: Position, detail: String },
    /// The data directory holds no Herald store (`herald check`).
    #[error("{} is not a Herald store: {detail}", path.display())]
    NotAStore { path: PathBuf, detail: String },
    /// Another Herald (or `herald check`) holds the data directory.
    #[error("data directory {} is in use by another herald process", path.display())]
    InUse { path: PathBuf },
    #[error("cannot open data directory {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store task failed: {0}")]
    Task(String),
}
