//! One reporting webhook body into a [`ReportingEvent`]: every field checked
//! and named when wrong, everything Customer.io sent kept.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{is_known_metric, MAX_BODY_BYTES, MAX_TIMESTAMP_S, SUBSCRIPTION_METRICS};
use crate::domain::model::{Identifiers, Millis};

/// Where the message behind a message event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageOrigin {
    Campaign,
    Broadcast,
    Newsletter,
    Transactional,
    /// Customer events, or an origin group we do not know.
    None,
}

/// One reporting webhook event. Everything Customer.io sent is kept:
/// `data` whole, unknown top-level fields in `extra`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportingEvent {
    /// The dedup key.
    pub event_id: String,
    pub object_type: String,
    pub metric: String,
    /// When it happened, Unix seconds.
    pub timestamp_s: i64,
    /// From `data.identifiers`, gaps filled from `data.email_address` and,
    /// for email / sms / whatsapp, `data.recipient`.
    pub identifiers: Identifiers,
    /// Deprecated by Customer.io, blank for deleted people; kept for audits.
    pub customer_id: Option<String>,
    pub delivery_id: Option<String>,
    pub action_id: Option<String>,
    pub campaign_id: Option<String>,
    pub journey_id: Option<String>,
    pub broadcast_id: Option<String>,
    pub newsletter_id: Option<String>,
    pub transactional_message_id: Option<String>,
    pub trigger_event_id: Option<String>,
    pub data: Map<String, Value>,
    pub extra: Map<String, Value>,
}

impl ReportingEvent {
    pub fn timestamp_ms(&self) -> Millis {
        self.timestamp_s.saturating_mul(1000)
    }

    pub fn is_known(&self) -> bool {
        is_known_metric(&self.object_type, &self.metric)
    }

    pub fn origin(&self) -> MessageOrigin {
        if self.transactional_message_id.is_some() {
            MessageOrigin::Transactional
        } else if self.newsletter_id.is_some() {
            MessageOrigin::Newsletter
        } else if self.broadcast_id.is_some() {
            MessageOrigin::Broadcast
        } else if self.campaign_id.is_some() {
            MessageOrigin::Campaign
        } else {
            MessageOrigin::None
        }
    }

    /// A subscription change (`subscribed`, `unsubscribed`,
    /// `cio_subscription_preferences_changed`), whatever channel led to it.
    pub fn is_subscription_change(&self) -> bool {
        SUBSCRIPTION_METRICS.contains(&self.metric.as_str())
    }

    /// The devices of a push event (`data.recipients`): push events name
    /// devices, never an address. Entries without a `device_id` are left
    /// out; the array stays whole in `data`.
    pub fn push_devices(&self) -> Vec<PushDevice> {
        let Some(Value::Array(recipients)) = self.data.get("recipients") else {
            return Vec::new();
        };
        recipients
            .iter()
            .filter_map(|r| {
                let device_id = id_value(r.get("device_id")).ok().flatten()?;
                let platform = id_value(r.get("device_platform")).ok().flatten();
                Some(PushDevice {
                    device_id,
                    platform,
                })
            })
            .collect()
    }

    /// A click Customer.io flagged as a bot's (`data.machine`): not intent.
    pub fn is_machine(&self) -> bool {
        self.data.get("machine").and_then(Value::as_bool) == Some(true)
    }

    /// `data.content` of `cio_subscription_preferences_changed`, which
    /// arrives as a JSON *string* (`{"topics":{"topic_1":true}}`). `None`
    /// when absent or not a JSON object.
    pub fn preferences_content(&self) -> Option<Map<String, Value>> {
        match self.data.get("content")? {
            Value::String(s) => match serde_json::from_str::<Value>(s).ok()? {
                Value::Object(m) => Some(m),
                _ => None,
            },
            Value::Object(m) => Some(m.clone()),
            _ => None,
        }
    }
}

/// One device a push went to (`data.recipients[]` of a push event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushDevice {
    /// The device token.
    pub device_id: String,
    /// `ios` or `android` as Customer.io names them; absent on some metrics.
    pub platform: Option<String>,
}

/// Why a signed reporting webhook could not be used. All permanent:
/// quarantine with this reason and answer 2xx.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body over 256 KiB ({len} bytes)")]
    TooLarge { len: usize },
    #[error("empty body")]
    Empty,
    #[error("malformed JSON at line {line} column {column}: {detail}")]
    MalformedJson {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("body is a JSON {found}, expected one event object{hint}")]
    NotAnObject {
        found: &'static str,
        hint: &'static str,
    },
    #[error("missing `{field}`")]
    MissingField { field: String },
    #[error("`{field}` is blank")]
    Blank { field: String },
    #[error("`{field}` is a JSON {found}, expected {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("`{field}` {reason}")]
    BadTimestamp { field: String, reason: String },
    #[error("{detail}")]
    NoIdentifier { detail: String },
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Line, column and a message without serde's own position suffix.
pub(crate) fn json_error_parts(e: &serde_json::Error) -> (usize, usize, String) {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let detail = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    (line, column, detail)
}

/// A textual id from a string or a number; `""`/whitespace and null are
/// absent. Other JSON types are `Err(kind)`.
pub(crate) fn id_value(v: Option<&Value>) -> Result<Option<String>, &'static str> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(json_kind(other)),
    }
}

/// Whole Unix seconds from an integer, a float (truncated) or a numeric
/// string. `Err` holds the reason, worded to follow the field name.
pub(crate) fn seconds_value(v: &Value) -> Result<i64, String> {
    let secs = match v {
        Value::Number(n) => number_seconds(n)?,
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                i
            } else {
                match t.parse::<f64>() {
                    Ok(f) if f.is_finite() => float_seconds(f)?,
                    _ => return Err(format!("is {s:?}, not Unix seconds")),
                }
            }
        }
        other => {
            return Err(format!(
                "is a JSON {}, expected Unix seconds",
                json_kind(other)
            ))
        }
    };
    check_seconds(secs)
}

fn number_seconds(n: &serde_json::Number) -> Result<i64, String> {
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    if n.as_u64().is_some() {
        return Err(format!("{n} is past year 9999"));
    }
    match n.as_f64() {
        Some(f) => float_seconds(f),
        None => Err(format!("{n} is not a usable number")),
    }
}

fn float_seconds(f: f64) -> Result<i64, String> {
    if !f.is_finite() {
        return Err("is not a finite number".to_string());
    }
    if f < 0.0 {
        return Err(format!("{f} is negative"));
    }
    if f > MAX_TIMESTAMP_S as f64 {
        return Err(format!(
            "{f} is past year 9999 (milliseconds sent as seconds?)"
        ));
    }
    Ok(f.trunc() as i64)
}

fn check_seconds(secs: i64) -> Result<i64, String> {
    if secs < 0 {
        Err(format!("{secs} is negative"))
    } else if secs > MAX_TIMESTAMP_S {
        Err(format!(
            "{secs} is past year 9999 (milliseconds sent as seconds?)"
        ))
    } else {
        Ok(secs)
    }
}

fn required_str(obj: &Map<String, Value>, field: &str) -> Result<String, ParseError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(ParseError::MissingField {
            field: field.to_string(),
        }),
        Some(Value::String(s)) if s.trim().is_empty() => Err(ParseError::Blank {
            field: field.to_string(),
        }),
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(other) => Err(ParseError::WrongType {
            field: field.to_string(),
            expected: "string",
            found: json_kind(other),
        }),
    }
}

fn strict_id(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, ParseError> {
    id_value(obj.get(key)).map_err(|found| ParseError::WrongType {
        field: format!("{path}.{key}"),
        expected: "string or null",
        found,
    })
}

/// Origin ids are kept leniently: a wrong type leaves the id out (it is
/// still in `data`).
fn lenient_id(data: &Map<String, Value>, key: &str) -> Option<String> {
    id_value(data.get(key)).ok().flatten()
}

/// Parses one reporting webhook body. Call after [`verify_signature`].
pub fn parse_reporting(body: &[u8]) -> Result<ReportingEvent, ParseError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ParseError::TooLarge { len: body.len() });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let (line, column, detail) = json_error_parts(&e);
        ParseError::MalformedJson {
            line,
            column,
            detail,
        }
    })?;
    let mut top = match value {
        Value::Object(m) => m,
        Value::Array(_) => {
            return Err(ParseError::NotAnObject {
                found: "array",
                hint: " (Customer.io sends one event per POST, not a list)",
            })
        }
        other => {
            return Err(ParseError::NotAnObject {
                found: json_kind(&other),
                hint: "",
            })
        }
    };

    let event_id = match id_value(top.get("event_id")) {
        Ok(Some(id)) => id,
        Ok(None) if top.get("event_id").is_some_and(Value::is_string) => {
            return Err(ParseError::Blank {
                field: "event_id".into(),
            })
        }
        Ok(None) => {
            return Err(ParseError::MissingField {
                field: "event_id".into(),
            })
        }
        Err(found) => {
            return Err(ParseError::WrongType {
                field: "event_id".into(),
                expected: "string",
                found,
            })
        }
    };
    let object_type = required_str(&top, "object_type")?;
    let metric = required_str(&top, "metric")?;
    let timestamp_s = match top.get("timestamp") {
        None | Some(Value::Null) => {
            return Err(ParseError::MissingField {
                field: "timestamp".into(),
            })
        }
        Some(v) => seconds_value(v).map_err(|reason| ParseError::BadTimestamp {
            field: "timestamp".into(),
            reason,
        })?,
    };
    let data = match top.remove("data") {
        None | Some(Value::Null) => {
            return Err(ParseError::MissingField {
                field: "data".into(),
            })
        }
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ParseError::WrongType {
                field: "data".into(),
                expected: "object",
                found: json_kind(&other),
            })
        }
    };

    let mut identifiers = Identifiers::default();
    let has_identifiers = match data.get("identifiers") {
        None | Some(Value::Null) => false,
        Some(Value::Object(ids)) => {
            identifiers.id = strict_id(ids, "id", "data.identifiers")?;
            identifiers.cio_id = strict_id(ids, "cio_id", "data.identifiers")?;
            identifiers.email = strict_id(ids, "email", "data.identifiers")?;
            true
        }
        Some(other) => {
            return Err(ParseError::WrongType {
                field: "data.identifiers".into(),
                expected: "object",
                found: json_kind(other),
            })
        }
    };
    let customer_id = lenient_id(&data, "customer_id");
    let mut fallback = Identifiers {
        // `customer_id` is deprecated: only trusted when `identifiers` is absent.
        id: if has_identifiers {
            None
        } else {
            customer_id.clone()
        },
        email: lenient_id(&data, "email_address"),
        ..Identifiers::default()
    };
    // The address the message went to, where it is one.
    if let Some(recipient) = lenient_id(&data, "recipient") {
        match object_type.as_str() {
            "email" if recipient.contains('@') => {
                fallback.email.get_or_insert(recipient);
            }
            "sms" | "whatsapp" => fallback.phone = Some(recipient),
            _ => {}
        }
    }
    identifiers.merge_missing(&fallback);

    // A phone alone cannot key a person (`Identifiers::person_key`).
    if identifiers.person_key().is_none() {
        let detail = if has_identifiers {
            "no usable identifier in data.identifiers (id, cio_id, email all null or blank)"
        } else {
            "no usable identifier: data.identifiers absent and data.customer_id, data.email_address blank"
        };
        return Err(ParseError::NoIdentifier {
            detail: detail.to_string(),
        });
    }

    for known in ["event_id", "object_type", "metric", "timestamp"] {
        top.remove(known);
    }
    Ok(ReportingEvent {
        event_id,
        object_type,
        metric,
        timestamp_s,
        identifiers,
        customer_id,
        delivery_id: lenient_id(&data, "delivery_id"),
        action_id: lenient_id(&data, "action_id"),
        campaign_id: lenient_id(&data, "campaign_id"),
        journey_id: lenient_id(&data, "journey_id"),
        broadcast_id: lenient_id(&data, "broadcast_id"),
        newsletter_id: lenient_id(&data, "newsletter_id"),
        transactional_message_id: lenient_id(&data, "transactional_message_id"),
        trigger_event_id: lenient_id(&data, "trigger_event_id"),
        data,
        extra: top,
    })
}
