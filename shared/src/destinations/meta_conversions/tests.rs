use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::domain::model::{Identifiers, PersonKey};
use crate::domain::spec::{Cadence, ExportMode, ExportSource, GuardRails, IdKind, IdentitySpec};
use crate::ports::{ManualClock, MapSecrets};
use dataout_sim::meta::capi::CapiConfig;
use dataout_sim::meta::{MetaFault, MetaSim, MetaSimConfig, DEFAULT_ACCESS_TOKEN};
use dataout_sim::RunningSim;

const PIXEL: &str = "555000111";
const DAY_MS: Millis = 24 * 3600 * 1000;

fn spec(base_url: &str, version: &str, action_source: &str, test_code: bool) -> DestinationSpec {
    DestinationSpec {
        name: "meta_capi".into(),
        kind: DestinationKind::MetaConversions,
        base_url: Some(base_url.into()),
        batch_size: 1000,
        max_concurrency: 1,
        max_requests_per_second: None,
        max_attempts: 3,
        settings: DestinationSettings::MetaConversions {
            api_version: version.into(),
            pixel_id: PIXEL.into(),
            access_token_env: "META_CAPI_TOKEN".into(),
            action_source: action_source.into(),
            test_event_code_env: test_code.then(|| "META_TEST_CODE".to_string()),
        },
    }
}

fn binding(audience: &str) -> ExportDestination {
    ExportDestination {
        destination: "meta_capi".into(),
        audience: audience.into(),
        tier_audiences: Default::default(),
        keys: Vec::new(),
    }
}

fn export() -> ExportSpec {
    ExportSpec {
        name: "purchases".into(),
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
        destinations: vec![binding("Purchase")],
        guard_rails: GuardRails::default(),
        test_profiles: Vec::new(),
    }
}

fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

fn event_op(id: &str, event_id: &str, source_ts: Millis) -> DeliveryOp {
    DeliveryOp {
        op: OpKind::Event,
        person_key: PersonKey(format!("id:{id}")),
        ids: Identifiers {
            id: Some(id.into()),
            email: Some(format!(" {id}@Example.com ")),
            cio_id: None,
            phone: None,
        },
        audience: "Purchase".into(),
        tier: None,
        attributes: Default::default(),
        event: Some(EventPayload {
            event_id: event_id.into(),
            name: "order_placed".into(),
            data: Map::new(),
            value: Some(42.5),
            currency: Some("USD".into()),
            order_id: Some(format!("ord-{event_id}")),
        }),
        source_ts,
        intake_ts: source_ts,
    }
}

struct Setup {
    _running: RunningSim,
    sim: MetaSim,
    dest: MetaConversionsDestination,
}

async fn setup_with(version: &str, action_source: &str, token: &str, test_code: bool) -> Setup {
    let (running, sim) = MetaSim::start(MetaSimConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_pixel(PIXEL);
    let secrets = MapSecrets::default()
        .with("META_CAPI_TOKEN", token)
        .with("META_TEST_CODE", "TEST4242");
    let dest = MetaConversionsDestination::new(
        "meta_capi".into(),
        &spec(&running.base_url, version, action_source, test_code),
        &secrets,
        reqwest::Client::new(),
        Arc::new(ManualClock::new(now_ms())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Setup {
        _running: running,
        sim,
        dest,
    }
}

async fn setup() -> Setup {
    setup_with("v27.0", "system_generated", DEFAULT_ACCESS_TOKEN, false).await
}

async fn send(s: &Setup, b: &ExportDestination, ops: &[DeliveryOp]) -> Vec<OpOutcome> {
    s.dest
        .send(&export(), b, ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn is_invalid(o: &OpOutcome, needle: &str) -> bool {
    matches!(o, OpOutcome::Invalid { reason } if reason.contains(needle))
}

#[tokio::test]
async fn an_event_reaches_the_pixel_hashed_with_its_id_time_and_value() {
    let s = setup().await;
    let t = now_ms() - 3_600_000;
    let mut op = event_op("cust_1", "evt_1", t);
    op.ids.phone = Some("+1 (415) 555-0100".into());
    op.attributes
        .insert("first_name".into(), json!(" Mary Ann "));
    op.attributes.insert("city".into(), json!("Seattle-98121"));
    op.attributes.insert("country".into(), json!("US"));
    op.attributes
        .insert("date_of_birth".into(), json!("1990-04-07"));
    if let Some(e) = op.event.as_mut() {
        e.data.insert("sku".into(), json!("SKU-9"));
        e.data
            .insert("customer_email".into(), json!("x@example.com"));
        e.data.insert("note".into(), json!("gift@example.com"));
        e.data
            .insert("client_ip_address".into(), json!("203.0.113.9"));
        e.data
            .insert("fbp".into(), json!("fb.1.1558571054389.1098115397"));
        e.data
            .insert("contents".into(), json!([{"id": "SKU-9", "quantity": 1}]));
    }
    let outcomes = send(&s, &binding("Purchase"), &[op]).await;
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    let events = s.sim.capi_events(PIXEL);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.event_name, "Purchase");
    assert_eq!(e.event_id.as_deref(), Some("evt_1"));
    assert_eq!(e.event_time, t / 1000);
    assert_eq!(e.action_source, "system_generated");
    let u = &e.user_data;
    assert_eq!(u["em"], json!(sha256_hex("cust_1@example.com")));
    assert_eq!(u["ph"], json!(sha256_hex("14155550100")));
    assert_eq!(u["fn"], json!(sha256_hex("maryann")));
    assert_eq!(u["ct"], json!(sha256_hex("seattle")));
    assert_eq!(u["country"], json!(sha256_hex("us")));
    assert_eq!(u["db"], json!(sha256_hex("19900407")));
    assert_eq!(u["external_id"], json!(sha256_hex("cust_1")));
    // Never hashed.
    assert_eq!(u["client_ip_address"], json!("203.0.113.9"));
    assert_eq!(u["fbp"], json!("fb.1.1558571054389.1098115397"));
    let c = &e.custom_data;
    assert_eq!(c["value"], json!(42.5));
    assert_eq!(c["currency"], json!("USD"));
    assert_eq!(c["order_id"], json!("ord-evt_1"));
    assert_eq!(c["sku"], json!("SKU-9"));
    assert_eq!(c["contents"][0]["id"], json!("SKU-9"));
    // Personal data and server keys stay out of custom_data.
    for key in ["customer_email", "note", "client_ip_address", "fbp"] {
        assert!(!c.contains_key(key), "{key} leaked into custom_data");
    }
}

/// Meta's own normalisation, digests computed outside this code base
/// (`printf %s <text> | sha256sum`); sources in `docs/meta-identifiers.md`.
#[tokio::test]
async fn user_data_follows_metas_sdk_normalisation_for_ids_birth_dates_postcodes_and_phones() {
    let s = setup().await;
    let mut op = event_op(" Cust-ABC-9 ", "evt_norm", now_ms() - 60_000);
    op.ids.email = None;
    op.ids.phone = Some("00 1 212 555 0199".into());
    op.attributes
        .insert("date_of_birth".into(), json!("19850704"));
    op.attributes.insert("zip".into(), json!("SW1A 1AA"));
    op.attributes.insert("country".into(), json!("GB"));
    let outcomes = send(&s, &binding("Purchase"), &[op]).await;
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    let events = s.sim.capi_events(PIXEL);
    let u = &events[0].user_data;
    // "cust-abc-9": trimmed and lower-cased, as the Node SDK does.
    assert_eq!(
        u["external_id"],
        json!("cc3acbb000c22df1818afb2fb58c0f8557c2fe819b7e0d3b8c2d52a9553d44c5")
    );
    // "19850704": the 4th of July 1985 (not 1970-08-18 read as seconds).
    assert_eq!(
        u["db"],
        json!("2168bbab13806c125ed1f35c8838fbe8483ce209a3e34ac1eda34c2bf56714e2")
    );
    // "sw1a1": Area/District/Sector.
    assert_eq!(
        u["zp"],
        json!("949af780a19e6f6d4b99d7044743348dbbb7ab2245fe146863573b23d02c5890")
    );
    // "12125550199": the zeros before the country code dropped.
    assert_eq!(
        u["ph"],
        json!("b220e5682592149df1f2233622bf380dbbdb495ed6a836271b4ea4e1f0b2c6e4")
    );
}

#[tokio::test]
async fn a_nine_day_old_event_is_invalid_and_never_sent_while_the_others_go() {
    let s = setup().await;
    let now = now_ms();
    let ops = vec![
        event_op("c1", "e1", now - 60_000),
        event_op("c2", "e2", now - 9 * DAY_MS),
        event_op("c3", "e3", now - 6 * DAY_MS),
    ];
    let outcomes = send(&s, &binding("Purchase"), &ops).await;
    assert_eq!(outcomes[0], OpOutcome::Accepted);
    assert!(is_invalid(&outcomes[1], "7 days"), "{:?}", outcomes[1]);
    assert_eq!(outcomes[2], OpOutcome::Accepted);
    assert_eq!(s.sim.capi_received(PIXEL), 2);
    let ids: Vec<_> = s
        .sim
        .capi_events(PIXEL)
        .into_iter()
        .filter_map(|e| e.event_id)
        .collect();
    assert_eq!(ids, vec!["e1".to_string(), "e3".to_string()]);
}

#[tokio::test]
async fn events_near_the_age_limit_or_in_the_future_are_invalid() {
    let s = setup().await;
    let now = now_ms();
    let ops = vec![
        event_op("c1", "edge", now - 7 * DAY_MS + 60_000),
        event_op("c2", "ahead", now + 5 * 60_000),
        event_op("c3", "skew", now + 30_000),
    ];
    let outcomes = send(&s, &binding("Purchase"), &ops).await;
    assert!(is_invalid(&outcomes[0], "7 days"), "{:?}", outcomes[0]);
    assert!(is_invalid(&outcomes[1], "future"), "{:?}", outcomes[1]);
    assert_eq!(outcomes[2], OpOutcome::Accepted);
    assert_eq!(s.sim.capi_received(PIXEL), 1);
}

#[tokio::test]
async fn a_purchase_without_value_or_currency_is_invalid() {
    let s = setup().await;
    let now = now_ms();
    let mut no_currency = event_op("c1", "p1", now);
    let mut no_value = event_op("c2", "p2", now);
    let mut bad_currency = event_op("c3", "p3", now);
    if let Some(e) = no_currency.event.as_mut() {
        e.currency = None;
    }
    if let Some(e) = no_value.event.as_mut() {
        e.value = None;
    }
    if let Some(e) = bad_currency.event.as_mut() {
        e.currency = Some("dollars".into());
    }
    let ops = [
        no_currency,
        no_value,
        bad_currency,
        event_op("c4", "p4", now),
    ];
    let outcomes = send(&s, &binding("Purchase"), &ops).await;
    assert!(is_invalid(
        &outcomes[0],
        "Purchase needs value and currency"
    ));
    assert!(is_invalid(
        &outcomes[1],
        "Purchase needs value and currency"
    ));
    assert!(is_invalid(&outcomes[2], "ISO 4217"));
    assert_eq!(outcomes[3], OpOutcome::Accepted);
    // A custom event may go without a value.
    let mut lead = event_op("c5", "l1", now);
    lead.audience = "Lead".into();
    if let Some(e) = lead.event.as_mut() {
        e.value = None;
        e.currency = None;
    }
    let outcomes = send(&s, &binding("Lead"), &[lead]).await;
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
}

#[tokio::test]
async fn a_person_without_matchable_user_data_is_invalid() {
    let s = setup().await;
    let mut op = event_op("c1", "m1", now_ms());
    op.ids = Identifiers::default();
    op.attributes.insert("city".into(), json!("Seattle"));
    let outcomes = send(&s, &binding("Purchase"), &[op]).await;
    assert!(
        is_invalid(&outcomes[0], "no matchable user_data"),
        "{outcomes:?}"
    );
    assert_eq!(s.sim.request_count(), 0, "nothing to send, nothing sent");
}

#[tokio::test]
async fn membership_ops_are_rejected_with_a_reason() {
    let s = setup().await;
    let mut op = event_op("c1", "x", now_ms());
    op.op = OpKind::Add;
    let outcomes = send(&s, &binding("Purchase"), &[op]).await;
    assert!(
        matches!(&outcomes[0], OpOutcome::Rejected { reason } if reason.contains("takes events")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn an_omitted_event_name_sends_the_source_name() {
    let s = setup().await;
    let mut op = event_op("c1", "n1", now_ms());
    op.audience = String::new();
    let outcomes = send(&s, &binding(""), &[op]).await;
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    assert_eq!(s.sim.capi_events(PIXEL)[0].event_name, "order_placed");
}

#[tokio::test]
async fn a_resent_batch_counts_once_at_meta() {
    let s = setup().await;
    let now = now_ms();
    let ops: Vec<DeliveryOp> = (0..3)
        .map(|i| event_op(&format!("c{i}"), &format!("r{i}"), now))
        .collect();
    for _ in 0..2 {
        let outcomes = send(&s, &binding("Purchase"), &ops).await;
        assert!(outcomes.iter().all(|o| *o == OpOutcome::Accepted));
    }
    assert_eq!(s.sim.capi_received(PIXEL), 6);
    assert_eq!(s.sim.capi_events(PIXEL).len(), 3);
}

#[tokio::test]
async fn events_are_sent_in_requests_of_at_most_batch_size() {
    let (running, sim) = MetaSim::start(MetaSimConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_pixel(PIXEL);
    let mut spec = spec(&running.base_url, "v27.0", "system_generated", false);
    spec.batch_size = 2;
    let dest = MetaConversionsDestination::new(
        "meta_capi".into(),
        &spec,
        &MapSecrets::default().with("META_CAPI_TOKEN", DEFAULT_ACCESS_TOKEN),
        reqwest::Client::new(),
        Arc::new(ManualClock::new(now_ms())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dest.max_batch(), 2);
    let now = now_ms();
    let ops: Vec<DeliveryOp> = (0..5)
        .map(|i| event_op(&format!("c{i}"), &format!("b{i}"), now))
        .collect();
    let outcomes = dest
        .send(&export(), &binding("Purchase"), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes.len(), 5);
    let rows: Vec<usize> = sim.requests().iter().map(|r| r.rows).collect();
    assert_eq!(rows, vec![2, 2, 1]);
}

#[tokio::test]
async fn an_event_meta_refuses_is_rejected_alone_and_the_good_ones_are_delivered_once() {
    let s = setup().await;
    // Meta stricter than our check (a one-day window): the request fails whole.
    s.sim.set_capi_config(CapiConfig {
        max_age: std::time::Duration::from_secs(24 * 3600),
        ..CapiConfig::default()
    });
    let now = now_ms();
    let ops = [
        event_op("c1", "ok1", now),
        event_op("c2", "ok2", now),
        event_op("c3", "old", now - 2 * DAY_MS),
        event_op("c4", "ok4", now),
        event_op("c5", "ok5", now),
    ];
    let outcomes = send(&s, &binding("Purchase"), &ops).await;
    for (i, o) in outcomes.iter().enumerate() {
        if i == 2 {
            assert!(
                matches!(o, OpOutcome::Rejected { reason } if reason.contains("too far in the past")),
                "{o:?}"
            );
        } else {
            assert_eq!(*o, OpOutcome::Accepted, "event {i}");
        }
    }
    // Each good event was taken once: none twice, the bad one never.
    assert_eq!(s.sim.capi_received(PIXEL), 4);
    let ids: Vec<String> = s
        .sim
        .capi_events(PIXEL)
        .into_iter()
        .filter_map(|e| e.event_id)
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["ok1", "ok2", "ok4", "ok5"], "{ids:?}");
}

#[tokio::test]
async fn rate_limits_retry_and_a_bad_token_is_permanent() {
    let s = setup().await;
    s.sim.fail_next(1, MetaFault::UserRateLimit);
    let ops = [event_op("c1", "r1", now_ms())];
    let err = s
        .dest
        .send(&export(), &binding("Purchase"), &ops)
        .await
        .err();
    assert!(
        err.as_ref().is_some_and(DestinationError::is_retryable),
        "{err:?}"
    );
    // The retry goes through.
    assert_eq!(
        send(&s, &binding("Purchase"), &ops).await,
        vec![OpOutcome::Accepted]
    );

    let bad = setup_with("v27.0", "system_generated", "wrong-token", false).await;
    let err = bad
        .dest
        .send(&export(), &binding("Purchase"), &ops)
        .await
        .err();
    let msg = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        err.as_ref().is_some_and(|e| !e.is_retryable()) && msg.contains("190"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-token"), "the token leaked: {msg}");
}

#[tokio::test]
async fn an_expired_api_version_is_permanent_and_raises_the_alert() {
    let s = setup_with("v24.0", "system_generated", DEFAULT_ACCESS_TOKEN, false).await;
    let err = s
        .dest
        .send(
            &export(),
            &binding("Purchase"),
            &[event_op("c1", "v1", now_ms())],
        )
        .await
        .err();
    assert!(err.as_ref().is_some_and(|e| !e.is_retryable()), "{err:?}");
    assert!(matches!(
        s.dest.alerts().as_slice(),
        [DestinationAlert::ApiVersionDeprecated { .. }]
    ));
}

#[tokio::test]
async fn website_events_need_the_user_agent_and_page_url_properties() {
    let s = setup_with("v27.0", "website", DEFAULT_ACCESS_TOKEN, false).await;
    let now = now_ms();
    let bare = event_op("c1", "w1", now);
    let mut web = event_op("c2", "w2", now);
    if let Some(e) = web.event.as_mut() {
        e.data
            .insert("client_user_agent".into(), json!("Mozilla/5.0"));
        e.data.insert(
            "event_source_url".into(),
            json!("https://shop.example.com/thanks"),
        );
    }
    let outcomes = send(&s, &binding("Purchase"), &[bare, web]).await;
    assert!(is_invalid(&outcomes[0], "website"), "{outcomes:?}");
    assert_eq!(outcomes[1], OpOutcome::Accepted);
    let e = &s.sim.capi_events(PIXEL)[0];
    assert_eq!(
        e.raw["event_source_url"],
        json!("https://shop.example.com/thanks")
    );
    assert_eq!(e.user_data["client_user_agent"], json!("Mozilla/5.0"));
}

#[tokio::test]
async fn a_test_event_code_sends_to_the_test_events_tool_only() {
    let s = setup_with("v27.0", "system_generated", DEFAULT_ACCESS_TOKEN, true).await;
    let outcomes = send(&s, &binding("Purchase"), &[event_op("c1", "t1", now_ms())]).await;
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    assert_eq!(s.sim.capi_test_events(PIXEL).len(), 1);
    assert_eq!(s.sim.capi_received(PIXEL), 0);
}

#[tokio::test]
async fn a_short_events_received_count_is_a_retryable_failure() {
    use axum::routing::post;
    let router = axum::Router::new().route(
        "/{version}/{pixel}/events",
        post(|| async {
            axum::Json(json!({"events_received": 1, "messages": [], "fbtrace_id": "x"}))
        }),
    );
    let running = dataout_sim::serve(router)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dest = MetaConversionsDestination::new(
        "meta_capi".into(),
        &spec(&running.base_url, "v27.0", "system_generated", false),
        &MapSecrets::default().with("META_CAPI_TOKEN", DEFAULT_ACCESS_TOKEN),
        reqwest::Client::new(),
        Arc::new(ManualClock::new(now_ms())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let now = now_ms();
    let ops = [event_op("c1", "s1", now), event_op("c2", "s2", now)];
    let err = dest.send(&export(), &binding("Purchase"), &ops).await.err();
    assert!(
        err.as_ref()
            .is_some_and(|e| e.is_retryable() && e.to_string().contains("received 1 of 2")),
        "{err:?}"
    );
}

#[test]
fn a_missing_test_event_code_secret_refuses_to_start() {
    let result = MetaConversionsDestination::new(
        "meta_capi".into(),
        &spec("http://127.0.0.1:9", "v27.0", "system_generated", true),
        &MapSecrets::default().with("META_CAPI_TOKEN", DEFAULT_ACCESS_TOKEN),
        reqwest::Client::new(),
        Arc::new(ManualClock::new(0)),
    );
    assert!(
        matches!(result, Err(DestinationError::Permanent { ref message, .. }) if message.contains("META_TEST_CODE")),
        "{result:?}"
    );
}

#[test]
fn personal_properties_are_told_from_business_ones() {
    for key in [
        "email",
        "customerEmail",
        "billing_address",
        "phone_number",
        "zip",
        "billing_zip",
        "dob",
        "ip",
        "name",
        "first_name",
        "date_of_birth",
    ] {
        assert!(
            looks_personal(key, &json!("x")),
            "{key} passed as business data"
        );
    }
    for key in [
        "sku",
        "product_name",
        "adobe_id",
        "zipper_size",
        "plan",
        "coupon",
    ] {
        assert!(
            !looks_personal(key, &json!("x")),
            "{key} dropped as personal"
        );
    }
    assert!(looks_personal("note", &json!("Ann@example.com")));
    assert!(!looks_personal("note", &json!("twitter @handle")));
}
