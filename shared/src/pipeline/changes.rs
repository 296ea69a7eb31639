//! Applying membership changes: the one path every change takes, from a
//! webhook, an exit event, a suppression or a batch diff.
//!
//! Order of writes: the membership record first, then the jobs. A crash in
//! between is repaired by the retry of the same change: the store answers
//! `Applied` for the same change id, the ops are re-derived from the stored
//! `previous -> current`, and the jobs get the same ids, which delivery
//! deduplicates.

use std::collections::BTreeMap;

use tracing::debug;

use super::{Deps, PipelineError};
use crate::domain::attributes::map_attributes;
use crate::domain::membership::{apply_change, exit_change, ops_for_export, Decision};
use crate::domain::model::{
    Attributes, ChangeKind, ChangeOrigin, DeliveryJob, DeliveryOp, MembershipChange,
    MembershipRecord, PersonKey,
};
use crate::domain::spec::ExportSpec;
use crate::ports::MembershipWrite;

/// What a set of changes did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub applied: u64,
    pub stale: u64,
    pub suppressed: u64,
    pub jobs: u64,
    pub ops: u64,
    /// Ops per destination, for reports and tests.
    pub ops_by_destination: BTreeMap<String, u64>,
    /// Events forwarded (once per export taking them) and events the
    /// taxonomy kept back.
    pub events_forwarded: u64,
    pub events_invalid: u64,
}

impl ApplySummary {
    pub fn merge(&mut self, other: ApplySummary) {
        self.applied += other.applied;
        self.stale += other.stale;
        self.suppressed += other.suppressed;
        self.jobs += other.jobs;
        self.ops += other.ops;
        self.events_forwarded += other.events_forwarded;
        self.events_invalid += other.events_invalid;
        for (k, v) in other.ops_by_destination {
            *self.ops_by_destination.entry(k).or_default() += v;
        }
    }
}

/// Raw attributes through the export's allow-list. Issues are dropped values,
/// never a failed change.
pub fn mapped_attributes(export: &ExportSpec, raw: &Attributes) -> Attributes {
    let raw: serde_json::Map<String, serde_json::Value> =
        raw.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let (mapped, issues) = map_attributes(export, &raw);
    for issue in issues {
        debug!(export = %export.name, attribute = %issue.attribute, reason = %issue.reason, "attribute dropped");
    }
    mapped
}

/// Apply one change to state and return the record written (None: stale or
/// no usable identifier). Suppression turns an entry into an exit.
pub async fn apply_one(
    deps: &Deps,
    change: &MembershipChange,
) -> Result<(Option<MembershipRecord>, bool), PipelineError> {
    let export = deps
        .spec
        .export(&change.export)
        .ok_or_else(|| PipelineError::Config(format!("unknown export `{}`", change.export)))?;
    let Some(key) = change.person.ids.person_key() else {
        return Ok((None, false));
    };
    let mut change = change.clone();
    let mut suppressed = false;
    if change.kind == ChangeKind::Enter {
        for other in &export.suppress {
            if let Some(rec) = deps.state.get_membership(other, &key).await? {
                if rec.current.member {
                    change.kind = ChangeKind::Exit;
                    change.origin = ChangeOrigin::Suppression;
                    suppressed = true;
                    break;
                }
            }
        }
    }
    let stored = deps.state.get_membership(&export.name, &key).await?;
    // Suppression is an invariant, not an event: entering a suppression
    // export removes the person even if their record here is newer.
    if change.origin == ChangeOrigin::Suppression && change.kind == ChangeKind::Exit {
        if let Some(s) = &stored {
            if s.change_id != change.change_id && s.source_ts >= change.source_ts {
                change.source_ts = s.source_ts + 1;
            }
        }
    }
    let mapped = mapped_attributes(export, &change.person.attributes);
    let now = deps.clock.now_ms();
    let record = match apply_change(export, stored.as_ref(), &change, &mapped, now) {
        Decision::Stale => return Ok((None, suppressed)),
        Decision::Write(r) => *r,
    };
    match deps.state.put_membership(&record).await? {
        MembershipWrite::Applied => Ok((Some(record), suppressed)),
        MembershipWrite::Stale { .. } => Ok((None, suppressed)),
    }
}

/// The jobs a written record needs, one per destination with work to do.
pub fn jobs_for_record(
    deps: &Deps,
    record: &MembershipRecord,
    run_id: Option<&str>,
) -> Vec<DeliveryJob> {
    let Some(export) = deps.spec.export(&record.export) else {
        return Vec::new();
    };
    let mut jobs = Vec::new();
    for binding in &export.destinations {
        let Some(dest) = deps.spec.destination(&binding.destination) else {
            continue;
        };
        let ops = ops_for_export(export, record, binding, dest.kind);
        if ops.is_empty() {
            continue;
        }
        let origin = format!("{}#{}", record.change_id, record.person_key);
        jobs.push(new_job(
            deps,
            export,
            &binding.destination,
            &origin,
            run_id,
            ops,
        ));
    }
    jobs
}

/// A job with its deterministic id.
pub fn new_job(
    deps: &Deps,
    export: &ExportSpec,
    destination: &str,
    origin_id: &str,
    run_id: Option<&str>,
    ops: Vec<DeliveryOp>,
) -> DeliveryJob {
    DeliveryJob {
        replace: false,
        replace_from: None,
        repair: false,
        job_id: DeliveryJob::derive_id(&export.name, destination, origin_id, &ops),
        export: export.name.clone(),
        destination: destination.to_string(),
        run_id: run_id.map(str::to_string),
        created_at: deps.clock.now_ms(),
        config_hash: deps.spec.config_hash.clone(),
        attempt: 0,
        ops,
    }
}

/// Send jobs grouped by destination queue, and count what was enqueued.
pub async fn enqueue(deps: &Deps, jobs: Vec<DeliveryJob>) -> Result<ApplySummary, PipelineError> {
    let mut by_queue: BTreeMap<String, Vec<DeliveryJob>> = BTreeMap::new();
    for job in jobs {
        by_queue
            .entry(job.destination.clone())
            .or_default()
            .push(job);
    }
    let mut summary = ApplySummary::default();
    for (queue, jobs) in by_queue {
        let ops: u64 = jobs.iter().map(|j| j.ops.len() as u64).sum();
        deps.queue.send(&queue, &jobs).await?;
        summary.jobs += jobs.len() as u64;
        summary.ops += ops;
        *summary.ops_by_destination.entry(queue).or_default() += ops;
    }
    Ok(summary)
}

/// Apply changes in order, cascade suppressions, enqueue the resulting jobs.
pub async fn apply_and_enqueue(
    deps: &Deps,
    changes: Vec<MembershipChange>,
) -> Result<ApplySummary, PipelineError> {
    let mut summary = ApplySummary::default();
    let mut jobs = Vec::new();
    let mut queue: std::collections::VecDeque<MembershipChange> = changes.into();
    while let Some(change) = queue.pop_front() {
        let (written, suppressed) = apply_one(deps, &change).await?;
        if suppressed {
            summary.suppressed += 1;
        }
        let Some(record) = written else {
            summary.stale += 1;
            continue;
        };
        summary.applied += 1;
        jobs.extend(jobs_for_record(deps, &record, None));
        // Entering a suppression export takes the person out of every export
        // that must never contain its members.
        if record.current.member && record.previous.as_ref().is_none_or(|p| !p.member) {
            for other in deps.spec.exports_suppressed_by(&record.export) {
                queue.push_back(exit_change(
                    &other.name,
                    &record.current.ids,
                    record.source_ts,
                    record.intake_ts,
                    ChangeOrigin::Suppression,
                    format!("supp:{}:{}", record.export, record.change_id),
                ));
            }
        }
    }
    summary.merge(enqueue(deps, jobs).await?);
    Ok(summary)
}

/// Person key of a change, for log lines.
pub fn log_key(change: &MembershipChange) -> String {
    change
        .person
        .ids
        .person_key()
        .map(|k: PersonKey| k.log_safe())
        .unwrap_or_else(|| "pk_none".into())
}
