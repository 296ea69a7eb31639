//! Events into the warehouse `events` table and to the signed webhook,
//! through the local pipeline: delivery jobs of event ops (reporting metrics
//! such as `email.opened`, and an `order_placed` event) are enqueued for both
//! destinations, delivered, then delivered again. Rows land in the partition
//! of their event's UTC day, exactly once; the webhook receiver gets each
//! event once, signed. The same events written to S3 (moto) land the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use dataout::adapters::local_fs::LocalDirStore;
use dataout::adapters::s3::S3ObjectStore;
use dataout::destinations::warehouse::events::decode_rows;
use dataout::destinations::warehouse::WarehouseDestination;
use dataout::destinations::Destination;
use dataout::domain::config::parse_spec;
use dataout::domain::identity::sha256_hex;
use dataout::domain::model::{
    DeliveryJob, DeliveryOp, EventPayload, Identifiers, Millis, OpKind, PersonKey,
};
use dataout::local::LocalRuntime;
use dataout::pipeline::deliver::{drain_once, DeliveryTotals};
use dataout::ports::{MapSecrets, ObjectStore, SystemClock};
use dataout_cli::demo::intake_config;
use dataout_integration_tests::{test_sdk_config, unique};
use dataout_sim::webhook::{self as hook_sim, WebhookSimConfig, WebhookState};
use dataout_sim::RunningSim;
use serde_json::{json, Map, Value};

const SECRET: &str = "test-webhook-secret";
/// 2026-11-30T23:59:59.500Z, half a second before a UTC midnight.
const BEFORE_MIDNIGHT: Millis = 1_796_083_199_500;

fn spec_yaml(hook_url: &str) -> String {
    format!(
        r#"
version: 1
destinations:
  lake:
    kind: warehouse
    location: ./lake
    batch_size: 3
  hook:
    kind: webhook
    url: https://analytics.invalid/hooks/dataout
    base_url: {hook_url}
    allow_private_network: true
    secret_env: HOOK_SECRET
    batch_size: 2
exports:
  engagement:
    source: {{events: [email.opened, email.clicked, order_placed]}}
    mode: events
    cadence: {{realtime: true}}
    identity:
      golden: id
      fallbacks: [email]
    destinations:
      lake:
        audience: engagement_events
      hook:
        audience: engagement
events:
  email.opened:
    properties: {{campaign_id: , delivery_id: , object_type: , metric: }}
  email.clicked:
    properties: {{campaign_id: , delivery_id: , object_type: , metric: }}
  order_placed:
    required: [order_id, total, currency]
    properties: {{order_id: , total: number, currency: }}
    value: total
    currency: currency
    order_id: order_id
"#
    )
}

/// One event: (event id, name, person id or none, email, event time).
type Spec = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    Millis,
);

fn events() -> Vec<Spec> {
    vec![
        (
            "ev_open_1",
            "email.opened",
            Some("u1"),
            "Ann@Example.com",
            BEFORE_MIDNIGHT,
        ),
        (
            "ev_open_2",
            "email.opened",
            Some("u2"),
            "bob@example.com",
            BEFORE_MIDNIGHT + 600,
        ),
        (
            "ev_click_1",
            "email.clicked",
            Some("u1"),
            "Ann@Example.com",
            BEFORE_MIDNIGHT + 60_000,
        ),
        (
            "ord_1",
            "order_placed",
            Some("u2"),
            "bob@example.com",
            BEFORE_MIDNIGHT + 120_000,
        ),
        // A person known by email only (an anonymous-id workspace).
        (
            "ev_open_3",
            "email.opened",
            None,
            " Cy@Example.com ",
            BEFORE_MIDNIGHT + 900,
        ),
    ]
}

fn op(spec: &Spec, audience: &str) -> DeliveryOp {
    let (event_id, name, id, email, ts) = *spec;
    let ids = Identifiers {
        id: id.map(String::from),
        email: Some(email.to_string()),
        cio_id: None,
        phone: None,
    };
    let mut data = Map::new();
    let order = name == "order_placed";
    if order {
        data.insert("order_id".into(), json!("A-1001"));
        data.insert("total".into(), json!(150.0));
        data.insert("currency".into(), json!("USD"));
    } else {
        let (object_type, metric) = name.split_once('.').unwrap_or((name, ""));
        data.insert("object_type".into(), json!(object_type));
        data.insert("metric".into(), json!(metric));
        data.insert("campaign_id".into(), json!(7));
        data.insert("delivery_id".into(), json!(format!("dlv_{event_id}")));
    }
    DeliveryOp {
        op: OpKind::Event,
        person_key: ids.person_key().unwrap_or(PersonKey("none".into())),
        ids,
        audience: audience.into(),
        tier: None,
        attributes: Default::default(),
        event: Some(EventPayload {
            event_id: event_id.into(),
            name: name.into(),
            data,
            value: order.then_some(150.0),
            currency: order.then(|| "USD".into()),
            order_id: order.then(|| "A-1001".into()),
        }),
        source_ts: ts,
        intake_ts: ts + 2_000,
    }
}

/// One job per (event, export, destination), as intake makes them.
fn jobs(destination: &str, audience: &str) -> Vec<DeliveryJob> {
    events()
        .iter()
        .map(|e| DeliveryJob {
            replace: false,
            replace_from: None,
            repair: false,
            job_id: format!("event:{}", e.0),
            export: "engagement".into(),
            destination: destination.into(),
            run_id: None,
            created_at: e.4 + 2_000,
            config_hash: "test".into(),
            attempt: 0,
            ops: vec![op(e, audience)],
        })
        .collect()
}

fn open_runtime(dir: &Path, state: &str, hook_url: &str) -> Result<LocalRuntime> {
    let spec = parse_spec(&spec_yaml(hook_url), "events_warehouse.yaml")
        .map_err(|e| anyhow::anyhow!("spec: {e:?}"))?;
    let secrets = MapSecrets::default().with("HOOK_SECRET", SECRET);
    Ok(LocalRuntime::open(
        spec,
        &dir.join(state),
        &secrets,
        Arc::new(SystemClock),
        intake_config(),
        dir,
    )?)
}

/// Enqueue `jobs` on `destination`'s queue and deliver until it is empty,
/// receiving `per_receive` jobs at a time.
async fn deliver(
    rt: &LocalRuntime,
    destination: &str,
    jobs: &[DeliveryJob],
    per_receive: usize,
) -> Result<DeliveryTotals> {
    rt.deps.queue.send(destination, jobs).await?;
    let dest = rt
        .destinations
        .get(destination)
        .context("destination built")?;
    let mut sum = DeliveryTotals::default();
    for _ in 0..100 {
        let (received, t) = drain_once(&rt.deps, dest, &rt.delivery, per_receive).await?;
        if received == 0 {
            return Ok(sum);
        }
        sum.jobs_done += t.jobs_done;
        sum.jobs_duplicate += t.jobs_duplicate;
        sum.jobs_retry += t.jobs_retry;
        sum.accepted += t.accepted;
        sum.invalid += t.invalid;
        sum.unmatched += t.unmatched;
        sum.rejected += t.rejected;
    }
    anyhow::bail!("queue {destination} never drained")
}

/// Every row of the table under `store`, with the key it was read from.
async fn table(store: &dyn ObjectStore) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for key in store.list("events/").await? {
        let body = store.get(&key).await?.context("listed object")?;
        for row in decode_rows(&body)? {
            out.push((key.clone(), row));
        }
    }
    Ok(out)
}

/// Rows land under `events/export=engagement/dt=<event day>/`, one per event.
fn check_table(rows: &[(String, Value)]) -> Result<()> {
    let mut by_event: BTreeMap<String, usize> = BTreeMap::new();
    for (key, row) in rows {
        let id = row["event_id"].as_str().context("event_id")?;
        *by_event.entry(id.to_string()).or_default() += 1;
        let day = &row["event_time"].as_str().context("event_time")?[..10];
        ensure!(
            key.starts_with(&format!("events/export=engagement/dt={day}/part-"))
                && key.ends_with(".jsonl.gz"),
            "{id} in {key}"
        );
    }
    let expected: BTreeMap<String, usize> = events().iter().map(|e| (e.0.to_string(), 1)).collect();
    ensure!(by_event == expected, "rows per event: {by_event:?}");
    Ok(())
}

fn row<'a>(rows: &'a [(String, Value)], event_id: &str) -> Result<&'a Value> {
    rows.iter()
        .map(|(_, r)| r)
        .find(|r| r["event_id"] == event_id)
        .with_context(|| format!("row of {event_id}"))
}

struct Hook {
    _sim: RunningSim,
    state: Arc<WebhookState>,
    url: String,
}

async fn hook() -> Result<Hook> {
    let (sim, state) = hook_sim::start(WebhookSimConfig::default()).await?;
    let url = format!("{}/events", sim.base_url);
    Ok(Hook {
        _sim: sim,
        state,
        url,
    })
}

#[tokio::test]
async fn events_land_once_in_their_day_partitions_and_reach_the_webhook_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let hook = hook().await?;
    let rt = open_runtime(dir.path(), "state", &hook.url)?;

    // Every job delivered, then every job delivered again.
    for pass in 0..2 {
        let lake = deliver(&rt, "lake", &jobs("lake", "engagement_events"), 10).await?;
        let sent = deliver(&rt, "hook", &jobs("hook", "engagement"), 10).await?;
        if pass == 0 {
            assert_eq!((lake.accepted, lake.jobs_done), (5, 5), "{lake:?}");
            assert_eq!((sent.accepted, sent.jobs_done), (5, 5), "{sent:?}");
        } else {
            assert_eq!((lake.accepted, lake.jobs_duplicate), (0, 5), "{lake:?}");
            assert_eq!((sent.accepted, sent.jobs_duplicate), (0, 5), "{sent:?}");
        }
    }

    let store = LocalDirStore::new(dir.path().join("lake"));
    let rows = table(&store).await?;
    check_table(&rows)?;
    let days: BTreeSet<&str> = rows
        .iter()
        .filter_map(|(k, _)| k.split('/').nth(2))
        .collect();
    assert_eq!(days, BTreeSet::from(["dt=2026-11-30", "dt=2026-12-01"]));

    let opened = row(&rows, "ev_open_1")?;
    assert_eq!(opened["event_name"], "email.opened");
    assert_eq!(opened["object_type"], "email");
    assert_eq!(opened["metric"], "opened");
    assert_eq!(opened["event_time"], "2026-11-30T23:59:59.500Z");
    assert_eq!(opened["audience"], "engagement_events");
    assert_eq!(opened["customer_id"], "u1");
    assert_eq!(opened["person_key"], "id:u1");
    assert_eq!(opened["email_sha256"], sha256_hex("ann@example.com"));
    assert_eq!(opened["properties"]["campaign_id"], 7);
    let order = row(&rows, "ord_1")?;
    assert_eq!(order["object_type"], Value::Null);
    assert_eq!(order["value"], 150.0);
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["order_id"], "A-1001");
    let anonymous = row(&rows, "ev_open_3")?;
    assert_eq!(anonymous["customer_id"], Value::Null);
    assert!(anonymous["person_key"]
        .as_str()
        .is_some_and(|k| k.starts_with("email:")));
    for key in store.list("").await? {
        let body = store.get(&key).await?.context("object")?;
        let text = decode_rows(&body)?
            .iter()
            .map(Value::to_string)
            .collect::<String>()
            .to_lowercase();
        assert!(!text.contains("example.com"), "raw email in {key}");
    }

    // The receiver got each event once, signed (unsigned or badly signed
    // deliveries are refused with 401 and never recorded).
    assert_eq!(hook.state.counters().unauthorized, 0);
    let received = hook.state.events();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &received {
        *counts
            .entry(e["event_id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = events().iter().map(|e| (e.0.to_string(), 1)).collect();
    assert_eq!(counts, expected);
    let clicked = received
        .iter()
        .find(|e| e["event_id"] == "ev_click_1")
        .context("clicked")?;
    assert_eq!(clicked["type"], "event");
    assert_eq!(clicked["event_name"], "email.clicked");
    assert_eq!(clicked["metric"], "clicked");
    assert_eq!(clicked["audience"], "engagement");
    assert_eq!(clicked["ids"]["id"], "u1");
    assert_eq!(
        clicked["ids"]["email_sha256"],
        sha256_hex("ann@example.com")
    );
    for d in hook.state.deliveries() {
        assert!(!d.body.to_string().to_lowercase().contains("example.com"));
    }
    Ok(())
}

#[tokio::test]
async fn a_job_whose_claim_was_lost_rewrites_the_same_parts_in_any_batching() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let hook = hook().await?;
    let rt = open_runtime(dir.path(), "state", &hook.url)?;
    deliver(&rt, "lake", &jobs("lake", "engagement_events"), 10).await?;
    let store = LocalDirStore::new(dir.path().join("lake"));
    let mut before = BTreeMap::new();
    for key in store.list("events/").await? {
        before.insert(key.clone(), store.get(&key).await?);
    }
    rt.shutdown().await;
    drop(rt);

    // The idempotency records are gone (another state store): every job is
    // sent again, in the opposite order and two at a time.
    let again = open_runtime(dir.path(), "other-state", &hook.url)?;
    let mut reversed = jobs("lake", "engagement_events");
    reversed.reverse();
    let t = deliver(&again, "lake", &reversed, 2).await?;
    assert_eq!((t.accepted, t.jobs_duplicate), (5, 0), "{t:?}");

    let mut after = BTreeMap::new();
    for key in store.list("events/").await? {
        after.insert(key.clone(), store.get(&key).await?);
    }
    assert_eq!(before.len(), 5);
    assert_eq!(after, before, "same objects, same bytes");
    check_table(&table(&store).await?)
}

#[tokio::test]
async fn events_written_to_s3_land_in_the_same_partitions_once() -> Result<()> {
    let conf = test_sdk_config().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("dataout-events");
    S3ObjectStore::create_bucket(&client, &bucket).await?;
    let store: Arc<dyn ObjectStore> =
        Arc::new(S3ObjectStore::new(client, bucket.clone(), "warehouse/"));
    let dir = tempfile::tempdir()?;
    let hook = hook().await?;
    let rt = open_runtime(dir.path(), "state", &hook.url)?;
    let spec = rt.deps.spec.clone();
    let dest_spec = spec.destination("lake").context("lake")?;
    let export = spec.export("engagement").context("export")?;
    let binding = export.binding("lake").context("binding")?;
    let dest = WarehouseDestination::new(
        "lake".into(),
        dest_spec,
        store.clone(),
        Arc::new(SystemClock),
    );
    let ops: Vec<DeliveryOp> = events()
        .iter()
        .map(|e| op(e, "engagement_events"))
        .collect();
    // Sent whole, then again in other batches.
    dest.send(export, binding, &ops).await?;
    for chunk in ops.rchunks(2) {
        dest.send(export, binding, chunk).await?;
    }
    let rows = table(store.as_ref()).await?;
    check_table(&rows)?;
    let key = &rows[0].0;
    assert!(
        store.locate(key).starts_with(&format!(
            "s3://{bucket}/warehouse/events/export=engagement/dt="
        )),
        "{}",
        store.locate(key)
    );
    Ok(())
}
