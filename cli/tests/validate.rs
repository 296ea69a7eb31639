//! `dataout validate`: every mistake reported with its line, non-zero exit.

use std::process::Command;

fn dataout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dataout"))
}

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

#[test]
fn example_config_is_valid() {
    let out = dataout()
        .arg("validate")
        .arg(repo_file("config/exports.example.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn three_mistakes_give_three_errors_with_line_numbers() {
    let out = dataout()
        .arg("validate")
        .arg(repo_file("config/testdata/three-mistakes.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let issues: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("three-mistakes.yaml:"))
        .collect();
    assert_eq!(issues.len(), 3, "{err}");
    for issue in issues {
        let line: usize = issue
            .split(':')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(line > 0, "no line number in: {issue}");
    }
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = dataout()
        .arg("validate")
        .arg("/no/such/file.yaml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.yaml"));
}
