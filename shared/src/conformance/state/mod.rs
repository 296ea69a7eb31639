//! The state store suite. Time never passes by sleeping: idempotency cases
//! move `now` by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use serde_json::json;

use super::{fail, OrFail};
use crate::domain::model::{
    Attributes, ChangeOrigin, Identifiers, MembershipRecord, MembershipSnapshot, Millis, Person,
    PersonKey, QuarantineEntry, ReconcileReport, ReconcileRow, RunCheckpoint, RunKind, RunRecord,
    RunStats, RunStatus,
};
use crate::ports::{IdempotencyStart, MembershipWrite, RecordWrite, StateStore};

const SUITE: &str = "state";

type Store = Arc<dyn StateStore>;

/// Run every case, each on a store from `fresh`.
pub async fn run<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn StateStore>>,
{
    membership_insert_then_get(fresh().await).await;
    membership_newer_change_wins(fresh().await).await;
    membership_older_change_is_refused_as_stale(fresh().await).await;
    membership_same_change_reapplied_is_applied(fresh().await).await;
    membership_other_change_at_same_time_is_stale(fresh().await).await;
    membership_list_pages_through_every_record(fresh().await).await;
    count_members_counts_members_only(fresh().await).await;
    exports_are_isolated(fresh().await).await;
    staging_overwrites_pages_and_clears(fresh().await).await;
    runs_put_get_update_and_list_newest_first(fresh().await).await;
    claims::idempotency_lifecycle(fresh().await).await;
    claims::idempotency_in_progress_past_its_deadline_is_taken_over(fresh().await).await;
    claims::settled_jobs_and_their_counters_land_together(fresh().await).await;
    claims::partial_progress_is_handed_to_the_next_claim_and_survives_release(fresh().await).await;
    claims::a_settle_under_a_claim_taken_over_since_counts_nothing(fresh().await).await;
    claims::memberships_read_together_in_the_order_asked(fresh().await).await;
    records::counters_add_concurrently_and_sum_exactly(fresh().await).await;
    records::counters_take_negative_deltas_per_scope(fresh().await).await;
    records::reports_latest_is_the_newest(fresh().await).await;
    records::quarantine_put_get_and_list_newest_first(fresh().await).await;
    records::destination_records_write_conditionally_and_list_by_prefix(fresh().await).await;
}

pub mod claims;
pub mod records;

// ---------------------------------------------------------------- fixtures

fn key(n: usize) -> PersonKey {
    PersonKey(format!("id:user-{n:04}"))
}

fn record(
    export: &str,
    person: &PersonKey,
    member: bool,
    source_ts: Millis,
    change_id: &str,
) -> MembershipRecord {
    let mut attributes = Attributes::new();
    attributes.insert("plan".into(), json!("pro"));
    attributes.insert("ltv".into(), json!(120));
    MembershipRecord {
        export: export.to_string(),
        person_key: person.clone(),
        current: MembershipSnapshot {
            member,
            tiers: BTreeSet::from(["gold".to_string()]),
            ids: Identifiers {
                id: Some(person.as_str().trim_start_matches("id:").to_string()),
                email: Some("someone@example.com".into()),
                cio_id: None,
                phone: None,
            },
            attributes,
        },
        previous: Some(MembershipSnapshot::default()),
        source_ts,
        intake_ts: source_ts + 5,
        entered_at: member.then_some(source_ts),
        change_id: change_id.to_string(),
        origin: ChangeOrigin::Action,
    }
}

fn person(n: usize, plan: &str) -> Person {
    let mut attributes = Attributes::new();
    attributes.insert("plan".into(), json!(plan));
    Person {
        ids: Identifiers {
            id: Some(format!("user-{n:04}")),
            ..Identifiers::default()
        },
        attributes,
    }
}

fn run_record(run_id: &str, export: &str, started_at: Millis) -> RunRecord {
    RunRecord {
        run_id: run_id.to_string(),
        export: export.to_string(),
        kind: RunKind::Batch,
        status: RunStatus::Running,
        config_hash: "cfg-1".into(),
        started_at,
        finished_at: None,
        checkpoint: RunCheckpoint::default(),
        stats: RunStats::default(),
    }
}

fn quarantine(id: &str, received_at: Millis) -> QuarantineEntry {
    QuarantineEntry {
        id: id.to_string(),
        received_at,
        route: "/webhooks/reporting".into(),
        reason: "unknown metric".into(),
        body_b64: "eyJhIjoxfQ==".into(),
        headers: BTreeMap::from([("x-cio-timestamp".to_string(), "1700000000".to_string())]),
        replayed_at: None,
    }
}

fn report(id: &str, generated_at: Millis) -> ReconcileReport {
    ReconcileReport {
        report_id: id.to_string(),
        generated_at,
        config_hash: "cfg-1".into(),
        rows: vec![ReconcileRow {
            invalid: 0,
            repairs: 0,
            events: false,
            export: "vip".into(),
            destination: "warehouse".into(),
            source_count: Some(10),
            state_count: 10,
            delivered_members: 9,
            destination_count: None,
            sent: 12,
            accepted: 11,
            rejected: 1,
            unmatched: 0,
            match_rate: Some(0.5),
            drift_source_state: Some(0),
            drift_state_delivered: -1,
            latency_p50_ms: Some(250),
            latency_p95_ms: Some(1000),
            output: "/tmp/out".into(),
            alarm: false,
            check: Default::default(),
        }],
    }
}

// ---------------------------------------------------------------- membership

pub async fn membership_insert_then_get(store: Store) {
    const CASE: &str = "membership_insert_then_get";
    let p = key(1);
    let got = store
        .get_membership("vip", &p)
        .await
        .or_fail(SUITE, CASE, "get_membership");
    if got.is_some() {
        fail(SUITE, CASE, "a fresh store returned a record");
    }
    let rec = record("vip", &p, true, 1_000, "evt-1");
    let w = store
        .put_membership(&rec)
        .await
        .or_fail(SUITE, CASE, "put_membership");
    if w != MembershipWrite::Applied {
        fail(
            SUITE,
            CASE,
            format!("first write was {w:?}, expected Applied"),
        );
    }
    let got = store
        .get_membership("vip", &p)
        .await
        .or_fail(SUITE, CASE, "get_membership");
    if got.as_ref() != Some(&rec) {
        fail(SUITE, CASE, format!("read back {got:?}, expected {rec:?}"));
    }
}

pub async fn membership_newer_change_wins(store: Store) {
    const CASE: &str = "membership_newer_change_wins";
    let p = key(1);
    store
        .put_membership(&record("vip", &p, true, 1_000, "evt-1"))
        .await
        .or_fail(SUITE, CASE, "put_membership");
    let newer = record("vip", &p, false, 2_000, "evt-2");
    let w = store
        .put_membership(&newer)
        .await
        .or_fail(SUITE, CASE, "put_membership");
    if w != MembershipWrite::Applied {
        fail(
            SUITE,
            CASE,
            format!("newer write was {w:?}, expected Applied"),
        );
    }
    let got = store
        .get_membership("vip", &p)
        .await
        .or_fail(SUITE, CASE, "get_membership");
    if got.as_ref() != Some(&newer) {
        fail(
            SUITE,
            CASE,
            format!("stored {got:?}, expected the newer record"),
        );
    }
}

pub async fn membership_older_change_is_refused_as_stale(store: Store) {
    const CASE: &str = "membership_older_change_is_refused_as_stale";
    let p = key(1);
    let newer = record("vip", &p, true, 2_000, "evt-2");
    store
        .put_membership(&newer)
        .await
        .or_fail(SUITE, CASE, "put_membership");
    let older = record("vip", &p, false, 1_000, "evt-1");
    let w = store
        .put_membership(&older)
        .await
        .or_fail(SUITE, CASE, "put_membership");
    match w {
        MembershipWrite::Stale { current } if *current == newer => {}
        other => fail(
            SUITE,
            CASE,
            format!("older write gave {other:?}, expected Stale carrying the stored record"),
        ),
    }
    let got = store
        .get_membership("vip", &p)
        .await
        .or_fail(SUITE, CASE, "get_membership");
    if got.as_ref() != Some(&newer) {
        fail(SUITE, CASE, "an older change overwrote a newer one");
    }
}

pub async fn membership_same_change_reapplied_is_applied(store: Store) {
    const CASE: &str = "membership_same_change_reapplied_is_applied";
    let p = key(1);
    let rec = record("vip", &p, true, 1_000, "evt-1");
    store
        .put_membership(&rec)
        .await
        .or_fail(SUITE, CASE, "put_membership");
    let w = store
        .put_membership(&rec)
        .await
        .or_fail(SUITE, CASE, "put_membership");
    if w != MembershipWrite::Applied {
        fail(
            SUITE,
            CASE,
            format!("re-applying the same change gave {w:?}, expected Applied"),
        );
    }
    let n = store
        .count_members("vip")
        .await
        .or_fail(SUITE, CASE, "count_members");
    if n != 1 {
        fail(
            SUITE,
            CASE,
            format!("count_members is {n} after re-applying, expected 1"),
        );
    }
}

pub async fn membership_other_change_at_same_time_is_stale(store: Store) {
    const CASE: &str = "membership_other_change_at_same_time_is_stale";
    let p = key(1);
    let first = record("vip", &p, true, 1_000, "evt-1");
    store
        .put_membership(&first)
        .await
        .or_fail(SUITE, CASE, "put_membership");
    let rival = record("vip", &p, false, 1_000, "evt-other");
    let w = store
        .put_membership(&rival)
        .await
        .or_fail(SUITE, CASE, "put_membership");
    if !matches!(&w, MembershipWrite::Stale { current } if **current == first) {
        fail(
            SUITE,
            CASE,
            format!("a different change with the same source_ts gave {w:?}, expected Stale"),
        );
    }
}

pub async fn membership_list_pages_through_every_record(store: Store) {
    const CASE: &str = "membership_list_pages_through_every_record";
    let total = 25;
    // Written out of order; listed in key order.
    for n in (0..total).rev() {
        store
            .put_membership(&record(
                "vip",
                &key(n),
                n % 2 == 0,
                1_000 + n as i64,
                "run-1",
            ))
            .await
            .or_fail(SUITE, CASE, "put_membership");
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_memberships("vip", cursor.clone(), 10)
            .await
            .or_fail(SUITE, CASE, "list_memberships");
        pages += 1;
        if page.items.len() > 10 {
            fail(
                SUITE,
                CASE,
                format!("a page of limit 10 held {} records", page.items.len()),
            );
        }
        seen.extend(page.items.into_iter().map(|r| r.person_key));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        if pages > total {
            fail(SUITE, CASE, "paging did not end");
        }
    }
    let expected: Vec<PersonKey> = (0..total).map(key).collect();
    if seen != expected {
        fail(
            SUITE,
            CASE,
            format!(
                "listed {} records {seen:?}, expected {total} in key order",
                seen.len()
            ),
        );
    }
    if pages < 3 {
        fail(
            SUITE,
            CASE,
            format!("25 records at 10 a page came in {pages} pages"),
        );
    }
}

pub async fn count_members_counts_members_only(store: Store) {
    const CASE: &str = "count_members_counts_members_only";
    for n in 0..6 {
        store
            .put_membership(&record("vip", &key(n), n < 4, 1_000, "evt-1"))
            .await
            .or_fail(SUITE, CASE, "put_membership");
    }
    let n = store
        .count_members("vip")
        .await
        .or_fail(SUITE, CASE, "count_members");
    if n != 4 {
        fail(
            SUITE,
            CASE,
            format!("count_members is {n}, expected 4 of 6 records"),
        );
    }
    // One member leaves, one former member comes back, one leaves twice.
    for (k, member, ts) in [
        (0, false, 2_000),
        (5, true, 2_000),
        (1, false, 2_000),
        (1, false, 3_000),
    ] {
        store
            .put_membership(&record("vip", &key(k), member, ts, &format!("evt-{ts}")))
            .await
            .or_fail(SUITE, CASE, "put_membership");
    }
    let n = store
        .count_members("vip")
        .await
        .or_fail(SUITE, CASE, "count_members");
    if n != 3 {
        fail(
            SUITE,
            CASE,
            format!("count_members is {n} after exits and a return, expected 3"),
        );
    }
    let n = store
        .count_members("nobody")
        .await
        .or_fail(SUITE, CASE, "count_members");
    if n != 0 {
        fail(SUITE, CASE, format!("an unknown export counts {n} members"));
    }
}

pub async fn exports_are_isolated(store: Store) {
    const CASE: &str = "exports_are_isolated";
    let p = key(1);
    store
        .put_membership(&record("vip", &p, true, 5_000, "evt-5"))
        .await
        .or_fail(SUITE, CASE, "put_membership");
    // Older than vip's record, but another export: no conflict.
    let w = store
        .put_membership(&record("churn", &p, true, 1_000, "evt-1"))
        .await
        .or_fail(SUITE, CASE, "put_membership");
    if w != MembershipWrite::Applied {
        fail(SUITE, CASE, format!("a write to another export gave {w:?}"));
    }
    store
        .put_membership(&record("churn", &key(2), true, 1_000, "evt-1"))
        .await
        .or_fail(SUITE, CASE, "put_membership");
    // A name that is a prefix of another must not see its records.
    store
        .put_membership(&record("vip-eu", &key(3), true, 1_000, "evt-1"))
        .await
        .or_fail(SUITE, CASE, "put_membership");
    let vip =
        store
            .list_memberships("vip", None, 100)
            .await
            .or_fail(SUITE, CASE, "list_memberships");
    if vip.items.len() != 1 || vip.items.iter().any(|r| r.export != "vip") {
        fail(SUITE, CASE, format!("export vip lists {:?}", vip.items));
    }
    let churn = store
        .count_members("churn")
        .await
        .or_fail(SUITE, CASE, "count_members");
    let vip_n = store
        .count_members("vip")
        .await
        .or_fail(SUITE, CASE, "count_members");
    if (churn, vip_n) != (2, 1) {
        fail(
            SUITE,
            CASE,
            format!("counts churn={churn} vip={vip_n}, expected 2 and 1"),
        );
    }
    let got = store
        .get_membership("churn", &p)
        .await
        .or_fail(SUITE, CASE, "get_membership");
    if got.map(|r| r.source_ts) != Some(1_000) {
        fail(SUITE, CASE, "get_membership read another export's record");
    }
}

// ---------------------------------------------------------------- staging

pub async fn staging_overwrites_pages_and_clears(store: Store) {
    const CASE: &str = "staging_overwrites_pages_and_clears";
    let first: Vec<(PersonKey, Person)> = (0..15).map(|n| (key(n), person(n, "free"))).collect();
    store
        .stage_people("run-a", &first)
        .await
        .or_fail(SUITE, CASE, "stage_people");
    // Re-staging overwrites; another run is kept apart.
    let again: Vec<(PersonKey, Person)> = (10..22).map(|n| (key(n), person(n, "pro"))).collect();
    store
        .stage_people("run-a", &again)
        .await
        .or_fail(SUITE, CASE, "stage_people");
    store
        .stage_people("run-b", &[(key(99), person(99, "free"))])
        .await
        .or_fail(SUITE, CASE, "stage_people");

    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page =
            store
                .list_staged("run-a", cursor.clone(), 7)
                .await
                .or_fail(SUITE, CASE, "list_staged");
        if page.items.len() > 7 {
            fail(
                SUITE,
                CASE,
                format!("a page of limit 7 held {}", page.items.len()),
            );
        }
        seen.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    if cursor.is_some() {
        fail(SUITE, CASE, "paging did not end");
    }
    let keys: Vec<PersonKey> = seen.iter().map(|(k, _)| k.clone()).collect();
    let expected: Vec<PersonKey> = (0..22).map(key).collect();
    if keys != expected {
        fail(
            SUITE,
            CASE,
            format!("staged keys {keys:?}, expected 22 distinct in key order"),
        );
    }
    for (k, p) in &seen {
        let n: usize = k
            .as_str()
            .trim_start_matches("id:user-")
            .parse()
            .unwrap_or(usize::MAX);
        let want = if n >= 10 {
            person(n, "pro")
        } else {
            person(n, "free")
        };
        if *p != want {
            fail(
                SUITE,
                CASE,
                format!("staged {k} is {p:?}, expected {want:?}"),
            );
        }
    }

    store
        .clear_staged("run-a")
        .await
        .or_fail(SUITE, CASE, "clear_staged");
    let page = store
        .list_staged("run-a", None, 100)
        .await
        .or_fail(SUITE, CASE, "list_staged");
    if !page.items.is_empty() || page.next.is_some() {
        fail(
            SUITE,
            CASE,
            format!("{} people still staged after clear", page.items.len()),
        );
    }
    let other = store
        .list_staged("run-b", None, 100)
        .await
        .or_fail(SUITE, CASE, "list_staged");
    if other.items.len() != 1 {
        fail(SUITE, CASE, "clearing one run cleared another");
    }
}

// ---------------------------------------------------------------- runs

pub async fn runs_put_get_update_and_list_newest_first(store: Store) {
    const CASE: &str = "runs_put_get_update_and_list_newest_first";
    for (id, at) in [("run-2", 2_000), ("run-1", 1_000), ("run-3", 3_000)] {
        store
            .put_run(&run_record(id, "vip", at))
            .await
            .or_fail(SUITE, CASE, "put_run");
    }
    store
        .put_run(&run_record("run-x", "churn", 9_000))
        .await
        .or_fail(SUITE, CASE, "put_run");
    let got = store.get_run("run-2").await.or_fail(SUITE, CASE, "get_run");
    if got != Some(run_record("run-2", "vip", 2_000)) {
        fail(SUITE, CASE, format!("get_run read back {got:?}"));
    }
    if store
        .get_run("missing")
        .await
        .or_fail(SUITE, CASE, "get_run")
        .is_some()
    {
        fail(SUITE, CASE, "get_run found a run never written");
    }

    let mut updated = run_record("run-2", "vip", 2_000);
    updated.status = RunStatus::Held {
        reason: "churn 40% over 10%".into(),
    };
    updated.checkpoint.source_cursor = Some("page-7".into());
    updated.stats.adds = 12;
    updated.finished_at = Some(2_500);
    store
        .put_run(&updated)
        .await
        .or_fail(SUITE, CASE, "put_run");
    let got = store.get_run("run-2").await.or_fail(SUITE, CASE, "get_run");
    if got.as_ref() != Some(&updated) {
        fail(SUITE, CASE, format!("update not read back: {got:?}"));
    }

    let runs = store
        .list_runs("vip", 10)
        .await
        .or_fail(SUITE, CASE, "list_runs");
    let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    if ids != ["run-3", "run-2", "run-1"] {
        fail(
            SUITE,
            CASE,
            format!("list_runs gave {ids:?}, expected newest first, no duplicates"),
        );
    }
    if runs.get(1) != Some(&updated) {
        fail(SUITE, CASE, "list_runs returned the run before its update");
    }
    let two = store
        .list_runs("vip", 2)
        .await
        .or_fail(SUITE, CASE, "list_runs");
    let ids: Vec<&str> = two.iter().map(|r| r.run_id.as_str()).collect();
    if ids != ["run-3", "run-2"] {
        fail(SUITE, CASE, format!("list_runs(limit 2) gave {ids:?}"));
    }
}
