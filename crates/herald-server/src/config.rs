use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Live (SSE) readers at once; more are answered 503 with `Retry-After`.
    pub max_live_readers: usize,
    /// Which internal (loopback, private, link-local) addresses webhook
    /// deliveries may reach; none by default.
    pub egress: EgressPolicy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from("herald-data"),
            account: None,
            region: None,
            max_in_flight: 4096,
            max_live_readers: 512,
            egress: EgressPolicy::default(),
        }
    }
}
