//! Tests of the embedded state store.
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::domain::model::{ChangeOrigin, MembershipSnapshot, RunKind, RunStatus};

fn open_in(dir: &Path, name: &str) -> EmbeddedStateStore {
    EmbeddedStateStore::open(&dir.join(name)).expect("open state store")
}

fn record(person: &str, member: bool, ts: Millis) -> MembershipRecord {
    MembershipRecord {
        export: "vip".into(),
        person_key: PersonKey(person.into()),
        current: MembershipSnapshot {
            member,
            ..MembershipSnapshot::default()
        },
        previous: None,
        source_ts: ts,
        intake_ts: ts,
        entered_at: None,
        change_id: format!("evt-{ts}"),
        origin: ChangeOrigin::Action,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_state_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = AtomicUsize::new(0);
    crate::conformance::state::run(|| {
        let path = dir.path().join(format!(
            "case-{}/state.redb",
            n.fetch_add(1, Ordering::SeqCst)
        ));
        async move {
            Arc::new(EmbeddedStateStore::open(&path).expect("open")) as Arc<dyn StateStore>
        }
    })
    .await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = RunRecord {
        run_id: "run-1".into(),
        export: "vip".into(),
        kind: RunKind::Batch,
        status: RunStatus::Running,
        config_hash: "h".into(),
        started_at: 10,
        finished_at: None,
        checkpoint: Default::default(),
        stats: Default::default(),
    };
    {
        let store = open_in(dir.path(), "state.redb");
        store
            .put_membership(&record("id:a", true, 5))
            .await
            .expect("put");
        store
            .put_membership(&record("id:b", false, 5))
            .await
            .expect("put");
        store.put_run(&run).await.expect("put run");
        store
            .add_counters("intake", &[("webhooks_accepted", 3)])
            .await
            .expect("add");
        store
            .idempotency_start("evt-1", 0, 100, 1_000)
            .await
            .expect("start");
        store
            .idempotency_complete("evt-1", 1_000)
            .await
            .expect("complete");
    }
    let store = open_in(dir.path(), "state.redb");
    assert_eq!(
        store
            .get_membership("vip", &PersonKey("id:a".into()))
            .await
            .expect("get"),
        Some(record("id:a", true, 5))
    );
    assert_eq!(store.count_members("vip").await.expect("count"), 1);
    assert_eq!(
        store.get_run("run-1").await.expect("get run"),
        Some(run.clone())
    );
    assert_eq!(store.list_runs("vip", 5).await.expect("list"), vec![run]);
    assert_eq!(
        store.get_counters("intake").await.expect("counters"),
        BTreeMap::from([("webhooks_accepted".to_string(), 3)])
    );
    assert_eq!(
        store
            .idempotency_start("evt-1", 10, 110, 1_000)
            .await
            .expect("start"),
        IdempotencyStart::Completed
    );
    // An older change still loses after the restart.
    assert!(matches!(
        store
            .put_membership(&record("id:a", false, 4))
            .await
            .expect("put"),
        MembershipWrite::Stale { .. }
    ));
}

#[test]
fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a/b/state.redb");
    EmbeddedStateStore::open(&path).expect("open");
    assert!(path.exists());
}

#[test]
fn a_file_that_is_not_a_store_is_a_permanent_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    std::fs::write(&path, b"definitely not a redb file, just some text").expect("write");
    let err = EmbeddedStateStore::open(&path).expect_err("must refuse");
    assert!(!err.is_retryable(), "{err}");
}
