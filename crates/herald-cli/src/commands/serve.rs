use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use herald_server::ServerConfig;
use herald_server::dispatch::webhook::EgressPolicy;
use tracing_subscriber::EnvFilter;

use crate::args::{LogFormat, ServeArgs};

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let filter = EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if let Some(file) = &args.config {
        tracing::info!(file = %file.display(), "settings read from a config file (flags and HERALD_* variables win)");
    }
    let config = ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        account: args.account,
        region: args.region,
        max_in_flight: args.max_in_flight,
        max_connections: args.max_connections as usize,
        max_connections_per_client: args.max_connections_per_client.map(|n| n as usize),
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        body_read_timeout: Duration::from_secs(args.body_read_timeout),
        send_timeout: Duration::from_secs(args.send_timeout),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        max_body_buffer: (args.max_body_buffer_mib as usize) << 20,
        max_response_buffer: (args.max_response_buffer_mib as usize) << 20,
        max_live_readers: args.max_live_readers as usize,
        max_deliveries_in_flight: args.max_deliveries_in_flight as usize,
        egress: EgressPolicy { allow_internal: args.allow_private_targets, allowed: args.allowed_target_networks },
    };
    herald_server::serve(config).await?;
    Ok(ExitCode::SUCCESS)
}
