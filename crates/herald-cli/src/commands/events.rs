use std::process::ExitCode;

use anyhow::{Result, bail};
use herald_core::identity::is_dot_segment;

use crate::args::{Connection, EventsArgs, EventsCommand};
use crate::client::Client;

pub async fn run(connection: &Connection, args: EventsArgs) -> Result<ExitCode> {
    let client = Client::new(connection)?;
    match args.command {
        EventsCommand::Get { id } => {
            let url = format!("{}/{}", client.url("/v1/events"), encode_segment(&id)?);
            let event = client.expect_ok(client.http().get(url)).await?;
            super::print_line(format_args!("{}", serde_json::to_string_pretty(&event)?))?;
        }
        EventsCommand::List(filter) => {
            let page = client.expect_ok(client.http().get(client.url("/v1/events")).query(&filter.query())).await?;
            for event in page["events"].as_array().into_iter().flatten() {
                super::print_line(format_args!("{event}"))?;
            }
            eprintln!("next: {}", page["next"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes an id for use as one path segment. `.` and `..` are
/// refused ([`is_dot_segment`]): the request would reach another resource
/// (`dlq purge .` would delete a subscription named `dead-letters`).
pub fn encode_segment(s: &str) -> Result<String> {
    if is_dot_segment(s) {
        bail!("`{s}` cannot be sent in a URL path: URL parsing removes it, even percent-encoded");
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn dot_segments_are_refused_and_dots_elsewhere_kept() {
        assert!(encode_segment(".").is_err());
        assert!(encode_segment("..").is_err());
        assert_eq!(encode_segment("...").unwrap(), "...");
        assert_eq!(encode_segment("a/../b").unwrap(), "a%2F..%2Fb");
    }
}
