//! Event forwarding through intake, on the example spec and the embedded
//! adapters: the taxonomy shapes what travels and keeps back what falls
//! short; reporting metrics reach the exports that name them.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::customerio::webhook::sign;
use crate::domain::model::DeliveryJob;
use crate::pipeline::intake::tests::{cfg, deps, SECRET};
use crate::pipeline::intake::{handle, Route};

async fn post_action(deps: &Deps, body: serde_json::Value) -> serde_json::Value {
    let headers: BTreeMap<String, String> =
        [("x-dataout-token".to_string(), SECRET.to_string())].into();
    let bytes = serde_json::to_vec(&body).expect("json");
    let resp = handle(deps, &cfg(), Route::Actions, &headers, &bytes).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.body
}

/// Every job waiting on `queue`.
async fn jobs(deps: &Deps, queue: &str) -> Vec<DeliveryJob> {
    deps.queue
        .receive(queue, 100)
        .await
        .expect("receive")
        .into_iter()
        .map(|r| r.job)
        .collect()
}

fn order(id: &str, data: serde_json::Value) -> serde_json::Value {
    json!({
        "action": "event",
        "id": format!("order_placed:{id}"),
        "person": {"id": "cust_1", "email": "ada@example.com"},
        "event": {"name": "order_placed", "id": id, "data": data},
    })
}

#[tokio::test]
async fn an_order_reaches_every_events_export_shaped_by_the_taxonomy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deps = deps(dir.path());
    let answer = post_action(
        &deps,
        order(
            "ord_1",
            json!({"order_id": "ord_1", "total": "59.90", "currency": "eur",
                   "user_agent": "Mozilla/5.0", "page_url": "https://shop.example.com/thanks",
                   "email": "ada@example.com", "coupon_debug": "x"}),
        ),
    )
    .await;
    // purchases (meta_capi, google) and order_events (clevertap, warehouse).
    assert_eq!(answer["events"], 2, "{answer}");
    assert_eq!(answer["events_invalid"], 0, "{answer}");
    let capi = jobs(&deps, "meta_capi").await;
    assert_eq!(capi.len(), 1);
    let event = capi[0].ops[0].event.as_ref().expect("event op");
    assert_eq!(event.value, Some(59.9));
    assert_eq!(event.currency.as_deref(), Some("EUR"));
    assert_eq!(event.order_id.as_deref(), Some("ord_1"));
    // Only the allow-list travels: no email, no debug property.
    let keys: Vec<&str> = event.data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "client_user_agent",
            "currency",
            "event_source_url",
            "order_id",
            "total"
        ]
    );
    // One job for each of the other bindings of the two exports.
    let google = jobs(&deps, "google").await;
    assert_eq!(google.len(), 1);
    assert_eq!(google[0].export, "purchases");
    let clevertap = jobs(&deps, "clevertap").await;
    assert!(
        clevertap.iter().any(|j| j.export == "order_events"),
        "{clevertap:?}"
    );
}

#[tokio::test]
async fn an_order_missing_a_required_property_is_kept_back_counted_and_still_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deps = deps(dir.path());
    let answer = post_action(
        &deps,
        order("ord_2", json!({"order_id": "ord_2", "total": 12})),
    )
    .await;
    assert_eq!(answer["events"], 0, "{answer}");
    // Once per export that takes it: purchases and order_events.
    assert_eq!(answer["events_invalid"], 2, "{answer}");
    assert!(jobs(&deps, "meta_capi").await.is_empty());
    let intake = deps
        .state
        .get_counters(&CounterScope::intake())
        .await
        .expect("counters");
    assert_eq!(intake.get(EVENTS_INVALID), Some(&2), "{intake:?}");
    assert_eq!(
        intake.get("events_invalid:purchases:order_placed"),
        Some(&1),
        "{intake:?}"
    );
    for (export, dest) in [
        ("purchases", "meta_capi"),
        ("purchases", "google"),
        ("order_events", "clevertap"),
        ("order_events", "warehouse"),
    ] {
        let c = deps
            .state
            .get_counters(&CounterScope::delivery(export, dest))
            .await
            .expect("counters");
        assert_eq!(c.get(counter::INVALID), Some(&1), "{export} {dest}: {c:?}");
    }
    // The purchase still removes the person from the exports exiting on it
    // (a missing currency must not keep a buyer in retargeting).
    assert!(answer["changes"].as_u64().unwrap_or(0) >= 1, "{answer}");
}

#[tokio::test]
async fn a_reporting_open_is_forwarded_with_its_campaign_to_the_engagement_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deps = deps(dir.path());
    let ts = chrono::Utc::now().timestamp();
    let body = serde_json::to_vec(&json!({
        "event_id": "01HOPEN0001",
        "object_type": "email",
        "metric": "opened",
        "timestamp": ts,
        "data": {
            "identifiers": {"id": "cust_1", "email": "ada@example.com"},
            "customer_id": "cust_1",
            "email_address": "ada@example.com",
            "campaign_id": 42,
            "delivery_id": "dlv_1",
            "subject": "Your cart misses you"
        }
    }))
    .expect("json");
    let headers: BTreeMap<String, String> = [
        ("x-cio-timestamp".to_string(), ts.to_string()),
        (
            "x-cio-signature".to_string(),
            sign(SECRET.as_bytes(), ts, &body),
        ),
    ]
    .into();
    let resp = handle(&deps, &cfg(), Route::Reporting, &headers, &body).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["events"], 1, "{}", resp.body);
    let lake = jobs(&deps, "warehouse").await;
    assert_eq!(lake.len(), 1, "{lake:?}");
    assert_eq!(lake[0].export, "engagement");
    let event = lake[0].ops[0].event.as_ref().expect("event op");
    assert_eq!(event.name, "email.opened");
    assert_eq!(event.event_id, "01HOPEN0001");
    // campaign_id as text (identity), the subject off the allow-list.
    assert_eq!(event.data.get("campaign_id"), Some(&json!("42")));
    assert_eq!(event.data.get("metric"), Some(&json!("opened")));
    assert!(!event.data.contains_key("subject"), "{:?}", event.data);
    assert_eq!(jobs(&deps, "analytics_webhook").await.len(), 1);
    // A metric no export names is not forwarded.
    let ts2 = ts + 1;
    let body = serde_json::to_vec(&json!({
        "event_id": "01HDELIV0001", "object_type": "email", "metric": "delivered",
        "timestamp": ts2, "data": {"identifiers": {"id": "cust_1"}}
    }))
    .expect("json");
    let headers: BTreeMap<String, String> = [
        ("x-cio-timestamp".to_string(), ts2.to_string()),
        (
            "x-cio-signature".to_string(),
            sign(SECRET.as_bytes(), ts2, &body),
        ),
    ]
    .into();
    let resp = handle(&deps, &cfg(), Route::Reporting, &headers, &body).await;
    assert_eq!(resp.body["events"], 0, "{}", resp.body);
}
