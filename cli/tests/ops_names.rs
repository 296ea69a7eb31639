//! Operator commands given a name the spec does not define fail and list
//! the names it does, instead of printing "no runs" / "no dead-lettered
//! jobs" and exiting 0 as if all were well.

use std::path::{Path, PathBuf};
use std::process::Output;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn dataout(args: &[&str], state_dir: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dataout"))
        .args(args)
        .arg("--config")
        .arg(repo_file("config/exports.example.yaml"))
        .arg("--state-dir")
        .arg(state_dir)
        .env_remove("DATAOUT_STACK")
        .env_remove("DATAOUT_CONFIG")
        .output()
        .expect("run dataout")
}

#[test]
fn runs_list_of_an_unknown_export_fails_naming_the_known_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dataout(&["runs", "list", "nosuch"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no export `nosuch`"), "{stderr}");
    // Exports of config/exports.example.yaml.
    assert!(stderr.contains("lapsed_vips"), "{stderr}");
    assert!(stderr.contains("cart_abandoners"), "{stderr}");
}

#[test]
fn dlq_list_of_an_unknown_destination_fails_naming_the_known_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dataout(&["dlq", "list", "nosuch"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no destination `nosuch`"), "{stderr}");
    assert!(stderr.contains("clevertap"), "{stderr}");
    assert!(stderr.contains("meta"), "{stderr}");
}
