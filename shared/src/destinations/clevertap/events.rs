//! CleverTap event records (`"type":"event"`) from `OpKind::Event` ops, and
//! the value rules CleverTap shares between events and profiles (`$D_`
//! dates, sizes).
//!
//! A record is `{"type":"event","identity":…,"ts":<event seconds>,
//! "evtName":…,"evtData":{…}}`:
//! * `evtName` is the binding's audience, or the source event name when the
//!   binding gives none. The characters CleverTap's SDKs strip from event
//!   names and property keys (`. : $ ' " \`) become `_`, so
//!   `email.opened` travels as `email_opened`. At most 512 characters.
//!   CleverTap's restricted system events (`App Launched`, `Notification
//!   Viewed`, …: the SDK validator's list, compared case-insensitively) are
//!   refused here, as CleverTap would with code 513.
//! * `evtData` must be flat: CleverTap's upload API takes scalar event
//!   properties only (nested objects are a beta that must be enabled per
//!   account). Nested objects are flattened into `parent_child` keys (an
//!   underscore, because CleverTap forbids `.` in keys) so each leaf stays a
//!   property segments can filter on; arrays travel as their JSON text.
//!   Nulls are dropped.
//! * Dates travel as `$D_<epoch seconds>`: RFC 3339 date-times, and
//!   `YYYY-MM-DD` dates (what the taxonomy's `date` transform emits), taken
//!   as midnight UTC.
//! * `Amount` carries the taxonomy's conversion value and `Currency` its
//!   currency when the event has them (CleverTap's `Charged` convention).
//! * A `Charged` event's `Items` (the source's `items`, any case) travel as
//!   CleverTap takes them: an array of at most 50 flat objects, one per item
//!   (its upload example and its SDKs' charged-event builder, which refuse
//!   more with 522). Each item is flattened like the event; an item that is
//!   not an object makes the event invalid. Every other array, on any event,
//!   travels as JSON text.
//! * Keys are at most 120 bytes, string values at most 512 bytes, and the
//!   properties (after flattening, `Amount` and `Currency` included) at most
//!   the limit per event type (`max_event_properties`, default 256: CleverTap's
//!   limits page).
//!
//! An event breaking one of these rules is `OpOutcome::Invalid` with the
//! reason, never sent: CleverTap would refuse it per record anyway (509,
//! 512, 513, 522), and our reason names the property.

use chrono::{DateTime, NaiveDate};
use serde_json::{json, Map, Value};

use super::OpOutcome;
use crate::domain::model::DeliveryOp;

/// Property keys: at most this many bytes.
pub const MAX_KEY_BYTES: usize = 120;
/// String values: at most this many bytes.
pub const MAX_VALUE_BYTES: usize = 512;
/// Event names: at most this many characters.
pub const MAX_EVENT_NAME_CHARS: usize = 512;
/// CleverTap's purchase event, the one whose `Items` is an array.
pub const CHARGED: &str = "Charged";
/// The `Charged` property listing what was bought.
pub const ITEMS: &str = "Items";
/// Items of one `Charged` event: at most this many (CleverTap's SDKs, 522).
pub const MAX_CHARGED_ITEMS: usize = 50;

/// Event names CleverTap reserves for its own system events (the SDK
/// validator's restricted list); an upload naming one is refused (513).
pub const RESTRICTED_EVENT_NAMES: &[&str] = &[
    "Stayed",
    "Notification Clicked",
    "Notification Viewed",
    "UTM Visited",
    "Notification Sent",
    "App Launched",
    "wzrk_d",
    "App Uninstalled",
    "Notification Bounced",
    "Geocluster Entered",
    "Geocluster Exited",
    "SCOutgoing",
    "SCIncoming",
    "SCEnd",
    "SCCampaignOptOut",
];

/// Characters CleverTap's SDKs remove from event names and property keys.
const KEY_CHARS_NOT_ALLOWED: &[char] = &['.', ':', '$', '\'', '"', '\\'];

/// Whether CleverTap reserves `name` for a system event.
pub fn is_restricted_event_name(name: &str) -> bool {
    let name = name.trim();
    RESTRICTED_EVENT_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
}

/// A name or key with the characters CleverTap does not take made `_`.
pub fn clean_key(key: &str) -> String {
    key.trim()
        .chars()
        .map(|c| {
            if KEY_CHARS_NOT_ALLOWED.contains(&c) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// `$D_<epoch seconds>` for an RFC 3339 date-time or a `YYYY-MM-DD` date
/// (midnight UTC); `None` for anything else.
pub fn date_value(s: &str) -> Option<String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(format!("$D_{}", t.timestamp()));
    }
    if s.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            let t = d.and_hms_opt(0, 0, 0)?.and_utc();
            return Some(format!("$D_{}", t.timestamp()));
        }
    }
    None
}

fn invalid(reason: String) -> OpOutcome {
    OpOutcome::Invalid { reason }
}

/// The `evtName` an event op travels under: the binding's audience, else
/// the source event name; cleaned and checked.
pub fn event_name(op: &DeliveryOp, source_name: &str) -> Result<String, OpOutcome> {
    let chosen = if op.audience.trim().is_empty() {
        source_name
    } else {
        op.audience.as_str()
    };
    let name = clean_key(chosen);
    if name.is_empty() {
        return Err(invalid(
            "event has no name (CleverTap refuses it with code 509)".to_string(),
        ));
    }
    if name.chars().count() > MAX_EVENT_NAME_CHARS {
        return Err(invalid(format!(
            "event name is longer than CleverTap's {MAX_EVENT_NAME_CHARS} characters"
        )));
    }
    if is_restricted_event_name(&name) {
        return Err(invalid(format!(
            "`{name}` is a CleverTap system event and cannot be uploaded (code 513)"
        )));
    }
    Ok(name)
}

/// One flat property value: dates as `$D_`, arrays as JSON text.
fn flat_value(v: &Value) -> Value {
    match v {
        Value::String(s) => date_value(s)
            .map(Value::String)
            .unwrap_or_else(|| v.clone()),
        Value::Array(_) | Value::Object(_) => Value::String(v.to_string()),
        other => other.clone(),
    }
}

/// Flatten `value` under `key` into `out`: objects recurse into
/// `key_child`, nulls are dropped. A key produced twice is an error.
fn flatten_into(key: String, value: &Value, out: &mut Map<String, Value>) -> Result<(), String> {
    match value {
        Value::Null => Ok(()),
        Value::Object(children) => {
            for (child, v) in children {
                flatten_into(format!("{key}_{}", clean_key(child)), v, out)?;
            }
            Ok(())
        }
        other => {
            if out.insert(key.clone(), flat_value(other)).is_some() {
                return Err(format!(
                    "property `{key}` appears twice once nested properties are flattened"
                ));
            }
            Ok(())
        }
    }
}

/// Keys and string values within CleverTap's sizes.
pub fn check_sizes(key: &str, value: &Value) -> Result<(), String> {
    if key.is_empty() {
        return Err("a property has an empty name".to_string());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "property name `{}…` is longer than CleverTap's {MAX_KEY_BYTES} bytes",
            key.chars().take(40).collect::<String>()
        ));
    }
    if value.as_str().is_some_and(|s| s.len() > MAX_VALUE_BYTES) {
        return Err(format!(
            "property `{key}` is longer than CleverTap's {MAX_VALUE_BYTES} bytes"
        ));
    }
    Ok(())
}

/// `evtName` and `evtData` of an event op, or why it is not sent.
pub fn event_fields(
    op: &DeliveryOp,
    max_properties: usize,
) -> Result<(String, Map<String, Value>), OpOutcome> {
    let Some(event) = &op.event else {
        return Err(invalid("event op carries no event".to_string()));
    };
    let name = event_name(op, &event.name)?;
    let mut data = Map::new();
    for (k, v) in &event.data {
        if name == CHARGED && k.trim().eq_ignore_ascii_case(ITEMS) && v.is_array() {
            let items = charged_items(v).map_err(invalid)?;
            if data.insert(ITEMS.into(), items).is_some() {
                return Err(invalid(format!("`{ITEMS}` appears twice")));
            }
            continue;
        }
        flatten_into(clean_key(k), v, &mut data).map_err(invalid)?;
    }
    if let Some(value) = event.value.filter(|v| v.is_finite()) {
        data.insert("Amount".into(), number(value));
    }
    if let Some(currency) = event.currency.as_deref().filter(|c| !c.trim().is_empty()) {
        data.insert("Currency".into(), json!(currency.trim()));
    }
    if data.len() > max_properties {
        return Err(invalid(format!(
            "event `{name}` has {} properties once flattened; CleverTap takes at most {max_properties} per event (code 522)",
            data.len()
        )));
    }
    for (k, v) in &data {
        if k == ITEMS && v.is_array() {
            continue; // checked item by item
        }
        check_sizes(k, v).map_err(invalid)?;
    }
    Ok((name, data))
}

/// A `Charged` event's items as CleverTap takes them: an array of at most
/// [`MAX_CHARGED_ITEMS`] flat objects.
fn charged_items(items: &Value) -> Result<Value, String> {
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.len() > MAX_CHARGED_ITEMS {
        return Err(format!(
            "`{CHARGED}` has {} items; CleverTap takes at most {MAX_CHARGED_ITEMS} (code 522)",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Some(fields) = item.as_object() else {
                return Err(format!("`{ITEMS}[{i}]` is not an object"));
            };
            let mut flat = Map::new();
            for (k, v) in fields {
                flatten_into(clean_key(k), v, &mut flat)
                    .map_err(|e| format!("`{ITEMS}[{i}]`: {e}"))?;
            }
            for (k, v) in &flat {
                check_sizes(k, v).map_err(|e| format!("`{ITEMS}[{i}]`: {e}"))?;
            }
            Ok(Value::Object(flat))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// A whole number as an integer, anything else as a float.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{EventPayload, Identifiers, OpKind, PersonKey};

    fn op(audience: &str, name: &str, data: Value) -> DeliveryOp {
        DeliveryOp {
            op: OpKind::Event,
            person_key: PersonKey("id:u1".into()),
            ids: Identifiers {
                id: Some("u1".into()),
                ..Identifiers::default()
            },
            audience: audience.into(),
            tier: None,
            attributes: Default::default(),
            event: Some(EventPayload {
                event_id: "e1".into(),
                name: name.into(),
                data: serde_json::from_value(data).unwrap_or_default(),
                ..EventPayload::default()
            }),
            source_ts: 1_700_000_000_000,
            intake_ts: 1_700_000_000_500,
        }
    }

    fn reason(out: Result<(String, Map<String, Value>), OpOutcome>) -> String {
        match out {
            Err(OpOutcome::Invalid { reason }) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn nested_objects_flatten_to_underscore_keys_and_arrays_to_json_text() {
        let o = op(
            "",
            "order_placed",
            json!({"total": 150.5, "shipping": {"city": "Lyon", "geo": {"lat": 45.7}},
                   "skus": ["a", "b"], "gift": null, "note.v2": "x"}),
        );
        let (name, data) = event_fields(&o, 100).unwrap_or_default();
        assert_eq!(name, "order_placed");
        assert_eq!(data["total"], 150.5);
        assert_eq!(data["shipping_city"], "Lyon");
        assert_eq!(data["shipping_geo_lat"], 45.7);
        assert_eq!(data["skus"], "[\"a\",\"b\"]");
        assert_eq!(data["note_v2"], "x");
        assert!(!data.contains_key("gift"));
        assert!(data.values().all(|v| !v.is_object() && !v.is_array()));
    }

    #[test]
    fn rfc3339_and_date_transform_values_become_clevertap_dates() {
        let o = op(
            "",
            "order_placed",
            json!({"at": "2023-11-14T22:13:20Z", "day": "2023-11-14", "code": "2023-11"}),
        );
        let (_, data) = event_fields(&o, 100).unwrap_or_default();
        assert_eq!(data["at"], "$D_1700000000");
        assert_eq!(data["day"], "$D_1699920000");
        assert_eq!(data["code"], "2023-11");
    }

    #[test]
    fn binding_audience_names_the_event_else_the_source_name_cleaned() {
        let (name, _) =
            event_fields(&op("Charged", "order_placed", json!({})), 100).unwrap_or_default();
        assert_eq!(name, "Charged");
        let (name, _) = event_fields(&op("", "email.opened", json!({})), 100).unwrap_or_default();
        assert_eq!(name, "email_opened");
    }

    #[test]
    fn value_and_currency_travel_as_amount_and_currency() {
        let mut o = op("Charged", "order_placed", json!({"order_id": "o1"}));
        if let Some(e) = o.event.as_mut() {
            e.value = Some(150.0);
            e.currency = Some("EUR".into());
        }
        let (_, data) = event_fields(&o, 100).unwrap_or_default();
        assert_eq!(data["Amount"], 150);
        assert_eq!(data["Currency"], "EUR");
    }

    #[test]
    fn more_properties_than_the_account_limit_is_invalid_with_the_counts() {
        let data: Map<String, Value> = (0..101).map(|i| (format!("p{i}"), json!(i))).collect();
        let o = op("", "big", Value::Object(data.clone()));
        let r = reason(event_fields(&o, 100));
        assert!(
            r.contains("101") && r.contains("100") && r.contains("522"),
            "{r}"
        );
        // The same event fits an account whose limit was raised.
        assert!(event_fields(&o, 256).is_ok());
        // Flattening counts: 99 + an object of 2 leaves = 101.
        let mut nested: Map<String, Value> = (0..99).map(|i| (format!("p{i}"), json!(i))).collect();
        nested.insert("obj".into(), json!({"a": 1, "b": 2}));
        assert!(event_fields(&op("", "big", Value::Object(nested)), 100).is_err());
    }

    #[test]
    fn charged_items_travel_as_an_array_of_flat_objects() {
        // CleverTap's own upload example: Items is an array of objects.
        let o = op(
            "Charged",
            "order_placed",
            json!({"Payment mode": "Credit Card", "items": [
                {"Category": "books", "Book name": "The millionaire next door", "Quantity": 1},
                {"Category": "books", "Book name": "Achieving inner zen", "Quantity": 4,
                 "dims": {"w": 2}}
            ]}),
        );
        let (name, data) = event_fields(&o, 256).unwrap_or_default();
        assert_eq!(name, "Charged");
        assert_eq!(
            data["Items"],
            json!([
                {"Category": "books", "Book name": "The millionaire next door", "Quantity": 1},
                {"Category": "books", "Book name": "Achieving inner zen", "Quantity": 4, "dims_w": 2}
            ])
        );
        assert!(!data.contains_key("items"));
        // Elsewhere an array is still JSON text.
        let o = op("", "order_placed", json!({"items": [{"sku": "a"}]}));
        let (_, data) = event_fields(&o, 256).unwrap_or_default();
        assert_eq!(data["items"], "[{\"sku\":\"a\"}]");
    }

    #[test]
    fn charged_with_more_than_50_items_or_an_item_that_is_not_an_object_is_invalid() {
        let items: Vec<Value> = (0..51).map(|i| json!({"sku": i})).collect();
        let r = reason(event_fields(
            &op("Charged", "x", json!({ "Items": items })),
            256,
        ));
        assert!(r.contains("51") && r.contains("50"), "{r}");
        let items: Vec<Value> = (0..50).map(|i| json!({"sku": i})).collect();
        assert!(event_fields(&op("Charged", "x", json!({ "Items": items })), 256).is_ok());
        let r = reason(event_fields(
            &op("Charged", "x", json!({"Items": [{"sku": 1}, "b"]})),
            256,
        ));
        assert!(r.contains("Items[1]"), "{r}");
    }

    #[test]
    fn restricted_system_events_are_invalid() {
        for name in ["App Launched", "notification viewed", "UTM Visited"] {
            let r = reason(event_fields(&op(name, "x", json!({})), 100));
            assert!(r.contains("513"), "{r}");
        }
        assert!(event_fields(&op("App Launched Twice", "x", json!({})), 100).is_ok());
    }

    #[test]
    fn nameless_oversized_or_colliding_events_are_invalid() {
        assert!(reason(event_fields(&op("", " ", json!({})), 100)).contains("509"));
        let long = "v".repeat(MAX_VALUE_BYTES + 1);
        let r = reason(event_fields(&op("", "e", json!({ "note": long })), 100));
        assert!(r.contains("`note`"), "{r}");
        let key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(event_fields(&op("", "e", json!({ key: 1 })), 100).is_err());
        let r = reason(event_fields(
            &op("", "e", json!({"a_b": 1, "a": {"b": 2}})),
            100,
        ));
        assert!(r.contains("a_b"), "{r}");
        let mut none = op("", "e", json!({}));
        none.event = None;
        assert!(event_fields(&none, 100).is_err());
    }
}
