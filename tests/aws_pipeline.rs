//! The pipeline on the AWS adapters (DynamoDB and SQS on moto's server):
//! intake to delivery, and what it costs in requests per membership change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::sqs::SqsJobQueue;
use dataout::customerio::actions::{ActionAuthConfig, ActionAuthMode};
use dataout::customerio::webhook::SignatureConfig;
use dataout::domain::config::parse_spec;
use dataout::pipeline::deliver::{deliver_jobs, DeliveryOptions, Disposition};
use dataout::pipeline::intake::{handle, IntakeConfig, Route};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, MapSecrets, Secret, SystemClock};
use dataout_integration_tests::{test_sdk_config, unique};
use dataout_sim::meta::{MetaSim, MetaSimConfig, DEFAULT_ACCESS_TOKEN};
use serde_json::json;

const AUDIENCE: &str = "23850000000000777";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_to_delivery_on_dynamodb_and_sqs_and_its_request_cost() {
    let sdk = test_sdk_config().await;
    let (meta_server, meta) = MetaSim::start(MetaSimConfig::default()).await.unwrap();
    meta.create_audience(AUDIENCE);
    let spec = parse_spec(
        &format!(
            r#"version: 1
destinations:
  meta:
    kind: meta_audience
    api_version: v25.0
    ad_account_id: "1234567890"
    access_token_env: META_ACCESS_TOKEN
    base_url: {}
exports:
  cart:
    source: action
    mode: membership
    cadence: {{realtime: true}}
    identity: {{golden: id, fallbacks: [email]}}
    destinations:
      meta:
        audience: "{AUDIENCE}"
        keys: [email, extern_id]
"#,
            meta_server.base_url
        ),
        "inline",
    )
    .unwrap();
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("dataout-pipeline");
    DynamoStateStore::create_table(&dynamo, &table)
        .await
        .unwrap();
    let state = Arc::new(DynamoStateStore::new(dynamo, table));
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = unique("meta");
    let urls = SqsJobQueue::create_queues(&sqs, &[name.as_str()], Duration::from_secs(30), 5)
        .await
        .unwrap();
    // The spec calls the destination `meta`; the queue's name is unique per run.
    let queues: BTreeMap<String, _> = [("meta".to_string(), urls[&name].clone())].into();
    let queue = Arc::new(SqsJobQueue::new(sqs, queues));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deps = Deps {
        spec: Arc::new(spec),
        state: state.clone(),
        queue: queue.clone(),
        clock: clock.clone(),
    };
    let cfg = IntakeConfig {
        reporting: SignatureConfig {
            secret: Secret::new("s"),
            tolerance: Duration::from_secs(300),
        },
        actions: ActionAuthConfig {
            header_name: "x-dataout-token".into(),
            secret: Secret::new("s"),
            mode: ActionAuthMode::SharedSecret,
            tolerance: Duration::from_secs(300),
            basic: None,
        },
        dedup_ttl: Duration::from_secs(3600),
        in_progress_ttl: Duration::from_secs(10),
    };
    let headers: BTreeMap<String, String> =
        [("x-dataout-token".to_string(), "s".to_string())].into();
    let changes = 200u64;
    let now = chrono::Utc::now().timestamp();
    let (d0, q0) = (state.request_count(), queue.request_count());
    for i in 0..changes {
        let body = json!({"action": "enter", "export": "cart", "id": format!("e{i}"),
            "person": {"id": format!("p{i:04}"), "email": format!("p{i}@example.com")}, "sent_at": now - 60});
        let resp = handle(
            &deps,
            &cfg,
            Route::Actions,
            &headers,
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    let (d1, q1) = (state.request_count(), queue.request_count());

    let destination = dataout::destinations::build(
        deps.spec.destination("meta").unwrap(),
        &MapSecrets::default().with("META_ACCESS_TOKEN", DEFAULT_ACCESS_TOKEN),
        reqwest::Client::new(),
        None,
        clock,
        deps.state.clone(),
    )
    .unwrap();
    use dataout::ports::JobQueue;
    let mut delivered = 0;
    loop {
        let jobs = queue.receive("meta", 10).await.unwrap();
        if jobs.is_empty() {
            break;
        }
        let (dispositions, _) =
            deliver_jobs(&deps, &destination, &jobs, &DeliveryOptions::default()).await;
        for (job, d) in jobs.iter().zip(dispositions) {
            assert_eq!(d, Disposition::Done);
            queue.ack("meta", &job.receipt).await.unwrap();
            delivered += 1;
        }
    }
    let (d2, q2) = (state.request_count(), queue.request_count());
    assert_eq!(delivered, changes);
    assert_eq!(meta.member_count(AUDIENCE), changes as usize);
    let per_k = |n: u64| n * 1000 / changes;
    println!(
        "requests per 1,000 membership changes (one destination): intake DynamoDB {} SQS {}; delivery DynamoDB {} SQS {}; total DynamoDB {} SQS {}",
        per_k(d1 - d0),
        per_k(q1 - q0),
        per_k(d2 - d1),
        per_k(q2 - q1),
        per_k(d2 - d0),
        per_k(q2 - q0)
    );
}
