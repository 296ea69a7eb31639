//! Rollbacks inside a batch run: which destinations a one-destination
//! rollback left out of step with state, and restoring one of them by its
//! full-replace call.

use super::*;

/// Destinations a one-destination rollback restored since the export's
/// last finished run that moved state: they hold that rollback's members,
/// not state's, until replaced from state again.
pub(super) async fn out_of_step(
    deps: &Deps,
    export: &str,
    current: &str,
) -> Result<Vec<String>, PipelineError> {
    let mut out = Vec::new();
    for r in deps.state.list_runs(export, SNAPSHOTS_KEPT + 20).await? {
        if r.run_id == current || r.kind != RunKind::Batch || r.status != RunStatus::Finished {
            continue;
        }
        match r.checkpoint.only_destination {
            Some(d) => {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
            None => break,
        }
    }
    Ok(out)
}

/// An approved one-destination rollback: `destination` alone gets the
/// target's members by a full replace (read from this run's staging at
/// delivery), or, when the rollback empties it, a remove for everyone
/// state holds. State is not written.
pub(super) async fn restore_one_destination(
    deps: &Deps,
    export: &ExportSpec,
    mut run: RunRecord,
    destination: &str,
) -> Result<RunRecord, PipelineError> {
    let binding = export.binding(destination).ok_or_else(|| {
        PipelineError::Config(format!(
            "export `{}` no longer sends to `{destination}`",
            export.name
        ))
    })?;
    let kind = deps
        .spec
        .destination(destination)
        .map(|d| d.kind)
        .ok_or_else(|| PipelineError::Config(format!("no destination `{destination}`")))?;
    let restores = run.checkpoint.restores.clone().unwrap_or_default();
    if !restores.is_empty() {
        let mut job = new_job(
            deps,
            export,
            destination,
            &format!("replace:{}", run.run_id),
            Some(&run.run_id),
            Vec::new(),
        );
        job.replace = true;
        job.replace_from = Some(run.run_id.clone());
        let summary = enqueue(deps, vec![job]).await?;
        run.stats.jobs_enqueued += summary.jobs;
        run.stats.adds = run.stats.members;
    } else {
        // From the start again if an invocation stopped half way: the jobs
        // are derived from the same records, so their ids repeat and
        // delivery drops the ones already done.
        let mut cursor = None;
        loop {
            let page = deps
                .state
                .list_memberships(&export.name, cursor, LIST_PAGE)
                .await?;
            let mut ops = Vec::new();
            for r in page.items.iter().filter(|r| r.current.member) {
                // As if the person had left: removes from the main and
                // each tier audience they are in.
                let mut leaving = r.clone();
                leaving.previous = Some(r.current.clone());
                leaving.current.member = false;
                leaving.current.tiers.clear();
                ops.extend(ops_for_export(export, &leaving, binding, kind));
                run.stats.removes += 1;
            }
            if !ops.is_empty() {
                let origin = format!(
                    "{}#{}",
                    run.run_id,
                    page.items
                        .first()
                        .map(|r| r.person_key.0.as_str())
                        .unwrap_or("")
                );
                let jobs = vec![new_job(
                    deps,
                    export,
                    destination,
                    &origin,
                    Some(&run.run_id),
                    ops,
                )];
                let summary = enqueue(deps, jobs).await?;
                run.stats.jobs_enqueued += summary.jobs;
                run.stats.ops_enqueued += summary.ops;
            }
            run.checkpoint.chunks_committed += 1;
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    }
    run.status = RunStatus::Finished;
    run.finished_at = Some(deps.clock.now_ms());
    deps.state.put_run(&run).await?;
    info!(
        export = %export.name,
        run_id = %run.run_id,
        destination,
        restores = %restores,
        "one-destination rollback finished"
    );
    Ok(run)
}

/// A rollback to a run's members: the destinations with a full-replace
/// call get one instead of the diff. (A rollback that empties the export
/// sends removes everywhere: there is nothing to replace with.)
pub(super) fn replaces(run: &RunRecord) -> bool {
    run.checkpoint
        .restores
        .as_deref()
        .is_some_and(|t| !t.is_empty())
}
