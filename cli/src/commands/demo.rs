//! `dataout demo`: the whole pipeline against the simulators, with a report.

use std::path::Path;
use std::process::ExitCode;

use dataout::telemetry::{self, LogFormat};

pub async fn run(people: usize, out: &Path) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    dataout_cli::demo::run(people, out).await?;
    Ok(ExitCode::SUCCESS)
}
