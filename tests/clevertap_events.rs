//! CleverTap events and attribute-only sync end to end, on the embedded
//! adapters against the Customer.io and CleverTap simulators: webhook event
//! actions become CleverTap event records (flat, `$D_` dates, the account's
//! property limit kept by our own check), and an `attributes` export updates
//! profile properties, in batch and from enter actions, without ever
//! setting a membership property.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use dataout::customerio::app_api::{AppApiClient, AppApiConfig, Region};
use dataout::domain::config::parse_spec;
use dataout::domain::model::{counter, CounterScope, RunStatus};
use dataout::domain::spec::{
    ActivationSpec, AttributeSpec, EventSpec, ExportDestination, ExportMode, ExportSource,
    ExportSpec, Transform,
};
use dataout::local::LocalRuntime;
use dataout::pipeline::intake::{handle, Route};
use dataout::ports::{MapSecrets, SystemClock};
use dataout_cli::demo::{intake_config, ACTION_SECRET};
use dataout_sim::clevertap::{self as ct_sim, ClevertapSimConfig, ClevertapState};
use dataout_sim::customerio::{self as cio_sim, CioSimConfig, SEGMENT_RECENT_PURCHASERS};
use serde_json::{json, Value};
use tempfile::TempDir;

const CIO_KEY: &str = "clevertap-events-test-key";

struct Setup {
    dir: TempDir,
    cio: cio_sim::CioSim,
    _ct_server: dataout_sim::RunningSim,
    ct: Arc<ClevertapState>,
    rt: Arc<LocalRuntime>,
    secrets: MapSecrets,
}

/// An attributes export over the recent purchasers segment, bound to
/// CleverTap (no audience: an attributes export sets no membership
/// property) and the warehouse.
fn spec_yaml(ct_url: &str, warehouse: &Path) -> String {
    format!(
        r#"version: 1
destinations:
  ct:
    kind: clevertap
    region: us1
    account_id_env: CT_ACCOUNT
    passcode_env: CT_PASSCODE
    base_url: {ct_url}
  wh:
    kind: warehouse
    location: {warehouse}
exports:
  profile_sync:
    source: {{segment: {SEGMENT_RECENT_PURCHASERS}}}
    mode: attributes
    cadence: {{realtime: true, every: 1h}}
    identity: {{golden: id, fallbacks: [email]}}
    attributes:
      vip_tier: lowercase
      lifetime_value: number
      last_order: {{from: last_order_at, transform: date}}
    destinations:
      ct:
      wh:
"#,
        warehouse = warehouse.display()
    )
}

fn property(name: &str, transform: Transform) -> AttributeSpec {
    AttributeSpec {
        name: name.into(),
        from: name.into(),
        transform,
    }
}

/// An events export bound to CleverTap with no event name: each event
/// travels under its source name.
fn events_export(name: &str, event: &str) -> ExportSpec {
    ExportSpec {
        name: name.into(),
        source: ExportSource::Events {
            names: vec![event.into()],
        },
        mode: ExportMode::Events,
        cadence: Default::default(),
        identity: dataout::domain::spec::IdentitySpec {
            golden: dataout::domain::spec::IdKind::Id,
            fallbacks: vec![dataout::domain::spec::IdKind::Email],
            default_phone_region: None,
        },
        attributes: vec![],
        tiers: vec![],
        exit_on: vec![],
        suppress: vec![],
        destinations: vec![ExportDestination {
            destination: "ct".into(),
            audience: String::new(),
            tier_audiences: Default::default(),
            keys: vec![],
        }],
        guard_rails: Default::default(),
        test_profiles: vec![],
    }
}

/// The events exports and their taxonomy, added to the parsed spec (so the
/// test does not depend on how the example spec declares them):
/// `order_placed` to `orders`, and `bulk_viewed`, 257 allow-listed
/// properties, to `browse`.
fn add_events(spec: &mut ActivationSpec) {
    spec.events.insert(
        "order_placed".into(),
        EventSpec {
            name: "order_placed".into(),
            required: vec!["order_id".into()],
            properties: vec![
                property("order_id", Transform::Identity),
                property("total", Transform::Number),
                property("currency", Transform::Identity),
                property("placed_at", Transform::Date),
                property("channel", Transform::Lowercase),
            ],
            value: Some("total".into()),
            currency: Some("currency".into()),
            order_id: Some("order_id".into()),
        },
    );
    spec.events.insert(
        "bulk_viewed".into(),
        EventSpec {
            name: "bulk_viewed".into(),
            properties: (0..257)
                .map(|i| property(&format!("p{i}"), Transform::Identity))
                .collect(),
            ..EventSpec::default()
        },
    );
    for export in [
        events_export("orders", "order_placed"),
        events_export("browse", "bulk_viewed"),
    ] {
        spec.exports.insert(export.name.clone(), export);
    }
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now().timestamp();
    let workspace = cio_sim::demo_workspace_at(11, 80, now);
    let cio = cio_sim::start(CioSimConfig::new(CIO_KEY, workspace))
        .await
        .unwrap();
    let (ct_server, ct) = ct_sim::start(ClevertapSimConfig {
        // CleverTap's answer time is not what this test is about.
        response_delay: None,
        ..ClevertapSimConfig::default()
    })
    .await
    .unwrap();
    let warehouse = dir.path().join("warehouse");
    let mut spec = parse_spec(&spec_yaml(&ct_server.base_url, &warehouse), "test.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    add_events(&mut spec);
    let defaults = ClevertapSimConfig::default();
    let secrets = MapSecrets::default()
        .with("CT_ACCOUNT", &defaults.account_id)
        .with("CT_PASSCODE", &defaults.passcode)
        .with("CIO_APP_API_KEY", CIO_KEY);
    let state = dir.path().join("state");
    let rt = Arc::new(
        LocalRuntime::open(
            spec,
            &state,
            &secrets,
            Arc::new(SystemClock),
            intake_config(),
            &state,
        )
        .unwrap(),
    );
    rt.start_workers().await.unwrap();
    Setup {
        dir,
        cio,
        _ct_server: ct_server,
        ct,
        rt,
        secrets,
    }
}

async fn post_action(rt: &LocalRuntime, body: &Value) -> Value {
    let headers: BTreeMap<String, String> =
        [("x-dataout-token".to_string(), ACTION_SECRET.to_string())].into();
    let bytes = serde_json::to_vec(body).unwrap();
    let resp = handle(&rt.deps, &rt.intake, Route::Actions, &headers, &bytes).await;
    assert!((200..300).contains(&resp.status), "{resp:?}");
    assert_eq!(resp.body["status"], "accepted", "{resp:?}");
    resp.body
}

async fn idle(rt: &LocalRuntime) {
    assert!(
        rt.wait_idle(Duration::from_secs(20)).await.unwrap(),
        "delivery never drained"
    );
}

fn event_action(id: &str, name: &str, event_id: &str, data: Value, sent_at: i64) -> Value {
    json!({
        "action": "event",
        "person": {"id": id},
        "event": {"name": name, "id": event_id, "data": data},
        "sent_at": sent_at,
    })
}

/// `$D_` of midnight UTC of the day `secs` falls on.
fn day_of(secs: i64) -> String {
    let day = Utc
        .timestamp_opt(secs, 0)
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default();
    clevertap_day(day)
}

fn clevertap_day(day: NaiveDate) -> String {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    format!("$D_{}", midnight.timestamp())
}

#[tokio::test]
async fn event_action_lands_at_clevertap_flat_with_a_clevertap_date() {
    let s = setup().await;
    let sent_at = Utc::now().timestamp() - 30;
    post_action(
        &s.rt,
        &event_action(
            "cust_70001",
            "order_placed",
            "ord_70001",
            json!({"order_id": "ord_70001", "total": "150.00", "currency": "EUR",
                   "placed_at": "2026-11-30T00:00:00Z", "channel": "Web"}),
            sent_at,
        ),
    )
    .await;
    idle(&s.rt).await;
    let events = s.ct.events_of("cust_70001");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        e.name, "order_placed",
        "the source name: the binding names none"
    );
    assert_eq!(e.ts, Some(sent_at), "the event's own time, in seconds");
    assert_eq!(e.data["order_id"], "ord_70001");
    assert_eq!(
        e.data["placed_at"],
        clevertap_day(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap())
    );
    assert!(
        e.data.values().all(|v| !v.is_object() && !v.is_array()),
        "{:?}",
        e.data
    );
    // An event never writes the profile.
    assert!(s.ct.profile("cust_70001").is_none());
}

#[tokio::test]
async fn event_over_the_property_limit_is_invalid_counted_and_its_neighbours_delivered() {
    let s = setup().await;
    let t = Utc::now().timestamp() - 60;
    let order = |id: &str, n: i64| {
        event_action(
            id,
            "order_placed",
            &format!("ord_{id}"),
            json!({"order_id": format!("ord_{id}"), "total": "20", "currency": "USD"}),
            t + n,
        )
    };
    let many: serde_json::Map<String, Value> = (0..257)
        .map(|i| (format!("p{i}"), json!(format!("v{i}"))))
        .collect();
    post_action(&s.rt, &order("cust_70011", 0)).await;
    post_action(
        &s.rt,
        &event_action(
            "cust_70012",
            "bulk_viewed",
            "bulk_1",
            Value::Object(many),
            t + 1,
        ),
    )
    .await;
    post_action(&s.rt, &order("cust_70013", 2)).await;
    idle(&s.rt).await;

    assert_eq!(s.ct.events_of("cust_70011").len(), 1);
    assert_eq!(s.ct.events_of("cust_70013").len(), 1);
    assert!(s.ct.events_of("cust_70012").is_empty());
    let c = s.ct.counters();
    assert_eq!(c.records_rejected, 0, "never sent to be refused: {c:?}");
    assert_eq!(c.records_accepted, 2, "{c:?}");
    let browse =
        s.rt.deps
            .state
            .get_counters(&CounterScope::delivery("browse", "ct"))
            .await
            .unwrap();
    assert_eq!(browse.get(counter::INVALID).copied(), Some(1), "{browse:?}");
    assert_eq!(browse.get(counter::ACCEPTED).copied().unwrap_or(0), 0);
    let orders =
        s.rt.deps
            .state
            .get_counters(&CounterScope::delivery("orders", "ct"))
            .await
            .unwrap();
    assert_eq!(
        orders.get(counter::ACCEPTED).copied(),
        Some(2),
        "{orders:?}"
    );
}

/// The warehouse rows written for `export`, parsed.
fn warehouse_rows(dir: &Path, export: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut stack = vec![dir.join(format!("export={export}"))];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                rows.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
            }
        }
    }
    rows
}

#[tokio::test]
async fn attributes_export_updates_profile_properties_and_never_membership() {
    let s = setup().await;
    let ws = s.cio.handle.snapshot();
    let members: Vec<_> = ws
        .members(SEGMENT_RECENT_PURCHASERS)
        .into_iter()
        .filter_map(|i| ws.people.get(i))
        .filter(|p| p.id.is_some())
        .cloned()
        .collect();
    assert!(members.len() >= 3, "the workspace has recent purchasers");
    // Everyone in the segment, people known by email only too.
    let in_segment = ws.members(SEGMENT_RECENT_PURCHASERS).len();

    // Batch run.
    let source = AppApiClient::new(
        AppApiConfig {
            base_url: Some(s.cio.base_url().to_string()),
            region: Region::Us,
            ..AppApiConfig::default()
        },
        &s.secrets,
        reqwest::Client::new(),
    )
    .unwrap();
    let run = s.rt.run_batch(&source, "profile_sync").await.unwrap();
    assert_eq!(run.status, RunStatus::Finished, "{run:?}");
    idle(&s.rt).await;
    let allowed = ["last_order", "lifetime_value", "vip_tier"];
    for p in &members {
        let id = p.id.as_deref().unwrap();
        let profile =
            s.ct.profile(id)
                .unwrap_or_else(|| panic!("no CleverTap profile for {id}"));
        for key in profile.data.keys() {
            assert!(allowed.contains(&key.as_str()), "{key} sent for {id}");
        }
        assert_eq!(
            profile.data["vip_tier"],
            p.attributes["vip_tier"].to_lowercase()
        );
        let ltv: f64 = p.attributes["lifetime_value"].parse().unwrap();
        assert_eq!(profile.data["lifetime_value"].as_f64(), Some(ltv));
        let last_order: i64 = p.attributes["last_order_at"].parse().unwrap();
        assert_eq!(profile.data["last_order"], day_of(last_order));
    }
    let sent_by_batch = s.ct.counters().records_received;

    // An enter action: the same properties, from the action's attributes.
    let t = Utc::now().timestamp() - 120;
    let enter = |tier: &str, sent_at: i64| {
        json!({
            "action": "enter", "export": "profile_sync",
            "person": {"id": "cust_70021", "email": "attrs@example.com"},
            "attributes": {"vip_tier": tier, "lifetime_value": "1200.50",
                           "last_order_at": t.to_string()},
            "sent_at": sent_at,
        })
    };
    post_action(&s.rt, &enter("Gold", t)).await;
    idle(&s.rt).await;
    let profile = s.ct.profile("cust_70021").expect("entered profile");
    assert_eq!(profile.data["vip_tier"], "gold");
    assert_eq!(profile.data["lifetime_value"], 1200.5);
    assert_eq!(profile.data["last_order"], day_of(t));
    assert!(!profile.data.contains_key("profile_sync"));
    assert!(
        !profile.data.contains_key("Email"),
        "only the allow-list travels"
    );

    // Exit: nothing is sent and the properties stay.
    let exit = json!({
        "action": "exit", "export": "profile_sync",
        "person": {"id": "cust_70021"}, "sent_at": t + 10,
    });
    let answer = post_action(&s.rt, &exit).await;
    assert_eq!(answer["jobs"], 0, "{answer}");
    idle(&s.rt).await;
    let after_exit = s.ct.profile("cust_70021").expect("profile stays");
    assert_eq!(after_exit.data, profile.data);

    // A changed attribute updates the property.
    post_action(&s.rt, &enter("Platinum", t + 20)).await;
    idle(&s.rt).await;
    let changed = s.ct.profile("cust_70021").expect("profile");
    assert_eq!(changed.data["vip_tier"], "platinum");
    assert_eq!(
        s.ct.counters().records_received,
        sent_by_batch + 2,
        "one upload per enter with attributes, none for the exit"
    );

    // The warehouse holds attribute rows only: updates of an attributes export.
    let rows = warehouse_rows(&s.dir.path().join("warehouse"), "profile_sync");
    // One update per segment member from the batch run, one per enter.
    assert_eq!(rows.len(), in_segment + 2, "{} rows", rows.len());
    for row in &rows {
        assert_eq!(row["op"], "update", "{row}");
        assert_eq!(row["mode"], "attributes", "{row}");
        assert_eq!(row["audience"], "profile_sync", "{row}");
    }

    // Reconciliation does not count the missing membership adds as drift.
    let report = s.rt.reconcile(None).await.unwrap();
    let sync_rows: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.export == "profile_sync")
        .collect();
    assert_eq!(sync_rows.len(), 2);
    for row in sync_rows {
        // The segment's members and cust_70021, who entered last.
        assert_eq!(row.state_count, in_segment as u64 + 1, "{row:?}");
        assert_eq!(row.delivered_members, 0, "{row:?}");
        assert!(!row.alarm, "{:?}", row.check.alarm_reasons);
    }
}
