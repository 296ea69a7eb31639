//! The event taxonomy applied to one event: required properties checked,
//! the allow-list and its transforms applied, the conversion fields read.
//!
//! Reasons never quote a value (an event property may be personal data).

use serde_json::{Map, Value};

use super::attributes::{apply, map_allow_list};
use super::spec::{EventSpec, Transform};

/// An event as the destinations see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShapedEvent {
    /// The allow-listed properties, transformed, under their declared names.
    pub data: Map<String, Value>,
    pub value: Option<f64>,
    /// ISO 4217, upper case.
    pub currency: Option<String>,
    pub order_id: Option<String>,
}

/// Why an event is not forwarded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event `{event}`: {reason}")]
pub struct EventRejected {
    pub event: String,
    pub reason: String,
}

fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// Shapes `raw` (the event's properties as sent) by the taxonomy entry.
/// A required property that is absent, blank or unusable by its transform
/// rejects the event; so does a conversion value that is not a number, or
/// a currency that is not three letters. An unusable optional property is
/// dropped (it never travels half-formed).
pub fn shape_event(
    spec: &EventSpec,
    raw: &Map<String, Value>,
) -> Result<ShapedEvent, EventRejected> {
    let reject = |reason: String| EventRejected {
        event: spec.name.clone(),
        reason,
    };
    let (mut data, issues) = map_allow_list(&spec.properties, raw);
    // Nested values (line items, addresses) travel whole under `identity`:
    // the destinations flatten or serialise them as their APIs want.
    for p in &spec.properties {
        if p.transform == Transform::Identity {
            if let Some(v @ (Value::Array(_) | Value::Object(_))) = raw.get(&p.from) {
                data.insert(p.name.clone(), v.clone());
            }
        }
    }
    for name in &spec.required {
        if data.get(name).is_some_and(|v| !blank(v)) {
            continue;
        }
        let from = spec
            .properties
            .iter()
            .find(|p| &p.name == name)
            .map_or(name.as_str(), |p| p.from.as_str());
        let why = issues
            .iter()
            .find(|i| &i.attribute == name)
            .map(|i| format!("required property `{name}` is unusable ({})", i.reason))
            .unwrap_or_else(|| format!("missing required property `{name}` (read from `{from}`)"));
        return Err(reject(why));
    }
    let value = match &spec.value {
        None => None,
        Some(prop) => match data.get(prop) {
            None => None,
            Some(v) => match apply(&Transform::Number, v) {
                Ok(Some(Value::Number(n))) => n.as_f64(),
                _ => return Err(reject(format!("conversion value `{prop}` is not a number"))),
            },
        },
    };
    let currency = match &spec.currency {
        None => None,
        Some(prop) => match data.get(prop) {
            None => None,
            Some(Value::String(s))
                if s.trim().len() == 3 && s.trim().chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                Some(s.trim().to_ascii_uppercase())
            }
            Some(_) => {
                return Err(reject(format!(
                    "currency `{prop}` is not a three-letter ISO 4217 code"
                )))
            }
        },
    };
    let order_id = match &spec.order_id {
        None => None,
        Some(prop) => match data.get(prop) {
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return Err(reject(format!("order id `{prop}` is not text or a number"))),
        },
    };
    Ok(ShapedEvent {
        data: data.into_iter().collect(),
        value,
        currency,
        order_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::AttributeSpec;
    use serde_json::json;

    fn placed_order() -> EventSpec {
        let prop = |name: &str, from: &str, transform: Transform| AttributeSpec {
            name: name.into(),
            from: from.into(),
            transform,
        };
        EventSpec {
            name: "Placed Order".into(),
            required: vec!["order_id".into(), "total".into(), "currency".into()],
            properties: vec![
                prop("order_id", "order_id", Transform::Identity),
                prop("total", "total", Transform::Number),
                prop("currency", "currency", Transform::Identity),
                prop("items", "line_items", Transform::Identity),
            ],
            value: Some("total".into()),
            currency: Some("currency".into()),
            order_id: Some("order_id".into()),
        }
    }

    fn raw(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn only_allow_listed_properties_travel_and_conversion_fields_are_read() {
        let shaped = shape_event(
            &placed_order(),
            &raw(
                json!({"order_id": 1042, "total": "59.90", "currency": "eur",
                        "line_items": [{"sku": "A"}], "email": "x@y.z", "debug": true}),
            ),
        )
        .unwrap();
        assert_eq!(shaped.value, Some(59.9));
        assert_eq!(shaped.currency.as_deref(), Some("EUR"));
        assert_eq!(shaped.order_id.as_deref(), Some("1042"));
        let keys: Vec<&str> = shaped.data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["currency", "items", "order_id", "total"]);
        assert_eq!(shaped.data["items"], json!([{"sku": "A"}]));
    }

    #[test]
    fn an_event_missing_a_required_property_is_rejected_with_its_name() {
        let err = shape_event(
            &placed_order(),
            &raw(json!({"order_id": "o1", "total": 10})),
        )
        .unwrap_err();
        assert_eq!(err.event, "Placed Order");
        assert!(
            err.reason.contains("missing required property `currency`"),
            "{err}"
        );
        let blank = shape_event(
            &placed_order(),
            &raw(json!({"order_id": " ", "total": 10, "currency": "USD"})),
        )
        .unwrap_err();
        assert!(blank.reason.contains("`order_id`"), "{blank}");
    }

    #[test]
    fn a_required_property_its_transform_cannot_use_rejects_without_quoting_it() {
        let err = shape_event(
            &placed_order(),
            &raw(json!({"order_id": "o1", "total": "lots", "currency": "USD"})),
        )
        .unwrap_err();
        assert!(
            err.reason.contains("required property `total` is unusable"),
            "{err}"
        );
        assert!(!err.reason.contains("lots"), "{err}");
    }

    #[test]
    fn a_currency_that_is_not_three_letters_rejects() {
        let err = shape_event(
            &placed_order(),
            &raw(json!({"order_id": "o1", "total": 5, "currency": "€"})),
        )
        .unwrap_err();
        assert!(err.reason.contains("ISO 4217"), "{err}");
    }
}
