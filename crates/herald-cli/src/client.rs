//! The HTTP client the CLI's commands share.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::args::Connection;

/// The live stream sends a keep-alive comment every 15 s: a stream silent
/// for three of them is on a dead connection.
const STREAM_SILENCE: Duration = Duration::from_secs(45);

pub struct Client {
    http: reqwest::Client,
    base: String,
    /// `--timeout`: to connect, and for a whole answer.
    timeout: Duration,
}

impl Client {
    /// A client whose requests fail after `--timeout` without a whole answer.
    pub fn new(connection: &Connection) -> Result<Self> {
        let timeout = Duration::from_secs(connection.timeout);
        Self::build(connection, reqwest::Client::builder().timeout(timeout))
    }

    /// A client for streams, which have no end to wait for: a connection
    /// silent for [`STREAM_SILENCE`] is given up instead. A request that
    /// is not a stream still gets `--timeout` with [`Self::answer`].
    pub fn streaming(connection: &Connection) -> Result<Self> {
        Self::build(connection, reqwest::Client::builder().read_timeout(STREAM_SILENCE))
    }

    fn build(connection: &Connection, builder: reqwest::ClientBuilder) -> Result<Self> {
        let timeout = Duration::from_secs(connection.timeout);
        let http = builder.connect_timeout(timeout).build().context("building the HTTP client")?;
        Ok(Self { http, base: connection.server.trim_end_matches('/').to_owned(), timeout })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `request` with the `--timeout` deadline for its whole answer.
    pub fn answer(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.timeout(self.timeout)
    }

    /// Sends a request and returns the status and JSON body; a problem body
    /// is returned too (the caller decides what is an error).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let response = request.send().await.map_err(|e| self.failed(e, "cannot reach Herald"))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| self.failed(e, "reading Herald's answer"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// Like [`send`](Self::send), but a non-2xx answer is an error showing the problem.
    pub async fn expect_ok(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let (status, body) = self.send(request).await?;
        if !(200..300).contains(&status) {
            bail!("HTTP {status}: {}", serde_json::to_string_pretty(&body).unwrap_or_default());
        }
        Ok(body)
    }

    /// A request's failure: running out of time says which setting to raise.
    fn failed(&self, e: reqwest::Error, doing: &str) -> anyhow::Error {
        if e.is_timeout() {
            let seconds = self.timeout.as_secs();
            return anyhow!("{doing} at {}: no answer within {seconds} s (--timeout, HERALD_TIMEOUT)", self.base);
        }
        anyhow::Error::new(e).context(format!("{doing} at {}", self.base))
    }
}
