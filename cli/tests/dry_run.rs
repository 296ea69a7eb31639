//! `dataout export <name> --dry-run`: the plan of a batch run, read from the
//! live source (the Customer.io simulator) and diffed against state, with
//! the state file and the queue file left byte for byte as they were.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use dataout::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use dataout::ports::{JobQueue, SystemClock};
use dataout_sim::customerio::{self as cio_sim, CioSimConfig};

const KEY: &str = "dry-run-test-key";
const LAPSED: u64 = 103;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// `dataout export lapsed_vips` against the simulator, as JSON.
fn export(base_url: &str, state_dir: &Path, dry_run: bool) -> (Value, Output) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dataout"));
    cmd.args(["export", "lapsed_vips", "--json", "--config"])
        .arg(repo_file("config/exports.example.yaml"))
        .arg("--state-dir")
        .arg(state_dir)
        .env("CIO_APP_API_KEY", KEY)
        .env("CIO_APP_API_BASE_URL", base_url)
        .env_remove("CIO_REGION");
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().expect("run dataout");
    assert!(
        out.status.success(),
        "dataout export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (plan, out)
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("state dir")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

fn n(plan: &Value, field: &str) -> u64 {
    plan[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {plan}"))
}

async fn queued_jobs(state_dir: &Path, queue: &str) -> u64 {
    let q = EmbeddedQueue::open(
        &state_dir.join("queue.redb"),
        QueueSettings::default(),
        std::sync::Arc::new(SystemClock),
    )
    .expect("open queue");
    q.depth(queue).await.expect("depth").visible
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_leaves_state_and_queues_byte_identical_and_plans_what_the_run_does() {
    let now = chrono::Utc::now().timestamp();
    let cio = cio_sim::start(CioSimConfig::new(
        KEY,
        cio_sim::demo_workspace_at(7, 600, now),
    ))
    .await
    .expect("cio sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let base = cio.base_url().to_string();

    // A first real run fills state.
    let (first, _) = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export(&b, &s, false))
            .await
            .expect("join")
    };
    assert_eq!(first["verdict"], "finished", "{first}");
    let members = n(&first, "adds");
    let in_segment = cio.handle.snapshot().members(LAPSED).len() as u64;
    assert!(in_segment >= 20, "segment too small for the test: {first}");
    assert_eq!(
        members, in_segment,
        "the first run adds the source's segment"
    );

    // The segment moves: 3 leave, 2 join, 4 change a synced attribute.
    let current = cio.handle.snapshot().members(LAPSED);
    for i in &current[..3] {
        assert!(cio.handle.remove_member(LAPSED, *i));
    }
    let outside: Vec<usize> = (0..600).filter(|i| !current.contains(i)).take(2).collect();
    for i in &outside {
        assert!(cio.handle.add_member(LAPSED, *i));
    }
    for i in &current[3..7] {
        assert!(cio.handle.set_attribute(*i, "lifetime_value", "98765"));
    }

    let before = files(&state);
    assert!(before.iter().any(|(p, _)| p.ends_with("state.redb")));
    assert!(before.iter().any(|(p, _)| p.ends_with("queue.redb")));
    let (plan, out) = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export(&b, &s, true))
            .await
            .expect("join")
    };
    let after = files(&state);
    assert!(
        before == after,
        "the dry run changed the state dir: {:?}",
        before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| &a.0)
            .collect::<Vec<_>>()
    );
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["verdict"], "finished", "{plan}");
    assert_eq!(n(&plan, "adds"), 2, "{plan}");
    assert_eq!(n(&plan, "removes"), 3, "{plan}");
    assert_eq!(n(&plan, "attribute_changes"), 4, "{plan}");
    assert_eq!(plan["changed_attributes"]["lifetime_value"], 4, "{plan}");
    assert!(out.status.success());
    let queues = ["clevertap", "meta", "warehouse", "analytics_webhook"];
    let mut planned_jobs = std::collections::BTreeMap::new();
    for q in queues {
        let d = &plan["destinations"][q];
        assert!(d["ops"].as_u64().unwrap_or(0) > 0, "no ops for {q}: {plan}");
        planned_jobs.insert(q, d["jobs"].as_u64().unwrap_or(0));
    }
    // Meta hears only of membership: 2 adds and 3 removes in the main
    // audience, and the moves of the high_value tier in its own.
    let tier = &plan["tiers"]["high_value"];
    let (entering, leaving) = (n(tier, "entering"), n(tier, "leaving"));
    assert_eq!(
        n(&plan["destinations"]["meta"], "add"),
        2 + entering,
        "{plan}"
    );
    assert_eq!(
        n(&plan["destinations"]["meta"], "remove"),
        3 + leaving,
        "{plan}"
    );
    assert_eq!(
        plan["destinations"]["meta"]["by_audience"]["23850000000000103"], 5,
        "{plan}"
    );
    assert_eq!(plan["destinations"]["meta"]["update"], 0, "{plan}");

    // The text form, for a terminal.
    let text = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_dataout"))
                .args(["export", "lapsed_vips", "--dry-run", "--config"])
                .arg(repo_file("config/exports.example.yaml"))
                .arg("--state-dir")
                .arg(&s)
                .env("CIO_APP_API_KEY", KEY)
                .env("CIO_APP_API_BASE_URL", &b)
                .output()
                .expect("run")
        })
        .await
        .expect("join")
    };
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    println!("{text}");
    assert!(text.contains("guard rails: pass"), "{text}");
    assert!(
        text.contains("adds 2  removes 3  attribute changes 4"),
        "{text}"
    );

    // A second dry run plans the same again: nothing was committed.
    let (again, _) = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export(&b, &s, true))
            .await
            .expect("join")
    };
    for field in ["adds", "removes", "attribute_changes", "ops_enqueued"] {
        assert_eq!(again[field], plan[field], "{field}");
    }

    // The real run then does exactly what the dry run planned.
    let mut queued_before = std::collections::BTreeMap::new();
    for q in queues {
        queued_before.insert(q, queued_jobs(&state, q).await);
    }
    let (real, _) = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export(&b, &s, false))
            .await
            .expect("join")
    };
    for field in [
        "adds",
        "removes",
        "attribute_changes",
        "tier_moves",
        "unchanged",
        "suppressed",
        "jobs_enqueued",
        "ops_enqueued",
    ] {
        assert_eq!(
            real[field], plan[field],
            "{field}: real {real} planned {plan}"
        );
    }
    for q in queues {
        assert_eq!(
            queued_jobs(&state, q).await - queued_before[q],
            planned_jobs[q],
            "jobs enqueued for {q}"
        );
    }
    cio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_a_guard_rail_hold_and_what_approval_would_do() {
    let now = chrono::Utc::now().timestamp();
    let cio = cio_sim::start(CioSimConfig::new(
        KEY,
        cio_sim::demo_workspace_at(7, 600, now),
    ))
    .await
    .expect("cio sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let base = cio.base_url().to_string();
    let (first, _) = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export(&b, &s, false))
            .await
            .expect("join")
    };
    assert_eq!(first["verdict"], "finished", "{first}");
    // All but 5 leave: below the export's minimum size of 20.
    let current = cio.handle.snapshot().members(LAPSED);
    for i in &current[5..] {
        cio.handle.remove_member(LAPSED, *i);
    }
    let before = files(&state);
    let (plan, out) = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export(&b, &s, true))
            .await
            .expect("join")
    };
    assert!(before == files(&state), "the dry run changed the state dir");
    assert_eq!(plan["verdict"], "held", "{plan}");
    let reason = plan["held_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("below the expected minimum 20"), "{reason}");
    assert_eq!(plan["counts_if_approved"], true);
    assert_eq!(n(&plan, "removes"), current.len() as u64 - 5, "{plan}");
    // Everyone leaves the main audience, and the high_value tier's members
    // leave theirs too.
    let leaving = n(&plan["tiers"]["high_value"], "leaving");
    assert_eq!(
        plan["destinations"]["meta"]["remove"].as_u64(),
        Some(current.len() as u64 - 5 + leaving),
        "{plan}"
    );
    // The text form says so too.
    let text = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_dataout"))
            .args(["export", "lapsed_vips", "--dry-run", "--config"])
            .arg(repo_file("config/exports.example.yaml"))
            .arg("--state-dir")
            .arg(&state)
            .env("CIO_APP_API_KEY", KEY)
            .env("CIO_APP_API_BASE_URL", &base)
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("guard rails: HELD"), "{text}");
    assert!(out.status.success());
    cio.shutdown().await;
}

fn export_named(name: &str, base_url: &str, state_dir: &Path, dry_run: bool) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dataout"));
    cmd.args(["export", name, "--json", "--config"])
        .arg(repo_file("config/exports.example.yaml"))
        .arg("--state-dir")
        .arg(state_dir)
        .env("CIO_APP_API_KEY", KEY)
        .env("CIO_APP_API_BASE_URL", base_url)
        .env_remove("CIO_REGION");
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().expect("run dataout");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_counts_tier_moves_per_tier() {
    const CARTS: u64 = 101;
    let now = chrono::Utc::now().timestamp();
    let cio = cio_sim::start(CioSimConfig::new(
        KEY,
        cio_sim::demo_workspace_at(7, 3000, now),
    ))
    .await
    .expect("cio sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let base = cio.base_url().to_string();
    let first = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export_named("cart_abandoners", &b, &s, false))
            .await
            .expect("join")
    };
    assert_eq!(first["verdict"], "finished", "{first}");
    // Three members with small carts cross the high_value line (120).
    let members = cio.handle.snapshot().members(CARTS);
    let ws = cio.handle.snapshot();
    let small: Vec<usize> = members
        .iter()
        .copied()
        .filter(|i| {
            ws.people[*i]
                .attributes
                .get("cart_value")
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v < 120.0)
        })
        .take(3)
        .collect();
    assert_eq!(small.len(), 3, "not enough small carts");
    for i in &small {
        cio.handle.set_attribute(*i, "cart_value", "500");
    }
    let plan = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export_named("cart_abandoners", &b, &s, true))
            .await
            .expect("join")
    };
    assert_eq!(plan["tiers"]["high_value"]["entering"], 3, "{plan}");
    assert_eq!(plan["tiers"]["high_value"]["leaving"], 0, "{plan}");
    assert_eq!(plan["changed_attributes"]["cart_value"], 3, "{plan}");
    // Meta gets the high_value tier audience adds only.
    assert_eq!(
        plan["destinations"]["meta"]["by_audience"]["23850000000000121"], 3,
        "{plan}"
    );
    cio.shutdown().await;
}
