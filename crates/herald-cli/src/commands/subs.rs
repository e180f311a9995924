//! `herald subs`, `herald dlq` and `herald replay`: subscriptions from the
//! command line, as thin calls to `/v1/subscriptions`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::events::encode_segment;
use crate::args::{Connection, DlqArgs, DlqCommand, ReplayArgs, SubsArgs, SubsCommand};
use crate::client::Client;

fn path(name: &str, rest: &str) -> Result<String> {
    Ok(format!("/v1/subscriptions/{}{rest}", encode_segment(name)?))
}

fn print(value: &Value) -> Result<()> {
    super::print_line(format_args!("{}", serde_json::to_string_pretty(value)?))?;
    Ok(())
}

pub async fn subs(connection: &Connection, args: SubsArgs) -> Result<ExitCode> {
    let client = Client::new(connection)?;
    let http = client.http();
    let answer = match args.command {
        SubsCommand::List => {
            let all = client.expect_ok(http.get(client.url("/v1/subscriptions"))).await?;
            for s in all["subscriptions"].as_array().into_iter().flatten() {
                let st = &s["status"];
                super::print_line(format_args!(
                    "{}\t{}\tlag {}\tpending {}\tdelivered {}\tfailed {}\tdead {}",
                    s["name"].as_str().unwrap_or(""),
                    s["state"].as_str().unwrap_or(""),
                    st["lag"],
                    st["pending"],
                    st["delivered"],
                    st["failed"],
                    st["dead_letters"]
                ))?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        SubsCommand::Get { name } => client.expect_ok(http.get(client.url(&path(&name, "")?))).await?,
        SubsCommand::Apply { name, file } => {
            let text = match file.as_deref() {
                None | Some("-") => std::io::read_to_string(std::io::stdin()).context("reading stdin")?,
                Some(f) => std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?,
            };
            let spec = herald_core::json::parse(text.as_bytes()).context("the declaration is not JSON Herald reads")?;
            client.expect_ok(http.put(client.url(&path(&name, "")?)).json(&spec)).await?
        }
        SubsCommand::Delete { name } => {
            client.expect_ok(http.delete(client.url(&path(&name, "")?))).await?;
            json!({"deleted": name})
        }
        SubsCommand::Pause { name } => client.expect_ok(http.post(client.url(&path(&name, "/pause")?))).await?,
        SubsCommand::Resume { name } => client.expect_ok(http.post(client.url(&path(&name, "/resume")?))).await?,
        SubsCommand::Attempts { name, event_id, outcome, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(event_id.map(|id| ("event_id", id)));
            query.extend(outcome.map(|o| ("outcome", o)));
            client.expect_ok(http.get(client.url(&path(&name, "/attempts")?)).query(&query)).await?
        }
    };
    print(&answer)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq(connection: &Connection, args: DlqArgs) -> Result<ExitCode> {
    let client = Client::new(connection)?;
    let http = client.http();
    let selection = |ids: Vec<String>| if ids.is_empty() { json!({}) } else { json!({ "ids": ids }) };
    let answer = match args.command {
        DlqCommand::List { name, after, limit } => {
            let query = [("after", after.to_string()), ("limit", limit.to_string())];
            client.expect_ok(http.get(client.url(&path(&name, "/dead-letters")?)).query(&query)).await?
        }
        DlqCommand::Redrive { name, ids } => {
            let request = http.post(client.url(&path(&name, "/dead-letters/redrive")?));
            let request = if ids.is_empty() { request } else { request.json(&selection(ids)) };
            client.expect_ok(request).await?
        }
        DlqCommand::Purge { name, ids } => {
            let request = http.delete(client.url(&path(&name, "/dead-letters")?));
            let request = if ids.is_empty() { request } else { request.json(&selection(ids)) };
            client.expect_ok(request).await?
        }
    };
    print(&answer)?;
    Ok(ExitCode::SUCCESS)
}

/// Positions replayed per request when the range is given by positions, so
/// a long replay shows progress and no single request runs long.
const REPLAY_CHUNK: u64 = 20_000;

pub async fn replay(connection: &Connection, args: ReplayArgs) -> Result<ExitCode> {
    let client = Client::new(connection)?;
    let url = client.url(&path(&args.name, "/replay")?);
    let send = |request: Value| client.expect_ok(client.http().post(&url).json(&request));
    if args.from_time.is_some() || args.to_time.is_some() {
        // Time bounds are resolved by the server: one request.
        let from = match (&args.from_time, args.from_position) {
            (Some(time), _) => json!({ "time": time }),
            (None, position) => json!({ "position": position.unwrap_or(1) }),
        };
        let mut request = json!({ "from": from });
        match (&args.to_time, args.to_position) {
            (Some(time), _) => request["to"] = json!({ "time": time }),
            (None, Some(position)) => request["to"] = json!({ "position": position }),
            (None, None) => {}
        }
        print(&send(request).await?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let ready = client.expect_ok(client.http().get(client.url("/readyz"))).await?;
    let head = ready["head"].as_u64().context("the server did not say where its log ends")?;
    let first = args.from_position.unwrap_or(1).max(1);
    let last = args.to_position.unwrap_or(head).min(head);
    let mut total = json!({"from": first, "to": last, "scanned": 0, "matched": 0, "enqueued": 0});
    let mut from = first;
    while from <= last {
        let to = (from + REPLAY_CHUNK - 1).min(last);
        let report = send(json!({"from": {"position": from}, "to": {"position": to}})).await?;
        for key in ["scanned", "matched", "enqueued"] {
            total[key] = json!(total[key].as_u64().unwrap_or(0) + report[key].as_u64().unwrap_or(0));
        }
        let done = to - first + 1;
        let share = 100 * done / (last - first + 1);
        eprint!("\r{} {done}/{} positions ({share}%), {} enqueued", bar(share), last - first + 1, total["enqueued"]);
        from = to + 1;
    }
    eprintln!();
    print(&total)?;
    Ok(ExitCode::SUCCESS)
}

fn bar(percent: u64) -> String {
    let filled = (percent / 5) as usize;
    format!("[{}{}]", "#".repeat(filled), ".".repeat(20 - filled))
}
