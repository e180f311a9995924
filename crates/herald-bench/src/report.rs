//! Human-readable report and, with `--json`, one JSON line per result on
//! stdout (the human report then goes to stderr, so scripts can pipe stdout).

use serde_json::json;

use crate::disk::DiskResult;
use crate::machine::{Machine, PeakRss};
use crate::targets::{RunResult, Target};
use crate::workload::Workload;

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
