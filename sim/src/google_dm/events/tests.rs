//! Tests of the simulator's `events:ingest`: what it refuses whole, and how
//! it records and reports what it accepts (duplicates included). Expected
//! reasons and field names are Google's (googleapis
//! `google/ads/datamanager/v1/error.proto`, `processing_errors.proto`,
//! `request_status_per_destination.proto`, `event.proto`), written out here
//! rather than taken from the simulator.

use super::*;
use crate::google_dm::DataManagerSimConfig;
use crate::google_oauth::{TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_REFRESH_TOKEN};
use crate::RunningSim;

const ACCOUNT: &str = "1234567890";
const ACTION: &str = "555000111";

fn sha(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

struct T {
    running: RunningSim,
    sim: DataManagerSim,
    http: reqwest::Client,
    token: String,
}

async fn setup() -> T {
    let config = DataManagerSimConfig {
        processing_delay: Duration::from_secs(3600),
        ..DataManagerSimConfig::default()
    };
    let (running, sim) = DataManagerSim::start(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_conversion_action(ACCOUNT, ACTION);
    let http = reqwest::Client::new();
    let body: Value = http
        .post(format!("{}/token", running.base_url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", TEST_CLIENT_ID),
            ("client_secret", TEST_CLIENT_SECRET),
            ("refresh_token", TEST_REFRESH_TOKEN),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    let token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {body}"))
        .to_string();
    T {
        running,
        sim,
        http,
        token,
    }
}

impl T {
    async fn post(&self, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/events:ingest", self.running.base_url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn status_of(&self, request_id: &str) -> Value {
        self.http
            .get(format!(
                "{}/v1/requestStatus:retrieve",
                self.running.base_url
            ))
            .query(&[("requestId", request_id)])
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or(Value::Null)
    }
}

fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn event(tx: &str) -> Value {
    json!({
        "transactionId": tx,
        "eventTimestamp": rfc3339(now_ms() - 60_000),
        "conversionValue": 42.5,
        "currency": "EUR",
        "eventSource": "WEB",
        "userData": { "userIdentifiers": [{ "emailAddress": sha(&format!("{tx}@example.com")) }] },
    })
}

fn body(events: Vec<Value>) -> Value {
    json!({
        "destinations": [{
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": ACCOUNT},
            "productDestinationId": ACTION,
        }],
        "events": events,
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
        "encoding": "HEX",
    })
}

fn request_id(answer: &Value) -> &str {
    answer["requestId"].as_str().unwrap_or_default()
}

/// The ErrorInfo reason of a refusal.
fn reason(answer: &Value) -> &str {
    answer["error"]["details"][0]["reason"]
        .as_str()
        .unwrap_or_default()
}

/// A conversion that carries a click id in `adIdentifiers` (`kind` is
/// gclid, gbraid or wbraid).
fn click_event(tx: &str, kind: &str) -> Value {
    let mut e = event(tx);
    e["adIdentifiers"] = json!({ kind: format!("{kind}-of-{tx}") });
    e
}

fn violation(answer: &Value) -> String {
    answer["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["fieldViolations"][0]["field"].as_str())
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Send one request carrying a single event changed by `edit`; return the
/// answer.
async fn one_event(t: &T, edit: impl FnOnce(&mut Value)) -> (u16, Value) {
    let mut e = event("tx-edit");
    edit(&mut e);
    t.post(&body(vec![e])).await
}

#[tokio::test]
async fn accepted_events_are_recorded_and_processed_asynchronously() {
    let t = setup().await;
    let (status, answer) = t.post(&body(vec![event("t1"), event("t2")])).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["requestId"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty());
    let received = t.sim.conversions(ACCOUNT, ACTION);
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].transaction_id, "t1");
    assert_eq!(received[0].value, Some(42.5));
    assert_eq!(received[0].currency.as_deref(), Some("EUR"));
    let status = t.status_of(&id).await;
    assert_eq!(
        status["requestStatusPerDestination"][0]["requestStatus"],
        "PROCESSING"
    );
    t.sim.process_now();
    let status = t.status_of(&id).await;
    assert_eq!(
        status["requestStatusPerDestination"][0]["requestStatus"], "SUCCESS",
        "{status}"
    );
}

#[tokio::test]
async fn more_than_2000_events_are_refused_whole_and_2000_pass() {
    let t = setup().await;
    let events: Vec<Value> = (0..2001).map(|i| event(&format!("big-{i}"))).collect();
    let (status, answer) = t.post(&body(events.clone())).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["details"][0]["reason"], "TOO_MANY_EVENTS");
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
    let (status, answer) = t.post(&body(events[..2000].to_vec())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(t.sim.conversions(ACCOUNT, ACTION).len(), 2000);
}

#[tokio::test]
async fn one_bad_event_refuses_the_whole_request_and_names_its_index() {
    let t = setup().await;
    let mut bad = event("t3");
    bad.as_object_mut().map(|o| o.remove("currency"));
    let (status, answer) = t
        .post(&body(vec![event("t1"), event("t2"), bad, event("t4")]))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(violation(&answer), "events[2].currency");
    assert!(
        t.sim.received_events(ACCOUNT, ACTION).is_empty(),
        "nothing of a refused request is recorded"
    );
}

#[tokio::test]
async fn unhashed_identifiers_are_refused() {
    let t = setup().await;
    let (status, answer) = one_event(&t, |e| {
        e["userData"]["userIdentifiers"][0]["emailAddress"] = json!("ada@example.com");
    })
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["details"][0]["reason"],
        "INVALID_HEX_ENCODING"
    );
    assert_eq!(violation(&answer), "events[0].userData");
    let (status, _) = one_event(&t, |e| {
        e["userData"]["userIdentifiers"][0] = json!({"phoneNumber": "+14155550100"});
    })
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn event_times_in_the_future_or_beyond_90_days_are_refused() {
    let t = setup().await;
    let (status, answer) = one_event(&t, |e| {
        e["eventTimestamp"] = json!(rfc3339(now_ms() + 3_600_000));
    })
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["details"][0]["reason"],
        "EVENT_TIME_INVALID"
    );
    let (status, answer) = one_event(&t, |e| {
        e["eventTimestamp"] = json!(rfc3339(now_ms() - 91 * 86_400_000));
    })
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["details"][0]["reason"],
        "EVENT_TIME_INVALID"
    );
    let (status, answer) = one_event(&t, |e| {
        e["eventTimestamp"] = json!(rfc3339(now_ms() - 89 * 86_400_000));
    })
    .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn missing_fields_and_bad_values_are_refused() {
    let t = setup().await;
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 7] = [
        (
            |e| {
                e.as_object_mut().map(|o| o.remove("transactionId"));
            },
            "REQUIRED_FIELD_MISSING",
        ),
        (
            |e| e["transactionId"] = json!("x".repeat(65)),
            "FIELD_VALUE_TOO_LONG",
        ),
        (
            |e| e["conversionValue"] = json!(-1.0),
            "INVALID_NUMBER_FORMAT",
        ),
        (|e| e["currency"] = json!("eur"), "INVALID_CURRENCY_CODE"),
        (
            |e| e["eventSource"] = json!("EVENT_SOURCE_UNSPECIFIED"),
            "INVALID_ENUM_VALUE",
        ),
        (
            |e| {
                e.as_object_mut().map(|o| o.remove("userData"));
            },
            "NO_IDENTIFIERS_PROVIDED",
        ),
        (|e| e["orderId"] = json!("o-1"), "INVALID_ARGUMENT"),
    ];
    for (edit, reason) in cases {
        let (status, answer) = one_event(&t, edit).await;
        assert_eq!(status, 400, "{reason}: {answer}");
        assert_eq!(answer["error"]["details"][0]["reason"], reason, "{answer}");
        assert!(violation(&answer).starts_with("events[0]"), "{answer}");
    }
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
}

#[tokio::test]
async fn unknown_conversion_action_and_foreign_account_are_refused() {
    let t = setup().await;
    let mut b = body(vec![event("t1")]);
    b["destinations"][0]["productDestinationId"] = json!("999");
    let (status, answer) = t.post(&b).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"]["details"][0]["reason"],
        "INVALID_CONVERSION_ACTION_ID"
    );
    let mut b = body(vec![event("t1")]);
    b["destinations"][0]["operatingAccount"]["accountId"] = json!("1111111111");
    let (status, _) = t.post(&b).await;
    assert_eq!(status, 403);
    let mut b = body(vec![event("t1")]);
    b.as_object_mut().map(|o| o.remove("encoding"));
    let (status, _) = t.post(&b).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_resent_transaction_is_recorded_as_a_duplicate_and_counted_once() {
    let t = setup().await;
    let (status, _) = t.post(&body(vec![event("t1"), event("t2")])).await;
    assert_eq!(status, 200);
    let (status, _) = t.post(&body(vec![event("t2"), event("t3")])).await;
    assert_eq!(status, 200);
    assert_eq!(t.sim.times_received(ACCOUNT, ACTION, "t2"), 2);
    let dups = t.sim.duplicate_events();
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0].transaction_id, "t2");
    let counted: Vec<String> = t
        .sim
        .conversions(ACCOUNT, ACTION)
        .into_iter()
        .map(|c| c.transaction_id)
        .collect();
    assert_eq!(counted, ["t1", "t2", "t3"]);
}

#[tokio::test]
async fn denied_consent_is_recorded_but_not_counted_and_bad_values_refused() {
    let t = setup().await;
    let mut denied = event("t1");
    denied["consent"] = json!({"adUserData": "CONSENT_DENIED"});
    let (status, answer) = t.post(&body(vec![denied, event("t2")])).await;
    assert_eq!(status, 200);
    assert_eq!(t.sim.received_events(ACCOUNT, ACTION).len(), 2);
    assert_eq!(t.sim.conversions(ACCOUNT, ACTION).len(), 1);
    t.sim.process_events_now();
    let entry = &t.status_of(request_id(&answer)).await["requestStatusPerDestination"][0];
    assert_eq!(entry["requestStatus"], "PARTIAL_SUCCESS", "{entry}");
    assert_eq!(
        entry["errorInfo"]["errorCounts"],
        json!([{"recordCount": "1", "reason": "PROCESSING_ERROR_REASON_DENIED_CONSENT"}])
    );
    let (status, answer) = one_event(&t, |e| e["consent"] = json!({"adUserData": "YES"})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(violation(&answer), "events[0].consent");
}

#[tokio::test]
async fn expired_tokens_are_refused_with_401() {
    let t = setup().await;
    t.sim.authority().expire_all();
    let (status, answer) = t.post(&body(vec![event("t1")])).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["status"], "UNAUTHENTICATED");
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
}

#[tokio::test]
async fn validate_only_records_nothing() {
    let t = setup().await;
    let mut b = body(vec![event("t1")]);
    b["validateOnly"] = json!(true);
    let (status, answer) = t.post(&b).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("requestId").is_none());
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
}

#[tokio::test]
async fn a_500_after_accepting_still_records_the_events() {
    let t = setup().await;
    t.sim.answer_500_after_accepting(1);
    let (status, answer) = t.post(&body(vec![event("t1")])).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(t.sim.conversions(ACCOUNT, ACTION).len(), 1);
    let (status, _) = t.post(&body(vec![event("t1")])).await;
    assert_eq!(status, 200);
    assert_eq!(t.sim.duplicate_events().len(), 1, "the resend is caught");
}

#[tokio::test]
async fn a_failed_request_reports_failed_and_its_conversions_do_not_count() {
    let t = setup().await;
    t.sim
        .fail_next_requests(1, "PROCESSING_ERROR_REASON_INTERNAL_ERROR");
    let (status, answer) = t.post(&body(vec![event("t1"), event("t2")])).await;
    assert_eq!(status, 200);
    let id = answer["requestId"].as_str().unwrap_or_default().to_string();
    t.sim.process_events_now();
    let status = t.status_of(&id).await;
    let entry = &status["requestStatusPerDestination"][0];
    assert_eq!(entry["requestStatus"], "FAILED", "{status}");
    assert_eq!(entry["errorInfo"]["errorCounts"][0]["recordCount"], "2");
    assert!(t.sim.conversions(ACCOUNT, ACTION).is_empty());
}

#[tokio::test]
async fn lead_conversion_is_refused_when_account_has_not_enabled_enhanced_conversions_for_leads() {
    let t = setup().await;
    t.sim.set_enhanced_conversions_for_leads(ACCOUNT, false);
    let (status, answer) = t.post(&body(vec![event("lead-1")])).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        reason(&answer),
        "DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS"
    );
    assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT");
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
    // validateOnly finds it too, and nothing names an event: the account
    // is at fault, not the data.
    let mut b = body(vec![event("lead-1")]);
    b["validateOnly"] = json!(true);
    let (status, answer) = t.post(&b).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(violation(&answer), "");
    // Once the account opts in, the same lead lands.
    t.sim.set_enhanced_conversions_for_leads(ACCOUNT, true);
    let (status, answer) = t.post(&body(vec![event("lead-1")])).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn lead_conversion_is_refused_when_account_has_not_accepted_the_customer_data_terms() {
    let t = setup().await;
    t.sim.set_customer_data_terms_accepted(ACCOUNT, false);
    let (status, answer) = t.post(&body(vec![event("lead-1")])).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        reason(&answer),
        "DESTINATION_ACCOUNT_ENHANCED_CONVERSIONS_TERMS_NOT_SIGNED"
    );
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
}

#[tokio::test]
async fn lead_conversion_is_refused_when_googles_data_policy_prohibits_enhanced_conversions() {
    let t = setup().await;
    t.sim
        .set_enhanced_conversions_prohibited_by_policy(ACCOUNT, true);
    let (status, answer) = t.post(&body(vec![event("lead-1")])).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        reason(&answer),
        "DESTINATION_ACCOUNT_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS"
    );
}

#[tokio::test]
async fn a_conversion_with_a_click_id_is_not_a_lead_and_is_not_refused_for_lead_settings() {
    let t = setup().await;
    t.sim.set_enhanced_conversions_for_leads(ACCOUNT, false);
    t.sim.set_customer_data_terms_accepted(ACCOUNT, false);
    let events = vec![
        click_event("c-1", "gclid"),
        click_event("c-2", "gbraid"),
        click_event("c-3", "wbraid"),
    ];
    let (status, answer) = t.post(&body(events)).await;
    assert_eq!(status, 200, "{answer}");
    // One lead among them and Google refuses the whole request (fast fail).
    let (status, answer) = t
        .post(&body(vec![click_event("c-4", "gclid"), event("lead-1")]))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        reason(&answer),
        "DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS"
    );
    assert_eq!(t.sim.received_events(ACCOUNT, ACTION).len(), 3);
}

#[tokio::test]
async fn click_ids_are_recorded_from_ad_identifiers_and_stand_without_user_data() {
    let t = setup().await;
    let mut only_click = click_event("c-2", "wbraid");
    only_click.as_object_mut().map(|o| o.remove("userData"));
    let (status, answer) = t
        .post(&body(vec![click_event("c-1", "gclid"), only_click]))
        .await;
    assert_eq!(status, 200, "{answer}");
    let got = t.sim.conversions(ACCOUNT, ACTION);
    assert_eq!(got[0].gclid.as_deref(), Some("gclid-of-c-1"));
    assert_eq!(
        (got[0].gbraid.as_deref(), got[0].wbraid.as_deref()),
        (None, None)
    );
    assert_eq!(got[1].wbraid.as_deref(), Some("wbraid-of-c-2"));
    assert!(got[1].identifiers.is_empty());
    assert!(!got[0].is_lead() && !got[1].is_lead());
}

#[tokio::test]
async fn ad_identifiers_outside_event_proto_are_refused() {
    let t = setup().await;
    let (status, answer) = one_event(&t, |e| e["adIdentifiers"] = json!({"fbclid": "x"})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(violation(&answer), "events[0].adIdentifiers.fbclid");
    let (status, answer) = one_event(&t, |e| e["adIdentifiers"] = json!({"gclid": 12})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(violation(&answer), "events[0].adIdentifiers.gclid");
    // Neither user data nor a click id: nothing to match.
    let (status, answer) = one_event(&t, |e| {
        e.as_object_mut().map(|o| o.remove("userData"));
        e["adIdentifiers"] = json!({"gclid": ""});
    })
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(reason(&answer), "NO_IDENTIFIERS_PROVIDED");
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
}

#[tokio::test]
async fn more_than_one_click_id_on_an_event_fails_processing_with_invalid_ad_identifiers() {
    let t = setup().await;
    let mut both = event("c-1");
    both["adIdentifiers"] = json!({"gbraid": "g", "wbraid": "w"});
    let (status, answer) = t.post(&body(vec![both, click_event("c-2", "gclid")])).await;
    assert_eq!(status, 200, "{answer}");
    t.sim.process_events_now();
    let entry = &t.status_of(request_id(&answer)).await["requestStatusPerDestination"][0];
    assert_eq!(entry["requestStatus"], "PARTIAL_SUCCESS", "{entry}");
    assert_eq!(
        entry["errorInfo"]["errorCounts"],
        json!([{"recordCount": "1", "reason": "PROCESSING_ERROR_REASON_INVALID_AD_IDENTIFIERS"}])
    );
    let counted: Vec<String> = t
        .sim
        .conversions(ACCOUNT, ACTION)
        .into_iter()
        .map(|c| c.transaction_id)
        .collect();
    assert_eq!(counted, ["c-2"]);
}

#[tokio::test]
async fn a_resent_transaction_is_reported_as_duplicate_transaction_id_in_the_request_status() {
    let t = setup().await;
    let (_, first) = t.post(&body(vec![event("t1"), event("t2")])).await;
    let (_, second) = t.post(&body(vec![event("t2"), event("t3")])).await;
    let (_, third) = t.post(&body(vec![event("t1")])).await;
    t.sim.process_events_now();
    let entry = &t.status_of(request_id(&first)).await["requestStatusPerDestination"][0];
    assert_eq!(entry["requestStatus"], "SUCCESS", "{entry}");
    assert!(entry.get("errorInfo").is_none(), "{entry}");
    assert_eq!(entry["eventsIngestionStatus"], json!({"recordCount": "2"}));
    // Some records failed: PARTIAL_SUCCESS, with counts per reason; the
    // int64 recordCount is a JSON string (proto3 JSON).
    let entry = &t.status_of(request_id(&second)).await["requestStatusPerDestination"][0];
    assert_eq!(entry["requestStatus"], "PARTIAL_SUCCESS", "{entry}");
    assert_eq!(
        entry["errorInfo"]["errorCounts"],
        json!([{"recordCount": "1", "reason": "PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID"}])
    );
    assert_eq!(entry["eventsIngestionStatus"], json!({"recordCount": "2"}));
    // All records failed: FAILED.
    let entry = &t.status_of(request_id(&third)).await["requestStatusPerDestination"][0];
    assert_eq!(entry["requestStatus"], "FAILED", "{entry}");
    assert_eq!(
        entry["errorInfo"]["errorCounts"],
        json!([{"recordCount": "1", "reason": "PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID"}])
    );
    assert_eq!(entry["destination"]["productDestinationId"], ACTION);
}

#[tokio::test]
async fn a_transaction_sent_again_after_its_request_failed_is_not_a_duplicate() {
    let t = setup().await;
    t.sim
        .fail_next_requests(1, "PROCESSING_ERROR_REASON_INTERNAL_ERROR");
    t.post(&body(vec![event("t1")])).await;
    let (status, answer) = t.post(&body(vec![event("t1")])).await;
    assert_eq!(status, 200, "{answer}");
    assert!(t.sim.duplicate_events().is_empty());
    assert_eq!(t.sim.conversions(ACCOUNT, ACTION).len(), 1);
    t.sim.process_events_now();
    let entry = &t.status_of(request_id(&answer)).await["requestStatusPerDestination"][0];
    assert_eq!(entry["requestStatus"], "SUCCESS", "{entry}");
}

#[tokio::test]
async fn every_event_source_and_field_of_event_proto_is_accepted() {
    let t = setup().await;
    for source in ["WEB", "APP", "IN_STORE", "PHONE", "MESSAGE", "OTHER"] {
        let (status, answer) = one_event(&t, |e| {
            e["transactionId"] = json!(format!("src-{source}"));
            e["eventSource"] = json!(source);
        })
        .await;
        assert_eq!(status, 200, "{source}: {answer}");
    }
    let (status, answer) = one_event(&t, |e| {
        e["transactionId"] = json!("fields");
        e["conversionCount"] = json!(1.0);
        e["eventName"] = json!("purchase");
        e["userId"] = json!("u-1");
    })
    .await;
    assert_eq!(status, 200, "{answer}");
}
