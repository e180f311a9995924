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

use herald_core::Position;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

use super::checkpoint::Checkpointer;
use super::classify;
use super::reader::{EVENT_COLUMNS, body_crc, stored_event};
use super::time_marks::RunningMax;
use crate::{AppendOutcome, NewEvent, StoreError};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub enum Job {
    Append {
        events: Vec<NewEvent>,
        reply: Reply<Vec<AppendOutcome>>,
        /// The events' share of the queue's bytes, given back when the job
        /// is answered and dropped.
        _queued: OwnedSemaphorePermit,
    },
    /// Any other write (id rules, subscriptions, deliveries), group-committed
    /// with the appends.
    Write(Box<dyn Command>),
    /// Commit what came before, then stop.
    Shutdown,
}

/// A write other than an append: it runs inside the group's transaction and
/// is answered only once the commit is durable.
pub trait Command: Send {
    fn apply(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()>;
    fn answer(self: Box<Self>, result: Result<(), StoreError>);
}

/// A [`Command`] made of a closure and the channel its result goes back on.
pub struct Op<T, F> {
    run: Option<F>,
    output: Option<T>,
    reply: Reply<T>,
}

impl<T, F> Op<T, F> {
    pub fn new(run: F, reply: Reply<T>) -> Self {
        Self { run: Some(run), output: None, reply }
    }
}

impl<T: Send, F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send> Command for Op<T, F> {
    fn apply(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let run = self.run.take().expect("a command is applied once");
        self.output = Some(run(tx)?);
        Ok(())
    }

    fn answer(self: Box<Self>, result: Result<(), StoreError>) {
        let Op { output, reply, .. } = *self;
        let _ = reply.send(result.and_then(|()| output.ok_or_else(|| StoreError::Task("command not applied".into()))));
    }
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
            StoreError::Full { path } => StoreError::Full { path: path.clone() },
            other => StoreError::Task(other.to_string()),
        };
        match self {
            Job::Append { events, reply, _queued } => answer_append(reply, Err(err()), (events, _queued)),
            Job::Write(command) => command.answer(Err(err())),
            Job::Shutdown => {}
        }
    }

    /// Answers the job once its group is durable.
    fn deliver(self, appended: Option<Vec<AppendOutcome>>) {
        match (self, appended) {
            (Job::Append { events, reply, _queued }, Some(outcomes)) => {
                answer_append(reply, Ok(outcomes), (events, _queued))
            }
            (Job::Write(command), None) => command.answer(Ok(())),
            _ => unreachable!("appends produce outcomes, other writes do not"),
        }
    }
}

/// Answers an append with its events and queue share freed first: a caller
/// that appends again at once finds the share back.
fn answer_append(reply: Reply<Vec<AppendOutcome>>, result: Result<Vec<AppendOutcome>, StoreError>, freed: impl Sized) {
    drop(freed);
    let _ = reply.send(result);
}

/// A group that could not be committed, with its jobs to answer.
type Failed = (StoreError, Vec<Job>);
/// A committed group: each job with its outcomes (appends only).
type Done = Vec<(Job, Option<Vec<AppendOutcome>>)>;

pub struct Writer {
    pub conn: Connection,
    pub path: PathBuf,
    pub next_position: Position,
    pub head: watch::Sender<Position>,
    pub max_group_events: usize,
    pub checkpointer: Checkpointer,
    pub times: RunningMax,
    pub failures: FailureLog,
}

/// Counts and logs commits that failed. A full disk fails every commit until
/// space is freed: it is logged once per [`LogPace::EVERY`], with
/// the count since, rather than once per commit into a log that may sit on
/// the same full disk.
#[derive(Default)]
pub struct FailureLog {
    full: LogPace,
}

impl FailureLog {
    fn note(&mut self, err: &StoreError) {
        let reason = if matches!(err, StoreError::Full { .. }) { "full" } else { "error" };
        metrics::counter!("herald_store_commits_failed_total", "reason" => reason).increment(1);
        if reason == "error" {
            tracing::error!(error = %err, "commit failed; the group was rolled back");
        } else if let Some(since) = self.full.due() {
            tracing::error!(error = %err, refused_since_last_logged = since, "commit refused: the disk is full; nothing of it was stored");
        }
    }
}

/// Paces a log line that a lasting condition (a full disk) would otherwise
/// write on every commit: at most once per [`LogPace::EVERY`].
#[derive(Default)]
pub struct LogPace {
    /// When the line was last written, and the times it was held back since.
    last: Option<(Instant, u64)>,
}

impl LogPace {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// `Some(times held back since the last line)` if the line is due now.
    pub fn due(&mut self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> Option<u64> {
        match &mut self.last {
            Some((logged, since)) if now.duration_since(*logged) < Self::EVERY => {
                *since += 1;
                None
            }
            _ => {
                let since = self.last.map_or(0, |(_, since)| since);
                self.last = Some((now, 0));
                Some(since)
            }
        }
    }
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
        match self.write_group(group) {
            Ok(done) => {
                // Head first: whoever hears "appended" must find the head past it.
                self.head.send_replace(self.next_position - 1);
                for (job, appended) in done {
                    job.deliver(appended);
                }
                self.checkpointer.committed(&self.conn);
                metrics::histogram!("herald_store_commit_events").record(events as f64);
                metrics::histogram!("herald_store_commit_seconds").record(started.elapsed().as_secs_f64());
            }
            Err((err, group)) => {
                self.failures.note(&err);
                for job in group {
                    job.fail(&err);
                }
            }
        }
    }

    /// Writes and commits one group. On failure nothing was committed (nor
    /// the writer's position and running time changed) and the jobs come back
    /// so each waiter can be told.
    fn write_group(&mut self, mut group: Vec<Job>) -> Result<Done, Failed> {
        let path = self.path.clone();
        let tx = match self.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return Err((classify(e, &path), group)),
        };
        let mut next = self.next_position;
        let mut times = self.times;
        let mut outputs = Vec::with_capacity(group.len());
        let mut failure = None;
        for job in &mut group {
            let output = match job {
                Job::Append { events, .. } => append(&tx, events, &mut next, &mut times).map(Some),
                Job::Write(command) => command.apply(&tx).map(|()| None),
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
        if failure.is_none()
            && let Err(e) = times.mark(&tx, self.next_position, next - 1)
        {
            failure = Some(e);
        }
        // Dropping an uncommitted transaction rolls it back.
        if let Some(e) = failure.map(Err).unwrap_or_else(|| tx.commit()).err() {
            return Err((classify(e, &path), group));
        }
        self.next_position = next;
        self.times = times;
        Ok(group.into_iter().zip(outputs).collect())
    }
}

fn append(
    tx: &Transaction<'_>,
    events: &[NewEvent],
    next: &mut Position,
    times: &mut RunningMax,
) -> rusqlite::Result<Vec<AppendOutcome>> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (position, id, content_hash, source, detail_type, stream, time_us, body, body_crc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
    )?;
    // A redelivery only needs the stored hash; the body is read for conflicts.
    let mut existing = tx.prepare_cached("SELECT position, content_hash FROM events WHERE id = ?1")?;
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
            e.body,
            body_crc(&e.body)
        ])?;
        if inserted == 1 {
            *next += 1;
            times.note(e.time_micros);
            outcomes.push(AppendOutcome::Appended(position));
            continue;
        }
        let (position, hash) =
            existing.query_row([&e.id], |r| Ok((r.get::<_, i64>(0)? as Position, r.get::<_, Vec<u8>>(1)?)))?;
        outcomes.push(if hash == e.content_hash {
            AppendOutcome::Duplicate(position)
        } else {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE position = ?1");
            AppendOutcome::Conflict(tx.query_row(&sql, [position as i64], stored_event)?)
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_line_is_due_once_per_period_with_the_count_held_back() {
        let mut pace = LogPace::default();
        let start = Instant::now();
        assert_eq!(pace.due_at(start), Some(0));
        for _ in 0..5 {
            assert_eq!(pace.due_at(start + LogPace::EVERY / 2), None);
        }
        assert_eq!(pace.due_at(start + LogPace::EVERY), Some(5));
        assert_eq!(pace.due_at(start + LogPace::EVERY), None);
        assert_eq!(pace.due_at(start + LogPace::EVERY * 3), Some(1));
    }
}
