//! The disk's own limits, the ceiling every durable peer shares: how many
//! small synchronous appends it takes per second (what a commit costs), and
//! its sequential write bandwidth.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct DiskResult {
    pub dir: PathBuf,
    pub fdatasyncs: u64,
    pub fdatasync_secs: f64,
    pub seq_bytes: u64,
    pub seq_secs: f64,
}

impl DiskResult {
    pub fn fdatasyncs_per_s(&self) -> f64 {
        self.fdatasyncs as f64 / self.fdatasync_secs
    }

    pub fn seq_mib_per_s(&self) -> f64 {
        self.seq_bytes as f64 / (1024.0 * 1024.0) / self.seq_secs
    }
}

pub fn measure(dir: &Path, fsync_for: Duration, seq_mib: u64) -> anyhow::Result<DiskResult> {
    let (fdatasyncs, fdatasync_secs) = fdatasync_loop(dir, fsync_for)?;
    let (seq_bytes, seq_secs) = sequential_write(dir, seq_mib)?;
    Ok(DiskResult { dir: dir.to_path_buf(), fdatasyncs, fdatasync_secs, seq_bytes, seq_secs })
}

/// Appends 4 KiB and fdatasyncs, like a log committing one record at a time.
fn fdatasync_loop(dir: &Path, run_for: Duration) -> anyhow::Result<(u64, f64)> {
    // An unnamed temp file: removed by the kernel when closed, even on a crash.
    let mut file = scratch_file(dir)?;
    let block = [0xA5u8; 4096];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < run_for {
        file.write_all(&block)?;
        file.sync_data()?;
        syncs += 1;
    }
    Ok((syncs, start.elapsed().as_secs_f64()))
}

/// Writes `mib` MiB in 1 MiB chunks, then fsyncs: the time includes getting
/// it all onto the disk, not just into the page cache.
fn sequential_write(dir: &Path, mib: u64) -> anyhow::Result<(u64, f64)> {
    let mut file = scratch_file(dir)?;
    let chunk = vec![0x5Au8; 1024 * 1024];
    let start = Instant::now();
    for _ in 0..mib {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    Ok((mib * chunk.len() as u64, start.elapsed().as_secs_f64()))
}

fn scratch_file(dir: &Path) -> anyhow::Result<File> {
    tempfile::tempfile_in(dir).with_context(|| format!("creating a scratch file in {}", dir.display()))
}
