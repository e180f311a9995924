//! PostgreSQL as an event store: a primary key on the id gives dedup, and
//! each publish is one autocommitted statement (a WAL flush per commit, with
//! PostgreSQL's own group commit across connections).

use std::error::Error;

use anyhow::{Context, bail};
use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

use super::ensure_loopback;
use crate::workload::{Event, Outcome, Publisher};

const INSERT_ONE: &str = "INSERT INTO bench_events(id, body) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const INSERT_MANY: &str = "INSERT INTO bench_events(id, body) \
     SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT DO NOTHING";

/// The table for one run, recreated empty so runs do not depend on each other.
pub struct BenchTable {
    client: Client,
}

impl BenchTable {
    pub async fn create(config: &str) -> anyhow::Result<Self> {
        let client = open(config).await?;
        client
            .batch_execute(
                "DROP TABLE IF EXISTS bench_events;
                 CREATE TABLE bench_events(id text PRIMARY KEY, body jsonb);",
            )
            .await
            .context("creating table bench_events")?;
        Ok(BenchTable { client })
    }

    /// Frees the disk the run used.
    pub async fn drop_table(self) -> anyhow::Result<()> {
        self.client.batch_execute("DROP TABLE IF EXISTS bench_events").await?;
        Ok(())
    }
}

/// One connection per worker, each with its statement prepared.
pub async fn connect(config: &str, workers: usize, batch: usize) -> anyhow::Result<Vec<PostgresPublisher>> {
    let mut publishers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let client = open(config).await?;
        let insert = if batch > 1 {
            client.prepare_typed(INSERT_MANY, &[Type::TEXT_ARRAY, Type::JSONB_ARRAY]).await?
        } else {
            client.prepare_typed(INSERT_ONE, &[Type::TEXT, Type::JSONB]).await?
        };
        publishers.push(PostgresPublisher { client, insert });
    }
    Ok(publishers)
}

async fn open(config: &str) -> anyhow::Result<Client> {
    let parsed: tokio_postgres::Config = config.parse().with_context(|| format!("bad --postgres {config:?}"))?;
    for host in parsed.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(name) => ensure_loopback(name)?,
            tokio_postgres::config::Host::Unix(_) => {}
        }
    }
    let (client, connection) =
        parsed.connect(NoTls).await.with_context(|| format!("connecting to PostgreSQL ({config})"))?;
    // The connection future does the socket I/O; it ends with the client.
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("postgres connection closed: {err}");
        }
    });
    Ok(client)
}

pub struct PostgresPublisher {
    client: Client,
    insert: Statement,
}

impl Publisher for PostgresPublisher {
    async fn publish(&mut self, events: &[Event]) -> anyhow::Result<Outcome> {
        let inserted = if events.len() == 1 {
            let event = &events[0];
            self.client.execute(&self.insert, &[&event.id, &RawJsonb(&event.body)]).await?
        } else {
            let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
            let bodies: Vec<RawJsonb> = events.iter().map(|e| RawJsonb(&e.body)).collect();
            self.client.execute(&self.insert, &[&ids, &bodies]).await?
        };
        let total = events.len() as u64;
        if inserted > total {
            bail!("inserted {inserted} rows for {total} events");
        }
        // ON CONFLICT DO NOTHING: every row not inserted was already there.
        Ok(Outcome { stored: inserted, duplicates: total - inserted, ..Outcome::default() })
    }
}

/// JSON text sent as `jsonb` without parsing it into a `serde_json::Value`
/// first: the binary jsonb format is a version byte (1) and the text.
#[derive(Debug)]
struct RawJsonb<'a>(&'a [u8]);

impl ToSql for RawJsonb<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}
