//! The single writer and its group commit.
//!
//! Appends from every request queue up here. The writer takes whatever is
//! queued (up to `max_group_events`), writes it all in one transaction, commits
//! (one fsync of the WAL for the whole group), and only then answers each
//! waiter. Under load a commit carries many requests, so the fsync rate, not
//! the request rate, is what bounds throughput. Positions are assigned here,
//! so they are gap-free and in commit order.

use std::path::PathBuf;
use std::time::Instant;

use herald_core::{IdRule, Position};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::classify;
use crate::{AppendOutcome, NewEvent, StoreError, StoredEvent};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub enum Job {
    Append {
        events: Vec<NewEvent>,
        reply: Reply<Vec<AppendOutcome>>,
    },
    PutIdRule {
        rule: IdRule,
        reply: Reply<()>,
    },
    DeleteIdRule {
        detail_type: String,
        reply: Reply<bool>,
    },
    /// Commit what came before, then stop.
    Shutdown,
}

impl Job {
    fn event_count(&self) -> usize {
        match self {
            Job::Append { events, .. } => events.len(),
            _ => 1,
        }
    }

    fn fail(self, err: &StoreError) {
        let err = || match err {
            StoreError::Corrupt { path, detail } => StoreError::Corrupt { path: path.clone(), detail: detail.clone() },
            other => StoreError::Task(other.to_string()),
        };
        match self {
            Job::Append { reply, .. } => drop(reply.send(Err(err()))),
            Job::PutIdRule { reply, .. } => drop(reply.send(Err(err()))),
            Job::DeleteIdRule { reply, .. } => drop(reply.send(Err(err()))),
            Job::Shutdown => {}
        }
    }
}

/// What a job produced inside the transaction, held until the commit is durable.
enum Output {
    Appended(Vec<AppendOutcome>),
    RuleStored,
    RuleDeleted(bool),
}

impl Output {
    fn deliver(self, job: Job) {
        match (job, self) {
            (Job::Append { reply, .. }, Output::Appended(outcomes)) => drop(reply.send(Ok(outcomes))),
            (Job::PutIdRule { reply, .. }, Output::RuleStored) => drop(reply.send(Ok(()))),
            (Job::DeleteIdRule { reply, .. }, Output::RuleDeleted(existed)) => drop(reply.send(Ok(existed))),
            _ => unreachable!("each job produces its own kind of output"),
        }
    }
}

/// A group that could not be committed, with its jobs to answer.
type Failed = (StoreError, Vec<Job>);

pub struct Writer {
    pub conn: Connection,
    pub path: PathBuf,
    pub next_position: Position,
    pub head: watch::Sender<Position>,
    pub max_group_events: usize,
}

impl Writer {
    pub fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut group = Vec::new();
        let mut stop = false;
        while !stop {
            let Some(first) = queue.blocking_recv() else {
                break;
            };
            let mut events = first.event_count();
            group.push(first);
            while events < self.max_group_events {
                match queue.try_recv() {
                    Ok(job) => {
                        events += job.event_count();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            if let Some(i) = group.iter().position(|j| matches!(j, Job::Shutdown)) {
                group.truncate(i);
                stop = true;
            }
            self.commit_group(std::mem::take(&mut group), events);
        }
        // Dropping the queue answers any later job with `Closed`.
    }

    fn commit_group(&mut self, group: Vec<Job>, events: usize) {
        if group.is_empty() {
            return;
        }
        let started = Instant::now();
        let first_position = self.next_position;
        match self.write_group(group) {
            Ok(done) => {
                // Head first: whoever hears "appended" must find the head past it.
                self.head.send_replace(self.next_position - 1);
                for (job, output) in done {
                    output.deliver(job);
                }
                metrics::histogram!("herald_store_commit_events").record(events as f64);
                metrics::histogram!("herald_store_commit_seconds").record(started.elapsed().as_secs_f64());
            }
            Err((err, group)) => {
                tracing::error!(error = %err, "commit failed; the group was rolled back");
                self.next_position = first_position;
                for job in group {
                    job.fail(&err);
                }
            }
        }
    }

    /// Writes and commits one group. On failure nothing was committed and the
    /// jobs come back so each waiter can be told.
    fn write_group(&mut self, group: Vec<Job>) -> Result<Vec<(Job, Output)>, Failed> {
        let path = self.path.clone();
        let tx = match self.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return Err((classify(e, &path), group)),
        };
        let mut next = self.next_position;
        let mut outputs = Vec::with_capacity(group.len());
        let mut failure = None;
        for job in &group {
            let output = match job {
                Job::Append { events, .. } => append(&tx, events, &mut next).map(Output::Appended),
                Job::PutIdRule { rule, .. } => put_id_rule(&tx, rule).map(|()| Output::RuleStored),
                Job::DeleteIdRule { detail_type, .. } => delete_id_rule(&tx, detail_type).map(Output::RuleDeleted),
                Job::Shutdown => unreachable!("shutdown jobs are removed from a group"),
            };
            match output {
                Ok(output) => outputs.push(output),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Dropping an uncommitted transaction rolls it back.
        if let Some(e) = failure.map(Err).unwrap_or_else(|| tx.commit()).err() {
            return Err((classify(e, &path), group));
        }
        self.next_position = next;
        Ok(group.into_iter().zip(outputs).collect())
    }
}

fn append(tx: &Transaction<'_>, events: &[NewEvent], next: &mut Position) -> rusqlite::Result<Vec<AppendOutcome>> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (position, id, content_hash, source, detail_type, stream, time_us, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
    )?;
    let mut existing = tx.prepare_cached("SELECT position, content_hash, body FROM events WHERE id = ?1")?;
    let mut outcomes = Vec::with_capacity(events.len());
    for e in events {
        let position = *next;
        let inserted = insert.execute(params![
            position as i64,
            e.id,
            &e.content_hash[..],
            e.source,
            e.detail_type,
            e.stream,
            e.time_micros,
            e.body
        ])?;
        if inserted == 1 {
            *next += 1;
            outcomes.push(AppendOutcome::Appended(position));
            continue;
        }
        let (position, hash, body) = existing
            .query_row([&e.id], |r| {
                Ok((r.get::<_, i64>(0)? as Position, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?))
            })
            .optional()?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        outcomes.push(if hash == e.content_hash {
            AppendOutcome::Duplicate(position)
        } else {
            AppendOutcome::Conflict(StoredEvent { position, body })
        });
    }
    Ok(outcomes)
}

fn put_id_rule(tx: &Transaction<'_>, rule: &IdRule) -> rusqlite::Result<()> {
    let fields = serde_json::to_string(&rule.fields).expect("strings serialize");
    tx.prepare_cached(
        "INSERT INTO id_rules (detail_type, fields) VALUES (?1, ?2)
         ON CONFLICT (detail_type) DO UPDATE SET fields = excluded.fields",
    )?
    .execute(params![rule.detail_type, fields])?;
    Ok(())
}

fn delete_id_rule(tx: &Transaction<'_>, detail_type: &str) -> rusqlite::Result<bool> {
    Ok(tx.prepare_cached("DELETE FROM id_rules WHERE detail_type = ?1")?.execute([detail_type])? > 0)
}
