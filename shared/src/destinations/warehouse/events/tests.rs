use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::{json, Map};

use super::*;
use crate::adapters::local_fs::LocalDirStore;
use crate::domain::model::{Attributes, Identifiers, PersonKey};
use crate::domain::spec::{
    Cadence, DestinationKind, DestinationSettings, DestinationSpec, ExportMode, ExportSource,
    GuardRails, IdKind, IdentitySpec,
};
use crate::ports::ManualClock;

/// 2025-12-01T23:59:59.999Z: the last millisecond of a UTC day.
const LAST_MS: Millis = 1_764_633_599_999;

fn dest_spec() -> DestinationSpec {
    DestinationSpec {
        name: "lake".into(),
        kind: DestinationKind::Warehouse,
        base_url: None,
        batch_size: 500,
        max_concurrency: 1,
        max_requests_per_second: None,
        max_attempts: 3,
        settings: DestinationSettings::Warehouse {
            location: "./out".into(),
        },
    }
}

fn export() -> ExportSpec {
    ExportSpec {
        name: "engagement".into(),
        source: ExportSource::Events {
            names: vec!["email.*".into(), "order_placed".into()],
        },
        mode: ExportMode::Events,
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

fn binding() -> ExportDestination {
    ExportDestination {
        destination: "lake".into(),
        audience: "engagement_events".into(),
        tier_audiences: BTreeMap::new(),
        keys: vec![],
    }
}

fn ids(n: u32) -> Identifiers {
    Identifiers {
        id: Some(format!("u{n}")),
        email: Some(format!(" User{n}@Example.com ")),
        cio_id: Some(format!("c{n}")),
        phone: Some("(415) 555-0100".into()),
    }
}

fn event(id: &str, name: &str, n: u32, ts: Millis) -> DeliveryOp {
    let mut data = Map::new();
    if let Some((object_type, metric)) = reporting_metric(name) {
        data.insert("object_type".into(), json!(object_type));
        data.insert("metric".into(), json!(metric));
        data.insert("campaign_id".into(), json!(42));
        data.insert("delivery_id".into(), json!(format!("dlv_{id}")));
    } else {
        data.insert("total".into(), json!(150.5));
        data.insert("items".into(), json!([{"sku": "A1", "qty": 2}]));
    }
    let order = name == "order_placed";
    DeliveryOp {
        op: OpKind::Event,
        person_key: PersonKey(format!("id:u{n}")),
        ids: ids(n),
        audience: "engagement_events".into(),
        tier: None,
        attributes: Attributes::new(),
        event: Some(EventPayload {
            event_id: id.into(),
            name: name.into(),
            data,
            value: order.then_some(150.5),
            currency: order.then(|| "USD".into()),
            order_id: order.then(|| format!("ord_{id}")),
        }),
        source_ts: ts,
        intake_ts: ts + 1_500,
    }
}

fn membership_op(n: u32) -> DeliveryOp {
    DeliveryOp {
        op: OpKind::Add,
        person_key: PersonKey(format!("id:u{n}")),
        ids: ids(n),
        audience: "engagement_events".into(),
        tier: None,
        attributes: Attributes::new(),
        event: None,
        source_ts: LAST_MS,
        intake_ts: LAST_MS,
    }
}

fn setup_with(store: Arc<dyn ObjectStore>) -> (Arc<ManualClock>, WarehouseDestination) {
    let clock = Arc::new(ManualClock::new(LAST_MS + 10_000));
    let dest = WarehouseDestination::new("lake".into(), &dest_spec(), store, clock.clone());
    (clock, dest)
}

fn setup() -> (
    tempfile::TempDir,
    Arc<LocalDirStore>,
    Arc<ManualClock>,
    WarehouseDestination,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(LocalDirStore::new(dir.path()));
    let (clock, dest) = setup_with(store.clone());
    (dir, store, clock, dest)
}

async fn all_rows(store: &LocalDirStore, prefix: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    for key in store.list(prefix).await.expect("list") {
        let body = store.get(&key).await.expect("get").expect("object");
        rows.extend(decode_rows(&body).expect("gzip json lines"));
    }
    rows
}

#[tokio::test]
async fn an_event_row_carries_the_documented_schema() {
    let (_dir, store, _clock, dest) = setup();
    let out = dest
        .send(
            &export(),
            &binding(),
            &[event("ev1", "email.opened", 1, LAST_MS)],
        )
        .await
        .expect("send");
    assert_eq!(out, vec![OpOutcome::Accepted]);
    let rows = all_rows(&store, "events/").await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        row,
        &json!({
            "event_id": "ev1",
            "event_name": "email.opened",
            "event_time": "2025-12-01T23:59:59.999Z",
            "received_at": "2025-12-02T00:00:01.499Z",
            "export": "engagement",
            "audience": "engagement_events",
            "person_key": "id:u1",
            "customer_id": "u1",
            "email_sha256": sha256_hex("user1@example.com"),
            "phone_sha256": sha256_hex("+14155550100"),
            "value": null,
            "currency": null,
            "order_id": null,
            "properties": {"object_type": "email", "metric": "opened", "campaign_id": 42,
                           "delivery_id": "dlv_ev1"},
            "object_type": "email",
            "metric": "opened",
        })
    );
}

#[tokio::test]
async fn an_order_event_keeps_value_currency_and_flattens_nested_properties() {
    let (_dir, store, _clock, dest) = setup();
    dest.send(
        &export(),
        &binding(),
        &[event("o1", "order_placed", 2, LAST_MS)],
    )
    .await
    .expect("send");
    let row = all_rows(&store, "events/").await.remove(0);
    assert_eq!(row["value"], json!(150.5));
    assert_eq!(row["currency"], "USD");
    assert_eq!(row["order_id"], "ord_o1");
    assert_eq!(row["object_type"], Value::Null);
    assert_eq!(row["metric"], Value::Null);
    assert_eq!(row["properties"]["total"], json!(150.5));
    // Nested values become JSON text: every value reads as a string in Athena.
    let items = row["properties"]["items"].as_str().expect("JSON text");
    assert_eq!(
        serde_json::from_str::<Value>(items).expect("json"),
        json!([{"sku": "A1", "qty": 2}])
    );
}

#[tokio::test]
async fn parts_are_partitioned_by_the_utc_day_of_the_event_not_of_delivery() {
    let (_dir, store, _clock, dest) = setup();
    dest.send(
        &export(),
        &binding(),
        &[
            event("late", "email.opened", 1, LAST_MS),
            event("early", "email.clicked", 1, LAST_MS + 1),
        ],
    )
    .await
    .expect("send");
    let keys = store.list("").await.expect("list");
    assert_eq!(keys.len(), 2, "{keys:?}");
    let days: BTreeSet<&str> = keys
        .iter()
        .map(|k| {
            let rest = k
                .strip_prefix("events/export=engagement/dt=")
                .unwrap_or_else(|| panic!("unexpected key {k}"));
            let (day, part) = rest.split_once('/').expect("day/part");
            let digest = part
                .strip_prefix("part-")
                .and_then(|p| p.strip_suffix(".jsonl.gz"))
                .unwrap_or_else(|| panic!("unexpected part {part}"));
            assert_eq!(digest.len(), DIGEST_HEX);
            day
        })
        .collect();
    assert_eq!(days, BTreeSet::from(["2025-12-01", "2025-12-02"]));
    let rows = all_rows(&store, "events/export=engagement/dt=2025-12-02/").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["event_id"], "early");
}

#[tokio::test]
async fn a_retried_job_rewrites_its_part_byte_for_byte_whatever_it_travels_with() {
    let (_dir, store, clock, dest) = setup();
    let (a, b, c) = (
        event("a", "email.opened", 1, LAST_MS),
        event("b", "order_placed", 2, LAST_MS),
        event("c", "email.clicked", 3, LAST_MS),
    );
    dest.send(&export(), &binding(), &[a.clone(), b.clone()])
        .await
        .expect("first");
    let key_b = part_key("lake", &EventRow::from_op(&export(), &b).expect("row"));
    let first_b = store.get(&key_b).await.expect("get").expect("object");
    // Delivered again later, batched differently, in another order.
    clock.advance(std::time::Duration::from_secs(3600));
    dest.send(&export(), &binding(), &[c, b.clone()])
        .await
        .expect("again");
    dest.send(&export(), &binding(), std::slice::from_ref(&a))
        .await
        .expect("again");
    assert_eq!(store.list("").await.expect("list").len(), 3);
    assert_eq!(
        store.get(&key_b).await.expect("get").expect("object"),
        first_b
    );
    let rows = all_rows(&store, "events/").await;
    let mut ids: Vec<&str> = rows.iter().filter_map(|r| r["event_id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[tokio::test]
async fn no_object_holds_a_raw_email_or_phone() {
    let (_dir, store, _clock, dest) = setup();
    let ops: Vec<DeliveryOp> = (1..=5)
        .map(|n| event(&format!("e{n}"), "email.delivered", n, LAST_MS))
        .chain([membership_op(9)])
        .collect();
    dest.send(&export(), &binding(), &ops).await.expect("send");
    let keys = store.list("").await.expect("list");
    assert_eq!(keys.len(), 6, "{keys:?}");
    for key in keys {
        let body = store.get(&key).await.expect("get").expect("object");
        let text = if key.ends_with(".gz") {
            decode_rows(&body)
                .expect("rows")
                .iter()
                .map(Value::to_string)
                .collect::<String>()
        } else {
            String::from_utf8(body).expect("utf-8")
        };
        let lower = text.to_lowercase();
        assert!(!lower.contains("example.com"), "{key}: {text}");
        assert!(
            !text.contains("4155550100") && !text.contains("555-0100"),
            "{key}"
        );
    }
}

#[tokio::test]
async fn a_mixed_batch_keeps_outcome_order_and_membership_rows_apart() {
    let (_dir, store, _clock, dest) = setup();
    let mut no_payload = event("x", "email.opened", 4, LAST_MS);
    no_payload.event = None;
    let mut nobody = event("y", "email.opened", 5, LAST_MS);
    nobody.ids = Identifiers::default();
    let ops = [
        membership_op(1),
        event("ev", "email.opened", 2, LAST_MS),
        no_payload,
        nobody,
    ];
    let out = dest.send(&export(), &binding(), &ops).await.expect("send");
    assert_eq!(out[0], OpOutcome::Accepted);
    assert_eq!(out[1], OpOutcome::Accepted);
    assert!(matches!(&out[2], OpOutcome::Invalid { reason } if reason.contains("payload")));
    assert!(matches!(out[3], OpOutcome::Unmatched { .. }));
    assert_eq!(store.list("events/").await.expect("list").len(), 1);
    assert_eq!(
        store.list("export=engagement/").await.expect("list").len(),
        1
    );
}

/// A store whose first `fail` puts fail, retryably or not.
struct FlakyStore {
    inner: LocalDirStore,
    fail: AtomicUsize,
    permanent: bool,
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectStoreError> {
        let failing = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            let message = "injected".to_string();
            return Err(if self.permanent {
                ObjectStoreError::Permanent { message }
            } else {
                ObjectStoreError::Retryable { message }
            });
        }
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectStoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        self.inner.list(prefix).await
    }
    fn locate(&self, key: &str) -> String {
        self.inner.locate(key)
    }
}

fn flaky(dir: &tempfile::TempDir, fail: usize, permanent: bool) -> Arc<FlakyStore> {
    Arc::new(FlakyStore {
        inner: LocalDirStore::new(dir.path()),
        fail: AtomicUsize::new(fail),
        permanent,
    })
}

#[tokio::test]
async fn a_store_that_writes_nothing_fails_the_request_retryably_or_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_clock, dest) = setup_with(flaky(&dir, 10, false));
    let ops = [
        event("a", "email.opened", 1, LAST_MS),
        event("b", "email.opened", 2, LAST_MS),
    ];
    let err = dest
        .send(&export(), &binding(), &ops)
        .await
        .expect_err("whole request fails");
    assert!(err.is_retryable(), "{err}");

    let (_clock, dest) = setup_with(flaky(&dir, 10, true));
    let err = dest
        .send(&export(), &binding(), &ops)
        .await
        .expect_err("whole request fails");
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_part_that_failed_alone_is_retried_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = flaky(&dir, 1, false);
    let (_clock, dest) = setup_with(store.clone());
    let ops = [
        event("a", "email.opened", 1, LAST_MS),
        event("b", "email.opened", 2, LAST_MS),
        event("c", "email.opened", 3, LAST_MS),
    ];
    let out = dest.send(&export(), &binding(), &ops).await.expect("send");
    let retried = out
        .iter()
        .filter(|o| matches!(o, OpOutcome::Retry { .. }))
        .count();
    assert_eq!(retried, 1, "{out:?}");
    assert_eq!(out.iter().filter(|o| **o == OpOutcome::Accepted).count(), 2);
    assert_eq!(store.list("events/").await.expect("list").len(), 2);
}

#[test]
fn reporting_metrics_split_only_on_known_object_types() {
    assert_eq!(reporting_metric("email.opened"), Some(("email", "opened")));
    assert_eq!(
        reporting_metric("customer.cio_subscription_preferences_changed"),
        Some(("customer", "cio_subscription_preferences_changed"))
    );
    assert_eq!(
        reporting_metric("in_app.clicked"),
        Some(("in_app", "clicked"))
    );
    assert_eq!(reporting_metric("order_placed"), None);
    assert_eq!(reporting_metric("order.placed"), None);
    assert_eq!(reporting_metric("email."), None);
}

/// The data columns and partition columns of a `CREATE EXTERNAL TABLE`.
fn ddl_columns(ddl: &str) -> (Vec<String>, Vec<String>) {
    let names = |block: &str| -> Vec<String> {
        block
            .split(',')
            .filter_map(|col| col.split_whitespace().next())
            .map(|name| name.trim_matches('`').to_string())
            .filter(|name| !name.is_empty())
            .collect()
    };
    let open = ddl.find('(').expect("column list");
    let close = ddl.find("\n)").expect("end of column list");
    // `map<string,string>` has a comma inside: drop type parameters first.
    let mut columns = String::new();
    let mut depth = 0;
    for ch in ddl[open + 1..close].chars() {
        match ch {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ if depth > 0 => {}
            _ => columns.push(ch),
        }
    }
    let parts = ddl
        .split_once("PARTITIONED BY (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(block, _)| block)
        .expect("PARTITIONED BY");
    (names(&columns), names(parts))
}

#[test]
fn the_ddl_columns_are_exactly_the_row_keys() {
    let row = EventRow::from_op(&export(), &event("e", "email.opened", 1, LAST_MS)).expect("row");
    let keys: Vec<String> = match serde_json::to_value(&row).expect("json") {
        Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("row is not an object: {other}"),
    };
    let (columns, partitions) = ddl_columns(ATHENA_DDL);
    assert_eq!(partitions, ["export", "dt"]);
    // Every row key is a column, except `export`: the partition.
    let expected: BTreeSet<&String> = keys.iter().filter(|k| *k != "export").collect();
    assert_eq!(columns.iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(columns.len(), expected.len(), "no column twice");
    assert!(keys.iter().any(|k| k == "export"));
    // And a written row lists them in the DDL's order (properties emptied,
    // so only top-level keys are found).
    let mut top = row.clone();
    top.properties.clear();
    let line = serde_json::to_string(&top).expect("json");
    let at: Vec<usize> = columns
        .iter()
        .map(|c| line.find(&format!("\"{c}\":")).expect("key in row"))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{line}");
    assert_eq!(
        row.dt(),
        "2025-12-01",
        "dt is the day of event_time, which projection covers"
    );
}

#[test]
fn the_readme_quotes_the_ddl_and_the_row_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README");
    let section = readme
        .split_once("## The events table")
        .map(|(_, rest)| rest)
        .expect("README has a section `The events table`");
    let ddl = section
        .split_once("```sql\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block)
        .expect("a sql block");
    assert_eq!(ddl.trim(), ATHENA_DDL);
    let (columns, _) = ddl_columns(ddl);
    for column in columns.iter().chain(["export".to_string()].iter()) {
        assert!(
            section.contains(&format!("| `{column}` |")),
            "README's row schema lacks `{column}`"
        );
    }
}

#[test]
fn the_ddl_can_name_a_real_location() {
    let ddl = athena_ddl("s3://acme-lake/dataout/");
    assert!(ddl.contains("LOCATION 's3://acme-lake/dataout/events/'"));
    assert!(ddl.contains("'s3://acme-lake/dataout/events/export=${export}/dt=${dt}/'"));
    assert!(!ddl.contains(DDL_LOCATION_PLACEHOLDER));
}

#[test]
fn encoding_is_deterministic_and_round_trips() {
    let row = EventRow::from_op(&export(), &event("e", "order_placed", 1, LAST_MS)).expect("row");
    let a = encode_rows(std::slice::from_ref(&row)).expect("gzip");
    let b = encode_rows(std::slice::from_ref(&row)).expect("gzip");
    assert_eq!(a, b);
    assert_eq!(
        decode_rows(&a).expect("rows"),
        vec![serde_json::to_value(&row).expect("json")]
    );
}

#[test]
fn unusable_events_are_invalid_with_their_reason() {
    let mut op = event("e", "email.opened", 1, LAST_MS);
    op.source_ts = i64::MAX;
    assert!(EventRow::from_op(&export(), &op)
        .err()
        .is_some_and(|r| r.contains("out of range")));
    let mut op = event("", "email.opened", 1, LAST_MS);
    op.source_ts = LAST_MS;
    assert!(EventRow::from_op(&export(), &op)
        .err()
        .is_some_and(|r| r.contains("event id")));
}

#[test]
fn an_events_export_reports_its_events_table_partition_root() {
    let (dir, _store, _clock, dest) = setup();
    assert_eq!(
        dest.describe_output(&export(), &binding()),
        dir.path()
            .join("events/export=engagement/")
            .display()
            .to_string()
    );
    let mut membership = export();
    membership.mode = ExportMode::Membership;
    assert_eq!(output_prefix(&membership), None);
}
