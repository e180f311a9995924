//! `herald subs`, `herald dlq` and `herald replay`: subscriptions from the
//! command line, as thin calls to `/v1/subscriptions`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::events::encode_segment;
use crate::args::{DlqArgs, DlqCommand, ReplayArgs, SubsArgs, SubsCommand};
use crate::client::Client;

fn path(name: &str, rest: &str) -> String {
    format!("/v1/subscriptions/{}{rest}", encode_segment(name))
}

fn print(value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn subs(server: &str, args: SubsArgs) -> Result<ExitCode> {
    let client = Client::new(server)?;
    let http = client.http();
    let answer = match args.command {
        SubsCommand::List => {
            let all = client.expect_ok(http.get(client.url("/v1/subscriptions"))).await?;
            for s in all["subscriptions"].as_array().into_iter().flatten() {
                let st = &s["status"];
                println!(
                    "{}\t{}\tlag {}\tpending {}\tdelivered {}\tfailed {}\tdead {}",
                    s["name"].as_str().unwrap_or(""),
                    s["state"].as_str().unwrap_or(""),
                    st["lag"],
                    st["pending"],
                    st["delivered"],
                    st["failed"],
                    st["dead_letters"]
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        SubsCommand::Get { name } => client.expect_ok(http.get(client.url(&path(&name, "")))).await?,
        SubsCommand::Apply { name, file } => {
            let text = match file.as_deref() {
                None | Some("-") => std::io::read_to_string(std::io::stdin()).context("reading stdin")?,
                Some(f) => std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?,
            };
            let spec: Value = serde_json::from_str(&text).context("the declaration is not JSON")?;
            client.expect_ok(http.put(client.url(&path(&name, ""))).json(&spec)).await?
        }
        SubsCommand::Delete { name } => {
            client.expect_ok(http.delete(client.url(&path(&name, "")))).await?;
            json!({"deleted": name})
        }
        SubsCommand::Pause { name } => client.expect_ok(http.post(client.url(&path(&name, "/pause")))).await?,
        SubsCommand::Resume { name } => client.expect_ok(http.post(client.url(&path(&name, "/resume")))).await?,
        SubsCommand::Attempts { name, event_id, outcome, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(event_id.map(|id| ("event_id", id)));
            query.extend(outcome.map(|o| ("outcome", o)));
            client.expect_ok(http.get(client.url(&path(&name, "/attempts"))).query(&query)).await?
        }
    };
    print(&answer)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq(server: &str, args: DlqArgs) -> Result<ExitCode> {
    let client = Client::new(server)?;
    let http = client.http();
    let selection = |ids: Vec<String>| if ids.is_empty() { json!({}) } else { json!({ "ids": ids }) };
    let answer = match args.command {
        DlqCommand::List { name, after, limit } => {
            let query = [("after", after.to_string()), ("limit", limit.to_string())];
            client.expect_ok(http.get(client.url(&path(&name, "/dead-letters"))).query(&query)).await?
        }
        DlqCommand::Redrive { name, ids } => {
            let request = http.post(client.url(&path(&name, "/dead-letters/redrive")));
            let request = if ids.is_empty() { request } else { request.json(&selection(ids)) };
            client.expect_ok(request).await?
        }
        DlqCommand::Purge { name, ids } => {
            let request = http.delete(client.url(&path(&name, "/dead-letters")));
            let request = if ids.is_empty() { request } else { request.json(&selection(ids)) };
            client.expect_ok(request).await?
        }
    };
    print(&answer)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn replay(server: &str, args: ReplayArgs) -> Result<ExitCode> {
    let client = Client::new(server)?;
    let bound = |position: Option<u64>, time: Option<String>| match (position, time) {
        (Some(p), _) => Some(json!({ "position": p })),
        (None, Some(t)) => Some(json!({ "time": t })),
        (None, None) => None,
    };
    let mut request = json!({ "from": bound(args.from_position, args.from_time).unwrap_or(json!({"position": 1})) });
    if let Some(to) = bound(args.to_position, args.to_time) {
        request["to"] = to;
    }
    eprintln!("replaying to {} ...", args.name);
    let report = client.expect_ok(client.http().post(client.url(&path(&args.name, "/replay"))).json(&request)).await?;
    print(&report)?;
    Ok(ExitCode::SUCCESS)
}
