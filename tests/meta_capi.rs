//! Meta Conversions API end to end: conversion jobs on the embedded queue →
//! the delivery workers (claims, batching, the destination's limiter) → the
//! Meta simulator's Conversions API, which fails a whole request for one bad
//! event and deduplicates on event_name + event_id. Every assertion reads
//! the simulator's own counts, not only ours.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataout::domain::model::{
    CounterScope, DeliveryJob, DeliveryOp, EventPayload, Identifiers, OpKind, PersonKey,
};
use dataout::domain::spec::{
    ActivationSpec, Cadence, DestinationKind, DestinationSettings, DestinationSpec,
    ExportDestination, ExportMode, ExportSource, ExportSpec, GuardRails, IdKind, IdentitySpec,
};
use dataout::local::LocalRuntime;
use dataout::pipeline::changes::{enqueue, new_job};
use dataout::ports::{MapSecrets, SystemClock};
use dataout_sim::meta::{MetaSim, MetaSimConfig, DEFAULT_ACCESS_TOKEN};
use tempfile::TempDir;

const PIXEL: &str = "555000111";
const DEST: &str = "meta_capi";
const EXPORT: &str = "purchases";
const DAY_MS: i64 = 24 * 3600 * 1000;

fn spec(base_url: &str) -> ActivationSpec {
    let binding = ExportDestination {
        destination: DEST.into(),
        audience: "Purchase".into(),
        tier_audiences: BTreeMap::new(),
        keys: Vec::new(),
    };
    let export = ExportSpec {
        name: EXPORT.into(),
        source: ExportSource::Events {
            names: vec!["order_placed".into()],
        },
        mode: ExportMode::Conversions,
        cadence: Cadence {
            realtime: true,
            every_minutes: None,
        },
        identity: IdentitySpec {
            golden: IdKind::Id,
            fallbacks: vec![IdKind::Email, IdKind::Phone],
            default_phone_region: Some("US".into()),
        },
        attributes: Vec::new(),
        tiers: Vec::new(),
        exit_on: Vec::new(),
        suppress: Vec::new(),
        destinations: vec![binding],
        guard_rails: GuardRails::default(),
        test_profiles: Vec::new(),
    };
    let dest = DestinationSpec {
        name: DEST.into(),
        kind: DestinationKind::MetaConversions,
        base_url: Some(base_url.into()),
        batch_size: 1000,
        max_concurrency: 2,
        max_requests_per_second: Some(50.0),
        max_attempts: 5,
        settings: DestinationSettings::MetaConversions {
            api_version: "v27.0".into(),
            pixel_id: PIXEL.into(),
            access_token_env: "META_CAPI_TOKEN".into(),
            action_source: "system_generated".into(),
            test_event_code_env: None,
        },
    };
    ActivationSpec {
        version: 1,
        config_hash: "meta-capi-test".into(),
        destinations: BTreeMap::from([(DEST.to_string(), dest)]),
        exports: BTreeMap::from([(EXPORT.to_string(), export)]),
        reporting_feeds: Vec::new(),
        latency_slo_ms: BTreeMap::new(),
        events: BTreeMap::new(),
    }
}

struct Setup {
    _dir: TempDir,
    _server: dataout_sim::RunningSim,
    meta: MetaSim,
    rt: Arc<LocalRuntime>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (server, meta) = MetaSim::start(MetaSimConfig::default()).await.unwrap();
    meta.create_pixel(PIXEL);
    let secrets = MapSecrets::default().with("META_CAPI_TOKEN", DEFAULT_ACCESS_TOKEN);
    let rt = Arc::new(
        LocalRuntime::open(
            spec(&server.base_url),
            &dir.path().join("state"),
            &secrets,
            Arc::new(SystemClock),
            dataout_cli::demo::intake_config(),
            dir.path(),
        )
        .unwrap(),
    );
    rt.start_workers().await.unwrap();
    Setup {
        _dir: dir,
        _server: server,
        meta,
        rt,
    }
}

/// One conversion op as intake builds it for an `order_placed` event.
fn conversion(n: usize, source_ts: i64) -> DeliveryOp {
    let id = format!("cust_{n}");
    DeliveryOp {
        op: OpKind::Event,
        person_key: PersonKey(format!("id:{id}")),
        ids: Identifiers {
            id: Some(id),
            email: Some(format!("buyer{n}@example.com")),
            cio_id: None,
            phone: Some(format!("+1415555{:04}", 1000 + n)),
        },
        audience: "Purchase".into(),
        tier: None,
        attributes: BTreeMap::new(),
        event: Some(EventPayload {
            event_id: format!("evt_{n}"),
            name: "order_placed".into(),
            data: serde_json::Map::from_iter([("sku".to_string(), serde_json::json!("SKU-1"))]),
            value: Some(20.0 + n as f64),
            currency: Some("EUR".into()),
            order_id: Some(format!("order_{n}")),
        }),
        source_ts,
        intake_ts: source_ts,
    }
}

/// One job per event, with the id intake gives it (`event:<event_id>`),
/// or under another origin (a replay from elsewhere).
fn jobs(rt: &LocalRuntime, ops: &[DeliveryOp], origin: &str) -> Vec<DeliveryJob> {
    let export = rt.deps.spec.export(EXPORT).unwrap();
    ops.iter()
        .map(|op| {
            let event_id = &op.event.as_ref().unwrap().event_id;
            new_job(
                &rt.deps,
                export,
                DEST,
                &format!("{origin}:{event_id}"),
                None,
                vec![op.clone()],
            )
        })
        .collect()
}

async fn settle(rt: &LocalRuntime) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let depth = rt.deps.queue.depth(DEST).await.unwrap();
        if depth.visible == 0 && depth.in_flight == 0 {
            assert_eq!(depth.dead, 0, "a conversion job was dead-lettered");
            return;
        }
        assert!(Instant::now() < deadline, "queue never settled: {depth:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn counters(rt: &LocalRuntime) -> BTreeMap<String, i64> {
    rt.deps
        .state
        .get_counters(&CounterScope::delivery(EXPORT, DEST))
        .await
        .unwrap()
}

fn distinct_event_ids(meta: &MetaSim) -> BTreeSet<String> {
    meta.capi_events(PIXEL)
        .into_iter()
        .filter_map(|e| e.event_id)
        .collect()
}

#[tokio::test]
async fn a_nine_day_old_conversion_is_invalid_and_never_reaches_meta() {
    let s = setup().await;
    let now = chrono::Utc::now().timestamp_millis();
    let ops: Vec<DeliveryOp> = (0..8)
        .map(|n| {
            let ts = if n == 3 {
                now - 9 * DAY_MS
            } else {
                now - 60_000
            };
            conversion(n, ts)
        })
        .collect();
    enqueue(&s.rt.deps, jobs(&s.rt, &ops, "event"))
        .await
        .unwrap();
    settle(&s.rt).await;

    // At Meta: the seven fresh events, each once; the old one never arrived
    // (had it travelled, Meta would have refused the whole request).
    let ids = distinct_event_ids(&s.meta);
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert!(!ids.contains("evt_3"));
    assert_eq!(s.meta.capi_received(PIXEL), 7);
    assert!(
        s.meta.requests().iter().all(|r| r.status == 200),
        "a request failed at Meta: {:?}",
        s.meta.requests()
    );
    let events = s.meta.capi_events(PIXEL);
    assert!(events.iter().all(|e| e.event_name == "Purchase"
        && e.custom_data.get("currency") == Some(&serde_json::json!("EUR"))));
    // Ours agree.
    let c = counters(&s.rt).await;
    assert_eq!(c.get("accepted").copied(), Some(7), "{c:?}");
    assert_eq!(c.get("invalid").copied(), Some(1), "{c:?}");
    s.rt.shutdown().await;
}

#[tokio::test]
async fn redelivering_every_conversion_job_twice_counts_each_event_once_at_meta() {
    let s = setup().await;
    let now = chrono::Utc::now().timestamp_millis();
    let ops: Vec<DeliveryOp> = (0..6).map(|n| conversion(n, now - 120_000)).collect();
    enqueue(&s.rt.deps, jobs(&s.rt, &ops, "event"))
        .await
        .unwrap();
    settle(&s.rt).await;
    assert_eq!(s.meta.capi_received(PIXEL), 6);

    // The same jobs again (a queue redelivery): our claims keep them off
    // the wire.
    enqueue(&s.rt.deps, jobs(&s.rt, &ops, "event"))
        .await
        .unwrap();
    settle(&s.rt).await;
    assert_eq!(
        s.meta.capi_received(PIXEL),
        6,
        "a claimed job was sent again"
    );

    // The same events under other job ids (a replay that our claims cannot
    // recognise): they reach Meta, which counts each event once.
    enqueue(&s.rt.deps, jobs(&s.rt, &ops, "replay"))
        .await
        .unwrap();
    settle(&s.rt).await;
    assert_eq!(s.meta.capi_received(PIXEL), 12);
    let events = s.meta.capi_events(PIXEL);
    assert_eq!(events.len(), 6, "Meta counted an event twice");
    let expected: BTreeSet<String> = (0..6).map(|n| format!("evt_{n}")).collect();
    assert_eq!(distinct_event_ids(&s.meta), expected);
    s.rt.shutdown().await;
}
