//! `dataout runs`: batch runs; list them, approve one a guard rail held.

use std::process::ExitCode;

use dataout::telemetry::{self, LogFormat};
use dataout_cli::ops::{self, RunsCmd, Target};
use dataout_cli::stack::TargetArgs;

pub async fn run(action: RunsCmd, target: &TargetArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    ops::runs(&Target::open(target).await?, action).await?;
    Ok(ExitCode::SUCCESS)
}
