//! Tests of the Meta simulator: the contract, and each behaviour that makes
//! it as strict and as slow as Meta.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

pub(super) fn sha(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub(super) async fn sim() -> (RunningSim, MetaSim, Client) {
    sim_with(MetaSimConfig::default()).await
}

pub(super) async fn sim_with(config: MetaSimConfig) -> (RunningSim, MetaSim, Client) {
    let (running, sim) = MetaSim::start(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_audience("111");
    let client = Client {
        base: running.base_url.clone(),
        http: reqwest::Client::new(),
    };
    (running, sim, client)
}

pub(super) struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, _, body) = self.call_full(method, path, body).await;
        (status, body)
    }

    /// Status, `X-Business-Use-Case-Usage` (parsed) and body.
    pub(super) async fn call_full(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        let usage = resp
            .headers()
            .get("x-business-use-case-usage")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or(Value::Null);
        (status, usage, resp.json().await.unwrap_or(Value::Null))
    }
}

pub(super) fn email_payload(values: &[&str]) -> Value {
    json!({"payload": {"schema": ["EMAIL"], "data": values.iter().map(|v| vec![*v]).collect::<Vec<_>>()}})
}

#[tokio::test]
async fn raw_email_counts_as_invalid_entry_and_is_not_added() {
    let (_running, sim, client) = sim().await;
    let good = sha("a@example.com");
    let (status, body) = client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&email_payload(&[&good, "B@Example.com"])),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["num_received"], 2);
    assert_eq!(body["num_invalid_entries"], 1);
    assert!(body["invalid_entry_samples"].get("B@Example.com").is_some());
    assert_eq!(sim.member_count("111"), 1);
    assert!(sim.has_member_with("111", "EMAIL", &good));
}

#[tokio::test]
async fn delete_with_payload_in_query_string_removes_member() {
    let (_running, sim, client) = sim().await;
    let h = sha("a@example.com");
    client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&email_payload(&[&h])),
        )
        .await;
    assert_eq!(sim.member_count("111"), 1);
    let payload = json!({"schema": "EMAIL_SHA256", "data": [h]}).to_string();
    let resp = client
        .http
        .delete(format!("{}/v25.0/111/users", client.base))
        .query(&[
            ("access_token", "meta-sim-token"),
            ("payload", payload.as_str()),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.member_count("111"), 0);
}

#[tokio::test]
async fn wrong_token_answers_code_190() {
    let (_running, _sim, client) = sim().await;
    let (status, body) = client
        .call(
            "POST",
            "/v25.0/111/users?access_token=nope",
            Some(&email_payload(&[&sha("x")])),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 190);
    assert_eq!(body["error"]["type"], "OAuthException");
}

#[tokio::test]
async fn unknown_audience_answers_code_100() {
    let (_running, _sim, client) = sim().await;
    let (_, body) = client
        .call(
            "POST",
            "/v25.0/999/users?access_token=meta-sim-token",
            Some(&email_payload(&[&sha("x")])),
        )
        .await;
    assert_eq!(body["error"]["code"], 100);
}

#[tokio::test]
async fn more_than_ten_thousand_rows_refused_with_code_100() {
    let (_running, sim, client) = sim().await;
    let h = sha("x");
    let rows: Vec<&str> = std::iter::repeat_n(h.as_str(), 10_001).collect();
    let (status, body) = client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&email_payload(&rows)),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 100);
    assert_eq!(sim.member_count("111"), 0);
}

#[tokio::test]
async fn row_of_wrong_length_and_unknown_schema_key_are_refused() {
    let (_running, _sim, client) = sim().await;
    let bad_len = json!({"payload": {"schema": ["EMAIL", "PHONE"], "data": [[sha("x")]]}});
    let (_, body) = client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&bad_len),
        )
        .await;
    assert_eq!(body["error"]["code"], 100);
    let bad_key =
        json!({"payload": {"schema": ["EMAIL", "SHOE_SIZE"], "data": [[sha("x"), "42"]]}});
    let (_, body) = client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&bad_key),
        )
        .await;
    assert_eq!(body["error"]["code"], 100);
}

#[tokio::test]
async fn session_must_start_at_batch_seq_one() {
    let (_running, _sim, client) = sim().await;
    let mut body = email_payload(&[&sha("x")]);
    body["session"] = json!({"session_id": 77, "batch_seq": 2, "last_batch_flag": false});
    let (_, answer) = client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&body),
        )
        .await;
    assert_eq!(answer["error"]["code"], 2650);
    assert_eq!(answer["error"]["error_subcode"], 1_870_147);
}

#[tokio::test]
async fn replace_session_swaps_members_on_last_batch() {
    let (_running, sim, client) = sim().await;
    let (old, new_a, new_b) = (sha("old"), sha("a"), sha("b"));
    client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&email_payload(&[&old])),
        )
        .await;
    let mut first = email_payload(&[&new_a]);
    first["session"] = json!({"session_id": 5, "batch_seq": 1, "last_batch_flag": false, "estimated_num_total": 2});
    client
        .call(
            "POST",
            "/v25.0/111/usersreplace?access_token=meta-sim-token",
            Some(&first),
        )
        .await;
    assert!(sim.has_member_with("111", "EMAIL", &old));
    let mut last = email_payload(&[&new_b]);
    last["session"] = json!({"session_id": 5, "batch_seq": 2, "last_batch_flag": true});
    let (status, _) = client
        .call(
            "POST",
            "/v25.0/111/usersreplace?access_token=meta-sim-token",
            Some(&last),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(sim.member_count("111"), 2);
    assert!(!sim.has_member_with("111", "EMAIL", &old));
}

#[tokio::test]
async fn injected_rate_limit_answers_80003_then_recovers() {
    let (_running, sim, client) = sim().await;
    sim.fail_next(1, MetaFault::AudienceRateLimit);
    let body = email_payload(&[&sha("x")]);
    let (status, answer) = client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&body),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!(80003))
    );
    let (status, _) = client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&body),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(sim.request_count(), 2);
}

#[tokio::test]
async fn count_fields_report_member_count() {
    let (_running, _sim, client) = sim().await;
    client
        .call(
            "POST",
            "/v25.0/111/users?access_token=meta-sim-token",
            Some(&email_payload(&[&sha("a"), &sha("b")])),
        )
        .await;
    let (status, body) = client
        .call("GET", "/v25.0/111?fields=approximate_count_lower_bound,approximate_count_upper_bound&access_token=meta-sim-token", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["approximate_count_lower_bound"], 2);
}

#[tokio::test]
async fn deprecated_version_answers_2635() {
    let (_running, _sim, client) = sim().await;
    let (_, body) = client
        .call(
            "POST",
            "/v12.0/111/users?access_token=meta-sim-token",
            Some(&email_payload(&[&sha("a")])),
        )
        .await;
    assert_eq!(body["error"]["code"], 2635);
}

pub(super) const USERS: &str = "/v25.0/111/users?access_token=meta-sim-token";

fn emails(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| sha(&format!("person{i}@example.com")))
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn non_matching_share_is_received_but_never_joins_and_sessions_say_so() {
    let config = MetaSimConfig {
        unmatched_share: 0.2,
        ..MetaSimConfig::default()
    };
    let (_running, sim, client) = sim_with(config.clone()).await;
    let rows = emails(1000);
    let (status, body) = client
        .call("POST", USERS, Some(&email_payload(&refs(&rows))))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["num_received"], 1000);
    let count = sim.member_count("111");
    assert!(
        (700..=900).contains(&count),
        "about 80 % of 1000 should match, got {count}"
    );
    let (status, sessions) = client
        .call(
            "GET",
            "/v25.0/111/sessions?access_token=meta-sim-token",
            None,
        )
        .await;
    assert_eq!(status, 200, "{sessions}");
    let s = &sessions["data"][0];
    assert_eq!(s["stage"], "finished");
    assert_eq!(s["num_received"], 1000);
    assert_eq!(s["num_matched"], count as u64);
    assert_eq!(s["num_invalid_entries"], 0);
    // Count fields report matched members only.
    let (_, fields) = client
        .call("GET", "/v25.0/111?fields=approximate_count_lower_bound,approximate_count_upper_bound&access_token=meta-sim-token", None)
        .await;
    assert_eq!(fields["approximate_count_lower_bound"], count as u64);
    assert_eq!(fields["approximate_count_upper_bound"], count as u64);
    // Reproducible: a fresh simulator matches exactly the same rows.
    let (_running2, again, client2) = sim_with(config).await;
    client2
        .call("POST", USERS, Some(&email_payload(&refs(&rows))))
        .await;
    assert_eq!(again.members("111"), sim.members("111"));
}

#[tokio::test]
async fn a_person_keeps_their_match_when_their_email_changes() {
    let sim = MetaSim::new(MetaSimConfig {
        unmatched_share: 0.5,
        ..MetaSimConfig::default()
    });
    let row = |email: &str| -> Member {
        [
            ("EXTERN_ID".to_string(), "person-7".to_string()),
            ("EMAIL".to_string(), sha(email)),
        ]
        .into_iter()
        .collect()
    };
    assert_eq!(
        sim.would_match(&row("old@x.com")),
        sim.would_match(&row("new@x.com"))
    );
}

#[tokio::test]
async fn changes_reach_the_audience_only_after_the_apply_delay() {
    let (_running, sim, client) = sim_with(MetaSimConfig {
        apply_delay: Duration::from_secs(3600),
        ..MetaSimConfig::default()
    })
    .await;
    let h = sha("a@example.com");
    let (status, body) = client
        .call("POST", USERS, Some(&email_payload(&[&h])))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["num_received"], 1);
    assert_eq!(sim.member_count("111"), 0, "applied before the delay");
    assert_eq!(sim.pending_changes(), 1);
    let progress = sim.sessions("111");
    assert_eq!(progress[0].stage, "processing");
    assert_eq!(progress[0].num_matched, 0);
    sim.advance(Duration::from_secs(3599));
    assert_eq!(sim.member_count("111"), 0);
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.member_count("111"), 1);
    let progress = sim.sessions("111");
    assert_eq!(progress[0].stage, "finished");
    assert_eq!(progress[0].num_matched, 1);
    assert!(progress[0].end_time.is_some());
    // A remove waits its turn too, and applies in arrival order.
    client
        .call("DELETE", USERS, Some(&email_payload(&[&h])))
        .await;
    assert_eq!(sim.member_count("111"), 1);
    sim.advance(Duration::from_secs(3600));
    assert_eq!(sim.member_count("111"), 0);
}

#[tokio::test]
async fn expired_token_answers_190_until_a_new_token_is_set() {
    let (_running, sim, client) = sim().await;
    let body = email_payload(&[&sha("a")]);
    sim.expire_token();
    let (status, answer) = client.call("POST", USERS, Some(&body)).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], 190);
    assert_eq!(answer["error"]["error_subcode"], 463);
    assert_eq!(answer["error"]["type"], "OAuthException");
    sim.set_access_token("fresh-token");
    let (status, _) = client.call("POST", USERS, Some(&body)).await;
    assert_eq!(status, 400, "the old token stays refused");
    let (status, _) = client
        .call(
            "POST",
            "/v25.0/111/users?access_token=fresh-token",
            Some(&body),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn response_delay_holds_every_request() {
    let (_running, _sim, client) = sim_with(MetaSimConfig {
        response_delay: Some(Duration::from_millis(200)),
        ..MetaSimConfig::default()
    })
    .await;
    let started = Instant::now();
    let (status, _) = client
        .call("POST", USERS, Some(&email_payload(&[&sha("a")])))
        .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn hourly_quota_reports_usage_then_answers_80003_until_the_window_ends() {
    // 3 + 1 × one audience = 4 calls an hour.
    let (_running, sim, client) = sim_with(MetaSimConfig {
        quota_base: Some(3),
        quota_per_audience: 1,
        ..MetaSimConfig::default()
    })
    .await;
    let body = email_payload(&[&sha("a")]);
    let (status, usage, _) = client.call_full("POST", USERS, Some(&body)).await;
    assert_eq!(status, 200);
    let entry = &usage["1234567890"][0];
    assert_eq!(entry["type"], "custom_audience");
    assert_eq!(entry["ads_api_access_tier"], "development_access");
    assert_eq!(entry["call_count"], 25);
    assert_eq!(entry["estimated_time_to_regain_access"], 0);
    for _ in 0..3 {
        let (status, _) = client.call("POST", USERS, Some(&body)).await;
        assert_eq!(status, 200);
    }
    let (status, usage, answer) = client.call_full("POST", USERS, Some(&body)).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!(80003))
    );
    let entry = &usage["1234567890"][0];
    assert_eq!(entry["call_count"], 100);
    assert_eq!(entry["estimated_time_to_regain_access"], 60);
    assert_eq!(sim.quota_calls(), 4);
    sim.advance(Duration::from_secs(3600));
    let (status, _) = client.call("POST", USERS, Some(&body)).await;
    assert_eq!(status, 200, "a new hour, a new quota");
}

#[tokio::test]
async fn flagged_audience_refuses_every_upload_with_subcode_1713230() {
    let (_running, sim, client) = sim().await;
    sim.flag_audience("111");
    let body = email_payload(&[&sha("a")]);
    for method in ["POST", "DELETE"] {
        let (status, answer) = client.call(method, USERS, Some(&body)).await;
        assert_eq!(status, 400);
        assert_eq!(answer["error"]["code"], 100);
        assert_eq!(answer["error"]["error_subcode"], 1_713_230);
    }
    let (_, fields) = client
        .call(
            "GET",
            "/v25.0/111?fields=operation_status&access_token=meta-sim-token",
            None,
        )
        .await;
    assert_eq!(fields["operation_status"]["code"], 471);
    assert_eq!(sim.member_count("111"), 0);
    // Named after a health condition: flagged at birth.
    let (_, created) = client
        .call(
            "POST",
            "/v25.0/act_1234567890/customaudiences?access_token=meta-sim-token",
            Some(&json!({"name": "Diabetes care buyers", "subtype": "CUSTOM"})),
        )
        .await;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    assert!(sim.is_flagged(&id), "{created}");
}

#[tokio::test]
async fn request_log_keeps_arrival_order_operation_and_rows() {
    let (_running, sim, client) = sim().await;
    let (old, new) = (sha("old@example.com"), sha("new@example.com"));
    client
        .call("DELETE", USERS, Some(&email_payload(&[&old])))
        .await;
    client
        .call("POST", USERS, Some(&email_payload(&[&new])))
        .await;
    let log = sim.requests();
    let ops: Vec<_> = log.iter().map(|r| (r.op, r.audience.clone())).collect();
    assert_eq!(
        ops,
        vec![
            (Some(EditOp::Remove), Some("111".to_string())),
            (Some(EditOp::Add), Some("111".to_string()))
        ]
    );
    assert_eq!(log[0].schema, vec!["EMAIL".to_string()]);
    assert_eq!(log[0].data, vec![vec![old]]);
    assert_eq!(log[1].data, vec![vec![new]]);
}

#[tokio::test]
async fn versions_below_the_minimum_answer_2635() {
    let (_running, _sim, client) = sim().await;
    let body = email_payload(&[&sha("a")]);
    let (_, answer) = client
        .call(
            "POST",
            "/v24.0/111/users?access_token=meta-sim-token",
            Some(&body),
        )
        .await;
    assert_eq!(answer["error"]["code"], 2635);
    let (status, _) = client.call("POST", USERS, Some(&body)).await;
    assert_eq!(status, 200);
}
