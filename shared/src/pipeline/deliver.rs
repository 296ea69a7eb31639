//! Delivery: take jobs off a destination's queue, fill the destination's
//! largest batch, send, classify every outcome, count.
//!
//! * A job is claimed with an idempotency record keyed by its (deterministic)
//!   id, so a redelivered or re-enqueued job is sent once.
//! * One bad person never fails their neighbours: outcomes are per op.
//!   Ops the destination asks us to retry stay in their job, which goes
//!   back to the queue: its next delivery sends only them.
//! * An op a newer change overtook (an add retried after the person left)
//!   is not sent: counted `superseded`.
//! * A whole request that fails (rate limit, outage, bad credentials) sends
//!   the job back with backoff; after the queue's last attempt it lands in
//!   the dead-letter queue, where `redrive` can bring it back once fixed.
//! * Counters and the jobs' outcomes are settled in one atomic write.
//! * Every send first takes a permit of the destination's process-wide
//!   limiter (`max_concurrency`, `max_requests_per_second`: see `limits`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, info_span, warn, Instrument};

use super::Deps;
use crate::destinations::{Destination, DestinationError, OpOutcome};
use crate::domain::model::{
    counter, CounterScope, DeliveryJob, DeliveryOp, MembershipRecord, Millis, OpKind, PersonKey,
};
use crate::domain::spec::{DestinationKind, ExportSpec};
use crate::ports::{IdempotencyStart, JobSettlement, ReceivedJob};

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
}

/// Exponential backoff with jitter, capped at 15 minutes.
pub fn backoff(receive_count: u32) -> Duration {
    let base = 2u64.saturating_pow(receive_count.min(10)).min(900);
    let jitter = rand::random::<u64>() % 1000;
    Duration::from_millis(base * 1000 / 2 + jitter)
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

    // Tally, then settle each group of jobs in one atomic write.
    let now = deps.clock.now_ms();
    let expires = now + opts.dedup_ttl.as_millis() as i64;
    let mut tallied = Vec::with_capacity(claimed.len());
    for (i, c) in claimed {
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
        match deps.state.settle_jobs(&settlements, &duplicates).await {
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

/// Read the records of the people with open membership ops (one read per
/// export) and mark each op a newer change in state has overtaken; where
/// state is newer but agrees, send the record's current identifiers and
/// attributes instead of the job's. A failed read fails those jobs'
/// attempt (they are sent again), never sends blind.
async fn check_superseded(deps: &Deps, destination: &str, claimed: &mut [(usize, Claimed<'_>)]) {
    let mut by_export: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (ci, (_, c)) in claimed.iter().enumerate() {
        for (oi, op) in c.ops.iter().enumerate() {
            if op.op != OpKind::Event && c.open(oi) {
                by_export
                    .entry(c.received.job.export.clone())
                    .or_default()
                    .push((ci, oi));
            }
        }
    }
    for (export, refs) in by_export {
        let mut people: Vec<PersonKey> = refs
            .iter()
            .map(|(ci, oi)| claimed[*ci].1.ops[*oi].person_key.clone())
            .collect();
        people.sort();
        people.dedup();
        let records = match deps.state.get_memberships(&export, &people).await {
            Ok(r) => r,
            Err(e) => {
                warn!(%export, destination, error = %e, "could not read the records of the ops to send");
                for (ci, _) in refs {
                    if claimed[ci].1.failed.is_none() {
                        claimed[ci].1.failed = Some(DestinationError::Retryable {
                            destination: destination.to_string(),
                            message: format!("reading the records of the ops to send: {e}"),
                            retry_after: None,
                        });
                    }
                }
                continue;
            }
        };
        let current: BTreeMap<&PersonKey, &MembershipRecord> = people
            .iter()
            .zip(records.iter())
            .filter_map(|(k, r)| r.as_ref().map(|r| (k, r)))
            .collect();
        let mut refreshed = Vec::new();
        for (ci, oi) in refs {
            let op = &claimed[ci].1.ops[oi];
            let Some(record) = current.get(&op.person_key) else {
                continue;
            };
            if superseded(op, record) {
                claimed[ci].1.superseded[oi] = true;
            } else if record.source_ts > op.source_ts
                && matches!(op.op, OpKind::Add | OpKind::Update)
            {
                refreshed.push((ci, oi, (*record).clone()));
            }
        }
        for (ci, oi, record) in refreshed {
            let op = &mut claimed[ci].1.ops[oi];
            op.ids = record.current.ids;
            op.attributes = record.current.attributes;
        }
    }
}

/// Destinations that record every change with its `source_ts` (readers
/// order by it), rather than hold the latest state: nothing is superseded.
pub fn keeps_every_change(kind: DestinationKind) -> bool {
    matches!(kind, DestinationKind::Warehouse | DestinationKind::Webhook)
}

/// Whether state holds a newer change that contradicts `op`: an add (to
/// the audience or a tier) for someone no longer in it, a remove for
/// someone back in it under the same identifiers. That change made its own
/// job; sending this one after it would undo it. A remove of identifiers
/// the person no longer has (an identifier swap at an ad platform) is never
/// superseded: nothing newer takes the old identifiers out.
pub fn superseded(op: &DeliveryOp, current: &MembershipRecord) -> bool {
    if current.source_ts <= op.source_ts {
        return false;
    }
    let holds = match &op.tier {
        None => current.current.member,
        Some(t) => current.current.member && current.current.tiers.contains(t),
    };
    match op.op {
        OpKind::Add => !holds,
        OpKind::Remove => holds && op.ids == current.current.ids,
        OpKind::Update | OpKind::Event => false,
    }
}

/// One job's counter deltas, how it settles, and what to tell the queue.
fn tally_job(
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
/// Returns the counter deltas, which the caller settles with the job.
async fn replace_job(
    deps: &Deps,
    destination: &Arc<dyn Destination>,
    job: &DeliveryJob,
) -> Result<BTreeMap<String, i64>, DestinationError> {
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
        let accepted = outcomes.iter().filter(|o| o.is_accepted()).count() as i64;
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
    Ok(deltas)
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
#[path = "deliver_tests.rs"]
mod tests;
