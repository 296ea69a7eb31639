//! CleverTap destination tests, against the CleverTap simulator.

use super::*;
use crate::domain::model::{Attributes, EventPayload, PersonKey};
use crate::domain::spec::{Cadence, ExportMode, ExportSource, GuardRails};
use crate::ports::MapSecrets;
use dataout_sim::clevertap::{self as sim, ClevertapSimConfig};

pub(super) fn dest_spec(base_url: &str, batch_size: usize) -> DestinationSpec {
    DestinationSpec {
        name: "ct".into(),
        kind: DestinationKind::Clevertap,
        base_url: Some(base_url.to_string()),
        batch_size,
        max_concurrency: 4,
        max_requests_per_second: None,
        max_attempts: 3,
        settings: DestinationSettings::Clevertap {
            region: "us1".into(),
            account_id_env: "CT_ACCOUNT".into(),
            passcode_env: "CT_PASSCODE".into(),
            max_event_properties: 100,
        },
    }
}

pub(super) fn secrets(passcode: &str) -> MapSecrets {
    MapSecrets::default()
        .with("CT_ACCOUNT", "TEST-ACC-1")
        .with("CT_PASSCODE", passcode)
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
        attributes: vec![],
        tiers: vec![],
        exit_on: vec![],
        suppress: vec![],
        destinations: vec![binding()],
        guard_rails: GuardRails::default(),
        test_profiles: vec![],
    }
}

pub(super) fn binding() -> ExportDestination {
    ExportDestination {
        destination: "ct".into(),
        audience: "cio_cart_abandoners".into(),
        tier_audiences: Default::default(),
        keys: vec![],
    }
}

pub(super) fn op(kind: OpKind, id: Option<&str>, email: Option<&str>) -> DeliveryOp {
    DeliveryOp {
        op: kind,
        person_key: PersonKey(format!("id:{}", id.unwrap_or("-"))),
        ids: Identifiers {
            id: id.map(String::from),
            email: email.map(String::from),
            cio_id: None,
            phone: None,
        },
        audience: "cio_cart_abandoners".into(),
        tier: None,
        attributes: Attributes::new(),
        event: None,
        source_ts: 1_700_000_000_123,
        intake_ts: 1_700_000_001_000,
    }
}

/// The simulator without CleverTap's answer time: these tests need speed.
pub(super) fn fast() -> ClevertapSimConfig {
    ClevertapSimConfig {
        response_delay: None,
        ..ClevertapSimConfig::default()
    }
}

pub(super) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

pub(super) async fn setup(
    batch_size: usize,
) -> anyhow::Result<(
    dataout_sim::RunningSim,
    std::sync::Arc<sim::ClevertapState>,
    ClevertapDestination,
)> {
    let (running, state) = sim::start(fast()).await?;
    let dest = ClevertapDestination::new(
        "ct".into(),
        &dest_spec(&running.base_url, batch_size),
        &secrets("TEST-PASSCODE"),
        http(),
    )?;
    Ok((running, state, dest))
}

#[tokio::test]
async fn membership_and_attributes_land_as_profile_properties() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    let mut add = op(OpKind::Add, Some("u1"), Some(" Ann@Example.com "));
    add.attributes.insert("plan".into(), json!("pro"));
    add.attributes.insert("prefs".into(), json!({"a": 1}));
    let remove = op(OpKind::Remove, Some("u2"), None);
    let mut event = op(OpKind::Event, Some("u1"), None);
    // No binding audience: the event travels under its source name.
    event.audience = String::new();
    event.event = Some(EventPayload {
        event_id: "e1".into(),
        name: "Charged".into(),
        data: serde_json::from_value(json!({"amount": 5, "items": [
            {"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}
        ]}))?,
        ..EventPayload::default()
    });
    let out = dest
        .send(&export(), &binding(), &[add, remove, event])
        .await?;
    assert_eq!(out, vec![OpOutcome::Accepted; 3]);

    let u1 = state
        .profile("u1")
        .ok_or_else(|| anyhow::anyhow!("u1 missing"))?;
    assert_eq!(u1.data["cio_cart_abandoners"], true);
    assert_eq!(u1.data["plan"], "pro");
    assert_eq!(u1.data["prefs"], "{\"a\":1}");
    assert_eq!(u1.data["Email"], "ann@example.com");
    assert_eq!(u1.last_ts, Some(1_700_000_000));
    let u2 = state
        .profile("u2")
        .ok_or_else(|| anyhow::anyhow!("u2 missing"))?;
    assert_eq!(u2.data["cio_cart_abandoners"], false);
    let events = state.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "Charged");
    // CleverTap's Charged shape: Items, an array of objects.
    assert_eq!(
        events[0].data["Items"],
        json!([{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}])
    );
    assert!(!events[0].data.contains_key("items"));
    Ok(())
}

#[tokio::test]
async fn person_without_usable_identifier_is_unmatched_and_never_sent() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    let out = dest
        .send(&export(), &binding(), &[op(OpKind::Add, None, None)])
        .await?;
    assert!(matches!(out[0], OpOutcome::Unmatched { .. }));
    assert_eq!(state.counters().requests, 0);
    Ok(())
}

#[tokio::test]
async fn wrong_passcode_is_permanent() -> anyhow::Result<()> {
    let (running, _state) = sim::start(ClevertapSimConfig::default()).await?;
    let dest = ClevertapDestination::new(
        "ct".into(),
        &dest_spec(&running.base_url, 100),
        &secrets("WRONG"),
        http(),
    )?;
    let err = dest
        .send(&export(), &binding(), &[op(OpKind::Add, Some("u1"), None)])
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("expected an error"))?;
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("401"));
    Ok(())
}

#[test]
fn missing_secret_names_the_variable() {
    let spec = dest_spec("http://127.0.0.1:1", 100);
    let secrets = MapSecrets::default().with("CT_ACCOUNT", "a");
    let err = ClevertapDestination::new("ct".into(), &spec, &secrets, http())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("CT_PASSCODE"), "{err}");
}

#[tokio::test]
async fn a_refused_phone_is_left_out_and_the_membership_flag_lands_exactly_once(
) -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    let mut bad = op(OpKind::Add, Some("u2"), None);
    bad.attributes.insert("Phone".into(), json!("415-555-1234"));
    bad.attributes.insert("plan".into(), json!("pro"));
    let ops = vec![
        op(OpKind::Add, Some("u1"), None),
        bad,
        op(OpKind::Add, Some("u3"), None),
    ];
    let out = dest.send(&export(), &binding(), &ops).await?;
    assert_eq!(out[0], OpOutcome::Accepted);
    assert!(
        matches!(&out[1], OpOutcome::AcceptedWithout { fields, reason }
            if fields == &["Phone".to_string()] && reason.contains("516")),
        "{out:?}"
    );
    assert!(out[1].is_accepted());
    assert_eq!(out[2], OpOutcome::Accepted);
    let u2 = state
        .profile("u2")
        .ok_or_else(|| anyhow::anyhow!("u2's profile never landed"))?;
    assert_eq!(u2.data["cio_cart_abandoners"], true);
    assert_eq!(u2.data["plan"], "pro");
    assert!(!u2.data.contains_key("Phone"), "{u2:?}");
    // Stored once: the first upload skipped it whole, the resend landed it.
    let arrivals = state.arrival_order();
    assert_eq!(
        arrivals.iter().filter(|k| *k == "u2").count(),
        1,
        "{arrivals:?}"
    );
    assert_eq!(
        arrivals.iter().filter(|k| *k == "u1").count(),
        1,
        "{arrivals:?}"
    );
    let c = state.counters();
    assert_eq!((c.requests, c.records_rejected), (2, 1), "{c:?}");
    Ok(())
}

#[tokio::test]
async fn a_refused_email_and_phone_are_both_left_out_and_the_profile_lands() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    let mut bad = op(OpKind::Add, Some("u1"), None);
    bad.attributes.insert("Email".into(), json!("not-an-email"));
    bad.attributes.insert("Phone".into(), json!("12"));
    let out = dest.send(&export(), &binding(), &[bad]).await?;
    let OpOutcome::AcceptedWithout { fields, reason } = &out[0] else {
        panic!("{out:?}");
    };
    let mut fields = fields.clone();
    fields.sort();
    assert_eq!(fields, ["Email", "Phone"]);
    assert!(reason.contains("515") && reason.contains("516"), "{reason}");
    let u1 = state
        .profile("u1")
        .ok_or_else(|| anyhow::anyhow!("u1's profile never landed"))?;
    assert_eq!(u1.data["cio_cart_abandoners"], true);
    assert!(!u1.data.contains_key("Email") && !u1.data.contains_key("Phone"));
    assert_eq!(state.arrival_order(), ["u1"]);
    Ok(())
}

#[test]
fn a_record_left_with_nothing_but_the_refused_field_is_not_resent() -> anyhow::Result<()> {
    // Nothing but the contact field would be left: the refusal stands.
    let record = json!({"type": "profile", "identity": "u1", "profileData": {"Phone": "12"}});
    assert!(without_contact_field(&record, 516, &[]).is_none());
    let record = json!({"type": "profile", "identity": "u1",
                        "profileData": {"Phone": "12", "seg": true}});
    let (stripped, field) = without_contact_field(&record, 516, &[])
        .ok_or_else(|| anyhow::anyhow!("phone not taken out"))?;
    assert_eq!(field, "Phone");
    assert_eq!(stripped["profileData"], json!({"seg": true}));
    // A code that is not about a contact field, or a field already out: no resend.
    assert!(without_contact_field(&record, 514, &[]).is_none());
    assert!(without_contact_field(&record, 516, &[(516, "Phone")]).is_none());
    Ok(())
}

#[tokio::test]
async fn several_ops_of_one_identity_map_failures_to_the_right_op() -> anyhow::Result<()> {
    let (_sim, _state, dest) = setup(100).await?;
    let add = op(OpKind::Add, Some("u1"), None);
    let mut update = op(OpKind::Update, Some("u1"), None);
    update.attributes.insert("Gender".into(), json!("x"));
    let out = dest.send(&export(), &binding(), &[add, update]).await?;
    assert_eq!(out[0], OpOutcome::Accepted);
    assert!(matches!(&out[1], OpOutcome::Rejected { reason } if reason.contains("514")));
    Ok(())
}

#[tokio::test]
async fn code_555_is_retry() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    state.fail_records_555("u2", 1);
    let ops = [
        op(OpKind::Add, Some("u1"), None),
        op(OpKind::Add, Some("u2"), None),
    ];
    let out = dest.send(&export(), &binding(), &ops).await?;
    assert_eq!(out[0], OpOutcome::Accepted);
    assert!(matches!(&out[1], OpOutcome::Retry { reason } if reason.contains("555")));
    Ok(())
}

#[tokio::test]
async fn http_429_and_503_are_retryable() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    for status in [429, 503] {
        state.fail_next(1, status);
        let err = dest
            .send(&export(), &binding(), &[op(OpKind::Add, Some("u1"), None)])
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("expected an error for {status}"))?;
        assert!(err.is_retryable(), "{status}: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn unreachable_host_is_retryable() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    let dest = ClevertapDestination::new(
        "ct".into(),
        &dest_spec(&format!("http://{addr}"), 100),
        &secrets("TEST-PASSCODE"),
        http(),
    )?;
    let err = dest
        .send(&export(), &binding(), &[op(OpKind::Add, Some("u1"), None)])
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("expected an error"))?;
    assert!(err.is_retryable());
    Ok(())
}

#[tokio::test]
async fn ops_are_chunked_to_batch_size() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(2).await?;
    assert_eq!(dest.max_batch(), 2);
    let ops: Vec<DeliveryOp> = (0..5)
        .map(|i| op(OpKind::Add, Some(&format!("u{i}")), None))
        .collect();
    let out = dest.send(&export(), &binding(), &ops).await?;
    assert_eq!(out, vec![OpOutcome::Accepted; 5]);
    let c = state.counters();
    assert_eq!(c.requests, 3);
    assert_eq!(c.records_accepted, 5);
    Ok(())
}

fn offline_dest() -> anyhow::Result<ClevertapDestination> {
    Ok(ClevertapDestination::new(
        "ct".into(),
        &dest_spec("http://127.0.0.1:1", 100),
        &secrets("p"),
        http(),
    )?)
}

fn response(v: Value) -> anyhow::Result<UploadResponse> {
    Ok(serde_json::from_value(v)?)
}

#[test]
fn failure_echoed_differently_for_a_repeated_identity_retries_all_candidates() -> anyhow::Result<()>
{
    let dest = offline_dest()?;
    let ops = [
        op(OpKind::Add, Some("u1"), None),
        op(OpKind::Update, Some("u1"), None),
        op(OpKind::Add, Some("u2"), None),
    ];
    let chunk: Vec<Prepared> = ops
        .iter()
        .enumerate()
        .map(|(index, o)| {
            dest.record_for(&export(), o)
                .map(|record| Prepared { index, record })
        })
        .collect::<Result<_, _>>()
        .map_err(|o| anyhow::anyhow!("{o:?}"))?;
    let resp = response(json!({"status": "success", "processed": 2, "unprocessed": [
        {"status": "fail", "code": 512, "error": "x",
         "record": {"type": "profile", "identity": "u1", "profileData": {"changed": 1}}}
    ]}))?;
    let out = dest.chunk_outcomes(&export(), &ops, &chunk, resp)?;
    assert!(matches!(out[0], OpOutcome::Retry { .. }));
    assert!(matches!(out[1], OpOutcome::Retry { .. }));
    assert_eq!(out[2], OpOutcome::Accepted);
    Ok(())
}

#[test]
fn failure_matching_nothing_sent_never_reports_accepted() -> anyhow::Result<()> {
    let dest = offline_dest()?;
    let ops = [op(OpKind::Add, Some("u1"), None)];
    let record = dest
        .record_for(&export(), &ops[0])
        .map_err(|o| anyhow::anyhow!("{o:?}"))?;
    let chunk = [Prepared { index: 0, record }];
    let resp = response(json!({"status": "partial", "unprocessed": [
        {"status": "fail", "code": 516, "record": {"identity": "someone-else"}}
    ]}))?;
    let out = dest.chunk_outcomes(&export(), &ops, &chunk, resp)?;
    assert!(matches!(out[0], OpOutcome::Retry { .. }));
    Ok(())
}

#[test]
fn fail_status_without_records_fails_the_request() -> anyhow::Result<()> {
    let dest = offline_dest()?;
    let ops = [op(OpKind::Add, Some("u1"), None)];
    let record = dest
        .record_for(&export(), &ops[0])
        .map_err(|o| anyhow::anyhow!("{o:?}"))?;
    let chunk = [Prepared { index: 0, record }];
    let resp = response(json!({"status": "fail", "error": "bad", "code": 400}))?;
    let err = dest.chunk_outcomes(&export(), &ops, &chunk, resp).err();
    assert!(matches!(err, Some(DestinationError::Permanent { .. })));
    Ok(())
}

#[tokio::test]
async fn partial_status_is_read_like_success() -> anyhow::Result<()> {
    let (running, _state) = sim::start(ClevertapSimConfig {
        partial_status: sim::PartialStatus::Partial,
        ..Default::default()
    })
    .await?;
    let dest = ClevertapDestination::new(
        "ct".into(),
        &dest_spec(&running.base_url, 100),
        &secrets("TEST-PASSCODE"),
        http(),
    )?;
    let mut bad = op(OpKind::Add, Some("u2"), None);
    bad.attributes.insert("Gender".into(), json!("x"));
    let out = dest
        .send(
            &export(),
            &binding(),
            &[op(OpKind::Add, Some("u1"), None), bad],
        )
        .await?;
    assert_eq!(out[0], OpOutcome::Accepted);
    assert!(matches!(&out[1], OpOutcome::Rejected { reason } if reason.contains("514")));
    Ok(())
}

#[test]
fn every_documented_region_has_its_own_host_eu1_included() {
    // Hosts as CleverTap's Node library builds them (`https://${region}.api.clevertap.com`).
    for (region, host) in [
        ("in1", "https://in1.api.clevertap.com"),
        ("sg1", "https://sg1.api.clevertap.com"),
        ("us1", "https://us1.api.clevertap.com"),
        ("aps3", "https://aps3.api.clevertap.com"),
        ("mec1", "https://mec1.api.clevertap.com"),
        ("eu1", "https://eu1.api.clevertap.com"),
    ] {
        assert_eq!(base_url_for_region(region).ok().as_deref(), Some(host));
    }
    for bad in ["us2", "eu", "", "US1", "us1.evil.com/"] {
        assert!(base_url_for_region(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn a_destination_in_an_unknown_region_is_refused_when_built_naming_it_and_the_list() {
    let mut spec = dest_spec("unused", 100);
    spec.base_url = None;
    spec.settings = DestinationSettings::Clevertap {
        region: "us2".into(),
        account_id_env: "CT_ACCOUNT".into(),
        passcode_env: "CT_PASSCODE".into(),
        max_event_properties: 256,
    };
    let err = ClevertapDestination::new("ct".into(), &spec, &secrets("p"), http())
        .err()
        .map(|e| (e.is_retryable(), e.to_string()));
    let Some((retryable, message)) = err else {
        panic!("a destination in region us2 was built");
    };
    assert!(!retryable, "{message}");
    assert!(message.starts_with("ct:"), "{message}");
    assert!(message.contains("`us2`"), "{message}");
    for region in REGIONS {
        assert!(message.contains(region), "{message}");
    }
}

#[test]
fn golden_identity_falls_back_in_order() {
    let spec = IdentitySpec {
        golden: IdKind::Id,
        fallbacks: vec![IdKind::CioId, IdKind::Email],
        default_phone_region: None,
    };
    let ids = Identifiers {
        id: Some(" ".into()),
        email: Some("A@B.co".into()),
        cio_id: None,
        phone: None,
    };
    assert_eq!(
        golden_identity(&spec, &ids),
        Some((IdKind::Email, "a@b.co".to_string()))
    );
}

fn event_op(id: &str, audience: &str, name: &str, data: Value) -> anyhow::Result<DeliveryOp> {
    let mut o = op(OpKind::Event, Some(id), None);
    o.audience = audience.to_string();
    o.event = Some(EventPayload {
        event_id: format!("evt_{id}"),
        name: name.to_string(),
        data: serde_json::from_value(data)?,
        ..EventPayload::default()
    });
    Ok(o)
}

fn events_export() -> ExportSpec {
    ExportSpec {
        name: "orders".into(),
        source: ExportSource::Events {
            names: vec!["order_placed".into()],
        },
        mode: ExportMode::Events,
        ..export()
    }
}

#[tokio::test]
async fn event_lands_flat_with_clevertap_dates_amount_and_the_binding_name() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    let mut o = event_op(
        "u1",
        "Charged",
        "order_placed",
        json!({"order_id": "o1", "placed_at": "2023-11-14T22:13:20Z",
               "shipping": {"city": "Lyon"}, "skus": ["a", "b"]}),
    )?;
    if let Some(e) = o.event.as_mut() {
        e.value = Some(150.0);
        e.currency = Some("EUR".into());
    }
    let out = dest.send(&events_export(), &binding(), &[o]).await?;
    assert_eq!(out, vec![OpOutcome::Accepted]);
    let events = state.events_of("u1");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.name, "Charged");
    assert_eq!(e.ts, Some(1_700_000_000), "event time in seconds");
    assert_eq!(e.data["placed_at"], "$D_1700000000");
    assert_eq!(e.data["shipping_city"], "Lyon");
    assert_eq!(e.data["skus"], "[\"a\",\"b\"]");
    assert_eq!(e.data["Amount"], 150);
    assert_eq!(e.data["Currency"], "EUR");
    // An event never touches the profile.
    assert!(state.profile("u1").is_none());
    Ok(())
}

#[tokio::test]
async fn event_over_the_property_limit_is_invalid_and_its_neighbours_go() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("p{i}"), json!(i))).collect();
    let ops = [
        event_op("u1", "", "order_placed", json!({"a": 1}))?,
        event_op("u2", "", "order_placed", Value::Object(many))?,
        event_op("u3", "App Launched", "order_placed", json!({}))?,
        event_op("u4", "", "order_placed", json!({"b": 2}))?,
    ];
    let out = dest.send(&events_export(), &binding(), &ops).await?;
    assert_eq!(out[0], OpOutcome::Accepted);
    assert!(
        matches!(&out[1], OpOutcome::Invalid { reason } if reason.contains("101") && reason.contains("522")),
        "{out:?}"
    );
    assert!(
        matches!(&out[2], OpOutcome::Invalid { reason } if reason.contains("513")),
        "{out:?}"
    );
    assert_eq!(out[3], OpOutcome::Accepted);
    let c = state.counters();
    assert_eq!(c.records_received, 2, "invalid events are never sent");
    assert_eq!(c.records_rejected, 0);
    assert!(state.events_of("u2").is_empty() && state.events_of("u3").is_empty());
    Ok(())
}

#[tokio::test]
async fn a_raised_account_limit_lets_larger_events_through() -> anyhow::Result<()> {
    let (running, state) = sim::start(ClevertapSimConfig {
        max_event_properties: 150,
        ..ClevertapSimConfig::default()
    })
    .await?;
    let mut spec = dest_spec(&running.base_url, 100);
    if let DestinationSettings::Clevertap {
        max_event_properties,
        ..
    } = &mut spec.settings
    {
        *max_event_properties = 150;
    }
    let dest = ClevertapDestination::new("ct".into(), &spec, &secrets("TEST-PASSCODE"), http())?;
    let many: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("p{i}"), json!(i))).collect();
    let ops = [event_op("u1", "", "order_placed", Value::Object(many))?];
    let out = dest.send(&events_export(), &binding(), &ops).await?;
    assert_eq!(out, vec![OpOutcome::Accepted]);
    assert_eq!(state.events_of("u1")[0].data.len(), 101);
    Ok(())
}

fn attributes_export() -> ExportSpec {
    ExportSpec {
        name: "profile_sync".into(),
        mode: ExportMode::Attributes,
        attributes: vec![
            crate::domain::spec::AttributeSpec {
                name: "plan".into(),
                from: "plan".into(),
                transform: Transform::Lowercase,
            },
            crate::domain::spec::AttributeSpec {
                name: "last_order".into(),
                from: "last_order_at".into(),
                transform: Transform::Date,
            },
        ],
        ..export()
    }
}

#[tokio::test]
async fn attributes_update_uploads_only_the_allow_listed_properties() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    let mut update = op(OpKind::Update, Some("u1"), Some("ann@example.com"));
    update.audience = "profile_sync".into();
    update.attributes.insert("plan".into(), json!("pro"));
    update
        .attributes
        .insert("last_order".into(), json!("2023-11-14"));
    let out = dest
        .send(&attributes_export(), &binding(), &[update])
        .await?;
    assert_eq!(out, vec![OpOutcome::Accepted]);
    let u1 = state
        .profile("u1")
        .ok_or_else(|| anyhow::anyhow!("u1 missing"))?;
    let keys: Vec<&str> = u1.data.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["last_order", "plan"], "nothing else travels");
    assert_eq!(u1.data["plan"], "pro");
    assert_eq!(u1.data["last_order"], "$D_1699920000");
    Ok(())
}

#[tokio::test]
async fn attributes_export_never_sends_a_membership_flag() -> anyhow::Result<()> {
    let (_sim, state, dest) = setup(100).await?;
    let remove = op(OpKind::Remove, Some("u1"), None);
    let empty = op(OpKind::Update, Some("u2"), None);
    let out = dest
        .send(&attributes_export(), &binding(), &[remove, empty])
        .await?;
    assert!(
        out.iter().all(|o| matches!(o, OpOutcome::Invalid { .. })),
        "{out:?}"
    );
    assert_eq!(state.counters().requests, 0);
    Ok(())
}

#[test]
fn output_is_described_by_mode() -> anyhow::Result<()> {
    let dest = offline_dest()?;
    let b = binding();
    assert!(dest
        .describe_output(&export(), &b)
        .contains("profile property `cio_cart_abandoners`"));
    assert!(dest
        .describe_output(&attributes_export(), &b)
        .contains("profile properties (plan, last_order)"));
    assert!(dest
        .describe_output(&events_export(), &b)
        .contains("event `cio_cart_abandoners`"));
    Ok(())
}
