//! Which ops a newer change in state has overtaken.

use std::collections::BTreeMap;

use tracing::warn;

use super::Claimed;
use crate::destinations::DestinationError;
use crate::domain::model::{DeliveryOp, MembershipRecord, OpKind, PersonKey};
use crate::domain::spec::DestinationKind;
use crate::pipeline::Deps;
use crate::ports::StateError;

/// Read the records of the people with open membership ops (one read per
/// export) and mark each op a newer change in state has overtaken; where
/// state is newer but agrees, send the record's current identifiers and
/// attributes instead of the job's. A failed read fails those jobs'
/// attempt (they are sent again), never sends blind.
pub(super) async fn check_superseded(
    deps: &Deps,
    destination: &str,
    claimed: &mut [(usize, Claimed<'_>)],
) {
    let reads = read_records(deps, claimed, |c, oi| {
        c.ops[oi].op != OpKind::Event && c.open(oi)
    })
    .await;
    for (export, refs, records) in reads {
        let current = match records {
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
        let mut refreshed = Vec::new();
        for (ci, oi) in refs {
            let op = &claimed[ci].1.ops[oi];
            let Some(record) = current.get(&op.person_key) else {
                continue;
            };
            if superseded(op, record) {
                // A retried op may have landed in an earlier attempt that
                // never read again after it: repair it as well.
                let retried = claimed[ci].1.received.receive_count > 1;
                if retried {
                    let job = &claimed[ci].1.received.job;
                    if let Some(repair) = super::repair::repair_job(deps, job, oi, op, record) {
                        claimed[ci].1.repairs.push(repair);
                    }
                }
                claimed[ci].1.superseded[oi] = true;
            } else if record.source_ts > op.source_ts
                && matches!(op.op, OpKind::Add | OpKind::Update)
            {
                refreshed.push((ci, oi, record.clone()));
            }
        }
        for (ci, oi, record) in refreshed {
            let op = &mut claimed[ci].1.ops[oi];
            op.ids = record.current.ids;
            op.attributes = record.current.attributes;
        }
    }
}

/// One export's picked ops (job index, op index) with their people's
/// records, or the error reading them.
type ExportRecords = (
    String,
    Vec<(usize, usize)>,
    Result<BTreeMap<PersonKey, MembershipRecord>, StateError>,
);

/// The ops `pick` selects, grouped by export, with the records of their
/// people read in one call per export: shared by the check before sending
/// and the read again after it.
pub(super) async fn read_records(
    deps: &Deps,
    claimed: &[(usize, Claimed<'_>)],
    pick: impl Fn(&Claimed<'_>, usize) -> bool,
) -> Vec<ExportRecords> {
    let mut by_export: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (ci, (_, c)) in claimed.iter().enumerate() {
        for oi in (0..c.ops.len()).filter(|oi| pick(c, *oi)) {
            by_export
                .entry(c.received.job.export.clone())
                .or_default()
                .push((ci, oi));
        }
    }
    let mut out = Vec::with_capacity(by_export.len());
    for (export, refs) in by_export {
        let mut people: Vec<PersonKey> = refs
            .iter()
            .map(|(ci, oi)| claimed[*ci].1.ops[*oi].person_key.clone())
            .collect();
        people.sort();
        people.dedup();
        let records = deps
            .state
            .get_memberships(&export, &people)
            .await
            .map(|records| {
                people
                    .into_iter()
                    .zip(records)
                    .filter_map(|(k, r)| r.map(|r| (k, r)))
                    .collect()
            });
        out.push((export, refs, records));
    }
    out
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
