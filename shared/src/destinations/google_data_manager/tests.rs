//! The Data Manager destination against the simulator.

use std::collections::BTreeMap;

use super::*;
use crate::adapters::embedded::state::EmbeddedStateStore;
use crate::domain::identity::sha256_hex;
use crate::domain::model::{counter, CounterScope, Identifiers, PersonKey};
use crate::domain::spec::{
    Cadence, ConsentStatus, ExportMode, ExportSource, GoogleAuthSpec, GoogleCredentialsSpec,
    GuardRails, IdKind, IdentitySpec,
};
use crate::ports::{Clock, ManualClock, MapSecrets, SystemClock};
use dataout_sim::google_dm::{DataManagerSim, DataManagerSimConfig};
use dataout_sim::google_oauth::{
    test_service_account_json, TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_REFRESH_TOKEN,
};
use dataout_sim::RunningSim;

const ACCOUNT: &str = "1234567890";
const LIST: &str = "7000000101";

fn consent(attribute: bool) -> GoogleConsentSpec {
    GoogleConsentSpec {
        ad_user_data: ConsentStatus::Granted,
        ad_personalization: ConsentStatus::Granted,
        attribute: attribute.then(|| "ads_consent".to_string()),
        country_attribute: attribute.then(|| "country".to_string()),
        unknown_country_is_eea: true,
    }
}

fn spec(
    base_url: &str,
    credentials: GoogleCredentialsSpec,
    consent: GoogleConsentSpec,
) -> DestinationSpec {
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
                credentials,
            },
            consent,
            gmail_remove_dots: true,
            gmail_strip_plus_suffix: true,
            status_poll_after_ms: 0,
        },
    }
}

fn service_account() -> GoogleCredentialsSpec {
    GoogleCredentialsSpec::ServiceAccount {
        key_env: "GOOGLE_SA_KEY".into(),
    }
}

fn binding() -> ExportDestination {
    ExportDestination {
        destination: "google".into(),
        audience: LIST.into(),
        tier_audiences: Default::default(),
        keys: Vec::new(),
    }
}

fn export() -> ExportSpec {
    ExportSpec {
        name: "cart_abandoners".into(),
        source: ExportSource::Segment { segment_id: 7 },
        mode: ExportMode::Membership,
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

fn op(kind: OpKind, email: &str) -> DeliveryOp {
    DeliveryOp {
        op: kind,
        person_key: PersonKey(format!("id:{email}")),
        ids: Identifiers {
            id: None,
            email: Some(email.to_string()),
            cio_id: None,
            phone: None,
        },
        audience: LIST.into(),
        tier: None,
        attributes: Default::default(),
        event: None,
        source_ts: 0,
        intake_ts: 0,
    }
}

fn op_with(email: &str, attrs: &[(&str, Value)]) -> DeliveryOp {
    let mut o = op(OpKind::Add, email);
    for (k, v) in attrs {
        o.attributes.insert((*k).to_string(), v.clone());
    }
    o
}

struct T {
    _running: RunningSim,
    _dir: tempfile::TempDir,
    sim: DataManagerSim,
    state: Arc<dyn StateStore>,
    dest: DataManagerDestination,
}

async fn setup_with(
    config: DataManagerSimConfig,
    credentials: GoogleCredentialsSpec,
    consent: GoogleConsentSpec,
) -> T {
    setup_custom(config, credentials, consent, |_| {}, Arc::new(SystemClock)).await
}

/// A simulator and a destination whose settings `adjust` changes, on `clock`.
async fn setup_custom(
    config: DataManagerSimConfig,
    credentials: GoogleCredentialsSpec,
    consent: GoogleConsentSpec,
    adjust: impl FnOnce(&mut DestinationSettings),
    clock: Arc<dyn Clock>,
) -> T {
    let make = |base_url: &str| {
        let mut spec = spec(base_url, credentials, consent);
        adjust(&mut spec.settings);
        spec
    };
    setup_core(config, make, clock).await
}

/// The destination built from the spec `make` gives for the simulator's
/// base URL.
async fn setup_spec(config: DataManagerSimConfig, make: impl FnOnce(&str) -> DestinationSpec) -> T {
    setup_core(config, make, Arc::new(SystemClock)).await
}

async fn setup_core(
    config: DataManagerSimConfig,
    make: impl FnOnce(&str) -> DestinationSpec,
    clock: Arc<dyn Clock>,
) -> T {
    let (running, sim) = DataManagerSim::start(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_user_list(ACCOUNT, LIST);
    let token_url = format!("{}/token", running.base_url);
    let secrets = MapSecrets::default()
        .with("GOOGLE_SA_KEY", &test_service_account_json(&token_url))
        .with("GOOGLE_CLIENT_ID", TEST_CLIENT_ID)
        .with("GOOGLE_CLIENT_SECRET", TEST_CLIENT_SECRET)
        .with("GOOGLE_REFRESH_TOKEN", TEST_REFRESH_TOKEN);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state: Arc<dyn StateStore> = Arc::new(
        EmbeddedStateStore::open(&dir.path().join("s.redb")).unwrap_or_else(|e| panic!("{e}")),
    );
    let dest = DataManagerDestination::new(
        "google".into(),
        &make(&running.base_url),
        &secrets,
        reqwest::Client::new(),
        clock,
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
    setup_with(
        DataManagerSimConfig {
            processing_delay: Duration::from_secs(3600),
            ..DataManagerSimConfig::default()
        },
        service_account(),
        consent(false),
    )
    .await
}

fn email_hash(email: &str) -> String {
    sha256_hex(email)
}

/// The destination as a spec file declares it (`extra`: optional lines),
/// pointed at the simulator.
fn spec_from_text(base_url: &str, extra: &str) -> DestinationSpec {
    let text = format!(
        "version: 1\ndestinations:\n  google:\n    kind: google_data_manager\n    operating_account_id: \"{ACCOUNT}\"\n    consent_ad_user_data: granted\n    consent_ad_personalization: granted\n    service_account_key_env: GOOGLE_SA_KEY\n{extra}exports:\n  carts:\n    source: {{segment: 7}}\n    mode: membership\n    cadence: {{realtime: true}}\n    identity: {{golden: email, fallbacks: [phone]}}\n    destinations:\n      google: {{audience: \"{LIST}\"}}\n"
    );
    let parsed =
        crate::domain::config::parse_spec(&text, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    let mut dest = parsed
        .destination("google")
        .cloned()
        .unwrap_or_else(|| panic!("no google destination"));
    dest.base_url = Some(base_url.into());
    if let DestinationSettings::GoogleDataManager { auth, .. } = &mut dest.settings {
        auth.token_url = format!("{base_url}/token");
    }
    dest
}

/// Sends one Gmail address through a destination declared with `extra` and
/// returns the outcome and whether the sim holds `expected`'s digest.
async fn gmail_sent_as(extra: &'static str, expected: &str) -> (Vec<OpOutcome>, bool) {
    let t = setup_spec(
        DataManagerSimConfig {
            processing_delay: Duration::from_secs(3600),
            ..DataManagerSimConfig::default()
        },
        |base_url| spec_from_text(base_url, extra),
    )
    .await;
    let outcomes = t
        .dest
        .send(
            &export(),
            &binding(),
            &[op(OpKind::Add, " A.B..C+News@Gmail.com ")],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.sim.process_now();
    let held = t
        .sim
        .has_member_with(ACCOUNT, LIST, "emailAddress", &email_hash(expected));
    (outcomes, held)
}

#[tokio::test]
async fn gmail_local_part_loses_dots_and_plus_suffix_by_default() {
    assert_eq!(
        gmail_sent_as("", "abc@gmail.com").await,
        (vec![OpOutcome::Accepted], true)
    );
}

#[tokio::test]
async fn gmail_plus_suffix_is_kept_when_the_spec_turns_stripping_off() {
    assert_eq!(
        gmail_sent_as("    gmail_strip_plus_suffix: false\n", "abc+news@gmail.com").await,
        (vec![OpOutcome::Accepted], true)
    );
}

#[tokio::test]
async fn adds_and_removes_land_hashed_after_processing_with_gmail_dots_removed() {
    let t = setup().await;
    let ops = vec![
        op(OpKind::Add, " Ann.Lee@Gmail.com "),
        op(OpKind::Add, "bob@example.com"),
    ];
    let outcomes = t
        .dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted, OpOutcome::Accepted]);
    assert_eq!(
        t.sim.member_count(ACCOUNT, LIST),
        0,
        "the platform has not processed it yet"
    );
    t.sim.process_now();
    assert!(t.sim.has_member_with(
        ACCOUNT,
        LIST,
        "emailAddress",
        &email_hash("annlee@gmail.com")
    ));
    assert!(t.sim.has_member_with(
        ACCOUNT,
        LIST,
        "emailAddress",
        &email_hash("bob@example.com")
    ));

    let outcomes = t
        .dest
        .send(
            &export(),
            &binding(),
            &[op(OpKind::Remove, "bob@example.com")],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    t.sim.process_now();
    assert_eq!(t.sim.member_count(ACCOUNT, LIST), 1);
    let size = t
        .dest
        .audience_size(&export(), &binding())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(size, Some(1));
}

#[tokio::test]
async fn removes_go_on_the_wire_before_adds_of_the_same_list() {
    let t = setup().await;
    let ops = vec![
        op(OpKind::Add, "new@example.com"),
        op(OpKind::Remove, "old@example.com"),
    ];
    t.dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<String> = t
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.request_id.is_some())
        .map(|r| r.path)
        .collect();
    assert_eq!(
        paths,
        vec!["/v1/audienceMembers:remove", "/v1/audienceMembers:ingest"]
    );
}

#[tokio::test]
async fn a_google_token_that_expires_mid_run_is_refreshed_and_the_delivery_completes() {
    let t = setup().await;
    let first: Vec<DeliveryOp> = (0..3)
        .map(|i| op(OpKind::Add, &format!("a{i}@example.com")))
        .collect();
    let outcomes = t
        .dest
        .send(&export(), &binding(), &first)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcomes.iter().all(|o| *o == OpOutcome::Accepted));
    // The hour is up: every token issued so far stops working.
    t.sim.authority().expire_all();
    let second: Vec<DeliveryOp> = (0..3)
        .map(|i| op(OpKind::Add, &format!("b{i}@example.com")))
        .collect();
    let outcomes = t
        .dest
        .send(&export(), &binding(), &second)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        outcomes.iter().all(|o| *o == OpOutcome::Accepted),
        "{outcomes:?}"
    );
    t.sim.process_now();
    assert_eq!(t.sim.member_count(ACCOUNT, LIST), 6);
    assert_eq!(t.sim.authority().grants(), vec!["jwt-bearer", "jwt-bearer"]);
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_then_gives_up_as_permanent() {
    let t = setup().await;
    t.dest
        .send(&export(), &binding(), &[op(OpKind::Add, "a@example.com")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.sim.authority().expire_all();
    t.dest
        .send(&export(), &binding(), &[op(OpKind::Add, "b@example.com")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let statuses: Vec<u16> = t.sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![200, 401, 200],
        "one 401, one refresh, one retry"
    );

    // Tokens that die at once: the retry is refused too, and that is final.
    t.sim.authority().set_token_lifetime(Duration::ZERO);
    t.sim.authority().expire_all();
    let err = t
        .dest
        .send(&export(), &binding(), &[op(OpKind::Add, "c@example.com")])
        .await
        .err();
    match err {
        Some(DestinationError::Permanent { message, .. }) => {
            assert!(message.contains("UNAUTHENTICATED"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    let unauthorized = t.sim.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(unauthorized, 3, "the last send tried twice, not more");
}

#[tokio::test]
async fn refresh_token_credentials_get_tokens_too() {
    let t = setup_with(
        DataManagerSimConfig::default(),
        GoogleCredentialsSpec::RefreshToken {
            client_id_env: "GOOGLE_CLIENT_ID".into(),
            client_secret_env: "GOOGLE_CLIENT_SECRET".into(),
            refresh_token_env: "GOOGLE_REFRESH_TOKEN".into(),
        },
        consent(false),
    )
    .await;
    let outcomes = t
        .dest
        .send(&export(), &binding(), &[op(OpKind::Add, "a@example.com")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    assert_eq!(t.sim.authority().grants(), vec!["refresh_token"]);
}

#[tokio::test]
async fn an_eea_member_without_consent_is_not_sent_and_is_counted_unmatched() {
    let t = setup_with(
        DataManagerSimConfig::default(),
        service_account(),
        consent(true),
    )
    .await;
    let ops = vec![
        op_with(
            "de-denied@example.com",
            &[("country", json!("DE")), ("ads_consent", json!(false))],
        ),
        op_with(
            "de-granted@example.com",
            &[("country", json!("DE")), ("ads_consent", json!("granted"))],
        ),
        op_with("us@example.com", &[("country", json!("US"))]),
        // No country: counts as in the EEA (unknown_country_is_eea), and denied.
        op_with("unknown@example.com", &[("ads_consent", json!("denied"))]),
    ];
    let outcomes = t
        .dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in [0, 3] {
        match &outcomes[i] {
            OpOutcome::Unmatched { reason } => {
                assert!(reason.contains("no consent (EEA)"), "{reason}")
            }
            other => panic!("op {i}: expected unmatched for lack of consent, got {other:?}"),
        }
    }
    assert_eq!(outcomes[1], OpOutcome::Accepted);
    assert_eq!(
        outcomes[2],
        OpOutcome::Accepted,
        "outside the EEA the request's granted consent applies"
    );
    let sent: usize = t.sim.requests().iter().map(|r| r.members).sum();
    assert_eq!(
        sent, 2,
        "only the consented and the non-EEA person went on the wire"
    );
}

#[tokio::test]
async fn a_failed_member_in_a_request_status_becomes_a_rejected_person_with_the_reason() {
    let t = setup().await;
    let ops = vec![
        op(OpKind::Add, "a@example.com"),
        op(OpKind::Add, "b@example.com"),
    ];
    t.sim
        .fail_next_requests(1, "PROCESSING_ERROR_REASON_NO_CONSENT");
    let outcomes = t
        .dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        outcomes.iter().all(|o| *o == OpOutcome::Accepted),
        "accepted for processing"
    );
    let scope = CounterScope::delivery("cart_abandoners", "google");
    // What delivery would have counted for the accepted ops.
    t.state
        .add_counters(
            &scope,
            &[(counter::ACCEPTED, 2), (counter::ADDS_ACCEPTED, 2)],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let early = t.dest.settle().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (early.finished, early.pending, early.rejected),
        (0, 1, 0),
        "still processing"
    );
    t.sim.process_now();
    // The in-process poll schedule waits status_poll_after (0 here) but at least 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let done = t.dest.settle().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((done.finished, done.rejected), (1, 2), "{done:?}");

    let counters: BTreeMap<String, i64> = t
        .state
        .get_counters(&scope)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counters.get(counter::ACCEPTED), Some(&0));
    assert_eq!(counters.get(counter::REJECTED), Some(&2));
    assert_eq!(counters.get(counter::ADDS_ACCEPTED), Some(&0));
    let rejected = t
        .state
        .get_destination_record("google", "rejected/cart_abandoners/id:a@example.com")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no per-person rejection recorded"));
    let reason = rejected.value["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("PROCESSING_ERROR_REASON_NO_CONSENT"),
        "{reason}"
    );
    let left = t
        .state
        .list_destination_records("google", "req/", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(left.is_empty(), "a settled request leaves no record");
}

#[tokio::test]
async fn full_replace_ingests_the_new_set_then_removes_members_added_before() {
    let t = setup().await;
    t.dest
        .send(
            &export(),
            &binding(),
            &[
                op(OpKind::Add, "old@example.com"),
                op(OpKind::Add, "kept@example.com"),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.sim.process_now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let outcomes = t
        .dest
        .replace_all(
            &export(),
            &binding(),
            LIST,
            &[
                op(OpKind::Add, "kept@example.com"),
                op(OpKind::Add, "new@example.com"),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted, OpOutcome::Accepted]);
    t.sim.process_now();
    assert!(!t.sim.has_member_with(
        ACCOUNT,
        LIST,
        "emailAddress",
        &email_hash("old@example.com")
    ));
    assert!(t.sim.has_member_with(
        ACCOUNT,
        LIST,
        "emailAddress",
        &email_hash("kept@example.com")
    ));
    assert!(t.sim.has_member_with(
        ACCOUNT,
        LIST,
        "emailAddress",
        &email_hash("new@example.com")
    ));
    assert_eq!(t.sim.member_count(ACCOUNT, LIST), 2);
}

#[tokio::test]
async fn resource_exhausted_is_retryable_with_a_delay() {
    let t = setup_with(
        DataManagerSimConfig {
            requests_per_minute: 1,
            ..DataManagerSimConfig::default()
        },
        service_account(),
        consent(false),
    )
    .await;
    t.dest
        .send(&export(), &binding(), &[op(OpKind::Add, "a@example.com")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match t
        .dest
        .send(&export(), &binding(), &[op(OpKind::Add, "b@example.com")])
        .await
    {
        Err(DestinationError::Retryable {
            retry_after,
            message,
            ..
        }) => {
            assert!(message.contains("RESOURCE_EXHAUSTED"), "{message}");
            assert_eq!(retry_after, Some(Duration::from_secs(60)));
        }
        other => panic!("expected retryable, got {other:?}"),
    }
}

#[test]
fn a_missing_service_account_key_is_permanent_and_names_the_variable() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state: Arc<dyn StateStore> = Arc::new(
        EmbeddedStateStore::open(&dir.path().join("s.redb")).unwrap_or_else(|e| panic!("{e}")),
    );
    let err = DataManagerDestination::new(
        "google".into(),
        &spec("http://127.0.0.1:1", service_account(), consent(false)),
        &MapSecrets::default(),
        reqwest::Client::new(),
        Arc::new(SystemClock),
        state,
    )
    .err();
    match err {
        Some(DestinationError::Permanent { message, .. }) => {
            assert!(message.contains("GOOGLE_SA_KEY"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

/// Status reads the simulator saw.
fn status_reads(sim: &DataManagerSim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path == "/v1/requestStatus:retrieve")
        .count()
}

#[tokio::test]
async fn status_is_read_with_get_and_partial_success_counts_the_failed_members() {
    let t = setup().await;
    // One of the two members fails processing at Google.
    t.sim.fail_members_with(&[&email_hash("bad@example.com")]);
    let ops = vec![
        op(OpKind::Add, "bad@example.com"),
        op(OpKind::Add, "good@example.com"),
    ];
    t.dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let scope = CounterScope::delivery("cart_abandoners", "google");
    t.state
        .add_counters(&scope, &[(counter::ACCEPTED, 2)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.sim.process_now();
    let done = t.dest.settle().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((done.finished, done.rejected), (1, 1), "{done:?}");
    let reads: Vec<_> = t
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/requestStatus:retrieve")
        .collect();
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].status, 200, "{reads:?}");
    let counters = t
        .state
        .get_counters(&scope)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counters.get(counter::ACCEPTED), Some(&1));
    assert_eq!(counters.get(counter::REJECTED), Some(&1));
}

#[tokio::test]
async fn an_unknown_request_id_is_dropped_without_counting_anyone() {
    let t = setup().await;
    t.state
        .put_destination_record(
            "google",
            "req/00000000000000000001/no-such-request/0000",
            &json!({"request_id": "no-such-request", "method": "ingest", "export": "cart_abandoners",
                    "list": LIST, "sent_at": 1, "part": 0, "parts": 1, "people": [["id:a", "a"]]}),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = t.dest.settle().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((done.finished, done.rejected), (1, 0), "{done:?}");
    let refused = t
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/requestStatus:retrieve")
        .unwrap_or_else(|| panic!("no status read"));
    assert_eq!(refused.status, 400, "Google answers INVALID_REQUEST_ID");
    let left = t
        .state
        .list_destination_records("google", "req/", 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(left.is_empty());
}

#[tokio::test]
async fn a_duplicate_conversion_in_a_failed_status_is_counted_as_landed_not_rejected() {
    let t = setup().await;
    t.sim
        .fail_next_requests(1, "PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID");
    t.dest
        .send(&export(), &binding(), &[op(OpKind::Add, "a@example.com")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.sim.process_now();
    let done = t.dest.settle().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((done.finished, done.rejected), (1, 0), "{done:?}");
}

#[tokio::test]
async fn status_is_first_read_after_thirty_minutes_then_at_doubling_gaps() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let t = setup_custom(
        DataManagerSimConfig {
            processing_delay: Duration::from_secs(3600),
            ..DataManagerSimConfig::default()
        },
        service_account(),
        consent(false),
        |s| {
            if let DestinationSettings::GoogleDataManager {
                status_poll_after_ms,
                ..
            } = s
            {
                *status_poll_after_ms = 30 * 60 * 1000;
            }
        },
        clock.clone(),
    )
    .await;
    t.dest
        .send(&export(), &binding(), &[op(OpKind::Add, "a@example.com")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let minutes = |m: u64| Duration::from_secs(m * 60);
    // (minutes after the previous step, reads the simulator has seen by then)
    let schedule = [
        (29, 0), // too early
        (1, 1),  // 30 min: first read, still PROCESSING
        (29, 1), // next read 30 min after the first
        (1, 2),  // read 2; the next gap is 60 min
        (59, 2),
        (1, 3), // read 3; then 120 min
        (119, 3),
        (1, 4),
    ];
    for (step, (advance, reads)) in schedule.iter().enumerate() {
        clock.advance(minutes(*advance));
        t.dest.settle().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status_reads(&t.sim), *reads, "step {step}");
    }
}

#[tokio::test]
async fn a_member_google_names_in_a_400_is_rejected_and_the_others_are_sent() {
    let t = setup().await;
    t.sim.refuse_members_with(&[&email_hash("bad@example.com")]);
    let ops = vec![
        op(OpKind::Add, "good1@example.com"),
        op(OpKind::Add, "bad@example.com"),
        op(OpKind::Add, "good2@example.com"),
    ];
    let outcomes = t
        .dest
        .send(&export(), &binding(), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes[0], OpOutcome::Accepted);
    assert_eq!(outcomes[2], OpOutcome::Accepted);
    match &outcomes[1] {
        OpOutcome::Rejected { reason } => {
            assert!(reason.contains("INVALID_AUDIENCE_MEMBER"), "{reason}")
        }
        other => panic!("expected the named member rejected, got {other:?}"),
    }
    let statuses: Vec<u16> = t.sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![400, 200],
        "refused once, then sent without it"
    );
    t.sim.process_now();
    assert!(t.sim.has_member_with(
        ACCOUNT,
        LIST,
        "emailAddress",
        &email_hash("good1@example.com")
    ));
    assert!(!t.sim.has_member_with(
        ACCOUNT,
        LIST,
        "emailAddress",
        &email_hash("bad@example.com")
    ));
}

#[tokio::test]
async fn an_account_reached_through_a_manager_is_written_and_read_with_the_login_account() {
    const MANAGER: &str = "5550001111";
    let t = setup_custom(
        DataManagerSimConfig {
            operating_accounts: Vec::new(),
            managed_accounts: [(ACCOUNT.to_string(), MANAGER.to_string())].into(),
            processing_delay: Duration::from_millis(0),
            ..DataManagerSimConfig::default()
        },
        service_account(),
        consent(false),
        |s| {
            if let DestinationSettings::GoogleDataManager {
                login_account_id, ..
            } = s
            {
                *login_account_id = Some(MANAGER.to_string());
            }
        },
        Arc::new(SystemClock),
    )
    .await;
    t.dest
        .send(&export(), &binding(), &[op(OpKind::Add, "a@example.com")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t.sim.process_now();
    let size = t
        .dest
        .audience_size(&export(), &binding())
        .await
        .unwrap_or_else(|e| panic!("the user-list read must name the manager: {e}"));
    assert_eq!(size, Some(t.sim.size(ACCOUNT, LIST)));
    assert!(t.sim.requests().iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn the_daily_quota_waits_for_its_reset_and_not_one_minute() {
    let t = setup_with(
        DataManagerSimConfig {
            requests_per_day: 1,
            ..DataManagerSimConfig::default()
        },
        service_account(),
        consent(false),
    )
    .await;
    t.dest
        .send(&export(), &binding(), &[op(OpKind::Add, "a@example.com")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match t
        .dest
        .send(&export(), &binding(), &[op(OpKind::Add, "b@example.com")])
        .await
    {
        Err(DestinationError::Retryable { retry_after, .. }) => {
            let wait = retry_after.unwrap_or_default();
            // Next 08:00 UTC, computed here from the wall clock.
            let now = SystemClock.now_ms();
            let into_day = now.rem_euclid(86_400_000);
            let expected_ms = (8 * 3_600_000 - into_day).rem_euclid(86_400_000);
            let diff = (wait.as_millis() as i64 - expected_ms).abs();
            assert!(diff < 5_000, "waited {wait:?}, expected ~{expected_ms} ms");
        }
        other => panic!("expected retryable, got {other:?}"),
    }
}

#[test]
fn poll_gaps_double_from_the_first_delay_up_to_six_hours() {
    let thirty = 30 * 60_000;
    let gaps: Vec<i64> = (1..=6).map(|n| poll_gap(thirty, n) / 60_000).collect();
    assert_eq!(gaps, vec![30, 60, 120, 240, 360, 360]);
}
