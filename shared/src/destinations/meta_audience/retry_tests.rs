//! Meta's answers as Meta defines them: a busy audience is a wait, a failed
//! attempt's session is continued and closed, only the custom-audience use
//! case paces uploads, `is_transient` and throttling codes decide retries.

use std::time::Duration;

use serde_json::json;

use super::tests::{binding, export, op, setup, spec, AUDIENCE};
use super::usage::UsageState;
use super::*;
use crate::domain::model::OpKind;
use crate::ports::MapSecrets;
use dataout_sim::meta::{MetaFault, DEFAULT_ACCESS_TOKEN};

fn offline_destination() -> MetaAudienceDestination {
    MetaAudienceDestination::new(
        "meta".into(),
        &spec("http://127.0.0.1:1", 100),
        &MapSecrets::default().with("META_ACCESS_TOKEN", "t"),
        reqwest::Client::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn error_body(error: serde_json::Value) -> Vec<u8> {
    json!({ "error": error }).to_string().into_bytes()
}

fn usage_header(value: &'static str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-business-use-case-usage",
        reqwest::header::HeaderValue::from_static(value),
    );
    headers
}

/// Open a replace of the audience straight at the simulator (as another
/// tool of the advertiser would), leaving its session open.
async fn open_replace(base_url: &str, session_id: i64) {
    let body = json!({
        "payload": {"schema": ["EXTERN_ID"], "data": [["someone"]]},
        "session": {"session_id": session_id, "batch_seq": 1, "last_batch_flag": false},
    });
    let status = reqwest::Client::new()
        .post(format!("{base_url}/v25.0/{AUDIENCE}/usersreplace"))
        .bearer_auth(DEFAULT_ACCESS_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_busy_audience_is_a_wait_and_rejects_no_op() {
    let (running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    open_replace(&running.base_url, 4242).await;
    let ops = vec![op(OpKind::Add, Some("u1"), None, None)];
    match dest.send(&export(), &binding(), &ops).await {
        Err(DestinationError::Retryable {
            retry_after: Some(wait),
            message,
            ..
        }) => {
            assert!(message.contains("1870145"), "{message}");
            assert!(wait >= Duration::from_secs(60), "{wait:?}");
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    // A busy audience holds only itself: no pause of the destination.
    assert!(dest.alerts().is_empty());
    // Once the replace is over, the same job goes through.
    let finish = json!({
        "payload": {"schema": ["EXTERN_ID"], "data": [["someone"]]},
        "session": {"session_id": 4242, "batch_seq": 2, "last_batch_flag": true},
    });
    reqwest::Client::new()
        .post(format!(
            "{}/v25.0/{AUDIENCE}/usersreplace",
            running.base_url
        ))
        .bearer_auth(DEFAULT_ACCESS_TOKEN)
        .json(&finish)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let outcomes = dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    assert_eq!(sim.member_count(AUDIENCE), 2);
}

#[test]
fn a_timed_out_replace_session_is_a_wait_and_other_2650s_are_permanent() {
    let dest = offline_destination();
    let headers = reqwest::header::HeaderMap::new();
    for subcode in [1_870_145, 1_870_158] {
        let body = error_body(
            json!({"message": "(#2650) Failed to update the custom audience", "code": 2650, "error_subcode": subcode}),
        );
        match dest.graph_error(400, &headers, &body) {
            CallError::Destination(DestinationError::Retryable {
                retry_after: Some(_),
                ..
            })
            | CallError::SessionEnded(DestinationError::Retryable {
                retry_after: Some(_),
                ..
            }) => {}
            other => panic!("{subcode}: expected a wait, got {:?}", other.is_retryable()),
        }
    }
    // The first batch_seq missing, a finished session, a list too large.
    for subcode in [1_870_147, 1_870_159, 1_870_144] {
        let body = error_body(json!({"message": "x", "code": 2650, "error_subcode": subcode}));
        assert!(
            !dest.graph_error(400, &headers, &body).is_retryable(),
            "{subcode}"
        );
    }
}

#[tokio::test]
async fn a_retried_job_continues_and_closes_the_session_its_failed_attempt_left_open() {
    let (_running, sim, dest) = setup(2, DEFAULT_ACCESS_TOKEN).await;
    let ops: Vec<DeliveryOp> = (0..5)
        .map(|i| op(OpKind::Add, Some(&format!("u{i}")), None, None))
        .collect();
    // The second request of the upload fails: its session is half sent.
    sim.fail_nth(2, MetaFault::Transient);
    assert!(dest
        .send(&export(), &binding(), &ops)
        .await
        .is_err_and(|e| e.is_retryable()));
    let outcomes = dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcomes.iter().all(|o| *o == OpOutcome::Accepted));
    let requests = sim.requests();
    let first = requests[0].session_id;
    assert!(first.is_some());
    assert!(
        requests.iter().all(|r| r.session_id == first),
        "one session, continued: {:?}",
        requests.iter().map(|r| r.session_id).collect::<Vec<_>>()
    );
    let seqs: Vec<Option<u64>> = requests.iter().map(|r| r.batch_seq).collect();
    assert_eq!(seqs, vec![Some(1), Some(2), Some(2), Some(3), Some(4)]);
    assert_eq!(requests.last().and_then(|r| r.last_batch_flag), Some(true));
    let sessions = sim.sessions(AUDIENCE);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].stage, "finished", "no session left open");
    assert_eq!(sim.member_count(AUDIENCE), 5);
}

#[tokio::test]
async fn a_replace_after_a_failed_upload_is_not_refused_as_busy() {
    let (_running, sim, dest) = setup(2, DEFAULT_ACCESS_TOKEN).await;
    let ops: Vec<DeliveryOp> = (0..4)
        .map(|i| op(OpKind::Add, Some(&format!("u{i}")), None, None))
        .collect();
    sim.fail_nth(2, MetaFault::Transient);
    assert!(dest.send(&export(), &binding(), &ops).await.is_err());
    // The retry closes the session the failure left open, so the audience
    // is Normal again and a replace (a rollback) goes through.
    dest.send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let members = vec![op(OpKind::Add, Some("kept"), None, None)];
    let outcomes = dest
        .replace_audience(&export(), &binding(), AUDIENCE, &members)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, Some(vec![OpOutcome::Accepted]));
    assert_eq!(sim.member_count(AUDIENCE), 1);
}

#[test]
fn usage_reads_only_the_custom_audience_use_case() {
    let headers = usage_header(
        r#"{"1234567890":[{"type":"ads_insights","call_count":100,"total_cputime":100,"total_time":100,"estimated_time_to_regain_access":30},{"type":"custom_audience","call_count":12,"total_cputime":3,"total_time":8,"estimated_time_to_regain_access":0}]}"#,
    );
    assert_eq!(
        usage::business_usage(&headers, "1234567890"),
        Some(usage::UsageReport {
            pct: 12.0,
            regain_minutes: 0
        })
    );
    assert_eq!(
        retry_after(&headers, Some(CUSTOM_AUDIENCE_USE_CASE)),
        None,
        "the ads_insights wait is not ours"
    );
    let other_only = usage_header(
        r#"{"1234567890":[{"type":"ads_management","call_count":99,"estimated_time_to_regain_access":5}]}"#,
    );
    assert_eq!(usage::business_usage(&other_only, "1234567890"), None);
}

#[tokio::test]
async fn a_spent_ads_insights_quota_does_not_hold_audience_uploads() {
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    dest.observe_usage(&usage_header(
        r#"{"1234567890":[{"type":"ads_insights","call_count":100,"total_cputime":100,"total_time":100,"estimated_time_to_regain_access":30},{"type":"custom_audience","call_count":10,"total_cputime":10,"total_time":10,"estimated_time_to_regain_access":0}]}"#,
    ));
    let outcomes = dest
        .send(
            &export(),
            &binding(),
            &[op(OpKind::Add, Some("u1"), None, None)],
        )
        .await
        .unwrap_or_else(|e| panic!("held by another use case's quota: {e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    assert_eq!(sim.request_count(), 1);
}

#[test]
fn is_transient_makes_a_retry_whatever_the_code() {
    let dest = offline_destination();
    let headers = reqwest::header::HeaderMap::new();
    let transient = error_body(json!({"message": "x", "code": 100, "is_transient": true}));
    assert!(dest.graph_error(400, &headers, &transient).is_retryable());
    let lasting = error_body(json!({"message": "x", "code": 100, "is_transient": false}));
    assert!(!dest.graph_error(400, &headers, &lasting).is_retryable());
}

#[test]
fn throttling_codes_are_waits_even_when_meta_names_no_wait() {
    for code in [4, 17, 32, 613, 80003, 80004] {
        let dest = offline_destination();
        let body = error_body(json!({"message": "x", "code": code}));
        match dest.graph_error(400, &reqwest::header::HeaderMap::new(), &body) {
            CallError::Destination(DestinationError::Retryable {
                retry_after: Some(wait),
                ..
            }) => assert!(wait >= Duration::from_secs(60), "{code}: {wait:?}"),
            other => panic!("{code}: expected a wait, got {:?}", other.is_retryable()),
        }
        // And the destination holds its next request until then.
        let usage = dest.usage.lock().unwrap_or_else(|e| e.into_inner());
        assert!(usage.blocked_until.is_some(), "{code}");
        drop(usage);
        *dest.usage.lock().unwrap_or_else(|e| e.into_inner()) = UsageState::default();
    }
}

#[tokio::test]
async fn a_session_meta_timed_out_is_not_continued_by_the_retry() {
    let (_running, sim, dest) = setup(1, DEFAULT_ACCESS_TOKEN).await;
    let members: Vec<DeliveryOp> = (0..3)
        .map(|i| op(OpKind::Add, Some(&format!("m{i}")), None, None))
        .collect();
    // The replace's second batch fails; then Meta's 90 minutes run out.
    sim.fail_nth(2, MetaFault::Transient);
    assert!(dest
        .replace_audience(&export(), &binding(), AUDIENCE, &members)
        .await
        .is_err());
    sim.advance(Duration::from_secs(91 * 60));
    // Continuing it meets 1870158 (a wait); the session is dropped, so the
    // next attempt starts a new replace that Meta takes.
    match dest
        .replace_audience(&export(), &binding(), AUDIENCE, &members)
        .await
    {
        Err(DestinationError::Retryable { message, .. }) => {
            assert!(message.contains("1870158"), "{message}")
        }
        other => panic!("expected the timed-out session's wait, got {other:?}"),
    }
    let outcomes = dest
        .replace_audience(&export(), &binding(), AUDIENCE, &members)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, Some(vec![OpOutcome::Accepted; 3]));
    assert_eq!(sim.member_count(AUDIENCE), 3);
}
