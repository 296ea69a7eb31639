//! A real `dataout export` that a guard rail holds: it keeps the number of
//! members it read from the source (before, it was stored as 0 and stayed 0
//! after approval), exits 3 so a script can tell it from a finished run, and
//! prints an approve command that can be pasted as it is and releases it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use dataout_sim::customerio::{self as cio_sim, CioSimConfig};

const KEY: &str = "held-run-test-key";
const LAPSED: u64 = 103;
/// Members the test leaves in the segment: under the export's `min_size` of
/// 20 in config/exports.example.yaml.
const LEFT: usize = 5;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn dataout(base_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dataout"))
        .args(args)
        .env("CIO_APP_API_KEY", KEY)
        .env("CIO_APP_API_BASE_URL", base_url)
        .env_remove("CIO_REGION")
        .env_remove("DATAOUT_STACK")
        .env_remove("DATAOUT_CONFIG")
        .output()
        .expect("run dataout")
}

fn export(base_url: &str, state_dir: &Path, json: bool) -> Output {
    let config = repo_file("config/exports.example.yaml");
    let mut args = vec![
        "export".to_string(),
        "lapsed_vips".into(),
        "--config".into(),
        config.to_string_lossy().into_owned(),
        "--state-dir".into(),
        state_dir.to_string_lossy().into_owned(),
    ];
    if json {
        args.push("--json".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    dataout(base_url, &args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_run_keeps_its_source_count_exits_3_and_its_printed_approve_command_releases_it() {
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

    let first = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export(&b, &s, false))
            .await
            .expect("join")
    };
    assert_eq!(first.status.code(), Some(0), "{}", stdout(&first));
    // A real run that passes says it committed, not that it would.
    let text = stdout(&first);
    assert!(
        text.contains("guard rails: pass — the run committed"),
        "{text}"
    );
    assert!(!text.contains("would"), "{text}");
    let members = cio.handle.snapshot().members(LAPSED);
    assert!(members.len() > 20 + LEFT, "the demo segment is too small");
    for i in &members[LEFT..] {
        cio.handle.remove_member(LAPSED, *i);
    }

    // Held: exit 3, the count the source gave, and the approve command.
    let held = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export(&b, &s, true))
            .await
            .expect("join")
    };
    assert_eq!(
        held.status.code(),
        Some(3),
        "{}\n{}",
        stdout(&held),
        String::from_utf8_lossy(&held.stderr)
    );
    let plan: Value = serde_json::from_slice(&held.stdout).expect("json");
    assert_eq!(plan["verdict"], "held", "{plan}");
    assert_eq!(plan["source_members"], LEFT as u64, "{plan}");
    let approve = plan["approve_with"]
        .as_str()
        .unwrap_or_else(|| panic!("no approve command in {plan}"))
        .to_string();
    let run_id = plan["run_id"].as_str().expect("run id").to_string();
    assert!(
        approve.starts_with(&format!("dataout runs approve {run_id} --config ")),
        "{approve}"
    );
    assert!(approve.contains(" --state-dir "), "{approve}");

    // The stored run says so too.
    let list = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || {
            dataout(
                &b,
                &[
                    "runs",
                    "list",
                    "lapsed_vips",
                    "--state-dir",
                    &s.to_string_lossy(),
                ],
            )
        })
        .await
        .expect("join")
    };
    let listed = stdout(&list);
    let line = listed
        .lines()
        .find(|l| l.starts_with(&run_id))
        .unwrap_or_else(|| panic!("{run_id} not listed:\n{listed}"));
    assert!(line.contains("held ("), "{line}");
    assert!(line.contains(&format!("members {LEFT} ")), "{line}");

    // The printed command, pasted word for word (its paths have no spaces).
    let words: Vec<String> = approve
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    let approved = {
        let b = base.clone();
        tokio::task::spawn_blocking(move || {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            dataout(&b, &words)
        })
        .await
        .expect("join")
    };
    assert!(
        approved.status.success(),
        "{}\n{}",
        stdout(&approved),
        String::from_utf8_lossy(&approved.stderr)
    );
    let text = stdout(&approved);
    assert!(text.contains("approved and committed"), "{text}");
    assert!(text.contains(&format!("members {LEFT} ")), "{text}");
    assert!(
        text.contains(&format!("-{}", members.len() - LEFT)),
        "{text}"
    );

    cio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_a_guard_rail_would_hold_names_no_run_id_that_does_not_exist() {
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
    let first = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || export(&b, &s, true))
            .await
            .expect("join")
    };
    assert_eq!(first.status.code(), Some(0));
    for i in &cio.handle.snapshot().members(LAPSED)[LEFT..] {
        cio.handle.remove_member(LAPSED, *i);
    }
    let out = {
        let (b, s) = (base.clone(), state.clone());
        tokio::task::spawn_blocking(move || {
            let config = repo_file("config/exports.example.yaml");
            dataout(
                &b,
                &[
                    "export",
                    "lapsed_vips",
                    "--dry-run",
                    "--config",
                    &config.to_string_lossy(),
                    "--state-dir",
                    &s.to_string_lossy(),
                ],
            )
        })
        .await
        .expect("join")
    };
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("guard rails: HELD"), "{text}");
    // The dry run's run id is never stored: neither the plan's text nor the
    // log may offer it for approval.
    assert!(!text.contains("runs approve"), "{text}");
    assert!(!stderr.contains("run_id"), "{stderr}");
    assert!(!stderr.contains("run held by a guard rail"), "{stderr}");
    cio.shutdown().await;
}
