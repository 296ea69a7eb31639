//! Lambda entry point of `reconcile`: wiring only. Triggered once a day by
//! an EventBridge schedule; any JSON event runs it.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use dataout::adapters::s3::S3ObjectStore;
use dataout::customerio::app_api::AppApiClient;
use dataout::destinations::Destination;
use dataout::pipeline::reconcile::ReconcileOptions;
use dataout::pipeline::Deps;
use dataout::settings::fail_cold_start;
use dataout::telemetry::{self, LogFormat};
use lambda_runtime::{service_fn, LambdaEvent};
use reconcile::config::ReconcileSettings;
use reconcile::handler::{handle, publish_page, trigger_time, ReconcileError, ReconcileSummary};
use tracing::info;

struct Function {
    deps: Deps,
    source: AppApiClient,
    destinations: BTreeMap<String, Arc<dyn Destination>>,
    opts: ReconcileOptions,
    namespace: String,
    /// Where the JSON report and its HTML page go (`DATAOUT_REPORT_LOCATION`).
    reports: Option<S3ObjectStore>,
}

async fn invoke(
    f: &Function,
    event: LambdaEvent<serde_json::Value>,
) -> Result<ReconcileSummary, ReconcileError> {
    info!(
        scheduled_at = trigger_time(&event.payload),
        "reconciliation starts"
    );
    let outcome = handle(
        &f.deps,
        Some(&f.source),
        &f.destinations,
        &f.opts,
        &f.namespace,
    )
    .await?;
    // EMF goes to stdout, where CloudWatch turns it into metrics.
    for line in &outcome.metric_lines {
        println!("{line}");
    }
    if let Some(store) = &f.reports {
        publish_page(&f.deps, &outcome.report, store).await?;
    }
    Ok(outcome.summary)
}

async fn cold_start() -> anyhow::Result<Function> {
    let settings = ReconcileSettings::from_env()?;
    let wiring = dataout::aws::wire().await?;
    let destinations = wiring.destinations()?;
    let http = reqwest::Client::builder()
        .timeout(settings.http_timeout)
        .build()
        .context("HTTP client")?;
    let source = AppApiClient::new(settings.app_api.clone(), wiring.secrets.as_ref(), http)
        .context("Customer.io App API client")?;
    Ok(Function {
        deps: wiring.deps,
        source,
        destinations,
        opts: ReconcileOptions {
            drift_alarm: settings.drift_alarm,
            ..ReconcileOptions::default()
        },
        namespace: settings.metrics_namespace,
        reports: settings.report_location.map(|(bucket, prefix)| {
            S3ObjectStore::new(aws_sdk_s3::Client::new(&wiring.sdk), bucket, prefix)
        }),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init(LogFormat::Json, "info");
    let function = match cold_start().await {
        Ok(f) => f,
        Err(e) => fail_cold_start("reconcile", &e),
    };
    let function = &function;
    lambda_runtime::run(service_fn(move |event| invoke(function, event)))
        .await
        .map_err(|e| anyhow!(e))
}
