//! Command-line arguments. Every flag also reads a `HERALD_*` variable; a flag
//! wins. `serve`'s can also come from a file (see [`crate::config_file`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use herald_core::network::Network;

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = "Durable, idempotent event backbone")]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the client commands find the server, and how long they wait for it.
#[derive(Debug, Args)]
pub struct Connection {
    /// The Herald server the client commands talk to.
    #[arg(long, global = true, env = "HERALD_SERVER", default_value = "http://127.0.0.1:8787")]
    pub server: String,
    /// Seconds a client command waits to connect to the server, and then
    /// for its whole answer (`tail`'s stream has no end: a connection
    /// silent for 45 s is given up instead, and tail reconnects).
    #[arg(long, global = true, env = "HERALD_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server on the embedded store.
    Serve(ServeArgs),
    /// Check the integrity of a data directory (run it with the server stopped).
    Check(CheckArgs),
    /// Publish events: one from flags, or many as JSON lines from a file or stdin.
    Publish(PublishArgs),
    /// Read stored events.
    Events(EventsArgs),
    /// Follow the log as events arrive.
    Tail(TailArgs),
    /// Manage subscriptions.
    Subs(SubsArgs),
    /// A subscription's dead letters.
    Dlq(DlqArgs),
    /// Deliver a stored range of events to a subscription again.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct SubsArgs {
    #[command(subcommand)]
    pub command: SubsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SubsCommand {
    /// One line per subscription: state, lag, pending, delivered, failed, dead letters.
    List,
    /// Print a subscription with its status.
    Get {
        name: String,
    },
    /// Create or update a subscription from a JSON declaration (file, or stdin).
    Apply {
        name: String,
        #[arg(long, short)]
        file: Option<String>,
    },
    Delete {
        name: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Recent delivery attempts, newest first.
    Attempts {
        name: String,
        #[arg(long)]
        event_id: Option<String>,
        /// delivered, failed, dead or gone.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    List {
        name: String,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Put dead letters back for delivery: the given event ids, or all.
    Redrive { name: String, ids: Vec<String> },
    /// Delete dead letters: the given event ids, or all.
    Purge { name: String, ids: Vec<String> },
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    pub name: String,
    /// First position to replay (default 1).
    #[arg(long, conflicts_with = "from_time")]
    pub from_position: Option<u64>,
    /// Replay events whose time is at or after this (RFC 3339).
    #[arg(long)]
    pub from_time: Option<String>,
    /// Last position to replay (default: the head).
    #[arg(long, conflicts_with = "to_time")]
    pub to_position: Option<u64>,
    /// Replay events whose time is before this (RFC 3339).
    #[arg(long)]
    pub to_time: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Where the embedded store keeps its file.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    pub data_dir: PathBuf,
    /// `account` for events published through AWS PutEvents.
    #[arg(long, env = "HERALD_ACCOUNT")]
    pub account: Option<String>,
    /// `region` for PutEvents events whose signature names none.
    #[arg(long, env = "HERALD_REGION")]
    pub region: Option<String>,
    /// Requests handled at once before answering 503.
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Connections open at once before answering 503; lowered at start-up
    /// to fit the open-file limit (`ulimit -Hn`).
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Connections open at once from one client (an IPv4 address or an
    /// IPv6 /64) before answering 503; by default half of --max-connections.
    /// Behind a proxy every client is the proxy: raise it to --max-connections.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_CLIENT", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_client: Option<u32>,
    /// Seconds a client has to send a request's headers; a keep-alive
    /// connection idle that long is closed too.
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout: u64,
    /// Seconds a request's body has to arrive in full, once its headers have
    /// (408 past that).
    #[arg(long, env = "HERALD_BODY_READ_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_read_timeout: u64,
    /// Seconds a write may wait for the client to read any of its answer;
    /// past that the connection is closed.
    #[arg(long, env = "HERALD_SEND_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub send_timeout: u64,
    /// Seconds connections have, after SIGTERM, to finish the requests they
    /// are serving; past that those still open are closed. Queued writes are
    /// committed either way.
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_timeout: u64,
    /// MiB of request bodies held in memory at once, over all requests: their
    /// bytes and, once whole, an estimate of what parsing them takes (48 to
    /// 4,095). A body arriving past it gets a 503; one that alone would take
    /// more, a 413.
    #[arg(long, env = "HERALD_MAX_BODY_BUFFER_MIB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(mib(herald_server::body::MIN_BODY_BUDGET)..=4095))]
    pub max_body_buffer_mib: u32,
    /// MiB of responses carrying events held in memory until their clients
    /// read them, over all requests (16 to 4,095). A read past it gets a 503
    /// with Retry-After; a live stream waits.
    #[arg(long, env = "HERALD_MAX_RESPONSE_BUFFER_MIB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(mib(herald_server::response::MIN_RESPONSE_BUDGET)..=4095))]
    pub max_response_buffer_mib: u32,
    /// Live streams (`GET /v1/events/live`) open at once before answering
    /// 503; one client holds at most the part of them it may hold of the
    /// connections (half, by default).
    #[arg(long, env = "HERALD_MAX_LIVE_READERS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_live_readers: u32,
    /// Webhook deliveries in flight at once, over every subscription (each
    /// has its own `concurrency`, and takes at most half of these).
    #[arg(long, env = "HERALD_MAX_DELIVERIES_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_deliveries_in_flight: u32,
    /// Let webhook deliveries reach every internal address (loopback,
    /// private, link-local). Off by default: a subscription must not be a way
    /// into the machine's own network.
    #[arg(long, env = "HERALD_ALLOW_PRIVATE_TARGETS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_private_targets: bool,
    /// Internal networks webhook deliveries may reach (CIDR, comma-separated), e.g. 10.1.0.0/16.
    #[arg(long, env = "HERALD_ALLOWED_TARGET_NETWORKS", value_delimiter = ',', value_parser = parse_network)]
    pub allowed_target_networks: Vec<Network>,
    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A TOML file of these settings, keyed by the flags' names
    /// (`max-connections = 5000`); flags and `HERALD_*` variables win over it.
    /// Default: `./herald.toml` if it exists. Relative paths in it are
    /// relative to the working directory, as on the command line.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "./herald-data")]
    pub data_dir: PathBuf,
    /// The config file `serve` reads, for its `data-dir`.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Read events as JSON lines from this file (`-` for stdin) instead of flags.
    ///
    /// Prints one JSON result per line read, in order. A line not published
    /// (an event the server refused, or a line that is not JSON) is
    /// `{"line": N, "error": {...}}`, its pointers into that line's event;
    /// publishing carries on past it, and the exit status is then 1.
    #[arg(long, short, conflicts_with_all = ["source", "detail_type", "detail"])]
    pub file: Option<PathBuf>,
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub detail_type: Option<String>,
    /// The event's detail, a JSON object.
    #[arg(long)]
    pub detail: Option<String>,
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub stream: Option<String>,
    #[arg(long)]
    pub version: Option<String>,
    /// Sent as the Idempotency-Key header (one event from flags; each line
    /// of a file names its own `id`).
    #[arg(long, conflicts_with = "file")]
    pub idempotency_key: Option<String>,
    /// Events per request when reading JSON lines (fewer when they would
    /// make a body over the server's 10 MiB limit).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: u16,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print one event.
    Get { id: String },
    /// Print a page of events as JSON lines (and the `next` position on stderr).
    List(Filter),
}

/// A page of the log: where it starts, how long it is, which events.
#[derive(Debug, Args, Default)]
pub struct Filter {
    #[arg(long)]
    pub after: Option<u64>,
    #[arg(long)]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub selection: Selection,
}

impl Filter {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(a) = self.after {
            q.push(("after", a.to_string()));
        }
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        q.extend(self.selection.query());
        q
    }
}

/// Which events to read.
#[derive(Debug, Args, Default)]
pub struct Selection {
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub detail_type: Option<String>,
    #[arg(long)]
    pub stream: Option<String>,
}

impl Selection {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        [("source", &self.source), ("detail-type", &self.detail_type), ("stream", &self.stream)]
            .into_iter()
            .filter_map(|(name, value)| Some((name, value.clone()?)))
            .collect()
    }
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Print events after this position (default: those published from now on).
    #[arg(long)]
    pub after: Option<u64>,
    #[command(flatten)]
    pub selection: Selection,
}

fn parse_network(text: &str) -> Result<Network, String> {
    Network::parse(text)
}

/// A flag's lowest value in MiB, from the budget's own minimum in bytes.
const fn mib(bytes: usize) -> i64 {
    (bytes >> 20) as i64
}
