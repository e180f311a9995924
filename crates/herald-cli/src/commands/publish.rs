use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use herald_core::json;
use serde_json::{Map, Value};

use crate::args::PublishArgs;
use crate::client::Client;

/// Publishes one event from flags, or JSON lines in batches. Prints one JSON
/// result per event; exits 1 if any event was refused.
pub async fn run(server: &str, args: PublishArgs) -> Result<ExitCode> {
    let client = Client::new(server)?;
    let Some(file) = &args.file else {
        let event = event_from_flags(&args)?;
        let mut request = client.http().post(client.url("/v1/events")).json(&event);
        if let Some(key) = &args.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let (status, body) = client.send(request).await?;
        println!("{body}");
        return Ok(if status < 300 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    };

    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
        ))
    };
    let mut failed = 0usize;
    let mut batch = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.context("reading events")?;
        if line.trim().is_empty() {
            continue;
        }
        let event = json::parse(line.as_bytes()).with_context(|| format!("line {} is not JSON Herald reads", n + 1))?;
        batch.push(event);
        if batch.len() == args.batch as usize {
            failed += send_batch(&client, std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        failed += send_batch(&client, batch).await?;
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn send_batch(client: &Client, events: Vec<Value>) -> Result<usize> {
    let body = client.expect_ok(client.http().post(client.url("/v1/events")).json(&events)).await?;
    for result in body["results"].as_array().into_iter().flatten() {
        println!("{result}");
    }
    Ok(body["failed"].as_u64().unwrap_or(0) as usize)
}

fn event_from_flags(args: &PublishArgs) -> Result<Value> {
    let (Some(source), Some(detail_type)) = (&args.source, &args.detail_type) else {
        bail!("give --source and --detail-type (and --detail), or --file");
    };
    let detail: Value = match &args.detail {
        Some(d) => json::parse(d.as_bytes()).context("--detail is not JSON Herald reads")?,
        None => Value::Object(Map::new()),
    };
    let mut event = Map::new();
    event.insert("source".into(), source.clone().into());
    event.insert("detail-type".into(), detail_type.clone().into());
    event.insert("detail".into(), detail);
    for (name, value) in [("id", &args.id), ("stream", &args.stream), ("version", &args.version)] {
        if let Some(v) = value {
            event.insert(name.into(), v.clone().into());
        }
    }
    Ok(Value::Object(event))
}
