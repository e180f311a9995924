//! Prometheus metrics. The recorder is process-global (the `metrics` crate's
//! design), so it is installed once and shared by every router in the process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("herald_store_commit_events".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
                )
            })
            .expect("bucket lists are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (then that one records).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// How often histogram samples are folded into their buckets. Until then the
/// exporter keeps every sample: a server nobody scraped grew by every commit
/// it made, ~4 MB a minute under load.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every few seconds
/// (the exporter does this itself only when it runs its own HTTP listener,
/// which Herald does not use: `/metrics` is one of its routes).
pub fn spawn_upkeep() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            handle().run_upkeep();
        }
    })
}

pub fn published(outcome: &'static str, count: usize) {
    metrics::counter!("herald_events_published_total", "outcome" => outcome).increment(count as u64);
}
