//! The operator commands against a deployed stack, on moto's server: the
//! `dataout` binary is run with `--table`/`--queues` (or `--stack`) and the
//! endpoint of moto, while the test plays the Lambda functions (the same
//! pipeline calls their handlers make) and the platforms (simulators).
//!
//! Needs `DATAOUT_TEST_AWS_ENDPOINT` (start moto with `scripts/moto-server
//! start`); these tests never skip.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::sqs::{QueueUrls, SqsJobQueue};
use dataout::customerio::actions::{ActionAuthConfig, ActionAuthMode};
use dataout::customerio::app_api::{AppApiClient, AppApiConfig};
use dataout::customerio::webhook::SignatureConfig;
use dataout::destinations::Destination;
use dataout::domain::config::parse_spec;
use dataout::domain::model::RunStatus;
use dataout::pipeline::deliver::{deliver_jobs, DeliveryOptions, Disposition};
use dataout::pipeline::export::{run_export, ExportOptions};
use dataout::pipeline::intake::{handle, IntakeConfig, Route};
use dataout::pipeline::Deps;
use dataout::ports::{JobQueue, MapSecrets, Secret, StateStore, SystemClock};
use dataout_sim::customerio::{self as cio_sim, CioSimConfig};
use dataout_sim::webhook::{self as hook_sim, WebhookSimConfig};
use serde_json::json;

const CIO_KEY: &str = "operate-test-key";

fn endpoint() -> String {
    match std::env::var("DATAOUT_TEST_AWS_ENDPOINT") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => panic!(
            "DATAOUT_TEST_AWS_ENDPOINT is not set: start moto with scripts/moto-server start and export the line it prints"
        ),
    }
}

async fn sdk() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_like())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!("{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The deployed stack's pieces on moto: a table and one queue (with its
/// DLQ) for the destination `hook`.
struct Stack {
    table: String,
    queues: BTreeMap<String, QueueUrls>,
    state: Arc<DynamoStateStore>,
    queue: Arc<SqsJobQueue>,
}

impl Stack {
    async fn create(max_receives: u32) -> Stack {
        let sdk = sdk().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let table = unique("dataout-operate");
        DynamoStateStore::create_table(&dynamo, &table)
            .await
            .unwrap();
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let name = unique("hook");
        let urls = SqsJobQueue::create_queues(
            &sqs,
            &[name.as_str()],
            Duration::from_secs(1),
            max_receives,
        )
        .await
        .unwrap();
        let queues: BTreeMap<String, QueueUrls> =
            [("hook".to_string(), urls[&name].clone())].into();
        Stack {
            state: Arc::new(DynamoStateStore::new(dynamo, table.clone())),
            queue: Arc::new(
                SqsJobQueue::new(sqs, queues.clone()).with_receive_wait(Duration::ZERO),
            ),
            table,
            queues,
        }
    }

    fn queues_json(&self) -> String {
        let m: BTreeMap<&str, serde_json::Value> = self
            .queues
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    json!({"queue_url": v.queue_url, "dlq_url": v.dlq_url}),
                )
            })
            .collect();
        serde_json::to_string(&m).unwrap()
    }

    fn deps(&self, spec_yaml: &str) -> Deps {
        Deps {
            spec: Arc::new(parse_spec(spec_yaml, "inline").unwrap()),
            state: self.state.clone(),
            queue: self.queue.clone(),
            clock: Arc::new(SystemClock),
        }
    }

    /// `dataout <args> --table … --queues …` against moto. Returns stdout;
    /// panics with stderr when it fails and `ok` was expected.
    async fn cli(&self, args: &[&str], spec: Option<&Path>) -> (bool, String, String) {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--table".into(),
            self.table.clone(),
            "--queues".into(),
            self.queues_json(),
        ]);
        if let Some(p) = spec {
            all.extend(["--config".into(), p.display().to_string()]);
        }
        run_cli(all).await
    }
}

async fn run_cli(args: Vec<String>) -> (bool, String, String) {
    let endpoint = endpoint();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_dataout"))
            .args(&args)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("DATAOUT_STACK")
            .env_remove("DATAOUT_TABLE")
            .env_remove("DATAOUT_QUEUES")
            .env_remove("DATAOUT_CONFIG")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn ok((success, stdout, stderr): (bool, String, String)) -> String {
    assert!(success, "dataout failed:\n{stdout}\n{stderr}");
    stdout
}

fn spec_yaml(hook_url: &str, exports: &str) -> String {
    format!(
        "version: 1\ndestinations:\n  hook:\n    kind: webhook\n    url: {hook_url}/hook\n    allow_private_network: true\n    secret_env: HOOK_SECRET\nexports:\n{exports}"
    )
}

fn hook_destination(deps: &Deps) -> Arc<dyn Destination> {
    dataout::destinations::build(
        deps.spec.destination("hook").unwrap(),
        &MapSecrets::default().with("HOOK_SECRET", &WebhookSimConfig::default().secret),
        reqwest::Client::new(),
        None,
        deps.clock.clone(),
        deps.state.clone(),
    )
    .unwrap()
}

fn delivery_options() -> DeliveryOptions {
    DeliveryOptions {
        max_attempts: 1,
        in_progress_ttl: Duration::from_secs(1),
        ..DeliveryOptions::default()
    }
}

/// The delivery function: drain the `hook` queue. Returns (done, retried).
async fn drain(deps: &Deps, stack: &Stack) -> (usize, usize) {
    let destination = hook_destination(deps);
    let (mut done, mut retried) = (0, 0);
    loop {
        let jobs = stack.queue.receive("hook", 10).await.unwrap();
        if jobs.is_empty() {
            return (done, retried);
        }
        let (dispositions, _) = deliver_jobs(deps, &destination, &jobs, &delivery_options()).await;
        for (job, d) in jobs.iter().zip(dispositions) {
            match d {
                Disposition::Done => {
                    stack.queue.ack("hook", &job.receipt).await.unwrap();
                    done += 1;
                }
                Disposition::RetryAfter(_) => {
                    stack
                        .queue
                        .retry_later("hook", &job.receipt, Duration::ZERO)
                        .await
                        .unwrap();
                    retried += 1;
                }
            }
        }
        if retried > 0 {
            return (done, retried);
        }
    }
}

fn intake_config() -> IntakeConfig {
    IntakeConfig {
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
    }
}

async fn post_action(deps: &Deps, export: &str, person: &str) -> serde_json::Value {
    let headers: BTreeMap<String, String> =
        [("x-dataout-token".to_string(), "s".to_string())].into();
    let body = json!({"action": "enter", "export": export, "id": format!("ev-{person}"),
        "person": {"id": person, "email": format!("{person}@example.com")},
        "sent_at": chrono::Utc::now().timestamp() - 30});
    let resp = handle(
        deps,
        &intake_config(),
        Route::Actions,
        &headers,
        &serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert!(resp.status < 300, "{resp:?}");
    resp.body
}

const REALTIME_EXPORT: &str = "  cart:\n    source: action\n    mode: membership\n    cadence: {realtime: true}\n    identity: {golden: id, fallbacks: [email]}\n    destinations:\n      hook:\n        audience: cart\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_held_by_a_guard_rail_is_listed_approved_through_the_cli_and_delivers() {
    let stack = Stack::create(5).await;
    let (hook_server, hook) = hook_sim::start(WebhookSimConfig::default()).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let ws = cio_sim::demo_workspace_at(11, 300, now);
    let members = ws.members(101).len();
    assert!(members > 5, "segment 101 has {members} members");
    let cio = cio_sim::start(CioSimConfig::new(CIO_KEY, ws).rate_limit(0))
        .await
        .unwrap();
    let yaml = spec_yaml(
        &hook_server.base_url,
        "  vips:\n    source: {segment: 101}\n    mode: membership\n    cadence: {every: 15m}\n    identity: {golden: id, fallbacks: [email]}\n    destinations:\n      hook:\n        audience: vips\n    guard_rails:\n      size: [1, 5]\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let spec_file = dir.path().join("exports.yaml");
    std::fs::write(&spec_file, &yaml).unwrap();
    let deps = stack.deps(&yaml);

    // The scheduled batch-export tick: the audience is above the maximum.
    let source = AppApiClient::new(
        AppApiConfig {
            base_url: Some(cio.base_url().to_string()),
            ..AppApiConfig::default()
        },
        &MapSecrets::default().with("CIO_APP_API_KEY", CIO_KEY),
        reqwest::Client::new(),
    )
    .unwrap();
    let run = run_export(&deps, &source, "vips", &ExportOptions::default())
        .await
        .unwrap();
    assert!(matches!(run.status, RunStatus::Held { .. }), "{run:?}");
    assert_eq!(stack.queue.depth("hook").await.unwrap().visible, 0);

    let listed = ok(stack.cli(&["runs", "list", "vips"], None).await);
    assert!(
        listed.contains(&run.run_id) && listed.contains("held (audience size"),
        "{listed}"
    );

    let approved = ok(stack
        .cli(&["runs", "approve", &run.run_id], Some(&spec_file))
        .await);
    assert!(approved.contains("approved and committed"), "{approved}");
    let stored = stack.state.get_run(&run.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Finished, "{stored:?}");
    assert_eq!(stored.stats.adds, members as u64);

    // The deliver function picks up what the approval enqueued.
    let (done, retried) = drain(&deps, &stack).await;
    assert!(done > 0 && retried == 0, "done {done} retried {retried}");
    let ops = hook.ops();
    assert_eq!(ops.len(), members, "{:?}", ops.first());
    assert!(ops
        .iter()
        .all(|op| op["op"] == "add" && op["audience"] == "vips"));

    // Approving again is refused: the run is no longer held.
    let (success, _, stderr) = stack
        .cli(&["runs", "approve", &run.run_id], Some(&spec_file))
        .await;
    assert!(!success && stderr.contains("not held"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_job_in_the_dlq_is_redriven_by_the_cli_and_delivers_after_the_fix() {
    let stack = Stack::create(1).await;
    let (hook_server, hook) = hook_sim::start(WebhookSimConfig::default()).await.unwrap();
    let yaml = spec_yaml(&hook_server.base_url, REALTIME_EXPORT);
    let deps = stack.deps(&yaml);
    post_action(&deps, "cart", "p-1").await;

    // The destination is down: the job fails its only attempt and the queue
    // dead-letters it on the next receive.
    hook.fail_next(1, 503);
    let (done, retried) = drain(&deps, &stack).await;
    assert_eq!((done, retried), (0, 1));
    let mut dead = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(stack.queue.receive("hook", 10).await.unwrap().is_empty());
        dead = stack.queue.depth("hook").await.unwrap().dead;
        if dead > 0 {
            break;
        }
    }
    assert_eq!(dead, 1, "the job never reached the DLQ");

    let depth = ok(stack.cli(&["dlq", "list"], None).await);
    let row = depth
        .lines()
        .find(|l| l.starts_with("hook"))
        .unwrap_or_default();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["hook", "0", "0", "1"],
        "{depth}"
    );
    let listed = ok(stack.cli(&["dlq", "list", "hook"], None).await);
    assert!(
        listed.contains("export cart") && listed.contains("1 ops"),
        "{listed}"
    );
    assert!(
        !listed.contains("p-1@example.com"),
        "no PII in the listing: {listed}"
    );

    // The fix: the destination answers again (its one failure is spent).
    assert!(hook.ops().is_empty());
    let redriven = ok(stack.cli(&["dlq", "redrive", "hook"], None).await);
    assert!(redriven.starts_with("1 job(s) moved"), "{redriven}");
    assert_eq!(stack.queue.depth("hook").await.unwrap().dead, 0);
    let (done, retried) = drain(&deps, &stack).await;
    assert_eq!((done, retried), (1, 0));
    let ops = hook.ops();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["op"], "add");

    let (success, _, stderr) = stack.cli(&["dlq", "redrive", "nowhere"], None).await;
    assert!(
        !success && stderr.contains("no destination `nowhere`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_webhook_is_replayed_from_dynamodb_through_the_cli() {
    let stack = Stack::create(5).await;
    let (hook_server, hook) = hook_sim::start(WebhookSimConfig::default()).await.unwrap();
    // Deployed without the `cart` export: its webhooks are quarantined.
    let old = stack.deps(&spec_yaml(
        &hook_server.base_url,
        "  other:\n    source: action\n    mode: membership\n    cadence: {realtime: true}\n    identity: {golden: id, fallbacks: [email]}\n    destinations:\n      hook:\n        audience: other\n",
    ));
    let answer = post_action(&old, "cart", "p-9").await;
    assert_eq!(answer["status"], "quarantined", "{answer}");
    let id = answer["quarantine_id"]
        .as_str()
        .or_else(|| answer["id"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no quarantine id in {answer}"));

    let listed = ok(stack.cli(&["quarantine", "list"], None).await);
    assert!(
        listed.contains(&id) && !listed.contains("(replayed)"),
        "{listed}"
    );
    let shown = ok(stack.cli(&["quarantine", "show", &id], None).await);
    assert!(
        shown.contains("\"export\":\"cart\"") || shown.contains("\"export\": \"cart\""),
        "{shown}"
    );

    // The fixed spec has the export; replay from the table.
    let fixed_yaml = spec_yaml(&hook_server.base_url, REALTIME_EXPORT);
    let dir = tempfile::tempdir().unwrap();
    let spec_file = dir.path().join("exports.yaml");
    std::fs::write(&spec_file, &fixed_yaml).unwrap();
    let replayed = ok(stack
        .cli(&["quarantine", "replay", &id], Some(&spec_file))
        .await);
    assert!(replayed.starts_with("200"), "{replayed}");
    let listed = ok(stack.cli(&["quarantine", "list"], None).await);
    assert!(listed.contains("(replayed)"), "{listed}");

    let fixed = stack.deps(&fixed_yaml);
    let (done, _) = drain(&fixed, &stack).await;
    assert_eq!(done, 1);
    let ops = hook.ops();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["audience"], "cart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_name_resolves_table_and_queues_from_cloudformation_outputs() {
    let sdk = sdk().await;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let name = unique("dataout-ops");
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"ConfigS3Uri": {"Type": "String"}},
        "Resources": {
            "StateTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"}],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"}]}},
            "HookDLQ": {"Type": "AWS::SQS::Queue"},
            "HookQueue": {"Type": "AWS::SQS::Queue"}
        },
        "Outputs": {
            "StateTableName": {"Value": {"Ref": "StateTable"}},
            "QueueUrls": {"Value": {"Fn::Join": ["", [
                "{\"hook\":{\"queue_url\":\"", {"Ref": "HookQueue"},
                "\",\"dlq_url\":\"", {"Ref": "HookDLQ"}, "\"}}"]]}}
        }
    });
    cfn.create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("ConfigS3Uri")
                .parameter_value("s3://nowhere/exports.yaml")
                .build(),
        )
        .send()
        .await
        .unwrap();

    let (success, stdout, stderr) = run_cli(vec![
        "dlq".into(),
        "list".into(),
        "--stack".into(),
        name.clone(),
    ])
    .await;
    assert!(success, "{stdout}\n{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("hook"))
        .unwrap_or_default();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["hook", "0", "0", "0"],
        "{stdout}"
    );
    let (success, stdout, stderr) = run_cli(vec![
        "runs".into(),
        "list".into(),
        "vips".into(),
        "--stack".into(),
        name.clone(),
    ])
    .await;
    assert!(
        success && stdout.contains("no runs of `vips`"),
        "{stdout}\n{stderr}"
    );
    // The spec location comes from the stack's parameter.
    let (success, _, stderr) = run_cli(vec![
        "runs".into(),
        "approve".into(),
        "run_x".into(),
        "--stack".into(),
        name,
    ])
    .await;
    assert!(
        !success && stderr.contains("s3://nowhere/exports.yaml"),
        "{stderr}"
    );
}
