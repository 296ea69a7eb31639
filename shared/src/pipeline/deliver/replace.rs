//! Full replaces (a rollback's): an audience replaced by state's members.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{info, warn};

use crate::destinations::{Destination, DestinationError, OpOutcome};
use crate::domain::model::{counter, CounterScope, DeliveryJob, DeliveryOp, OpKind, PersonKey};
use crate::domain::spec::ExportSpec;
use crate::pipeline::Deps;

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
            let attributes =
                crate::pipeline::changes::mapped_attributes(export, &person.attributes);
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
pub(super) async fn replace_job(
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
