//! The reconcile handler on its scheduled event: counts from the Customer.io
//! simulator, state in DynamoDB (moto's server), report stored and metrics
//! printed as EMF.

#[path = "../../test-support/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dataout::adapters::local_fs::LocalDirStore;
use dataout::adapters::s3::S3ObjectStore;
use dataout::customerio::app_api::{AppApiClient, AppApiConfig};
use dataout::destinations::warehouse::WarehouseDestination;
use dataout::destinations::Destination;
use dataout::pipeline::reconcile::ReconcileOptions;
use dataout::ports::ObjectStore;
use dataout::ports::{Clock, MapSecrets, StateStore, SystemClock};
use dataout_sim::customerio::{demo_workspace, CioSimConfig};
use reconcile::handler::{handle, publish_page, trigger_time};

const SCHEDULED_EVENT: &str = include_str!("../../../events/lambda/schedule-reconcile.json");

#[test]
fn scheduled_event_fixture_carries_its_time() -> Result<()> {
    let event: serde_json::Value = serde_json::from_str(SCHEDULED_EVENT)?;
    assert_eq!(trigger_time(&event), Some("2025-07-02T03:00:00Z"));
    assert_eq!(event["detail-type"], "Scheduled Event");
    Ok(())
}

#[tokio::test]
async fn scheduled_run_stores_a_report_and_prints_drift_metrics() -> Result<()> {
    let sdk = harness::sdk_config().await;
    let sim = dataout_sim::customerio::start(CioSimConfig::new(
        harness::CIO_API_KEY,
        demo_workspace(7, 200),
    ))
    .await?;
    let in_segment = sim.handle.snapshot().members(101).len() as u64;
    assert!(in_segment > 0, "the demo workspace fills segment 101");

    let dir = tempfile::tempdir()?;
    let spec = harness::parse(&harness::spec_yaml(
        "http://127.0.0.1:9",
        &dir.path().display().to_string(),
    ))?;
    let state = harness::fresh_state(&sdk).await?;
    let (queue, _) = harness::fresh_queues(
        &sdk,
        &["clevertap", "warehouse"],
        Duration::from_secs(30),
        5,
    )
    .await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deps = harness::deps(spec.clone(), state.clone(), queue, clock.clone());

    let secrets = MapSecrets::default().with("CIO_APP_API_KEY", harness::CIO_API_KEY);
    let source = AppApiClient::new(
        AppApiConfig {
            base_url: Some(sim.base_url().to_string()),
            ..AppApiConfig::default()
        },
        &secrets,
        reqwest::Client::new(),
    )?;
    let warehouse_spec = spec.destination("warehouse").context("warehouse in spec")?;
    let mut destinations: BTreeMap<String, Arc<dyn Destination>> = BTreeMap::new();
    destinations.insert(
        "warehouse".into(),
        Arc::new(WarehouseDestination::new(
            "warehouse".into(),
            warehouse_spec,
            Arc::new(LocalDirStore::new(dir.path())),
            clock,
        )),
    );

    let outcome = handle(
        &deps,
        Some(&source),
        &destinations,
        &ReconcileOptions::default(),
        "DataOut/test",
    )
    .await?;

    // Stored where the CLI and the next run read it.
    let stored = state.latest_report().await?.context("a stored report")?;
    assert_eq!(stored, outcome.report);
    // One row per export and destination: cart_abandoners x 2, email_suppression x 1.
    assert_eq!(outcome.report.rows.len(), 3);
    let cart = outcome
        .report
        .rows
        .iter()
        .find(|r| r.export == "cart_abandoners" && r.destination == "clevertap")
        .context("cart_abandoners/clevertap row")?;
    assert_eq!(cart.source_count, Some(in_segment));
    assert_eq!(cart.state_count, 0);
    assert!(cart.alarm, "nothing synced yet: the whole segment is drift");
    assert_eq!(outcome.summary.rows_in_alarm, 2);
    assert!(outcome
        .summary
        .alarms
        .contains(&"cart_abandoners/warehouse".to_string()));

    // One EMF line per row plus the summary line the drift alarm watches.
    assert_eq!(outcome.metric_lines.len(), 4);
    let lines: Vec<serde_json::Value> = outcome
        .metric_lines
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    let row_line = lines
        .iter()
        .find(|l| l["export"] == "cart_abandoners" && l["destination"] == "clevertap")
        .context("row metrics")?;
    assert_eq!(row_line["Alarm"], 1.0);
    assert_eq!(row_line["SourceCount"], in_segment as f64);
    assert_eq!(row_line["DriftPct"], 100.0);
    let summary = lines.last().context("summary line")?;
    assert_eq!(summary["service"], "reconcile");
    assert_eq!(summary["RowsInAlarm"], 2.0);
    assert_eq!(
        summary["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "DataOut/test"
    );

    // The JSON report and its HTML page, next to each other in S3.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = harness::unique("reports").to_lowercase().replace('_', "-");
    s3.create_bucket().bucket(&bucket).send().await?;
    let store = S3ObjectStore::new(s3, bucket.clone(), "reports");
    let written = publish_page(&deps, &outcome.report, &store).await?;
    assert_eq!(written.len(), 4, "{written:?}");
    let json = store.get("latest.json").await?.context("latest.json")?;
    let back: dataout::domain::model::ReconcileReport = serde_json::from_slice(&json)?;
    assert_eq!(back, outcome.report);
    let id_html = format!("{}.html", outcome.report.report_id);
    let html = String::from_utf8(store.get(&id_html).await?.context("the page")?)?;
    assert!(
        html.contains("cart_abandoners → clevertap</h3>"),
        "pair section"
    );
    assert!(html.contains("<svg"), "chart inlined");
    assert!(
        !html.contains("unavailable"),
        "queue depths read from SQS: {html}"
    );
    Ok(())
}
