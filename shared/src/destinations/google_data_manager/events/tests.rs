//! Google conversions (`events:ingest`) against the Data Manager simulator.
//! Expected field names and reasons are Google's (googleapis
//! `google/ads/datamanager/v1/event.proto`, `error.proto`), written out
//! here rather than taken from the code under test.

use std::sync::Arc;

use serde_json::json;

use super::super::DataManagerDestination;
use super::*;
use crate::adapters::embedded::state::EmbeddedStateStore;
use crate::destinations::Destination;
use crate::domain::identity::sha256_hex;
use crate::domain::model::{EventPayload, Identifiers, PersonKey};
use crate::domain::spec::{
    Cadence, ConsentStatus, DestinationSettings, DestinationSpec, ExportSource, GoogleAuthSpec,
    GoogleConsentSpec, GoogleCredentialsSpec, GuardRails, IdKind, IdentitySpec,
};
use crate::ports::{MapSecrets, StateStore, SystemClock};
use dataout_sim::google_dm::{DataManagerSim, DataManagerSimConfig};
use dataout_sim::google_oauth::test_service_account_json;
use dataout_sim::RunningSim;

const ACCOUNT: &str = "1234567890";
const ACTION: &str = "555000111";
const DAY_MS: i64 = 86_400_000;

fn spec(base_url: &str, consent: GoogleConsentSpec) -> DestinationSpec {
    DestinationSpec {
        name: "google".into(),
        kind: DestinationKind::GoogleDataManager,
        base_url: Some(base_url.into()),
        batch_size: 10_000,
        max_concurrency: 1,
        max_requests_per_second: None,
        max_attempts: 5,
        settings: DestinationSettings::GoogleDataManager {
            operating_account_id: ACCOUNT.into(),
            login_account_id: None,
            auth: GoogleAuthSpec {
                token_url: format!("{base_url}/token"),
                credentials: GoogleCredentialsSpec::ServiceAccount {
                    key_env: "GOOGLE_SA_KEY".into(),
                },
            },
            consent,
            gmail_remove_dots: true,
            gmail_strip_plus_suffix: true,
            status_poll_after_ms: 0,
        },
    }
}

fn consent(by_country: bool) -> GoogleConsentSpec {
    GoogleConsentSpec {
        ad_user_data: ConsentStatus::Granted,
        ad_personalization: ConsentStatus::Granted,
        attribute: by_country.then(|| "ads_consent".to_string()),
        country_attribute: by_country.then(|| "country".to_string()),
        unknown_country_is_eea: false,
    }
}

fn binding() -> ExportDestination {
    ExportDestination {
        destination: "google".into(),
        audience: ACTION.into(),
        tier_audiences: Default::default(),
        keys: Vec::new(),
    }
}

fn export(mode: ExportMode) -> ExportSpec {
    ExportSpec {
        name: "purchases".into(),
        source: ExportSource::Events {
            names: vec!["order_placed".into()],
        },
        mode,
        cadence: Cadence::default(),
        identity: IdentitySpec {
            golden: IdKind::Email,
            fallbacks: vec![IdKind::Phone],
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

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An `order_placed` conversion of `order` by `email`, a minute ago.
fn conversion(order: &str, email: &str) -> DeliveryOp {
    DeliveryOp {
        op: OpKind::Event,
        person_key: PersonKey(format!("id:{email}")),
        ids: Identifiers {
            id: None,
            email: Some(email.to_string()),
            cio_id: None,
            phone: None,
        },
        audience: ACTION.into(),
        tier: None,
        attributes: Default::default(),
        event: Some(EventPayload {
            event_id: format!("ev-{order}"),
            name: "order_placed".into(),
            data: Default::default(),
            value: Some(80.5),
            currency: Some("EUR".into()),
            order_id: Some(order.to_string()),
        }),
        source_ts: now() - 60_000,
        intake_ts: now(),
    }
}

/// The same conversion, clicked: its properties carry `key` (gclid,
/// gbraid, wbraid, in any case) with `value`.
fn clicked(op: DeliveryOp, key: &str, value: &str) -> DeliveryOp {
    with_event(op, |e| {
        e.data.insert(key.into(), json!(value));
    })
}

fn is_rejected(o: &OpOutcome, says: &[&str]) -> bool {
    matches!(o, OpOutcome::Rejected { reason } if says.iter().all(|s| reason.contains(s)))
}

fn with_event(mut op: DeliveryOp, edit: impl FnOnce(&mut EventPayload)) -> DeliveryOp {
    if let Some(e) = op.event.as_mut() {
        edit(e);
    }
    op
}

struct T {
    _running: RunningSim,
    _dir: tempfile::TempDir,
    sim: DataManagerSim,
    state: Arc<dyn StateStore>,
    dest: DataManagerDestination,
}

async fn setup_with(consent: GoogleConsentSpec) -> T {
    let (running, sim) = DataManagerSim::start(DataManagerSimConfig {
        processing_delay: std::time::Duration::from_secs(3600),
        ..DataManagerSimConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sim.create_conversion_action(ACCOUNT, ACTION);
    let secrets = MapSecrets::default().with(
        "GOOGLE_SA_KEY",
        &test_service_account_json(&format!("{}/token", running.base_url)),
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state: Arc<dyn StateStore> = Arc::new(
        EmbeddedStateStore::open(&dir.path().join("s.redb")).unwrap_or_else(|e| panic!("{e}")),
    );
    let dest = DataManagerDestination::new(
        "google".into(),
        &spec(&running.base_url, consent),
        &secrets,
        reqwest::Client::new(),
        Arc::new(SystemClock),
        state.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    T {
        _running: running,
        _dir: dir,
        sim,
        state,
        dest,
    }
}

async fn setup() -> T {
    setup_with(consent(false)).await
}

impl T {
    async fn send(&self, mode: ExportMode, ops: &[DeliveryOp]) -> Vec<OpOutcome> {
        self.dest
            .send(&export(mode), &binding(), ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Another client on the same simulator and state.
    fn rebuild(&self) -> DataManagerDestination {
        let base = self._running.base_url.clone();
        let secrets = MapSecrets::default().with(
            "GOOGLE_SA_KEY",
            &test_service_account_json(&format!("{base}/token")),
        );
        DataManagerDestination::new(
            "google".into(),
            &spec(&base, consent(false)),
            &secrets,
            reqwest::Client::new(),
            Arc::new(SystemClock),
            self.state.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn events_requests(&self) -> Vec<dataout_sim::google_dm::DmRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.path == "/v1/events:ingest")
            .collect()
    }
}

fn is_invalid(o: &OpOutcome, says: &str) -> bool {
    matches!(o, OpOutcome::Invalid { reason } if reason.contains(says))
}

#[tokio::test]
async fn a_conversion_lands_with_its_order_id_value_currency_and_hashed_email() {
    let t = setup().await;
    let outcomes = t
        .send(
            ExportMode::Conversions,
            &[conversion("o-1", " Ann.Lee@Gmail.com ")],
        )
        .await;
    assert_eq!(outcomes, [OpOutcome::Accepted]);
    let got = t.sim.conversions(ACCOUNT, ACTION);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].transaction_id, "o-1");
    assert_eq!(got[0].value, Some(80.5));
    assert_eq!(got[0].currency.as_deref(), Some("EUR"));
    assert_eq!(got[0].event_source.as_deref(), Some("OTHER"));
    assert!(got[0]
        .identifiers
        .contains(&("emailAddress".into(), sha256_hex("annlee@gmail.com"))));
    assert!((got[0].event_ms - (now() - 60_000)).abs() < 10_000);
}

#[tokio::test]
async fn more_than_2000_conversions_go_in_requests_of_at_most_2000() {
    let t = setup().await;
    let ops: Vec<DeliveryOp> = (0..2_500)
        .map(|i| conversion(&format!("o-{i}"), &format!("p{i}@example.com")))
        .collect();
    let outcomes = t.send(ExportMode::Conversions, &ops).await;
    assert!(outcomes.iter().all(|o| *o == OpOutcome::Accepted));
    let sizes: Vec<usize> = t.events_requests().iter().map(|r| r.members).collect();
    assert_eq!(sizes, [2_000, 500]);
    assert_eq!(t.sim.conversions(ACCOUNT, ACTION).len(), 2_500);
}

#[tokio::test]
async fn bad_events_are_invalid_and_never_reach_google_while_neighbours_land() {
    let t = setup().await;
    let ops = vec![
        conversion("good-1", "a@example.com"),
        with_event(conversion("no-value", "b@example.com"), |e| e.value = None),
        with_event(conversion("no-currency", "c@example.com"), |e| {
            e.currency = None
        }),
        with_event(conversion("bad-currency", "c@example.com"), |e| {
            e.currency = Some("euro".into())
        }),
        with_event(conversion("negative", "d@example.com"), |e| {
            e.value = Some(-5.0)
        }),
        DeliveryOp {
            source_ts: now() - 91 * DAY_MS,
            ..conversion("too-old", "e@example.com")
        },
        DeliveryOp {
            source_ts: now() + DAY_MS,
            ..conversion("future", "f@example.com")
        },
        DeliveryOp {
            ids: Identifiers::default(),
            ..conversion("nobody", "g@example.com")
        },
        with_event(conversion("x", "h@example.com"), |e| {
            e.order_id = None;
            e.event_id = " ".into();
        }),
        with_event(conversion("x", "i@example.com"), |e| {
            e.order_id = Some("o".repeat(65))
        }),
        conversion("good-2", "j@example.com"),
    ];
    let outcomes = t.send(ExportMode::Conversions, &ops).await;
    assert_eq!(outcomes[0], OpOutcome::Accepted);
    assert!(is_invalid(&outcomes[1], "without a value"), "{outcomes:?}");
    assert!(is_invalid(&outcomes[2], "currency"), "{outcomes:?}");
    assert!(is_invalid(&outcomes[3], "currency"), "{outcomes:?}");
    assert!(is_invalid(&outcomes[4], "non-negative"), "{outcomes:?}");
    assert!(
        is_invalid(&outcomes[5], "older than 90 days"),
        "{outcomes:?}"
    );
    assert!(is_invalid(&outcomes[6], "future"), "{outcomes:?}");
    assert!(
        is_invalid(&outcomes[7], "no Google identifier"),
        "{outcomes:?}"
    );
    assert!(
        is_invalid(&outcomes[8], "no transaction id"),
        "{outcomes:?}"
    );
    assert!(is_invalid(&outcomes[9], "64 characters"), "{outcomes:?}");
    assert_eq!(outcomes[10], OpOutcome::Accepted);
    let received: Vec<String> = t
        .sim
        .received_events(ACCOUNT, ACTION)
        .into_iter()
        .map(|c| c.transaction_id)
        .collect();
    assert_eq!(received, ["good-1", "good-2"]);
    assert!(t.events_requests().iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn an_events_export_sends_valueless_events_and_the_event_id_stands_in_for_an_order_id() {
    let t = setup().await;
    let op = with_event(conversion("unused", "a@example.com"), |e| {
        e.value = None;
        e.currency = None;
        e.order_id = None;
        e.data.insert("event_source".into(), json!("web"));
    });
    let outcomes = t.send(ExportMode::Events, &[op]).await;
    assert_eq!(outcomes, [OpOutcome::Accepted]);
    let got = t.sim.conversions(ACCOUNT, ACTION);
    assert_eq!(got[0].transaction_id, "ev-unused");
    assert_eq!(got[0].value, None);
    assert_eq!(got[0].event_source.as_deref(), Some("WEB"));
}

#[tokio::test]
async fn eea_people_without_consent_are_unmatched_and_not_sent() {
    let t = setup_with(consent(true)).await;
    let mut french = conversion("fr-1", "a@example.com");
    french.attributes.insert("country".into(), json!("FR"));
    french
        .attributes
        .insert("ads_consent".into(), json!("denied"));
    let mut american = conversion("us-1", "b@example.com");
    american.attributes.insert("country".into(), json!("US"));
    let outcomes = t.send(ExportMode::Conversions, &[french, american]).await;
    assert!(
        matches!(&outcomes[0], OpOutcome::Unmatched { reason } if reason.contains("no consent (EEA)")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], OpOutcome::Accepted);
    assert_eq!(t.sim.times_received(ACCOUNT, ACTION, "fr-1"), 0);
}

#[tokio::test]
async fn an_accepted_conversion_is_never_sent_again() {
    let t = setup().await;
    let ops = vec![
        conversion("o-1", "a@example.com"),
        conversion("o-2", "b@example.com"),
    ];
    assert_eq!(
        t.send(ExportMode::Conversions, &ops).await,
        [OpOutcome::Accepted, OpOutcome::Accepted]
    );
    let requests = t.events_requests().len();
    // Redelivered, and once more with a new neighbour.
    assert_eq!(
        t.send(ExportMode::Conversions, &ops).await,
        [OpOutcome::Accepted, OpOutcome::Accepted]
    );
    assert_eq!(t.events_requests().len(), requests, "nothing was sent");
    let mut more = ops.clone();
    more.push(conversion("o-3", "c@example.com"));
    assert!(t
        .send(ExportMode::Conversions, &more)
        .await
        .iter()
        .all(|o| *o == OpOutcome::Accepted));
    for tx in ["o-1", "o-2", "o-3"] {
        assert_eq!(t.sim.times_received(ACCOUNT, ACTION, tx), 1, "{tx}");
    }
    assert!(t.sim.duplicate_events().is_empty());
}

#[tokio::test]
async fn two_events_with_one_order_id_in_a_batch_send_it_once() {
    let t = setup().await;
    let ops = vec![
        conversion("o-1", "a@example.com"),
        conversion("o-1", "a@example.com"),
    ];
    assert_eq!(
        t.send(ExportMode::Conversions, &ops).await,
        [OpOutcome::Accepted, OpOutcome::Accepted]
    );
    assert_eq!(t.sim.times_received(ACCOUNT, ACTION, "o-1"), 1);
}

#[tokio::test]
async fn a_refused_request_rejects_the_event_google_names_and_retries_the_others() {
    let t = setup().await;
    // Google's window for this action is shorter than ours: our check
    // passes, Google refuses the whole request naming the event.
    t.sim
        .set_max_event_age(std::time::Duration::from_secs(86_400));
    let ops = vec![
        conversion("o-1", "a@example.com"),
        DeliveryOp {
            source_ts: now() - 2 * DAY_MS,
            ..conversion("o-2", "b@example.com")
        },
        conversion("o-3", "c@example.com"),
    ];
    let outcomes = t.send(ExportMode::Conversions, &ops).await;
    assert!(
        matches!(&outcomes[1], OpOutcome::Rejected { reason } if reason.contains("EVENT") || reason.contains("older")),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[0], OpOutcome::Retry { .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], OpOutcome::Retry { .. }),
        "{outcomes:?}"
    );
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
    // Their claims were given back: the retry sends them.
    let again = t
        .send(ExportMode::Conversions, &[ops[0].clone(), ops[2].clone()])
        .await;
    assert_eq!(again, [OpOutcome::Accepted, OpOutcome::Accepted]);
    assert_eq!(t.sim.conversions(ACCOUNT, ACTION).len(), 2);
}

#[tokio::test]
async fn a_400_naming_no_event_rejects_the_whole_request_with_googles_message() {
    let t = setup().await;
    let mut b = binding();
    b.audience = "999".into(); // not a conversion action of the account
    let ops = vec![DeliveryOp {
        audience: "999".into(),
        ..conversion("o-1", "a@example.com")
    }];
    let outcomes = t
        .dest
        .send(&export(ExportMode::Conversions), &b, &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&outcomes[0], OpOutcome::Rejected { reason } if reason.contains("HTTP 400") && reason.contains("conversion action")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn rate_limited_requests_retry_later_and_release_their_claims() {
    let t = setup().await;
    t.sim.set_requests_per_minute(0);
    let ops = vec![conversion("o-1", "a@example.com")];
    let err = t
        .dest
        .send(&export(ExportMode::Conversions), &binding(), &ops)
        .await
        .err();
    assert!(
        matches!(
            &err,
            Some(DestinationError::Retryable {
                retry_after: Some(_),
                ..
            })
        ),
        "{err:?}"
    );
    t.sim.set_requests_per_minute(300);
    assert_eq!(
        t.send(ExportMode::Conversions, &ops).await,
        [OpOutcome::Accepted]
    );
    assert_eq!(t.sim.times_received(ACCOUNT, ACTION, "o-1"), 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once() {
    let t = setup().await;
    t.send(
        ExportMode::Conversions,
        &[conversion("o-1", "a@example.com")],
    )
    .await;
    t.sim.authority().expire_all();
    assert_eq!(
        t.send(
            ExportMode::Conversions,
            &[conversion("o-2", "b@example.com")]
        )
        .await,
        [OpOutcome::Accepted]
    );
    assert_eq!(t.sim.authority().grants().len(), 2);
    assert_eq!(t.sim.conversions(ACCOUNT, ACTION).len(), 2);
}

#[tokio::test]
async fn an_unknown_outcome_is_retried_and_google_counts_the_transaction_once() {
    let t = setup().await;
    t.sim.answer_500_after_accepting(1);
    let ops = vec![conversion("o-1", "a@example.com")];
    let err = t
        .dest
        .send(&export(ExportMode::Conversions), &binding(), &ops)
        .await
        .err();
    assert!(matches!(&err, Some(e) if e.is_retryable()), "{err:?}");
    assert_eq!(
        t.send(ExportMode::Conversions, &ops).await,
        [OpOutcome::Accepted]
    );
    // The documented choice: the retry carries the same transaction id,
    // which Google counts once.
    assert_eq!(t.sim.times_received(ACCOUNT, ACTION, "o-1"), 2);
    assert_eq!(t.sim.conversions(ACCOUNT, ACTION).len(), 1);
    // And from then on it is never sent again.
    t.send(ExportMode::Conversions, &ops).await;
    assert_eq!(t.sim.times_received(ACCOUNT, ACTION, "o-1"), 2);
}

#[tokio::test]
async fn a_conversion_claimed_by_another_delivery_holds_the_batch_back() {
    let t = setup().await;
    let key = t.dest.conversion_key(ACTION, "o-1");
    let n = now();
    t.state
        .idempotency_start(&key, n, n + 60_000, n + DAY_MS)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ops = vec![
        conversion("o-1", "a@example.com"),
        conversion("o-2", "b@example.com"),
    ];
    let err = t
        .dest
        .send(&export(ExportMode::Conversions), &binding(), &ops)
        .await
        .err();
    assert!(
        matches!(&err, Some(DestinationError::Retryable { retry_after: Some(d), .. }) if *d == CLAIM_TTL),
        "{err:?}"
    );
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
    // The other event's claim was given back.
    t.state
        .idempotency_release(&key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(t
        .send(ExportMode::Conversions, &ops)
        .await
        .iter()
        .all(|o| *o == OpOutcome::Accepted));
}

#[tokio::test]
async fn events_requests_are_settled_by_request_status() {
    let t = setup().await;
    t.send(
        ExportMode::Conversions,
        &[conversion("o-1", "a@example.com")],
    )
    .await;
    t.sim
        .fail_next_requests(1, "PROCESSING_ERROR_REASON_INTERNAL_ERROR");
    t.send(
        ExportMode::Conversions,
        &[conversion("o-2", "b@example.com")],
    )
    .await;
    let pending = t.dest.settle().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((pending.finished, pending.pending), (0, 2));
    t.sim.process_events_now();
    // A request read PROCESSING is not read again within a second.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let settled = t.dest.settle().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settled.finished, 2);
    assert_eq!(settled.rejected, 1, "the FAILED request's event");
}

#[tokio::test]
async fn a_membership_op_in_a_conversions_export_is_rejected() {
    let t = setup().await;
    let op = DeliveryOp {
        op: OpKind::Add,
        event: None,
        ..conversion("o-1", "a@example.com")
    };
    let outcomes = t.send(ExportMode::Conversions, &[op]).await;
    assert!(matches!(outcomes[0], OpOutcome::Rejected { .. }));
    assert!(t.events_requests().is_empty());
}

#[test]
fn named_events_reads_field_violations_and_messages() {
    let body = json!({"error": {
        "message": "events[7].eventTimestamp is in the future.",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "EVENT_TIME_INVALID"},
            {"@type": "type.googleapis.com/google.rpc.BadRequest",
             "fieldViolations": [{"field": "events.events[2].conversion_value"}]},
        ],
    }});
    assert_eq!(
        named_events(&body, 10).into_iter().collect::<Vec<_>>(),
        [2, 7]
    );
    assert!(named_events(&body, 5).contains(&2));
    assert!(!named_events(&body, 5).contains(&7), "out of range");
    assert!(named_events(&json!({"error": {"message": "bad destination"}}), 5).is_empty());
}

#[tokio::test]
async fn lead_conversion_is_refused_when_account_has_not_enabled_enhanced_conversions_for_leads() {
    let t = setup().await;
    t.sim.set_enhanced_conversions_for_leads(ACCOUNT, false);
    let ops = vec![
        conversion("lead-1", "a@example.com"),
        clicked(
            conversion("click-1", "b@example.com"),
            "gclid",
            "Cj0-click-1",
        ),
        conversion("lead-2", "c@example.com"),
    ];
    let outcomes = t.send(ExportMode::Conversions, &ops).await;
    // The leads are rejected with what to do in Google Ads; the conversion
    // carrying a click id is no lead and lands.
    for i in [0, 2] {
        assert!(
            is_rejected(
                &outcomes[i],
                &[
                    "DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS",
                    ACCOUNT,
                    "Google Ads",
                    "turn on enhanced conversions for leads",
                ]
            ),
            "{outcomes:?}"
        );
    }
    assert_eq!(outcomes[1], OpOutcome::Accepted, "{outcomes:?}");
    let received: Vec<String> = t
        .sim
        .received_events(ACCOUNT, ACTION)
        .into_iter()
        .map(|c| c.transaction_id)
        .collect();
    assert_eq!(received, ["click-1"]);
    // Once the account is fixed, the same conversions sent again land; the
    // click conversion is not sent twice.
    t.sim.set_enhanced_conversions_for_leads(ACCOUNT, true);
    let again = t.send(ExportMode::Conversions, &ops).await;
    assert!(again.iter().all(|o| *o == OpOutcome::Accepted), "{again:?}");
    assert_eq!(t.sim.times_received(ACCOUNT, ACTION, "click-1"), 1);
}

#[tokio::test]
async fn lead_conversion_is_rejected_when_account_has_not_accepted_the_customer_data_terms() {
    let t = setup().await;
    t.sim.set_customer_data_terms_accepted(ACCOUNT, false);
    let outcomes = t
        .send(
            ExportMode::Conversions,
            &[conversion("lead-1", "a@example.com")],
        )
        .await;
    assert!(
        is_rejected(
            &outcomes[0],
            &[
                "DESTINATION_ACCOUNT_ENHANCED_CONVERSIONS_TERMS_NOT_SIGNED",
                "customer data terms",
                "Google Ads",
            ]
        ),
        "{outcomes:?}"
    );
    assert!(t.sim.received_events(ACCOUNT, ACTION).is_empty());
}

#[tokio::test]
async fn lead_conversions_past_the_first_refused_request_are_rejected_without_asking_google_again()
{
    let t = setup().await;
    t.sim
        .set_enhanced_conversions_prohibited_by_policy(ACCOUNT, true);
    let ops: Vec<DeliveryOp> = (0..5)
        .map(|i| conversion(&format!("lead-{i}"), &format!("p{i}@example.com")))
        .collect();
    let dest = DataManagerDestination {
        batch_size: 2,
        ..t.rebuild()
    };
    let outcomes = dest
        .send(&export(ExportMode::Conversions), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        outcomes.iter().all(|o| is_rejected(
            o,
            &[
                "DESTINATION_ACCOUNT_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS",
                "Google representative"
            ]
        )),
        "{outcomes:?}"
    );
    assert_eq!(t.events_requests().len(), 1, "one refusal says it all");
}

#[test]
fn an_account_setup_refusal_is_recognised_by_its_reason_whatever_the_status() {
    // Google does not document the canonical code of these refusals.
    for (code, status) in [
        (400, "INVALID_ARGUMENT"),
        (400, "FAILED_PRECONDITION"),
        (403, "PERMISSION_DENIED"),
    ] {
        let body = json!({"error": {
            "code": code,
            "status": status,
            "message": "The destination account is not enabled for enhanced conversions for leads.",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS",
                "domain": "datamanager.googleapis.com",
            }],
        }});
        assert_eq!(
            account_setup_reason(&body),
            Some("DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS")
        );
    }
    assert_eq!(
        account_setup_reason(&json!({"error": {"message": "events[0].currency is bad"}})),
        None
    );
}

#[tokio::test]
async fn an_order_with_a_click_id_sends_it_in_ad_identifiers() {
    let t = setup().await;
    let ops = vec![
        clicked(conversion("o-1", "a@example.com"), "gclid", "Cj0KCQ-gclid"),
        clicked(
            conversion("o-2", "b@example.com"),
            "GBRAID",
            " 0AAAA-gbraid ",
        ),
        clicked(conversion("o-3", "c@example.com"), "wbraid", "CkwKC-wbraid"),
        // Google takes exactly one click id: the gclid.
        clicked(
            clicked(conversion("o-4", "d@example.com"), "gclid", "Cj0-gclid-4"),
            "wbraid",
            "Ck-wbraid-4",
        ),
    ];
    let outcomes = t.send(ExportMode::Conversions, &ops).await;
    assert!(
        outcomes.iter().all(|o| *o == OpOutcome::Accepted),
        "{outcomes:?}"
    );
    let got = t.sim.conversions(ACCOUNT, ACTION);
    let ids: Vec<(Option<&str>, Option<&str>, Option<&str>)> = got
        .iter()
        .map(|c| (c.gclid.as_deref(), c.gbraid.as_deref(), c.wbraid.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [
            (Some("Cj0KCQ-gclid"), None, None),
            (None, Some("0AAAA-gbraid"), None),
            (None, None, Some("CkwKC-wbraid")),
            (Some("Cj0-gclid-4"), None, None),
        ]
    );
    // The hashed email still goes along.
    assert!(got[0]
        .identifiers
        .contains(&("emailAddress".into(), sha256_hex("a@example.com"))));
}

#[tokio::test]
async fn a_conversion_with_a_click_id_and_no_user_identifier_is_sent_on_the_click_id() {
    let t = setup().await;
    let op = DeliveryOp {
        ids: Identifiers::default(),
        ..clicked(conversion("o-1", "a@example.com"), "gclid", "Cj0-only")
    };
    assert_eq!(
        t.send(ExportMode::Conversions, &[op]).await,
        [OpOutcome::Accepted]
    );
    let got = t.sim.conversions(ACCOUNT, ACTION);
    assert_eq!(got[0].gclid.as_deref(), Some("Cj0-only"));
    assert!(got[0].identifiers.is_empty());
}

#[tokio::test]
async fn a_click_only_conversion_of_an_eea_person_without_consent_is_not_sent() {
    let t = setup_with(consent(true)).await;
    let mut op = DeliveryOp {
        ids: Identifiers::default(),
        ..clicked(conversion("fr-1", "a@example.com"), "gclid", "Cj0-fr")
    };
    op.attributes.insert("country".into(), json!("FR"));
    op.attributes.insert("ads_consent".into(), json!("denied"));
    let outcomes = t.send(ExportMode::Conversions, &[op]).await;
    assert!(
        matches!(&outcomes[0], OpOutcome::Unmatched { reason } if reason.contains("no consent (EEA)")),
        "{outcomes:?}"
    );
    assert!(t.events_requests().is_empty());
}

#[tokio::test]
async fn gbraid_with_wbraid_and_no_gclid_is_invalid() {
    let t = setup().await;
    let op = clicked(
        clicked(conversion("o-1", "a@example.com"), "gbraid", "g"),
        "wbraid",
        "w",
    );
    let outcomes = t.send(ExportMode::Conversions, &[op]).await;
    assert!(
        is_invalid(&outcomes[0], "gbraid and wbraid"),
        "{outcomes:?}"
    );
    assert!(t.events_requests().is_empty());
}

#[tokio::test]
async fn the_message_event_source_of_event_proto_is_sent() {
    let t = setup().await;
    let ops: Vec<DeliveryOp> = [("m-1", "message"), ("m-2", "in-store"), ("m-3", "Phone")]
        .into_iter()
        .map(|(tx, source)| {
            with_event(conversion(tx, "a@example.com"), |e| {
                e.data.insert("event_source".into(), json!(source));
            })
        })
        .collect();
    t.send(ExportMode::Conversions, &ops).await;
    let sources: Vec<Option<String>> = t
        .sim
        .conversions(ACCOUNT, ACTION)
        .into_iter()
        .map(|c| c.event_source)
        .collect();
    assert_eq!(
        sources,
        [
            Some("MESSAGE".to_string()),
            Some("IN_STORE".to_string()),
            Some("PHONE".to_string())
        ]
    );
}
