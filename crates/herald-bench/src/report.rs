//! Human-readable report and, with `--json`, one JSON line per result on
//! stdout (the human report then goes to stderr, so scripts can pipe stdout).

use serde_json::json;

use crate::deliver::{DEAD_PHASES, DeadTargetResult, FanOutResult, LatencyResult, PeerLatency};
use crate::disk::DiskResult;
use crate::machine::{Machine, PeakRss};
use crate::targets::{RunResult, Target};
use crate::workload::{Stats, Workload};

/// Delivery latency targets shown next to the measurement (not asserted).
const TARGET_DELIVERY_P50_US: u64 = 2_000;
const TARGET_DELIVERY_P99_US: u64 = 20_000;

pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    fn human(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    fn line(&self, value: serde_json::Value) {
        if self.json {
            println!("{value}");
        }
    }

    pub fn progress(&self, text: &str) {
        eprintln!("{text}");
    }

    pub fn machine(&self, m: &Machine) {
        self.human(&format!(
            "machine: {} CPUs ({}), {} MiB RAM, Linux {}",
            m.cpus, m.cpu_model, m.mem_total_mib, m.kernel
        ));
        self.line(json!({
            "kind": "machine", "cpus": m.cpus, "cpu_model": m.cpu_model,
            "kernel": m.kernel, "mem_total_mib": m.mem_total_mib,
        }));
    }

    pub fn workload(&self, w: &Workload) {
        let pacing = match w.rate {
            Some(rate) => format!("open loop at {rate:.0} events/s"),
            None => "closed loop (as fast as acks come back)".to_string(),
        };
        self.human(&format!(
            "workload: {} workers, {pacing}, {} event(s) per request, ~{} B events, {:.0}% redeliveries, \
             {:.0} s measured after {:.0} s warm-up",
            w.concurrency,
            w.batch,
            w.event_size,
            w.duplicates * 100.0,
            w.duration.as_secs_f64(),
            w.warmup.as_secs_f64(),
        ));
    }

    pub fn result(&self, r: &RunResult) {
        let s = &r.stats;
        let secs = r.workload.duration.as_secs_f64();
        let q = |quantile: f64| s.latency_us.value_at_quantile(quantile);
        self.progress(&format!(
            "{}: {:.0} events/s, p99 {:.2} ms, {} errors{}",
            r.target.name(),
            s.events_acked() as f64 / secs,
            q(0.99) as f64 / 1000.0,
            s.errors,
            s.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
        ));
        self.line(json!({
            "kind": "publish",
            "target": r.target.name(),
            "concurrency": r.workload.concurrency,
            "batch": r.workload.batch,
            "rate": r.workload.rate,
            "duration_s": secs,
            "requests": s.requests,
            "events_acked": s.events_acked(),
            "events_per_s": s.events_acked() as f64 / secs,
            "requests_per_s": s.requests as f64 / secs,
            "p50_us": q(0.50),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": s.latency_us.max(),
            "mean_us": s.latency_us.mean(),
            "stored": s.outcome.stored,
            "duplicates_sent": s.duplicates_sent,
            "duplicates_acked": s.outcome.duplicates,
            "conflicts": s.outcome.conflicts,
            "failed": s.outcome.failed,
            "overloaded": s.outcome.overloaded,
            "errors": s.errors,
            "first_error": s.first_error,
        }));
    }

    pub fn table(&self, results: &[RunResult]) {
        if results.is_empty() {
            return;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let mut out = String::from("\n");
        out += &format!(
            "{:<15} {:>10} {:>9} {:>8} {:>8} {:>9} {:>17} {:>9} {:>10} {:>7}\n",
            "target",
            "events/s",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "dups acked/sent",
            "conflicts",
            "overloaded",
            "errors"
        );
        for r in results {
            let s = &r.stats;
            let secs = r.workload.duration.as_secs_f64();
            out += &format!(
                "{:<15} {:>10.0} {:>9.0} {:>8.2} {:>8.2} {:>9.2} {:>17} {:>9} {:>10} {:>7}\n",
                r.target.name(),
                s.events_acked() as f64 / secs,
                s.requests as f64 / secs,
                ms(s.latency_us.value_at_quantile(0.50)),
                ms(s.latency_us.value_at_quantile(0.99)),
                ms(s.latency_us.value_at_quantile(0.999)),
                format!("{}/{}", s.outcome.duplicates, s.duplicates_sent),
                s.outcome.conflicts,
                s.outcome.overloaded,
                s.errors,
            );
        }
        if let Some(herald) = results.iter().find(|r| r.target == Target::Herald) {
            out += "\n";
            for other in results.iter().filter(|r| r.target != Target::Herald) {
                out += &ratio_line(herald, other);
            }
        }
        self.human(out.trim_end());
    }

    pub fn rss(&self, name: &str, rss: &PeakRss) {
        self.human(&format!(
            "{name} (pid {}) peak RSS: {:.1} MiB (now {:.1} MiB)",
            rss.pid,
            rss.peak_kib as f64 / 1024.0,
            rss.current_kib as f64 / 1024.0
        ));
        self.line(json!({
            "kind": "rss", "process": name, "pid": rss.pid,
            "peak_kib": rss.peak_kib, "current_kib": rss.current_kib,
        }));
    }

    pub fn disk(&self, d: &DiskResult) {
        self.human(&format!(
            "disk ({}): {:.0} fdatasyncs/s (4 KiB appends, {:.1} s), sequential write {:.0} MiB/s ({} MiB + fsync)",
            d.dir.display(),
            d.fdatasyncs_per_s(),
            d.fdatasync_secs,
            d.seq_mib_per_s(),
            d.seq_bytes / (1024 * 1024),
        ));
        self.line(json!({
            "kind": "disk", "dir": d.dir.display().to_string(),
            "fdatasyncs_per_s": d.fdatasyncs_per_s(), "seq_write_mib_per_s": d.seq_mib_per_s(),
        }));
    }

    pub fn deliver_latency(&self, r: &LatencyResult) {
        let d = &r.delivery_us;
        let p = &r.publish;
        let secs = r.duration.as_secs_f64();
        let (p50, p99) = (d.value_at_quantile(0.50), d.value_at_quantile(0.99));
        let met = |value: u64, target: u64| if value < target { "met" } else { "MISSED" };
        let mut out = format!(
            "\n1. publish-to-delivery latency: {:.0} events/s open loop from {} publishers, ~{} B events, \
             {:.0} s measured after {:.0} s warm-up, 1 subscription to a local receiver (answers 204)\n",
            r.rate,
            r.publishers,
            r.event_size,
            secs,
            r.warmup.as_secs_f64()
        );
        out += &format!("{:<26} {:>8} {:>8} {:>8} {:>8} {:>8}\n", "", "count", "p50 ms", "p99 ms", "p999 ms", "max ms");
        out += &latency_row("publish -> delivery", d.len(), d);
        out += &latency_row("publish (request -> ack)", p.requests, &p.latency_us);
        out += &format!(
            "delivered {} of {} events published in the window ({} missing), {} redeliveries; \
             publishing: {:.0} events/s, {} errors\n",
            r.delivered,
            r.published,
            r.published - r.delivered,
            r.redeliveries,
            p.events_acked() as f64 / secs,
            p.errors,
        );
        out += &format!(
            "targets: p50 < {:.0} ms: {} ({:.2} ms); p99 < {:.0} ms: {} ({:.2} ms)",
            ms(TARGET_DELIVERY_P50_US),
            met(p50, TARGET_DELIVERY_P50_US),
            ms(p50),
            ms(TARGET_DELIVERY_P99_US),
            met(p99, TARGET_DELIVERY_P99_US),
            ms(p99),
        );
        self.human(&out);
        self.line(json!({
            "kind": "deliver_latency",
            "rate": r.rate,
            "publishers": r.publishers,
            "event_size": r.event_size,
            "duration_s": secs,
            "warmup_s": r.warmup.as_secs_f64(),
            "published": r.published,
            "delivered": r.delivered,
            "missing": r.published - r.delivered,
            "redeliveries": r.redeliveries,
            "p50_us": p50,
            "p99_us": p99,
            "p999_us": d.value_at_quantile(0.999),
            "max_us": d.max(),
            "mean_us": d.mean(),
            "target_p50_us": TARGET_DELIVERY_P50_US,
            "target_p99_us": TARGET_DELIVERY_P99_US,
            "publish": stats_json(p, secs),
            "status": {
                "delivered": r.status.delivered, "failed": r.status.failed, "pending": r.status.pending,
                "dead_letters": r.status.dead_letters, "last_error": r.status.last_error,
            },
        }));
    }

    /// The same latency load through a peer, with Herald's percentiles as ratios.
    pub fn deliver_latency_peer(&self, peer: &str, r: &PeerLatency, herald: &hdrhistogram::Histogram<u64>) {
        let d = &r.delivery_us;
        let mut out =
            format!("{:<26} {:>8} {:>8} {:>8} {:>8} {:>8}\n", "", "count", "p50 ms", "p99 ms", "p999 ms", "max ms");
        out += &latency_row(&format!("{peer} publish -> consume"), d.len(), d);
        out += &format!(
            "{peer}: {} of {} events consumed; herald / {peer}: p50 {:.2}x, p99 {:.2}x (lower is faster)",
            r.delivered,
            r.published,
            herald.value_at_quantile(0.50) as f64 / d.value_at_quantile(0.50).max(1) as f64,
            herald.value_at_quantile(0.99) as f64 / d.value_at_quantile(0.99).max(1) as f64,
        );
        self.human(&out);
        self.line(json!({
            "kind": "deliver_latency_peer",
            "peer": peer,
            "published": r.published,
            "delivered": r.delivered,
            "p50_us": d.value_at_quantile(0.50),
            "p99_us": d.value_at_quantile(0.99),
            "p999_us": d.value_at_quantile(0.999),
            "max_us": d.max(),
        }));
    }

    pub fn deliver_fanout(&self, r: &FanOutResult) {
        let mut out = format!(
            "\n2. fan-out: {} subscriptions (no pattern) to the local receiver, {} events published in batches of {}\n",
            r.subscriptions, r.events, r.batch
        );
        out += &format!(
            "published {} events in {:.3} s; {} of {} deliveries arrived{} in {:.2} s from the first publish \
             = {:.0} deliveries/s ({} redeliveries)",
            r.published,
            r.publish_time.as_secs_f64(),
            r.arrived,
            r.expected,
            if r.timed_out { " before the timeout" } else { "" },
            r.drain.as_secs_f64(),
            r.deliveries_per_s(),
            r.redeliveries,
        );
        self.human(&out);
        self.line(json!({
            "kind": "deliver_fanout",
            "subscriptions": r.subscriptions,
            "events": r.events,
            "batch": r.batch,
            "published": r.published,
            "publish_s": r.publish_time.as_secs_f64(),
            "expected": r.expected,
            "arrived": r.arrived,
            "redeliveries": r.redeliveries,
            "drain_s": r.drain.as_secs_f64(),
            "deliveries_per_s": r.deliveries_per_s(),
            "timed_out": r.timed_out,
        }));
    }

    pub fn deliver_dead(&self, r: &DeadTargetResult) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let secs = r.load_duration.as_secs_f64();
        let mut out = format!(
            "\n3. dead target: {} events (batches of {}) to a subscription whose target refuses connections \
             (max_attempts 185, backoff 1 s .. 60 s)\n",
            r.events, r.batch
        );
        out += &format!(
            "status.pending {} {} in {:.2} s (publish + fan-out)\n",
            if r.pending_reached { "reached" } else { "did NOT reach" },
            r.status_filled.pending,
            r.fill_time.as_secs_f64()
        );
        out += &format!(
            "herald VmRSS: {:.1} MiB at the start, {:.1} MiB after the baseline load, {:.1} MiB with {} pending, \
             {:.1} MiB after {:.0} s more load with the dead target\n",
            mib(r.rss_start.current_kib),
            mib(r.rss_before.current_kib),
            mib(r.rss_filled.current_kib),
            r.status_filled.pending,
            mib(r.rss_after.current_kib),
            secs,
        );
        let peaks: Vec<String> =
            DEAD_PHASES.iter().zip(r.rss_max_kib).map(|(phase, kib)| format!("{phase} {:.1} MiB", mib(kib))).collect();
        out += &format!(
            "highest VmRSS sampled (every 100 ms): {}; VmHWM {:.1} MiB ({})\n",
            peaks.join(", "),
            mib(r.rss_after.peak_kib),
            if r.hwm_reset { "since the scenario started" } else { "process lifetime: reset failed" },
        );
        out += &format!(
            "steady publishing at {:.0} events/s for {:.0} s:\n{:<30} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}\n",
            r.load_rate, secs, "", "events/s", "p50 ms", "p99 ms", "p999 ms", "max ms", "errors"
        );
        let row = |name: &str, s: &Stats| {
            format!(
                "{:<30} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}\n",
                name,
                s.events_acked() as f64 / secs,
                ms(s.latency_us.value_at_quantile(0.50)),
                ms(s.latency_us.value_at_quantile(0.99)),
                ms(s.latency_us.value_at_quantile(0.999)),
                ms(s.latency_us.max()),
                s.errors,
            )
        };
        out += &row("no subscription", &r.baseline);
        out += &row(&format!("dead target owing {}", r.status_filled.pending), &r.loaded);
        let st = &r.status_after;
        out += &format!(
            "after: pending {}, lag {}, failed attempts {} ({:.0}/s during the load), dead letters {}, last error: {}",
            st.pending,
            st.lag,
            st.failed,
            r.attempts_per_s,
            st.dead_letters,
            st.last_error.as_deref().unwrap_or("-")
        );
        self.human(&out);
        let rss = |r: &PeakRss| json!({"current_kib": r.current_kib, "peak_kib": r.peak_kib});
        self.line(json!({
            "kind": "deliver_dead",
            "events": r.events,
            "pending_reached": r.pending_reached,
            "fill_s": r.fill_time.as_secs_f64(),
            "rss_start": rss(&r.rss_start),
            "rss_before": rss(&r.rss_before),
            "rss_filled": rss(&r.rss_filled),
            "rss_after": rss(&r.rss_after),
            "rss_max_sampled_kib": DEAD_PHASES.iter().zip(r.rss_max_kib)
                .map(|(phase, kib)| (phase.to_string(), json!(kib))).collect::<serde_json::Map<_, _>>(),
            "attempts_per_s": r.attempts_per_s,
            "hwm_reset": r.hwm_reset,
            "load_rate": r.load_rate,
            "load_duration_s": secs,
            "publish_baseline": stats_json(&r.baseline, secs),
            "publish_dead_target": stats_json(&r.loaded, secs),
            "status_filled": {"pending": r.status_filled.pending, "failed": r.status_filled.failed},
            "status_after": {
                "pending": st.pending, "lag": st.lag, "failed": st.failed, "dead_letters": st.dead_letters,
                "last_error": st.last_error,
            },
        }));
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_row(name: &str, count: u64, h: &hdrhistogram::Histogram<u64>) -> String {
    format!(
        "{:<26} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
        name,
        count,
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    )
}

/// A steady publish load's numbers, with the field names of `"kind": "publish"`.
fn stats_json(s: &Stats, secs: f64) -> serde_json::Value {
    let q = |quantile: f64| s.latency_us.value_at_quantile(quantile);
    json!({
        "requests": s.requests,
        "events_acked": s.events_acked(),
        "events_per_s": s.events_acked() as f64 / secs,
        "p50_us": q(0.50),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": s.latency_us.max(),
        "errors": s.errors,
        "overloaded": s.outcome.overloaded,
        "first_error": s.first_error,
    })
}

/// Closed loop: compare throughput. Open loop: everyone runs at the same
/// rate, so compare tail latency instead (lower is better, so it is inverted).
fn ratio_line(herald: &RunResult, other: &RunResult) -> String {
    let throughput = |r: &RunResult| r.stats.events_acked() as f64 / r.workload.duration.as_secs_f64();
    let p99 = |r: &RunResult| r.stats.latency_us.value_at_quantile(0.99) as f64;
    let name = other.target.name();
    if herald.workload.rate.is_some() {
        let ratio = p99(other) / p99(herald).max(1.0);
        format!("p99 {name} / herald = {ratio:.2}x\n")
    } else {
        let ratio = throughput(herald) / throughput(other).max(f64::MIN_POSITIVE);
        format!("herald / {name} = {ratio:.2}x (events/s)\n")
    }
}
