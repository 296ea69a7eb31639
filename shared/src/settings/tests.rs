use std::collections::BTreeMap;
use std::time::Duration;

use super::intake::{intake_config, DEDUP_TTL, IN_PROGRESS_TTL};
use super::*;
use crate::customerio::actions::{ActionAuthMode, DEFAULT_TOKEN_HEADER};
use crate::customerio::webhook::DEFAULT_TOLERANCE;
use crate::ports::MapSecrets;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn both() -> MapSecrets {
    MapSecrets::default()
        .with(REPORTING_SECRET, "r")
        .with(ACTION_SECRET, "a")
}

/// The README's settings table: (name, source, default, read by) per row.
fn readme_rows() -> Vec<(String, String, String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let text = std::fs::read_to_string(path).expect("README.md next to the workspace");
    let section = text
        .split("\n## Settings\n")
        .nth(1)
        .expect("README has a `## Settings` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            (
                cells[0].clone(),
                cells[1].clone(),
                cells[2].clone(),
                cells[3].clone(),
            )
        })
        .collect()
}

#[test]
fn readme_settings_table_matches_the_settings_list() {
    let want: Vec<(String, String, String, String)> = SETTINGS
        .iter()
        .map(|s| {
            let source = match s.source {
                Source::Env => "env",
                Source::Secret => "secret",
            };
            (
                s.name.to_string(),
                source.to_string(),
                s.default.to_string(),
                s.read_by.to_string(),
            )
        })
        .collect();
    assert_eq!(readme_rows(), want);
}

#[test]
fn settings_list_names_each_setting_once() {
    let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before);
    assert!(!names.contains(&OLD_TOLERANCE_NAME));
}

#[test]
fn defaults_are_shared_secret_header_and_five_minute_window() {
    let cfg = intake_config(env(&[]), &both()).unwrap();
    assert_eq!(cfg.actions.mode, ActionAuthMode::SharedSecret);
    assert_eq!(cfg.actions.header_name, "x-dataout-token");
    assert_eq!(cfg.actions.header_name, DEFAULT_TOKEN_HEADER);
    assert_eq!(cfg.reporting.tolerance, Duration::from_secs(300));
    assert_eq!(DEFAULT_TOLERANCE, Duration::from_secs(300));
}

#[test]
fn event_ids_outlive_customerio_retries_and_claims_outlive_a_request() {
    let cfg = intake_config(env(&[]), &both()).unwrap();
    // docs/customerio.md: retries for up to 7 days.
    assert!(cfg.dedup_ttl > Duration::from_secs(7 * 24 * 3600));
    assert_eq!(cfg.dedup_ttl, DEDUP_TTL);
    // The intake function's timeout is 8 s (cli/src/template.rs).
    assert!(cfg.in_progress_ttl > Duration::from_secs(8));
    assert_eq!(cfg.in_progress_ttl, IN_PROGRESS_TTL);
}

#[test]
fn missing_secret_is_named_and_never_printed() {
    let only_action = MapSecrets::default().with(ACTION_SECRET, "hunter2");
    let err = intake_config(env(&[]), &only_action)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CIO_WEBHOOK_SIGNING_SECRET"), "{err}");
    assert!(!err.contains("hunter2"));
    let only_reporting = MapSecrets::default().with(REPORTING_SECRET, "hunter2");
    let err = intake_config(env(&[]), &only_reporting)
        .unwrap_err()
        .to_string();
    assert!(err.contains("DATAOUT_ACTION_SECRET"), "{err}");
}

#[test]
fn hmac_mode_custom_header_and_window_are_read() {
    let cfg = intake_config(
        env(&[
            ("DATAOUT_ACTION_AUTH", "hmac"),
            ("DATAOUT_ACTION_HEADER", "X-Hook-Signature"),
            ("DATAOUT_SIGNATURE_TOLERANCE_SECS", "120"),
        ]),
        &both(),
    )
    .unwrap();
    assert_eq!(cfg.actions.mode, ActionAuthMode::Hmac);
    assert_eq!(cfg.actions.header_name, "x-hook-signature");
    assert_eq!(cfg.reporting.tolerance, Duration::from_secs(120));
    assert_eq!(cfg.actions.tolerance, Duration::from_secs(120));
}

#[test]
fn old_tolerance_name_is_refused_with_the_new_one() {
    let err = intake_config(env(&[("DATAOUT_WEBHOOK_TOLERANCE_SECS", "120")]), &both())
        .unwrap_err()
        .to_string();
    assert!(err.contains("DATAOUT_WEBHOOK_TOLERANCE_SECS"), "{err}");
    assert!(err.contains("DATAOUT_SIGNATURE_TOLERANCE_SECS"), "{err}");
}

#[test]
fn auth_modes_other_than_shared_secret_and_hmac_are_refused() {
    for bad in ["shared", "none", "HMAC"] {
        let err = intake_config(env(&[("DATAOUT_ACTION_AUTH", bad)]), &both())
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATAOUT_ACTION_AUTH"), "{bad}: {err}");
    }
}

#[test]
fn zero_or_words_as_tolerance_are_refused() {
    for bad in ["0", "five", "-1"] {
        let err = intake_config(env(&[("DATAOUT_SIGNATURE_TOLERANCE_SECS", bad)]), &both())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DATAOUT_SIGNATURE_TOLERANCE_SECS"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn basic_credentials_are_read_from_their_optional_secret_and_never_printed() {
    assert!(intake_config(env(&[]), &both())
        .unwrap()
        .actions
        .basic
        .is_none());
    let with = both().with(ACTION_BASIC_SECRET, "cio-hooks:s3cr3t");
    let cfg = intake_config(env(&[]), &with).unwrap();
    assert_eq!(
        cfg.actions.basic.map(|b| b.header_value()),
        // `printf %s 'cio-hooks:s3cr3t' | base64`
        Some("Basic Y2lvLWhvb2tzOnMzY3IzdA==".to_string())
    );
    let bad = both().with(ACTION_BASIC_SECRET, "s3cr3t-without-user");
    let err = intake_config(env(&[]), &bad).unwrap_err().to_string();
    assert!(err.contains(ACTION_BASIC_SECRET), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}
