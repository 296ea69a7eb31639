//! Delivery: take jobs off a destination's queue, fill the destination's
//! largest batch, send, classify every outcome, count.
//!
//! * A job is claimed with an idempotency record keyed by its (deterministic)
//!   id, so a redelivered or re-enqueued job is sent once.
//! * One bad person never fails their neighbours: outcomes are per op.
//!   Ops the destination asks us to retry travel on in a follow-up job.
//! * A whole request that fails (rate limit, outage, bad credentials) sends
//!   the job back with backoff; after the queue's last attempt it lands in
//!   the dead-letter queue, where `redrive` can bring it back once fixed.
//! * Counters are written once per completed job.
//! * Every send first takes a permit of the destination's process-wide
//!   limiter (`max_concurrency`, `max_requests_per_second`: see `limits`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, info_span, warn, Instrument};

use super::Deps;
use crate::destinations::{Destination, DestinationError, OpOutcome};
use crate::domain::model::{counter, CounterScope, DeliveryJob, DeliveryOp, OpKind, PersonKey};
use crate::domain::spec::{DestinationKind, ExportSpec};
use crate::ports::{IdempotencyStart, ReceivedJob};

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
    pub requests: u64,
}

/// Exponential backoff with jitter, capped at 15 minutes.
pub fn backoff(receive_count: u32) -> Duration {
    let base = 2u64.saturating_pow(receive_count.min(10)).min(900);
    let jitter = rand::random::<u64>() % 1000;
    Duration::from_millis(base * 1000 / 2 + jitter)
}

struct Claimed<'a> {
    received: &'a ReceivedJob,
    key: String,
    outcomes: Vec<Option<OpOutcome>>,
    failed: Option<DestinationError>,
}

/// Deliver a batch of received jobs to one destination. Returns one
/// disposition per job, in order.
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
    for (i, received) in jobs.iter().enumerate() {
        let key = format!("job:{}:{}", destination.name(), received.job.job_id);
        let until = now + opts.in_progress_ttl.as_millis() as i64;
        let expires = now + opts.dedup_ttl.as_millis() as i64;
        match deps
            .state
            .idempotency_start(&key, now, until, expires)
            .await
        {
            Ok(IdempotencyStart::Started) if received.job.replace => {
                // A full replace is a job of its own, never batched.
                match replace_job(deps, destination, &received.job).await {
                    Ok(()) => {
                        let expires = deps.clock.now_ms() + opts.dedup_ttl.as_millis() as i64;
                        if let Err(e) = deps.state.idempotency_complete(&key, expires).await {
                            warn!(error = %e, "could not mark job complete");
                        }
                        totals.jobs_done += 1;
                        totals.requests += 1;
                    }
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
            Ok(IdempotencyStart::Started) => claimed.push((
                i,
                Claimed {
                    received,
                    key,
                    outcomes: vec![None; received.job.ops.len()],
                    failed: None,
                },
            )),
            Ok(IdempotencyStart::Completed) => {
                totals.jobs_duplicate += 1;
                let scope = CounterScope::delivery(&received.job.export, destination.name());
                let _ = deps
                    .state
                    .add_counters(&scope, &[(counter::JOBS_DUPLICATE, 1)])
                    .await;
            }
            Ok(IdempotencyStart::InProgress) => {
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

    // Fill the destination's largest batch across jobs of the same export.
    let mut by_export: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (ci, (_, c)) in claimed.iter().enumerate() {
        for oi in 0..c.received.job.ops.len() {
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
            |ci, oi| is_canary(export, &claimed[ci].1.received.job.ops[oi]),
            per_job,
            destination.max_batch(),
        );
        for chunk in &requests {
            let chunk = chunk.as_slice();
            let ops: Vec<_> = chunk
                .iter()
                .map(|(ci, oi)| claimed[*ci].1.received.job.ops[*oi].clone())
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

    let mut counters: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut done = Vec::new();
    for (i, c) in claimed {
        let job = &c.received.job;
        if let Some(err) = &c.failed {
            let last = c.received.receive_count >= opts.max_attempts;
            let _ = deps.state.idempotency_release(&c.key).await;
            if last {
                let scope = CounterScope::delivery(&job.export, destination.name());
                let _ = deps
                    .state
                    .add_counters(
                        &scope,
                        &[
                            (counter::JOBS_DEAD, 1),
                            (counter::REJECTED, job.ops.len() as i64),
                        ],
                    )
                    .await;
                warn!(job_id = %job.job_id, error = %err, "job exhausted its attempts: dead-lettered");
            }
            let delay = match err {
                DestinationError::Retryable {
                    retry_after: Some(d),
                    ..
                } => *d,
                _ => backoff(c.received.receive_count),
            };
            totals.jobs_retry += 1;
            dispositions[i] = Disposition::RetryAfter(delay);
            continue;
        }
        match finish_job(deps, destination, job, &c.outcomes, opts, &mut totals).await {
            Ok(deltas) => {
                let scope = CounterScope::delivery(&job.export, destination.name());
                let sum = counters.entry(scope).or_default();
                for (k, v) in deltas {
                    *sum.entry(k).or_default() += v;
                }
                done.push((i, c.key, c.received.receive_count));
            }
            Err(e) => {
                warn!(job_id = %job.job_id, error = %e, "could not record job outcome");
                let _ = deps.state.idempotency_release(&c.key).await;
                totals.jobs_retry += 1;
                dispositions[i] = Disposition::RetryAfter(backoff(c.received.receive_count));
            }
        }
    }
    // One counter write per export for the whole batch, before the jobs are
    // marked done: a crash in between recounts, it never drops a count.
    let mut counted = true;
    for (scope, deltas) in &counters {
        let deltas: Vec<(&str, i64)> = deltas.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        if deltas.is_empty() {
            continue;
        }
        if let Err(e) = deps.state.add_counters(scope, &deltas).await {
            warn!(%scope, error = %e, "could not record delivery counters");
            counted = false;
            break;
        }
    }
    let expires = deps.clock.now_ms() + opts.dedup_ttl.as_millis() as i64;
    for (i, key, receive_count) in done {
        if !counted {
            let _ = deps.state.idempotency_release(&key).await;
            totals.jobs_retry += 1;
            dispositions[i] = Disposition::RetryAfter(backoff(receive_count));
            continue;
        }
        if let Err(e) = deps.state.idempotency_complete(&key, expires).await {
            warn!(error = %e, "could not mark job complete");
        }
        totals.jobs_done += 1;
    }
    (dispositions, totals)
}

/// The members a one-destination rollback restores: the people staged
/// under its run (the target run's), shaped as a run would shape them now
/// (attribute mapping, tiers), less anyone a suppressing export holds.
/// `current` (state's members) gives each person's entry time and the
/// identifiers the source page lacked.
async fn staged_members(
    deps: &Deps,
    export: &ExportSpec,
    run_id: &str,
    current: &[crate::domain::model::MembershipRecord],
) -> Result<Vec<crate::domain::model::MembershipRecord>, crate::ports::StateError> {
    use crate::domain::model::{ChangeOrigin, MembershipRecord, MembershipSnapshot};
    let known: BTreeMap<&PersonKey, &MembershipRecord> =
        current.iter().map(|r| (&r.person_key, r)).collect();
    let mut suppressed = std::collections::BTreeSet::new();
    for other in &export.suppress {
        let mut cursor = None;
        loop {
            let page = deps.state.list_memberships(other, cursor, 1_000).await?;
            suppressed.extend(
                page.items
                    .into_iter()
                    .filter(|r| r.current.member)
                    .map(|r| r.person_key),
            );
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    }
    let now = deps.clock.now_ms();
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = deps.state.list_staged(run_id, cursor, 1_000).await?;
        for (key, person) in page.items {
            if suppressed.contains(&key) {
                continue;
            }
            let stored = known.get(&key);
            let mut ids = person.ids.clone();
            if let Some(r) = stored {
                ids.merge_missing(&r.current.ids);
            }
            let attributes = super::changes::mapped_attributes(export, &person.attributes);
            let entered_at = stored.and_then(|r| r.entered_at).or(Some(now));
            let tiers = crate::domain::membership::tiers_for(export, &attributes, entered_at, now);
            out.push(MembershipRecord {
                export: export.name.clone(),
                person_key: key,
                current: MembershipSnapshot {
                    member: true,
                    tiers,
                    ids,
                    attributes,
                },
                previous: None,
                source_ts: now,
                intake_ts: now,
                entered_at,
                change_id: format!("run:{run_id}"),
                origin: ChangeOrigin::Batch,
            });
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    Ok(out)
}

/// A full replace (a rollback's): each audience of the export at this
/// destination, the main one and each tier's, replaced by the export's
/// members in state now. The delivered-members counter is set to what the
/// main audience now holds; per-person outcomes are counted as for sends.
async fn replace_job(
    deps: &Deps,
    destination: &Arc<dyn Destination>,
    job: &DeliveryJob,
) -> Result<(), DestinationError> {
    let permanent = |message: String| DestinationError::Permanent {
        destination: destination.name().to_string(),
        message,
    };
    let export = deps
        .spec
        .export(&job.export)
        .ok_or_else(|| permanent(format!("export `{}` is no longer in the spec", job.export)))?;
    let binding = export
        .binding(destination.name())
        .ok_or_else(|| permanent(format!("export `{}` no longer sends here", job.export)))?;
    let retryable = |e: crate::ports::StateError| DestinationError::Retryable {
        destination: destination.name().to_string(),
        message: format!("reading the members to replace with: {e}"),
        retry_after: None,
    };
    let mut members = Vec::new();
    let mut cursor = None;
    loop {
        let page = deps
            .state
            .list_memberships(&export.name, cursor, 1_000)
            .await
            .map_err(retryable)?;
        members.extend(page.items.into_iter().filter(|r| r.current.member));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    if let Some(run_id) = &job.replace_from {
        members = staged_members(deps, export, run_id, &members)
            .await
            .map_err(retryable)?;
    }
    let op_for = |r: &crate::domain::model::MembershipRecord,
                  audience: &str,
                  tier: Option<&str>| DeliveryOp {
        op: OpKind::Add,
        person_key: r.person_key.clone(),
        ids: r.current.ids.clone(),
        audience: audience.to_string(),
        tier: tier.map(str::to_string),
        attributes: r.current.attributes.clone(),
        event: None,
        source_ts: r.source_ts,
        intake_ts: r.intake_ts,
    };
    let mut audiences: Vec<(String, Option<String>, Vec<DeliveryOp>)> = vec![(
        binding.audience.clone(),
        None,
        members
            .iter()
            .map(|r| op_for(r, &binding.audience, None))
            .collect(),
    )];
    for (tier, audience) in &binding.tier_audiences {
        let ops = members
            .iter()
            .filter(|r| r.current.tiers.contains(tier))
            .map(|r| op_for(r, audience, Some(tier)))
            .collect();
        audiences.push((audience.clone(), Some(tier.clone()), ops));
    }
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    for (audience, tier, ops) in &audiences {
        let outcomes = destination
            .replace_audience(export, binding, audience, ops)
            .await?;
        let Some(outcomes) = outcomes else {
            warn!(destination = destination.name(), %audience, "nothing to replace the audience with: left as it is");
            continue;
        };
        let accepted = outcomes
            .iter()
            .filter(|o| matches!(o, OpOutcome::Accepted))
            .count() as i64;
        let unmatched = outcomes
            .iter()
            .filter(|o| matches!(o, OpOutcome::Unmatched { .. }))
            .count() as i64;
        let rejected = outcomes.len() as i64 - accepted - unmatched;
        *deltas.entry(counter::SENT.into()).or_default() += accepted + rejected;
        *deltas.entry(counter::ACCEPTED.into()).or_default() += accepted;
        *deltas.entry(counter::REJECTED.into()).or_default() += rejected;
        *deltas.entry(counter::UNMATCHED.into()).or_default() += unmatched;
        if tier.is_none() {
            // Delivered = adds − removes accepted: move it to what the
            // audience holds now.
            let scope = CounterScope::delivery(&export.name, destination.name());
            let c = deps.state.get_counters(&scope).await.map_err(retryable)?;
            let get = |k: &str| c.get(k).copied().unwrap_or(0);
            let delta = accepted - (get(counter::ADDS_ACCEPTED) - get(counter::REMOVES_ACCEPTED));
            if delta >= 0 {
                *deltas.entry(counter::ADDS_ACCEPTED.into()).or_default() += delta;
            } else {
                *deltas.entry(counter::REMOVES_ACCEPTED.into()).or_default() -= delta;
            }
        }
        info!(destination = destination.name(), %audience, members = ops.len(), accepted, "audience replaced");
    }
    let deltas: Vec<(&str, i64)> = deltas.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    deps.state
        .add_counters(
            &CounterScope::delivery(&export.name, destination.name()),
            &deltas,
        )
        .await
        .map_err(retryable)?;
    Ok(())
}

/// An op of one of the export's test profiles (canaries).
fn is_canary(export: &ExportSpec, op: &DeliveryOp) -> bool {
    !export.test_profiles.is_empty()
        && op
            .ids
            .id
            .as_deref()
            .is_some_and(|id| export.test_profiles.iter().any(|t| t == id))
}

/// An op of a claimed job: (job index, op index).
type OpRef = (usize, usize);

/// The requests one export's ops go out in, each at most `max` ops:
/// canaries (test profiles) first, in requests of their own, so they reach
/// the destination before anyone else of their run; then the rest in
/// order. With `per_job` no request spans two jobs: the warehouse names an
/// object by its rows, so a job redelivered after a crash must be batched
/// alone to rewrite its own object rather than add a second one.
pub fn plan_requests(
    refs: &[(usize, usize)],
    canary: impl Fn(usize, usize) -> bool,
    per_job: bool,
    max: usize,
) -> Vec<Vec<(usize, usize)>> {
    let max = max.max(1);
    let (first, rest): (Vec<OpRef>, Vec<OpRef>) =
        refs.iter().copied().partition(|(ci, oi)| canary(*ci, *oi));
    let mut out = Vec::new();
    for group in [first, rest] {
        let mut current: Vec<(usize, usize)> = Vec::new();
        for r in group {
            let other_job = per_job && current.first().is_some_and(|(ci, _)| *ci != r.0);
            if current.len() == max || other_job {
                out.push(std::mem::take(&mut current));
            }
            current.push(r);
        }
        if !current.is_empty() {
            out.push(current);
        }
    }
    out
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

/// Tally a job's outcomes and pass retryable ops on in a follow-up job.
async fn finish_job(
    deps: &Deps,
    destination: &Arc<dyn Destination>,
    job: &DeliveryJob,
    outcomes: &[Option<OpOutcome>],
    opts: &DeliveryOptions,
    totals: &mut DeliveryTotals,
) -> Result<BTreeMap<String, i64>, crate::ports::StateError> {
    let now = deps.clock.now_ms();
    let mut deltas: BTreeMap<String, i64> = BTreeMap::new();
    let mut retry_ops = Vec::new();
    for (op, outcome) in job.ops.iter().zip(outcomes) {
        let outcome = outcome.clone().unwrap_or(OpOutcome::Retry {
            reason: "not sent".into(),
        });
        match outcome {
            OpOutcome::Accepted => {
                totals.accepted += 1;
                *deltas.entry(counter::SENT.into()).or_default() += 1;
                *deltas.entry(counter::ACCEPTED.into()).or_default() += 1;
                if op.tier.is_none() {
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
                *deltas
                    .entry(counter::latency_bucket(now - op.source_ts))
                    .or_default() += 1;
            }
            OpOutcome::Rejected { reason } => {
                totals.rejected += 1;
                *deltas.entry(counter::SENT.into()).or_default() += 1;
                *deltas.entry(counter::REJECTED.into()).or_default() += 1;
                info!(job_id = %job.job_id, person = %op.person_key.log_safe(), %reason, "op rejected");
            }
            OpOutcome::Unmatched { reason } => {
                totals.unmatched += 1;
                *deltas.entry(counter::UNMATCHED.into()).or_default() += 1;
                info!(job_id = %job.job_id, person = %op.person_key.log_safe(), %reason, "op unmatched");
            }
            OpOutcome::Invalid { reason } => {
                totals.invalid += 1;
                *deltas.entry(counter::INVALID.into()).or_default() += 1;
                info!(job_id = %job.job_id, person = %op.person_key.log_safe(), %reason, "op invalid: not sent");
            }
            OpOutcome::Retry { reason } => {
                if job.attempt + 1 >= opts.max_attempts {
                    totals.rejected += 1;
                    *deltas.entry(counter::SENT.into()).or_default() += 1;
                    *deltas.entry(counter::REJECTED.into()).or_default() += 1;
                    info!(job_id = %job.job_id, person = %op.person_key.log_safe(), %reason, "op gave up after retries");
                } else {
                    retry_ops.push(op.clone());
                }
            }
        }
    }
    if !retry_ops.is_empty() {
        let follow_up = DeliveryJob {
            job_id: format!("{}-a{}", job.job_id, job.attempt + 1),
            attempt: job.attempt + 1,
            ops: retry_ops,
            created_at: now,
            ..job.clone()
        };
        deps.queue
            .send(destination.name(), std::slice::from_ref(&follow_up))
            .await
            .map_err(|e| crate::ports::StateError::retryable(format!("re-enqueue: {e}")))?;
    }
    Ok(deltas)
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
mod request_plan_tests {
    use super::plan_requests;

    #[test]
    fn canaries_go_first_in_requests_of_their_own_then_the_rest_in_order() {
        // Job 0 holds ops 0..3, job 1 ops 0..2; (1, 1) and (0, 2) are canaries.
        let refs = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)];
        let canary = |ci: usize, oi: usize| (ci, oi) == (1, 1) || (ci, oi) == (0, 2);
        assert_eq!(
            plan_requests(&refs, canary, false, 10),
            vec![vec![(0, 2), (1, 1)], vec![(0, 0), (0, 1), (1, 0)]]
        );
        assert_eq!(
            plan_requests(&refs, |_, _| false, false, 2),
            vec![vec![(0, 0), (0, 1)], vec![(0, 2), (1, 0)], vec![(1, 1)]]
        );
    }

    #[test]
    fn per_job_requests_never_span_two_jobs() {
        let refs = [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)];
        assert_eq!(
            plan_requests(&refs, |_, _| false, true, 10),
            vec![vec![(0, 0), (0, 1)], vec![(1, 0)], vec![(2, 0), (2, 1)]]
        );
    }
}
