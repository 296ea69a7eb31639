//! The Customer Match destination against the Google Ads simulator.

use super::*;
use crate::domain::identity::sha256_hex;
use crate::domain::model::{Identifiers, PersonKey};
use crate::domain::spec::{
    Cadence, ExportMode, ExportSource, GoogleAuthSpec, GoogleCredentialsSpec, GuardRails, IdKind,
    IdentitySpec,
};
use crate::ports::MapSecrets;
use dataout_sim::google::{
    GoogleFault, GoogleSim, GoogleSimConfig, JobStatus, SimConsent, DEFAULT_ACCESS_TOKEN,
    DEFAULT_DEVELOPER_TOKEN,
};
use dataout_sim::RunningSim;

const CUSTOMER: &str = "1234567890";
const LIST: &str = "555";

fn spec(
    base_url: &str,
    batch_size: usize,
    login: Option<&str>,
    gmail_remove_dots: bool,
) -> DestinationSpec {
    DestinationSpec {
        name: "google".into(),
        kind: DestinationKind::GoogleCustomerMatch,
        base_url: Some(base_url.into()),
        batch_size,
        max_concurrency: 1,
        max_requests_per_second: None,
        max_attempts: 3,
        settings: DestinationSettings::GoogleCustomerMatch {
            api_version: "v26".into(),
            customer_id: CUSTOMER.into(),
            login_customer_id: login.map(str::to_string),
            developer_token_env: "GOOGLE_ADS_DEVELOPER_TOKEN".into(),
            auth: GoogleAuthSpec {
                token_url: format!("{base_url}/token"),
                credentials: GoogleCredentialsSpec::AccessToken {
                    access_token_env: "GOOGLE_ADS_ACCESS_TOKEN".into(),
                },
            },
            gmail_remove_dots,
            job_wait_ms: 1_000,
            consent: GoogleConsentSpec {
                ad_user_data: ConsentStatus::Granted,
                ad_personalization: ConsentStatus::Granted,
                attribute: Some("ads_consent".into()),
                country_attribute: Some("country".into()),
                unknown_country_is_eea: true,
            },
        },
    }
}

fn binding(keys: Vec<MatchKey>) -> ExportDestination {
    ExportDestination {
        destination: "google".into(),
        audience: LIST.into(),
        tier_audiences: Default::default(),
        keys,
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
        destinations: vec![binding(Vec::new())],
        guard_rails: GuardRails::default(),
        test_profiles: Vec::new(),
    }
}

fn op(kind: OpKind, id: Option<&str>, email: Option<&str>, phone: Option<&str>) -> DeliveryOp {
    DeliveryOp {
        op: kind,
        person_key: PersonKey(format!("id:{}", id.or(email).unwrap_or("anon"))),
        ids: Identifiers {
            id: id.map(str::to_string),
            email: email.map(str::to_string),
            cio_id: None,
            phone: phone.map(str::to_string),
        },
        audience: LIST.into(),
        tier: None,
        attributes: Default::default(),
        event: None,
        source_ts: 0,
        intake_ts: 0,
    }
}

struct Setup {
    _running: RunningSim,
    _dir: tempfile::TempDir,
    sim: GoogleSim,
    dest: GoogleCustomerMatchDestination,
}

fn state_in(dir: &tempfile::TempDir) -> Arc<dyn StateStore> {
    Arc::new(
        crate::adapters::embedded::state::EmbeddedStateStore::open(&dir.path().join("s.redb"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

async fn setup_with(
    config: GoogleSimConfig,
    dest_spec: impl FnOnce(&str) -> DestinationSpec,
    token: &str,
) -> Setup {
    let (running, sim) = GoogleSim::start(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_user_list(CUSTOMER, LIST);
    let secrets = MapSecrets::default()
        .with("GOOGLE_ADS_DEVELOPER_TOKEN", DEFAULT_DEVELOPER_TOKEN)
        .with("GOOGLE_ADS_ACCESS_TOKEN", token);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dest = GoogleCustomerMatchDestination::new(
        "google".into(),
        &dest_spec(&running.base_url),
        &secrets,
        reqwest::Client::new(),
        Arc::new(crate::ports::SystemClock),
        state_in(&dir),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Setup {
        _running: running,
        _dir: dir,
        sim,
        dest,
    }
}

async fn setup(batch_size: usize) -> Setup {
    setup_with(
        GoogleSimConfig::default(),
        |url| spec(url, batch_size, None, false),
        DEFAULT_ACCESS_TOKEN,
    )
    .await
}

#[tokio::test]
async fn adds_land_as_hashed_identifiers_and_removes_take_them_out() {
    let t = setup(100).await;
    let ops = vec![
        op(
            OpKind::Add,
            None,
            Some(" Ann@Example.com "),
            Some("+1 650-253-0000"),
        ),
        op(OpKind::Update, None, Some("bob@example.com"), None),
        op(OpKind::Add, Some("u3"), None, None),
    ];
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes[0], OpOutcome::Accepted);
    assert_eq!(outcomes[1], OpOutcome::Accepted);
    assert!(
        matches!(outcomes[2], OpOutcome::Unmatched { .. }),
        "default keys are email and phone"
    );
    assert_eq!(t.sim.member_count(CUSTOMER, LIST), 2);
    assert!(t.sim.has_member_with(
        CUSTOMER,
        LIST,
        "hashedEmail",
        &sha256_hex("ann@example.com")
    ));
    assert!(t.sim.has_member_with(
        CUSTOMER,
        LIST,
        "hashedPhoneNumber",
        &sha256_hex("+16502530000")
    ));
    assert!(!t.sim.has_member_with(
        CUSTOMER,
        LIST,
        "hashedPhoneNumber",
        &sha256_hex("16502530000")
    ));

    let remove = vec![op(OpKind::Remove, None, Some("ann@example.com"), None)];
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &remove)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    assert_eq!(t.sim.member_count(CUSTOMER, LIST), 1);
    assert!(!t.sim.has_member_with(
        CUSTOMER,
        LIST,
        "hashedEmail",
        &sha256_hex("ann@example.com")
    ));
    assert!(t
        .sim
        .jobs()
        .iter()
        .all(|(_, status)| *status == JobStatus::Success));
}

#[tokio::test]
async fn partial_failure_rejects_exactly_the_bad_op() {
    let t = setup(100).await;
    // A CONTACT_INFO list refuses a third-party user id: only op 1 carries one.
    let keys = vec![MatchKey::Email, MatchKey::ExternId];
    let ops = vec![
        op(OpKind::Add, None, Some("a@example.com"), None),
        op(OpKind::Add, Some("u2"), None, None),
        op(OpKind::Add, None, Some("c@example.com"), None),
    ];
    let outcomes = t
        .dest
        .send(&export(), &binding(keys), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes[0], OpOutcome::Accepted);
    match &outcomes[1] {
        OpOutcome::Rejected { reason } => {
            assert!(reason.contains("INCOMPATIBLE_UPLOAD_KEY_TYPE"), "{reason}")
        }
        other => panic!("expected rejected, got {other:?}"),
    }
    assert_eq!(outcomes[2], OpOutcome::Accepted);
    assert_eq!(t.sim.member_count(CUSTOMER, LIST), 2);
}

#[tokio::test]
async fn one_job_takes_all_chunks_then_runs() {
    let t = setup(2).await;
    let ops: Vec<DeliveryOp> = (0..5)
        .map(|i| op(OpKind::Add, None, Some(&format!("p{i}@example.com")), None))
        .collect();
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcomes.iter().all(|o| *o == OpOutcome::Accepted));
    assert_eq!(t.sim.member_count(CUSTOMER, LIST), 5);
    let paths: Vec<String> = t.sim.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert!(paths[0].ends_with("offlineUserDataJobs:create"));
    assert!(paths[1..4].iter().all(|p| p.ends_with(":addOperations")));
    assert!(paths[4].ends_with(":run"));
    let sizes: Vec<usize> = t.sim.requests().iter().map(|r| r.operations).collect();
    assert_eq!(&sizes[1..4], &[2, 2, 1]);
    assert_eq!(t.sim.jobs().len(), 1);
}

#[tokio::test]
async fn wrong_token_is_permanent() {
    let t = setup_with(
        GoogleSimConfig::default(),
        |url| spec(url, 100, None, false),
        "expired",
    )
    .await;
    let ops = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
    match t.dest.send(&export(), &binding(Vec::new()), &ops).await {
        Err(DestinationError::Permanent { message, .. }) => {
            assert!(message.contains("UNAUTHENTICATED"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn login_customer_id_is_sent_and_a_wrong_one_is_permanent() {
    let config = || GoogleSimConfig {
        login_customer_id: Some("9999999999".into()),
        ..GoogleSimConfig::default()
    };
    let ops = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
    let good = setup_with(
        config(),
        |url| spec(url, 100, Some("9999999999"), false),
        DEFAULT_ACCESS_TOKEN,
    )
    .await;
    let outcomes = good
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    let bad = setup_with(
        config(),
        |url| spec(url, 100, Some("1111111111"), false),
        DEFAULT_ACCESS_TOKEN,
    )
    .await;
    match bad.dest.send(&export(), &binding(Vec::new()), &ops).await {
        Err(DestinationError::Permanent { message, .. }) => {
            assert!(message.contains("PERMISSION_DENIED"), "{message}")
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn quota_and_server_errors_are_retryable() {
    let t = setup(100).await;
    let ops = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
    t.sim.fail_next(1, GoogleFault::ResourceExhausted);
    match t.dest.send(&export(), &binding(Vec::new()), &ops).await {
        Err(DestinationError::Retryable {
            retry_after,
            message,
            ..
        }) => {
            assert!(message.contains("RESOURCE_EXHAUSTED"), "{message}");
            assert_eq!(retry_after, Some(Duration::from_secs(30)));
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcomes,
        vec![OpOutcome::Accepted],
        "the retried job goes through"
    );
    t.sim.fail_next(1, GoogleFault::Unavailable);
    assert!(t
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .is_err_and(|e| e.is_retryable()));
    t.sim.fail_next(1, GoogleFault::Internal);
    assert!(t
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .is_err_and(|e| e.is_retryable()));
}

#[tokio::test]
async fn a_list_busy_with_another_job_is_retryable() {
    let config = GoogleSimConfig {
        run_completes: false,
        ..GoogleSimConfig::default()
    };
    let t = setup_with(
        config,
        |url| spec(url, 100, None, false),
        DEFAULT_ACCESS_TOKEN,
    )
    .await;
    let ops = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
    let first = t.dest.send(&export(), &binding(Vec::new()), &ops).await;
    assert!(first.is_ok(), "{first:?}");
    let second = t.dest.send(&export(), &binding(Vec::new()), &ops).await;
    assert!(second.is_err_and(|e| e.is_retryable()));
    t.sim.complete_jobs();
    assert_eq!(t.sim.member_count(CUSTOMER, LIST), 1);
}

#[tokio::test]
async fn three_sends_to_one_list_while_its_job_runs_30s_wait_one_job_at_a_time() {
    let config = GoogleSimConfig {
        job_duration: Duration::from_secs(30),
        ..GoogleSimConfig::default()
    };
    let t = setup_with(
        config,
        |url| {
            let mut s = spec(url, 100, None, false);
            if let DestinationSettings::GoogleCustomerMatch { job_wait_ms, .. } = &mut s.settings {
                *job_wait_ms = 10_000;
            }
            s
        },
        DEFAULT_ACCESS_TOKEN,
    )
    .await;
    let max_attempts = 5;
    for n in 0..3 {
        let ops = vec![op(
            OpKind::Add,
            None,
            Some(&format!("p{n}@example.com")),
            None,
        )];
        let mut attempts = 0;
        let outcomes = loop {
            attempts += 1;
            assert!(attempts <= max_attempts, "send {n} would be dead-lettered");
            match t.dest.send(&export(), &binding(Vec::new()), &ops).await {
                Ok(outcomes) => break outcomes,
                Err(DestinationError::Retryable {
                    retry_after: Some(wait),
                    message,
                    ..
                }) => {
                    assert!(message.contains("busy"), "{message}");
                    // The queue brings the job back after `wait` (simulated).
                    t.sim.advance(wait);
                }
                Err(e) => panic!("send {n}: {e}"),
            }
        };
        assert_eq!(outcomes, vec![OpOutcome::Accepted], "send {n}");
    }
    t.sim.advance(Duration::from_secs(30));
    assert_eq!(t.sim.max_running_per_list(), 1, "one job at a time");
    assert_eq!(
        t.sim.concurrent_refusals(),
        0,
        "never CONCURRENT_MODIFICATION"
    );
    assert_eq!(t.sim.jobs().len(), 3);
    assert_eq!(
        t.sim.member_count(CUSTOMER, LIST),
        3,
        "every operation applied"
    );
}

#[tokio::test]
async fn gmail_dots_removed_only_when_the_destination_asks() {
    let ops = vec![op(OpKind::Add, None, Some("John.Smith@gmail.com"), None)];
    let plain = setup(100).await;
    plain
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(plain.sim.has_member_with(
        CUSTOMER,
        LIST,
        "hashedEmail",
        &sha256_hex("john.smith@gmail.com")
    ));
    let dotless = setup_with(
        GoogleSimConfig::default(),
        |url| spec(url, 100, None, true),
        DEFAULT_ACCESS_TOKEN,
    )
    .await;
    dotless
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(dotless.sim.has_member_with(
        CUSTOMER,
        LIST,
        "hashedEmail",
        &sha256_hex("johnsmith@gmail.com")
    ));
}

#[tokio::test]
async fn nothing_matchable_sends_nothing() {
    let t = setup(100).await;
    let ops = vec![
        op(OpKind::Add, Some("u1"), None, None),
        op(OpKind::Event, None, Some("a@example.com"), None),
    ];
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(outcomes[0], OpOutcome::Unmatched { .. }));
    assert!(matches!(outcomes[1], OpOutcome::Rejected { .. }));
    assert_eq!(t.sim.request_count(), 0);
}

#[tokio::test]
async fn audience_size_reads_the_user_list_size() {
    let t = setup(100).await;
    let ops = vec![
        op(OpKind::Add, None, Some("a@example.com"), None),
        op(OpKind::Add, None, Some("b@example.com"), None),
    ];
    t.dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let size = t
        .dest
        .audience_size(&export(), &binding(Vec::new()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(size, Some(2));
}

fn with_consent(mut s: DestinationSpec, consent: GoogleConsentSpec) -> DestinationSpec {
    if let DestinationSettings::GoogleCustomerMatch { consent: c, .. } = &mut s.settings {
        *c = consent;
    }
    s
}

fn consent(user_data: ConsentStatus, personalization: ConsentStatus) -> GoogleConsentSpec {
    GoogleConsentSpec {
        ad_user_data: user_data,
        ad_personalization: personalization,
        attribute: Some("ads_consent".into()),
        country_attribute: Some("country".into()),
        unknown_country_is_eea: true,
    }
}

fn with_attrs(mut op: DeliveryOp, attrs: &[(&str, Value)]) -> DeliveryOp {
    op.attributes = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    op
}

fn sim_consent(user_data: &str, personalization: &str) -> Option<SimConsent> {
    Some(SimConsent {
        ad_user_data: user_data.into(),
        ad_personalization: personalization.into(),
    })
}

#[tokio::test]
async fn create_jobs_carry_the_destinations_consent_and_remove_jobs_none() {
    let t = setup(100).await;
    let adds = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &adds)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    let removes = vec![op(OpKind::Remove, None, Some("a@example.com"), None)];
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &removes)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    let jobs = t.sim.job_details();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].consent, sim_consent("GRANTED", "GRANTED"));
    assert_eq!((jobs[0].creates, jobs[0].removes), (1, 0));
    assert_eq!(jobs[1].consent, None, "Google needs no consent for removes");
    assert_eq!((jobs[1].creates, jobs[1].removes), (0, 1));
    assert!(jobs.iter().all(|j| j.operation_consents.is_empty()));
}

#[tokio::test]
async fn creates_and_removes_never_share_a_job_the_smaller_kind_waits() {
    let t = setup(100).await;
    let ops = vec![
        op(OpKind::Remove, None, Some("gone@example.com"), None),
        op(OpKind::Add, None, Some("a@example.com"), None),
        op(OpKind::Update, None, Some("b@example.com"), None),
    ];
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&outcomes[0], OpOutcome::Retry { reason } if reason.contains("separate jobs")),
        "{outcomes:?}"
    );
    assert_eq!(&outcomes[1..], &[OpOutcome::Accepted, OpOutcome::Accepted]);
    let jobs = t.sim.job_details();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].creates, jobs[0].removes), (2, 0));
    // The remove comes back (the queue retries it) and gets its own job.
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &ops[..1])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    let jobs = t.sim.job_details();
    assert_eq!((jobs[1].creates, jobs[1].removes), (0, 1));
}

#[tokio::test]
async fn eea_people_without_both_consents_are_not_sent_and_own_grants_get_their_own_job() {
    let t = setup_with(
        GoogleSimConfig::default(),
        |url| {
            with_consent(
                spec(url, 100, None, false),
                consent(ConsentStatus::Unspecified, ConsentStatus::Unspecified),
            )
        },
        DEFAULT_ACCESS_TOKEN,
    )
    .await;
    let ops = vec![
        with_attrs(
            op(OpKind::Add, None, Some("us@example.com"), None),
            &[("country", json!("US"))],
        ),
        with_attrs(
            op(OpKind::Add, None, Some("de@example.com"), None),
            &[("country", json!("DE"))],
        ),
        op(OpKind::Add, None, Some("nowhere@example.com"), None),
        with_attrs(
            op(OpKind::Add, None, Some("fr@example.com"), None),
            &[("country", json!("FR")), ("ads_consent", json!("granted"))],
        ),
        with_attrs(
            op(OpKind::Add, None, Some("no@example.com"), None),
            &[("country", json!("US")), ("ads_consent", json!(false))],
        ),
        with_attrs(
            op(OpKind::Remove, None, Some("old@example.de"), None),
            &[("country", json!("DE"))],
        ),
    ];
    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &ops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes[0], OpOutcome::Accepted);
    for i in [1, 2] {
        assert!(
            matches!(&outcomes[i], OpOutcome::Unmatched { reason } if reason.starts_with("no consent (EEA)")),
            "{i}: {outcomes:?}"
        );
    }
    assert!(
        matches!(&outcomes[3], OpOutcome::Retry { .. }),
        "granted in a job of its own: {outcomes:?}"
    );
    assert!(
        matches!(&outcomes[4], OpOutcome::Unmatched { reason } if reason.contains("CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS")),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[5], OpOutcome::Retry { .. }),
        "removes need no consent, in their own job: {outcomes:?}"
    );
    let jobs = t.sim.job_details();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].consent, sim_consent("UNSPECIFIED", "UNSPECIFIED"));
    assert_eq!(jobs[0].creates, 1);

    let outcomes = t
        .dest
        .send(&export(), &binding(Vec::new()), &ops[3..4])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    let jobs = t.sim.job_details();
    assert_eq!(jobs[1].consent, sim_consent("GRANTED", "GRANTED"));
    assert!(t
        .sim
        .has_member_with(CUSTOMER, LIST, "hashedEmail", &sha256_hex("fr@example.com")));
    assert!(!t
        .sim
        .has_member_with(CUSTOMER, LIST, "hashedEmail", &sha256_hex("de@example.com")));
}

#[test]
fn a_denying_consent_setting_is_permanent_before_any_call() {
    let secrets = MapSecrets::default()
        .with("GOOGLE_ADS_DEVELOPER_TOKEN", "d")
        .with("GOOGLE_ADS_ACCESS_TOKEN", "t");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let err = GoogleCustomerMatchDestination::new(
        "google".into(),
        &with_consent(
            spec("http://127.0.0.1:1", 100, None, false),
            consent(ConsentStatus::Denied, ConsentStatus::Granted),
        ),
        &secrets,
        reqwest::Client::new(),
        Arc::new(crate::ports::SystemClock),
        state_in(&dir),
    )
    .err();
    match err {
        Some(DestinationError::Permanent { message, .. }) => {
            assert!(message.contains("CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"))
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[test]
fn the_job_takes_the_largest_kind_ties_going_to_the_earliest_op() {
    let granted = JobKind::Create {
        ad_user_data: ConsentStatus::Granted,
        ad_personalization: ConsentStatus::Granted,
    };
    let ops = |kinds: &[JobKind]| -> Vec<Operation> {
        kinds
            .iter()
            .enumerate()
            .map(|(index, kind)| Operation {
                index,
                identifiers: 1,
                kind: *kind,
                body: Value::Null,
            })
            .collect()
    };
    use JobKind::Remove;
    assert_eq!(job_kind(&ops(&[Remove, granted, granted])), Some(granted));
    assert_eq!(job_kind(&ops(&[Remove, granted])), Some(Remove));
    assert_eq!(job_kind(&ops(&[granted, Remove])), Some(granted));
    assert_eq!(job_kind(&ops(&[])), None);
}

#[test]
fn missing_secret_is_permanent_and_names_the_variable() {
    let secrets = MapSecrets::default().with("GOOGLE_ADS_DEVELOPER_TOKEN", "d");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let err = GoogleCustomerMatchDestination::new(
        "google".into(),
        &spec("http://127.0.0.1:1", 100, None, false),
        &secrets,
        reqwest::Client::new(),
        Arc::new(crate::ports::SystemClock),
        state_in(&dir),
    )
    .err();
    match err {
        Some(DestinationError::Permanent { message, .. }) => {
            assert!(message.contains("GOOGLE_ADS_ACCESS_TOKEN"))
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[test]
fn partial_failure_indices_read_in_either_field_case() {
    let answer = json!({"partial_failure_error": {"code": 3, "details": [{
        "errors": [{
            "error_code": {"offline_user_data_job_error": "INVALID_SHA256_FORMAT"},
            "message": "bad hash",
            "location": {"field_path_elements": [
                {"field_name": "operations", "index": "4"},
                {"field_name": "create"}
            ]}
        }]
    }]}});
    let failures = partial_failures(&answer);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, Some(4));
    assert!(failures[0].1.contains("bad hash"));
}

#[test]
fn chunks_respect_operation_and_identifier_caps() {
    let ops = |n: usize, identifiers: usize| -> Vec<Operation> {
        (0..n)
            .map(|index| Operation {
                index,
                identifiers,
                kind: JobKind::Remove,
                body: Value::Null,
            })
            .collect()
    };
    let sizes = |ops: &[Operation], max: usize| -> Vec<usize> {
        chunk_operations(ops, max).iter().map(|c| c.len()).collect()
    };
    assert_eq!(
        sizes(&ops(7, 1), 3),
        vec![3, 3, 1],
        "batch_size operations at most"
    );
    assert_eq!(
        sizes(&ops(7, 40_000), 3),
        vec![2, 2, 2, 1],
        "100,000 identifiers at most"
    );
    assert_eq!(sizes(&ops(2, 1), 10), vec![2]);
    assert!(sizes(&ops(0, 1), 10).is_empty());
}
