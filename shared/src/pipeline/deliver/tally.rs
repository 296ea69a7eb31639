//! Counting one job's outcomes and deciding how it settles.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::{backoff, Claimed, DeliveryOptions, DeliveryTotals, Disposition};
use crate::destinations::{Destination, DestinationError, OpOutcome};
use crate::domain::model::{counter, CounterScope, Millis, OpKind};
use crate::ports::JobSettlement;

/// One job's counter deltas, how it settles, and what to tell the queue.
pub(super) fn tally_job(
    destination: &Arc<dyn Destination>,
    c: &Claimed<'_>,
    opts: &DeliveryOptions,
    (now, expires): (Millis, Millis),
    totals: &mut DeliveryTotals,
) -> (JobSettlement, Disposition) {
    let job = &c.received.job;
    let last = c.received.receive_count >= opts.max_attempts;
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    let mut finished = c.finished.clone();
    let mut open = 0usize;
    totals.repairs_enqueued += c.repairs.len() as u64;
    for (oi, op) in c.ops.iter().enumerate() {
        if c.finished.contains(&(oi as u32)) {
            continue;
        }
        if c.superseded[oi] {
            *deltas.entry(counter::SUPERSEDED.into()).or_default() += 1;
            debug!(job_id = %job.job_id, person = %op.person_key.log_safe(), "op superseded by a newer change: not sent");
            finished.insert(oi as u32);
            continue;
        }
        let Some(outcome) = c.outcomes[oi].clone() else {
            // Not sent (its request failed): it goes again.
            open += 1;
            continue;
        };
        if let OpOutcome::AcceptedWithout { fields, reason } = &outcome {
            totals.fields_refused += fields.len() as u64;
            *deltas.entry(counter::FIELDS_REFUSED.into()).or_default() += fields.len() as i64;
            info!(job_id = %job.job_id, export = %job.export, destination = destination.name(), person = %op.person_key.log_safe(), %reason, "op accepted without refused fields");
        }
        match outcome {
            OpOutcome::Accepted | OpOutcome::AcceptedWithout { .. } => {
                totals.accepted += 1;
                *deltas.entry(counter::SENT.into()).or_default() += 1;
                *deltas.entry(counter::ACCEPTED.into()).or_default() += 1;
                // A repair's op re-asserts what ops counted already.
                if op.tier.is_none() && !job.repair {
                    match op.op {
                        OpKind::Add => {
                            *deltas.entry(counter::ADDS_ACCEPTED.into()).or_default() += 1
                        }
                        OpKind::Remove => {
                            *deltas.entry(counter::REMOVES_ACCEPTED.into()).or_default() += 1
                        }
                        _ => {}
                    }
                }
                if !job.repair {
                    *deltas
                        .entry(counter::latency_bucket(now - op.source_ts))
                        .or_default() += 1;
                }
            }
            OpOutcome::Rejected { reason } => {
                totals.rejected += 1;
                *deltas.entry(counter::SENT.into()).or_default() += 1;
                *deltas.entry(counter::REJECTED.into()).or_default() += 1;
                info!(job_id = %job.job_id, export = %job.export, destination = destination.name(), person = %op.person_key.log_safe(), %reason, "op rejected");
            }
            OpOutcome::Unmatched { reason } => {
                totals.unmatched += 1;
                *deltas.entry(counter::UNMATCHED.into()).or_default() += 1;
                info!(job_id = %job.job_id, export = %job.export, destination = destination.name(), person = %op.person_key.log_safe(), %reason, "op unmatched");
            }
            OpOutcome::Invalid { reason } => {
                totals.invalid += 1;
                *deltas.entry(counter::INVALID.into()).or_default() += 1;
                info!(job_id = %job.job_id, export = %job.export, destination = destination.name(), person = %op.person_key.log_safe(), %reason, "op invalid: not sent");
            }
            OpOutcome::Retry { reason } if last => {
                totals.rejected += 1;
                *deltas.entry(counter::SENT.into()).or_default() += 1;
                *deltas.entry(counter::REJECTED.into()).or_default() += 1;
                info!(job_id = %job.job_id, export = %job.export, destination = destination.name(), person = %op.person_key.log_safe(), reason = %format!("gave up after {} attempts: {reason}", c.received.receive_count), "op rejected");
            }
            OpOutcome::Retry { .. } => {
                open += 1;
                continue;
            }
        }
        finished.insert(oi as u32);
    }
    if job.repair {
        let settled = finished.len() - c.finished.len();
        *deltas.entry(counter::REPAIRS.into()).or_default() += settled as i64;
    }
    let scope = CounterScope::delivery(&job.export, destination.name());
    let counters = |deltas: BTreeMap<String, i64>| -> Vec<(String, String, i64)> {
        deltas
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(k, v)| (scope.clone(), k, v))
            .collect()
    };
    if open == 0 {
        return (
            JobSettlement {
                key: c.key.clone(),
                finished_ops: None,
                expires_at: expires,
                claimed_until: c.claimed_until,
                counters: counters(deltas),
            },
            Disposition::Done,
        );
    }
    if let (Some(err), true) = (&c.failed, last) {
        // The queue moves it to the dead-letter queue on its next receive;
        // `redrive` brings it back, and only its open ops are sent then.
        *deltas.entry(counter::JOBS_DEAD.into()).or_default() += 1;
        warn!(job_id = %job.job_id, open, error = %err, "job exhausted its attempts: dead-lettered");
    }
    let delay = match &c.failed {
        Some(DestinationError::Retryable {
            retry_after: Some(d),
            ..
        }) => *d,
        _ => backoff(c.received.receive_count),
    };
    (
        JobSettlement {
            key: c.key.clone(),
            finished_ops: Some(finished.into_iter().collect()),
            expires_at: expires,
            claimed_until: c.claimed_until,
            counters: counters(deltas),
        },
        Disposition::RetryAfter(delay),
    )
}
