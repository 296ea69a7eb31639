//! Load test of intake on loopback, bounded in time and count:
//! 1. `dataout serve`'s HTTP router (embedded adapters, delivery workers
//!    running as in `serve`), closed-loop senders over keep-alive
//!    connections;
//! 2. the intake handler the Lambda runs, on DynamoDB and SQS in moto's
//!    server (only when `DATAOUT_TEST_AWS_ENDPOINT` is set: `./scripts/bench`
//!    starts moto).
//!
//! Prints requests/s, p50/p99, errors, and checks every accepted webhook is
//! recorded: accepted answers = the intake counter = members written.
//!   LOAD_SECS=60 LOAD_SENDERS=64 LOAD_MAX=5000000 LOAD_AWS_SECS=60 ./scripts/bench

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::sqs::SqsJobQueue;
use dataout::customerio::actions::{ActionAuthConfig, ActionAuthMode};
use dataout::customerio::webhook::{sign, SignatureConfig};
use dataout::domain::config::parse_spec;
use dataout::domain::model::{counter, CounterScope};
use dataout::pipeline::intake::{handle, IntakeConfig, Route};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, Secret, StateStore, SystemClock};
use dataout_cli::demo::{SimEnv, ACTION_SECRET, SIGNING_SECRET};
use dataout_integration_tests::{test_sdk_config, unique};
use serde_json::json;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// What every sender saw.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    accepted: AtomicU64,
    other_2xx: AtomicU64,
    errors: AtomicU64,
}

/// The n-th request of the load: 4 of 5 a webhook action entering a new
/// person, 1 of 5 a signed reporting webhook (an email open).
fn nth_request(n: u64, now: i64) -> (Route, Vec<(&'static str, String)>, Vec<u8>) {
    if n % 5 == 4 {
        let body = serde_json::to_vec(&json!({
            "event_id": format!("01HZLOAD{n:018}"), "object_type": "email", "metric": "opened",
            "timestamp": now,
            "data": {"identifiers": {"id": format!("load_{n:08}"), "email": format!("load{n}@example.com")}}
        }))
        .unwrap_or_default();
        let sig = sign(SIGNING_SECRET.as_bytes(), now, &body);
        (
            Route::Reporting,
            vec![
                ("x-cio-timestamp", now.to_string()),
                ("x-cio-signature", sig),
            ],
            body,
        )
    } else {
        let body = serde_json::to_vec(&json!({
            "action": "enter", "export": "cart_abandoners", "id": format!("load-enter-{n}"),
            "person": {"id": format!("load_{n:08}"), "email": format!("load{n}@example.com")},
            "attributes": {"cart_value": format!("{}", 40 + n % 200)}, "sent_at": now
        }))
        .unwrap_or_default();
        (
            Route::Actions,
            vec![("x-dataout-token", ACTION_SECRET.to_string())],
            body,
        )
    }
}

fn report(what: &str, tally: &Tally, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let sent = tally.sent.load(Ordering::Relaxed);
    println!("{what}");
    println!(
        "  {sent} requests in {:.1} s: {:.0} requests/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        wall.as_secs_f64(),
        sent as f64 / wall.as_secs_f64(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
    );
    println!(
        "  answers: {} accepted, {} other 2xx, {} errors",
        tally.accepted.load(Ordering::Relaxed),
        tally.other_2xx.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed)
    );
}

async fn load_serve(secs: u64, senders: u64, max: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let env = SimEnv::start(100, &dir.path().join("warehouse")).await?;
    let rt = Arc::new(env.runtime(&dir.path().join("state"), Arc::new(SystemClock))?);
    rt.start_workers().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = rt.router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(senders as usize)
        .build()?;
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let now = chrono::Utc::now().timestamp();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (http, tally, next, base) = (http.clone(), tally.clone(), next.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max {
                    break;
                }
                let (route, headers, body) = nth_request(n, now);
                let path = match route {
                    Route::Reporting => "/webhooks/customerio",
                    Route::Actions => "/webhooks/actions",
                };
                let mut req = http
                    .post(format!("{base}{path}"))
                    .header("content-type", "application/json");
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let t = Instant::now();
                let answer = match req.body(body).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let v: serde_json::Value = resp.json().await.unwrap_or_default();
                        Some(v["status"] == "accepted")
                    }
                    _ => None,
                };
                samples.push(t.elapsed());
                tally.sent.fetch_add(1, Ordering::Relaxed);
                match answer {
                    Some(true) => tally.accepted.fetch_add(1, Ordering::Relaxed),
                    Some(false) => tally.other_2xx.fetch_add(1, Ordering::Relaxed),
                    None => tally.errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    let wall = started.elapsed();
    report(
        &format!("load: dataout serve on loopback ({senders} senders, {secs} s bound, delivery workers running)"),
        &tally,
        samples,
        wall,
    );
    // Count equality: every accepted webhook is in the intake counter, and
    // every accepted entry is a member.
    let counters = rt.deps.state.get_counters(&CounterScope::intake()).await?;
    let counted = counters
        .get(counter::WEBHOOKS_ACCEPTED)
        .copied()
        .unwrap_or(0);
    let members = rt.deps.state.count_members("cart_abandoners").await?;
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let entries_accepted = (0..next.load(Ordering::Relaxed).min(max))
        .filter(|n| n % 5 != 4)
        .count() as u64;
    println!(
        "  recorded: intake counter {counted} accepted (answers said {accepted}); {members} members written for {entries_accepted} entries sent"
    );
    anyhow::ensure!(
        counted as u64 == accepted,
        "intake counter {counted} != {accepted} accepted answers"
    );
    anyhow::ensure!(
        tally.errors.load(Ordering::Relaxed) > 0 || members == entries_accepted,
        "{members} members for {entries_accepted} accepted entries"
    );
    server.abort();
    rt.shutdown().await;
    Ok(())
}

async fn load_lambda_on_moto(secs: u64, senders: u64, max: u64) -> anyhow::Result<()> {
    let sdk = test_sdk_config().await;
    let spec = parse_spec(
        r#"version: 1
destinations:
  wh:
    kind: warehouse
    location: ./unused
exports:
  cart_abandoners:
    source: action
    mode: membership
    cadence: {realtime: true}
    identity: {golden: id, fallbacks: [email]}
    destinations:
      wh:
"#,
        "inline",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("dataout-load");
    DynamoStateStore::create_table(&dynamo, &table).await?;
    let state = Arc::new(DynamoStateStore::new(dynamo, table));
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = unique("wh");
    let urls =
        SqsJobQueue::create_queues(&sqs, &[name.as_str()], Duration::from_secs(30), 5).await?;
    let queues: BTreeMap<String, _> = [("wh".to_string(), urls[&name].clone())].into();
    let queue = Arc::new(SqsJobQueue::new(sqs, queues));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deps = Arc::new(Deps {
        spec: Arc::new(spec),
        state: state.clone(),
        queue: queue.clone(),
        clock,
    });
    let cfg = Arc::new(IntakeConfig {
        reporting: SignatureConfig {
            secret: Secret::new(SIGNING_SECRET),
            tolerance: Duration::from_secs(300),
        },
        actions: ActionAuthConfig {
            header_name: "x-dataout-token".into(),
            secret: Secret::new(ACTION_SECRET),
            mode: ActionAuthMode::SharedSecret,
            tolerance: Duration::from_secs(300),
            basic: None,
        },
        dedup_ttl: Duration::from_secs(3600),
        in_progress_ttl: Duration::from_secs(10),
    });
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let now = chrono::Utc::now().timestamp();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (d0, q0) = (state.request_count(), queue.request_count());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (deps, cfg, tally, next) = (deps.clone(), cfg.clone(), tally.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max {
                    break;
                }
                let (route, headers, body) = nth_request(n, now);
                let headers: BTreeMap<String, String> = headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                let t = Instant::now();
                let resp = handle(&deps, &cfg, route, &headers, &body).await;
                samples.push(t.elapsed());
                tally.sent.fetch_add(1, Ordering::Relaxed);
                match (resp.status, resp.body["status"].as_str()) {
                    (200, Some("accepted")) => tally.accepted.fetch_add(1, Ordering::Relaxed),
                    (200..=299, _) => tally.other_2xx.fetch_add(1, Ordering::Relaxed),
                    _ => tally.errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    let wall = started.elapsed();
    report(
        &format!("load: the intake Lambda handler on DynamoDB + SQS in moto ({senders} concurrent, {secs} s bound; moto is the ceiling, not AWS)"),
        &tally,
        samples,
        wall,
    );
    let sent = tally.sent.load(Ordering::Relaxed).max(1);
    println!(
        "  requests per webhook: {:.2} DynamoDB, {:.2} SQS",
        (state.request_count() - d0) as f64 / sent as f64,
        (queue.request_count() - q0) as f64 / sent as f64
    );
    let counters = state.get_counters(&CounterScope::intake()).await?;
    let counted = counters
        .get(counter::WEBHOOKS_ACCEPTED)
        .copied()
        .unwrap_or(0);
    let accepted = tally.accepted.load(Ordering::Relaxed);
    println!("  recorded: intake counter {counted} accepted (answers said {accepted})");
    anyhow::ensure!(
        counted as u64 == accepted,
        "intake counter {counted} != {accepted} accepted answers"
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets without --bench: stay short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = if quick { 2 } else { env_u64("LOAD_SECS", 60) };
    let senders = env_u64("LOAD_SENDERS", 64);
    let max = env_u64("LOAD_MAX", 5_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        load_serve(secs, senders, max).await?;
        if std::env::var("DATAOUT_TEST_AWS_ENDPOINT").is_ok() {
            let aws_secs = if quick {
                2
            } else {
                env_u64("LOAD_AWS_SECS", 60)
            };
            load_lambda_on_moto(aws_secs, env_u64("LOAD_AWS_SENDERS", 16), max).await?;
        } else {
            println!("load: the Lambda handler on moto skipped (DATAOUT_TEST_AWS_ENDPOINT unset)");
        }
        anyhow::Ok(())
    })
}
