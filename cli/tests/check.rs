//! `dataout check` on the state of a real local run: it passes on the
//! clean run, and fails — naming the export pair and destinations, with
//! counts and no address — once a person of the suppression export
//! (`recent_purchasers`) is written into the export that suppresses it
//! (`cart_abandoners`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::domain::model::MembershipRecord;
use dataout::domain::spec::ExportSource;
use dataout::ports::{Clock, StateStore, SystemClock};
use dataout_cli::demo::SimEnv;

fn example_spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/exports.example.yaml")
}

/// Two batch passes of every segment export with delivery, as the demo.
async fn local_run(dir: &Path, people: usize) {
    let env = SimEnv::start(people, &dir.join("warehouse")).await.unwrap();
    let rt = Arc::new(
        env.runtime(&dir.join("state"), Arc::new(SystemClock))
            .unwrap(),
    );
    rt.start_workers().await.unwrap();
    let source = env.source().unwrap();
    for _ in 0..2 {
        for (name, export) in &env.spec.exports {
            if matches!(export.source, ExportSource::Segment { .. }) {
                rt.run_batch(&source, name).await.unwrap();
            }
        }
        assert!(rt.wait_idle(Duration::from_secs(120)).await.unwrap());
    }
    rt.shutdown().await;
}

fn check(state_dir: &Path) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dataout"))
        .arg("check")
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--config")
        .arg(example_spec())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run dataout check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// Make one member of `recent_purchasers` a member of `cart_abandoners`
/// too, behind the pipeline's back. Returns the person's email.
async fn inject_overlap(state_dir: &Path) -> String {
    let store = EmbeddedStateStore::open(&state_dir.join("state.redb")).unwrap();
    let page = store
        .list_memberships("recent_purchasers", None, 100)
        .await
        .unwrap();
    let buyer: MembershipRecord = page
        .items
        .into_iter()
        .find(|r| r.current.member && r.current.ids.email().is_some())
        .expect("a recent purchaser with an email");
    let email = buyer.current.ids.email().unwrap_or_default().to_string();
    let injected = MembershipRecord {
        export: "cart_abandoners".into(),
        previous: None,
        source_ts: SystemClock.now_ms(),
        change_id: "injected-overlap".into(),
        ..buyer
    };
    store.put_membership(&injected).await.unwrap();
    email
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_clean_run_and_fails_on_an_injected_suppression_overlap() {
    let dir = tempfile::tempdir().unwrap();
    local_run(dir.path(), 1000).await;
    let state_dir = dir.path().join("state");

    let (out, text) = check(&state_dir);
    eprintln!("clean run:\n{text}");
    assert!(out.status.success(), "clean run failed the check:\n{text}");
    let suppression: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("suppression") && l.contains("cart_abandoners suppresses recent_purchasers")
        })
        .collect();
    // One line per destination of cart_abandoners, all passing.
    assert_eq!(suppression.len(), 4, "{text}");
    assert!(suppression.iter().all(|l| l.starts_with("PASS")), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("PASS  freshness")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("PASS  growth")),
        "{text}"
    );

    let email = inject_overlap(&state_dir).await;
    let (out, text) = check(&state_dir);
    eprintln!("after the injection:\n{text}");
    assert!(!out.status.success(), "injected overlap passed:\n{text}");
    let failing: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("FAIL  suppression"))
        .collect();
    assert_eq!(failing.len(), 4, "{text}");
    for dest in ["clevertap", "meta", "google", "warehouse"] {
        assert!(
            failing.iter().any(|l| l.contains(&format!("@ {dest}:"))
                && l.contains("1 member(s) of recent_purchasers")),
            "no failing line for {dest}:\n{text}"
        );
    }
    assert!(!text.contains(&email), "the check printed an address");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("FAIL") && !l.contains("suppression")),
        "only suppression fails:\n{text}"
    );
}
