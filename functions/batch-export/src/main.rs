//! Lambda entry point of `batch-export`: wiring only. Invoked by one
//! EventBridge Scheduler schedule per export, input `{"export": "<name>"}`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{anyhow, Context};
use batch_export::config::ExportSettings;
use batch_export::handler::{handle, metrics_lines, parse_trigger, ExportError, ExportOutcome};
use dataout::adapters::dynamodb::budget::DynamoBudget;
use dataout::customerio::app_api::AppApiClient;
use dataout::pipeline::export::ExportOptions;
use dataout::pipeline::Deps;
use dataout::settings::fail_cold_start;
use dataout::telemetry::{self, LogFormat};
use lambda_runtime::{service_fn, LambdaEvent};

struct Function {
    deps: Deps,
    source: AppApiClient,
    opts: ExportOptions,
    settings: ExportSettings,
}

async fn invoke(
    f: &Function,
    event: LambdaEvent<serde_json::Value>,
) -> Result<ExportOutcome, ExportError> {
    let input = parse_trigger(&event.payload)?;
    // Stop early enough to save the checkpoint before Lambda stops us.
    let left = event
        .context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let deadline = Instant::now() + left.saturating_sub(f.settings.deadline_margin);
    let outcome = handle(&f.deps, &f.source, &input, &f.opts, Some(deadline)).await?;
    // EMF goes to stdout, where CloudWatch turns it into metrics.
    for line in metrics_lines(
        &f.settings.metrics_namespace,
        &outcome,
        f.deps.clock.now_ms(),
    ) {
        println!("{line}");
    }
    Ok(outcome)
}

async fn cold_start() -> anyhow::Result<Function> {
    let settings = ExportSettings::from_env()?;
    let wiring = dataout::aws::wire().await?;
    let http = reqwest::Client::builder()
        .timeout(settings.http_timeout)
        .build()
        .context("HTTP client")?;
    // Every export of the workspace, in every instance, draws from one
    // App API budget kept in the state table.
    let budget = DynamoBudget::from_sdk(&wiring.sdk, wiring.settings.table.clone());
    let source = AppApiClient::new(settings.app_api.clone(), wiring.secrets.as_ref(), http)
        .context("Customer.io App API client")?
        .with_budget(Arc::new(budget));
    let opts = ExportOptions {
        page_limit: settings.app_api.page_limit,
        ..ExportOptions::default()
    };
    Ok(Function {
        deps: wiring.deps,
        source,
        opts,
        settings,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init(LogFormat::Json, "info");
    let function = match cold_start().await {
        Ok(f) => f,
        Err(e) => fail_cold_start("batch-export", &e),
    };
    let function = &function;
    lambda_runtime::run(service_fn(move |event| invoke(function, event)))
        .await
        .map_err(|e| anyhow!(e))
}
