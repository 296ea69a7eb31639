//! `dataout qa`: read delivered people back from each destination.

use std::path::Path;
use std::process::ExitCode;

use dataout::ports::SegmentSource;
use dataout::telemetry::{self, LogFormat};

use super::{app_api_source, env_secret, open_runtime};

pub async fn run(
    export: &str,
    config: &Path,
    state_dir: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    qa(export, config, state_dir, json).await
}

async fn qa(export: &str, config: &Path, state_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    // qa serves no webhooks: the runtime's intake settings are never used.
    let rt = open_runtime(config, state_dir, dataout_cli::demo::intake_config())?;
    let source = if env_secret("CIO_APP_API_KEY").is_some() {
        Some(app_api_source()?)
    } else {
        None
    };
    let verdicts = dataout_cli::qa::run(
        &rt,
        source.as_ref().map(|s| s as &dyn SegmentSource),
        export,
    )
    .await;
    rt.shutdown().await;
    let verdicts = verdicts?;
    if json {
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        print!("{}", dataout_cli::qa::render(export, &verdicts));
    }
    Ok(if verdicts.iter().all(|v| v.pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
