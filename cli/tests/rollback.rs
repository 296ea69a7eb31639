//! `dataout rollback`: a held run that, once approved, leaves every
//! destination holding exactly the members of the run it restores, or none.
//! On the demo's simulators with the example's cart_abandoners: run 1, then
//! 20 people leave and 12 join the segment, run 2, then roll back to run 1.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use dataout::domain::model::RunStatus;
use dataout::pipeline::rollback;
use dataout::ports::SystemClock;
use dataout_cli::demo::SimEnv;
use dataout_cli::ops::approve_and_continue;
use dataout_sim::customerio::{CioWorkspace, SEGMENT_CART_ABANDONERS, SEGMENT_RECENT_PURCHASERS};
use dataout_sim::platform_keys::{
    clevertap_email_identity, google_email_sha256, meta_email_sha256,
};

/// The ids our state holds as members of the export.
async fn state_members(rt: &dataout::local::LocalRuntime, export: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = rt
            .deps
            .state
            .list_memberships(export, cursor, 500)
            .await
            .expect("list");
        out.extend(
            page.items
                .iter()
                .filter(|r| r.current.member)
                .filter_map(|r| r.current.ids.id.clone()),
        );
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    out
}

/// What the destinations hold for cart_abandoners, each in the platform's
/// own keys: Meta's EMAIL digests and EXTERN_IDs, CleverTap's identities
/// with the membership property set, Google's email digests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Held {
    meta_emails: BTreeSet<String>,
    meta_ids: BTreeSet<String>,
    clevertap: BTreeSet<String>,
    google_emails: BTreeSet<String>,
}

impl Held {
    fn is_empty(&self) -> bool {
        *self == Held::default()
    }
}

/// What the simulators hold.
fn held(env: &SimEnv) -> Held {
    let export = env.spec.export("cart_abandoners").expect("export");
    let meta = env
        .meta
        .members(&export.binding("meta").expect("meta").audience);
    let meta_key = |key: &str| -> BTreeSet<String> {
        meta.iter()
            .flat_map(|m| m.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()))
            .collect()
    };
    let property = &export.binding("clevertap").expect("clevertap").audience;
    let clevertap = env
        .clevertap
        .profiles()
        .into_iter()
        .filter(|p| p.data.get(property) == Some(&serde_json::Value::Bool(true)))
        .map(|p| p.key)
        .collect();
    env.google.process_now();
    let google_emails = env
        .google
        .members(
            "1234567890",
            &export.binding("google").expect("google").audience,
        )
        .iter()
        .flat_map(|m| {
            m.iter()
                .filter(|(k, _)| k == "emailAddress")
                .map(|(_, v)| v.clone())
        })
        .collect();
    Held {
        meta_emails: meta_key("EMAIL"),
        meta_ids: meta_key("EXTERN_ID"),
        clevertap,
        google_emails,
    }
}

/// What the destinations must hold when the source is `ws`, computed from
/// the Customer.io simulator's people, never from our state or snapshots:
/// cart_abandoners' segment less recent purchasers (its `suppress`), each
/// person keyed as the platform keys them (the export's identity is `id`,
/// falling back to the email; every demo person has an email; the demo's
/// Meta and Google simulators here match everyone).
fn expected(ws: &CioWorkspace) -> Held {
    let buyers = &ws.segments[&SEGMENT_RECENT_PURCHASERS].members;
    let people: Vec<_> = ws.segments[&SEGMENT_CART_ABANDONERS]
        .members
        .iter()
        .filter(|i| !buyers.contains(i))
        .map(|i| &ws.people[*i])
        .collect();
    let email = |p: &&dataout_sim::customerio::SimPerson| p.email.clone().expect("demo email");
    Held {
        meta_emails: people
            .iter()
            .map(|p| meta_email_sha256(&email(p)))
            .collect(),
        meta_ids: people.iter().filter_map(|p| p.id.clone()).collect(),
        clevertap: people
            .iter()
            .map(|p| {
                p.id.clone()
                    .unwrap_or_else(|| clevertap_email_identity(&email(p)))
            })
            .collect(),
        google_emails: people
            .iter()
            .map(|p| google_email_sha256(&email(p)))
            .collect(),
    }
}

/// Members of cart_abandoners in the source `ws` (suppression applied).
fn source_count(ws: &CioWorkspace) -> u64 {
    expected(ws).clevertap.len() as u64
}

/// The demo's simulators (1,200 people) and a local runtime with its
/// delivery workers running.
async fn started() -> (
    tempfile::TempDir,
    SimEnv,
    Arc<dataout::local::LocalRuntime>,
    dataout::customerio::app_api::AppApiClient,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = SimEnv::start(1200, &dir.path().join("warehouse"))
        .await
        .expect("simulators");
    let rt = Arc::new(
        env.runtime(&dir.path().join("state"), Arc::new(SystemClock))
            .expect("runtime"),
    );
    rt.start_workers().await.expect("workers");
    let source = env.source().expect("source");
    (dir, env, rt, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_a_run_leaves_every_simulator_holding_exactly_its_members() {
    let (_dir, env, rt, source) = started().await;
    let idle = || async {
        assert!(rt.wait_idle(Duration::from_secs(60)).await.expect("idle"));
    };

    let run1 = rt
        .run_batch(&source, "cart_abandoners")
        .await
        .expect("run 1");
    assert_eq!(run1.status, RunStatus::Finished, "{:?}", run1.status);
    idle().await;
    // The source as run 1 read it: what a rollback to run 1 must restore.
    let ws = env.cio.handle.snapshot();
    let source1 = expected(&ws);
    assert!(source1.meta_ids.len() > 60, "{}", source1.meta_ids.len());
    assert_eq!(held(&env), source1, "after run 1");

    // 20 leave the segment, 12 who are not buyers join it.
    let segment = &ws.segments[&SEGMENT_CART_ABANDONERS].members;
    let buyers = &ws.segments[&SEGMENT_RECENT_PURCHASERS].members;
    let leaving: Vec<usize> = segment.iter().copied().take(20).collect();
    let joining: Vec<usize> = (0..ws.people.len())
        .filter(|i| !segment.contains(i) && !buyers.contains(i) && ws.people[*i].id.is_some())
        .take(12)
        .collect();
    for i in &leaving {
        env.cio.handle.remove_member(SEGMENT_CART_ABANDONERS, *i);
    }
    for i in &joining {
        env.cio.handle.add_member(SEGMENT_CART_ABANDONERS, *i);
    }
    let run2 = rt
        .run_batch(&source, "cart_abandoners")
        .await
        .expect("run 2");
    assert_eq!(run2.status, RunStatus::Finished, "{:?}", run2.status);
    assert_eq!(
        (run2.stats.adds, run2.stats.removes),
        (12, 20),
        "{:?}",
        run2.stats
    );
    idle().await;
    let source2 = expected(&env.cio.handle.snapshot());
    assert_ne!(source2, source1);
    assert_eq!(held(&env), source2, "after run 2");

    // Someone adds a person to the Meta audience by hand, outside the
    // bundle: only a full replace takes them out again.
    let meta_audience = env
        .spec
        .export("cart_abandoners")
        .and_then(|e| e.binding("meta"))
        .map(|b| b.audience.clone())
        .expect("meta audience");
    let stray = reqwest::Client::new()
        .post(format!(
            "{}/v27.0/{meta_audience}/users",
            env.meta_server.base_url
        ))
        .bearer_auth(dataout_sim::meta::DEFAULT_ACCESS_TOKEN)
        .json(
            &serde_json::json!({"payload": {"schema": ["EXTERN_ID"], "data": [["stray_by_hand"]]}}),
        )
        .send()
        .await
        .expect("stray add");
    assert!(stray.status().is_success(), "{:?}", stray.text().await);
    assert!(held(&env).meta_ids.contains("stray_by_hand"));

    // The rollback is held until approved, and changes nothing before.
    let held_run = rollback::prepare(&rt.deps, "cart_abandoners", Some(&run1.run_id), None)
        .await
        .expect("prepare");
    assert!(
        matches!(&held_run.status, RunStatus::Held { reason } if reason.contains(&run1.run_id)),
        "{:?}",
        held_run.status
    );
    idle().await;
    let mut source2_stray = source2.clone();
    source2_stray.meta_ids.insert("stray_by_hand".into());
    assert_eq!(held(&env), source2_stray, "a held rollback sent something");

    let done = approve_and_continue(&rt.deps, &held_run.run_id, true)
        .await
        .expect("approve");
    assert_eq!(done.status, RunStatus::Finished, "{:?}", done.status);
    assert_eq!(
        (done.stats.adds, done.stats.removes),
        (20, 12),
        "{:?}",
        done.stats
    );
    idle().await;
    assert_eq!(
        state_members(&rt, "cart_abandoners").await,
        source1.meta_ids,
        "state"
    );
    // Every destination holds exactly run 1's source, the stray gone.
    let now = held(&env);
    assert_eq!(
        (&now.meta_emails, &now.meta_ids),
        (&source1.meta_emails, &source1.meta_ids),
        "Meta"
    );
    assert_eq!(now.clevertap, source1.clevertap, "CleverTap");
    assert_eq!(now.google_emails, source1.google_emails, "Google");
    // Meta and Google got their full-replace calls; CleverTap the diff.
    assert!(
        env.meta
            .requests()
            .iter()
            .any(|r| r.path.ends_with(&format!("{meta_audience}/usersreplace"))),
        "no usersreplace"
    );
    assert!(
        env.google
            .requests()
            .iter()
            .any(|r| r.path.contains("audienceMembers:removeAll")),
        "no removeAll"
    );
    // Reconciliation's delivered count follows the replace.
    let report = rt.reconcile(None).await.expect("reconcile");
    let meta_row = report
        .rows
        .iter()
        .find(|r| r.export == "cart_abandoners" && r.destination == "meta")
        .expect("meta row");
    assert_eq!(
        (meta_row.delivered_members, meta_row.state_count),
        (source_count(&ws) as i64, source_count(&ws)),
        "{meta_row:?}"
    );

    // Without a target: everything we added is taken out again (people
    // known by email only included).
    // State holds run 1's members again, people known by email only too.
    let held_now = source_count(&ws);
    let empty = rollback::prepare(&rt.deps, "cart_abandoners", None, None)
        .await
        .expect("prepare");
    let done = approve_and_continue(&rt.deps, &empty.run_id, true)
        .await
        .expect("approve");
    assert_eq!(done.stats.removes, held_now, "{:?}", done.stats);
    idle().await;
    assert_eq!(
        rt.deps
            .state
            .count_members("cart_abandoners")
            .await
            .expect("count"),
        0
    );
    let now = held(&env);
    assert!(now.is_empty(), "{now:?}");

    // Only the newest three finished runs keep their members: three runs
    // later, run 1 can no longer be restored, and says why.
    for _ in 0..3 {
        let r = rt.run_batch(&source, "cart_abandoners").await.expect("run");
        assert_eq!(r.status, RunStatus::Finished, "{:?}", r.status);
    }
    let err = rollback::prepare(&rt.deps, "cart_abandoners", Some(&run1.run_id), None)
        .await
        .expect_err("too old");
    assert!(err.to_string().contains("kept no snapshot"), "{err}");
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_one_destination_restores_it_alone_until_the_next_run_resyncs_it() {
    let (_dir, env, rt, source) = started().await;
    let idle = || async {
        assert!(rt.wait_idle(Duration::from_secs(60)).await.expect("idle"));
    };
    let export = "cart_abandoners";

    let run1 = rt.run_batch(&source, export).await.expect("run 1");
    assert_eq!(run1.status, RunStatus::Finished, "{:?}", run1.status);
    idle().await;
    // The source as run 1 read it.
    let ws = env.cio.handle.snapshot();
    let source1 = expected(&ws);
    let count1 = source_count(&ws);
    assert_eq!(held(&env), source1, "after run 1");
    let segment = &ws.segments[&SEGMENT_CART_ABANDONERS].members;
    let buyers = &ws.segments[&SEGMENT_RECENT_PURCHASERS].members;
    let leaving: Vec<usize> = segment.iter().copied().take(15).collect();
    let joining: Vec<usize> = (0..ws.people.len())
        .filter(|i| !segment.contains(i) && !buyers.contains(i) && ws.people[*i].id.is_some())
        .take(9)
        .collect();
    for i in &leaving {
        env.cio.handle.remove_member(SEGMENT_CART_ABANDONERS, *i);
    }
    for i in &joining {
        env.cio.handle.add_member(SEGMENT_CART_ABANDONERS, *i);
    }
    let run2 = rt.run_batch(&source, export).await.expect("run 2");
    assert_eq!(
        (run2.stats.adds, run2.stats.removes),
        (9, 15),
        "{:?}",
        run2.stats
    );
    idle().await;
    let ws2 = env.cio.handle.snapshot();
    let source2 = expected(&ws2);
    let count2 = source_count(&ws2);
    assert_eq!(held(&env), source2, "after run 2");
    assert_ne!(source1, source2);

    // CleverTap has no full-replace call: refused, saying why.
    let err = rollback::prepare(&rt.deps, export, Some(&run1.run_id), Some("clevertap"))
        .await
        .expect_err("clevertap alone");
    assert!(err.to_string().contains("no full-replace call"), "{err}");
    let err = rollback::prepare(&rt.deps, export, Some(&run1.run_id), Some("nowhere"))
        .await
        .expect_err("unknown destination");
    assert!(
        err.to_string().contains("does not send to `nowhere`"),
        "{err}"
    );

    let prepared = rollback::prepare(&rt.deps, export, Some(&run1.run_id), Some("meta"))
        .await
        .expect("prepare");
    assert!(
        matches!(&prepared.status, RunStatus::Held { reason } if reason.contains("destination `meta`")),
        "{:?}",
        prepared.status
    );
    idle().await;
    assert_eq!(held(&env), source2, "a held rollback sent something");
    let done = approve_and_continue(&rt.deps, &prepared.run_id, true)
        .await
        .expect("approve");
    assert_eq!(done.status, RunStatus::Finished, "{:?}", done.status);
    idle().await;
    // Meta holds run 1's members; state and the other destinations stay.
    let now = held(&env);
    assert_eq!(
        (&now.meta_emails, &now.meta_ids),
        (&source1.meta_emails, &source1.meta_ids),
        "Meta"
    );
    assert_eq!(now.clevertap, source2.clevertap, "CleverTap moved");
    assert_eq!(now.google_emails, source2.google_emails, "Google moved");
    assert_eq!(
        state_members(&rt, export).await,
        source2.meta_ids,
        "state moved"
    );
    // Reconciliation shows Meta out of step with state, as it is.
    let report = rt.reconcile(None).await.expect("reconcile");
    let row = |dest: &str| {
        report
            .rows
            .iter()
            .find(|r| r.export == export && r.destination == dest)
            .cloned()
            .expect("row")
    };
    assert_eq!(row("meta").delivered_members, count1 as i64);
    assert_eq!(row("meta").state_count, count2);
    // The rollback run itself cannot be restored: it restored one place.
    let err = rollback::prepare(&rt.deps, export, Some(&done.run_id), None)
        .await
        .expect_err("one-destination run as target");
    assert!(
        err.to_string().contains("restored one destination only"),
        "{err}"
    );

    // The next batch run, with nothing changed at the source, brings Meta
    // back to state with a full replace.
    let replaces_before = env
        .meta
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/usersreplace"))
        .count();
    let run3 = rt.run_batch(&source, export).await.expect("run 3");
    assert_eq!(
        (run3.stats.adds, run3.stats.removes),
        (0, 0),
        "{:?}",
        run3.stats
    );
    idle().await;
    assert_eq!(held(&env), source2, "Meta not re-synced");
    assert!(
        env.meta
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/usersreplace"))
            .count()
            > replaces_before
    );
    let report = rt.reconcile(None).await.expect("reconcile");
    let meta_row = report
        .rows
        .iter()
        .find(|r| r.export == export && r.destination == "meta")
        .expect("meta row");
    assert_eq!(meta_row.delivered_members, count2 as i64);

    // Emptying one destination: Meta loses everyone, state keeps them,
    // and the run after puts them back.
    let empty = rollback::prepare(&rt.deps, export, None, Some("meta"))
        .await
        .expect("prepare empty");
    let done = approve_and_continue(&rt.deps, &empty.run_id, true)
        .await
        .expect("approve");
    assert_eq!(done.stats.removes, count2, "{:?}", done.stats);
    idle().await;
    let now = held(&env);
    assert!(
        now.meta_emails.is_empty() && now.meta_ids.is_empty(),
        "{} left at Meta",
        now.meta_emails.len()
    );
    assert_eq!(now.clevertap, source2.clevertap);
    assert_eq!(now.google_emails, source2.google_emails);
    assert_eq!(state_members(&rt, export).await, source2.meta_ids);
    let run4 = rt.run_batch(&source, export).await.expect("run 4");
    assert_eq!(run4.status, RunStatus::Finished, "{:?}", run4.status);
    idle().await;
    assert_eq!(held(&env), source2, "Meta not re-synced after emptying");
    rt.shutdown().await;
}
