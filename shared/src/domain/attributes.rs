//! The governed attribute allow-list: only declared attributes travel, each
//! through its transform.
//!
//! Customer.io's App API gives every attribute value as a string (timestamps
//! included); webhook actions may give numbers and booleans. Both read the
//! same here. A blank or null source value is absent, not an issue. A value
//! the transform cannot use drops that attribute and records an issue; it
//! never fails the person. Issue reasons never quote the value (it may be
//! personal data).

use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Number, Value};

use super::model::Attributes;
use super::spec::{AttributeSpec, ExportSpec, Transform};

/// An attribute dropped because its source value was unusable.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeIssue {
    /// The export attribute name (what destinations would have seen).
    pub attribute: String,
    pub reason: String,
}

/// Applies `export`'s allow-list and transforms to a raw attribute map.
pub fn map_attributes(
    export: &ExportSpec,
    raw: &Map<String, Value>,
) -> (Attributes, Vec<AttributeIssue>) {
    map_allow_list(&export.attributes, raw)
}

/// Applies an allow-list (an export's attributes, or an event's properties)
/// and its transforms to a raw map.
pub fn map_allow_list(
    allow_list: &[AttributeSpec],
    raw: &Map<String, Value>,
) -> (Attributes, Vec<AttributeIssue>) {
    let mut out = Attributes::new();
    let mut issues = Vec::new();
    for spec in allow_list {
        let Some(value) = raw.get(&spec.from).filter(|v| !is_blank(v)) else {
            continue;
        };
        match apply(&spec.transform, value) {
            Ok(Some(v)) => {
                out.insert(spec.name.clone(), v);
            }
            Ok(None) => {}
            Err(reason) => issues.push(AttributeIssue {
                attribute: spec.name.clone(),
                reason: format!("from `{}`: {reason}", spec.from),
            }),
        }
    }
    (out, issues)
}

fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// Describes a value without quoting it.
fn shape(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(s) => format!("a string of {} chars", s.chars().count()),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `Ok(None)` means the attribute is absent.
pub(crate) fn apply(transform: &Transform, value: &Value) -> Result<Option<Value>, String> {
    match transform {
        Transform::Identity => scalar_text(value).map(|s| Some(Value::String(s))),
        Transform::Lowercase => {
            scalar_text(value).map(|s| Some(Value::String(s.trim().to_lowercase())))
        }
        Transform::Number => to_number(value).map(|n| Some(number_value(n))),
        Transform::Bool => to_bool(value).map(|b| Some(Value::Bool(b))),
        Transform::Date => to_date(value).map(|d| Some(Value::String(d))),
        Transform::Bucket { edges } => {
            let n = to_number(value)?;
            bucket_label(edges, n).map(|l| Some(Value::String(l)))
        }
        Transform::Enum { values, fallback } => {
            let text = scalar_text(value)?;
            let text = text.trim();
            let found = values
                .iter()
                .find(|v| v.as_str() == text)
                .or_else(|| values.iter().find(|v| v.eq_ignore_ascii_case(text)));
            match (found, fallback) {
                (Some(v), _) => Ok(Some(Value::String(v.clone()))),
                (None, Some(fb)) => Ok(Some(Value::String(fb.clone()))),
                (None, None) => Err("not one of the enum's values and no fallback is set".into()),
            }
        }
    }
}

fn scalar_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a text value, got {}", shape(other))),
    }
}

fn to_number(value: &Value) -> Result<f64, String> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    parsed
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("expected a number, got {}", shape(value)))
}

/// Integral values travel as integers, so `120` never becomes `120.0`.
fn number_value(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() < EXACT {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

fn to_bool(value: &Value) -> Result<bool, String> {
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "on" | "t" => Some(true),
            "false" | "0" | "no" | "n" | "off" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| format!("expected true/false, 1/0 or yes/no, got {}", shape(value)))
}

/// Unix seconds (string or number), RFC 3339, or an already plain
/// `YYYY-MM-DD`; the day is taken in UTC.
fn to_date(value: &Value) -> Result<String, String> {
    let from_seconds = |secs: f64| -> Option<String> {
        if !secs.is_finite() {
            return None;
        }
        let whole = secs.floor();
        // Bounded well inside i64 before the cast.
        if whole.abs() > 1e14 {
            return None;
        }
        DateTime::from_timestamp(whole as i64, 0).map(|d| d.format("%Y-%m-%d").to_string())
    };
    let parsed = match value {
        Value::Number(n) => n.as_f64().and_then(from_seconds),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(secs) = s.parse::<f64>() {
                from_seconds(secs)
            } else if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
                Some(dt.naive_utc().format("%Y-%m-%d").to_string())
            } else {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .map(|d| d.format("%Y-%m-%d").to_string())
            }
        }
        _ => None,
    };
    parsed.ok_or_else(|| {
        format!(
            "expected Unix seconds or an RFC 3339 time, got {}",
            shape(value)
        )
    })
}

/// Edges print without a trailing `.0` when whole.
fn edge_text(edge: f64) -> String {
    if edge.fract() == 0.0 && edge.abs() < 1e15 {
        format!("{}", edge as i64)
    } else {
        format!("{edge}")
    }
}

fn bucket_label(edges: &[f64], n: f64) -> Result<String, String> {
    let (Some(first), Some(last)) = (edges.first(), edges.last()) else {
        return Err("the bucket transform has no edges".into());
    };
    if n < *first {
        return Ok(format!("lt_{}", edge_text(*first)));
    }
    if n >= *last {
        return Ok(format!("gte_{}", edge_text(*last)));
    }
    edges
        .windows(2)
        .find(|w| n >= w[0] && n < w[1])
        .map(|w| format!("{}_{}", edge_text(w[0]), edge_text(w[1])))
        .ok_or_else(|| "bucket edges are not ascending".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::{
        AttributeSpec, Cadence, ExportMode, ExportSource, GuardRails, IdKind, IdentitySpec,
    };
    use serde_json::json;

    fn export_with(attributes: Vec<(&str, &str, Transform)>) -> ExportSpec {
        ExportSpec {
            name: "x".into(),
            source: ExportSource::Action,
            mode: ExportMode::Membership,
            cadence: Cadence {
                realtime: true,
                every_minutes: None,
            },
            identity: IdentitySpec {
                golden: IdKind::Id,
                fallbacks: vec![],
                default_phone_region: None,
            },
            attributes: attributes
                .into_iter()
                .map(|(name, from, transform)| AttributeSpec {
                    name: name.into(),
                    from: from.into(),
                    transform,
                })
                .collect(),
            tiers: vec![],
            exit_on: vec![],
            suppress: vec![],
            destinations: vec![],
            guard_rails: GuardRails::default(),
            test_profiles: vec![],
        }
    }

    fn one(transform: Transform, raw: Value) -> (Option<Value>, Vec<AttributeIssue>) {
        let export = export_with(vec![("out", "in", transform)]);
        let mut map = Map::new();
        map.insert("in".into(), raw);
        let (attrs, issues) = map_attributes(&export, &map);
        (attrs.get("out").cloned(), issues)
    }

    fn bucket() -> Transform {
        Transform::Bucket {
            edges: vec![50.0, 100.0, 150.0],
        }
    }

    #[test]
    fn bucket_labels_cover_every_band_with_integer_edges() {
        let cases = [
            (json!("0"), "lt_50"),
            (json!("49.99"), "lt_50"),
            (json!("50"), "50_100"),
            (json!(99.5), "50_100"),
            (json!("100"), "100_150"),
            (json!("149"), "100_150"),
            (json!("150"), "gte_150"),
            (json!(1000), "gte_150"),
            (json!("-3"), "lt_50"),
        ];
        for (raw, want) in cases {
            let (got, issues) = one(bucket(), raw.clone());
            assert_eq!(got, Some(json!(want)), "raw {raw}");
            assert!(issues.is_empty());
        }
    }

    #[test]
    fn bucket_with_fractional_edges_keeps_the_fraction() {
        let t = Transform::Bucket {
            edges: vec![0.5, 2.0],
        };
        assert_eq!(one(t.clone(), json!("1")).0, Some(json!("0.5_2")));
        assert_eq!(one(t, json!("0.1")).0, Some(json!("lt_0.5")));
    }

    #[test]
    fn bucket_of_non_number_is_dropped_with_an_issue() {
        let (got, issues) = one(bucket(), json!("lots"));
        assert_eq!(got, None);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].attribute, "out");
        assert!(
            !issues[0].reason.contains("lots"),
            "reason must not quote the value"
        );
    }

    #[test]
    fn date_reads_unix_seconds_as_string_or_number_and_rfc3339() {
        let cases = [
            (json!("1714521600"), "2024-05-01"),
            (json!(1714521600), "2024-05-01"),
            (json!(1714607999.9), "2024-05-01"),
            (json!("2024-05-01T10:00:00Z"), "2024-05-01"),
            (json!("2024-05-01T23:30:00-05:00"), "2024-05-02"),
            (json!("2024-05-01"), "2024-05-01"),
            (json!("0"), "1970-01-01"),
        ];
        for (raw, want) in cases {
            let (got, issues) = one(Transform::Date, raw.clone());
            assert_eq!(got, Some(json!(want)), "raw {raw}");
            assert!(issues.is_empty());
        }
    }

    #[test]
    fn unusable_date_is_dropped_with_an_issue() {
        for raw in [
            json!("yesterday"),
            json!(true),
            json!("1e300"),
            json!({"a": 1}),
        ] {
            let (got, issues) = one(Transform::Date, raw.clone());
            assert_eq!(got, None, "raw {raw}");
            assert_eq!(issues.len(), 1, "raw {raw}");
        }
    }

    #[test]
    fn number_parses_strings_and_keeps_integers_whole() {
        assert_eq!(one(Transform::Number, json!("120")).0, Some(json!(120)));
        assert_eq!(
            one(Transform::Number, json!(" 120.50 ")).0,
            Some(json!(120.5))
        );
        assert_eq!(one(Transform::Number, json!(7)).0, Some(json!(7)));
        assert_eq!(one(Transform::Number, json!("-2.0")).0, Some(json!(-2)));
        let (got, issues) = one(Transform::Number, json!("NaN"));
        assert_eq!(got, None);
        assert_eq!(issues.len(), 1);
        assert_eq!(one(Transform::Number, json!(false)).1.len(), 1);
    }

    #[test]
    fn bool_reads_common_spellings() {
        for raw in [
            json!("true"),
            json!("TRUE"),
            json!("1"),
            json!("yes"),
            json!(true),
            json!(1),
        ] {
            assert_eq!(
                one(Transform::Bool, raw.clone()).0,
                Some(json!(true)),
                "raw {raw}"
            );
        }
        for raw in [
            json!("false"),
            json!("0"),
            json!("No"),
            json!(false),
            json!(0),
        ] {
            assert_eq!(
                one(Transform::Bool, raw.clone()).0,
                Some(json!(false)),
                "raw {raw}"
            );
        }
        let (got, issues) = one(Transform::Bool, json!("maybe"));
        assert_eq!(got, None);
        assert_eq!(issues.len(), 1);
    }

    #[test]
    fn enum_matches_values_else_uses_fallback() {
        let t = Transform::Enum {
            values: vec!["gold".into(), "silver".into(), "bronze".into()],
            fallback: Some("other".into()),
        };
        assert_eq!(one(t.clone(), json!("gold")).0, Some(json!("gold")));
        assert_eq!(one(t.clone(), json!(" Silver ")).0, Some(json!("silver")));
        assert_eq!(one(t.clone(), json!("platinum")).0, Some(json!("other")));
        assert!(one(t, json!("platinum")).1.is_empty());
    }

    #[test]
    fn enum_without_fallback_drops_unknown_values_with_an_issue() {
        let t = Transform::Enum {
            values: vec!["a".into()],
            fallback: None,
        };
        let (got, issues) = one(t, json!("b"));
        assert_eq!(got, None);
        assert_eq!(issues.len(), 1);
    }

    #[test]
    fn identity_passes_strings_and_stringifies_scalars() {
        assert_eq!(one(Transform::Identity, json!("Ana")).0, Some(json!("Ana")));
        assert_eq!(one(Transform::Identity, json!(12)).0, Some(json!("12")));
        assert_eq!(one(Transform::Identity, json!(true)).0, Some(json!("true")));
        assert_eq!(one(Transform::Identity, json!([1])).1.len(), 1);
        assert_eq!(
            one(Transform::Lowercase, json!("  MiXed ")).0,
            Some(json!("mixed"))
        );
    }

    #[test]
    fn absent_null_or_blank_values_are_absent_without_issue() {
        for raw in [Value::Null, json!(""), json!("   ")] {
            let (got, issues) = one(Transform::Number, raw);
            assert_eq!(got, None);
            assert!(issues.is_empty());
        }
        let export = export_with(vec![("out", "in", Transform::Number)]);
        let (attrs, issues) = map_attributes(&export, &Map::new());
        assert!(attrs.is_empty() && issues.is_empty());
    }

    #[test]
    fn only_declared_attributes_come_out_and_one_source_feeds_several() {
        let export = export_with(vec![
            ("cart_value", "cart_value", Transform::Number),
            ("cart_value_bucket", "cart_value", bucket()),
            ("first_name", "first_name", Transform::Identity),
        ]);
        let raw = json!({
            "cart_value": "120",
            "first_name": "Ana",
            "email": "ana@example.com",
            "secret_note": "x"
        });
        let Value::Object(raw) = raw else {
            unreachable!()
        };
        let (attrs, issues) = map_attributes(&export, &raw);
        assert!(issues.is_empty());
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs.get("cart_value"), Some(&json!(120)));
        assert_eq!(attrs.get("cart_value_bucket"), Some(&json!("100_150")));
        assert_eq!(attrs.get("first_name"), Some(&json!("Ana")));
        assert!(!attrs.contains_key("email"));
    }

    #[test]
    fn one_bad_attribute_does_not_drop_the_others() {
        let export = export_with(vec![
            ("a", "a", Transform::Number),
            ("b", "b", Transform::Date),
        ]);
        let Value::Object(raw) = json!({"a": "oops", "b": "1714521600"}) else {
            unreachable!()
        };
        let (attrs, issues) = map_attributes(&export, &raw);
        assert_eq!(attrs.get("b"), Some(&json!("2024-05-01")));
        assert!(!attrs.contains_key("a"));
        assert_eq!(
            issues,
            vec![AttributeIssue {
                attribute: "a".into(),
                reason: "from `a`: expected a number, got a string of 4 chars".into(),
            }]
        );
    }
}
