use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use futures_util::StreamExt;

use crate::args::TailArgs;
use crate::client::Client;

/// Follows `/v1/events/live`, printing each event as a JSON line. Reconnects
/// after a dropped connection, resuming after the last position printed.
pub async fn run(server: &str, args: TailArgs) -> Result<ExitCode> {
    let client = Client::new(server)?;
    let mut after = args.filter.after;
    loop {
        let mut query = args.filter.query();
        query.retain(|(k, _)| *k != "after" && *k != "limit");
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        let response = match client.http().get(client.url("/v1/events/live")).query(&query).send().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("disconnected ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if !response.status().is_success() {
            bail!("HTTP {}: {}", response.status(), response.text().await.unwrap_or_default());
        }
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        after = id.trim().parse().ok().or(after);
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                if !data.is_empty() {
                    println!("{data}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
