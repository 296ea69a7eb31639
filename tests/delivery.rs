//! Delivery's exactly-once rules, one at a time, against the simulators:
//! an op a newer change overtook is not sent; ops a destination asks to
//! retry stay in their job and only they go again; a worker that dies
//! after the destination applied its request but before it settled sends
//! again and counts once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dataout::adapters::overlay::{OverlayStateStore, RecordingQueue};
use dataout::destinations::{Destination, DestinationError, OpOutcome};
use dataout::domain::config::parse_spec;
use dataout::domain::model::{counter, CounterScope, DeliveryOp, Identifiers, OpKind, PersonKey};
use dataout::domain::spec::{DestinationKind, ExportDestination, ExportSpec};
use dataout::pipeline::changes::new_job;
use dataout::pipeline::deliver::{deliver_jobs, DeliveryOptions, Disposition};
use dataout::pipeline::Deps;
use dataout::ports::{JobQueue, ManualClock, MapSecrets};
use dataout_sim::clevertap::{self, ClevertapSimConfig, ClevertapState};
use dataout_sim::meta::{MetaSim, MetaSimConfig, DEFAULT_ACCESS_TOKEN};

const AUDIENCE: &str = "23850000000000555";
const T0: i64 = 1_780_000_000_000;

struct World {
    deps: Deps,
    clock: Arc<ManualClock>,
    queue: Arc<RecordingQueue>,
    meta: MetaSim,
    clevertap: Arc<ClevertapState>,
    secrets: MapSecrets,
    _servers: Vec<dataout_sim::RunningSim>,
}

async fn world() -> World {
    let (meta_server, meta) = MetaSim::start(MetaSimConfig::default()).await.unwrap();
    meta.create_audience(AUDIENCE);
    let ct_config = ClevertapSimConfig {
        // CleverTap's answer time is not what this test is about.
        response_delay: None,
        ..ClevertapSimConfig::default()
    };
    let (ct_server, clevertap) = clevertap::start(ct_config.clone()).await.unwrap();
    let spec = parse_spec(
        &format!(
            r#"version: 1
destinations:
  meta:
    kind: meta_audience
    api_version: v27.0
    ad_account_id: "1234567890"
    access_token_env: META_TOKEN
    base_url: {}
  clevertap:
    kind: clevertap
    region: us1
    account_id_env: CT_ACCOUNT
    passcode_env: CT_PASSCODE
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
      clevertap:
        audience: cio_cart
"#,
            meta_server.base_url, ct_server.base_url
        ),
        "inline",
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let queue = Arc::new(RecordingQueue::new());
    let deps = Deps {
        spec: Arc::new(spec),
        state: Arc::new(OverlayStateStore::in_memory()),
        queue: queue.clone(),
        clock: clock.clone(),
    };
    let secrets = MapSecrets::default()
        .with("META_TOKEN", DEFAULT_ACCESS_TOKEN)
        .with("CT_ACCOUNT", &ct_config.account_id)
        .with("CT_PASSCODE", &ct_config.passcode);
    World {
        deps,
        clock,
        queue,
        meta,
        clevertap,
        secrets,
        _servers: vec![meta_server, ct_server],
    }
}

impl World {
    fn destination(&self, name: &str) -> Arc<dyn Destination> {
        dataout::destinations::build(
            self.deps.spec.destination(name).unwrap(),
            &self.secrets,
            reqwest::Client::new(),
            None,
            self.clock.clone(),
            self.deps.state.clone(),
        )
        .unwrap()
    }

    async fn counters(&self, destination: &str) -> BTreeMap<String, i64> {
        self.deps
            .state
            .get_counters(&CounterScope::delivery("cart", destination))
            .await
            .unwrap()
    }

    /// Enqueue one job of `ops` for `destination` and receive it.
    async fn job(&self, destination: &str, ops: Vec<DeliveryOp>) -> dataout::ports::ReceivedJob {
        let export = self.deps.spec.export("cart").unwrap();
        let job = new_job(&self.deps, export, destination, "test", None, ops);
        self.queue.send(destination, &[job]).await.unwrap();
        let mut got = self.queue.receive(destination, 10).await.unwrap();
        assert_eq!(got.len(), 1);
        got.remove(0)
    }
}

fn op(kind: OpKind, id: &str, audience: &str, source_ts: i64) -> DeliveryOp {
    DeliveryOp {
        op: kind,
        person_key: PersonKey(format!("id:{id}")),
        ids: Identifiers {
            id: Some(id.to_string()),
            email: Some(format!("{id}@example.com")),
            ..Identifiers::default()
        },
        audience: audience.to_string(),
        tier: None,
        attributes: Default::default(),
        event: None,
        source_ts,
        intake_ts: source_ts,
    }
}

/// Apply an enter or exit of `id` to state as intake would.
async fn change(
    w: &World,
    id: &str,
    enter: bool,
    source_ts: i64,
) -> Vec<dataout::domain::model::DeliveryJob> {
    use dataout::domain::model::{ChangeKind, ChangeOrigin, MembershipChange, Person};
    let change = MembershipChange {
        export: "cart".into(),
        person: Person {
            ids: op(OpKind::Add, id, "", 0).ids,
            attributes: Default::default(),
        },
        kind: if enter {
            ChangeKind::Enter
        } else {
            ChangeKind::Exit
        },
        source_ts,
        intake_ts: source_ts,
        origin: ChangeOrigin::Action,
        change_id: format!("{id}-{source_ts}"),
    };
    let (written, _) = dataout::pipeline::changes::apply_one(&w.deps, &change)
        .await
        .unwrap();
    dataout::pipeline::changes::jobs_for_record(&w.deps, &written.unwrap(), None)
}

#[tokio::test]
async fn an_add_retried_after_the_person_left_is_not_sent_and_is_counted_superseded() {
    let w = world().await;
    let meta = w.destination("meta");
    let add = change(&w, "u1", true, T0).await;
    let remove = change(&w, "u1", false, T0 + 1_000).await;
    let pick = |jobs: &[dataout::domain::model::DeliveryJob]| {
        jobs.iter()
            .find(|j| j.destination == "meta")
            .unwrap()
            .clone()
    };
    let (add, remove) = (pick(&add), pick(&remove));
    // The remove is delivered first (the add's first attempt failed).
    w.queue.send("meta", &[remove]).await.unwrap();
    let jobs = w.queue.receive("meta", 10).await.unwrap();
    let (d, _) = deliver_jobs(&w.deps, &meta, &jobs, &DeliveryOptions::default()).await;
    assert_eq!(d, vec![Disposition::Done]);
    w.queue.send("meta", &[add]).await.unwrap();
    let jobs = w.queue.receive("meta", 10).await.unwrap();
    let edits_before = w.meta.request_count();
    let (d, totals) = deliver_jobs(&w.deps, &meta, &jobs, &DeliveryOptions::default()).await;
    assert_eq!(d, vec![Disposition::Done]);
    assert_eq!(totals.requests, 0, "nothing is sent for a superseded op");
    assert_eq!(w.meta.request_count(), edits_before);
    assert!(
        !w.meta.has_member_with(AUDIENCE, "EXTERN_ID", "u1"),
        "the late add would have put u1 back"
    );
    let c = w.counters("meta").await;
    assert_eq!(c.get(counter::SUPERSEDED), Some(&1), "{c:?}");
    assert_eq!(c.get(counter::ACCEPTED), Some(&1), "{c:?}");
}

#[tokio::test]
async fn ops_a_destination_asks_to_retry_stay_in_their_job_and_only_they_are_sent_again() {
    let w = world().await;
    let ct = w.destination("clevertap");
    w.clevertap.fail_records_555("u2", 1);
    let ops = ["u1", "u2", "u3"]
        .map(|id| op(OpKind::Add, id, "cio_cart", T0))
        .to_vec();
    let mut job = w.job("clevertap", ops).await;
    let (d, totals) = deliver_jobs(
        &w.deps,
        &ct,
        std::slice::from_ref(&job),
        &DeliveryOptions::default(),
    )
    .await;
    assert!(matches!(d[..], [Disposition::RetryAfter(_)]), "{d:?}");
    assert_eq!((totals.accepted, totals.jobs_retry), (2, 1));
    assert_eq!(
        w.queue.depth("clevertap").await.unwrap().visible,
        0,
        "no follow-up job"
    );
    let before = w.clevertap.counters().records_received;
    // The same message comes back.
    job.receive_count += 1;
    let (d, totals) = deliver_jobs(&w.deps, &ct, &[job], &DeliveryOptions::default()).await;
    assert_eq!(d, vec![Disposition::Done]);
    assert_eq!(totals.accepted, 1);
    assert_eq!(
        w.clevertap.counters().records_received - before,
        1,
        "only u2 is sent again"
    );
    let c = w.counters("clevertap").await;
    assert_eq!(c.get(counter::ACCEPTED), Some(&3), "{c:?}");
    for id in ["u1", "u2", "u3"] {
        let p = w.clevertap.profile(id).expect("profile");
        assert_eq!(
            p.data.get("cio_cart"),
            Some(&serde_json::Value::Bool(true)),
            "{id}"
        );
    }
}

/// Sends through the real destination, then never returns: a worker that
/// dies after the platform applied its request, before it settled.
struct DiesAfterSending(Arc<dyn Destination>, tokio::sync::mpsc::UnboundedSender<()>);

#[async_trait]
impl Destination for DiesAfterSending {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn kind(&self) -> DestinationKind {
        self.0.kind()
    }
    fn max_batch(&self) -> usize {
        self.0.max_batch()
    }
    async fn send(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        ops: &[DeliveryOp],
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        self.0.send(export, binding, ops).await?;
        let _ = self.1.send(());
        std::future::pending().await
    }
    fn describe_output(&self, export: &ExportSpec, binding: &ExportDestination) -> String {
        self.0.describe_output(export, binding)
    }
}

#[tokio::test]
async fn a_worker_killed_after_the_platform_applied_its_request_sends_again_and_counts_once() {
    let w = world().await;
    let ops = ["u1", "u2"]
        .map(|id| op(OpKind::Add, id, AUDIENCE, T0))
        .to_vec();
    let job = w.job("meta", ops).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let dying: Arc<dyn Destination> = Arc::new(DiesAfterSending(w.destination("meta"), tx));
    let opts = DeliveryOptions {
        in_progress_ttl: Duration::from_secs(30),
        ..DeliveryOptions::default()
    };
    let worker = {
        let (deps, job, opts) = (w.deps.clone(), job.clone(), opts.clone());
        tokio::spawn(async move { deliver_jobs(&deps, &dying, &[job], &opts).await })
    };
    rx.recv().await.expect("the request was sent");
    worker.abort();
    assert!(worker.await.is_err(), "the worker was killed");
    assert_eq!(w.meta.member_count(AUDIENCE), 2, "Meta applied the request");
    assert!(w.counters("meta").await.is_empty(), "nothing was counted");

    // The message comes back; until the dead worker's claim runs out, it waits.
    let meta = w.destination("meta");
    let mut again = job.clone();
    again.receive_count += 1;
    let (d, _) = deliver_jobs(&w.deps, &meta, std::slice::from_ref(&again), &opts).await;
    assert_eq!(d, vec![Disposition::RetryAfter(opts.in_progress_ttl)]);
    w.clock
        .advance(opts.in_progress_ttl + Duration::from_secs(1));
    again.receive_count += 1;
    let (d, totals) = deliver_jobs(&w.deps, &meta, std::slice::from_ref(&again), &opts).await;
    assert_eq!(d, vec![Disposition::Done]);
    assert_eq!(totals.accepted, 2);
    assert_eq!(w.meta.member_count(AUDIENCE), 2, "sent twice, held once");
    // And a redelivery after that is a duplicate, counted as one.
    again.receive_count += 1;
    let (d, totals) = deliver_jobs(&w.deps, &meta, &[again], &opts).await;
    assert_eq!((d, totals.jobs_duplicate), (vec![Disposition::Done], 1));
    let c = w.counters("meta").await;
    assert_eq!(c.get(counter::ACCEPTED), Some(&2), "{c:?}");
    assert_eq!(c.get(counter::SENT), Some(&2), "{c:?}");
    assert_eq!(c.get(counter::JOBS_DUPLICATE), Some(&1), "{c:?}");
}

#[tokio::test]
async fn a_profile_whose_phone_clevertap_refuses_lands_without_it_and_the_field_is_counted_apart() {
    let w = world().await;
    let ct = w.destination("clevertap");
    let mut bad = op(OpKind::Add, "u2", "cio_cart", T0);
    // Not E.164: CleverTap answers 516 and skips the whole record.
    bad.attributes
        .insert("Phone".into(), serde_json::json!("415-555"));
    let ops = vec![op(OpKind::Add, "u1", "cio_cart", T0), bad];
    let job = w.job("clevertap", ops).await;
    let (d, totals) = deliver_jobs(&w.deps, &ct, &[job], &DeliveryOptions::default()).await;
    assert_eq!(d, vec![Disposition::Done]);
    assert_eq!(
        (totals.accepted, totals.rejected, totals.fields_refused),
        (2, 0, 1)
    );
    let c = w.counters("clevertap").await;
    assert_eq!(c.get(counter::ACCEPTED), Some(&2), "{c:?}");
    assert_eq!(c.get(counter::FIELDS_REFUSED), Some(&1), "{c:?}");
    assert_eq!(c.get(counter::REJECTED), None, "{c:?}");
    let u2 = w.clevertap.profile("u2").expect("u2's profile");
    assert_eq!(u2.data["cio_cart"], true);
    assert!(!u2.data.contains_key("Phone"));
}
