//! `dataout report`: the HTML report page of a deployment or local state.

use std::path::Path;
use std::process::ExitCode;

use dataout::telemetry::{self, LogFormat};
use dataout_cli::ops::Target;
use dataout_cli::stack::TargetArgs;

pub async fn run(html: &Path, days: u32, target: &TargetArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    dataout_cli::html_report::write(&Target::open(target).await?, html, days).await?;
    Ok(ExitCode::SUCCESS)
}
