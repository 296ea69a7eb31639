//! The deliver handler on real-shaped SQS events, with state in DynamoDB and
//! jobs in SQS (moto's server) and CleverTap played by its simulator.

#[path = "../../test-support/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use dataout::destinations::clevertap::ClevertapDestination;
use dataout::destinations::Destination;
use dataout::domain::model::{counter, CounterScope};
use dataout::pipeline::deliver::DeliveryOptions;
use dataout::pipeline::Deps;
use dataout::ports::{MapSecrets, StateStore, SystemClock};
use dataout_sim::clevertap::{ClevertapSimConfig, ClevertapState};
use dataout_sim::RunningSim;
use deliver::event::{batch_response, records};
use deliver::handler::{handle_batch, metrics_line, DeliverError, QueueRecord};
use lambda_runtime::Diagnostic;

const SQS_BATCH: &str = include_str!("../../../events/lambda/sqs-deliver-batch.json");
const POISON_ID: &str = "8b7f3d2c-1a0e-4f9b-8c7d-6e5f4a3b2c1d";

struct Setup {
    deps: Deps,
    destination: Arc<dyn Destination>,
    sim: Arc<ClevertapState>,
    _server: RunningSim,
    _dir: tempfile::TempDir,
    sdk: aws_config::SdkConfig,
    urls: dataout::adapters::sqs::QueueUrls,
    state: Arc<dataout::adapters::dynamodb::DynamoStateStore>,
}

async fn setup(max_receives: u32) -> Result<Setup> {
    let sdk = harness::sdk_config().await;
    let (server, sim) = dataout_sim::clevertap::start(ClevertapSimConfig {
        // CleverTap's answer time is not what this test is about.
        response_delay: None,
        ..ClevertapSimConfig::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let spec = harness::parse(&harness::spec_yaml(
        &server.base_url,
        &dir.path().display().to_string(),
    ))?;
    let state = harness::fresh_state(&sdk).await?;
    let (queue, urls) =
        harness::fresh_queues(&sdk, &["clevertap"], Duration::from_secs(1), max_receives).await?;
    let secrets = MapSecrets::default()
        .with("CLEVERTAP_ACCOUNT_ID", &sim.config().account_id)
        .with("CLEVERTAP_PASSCODE", &sim.config().passcode);
    let dest_spec = spec.destination("clevertap").context("clevertap in spec")?;
    let destination: Arc<dyn Destination> = Arc::new(ClevertapDestination::new(
        "clevertap".into(),
        dest_spec,
        &secrets,
        reqwest_client()?,
    )?);
    let deps = harness::deps(spec, state.clone(), queue, Arc::new(SystemClock));
    Ok(Setup {
        deps,
        destination,
        sim,
        _server: server,
        _dir: dir,
        sdk,
        urls: urls.get("clevertap").context("urls")?.clone(),
        state,
    })
}

fn reqwest_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?)
}

fn opts(max_attempts: u32) -> DeliveryOptions {
    DeliveryOptions {
        max_attempts,
        ..DeliveryOptions::default()
    }
}

fn fixture_records() -> Result<Vec<QueueRecord>> {
    let event: SqsEvent = serde_json::from_str(SQS_BATCH)?;
    Ok(records(event))
}

#[tokio::test]
async fn poison_message_alone_is_reported_as_a_batch_item_failure() -> Result<()> {
    let s = setup(5).await?;
    let records = fixture_records()?;
    assert_eq!(records.len(), 3);
    assert_eq!(records[2].receive_count, 3);

    let outcome = handle_batch(&s.deps, &s.destination, &opts(5), &records)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    assert_eq!(outcome.failed_message_ids, vec![POISON_ID.to_string()]);
    assert_eq!(outcome.poison, 1);
    assert_eq!(outcome.totals.jobs_done, 2);
    let response = serde_json::to_value(batch_response(&outcome.failed_message_ids))?;
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": POISON_ID}]})
    );
    // The two valid jobs reached CleverTap: two adds and one remove.
    assert_eq!(s.sim.counters().records_accepted, 3);
    let added = s.sim.profile("cust_00032").context("cust_00032 uploaded")?;
    assert_eq!(
        added.data.get("cio_cart_abandoners"),
        Some(&serde_json::json!(true))
    );
    let removed = s.sim.profile("cust_00016").context("cust_00016 uploaded")?;
    assert_eq!(
        removed.data.get("cio_cart_abandoners"),
        Some(&serde_json::json!(false))
    );
    let counters = s
        .state
        .get_counters(&CounterScope::delivery("cart_abandoners", "clevertap"))
        .await?;
    assert_eq!(counters.get(counter::ACCEPTED), Some(&3));

    let line: serde_json::Value =
        serde_json::from_str(&metrics_line("DataOut/test", "clevertap", &outcome, 1))?;
    assert_eq!(line["PoisonMessages"], 1.0);
    assert_eq!(line["destination"], "clevertap");
    Ok(())
}

#[tokio::test]
async fn redelivered_batch_sends_nothing_twice() -> Result<()> {
    let s = setup(5).await?;
    let records = fixture_records()?;
    let first = handle_batch(&s.deps, &s.destination, &opts(5), &records)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let again = handle_batch(&s.deps, &s.destination, &opts(5), &records)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(first.failed_message_ids, again.failed_message_ids);
    assert_eq!(again.totals.jobs_duplicate, 2);
    assert_eq!(s.sim.counters().requests, 1);
    Ok(())
}

#[tokio::test]
async fn batch_where_every_record_fails_errors_as_retryable() -> Result<()> {
    let s = setup(5).await?;
    let poison: Vec<QueueRecord> = fixture_records()?
        .into_iter()
        .filter(|r| r.message_id == POISON_ID)
        .collect();
    let err = match handle_batch(&s.deps, &s.destination, &opts(5), &poison).await {
        Err(e) => e,
        Ok(o) => bail!("expected the invocation to fail, got {o:?}"),
    };
    assert!(matches!(err, DeliverError::AllFailed { records: 1, .. }));
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "Retryable");
    assert_eq!(s.sim.counters().requests, 0);
    Ok(())
}

#[tokio::test]
async fn empty_batch_is_a_success() -> Result<()> {
    let s = setup(5).await?;
    let outcome = handle_batch(&s.deps, &s.destination, &opts(5), &[])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(outcome.failed_message_ids.is_empty());
    Ok(())
}

/// Plays Lambda's SQS poller against moto: receive, invoke, delete what the
/// handler did not report, until the poison message is dead-lettered.
#[tokio::test]
async fn poison_message_reaches_the_dlq_after_max_receives_while_the_good_job_is_delivered(
) -> Result<()> {
    let max_receives = 2;
    let s = setup(max_receives).await?;
    let client = aws_sdk_sqs::Client::new(&s.sdk);
    let event: SqsEvent = serde_json::from_str(SQS_BATCH)?;
    let good = event.records[0].body.clone().context("good body")?;
    let poison = event.records[2].body.clone().context("poison body")?;
    for body in [&good, &poison] {
        client
            .send_message()
            .queue_url(&s.urls.queue_url)
            .message_body(body)
            .send()
            .await?;
    }
    // CleverTap is down for the first request: the good job backs off too,
    // so the first batch fails whole and comes back.
    s.sim.fail_next(1, 503);

    let started = Instant::now();
    let mut invocations = 0;
    let mut whole_batch_errors = 0;
    let mut poison_receive_counts = BTreeSet::new();
    loop {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("poison message did not reach the DLQ in time");
        }
        let dead = harness::peek_bodies(&s.sdk, &s.urls.dlq_url).await?;
        if dead.iter().any(|b| b == &poison) {
            assert_eq!(dead.len(), 1, "only the poison message is dead-lettered");
            break;
        }
        let received = client
            .receive_message()
            .queue_url(&s.urls.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await?;
        let batch: Vec<QueueRecord> = received
            .messages()
            .iter()
            .map(|m| QueueRecord {
                message_id: m.message_id().unwrap_or_default().to_string(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                body: m.body().unwrap_or_default().to_string(),
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        for r in batch.iter().filter(|r| r.body == poison) {
            poison_receive_counts.insert(r.receive_count);
        }
        invocations += 1;
        let failed = match handle_batch(&s.deps, &s.destination, &opts(max_receives), &batch).await
        {
            Ok(o) => o.failed_message_ids,
            Err(DeliverError::AllFailed { .. }) => {
                whole_batch_errors += 1;
                batch.iter().map(|r| r.message_id.clone()).collect()
            }
        };
        for r in batch.iter().filter(|r| !failed.contains(&r.message_id)) {
            client
                .delete_message()
                .queue_url(&s.urls.queue_url)
                .receipt_handle(&r.receipt_handle)
                .send()
                .await?;
        }
    }
    assert!(invocations >= 2, "{invocations} invocations");
    assert!(whole_batch_errors >= 1);
    assert_eq!(
        poison_receive_counts,
        (1..=max_receives).collect::<BTreeSet<u32>>(),
        "the poison message was offered exactly max_receives times"
    );
    // The good job was delivered exactly once after the outage.
    assert_eq!(s.sim.counters().records_accepted, 2);
    assert!(s.sim.profile("cust_00033").is_some());
    let depth = s.deps.queue.depth("clevertap").await?;
    assert_eq!((depth.visible, depth.dead), (0, 1));
    Ok(())
}
