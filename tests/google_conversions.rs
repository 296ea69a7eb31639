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
    properties: {{order_id: , total: number, currency: , gclid: , gbraid: , wbraid: }}
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
        repair: false,
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

/// The same job, its event carrying property `key` = `value`.
fn with_property(mut job: DeliveryJob, key: &str, value: &str) -> DeliveryJob {
    for op in &mut job.ops {
        if let Some(e) = op.event.as_mut() {
            e.data.insert(key.into(), serde_json::json!(value));
        }
    }
    job
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
    // transaction ids (see shared/src/destinations/google_data_manager/events.rs on unknown outcomes).
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

#[tokio::test]
async fn an_order_with_a_gclid_property_reaches_google_as_a_click_conversion() {
    let s = setup().await;
    s.enqueue(&[
        with_property(job("g-1", Some(12.0)), "gclid", "Cj0KCQjw-g-1"),
        job("plain-1", Some(3.0)),
    ])
    .await;
    s.deliver_all().await;
    let got = s.sim.conversions(ACCOUNT, ACTION);
    let clicks: Vec<(&str, Option<&str>)> = got
        .iter()
        .map(|c| (c.transaction_id.as_str(), c.gclid.as_deref()))
        .collect();
    assert_eq!(clicks.len(), 2);
    assert!(
        clicks.contains(&("g-1", Some("Cj0KCQjw-g-1"))),
        "{clicks:?}"
    );
    assert!(clicks.contains(&("plain-1", None)), "{clicks:?}");
    assert_eq!(s.counter(counter::ACCEPTED).await, 2);
}

#[tokio::test]
async fn lead_conversions_to_an_account_without_enhanced_conversions_for_leads_are_rejected_not_retried(
) {
    let s = setup().await;
    s.sim.set_enhanced_conversions_for_leads(ACCOUNT, false);
    let mut batch = jobs(3, "lead");
    batch.push(with_property(
        job("click-1", Some(5.0)),
        "gclid",
        "Cj0-click-1",
    ));
    batch.push(with_property(
        job("click-2", Some(6.0)),
        "wbraid",
        "Ck-click-2",
    ));
    s.enqueue(&batch).await;
    // Drains: the leads are final (rejected), nothing dead-lettered.
    s.deliver_all().await;
    assert_eq!(s.counter(counter::REJECTED).await, 3);
    assert_eq!(s.counter(counter::ACCEPTED).await, 2);
    let received: Vec<String> = s
        .sim
        .received_events(ACCOUNT, ACTION)
        .into_iter()
        .map(|c| c.transaction_id)
        .collect();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(
        received.iter().all(|t| t.starts_with("click-")),
        "{received:?}"
    );
    let refused = s
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/events:ingest" && r.status == 400)
        .count();
    assert!(
        (1..=3).contains(&refused),
        "refused once per delivery at most, never retried: {refused}"
    );
}
