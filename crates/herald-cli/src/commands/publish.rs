use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_core::json;
use herald_core::limits::MAX_BODY_BYTES;
use serde_json::{Map, Value, json};

use crate::args::{Connection, PublishArgs};
use crate::client::Client;

/// Publishes one event from flags, or JSON lines in batches. Prints one JSON
/// result per event (per line read); exits 1 if any was not published.
pub async fn run(connection: &Connection, args: PublishArgs) -> Result<ExitCode> {
    let client = Client::new(connection)?;
    let Some(file) = &args.file else {
        let event = event_from_flags(&args)?;
        let mut request = client.http().post(client.url("/v1/events")).json(&event);
        if let Some(key) = &args.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let (status, body) = client.send(request).await?;
        super::print_line(format_args!("{body}"))?;
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
    let mut batch = Batch::default();
    // Lines as bytes: one that is not UTF-8 is a line refused, not the end.
    for (n, line) in reader.split(b'\n').enumerate() {
        let line = line.context("reading events")?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match json::parse(&line) {
            Ok(event) => event.to_string(),
            Err(e) => {
                batch.push_refused(n + 1, unreadable(&e));
                continue;
            }
        };
        if text.len() + "[]".len() > MAX_BODY_BYTES {
            batch.push_refused(n + 1, too_large(text.len()));
            continue;
        }
        if !batch.has_room(text.len(), args.batch) {
            failed += send_batch(&client, std::mem::take(&mut batch)).await?;
        }
        batch.push_event(n + 1, &text);
    }
    failed += send_batch(&client, batch).await?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The lines of one request, in input order: the events it sends, and the
/// lines refused before sending (reported in their place).
#[derive(Default)]
struct Batch {
    /// The request body so far: `[` and each event followed by a comma
    /// (the last one's becomes the closing `]`).
    body: String,
    events: usize,
    /// Each line's number, and its result if it is not sent.
    lines: Vec<(usize, Option<Value>)>,
}

impl Batch {
    /// Whether an event of `bytes` joins this request rather than start the
    /// next: at most `max_events`, in a body within the server's limit
    /// (`MAX_BODY_BYTES`, the constant the server enforces).
    fn has_room(&self, bytes: usize, max_events: u16) -> bool {
        let body = self.body.len() + bytes + 1;
        self.events == 0 || (self.events < max_events as usize && body <= MAX_BODY_BYTES)
    }

    fn push_event(&mut self, line: usize, text: &str) {
        if self.body.is_empty() {
            self.body.push('[');
        }
        self.body.push_str(text);
        self.body.push(',');
        self.events += 1;
        self.lines.push((line, None));
    }

    fn push_refused(&mut self, line: usize, error: Value) {
        self.lines.push((line, Some(json!({"line": line, "error": error}))));
    }
}

/// An event whose body alone is over the server's limit is not sent: the
/// server would refuse it unread and close the connection, and the reset
/// loses its answer (the client sees only a broken pipe).
fn too_large(bytes: usize) -> Value {
    let message = format!("the event is {bytes} bytes, over the server's body limit of {MAX_BODY_BYTES}: not sent");
    json!({"title": "Content too large", "status": 413, "detail": message, "errors": [{"pointer": "", "message": message}]})
}

/// Why a line is not published, shaped as the server's problems are, with
/// places in the line by column (the line is one line of JSON).
fn unreadable(e: &json::Error) -> Value {
    let (pointer, message) = match e {
        json::Error::Malformed { message, column, .. } => (String::new(), format!("{message} at column {column}")),
        json::Error::TooDeep { column, .. } => {
            (String::new(), format!("nests arrays and objects more than {} deep (column {column})", json::MAX_DEPTH))
        }
        json::Error::Refused { pointer, why, column, .. } => {
            (pointer.clone(), format!("member {pointer} {why} (column {column})"))
        }
    };
    json!({"title": "Not JSON Herald reads", "detail": message, "errors": [{"pointer": pointer, "message": message}]})
}

/// Sends the batch's events and prints a result for each of its lines;
/// returns how many were not published.
async fn send_batch(client: &Client, batch: Batch) -> Result<usize> {
    let results = if batch.events > 0 {
        let mut body = batch.body;
        body.pop();
        body.push(']');
        send(client, body, batch.events).await?
    } else {
        Vec::new()
    };
    let mut results = results.into_iter().enumerate();
    let mut failed = 0;
    for (line, unsent) in batch.lines {
        let result = match unsent {
            Some(result) => result,
            None => {
                let (index, result) = results.next().unwrap_or_default();
                for_line(result, index, line)
            }
        };
        failed += usize::from(result.get("error").is_some());
        super::print_line(format_args!("{result}"))?;
    }
    Ok(failed)
}

/// How often a request the server was too busy for is sent again (after
/// 1, 2, ... seconds: about two minutes in all).
const BUSY_RETRIES: u64 = 15;

/// The server's result for each of the `events` in `body`. A body of one
/// event too large for the server (for its memory budget) is that event's
/// refusal, not the end.
async fn send(client: &Client, body: String, events: usize) -> Result<Vec<Value>> {
    let request =
        || client.http().post(client.url("/v1/events")).header(reqwest::header::CONTENT_TYPE, "application/json");
    let (mut status, mut answer) = client.send(request().body(body.clone())).await?;
    // A 503 (the server's queues full) stored nothing: the same request is
    // sent again after a pause, rather than ending the run mid-file.
    for pause in (1..=BUSY_RETRIES).map(Duration::from_secs) {
        if status != 503 {
            break;
        }
        eprintln!("the server is busy (503); sending again in {} s", pause.as_secs());
        tokio::time::sleep(pause).await;
        (status, answer) = client.send(request().body(body.clone())).await?;
    }
    match status {
        200..300 => match answer["results"].take() {
            Value::Array(results) if results.len() == events => Ok(results),
            _ => bail!("the server did not answer one result per event: {answer}"),
        },
        413 if events == 1 => Ok(vec![json!({"error": answer})]),
        _ => bail!("HTTP {status}: {}", serde_json::to_string_pretty(&answer).unwrap_or_default()),
    }
}

/// A result as the user reads it: a refusal names the input line, its
/// pointers into the line's event (the server's are into the request body,
/// under the event's `index` in the batch).
fn for_line(mut result: Value, index: usize, line: usize) -> Value {
    let Some(error) = result.get_mut("error") else {
        return result;
    };
    let prefix = format!("/{index}");
    for field in error["errors"].as_array_mut().into_iter().flatten() {
        if let Some(pointer) = field["pointer"].as_str()
            && let Some(within) = pointer.strip_prefix(&prefix)
            && (within.is_empty() || within.starts_with('/'))
        {
            field["pointer"] = within.into();
        }
    }
    json!({"line": line, "error": error.take()})
}

fn event_from_flags(args: &PublishArgs) -> Result<Value> {
    let (Some(source), Some(detail_type)) = (&args.source, &args.detail_type) else {
        bail!("give --source and --detail-type (--detail is optional, {{}} by default), or --file");
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
