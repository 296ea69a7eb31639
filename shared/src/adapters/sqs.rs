//! SQS adapter of the job queue: one standard queue per destination, each
//! with a dead-letter queue reached after `maxReceiveCount` receives
//! (RedrivePolicy). A job is one message: its JSON is the body; `export`,
//! `destination` and `job_id` ride as message attributes so a console or a
//! filter can tell messages apart without parsing bodies.
//!
//! * A job whose JSON exceeds [`MAX_JOB_BYTES`] is split by ops into parts
//!   `<job_id>-p1`, `<job_id>-p2`, …, deterministically, so a re-derived
//!   job splits into the same ids. (SQS takes 1 MiB since 2025; the 240 KiB
//!   cap leaves room under the older 256 KiB limit.)
//! * Sends go in SendMessageBatch calls of ≤ 10 entries and ≤ 1 MiB; failed
//!   entries are re-sent with backoff.
//! * `receive` long-polls at most 1 s ([`SqsJobQueue::with_receive_wait`]); a body that is not a job is left
//!   alone, so it comes back after the visibility timeout and, after
//!   `maxReceiveCount` receives, lands in the dead-letter queue.
//! * `dead_letters` peeks: it receives from the DLQ with visibility 0.
//! * Throttling, 5xx and timeouts are retried here, then surface as
//!   `Retryable`; the rest is `Permanent` with the SDK error as source.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use backon::BackoffBuilder;

use crate::adapters::aws_errors::{backoff, retry_counted, SdkFailure};
use crate::domain::model::DeliveryJob;
use crate::ports::{JobQueue, QueueDepth, QueueError, ReceivedJob};

/// Largest job body we put on a queue.
pub const MAX_JOB_BYTES: usize = 240 * 1024;
/// SendMessageBatch: at most 10 entries …
const BATCH_ENTRIES: usize = 10;
/// … and at most 1 MiB in total (bodies plus attributes); kept a little under.
const BATCH_BYTES: usize = 1024 * 1024 - 16 * 1024;
/// ReceiveMessage returns at most 10 messages.
const RECEIVE_MAX: usize = 10;
/// Longest visibility SQS allows: 12 hours.
const MAX_VISIBILITY_SECS: u64 = 12 * 60 * 60;
/// Longest long poll: keeps a Lambda's receive loop responsive.
const LONG_POLL_SECS: i32 = 1;
/// Retention of dead letters created by [`SqsJobQueue::create_queues`]: the
/// SQS maximum, 14 days, so an operator has time to look.
const DLQ_RETENTION_SECS: u32 = 14 * 24 * 60 * 60;
/// Safety bound of one redrive call.
const REDRIVE_MAX: u64 = 1_000_000;

/// The queue and dead-letter queue of one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueUrls {
    pub queue_url: String,
    pub dlq_url: String,
}

fn classify<E>(what: &str, err: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let f = SdkFailure::of(what, err);
    if f.retryable {
        QueueError::Retryable {
            message: f.message,
            source: Some(f.source),
        }
    } else {
        QueueError::Permanent {
            message: f.message,
            source: Some(f.source),
        }
    }
}

fn build_err(what: &str, err: aws_sdk_sqs::error::BuildError) -> QueueError {
    QueueError::Permanent {
        message: format!("{what}: could not build the request: {err}"),
        source: Some(Box::new(err)),
    }
}

/// A delivery job from an SQS message body (the deliver Lambda's SQS event
/// records carry the same body).
pub fn parse_job_body(body: &str) -> Result<DeliveryJob, QueueError> {
    // Only the position: serde's message may quote values (emails).
    serde_json::from_str(body).map_err(|e| {
        QueueError::permanent(format!(
            "message body is not a delivery job ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

fn job_json(job: &DeliveryJob) -> Result<String, QueueError> {
    serde_json::to_string(job).map_err(|e| QueueError::Permanent {
        message: format!("job {}: cannot encode: {e}", job.job_id),
        source: Some(Box::new(e)),
    })
}

/// Split a job whose JSON exceeds [`MAX_JOB_BYTES`] into parts by ops, in op
/// order, ids `<job_id>-p<N>` from 1. A job that fits comes back as is.
/// Returns each part with its JSON body.
pub fn split_job(job: &DeliveryJob) -> Result<Vec<(DeliveryJob, String)>, QueueError> {
    let whole = job_json(job)?;
    if whole.len() <= MAX_JOB_BYTES {
        return Ok(vec![(job.clone(), whole)]);
    }
    // Envelope size with the longest part id we could give.
    let envelope = DeliveryJob {
        job_id: format!("{}-p{}", job.job_id, usize::MAX),
        ops: Vec::new(),
        ..job.clone()
    };
    let budget = MAX_JOB_BYTES.saturating_sub(job_json(&envelope)?.len());
    let mut groups: Vec<Vec<crate::domain::model::DeliveryOp>> = Vec::new();
    let mut current = Vec::new();
    let mut used = 0usize;
    for op in &job.ops {
        let size = serde_json::to_string(op)
            .map_err(|e| QueueError::Permanent {
                message: format!("job {}: cannot encode an op: {e}", job.job_id),
                source: Some(Box::new(e)),
            })?
            .len()
            + 1;
        if size > budget {
            return Err(QueueError::permanent(format!(
                "job {}: one op of {} bytes cannot fit a {} byte message",
                job.job_id, size, MAX_JOB_BYTES
            )));
        }
        if used + size > budget && !current.is_empty() {
            groups.push(std::mem::take(&mut current));
            used = 0;
        }
        used += size;
        current.push(op.clone());
    }
    if !current.is_empty() {
        groups.push(current);
    }
    let mut parts = Vec::with_capacity(groups.len());
    for (i, ops) in groups.into_iter().enumerate() {
        let part = DeliveryJob {
            job_id: format!("{}-p{}", job.job_id, i + 1),
            ops,
            ..job.clone()
        };
        let body = job_json(&part)?;
        if body.len() > MAX_JOB_BYTES {
            return Err(QueueError::permanent(format!(
                "job {}: part {} is still {} bytes",
                job.job_id,
                i + 1,
                body.len()
            )));
        }
        parts.push((part, body));
    }
    Ok(parts)
}

/// One message to send: body and attributes.
#[derive(Clone, Debug)]
struct Outgoing {
    body: String,
    attributes: HashMap<String, MessageAttributeValue>,
}

impl Outgoing {
    fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.data_type().len() + v.string_value().map_or(0, str::len))
                .sum::<usize>()
    }
}

fn text_attribute(value: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| build_err("message attribute", e))
}

/// Receive counts start at 1.
fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The job queue on SQS. Queue names in the map are destination names.
#[derive(Clone, Debug)]
pub struct SqsJobQueue {
    client: Client,
    queues: BTreeMap<String, QueueUrls>,
    requests: Arc<AtomicU64>,
    /// Long-poll wait of `receive`, whole seconds, 0 or 1.
    wait_secs: i32,
}

impl SqsJobQueue {
    pub fn new(client: Client, queues: BTreeMap<String, QueueUrls>) -> Self {
        Self {
            client,
            queues,
            requests: Arc::new(AtomicU64::new(0)),
            wait_secs: LONG_POLL_SECS,
        }
    }

    /// Change how long an empty `receive` waits (default 1 s, the most
    /// allowed; SQS counts whole seconds). Zero short-polls: exact on a
    /// single-node server such as moto's, but real SQS then samples a subset
    /// of its servers and may answer empty while messages wait.
    pub fn with_receive_wait(mut self, wait: Duration) -> Self {
        self.wait_secs = if wait >= Duration::from_secs(1) {
            LONG_POLL_SECS
        } else {
            0
        };
        self
    }

    /// SQS requests sent so far (retries included): sizes the bill.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Create a queue and its dead-letter queue (`<name>-dlq`) per name, with
    /// the redrive policy (tests and local setups; the SAM template does it
    /// on AWS). Existing queues with the same attributes are reused.
    pub async fn create_queues(
        client: &Client,
        names: &[&str],
        visibility_timeout: Duration,
        max_receives: u32,
    ) -> Result<BTreeMap<String, QueueUrls>, QueueError> {
        let mut out = BTreeMap::new();
        for name in names {
            let what = "create queues";
            let dlq = client
                .create_queue()
                .queue_name(format!("{name}-dlq"))
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    DLQ_RETENTION_SECS.to_string(),
                )
                .send()
                .await
                .map_err(|e| classify(what, e))?;
            let dlq_url = dlq
                .queue_url
                .ok_or_else(|| QueueError::permanent(format!("{what}: no URL for {name}-dlq")))?;
            let attrs = client
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|e| classify(what, e))?;
            let dlq_arn = attrs
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn))
                .ok_or_else(|| QueueError::permanent(format!("{what}: no ARN for {name}-dlq")))?;
            let redrive = serde_json::json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": max_receives.to_string(),
            });
            let queue = client
                .create_queue()
                .queue_name(*name)
                .attributes(
                    QueueAttributeName::VisibilityTimeout,
                    visibility_timeout.as_secs().to_string(),
                )
                .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
                .send()
                .await
                .map_err(|e| classify(what, e))?;
            let queue_url = queue
                .queue_url
                .ok_or_else(|| QueueError::permanent(format!("{what}: no URL for {name}")))?;
            out.insert(name.to_string(), QueueUrls { queue_url, dlq_url });
        }
        Ok(out)
    }

    fn urls(&self, queue: &str) -> Result<&QueueUrls, QueueError> {
        self.queues.get(queue).ok_or_else(|| {
            QueueError::permanent(format!("no queue configured for destination `{queue}`"))
        })
    }

    /// Run one request with in-adapter retries of transient failures,
    /// counting every attempt.
    async fn retrying<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, QueueError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        retry_counted(&self.requests, "queue", what, QueueError::is_retryable, f).await
    }

    /// SendMessageBatch in groups of ≤ 10 entries and ≤ 1 MiB, re-sending
    /// the entries SQS reports as failed.
    async fn send_all(
        &self,
        what: &'static str,
        url: &str,
        messages: Vec<Outgoing>,
    ) -> Result<(), QueueError> {
        let mut groups: Vec<Vec<Outgoing>> = Vec::new();
        let mut bytes = 0usize;
        for message in messages {
            let size = message.size();
            let full = groups
                .last()
                .is_none_or(|g| g.len() == BATCH_ENTRIES || bytes + size > BATCH_BYTES);
            if full {
                groups.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(group) = groups.last_mut() {
                group.push(message);
            }
        }
        for group in groups {
            let mut pending: BTreeMap<String, Outgoing> = group
                .into_iter()
                .enumerate()
                .map(|(i, m)| (i.to_string(), m))
                .collect();
            let mut delays = backoff().with_max_times(6).build();
            loop {
                let mut entries = Vec::with_capacity(pending.len());
                for (id, m) in &pending {
                    let entry = SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(&m.body)
                        .set_message_attributes(Some(m.attributes.clone()))
                        .build()
                        .map_err(|e| build_err(what, e))?;
                    entries.push(entry);
                }
                let out = self
                    .retrying(what, || async {
                        self.client
                            .send_message_batch()
                            .queue_url(url)
                            .set_entries(Some(entries.clone()))
                            .send()
                            .await
                            .map_err(|e| classify(what, e))
                    })
                    .await?;
                let failed: BTreeSet<&str> = out.failed().iter().map(|f| f.id()).collect();
                if let Some(bad) = out.failed().iter().find(|f| f.sender_fault()) {
                    return Err(QueueError::permanent(format!(
                        "{what}: SQS refused a message: {} {}",
                        bad.code(),
                        bad.message().unwrap_or_default()
                    )));
                }
                pending.retain(|id, _| failed.contains(id.as_str()));
                if pending.is_empty() {
                    break;
                }
                let Some(delay) = delays.next() else {
                    return Err(QueueError::retryable(format!(
                        "{what}: {} messages still failing after retries",
                        pending.len()
                    )));
                };
                tokio::time::sleep(delay).await;
            }
        }
        Ok(())
    }

    async fn receive_messages(
        &self,
        what: &'static str,
        url: &str,
        max: usize,
        wait_secs: i32,
        visibility: Option<i32>,
        with_attributes: bool,
    ) -> Result<Vec<Message>, QueueError> {
        let max = i32::try_from(max.clamp(1, RECEIVE_MAX)).unwrap_or(1);
        self.retrying(what, || async {
            let mut req = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(max)
                .wait_time_seconds(wait_secs)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .set_visibility_timeout(visibility);
            if with_attributes {
                req = req.message_attribute_names("All");
            }
            req.send()
                .await
                .map(|out| out.messages.unwrap_or_default())
                .map_err(|e| classify(what, e))
        })
        .await
    }

    async fn queue_counts(
        &self,
        what: &'static str,
        url: &str,
        names: &[QueueAttributeName],
    ) -> Result<u64, QueueError> {
        let out = self
            .retrying(what, || async {
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .set_attribute_names(Some(names.to_vec()))
                    .send()
                    .await
                    .map_err(|e| classify(what, e))
            })
            .await?;
        let attrs = out.attributes();
        let mut total = 0u64;
        for name in names {
            let value = attrs
                .and_then(|a| a.get(name))
                .map(String::as_str)
                .unwrap_or("0");
            total += value.parse::<u64>().map_err(|_| {
                QueueError::permanent(format!("{what}: attribute {name} is not a count"))
            })?;
        }
        Ok(total)
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn send(&self, queue: &str, jobs: &[DeliveryJob]) -> Result<(), QueueError> {
        let urls = self.urls(queue)?;
        let mut messages = Vec::with_capacity(jobs.len());
        for job in jobs {
            let parts = split_job(job)?;
            if parts.len() > 1 {
                tracing::info!(
                    job_id = %job.job_id,
                    export = %job.export,
                    destination = %job.destination,
                    parts = parts.len(),
                    "job split to fit a queue message"
                );
            }
            for (part, body) in parts {
                let attributes = HashMap::from([
                    ("export".to_string(), text_attribute(&part.export)?),
                    (
                        "destination".to_string(),
                        text_attribute(&part.destination)?,
                    ),
                    ("job_id".to_string(), text_attribute(&part.job_id)?),
                ]);
                messages.push(Outgoing { body, attributes });
            }
        }
        self.send_all("send jobs", &urls.queue_url, messages).await
    }

    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<ReceivedJob>, QueueError> {
        let what = "receive jobs";
        let urls = self.urls(queue)?;
        let mut out = Vec::new();
        let mut wait = self.wait_secs;
        while out.len() < max {
            let want = (max - out.len()).min(RECEIVE_MAX);
            let messages = self
                .receive_messages(what, &urls.queue_url, want, wait, None, false)
                .await?;
            let got = messages.len();
            for message in messages {
                let message_id = message.message_id().unwrap_or_default().to_string();
                let (Some(receipt), Some(body)) = (message.receipt_handle(), message.body()) else {
                    tracing::warn!(message_id = %message_id, queue, "message without receipt or body skipped");
                    continue;
                };
                match parse_job_body(body) {
                    Ok(job) => out.push(ReceivedJob {
                        receive_count: receive_count(&message),
                        message_id,
                        receipt: receipt.to_string(),
                        job,
                    }),
                    // Left in flight: it comes back, and dead-letters after
                    // maxReceiveCount receives.
                    Err(e) => tracing::warn!(
                        message_id = %message_id,
                        queue,
                        error = %e,
                        "poison message left to dead-letter"
                    ),
                }
            }
            if got < want {
                break;
            }
            wait = 0;
        }
        Ok(out)
    }

    async fn ack(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        let what = "ack job";
        let urls = self.urls(queue)?;
        self.retrying(what, || async {
            self.client
                .delete_message()
                .queue_url(&urls.queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(what, e))
        })
        .await
    }

    async fn retry_later(
        &self,
        queue: &str,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let what = "retry job later";
        let urls = self.urls(queue)?;
        let secs = delay
            .as_secs()
            .saturating_add(u64::from(delay.subsec_nanos() > 0))
            .min(MAX_VISIBILITY_SECS);
        let secs = i32::try_from(secs).unwrap_or(i32::MAX);
        self.retrying(what, || async {
            self.client
                .change_message_visibility()
                .queue_url(&urls.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(secs)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(what, e))
        })
        .await
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let what = "queue depth";
        let urls = self.urls(queue)?;
        let visible = self
            .queue_counts(
                what,
                &urls.queue_url,
                &[QueueAttributeName::ApproximateNumberOfMessages],
            )
            .await?;
        let in_flight = self
            .queue_counts(
                what,
                &urls.queue_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ],
            )
            .await?;
        let dead = self
            .queue_counts(
                what,
                &urls.dlq_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
        Ok(QueueDepth {
            visible,
            in_flight,
            dead,
        })
    }

    async fn dead_letters(&self, queue: &str, max: usize) -> Result<Vec<DeliveryJob>, QueueError> {
        let what = "peek dead letters";
        let urls = self.urls(queue)?;
        let mut seen = BTreeSet::new();
        let mut jobs = Vec::new();
        let mut wait = self.wait_secs;
        // Visibility 0 leaves them in place; the same ones may come again.
        for _ in 0..max.div_ceil(RECEIVE_MAX) + 3 {
            if seen.len() >= max {
                break;
            }
            let messages = self
                .receive_messages(what, &urls.dlq_url, RECEIVE_MAX, wait, Some(0), false)
                .await?;
            wait = 0;
            let mut fresh = 0;
            for message in messages {
                let id = message.message_id().unwrap_or_default().to_string();
                if seen.len() >= max || !seen.insert(id.clone()) {
                    continue;
                }
                fresh += 1;
                match message.body().map(parse_job_body) {
                    Some(Ok(job)) => jobs.push(job),
                    _ => {
                        tracing::warn!(message_id = %id, queue, "dead letter is not a job; skipped")
                    }
                }
            }
            if fresh == 0 {
                break;
            }
        }
        Ok(jobs)
    }

    async fn redrive(&self, queue: &str) -> Result<u64, QueueError> {
        let what = "redrive dead letters";
        let urls = self.urls(queue)?;
        let mut moved = 0u64;
        while moved < REDRIVE_MAX {
            let messages = self
                .receive_messages(what, &urls.dlq_url, RECEIVE_MAX, self.wait_secs, None, true)
                .await?;
            if messages.is_empty() {
                break;
            }
            let mut outgoing = Vec::with_capacity(messages.len());
            let mut receipts = Vec::with_capacity(messages.len());
            for message in &messages {
                let (Some(body), Some(receipt)) = (message.body(), message.receipt_handle()) else {
                    continue;
                };
                outgoing.push(Outgoing {
                    body: body.to_string(),
                    attributes: message.message_attributes().cloned().unwrap_or_default(),
                });
                receipts.push(receipt.to_string());
            }
            // Send first, then delete: a crash in between duplicates, never loses.
            self.send_all(what, &urls.queue_url, outgoing).await?;
            for receipt in &receipts {
                self.retrying(what, || async {
                    self.client
                        .delete_message()
                        .queue_url(&urls.dlq_url)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| classify(what, e))
                })
                .await?;
                moved += 1;
            }
        }
        tracing::info!(queue, moved, "dead letters redriven");
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{DeliveryOp, Identifiers, OpKind, PersonKey};

    fn job_with_ops(n: usize, attr_bytes: usize) -> DeliveryJob {
        let ops = (0..n)
            .map(|i| DeliveryOp {
                op: OpKind::Add,
                person_key: PersonKey(format!("id:{i}")),
                ids: Identifiers::default(),
                audience: "aud".into(),
                tier: None,
                attributes: [(
                    "blob".to_string(),
                    serde_json::json!("x".repeat(attr_bytes)),
                )]
                .into_iter()
                .collect(),
                event: None,
                source_ts: 1,
                intake_ts: 2,
            })
            .collect();
        DeliveryJob {
            replace: false,
            replace_from: None,
            repair: false,
            job_id: "job_1".into(),
            export: "e".into(),
            destination: "d".into(),
            run_id: None,
            created_at: 0,
            config_hash: "h".into(),
            attempt: 0,
            ops,
        }
    }

    #[test]
    fn small_job_is_sent_whole() {
        let job = job_with_ops(3, 10);
        let parts = split_job(&job).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, job);
    }

    #[test]
    fn oversized_job_splits_into_numbered_parts_that_keep_every_op() {
        let job = job_with_ops(100, 5_000);
        let parts = split_job(&job).unwrap();
        assert!(parts.len() >= 3, "{} parts", parts.len());
        for (i, (part, body)) in parts.iter().enumerate() {
            assert_eq!(part.job_id, format!("job_1-p{}", i + 1));
            assert!(body.len() <= MAX_JOB_BYTES);
            assert_eq!(&parse_job_body(body).unwrap(), part);
        }
        let ops: Vec<_> = parts.into_iter().flat_map(|(p, _)| p.ops).collect();
        assert_eq!(ops, job.ops);
        assert_eq!(
            split_job(&job).unwrap().len(),
            split_job(&job).unwrap().len()
        );
    }

    #[test]
    fn single_op_too_big_for_a_message_is_permanent() {
        let job = job_with_ops(2, MAX_JOB_BYTES);
        assert!(!split_job(&job).unwrap_err().is_retryable());
    }

    #[test]
    fn unparseable_body_error_does_not_echo_the_body() {
        let err = parse_job_body(r#"{"job_id": "a@b.com"}"#).unwrap_err();
        assert!(!err.to_string().contains("a@b.com"));
        assert!(!err.is_retryable());
    }
}
