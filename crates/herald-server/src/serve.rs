//! Running the server: open the store, listen, and on SIGTERM or Ctrl-C stop
//! taking connections, finish in-flight requests, commit queued writes, exit.

use std::sync::Arc;

use herald_store::Store;
use herald_store::sqlite::{SqliteConfig, SqliteStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::dispatch::Dispatcher;
use crate::dispatch::webhook::WebhookClient;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] herald_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves until SIGTERM or Ctrl-C, then drains. Prints `listening on ADDR`
/// once ready (tests and scripts wait for that line).
pub async fn serve(config: ServerConfig) -> Result<(), ServeError> {
    crate::metrics::handle();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data_dir, SqliteConfig::default())?);
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr()?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    let dispatcher = Dispatcher::start(
        store.clone(),
        WebhookClient::new(config.egress.clone(), config.max_deliveries_in_flight),
        shutdown.clone(),
    )
    .await?;
    let state = AppState::new(store.clone(), config, dispatcher.clone(), shutdown).await?;
    let app = crate::router(state.clone());

    let upkeep = crate::metrics::spawn_upkeep();
    println!("listening on {addr}");
    tracing::info!(%addr, "listening");
    crate::connections::serve(listener, app, &state.config, async move {
        stop_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = shutdown_tx.send(true);
    })
    .await;
    // Workers record their last attempts before the store closes.
    dispatcher.stopped().await;
    store.close().await;
    upkeep.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
