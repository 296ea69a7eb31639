//! `dataout quarantine replay` of an entry that still cannot go through says
//! what can fix it: the spec for a body the spec does not know, the sender
//! for a body that cannot be read at all. The entry keeps its place.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use std::collections::BTreeMap;

use dataout::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::domain::config::load_spec_file;
use dataout::pipeline::intake::{quarantine, Route};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, StateStore, SystemClock};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn replay(id: &str, state_dir: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dataout"))
        .args(["quarantine", "replay", id, "--config"])
        .arg(repo_file("config/exports.example.yaml"))
        .arg("--state-dir")
        .arg(state_dir)
        .env_remove("DATAOUT_STACK")
        .env_remove("DATAOUT_CONFIG")
        .output()
        .expect("run dataout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_fails_again_says_whether_the_spec_or_the_sender_must_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().to_path_buf();
    let first = 1_751_371_200_000;
    let (unreadable_id, unknown_id) = {
        let spec = load_spec_file(&repo_file("config/exports.example.yaml")).expect("spec");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let deps = Deps {
            spec: Arc::new(spec),
            state: Arc::new(
                EmbeddedStateStore::open(&state_dir.join("state.redb")).expect("state"),
            ),
            // `replay` needs the queues `serve` keeps beside the state.
            queue: Arc::new(
                EmbeddedQueue::open(
                    &state_dir.join("queue.redb"),
                    QueueSettings::default(),
                    clock.clone(),
                )
                .expect("queue"),
            ),
            clock,
        };
        let none = BTreeMap::new();
        let unreadable = quarantine(
            &deps,
            Route::Actions,
            &none,
            b"{not json",
            "as it came in",
            first,
        )
        .await
        .expect("kept");
        let unknown = quarantine(
            &deps,
            Route::Actions,
            &none,
            br#"{"action":"enter","export":"no_such_export","person":{"id":"cust_1"}}"#,
            "as it came in",
            first,
        )
        .await
        .expect("kept");
        (unreadable, unknown)
    };

    let (s, d) = (state_dir.clone(), state_dir.clone());
    let (u, k) = (unreadable_id.clone(), unknown_id.clone());
    let unreadable = tokio::task::spawn_blocking(move || replay(&u, &s))
        .await
        .expect("join");
    let unknown = tokio::task::spawn_blocking(move || replay(&k, &d))
        .await
        .expect("join");

    let text = String::from_utf8_lossy(&unreadable.stderr);
    assert_eq!(unreadable.status.code(), Some(1), "{text}");
    assert!(text.contains("the body itself cannot be read"), "{text}");
    assert!(!text.contains("fix the spec"), "{text}");

    let text = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1), "{text}");
    assert!(text.contains("fix the spec"), "{text}");
    assert!(text.contains("no_such_export"), "{text}");

    // Both entries keep when they first came in.
    let state = EmbeddedStateStore::open(&state_dir.join("state.redb")).expect("state");
    for id in [&unreadable_id, &unknown_id] {
        let e = state.get_quarantine(id).await.expect("get").expect("kept");
        assert_eq!(e.received_at, first, "{id}");
        assert_eq!(e.replayed_at, None, "{id}");
    }
}
