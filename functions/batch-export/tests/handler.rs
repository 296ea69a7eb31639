//! The batch-export handler on its Scheduler event: membership from the
//! Customer.io simulator, state in DynamoDB and jobs on SQS (moto's server).

#[path = "../../test-support/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use batch_export::handler::{handle, metrics_lines, parse_trigger, ExportError, ExportInput};
use dataout::adapters::sqs::{parse_job_body, QueueUrls};
use dataout::customerio::app_api::{AppApiClient, AppApiConfig};
use dataout::pipeline::export::ExportOptions;
use dataout::pipeline::Deps;
use dataout::ports::{MapSecrets, SystemClock};
use dataout_sim::customerio::{demo_workspace, CioSim, CioSimConfig};
use lambda_runtime::Diagnostic;
use serde_json::json;

const SCHEDULER_EVENT: &str = include_str!("../../../events/lambda/scheduler-batch-export.json");

struct Setup {
    deps: Deps,
    source: AppApiClient,
    sim: CioSim,
    sdk: aws_config::SdkConfig,
    clevertap: QueueUrls,
    _dir: tempfile::TempDir,
}

async fn setup(edit_spec: impl Fn(String) -> String) -> Result<Setup> {
    let sdk = harness::sdk_config().await;
    let sim = dataout_sim::customerio::start(CioSimConfig::new(
        harness::CIO_API_KEY,
        demo_workspace(11, 200),
    ))
    .await?;
    let dir = tempfile::tempdir()?;
    let spec = harness::parse(&edit_spec(harness::spec_yaml(
        "http://127.0.0.1:9",
        &dir.path().display().to_string(),
    )))?;
    let state = harness::fresh_state(&sdk).await?;
    let (queue, urls) = harness::fresh_queues(
        &sdk,
        &["clevertap", "warehouse"],
        Duration::from_secs(30),
        5,
    )
    .await?;
    let secrets = MapSecrets::default().with("CIO_APP_API_KEY", harness::CIO_API_KEY);
    let source = AppApiClient::new(
        AppApiConfig {
            base_url: Some(sim.base_url().to_string()),
            ..AppApiConfig::default()
        },
        &secrets,
        reqwest::Client::new(),
    )?;
    Ok(Setup {
        deps: harness::deps(spec, state, queue, Arc::new(SystemClock)),
        source,
        sim,
        sdk,
        clevertap: urls.get("clevertap").context("clevertap queue")?.clone(),
        _dir: dir,
    })
}

fn fixture_input() -> Result<ExportInput> {
    let event: serde_json::Value = serde_json::from_str(SCHEDULER_EVENT)?;
    Ok(parse_trigger(&event)?)
}

#[tokio::test]
async fn scheduler_tick_exports_the_segment_and_enqueues_jobs() -> Result<()> {
    let s = setup(|y| y).await?;
    let members = s.sim.handle.snapshot().members(101).len() as u64;
    let input = fixture_input()?;
    assert_eq!(input.export, "cart_abandoners");

    let outcome = handle(&s.deps, &s.source, &input, &ExportOptions::default(), None).await?;

    assert_eq!(outcome.status, "finished");
    assert_eq!(outcome.members, members);
    assert_eq!(outcome.adds, members);
    assert!(
        outcome.jobs_enqueued >= 2,
        "jobs for clevertap and the warehouse"
    );
    let bodies = harness::peek_bodies(&s.sdk, &s.clevertap.queue_url).await?;
    assert!(!bodies.is_empty(), "jobs wait on the clevertap queue");
    for body in &bodies {
        let job = parse_job_body(body)?;
        assert_eq!(job.export, "cart_abandoners");
        assert_eq!(job.destination, "clevertap");
        assert_eq!(job.run_id.as_deref(), Some(outcome.run_id.as_str()));
    }
    let lines = metrics_lines("DataOut/test", &outcome, 1);
    let per_export: serde_json::Value = serde_json::from_str(&lines[1])?;
    assert_eq!(per_export["Adds"], members as f64);
    assert_eq!(per_export["export"], "cart_abandoners");
    Ok(())
}

#[tokio::test]
async fn tick_past_its_deadline_checkpoints_and_the_next_tick_continues_the_same_run() -> Result<()>
{
    let s = setup(|y| y).await?;
    let members = s.sim.handle.snapshot().members(101).len() as u64;
    assert!(members > 5, "the segment spans several pages");
    let input = fixture_input()?;
    // Small pages, so one page is not the whole segment.
    let opts = ExportOptions {
        page_limit: 5,
        chunk_people: 5,
        ..ExportOptions::default()
    };

    // Already past its deadline: the tick reads one page, then checkpoints.
    let first = handle(&s.deps, &s.source, &input, &opts, Some(Instant::now())).await?;
    assert_eq!(first.status, "running");
    assert!(first.members < members, "{} of {members}", first.members);
    let continued: serde_json::Value =
        serde_json::from_str(&metrics_lines("DataOut/test", &first, 1)[0])?;
    assert_eq!(continued["RunsContinued"], 1.0);
    assert!(harness::peek_bodies(&s.sdk, &s.clevertap.queue_url)
        .await?
        .is_empty());

    let second = handle(&s.deps, &s.source, &input, &opts, None).await?;
    assert_eq!(second.status, "finished");
    assert_eq!(
        second.run_id, first.run_id,
        "the checkpointed run continues"
    );
    assert_eq!(second.members, members);
    assert_eq!(second.adds, members);
    Ok(())
}

#[tokio::test]
async fn guard_rail_holds_the_run_and_the_held_metric_counts_it() -> Result<()> {
    let s = setup(|y| {
        y.replace(
            "  email_suppression:",
            "    guard_rails:\n      size: [1000, 5000]\n  email_suppression:",
        )
    })
    .await?;
    let outcome = handle(
        &s.deps,
        &s.source,
        &fixture_input()?,
        &ExportOptions::default(),
        None,
    )
    .await?;
    assert_eq!(outcome.status, "held");
    assert!(outcome.reason.is_some());
    assert_eq!(outcome.jobs_enqueued, 0);
    assert!(harness::peek_bodies(&s.sdk, &s.clevertap.queue_url)
        .await?
        .is_empty());
    let held: serde_json::Value =
        serde_json::from_str(&metrics_lines("DataOut/test", &outcome, 1)[0])?;
    assert_eq!(held["RunsHeld"], 1.0);
    assert_eq!(held["service"], "batch-export");
    Ok(())
}

#[tokio::test]
async fn unknown_export_is_a_non_retryable_error() -> Result<()> {
    let s = setup(|y| y).await?;
    let input = parse_trigger(&json!({"export": "no_such_export"}))?;
    let err = match handle(&s.deps, &s.source, &input, &ExportOptions::default(), None).await {
        Err(e) => e,
        Ok(o) => bail!("expected an error, got {o:?}"),
    };
    assert!(!err.is_retryable());
    assert_eq!(Diagnostic::from(err).error_type, "NonRetryable");
    Ok(())
}

#[test]
fn trigger_reads_the_bare_input_and_an_eventbridge_envelope() -> Result<()> {
    let bare = parse_trigger(&json!({"export": "lapsed_vips"}))?;
    assert_eq!(bare.export, "lapsed_vips");
    let envelope = parse_trigger(&json!({
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "detail": {"export": "lapsed_vips"}
    }))?;
    assert_eq!(envelope, bare);
    let fixture = fixture_input()?;
    assert!(fixture.execution_id.is_some());
    for bad in [
        json!({}),
        json!({"export": ""}),
        json!({"detail": {}}),
        json!([1]),
    ] {
        match parse_trigger(&bad) {
            Err(e @ ExportError::BadInput(_)) => assert!(!e.is_retryable()),
            other => bail!("{bad} should be refused, got {other:?}"),
        }
    }
    Ok(())
}
