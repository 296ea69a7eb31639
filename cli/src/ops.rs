//! The operator commands, on a local state directory or a deployed stack
//! alike: both open the same ports (embedded redb files, or DynamoDB + SQS)
//! and call the same pipeline code the runtimes call.
//!
//! * `runs list <export>` / `runs approve <run_id>`: approving a held run
//!   continues it right away (it commits from the members it staged, so no
//!   App API call is made) and enqueues its jobs; the delivery consumers
//!   deliver them. `--on-next-tick` only marks it, for the schedule.
//! * `quarantine list|show|replay <id>`: replay runs the body through intake
//!   on the target's adapters.
//! * `dlq list [<destination>]` / `dlq redrive <destination>`: depth of every
//!   queue, or the dead-lettered jobs of one; redrive moves them back (send
//!   first, then delete: a crash between duplicates a job, which delivery
//!   recognises by its deterministic id, and never loses one).
//! * `reconcile show`: the latest report, one row per export × destination.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use clap::Subcommand;

use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::adapters::sqs::SqsJobQueue;
use dataout::domain::config::load_spec_file;
use dataout::domain::model::{Identifiers, Person, RunRecord, RunStatus};
use dataout::domain::spec::ActivationSpec;
use dataout::pipeline::export::{approve, run_export, ExportOptions};
use dataout::pipeline::intake::{replay_quarantined, IntakeConfig, Route};
use dataout::pipeline::Deps;
use dataout::ports::{
    Clock, JobQueue, MembershipPage, Secret, SegmentSource, SourceError, StateStore, SystemClock,
};

use crate::report;
use crate::stack::{self, AwsTarget, TargetArgs};

#[derive(Subcommand, Debug)]
pub enum QuarantineCmd {
    /// Newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One entry with its body.
    Show { id: String },
    /// Run a quarantined body through intake again (after fixing the spec;
    /// give the fixed spec with --config).
    Replay { id: String },
}

#[derive(Subcommand, Debug)]
pub enum RunsCmd {
    /// An export's batch runs, newest first.
    List {
        export: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Release a run a guard rail held: it commits and enqueues now.
    Approve {
        run_id: String,
        /// Only mark it approved; the export's next scheduled tick commits.
        #[arg(long)]
        on_next_tick: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCmd {
    /// Depth of every destination queue, or the dead letters of one.
    List {
        destination: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Move a destination's dead-lettered jobs back to its queue.
    Redrive { destination: String },
}

#[derive(Subcommand, Debug)]
pub enum ReconcileCmd {
    /// The latest reconciliation report: one row per export × destination.
    Show {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the commands act.
pub enum Target {
    Local {
        state_dir: PathBuf,
        config: Option<String>,
    },
    Aws(Box<AwsTarget>),
}

impl Target {
    pub async fn open(args: &TargetArgs) -> anyhow::Result<Self> {
        if args.is_aws() {
            Ok(Target::Aws(Box::new(stack::resolve(args).await?)))
        } else {
            Ok(Target::Local {
                state_dir: args.state_dir.clone(),
                config: args.config.clone(),
            })
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Local { state_dir, .. } => format!("state dir {}", state_dir.display()),
            Target::Aws(t) => format!("table {}", t.table),
        }
    }

    pub fn state(&self) -> anyhow::Result<Arc<dyn StateStore>> {
        match self {
            Target::Local { state_dir, .. } => {
                let path = state_dir.join("state.redb");
                if !path.exists() {
                    bail!(
                        "no state at {} (start `dataout serve` first, pass --state-dir, or --stack for a deployed stack)",
                        state_dir.display()
                    );
                }
                Ok(Arc::new(EmbeddedStateStore::open(&path).with_context(
                    || format!("{} (is `dataout serve` running on it?)", path.display()),
                )?))
            }
            Target::Aws(t) => Ok(Arc::new(DynamoStateStore::new(
                aws_sdk_dynamodb::Client::new(&t.sdk),
                t.table.clone(),
            ))),
        }
    }

    pub fn queue(&self, spec: Option<&ActivationSpec>) -> anyhow::Result<Arc<dyn JobQueue>> {
        match self {
            Target::Local { state_dir, .. } => {
                let path = state_dir.join("queue.redb");
                if !path.exists() {
                    bail!("no queues at {}", state_dir.display());
                }
                let clock: Arc<dyn Clock> = Arc::new(SystemClock);
                let queue = EmbeddedQueue::open(
                    &path,
                    QueueSettings {
                        visibility_timeout: Duration::from_secs(60),
                        max_receives: 5,
                    },
                    clock,
                )
                .with_context(|| {
                    format!("{} (is `dataout serve` running on it?)", path.display())
                })?;
                // The same per-destination settings `dataout serve` uses.
                for (name, dest) in spec.map(|s| &s.destinations).into_iter().flatten() {
                    queue.set_queue_settings(
                        name,
                        QueueSettings {
                            visibility_timeout: Duration::from_secs(60),
                            max_receives: dest.max_attempts.max(1),
                        },
                    );
                }
                Ok(Arc::new(queue))
            }
            Target::Aws(t) => Ok(Arc::new(SqsJobQueue::new(
                aws_sdk_sqs::Client::new(&t.sdk),
                t.queues.clone(),
            ))),
        }
    }

    /// The activation spec: `--config` (a file, or `s3://` on AWS), else
    /// the stack's.
    pub async fn spec(&self) -> anyhow::Result<ActivationSpec> {
        match self {
            Target::Local { config, .. } => {
                let Some(path) = config else {
                    bail!("this command needs the activation spec: pass --config <file>");
                };
                load_spec_file(Path::new(path)).map_err(|e| anyhow::anyhow!("{e}"))
            }
            Target::Aws(t) => {
                let Some(location) = &t.config else {
                    bail!("this command needs the activation spec: pass --config <file or s3://bucket/key> (the stack has no ConfigS3Uri)");
                };
                let s3 = aws_sdk_s3::Client::new(&t.sdk);
                Ok(dataout::aws::load_spec(location, &s3).await?)
            }
        }
    }

    /// The ports and the spec, as the runtimes wire them.
    pub async fn deps(&self) -> anyhow::Result<Deps> {
        let spec = self.spec().await?;
        let queue = self.queue(Some(&spec))?;
        Ok(Deps {
            state: self.state()?,
            queue,
            spec: Arc::new(spec),
            clock: Arc::new(SystemClock),
        })
    }

    /// Destination queue names: the stack's queues, or the spec's
    /// destinations locally.
    async fn destinations(&self) -> anyhow::Result<Vec<String>> {
        match self {
            Target::Aws(t) => Ok(t.queues.keys().cloned().collect()),
            Target::Local { .. } => Ok(self.spec().await?.destinations.keys().cloned().collect()),
        }
    }
}

/// The source of a run that no longer reads it: an approved run commits
/// from the members it staged before it was held.
struct StagedOnly;

fn no_source() -> SourceError {
    SourceError::Permanent {
        message: "an approved run commits from its staged members and reads no source; this run has not finished reading its segment".into(),
    }
}

#[async_trait]
impl SegmentSource for StagedOnly {
    async fn segment_count(&self, _: u64) -> Result<u64, SourceError> {
        Err(no_source())
    }
    async fn membership_page(
        &self,
        _: u64,
        _: Option<&str>,
        _: u32,
    ) -> Result<MembershipPage, SourceError> {
        Err(no_source())
    }
    async fn attributes(&self, _: &[Identifiers]) -> Result<Vec<Person>, SourceError> {
        Err(no_source())
    }
}

fn run_line(r: &RunRecord) -> String {
    let status = match &r.status {
        RunStatus::Held { reason } => format!("held ({reason})"),
        RunStatus::Failed { reason } => format!("failed ({reason})"),
        other => format!("{other:?}").to_lowercase(),
    };
    format!(
        "{}  {}  {}  members {}  +{} -{} ~{}  jobs {}  config {}",
        r.run_id,
        report::time(r.started_at),
        status,
        r.stats.members,
        r.stats.adds,
        r.stats.removes,
        r.stats.changed,
        r.stats.jobs_enqueued,
        &r.config_hash[..12.min(r.config_hash.len())]
    )
}

pub async fn runs(target: &Target, cmd: RunsCmd) -> anyhow::Result<()> {
    match cmd {
        RunsCmd::List { export, limit } => {
            // A mistyped name must not read as "no runs yet".
            if let Ok(spec) = target.spec().await {
                if spec.export(&export).is_none() {
                    let known: Vec<&str> = spec.exports.keys().map(String::as_str).collect();
                    bail!("no export `{export}` (known: {})", known.join(", "));
                }
            }
            let runs = target.state()?.list_runs(&export, limit).await?;
            if runs.is_empty() {
                println!("no runs of `{export}` in {}", target.describe());
            }
            for r in runs {
                println!("{}", run_line(&r));
            }
        }
        RunsCmd::Approve {
            run_id,
            on_next_tick,
        } => {
            let deps = target.deps().await?;
            let run = approve_and_continue(&deps, &run_id, !on_next_tick).await?;
            if on_next_tick {
                println!("{} approved: the export's next tick commits it", run.run_id);
            } else {
                println!("{} approved and committed", run.run_id);
                println!("{}", run_line(&run));
            }
        }
    }
    Ok(())
}

/// Approve a held run; with `continue_now`, commit it here (the same
/// `run_export` the schedule calls) until it finishes.
pub async fn approve_and_continue(
    deps: &Deps,
    run_id: &str,
    continue_now: bool,
) -> anyhow::Result<RunRecord> {
    let Some(run) = deps.state.get_run(run_id).await? else {
        bail!("no run `{run_id}`");
    };
    // Only the export's latest run continues: an older held run's members
    // are stale, and the pipeline would start a new run instead.
    let latest = deps.state.list_runs(&run.export, 1).await?;
    if let Some(newer) = latest.first().filter(|r| r.run_id != run.run_id) {
        bail!(
            "run `{run_id}` is not the latest of `{}`: approve `{}` instead",
            run.export,
            newer.run_id
        );
    }
    let approved = approve(deps, run_id).await?;
    if !continue_now {
        return Ok(approved);
    }
    let opts = ExportOptions::default();
    loop {
        let run = run_export(deps, &StagedOnly, &approved.export, &opts).await?;
        if run.run_id != approved.run_id {
            bail!(
                "`{}` continued run `{}` instead of `{run_id}`",
                approved.export,
                run.run_id
            );
        }
        if run.status != RunStatus::Approved && run.status != RunStatus::Running {
            return Ok(run);
        }
    }
}

pub async fn quarantine(target: &Target, cmd: QuarantineCmd) -> anyhow::Result<()> {
    match cmd {
        QuarantineCmd::List { limit } => {
            let entries = target.state()?.list_quarantine(limit).await?;
            if entries.is_empty() {
                println!("quarantine is empty");
            }
            for e in entries {
                println!(
                    "{}  {}  {:<9}  {}{}",
                    e.id,
                    report::time(e.received_at),
                    e.route,
                    e.reason,
                    if e.replayed_at.is_some() {
                        "  (replayed)"
                    } else {
                        ""
                    }
                );
            }
        }
        QuarantineCmd::Show { id } => {
            let Some(e) = target.state()?.get_quarantine(&id).await? else {
                bail!("no quarantine entry `{id}`");
            };
            println!("{}", serde_json::to_string_pretty(&e)?);
            use base64::Engine;
            if let Ok(body) =
                base64::engine::general_purpose::STANDARD.decode(e.body_b64.as_bytes())
            {
                println!("--- body ({} bytes) ---", body.len());
                println!("{}", String::from_utf8_lossy(&body));
            }
        }
        QuarantineCmd::Replay { id } => {
            let deps = target.deps().await?;
            let intake = replay_intake();
            let resp = replay_quarantined(&deps, &intake, &id).await?;
            println!("{} {}", resp.status, resp.body);
            if resp.status >= 300 || resp.body["status"] == "quarantined" {
                let reason = resp.body["reason"].as_str().unwrap_or("no reason given");
                if let Some(unreadable) = unreadable_body(&deps, &id).await? {
                    bail!(
                        "replay of `{id}` did not go through: the body itself cannot be read \
                         ({unreadable}); no spec change can make it usable. Fix what sends it \
                         (the Customer.io webhook or action body); the entry stays quarantined"
                    );
                }
                bail!(
                    "replay of `{id}` did not go through ({}: {reason}): fix the spec and pass it with --config",
                    resp.status
                );
            }
        }
    }
    Ok(())
}

/// Why a quarantined body cannot be parsed at all, if it cannot.
async fn unreadable_body(deps: &Deps, id: &str) -> anyhow::Result<Option<String>> {
    use base64::Engine;
    let Some(entry) = deps.state.get_quarantine(id).await? else {
        return Ok(None);
    };
    let Ok(body) = base64::engine::general_purpose::STANDARD.decode(entry.body_b64.as_bytes())
    else {
        return Ok(Some("the stored body is not base64".into()));
    };
    Ok(if entry.route == Route::Actions.as_str() {
        dataout::customerio::actions::parse_action(&body)
            .err()
            .map(|e| e.to_string())
    } else {
        dataout::customerio::webhook::parse_reporting(&body)
            .err()
            .map(|e| e.to_string())
    })
}

/// Intake settings for a replay. A replay verifies no signature (the body
/// was verified when it came in): it needs intake's dedup and claim
/// durations only, which are these on every runtime.
pub fn replay_intake() -> IntakeConfig {
    dataout::settings::intake::defaults(Secret::new(""), Secret::new(""))
}

pub async fn dlq(target: &Target, cmd: DlqCmd) -> anyhow::Result<()> {
    match cmd {
        DlqCmd::List {
            destination: None, ..
        } => {
            let names = target.destinations().await?;
            let queue = target.queue(None)?;
            println!(
                "{:<24} {:>8} {:>10} {:>6}",
                "destination", "waiting", "in flight", "dead"
            );
            for name in names {
                let d = queue.depth(&name).await?;
                println!(
                    "{name:<24} {:>8} {:>10} {:>6}",
                    d.visible, d.in_flight, d.dead
                );
            }
        }
        DlqCmd::List {
            destination: Some(name),
            limit,
        } => {
            // A mistyped name must not read as "nothing dead-lettered".
            if let Ok(known) = target.destinations().await {
                if !known.contains(&name) {
                    bail!("no destination `{name}` (known: {})", known.join(", "));
                }
            }
            let queue = target.queue(None)?;
            let jobs = queue.dead_letters(&name, limit).await?;
            if jobs.is_empty() {
                println!("no dead-lettered jobs for `{name}`");
            }
            for j in jobs {
                println!(
                    "{}  {}  export {}  {} ops  attempt {}{}",
                    j.job_id,
                    report::time(j.created_at),
                    j.export,
                    j.ops.len(),
                    j.attempt,
                    j.run_id
                        .as_deref()
                        .map(|r| format!("  run {r}"))
                        .unwrap_or_default()
                );
            }
        }
        DlqCmd::Redrive { destination } => {
            let known = target.destinations().await?;
            if !known.contains(&destination) {
                bail!(
                    "no destination `{destination}` (known: {})",
                    known.join(", ")
                );
            }
            let moved = target.queue(None)?.redrive(&destination).await?;
            println!("{moved} job(s) moved from the dead-letter queue back to `{destination}`");
        }
    }
    Ok(())
}

pub async fn reconcile(target: &Target, cmd: ReconcileCmd) -> anyhow::Result<()> {
    let ReconcileCmd::Show { json } = cmd;
    let Some(report) = target.state()?.latest_report().await? else {
        bail!(
            "no reconciliation report yet in {} (the reconcile function writes one daily)",
            target.describe()
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "report {} at {} ({} export × destination rows, config {})",
        report.report_id,
        report::time(report.generated_at),
        report.rows.len(),
        &report.config_hash[..12.min(report.config_hash.len())]
    );
    println!("{}", report::render(&report));
    Ok(())
}
