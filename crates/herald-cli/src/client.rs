//! The HTTP client the CLI's commands share.

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(server: &str) -> Result<Self> {
        let http = reqwest::Client::builder().build().context("building the HTTP client")?;
        Ok(Self { http, base: server.trim_end_matches('/').to_owned() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends a request and returns the status and JSON body; a problem body
    /// is returned too (the caller decides what is an error).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let response = request.send().await.with_context(|| format!("cannot reach Herald at {}", self.base))?;
        let status = response.status().as_u16();
        let text = response.text().await.context("reading the response")?;
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
}
