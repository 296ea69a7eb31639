//! `dataout reconcile`: the stored reconciliation reports.

use std::process::ExitCode;

use dataout::telemetry::{self, LogFormat};
use dataout_cli::ops::{self, ReconcileCmd, Target};
use dataout_cli::stack::TargetArgs;

pub async fn run(action: ReconcileCmd, target: &TargetArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    ops::reconcile(&Target::open(target).await?, action).await?;
    Ok(ExitCode::SUCCESS)
}
