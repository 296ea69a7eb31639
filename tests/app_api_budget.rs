//! One App API budget per workspace: three batch exports run at once, each
//! with its own App API client (as three Lambda invocations would), against
//! the Customer.io simulator enforcing 10 requests/s. Sharing the budget
//! (embedded, or DynamoDB on moto's server) keeps the simulator's busiest
//! second at 10 requests or under with no 429; without it, the three
//! clients each keep their own 10/s and together go far over.
//!
//! The peaks are measured by the simulator (arrival times on loopback).

use std::sync::Arc;
use std::time::Duration;

use dataout::adapters::dynamodb::budget::DynamoBudget;
use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::customerio::app_api::{AppApiClient, AppApiConfig};
use dataout::customerio::budget::{LocalBudget, RequestBudget};
use dataout::domain::config::parse_spec;
use dataout::domain::model::RunStatus;
use dataout::pipeline::export::{run_export, ExportOptions};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, MapSecrets, SystemClock};
use dataout_integration_tests::{test_sdk_config, unique};
use dataout_sim::customerio::{self as sim, CioSimConfig};

const KEY: &str = "budget-test-key";
const PAGE: u32 = 10;
const EXPORTS: [(&str, u64); 3] = [("carts", 101), ("recent", 102), ("lapsed", 103)];

struct Outcome {
    peak: usize,
    rate_limited: u64,
    requests: u64,
}

/// Run the three exports at once, one App API client each, sharing
/// `budget` when given.
async fn three_exports_at_once(budget: Option<Arc<dyn RequestBudget>>, sim_rate: u32) -> Outcome {
    let now = chrono::Utc::now().timestamp();
    let ws = sim::demo_workspace_at(7, 700, now);
    for (_, segment) in EXPORTS {
        assert!(
            ws.members(segment).len() >= 20,
            "segment {segment} has only {} members: too few requests to load the budget",
            ws.members(segment).len()
        );
    }
    let sizes: std::collections::BTreeMap<u64, u64> = EXPORTS
        .iter()
        .map(|(_, segment)| (*segment, ws.members(*segment).len() as u64))
        .collect();
    let cio = sim::start(
        CioSimConfig::new(KEY, ws)
            .rate_limit(sim_rate)
            .retry_after(1),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = format!(
        "version: 1\ndestinations:\n  warehouse:\n    kind: warehouse\n    location: {}\nexports:\n",
        dir.path().join("wh").display()
    );
    for (name, segment) in EXPORTS {
        yaml.push_str(&format!(
            "  {name}:\n    source: {{segment: {segment}}}\n    mode: membership\n    cadence: {{every: 15m}}\n    identity: {{golden: id, fallbacks: [email]}}\n    destinations:\n      warehouse:\n"
        ));
    }
    let spec = parse_spec(&yaml, "inline").unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deps = Deps {
        spec: Arc::new(spec),
        state: Arc::new(EmbeddedStateStore::open(&dir.path().join("state.redb")).unwrap()),
        queue: Arc::new(
            EmbeddedQueue::open(
                &dir.path().join("queue.redb"),
                QueueSettings {
                    visibility_timeout: Duration::from_secs(30),
                    max_receives: 5,
                },
                clock.clone(),
            )
            .unwrap(),
        ),
        clock,
    };
    let secrets = MapSecrets::default().with("CIO_APP_API_KEY", KEY);
    let config = AppApiConfig {
        base_url: Some(cio.base_url().to_string()),
        requests_per_second: 10,
        page_limit: PAGE,
        retry_min_delay: Duration::from_millis(100),
        ..AppApiConfig::default()
    };
    let opts = ExportOptions {
        page_limit: PAGE,
        ..ExportOptions::default()
    };
    let mut tasks = Vec::new();
    for (name, segment) in EXPORTS {
        let mut client =
            AppApiClient::new(config.clone(), &secrets, reqwest::Client::new()).unwrap();
        if let Some(b) = &budget {
            client = client.with_budget(b.clone());
        }
        let (deps, opts) = (deps.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let run = run_export(&deps, &client, name, &opts).await.unwrap();
                if run.status != RunStatus::Running {
                    return (segment, run);
                }
            }
        }));
    }
    for t in tasks {
        let (segment, run) = t.await.unwrap();
        assert_eq!(run.status, RunStatus::Finished, "{run:?}");
        // Every member of the source's segment was read, however throttled.
        assert_eq!(run.stats.members, sizes[&segment], "{run:?}");
    }
    let counters = cio.handle.counters();
    let outcome = Outcome {
        peak: cio.handle.peak_per_second(),
        rate_limited: counters.rate_limited,
        requests: counters.total_requests(),
    };
    println!(
        "three exports at once: {} App API requests, simulator's busiest second {} requests, {} answered 429 by its limit (measured against the simulator)",
        outcome.requests, outcome.peak, outcome.rate_limited
    );
    cio.shutdown().await;
    outcome
}

fn assert_within_the_workspace_limit(o: &Outcome) {
    assert!(
        o.requests >= 40,
        "only {} requests: the budget was never loaded",
        o.requests
    );
    assert!(
        o.peak <= 10,
        "busiest second had {} requests, over 10",
        o.peak
    );
    // The budget was the limit, not idleness: it ran close to full.
    assert!(o.peak >= 8, "busiest second had only {} requests", o.peak);
    assert_eq!(o.rate_limited, 0, "the simulator had to refuse requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_exports_sharing_the_embedded_budget_stay_at_ten_requests_per_second() {
    let o = three_exports_at_once(Some(Arc::new(LocalBudget::new())), 10).await;
    assert_within_the_workspace_limit(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_exports_pacing_only_themselves_go_over_ten_requests_per_second() {
    // The simulator's limit is off so the clients' own pace shows unmasked.
    let o = three_exports_at_once(None, 0).await;
    assert!(
        o.peak > 10,
        "without the shared budget the busiest second had {} requests; the test cannot tell the budget works",
        o.peak
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_exports_sharing_the_dynamodb_budget_stay_at_ten_requests_per_second() {
    let sdk = test_sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("dataout-budget");
    DynamoStateStore::create_table(&client, &table)
        .await
        .unwrap();
    let o = three_exports_at_once(Some(Arc::new(DynamoBudget::new(client, table))), 10).await;
    assert_within_the_workspace_limit(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_budget_passes_the_conformance_suite() {
    let sdk = test_sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("dataout-budget-conf");
    DynamoStateStore::create_table(&client, &table)
        .await
        .unwrap();
    dataout::conformance::budget::run_all(move || {
        Arc::new(DynamoBudget::new(client.clone(), table.clone())) as Arc<dyn RequestBudget>
    })
    .await;
}
