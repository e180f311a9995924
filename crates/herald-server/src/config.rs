use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::dispatch::webhook::EgressPolicy;

/// Everything `herald serve` can be told. Every default is safe for a laptop.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `account` given to events that arrive without one through AWS PutEvents.
    pub account: Option<String>,
    /// `region` given to PutEvents events when the request's signature names none.
    pub region: Option<String>,
    /// Requests handled at once; more are answered 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// Connections open at once; more are answered 503 with `Retry-After`.
    pub max_connections: usize,
    /// Connections open at once from one client (an IPv4 address or an
    /// IPv6 /64); `None`: half of `max_connections`.
    pub max_connections_per_client: Option<usize>,
    /// Time a client has to send a request's head; a keep-alive connection
    /// idle this long is closed too.
    pub header_read_timeout: Duration,
    /// Time a request's body has to arrive in full, once its head has.
    pub body_read_timeout: Duration,
    /// Time a write may wait for the client to read any of its answer; past
    /// it the connection is closed.
    pub send_timeout: Duration,
    /// Time connections have, once shutdown begins, to finish what they
    /// are serving; past it those still open are closed.
    pub shutdown_timeout: Duration,
    /// Bytes of request bodies held in memory at once, with what parsing
    /// them takes (at least `body::MIN_BODY_BUDGET`); a body arriving past it
    /// is answered 503 with `Retry-After`, one that alone would take more 413.
    pub max_body_buffer: usize,
    /// Bytes of responses carrying events held in memory until their
    /// clients read them (at least `response::MIN_RESPONSE_BUDGET`); a read
    /// past it is answered 503 with `Retry-After`, a live stream waits.
    pub max_response_buffer: usize,
    /// Live (SSE) readers at once, and from one client the part of them it
    /// may hold of the connections; more are answered 503 with `Retry-After`.
    pub max_live_readers: usize,
    /// Webhook deliveries in flight at once, over every subscription.
    pub max_deliveries_in_flight: usize,
    /// Which internal (loopback, private, link-local) addresses webhook
    /// deliveries may reach; none by default.
    pub egress: EgressPolicy,
}

impl ServerConfig {
    /// Connections one client may hold of `connections` (half by default).
    pub fn connections_per_client(&self, connections: usize) -> usize {
        self.max_connections_per_client.unwrap_or(connections / 2).clamp(1, connections.max(1))
    }

    /// A client's part of `total` (the response budget, the live readers):
    /// the part of all connections it may hold (half, by default).
    pub fn client_part(&self, total: usize) -> usize {
        let connections = self.max_connections.max(1);
        let per_client = self.connections_per_client(connections);
        (total as u128 * per_client as u128 / connections as u128) as usize
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from("herald-data"),
            account: None,
            region: None,
            max_in_flight: 4096,
            max_connections: 10_000,
            max_connections_per_client: None,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(20),
            max_body_buffer: 256 << 20,
            max_response_buffer: 256 << 20,
            max_live_readers: 512,
            max_deliveries_in_flight: 1024,
            egress: EgressPolicy::default(),
        }
    }
}
