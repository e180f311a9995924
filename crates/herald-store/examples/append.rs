//! The store's hot path without HTTP: `cargo run --release -p herald-store
//! --example append -- [writers] [seconds] [dir]`. Each writer appends one
//! ~1.1 KB event at a time, as an HTTP publish does; prints events/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_store::sqlite::{SqliteConfig, SqliteStore};
use herald_store::{NewEvent, Store};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let writers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = args.get(3).map(std::path::PathBuf::from).unwrap_or_else(|| tempfile::tempdir().unwrap().keep());
    let store = Arc::new(SqliteStore::open(&dir, SqliteConfig::default()).unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, count) = (store.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let id = if std::env::var("SEQ").is_ok() { format!("{:020}-{w}", started.elapsed().as_nanos()) } else { format!("{:x}", (w as u64 * 1_000_003 + n).wrapping_mul(0x9e3779b97f4a7c15)) };
                let body = format!(r#"{{"version":"1","id":"{id}","detail-type":"Order Placed","source":"bench","time":"2026-11-28T10:00:00Z","resources":[],"detail":{{"pad":"{}"}}}}"#, "x".repeat(950));
                let event = NewEvent { id, content_hash: [n as u8; 32], source: "bench".into(), detail_type: "Order Placed".into(), stream: None, time_micros: 0, body };
                store.append(vec![event]).await.unwrap();
                n += 1;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{writers} writers: {:.0} events/s ({} in {elapsed:.1} s) in {}",
        count.load(Ordering::Relaxed) as f64 / elapsed,
        count.load(Ordering::Relaxed),
        dir.display()
    );
    store.close().await;
}
