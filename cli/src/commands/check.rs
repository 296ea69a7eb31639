//! `dataout check`: the weekly check (suppression, stale audiences, growth).

use std::process::ExitCode;

use dataout::telemetry::{self, LogFormat};
use dataout_cli::ops::Target;
use dataout_cli::stack::TargetArgs;

pub async fn run(
    grace_pct: u32,
    min_grace_minutes: u32,
    target: &TargetArgs,
) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    let opts = dataout_cli::check::CheckOptions {
        grace_pct,
        min_grace_minutes,
        ..Default::default()
    };
    dataout_cli::check::command(&Target::open(target).await?, &opts).await
}
