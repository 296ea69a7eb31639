//! The spec loader's tests: every rule, its message and its position.

use super::*;
use crate::domain::spec::{ConsentStatus, GoogleConsentSpec};

const BASE: &str = r#"version: 1
destinations:
  ct:
    kind: clevertap
    region: us1
    account_id_env: CT_ACCOUNT
    passcode_env: CT_PASSCODE
  meta:
    kind: meta_audience
    api_version: v25.0
    ad_account_id: "123"
    access_token_env: META_TOKEN
  google:
    kind: google_customer_match
    api_version: v26
    customer_id: "1234567890"
    developer_token_env: G_DEV
    consent_ad_user_data: granted
    consent_ad_personalization: granted
    access_token_env: G_TOKEN
  wh:
    kind: warehouse
    location: ./out
exports:
  carts:
    source: {segment: 1}
    mode: membership
    cadence: {realtime: true, every: 15m}
    identity: {golden: id, fallbacks: [email, phone]}
    attributes:
      cart_value: number
      first_name:
    tiers:
      - {name: fresh, min_age: 0, max_age: 1h}
      - {name: rich, attribute: cart_value, min: 120}
    suppress: [buyers]
    destinations:
      ct: {audience: cio_carts, tier_audiences: {fresh: cio_carts_fresh}}
      meta: {audience: "111", keys: [email, phone, first_name]}
      google: {audience: "222"}
      wh:
    guard_rails: {size: [10, 1000], max_churn_pct: 30, min_match_rate: 0.5}
  buyers:
    source: {segment: 2}
    mode: membership
    cadence: {every: 1h}
    identity: email
    destinations:
      meta: {audience: "333"}
"#;

/// BASE with one edit (which must apply).
fn edited(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "test edit target missing: {from}");
    BASE.replacen(from, to, 1)
}

fn issues(text: &str) -> Vec<ConfigIssue> {
    match parse_spec(text, "spec.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.issues,
    }
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("needle missing: {needle}"))
}

/// Exactly one issue, at `needle`'s line, whose message contains `says`.
fn one_issue_at(text: &str, needle: &str, says: &str) -> ConfigIssue {
    let found = issues(text);
    assert_eq!(found.len(), 1, "expected one issue, got {found:#?}");
    let issue = found[0].clone();
    assert_eq!(issue.line, line_of(text, needle), "{issue:#?}");
    assert!(
        issue.message.contains(says),
        "message {:?} lacks {says:?}",
        issue.message
    );
    issue
}

#[test]
fn base_spec_is_valid() {
    let spec = parse_spec(BASE, "spec.yaml").unwrap();
    assert_eq!(spec.exports.len(), 2);
    let carts = spec.export("carts").unwrap();
    assert_eq!(carts.binding("wh").unwrap().audience, "carts");
    assert_eq!(
        carts.tiers[0].rule,
        TierRule::Age {
            min_age_ms: 0,
            max_age_ms: 3_600_000
        }
    );
    assert_eq!(carts.attributes[1].from, "first_name");
    assert_eq!(carts.attributes[1].transform, Transform::Identity);
    assert!(carts.guard_rails.refuse_empty_source);
    let buyers = spec.export("buyers").unwrap();
    assert_eq!(buyers.identity.golden, IdKind::Email);
    assert_eq!(buyers.cadence.every_minutes, Some(60));
}

#[test]
fn example_file_parses_into_the_demo_spec() {
    let text = include_str!("../../../../config/exports.example.yaml");
    let spec = match parse_spec(text, "exports.example.yaml") {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(spec.version, 1);
    assert_eq!(spec.destinations.len(), 6);
    assert_eq!(spec.exports.len(), 11);
    assert_eq!(spec.events.len(), 4);
    assert_eq!(spec.reporting_feeds.len(), 3);
    assert!(spec
        .reporting_feeds
        .iter()
        .all(|f| f.object_type == "email" && f.exports == ["email_suppression"]));

    let ct = spec.destination("clevertap").unwrap();
    assert_eq!(
        (ct.batch_size, ct.max_concurrency, ct.max_attempts),
        (100, 10, 5)
    );
    let google = spec.destination("google").unwrap();
    assert_eq!((google.batch_size, google.max_concurrency), (10_000, 2));
    assert!(matches!(
        &spec.destination("meta").unwrap().settings,
        DestinationSettings::MetaAudience { ad_account_id, .. } if ad_account_id == "1234567890"
    ));

    let carts = spec.export("cart_abandoners").unwrap();
    assert_eq!(carts.source, ExportSource::Segment { segment_id: 101 });
    assert_eq!(
        carts.cadence,
        Cadence {
            realtime: true,
            every_minutes: Some(15)
        }
    );
    assert_eq!(carts.attributes.len(), 9);
    assert_eq!(
        carts.attribute("cart_value_bucket").unwrap().transform,
        Transform::Bucket {
            edges: vec![50.0, 100.0, 150.0]
        }
    );
    let tier_names: Vec<&str> = carts.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tier_names, ["0_1h", "1_4h", "4_24h", "high_value"]);
    assert_eq!(carts.binding("clevertap").unwrap().tier_audiences.len(), 4);
    assert_eq!(carts.binding("meta").unwrap().keys.len(), 9);
    assert_eq!(carts.guard_rails.min_size, Some(50));
    assert_eq!(carts.guard_rails.max_churn_pct, Some(60.0));
    assert_eq!(carts.test_profiles, ["cust_00000", "cust_00001"]);
    assert_eq!(spec.exports_exiting_on("order_placed").count(), 5);
    assert_eq!(
        spec.exports_suppressed_by("recent_purchasers")
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["cart_abandoners", "checkout_starters"]
    );

    let vips = spec.export("lapsed_vips").unwrap();
    assert_eq!(
        vips.attribute("vip_tier").unwrap().transform,
        Transform::Enum {
            values: vec!["gold".into(), "silver".into(), "bronze".into()],
            fallback: Some("other".into())
        }
    );
    assert_eq!(vips.binding("warehouse").unwrap().audience, "lapsed_vips");
    let sup = spec.export("email_suppression").unwrap();
    assert_eq!(sup.source, ExportSource::Action);
    assert_eq!(sup.identity.golden, IdKind::Email);
}

#[test]
fn three_mistakes_file_reports_exactly_three_issues_at_their_lines() {
    let text = include_str!("../../../../config/testdata/three-mistakes.yaml");
    let err = parse_spec(text, "three-mistakes.yaml").unwrap_err();
    let got: Vec<(usize, &str)> = err
        .issues
        .iter()
        .map(|i| (i.line, i.key.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (21, "exports.cart_abandoners.tiers[0].attribute"),
            (26, "exports.cart_abandoners.guard_rails.size"),
            (27, "exports.cart_abandoners.retention_days"),
        ],
        "{err}"
    );
    assert!(err.issues[0]
        .message
        .contains("`cart_total` is not declared"));
    assert!(err.issues[1].message.contains("impossible"));
    assert!(err.issues[2]
        .message
        .contains("unknown key `retention_days`"));
    assert!(err
        .issues
        .iter()
        .all(|i| i.export.as_deref() == Some("cart_abandoners")));
}

#[test]
fn display_prints_one_line_per_issue_with_origin_position_export_and_key() {
    let text = include_str!("../../../../config/testdata/three-mistakes.yaml");
    let err = parse_spec(text, "three-mistakes.yaml").unwrap_err();
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
            lines[2].starts_with(
                "three-mistakes.yaml:27:5: export `cart_abandoners`: `exports.cart_abandoners.retention_days`: unknown key"
            ),
            "{shown}"
        );
}

#[test]
fn every_issue_is_collected_not_just_the_first() {
    let text = BASE
        .replacen("region: us1", "region: mars", 1)
        .replacen("max_churn_pct: 30", "max_churn_pct: 300", 1)
        .replacen("suppress: [buyers]", "suppress: [nobody]", 1)
        .replacen(
            "cadence: {every: 1h}",
            "cadence: {every: 1h, jitter: 5m}",
            1,
        );
    let found = issues(&text);
    assert_eq!(found.len(), 4, "{found:#?}");
    let lines: Vec<usize> = found.iter().map(|i| i.line).collect();
    assert_eq!(
        lines,
        [
            line_of(&text, "region: mars"),
            line_of(&text, "suppress: [nobody]"),
            line_of(&text, "max_churn_pct: 300"),
            line_of(&text, "jitter"),
        ]
    );
}

#[test]
fn unknown_key_is_reported_at_every_level() {
    one_issue_at(
        &edited("version: 1", "version: 1\ncolour: blue"),
        "colour",
        "unknown key `colour`",
    );
    one_issue_at(
        &edited("location: ./out", "location: ./out\n    region: eu9"),
        "region: eu9",
        "unknown key `region`",
    );
    one_issue_at(
        &edited("min_match_rate: 0.5}", "min_match_rate: 0.5, max_size: 9}"),
        "max_size: 9",
        "unknown key `max_size`",
    );
    let issue = one_issue_at(
        &edited(
            "google: {audience: \"222\"}",
            "google: {audience: \"222\", colour: red}",
        ),
        "colour",
        "unknown key",
    );
    assert_eq!(issue.key, "exports.carts.destinations.google.colour");
    assert_eq!(issue.export.as_deref(), Some("carts"));
}

#[test]
fn wrong_type_is_reported_with_what_was_found() {
    one_issue_at(
        &edited("location: ./out", "location: ./out\n    batch_size: many"),
        "batch_size",
        "whole number",
    );
    one_issue_at(
        &edited("realtime: true, every", "realtime: yes please, every"),
        "yes please",
        "`true` or `false`",
    );
    one_issue_at(
        &edited("ad_account_id: \"123\"", "ad_account_id: 123"),
        "ad_account_id",
        "quote numeric ids",
    );
    one_issue_at(
        &edited("suppress: [buyers]", "suppress: buyers"),
        "suppress: buyers",
        "expected a list",
    );
}

#[test]
fn missing_required_key_is_reported() {
    one_issue_at(
        &edited("    location: ./out\n", ""),
        "kind: warehouse",
        "missing required key `location`",
    );
    let text = edited(
        "    mode: membership\n    cadence: {every: 1h}",
        "    cadence: {every: 1h}",
    );
    let issue = one_issue_at(&text, "source: {segment: 2}", "missing required key `mode`");
    assert_eq!(issue.key, "exports.buyers.mode");
}

#[test]
fn version_other_than_1_is_refused() {
    one_issue_at(
        &edited("version: 1", "version: 2"),
        "version: 2",
        "unsupported version 2",
    );
}

#[test]
fn invalid_yaml_is_one_issue_with_position() {
    let text = edited("    region: us1", "    region: [us1");
    let found = issues(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.starts_with("invalid YAML"));
    assert!(found[0].line >= line_of(&text, "region: [us1"));
}

#[test]
fn value_tier_attribute_must_be_declared() {
    one_issue_at(
        &edited("attribute: cart_value", "attribute: cart_total"),
        "cart_total",
        "not declared",
    );
}

#[test]
fn value_tier_attribute_must_have_a_numeric_transform() {
    let text = edited(
        "cart_value: number",
        "cart_value: {transform: {bucket: [50, 100]}}",
    );
    one_issue_at(&text, "attribute: cart_value", "transform `bucket`");
}

#[test]
fn attribute_backed_match_key_needs_the_attribute_declared() {
    let text = edited(
        "keys: [email, phone, first_name]",
        "keys: [email, phone, first_name, city]",
    );
    one_issue_at(
        &text,
        "first_name, city]",
        "key `city` reads the export attribute `city`",
    );
}

#[test]
fn meta_without_reachable_email_phone_or_id_is_refused() {
    let text = edited("identity: email", "identity: cio_id");
    one_issue_at(
        &text,
        "meta: {audience: \"333\"}",
        "email, phone or extern_id",
    );
}

#[test]
fn clevertap_needs_id_email_or_phone() {
    let text = edited("identity: email", "identity: cio_id").replacen(
        "meta: {audience: \"333\"}",
        "ct: {audience: cio_buyers}",
        1,
    );
    one_issue_at(
        &text,
        "ct: {audience: cio_buyers}",
        "needs the person's id, email or phone",
    );
}

#[test]
fn listed_identifier_key_must_be_reachable_from_identity() {
    let text = edited(
        "meta: {audience: \"333\"}",
        "meta: {audience: \"333\", keys: [email, phone]}",
    );
    one_issue_at(
        &text,
        "keys: [email, phone]",
        "key `phone` is never available",
    );
}

#[test]
fn google_refuses_keys_it_does_not_take_and_partial_addresses() {
    let text = edited(
        "google: {audience: \"222\"}",
        "google: {audience: \"222\", keys: [email, city]}",
    );
    // city: not a Google key, and not a declared attribute either.
    let found = issues(&text);
    assert!(
        found
            .iter()
            .any(|i| i.message.contains("does not take `city`")),
        "{found:#?}"
    );
    let text = edited(
        "google: {audience: \"222\"}",
        "google: {audience: \"222\", keys: [email, first_name]}",
    );
    one_issue_at(
        &text,
        "keys: [email, first_name]",
        "missing: last_name, country, zip",
    );
}

#[test]
fn match_keys_on_a_non_ad_destination_are_refused() {
    let text = edited(
        "ct: {audience: cio_carts,",
        "ct: {keys: [email], audience: cio_carts,",
    );
    one_issue_at(&text, "ct: {keys", "ad platforms only");
}

#[test]
fn impossible_size_band_is_refused() {
    one_issue_at(
        &edited("size: [10, 1000]", "size: [1000, 10]"),
        "size: [1000, 10]",
        "min is above max",
    );
}

#[test]
fn churn_outside_0_to_100_is_refused() {
    one_issue_at(
        &edited("max_churn_pct: 30", "max_churn_pct: 130"),
        "max_churn_pct",
        "outside 0–100",
    );
    one_issue_at(
        &edited("max_churn_pct: 30", "max_churn_pct: -1"),
        "max_churn_pct",
        "outside 0–100",
    );
}

#[test]
fn match_rate_outside_0_to_1_is_refused() {
    one_issue_at(
        &edited("min_match_rate: 0.5", "min_match_rate: 50"),
        "min_match_rate",
        "outside 0–1",
    );
}

#[test]
fn size_band_on_an_action_only_export_is_refused() {
    let text = edited(
        "    cadence: {every: 1h}\n    identity: email",
        "    cadence: {realtime: true}\n    identity: email\n    guard_rails: {size: [1, 10]}",
    )
    .replacen("source: {segment: 2}", "source: action", 1);
    one_issue_at(&text, "size: [1, 10]", "action-only");
}

#[test]
fn batch_interval_on_an_action_only_export_is_refused() {
    let text = edited("source: {segment: 2}", "source: action");
    one_issue_at(&text, "cadence: {every: 1h}", "no batch source");
}

#[test]
fn export_that_never_runs_is_refused() {
    let text = edited("cadence: {every: 1h}", "cadence: {realtime: false}");
    one_issue_at(&text, "realtime: false", "never run");
}

#[test]
fn reference_to_undeclared_destination_is_refused() {
    let text = edited("meta: {audience: \"333\"}", "tiktok: {audience: \"333\"}");
    one_issue_at(&text, "tiktok", "destination `tiktok` is not declared");
}

#[test]
fn suppressing_an_undeclared_export_is_refused() {
    one_issue_at(
        &edited("suppress: [buyers]", "suppress: [buyerz]"),
        "buyerz",
        "export `buyerz` is not declared",
    );
}

#[test]
fn export_suppressing_itself_is_refused() {
    one_issue_at(
        &edited("suppress: [buyers]", "suppress: [carts]"),
        "suppress: [carts]",
        "cannot suppress itself",
    );
}

#[test]
fn reporting_feed_to_undeclared_export_is_refused() {
    let text = format!("{BASE}reporting_feeds:\n  email.bounced: [nobody]\n");
    one_issue_at(&text, "email.bounced", "export `nobody` is not declared");
    let text = format!("{BASE}reporting_feeds:\n  letter.bounced: [buyers]\n");
    one_issue_at(&text, "letter.bounced", "<object_type>.<metric>");
}

#[test]
fn tier_audience_for_undeclared_tier_is_refused() {
    let text = edited("tier_audiences: {fresh:", "tier_audiences: {stale:");
    one_issue_at(&text, "stale", "tier `stale` is not declared");
}

#[test]
fn batch_size_over_the_kind_maximum_or_zero_is_refused() {
    let text = edited(
        "passcode_env: CT_PASSCODE",
        "passcode_env: CT_PASSCODE\n    batch_size: 5000",
    );
    one_issue_at(&text, "batch_size: 5000", "hard maximum of 1000");
    let text = edited("location: ./out", "location: ./out\n    batch_size: 0");
    one_issue_at(&text, "batch_size: 0", "at least 1");
}

#[test]
fn clevertap_concurrency_over_the_account_cap_is_refused() {
    let text = edited(
        "passcode_env: CT_PASSCODE",
        "passcode_env: CT_PASSCODE\n    max_concurrency: 20",
    );
    one_issue_at(&text, "max_concurrency: 20", "account cap of 15");
}

#[test]
fn max_requests_per_second_is_read_and_must_be_positive() {
    let text = edited(
        "passcode_env: CT_PASSCODE",
        "passcode_env: CT_PASSCODE\n    max_requests_per_second: 2.5",
    );
    let spec = parse_spec(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let limits: Vec<Option<f64>> = spec
        .destinations
        .values()
        .map(|d| d.max_requests_per_second)
        .collect();
    assert!(limits.contains(&Some(2.5)), "{limits:?}");
    assert!(limits.contains(&None), "unset stays unlimited: {limits:?}");
    let text = edited(
        "passcode_env: CT_PASSCODE",
        "passcode_env: CT_PASSCODE\n    max_requests_per_second: 0",
    );
    one_issue_at(&text, "max_requests_per_second: 0", "must be above 0");
}

#[test]
fn age_tier_with_min_not_below_max_is_refused() {
    let text = edited("min_age: 0, max_age: 1h", "min_age: 2h, max_age: 1h");
    one_issue_at(&text, "min_age: 2h", "min_age 2h must be below max_age 1h");
}

#[test]
fn duplicate_tier_names_are_refused() {
    let text = edited("name: rich,", "name: fresh,");
    one_issue_at(&text, "name: fresh, attribute", "used twice");
}

#[test]
fn overlapping_age_tiers_are_refused() {
    let text = edited(
        "      - {name: rich,",
        "      - {name: older, min_age: 30m, max_age: 2h}\n      - {name: rich,",
    );
    one_issue_at(&text, "name: older", "overlaps age tier `fresh`");
}

#[test]
fn secret_literal_is_refused_naming_the_env_key() {
    let text = edited("passcode_env: CT_PASSCODE", "passcode: hunter2");
    let found = issues(&text);
    let secret = found
        .iter()
        .find(|i| i.line == line_of(&text, "passcode: hunter2"))
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(
        secret.message.contains("`passcode_env`"),
        "{}",
        secret.message
    );
    assert!(!secret.message.contains("hunter2"));
    // The env key is then missing too: two issues in all.
    assert_eq!(found.len(), 2, "{found:#?}");
}

#[test]
fn secret_like_key_elsewhere_says_only_env_names_are_allowed() {
    let text = edited("location: ./out", "location: ./out\n    api_key: abc");
    one_issue_at(&text, "api_key", "only `*_env` keys");
}

#[test]
fn env_key_holding_something_else_than_a_variable_name_is_refused() {
    let text = edited(
        "access_token_env: META_TOKEN",
        "access_token_env: EAAB-xyz.secret",
    );
    let issue = one_issue_at(&text, "EAAB", "must name an environment variable");
    assert!(!issue.message.contains("EAAB"));
}

#[test]
fn events_mode_needs_an_events_source() {
    let text = edited(
        "    mode: membership\n    cadence: {every: 1h}",
        "    mode: conversions\n    cadence: {every: 1h}",
    );
    one_issue_at(&text, "mode: conversions", "events");
}

#[test]
fn durations_and_transforms_read_their_short_forms() {
    assert_eq!(parse_duration_ms("15m"), Some(900_000));
    assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
    assert_eq!(parse_duration_ms("2d"), Some(172_800_000));
    assert_eq!(parse_duration_ms("500ms"), Some(500));
    assert_eq!(parse_duration_ms("0"), Some(0));
    assert_eq!(parse_duration_ms("15"), None);
    assert_eq!(parse_duration_ms("1.5h"), None);
    let text = edited(
        "first_name:\n",
        "first_name:\n      tier: {transform: {enum: [gold, silver]}}\n",
    );
    let spec = parse_spec(&text, "spec.yaml").unwrap();
    assert_eq!(
        spec.export("carts")
            .unwrap()
            .attribute("tier")
            .unwrap()
            .transform,
        Transform::Enum {
            values: vec!["gold".into(), "silver".into()],
            fallback: None
        }
    );
    let text = edited(
        "cart_value: number",
        "cart_value: {transform: {bucket: [100, 50]}}",
    );
    assert!(issues(&text)
        .iter()
        .any(|i| i.message.contains("strictly ascending")));
}

#[test]
fn config_hash_is_stable_and_changes_with_one_byte() {
    let a = parse_spec(BASE, "a").unwrap().config_hash;
    let b = parse_spec(BASE, "b").unwrap().config_hash;
    assert_eq!(a, b);
    assert_eq!(a.len(), 64);
    assert_eq!(a, hex::encode(Sha256::digest(BASE.as_bytes())));
    let changed = parse_spec(&BASE.replacen("every: 15m", "every: 16m", 1), "a")
        .unwrap()
        .config_hash;
    assert_ne!(a, changed);
}

#[test]
fn load_spec_file_reads_the_file_and_reports_an_unreadable_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, BASE).unwrap();
    assert!(load_spec_file(&path).is_ok());
    let err = load_spec_file(&dir.path().join("missing.yaml")).unwrap_err();
    assert_eq!(err.issues.len(), 1);
    assert_eq!(err.issues[0].line, 0);
    assert!(err
        .to_string()
        .contains("missing.yaml: cannot read the file"));
}

#[test]
fn odd_documents_are_issues_never_panics() {
    for text in [
        "",
        "# only a comment\n",
        "- a\n- b\n",
        "42",
        "version: 1\n---\nversion: 1\n",
        "!!map {}",
    ] {
        let err = parse_spec(text, "odd.yaml").unwrap_err();
        assert!(!err.issues.is_empty(), "{text:?}");
    }
    let err = parse_spec("version: 1\n", "odd.yaml").unwrap_err();
    let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["destinations", "exports"]);
}

#[test]
fn batch_defaults_and_maxima_per_kind() {
    let cases = [
        (DestinationKind::Clevertap, 100, 1_000),
        (DestinationKind::MetaAudience, 10_000, 10_000),
        (DestinationKind::GoogleCustomerMatch, 10_000, 100_000),
        (DestinationKind::Warehouse, 5_000, 100_000),
        (DestinationKind::Webhook, 500, 10_000),
    ];
    for (kind, default, max) in cases {
        assert_eq!(default_batch_size(kind), default);
        assert_eq!(max_batch_size(kind), max);
    }
}

/// BASE plus an attributes export bound to `bindings` (YAML lines under
/// `destinations:`).
fn with_attributes_export(bindings: &str) -> String {
    format!(
        "{BASE}  profile_sync:\n    source: {{segment: 3}}\n    mode: attributes\n    cadence: {{every: 1h}}\n    identity: {{golden: id, fallbacks: [email]}}\n    attributes:\n      plan: lowercase\n    destinations:\n{bindings}"
    )
}

#[test]
fn attributes_export_binds_clevertap_warehouse_and_webhook_without_an_audience() {
    let text = with_attributes_export("      ct:\n      wh:\n");
    let spec = parse_spec(&text, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    let export = spec.export("profile_sync").unwrap();
    assert_eq!(export.mode, ExportMode::Attributes);
    // No membership property to name: the label is the export's name.
    assert_eq!(export.binding("ct").unwrap().audience, "profile_sync");
    assert_eq!(export.binding("wh").unwrap().audience, "profile_sync");
}

#[test]
fn attributes_export_refuses_ad_platforms() {
    let text = with_attributes_export("      ct:\n      meta: {audience: \"444\"}\n");
    let issue = one_issue_at(&text, "meta: {audience: \"444\"}", "no attribute-only sync");
    assert!(issue.message.contains("meta_audience"), "{issue:#?}");
    assert!(
        issue.message.contains("clevertap, warehouse and webhook"),
        "{issue:#?}"
    );
    let text = with_attributes_export("      google: {audience: \"555\"}\n");
    one_issue_at(
        &text,
        "google: {audience: \"555\"}",
        "google_customer_match",
    );
}

#[test]
fn clevertap_max_event_properties_defaults_to_256_and_is_bounded() {
    let spec = parse_spec(BASE, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    let limit = |spec: &ActivationSpec| match &spec.destination("ct").unwrap().settings {
        DestinationSettings::Clevertap {
            max_event_properties,
            ..
        } => *max_event_properties,
        other => panic!("{other:?}"),
    };
    // CleverTap's limits page: 256 event properties per event type.
    assert_eq!(limit(&spec), 256);
    let lowered = edited(
        "    passcode_env: CT_PASSCODE\n",
        "    passcode_env: CT_PASSCODE\n    max_event_properties: 100\n",
    );
    let spec = parse_spec(&lowered, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(limit(&spec), 100);
    let zero = edited(
        "    passcode_env: CT_PASSCODE\n",
        "    passcode_env: CT_PASSCODE\n    max_event_properties: 0\n",
    );
    one_issue_at(&zero, "max_event_properties: 0", "between 1 and 1000");
}

/// BASE with a webhook destination `hook` holding `lines` (indented 4).
fn with_webhook(lines: &str) -> String {
    edited(
        "  wh:\n    kind: warehouse\n",
        &format!("  hook:\n    kind: webhook\n    secret_env: HOOK_SECRET\n{lines}  wh:\n    kind: warehouse\n"),
    )
}

#[test]
fn webhook_to_plain_http_or_a_private_address_is_refused_at_its_line() {
    for (line, says) in [
        ("    url: http://hooks.example.com/x\n", "must be https://"),
        (
            "    url: https://169.254.169.254/latest/meta-data\n",
            "not a public address",
        ),
        ("    url: https://10.0.0.8/hook\n", "not a public address"),
        ("    url: https://localhost:9000/hook\n", "is this machine"),
        ("    url: https://[::1]/hook\n", "not a public address"),
    ] {
        let text = with_webhook(line);
        let issue = one_issue_at(&text, line.trim_end(), says);
        assert!(
            issue.message.contains("allow_private_network"),
            "{issue:#?}"
        );
    }
    // base_url replaces url, so it is the address judged.
    let text =
        with_webhook("    url: https://hooks.example.com/x\n    base_url: http://127.0.0.1:9000\n");
    one_issue_at(
        &text,
        "base_url: http://127.0.0.1:9000",
        "webhook base_url must be https://",
    );
}

#[test]
fn webhook_to_a_local_receiver_passes_with_allow_private_network() {
    let text =
        with_webhook("    url: http://127.0.0.1:9000/hook\n    allow_private_network: true\n");
    let spec = parse_spec(&text, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        spec.destination("hook").map(|d| &d.settings),
        Some(DestinationSettings::Webhook {
            allow_private_network: true,
            ..
        })
    ));
    let text = with_webhook("    url: https://hooks.example.com/dataout\n");
    assert!(issues(&text).is_empty(), "{:#?}", issues(&text));
}

#[test]
fn a_secret_pasted_into_the_spec_is_refused_and_never_echoed() {
    let secret = "EAABsbCS1iHgBAKZCZB7xx1234567890abcdef";
    // In the `_env` key's place: refused as not a variable name.
    let text = edited(
        "access_token_env: META_TOKEN",
        &format!("access_token_env: {secret}"),
    );
    let issue = one_issue_at(&text, secret, "not hold the secret itself");
    assert!(!format!("{issue:?}").contains(secret), "{issue:?}");
    // Under the key without `_env`: refused, pointing at the `_env` key.
    let text = edited(
        "access_token_env: META_TOKEN",
        &format!("access_token: {secret}"),
    );
    let found = issues(&text);
    assert!(
        found
            .iter()
            .any(|i| i.message.contains("secrets never live in the spec file")),
        "{found:#?}"
    );
    assert!(
        found.iter().all(|i| !format!("{i:?}").contains(secret)),
        "{found:#?}"
    );
}

#[test]
fn customer_match_takes_the_data_manager_consent_keys() {
    let text = edited(
        "    consent_ad_personalization: granted\n",
        "    consent_ad_personalization: unspecified\n    consent_attribute: ads_consent\n    country_attribute: country\n    unknown_country_is_eea: false\n",
    );
    let spec = parse_spec(&text, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    match &spec.destination("google").unwrap().settings {
        DestinationSettings::GoogleCustomerMatch { consent, .. } => assert_eq!(
            consent,
            &GoogleConsentSpec {
                ad_user_data: ConsentStatus::Granted,
                ad_personalization: ConsentStatus::Unspecified,
                attribute: Some("ads_consent".into()),
                country_attribute: Some("country".into()),
                unknown_country_is_eea: false,
            }
        ),
        other => panic!("{other:?}"),
    }
    let text = edited("    consent_ad_user_data: granted\n", "");
    one_issue_at(
        &text,
        "kind: google_customer_match",
        "missing required key `consent_ad_user_data`",
    );
}

#[test]
fn customer_match_refuses_denied_consent_google_would_refuse_the_job() {
    let text = edited(
        "consent_ad_user_data: granted",
        "consent_ad_user_data: denied",
    );
    one_issue_at(
        &text,
        "consent_ad_user_data: denied",
        "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
    );
}

mod conversions;

mod google;

#[test]
fn clevertap_region_outside_the_documented_list_is_refused_naming_destination_value_and_list() {
    // `us2` looks like a region but CleverTap has none: refused at load,
    // not sent to a host that does not resolve.
    let text = BASE.replacen("region: us1", "region: us2", 1);
    one_issue_at(&text, "region: us2", "`us2`");
    let shown = parse_spec(&text, "spec.yaml")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(shown.contains("destinations.ct.region"), "{shown}");
    for region in ["in1", "sg1", "us1", "aps3", "mec1", "eu1"] {
        assert!(shown.contains(region), "{region} missing from {shown}");
    }
}
