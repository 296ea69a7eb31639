//! `dataout export <name> [--dry-run]`: one batch run of an export on local
//! state, or the plan of one without carrying it out.
//!
//! The dry run runs the real batch export (`pipeline::export::run_export`)
//! against an overlay: a state store that reads through to the real one (for
//! the local state, a copy of its file) and keeps every write in memory, and a queue that only records the jobs sent
//! to it. Nothing reaches the state file or the queues, and the plan is
//! exactly what a real run would carry out: it is summarised from the run
//! record, the membership records the run wrote (in memory) and the jobs it
//! enqueued (in memory). A run a guard rail holds is reported as held, with
//! what it would do once approved (approved and committed in the overlay).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;

use dataout::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::adapters::overlay::{OverlayStateStore, RecordingQueue};
use dataout::domain::model::{DeliveryJob, MembershipRecord, OpKind, RunRecord, RunStatus};
use dataout::domain::spec::ActivationSpec;
use dataout::pipeline::export::{approve, run_export, ExportOptions};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, JobQueue, SegmentSource, StateStore};

/// Ops of one destination, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DestinationOps {
    pub jobs: u64,
    pub ops: u64,
    pub add: u64,
    pub remove: u64,
    pub update: u64,
    pub event: u64,
    /// Ops per destination audience (main and tier audiences).
    pub by_audience: BTreeMap<String, u64>,
}

/// People entering and leaving one tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TierMoves {
    pub entering: u64,
    pub leaving: u64,
}

/// What a batch run of one export does (or would do).
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub export: String,
    pub dry_run: bool,
    pub run_id: String,
    /// `finished`, or `held` when a guard rail stops the run.
    pub verdict: String,
    /// Why a guard rail holds the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_reason: Option<String>,
    pub source_members: u64,
    pub adds: u64,
    pub removes: u64,
    pub attribute_changes: u64,
    pub unchanged: u64,
    pub tier_moves: u64,
    pub suppressed: u64,
    pub unmatched: u64,
    /// Jobs and ops the run enqueues (for a dry run: would enqueue).
    pub jobs_enqueued: u64,
    pub ops_enqueued: u64,
    /// People whose value of each attribute changed (members before and after).
    pub changed_attributes: BTreeMap<String, u64>,
    /// Members whose identifiers changed.
    pub changed_identifiers: u64,
    pub tiers: BTreeMap<String, TierMoves>,
    pub destinations: BTreeMap<String, DestinationOps>,
    /// Exits the run cascades into exports its members suppress.
    pub cascaded_exits: BTreeMap<String, u64>,
    /// For a held run: whether the counts above are what it does once an
    /// operator approves it (`dataout runs approve`).
    pub counts_if_approved: bool,
    /// For a held run: the command that releases it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve_with: Option<String>,
}

/// Run `export` to its end (or its hold) on `deps`.
async fn run_to_end(
    deps: &Deps,
    source: &dyn SegmentSource,
    export: &str,
    dry_run: bool,
) -> anyhow::Result<RunRecord> {
    let opts = ExportOptions {
        dry_run,
        ..ExportOptions::default()
    };
    loop {
        let run = run_export(deps, source, export, &opts).await?;
        if run.status != RunStatus::Running {
            return Ok(run);
        }
    }
}

/// The plan of one batch run of `export`, computed on an overlay of `state`:
/// nothing is written to `state` and nothing is enqueued.
pub async fn plan(
    spec: Arc<ActivationSpec>,
    state: Arc<dyn StateStore>,
    source: &dyn SegmentSource,
    export: &str,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Plan> {
    let overlay = Arc::new(OverlayStateStore::over(state));
    let queue = Arc::new(RecordingQueue::new());
    let deps = Deps {
        spec,
        state: overlay.clone(),
        queue: queue.clone(),
        clock,
    };
    let mut run = run_to_end(&deps, source, export, true).await?;
    let mut held_reason = None;
    if let RunStatus::Held { reason } = &run.status {
        held_reason = Some(reason.clone());
        // What it would do once approved: approve and commit it, in memory.
        approve(&deps, &run.run_id).await?;
        let approved = run_to_end(&deps, source, export, true).await?;
        run = RunRecord {
            status: run.status.clone(),
            ..approved
        };
    }
    let written = overlay.written_memberships()?;
    let jobs = queue.sent()?;
    Ok(summarise(export, true, &run, held_reason, &written, &jobs))
}

/// A real batch run of `export` on `deps`, summarised like a plan.
pub async fn run(deps: &Deps, source: &dyn SegmentSource, export: &str) -> anyhow::Result<Plan> {
    let run = run_to_end(deps, source, export, false).await?;
    let held = match &run.status {
        RunStatus::Held { reason } => Some(reason.clone()),
        _ => None,
    };
    Ok(summarise(export, false, &run, held, &[], &[]))
}

fn summarise(
    export: &str,
    dry_run: bool,
    run: &RunRecord,
    held_reason: Option<String>,
    written: &[MembershipRecord],
    jobs: &[(String, DeliveryJob)],
) -> Plan {
    let s = &run.stats;
    let mut plan = Plan {
        export: export.to_string(),
        dry_run,
        run_id: run.run_id.clone(),
        verdict: if held_reason.is_some() {
            "held".into()
        } else {
            "finished".into()
        },
        counts_if_approved: dry_run && held_reason.is_some(),
        approve_with: None,
        held_reason,
        source_members: s.members,
        adds: s.adds,
        removes: s.removes,
        attribute_changes: s.changed,
        unchanged: s.unchanged,
        tier_moves: s.tier_moves,
        suppressed: s.suppressed,
        unmatched: s.unmatched,
        jobs_enqueued: s.jobs_enqueued,
        ops_enqueued: s.ops_enqueued,
        changed_attributes: BTreeMap::new(),
        changed_identifiers: 0,
        tiers: BTreeMap::new(),
        destinations: BTreeMap::new(),
        cascaded_exits: BTreeMap::new(),
    };
    for r in written {
        if r.export != export {
            if !r.current.member && r.previous.as_ref().is_some_and(|p| p.member) {
                *plan.cascaded_exits.entry(r.export.clone()).or_default() += 1;
            }
            continue;
        }
        let before = r.previous.as_ref().filter(|p| p.member);
        let after = Some(&r.current).filter(|c| c.member);
        if let (Some(b), Some(a)) = (before, after) {
            let keys: std::collections::BTreeSet<&String> =
                b.attributes.keys().chain(a.attributes.keys()).collect();
            for key in keys {
                if b.attributes.get(key) != a.attributes.get(key) {
                    *plan.changed_attributes.entry(key.clone()).or_default() += 1;
                }
            }
            if b.ids != a.ids {
                plan.changed_identifiers += 1;
            }
        }
        let was = before.map(|b| b.tiers.clone()).unwrap_or_default();
        let is = after.map(|a| a.tiers.clone()).unwrap_or_default();
        for t in is.difference(&was) {
            plan.tiers.entry(t.clone()).or_default().entering += 1;
        }
        for t in was.difference(&is) {
            plan.tiers.entry(t.clone()).or_default().leaving += 1;
        }
    }
    for (queue, job) in jobs {
        let d = plan.destinations.entry(queue.clone()).or_default();
        d.jobs += 1;
        for op in &job.ops {
            d.ops += 1;
            match op.op {
                OpKind::Add => d.add += 1,
                OpKind::Remove => d.remove += 1,
                OpKind::Update => d.update += 1,
                OpKind::Event => d.event += 1,
            }
            *d.by_audience.entry(op.audience.clone()).or_default() += 1;
        }
    }
    plan
}

/// The plan as text for a terminal.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let head = if plan.dry_run {
        "dry run (nothing written, nothing enqueued)"
    } else {
        "run"
    };
    out.push_str(&format!(
        "export {} — {head}, run {}\n",
        plan.export, plan.run_id
    ));
    match (&plan.held_reason, plan.dry_run) {
        (Some(reason), true) => out.push_str(&format!(
            "guard rails: HELD — {reason}\n  (a real run would be held until approved; the counts below are what it does once approved)\n"
        )),
        (Some(reason), false) => out.push_str(&format!(
            "guard rails: HELD — {reason}\n  (nothing committed; release it with `{}`)\n",
            plan.approve_with
                .clone()
                .unwrap_or_else(|| format!("dataout runs approve {}", plan.run_id))
        )),
        (None, true) => out.push_str("guard rails: pass — the run would commit\n"),
        (None, false) => out.push_str("guard rails: pass — the run committed\n"),
    }
    out.push_str(&format!(
        "source members {}  adds {}  removes {}  attribute changes {}  tier moves {}  unchanged {}  suppressed {}  unmatched {}\n",
        plan.source_members,
        plan.adds,
        plan.removes,
        plan.attribute_changes,
        plan.tier_moves,
        plan.unchanged,
        plan.suppressed,
        plan.unmatched
    ));
    if !plan.changed_attributes.is_empty() || plan.changed_identifiers > 0 {
        let attrs: Vec<String> = plan
            .changed_attributes
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!(
            "changed values: {}{}\n",
            attrs.join(", "),
            if plan.changed_identifiers > 0 {
                format!("; identifiers {}", plan.changed_identifiers)
            } else {
                String::new()
            }
        ));
    }
    for (tier, m) in &plan.tiers {
        out.push_str(&format!(
            "tier {tier}: +{} entering, -{} leaving\n",
            m.entering, m.leaving
        ));
    }
    out.push_str(&format!(
        "enqueues {} ops in {} jobs\n",
        plan.ops_enqueued, plan.jobs_enqueued
    ));
    for (dest, d) in &plan.destinations {
        out.push_str(&format!(
            "destination {dest}: {} ops in {} jobs (add {}, remove {}, update {}, event {})\n",
            d.ops, d.jobs, d.add, d.remove, d.update, d.event
        ));
    }
    for (other, n) in &plan.cascaded_exits {
        out.push_str(&format!("suppression: {n} exits from {other}\n"));
    }
    out
}

/// `dataout runs approve <run>` with the `--config` and `--state-dir` of
/// the run it releases, so it can be pasted as it is.
pub fn approve_command(run_id: &str, config: &Path, state_dir: &Path) -> String {
    format!(
        "dataout runs approve {run_id} --config {} --state-dir {}",
        shell_quote(&config.to_string_lossy()),
        shell_quote(&state_dir.to_string_lossy())
    )
}

/// A value as one shell word.
fn shell_quote(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

/// A dry run's view of the local state: a copy of the state file, opened
/// in a temporary directory, so the real file is never opened (redb writes
/// to a file it opens, even to only read it) and a running `serve` does not
/// block the dry run. Empty when there is no state yet.
pub struct LocalSnapshot {
    pub state: Arc<dyn StateStore>,
    _dir: Option<tempfile::TempDir>,
}

/// Snapshot the local state under `state_dir` for a dry run. The queue file
/// is never opened, so it cannot change either.
pub fn open_local_state(state_dir: &Path) -> anyhow::Result<LocalSnapshot> {
    let path = state_dir.join("state.redb");
    if !path.exists() {
        // No state yet: the plan of a first run, and no file is created.
        return Ok(LocalSnapshot {
            state: Arc::new(OverlayStateStore::in_memory()),
            _dir: None,
        });
    }
    let dir = tempfile::tempdir().context("a temporary directory for the state snapshot")?;
    let copy = dir.path().join("state.redb");
    std::fs::copy(&path, &copy).with_context(|| format!("copying {}", path.display()))?;
    let store = EmbeddedStateStore::open(&copy)
        .with_context(|| format!("opening a copy of {}", path.display()))?;
    Ok(LocalSnapshot {
        state: Arc::new(store),
        _dir: Some(dir),
    })
}

/// Deps on the local state and queues under `state_dir`, for a real run.
pub fn open_local_deps(
    spec: ActivationSpec,
    state_dir: &Path,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Deps> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let state = Arc::new(
        EmbeddedStateStore::open(&state_dir.join("state.redb"))
            .with_context(|| format!("opening the state under {}", state_dir.display()))?,
    );
    let queue = EmbeddedQueue::open(
        &state_dir.join("queue.redb"),
        QueueSettings::default(),
        clock.clone(),
    )
    .with_context(|| format!("opening the queues under {}", state_dir.display()))?;
    for (name, dest) in &spec.destinations {
        queue.set_queue_settings(
            name,
            QueueSettings {
                max_receives: dest.max_attempts.max(1),
                ..QueueSettings::default()
            },
        );
    }
    let queue: Arc<dyn JobQueue> = Arc::new(queue);
    Ok(Deps {
        spec: Arc::new(spec),
        state,
        queue,
        clock,
    })
}
