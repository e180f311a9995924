//! `herald-load`: one invocation publishes the same workload to Herald, NATS
//! JetStream (default and fsync-always) and PostgreSQL, then prints the
//! machine, a results table and throughput ratios relative to Herald.
//!
//! `herald-load disk --dir DIR` measures the disk's own limits (fdatasyncs/s
//! and sequential MiB/s), the ceiling every durable peer shares.
//!
//! `herald-load deliver --herald-pid PID` measures webhook delivery of a
//! running Herald: publish-to-delivery latency, fan-out to many
//! subscriptions, and memory and publish rate with a dead target.

/// The driver shares the machine with the peer it measures: every cycle it
/// spends is one the peer cannot. mimalloc, as in the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod deliver;
mod disk;
mod machine;
mod report;
mod targets;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::targets::{Endpoints, Target};
use crate::workload::Workload;

#[derive(Parser)]
#[command(name = "herald-load", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Measure the disk under DIR: fdatasyncs/s and sequential write MiB/s.
    Disk(DiskArgs),
    /// Webhook delivery of a running Herald: latency, fan-out, dead target.
    Deliver(DeliverArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Peers to load, one after the other, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "herald,jetstream,jetstream-sync,postgres")]
    targets: Vec<Target>,
    /// Concurrent publishers (one connection each for Herald and PostgreSQL).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured seconds per target, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load per target before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Events per request (Herald: a JSON array; JetStream: async publishes
    /// then await all acks; PostgreSQL: one INSERT ... SELECT unnest).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Open-loop run at this many events/s in total, spread over the workers,
    /// to measure latency at a given load instead of at peak.
    #[arg(long)]
    rate: Option<f64>,
    /// Share of published events that redeliver an id already acknowledged.
    #[arg(long, default_value_t = 0.1)]
    duplicates: f64,
    /// Approximate size of one event's JSON, in bytes.
    #[arg(long, default_value_t = 1100)]
    event_size: usize,
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    herald_url: String,
    /// Herald's pid: its peak RSS (VmHWM) is reported at the end.
    #[arg(long)]
    herald_pid: Option<u32>,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    jetstream_url: String,
    /// A nats-server whose jetstream block has `sync_interval: always`.
    #[arg(long, default_value = "nats://127.0.0.1:4223")]
    jetstream_sync_url: String,
    #[arg(long, default_value = "host=127.0.0.1 port=5432 user=postgres dbname=test")]
    postgres: String,
    /// Print JSON lines on stdout (one per result); the human report goes to stderr.
    #[arg(long)]
    json: bool,
    /// Tokio worker threads of the driver (it shares the machine with the peers).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct DiskArgs {
    /// Directory on the disk to measure (the peers' data directory).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Seconds of the 4 KiB write + fdatasync loop.
    #[arg(long, default_value_t = 3.0)]
    fsync_secs: f64,
    /// MiB written sequentially (1 MiB chunks, then fsync).
    #[arg(long, default_value_t = 1024)]
    seq_mib: u64,
    /// Print a JSON line on stdout; the human report goes to stderr.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DeliverArgs {
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    herald_url: String,
    /// The latency scenario's peer: the same load through NATS JetStream to
    /// a pull consumer. Leave empty to skip it.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    jetstream_url: String,
    /// Herald's pid: its RSS is sampled in the dead-target scenario.
    #[arg(long)]
    herald_pid: u32,
    /// Scenarios to run, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "latency,fanout,dead")]
    scenarios: Vec<deliver::Scenario>,
    /// Latency: open-loop events/s in total (one event per request).
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Latency: measured seconds, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Latency: seconds to wait for outstanding deliveries after publishing.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
    /// Concurrent publishers (one connection each) of the steady loads.
    #[arg(long, default_value_t = 8)]
    publishers: usize,
    /// Approximate size of one event's JSON, in bytes.
    #[arg(long, default_value_t = 1100)]
    event_size: usize,
    /// Fan-out: subscriptions, all to the receiver, each matching every event.
    #[arg(long, default_value_t = 100)]
    fanout_subscriptions: usize,
    /// Fan-out: events published (each owed to every subscription).
    #[arg(long, default_value_t = 2000)]
    fanout_events: u64,
    #[arg(long, default_value_t = 100)]
    fanout_batch: usize,
    /// Fan-out: seconds to wait for all deliveries.
    #[arg(long, default_value_t = 300.0)]
    fanout_timeout: f64,
    /// Dead target: events owed to the dead subscription before measuring.
    #[arg(long, default_value_t = 10_000)]
    dead_events: u64,
    /// Dead target: steady publish rate (events/s) with and without it.
    #[arg(long, default_value_t = 1000.0)]
    dead_rate: f64,
    /// Dead target: seconds of each steady load.
    #[arg(long, default_value_t = 10.0)]
    dead_duration: f64,
    /// Dead target: seconds to wait for `status.pending` to reach the events.
    #[arg(long, default_value_t = 120.0)]
    dead_timeout: f64,
    /// Print JSON lines on stdout (one per scenario); the human report goes to stderr.
    #[arg(long)]
    json: bool,
    /// Tokio worker threads of the driver (it shares the machine with Herald).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Disk(args)) => run_disk(args),
        Some(Command::Deliver(args)) => run_deliver(args),
        None => run_load(cli.run),
    }
}

fn run_disk(args: DiskArgs) -> anyhow::Result<()> {
    let out = report::Output::new(args.json);
    let machine = machine::Machine::detect();
    out.machine(&machine);
    let result = disk::measure(&args.dir, Duration::from_secs_f64(args.fsync_secs), args.seq_mib)?;
    out.disk(&result);
    Ok(())
}

fn run_deliver(args: DeliverArgs) -> anyhow::Result<()> {
    let positive = [
        args.rate,
        args.duration,
        args.drain_timeout,
        args.fanout_timeout,
        args.dead_rate,
        args.dead_duration,
        args.dead_timeout,
    ];
    if positive.iter().any(|v| !(*v > 0.0 && v.is_finite())) || !(0.0..1e6).contains(&args.warmup) {
        bail!("rates, durations and timeouts must be positive, --warmup not negative");
    }
    let secs = Duration::from_secs_f64;
    let config = deliver::DeliverConfig {
        herald_url: args.herald_url,
        jetstream_url: Some(args.jetstream_url).filter(|u| !u.is_empty()),
        herald_pid: args.herald_pid,
        scenarios: args.scenarios,
        publishers: args.publishers,
        event_size: args.event_size,
        rate: args.rate,
        duration: secs(args.duration),
        warmup: secs(args.warmup),
        drain_timeout: secs(args.drain_timeout),
        fanout_subscriptions: args.fanout_subscriptions,
        fanout_events: args.fanout_events,
        fanout_batch: args.fanout_batch,
        fanout_timeout: secs(args.fanout_timeout),
        dead_events: args.dead_events,
        dead_rate: args.dead_rate,
        dead_duration: secs(args.dead_duration),
        dead_timeout: secs(args.dead_timeout),
    };

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build().context("starting the tokio runtime")?;

    let out = report::Output::new(args.json);
    out.machine(&machine::Machine::detect());
    runtime.block_on(deliver::run(&config, &out))
}

fn run_load(args: RunArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.batch == 0 || args.batch > 1000 {
        bail!("--concurrency must be at least 1 and --batch between 1 and 1000");
    }
    if !(0.0..1.0).contains(&args.duplicates) {
        bail!("--duplicates must be in [0, 1)");
    }
    if args.duration <= 0.0 || args.warmup < 0.0 || args.rate.is_some_and(|r| r <= 0.0) {
        bail!("--duration and --rate must be positive, --warmup not negative");
    }
    let workload = Workload {
        concurrency: args.concurrency,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        batch: args.batch,
        rate: args.rate,
        duplicates: args.duplicates,
        event_size: args.event_size,
    };
    let endpoints = Endpoints {
        herald_url: args.herald_url,
        jetstream_url: args.jetstream_url,
        jetstream_sync_url: args.jetstream_sync_url,
        postgres: args.postgres,
    };

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build().context("starting the tokio runtime")?;

    let out = report::Output::new(args.json);
    out.machine(&machine::Machine::detect());
    out.workload(&workload);

    let mut results = Vec::new();
    let mut failed_targets = Vec::new();
    for (i, &target) in args.targets.iter().enumerate() {
        if i > 0 {
            // Let the previous peer's background flushing settle before the next one.
            std::thread::sleep(Duration::from_secs(1));
        }
        out.progress(&format!("running {} ...", target.name()));
        match runtime.block_on(targets::run(target, &endpoints, &workload)) {
            Ok(result) => {
                out.result(&result);
                results.push(result);
            }
            Err(err) => {
                out.progress(&format!("{}: FAILED: {err:#}", target.name()));
                failed_targets.push(target.name());
            }
        }
    }
    out.table(&results);
    if let Some(pid) = args.herald_pid {
        match machine::peak_rss(pid) {
            Ok(rss) => out.rss("herald", &rss),
            Err(err) => out.progress(&format!("herald peak RSS: {err:#}")),
        }
    }
    if !failed_targets.is_empty() {
        bail!("targets failed: {}", failed_targets.join(", "));
    }
    Ok(())
}
