//! One scheduler tick of one export.
//!
//! The schedule's input (the template's `Input`) is
//! `{"export": "<name>", "scheduled_time": "…", "execution_id": "…"}`; the
//! last two are Scheduler context attributes, only logged. An EventBridge
//! rule or `put-events` envelope with the same object under `detail` is
//! accepted too.

use std::time::Instant;

use dataout::domain::model::{RunStats, RunStatus};
use dataout::pipeline::export::{run_export, ExportOptions};
use dataout::pipeline::{Deps, PipelineError};
use dataout::ports::SegmentSource;
use dataout::telemetry::emf_line;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};

#[derive(Debug, Error)]
pub enum ExportError {
    /// The event does not name an export: fix the schedule, do not retry.
    #[error("bad trigger: {0}")]
    BadInput(String),
    #[error("export `{export}` failed: {source}")]
    Pipeline {
        export: String,
        #[source]
        source: PipelineError,
    },
}

impl ExportError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ExportError::BadInput(_) => false,
            ExportError::Pipeline { source, .. } => source.is_retryable(),
        }
    }
}

/// What a schedule asks for.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ExportInput {
    pub export: String,
    #[serde(default)]
    pub scheduled_time: Option<String>,
    #[serde(default)]
    pub execution_id: Option<String>,
}

/// Read the trigger: the input itself, or an EventBridge envelope holding
/// it under `detail`.
pub fn parse_trigger(event: &serde_json::Value) -> Result<ExportInput, ExportError> {
    let inner = match event.get("detail") {
        Some(detail) if event.get("export").is_none() => detail,
        _ => event,
    };
    let input: ExportInput = serde_json::from_value(inner.clone()).map_err(|e| {
        ExportError::BadInput(format!(
            "expected {{\"export\": \"<name>\"}} (or an EventBridge event with it as detail): {e}"
        ))
    })?;
    if input.export.trim().is_empty() {
        return Err(ExportError::BadInput("`export` is empty".into()));
    }
    Ok(input)
}

/// The invocation's answer (also what the logs and metrics say).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportOutcome {
    pub export: String,
    pub run_id: String,
    /// `finished`, `running` (continues on the next tick), `held`,
    /// `approved` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub members: u64,
    pub adds: u64,
    pub removes: u64,
    pub changed: u64,
    pub jobs_enqueued: u64,
    pub ops_enqueued: u64,
}

/// Run (or continue) the export until it finishes, is held, or `deadline`
/// passes (then it is left `running` for the next tick).
pub async fn handle(
    deps: &Deps,
    source: &dyn SegmentSource,
    input: &ExportInput,
    opts: &ExportOptions,
    deadline: Option<Instant>,
) -> Result<ExportOutcome, ExportError> {
    info!(
        export = %input.export,
        scheduled_time = input.scheduled_time.as_deref(),
        execution_id = input.execution_id.as_deref(),
        "export tick"
    );
    let opts = ExportOptions {
        deadline,
        ..opts.clone()
    };
    let run = run_export(deps, source, &input.export, &opts)
        .await
        .map_err(|source| ExportError::Pipeline {
            export: input.export.clone(),
            source,
        })?;
    let (status, reason) = match &run.status {
        RunStatus::Running => ("running", None),
        RunStatus::Held { reason } => ("held", Some(reason.clone())),
        RunStatus::Approved => ("approved", None),
        RunStatus::Finished => ("finished", None),
        RunStatus::Failed { reason } => ("failed", Some(reason.clone())),
    };
    let RunStats {
        members,
        adds,
        removes,
        changed,
        jobs_enqueued,
        ops_enqueued,
        ..
    } = run.stats;
    let outcome = ExportOutcome {
        export: input.export.clone(),
        run_id: run.run_id.clone(),
        status: status.to_string(),
        reason,
        members,
        adds,
        removes,
        changed,
        jobs_enqueued,
        ops_enqueued,
    };
    match status {
        "held" => {
            warn!(export = %outcome.export, run_id = %outcome.run_id, reason = outcome.reason.as_deref(), "run held by a guard rail; approve it with the CLI")
        }
        "running" => {
            info!(export = %outcome.export, run_id = %outcome.run_id, "deadline reached; the next tick continues the run")
        }
        _ => {
            info!(export = %outcome.export, run_id = %outcome.run_id, status, adds, removes, jobs_enqueued, "export tick done")
        }
    }
    Ok(outcome)
}

/// EMF lines: run states by `service` (the held-runs alarm watches
/// `RunsHeld`), and the run's counts by `service` + `export`.
pub fn metrics_lines(namespace: &str, outcome: &ExportOutcome, now_ms: i64) -> Vec<String> {
    let is = |s: &str| if outcome.status == s { 1.0 } else { 0.0 };
    vec![
        emf_line(
            namespace,
            &[("service", "batch-export")],
            &[
                ("RunsFinished", is("finished"), "Count"),
                ("RunsHeld", is("held"), "Count"),
                ("RunsContinued", is("running"), "Count"),
            ],
            now_ms,
        ),
        emf_line(
            namespace,
            &[("service", "batch-export"), ("export", &outcome.export)],
            &[
                ("Members", outcome.members as f64, "Count"),
                ("Adds", outcome.adds as f64, "Count"),
                ("Removes", outcome.removes as f64, "Count"),
                ("Changed", outcome.changed as f64, "Count"),
                ("JobsEnqueued", outcome.jobs_enqueued as f64, "Count"),
                ("OpsEnqueued", outcome.ops_enqueued as f64, "Count"),
                ("Held", is("held"), "Count"),
            ],
            now_ms,
        ),
    ]
}
