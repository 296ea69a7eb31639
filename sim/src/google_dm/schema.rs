//! The Data Manager API's message definitions, as the contract
//! `tests/contracts/google-datamanager.json` writes them down from Google's
//! protos, so the simulator refuses an unknown field at any depth the way
//! Google's JSON front end does: 400 INVALID_ARGUMENT, "Invalid JSON payload
//! received. Unknown name "x" at 'destinations[0]': Cannot find field.".
//! Proto3 JSON takes a field by its lowerCamelCase name or its proto name.

use std::sync::OnceLock;

use serde_json::{Map, Value};

const CONTRACT: &str = include_str!("../../../tests/contracts/google-datamanager.json");

fn contract() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| serde_json::from_str(CONTRACT).unwrap_or(Value::Null))
}

fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Google's message for the first field `value` carries that message
/// `message` does not define, searched depth first; `None` when all are known.
pub fn unknown_field(message: &str, body: &Map<String, Value>) -> Option<String> {
    walk_object(message, body, "")
}

fn walk(message: &str, value: &Value, at: &str) -> Option<String> {
    walk_object(message, value.as_object()?, at)
}

fn walk_object(message: &str, obj: &Map<String, Value>, at: &str) -> Option<String> {
    let fields = contract().get("messages")?.get(message)?.get("fields")?;
    for (key, v) in obj {
        let Some(field) = fields.get(key).or_else(|| fields.get(camel(key))) else {
            let place = if at.is_empty() {
                String::new()
            } else {
                format!(" at '{at}'")
            };
            return Some(format!(
                "Invalid JSON payload received. Unknown name \"{key}\"{place}: Cannot find field."
            ));
        };
        let Some(inner) = field["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("message:"))
        else {
            continue;
        };
        let here = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        if field["repeated"] == true {
            for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                if let Some(m) = walk(inner, item, &format!("{here}[{i}]")) {
                    return Some(m);
                }
            }
        } else if let Some(m) = walk(inner, v, &here) {
            return Some(m);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nested_unknown_field_is_named_with_where_it_is() {
        let body =
            json!({"destinations": [{"productDestinationId": "1", "productDestinationType": "X"}]});
        let m = unknown_field(
            "IngestAudienceMembersRequest",
            body.as_object().unwrap_or(&Map::new()),
        )
        .unwrap_or_default();
        assert!(
            m.contains("\"productDestinationType\" at 'destinations[0]'"),
            "{m}"
        );
    }

    #[test]
    fn proto_names_and_json_names_are_both_known() {
        let body = json!({"audience_members": [{"userData": {"user_identifiers": [{"emailAddress": "x"}]}}]});
        assert_eq!(
            unknown_field(
                "IngestAudienceMembersRequest",
                body.as_object().unwrap_or(&Map::new())
            ),
            None
        );
    }
}
