//! Google conversions end to end through the real delivery pipeline: event
//! jobs as intake enqueues them (one per event, id `event:<event id>`) on the
//! embedded queue and state store → `deliver` → the `google_data_manager`
//! destination → the Data Manager simulator's `events:ingest`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dataout::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::destinations::{self, Destination};
use dataout::domain::config::parse_spec;
use dataout::domain::model::{
    counter, CounterScope, DeliveryJob, DeliveryOp, EventPayload, Identifiers, OpKind, PersonKey,
};
use dataout::pipeline::deliver::{drain_once, DeliveryOptions};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, MapSecrets, SystemClock};
use dataout_sim::google_dm::{DataManagerSim, DataManagerSimConfig};
use dataout_sim::google_oauth::test_service_account_json;
use dataout_sim::RunningSim;
use tempfile::TempDir;

const ACCOUNT: &str = "1234567890";
const ACTION: &str = "555000111";
const EXPORT: &str = "purchases";

struct Setup {
    _dir: TempDir,
    _running: RunningSim,
    sim: DataManagerSim,
    deps: Deps,
    dest: Arc<dyn Destination>,
}

async fn setup() -> Setup {
    let (running, sim) = DataManagerSim::start(DataManagerSimConfig {
        processing_delay: Duration::ZERO,
        ..DataManagerSimConfig::default()
    })
    .await
    .unwrap();
    sim.create_conversion_action(ACCOUNT, ACTION);
    let base = running.base_url.clone();
    let yaml = format!(
        r#"version: 1
destinations:
  google:
    kind: google_data_manager
    base_url: {base}
    token_url: {base}/token
    operating_account_id: "{ACCOUNT}"
    consent_ad_user_data: granted
    consent_ad_personalization: granted
    service_account_key_env: GOOGLE_SA_KEY
    status_poll_after: "0"
exports:
  {EXPORT}:
    source: {{events: [order_placed]}}
    mode: conversions
    cadence: {{realtime: true}}
    identity: {{golden: email, fallbacks: [phone]}}
    destinations:
      google: {{audience: "{ACTION}"}}
events:
  order_placed:
    properties: {{order_id: , total: number, currency: }}
    value: total
    currency: currency
    order_id: order_id
"#
    );
    let spec = parse_spec(&yaml, "inline").unwrap();
    let dir = tempfile::tempdir().unwrap();
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
        clock: clock.clone(),
    };
    let secrets = MapSecrets::default().with(
        "GOOGLE_SA_KEY",
        &test_service_account_json(&format!("{base}/token")),
    );
    let dest = destinations::build(
        deps.spec.destination("google").unwrap(),
        &secrets,
        reqwest::Client::new(),
        None,
        clock,
        deps.state.clone(),
    )
    .unwrap();
    Setup {
        _dir: dir,
        _running: running,
        sim,
        deps,
        dest,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The job intake enqueues for one `order_placed` event (order `order`).
fn job(order: &str, value: Option<f64>) -> DeliveryJob {
    let email = format!("{order}@example.com");
    DeliveryJob {
        replace: false,
        replace_from: None,
        job_id: format!("event:ev-{order}"),
        export: EXPORT.into(),
        destination: "google".into(),
        run_id: None,
        created_at: now(),
        config_hash: String::new(),
        attempt: 0,
        ops: vec![DeliveryOp {
            op: OpKind::Event,
            person_key: PersonKey(format!("id:{email}")),
            ids: Identifiers {
                email: Some(email),
                ..Identifiers::default()
            },
            audience: ACTION.into(),
            tier: None,
            attributes: Default::default(),
            event: Some(EventPayload {
                event_id: format!("ev-{order}"),
                name: "order_placed".into(),
                data: Default::default(),
                value,
                currency: Some("EUR".into()),
                order_id: Some(order.to_string()),
            }),
            source_ts: now() - 120_000,
            intake_ts: now() - 60_000,
        }],
    }
}

fn jobs(n: usize, prefix: &str) -> Vec<DeliveryJob> {
    (0..n)
        .map(|i| job(&format!("{prefix}-{i}"), Some(10.0 + i as f64)))
        .collect()
}

impl Setup {
    /// Deliver until the queue holds nothing visible or in flight.
    async fn deliver_all(&self) {
        let opts = DeliveryOptions::default();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (got, _) = drain_once(&self.deps, &self.dest, &opts, 5_000)
                .await
                .unwrap();
            if got == 0 {
                let depth = self.deps.queue.depth("google").await.unwrap();
                if depth.visible == 0 && depth.in_flight == 0 {
                    assert_eq!(depth.dead, 0, "{depth:?}");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(Instant::now() < deadline, "the google queue never drained");
        }
    }

    async fn enqueue(&self, jobs: &[DeliveryJob]) {
        self.deps.queue.send("google", jobs).await.unwrap();
    }

    async fn counter(&self, name: &str) -> i64 {
        let c = self
            .deps
            .state
            .get_counters(&CounterScope::delivery(EXPORT, "google"))
            .await
            .unwrap();
        c.get(name).copied().unwrap_or(0)
    }

    fn events_request_sizes(&self) -> Vec<usize> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.path == "/v1/events:ingest" && r.status == 200)
            .map(|r| r.members)
            .collect()
    }
}

#[tokio::test]
async fn more_than_2000_conversions_go_in_requests_of_2000_and_all_are_accepted() {
    let s = setup().await;
    s.enqueue(&jobs(2_100, "big")).await;
    s.deliver_all().await;
    let sizes = s.events_request_sizes();
    assert!(sizes.iter().all(|n| *n <= 2_000), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 2_100, "{sizes:?}");
    assert!(
        sizes.contains(&2_000),
        "the batch was filled and cut at 2,000: {sizes:?}"
    );
    assert_eq!(s.sim.conversions(ACCOUNT, ACTION).len(), 2_100);
    assert_eq!(s.counter(counter::ACCEPTED).await, 2_100);
    assert!(s.sim.duplicate_events().is_empty());
}

#[tokio::test]
async fn an_event_without_value_is_invalid_and_never_reaches_google_while_its_neighbours_land() {
    let s = setup().await;
    let mut batch = jobs(4, "n");
    batch.insert(2, job("no-value", None));
    s.enqueue(&batch).await;
    s.deliver_all().await;
    assert_eq!(s.sim.times_received(ACCOUNT, ACTION, "no-value"), 0);
    assert_eq!(s.sim.conversions(ACCOUNT, ACTION).len(), 4);
    assert_eq!(s.counter(counter::INVALID).await, 1);
    assert_eq!(s.counter(counter::ACCEPTED).await, 4);
    assert_eq!(s.counter(counter::REJECTED).await, 0);
    assert!(
        s.sim.requests().iter().all(|r| r.status == 200),
        "no request was refused"
    );
}

#[tokio::test]
async fn redelivering_every_conversion_job_twice_yields_each_transaction_once() {
    let s = setup().await;
    let first = jobs(50, "r");
    s.enqueue(&first).await;
    s.deliver_all().await;
    // The same jobs again, twice (a queue redelivering them): the job claim
    // catches them.
    s.enqueue(&first).await;
    s.enqueue(&first).await;
    s.deliver_all().await;
    // And the same events under new job ids (a replay once the job claims
    // have expired): the destination's record of accepted conversions
    // catches them.
    let replay: Vec<DeliveryJob> = first
        .iter()
        .map(|j| DeliveryJob {
            job_id: format!("{}:replay", j.job_id),
            ..j.clone()
        })
        .collect();
    s.enqueue(&replay).await;
    s.deliver_all().await;
    for i in 0..50 {
        let tx = format!("r-{i}");
        assert_eq!(s.sim.times_received(ACCOUNT, ACTION, &tx), 1, "{tx}");
    }
    assert!(s.sim.duplicate_events().is_empty());
    assert_eq!(s.sim.conversions(ACCOUNT, ACTION).len(), 50);
    assert_eq!(s.counter(counter::JOBS_DUPLICATE).await, 100);
}

#[tokio::test]
async fn a_500_after_google_accepted_is_retried_and_each_transaction_counts_once() {
    let s = setup().await;
    s.sim.answer_500_after_accepting(1);
    s.enqueue(&jobs(20, "f")).await;
    s.deliver_all().await;
    // Google counts each conversion once: the retry carried the same
    // transaction ids (see google_dm_events.rs on unknown outcomes).
    assert_eq!(s.sim.conversions(ACCOUNT, ACTION).len(), 20);
    for i in 0..20 {
        let tx = format!("f-{i}");
        assert_eq!(s.sim.times_received(ACCOUNT, ACTION, &tx), 2, "{tx}");
    }
    assert_eq!(s.counter(counter::ACCEPTED).await, 20);
    // Once acknowledged, never again.
    let replay: Vec<DeliveryJob> = jobs(20, "f")
        .into_iter()
        .map(|j| DeliveryJob {
            job_id: format!("{}:again", j.job_id),
            ..j
        })
        .collect();
    s.enqueue(&replay).await;
    s.deliver_all().await;
    assert_eq!(s.sim.duplicate_events().len(), 20);
}
