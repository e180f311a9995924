//! NATS JetStream: a file-backed stream with server-side dedup on the
//! `Nats-Msg-Id` header. Every publish waits for the stream's ack, the point
//! where JetStream promises the message is stored (with `sync_interval:
//! always` only after an fsync; by default before it).

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, stream};

use super::ensure_loopback;
use crate::workload::{Event, Outcome, Publisher, Workload};

const STREAM: &str = "HERALD_BENCH";
const SUBJECT: &str = "bench.orders";

/// The stream for one run, recreated empty so runs do not depend on each other.
pub struct BenchStream {
    js: jetstream::Context,
}

impl BenchStream {
    pub async fn create(url: &str, workload: &Workload) -> anyhow::Result<Self> {
        let host = url.trim_start_matches("nats://").rsplit_once(':').map_or(url, |(host, _)| host);
        ensure_loopback(host)?;
        let client = async_nats::connect(url).await.with_context(|| format!("connecting to NATS at {url}"))?;
        // The default of 5,000 un-acked publishes would throttle batch mode.
        let inflight = (workload.concurrency * workload.batch * 2).max(5_000);
        let js =
            jetstream::ContextBuilder::new().timeout(Duration::from_secs(30)).max_ack_inflight(inflight).build(client);

        // Start from an empty stream; "not found" is the normal case.
        if let Err(err) = js.delete_stream(STREAM).await {
            let not_found = matches!(
                err.kind(),
                jetstream::context::DeleteStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            );
            if !not_found {
                return Err(err).with_context(|| format!("deleting stream {STREAM} on {url}"));
            }
        }
        // Dedup must cover the whole run, or late redeliveries would be stored twice.
        let run = workload.warmup + workload.duration;
        let duplicate_window = (run + Duration::from_secs(60)).max(Duration::from_secs(120));
        js.create_stream(stream::Config {
            name: STREAM.to_string(),
            subjects: vec!["bench.>".to_string()],
            storage: stream::StorageType::File,
            duplicate_window,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating stream {STREAM} on {url} (is JetStream enabled?)"))?;
        Ok(BenchStream { js })
    }

    /// All workers share one connection: NATS clients multiplex, and one
    /// connection per process is how JetStream is meant to be used.
    pub fn publishers(&self, workers: usize) -> Vec<JetStreamPublisher> {
        (0..workers).map(|_| JetStreamPublisher { js: self.js.clone() }).collect()
    }

    /// Records, per `Nats-Msg-Id`, when a consumer of the stream first
    /// received it: the peer of Herald's publish-to-delivery latency. Runs
    /// until the returned task is aborted.
    pub async fn record_arrivals(
        &self,
        arrivals: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        use futures_util::StreamExt;
        let stream = self.js.get_stream(STREAM).await.context("opening the bench stream")?;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .context("creating a pull consumer")?;
        let mut messages = consumer.messages().await.context("consuming the bench stream")?;
        Ok(tokio::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                let at = tokio::time::Instant::now();
                let id = message.headers.as_ref().and_then(|h| h.get(NATS_MESSAGE_ID)).map(|v| v.as_str().to_owned());
                if let Some(id) = id {
                    arrivals.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_insert(at);
                }
                // Acknowledged like a webhook's 2xx: the consumer is done with it.
                let _ = message.ack().await;
            }
        }))
    }

    /// Frees the disk the run used.
    pub async fn delete(self) -> anyhow::Result<()> {
        self.js.delete_stream(STREAM).await.context("deleting the bench stream")?;
        Ok(())
    }
}

pub struct JetStreamPublisher {
    js: jetstream::Context,
}

impl Publisher for JetStreamPublisher {
    async fn publish(&mut self, events: &[Event]) -> anyhow::Result<Outcome> {
        // Send the whole batch first, then wait for the acks: JetStream's
        // async publishing, its counterpart of a batch request.
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, event.id.as_str());
            pending.push(self.js.publish_with_headers(SUBJECT, headers, event.body.clone()).await?);
        }
        let mut outcome = Outcome::default();
        for ack in pending {
            let ack = ack.await?;
            if ack.stream != STREAM {
                bail!("acked by stream {} instead of {STREAM}", ack.stream);
            }
            if ack.duplicate {
                outcome.duplicates += 1;
            } else {
                outcome.stored += 1;
            }
        }
        Ok(outcome)
    }
}
