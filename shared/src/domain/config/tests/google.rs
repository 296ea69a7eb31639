//! The loader on the Google destinations' identity settings.

use super::*;

/// A Data Manager destination (its optional lines given) and one audience
/// bound to it.
fn data_manager(extra: &str) -> String {
    format!(
        r#"version: 1
destinations:
  gdm:
    kind: google_data_manager
    operating_account_id: "1234567890"
    consent_ad_user_data: granted
    consent_ad_personalization: granted
    access_token_env: G_TOKEN
{extra}exports:
  carts:
    source: {{segment: 1}}
    mode: membership
    cadence: {{realtime: true}}
    identity: {{golden: email, fallbacks: [phone]}}
    destinations:
      gdm: {{audience: "7000000101"}}
"#
    )
}

/// (gmail_remove_dots, gmail_strip_plus_suffix) of the `gdm` destination.
fn gmail_flags(text: &str) -> (bool, bool) {
    let spec = parse_spec(text, "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    match spec.destination("gdm").map(|d| &d.settings) {
        Some(DestinationSettings::GoogleDataManager {
            gmail_remove_dots,
            gmail_strip_plus_suffix,
            ..
        }) => (*gmail_remove_dots, *gmail_strip_plus_suffix),
        other => panic!("{other:?}"),
    }
}

#[test]
fn data_manager_strips_the_gmail_plus_suffix_by_default() {
    assert_eq!(gmail_flags(&data_manager("")), (true, true));
}

#[test]
fn data_manager_settings_stored_without_the_plus_suffix_flag_strip_it() {
    // A resolved spec written before the flag existed reads as the default.
    let spec = parse_spec(&data_manager(""), "spec.yaml").unwrap_or_else(|e| panic!("{e}"));
    let settings = spec
        .destination("gdm")
        .map(|d| d.settings.clone())
        .unwrap_or_else(|| panic!("no gdm"));
    let mut stored = serde_json::to_value(&settings).unwrap_or_else(|e| panic!("{e}"));
    let removed = stored
        .as_object_mut()
        .and_then(|o| o.remove("gmail_strip_plus_suffix"));
    assert!(removed.is_some(), "{stored}");
    let read: DestinationSettings =
        serde_json::from_value(stored).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        read,
        DestinationSettings::GoogleDataManager {
            gmail_strip_plus_suffix: true,
            ..
        }
    ));
}
