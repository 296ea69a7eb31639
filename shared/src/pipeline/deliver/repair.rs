//! Repairs: undoing an op that may have landed after a newer change's.
//!
//! The check before sending ([`super::superseded`]) cannot see a change
//! that comes after it: worker A checks an add, the person leaves (state,
//! then the remove's job), worker B sends the remove, and A's add lands
//! last. An audience that keeps the latest word (Meta, Google, CleverTap)
//! then holds someone state says left.
//!
//! So after sending, the records of the membership ops that may have
//! landed (accepted, or in a request that failed or timed out: a platform
//! may apply a request it answered 500 to) are read again, one read per
//! export. An op a newer change now contradicts gets a repair job: the
//! record's current state re-asserted (an add with the record's
//! identifiers if the person is in, else a remove of the identifiers the
//! op sent), stamped with the record's `source_ts`, so the repair is
//! itself checked before sending and superseded by anything newer.
//!
//! Why the read is enough: every change writes its membership record
//! before it enqueues its job (`changes::apply_and_enqueue`, the batch
//! export's `commit_chunk`). If the read after our send does not show the
//! newer record, that record's job was enqueued after our request was
//! answered, so its send comes after ours.
//!
//! A retried job (`receive_count > 1`) whose op is superseded before
//! sending is repaired too: an earlier attempt may have sent it and died
//! (or lost its answer) before its own read.
//!
//! Not covered: a request the platform applies after our client gave up on
//! it *and* after the last read of its job (the post-send read, or a
//! retry's check). Nothing on our side observes that; the reconcile's
//! drift check and a full replace are what catch it.
//!
//! Repair jobs have deterministic ids (the job, the op's index, the
//! record's `source_ts`), so a redelivered attempt makes the same repair
//! and delivery's claim sends it once.

use tracing::{info, warn};

use super::{superseded, Claimed};
use crate::domain::model::{DeliveryJob, DeliveryOp, MembershipRecord, OpKind};
use crate::pipeline::changes::new_job;
use crate::pipeline::Deps;

/// The op that puts `op`'s audience (or tier) back to what `record` holds.
pub(super) fn repair_op(op: &DeliveryOp, record: &MembershipRecord) -> DeliveryOp {
    let holds = record.current.member
        && op
            .tier
            .as_ref()
            .is_none_or(|t| record.current.tiers.contains(t));
    let (kind, ids, attributes) = if holds {
        (
            OpKind::Add,
            record.current.ids.clone(),
            record.current.attributes.clone(),
        )
    } else {
        // Take out what the op may have put in.
        (OpKind::Remove, op.ids.clone(), Default::default())
    };
    DeliveryOp {
        op: kind,
        person_key: op.person_key.clone(),
        ids,
        audience: op.audience.clone(),
        tier: op.tier.clone(),
        attributes,
        event: None,
        source_ts: record.source_ts,
        intake_ts: record.intake_ts,
    }
}

/// The repair job of op `oi` of `job`, to re-assert `record`.
pub(super) fn repair_job(
    deps: &Deps,
    job: &DeliveryJob,
    oi: usize,
    op: &DeliveryOp,
    record: &MembershipRecord,
) -> Option<DeliveryJob> {
    let export = deps.spec.export(&job.export)?;
    let origin = format!("repair#{}#{oi}#{}", job.job_id, record.source_ts);
    let mut repair = new_job(
        deps,
        export,
        &job.destination,
        &origin,
        job.run_id.as_deref(),
        vec![repair_op(op, record)],
    );
    repair.repair = true;
    Some(repair)
}

/// Whether op `oi` may have reached the platform in this attempt: its
/// request was made, and the platform either accepted it or did not say
/// (a failed or timed-out request). Only adds and removes change who is in.
fn may_have_landed(c: &Claimed<'_>, oi: usize) -> bool {
    c.sent[oi]
        && matches!(c.ops[oi].op, OpKind::Add | OpKind::Remove)
        && match &c.outcomes[oi] {
            None => true,
            Some(o) => o.is_accepted(),
        }
}

/// After the sends: read again the records of the ops that may have
/// landed, and enqueue a repair for each op a newer change now
/// contradicts (with those found superseded on a retry). A job whose
/// records could not be read, or whose repairs could not be enqueued, is
/// marked `unsettled`: it counts nothing and goes again.
pub(super) async fn repair_late_ops(
    deps: &Deps,
    destination: &str,
    claimed: &mut [(usize, Claimed<'_>)],
) {
    let reads = super::superseded::read_records(deps, claimed, may_have_landed).await;
    for (export, refs, records) in reads {
        let current = match records {
            Ok(r) => r,
            Err(e) => {
                warn!(%export, destination, error = %e, "could not read the records of the ops sent: their jobs go again");
                for (ci, _) in refs {
                    claimed[ci].1.unsettled =
                        Some(format!("reading the records after sending: {e}"));
                }
                continue;
            }
        };
        for (ci, oi) in refs {
            let c = &claimed[ci].1;
            let op = &c.ops[oi];
            let Some(record) = current.get(&op.person_key) else {
                continue;
            };
            if superseded(op, record) {
                if let Some(job) = repair_job(deps, &c.received.job, oi, op, record) {
                    claimed[ci].1.repairs.push(job);
                }
            }
        }
    }
    let mut jobs = Vec::new();
    for (_, c) in claimed.iter() {
        if c.unsettled.is_none() {
            jobs.extend(c.repairs.iter().cloned());
        }
    }
    if jobs.is_empty() {
        return;
    }
    match deps.queue.send(destination, &jobs).await {
        Ok(()) => {
            for (_, c) in claimed.iter().filter(|(_, c)| !c.repairs.is_empty()) {
                for r in &c.repairs {
                    info!(job_id = %c.received.job.job_id, repair_job_id = %r.job_id, destination, person = %r.ops[0].person_key.log_safe(), op = ?r.ops[0].op, "a newer change overtook an op that may have landed: repair enqueued");
                }
            }
        }
        Err(e) => {
            warn!(destination, error = %e, "could not enqueue repairs: their jobs go again");
            for (_, c) in claimed.iter_mut() {
                if !c.repairs.is_empty() && c.unsettled.is_none() {
                    c.unsettled = Some(format!("enqueueing repairs: {e}"));
                }
            }
        }
    }
}
