//! Meta's session and replace rules, and its quota tiers, as the simulator
//! enforces them (Meta's Customer File Custom Audiences guide, "Replace
//! users API common errors"; Meta's rate-limiting page).

use std::time::Duration;

use serde_json::{json, Value};

use super::tests::{email_payload, sha, sim, sim_with, USERS};
use super::*;

const REPLACE: &str = "/v25.0/111/usersreplace?access_token=meta-sim-token";

fn batch(value: &str, session_id: i64, batch_seq: u64, last: bool) -> Value {
    let mut body = email_payload(&[&sha(value)]);
    body["session"] = json!({
        "session_id": session_id,
        "batch_seq": batch_seq,
        "last_batch_flag": last,
        "estimated_num_total": 3,
    });
    body
}

fn subcode(answer: &Value) -> (Value, Value) {
    (
        answer["error"]["code"].clone(),
        answer["error"]["error_subcode"].clone(),
    )
}

#[test]
fn the_tiers_hourly_calls_are_metas_formulas() {
    // Meta: Development 5,000 + 40 × audiences, Standard 190,000 + 40 ×
    // audiences, at most 700,000 an hour.
    assert_eq!(AccessTier::Development.hourly_calls(0), 5_000);
    assert_eq!(AccessTier::Development.hourly_calls(10), 5_400);
    assert_eq!(AccessTier::Standard.hourly_calls(10), 190_400);
    assert_eq!(AccessTier::Standard.hourly_calls(20_000), 700_000);
    let standard = MetaSimConfig::for_tier(AccessTier::Standard);
    assert_eq!(standard.quota_base, Some(190_000));
    assert_eq!(standard.quota_per_audience, 40);
    assert_eq!(
        MetaSimConfig::default().access_tier,
        AccessTier::Development,
        "an app is in the Development tier until App Review"
    );
}

#[tokio::test]
async fn the_usage_header_names_the_custom_audience_use_case_and_the_tier() {
    let (_running, _sim, client) = sim_with(MetaSimConfig::for_tier(AccessTier::Standard)).await;
    let (status, usage, _) = client
        .call_full("POST", USERS, Some(&email_payload(&[&sha("a")])))
        .await;
    assert_eq!(status, 200);
    let entry = &usage["1234567890"][0];
    assert_eq!(entry["type"], "custom_audience");
    assert_eq!(entry["ads_api_access_tier"], "standard_access");
}

#[tokio::test]
async fn a_replace_under_way_answers_1870145_to_adds_removes_and_another_replace() {
    let (_running, sim, client) = sim().await;
    let (status, _) = client
        .call("POST", REPLACE, Some(&batch("a", 10, 1, false)))
        .await;
    assert_eq!(status, 200);
    for (method, path, body) in [
        ("POST", USERS, email_payload(&[&sha("b")])),
        ("DELETE", USERS, email_payload(&[&sha("b")])),
        ("POST", REPLACE, batch("c", 11, 1, true)),
    ] {
        let (status, answer) = client.call(method, path, Some(&body)).await;
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert_eq!(subcode(&answer), (json!(2650), json!(1_870_145)));
        assert_eq!(
            answer["error"]["error_user_title"],
            "Audience Update In Progress"
        );
    }
    // The replace's own batches still go in; its last one ends the replace.
    let (status, _) = client
        .call("POST", REPLACE, Some(&batch("d", 10, 2, true)))
        .await;
    assert_eq!(status, 200);
    let (status, _) = client
        .call("POST", USERS, Some(&email_payload(&[&sha("b")])))
        .await;
    assert_eq!(status, 200, "the audience is Normal again");
    assert_eq!(sim.member_count("111"), 3);
}

#[tokio::test]
async fn a_replace_while_a_session_of_the_audience_is_open_answers_1870145() {
    let (_running, sim, client) = sim().await;
    let (status, _) = client
        .call("POST", USERS, Some(&batch("a", 20, 1, false)))
        .await;
    assert_eq!(status, 200);
    let (_, answer) = client
        .call("POST", REPLACE, Some(&batch("b", 21, 1, true)))
        .await;
    assert_eq!(subcode(&answer), (json!(2650), json!(1_870_145)));
    // Closing the open session lets the replace through.
    client
        .call("POST", USERS, Some(&batch("c", 20, 2, true)))
        .await;
    let (status, answer) = client
        .call("POST", REPLACE, Some(&batch("b", 21, 1, true)))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(sim.member_count("111"), 1);
}

#[tokio::test]
async fn a_replace_while_changes_wait_to_be_applied_answers_1870145() {
    let (_running, sim, client) = sim_with(MetaSimConfig {
        apply_delay: Duration::from_secs(600),
        ..MetaSimConfig::default()
    })
    .await;
    client
        .call("POST", USERS, Some(&email_payload(&[&sha("a")])))
        .await;
    let (_, answer) = client
        .call("POST", REPLACE, Some(&batch("b", 30, 1, true)))
        .await;
    assert_eq!(subcode(&answer), (json!(2650), json!(1_870_145)));
    sim.advance(Duration::from_secs(600));
    let (status, _) = client
        .call("POST", REPLACE, Some(&batch("b", 30, 1, true)))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_replace_session_past_90_minutes_is_swapped_in_and_refuses_late_batches() {
    let (_running, sim, client) = sim().await;
    client
        .call("POST", USERS, Some(&email_payload(&[&sha("old")])))
        .await;
    client
        .call("POST", REPLACE, Some(&batch("a", 40, 1, false)))
        .await;
    sim.advance(Duration::from_secs(89 * 60));
    assert!(sim.has_member_with("111", "EMAIL", &sha("old")));
    sim.advance(Duration::from_secs(60));
    assert!(
        !sim.has_member_with("111", "EMAIL", &sha("old")),
        "replaced with what was uploaded"
    );
    assert!(sim.has_member_with("111", "EMAIL", &sha("a")));
    let (status, answer) = client
        .call("POST", REPLACE, Some(&batch("b", 40, 2, true)))
        .await;
    assert_eq!(status, 400);
    assert_eq!(subcode(&answer), (json!(2650), json!(1_870_158)));
    assert!(!sim.has_member_with("111", "EMAIL", &sha("b")));
}

#[tokio::test]
async fn a_batch_for_a_finished_session_answers_1870159() {
    let (_running, _sim, client) = sim().await;
    client
        .call("POST", REPLACE, Some(&batch("a", 50, 1, true)))
        .await;
    let (status, answer) = client
        .call("POST", REPLACE, Some(&batch("b", 50, 2, true)))
        .await;
    assert_eq!(status, 400);
    assert_eq!(subcode(&answer), (json!(2650), json!(1_870_159)));
}

#[tokio::test]
async fn a_users_session_past_its_window_discards_late_batches() {
    let (_running, sim, client) = sim().await;
    client
        .call("POST", USERS, Some(&batch("a", 60, 1, false)))
        .await;
    sim.advance(Duration::from_secs(90 * 60));
    let (status, _) = client
        .call("POST", USERS, Some(&batch("b", 60, 2, true)))
        .await;
    assert_eq!(status, 200);
    assert!(sim.has_member_with("111", "EMAIL", &sha("a")));
    assert!(!sim.has_member_with("111", "EMAIL", &sha("b")), "discarded");
    assert_eq!(sim.sessions("111")[0].stage, "finished");
}

#[tokio::test]
async fn a_session_keeps_the_schema_of_its_first_batch() {
    let (_running, _sim, client) = sim().await;
    client
        .call("POST", USERS, Some(&batch("a", 70, 1, false)))
        .await;
    let mut other = json!({"payload": {"schema": ["PHONE"], "data": [[sha("15551234567")]]}});
    other["session"] = json!({"session_id": 70, "batch_seq": 2, "last_batch_flag": true});
    let (status, answer) = client.call("POST", USERS, Some(&other)).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], 100, "{answer}");
}

#[tokio::test]
async fn a_path_or_verb_graph_does_not_serve_is_an_unsupported_request() {
    let (_running, _sim, client) = sim().await;
    for (method, path) in [
        ("PUT", "/v25.0/111/users?access_token=meta-sim-token"),
        ("GET", "/v25.0/111/usersreplace?access_token=meta-sim-token"),
        ("POST", "/v25.0/111/adaccounts?access_token=meta-sim-token"),
        ("DELETE", "/v25.0/111?access_token=meta-sim-token"),
    ] {
        let (status, answer) = client.call(method, path, None).await;
        assert_eq!(status, 400, "{method} {path}");
        assert_eq!(subcode(&answer), (json!(100), json!(33)), "{method} {path}");
        assert_eq!(answer["error"]["type"], "GraphMethodException");
    }
}
