use std::process::ExitCode;

use anyhow::Result;

use crate::args::{EventsArgs, EventsCommand};
use crate::client::Client;

pub async fn run(server: &str, args: EventsArgs) -> Result<ExitCode> {
    let client = Client::new(server)?;
    match args.command {
        EventsCommand::Get { id } => {
            let url = format!("{}/{}", client.url("/v1/events"), encode_segment(&id));
            let event = client.expect_ok(client.http().get(url)).await?;
            println!("{}", serde_json::to_string_pretty(&event)?);
        }
        EventsCommand::List(filter) => {
            let page = client.expect_ok(client.http().get(client.url("/v1/events")).query(&filter.query())).await?;
            for event in page["events"].as_array().into_iter().flatten() {
                println!("{event}");
            }
            eprintln!("next: {}", page["next"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes an id for use as one path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
