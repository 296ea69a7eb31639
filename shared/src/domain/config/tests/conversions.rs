//! The loader on conversions: Meta CAPI and Google conversion-action
//! settings and bindings, the event taxonomy, and lookalike values.

use super::*;

// ----- meta_conversions -----

/// BASE with a `capi` destination (its settings lines given) and an export
/// of `mode` from the `order_placed` events binding it as `binding`.
fn with_capi(settings: &str, mode: &str, binding: &str) -> String {
    let base = BASE.replacen(
        "  wh:\n    kind: warehouse\n",
        &format!("  capi:\n    kind: meta_conversions\n{settings}  wh:\n    kind: warehouse\n"),
        1,
    );
    let source = if mode == "events" || mode == "conversions" {
        "{events: [order_placed]}"
    } else {
        "{segment: 4}"
    };
    format!(
        "{base}  purchases:\n    source: {source}\n    mode: {mode}\n    cadence: {{realtime: true}}\n    identity: {{golden: id, fallbacks: [email, phone]}}\n    destinations:\n      capi:{binding}\n{ORDER_TAXONOMY}"
    )
}

/// The taxonomy entry the events and conversions exports above forward.
const ORDER_TAXONOMY: &str = "events:\n  order_placed:\n    properties: {order_id: , total: number, currency: }\n    value: total\n    currency: currency\n    order_id: order_id\n";

const CAPI_SETTINGS: &str = "    pixel_id: \"555000111\"\n    access_token_env: META_CAPI_TOKEN\n";

fn capi_settings(spec: &ActivationSpec) -> DestinationSettings {
    spec.destination("capi").unwrap().settings.clone()
}

#[test]
fn meta_conversions_defaults_version_action_source_and_batch() {
    let text = with_capi(CAPI_SETTINGS, "conversions", " {audience: Purchase}");
    let spec = parse_spec(&text, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    let dest = spec.destination("capi").unwrap();
    assert_eq!(dest.kind, DestinationKind::MetaConversions);
    assert_eq!(dest.batch_size, 1000);
    assert_eq!(dest.max_concurrency, 4);
    assert_eq!(
        capi_settings(&spec),
        DestinationSettings::MetaConversions {
            api_version: crate::destinations::meta_audience::DEFAULT_API_VERSION.into(),
            pixel_id: "555000111".into(),
            access_token_env: "META_CAPI_TOKEN".into(),
            action_source: "system_generated".into(),
            test_event_code_env: None,
        }
    );
    assert_eq!(
        spec.export("purchases")
            .unwrap()
            .binding("capi")
            .unwrap()
            .audience,
        "Purchase"
    );
}

#[test]
fn meta_conversions_reads_every_setting() {
    let settings = format!(
        "{CAPI_SETTINGS}    api_version: v26.0\n    action_source: email\n    test_event_code_env: META_TEST_CODE\n    batch_size: 500\n"
    );
    let spec = parse_spec(&with_capi(&settings, "events", ""), "spec.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.destination("capi").unwrap().batch_size, 500);
    assert_eq!(
        capi_settings(&spec),
        DestinationSettings::MetaConversions {
            api_version: "v26.0".into(),
            pixel_id: "555000111".into(),
            access_token_env: "META_CAPI_TOKEN".into(),
            action_source: "email".into(),
            test_event_code_env: Some("META_TEST_CODE".into()),
        }
    );
    // No audience: each event goes under its source name.
    assert_eq!(
        spec.export("purchases")
            .unwrap()
            .binding("capi")
            .unwrap()
            .audience,
        ""
    );
}

#[test]
fn meta_conversions_batch_size_is_capped_at_1000() {
    let settings = format!("{CAPI_SETTINGS}    batch_size: 1001\n");
    one_issue_at(
        &with_capi(&settings, "events", ""),
        "batch_size: 1001",
        "hard maximum of 1000",
    );
}

#[test]
fn meta_conversions_pixel_id_must_be_digits() {
    let settings = "    pixel_id: px-12\n    access_token_env: META_CAPI_TOKEN\n";
    one_issue_at(
        &with_capi(settings, "events", ""),
        "pixel_id: px-12",
        "digits only",
    );
    let settings = "    access_token_env: META_CAPI_TOKEN\n";
    let found = issues(&with_capi(settings, "events", ""));
    assert!(
        found.iter().any(|i| i.message.contains("pixel_id")),
        "{found:#?}"
    );
}

#[test]
fn meta_conversions_refuses_action_sources_we_cannot_satisfy() {
    let app = format!("{CAPI_SETTINGS}    action_source: app\n");
    let issue = one_issue_at(
        &with_capi(&app, "events", ""),
        "action_source: app",
        "app_data",
    );
    assert!(issue.message.contains("cannot be sent"), "{issue:#?}");
    let bm = format!("{CAPI_SETTINGS}    action_source: business_messaging\n");
    one_issue_at(
        &with_capi(&bm, "events", ""),
        "action_source: business_messaging",
        "messaging_channel",
    );
    let odd = format!("{CAPI_SETTINGS}    action_source: billboard\n");
    one_issue_at(
        &with_capi(&odd, "events", ""),
        "action_source: billboard",
        "unknown action_source",
    );
    let web = format!("{CAPI_SETTINGS}    action_source: website\n");
    assert!(issues(&with_capi(&web, "events", "")).is_empty());
}

#[test]
fn meta_conversions_api_version_is_checked_like_meta_audience() {
    let settings = format!("{CAPI_SETTINGS}    api_version: \"27\"\n");
    one_issue_at(
        &with_capi(&settings, "events", ""),
        "api_version: \"27\"",
        "like `v27.0`",
    );
}

#[test]
fn membership_and_attributes_exports_may_not_bind_meta_conversions() {
    for mode in ["membership", "attributes"] {
        let text = with_capi(CAPI_SETTINGS, mode, " {audience: Purchase}");
        let found = issues(&text);
        assert!(
            found
                .iter()
                .any(|i| i.message.contains("meta_conversions")
                    && i.message.contains("takes events")),
            "{mode}: {found:#?}"
        );
    }
}

#[test]
fn meta_conversions_event_name_is_at_most_50_characters() {
    let long = "X".repeat(51);
    let text = with_capi(
        CAPI_SETTINGS,
        "conversions",
        &format!(" {{audience: {long}}}"),
    );
    one_issue_at(&text, &long, "1 to 50 characters");
}

/// A conversions export bound to Google (Data Manager `events:ingest`).
const GOOGLE_CONVERSIONS: &str = r#"version: 1
destinations:
  gdm:
    kind: google_data_manager
    operating_account_id: "1234567890"
    consent_ad_user_data: granted
    consent_ad_personalization: granted
    access_token_env: G_TOKEN
  ads:
    kind: google_customer_match
    api_version: v26
    customer_id: "1234567890"
    developer_token_env: G_DEV
    consent_ad_user_data: granted
    consent_ad_personalization: granted
    access_token_env: G_TOKEN
exports:
  purchases:
    source: {events: [order_placed]}
    mode: conversions
    cadence: {realtime: true}
    identity: {golden: email, fallbacks: [phone]}
    destinations:
      gdm: {audience: "555000111"}
events:
  order_placed:
    properties: {order_id: , total: number, currency: }
    value: total
    currency: currency
    order_id: order_id
"#;

#[test]
fn google_conversions_binding_takes_the_conversion_action_id() {
    let spec = parse_spec(GOOGLE_CONVERSIONS, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    let binding = spec.export("purchases").and_then(|e| e.binding("gdm"));
    assert_eq!(binding.map(|b| b.audience.as_str()), Some("555000111"));
}

#[test]
fn google_conversions_binding_refuses_a_conversion_action_id_that_is_not_digits() {
    let text = GOOGLE_CONVERSIONS.replace(
        r#"gdm: {audience: "555000111"}"#,
        "gdm: {audience: purchase_action}",
    );
    one_issue_at(
        &text,
        "purchase_action",
        "conversion action id, digits only",
    );
}

#[test]
fn google_conversions_binding_needs_an_audience() {
    let text =
        GOOGLE_CONVERSIONS.replace(r#"gdm: {audience: "555000111"}"#, "gdm: {keys: [email]}");
    one_issue_at(
        &text,
        "gdm: {keys",
        "needs `audience`: the Google Ads conversion action id",
    );
}

#[test]
fn google_customer_match_cannot_take_conversions() {
    let text = GOOGLE_CONVERSIONS.replace(
        r#"gdm: {audience: "555000111"}"#,
        r#"ads: {audience: "555000111"}"#,
    );
    one_issue_at(&text, r#"ads: {audience"#, "takes membership only");
}

// ----- the event taxonomy -----

#[test]
fn the_taxonomy_reads_required_properties_allow_list_and_conversion_fields() {
    let text = format!(
        "{GOOGLE_CONVERSIONS_BODY}events:\n  Placed Order:\n    required: [order_id, total, currency]\n    properties:\n      order_id:\n      total: number\n      currency: {{from: currency_code}}\n      coupon: lowercase\n    value: total\n    currency: currency\n    order_id: order_id\n"
    );
    let spec = parse_spec(&text, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    let ev = &spec.events["Placed Order"];
    assert_eq!(ev.required, ["order_id", "total", "currency"]);
    let props: Vec<(&str, &str)> = ev
        .properties
        .iter()
        .map(|p| (p.name.as_str(), p.from.as_str()))
        .collect();
    assert_eq!(
        props,
        [
            ("order_id", "order_id"),
            ("total", "total"),
            ("currency", "currency_code"),
            ("coupon", "coupon")
        ]
    );
    assert_eq!(ev.value.as_deref(), Some("total"));
    assert_eq!(ev.currency.as_deref(), Some("currency"));
    assert_eq!(ev.order_id.as_deref(), Some("order_id"));
}

/// GOOGLE_CONVERSIONS forwarding `Placed Order`, with no taxonomy yet.
const GOOGLE_CONVERSIONS_BODY: &str = r#"version: 1
destinations:
  gdm:
    kind: google_data_manager
    operating_account_id: "1234567890"
    consent_ad_user_data: granted
    consent_ad_personalization: granted
    access_token_env: G_TOKEN
exports:
  purchases:
    source: {events: [Placed Order]}
    mode: conversions
    cadence: {realtime: true}
    identity: {golden: email, fallbacks: [phone]}
    destinations:
      gdm: {audience: "555000111"}
"#;

#[test]
fn an_events_export_naming_an_undeclared_event_is_refused_at_its_source() {
    one_issue_at(
        GOOGLE_CONVERSIONS_BODY,
        "source: {events: [Placed Order]}",
        "event `Placed Order` is not declared under `events:`",
    );
}

#[test]
fn a_required_property_off_the_allow_list_is_refused_at_its_line() {
    let text = format!(
        "{GOOGLE_CONVERSIONS_BODY}events:\n  Placed Order:\n    required: [order_id, total]\n    properties: {{total: number, currency: }}\n    value: total\n    currency: currency\n"
    );
    let found = issues(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].line, line_of(&text, "required: [order_id"));
    assert_eq!(found[0].key, "events.Placed Order.required[0]");
    assert!(
        found[0]
            .message
            .contains("`order_id` is not in `properties`"),
        "{:?}",
        found[0].message
    );
}

#[test]
fn a_conversions_export_needs_a_value_and_currency_for_its_events() {
    let text = format!(
        "{GOOGLE_CONVERSIONS_BODY}events:\n  Placed Order:\n    properties: {{total: number}}\n    value: total\n"
    );
    one_issue_at(
        &text,
        "source: {events: [Placed Order]}",
        "needs `value` and `currency`",
    );
    let off_list = format!(
        "{GOOGLE_CONVERSIONS_BODY}events:\n  Placed Order:\n    properties: {{total: number, currency: }}\n    value: amount\n    currency: currency\n"
    );
    one_issue_at(
        &off_list,
        "value: amount",
        "`amount` is not in `properties`",
    );
}

#[test]
fn an_unknown_key_in_a_taxonomy_entry_is_refused() {
    let text = format!(
        "{GOOGLE_CONVERSIONS_BODY}events:\n  Placed Order:\n    properties: {{total: number, currency: }}\n    value: total\n    currency: currency\n    requires: [total]\n"
    );
    one_issue_at(&text, "requires: [total]", "unknown key `requires`");
}

#[test]
fn lookalike_value_is_a_meta_audience_key_read_from_its_attribute_and_google_refuses_it() {
    let text = include_str!("../../../../../config/exports.example.yaml");
    let spec = parse_spec(text, "exports.example.yaml").unwrap_or_else(|e| panic!("{e}"));
    let seed = spec.export("vip_lookalike_seed").unwrap();
    assert!(seed
        .binding("meta")
        .is_some_and(|b| b.keys.contains(&MatchKey::LookalikeValue)));
    // On Google the same key is refused at its line.
    let google = text.replace(
        "        audience: \"7000000105\"\n",
        "        audience: \"7000000105\"\n        keys: [email, lookalike_value]\n",
    );
    assert_ne!(google, text);
    let found = issues(&google);
    assert!(
        found.iter().any(
            |i| i.line == line_of(&google, "keys: [email, lookalike_value]")
                && i.message.contains("does not take `lookalike_value`")
        ),
        "{found:#?}"
    );
    // Without the attribute it reads, the key is refused too.
    let undeclared = text.replace(
        "      lookalike_value: {from: lifetime_value, transform: number}\n",
        "      ltv: {from: lifetime_value, transform: number}\n",
    );
    assert_ne!(undeclared, text);
    one_issue_at(
        &undeclared,
        "keys: [email, phone, extern_id, lookalike_value]",
        "reads the export attribute `lookalike_value`",
    );
}

#[test]
fn a_linked_account_is_refused_for_advertisers_and_names_the_login_account_instead() {
    let text = GOOGLE_CONVERSIONS.replacen(
        "    operating_account_id: \"1234567890\"\n",
        "    operating_account_id: \"1234567890\"\n    linked_account_id: \"1122334455\"\n",
        1,
    );
    one_issue_at(
        &text,
        "linked_account_id",
        "linked_account_id is for data partners only",
    );
}

#[test]
fn data_manager_status_is_first_read_thirty_minutes_after_sending_by_default() {
    let spec = parse_spec(GOOGLE_CONVERSIONS, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    let settings = spec
        .destinations
        .values()
        .map(|d| &d.settings)
        .find(|s| matches!(s, DestinationSettings::GoogleDataManager { .. }))
        .cloned();
    match settings {
        Some(DestinationSettings::GoogleDataManager {
            status_poll_after_ms,
            ..
        }) => assert_eq!(status_poll_after_ms, 30 * 60 * 1000),
        other => panic!("no data manager destination: {other:?}"),
    }
}
