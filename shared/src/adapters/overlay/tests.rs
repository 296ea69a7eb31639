use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::{OverlayStateStore, RecordingQueue};
use crate::adapters::embedded::state::EmbeddedStateStore;
use crate::domain::model::{
    ChangeOrigin, DeliveryJob, Identifiers, MembershipRecord, MembershipSnapshot, Person,
    PersonKey, RunCheckpoint, RunKind, RunRecord, RunStats, RunStatus,
};
use crate::ports::{JobQueue, MembershipWrite, RecordWrite, StateStore};

fn record(n: usize, member: bool, ts: i64) -> MembershipRecord {
    MembershipRecord {
        export: "vip".into(),
        person_key: PersonKey(format!("id:u{n:04}")),
        current: MembershipSnapshot {
            member,
            tiers: BTreeSet::new(),
            ids: Identifiers {
                id: Some(format!("u{n:04}")),
                ..Identifiers::default()
            },
            attributes: Default::default(),
        },
        previous: None,
        source_ts: ts,
        intake_ts: ts,
        entered_at: None,
        change_id: format!("c{ts}"),
        origin: ChangeOrigin::Batch,
    }
}

fn run(id: &str, started_at: i64) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        export: "vip".into(),
        kind: RunKind::Batch,
        status: RunStatus::Running,
        config_hash: "h".into(),
        started_at,
        finished_at: None,
        checkpoint: RunCheckpoint::default(),
        stats: RunStats::default(),
    }
}

async fn all_members(store: &dyn StateStore) -> Vec<MembershipRecord> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_memberships("vip", cursor, 7)
            .await
            .expect("list");
        out.extend(page.items);
        match page.next {
            Some(n) => cursor = Some(n),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_overlay_passes_the_state_conformance_suite() {
    crate::conformance::state::run(|| async {
        Arc::new(OverlayStateStore::in_memory()) as Arc<dyn StateStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_on_an_embedded_store_passes_the_suite_and_leaves_the_file_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = AtomicUsize::new(0);
    let paths = std::sync::Mutex::new(Vec::new());
    crate::conformance::state::run(|| {
        let path = dir.path().join(format!(
            "case-{}/state.redb",
            n.fetch_add(1, Ordering::SeqCst)
        ));
        let base = Arc::new(EmbeddedStateStore::open(&path).expect("open"));
        paths
            .lock()
            .expect("lock")
            .push((path.clone(), base.clone()));
        async move { Arc::new(OverlayStateStore::over(base)) as Arc<dyn StateStore> }
    })
    .await;
    for (path, base) in paths.into_inner().expect("lock") {
        assert_eq!(
            base.count_members("vip").await.expect("count"),
            0,
            "{}",
            path.display()
        );
        assert!(base.list_runs("vip", 10).await.expect("runs").is_empty());
        assert!(base
            .list_destination_records("google", "", 10)
            .await
            .expect("records")
            .is_empty());
    }
}

#[tokio::test]
async fn writes_stay_in_the_overlay_and_reads_see_them_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = Arc::new(EmbeddedStateStore::open(&dir.path().join("s.redb")).expect("open"));
    for i in 0..20 {
        base.put_membership(&record(i, i % 2 == 0, 100))
            .await
            .expect("seed");
    }
    base.put_run(&run("run-old", 1)).await.expect("seed run");
    base.stage_people(
        "run-old",
        &[(
            PersonKey("id:u0001".into()),
            Person {
                ids: Identifiers::default(),
                attributes: Default::default(),
            },
        )],
    )
    .await
    .expect("seed staged");
    base.add_counters("scope", &[("sent", 5)])
        .await
        .expect("seed");
    let RecordWrite::Applied { version } = base
        .put_destination_record("google", "job/1", &json!({"a": 1}), None)
        .await
        .expect("seed record")
    else {
        panic!("seed record conflicted");
    };
    let before = all_members(base.as_ref()).await;
    let base_count = base.count_members("vip").await.expect("count");

    let overlay = OverlayStateStore::over(base.clone());
    // A newer change to an existing person, an older one refused, a new person.
    assert_eq!(
        overlay
            .put_membership(&record(1, true, 200))
            .await
            .expect("put"),
        MembershipWrite::Applied
    );
    assert!(matches!(
        overlay
            .put_membership(&record(2, false, 50))
            .await
            .expect("put"),
        MembershipWrite::Stale { .. }
    ));
    overlay
        .put_membership(&record(99, true, 300))
        .await
        .expect("put");
    overlay.put_run(&run("run-new", 2)).await.expect("run");
    overlay
        .stage_people(
            "run-new",
            &[(PersonKey("id:u0003".into()), Person::default())],
        )
        .await
        .expect("stage");
    overlay.clear_staged("run-old").await.expect("clear");
    overlay
        .add_counters("scope", &[("sent", 2)])
        .await
        .expect("add");
    assert_eq!(
        overlay
            .put_destination_record("google", "job/1", &json!({"a": 2}), Some(version))
            .await
            .expect("put record"),
        RecordWrite::Applied {
            version: version + 1
        }
    );
    assert!(overlay
        .delete_destination_record("google", "job/1", version + 1)
        .await
        .expect("delete"));

    // The overlay sees its writes on top of the base.
    let seen = all_members(&overlay).await;
    assert_eq!(seen.len(), 21);
    assert!(seen.windows(2).all(|w| w[0].person_key < w[1].person_key));
    assert_eq!(seen[1].source_ts, 200, "the overlay's record of u0001 wins");
    assert_eq!(
        overlay.count_members("vip").await.expect("count"),
        base_count + 2
    );
    let runs = overlay.list_runs("vip", 10).await.expect("runs");
    assert_eq!(
        runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["run-new", "run-old"]
    );
    assert!(overlay
        .list_staged("run-old", None, 10)
        .await
        .expect("staged")
        .items
        .is_empty());
    assert_eq!(
        overlay.get_counters("scope").await.expect("counters")["sent"],
        7
    );
    assert!(overlay
        .get_destination_record("google", "job/1")
        .await
        .expect("get")
        .is_none());
    assert_eq!(overlay.written_memberships().expect("written").len(), 2);

    // The base is exactly as it was.
    assert_eq!(all_members(base.as_ref()).await, before);
    assert_eq!(base.count_members("vip").await.expect("count"), base_count);
    assert_eq!(
        base.list_runs("vip", 10)
            .await
            .expect("runs")
            .into_iter()
            .map(|r| r.run_id)
            .collect::<Vec<_>>(),
        ["run-old"]
    );
    assert_eq!(
        base.list_staged("run-old", None, 10)
            .await
            .expect("staged")
            .items
            .len(),
        1
    );
    assert_eq!(base.get_counters("scope").await.expect("c")["sent"], 5);
    assert_eq!(
        base.get_destination_record("google", "job/1")
            .await
            .expect("get")
            .map(|r| (r.version, r.value)),
        Some((version, json!({"a": 1})))
    );
}

#[tokio::test]
async fn recording_queue_keeps_what_was_sent() {
    let q = RecordingQueue::new();
    let job = |id: &str| DeliveryJob {
        replace: false,
        replace_from: None,
        repair: false,
        job_id: id.into(),
        export: "vip".into(),
        destination: "meta".into(),
        run_id: None,
        created_at: 0,
        config_hash: "h".into(),
        attempt: 0,
        ops: vec![],
    };
    q.send("meta", &[job("a"), job("b")]).await.expect("send");
    q.send("warehouse", &[job("c")]).await.expect("send");
    let sent = q.sent().expect("sent");
    assert_eq!(
        sent.iter()
            .map(|(q, j)| (q.as_str(), j.job_id.as_str()))
            .collect::<Vec<_>>(),
        [("meta", "a"), ("meta", "b"), ("warehouse", "c")]
    );
    let got = q.receive("meta", 1).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(q.depth("meta").await.expect("depth").in_flight, 1);
    q.ack("meta", &got[0].receipt).await.expect("ack");
    let d = q.depth("meta").await.expect("depth");
    assert_eq!((d.visible, d.in_flight), (1, 0));
}
