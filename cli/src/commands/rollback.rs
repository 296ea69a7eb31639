//! `dataout rollback`: a run that puts an export back to an earlier run's
//! memberships.

use std::process::ExitCode;

use dataout::telemetry::{self, LogFormat};
use dataout_cli::ops::Target;
use dataout_cli::stack::TargetArgs;

pub async fn run(
    export: &str,
    to: Option<&str>,
    destination: Option<&str>,
    target: &TargetArgs,
) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    let deps = Target::open(target).await?.deps().await?;
    let run = dataout::pipeline::rollback::prepare(&deps, export, to, destination).await?;
    if let dataout::domain::model::RunStatus::Held { reason } = &run.status {
        println!("{} held: {reason}", run.run_id);
    }
    Ok(ExitCode::SUCCESS)
}
