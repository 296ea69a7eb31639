use std::time::Duration;

use serde_json::json;

use super::upload::{rejected_rows, users_body, Row};
use super::usage::{business_usage, UsageReport, UsageState};
use super::*;
use crate::domain::identity::sha256_hex;
use crate::domain::model::{Identifiers, OpKind, PersonKey};
use crate::domain::spec::{
    Cadence, ExportMode, ExportSource, GuardRails, IdKind, IdentitySpec, MatchKey,
};
use crate::ports::MapSecrets;
use dataout_sim::meta::{MetaFault, MetaSim, MetaSimConfig, DEFAULT_ACCESS_TOKEN};
use dataout_sim::RunningSim;

pub(super) const AUDIENCE: &str = "23850000000001";

pub(super) fn spec(base_url: &str, batch_size: usize) -> DestinationSpec {
    DestinationSpec {
        name: "meta".into(),
        kind: DestinationKind::MetaAudience,
        base_url: Some(base_url.into()),
        batch_size,
        max_concurrency: 1,
        max_requests_per_second: None,
        max_attempts: 3,
        settings: DestinationSettings::MetaAudience {
            api_version: "v25.0".into(),
            ad_account_id: "1234567890".into(),
            access_token_env: "META_ACCESS_TOKEN".into(),
        },
    }
}

pub(super) fn binding() -> ExportDestination {
    ExportDestination {
        destination: "meta".into(),
        audience: AUDIENCE.into(),
        tier_audiences: Default::default(),
        keys: Vec::new(),
    }
}

pub(super) fn export() -> ExportSpec {
    ExportSpec {
        name: "cart_abandoners".into(),
        source: ExportSource::Segment { segment_id: 7 },
        mode: ExportMode::Membership,
        cadence: Cadence::default(),
        identity: IdentitySpec {
            golden: IdKind::Id,
            fallbacks: vec![IdKind::Email],
            default_phone_region: Some("US".into()),
        },
        attributes: Vec::new(),
        tiers: Vec::new(),
        exit_on: Vec::new(),
        suppress: Vec::new(),
        destinations: vec![binding()],
        guard_rails: GuardRails::default(),
        test_profiles: Vec::new(),
    }
}

pub(super) fn op(
    kind: OpKind,
    id: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
) -> DeliveryOp {
    DeliveryOp {
        op: kind,
        person_key: PersonKey(format!("id:{}", id.unwrap_or("anon"))),
        ids: Identifiers {
            id: id.map(str::to_string),
            email: email.map(str::to_string),
            cio_id: None,
            phone: phone.map(str::to_string),
        },
        audience: AUDIENCE.into(),
        tier: None,
        attributes: Default::default(),
        event: None,
        source_ts: 0,
        intake_ts: 0,
    }
}

pub(super) async fn setup(
    batch_size: usize,
    token: &str,
) -> (RunningSim, MetaSim, MetaAudienceDestination) {
    let (running, sim) = MetaSim::start(MetaSimConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_audience(AUDIENCE);
    let secrets = MapSecrets::default().with("META_ACCESS_TOKEN", token);
    let dest = MetaAudienceDestination::new(
        "meta".into(),
        &spec(&running.base_url, batch_size),
        &secrets,
        reqwest::Client::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (running, sim, dest)
}

#[tokio::test]
async fn adds_land_as_hashed_rows_and_removes_take_them_out() {
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    let ops = vec![
        op(
            OpKind::Add,
            Some("u1"),
            Some(" Ann@Example.com "),
            Some("+1 (555) 123-4567"),
        ),
        op(OpKind::Add, None, Some("bob@example.com"), None),
        op(OpKind::Add, None, None, None),
    ];
    let outcomes = dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes[0], OpOutcome::Accepted);
    assert_eq!(outcomes[1], OpOutcome::Accepted);
    assert!(matches!(outcomes[2], OpOutcome::Unmatched { .. }));
    assert_eq!(sim.member_count(AUDIENCE), 2);
    assert!(sim.has_member_with(AUDIENCE, "EMAIL", &sha256_hex("ann@example.com")));
    assert!(sim.has_member_with(AUDIENCE, "EXTERN_ID", "u1"));
    assert_eq!(sim.request_count(), 1, "an unmatched person is never sent");

    let remove = vec![op(
        OpKind::Remove,
        Some("u1"),
        Some("ann@example.com"),
        None,
    )];
    let outcomes = dest
        .send(&export(), &binding(), &remove)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    assert_eq!(sim.member_count(AUDIENCE), 1);
    assert!(!sim.has_member_with(AUDIENCE, "EMAIL", &sha256_hex("ann@example.com")));
    let methods: Vec<String> = sim.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, vec!["POST", "DELETE"]);
}

#[tokio::test]
async fn phone_is_hashed_as_digits_without_plus() {
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    let ops = vec![op(OpKind::Add, None, None, Some("+1 650-253-0000"))];
    dest.send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(sim.has_member_with(AUDIENCE, "PHONE", &sha256_hex("16502530000")));
    assert!(!sim.has_member_with(AUDIENCE, "PHONE", &sha256_hex("+16502530000")));
}

#[tokio::test]
async fn wrong_token_is_permanent() {
    let (_running, _sim, dest) = setup(100, "stale-token").await;
    let ops = vec![op(OpKind::Add, Some("u1"), None, None)];
    let err = dest.send(&export(), &binding(), &ops).await.err();
    match err {
        Some(DestinationError::Permanent { message, .. }) => {
            assert!(message.contains("190"), "{message}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limit_codes_are_retryable_with_the_wait_meta_asks() {
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    let ops = vec![op(OpKind::Add, Some("u1"), None, None)];
    sim.fail_next(1, MetaFault::AudienceRateLimit);
    match dest.send(&export(), &binding(), &ops).await {
        Err(DestinationError::Retryable {
            retry_after,
            message,
            ..
        }) => {
            assert!(message.contains("80003"), "{message}");
            assert_eq!(retry_after, Some(Duration::from_secs(120)));
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    // While Meta's wait runs, the next job is held here, not sent.
    let calls = sim.request_count();
    assert!(dest
        .send(&export(), &binding(), &ops)
        .await
        .is_err_and(|e| e.is_retryable()));
    assert_eq!(sim.request_count(), calls);
    // Meta's wait is over.
    *dest.usage.lock().unwrap_or_else(|e| e.into_inner()) = UsageState::default();
    sim.fail_next(1, MetaFault::UserRateLimit);
    assert!(dest
        .send(&export(), &binding(), &ops)
        .await
        .is_err_and(|e| e.is_retryable()));
    *dest.usage.lock().unwrap_or_else(|e| e.into_inner()) = UsageState::default();
    sim.fail_next(1, MetaFault::ServerError);
    assert!(dest
        .send(&export(), &binding(), &ops)
        .await
        .is_err_and(|e| e.is_retryable()));
    let outcomes = dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
}

#[tokio::test]
async fn unknown_audience_is_permanent() {
    let (_running, _sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    let mut lost = op(OpKind::Add, Some("u1"), None, None);
    lost.audience = "999".into();
    let err = dest.send(&export(), &binding(), &[lost]).await.err();
    assert!(
        matches!(err, Some(DestinationError::Permanent { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn large_add_is_one_session_in_batch_sized_chunks() {
    let (_running, sim, dest) = setup(2, DEFAULT_ACCESS_TOKEN).await;
    let ops: Vec<DeliveryOp> = (0..5)
        .map(|i| op(OpKind::Add, Some(&format!("u{i}")), None, None))
        .collect();
    let outcomes = dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcomes.iter().all(|o| *o == OpOutcome::Accepted));
    assert_eq!(sim.member_count(AUDIENCE), 5);
    let requests = sim.requests();
    let rows: Vec<usize> = requests.iter().map(|r| r.rows).collect();
    assert_eq!(rows, vec![2, 2, 1]);
    let session = requests[0].session_id;
    assert!(session.is_some_and(|s| s > 0));
    assert!(requests.iter().all(|r| r.session_id == session));
    let seqs: Vec<Option<u64>> = requests.iter().map(|r| r.batch_seq).collect();
    assert_eq!(seqs, vec![Some(1), Some(2), Some(3)]);
    let last: Vec<Option<bool>> = requests.iter().map(|r| r.last_batch_flag).collect();
    assert_eq!(last, vec![Some(false), Some(false), Some(true)]);
}

#[tokio::test]
async fn email_change_keeps_the_person_in_the_audience() {
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    let phone = "+1 415 555 0101";
    let entered = vec![op(
        OpKind::Add,
        Some("p1"),
        Some("old@example.com"),
        Some(phone),
    )];
    dest.send(&export(), &binding(), &entered)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // What membership derives for an email change: the old row out, the
    // new row in. Both carry EXTERN_ID p1 and the same phone.
    let swap = vec![
        op(
            OpKind::Remove,
            Some("p1"),
            Some("old@example.com"),
            Some(phone),
        ),
        op(
            OpKind::Add,
            Some("p1"),
            Some("new@example.com"),
            Some(phone),
        ),
    ];
    let outcomes = dest
        .send(&export(), &binding(), &swap)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted, OpOutcome::Accepted]);
    assert!(sim.has_member_with(AUDIENCE, "EXTERN_ID", "p1"));
    assert!(sim.has_member_with(
        AUDIENCE,
        "EMAIL",
        "f0030501023327437b06e5c6f87df7871b8e704ae608d1d0b7b24fdd2a06c716"
    ));
    assert!(!sim.has_member_with(AUDIENCE, "EMAIL", &sha256_hex("old@example.com")));
    assert_eq!(sim.member_count(AUDIENCE), 1);
    let methods: Vec<String> = sim.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(
        methods,
        vec!["POST", "DELETE", "POST"],
        "the remove reaches Meta before the add"
    );
}

#[tokio::test]
async fn flagged_audience_is_paused_and_its_ops_rejected_without_failing_the_batch() {
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    sim.create_audience("777");
    sim.flag_audience(AUDIENCE);
    let mut elsewhere = op(OpKind::Add, Some("u2"), None, None);
    elsewhere.audience = "777".into();
    let ops = vec![op(OpKind::Add, Some("u1"), None, None), elsewhere];
    let outcomes = dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("a flagged audience failed the request: {e}"));
    assert!(
        matches!(&outcomes[0], OpOutcome::Rejected { reason } if reason.contains(AUDIENCE) && reason.contains("1713230")),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(outcomes[1], OpOutcome::Accepted);
    assert!(sim.has_member_with("777", "EXTERN_ID", "u2"));
    assert!(matches!(
        &dest.alerts()[..],
        [DestinationAlert::AudiencePaused { audience, .. }] if audience == AUDIENCE
    ));
    // Paused: the next ops for it are rejected without calling Meta.
    let calls = sim.request_count();
    let outcomes = dest
        .send(
            &export(),
            &binding(),
            &[op(OpKind::Remove, Some("u1"), None, None)],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(outcomes[0], OpOutcome::Rejected { .. }));
    assert_eq!(sim.request_count(), calls);
}

#[tokio::test]
async fn enter_then_leave_in_one_batch_ends_outside_the_audience() {
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    let ops = vec![
        op(OpKind::Add, Some("p2"), Some("p2@example.com"), None),
        op(OpKind::Add, Some("p3"), Some("p3@example.com"), None),
        op(OpKind::Remove, Some("p2"), Some("p2@example.com"), None),
    ];
    let outcomes = dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcomes.iter().all(|o| *o == OpOutcome::Accepted));
    assert!(!sim.has_member_with(AUDIENCE, "EXTERN_ID", "p2"));
    assert!(sim.has_member_with(AUDIENCE, "EXTERN_ID", "p3"));
    let methods: Vec<String> = sim.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, vec!["POST", "DELETE"]);
}

#[test]
fn send_slots_put_removes_first_and_a_later_remove_after_its_add() {
    let a = |id| op(OpKind::Add, Some(id), None, None);
    let r = |id| op(OpKind::Remove, Some(id), None, None);
    let slots = send_slots(&[r("x"), a("x"), a("y"), r("y"), a("y"), r("z")]);
    let got: Vec<(usize, bool)> = slots
        .into_iter()
        .map(|s| s.map(|s| (s.wave, s.add)).unwrap_or((usize::MAX, false)))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, false),
            (0, true),
            (0, true),
            (1, false),
            (1, true),
            (0, false)
        ]
    );
}

#[test]
fn business_usage_reads_the_highest_share_and_the_wait_for_our_account() {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-business-use-case-usage",
        reqwest::header::HeaderValue::from_static(
            r#"{"1234567890":[{"type":"custom_audience","call_count":81,"total_cputime":12,"total_time":40,"estimated_time_to_regain_access":0}],"999":[{"type":"custom_audience","call_count":100,"estimated_time_to_regain_access":30}]}"#,
        ),
    );
    assert_eq!(
        business_usage(&headers, "1234567890"),
        Some(UsageReport {
            pct: 81.0,
            regain_minutes: 0
        })
    );
    assert_eq!(
        business_usage(&headers, "999"),
        Some(UsageReport {
            pct: 100.0,
            regain_minutes: 30
        })
    );
    assert_eq!(
        business_usage(&reqwest::header::HeaderMap::new(), "1"),
        None
    );
}

#[tokio::test]
async fn usage_near_the_quota_holds_the_next_request_before_meta_refuses_it() {
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-business-use-case-usage",
        reqwest::header::HeaderValue::from_static(
            r#"{"1234567890":[{"type":"custom_audience","call_count":97,"total_cputime":10,"total_time":10,"estimated_time_to_regain_access":0}]}"#,
        ),
    );
    dest.observe_usage(&headers);
    let err = dest
        .send(
            &export(),
            &binding(),
            &[op(OpKind::Add, Some("u1"), None, None)],
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("sent at 97 % usage"));
    assert!(matches!(
        err,
        DestinationError::Retryable {
            retry_after: Some(_),
            ..
        }
    ));
    assert_eq!(sim.request_count(), 0, "nothing reached Meta");
}

#[tokio::test]
async fn ops_split_by_audience_and_direction_keep_their_order() {
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    sim.create_audience("777");
    let mut tiered = op(OpKind::Add, Some("u2"), None, None);
    tiered.audience = "777".into();
    let event = op(OpKind::Event, Some("u3"), None, None);
    let ops = vec![
        op(OpKind::Add, Some("u1"), None, None),
        tiered,
        event,
        op(OpKind::Remove, Some("u9"), None, None),
    ];
    let outcomes = dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes[0], OpOutcome::Accepted);
    assert_eq!(outcomes[1], OpOutcome::Accepted);
    assert!(matches!(outcomes[2], OpOutcome::Rejected { .. }));
    assert_eq!(outcomes[3], OpOutcome::Accepted);
    assert!(sim.has_member_with("777", "EXTERN_ID", "u2"));
    assert_eq!(sim.request_count(), 3);
}

#[tokio::test]
async fn audience_size_reads_the_count_fields() {
    let (_running, _sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    let ops = vec![
        op(OpKind::Add, Some("u1"), None, None),
        op(OpKind::Add, Some("u2"), None, None),
    ];
    dest.send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let size = dest
        .audience_size(&export(), &binding())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(size, Some(2));
}

#[test]
fn missing_token_secret_is_permanent_and_names_the_variable() {
    let err = MetaAudienceDestination::new(
        "meta".into(),
        &spec("http://127.0.0.1:1", 100),
        &MapSecrets::default(),
        reqwest::Client::new(),
    )
    .err();
    match err {
        Some(DestinationError::Permanent { message, .. }) => {
            assert!(message.contains("META_ACCESS_TOKEN"))
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[test]
fn invalid_sample_rejects_only_the_row_holding_it() {
    let rows = vec![
        Row {
            index: 4,
            cells: vec!["aa".into(), String::new()],
        },
        Row {
            index: 9,
            cells: vec!["bad".into(), "u9".into()],
        },
    ];
    let samples = json!({ "bad": "EMAIL: not a SHA-256 lowercase hex digest" });
    let rejected = rejected_rows(&rows, Some(&samples));
    assert_eq!(rejected.keys().copied().collect::<Vec<_>>(), vec![9]);
    assert!(rejected.get(&9).is_some_and(|r| r.contains("EMAIL")));
}

#[test]
fn graph_codes_decide_retry_before_http_status() {
    let dest = MetaAudienceDestination::new(
        "meta".into(),
        &spec("http://127.0.0.1:1", 100),
        &MapSecrets::default().with("META_ACCESS_TOKEN", "t"),
        reqwest::Client::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let headers = reqwest::header::HeaderMap::new();
    let body = |code: i64| json!({"error": {"message": "x", "code": code}}).to_string();
    for code in [80003, 80004, 4, 17, 613, 32, 341, 368, 1, 2] {
        assert!(
            dest.graph_error(400, &headers, body(code).as_bytes())
                .is_retryable(),
            "{code}"
        );
    }
    for code in [100, 190, 200, 2635, 105, 194, 2650] {
        assert!(
            !dest
                .graph_error(500, &headers, body(code).as_bytes())
                .is_retryable(),
            "{code}"
        );
    }
    assert!(dest
        .graph_error(502, &headers, b"<html>bad gateway</html>")
        .is_retryable());
    assert!(!dest.graph_error(404, &headers, b"not found").is_retryable());
}

#[tokio::test]
async fn a_value_based_audience_gets_lookalike_value_as_a_number_and_a_value_alone_matches_nobody()
{
    let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
    let b = ExportDestination {
        keys: vec![MatchKey::Email, MatchKey::LookalikeValue],
        ..binding()
    };
    let mut ann = op(OpKind::Add, Some("u1"), Some("ann@example.com"), None);
    ann.attributes
        .insert("lookalike_value".into(), serde_json::json!(2450.5));
    let mut nobody = op(OpKind::Add, None, None, None);
    nobody
        .attributes
        .insert("lookalike_value".into(), serde_json::json!("99"));
    let outcomes = dest
        .send(&export(), &b, &[ann, nobody])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes[0], OpOutcome::Accepted);
    assert!(
        matches!(outcomes[1], OpOutcome::Unmatched { .. }),
        "{:?}",
        outcomes[1]
    );
    // The simulator refuses LOOKALIKE_VALUE given as text, as Meta does:
    // the row landing with its value proves a number went on the wire.
    assert!(sim.has_member_with(AUDIENCE, "LOOKALIKE_VALUE", "2450.5"));
    let body = users_body(
        &["EMAIL", "LOOKALIKE_VALUE"],
        &[Row {
            index: 0,
            cells: vec!["ab12".into(), "2450.5".into()],
        }],
        None,
    );
    assert_eq!(
        body["payload"]["data"][0],
        serde_json::json!(["ab12", 2450.5])
    );
}
