//! Helpers of the Checker: reading YAML nodes, the keys each destination
//! kind accepts, and the name and duration formats of the spec.

use super::*;

pub(super) fn is_null(node: &Node<'_>) -> bool {
    matches!(node.data, YamlData::Value(Scalar::Null))
}

pub(super) fn as_str<'n>(node: &'n Node<'_>) -> Option<&'n str> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.as_ref()),
        _ => None,
    }
}

pub(super) fn describe(node: &Node<'_>) -> String {
    match &node.data {
        YamlData::Value(Scalar::Null) => "nothing".into(),
        YamlData::Value(Scalar::Boolean(b)) => format!("the boolean `{b}`"),
        YamlData::Value(Scalar::Integer(i)) => format!("the number `{i}`"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("the number `{}`", f.0),
        YamlData::Value(Scalar::String(_)) => "a string".into(),
        YamlData::Sequence(_) => "a list".into(),
        YamlData::Mapping(_) => "a mapping".into(),
        YamlData::Tagged(..) => "a tagged value (tags are not supported)".into(),
        _ => "an unreadable value".into(),
    }
}

/// Keys that would hold a secret literally; the file may only name env vars.
pub(super) const SECRET_WORDS: &[&str] = &[
    "passcode",
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "developer_token",
    "refresh_token",
    "client_secret",
    "signing_secret",
    "private_key",
];

/// One list for the loader and the client: CleverTap's regions.
pub(super) const CLEVERTAP_REGIONS: &[&str] = &crate::destinations::clevertap::REGIONS;
pub(super) const REPORTING_OBJECT_TYPES: &[&str] = &[
    "customer", "email", "sms", "push", "in_app", "slack", "webhook", "whatsapp", "*",
];
pub(super) const GOOGLE_KEYS: &[MatchKey] = &[
    MatchKey::Email,
    MatchKey::Phone,
    MatchKey::FirstName,
    MatchKey::LastName,
    MatchKey::Country,
    MatchKey::Zip,
];
pub(super) const GOOGLE_ADDRESS_KEYS: &[MatchKey] = &[
    MatchKey::FirstName,
    MatchKey::LastName,
    MatchKey::Country,
    MatchKey::Zip,
];

pub(super) const DESTINATION_COMMON_KEYS: &[&str] = &[
    "kind",
    "base_url",
    "batch_size",
    "max_concurrency",
    "max_requests_per_second",
    "max_attempts",
];

pub(super) fn destination_keys(kind: DestinationKind) -> &'static [&'static str] {
    match kind {
        DestinationKind::Warehouse => &["location"],
        DestinationKind::Clevertap => &[
            "region",
            "account_id_env",
            "passcode_env",
            "max_event_properties",
        ],
        DestinationKind::MetaAudience => &["api_version", "ad_account_id", "access_token_env"],
        DestinationKind::GoogleCustomerMatch => google::CUSTOMER_MATCH_KEYS,
        DestinationKind::GoogleDataManager => google::DATA_MANAGER_KEYS,
        DestinationKind::Webhook => &["url", "secret_env", "allow_private_network"],
        DestinationKind::MetaConversions => &[
            "api_version",
            "pixel_id",
            "access_token_env",
            "action_source",
            "test_event_code_env",
        ],
    }
}

pub(super) const KINDS: &[(&str, DestinationKind)] = &[
    ("warehouse", DestinationKind::Warehouse),
    ("clevertap", DestinationKind::Clevertap),
    ("meta_audience", DestinationKind::MetaAudience),
    (
        "google_customer_match",
        DestinationKind::GoogleCustomerMatch,
    ),
    ("google_data_manager", DestinationKind::GoogleDataManager),
    ("webhook", DestinationKind::Webhook),
    ("meta_conversions", DestinationKind::MetaConversions),
];
pub(super) const MODES: &[(&str, ExportMode)] = &[
    ("membership", ExportMode::Membership),
    ("attributes", ExportMode::Attributes),
    ("events", ExportMode::Events),
    ("conversions", ExportMode::Conversions),
];
pub(super) const ID_KINDS: &[(&str, IdKind)] = &[
    ("id", IdKind::Id),
    ("email", IdKind::Email),
    ("phone", IdKind::Phone),
    ("cio_id", IdKind::CioId),
];
pub(super) const MATCH_KEYS: &[(&str, MatchKey)] = &[
    ("email", MatchKey::Email),
    ("phone", MatchKey::Phone),
    ("extern_id", MatchKey::ExternId),
    ("first_name", MatchKey::FirstName),
    ("last_name", MatchKey::LastName),
    ("city", MatchKey::City),
    ("state", MatchKey::State),
    ("zip", MatchKey::Zip),
    ("country", MatchKey::Country),
    ("gender", MatchKey::Gender),
    ("date_of_birth", MatchKey::DateOfBirth),
    ("lookalike_value", MatchKey::LookalikeValue),
];
pub(super) const SIMPLE_TRANSFORMS: &[(&str, Transform)] = &[
    ("identity", Transform::Identity),
    ("number", Transform::Number),
    ("bool", Transform::Bool),
    ("lowercase", Transform::Lowercase),
    ("date", Transform::Date),
];

pub(super) fn transform_name(t: &Transform) -> &'static str {
    match t {
        Transform::Identity => "identity",
        Transform::Number => "number",
        Transform::Bool => "bool",
        Transform::Lowercase => "lowercase",
        Transform::Date => "date",
        Transform::Bucket { .. } => "bucket",
        Transform::Enum { .. } => "enum",
    }
}

/// Names used in resource names and counters: keep them plain.
pub(super) fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(super) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

pub(super) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// `15m`, `1h`, `30s`, `2d`, `500ms`, or `0`.
pub(super) fn parse_duration_ms(s: &str) -> Option<Millis> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits.parse().ok()?;
    let factor: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

pub(super) fn format_duration(ms: Millis) -> String {
    for (unit, factor) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms % factor == 0 {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}
