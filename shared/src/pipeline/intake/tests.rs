use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use crate::adapters::embedded::state::EmbeddedStateStore;
use crate::customerio::webhook::sign;
use crate::ports::{Secret, SystemClock};

pub(crate) const SECRET: &str = "intake-test-secret";

pub(crate) fn deps(dir: &std::path::Path) -> Deps {
    let spec = crate::domain::config::parse_spec(
        include_str!("../../../../config/exports.example.yaml"),
        "exports.example.yaml",
    )
    .expect("example spec");
    let clock: Arc<dyn crate::ports::Clock> = Arc::new(SystemClock);
    Deps {
        spec: Arc::new(spec),
        state: Arc::new(EmbeddedStateStore::open(&dir.join("s.redb")).expect("state")),
        queue: Arc::new(
            EmbeddedQueue::open(&dir.join("q.redb"), QueueSettings::default(), clock.clone())
                .expect("queue"),
        ),
        clock,
    }
}

pub(crate) fn cfg() -> IntakeConfig {
    IntakeConfig {
        reporting: SignatureConfig {
            secret: Secret::new(SECRET),
            tolerance: Duration::from_secs(300),
        },
        actions: ActionAuthConfig {
            header_name: "x-dataout-token".into(),
            secret: Secret::new(SECRET),
            mode: crate::customerio::actions::ActionAuthMode::SharedSecret,
            tolerance: Duration::from_secs(300),
            basic: None,
        },
        dedup_ttl: Duration::from_secs(3600),
        in_progress_ttl: Duration::from_secs(30),
    }
}

fn reporting_headers(body: &[u8]) -> BTreeMap<String, String> {
    let ts = chrono::Utc::now().timestamp();
    [
        ("x-cio-timestamp".to_string(), ts.to_string()),
        (
            "x-cio-signature".to_string(),
            sign(SECRET.as_bytes(), ts, body),
        ),
    ]
    .into()
}

fn signed_at(body: &[u8], ts: i64, secret: &str) -> BTreeMap<String, String> {
    [
        ("x-cio-timestamp".to_string(), ts.to_string()),
        (
            "x-cio-signature".to_string(),
            sign(secret.as_bytes(), ts, body),
        ),
    ]
    .into()
}

const OPENED: &[u8] = br#"{"event_id":"01JSTALE0000000000000000001","object_type":"email","metric":"opened","timestamp":1751371200,"data":{"identifiers":{"id":"cust_00077"},"delivery_id":"RPILAgUBcRhIBqSfeiIwdIYJKxTY","action_id":96,"campaign_id":5,"recipient":"x@example.com"}}"#;

async fn intake_counter(deps: &Deps, name: &str) -> u64 {
    deps.state
        .get_counters(&CounterScope::intake())
        .await
        .expect("counters")
        .get(name)
        .copied()
        .unwrap_or(0) as u64
}

#[tokio::test]
async fn correctly_signed_body_older_than_the_window_is_applied_not_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deps = deps(dir.path());
    let an_hour_ago = chrono::Utc::now().timestamp() - 3600;
    let headers = signed_at(OPENED, an_hour_ago, SECRET);
    let resp = handle(&deps, &cfg(), Route::Reporting, &headers, OPENED).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body["status"], "accepted", "{resp:?}");
    let age = resp.body["signed_age_s"]
        .as_i64()
        .expect("age in the answer");
    assert!((3600..3660).contains(&age), "{resp:?}");
    assert_eq!(
        intake_counter(&deps, counter::WEBHOOKS_SIGNED_STALE).await,
        1
    );
    // The same delivery again is recognised by its event id.
    let again = handle(&deps, &cfg(), Route::Reporting, &headers, OPENED).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["status"], "duplicate", "{again:?}");
    // Signed in the future beyond the window (clock skew): applied too.
    let body = String::from_utf8_lossy(OPENED).replace("0001\"", "0002\"");
    let ahead = signed_at(
        body.as_bytes(),
        chrono::Utc::now().timestamp() + 900,
        SECRET,
    );
    let resp = handle(&deps, &cfg(), Route::Reporting, &ahead, body.as_bytes()).await;
    assert_eq!(resp.body["status"], "accepted", "{resp:?}");
    assert!(resp.body["signed_age_s"].as_i64().is_some_and(|a| a < -800));
}

#[tokio::test]
async fn signed_body_older_than_the_dedup_memory_is_quarantined_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deps = deps(dir.path());
    // cfg() remembers event ids for one hour.
    let two_hours_ago = chrono::Utc::now().timestamp() - 7200;
    let headers = signed_at(OPENED, two_hours_ago, SECRET);
    let resp = handle(&deps, &cfg(), Route::Reporting, &headers, OPENED).await;
    assert_eq!(resp.status, 202, "{resp:?}");
    assert_eq!(resp.body["status"], "quarantined", "{resp:?}");
    let reason = resp.body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("correctly signed"), "{reason}");
    assert!(reason.contains("dedup memory"), "{reason}");
    let id = resp.body["quarantine_id"].as_str().expect("id");
    let entry = deps
        .state
        .get_quarantine(id)
        .await
        .expect("state")
        .expect("kept");
    assert_eq!(entry.reason, reason);
    assert!(!entry.headers.contains_key("x-cio-signature"));
    assert_eq!(
        intake_counter(&deps, counter::WEBHOOKS_SIGNED_STALE).await,
        1
    );
    assert_eq!(
        intake_counter(&deps, counter::WEBHOOKS_QUARANTINED).await,
        1
    );
    // The operator's replay applies it.
    let replayed = replay_quarantined(&deps, &cfg(), id).await.expect("replay");
    assert_eq!(replayed.body["status"], "accepted", "{replayed:?}");
}

#[tokio::test]
async fn stale_body_with_a_wrong_signature_is_still_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deps = deps(dir.path());
    let an_hour_ago = chrono::Utc::now().timestamp() - 3600;
    let forged = signed_at(OPENED, an_hour_ago, "not-the-signing-secret");
    let resp = handle(&deps, &cfg(), Route::Reporting, &forged, OPENED).await;
    assert_eq!(resp.status, 401, "{resp:?}");
    let mut tampered = OPENED.to_vec();
    tampered[20] = b'Z';
    let headers = signed_at(OPENED, an_hour_ago, SECRET);
    let resp = handle(&deps, &cfg(), Route::Reporting, &headers, &tampered).await;
    assert_eq!(resp.status, 401, "{resp:?}");
    assert_eq!(
        intake_counter(&deps, counter::WEBHOOKS_SIGNED_STALE).await,
        0
    );
}

#[tokio::test]
async fn webhook_action_with_basic_credentials_is_taken_and_they_are_never_kept() {
    use crate::customerio::actions::BasicCredentials;
    let dir = tempfile::tempdir().expect("tempdir");
    let deps = deps(dir.path());
    let mut cfg = cfg();
    cfg.actions.basic =
        Some(BasicCredentials::parse(&Secret::new("cio-hooks:s3cr3t")).expect("credentials"));
    // `printf %s 'cio-hooks:s3cr3t' | base64`
    let headers: BTreeMap<String, String> = [(
        "authorization".to_string(),
        "Basic Y2lvLWhvb2tzOnMzY3IzdA==".to_string(),
    )]
    .into();
    let enter = br#"{"action":"enter","export":"cart_abandoners","person":{"id":"cust_00091"},"sent_at":1751371200}"#;
    let resp = handle(&deps, &cfg, Route::Actions, &headers, enter).await;
    assert_eq!(resp.body["status"], "accepted", "{resp:?}");
    let unknown = br#"{"action":"enter","export":"no_such_export","person":{"id":"cust_00091"}}"#;
    let resp = handle(&deps, &cfg, Route::Actions, &headers, unknown).await;
    assert_eq!(resp.body["status"], "quarantined", "{resp:?}");
    let id = resp.body["quarantine_id"].as_str().expect("id");
    let entry = deps
        .state
        .get_quarantine(id)
        .await
        .expect("state")
        .expect("kept");
    assert!(!entry.headers.contains_key("authorization"), "{entry:?}");
    // Wrong credentials: refused, and the answer does not echo them.
    let wrong: BTreeMap<String, String> = [(
        "authorization".to_string(),
        "Basic Y2lvLWhvb2tzOndyb25n".to_string(),
    )]
    .into();
    let resp = handle(&deps, &cfg, Route::Actions, &wrong, enter).await;
    assert_eq!(resp.status, 401, "{resp:?}");
    assert!(!resp.body.to_string().contains("wrong"), "{resp:?}");
}

#[tokio::test]
async fn unsubscribe_led_to_by_a_channel_feeds_the_customer_feed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut deps = deps(dir.path());
    let text = include_str!("../../../../config/exports.example.yaml").replace(
        "email.unsubscribed: [email_suppression]",
        "customer.unsubscribed: [email_suppression]",
    );
    deps.spec =
        Arc::new(crate::domain::config::parse_spec(&text, "exports.example.yaml").expect("spec"));
    // Customer.io's person_unsubscribed, led to by an SMS.
    let body = br#"{"event_id":"01JSUBSMS000000000000000001","object_type":"sms","metric":"unsubscribed","timestamp":1751371200,"data":{"customer_id":"cust_00078","email_address":"ada.byron+78@example.com","identifiers":{"id":"cust_00078","email":"ada.byron+78@example.com","cio_id":"d9c10600004e"}}}"#;
    let resp = handle(
        &deps,
        &cfg(),
        Route::Reporting,
        &reporting_headers(body),
        body,
    )
    .await;
    assert_eq!(resp.body["status"], "accepted", "{resp:?}");
    assert_eq!(resp.body["changes"], 1, "{resp:?}");
    // A message metric of a channel is not a person-level change.
    let body = br#"{"event_id":"01JSUBSMS000000000000000002","object_type":"sms","metric":"delivered","timestamp":1751371200,"data":{"identifiers":{"id":"cust_00078"},"delivery_id":"d","action_id":1,"campaign_id":2,"recipient":"+15551230078"}}"#;
    let resp = handle(
        &deps,
        &cfg(),
        Route::Reporting,
        &reporting_headers(body),
        body,
    )
    .await;
    assert_eq!(resp.body["changes"], 0, "{resp:?}");
}

/// JSON shaped like what Customer.io sends, with arbitrary values.
fn jsonish() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z_@.0-9 ]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("email".to_string()),
                    Just("cio_id".to_string()),
                    Just("identifiers".to_string()),
                    Just("data".to_string()),
                    Just("action".to_string()),
                    Just("export".to_string()),
                    Just("person".to_string()),
                    Just("event".to_string()),
                    Just("event_id".to_string()),
                    Just("metric".to_string()),
                    Just("object_type".to_string()),
                    Just("timestamp".to_string()),
                    Just("sent_at".to_string()),
                    Just("name".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Signed, authenticated input of any shape never panics intake,
    /// and is never refused: it is acted on, or kept in quarantine.
    #[test]
    fn no_input_panics_intake_or_is_lost(
        raw in prop::collection::vec(any::<u8>(), 0..300),
        shaped in jsonish(),
        use_shaped in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let body = if use_shaped { serde_json::to_vec(&shaped).expect("json") } else { raw };
        let deps = deps(dir.path());
        let cfg = cfg();
        let (rep, act) = rt.block_on(async {
            let rep = handle(&deps, &cfg, Route::Reporting, &reporting_headers(&body), &body).await;
            let headers: BTreeMap<String, String> =
                [("x-dataout-token".to_string(), SECRET.to_string())].into();
            let act = handle(&deps, &cfg, Route::Actions, &headers, &body).await;
            (rep, act)
        });
        for resp in [rep, act] {
            prop_assert!((200..300).contains(&resp.status), "{resp:?}");
            let status = resp.body["status"].as_str().unwrap_or("");
            prop_assert!(
                matches!(status, "accepted" | "quarantined" | "duplicate"),
                "{resp:?}"
            );
        }
    }

    /// Unsigned input of any shape is refused with a reason.
    #[test]
    fn unsigned_input_is_refused_with_a_reason(raw in prop::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let deps = deps(dir.path());
        let resp = rt.block_on(handle(&deps, &cfg(), Route::Reporting, &BTreeMap::new(), &raw));
        prop_assert_eq!(resp.status, 401);
        prop_assert!(resp.body["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
}

#[tokio::test]
async fn a_failed_replay_keeps_when_the_body_first_arrived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deps = deps(dir.path());
    let headers = BTreeMap::new();
    let first = 1_751_371_200_000;
    let id = quarantine(
        &deps,
        Route::Actions,
        &headers,
        b"{not json",
        "unreadable",
        first,
    )
    .await
    .expect("kept");
    // The sender retries the same body a minute later: one entry, first time.
    let again = quarantine(
        &deps,
        Route::Actions,
        &headers,
        b"{not json",
        "unreadable",
        first + 60_000,
    )
    .await
    .expect("kept");
    assert_eq!(again, id);
    // A replay that fails again (the body is still not JSON) keeps it too.
    let resp = replay_quarantined(&deps, &cfg(), &id)
        .await
        .expect("replay");
    assert_eq!(resp.body["status"], "quarantined", "{resp:?}");
    let entry = deps
        .state
        .get_quarantine(&id)
        .await
        .expect("state")
        .expect("kept");
    assert_eq!(entry.received_at, first);
    assert_eq!(entry.replayed_at, None);
}
