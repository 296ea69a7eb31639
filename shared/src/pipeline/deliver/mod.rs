//! Delivery: take jobs off a destination's queue, fill the destination's
//! largest batch, send, classify every outcome, count.
//!
//! * A job is claimed with an idempotency record keyed by its (deterministic)
//!   id, so a redelivered or re-enqueued job is sent once.
//! * One bad person never fails their neighbours: outcomes are per op.
//!   Ops the destination asks us to retry stay in their job, which goes
//!   back to the queue: its next delivery sends only them.
//! * An op a newer change overtook (an add retried after the person left)
//!   is not sent: counted `superseded`. One overtaken while in flight may
//!   have landed last: a repair job re-asserts state (see `repair`).
//! * A whole request that fails (rate limit, outage, bad credentials) sends
//!   the job back with backoff; after the queue's last attempt it lands in
//!   the dead-letter queue, where `redrive` can bring it back once fixed.
//! * Counters and the jobs' outcomes are settled in one atomic write.
//! * Every send first takes a permit of the destination's process-wide
//!   limiter (`max_concurrency`, `max_requests_per_second`: see `limits`).

mod plan;
mod repair;
mod replace;
mod superseded;
mod tally;

pub use plan::plan_requests;
pub use superseded::{keeps_every_change, superseded};

use plan::is_canary;
use repair::repair_late_ops;
use replace::replace_job;
use superseded::check_superseded;
use tally::tally_job;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, info_span, warn, Instrument};

use super::Deps;
use crate::destinations::{Destination, DestinationError, OpOutcome};
use crate::domain::model::{counter, CounterScope, DeliveryJob, DeliveryOp, Millis};
use crate::domain::spec::DestinationKind;
use crate::ports::{IdempotencyStart, JobSettlement, ReceivedJob, StateError};

/// What to do with a received job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Done (delivered, or recorded as rejected): delete it from the queue.
    Done,
    /// Leave it on the queue; it comes back after this delay.
    RetryAfter(Duration),
}

#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// Attempts before a job is given up (the queue's max receives).
    pub max_attempts: u32,
    /// How long a claimed job stays claimed if its worker dies.
    pub in_progress_ttl: Duration,
    /// How long a delivered job id is remembered.
    pub dedup_ttl: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            max_attempts: 5,
            in_progress_ttl: Duration::from_secs(300),
            dedup_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Totals of one call, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryTotals {
    pub jobs_done: u64,
    pub jobs_retry: u64,
    pub jobs_duplicate: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub unmatched: u64,
    /// Ops our own checks kept from being sent.
    pub invalid: u64,
    /// Fields refused on ops accepted without them (also in `accepted`).
    pub fields_refused: u64,
    pub requests: u64,
    /// Repair jobs enqueued (see `deliver/repair.rs`).
    pub repairs_enqueued: u64,
}

/// Exponential backoff with jitter, capped at 15 minutes.
pub fn backoff(receive_count: u32) -> Duration {
    let base = 2u64.saturating_pow(receive_count.min(10)).min(900);
    let jitter = rand::random::<u64>() % 1000;
    Duration::from_millis(base * 1000 / 2 + jitter)
}

/// Tries of one settle write before its jobs go again.
const SETTLE_TRIES: u32 = 4;

/// Settle a group, trying a throttled or failed write again at once: the
/// requests already went out, and a job that goes again is sent again,
/// which a platform keeping every record (CleverTap's events) counts twice.
/// A try after one whose answer was lost finds the claims gone: those jobs
/// come back as taken over and their redelivery finds them done.
async fn settle(
    deps: &Deps,
    settlements: &[JobSettlement],
    duplicates: &[(String, Vec<(String, i64)>)],
) -> Result<Vec<String>, StateError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match deps.state.settle_jobs(settlements, duplicates).await {
            Err(e) if e.is_retryable() && tries < SETTLE_TRIES => {
                warn!(error = %e, tries, "settle write failed: trying again");
                tokio::time::sleep(Duration::from_millis(50 << tries)).await;
            }
            other => return other,
        }
    }
}

/// Jobs settled per state-store transaction (each job is one write, each
/// export's counters another; DynamoDB takes 100 per transaction).
const SETTLE_GROUP: usize = 32;

struct Claimed<'a> {
    received: &'a ReceivedJob,
    key: String,
    /// The claim held (its `in_progress_until`): the settle is fenced on it.
    claimed_until: Millis,
    /// The job's ops, refreshed where state holds a newer change.
    ops: Vec<DeliveryOp>,
    /// Ops finished by earlier attempts (a partial settlement).
    finished: BTreeSet<u32>,
    /// Ops a newer change in state made pointless (see [`superseded`]).
    superseded: Vec<bool>,
    outcomes: Vec<Option<OpOutcome>>,
    failed: Option<DestinationError>,
    /// Ops whose request was made in this attempt (it may have landed,
    /// whatever the answer).
    sent: Vec<bool>,
    /// Repair jobs this attempt found needed (see [`repair`]).
    repairs: Vec<DeliveryJob>,
    /// Why this attempt cannot settle (its repairs could not be checked or
    /// enqueued): it counts nothing and the job goes again.
    unsettled: Option<String>,
}

impl Claimed<'_> {
    fn open(&self, oi: usize) -> bool {
        !self.finished.contains(&(oi as u32)) && !self.superseded[oi]
    }
}

/// Deliver a batch of received jobs to one destination. Returns one
/// disposition per job, in order.
///
/// Exactly once in effect and in the counters: each job's outcome (its
/// counters, and which ops are finished) is written in one atomic settle
/// per group of jobs, after the sends. A worker killed before it has
/// counted nothing and its claim runs out, so the job is sent again;
/// killed after, the redelivered job is a duplicate. Ops the destination
/// asks to retry stay in the same job: the next delivery sends only them.
pub async fn deliver_jobs(
    deps: &Deps,
    destination: &Arc<dyn Destination>,
    jobs: &[ReceivedJob],
    opts: &DeliveryOptions,
) -> (Vec<Disposition>, DeliveryTotals) {
    let mut totals = DeliveryTotals::default();
    let mut dispositions = vec![Disposition::Done; jobs.len()];
    // Work the platform finished since an earlier invocation (Google request
    // statuses, Ads API jobs): read it first, never waiting for it.
    match destination.settle().await {
        Ok(s) if s.finished + s.rejected > 0 => {
            info!(
                destination = destination.name(),
                finished = s.finished,
                pending = s.pending,
                rejected = s.rejected,
                "settled earlier requests"
            )
        }
        Ok(_) => {}
        Err(e) => {
            warn!(destination = destination.name(), error = %e, "could not settle earlier requests")
        }
    }
    let now = deps.clock.now_ms();
    let mut claimed: Vec<(usize, Claimed)> = Vec::new();
    let mut duplicates: BTreeMap<String, i64> = BTreeMap::new();
    for (i, received) in jobs.iter().enumerate() {
        let key = format!("job:{}:{}", destination.name(), received.job.job_id);
        let until = now + opts.in_progress_ttl.as_millis() as i64;
        let expires = now + opts.dedup_ttl.as_millis() as i64;
        match deps.state.claim_job(&key, now, until, expires).await {
            Ok((IdempotencyStart::Started, _)) if received.job.replace => {
                // A full replace is a job of its own, never batched.
                let done = match replace_job(deps, destination, &received.job).await {
                    Ok(deltas) => {
                        let expires = deps.clock.now_ms() + opts.dedup_ttl.as_millis() as i64;
                        let scope =
                            CounterScope::delivery(&received.job.export, destination.name());
                        let settlement = JobSettlement {
                            key: key.clone(),
                            finished_ops: None,
                            expires_at: expires,
                            claimed_until: until,
                            counters: deltas
                                .into_iter()
                                .map(|(k, v)| (scope.clone(), k, v))
                                .collect(),
                        };
                        // A replace whose claim was taken over is done by
                        // the other attempt, which counts it.
                        deps.state
                            .settle_jobs(&[settlement], &[])
                            .await
                            .map(|_| ())
                            .map_err(|e| DestinationError::Retryable {
                                destination: destination.name().to_string(),
                                message: format!("recording the replace: {e}"),
                                retry_after: None,
                            })
                    }
                    Err(e) => Err(e),
                };
                totals.requests += 1;
                match done {
                    Ok(()) => totals.jobs_done += 1,
                    Err(e) => {
                        warn!(job_id = %received.job.job_id, error = %e, "full replace failed");
                        let _ = deps.state.idempotency_release(&key).await;
                        totals.jobs_retry += 1;
                        dispositions[i] = Disposition::RetryAfter(match &e {
                            DestinationError::Retryable {
                                retry_after: Some(d),
                                ..
                            } => *d,
                            _ => backoff(received.receive_count),
                        });
                    }
                }
            }
            Ok((IdempotencyStart::Started, done)) => {
                let n = received.job.ops.len();
                claimed.push((
                    i,
                    Claimed {
                        received,
                        key,
                        claimed_until: until,
                        ops: received.job.ops.clone(),
                        finished: done.into_iter().filter(|o| (*o as usize) < n).collect(),
                        superseded: vec![false; n],
                        outcomes: vec![None; n],
                        failed: None,
                        sent: vec![false; n],
                        repairs: Vec::new(),
                        unsettled: None,
                    },
                ))
            }
            Ok((IdempotencyStart::Completed, _)) => {
                totals.jobs_duplicate += 1;
                let scope = CounterScope::delivery(&received.job.export, destination.name());
                *duplicates.entry(scope).or_default() += 1;
            }
            Ok((IdempotencyStart::InProgress, _)) => {
                // Another worker holds it, or held it and died: look again
                // once such a claim would have expired.
                dispositions[i] = Disposition::RetryAfter(opts.in_progress_ttl);
            }
            Err(e) => {
                warn!(job_id = %received.job.job_id, error = %e, "could not claim job");
                dispositions[i] = Disposition::RetryAfter(backoff(received.receive_count));
            }
        }
    }

    // Before sending, read the people's records: an op a newer change has
    // overtaken (a retried add after the person left) is not sent to an
    // audience, which would take it as the latest word. A change log (the
    // warehouse, a webhook) gets every change, each with its time.
    if !keeps_every_change(destination.kind()) {
        check_superseded(deps, destination.name(), &mut claimed).await;
    }

    // Fill the destination's largest batch across jobs of the same export.
    let mut by_export: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (ci, (_, c)) in claimed.iter().enumerate() {
        if c.failed.is_some() {
            continue;
        }
        for oi in (0..c.ops.len()).filter(|oi| c.open(*oi)) {
            by_export
                .entry(c.received.job.export.as_str())
                .or_default()
                .push((ci, oi));
        }
    }
    let limiter = deps
        .spec
        .destination(destination.name())
        .map(super::limits::limiter_for_spec);
    for (export_name, refs) in by_export {
        let export = deps.spec.export(export_name);
        let binding = export.and_then(|e| e.binding(destination.name()));
        let (Some(export), Some(binding)) = (export, binding) else {
            for (ci, oi) in refs {
                claimed[ci].1.outcomes[oi] = Some(OpOutcome::Rejected {
                    reason: format!(
                        "export `{export_name}` is no longer sent to `{}` in the activation spec",
                        destination.name()
                    ),
                });
            }
            continue;
        };
        let per_job = destination.kind() == DestinationKind::Warehouse;
        let requests = plan_requests(
            &refs,
            |ci, oi| is_canary(export, &claimed[ci].1.ops[oi]),
            per_job,
            destination.max_batch(),
        );
        for chunk in &requests {
            let chunk = chunk.as_slice();
            let ops: Vec<_> = chunk
                .iter()
                .map(|(ci, oi)| claimed[*ci].1.ops[*oi].clone())
                .collect();
            totals.requests += 1;
            let span = info_span!(
                "send",
                export = export_name,
                destination = destination.name(),
                ops = ops.len()
            );
            let permit = match &limiter {
                Some(l) => Some(
                    l.acquire(super::limits::requests_for(destination.kind(), &ops))
                        .await,
                ),
                None => None,
            };
            let sent = match permit {
                Some(Err(e)) => Err(e),
                held => {
                    for (ci, oi) in chunk {
                        claimed[*ci].1.sent[*oi] = true;
                    }
                    let answer = destination
                        .send(export, binding, &ops)
                        .instrument(span)
                        .await;
                    // The slot is freed once the destination has answered.
                    drop(held);
                    answer
                }
            };
            match sent {
                Ok(outcomes) => {
                    for ((ci, oi), outcome) in chunk.iter().zip(
                        outcomes
                            .into_iter()
                            .map(Some)
                            .chain(std::iter::repeat(None)),
                    ) {
                        claimed[*ci].1.outcomes[*oi] = Some(outcome.unwrap_or(OpOutcome::Retry {
                            reason: "destination returned no outcome for this op".into(),
                        }));
                    }
                }
                Err(e) => {
                    warn!(export = export_name, destination = destination.name(), error = %e, "request failed");
                    for (ci, _) in chunk {
                        if claimed[*ci].1.failed.is_none() {
                            claimed[*ci].1.failed = Some(clone_error(&e));
                        }
                    }
                }
            }
        }
    }

    // An op a newer change overtook after its check may have landed last:
    // repair it (a change log keeps every change with its time instead).
    if !keeps_every_change(destination.kind()) {
        repair_late_ops(deps, destination.name(), &mut claimed).await;
    }

    // Tally, then settle each group of jobs in one atomic write.
    let now = deps.clock.now_ms();
    let expires = now + opts.dedup_ttl.as_millis() as i64;
    let mut tallied = Vec::with_capacity(claimed.len());
    for (i, c) in claimed {
        if let Some(why) = &c.unsettled {
            // Counted nothing: the redelivery sends again and decides.
            warn!(job_id = %c.received.job.job_id, destination = destination.name(), reason = %why, "attempt not settled: the job goes again");
            let _ = deps.state.idempotency_release(&c.key).await;
            totals.jobs_retry += 1;
            dispositions[i] = Disposition::RetryAfter(backoff(c.received.receive_count));
            continue;
        }
        let (settlement, disposition) =
            tally_job(destination, &c, opts, (now, expires), &mut totals);
        tallied.push((i, c.received.receive_count, settlement, disposition));
    }
    let mut groups: Vec<Vec<_>> = Vec::new();
    let mut rest = tallied.into_iter().peekable();
    while rest.peek().is_some() {
        groups.push(rest.by_ref().take(SETTLE_GROUP).collect());
    }
    if groups.is_empty() && !duplicates.is_empty() {
        groups.push(Vec::new());
    }
    let mut duplicates: Vec<(String, Vec<(String, i64)>)> = duplicates
        .into_iter()
        .map(|(scope, n)| (scope, vec![(counter::JOBS_DUPLICATE.to_string(), n)]))
        .collect();
    for group in groups {
        let settlements: Vec<JobSettlement> = group.iter().map(|(_, _, s, _)| s.clone()).collect();
        match settle(deps, &settlements, &duplicates).await {
            Ok(lost) => {
                duplicates.clear();
                for (i, _, settlement, disposition) in group {
                    if lost.contains(&settlement.key) {
                        // Another attempt took the job over while this one
                        // ran: it sends and counts; this one counted nothing.
                        warn!(destination = destination.name(), key = %settlement.key, "claim taken over by another delivery: this attempt is not counted");
                        totals.jobs_retry += 1;
                        dispositions[i] = Disposition::RetryAfter(opts.in_progress_ttl);
                    } else {
                        if settlement.finished_ops.is_none() {
                            totals.jobs_done += 1;
                        } else {
                            totals.jobs_retry += 1;
                        }
                        dispositions[i] = disposition;
                    }
                }
            }
            Err(e) => {
                // Nothing of the group was written: its jobs go again, with
                // their claims given back (earlier progress stays).
                warn!(destination = destination.name(), error = %e, "could not settle delivered jobs: they will be sent again");
                for (i, receive_count, settlement, _) in group {
                    let _ = deps.state.idempotency_release(&settlement.key).await;
                    totals.jobs_retry += 1;
                    dispositions[i] = Disposition::RetryAfter(backoff(receive_count));
                }
            }
        }
    }
    (dispositions, totals)
}

fn clone_error(e: &DestinationError) -> DestinationError {
    match e {
        DestinationError::Retryable {
            destination,
            message,
            retry_after,
        } => DestinationError::Retryable {
            destination: destination.clone(),
            message: message.clone(),
            retry_after: *retry_after,
        },
        DestinationError::Permanent {
            destination,
            message,
        } => DestinationError::Permanent {
            destination: destination.clone(),
            message: message.clone(),
        },
    }
}

/// Receive, deliver and settle one batch from the local queue. Returns the
/// number of jobs received (0 when the queue was empty).
pub async fn drain_once(
    deps: &Deps,
    destination: &Arc<dyn Destination>,
    opts: &DeliveryOptions,
    max: usize,
) -> Result<(usize, DeliveryTotals), crate::ports::QueueError> {
    let received = deps.queue.receive(destination.name(), max).await?;
    if received.is_empty() {
        return Ok((0, DeliveryTotals::default()));
    }
    let (dispositions, totals) = deliver_jobs(deps, destination, &received, opts).await;
    for (job, disposition) in received.iter().zip(dispositions) {
        match disposition {
            Disposition::Done => deps.queue.ack(destination.name(), &job.receipt).await?,
            Disposition::RetryAfter(d) => {
                deps.queue
                    .retry_later(destination.name(), &job.receipt, d)
                    .await?
            }
        }
    }
    Ok((received.len(), totals))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod race_tests;
