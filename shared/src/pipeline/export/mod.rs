//! The batch export: read a segment's membership from the source, diff it
//! against state, hold the run if a guard rail trips, commit and enqueue.
//!
//! A run is a record with a checkpoint, so an invocation that runs out of
//! time (or crashes) continues where it stopped:
//! * phase 1 stages each source page and saves the source cursor;
//! * phase 2 commits changes in person-key order and saves the last key
//!   committed, so a resumed run neither skips nor re-sends a change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::Rng;
use tracing::{info, warn};

use super::changes::{apply_and_enqueue, apply_one, enqueue, mapped_attributes, new_job};
use super::{Deps, PipelineError};
use crate::destinations::kind_can_replace;
use crate::domain::membership::{exit_change, ops_for_export, tiers_for};
use crate::domain::model::{
    ChangeKind, ChangeOrigin, DeliveryJob, DeliveryOp, MembershipChange, MembershipRecord, Millis,
    Person, PersonKey, RunCheckpoint, RunKind, RunRecord, RunStats, RunStatus,
};
use crate::domain::spec::{ExportSource, ExportSpec};
use crate::ports::SegmentSource;

mod restore;
use restore::*;

#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Members per App API membership page (≤ 30,000).
    pub page_limit: u32,
    /// Changes committed (and enqueued) per chunk.
    pub chunk_people: usize,
    /// An exit event this recent keeps a person out even if the segment
    /// still lists them (Customer.io recomputes segments with some lag).
    pub exit_grace: Duration,
    /// Stop and checkpoint when this instant passes (a Lambda's deadline).
    pub deadline: Option<Instant>,
    /// A plan on an overlay (`dataout export --dry-run`): its run is never
    /// stored, so a hold is told without a run id anyone could approve.
    pub dry_run: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            page_limit: 1000,
            chunk_people: 500,
            exit_grace: Duration::from_secs(3600),
            deadline: None,
            dry_run: false,
        }
    }
}

const LIST_PAGE: usize = 1000;

/// Run (or continue) the batch export of `export_name`. Returns the run
/// record as it stands: `Running` means call again to continue.
pub async fn run_export(
    deps: &Deps,
    source: &dyn SegmentSource,
    export_name: &str,
    opts: &ExportOptions,
) -> Result<RunRecord, PipelineError> {
    let export = deps
        .spec
        .export(export_name)
        .ok_or_else(|| PipelineError::Config(format!("unknown export `{export_name}`")))?
        .clone();
    let ExportSource::Segment { segment_id } = export.source else {
        return Err(PipelineError::Config(format!(
            "export `{export_name}` has no batch source (it is fed by webhooks only)"
        )));
    };
    let mut run = match deps
        .state
        .list_runs(export_name, 1)
        .await?
        .into_iter()
        .next()
    {
        Some(r)
            if r.kind == RunKind::Batch
                && matches!(r.status, RunStatus::Running | RunStatus::Approved) =>
        {
            info!(export = export_name, run_id = %r.run_id, "continuing run");
            r
        }
        _ => new_run(deps, export_name),
    };
    deps.state.put_run(&run).await?;

    // Each invocation makes progress (one page or one chunk at least)
    // before it looks at its deadline.
    while !run.checkpoint.source_done {
        read_page(deps, source, segment_id, &mut run, opts).await?;
        if !run.checkpoint.source_done && past(opts.deadline) {
            return Ok(run);
        }
    }

    if let Some(destination) = run.checkpoint.only_destination.clone() {
        return restore_one_destination(deps, &export, run, &destination).await;
    }
    let plan = plan(deps, &export, &run, opts).await?;
    if run.status == RunStatus::Running {
        if let Some(reason) = guard_rail(&export, &plan) {
            if opts.dry_run {
                info!(export = export_name, %reason, "dry run: a guard rail would hold this run");
            } else {
                warn!(export = export_name, run_id = %run.run_id, %reason, "run held by a guard rail");
            }
            run.status = RunStatus::Held { reason };
            // The source's count stays: a held run read every member.
            take_plan_stats(&mut run.stats, &plan.stats);
            deps.state.put_run(&run).await?;
            return Ok(run);
        }
    }
    take_plan_stats(&mut run.stats, &plan.stats);

    // Canaries (the export's test profiles) first, in a chunk of their own,
    // so their jobs are the first of the run at every destination.
    let canary = |c: &MembershipChange| {
        c.person
            .ids
            .id
            .as_deref()
            .is_some_and(|id| export.test_profiles.iter().any(|t| t == id))
    };
    if !run.checkpoint.canaries_committed {
        let canaries: Vec<&MembershipChange> = plan.changes.iter().filter(|c| canary(c)).collect();
        if !canaries.is_empty() {
            let through = run.checkpoint.committed_through.clone();
            commit_chunk(deps, &export, &mut run, &canaries).await?;
            // The canary chunk says nothing of how far the key-ordered
            // chunks got.
            run.checkpoint.committed_through = through;
        }
        run.checkpoint.canaries_committed = true;
        deps.state.put_run(&run).await?;
    }
    let pending: Vec<&MembershipChange> = plan
        .changes
        .iter()
        .filter(|c| !canary(c))
        .filter(|c| {
            run.checkpoint
                .committed_through
                .as_deref()
                .is_none_or(|done| c.person.ids.person_key().is_some_and(|k| k.as_str() > done))
        })
        .collect();
    let chunks: Vec<&[&MembershipChange]> = pending.chunks(opts.chunk_people.max(1)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        commit_chunk(deps, &export, &mut run, chunk).await?;
        if i + 1 < chunks.len() && past(opts.deadline) {
            return Ok(run);
        }
    }
    // A rollback replaces every destination with a full-replace call; a
    // plain run replaces those a one-destination rollback left out of step.
    let to_replace: Vec<String> = if replaces(&run) {
        export
            .destinations
            .iter()
            .map(|b| b.destination.clone())
            .collect()
    } else if run.checkpoint.restores.is_none() {
        out_of_step(deps, export_name, &run.run_id).await?
    } else {
        Vec::new()
    };
    if !to_replace.is_empty() {
        let jobs: Vec<_> = export
            .destinations
            .iter()
            .filter(|b| to_replace.contains(&b.destination))
            .filter(|b| {
                deps.spec
                    .destination(&b.destination)
                    .is_some_and(|d| kind_can_replace(d.kind))
            })
            .map(|b| {
                let mut job = new_job(
                    deps,
                    &export,
                    &b.destination,
                    &format!("replace:{}", run.run_id),
                    Some(&run.run_id),
                    Vec::new(),
                );
                job.replace = true;
                job
            })
            .collect();
        let summary = enqueue(deps, jobs).await?;
        run.stats.jobs_enqueued += summary.jobs;
    }
    run.status = RunStatus::Finished;
    run.finished_at = Some(deps.clock.now_ms());
    deps.state.put_run(&run).await?;
    // The run's staged members stay as the snapshot a rollback restores;
    // only the newest few runs keep theirs.
    prune_snapshots(deps, export_name, &run.run_id).await?;
    info!(
        export = export_name,
        run_id = %run.run_id,
        members = run.stats.members,
        adds = run.stats.adds,
        removes = run.stats.removes,
        "run finished"
    );
    Ok(run)
}

/// Finished batch runs whose staged members are kept for `dataout rollback`.
pub const SNAPSHOTS_KEPT: usize = 3;

/// Clear the staged members of this export's runs older than the newest
/// [`SNAPSHOTS_KEPT`] finished ones (this one included), and of older runs
/// that never finished (a held run older than this one can no longer be
/// approved: only the latest can).
async fn prune_snapshots(deps: &Deps, export: &str, current: &str) -> Result<(), PipelineError> {
    let runs = deps.state.list_runs(export, SNAPSHOTS_KEPT + 20).await?;
    let mut kept = 0;
    for r in runs
        .iter()
        .filter(|r| r.run_id != current && r.kind == RunKind::Batch)
    {
        let keep = r.status == RunStatus::Finished && kept + 1 < SNAPSHOTS_KEPT;
        if keep {
            kept += 1;
        } else {
            deps.state.clear_staged(&r.run_id).await?;
        }
    }
    Ok(())
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

pub(crate) fn new_run(deps: &Deps, export: &str) -> RunRecord {
    let now = deps.clock.now_ms();
    let suffix: u32 = rand::rng().random_range(0..0xFFFF);
    RunRecord {
        run_id: format!("run_{export}_{now}_{suffix:04x}"),
        export: export.to_string(),
        kind: RunKind::Batch,
        status: RunStatus::Running,
        config_hash: deps.spec.config_hash.clone(),
        started_at: now,
        finished_at: None,
        checkpoint: RunCheckpoint::default(),
        stats: RunStats::default(),
    }
}

/// Phase 1: one source page, with attributes, staged under the run.
async fn read_page(
    deps: &Deps,
    source: &dyn SegmentSource,
    segment_id: u64,
    run: &mut RunRecord,
    opts: &ExportOptions,
) -> Result<(), PipelineError> {
    let page = source
        .membership_page(
            segment_id,
            run.checkpoint.source_cursor.as_deref(),
            opts.page_limit,
        )
        .await?;
    let mut staged: Vec<(PersonKey, Person)> = Vec::with_capacity(page.people.len());
    for ids in page.people.chunks(100) {
        let found = source.attributes(ids).await?;
        let mut by_key: BTreeMap<PersonKey, Person> = found
            .into_iter()
            .filter_map(|p| p.ids.person_key().map(|k| (k, p)))
            .collect();
        for id in ids {
            let Some(key) = id.person_key() else {
                run.stats.unmatched += 1;
                continue;
            };
            let mut person = by_key.remove(&key).unwrap_or_else(|| Person {
                ids: id.clone(),
                attributes: Default::default(),
            });
            person.ids.merge_missing(id);
            staged.push((key, person));
        }
    }
    deps.state.stage_people(&run.run_id, &staged).await?;
    run.stats.pages += 1;
    run.stats.members += staged.len() as u64;
    run.checkpoint.source_cursor = page.next.clone();
    run.checkpoint.source_done = page.next.is_none();
    deps.state.put_run(run).await?;
    Ok(())
}

/// What a run will change.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// In person-key order.
    pub changes: Vec<MembershipChange>,
    pub stats: RunStats,
    /// Members in state before the run.
    pub current_size: u64,
    /// Members after the run.
    pub next_size: u64,
    pub source_size: u64,
}

async fn all_records(
    deps: &Deps,
    export: &str,
) -> Result<BTreeMap<PersonKey, MembershipRecord>, PipelineError> {
    let mut out = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = deps
            .state
            .list_memberships(export, cursor, LIST_PAGE)
            .await?;
        for r in page.items {
            out.insert(r.person_key.clone(), r);
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(out),
        }
    }
}

/// Phase 2a: the diff between staged source and state.
pub async fn plan(
    deps: &Deps,
    export: &ExportSpec,
    run: &RunRecord,
    opts: &ExportOptions,
) -> Result<Plan, PipelineError> {
    let mut staged: BTreeMap<PersonKey, Person> = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = deps
            .state
            .list_staged(&run.run_id, cursor, LIST_PAGE)
            .await?;
        staged.extend(page.items);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let stored = all_records(deps, &export.name).await?;
    let mut suppressors: BTreeSet<PersonKey> = BTreeSet::new();
    for other in &export.suppress {
        suppressors.extend(
            all_records(deps, other)
                .await?
                .into_values()
                .filter(|r| r.current.member)
                .map(|r| r.person_key),
        );
    }
    let run_cid = format!("run:{}", run.run_id);
    let ts = run.started_at;
    let grace = opts.exit_grace.as_millis() as i64;
    let mut plan = Plan {
        current_size: stored.values().filter(|r| r.current.member).count() as u64,
        source_size: staged.len() as u64,
        ..Default::default()
    };
    let keys: BTreeSet<&PersonKey> = staged.keys().chain(stored.keys()).collect();
    let mut next_size = 0u64;
    for key in keys {
        let rec = stored.get(key);
        let done_by_this_run = rec.is_some_and(|r| r.change_id == run_cid);
        let was_member = rec.is_some_and(|r| {
            if done_by_this_run {
                r.previous.as_ref().is_some_and(|p| p.member)
            } else {
                r.current.member
            }
        });
        let Some(person) = staged.get(key) else {
            if was_member {
                plan.stats.removes += 1;
                if let Some(r) = rec {
                    plan.changes.push(batch_change(
                        export,
                        &r.current.ids,
                        person_of(r),
                        ChangeKind::Exit,
                        ts,
                        &run_cid,
                    ));
                }
            }
            continue;
        };
        let recent_exit = rec.is_some_and(|r| {
            !done_by_this_run
                && !r.current.member
                && matches!(r.origin, ChangeOrigin::ExitRule | ChangeOrigin::Suppression)
                && r.source_ts > ts - grace
        });
        if suppressors.contains(key) || recent_exit {
            plan.stats.suppressed += 1;
            if was_member {
                plan.stats.removes += 1;
                plan.changes.push(batch_change(
                    export,
                    &person.ids,
                    person.clone(),
                    ChangeKind::Exit,
                    ts,
                    &run_cid,
                ));
            }
            continue;
        }
        next_size += 1;
        let enter = batch_change(
            export,
            &person.ids,
            person.clone(),
            ChangeKind::Enter,
            ts,
            &run_cid,
        );
        if done_by_this_run {
            if was_member {
                plan.stats.changed += 1;
            } else {
                plan.stats.adds += 1;
            }
            plan.changes.push(enter);
            continue;
        }
        match rec.filter(|r| r.current.member) {
            None => {
                plan.stats.adds += 1;
                plan.changes.push(enter);
            }
            Some(r) => {
                let attrs = mapped_attributes(export, &person.attributes);
                let mut ids = person.ids.clone();
                ids.merge_missing(&r.current.ids);
                let mut merged = r.current.attributes.clone();
                merged.extend(attrs);
                let tiers = tiers_for(export, &merged, r.entered_at.or(Some(ts)), ts);
                if ids != r.current.ids || merged != r.current.attributes {
                    plan.stats.changed += 1;
                    plan.changes.push(enter);
                } else if tiers != r.current.tiers {
                    plan.stats.tier_moves += 1;
                    plan.changes.push(enter);
                } else {
                    plan.stats.unchanged += 1;
                }
            }
        }
    }
    plan.next_size = next_size;
    Ok(plan)
}

fn person_of(r: &MembershipRecord) -> Person {
    Person {
        ids: r.current.ids.clone(),
        attributes: Default::default(),
    }
}

fn batch_change(
    export: &ExportSpec,
    ids: &crate::domain::model::Identifiers,
    mut person: Person,
    kind: ChangeKind,
    ts: Millis,
    run_cid: &str,
) -> MembershipChange {
    person.ids.merge_missing(ids);
    MembershipChange {
        export: export.name.clone(),
        person,
        kind,
        source_ts: ts,
        intake_ts: ts,
        origin: ChangeOrigin::Batch,
        change_id: run_cid.to_string(),
    }
}

/// Phase 2b: the guard rails. `Some(reason)` holds the run.
pub fn guard_rail(export: &ExportSpec, plan: &Plan) -> Option<String> {
    let g = &export.guard_rails;
    if g.refuse_empty_source && plan.source_size == 0 && plan.current_size > 0 {
        return Some(format!(
            "the source returned no members while {} are in state: refusing to remove everyone",
            plan.current_size
        ));
    }
    if let Some(min) = g.min_size {
        if plan.next_size < min {
            return Some(format!(
                "audience size {} below the expected minimum {min}",
                plan.next_size
            ));
        }
    }
    if let Some(max) = g.max_size {
        if plan.next_size > max {
            return Some(format!(
                "audience size {} above the expected maximum {max}",
                plan.next_size
            ));
        }
    }
    if let Some(max_churn) = g.max_churn_pct {
        if plan.current_size > 0 {
            let churn =
                (plan.stats.adds + plan.stats.removes) as f64 * 100.0 / plan.current_size as f64;
            if churn > max_churn {
                return Some(format!(
                    "churn {churn:.1}% ({} adds, {} removes on {}) above the allowed {max_churn}%",
                    plan.stats.adds, plan.stats.removes, plan.current_size
                ));
            }
        }
    }
    None
}

/// Apply one chunk of changes, enqueue one job per destination, checkpoint.
async fn commit_chunk(
    deps: &Deps,
    export: &ExportSpec,
    run: &mut RunRecord,
    chunk: &[&MembershipChange],
) -> Result<(), PipelineError> {
    let mut ops: BTreeMap<String, Vec<DeliveryOp>> = BTreeMap::new();
    let mut cascade = Vec::new();
    let mut last_key = None;
    let replacing = replaces(run);
    for change in chunk {
        last_key = change.person.ids.person_key();
        let (written, _) =
            transient_retry("apply a batch change", || apply_one(deps, change)).await?;
        let Some(record) = written else { continue };
        for binding in &export.destinations {
            let Some(dest) = deps.spec.destination(&binding.destination) else {
                continue;
            };
            // A rollback replaces these destinations' audiences whole
            // once state is committed, instead of sending the diff.
            if replacing && kind_can_replace(dest.kind) {
                continue;
            }
            ops.entry(binding.destination.clone())
                .or_default()
                .extend(ops_for_export(export, &record, binding, dest.kind));
        }
        let entered = record.current.member && record.previous.as_ref().is_none_or(|p| !p.member);
        if entered {
            for other in deps.spec.exports_suppressed_by(&export.name) {
                cascade.push(exit_change(
                    &other.name,
                    &record.current.ids,
                    record.source_ts,
                    record.intake_ts,
                    ChangeOrigin::Suppression,
                    format!("supp:{}:{}", export.name, record.change_id),
                ));
            }
        }
    }
    let first = chunk
        .first()
        .and_then(|c| c.person.ids.person_key())
        .map(|k| k.0)
        .unwrap_or_default();
    let origin = format!("{}#{first}", run.run_id);
    let jobs: Vec<DeliveryJob> = ops
        .into_iter()
        .filter(|(_, ops)| !ops.is_empty())
        .map(|(dest, ops)| new_job(deps, export, &dest, &origin, Some(&run.run_id), ops))
        .collect();
    let summary = transient_retry("enqueue a chunk's jobs", || enqueue(deps, jobs.clone())).await?;
    run.stats.jobs_enqueued += summary.jobs;
    run.stats.ops_enqueued += summary.ops;
    if !cascade.is_empty() {
        let s = transient_retry("apply suppressions", || {
            apply_and_enqueue(deps, cascade.clone())
        })
        .await?;
        run.stats.jobs_enqueued += s.jobs;
        run.stats.ops_enqueued += s.ops;
    }
    run.checkpoint.chunks_committed += 1;
    run.checkpoint.committed_through = last_key.map(|k| k.0);
    let record = run.clone();
    transient_retry("checkpoint the run", || deps.state.put_run(&record)).await?;
    Ok(())
}

/// Retry one step of a chunk through transient failures (a throttled
/// write), a few times with backoff: a chunk is hundreds of writes, and one
/// failure would otherwise throw them all away and start the chunk again.
/// Every step is idempotent (changes by id, jobs by deterministic id).
async fn transient_retry<T, E, F, Fut>(what: &'static str, f: F) -> Result<T, PipelineError>
where
    E: Into<PipelineError>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    use backon::{ExponentialBuilder, Retryable};
    let mut f = f;
    (move || {
        let fut = f();
        async move { fut.await.map_err(Into::into) }
    })
    .retry(
        ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(50))
            .with_max_delay(std::time::Duration::from_secs(2))
            .with_max_times(5)
            .with_jitter(),
    )
    .sleep(tokio::time::sleep)
    .when(PipelineError::is_retryable)
    .notify(|e: &PipelineError, delay| {
        warn!(step = what, error = %e, delay_ms = delay.as_millis() as u64, "batch step failed; retrying");
    })
    .await
}

/// The plan's counts on the run; what reading the source counted (pages,
/// members, unmatched) is kept.
fn take_plan_stats(stats: &mut RunStats, plan: &RunStats) {
    stats.adds = plan.adds;
    stats.removes = plan.removes;
    stats.changed = plan.changed;
    stats.unchanged = plan.unchanged;
    stats.tier_moves = plan.tier_moves;
    stats.suppressed = plan.suppressed;
}

/// Approve a held run: it commits on its next invocation, guard rails skipped.
pub async fn approve(deps: &Deps, run_id: &str) -> Result<RunRecord, PipelineError> {
    let mut run = deps
        .state
        .get_run(run_id)
        .await?
        .ok_or_else(|| PipelineError::Config(format!("no run `{run_id}`")))?;
    if !matches!(run.status, RunStatus::Held { .. }) {
        return Err(PipelineError::Config(format!(
            "run `{run_id}` is not held (it is {:?})",
            run.status
        )));
    }
    run.status = RunStatus::Approved;
    deps.state.put_run(&run).await?;
    Ok(run)
}
