//! Test harness of the four function crates (each includes this file with
//! `#[path]`): the AWS adapters against moto's server on loopback, fresh
//! resources per test, and the activation spec the handler tests share.
//!
//! moto's server is started by `scripts/moto-server start` (or
//! `./scripts/test`), which prints the `DATAOUT_TEST_AWS_ENDPOINT` to export.
//! Without it these tests fail with that instruction: they never skip.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::sqs::{QueueUrls, SqsJobQueue};
use dataout::domain::config::parse_spec;
use dataout::domain::spec::ActivationSpec;
use dataout::pipeline::Deps;
use dataout::ports::{Clock, JobQueue, StateStore};

pub const ENDPOINT_VAR: &str = "DATAOUT_TEST_AWS_ENDPOINT";

/// Secrets the fixtures in `events/lambda/` are signed with.
pub const SIGNING_SECRET: &str = "test-signing-secret";
pub const ACTION_TOKEN: &str = "test-action-token";
pub const CIO_API_KEY: &str = "test-app-api-key";

pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_VAR) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => panic!(
            "{ENDPOINT_VAR} is not set: the handler tests need moto's server on loopback. \
             Run `eval \"$(scripts/moto-server start)\"` first, or run ./scripts/test"
        ),
    }
}

pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "dataout-function-tests",
        ))
        .load()
        .await
}

/// A resource name no other test (or earlier run on the same server) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!("{prefix}-{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A fresh DynamoDB table in moto with the adapter's layout.
pub async fn fresh_state(sdk: &SdkConfig) -> Result<Arc<DynamoStateStore>> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let table = unique("fn-state");
    DynamoStateStore::create_table(&client, &table).await?;
    Ok(Arc::new(DynamoStateStore::new(client, table)))
}

/// Fresh SQS queues (and DLQs) per destination name. The map is keyed by
/// the destination names given, whatever the unique queue names are.
pub async fn fresh_queues(
    sdk: &SdkConfig,
    destinations: &[&str],
    visibility: Duration,
    max_receives: u32,
) -> Result<(Arc<SqsJobQueue>, BTreeMap<String, QueueUrls>)> {
    let client = aws_sdk_sqs::Client::new(sdk);
    let mut urls = BTreeMap::new();
    for name in destinations {
        let queue_name = unique(&format!("fn-{}", name.replace('_', "-")));
        let created =
            SqsJobQueue::create_queues(&client, &[queue_name.as_str()], visibility, max_receives)
                .await?;
        let pair = created
            .get(&queue_name)
            .cloned()
            .ok_or_else(|| anyhow!("queue {queue_name} was not created"))?;
        urls.insert(name.to_string(), pair);
    }
    Ok((Arc::new(SqsJobQueue::new(client, urls.clone())), urls))
}

/// The spec the handler tests run against: one segment export sent to
/// CleverTap (and the warehouse), and a suppression export fed by
/// reporting webhooks. `cio_base` and `clevertap_base` point at simulators.
pub fn spec_yaml(clevertap_base: &str, warehouse_dir: &str) -> String {
    format!(
        r#"version: 1
destinations:
  clevertap:
    kind: clevertap
    base_url: {clevertap_base}
    region: us1
    account_id_env: CLEVERTAP_ACCOUNT_ID
    passcode_env: CLEVERTAP_PASSCODE
    max_attempts: 2
  warehouse:
    kind: warehouse
    location: {warehouse_dir}
reporting_feeds:
  email.unsubscribed: [email_suppression]
  email.spammed: [email_suppression]
exports:
  cart_abandoners:
    source: {{segment: 101}}
    mode: membership
    cadence: {{realtime: true, every: 15m}}
    identity:
      golden: id
      fallbacks: [email]
    attributes:
      cart_value: number
      cart_value_bucket: {{from: cart_value, transform: {{bucket: [50, 100, 150]}}}}
    destinations:
      clevertap:
        audience: cio_cart_abandoners
      warehouse:
  email_suppression:
    source: action
    mode: membership
    cadence: {{realtime: true}}
    identity: {{golden: email}}
    destinations:
      warehouse:
"#
    )
}

pub fn parse(yaml: &str) -> Result<Arc<ActivationSpec>> {
    let spec = parse_spec(yaml, "handler-test.yaml").map_err(|e| anyhow!("{e}"))?;
    Ok(Arc::new(spec))
}

pub fn deps(
    spec: Arc<ActivationSpec>,
    state: Arc<dyn StateStore>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
) -> Deps {
    Deps {
        spec,
        state,
        queue,
        clock,
    }
}

/// Bodies of every message now visible on a queue (received with
/// visibility 0, so they stay there).
pub async fn peek_bodies(sdk: &SdkConfig, queue_url: &str) -> Result<Vec<String>> {
    let client = aws_sdk_sqs::Client::new(sdk);
    let out = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .wait_time_seconds(0)
        .send()
        .await
        .context("peek queue")?;
    Ok(out
        .messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_string))
        .collect())
}
