//! One SQS batch for one destination, with Powertools' batch semantics:
//!
//! * every record is judged on its own: a body that is not a delivery job
//!   fails alone (SQS redelivers it until `maxReceiveCount`, then it sits in
//!   the DLQ for an operator), its neighbours are delivered;
//! * the jobs that parse are delivered together, so requests fill the
//!   destination's largest batch across jobs;
//! * a job the pipeline wants back later is reported as a batch item
//!   failure, after its visibility is set to the pipeline's backoff;
//! * if *every* record failed the invocation errors instead, so the whole
//!   batch backs off (a destination outage should not spin the poller).

use std::sync::Arc;

use dataout::adapters::sqs::parse_job_body;
use dataout::destinations::{Destination, DestinationAlert};
use dataout::pipeline::deliver::{deliver_jobs, DeliveryOptions, DeliveryTotals, Disposition};
use dataout::pipeline::Deps;
use dataout::ports::ReceivedJob;
use dataout::telemetry::emf_line;
use thiserror::Error;
use tracing::{info, info_span, warn, Instrument};

/// An SQS record as the handler needs it (converted from the Lambda event
/// in `event`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRecord {
    pub message_id: String,
    pub receipt_handle: String,
    /// 1 on first delivery.
    pub receive_count: u32,
    pub body: String,
}

/// What one invocation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Message ids to hand back to SQS (the partial batch response).
    pub failed_message_ids: Vec<String>,
    /// Records whose body is not a delivery job for this destination.
    pub poison: u64,
    pub totals: DeliveryTotals,
}

#[derive(Debug, Error)]
pub enum DeliverError {
    /// Every record failed: error the invocation so the whole batch backs
    /// off (Lambda retries it after the visibility timeout).
    #[error("all {records} records of the batch failed; the whole batch goes back to the queue")]
    AllFailed {
        records: usize,
        outcome: BatchOutcome,
    },
}

impl DeliverError {
    /// Always worth retrying: the failures were judged one by one, and
    /// each poison record still ends in the DLQ after its last receive.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliverError::AllFailed { .. } => true,
        }
    }
}

/// Deliver one batch. `records` keep their SQS order.
pub async fn handle_batch(
    deps: &Deps,
    destination: &Arc<dyn Destination>,
    opts: &DeliveryOptions,
    records: &[QueueRecord],
) -> Result<BatchOutcome, DeliverError> {
    let mut outcome = BatchOutcome::default();
    let mut received = Vec::with_capacity(records.len());
    for record in records {
        match parse_job_body(&record.body) {
            Ok(job) if job.destination == destination.name() => received.push(ReceivedJob {
                message_id: record.message_id.clone(),
                receipt: record.receipt_handle.clone(),
                receive_count: record.receive_count.max(1),
                job,
            }),
            Ok(job) => {
                warn!(
                    message_id = %record.message_id,
                    job_id = %job.job_id,
                    export = %job.export,
                    destination = destination.name(),
                    job_destination = %job.destination,
                    "job is for another destination; leaving it for the DLQ"
                );
                outcome.poison += 1;
                outcome.failed_message_ids.push(record.message_id.clone());
            }
            Err(e) => {
                // The error names only the position, never the body.
                warn!(
                    message_id = %record.message_id,
                    destination = destination.name(),
                    receive_count = record.receive_count,
                    error = %e,
                    "message body is not a delivery job; leaving it for the DLQ"
                );
                outcome.poison += 1;
                outcome.failed_message_ids.push(record.message_id.clone());
            }
        }
    }

    if !received.is_empty() {
        let span = info_span!(
            "deliver",
            destination = destination.name(),
            jobs = received.len()
        );
        let (dispositions, totals) = deliver_jobs(deps, destination, &received, opts)
            .instrument(span)
            .await;
        outcome.totals = totals;
        for (job, disposition) in received.iter().zip(dispositions) {
            if let Disposition::RetryAfter(delay) = disposition {
                // Backoff: the message reappears after `delay` instead of
                // the queue's visibility timeout. Best effort: if it fails,
                // the visibility timeout still brings it back.
                if let Err(e) = deps
                    .queue
                    .retry_later(destination.name(), &job.receipt, delay)
                    .await
                {
                    warn!(message_id = %job.message_id, job_id = %job.job.job_id, error = %e, "could not set the retry delay");
                }
                info!(
                    message_id = %job.message_id,
                    job_id = %job.job.job_id,
                    export = %job.job.export,
                    destination = destination.name(),
                    receive_count = job.receive_count,
                    delay_ms = delay.as_millis() as u64,
                    "job goes back to the queue"
                );
                outcome.failed_message_ids.push(job.message_id.clone());
            }
        }
    }

    // Report failures in the order SQS gave the records.
    outcome.failed_message_ids.sort_by_key(|id| {
        records
            .iter()
            .position(|r| &r.message_id == id)
            .unwrap_or(usize::MAX)
    });
    info!(
        destination = destination.name(),
        records = records.len(),
        failed = outcome.failed_message_ids.len(),
        poison = outcome.poison,
        accepted = outcome.totals.accepted,
        rejected = outcome.totals.rejected,
        unmatched = outcome.totals.unmatched,
        "batch delivered"
    );
    if !records.is_empty() && outcome.failed_message_ids.len() == records.len() {
        return Err(DeliverError::AllFailed {
            records: records.len(),
            outcome,
        });
    }
    Ok(outcome)
}

/// The invocation's metrics as one CloudWatch EMF line (namespace,
/// dimensions `service` and `destination`).
pub fn metrics_line(
    namespace: &str,
    destination: &str,
    outcome: &BatchOutcome,
    now_ms: i64,
) -> String {
    let t = &outcome.totals;
    emf_line(
        namespace,
        &[("service", "deliver"), ("destination", destination)],
        &[
            ("JobsDone", t.jobs_done as f64, "Count"),
            ("JobsRetried", t.jobs_retry as f64, "Count"),
            ("JobsDuplicate", t.jobs_duplicate as f64, "Count"),
            ("PoisonMessages", outcome.poison as f64, "Count"),
            ("Accepted", t.accepted as f64, "Count"),
            ("Rejected", t.rejected as f64, "Count"),
            ("Unmatched", t.unmatched as f64, "Count"),
            ("Requests", t.requests as f64, "Count"),
        ],
        now_ms,
    )
}

/// One EMF line per condition that needs a person, every invocation while it
/// lasts: `AudiencePaused` with the audience as a dimension (the alarm names
/// the id) and `ApiVersionDeprecated`.
pub fn alert_lines(
    namespace: &str,
    destination: &str,
    alerts: &[DestinationAlert],
    now_ms: i64,
) -> Vec<String> {
    alerts
        .iter()
        .map(|alert| match alert {
            DestinationAlert::AudiencePaused { audience, .. } => emf_line(
                namespace,
                &[
                    ("service", "deliver"),
                    ("destination", destination),
                    ("audience", audience),
                ],
                &[("AudiencePaused", 1.0, "Count")],
                now_ms,
            ),
            DestinationAlert::ApiVersionDeprecated { .. } => emf_line(
                namespace,
                &[("service", "deliver"), ("destination", destination)],
                &[("ApiVersionDeprecated", 1.0, "Count")],
                now_ms,
            ),
        })
        .collect()
}
