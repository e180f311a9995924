//! What the numbers were measured on, and a process's peak memory.

use anyhow::Context;

pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_total_mib: u64,
}

impl Machine {
    /// Best effort: a field that cannot be read says "unknown".
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: proc_field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |k| k.trim().to_string()),
            mem_total_mib: proc_kib(&meminfo, "MemTotal").map_or(0, |kib| kib / 1024),
        }
    }
}

pub struct PeakRss {
    pub pid: u32,
    /// VmHWM: the resident set's high-water mark over the process's life.
    pub peak_kib: u64,
    pub current_kib: u64,
}

pub fn peak_rss(pid: u32) -> anyhow::Result<PeakRss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(PeakRss {
        pid,
        peak_kib: proc_kib(&status, "VmHWM").context("no VmHWM line")?,
        current_kib: proc_kib(&status, "VmRSS").unwrap_or(0),
    })
}

/// The value of the first `key: value` line of a /proc file.
fn proc_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// A `key:   1234 kB` line, in KiB.
fn proc_kib(text: &str, key: &str) -> Option<u64> {
    proc_field(text, key)?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_fields() {
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(proc_kib(status, "VmHWM"), Some(20480));
        assert_eq!(proc_field("model name\t: AMD EPYC\n", "model name").as_deref(), Some("AMD EPYC"));
    }

    #[test]
    fn reads_own_peak_rss() {
        let rss = peak_rss(std::process::id()).unwrap();
        assert!(rss.peak_kib >= rss.current_kib && rss.peak_kib > 0);
    }
}
