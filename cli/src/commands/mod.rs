//! One file per `dataout` command: each parses nothing (clap does, in
//! `main.rs`) and runs its command, returning the exit status.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;

use dataout::customerio::app_api::{AppApiClient, AppApiConfig};
use dataout::customerio::budget::LocalBudget;
use dataout::domain::config::load_spec_file;
use dataout::local::LocalRuntime;
use dataout::pipeline::intake::IntakeConfig;
use dataout::ports::{EnvSecrets, Secret, SystemClock};

pub mod check;
pub mod demo;
pub mod dlq;
pub mod export;
pub mod preview;
pub mod qa;
pub mod quarantine;
pub mod reconcile;
pub mod report;
pub mod rollback;
pub mod runs;
pub mod serve;
pub mod template;
pub mod validate;

pub(crate) fn env_secret(name: &str) -> Option<Secret> {
    dataout::ports::Secrets::get(&EnvSecrets, name)
}

pub(crate) fn open_runtime(
    config: &Path,
    state_dir: &Path,
    intake: IntakeConfig,
) -> anyhow::Result<LocalRuntime> {
    let spec = load_spec_file(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = config
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(LocalRuntime::open(
        spec,
        state_dir,
        &EnvSecrets,
        Arc::new(SystemClock),
        intake,
        &base,
    )?)
}

/// The batch source as `serve` configures it (the App API, from the environment).
pub(crate) fn app_api_source() -> anyhow::Result<AppApiClient> {
    if env_secret("CIO_APP_API_KEY").is_none() {
        bail!("CIO_APP_API_KEY is not set: the export reads its segment from the App API");
    }
    Ok(AppApiClient::new(
        AppApiConfig::from_lookup(|name| std::env::var(name).ok())?,
        &EnvSecrets,
        reqwest::Client::new(),
    )?
    .with_budget(Arc::new(LocalBudget::new())))
}
