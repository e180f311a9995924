//! The peers under test. Each module sets its peer up for a clean run
//! (fresh stream or table), opens one publisher per worker, and cleans up.

pub mod herald;
pub mod jetstream;
mod postgres;

use std::net::IpAddr;

use anyhow::{Context, bail};

use crate::workload::{self, Event, Outcome, Publisher, Stats, Workload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Herald over HTTP: POST /v1/events.
    Herald,
    /// The running nats-server: acknowledges before fsync.
    Jetstream,
    /// A nats-server with `sync_interval: always`: fsync before each ack.
    JetstreamSync,
    /// INSERT ... ON CONFLICT DO NOTHING, one statement per publish.
    Postgres,
    /// No peer: acknowledges at once. Shows the driver's own ceiling and
    /// the latency it adds (timers, scheduling) on this machine.
    Null,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Herald => "herald",
            Target::Jetstream => "jetstream",
            Target::JetstreamSync => "jetstream-sync",
            Target::Postgres => "postgres",
            Target::Null => "null",
        }
    }
}

pub struct Endpoints {
    pub herald_url: String,
    pub jetstream_url: String,
    pub jetstream_sync_url: String,
    pub postgres: String,
}

/// One target's measured run.
pub struct RunResult {
    pub target: Target,
    pub workload: Workload,
    pub stats: Stats,
}

pub async fn run(target: Target, endpoints: &Endpoints, workload: &Workload) -> anyhow::Result<RunResult> {
    let stats = match target {
        Target::Herald => {
            let publishers = herald::connect(&endpoints.herald_url, workload.concurrency).await?;
            workload::run(publishers, workload).await?
        }
        Target::Jetstream | Target::JetstreamSync => {
            let url =
                if target == Target::Jetstream { &endpoints.jetstream_url } else { &endpoints.jetstream_sync_url };
            let stream = jetstream::BenchStream::create(url, workload).await?;
            let stats = workload::run(stream.publishers(workload.concurrency), workload).await;
            stream.delete().await?;
            stats?
        }
        Target::Postgres => {
            let table = postgres::BenchTable::create(&endpoints.postgres).await?;
            let publishers = postgres::connect(&endpoints.postgres, workload.concurrency, workload.batch).await?;
            let stats = workload::run(publishers, workload).await;
            table.drop_table().await?;
            stats?
        }
        Target::Null => {
            let publishers = (0..workload.concurrency).map(|_| NullPublisher).collect();
            workload::run::<NullPublisher>(publishers, workload).await?
        }
    };
    Ok(RunResult { target, workload: workload.clone(), stats })
}

pub struct NullPublisher;

impl Publisher for NullPublisher {
    async fn publish(&mut self, events: &[Event]) -> anyhow::Result<Outcome> {
        let duplicates = events.iter().filter(|e| e.redelivery).count() as u64;
        Ok(Outcome { stored: events.len() as u64 - duplicates, duplicates, ..Outcome::default() })
    }
}

/// The driver only loads peers on this machine: refuse anything that is not
/// a loopback address, so a typo cannot point a load test at someone else.
fn ensure_loopback(host: &str) -> anyhow::Result<()> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    let ip: IpAddr = host.parse().with_context(|| format!("{host:?} is not an IP address or localhost"))?;
    if !ip.is_loopback() {
        bail!("{host} is not a loopback address; the load driver only targets this machine");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_accepted() {
        assert!(ensure_loopback("127.0.0.1").is_ok());
        assert!(ensure_loopback("[::1]").is_ok());
        assert!(ensure_loopback("localhost").is_ok());
        assert!(ensure_loopback("10.0.0.1").is_err());
        assert!(ensure_loopback("example.com").is_err());
    }
}
