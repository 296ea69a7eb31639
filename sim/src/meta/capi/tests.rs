//! Tests of the Conversions API simulator: Meta's whole-request failures,
//! the limits, dedup and the inspection API.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::meta::{MetaSimConfig, DEFAULT_ACCESS_TOKEN};
use crate::RunningSim;

const PIXEL: &str = "555000111";

fn sha(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn sim() -> (RunningSim, MetaSim) {
    let (running, sim) = MetaSim::start(MetaSimConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_pixel(PIXEL);
    (running, sim)
}

fn event(name: &str, id: &str, time: i64) -> Value {
    json!({
        "event_name": name,
        "event_time": time,
        "event_id": id,
        "action_source": "system_generated",
        "user_data": {"em": sha("a@example.com"), "external_id": sha("cust_1")},
        "custom_data": {"value": 12.5, "currency": "USD"},
    })
}

async fn post(running: &RunningSim, pixel: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v27.0/{pixel}/events", running.base_url))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn send(running: &RunningSim, events: Vec<Value>) -> (u16, Value) {
    post(
        running,
        PIXEL,
        json!({"data": events, "access_token": DEFAULT_ACCESS_TOKEN}),
    )
    .await
}

fn user_msg(body: &Value) -> String {
    body.pointer("/error/error_user_msg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn valid_events_are_received_and_counted() {
    let (running, sim) = sim().await;
    let t = now_s() - 60;
    let (status, body) = send(
        &running,
        vec![event("Purchase", "e1", t), event("Lead", "e2", t)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events_received"], 2);
    assert!(body["fbtrace_id"].is_string());
    assert_eq!(sim.capi_received(PIXEL), 2);
    let events = sim.capi_events(PIXEL);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event_id.as_deref(), Some("e1"));
    assert_eq!(events[0].custom_data["currency"], "USD");
}

#[tokio::test]
async fn one_unhashed_email_fails_the_whole_request() {
    let (running, sim) = sim().await;
    let t = now_s() - 60;
    let mut bad = event("Lead", "e2", t);
    bad["user_data"]["em"] = json!("Someone@Example.com");
    let (status, body) = send(&running, vec![event("Purchase", "e1", t), bad]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 100);
    let msg = user_msg(&body);
    assert!(msg.contains("index 1") && msg.contains("em"), "{msg}");
    // Not even the good event was taken.
    assert_eq!(sim.capi_received(PIXEL), 0);
    assert!(sim.capi_events(PIXEL).is_empty());
}

#[tokio::test]
async fn uppercase_hex_phone_is_not_a_valid_hash() {
    let (running, _sim) = sim().await;
    let mut e = event("Lead", "e1", now_s());
    e["user_data"]["ph"] = json!([sha("14155550100").to_uppercase()]);
    let (status, body) = send(&running, vec![e]).await;
    assert_eq!(status, 400);
    assert!(user_msg(&body).contains("ph"), "{body}");
}

#[tokio::test]
async fn an_event_older_than_seven_days_fails_the_request() {
    let (running, sim) = sim().await;
    let nine_days = 9 * 24 * 3600;
    let (status, body) = send(
        &running,
        vec![
            event("Lead", "fresh", now_s()),
            event("Lead", "old", now_s() - nine_days),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["error_user_title"], "Event Timestamp Too Old");
    assert_eq!(sim.capi_received(PIXEL), 0);
    // Six days old is fine.
    let (status, _) = send(
        &running,
        vec![event("Lead", "six", now_s() - 6 * 24 * 3600)],
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_event_in_the_future_fails_the_request() {
    let (running, _sim) = sim().await;
    let (status, body) = send(&running, vec![event("Lead", "later", now_s() + 3600)]).await;
    assert_eq!(status, 400);
    assert!(user_msg(&body).contains("future"), "{body}");
}

#[tokio::test]
async fn more_than_a_thousand_events_are_refused() {
    let (running, sim) = sim().await;
    let t = now_s();
    let events: Vec<Value> = (0..1001)
        .map(|i| event("Lead", &format!("e{i}"), t))
        .collect();
    let (status, body) = send(&running, events).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 100);
    assert_eq!(sim.capi_received(PIXEL), 0);
    let events: Vec<Value> = (0..1000)
        .map(|i| event("Lead", &format!("e{i}"), t))
        .collect();
    let (status, body) = send(&running, events).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events_received"], 1000);
}

#[tokio::test]
async fn a_purchase_without_currency_fails_the_request() {
    let (running, _sim) = sim().await;
    let mut e = event("Purchase", "p1", now_s());
    e["custom_data"] = json!({"value": 10.0});
    let (status, body) = send(&running, vec![e]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["error_user_title"], "Missing Purchase Value");
    // The same without value and currency is fine for a custom event.
    let mut e = event("OrderShipped", "s1", now_s());
    e["custom_data"] = json!({});
    assert_eq!(send(&running, vec![e]).await.0, 200);
}

#[tokio::test]
async fn missing_required_fields_fail_the_request() {
    let (running, _sim) = sim().await;
    for field in ["event_name", "event_time", "action_source", "user_data"] {
        let mut e = event("Lead", "x", now_s());
        if let Some(obj) = e.as_object_mut() {
            obj.remove(field);
        }
        let (status, body) = send(&running, vec![e]).await;
        assert_eq!(status, 400, "without {field}: {body}");
        assert_eq!(body["error"]["code"], 100);
    }
}

#[tokio::test]
async fn nothing_matchable_fails_the_request() {
    let (running, _sim) = sim().await;
    let mut e = event("Lead", "x", now_s());
    e["user_data"] = json!({"ct": sha("seattle"), "client_user_agent": "Mozilla/5.0"});
    let (status, body) = send(&running, vec![e]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["error_user_title"], "Missing User Data");
    // An IP address with a user agent is matchable; a hashed IP is not valid.
    let mut e = event("Lead", "y", now_s());
    e["user_data"] =
        json!({"client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0"});
    assert_eq!(send(&running, vec![e]).await.0, 200);
    let mut e = event("Lead", "z", now_s());
    e["user_data"] =
        json!({"client_ip_address": sha("203.0.113.9"), "client_user_agent": "Mozilla/5.0"});
    assert_eq!(send(&running, vec![e]).await.0, 400);
}

#[tokio::test]
async fn website_events_need_the_user_agent_and_the_page_url() {
    let (running, _sim) = sim().await;
    let mut e = event("Lead", "w1", now_s());
    e["action_source"] = json!("website");
    let (status, body) = send(&running, vec![e.clone()]).await;
    assert_eq!(status, 400, "{body}");
    e["user_data"]["client_user_agent"] = json!("Mozilla/5.0");
    e["event_source_url"] = json!("https://shop.example.com/checkout");
    assert_eq!(send(&running, vec![e]).await.0, 200);
}

#[tokio::test]
async fn a_duplicate_name_and_id_is_received_but_counted_once_within_48_hours() {
    let (running, sim) = sim().await;
    let t = now_s();
    assert_eq!(
        send(&running, vec![event("Purchase", "o1", t)]).await.0,
        200
    );
    let (status, body) = send(
        &running,
        vec![event("Purchase", "o1", t), event("Lead", "o1", t)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["events_received"], 2);
    assert_eq!(sim.capi_received(PIXEL), 3);
    // Same id under another name is another event.
    assert_eq!(sim.capi_events(PIXEL).len(), 2);
    assert_eq!(distinct_ids(&sim.capi_events(PIXEL)).len(), 2);
    // After 48 hours the pair counts again (its time is still within 7 days).
    sim.advance(Duration::from_secs(49 * 3600));
    assert_eq!(
        send(&running, vec![event("Purchase", "o1", t)]).await.0,
        200
    );
    assert_eq!(sim.capi_events(PIXEL).len(), 3);
}

#[tokio::test]
async fn an_expired_token_answers_190_and_a_wrong_one_too() {
    let (running, sim) = sim().await;
    sim.expire_token();
    let (status, body) = send(&running, vec![event("Lead", "t1", now_s())]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 190);
    assert_eq!(body["error"]["error_subcode"], 463);
    sim.set_access_token("fresh");
    let (status, body) = send(&running, vec![event("Lead", "t1", now_s())]).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!(190)));
    let (status, _) = post(
        &running,
        PIXEL,
        json!({"data": [event("Lead", "t1", now_s())], "access_token": "fresh"}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_unknown_pixel_is_error_100_subcode_33() {
    let (running, _sim) = sim().await;
    let (status, body) = post(
        &running,
        "999",
        json!({"data": [event("Lead", "u1", now_s())], "access_token": DEFAULT_ACCESS_TOKEN}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["error_subcode"], 33);
}

#[tokio::test]
async fn test_event_code_events_are_kept_apart() {
    let (running, sim) = sim().await;
    let (status, _) = post(
        &running,
        PIXEL,
        json!({"data": [event("Lead", "te1", now_s())], "access_token": DEFAULT_ACCESS_TOKEN, "test_event_code": "TEST123"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sim.capi_received(PIXEL), 0);
    assert_eq!(sim.capi_test_events(PIXEL).len(), 1);
}

#[tokio::test]
async fn a_form_body_with_data_as_json_text_is_read() {
    let (running, sim) = sim().await;
    let data = json!([event("Lead", "f1", now_s())]).to_string();
    let resp = reqwest::Client::new()
        .post(format!("{}/v27.0/{PIXEL}/events", running.base_url))
        .form(&[
            ("data", data.as_str()),
            ("access_token", DEFAULT_ACCESS_TOKEN),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(sim.capi_events(PIXEL).len(), 1);
}

#[tokio::test]
async fn an_expired_graph_version_answers_2635() {
    let (running, _sim) = sim().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v24.0/{PIXEL}/events", running.base_url))
        .json(
            &json!({"data": [event("Lead", "v1", now_s())], "access_token": DEFAULT_ACCESS_TOKEN}),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(body["error"]["code"], 2635);
}
