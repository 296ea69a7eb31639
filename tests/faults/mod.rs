//! The fault-injection scenario: membership changes across five exports
//! and every audience destination kind, on DynamoDB, SQS and S3 (moto) and
//! the simulators, while everything on the way fails at random. Then the
//! simulators' final audiences are compared with the source of truth, and
//! the delivery counters with the ops that were enqueued.
//!
//! Faults: a proxy in front of each destination answers 503 (not applied),
//! 500 after the destination applied the request, 429 with Retry-After, and
//! holds requests past the client's timeout (applied); CleverTap answers
//! records `unprocessed`; Meta answers 80003 in bursts; Google's access
//! tokens live seconds; the state store throttles and loses answers after
//! writes; the queue loses acks (processed messages come back) and fails
//! sends before and after they land; delivery workers are killed at random
//! points and restarted.
//!
//! Used by `tests/fault_injection.rs` (sized for `./scripts/test`) and by
//! `./scripts/bench --bench faults` (larger).

mod arrivals;
mod backend;
mod compare;
mod drive;
mod events;
mod floors;
mod world;
pub mod wrappers;

pub use backend::Backend;
use backend::{adapters, Adapters};
use compare::compare;
use drive::*;
use world::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::s3::S3ObjectStore;
use dataout::adapters::sqs::SqsJobQueue;
use dataout::customerio::actions::{ActionAuthConfig, ActionAuthMode};
use dataout::customerio::app_api::{AppApiClient, AppApiConfig, Region};
use dataout::customerio::webhook::SignatureConfig;
use dataout::destinations::Destination;
use dataout::domain::config::parse_spec;
use dataout::domain::identity::sha256_hex;
use dataout::domain::model::{counter, CounterScope, PersonKey, RunStatus};
use dataout::pipeline::deliver::{deliver_jobs, DeliveryOptions, Disposition};
use dataout::pipeline::export::{run_export, ExportOptions};
use dataout::pipeline::intake::{handle, IntakeConfig, Route};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, JobQueue, MapSecrets, ObjectStore, Secret, StateStore, SystemClock};
use dataout_sim::clevertap::{self, ClevertapSimConfig, ClevertapState};
use dataout_sim::customerio::{self as cio_sim, CioSimConfig, CioWorkspace, SimPerson, SimSegment};
use dataout_sim::faults::{FaultPlan, FaultProxyState};
use dataout_sim::google_dm::{DataManagerSim, DataManagerSimConfig};
use dataout_sim::meta::{AccessTier, MetaFault, MetaSim, MetaSimConfig, DEFAULT_ACCESS_TOKEN};
use dataout_sim::webhook::{self as webhook_sim, WebhookSimConfig, WebhookState};
use dataout_sim::RunningSim;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::{sdk_config_at, test_sdk_config, unique};
use dataout_sim::aws_faults::AwsFaultPlan;
use wrappers::{FaultyQueue, FaultyState, QueueFaults, StoreFaults};

/// The destinations, one of each audience kind.
pub const DESTINATIONS: [&str; 6] = ["clevertap", "meta", "google", "warehouse", "hook", "capi"];
const REALTIME: [&str; 3] = ["cart", "purchasers", "newsletter"];
/// Exports fed by the `order_placed` event.
const EVENT_EXPORTS: [&str; 2] = ["orders", "purchases"];
const BATCH: [(&str, u64); 2] = [("vip", 201), ("winback", 202)];
const META_CART: &str = "23850000000000901";
const META_WINBACK: &str = "23850000000000902";
const GOOGLE_ACCOUNT: &str = "1234567890";
const GOOGLE_PURCHASERS: &str = "7000000901";
const GOOGLE_VIP: &str = "7000000902";
const WEBHOOK_SECRET: &str = "fault-suite-webhook-secret";
const ACTION_SECRET: &str = "fault-suite-action-secret";
const CIO_KEY: &str = "fault-suite-cio-key";
/// Delivery attempts (the queues' max receives) before a job is dead-lettered.
const MAX_ATTEMPTS: u32 = 8;
/// The webhook destination gives up sooner, so some of its jobs land in the
/// dead-letter queue and come back with `redrive`.
const HOOK_ATTEMPTS: u32 = 2;

fn attempts_for(destination: &str) -> u32 {
    if destination == "hook" {
        HOOK_ATTEMPTS
    } else {
        MAX_ATTEMPTS
    }
}
/// Visibility timeout of the queues and the claim of a job in delivery:
/// how soon the work of a killed worker comes back.
const VISIBILITY: Duration = Duration::from_secs(4);

/// How much work, and how hard the faults.
#[derive(Clone, Debug)]
pub struct Scale {
    /// People the realtime exports draw from.
    pub realtime_people: usize,
    /// Webhooks (each one membership change) over the realtime exports.
    pub realtime_changes: usize,
    /// People in the Customer.io workspace for the batch exports.
    pub batch_people: usize,
    /// Batch runs after the first, each after a churn of the segments.
    pub churn_rounds: usize,
    /// Share of each segment that leaves, and of non-members that join, per round.
    pub churn: f64,
    /// Concurrent webhook senders.
    pub senders: usize,
    /// Delivery workers per destination.
    pub workers: usize,
    pub seed: u64,
    /// Every fault on (off: the self-check, which must observe none and
    /// still find every destination exact).
    pub faults: bool,
    pub backend: Backend,
}

impl Scale {
    /// What `./scripts/test` runs: a few minutes on moto on 2 cores.
    pub fn test() -> Scale {
        Scale {
            realtime_people: 250,
            realtime_changes: 900,
            batch_people: 1_500,
            churn_rounds: 2,
            churn: 0.1,
            senders: 4,
            workers: 2,
            seed: 20_261_204,
            faults: true,
            backend: Backend::Moto,
        }
    }

    /// The self-check: a small world with every fault off.
    pub fn self_check() -> Scale {
        Scale {
            realtime_people: 100,
            realtime_changes: 300,
            batch_people: 400,
            churn_rounds: 1,
            faults: false,
            ..Scale::test()
        }
    }

    /// `FAULTS_REALTIME`, `FAULTS_BATCH_PEOPLE`, `FAULTS_ROUNDS`, `FAULTS_SEED`
    /// override `base`.
    pub fn from_env(base: Scale) -> Scale {
        let get = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        let mut s = base;
        if let Some(v) = get("FAULTS_REALTIME") {
            s.realtime_changes = v as usize;
            s.realtime_people = (v as usize / 4).max(10);
        }
        if let Some(v) = get("FAULTS_BATCH_PEOPLE") {
            s.batch_people = v as usize;
        }
        if let Some(v) = get("FAULTS_ROUNDS") {
            s.churn_rounds = v as usize;
        }
        if let Some(v) = get("FAULTS_SENDERS") {
            s.senders = (v as usize).max(1);
        }
        if let Some(v) = get("FAULTS_SEED") {
            s.seed = v;
        }
        match std::env::var("FAULTS_BACKEND").as_deref() {
            Ok("embedded") => s.backend = Backend::Embedded,
            Ok("moto") => s.backend = Backend::Moto,
            _ => {}
        }
        s
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Figures to print.
    pub figures: Vec<String>,
    /// Every difference from the source of truth or between counters (empty: exact).
    pub mismatches: Vec<String>,
    /// Membership changes made (webhooks plus batch adds and removes).
    pub changes: u64,
    /// Of which webhooks.
    pub webhooks: u64,
}

/// Per-person outcomes the delivery logged (rejected, unmatched, invalid),
/// by (export, destination) → log-safe person key → reason.
type Rejections = BTreeMap<(String, String), BTreeMap<String, String>>;

/// The running delivery workers, by destination.
type Workers = Arc<Mutex<Vec<(&'static str, JoinHandle<()>, InFlight)>>>;

/// The log layer that collects each op's per-person outcome.
#[derive(Clone, Default)]
pub struct OutcomeLog(Arc<Mutex<Rejections>>);

impl OutcomeLog {
    /// Install the process's subscriber: this layer at INFO, and with
    /// `FAULTS_LOG=<level or filter>` the pipeline's log on stderr too.
    pub fn install() -> Result<OutcomeLog> {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::Layer;
        let log = OutcomeLog::default();
        let printed = std::env::var("FAULTS_LOG").ok().map(|level| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::new(level))
        });
        let subscriber = tracing_subscriber::registry()
            .with(
                log.clone()
                    .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
            )
            .with(printed);
        tracing::subscriber::set_global_default(subscriber)?;
        Ok(log)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for OutcomeLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields(BTreeMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.insert(f.name().to_string(), format!("{v:?}"));
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                self.0.insert(f.name().to_string(), v.to_string());
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.get("message").map(String::as_str).unwrap_or("");
        if !matches!(
            message,
            "op rejected" | "op unmatched" | "op invalid: not sent"
        ) {
            return;
        }
        let get = |k: &str| fields.0.get(k).cloned().unwrap_or_default();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((get("export"), get("destination")))
            .or_default()
            .insert(get("person"), format!("{message}: {}", get("reason")));
    }
}

struct Pipeline {
    deps: Deps,
    state: Arc<FaultyState>,
    queue: Arc<FaultyQueue>,
    secrets: MapSecrets,
    warehouse: Arc<dyn ObjectStore>,
    http: reqwest::Client,
    /// Google destinations built (each mints its own first token).
    google_clients: AtomicU64,
    /// Delivery attempts that lasted longer than their claim.
    outlived_claim: AtomicU64,
    /// Orders an attempt carried as it was killed or outlived its claim,
    /// by destination.
    killed_carrying: Mutex<Vec<(&'static str, String)>>,
}

impl Pipeline {
    fn destination(&self, name: &str) -> Result<Arc<dyn Destination>> {
        if name == "google" {
            self.google_clients.fetch_add(1, Ordering::Relaxed);
        }
        let spec = self
            .deps
            .spec
            .destination(name)
            .with_context(|| format!("no destination {name}"))?;
        Ok(dataout::destinations::build(
            spec,
            &self.secrets,
            self.http.clone(),
            Some(self.warehouse.clone()),
            self.deps.clock.clone(),
            self.deps.state.clone(),
        )?)
    }
}

fn delivery_options(destination: &str) -> DeliveryOptions {
    DeliveryOptions {
        max_attempts: attempts_for(destination),
        in_progress_ttl: VISIBILITY,
        ..DeliveryOptions::default()
    }
}

/// Run the scenario and compare. Needs moto (`DATAOUT_TEST_AWS_ENDPOINT`).
pub async fn run(scale: Scale, log: OutcomeLog) -> Result<Outcome> {
    let started = Instant::now();
    // Only this run's outcomes count.
    log.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let sims = start_sims(&scale).await?;
    let servers = sims.proxy_urls.clone();
    let spec = parse_spec(
        &spec_text(&servers[0], &servers[1], &servers[2], &servers[3]),
        "fault-suite.yaml",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    let Adapters {
        state: dynamo_store,
        queue: sqs_queue,
        warehouse,
        aws: aws_faults,
        _files,
    } = adapters(&scale).await?;
    let on = if scale.faults { 1.0 } else { 0.0 };
    let state = Arc::new(FaultyState::new(
        dynamo_store.clone(),
        StoreFaults {
            // DynamoDB throttles below the adapter (the proxy); the
            // embedded store has no such proxy, so the wrapper throttles.
            throttled: if scale.backend == Backend::Embedded {
                0.01 * on
            } else {
                0.0
            },
            answer_lost: 0.01 * on,
        },
        scale.seed + 3,
    ));
    let queue = Arc::new(FaultyQueue::new(
        sqs_queue.clone(),
        QueueFaults {
            ack_lost: 0.02 * on,
            send_refused: 0.01 * on,
            send_answer_lost: 0.01 * on,
        },
        scale.seed + 4,
    ));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ct = ClevertapSimConfig::default();
    let secrets = MapSecrets::default()
        .with("CIO_APP_API_KEY", CIO_KEY)
        .with("CT_ACCOUNT", &ct.account_id)
        .with("CT_PASSCODE", &ct.passcode)
        .with("META_TOKEN", DEFAULT_ACCESS_TOKEN)
        .with(
            "GOOGLE_KEY",
            &dataout_sim::google_oauth::test_service_account_json(&format!("{}/token", servers[2])),
        )
        .with("HOOK_SECRET", WEBHOOK_SECRET);
    let pipeline = Arc::new(Pipeline {
        deps: Deps {
            spec: Arc::new(spec),
            state: state.clone(),
            queue: queue.clone(),
            clock,
        },
        state: state.clone(),
        queue: queue.clone(),
        secrets,
        warehouse: warehouse.clone(),
        google_clients: AtomicU64::new(0),
        outlived_claim: AtomicU64::new(0),
        killed_carrying: Mutex::default(),
        // The deliver Lambda's client: every request bounded in time.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?,
    });

    // Delivery workers, and the killer that aborts one at random now and then.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Workers = Arc::new(Mutex::new(Vec::new()));
    for name in DESTINATIONS {
        for _ in 0..scale.workers {
            let in_flight = InFlight::default();
            let h = tokio::spawn(worker(
                pipeline.clone(),
                name,
                stop.clone(),
                in_flight.clone(),
            ));
            workers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((name, h, in_flight));
        }
    }
    let kills = Arc::new(AtomicU64::new(0));
    let chaos_stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (workers, pipeline, stop, chaos_stop, kills) = (
            workers.clone(),
            pipeline.clone(),
            stop.clone(),
            chaos_stop.clone(),
            kills.clone(),
        );
        let seed = scale.seed + 5;
        let faults = scale.faults;
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            while faults && !chaos_stop.load(Ordering::SeqCst) {
                let wait = rng.random_range(300..1_500);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let killed = {
                    let mut w = workers.lock().unwrap_or_else(|e| e.into_inner());
                    if w.is_empty() {
                        continue;
                    }
                    let i = rng.random_range(0..w.len());
                    let name = w[i].0;
                    let fresh_in_flight = InFlight::default();
                    let fresh = tokio::spawn(worker(
                        pipeline.clone(),
                        name,
                        stop.clone(),
                        fresh_in_flight.clone(),
                    ));
                    let in_flight = std::mem::replace(&mut w[i].2, fresh_in_flight);
                    let killed = std::mem::replace(&mut w[i].1, fresh);
                    killed.abort();
                    // What it carried as it was aborted (it may have just
                    // finished: an allowance, never a hidden duplicate).
                    let carried = in_flight.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    pipeline
                        .killed_carrying
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(carried.into_iter().map(|o| (name, o)));
                    killed
                };
                // Counted once the task is known to have ended cancelled.
                let kills = kills.clone();
                tokio::spawn(async move {
                    if killed.await.is_err_and(|e| e.is_cancelled()) {
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        })
    };
    // Meta's ad-account rate limit (80003), in three episodes of a few
    // refused calls: each says the account is at 100 % of its quota, and the
    // last one that access comes back in a minute.
    let bursts = {
        let (meta, chaos_stop) = (sims.meta.clone(), chaos_stop.clone());
        let episodes: &[u64] = if scale.faults { &[0, 0, 1] } else { &[] };
        tokio::spawn(async move {
            let mut n = 0u64;
            for &minutes in episodes {
                tokio::time::sleep(Duration::from_secs(25)).await;
                if chaos_stop.load(Ordering::SeqCst) {
                    break;
                }
                meta.fail_next(3, MetaFault::AudienceRateLimitFor { minutes });
                n += 1;
            }
            n
        })
    };

    // The webhook receiver down for a while: jobs of the webhook
    // destination (two attempts) land in the dead-letter queue.
    let outage = {
        let (hook, chaos_stop, faults) = (sims.hook.clone(), chaos_stop.clone(), scale.faults);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            if faults && !chaos_stop.load(Ordering::SeqCst) {
                hook.fail_next(40, 503);
            }
        })
    };

    // Realtime webhooks, each sender with its own people (a person's
    // changes stay in order, as Customer.io sends them).
    let (webhooks, realtime_truth) = realtime_plan(&scale);
    let mut history = History {
        webhooks: webhooks.clone(),
        ..History::default()
    };
    let cfg = Arc::new(intake_config());
    let attempts = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for s in 0..scale.senders {
        let mine: Vec<Webhook> = webhooks
            .iter()
            .filter(|w| w.person % scale.senders == s)
            .cloned()
            .collect();
        let (pipeline, cfg, attempts) = (pipeline.clone(), cfg.clone(), attempts.clone());
        senders.push(tokio::spawn(async move {
            for w in &mine {
                let n = send_webhook(&pipeline.deps, &cfg, w).await?;
                attempts.fetch_add(n as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }

    // A line every 15 s, so a slow run shows where it is.
    let progress = {
        let (queue, attempts, chaos_stop) =
            (sqs_queue.clone(), attempts.clone(), chaos_stop.clone());
        let total = webhooks.len();
        tokio::spawn(async move {
            let t0 = Instant::now();
            while !chaos_stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(15)).await;
                eprintln!(
                    "faults: {:>4.0} s, webhook attempts {} (of {total} webhooks), queues: {}",
                    t0.elapsed().as_secs_f64(),
                    attempts.load(Ordering::Relaxed),
                    depths(&queue).await
                );
            }
        })
    };

    // Batch runs meanwhile: the first, then a churn and a run per round.
    let source = AppApiClient::new(
        AppApiConfig {
            base_url: Some(sims.cio.base_url().to_string()),
            region: Region::Us,
            ..AppApiConfig::default()
        },
        &pipeline.secrets,
        reqwest::Client::new(),
    )?;
    history.start_round(&sims);
    let first_round = batch_round(&pipeline, &source).await?;
    eprintln!(
        "faults: first batch runs done at {:.0} s ({first_round} changes)",
        started.elapsed().as_secs_f64()
    );
    for round in 0..scale.churn_rounds {
        churn(&sims, &scale, round);
        history.start_round(&sims);
        batch_round(&pipeline, &source).await?;
        eprintln!(
            "faults: batch round {} done at {:.0} s",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    for s in senders {
        s.await??;
    }
    let generated = started.elapsed();
    eprintln!(
        "faults: every change made at {:.0} s; draining",
        generated.as_secs_f64()
    );

    // Drain: wait until every queue and dead-letter queue is empty, bringing
    // dead letters back (the operator's `dataout redrive`).
    let drain_started = Instant::now();
    let mut redriven = 0u64;
    let mut quiet_since: Option<Instant> = None;
    loop {
        if drain_started.elapsed() > Duration::from_secs(900) {
            bail!(
                "the queues did not drain within 15 minutes: {}",
                depths(&sqs_queue).await
            );
        }
        let mut busy = false;
        for name in DESTINATIONS {
            let d = sqs_queue.depth(name).await?;
            if d.dead > 0 {
                redriven += sqs_queue.redrive(name).await?;
            }
            busy |= d.visible + d.in_flight + d.dead > 0;
        }
        busy |= sims.google.pending_count() > 0 || sims.meta.pending_changes() > 0;
        if busy {
            quiet_since = None;
        } else if quiet_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    chaos_stop.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    killer.abort();
    progress.abort();
    outage.abort();
    let bursts = bursts.await.unwrap_or(0);
    for (_, h, _) in workers.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        h.abort();
    }
    // Read the results without faults: Google's last request statuses, then state.
    state.set_enabled(false);
    queue.set_enabled(false);
    if let Some(aws) = &aws_faults {
        aws.set_plan(AwsFaultPlan::default());
    }
    for (_, p) in &sims.proxies {
        p.set_plan(FaultPlan::default());
    }
    let google = pipeline.destination("google")?;
    for _ in 0..60 {
        let s = google.settle().await?;
        if s.pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained = drain_started.elapsed();
    // Count batch changes from every finished run: a run whose last
    // checkpoint's answer was lost is followed by another that finds nothing
    // to do, so the last run alone undercounts.
    let mut batch_changes = 0;
    let mut batch_runs = 0;
    for (export, _) in BATCH {
        for run in dynamo_store.list_runs(export, 1_000).await? {
            if run.status == RunStatus::Finished {
                batch_runs += 1;
                batch_changes += run.stats.adds + run.stats.removes;
            }
        }
    }

    let mut out = Outcome {
        changes: webhooks.len() as u64 + batch_changes,
        webhooks: webhooks.len() as u64,
        ..Outcome::default()
    };
    let rejections = log.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    compare(
        &sims,
        &scale,
        &pipeline,
        &dynamo_store,
        &warehouse,
        &history,
        &realtime_truth,
        &rejections,
        &mut out,
    )
    .await?;

    let observed = floors::Observed {
        proxies: sims.proxies.iter().map(|(n, p)| (*n, p.counts())).collect(),
        aws: aws_faults.as_ref().map(|a| a.counts()),
        store: state.counts(),
        queue: queue.counts(),
        workers_killed: kills.load(Ordering::Relaxed),
        meta_80003: sims
            .meta
            .requests()
            .iter()
            .filter(|r| r.error_code == Some(80003))
            .count() as u64,
        google_tokens: sims.google.authority().grants().len() as u64,
        google_clients: pipeline.google_clients.load(Ordering::Relaxed),
        clevertap_unprocessed: sims.clevertap.counters().unprocessed_injected,
        google_failed_requests: sims.google.failed_request_count() as u64,
        hook_outage: sims.hook.counters().injected,
        redriven,
    };
    floors::check(scale.faults, &observed, &mut out);
    let sc = state.counts();
    let qc = queue.counts();
    out.figures.push(format!(
        "{} changes ({} membership webhooks, {} order events, {} batch adds and removes in {} finished runs of {} rounds) in {:.1} s, drained in {:.1} s more",
        out.changes,
        webhooks.iter().filter(|w| w.order.is_none()).count(),
        webhooks.iter().filter(|w| w.order.is_some()).count(),
        batch_changes,
        batch_runs,
        scale.churn_rounds + 1,
        generated.as_secs_f64(),
        drained.as_secs_f64()
    ));
    out.figures.push(format!(
        "webhook attempts {} for {} webhooks (retried after injected failures)",
        attempts.load(Ordering::Relaxed),
        webhooks.len()
    ));
    if let Some(ac) = observed.aws {
        out.figures.push(format!(
            "DynamoDB: {} requests, {} throttled, {} transactions cancelled for capacity; S3: {} requests, {} SlowDown, {} InternalError after the write",
            ac.dynamodb_requests, ac.dynamodb_throttled, ac.transactions_cancelled, ac.s3_requests, ac.s3_slow_downs, ac.s3_errors_after_apply
        ));
    }
    out.figures.push(format!(
        "state store ({:?}): {} calls, {} throttled by the wrapper, {} answers lost after the write; queue: {} acks lost, {} sends refused, {} send answers lost",
        scale.backend, sc.calls, sc.throttled, sc.answers_lost, qc.acks_lost, qc.sends_refused, qc.send_answers_lost
    ));
    for (name, p) in &sims.proxies {
        let c = p.counts();
        out.figures.push(format!(
            "{name}: {} requests, {} 503, {} 500 after applying, {} 429, {} held past the timeout",
            c.total, c.server_errors, c.server_errors_after_apply, c.rate_limited, c.timeouts
        ));
    }
    out.figures.push(format!(
        "workers killed {}, delivery attempts that outlived their claim {}, Meta answered 80003 {} times in {bursts} bursts, Google minted {} tokens for {} clients and ended {} requests PARTIAL_SUCCESS or FAILED, webhook receiver down for {} requests, dead-lettered jobs redriven {redriven}, CleverTap records answered unprocessed {}",
        observed.workers_killed,
        pipeline.outlived_claim.load(Ordering::Relaxed),
        observed.meta_80003,
        observed.google_tokens,
        observed.google_clients,
        observed.google_failed_requests,
        observed.hook_outage,
        observed.clevertap_unprocessed
    ));
    Ok(out)
}

async fn depths(queue: &Arc<dyn JobQueue>) -> String {
    let mut s = Vec::new();
    for name in DESTINATIONS {
        match queue.depth(name).await {
            Ok(d) => s.push(format!(
                "{name} visible {} in flight {} dead {}",
                d.visible, d.in_flight, d.dead
            )),
            Err(e) => s.push(format!("{name}: {e}")),
        }
    }
    s.join("; ")
}
