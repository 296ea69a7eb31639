//! Counters, reconcile reports, quarantine and destination records.

use super::*;

// ---------------------------------------------------------------- counters

pub async fn counters_add_concurrently_and_sum_exactly(store: Store) {
    const CASE: &str = "counters_add_concurrently_and_sum_exactly";
    let scope = "delivery#vip#warehouse";
    let tasks = 8;
    let adds_per_task = 20;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let store = Arc::clone(&store);
        set.spawn(async move {
            for _ in 0..adds_per_task {
                store
                    .add_counters(scope, &[("sent", 1), ("accepted", 2)])
                    .await
                    .or_fail(SUITE, CASE, "add_counters");
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined {
            fail(SUITE, CASE, format!("an adding task failed: {e}"));
        }
    }
    let got = store
        .get_counters(scope)
        .await
        .or_fail(SUITE, CASE, "get_counters");
    let want = BTreeMap::from([
        ("accepted".to_string(), 2 * tasks * adds_per_task),
        ("sent".to_string(), tasks * adds_per_task),
    ]);
    if got != want {
        fail(
            SUITE,
            CASE,
            format!("counters {got:?}, expected {want:?} (lost updates?)"),
        );
    }
}

pub async fn counters_take_negative_deltas_per_scope(store: Store) {
    const CASE: &str = "counters_take_negative_deltas_per_scope";
    store
        .add_counters("delivery#vip#meta", &[("members", 5), ("sent", 3)])
        .await
        .or_fail(SUITE, CASE, "add_counters");
    store
        .add_counters("delivery#vip#meta", &[("members", -7)])
        .await
        .or_fail(SUITE, CASE, "add_counters");
    // A scope that extends another's name is its own scope.
    store
        .add_counters("delivery#vip#meta2", &[("members", 100)])
        .await
        .or_fail(SUITE, CASE, "add_counters");
    let got = store
        .get_counters("delivery#vip#meta")
        .await
        .or_fail(SUITE, CASE, "get_counters");
    let want = BTreeMap::from([("members".to_string(), -2), ("sent".to_string(), 3)]);
    if got != want {
        fail(SUITE, CASE, format!("counters {got:?}, expected {want:?}"));
    }
    let none = store
        .get_counters("intake")
        .await
        .or_fail(SUITE, CASE, "get_counters");
    if !none.is_empty() {
        fail(SUITE, CASE, format!("an unused scope holds {none:?}"));
    }
}

// ---------------------------------------------------------------- reports

pub async fn reports_latest_is_the_newest(store: Store) {
    const CASE: &str = "reports_latest_is_the_newest";
    if store
        .latest_report()
        .await
        .or_fail(SUITE, CASE, "latest_report")
        .is_some()
    {
        fail(SUITE, CASE, "a fresh store has a report");
    }
    let newer = report("rep-2", 2_000);
    store
        .put_report(&newer)
        .await
        .or_fail(SUITE, CASE, "put_report");
    store
        .put_report(&report("rep-1", 1_000))
        .await
        .or_fail(SUITE, CASE, "put_report");
    let got = store
        .latest_report()
        .await
        .or_fail(SUITE, CASE, "latest_report");
    if got.as_ref() != Some(&newer) {
        fail(
            SUITE,
            CASE,
            format!(
                "latest_report gave {:?}, expected rep-2",
                got.map(|r| r.report_id)
            ),
        );
    }
    let newest = report("rep-3", 3_000);
    store
        .put_report(&newest)
        .await
        .or_fail(SUITE, CASE, "put_report");
    let got = store
        .latest_report()
        .await
        .or_fail(SUITE, CASE, "latest_report");
    if got.as_ref() != Some(&newest) {
        fail(
            SUITE,
            CASE,
            format!(
                "latest_report gave {:?}, expected rep-3",
                got.map(|r| r.report_id)
            ),
        );
    }
    let listed: Vec<String> = store
        .list_reports(2)
        .await
        .or_fail(SUITE, CASE, "list_reports")
        .into_iter()
        .map(|r| r.report_id)
        .collect();
    if listed != ["rep-3", "rep-2"] {
        fail(
            SUITE,
            CASE,
            format!("list_reports(2) gave {listed:?}, expected rep-3, rep-2 (newest first)"),
        );
    }
}

// ---------------------------------------------------------------- quarantine

pub async fn quarantine_put_get_and_list_newest_first(store: Store) {
    const CASE: &str = "quarantine_put_get_and_list_newest_first";
    for (id, at) in [("q-2", 2_000), ("q-1", 1_000), ("q-3", 3_000)] {
        store
            .put_quarantine(&quarantine(id, at))
            .await
            .or_fail(SUITE, CASE, "put_quarantine");
    }
    let got = store
        .get_quarantine("q-1")
        .await
        .or_fail(SUITE, CASE, "get_quarantine");
    if got != Some(quarantine("q-1", 1_000)) {
        fail(SUITE, CASE, format!("get_quarantine read back {got:?}"));
    }
    if store
        .get_quarantine("q-9")
        .await
        .or_fail(SUITE, CASE, "get_quarantine")
        .is_some()
    {
        fail(SUITE, CASE, "get_quarantine found an entry never written");
    }
    // Marking an entry replayed rewrites it in place.
    let mut replayed = quarantine("q-2", 2_000);
    replayed.replayed_at = Some(5_000);
    store
        .put_quarantine(&replayed)
        .await
        .or_fail(SUITE, CASE, "put_quarantine");

    let all = store
        .list_quarantine(10)
        .await
        .or_fail(SUITE, CASE, "list_quarantine");
    let ids: Vec<&str> = all.iter().map(|q| q.id.as_str()).collect();
    if ids != ["q-3", "q-2", "q-1"] {
        fail(
            SUITE,
            CASE,
            format!("list_quarantine gave {ids:?}, expected newest first, no duplicates"),
        );
    }
    if all.get(1) != Some(&replayed) {
        fail(
            SUITE,
            CASE,
            "list_quarantine returned the entry before its update",
        );
    }
    let two = store
        .list_quarantine(2)
        .await
        .or_fail(SUITE, CASE, "list_quarantine");
    if two.len() != 2 || two.first().map(|q| q.id.as_str()) != Some("q-3") {
        fail(
            SUITE,
            CASE,
            format!("list_quarantine(2) gave {} entries", two.len()),
        );
    }
}

pub async fn destination_records_write_conditionally_and_list_by_prefix(store: Store) {
    const CASE: &str = "destination_records_write_conditionally_and_list_by_prefix";
    let job = json!({"job": "customers/1/offlineUserDataJobs/7", "ops": 3});
    let first = store
        .put_destination_record("google", "job/555", &job, None)
        .await
        .or_fail(SUITE, CASE, "put_destination_record");
    if first != (RecordWrite::Applied { version: 1 }) {
        fail(SUITE, CASE, format!("first put gave {first:?}"));
    }
    // One open job per list: a second create-if-absent loses.
    let again = store
        .put_destination_record("google", "job/555", &json!({"job": "other"}), None)
        .await
        .or_fail(SUITE, CASE, "put_destination_record");
    if again != RecordWrite::Conflict {
        fail(
            SUITE,
            CASE,
            format!("put over an existing record gave {again:?}"),
        );
    }
    let stale = store
        .put_destination_record("google", "job/555", &json!({"x": 1}), Some(9))
        .await
        .or_fail(SUITE, CASE, "put_destination_record");
    if stale != RecordWrite::Conflict {
        fail(
            SUITE,
            CASE,
            format!("put at a wrong version gave {stale:?}"),
        );
    }
    let updated = json!({"job": "customers/1/offlineUserDataJobs/7", "ops": 5});
    let second = store
        .put_destination_record("google", "job/555", &updated, Some(1))
        .await
        .or_fail(SUITE, CASE, "put_destination_record");
    if second != (RecordWrite::Applied { version: 2 }) {
        fail(
            SUITE,
            CASE,
            format!("put at the stored version gave {second:?}"),
        );
    }
    let got = store
        .get_destination_record("google", "job/555")
        .await
        .or_fail(SUITE, CASE, "get_destination_record");
    match got {
        Some(r) if r.version == 2 && r.value == updated && r.key == "job/555" => {}
        other => fail(SUITE, CASE, format!("read back {other:?}")),
    }
    for (dest, key) in [
        ("google", "req/002"),
        ("google", "req/001"),
        ("google", "reqz"),
        ("meta", "req/003"),
    ] {
        store
            .put_destination_record(dest, key, &json!({"k": key}), None)
            .await
            .or_fail(SUITE, CASE, "put_destination_record");
    }
    let listed = store
        .list_destination_records("google", "req/", 10)
        .await
        .or_fail(SUITE, CASE, "list_destination_records");
    let keys: Vec<&str> = listed.iter().map(|r| r.key.as_str()).collect();
    if keys != ["req/001", "req/002"] {
        fail(SUITE, CASE, format!("list by prefix gave {keys:?}"));
    }
    let one = store
        .list_destination_records("google", "", 1)
        .await
        .or_fail(SUITE, CASE, "list_destination_records");
    if one.len() != 1 || one[0].key != "job/555" {
        fail(SUITE, CASE, format!("list with limit 1 gave {one:?}"));
    }
    let refused = store
        .delete_destination_record("google", "job/555", 1)
        .await
        .or_fail(SUITE, CASE, "delete_destination_record");
    let deleted = store
        .delete_destination_record("google", "job/555", 2)
        .await
        .or_fail(SUITE, CASE, "delete_destination_record");
    if refused || !deleted {
        fail(
            SUITE,
            CASE,
            format!(
                "delete at a wrong version deleted={refused}, at the right one deleted={deleted}"
            ),
        );
    }
    let gone = store
        .get_destination_record("google", "job/555")
        .await
        .or_fail(SUITE, CASE, "get_destination_record");
    if gone.is_some() {
        fail(SUITE, CASE, "the record is still there after its delete");
    }
    let recreated = store
        .put_destination_record("google", "job/555", &job, None)
        .await
        .or_fail(SUITE, CASE, "put_destination_record");
    if recreated != (RecordWrite::Applied { version: 1 }) {
        fail(
            SUITE,
            CASE,
            format!("create after delete gave {recreated:?}"),
        );
    }
    let missing = store
        .delete_destination_record("google", "nothing", 1)
        .await
        .or_fail(SUITE, CASE, "delete_destination_record");
    if missing {
        fail(SUITE, CASE, "deleting a missing record said it deleted one");
    }
}
