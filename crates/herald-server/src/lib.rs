//! Herald's server: the HTTP API over the store.
//!
//! - [`api`]: thin axum handlers, one module per resource, mapped onto
//! - [`ingest`]: validate -> identify -> append, shared by every way in
//!   (native JSON, CloudEvents, AWS PutEvents);
//! - [`dispatch`]: per-subscription workers delivering to webhook targets;
//! - [`problem`]: the one place errors become RFC 9457 problem+json;
//! - [`body`] and [`response`]: the memory request and response bodies may hold;
//! - [`client`]: who a request comes from, and what each client may hold;
//! - [`serve`]: start-up, shutdown and the store's lifetime;
//! - [`connections`]: accepting connections, their limits, draining.

pub mod api;
pub mod body;
pub mod client;
pub mod config;
pub mod connections;
pub mod dispatch;
pub mod ingest;
pub mod metrics;
pub mod problem;
pub mod response;
pub mod serve;
pub mod state;

pub use api::router;
pub use config::ServerConfig;
pub use serve::serve;
pub use state::AppState;
