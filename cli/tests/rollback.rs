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
use dataout_sim::customerio::{SEGMENT_CART_ABANDONERS, SEGMENT_RECENT_PURCHASERS};

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

/// What each simulator holds for the export, as person ids (Meta's
/// EXTERN_ID, CleverTap's identity with the membership property set) and
/// Google's member count.
fn held(env: &SimEnv) -> (BTreeSet<String>, BTreeSet<String>, usize) {
    let export = env.spec.export("cart_abandoners").expect("export");
    let meta: BTreeSet<String> = env
        .meta
        .members(&export.binding("meta").expect("meta").audience)
        .iter()
        .filter_map(|m| {
            m.iter()
                .find(|(k, _)| k == "EXTERN_ID")
                .map(|(_, v)| v.clone())
        })
        .collect();
    let property = &export.binding("clevertap").expect("clevertap").audience;
    let clevertap: BTreeSet<String> = env
        .clevertap
        .profiles()
        .into_iter()
        .filter(|p| p.data.get(property) == Some(&serde_json::Value::Bool(true)))
        .map(|p| p.key)
        .collect();
    env.google.process_now();
    let google = env.google.member_count(
        "1234567890",
        &export.binding("google").expect("google").audience,
    );
    (meta, clevertap, google)
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
    let members1 = state_members(&rt, "cart_abandoners").await;
    assert!(members1.len() > 60, "{}", members1.len());
    let (meta1, clevertap1, google1) = held(&env);
    assert_eq!(meta1, members1);

    // 20 leave the segment, 12 who are not buyers join it.
    let ws = env.cio.handle.snapshot();
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
    let (meta2, _, _) = held(&env);
    assert_ne!(meta2, members1);

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
    assert!(held(&env).0.contains("stray_by_hand"));

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
    let mut meta2_stray = meta2.clone();
    meta2_stray.insert("stray_by_hand".into());
    assert_eq!(held(&env).0, meta2_stray, "a held rollback sent something");

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
    assert_eq!(state_members(&rt, "cart_abandoners").await, members1);
    let (meta, clevertap, google) = held(&env);
    assert_eq!(meta, members1, "Meta");
    assert_eq!(clevertap, clevertap1, "CleverTap");
    assert_eq!(google, google1, "Google");
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
        meta_row.delivered_members, meta_row.state_count as i64,
        "{meta_row:?}"
    );

    // Without a target: everything we added is taken out again (people
    // known by email only included).
    let held_now = rt
        .deps
        .state
        .count_members("cart_abandoners")
        .await
        .expect("count");
    assert!(held_now as usize >= members1.len());
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
    let (meta, clevertap, google) = held(&env);
    assert!(
        meta.is_empty() && clevertap.is_empty(),
        "{meta:?} {clevertap:?}"
    );
    assert_eq!(google, 0);

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
    let members1 = state_members(&rt, export).await;
    // Members known by email only are in the counts, not in the id sets.
    let count1 = rt.deps.state.count_members(export).await.expect("count");
    let ws = env.cio.handle.snapshot();
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
    let members2 = state_members(&rt, export).await;
    let count2 = rt.deps.state.count_members(export).await.expect("count");
    let (meta2, clevertap2, google2) = held(&env);
    assert_eq!(meta2, members2);
    assert_ne!(members1, members2);

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
    assert_eq!(held(&env).0, meta2, "a held rollback sent something");
    let done = approve_and_continue(&rt.deps, &prepared.run_id, true)
        .await
        .expect("approve");
    assert_eq!(done.status, RunStatus::Finished, "{:?}", done.status);
    idle().await;
    // Meta holds run 1's members; state and the other destinations stay.
    let (meta, clevertap, google) = held(&env);
    assert_eq!(meta, members1, "Meta");
    assert_eq!(clevertap, clevertap2, "CleverTap moved");
    assert_eq!(google, google2, "Google moved");
    assert_eq!(state_members(&rt, export).await, members2, "state moved");
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
    assert_eq!(held(&env).0, members2, "Meta not re-synced");
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
    let (meta, clevertap, _) = held(&env);
    assert!(meta.is_empty(), "{} left at Meta", meta.len());
    assert_eq!(clevertap, clevertap2);
    assert_eq!(state_members(&rt, export).await, members2);
    let run4 = rt.run_batch(&source, export).await.expect("run 4");
    assert_eq!(run4.status, RunStatus::Finished, "{:?}", run4.status);
    idle().await;
    assert_eq!(held(&env).0, members2, "Meta not re-synced after emptying");
    rt.shutdown().await;
}
