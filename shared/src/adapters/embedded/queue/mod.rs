//! The job queue on one machine: SQS standard-queue semantics with a redrive
//! policy, kept in its own redb file so jobs outlive the process.
//!
//! Every live message sits in a visibility index keyed by the time it may be
//! received next: sending makes it visible now, receiving hides it for the
//! queue's visibility timeout, `retry_later` for the delay asked. A receive
//! that finds a message already received `max_receives` times moves it to
//! the queue's dead-letter list instead (SQS `maxReceiveCount`). Timing reads
//! the injected clock, so a restarted process sees its in-flight jobs come
//! back once their timeout has passed.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{classify_db_error, DbFailure};
use crate::domain::model::{DeliveryJob, Millis};
use crate::ports::{Clock, JobQueue, QueueDepth, QueueError, ReceivedJob};

/// (queue, message id) -> StoredMessage (JSON).
const MESSAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("message");
/// (queue, visible_at, seq) -> message id: the order messages become receivable.
const VISIBILITY: TableDefinition<(&str, i64, u64), &str> = TableDefinition::new("visibility");
/// (queue, seq) -> DeadMessage (JSON): the dead-letter queue.
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letter");
/// Sequence numbers (send order, ties in the visibility index).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SEQ_KEY: &str = "seq";

/// Per-queue settings, as an SQS queue's attributes and redrive policy.
#[derive(Clone, Copy, Debug)]
pub struct QueueSettings {
    /// How long a received job stays hidden before it comes back.
    pub visibility_timeout: Duration,
    /// Receives before a job is dead-lettered (SQS `maxReceiveCount`).
    pub max_receives: u32,
}

impl Default for QueueSettings {
    /// SQS's default visibility timeout and the redrive count STYLE.md uses.
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receives: 3,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredMessage {
    job: DeliveryJob,
    receive_count: u32,
    /// The receipt of the latest receive; only it may ack or retry.
    #[serde(default)]
    receipt: Option<String>,
    visible_at: Millis,
    seq: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeadMessage {
    message_id: String,
    job: DeliveryJob,
    receive_count: u32,
    dead_at: Millis,
}

struct Inner {
    db: Database,
    clock: Arc<dyn Clock>,
    defaults: QueueSettings,
    settings: Mutex<HashMap<String, QueueSettings>>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

/// The embedded job queue. Cheap to clone; clones share the open file.
#[derive(Clone)]
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("defaults", &self.inner.defaults)
            .finish_non_exhaustive()
    }
}

fn db_err(what: &str, e: impl Into<redb::Error>) -> QueueError {
    let DbFailure {
        message,
        retryable,
        source,
    } = classify_db_error(what, e);
    if retryable {
        QueueError::Retryable { message, source }
    } else {
        QueueError::Permanent { message, source }
    }
}

fn json_err(what: &str, e: serde_json::Error) -> QueueError {
    QueueError::Permanent {
        message: format!("{what}: {e}"),
        source: Some(Box::new(e)),
    }
}

fn commit(txn: WriteTransaction, what: &str) -> Result<(), QueueError> {
    txn.commit().map_err(|e| db_err(what, e))
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// The message id a receipt belongs to (receipts are `<message id>:<nonce>`).
fn receipt_message_id(receipt: &str) -> Result<&str, QueueError> {
    receipt
        .split_once(':')
        .map(|(id, _)| id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| QueueError::permanent(format!("malformed receipt {receipt:?}")))
}

fn next_seq(txn: &WriteTransaction, n: u64) -> Result<u64, QueueError> {
    let mut meta = txn.open_table(META).map_err(|e| db_err("sequence", e))?;
    let first = meta
        .get(SEQ_KEY)
        .map_err(|e| db_err("sequence", e))?
        .map(|v| v.value())
        .unwrap_or(0);
    meta.insert(SEQ_KEY, first.saturating_add(n))
        .map_err(|e| db_err("sequence", e))?;
    Ok(first)
}

/// A key of the visibility index.
type VisibilityKey<'a> = (&'a str, i64, u64);

/// Visibility-index keys of `queue` that are visible up to `until`.
fn visibility_range(
    queue: &str,
    until: Bound<Millis>,
) -> (Bound<VisibilityKey<'_>>, Bound<VisibilityKey<'_>>) {
    let upper = match until {
        Bound::Included(t) => Bound::Included((queue, t, u64::MAX)),
        Bound::Excluded(t) => Bound::Excluded((queue, t, 0)),
        Bound::Unbounded => Bound::Included((queue, Millis::MAX, u64::MAX)),
    };
    (Bound::Included((queue, Millis::MIN, 0)), upper)
}

/// Put jobs on `queue`, visible at `now`, never received.
fn enqueue(
    txn: &WriteTransaction,
    queue: &str,
    now: Millis,
    jobs: Vec<(String, DeliveryJob)>,
    what: &str,
) -> Result<(), QueueError> {
    let first = next_seq(txn, jobs.len() as u64)?;
    let mut messages = txn.open_table(MESSAGE).map_err(|e| db_err(what, e))?;
    let mut index = txn.open_table(VISIBILITY).map_err(|e| db_err(what, e))?;
    for (seq, (id, job)) in (first..).zip(jobs) {
        let msg = StoredMessage {
            job,
            receive_count: 0,
            receipt: None,
            visible_at: now,
            seq,
        };
        let bytes = serde_json::to_vec(&msg).map_err(|e| json_err("cannot encode job", e))?;
        messages
            .insert((queue, id.as_str()), bytes.as_slice())
            .map_err(|e| db_err(what, e))?;
        index
            .insert((queue, now, seq), id.as_str())
            .map_err(|e| db_err(what, e))?;
    }
    Ok(())
}

/// The message a receipt names, if the receipt is still its current one.
fn current_message(
    txn: &WriteTransaction,
    queue: &str,
    receipt: &str,
    what: &str,
) -> Result<Option<(String, StoredMessage)>, QueueError> {
    let id = receipt_message_id(receipt)?;
    let messages = txn.open_table(MESSAGE).map_err(|e| db_err(what, e))?;
    let stored = messages.get((queue, id)).map_err(|e| db_err(what, e))?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    let msg: StoredMessage =
        serde_json::from_slice(stored.value()).map_err(|e| json_err("corrupt queued job", e))?;
    if msg.receipt.as_deref() == Some(receipt) {
        Ok(Some((id.to_string(), msg)))
    } else {
        Ok(None)
    }
}

impl EmbeddedQueue {
    /// Open (or create) the queue file at `path`, creating its directory.
    pub fn open(
        path: &Path,
        defaults: QueueSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let db = super::open_database(path)
            .map_err(|e| db_err(&format!("cannot open queue file {}", path.display()), e))?;
        let txn = db.begin_write().map_err(|e| db_err("open", e))?;
        {
            let create = |r: Result<(), redb::TableError>| r.map_err(|e| db_err("create table", e));
            create(txn.open_table(MESSAGE).map(drop))?;
            create(txn.open_table(VISIBILITY).map(drop))?;
            create(txn.open_table(DEAD).map(drop))?;
            create(txn.open_table(META).map(drop))?;
        }
        commit(txn, "open")?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                clock,
                defaults,
                settings: Mutex::new(HashMap::new()),
                wakers: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Settings of one queue (others keep the defaults).
    pub fn set_queue_settings(&self, queue: &str, settings: QueueSettings) {
        let mut map = self
            .inner
            .settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.insert(queue.to_string(), settings);
    }

    fn settings(&self, queue: &str) -> QueueSettings {
        let map = self
            .inner
            .settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(queue).copied().unwrap_or(self.inner.defaults)
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        let mut map = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(map.entry(queue.to_string()).or_default())
    }

    fn wake(&self, queue: &str) {
        self.waker(queue).notify_waiters();
    }

    /// Wait until `queue` may have a job to receive: returns at once when one
    /// is visible, as soon as one is sent (or redriven), when the next
    /// in-flight job's timeout passes, or after `timeout` at the latest.
    /// Lets a local worker deliver within milliseconds without busy polling.
    pub async fn wait_for_jobs(&self, queue: &str, timeout: Duration) {
        let waker = self.waker(queue);
        let notified = waker.notified();
        tokio::pin!(notified);
        // Register before looking, so a send in between is not missed.
        notified.as_mut().enable();
        let wait = match self.next_visible_in(queue).await {
            Ok(Some(d)) if d.is_zero() => return,
            Ok(Some(d)) => d.min(timeout),
            Ok(None) => timeout,
            // The caller's next receive reports the error.
            Err(_) => return,
        };
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// Time until the next job of `queue` becomes visible (zero: one is).
    async fn next_visible_in(&self, queue: &str) -> Result<Option<Duration>, QueueError> {
        let queue = queue.to_string();
        self.blocking(move |inner| {
            let now = inner.clock.now_ms();
            let txn = inner.db.begin_read().map_err(|e| db_err("peek", e))?;
            let index = txn.open_table(VISIBILITY).map_err(|e| db_err("peek", e))?;
            let mut range = index
                .range::<(&str, i64, u64)>(visibility_range(&queue, Bound::Unbounded))
                .map_err(|e| db_err("peek", e))?;
            let Some(first) = range.next() else {
                return Ok(None);
            };
            let (k, _) = first.map_err(|e| db_err("peek", e))?;
            let (_, visible_at, _) = k.value();
            let wait = visible_at.saturating_sub(now).max(0);
            Ok(Some(Duration::from_millis(
                u64::try_from(wait).unwrap_or(0),
            )))
        })
        .await
    }

    /// Run `f` on the blocking pool (redb commits wait for the disk).
    /// Make every received-but-unsettled job visible at once. Only one
    /// process can hold the file, so at open time such jobs belong to a
    /// process that died: waiting out their visibility timeout would only
    /// delay delivery. Returns how many came back.
    pub async fn release_in_flight(&self) -> Result<u64, QueueError> {
        let released = self
            .blocking(move |inner| {
                let now = inner.clock.now_ms();
                let txn = inner
                    .db
                    .begin_write()
                    .map_err(|e| db_err("release in-flight", e))?;
                let mut released = 0u64;
                {
                    let mut messages = txn
                        .open_table(MESSAGE)
                        .map_err(|e| db_err("release in-flight", e))?;
                    let mut index = txn
                        .open_table(VISIBILITY)
                        .map_err(|e| db_err("release in-flight", e))?;
                    let mut held: Vec<((String, String), StoredMessage)> = Vec::new();
                    for entry in messages
                        .iter()
                        .map_err(|e| db_err("release in-flight", e))?
                    {
                        let (key, value) = entry.map_err(|e| db_err("release in-flight", e))?;
                        let msg: StoredMessage = serde_json::from_slice(value.value())
                            .map_err(|e| json_err("cannot decode job", e))?;
                        if msg.receipt.is_some() && msg.visible_at > now {
                            let (q, id) = key.value();
                            held.push(((q.to_string(), id.to_string()), msg));
                        }
                    }
                    for ((queue, id), mut msg) in held {
                        index
                            .remove((queue.as_str(), msg.visible_at, msg.seq))
                            .map_err(|e| db_err("release in-flight", e))?;
                        msg.visible_at = now;
                        msg.receipt = None;
                        index
                            .insert((queue.as_str(), msg.visible_at, msg.seq), id.as_str())
                            .map_err(|e| db_err("release in-flight", e))?;
                        let bytes = serde_json::to_vec(&msg)
                            .map_err(|e| json_err("cannot encode job", e))?;
                        messages
                            .insert((queue.as_str(), id.as_str()), bytes.as_slice())
                            .map_err(|e| db_err("release in-flight", e))?;
                        released += 1;
                    }
                }
                commit(txn, "release in-flight")?;
                Ok(released)
            })
            .await?;
        Ok(released)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, QueueError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| QueueError::Permanent {
                message: format!("queue task failed: {e}"),
                source: Some(Box::new(e)),
            })?
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    async fn send(&self, queue: &str, jobs: &[DeliveryJob]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let queue_name = queue.to_string();
        let jobs = jobs.to_vec();
        self.blocking(move |inner| {
            let now = inner.clock.now_ms();
            let txn = inner.db.begin_write().map_err(|e| db_err("send", e))?;
            let jobs = jobs
                .into_iter()
                .map(|job| (uuid::Uuid::new_v4().simple().to_string(), job))
                .collect();
            enqueue(&txn, &queue_name, now, jobs, "send")?;
            commit(txn, "send")
        })
        .await?;
        self.wake(queue);
        Ok(())
    }

    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<ReceivedJob>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let settings = self.settings(queue);
        let queue = queue.to_string();
        self.blocking(move |inner| {
            let now = inner.clock.now_ms();
            let hide_until = now.saturating_add(millis(settings.visibility_timeout));
            let txn = inner.db.begin_write().map_err(|e| db_err("receive", e))?;
            let mut out = Vec::new();
            let mut changed = false;
            {
                let mut messages = txn.open_table(MESSAGE).map_err(|e| db_err("receive", e))?;
                let mut index = txn
                    .open_table(VISIBILITY)
                    .map_err(|e| db_err("receive", e))?;
                let mut dead = txn.open_table(DEAD).map_err(|e| db_err("receive", e))?;
                let mut seen = HashSet::new();
                loop {
                    // Candidates in visibility order; dead-lettered ones do not
                    // count towards `max`, so look again until full or dry.
                    let mut batch = Vec::new();
                    for entry in index
                        .range::<(&str, i64, u64)>(visibility_range(&queue, Bound::Included(now)))
                        .map_err(|e| db_err("receive", e))?
                    {
                        let (k, v) = entry.map_err(|e| db_err("receive", e))?;
                        let (_, visible_at, seq) = k.value();
                        let id = v.value().to_string();
                        if seen.contains(&id) {
                            continue;
                        }
                        batch.push((visible_at, seq, id));
                        if batch.len() >= max - out.len() {
                            break;
                        }
                    }
                    if batch.is_empty() {
                        break;
                    }
                    for (visible_at, seq, id) in batch {
                        seen.insert(id.clone());
                        changed = true;
                        index
                            .remove((queue.as_str(), visible_at, seq))
                            .map_err(|e| db_err("receive", e))?;
                        let stored: Option<StoredMessage> = messages
                            .remove((queue.as_str(), id.as_str()))
                            .map_err(|e| db_err("receive", e))?
                            .map(|v| serde_json::from_slice(v.value()))
                            .transpose()
                            .map_err(|e| json_err("corrupt queued job", e))?;
                        let Some(mut msg) = stored else {
                            continue; // index entry without a message: drop it
                        };
                        if msg.receive_count >= settings.max_receives {
                            let letter = DeadMessage {
                                message_id: id,
                                job: msg.job,
                                receive_count: msg.receive_count,
                                dead_at: now,
                            };
                            let bytes = serde_json::to_vec(&letter)
                                .map_err(|e| json_err("cannot encode dead letter", e))?;
                            dead.insert((queue.as_str(), msg.seq), bytes.as_slice())
                                .map_err(|e| db_err("receive", e))?;
                            continue;
                        }
                        msg.receive_count += 1;
                        let receipt = format!("{id}:{}", uuid::Uuid::new_v4().simple());
                        msg.receipt = Some(receipt.clone());
                        msg.visible_at = hide_until;
                        let bytes = serde_json::to_vec(&msg)
                            .map_err(|e| json_err("cannot encode job", e))?;
                        messages
                            .insert((queue.as_str(), id.as_str()), bytes.as_slice())
                            .map_err(|e| db_err("receive", e))?;
                        index
                            .insert((queue.as_str(), hide_until, msg.seq), id.as_str())
                            .map_err(|e| db_err("receive", e))?;
                        out.push(ReceivedJob {
                            message_id: id,
                            receipt,
                            receive_count: msg.receive_count,
                            job: msg.job,
                        });
                    }
                    if out.len() >= max {
                        break;
                    }
                }
            }
            if changed {
                commit(txn, "receive")?;
            }
            Ok(out)
        })
        .await
    }

    async fn ack(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        let (queue, receipt) = (queue.to_string(), receipt.to_string());
        self.blocking(move |inner| {
            let txn = inner.db.begin_write().map_err(|e| db_err("ack", e))?;
            // A receipt that is no longer current (the job came back and was
            // received again, or is gone) acks nothing, as in SQS.
            let Some((id, msg)) = current_message(&txn, &queue, &receipt, "ack")? else {
                return Ok(());
            };
            {
                let mut messages = txn.open_table(MESSAGE).map_err(|e| db_err("ack", e))?;
                let mut index = txn.open_table(VISIBILITY).map_err(|e| db_err("ack", e))?;
                messages
                    .remove((queue.as_str(), id.as_str()))
                    .map_err(|e| db_err("ack", e))?;
                index
                    .remove((queue.as_str(), msg.visible_at, msg.seq))
                    .map_err(|e| db_err("ack", e))?;
            }
            commit(txn, "ack")
        })
        .await
    }

    async fn retry_later(
        &self,
        queue: &str,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let (queue_name, receipt) = (queue.to_string(), receipt.to_string());
        self.blocking(move |inner| {
            let now = inner.clock.now_ms();
            let txn = inner
                .db
                .begin_write()
                .map_err(|e| db_err("retry later", e))?;
            let Some((id, mut msg)) = current_message(&txn, &queue_name, &receipt, "retry later")?
            else {
                return Ok(());
            };
            {
                let mut messages = txn
                    .open_table(MESSAGE)
                    .map_err(|e| db_err("retry later", e))?;
                let mut index = txn
                    .open_table(VISIBILITY)
                    .map_err(|e| db_err("retry later", e))?;
                index
                    .remove((queue_name.as_str(), msg.visible_at, msg.seq))
                    .map_err(|e| db_err("retry later", e))?;
                msg.visible_at = now.saturating_add(millis(delay));
                index
                    .insert((queue_name.as_str(), msg.visible_at, msg.seq), id.as_str())
                    .map_err(|e| db_err("retry later", e))?;
                let bytes =
                    serde_json::to_vec(&msg).map_err(|e| json_err("cannot encode job", e))?;
                messages
                    .insert((queue_name.as_str(), id.as_str()), bytes.as_slice())
                    .map_err(|e| db_err("retry later", e))?;
            }
            commit(txn, "retry later")
        })
        .await?;
        if delay.is_zero() {
            self.wake(queue);
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let queue = queue.to_string();
        self.blocking(move |inner| {
            let now = inner.clock.now_ms();
            let txn = inner.db.begin_read().map_err(|e| db_err("depth", e))?;
            let index = txn.open_table(VISIBILITY).map_err(|e| db_err("depth", e))?;
            let dead = txn.open_table(DEAD).map_err(|e| db_err("depth", e))?;
            let mut depth = QueueDepth::default();
            for entry in index
                .range::<(&str, i64, u64)>(visibility_range(&queue, Bound::Unbounded))
                .map_err(|e| db_err("depth", e))?
            {
                let (k, _) = entry.map_err(|e| db_err("depth", e))?;
                let (_, visible_at, _) = k.value();
                if visible_at <= now {
                    depth.visible += 1;
                } else {
                    depth.in_flight += 1;
                }
            }
            let dead_range = (
                Bound::Included((queue.as_str(), 0u64)),
                Bound::Included((queue.as_str(), u64::MAX)),
            );
            for entry in dead
                .range::<(&str, u64)>(dead_range)
                .map_err(|e| db_err("depth", e))?
            {
                entry.map_err(|e| db_err("depth", e))?;
                depth.dead += 1;
            }
            Ok(depth)
        })
        .await
    }

    async fn dead_letters(&self, queue: &str, max: usize) -> Result<Vec<DeliveryJob>, QueueError> {
        let queue = queue.to_string();
        self.blocking(move |inner| {
            let txn = inner
                .db
                .begin_read()
                .map_err(|e| db_err("dead letters", e))?;
            let dead = txn
                .open_table(DEAD)
                .map_err(|e| db_err("dead letters", e))?;
            let dead_range = (
                Bound::Included((queue.as_str(), 0u64)),
                Bound::Included((queue.as_str(), u64::MAX)),
            );
            let mut out = Vec::new();
            for entry in dead
                .range::<(&str, u64)>(dead_range)
                .map_err(|e| db_err("dead letters", e))?
                .take(max)
            {
                let (_, v) = entry.map_err(|e| db_err("dead letters", e))?;
                let letter: DeadMessage = serde_json::from_slice(v.value())
                    .map_err(|e| json_err("corrupt dead letter", e))?;
                out.push(letter.job);
            }
            Ok(out)
        })
        .await
    }

    async fn redrive(&self, queue: &str) -> Result<u64, QueueError> {
        let queue_name = queue.to_string();
        let moved = self
            .blocking(move |inner| {
                let now = inner.clock.now_ms();
                let txn = inner.db.begin_write().map_err(|e| db_err("redrive", e))?;
                let moved = {
                    let mut dead = txn.open_table(DEAD).map_err(|e| db_err("redrive", e))?;
                    let dead_range = (
                        Bound::Included((queue_name.as_str(), 0u64)),
                        Bound::Included((queue_name.as_str(), u64::MAX)),
                    );
                    let mut letters = Vec::new();
                    for entry in dead
                        .extract_from_if::<(&str, u64), _>(dead_range, |_, _| true)
                        .map_err(|e| db_err("redrive", e))?
                    {
                        let (_, v) = entry.map_err(|e| db_err("redrive", e))?;
                        let letter: DeadMessage = serde_json::from_slice(v.value())
                            .map_err(|e| json_err("corrupt dead letter", e))?;
                        letters.push(letter);
                    }
                    drop(dead);
                    let moved = letters.len() as u64;
                    let jobs = letters.into_iter().map(|l| (l.message_id, l.job)).collect();
                    enqueue(&txn, &queue_name, now, jobs, "redrive")?;
                    moved
                };
                if moved > 0 {
                    commit(txn, "redrive")?;
                }
                Ok(moved)
            })
            .await?;
        if moved > 0 {
            self.wake(queue);
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests;
