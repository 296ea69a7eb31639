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
//!
//! With a destination (`--destination`), only that destination is
//! restored, by its platform's full-replace call: state and the export's
//! other destinations stay as they are. The destination is then out of
//! step with state on purpose, until the export's next batch run, which
//! replaces its audiences from state again. Only destinations with a
//! full-replace call can be rolled back alone: elsewhere a diff computed
//! against state would be sent to a destination that no longer holds
//! state, and nothing would bring it back in step.

use tracing::info;

use super::export::{new_run, SNAPSHOTS_KEPT};
use super::{Deps, PipelineError};
use crate::destinations::kind_can_replace;
use crate::domain::model::{RunKind, RunRecord, RunStatus};
use crate::domain::spec::ExportSource;

const PAGE: usize = 500;

/// Prepare a held rollback run of `export` restoring `to` (a finished run
/// of the export), or emptying the export when `to` is `None`; of every
/// destination of the export, or of `destination` alone.
pub async fn prepare(
    deps: &Deps,
    export: &str,
    to: Option<&str>,
    destination: Option<&str>,
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
    if let Some(name) = destination {
        if spec.binding(name).is_none() {
            return Err(PipelineError::Config(format!(
                "export `{export}` does not send to `{name}` (it sends to {})",
                spec.destinations
                    .iter()
                    .map(|b| format!("`{}`", b.destination))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let kind = deps.spec.destination(name).map(|d| d.kind);
        if !kind.is_some_and(kind_can_replace) {
            return Err(PipelineError::Config(format!(
                "destination `{name}` has no full-replace call, so it cannot be rolled back alone: \
                 it would drift from the export's state with nothing to bring it back; \
                 roll back the whole export (without --destination)"
            )));
        }
    }
    let scope = match destination {
        Some(name) => format!("destination `{name}` of the export (state and the other destinations stay; the next batch run re-syncs it)"),
        None => "every destination of the export".to_string(),
    };
    let mut run = new_run(deps, export);
    run.checkpoint.source_done = true;
    run.checkpoint.restores = Some(to.unwrap_or_default().to_string());
    run.checkpoint.only_destination = destination.map(str::to_string);
    let mut members = 0u64;
    let reason = match to {
        None => format!("rollback: empties what we added to {scope}"),
        Some(target) => {
            let found = deps
                .state
                .get_run(target)
                .await?
                .filter(|r| r.export == export && r.kind == RunKind::Batch)
                .ok_or_else(|| {
                    PipelineError::Config(format!("no batch run `{target}` of export `{export}`"))
                })?;
            if found.checkpoint.only_destination.is_some() {
                return Err(PipelineError::Config(format!(
                    "run `{target}` restored one destination only: restore the run it restored ({}) instead",
                    found.checkpoint.restores.as_deref().filter(|t| !t.is_empty()).unwrap_or("none")
                )));
            }
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
            format!("rollback: restores {scope} to its {members} members after run {target}")
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
