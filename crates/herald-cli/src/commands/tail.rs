use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;

use crate::args::{Connection, TailArgs};
use crate::client::Client;

/// Follows `/v1/events/live`, printing each event as a JSON line. Reconnects
/// after a dropped connection, resuming after the last position seen: or,
/// before any, where it started (the head when it first connected, without
/// `--after`), so events published while it reconnects are printed too.
pub async fn run(connection: &Connection, args: TailArgs) -> Result<ExitCode> {
    let client = Client::streaming(connection)?;
    let mut after = args.after;
    loop {
        let from = match after {
            Some(position) => position,
            None => match head(&client).await {
                Ok(head) => head,
                Err(e) => {
                    eprintln!("cannot learn where the log ends ({e:#}); retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        after = Some(from);
        let mut query = args.selection.query();
        query.push(("after", from.to_string()));
        let response = match client.http().get(client.url("/v1/events/live")).query(&query).send().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("disconnected ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Overloaded (every live stream taken, say) is a while, not an end.
        if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
            let wait = Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 60));
            eprintln!("the server is busy (503); retrying in {} s", wait.as_secs());
            tokio::time::sleep(wait).await;
            continue;
        }
        if !response.status().is_success() {
            bail!("HTTP {}: {}", response.status(), response.text().await.unwrap_or_default());
        }
        follow(response, &mut after).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The position the log ends at: where the live stream starts without `after`.
async fn head(client: &Client) -> Result<u64> {
    let ready = client.expect_ok(client.answer(client.http().get(client.url("/readyz")))).await?;
    ready["head"].as_u64().context("the server did not say where its log ends")
}

/// Prints the stream's events until it ends (or its connection falls
/// silent), keeping the last position in `after`.
async fn follow(response: reqwest::Response, after: &mut Option<u64>) -> Result<()> {
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
                    *after = id.trim().parse().ok().or(*after);
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            if !data.is_empty() {
                super::print_line(format_args!("{data}"))?;
            }
        }
    }
    Ok(())
}
