//! `dataout dlq`: dead-lettered delivery jobs; list them, move them back to their queue.

use std::process::ExitCode;

use dataout::telemetry::{self, LogFormat};
use dataout_cli::ops::{self, DlqCmd, Target};
use dataout_cli::stack::TargetArgs;

pub async fn run(action: DlqCmd, target: &TargetArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    ops::dlq(&Target::open(target).await?, action).await?;
    Ok(ExitCode::SUCCESS)
}
