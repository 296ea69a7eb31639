//! Rollback: put an export's destinations back to what they held after one
//! of its runs (`--to <run_id>`), or empty what we added (no `--to`).
//!
//! A rollback is a batch run like any other, prepared so that its staged
//! members are the target's: the members staged by that run (kept as its
//! snapshot for the newest [`SNAPSHOTS_KEPT`] finished runs), or none. It
//! starts held, with the reason saying what it restores, and does nothing
//! until `dataout runs approve <run_id>`. Approved, it commits like an
//! approved run (guard rails skipped): the diff of those members against
//! state, in chunks, canaries first, to every destination of the export —
//! removes for everyone we hold who is not in the target, adds for target
//! members we no longer hold. Suppression applies as in any run: a person
//! now in a suppressing export is not put back. State and every
//! destination move together; afterwards each destination holds exactly
//! the target's members.

use tracing::info;

use super::export::{new_run, SNAPSHOTS_KEPT};
use super::{Deps, PipelineError};
use crate::domain::model::{RunKind, RunRecord, RunStatus};
use crate::domain::spec::ExportSource;

const PAGE: usize = 500;

/// Prepare a held rollback run of `export` restoring `to` (a finished run
/// of the export), or emptying the export when `to` is `None`.
pub async fn prepare(
    deps: &Deps,
    export: &str,
    to: Option<&str>,
) -> Result<RunRecord, PipelineError> {
    let spec = deps
        .spec
        .export(export)
        .ok_or_else(|| PipelineError::Config(format!("no export `{export}` in the spec")))?;
    if !matches!(spec.source, ExportSource::Segment { .. }) {
        return Err(PipelineError::Config(format!(
            "export `{export}` has no batch runs to roll back to (it is fed by webhooks only)"
        )));
    }
    let mut run = new_run(deps, export);
    run.checkpoint.source_done = true;
    run.checkpoint.restores = Some(to.unwrap_or_default().to_string());
    let mut members = 0u64;
    let reason = match to {
        None => "rollback: empties what we added to every destination of the export".to_string(),
        Some(target) => {
            let found = deps
                .state
                .get_run(target)
                .await?
                .filter(|r| r.export == export && r.kind == RunKind::Batch)
                .ok_or_else(|| {
                    PipelineError::Config(format!("no batch run `{target}` of export `{export}`"))
                })?;
            if found.status != RunStatus::Finished {
                return Err(PipelineError::Config(format!(
                    "run `{target}` did not finish ({:?}): only a finished run's members can be restored",
                    found.status
                )));
            }
            // Copy the target's snapshot into this run's staging.
            let mut cursor = None;
            loop {
                let page = deps.state.list_staged(target, cursor, PAGE).await?;
                members += page.items.len() as u64;
                if !page.items.is_empty() {
                    deps.state.stage_people(&run.run_id, &page.items).await?;
                }
                match page.next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            if members == 0 && found.stats.members > 0 {
                return Err(PipelineError::Config(format!(
                    "run `{target}` kept no snapshot of its {} members: only the newest {SNAPSHOTS_KEPT} finished runs of an export keep one",
                    found.stats.members
                )));
            }
            format!("rollback: restores every destination of the export to its {members} members after run {target}")
        }
    };
    run.stats.members = members;
    run.status = RunStatus::Held {
        reason: format!(
            "{reason}; approve with `dataout runs approve {}`",
            run.run_id
        ),
    };
    deps.state.put_run(&run).await?;
    info!(export, run_id = %run.run_id, restores = ?to, members, "rollback prepared and held");
    Ok(run)
}
