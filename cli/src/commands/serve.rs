//! `dataout serve`: the local runtime, webhooks in and schedules on.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use dataout::customerio::actions::{ActionAuthConfig, ActionAuthMode, BasicCredentials};
use dataout::customerio::app_api::{AppApiClient, AppApiConfig};
use dataout::customerio::budget::LocalBudget;
use dataout::customerio::webhook::SignatureConfig;
use dataout::pipeline::intake::IntakeConfig;
use dataout::ports::{EnvSecrets, SegmentSource};
use dataout::telemetry::{self, LogFormat};

use super::{env_secret, open_runtime};

pub async fn run(config: &Path, addr: SocketAddr, state_dir: &Path) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "info");
    serve(config, addr, state_dir).await?;
    Ok(ExitCode::SUCCESS)
}

/// Intake settings from the environment (secrets never from files).
pub fn intake_config_from_env() -> anyhow::Result<IntakeConfig> {
    let Some(signing) = env_secret("CIO_WEBHOOK_SIGNING_SECRET") else {
        bail!("CIO_WEBHOOK_SIGNING_SECRET is not set: the reporting-webhook signing key from Customer.io");
    };
    let action_secret = env_secret("DATAOUT_ACTION_SECRET").unwrap_or_else(|| signing.clone());
    let tolerance = std::env::var("DATAOUT_WEBHOOK_TOLERANCE_SECS")
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .context("DATAOUT_WEBHOOK_TOLERANCE_SECS must be whole seconds")
        })
        .transpose()?
        .unwrap_or(300);
    let mode = match std::env::var("DATAOUT_ACTION_AUTH").as_deref() {
        Ok("hmac") => ActionAuthMode::Hmac,
        _ => ActionAuthMode::SharedSecret,
    };
    let basic = env_secret("DATAOUT_ACTION_BASIC_AUTH")
        .map(|raw| BasicCredentials::parse(&raw))
        .transpose()
        .context("DATAOUT_ACTION_BASIC_AUTH")?;
    Ok(IntakeConfig {
        reporting: SignatureConfig {
            secret: signing,
            tolerance: Duration::from_secs(tolerance),
        },
        actions: ActionAuthConfig {
            header_name: std::env::var("DATAOUT_ACTION_HEADER")
                .unwrap_or_else(|_| "x-dataout-token".into())
                .to_ascii_lowercase(),
            secret: action_secret,
            mode,
            tolerance: Duration::from_secs(tolerance),
            basic,
        },
        dedup_ttl: Duration::from_secs(7 * 24 * 3600),
        in_progress_ttl: Duration::from_secs(5),
    })
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
