//! `dataout quarantine`: webhooks that were signed but unusable, kept byte for byte.

use std::process::ExitCode;

use dataout::telemetry::{self, LogFormat};
use dataout_cli::ops::{self, QuarantineCmd, Target};
use dataout_cli::stack::TargetArgs;

pub async fn run(action: QuarantineCmd, target: &TargetArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    ops::quarantine(&Target::open(target).await?, action).await?;
    Ok(ExitCode::SUCCESS)
}
