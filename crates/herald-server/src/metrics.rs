//! Prometheus metrics. The recorder is process-global (the `metrics` crate's
//! design), so it is installed once and shared by every router in the process.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use herald_store::ATTEMPT_OUTCOMES;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Upper bounds of the buckets of every `_seconds` histogram.
const SECONDS_BUCKETS: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("herald_store_commit_events".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0],
            )
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS))
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

/// Upper bounds of `herald_delivery_seconds`' buckets: up to the longest
/// delivery timeout (60 s), since slow targets are what it is watched for.
const DELIVERY_BUCKETS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// One subscription's webhook delivery attempts, exported as
/// `herald_deliveries_total` and `herald_delivery_seconds`. Its worker keeps
/// them, not the recorder, which cannot forget a label set: a deleted
/// subscription's series go with its worker, so creating and deleting
/// subscriptions does not grow memory.
#[derive(Default)]
pub struct DeliveryStats {
    outcomes: [AtomicU64; ATTEMPT_OUTCOMES.len()],
    /// Attempts whose latency fell in each bucket (not cumulative; past the
    /// last bound only in `count`).
    buckets: [AtomicU64; DELIVERY_BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl DeliveryStats {
    /// `outcome` is one of [`ATTEMPT_OUTCOMES`].
    pub fn record(&self, outcome: &str, latency: Duration) {
        let i = ATTEMPT_OUTCOMES.iter().position(|o| *o == outcome);
        debug_assert!(i.is_some(), "unknown delivery outcome {outcome}");
        self.outcomes[i.unwrap_or(1)].fetch_add(1, Ordering::Relaxed);
        let seconds = latency.as_secs_f64();
        if let Some(i) = DELIVERY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Appends the [`DeliveryStats`] of every subscription that has attempted a
/// delivery (pull subscriptions never do) in the Prometheus text format.
pub fn write_delivery_stats(text: &mut String, rows: &[(String, Arc<DeliveryStats>)]) {
    let rows: Vec<_> = rows.iter().filter(|(_, stats)| stats.count.load(Ordering::Relaxed) > 0).collect();
    if rows.is_empty() {
        return;
    }
    // Subscription names are limited to A-Z a-z 0-9 . _ -: nothing to escape in a label.
    let _ = writeln!(text, "# TYPE herald_deliveries_total counter");
    for (name, stats) in &rows {
        for (outcome, n) in ATTEMPT_OUTCOMES.iter().zip(&stats.outcomes) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(text, "herald_deliveries_total{{subscription=\"{name}\",outcome=\"{outcome}\"}} {n}");
        }
    }
    let _ = writeln!(text, "# TYPE herald_delivery_seconds histogram");
    for (name, stats) in &rows {
        let mut below = 0;
        for (bound, n) in DELIVERY_BUCKETS.iter().zip(&stats.buckets) {
            below += n.load(Ordering::Relaxed);
            let _ = writeln!(text, "herald_delivery_seconds_bucket{{subscription=\"{name}\",le=\"{bound}\"}} {below}");
        }
        // Read after the buckets, so the +Inf bucket is never below the others.
        let count = stats.count.load(Ordering::Relaxed).max(below);
        let sum = stats.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(text, "herald_delivery_seconds_bucket{{subscription=\"{name}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(text, "herald_delivery_seconds_sum{{subscription=\"{name}\"}} {sum}");
        let _ = writeln!(text, "herald_delivery_seconds_count{{subscription=\"{name}\"}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_stats_render_as_counters_and_a_cumulative_histogram() {
        let stats = Arc::new(DeliveryStats::default());
        stats.record("delivered", Duration::from_micros(300));
        stats.record("delivered", Duration::from_millis(7));
        stats.record("failed", Duration::from_secs(3));
        let mut text = String::new();
        let idle = Arc::new(DeliveryStats::default());
        write_delivery_stats(&mut text, &[("orders".to_owned(), stats), ("queue".to_owned(), idle)]);
        assert!(!text.contains("queue"), "a subscription that never delivered has no series:\n{text}");
        for line in [
            r#"herald_deliveries_total{subscription="orders",outcome="delivered"} 2"#,
            r#"herald_deliveries_total{subscription="orders",outcome="failed"} 1"#,
            r#"herald_deliveries_total{subscription="orders",outcome="dead"} 0"#,
            r#"herald_delivery_seconds_bucket{subscription="orders",le="0.001"} 1"#,
            r#"herald_delivery_seconds_bucket{subscription="orders",le="0.005"} 1"#,
            r#"herald_delivery_seconds_bucket{subscription="orders",le="0.01"} 2"#,
            r#"herald_delivery_seconds_bucket{subscription="orders",le="2.5"} 2"#,
            r#"herald_delivery_seconds_bucket{subscription="orders",le="5"} 3"#,
            r#"herald_delivery_seconds_bucket{subscription="orders",le="+Inf"} 3"#,
            r#"herald_delivery_seconds_sum{subscription="orders"} 3.0073"#,
            r#"herald_delivery_seconds_count{subscription="orders"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
    }
}
