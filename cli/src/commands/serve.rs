//! `dataout serve`: the local runtime, webhooks in and schedules on.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use dataout::customerio::app_api::{AppApiClient, AppApiConfig};
use dataout::customerio::budget::LocalBudget;
use dataout::pipeline::intake::IntakeConfig;
use dataout::ports::{EnvSecrets, SegmentSource};
use dataout::telemetry::{self, LogFormat};

use super::{env_secret, open_runtime};

pub async fn run(config: &Path, addr: SocketAddr, state_dir: &Path) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "info");
    serve(config, addr, state_dir).await?;
    Ok(ExitCode::SUCCESS)
}

/// Intake settings from the environment (secrets never from files), read
/// as the Lambda reads them.
pub fn intake_config_from_env() -> anyhow::Result<IntakeConfig> {
    Ok(dataout::settings::intake::intake_config(
        |name| std::env::var(name).ok(),
        &EnvSecrets,
    )?)
}

async fn serve(config: &Path, addr: SocketAddr, state_dir: &Path) -> anyhow::Result<()> {
    let intake = intake_config_from_env()?;
    let rt = Arc::new(open_runtime(config, state_dir, intake)?);
    rt.start_workers().await?;
    if env_secret("CIO_APP_API_KEY").is_some() {
        let source = AppApiClient::new(
            AppApiConfig::from_lookup(|name| std::env::var(name).ok())?,
            &EnvSecrets,
            reqwest::Client::new(),
        )?
        // Every export's schedule shares this one client: one budget.
        .with_budget(Arc::new(LocalBudget::new()));
        let source: Arc<dyn SegmentSource> = Arc::new(source);
        rt.start_schedules(source);
    } else {
        tracing::warn!("CIO_APP_API_KEY is not set: batch schedules are off, webhooks only");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr}"))?;
    tracing::info!(%addr, state_dir = %state_dir.display(), "serving intake: POST /webhooks/customerio, POST /webhooks/actions, GET /healthz");
    axum::serve(listener, rt.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    rt.shutdown().await;
    Ok(())
}
