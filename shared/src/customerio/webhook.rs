//! Customer.io reporting webhooks: signature check and parsing, no IO.
//!
//! One POST carries one event object (`event_id`, `object_type`, `metric`,
//! `timestamp`, `data`), signed with HMAC-SHA256 over
//! `"v0:" + <X-CIO-Timestamp> + ":" + <raw body>` (API-CONTRACTS §1a).
//!
//! Customer.io holds back every later event while one is refused, for up to
//! 7 days, so callers answer 401 only for a failed signature; a signed body
//! that [`parse_reporting`] refuses is quarantined with the error's reason and
//! answered 2xx. Every [`ParseError`] is permanent: retrying the same bytes
//! gives the same answer.
//!
//! `object_type` and `metric` are open data: unknown values parse and are
//! kept, [`is_known_metric`] tells whether the §1a table lists them.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::domain::model::{Identifiers, Millis};
use crate::ports::Secret;

/// Header holding the Unix seconds the request was signed at (lowercased).
pub const TIMESTAMP_HEADER: &str = "x-cio-timestamp";
/// Header holding the hex HMAC-SHA256 signature (lowercased).
pub const SIGNATURE_HEADER: &str = "x-cio-signature";
/// Customer.io documents no replay window; 5 minutes is the common choice.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// Refused before parsing: one event object is a few KiB even with body
/// content enabled.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// 9999-12-31T23:59:59Z: anything later is a unit mistake (milliseconds).
pub(crate) const MAX_TIMESTAMP_S: i64 = 253_402_300_799;

/// The object types and metrics of API-CONTRACTS §1a. Metrics are open data;
/// this table says what we expect, not what we accept.
pub const OBJECT_TYPE_METRICS: &[(&str, &[&str])] = &[
    (
        "customer",
        &[
            "subscribed",
            "unsubscribed",
            "cio_subscription_preferences_changed",
        ],
    ),
    (
        "email",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "unsubscribed",
            "bounced",
            "dropped",
            "spammed",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "push",
        &[
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "bounced",
            "dropped",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "sms",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "clicked",
            "converted",
            "bounced",
            "failed",
            "undeliverable",
            "replied",
        ],
    ),
    (
        "whatsapp",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "bounced",
            "dropped",
            "failed",
            "undeliverable",
            "replied",
        ],
    ),
    (
        "in_app",
        &[
            "drafted",
            "attempted",
            "sent",
            "opened",
            "clicked",
            "converted",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "slack",
        &[
            "drafted",
            "attempted",
            "sent",
            "clicked",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "webhook",
        &[
            "drafted",
            "attempted",
            "sent",
            "clicked",
            "failed",
            "undeliverable",
        ],
    ),
];

/// Whether the §1a table lists this pair. Unknown pairs still parse.
pub fn is_known_metric(object_type: &str, metric: &str) -> bool {
    OBJECT_TYPE_METRICS
        .iter()
        .any(|(ot, metrics)| *ot == object_type && metrics.contains(&metric))
}

// ---------------------------------------------------------------------------
// Signature
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct SignatureConfig {
    /// The signing key from the reporting-webhook settings page.
    pub secret: Secret,
    /// Replay window, both ways: older and future timestamps beyond it fail.
    pub tolerance: Duration,
}

impl SignatureConfig {
    /// A config with the default 5-minute replay window.
    pub fn new(secret: Secret) -> Self {
        SignatureConfig {
            secret,
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

/// Why a reporting webhook was not authenticated. Every variant maps to
/// HTTP 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing X-CIO-Timestamp header")]
    MissingTimestamp,
    #[error("missing X-CIO-Signature header")]
    MissingSignature,
    #[error("X-CIO-Timestamp is not integer Unix seconds")]
    BadTimestamp,
    #[error("X-CIO-Timestamp is {}, outside the replay window (clock skew or replay)", stale_age(.age_s))]
    Stale { age_s: i64 },
    #[error(
        "X-CIO-Signature does not match the body (wrong signing secret, or the body was altered)"
    )]
    Mismatch,
}

fn stale_age(age_s: &i64) -> String {
    let when = if *age_s >= 0 { "before" } else { "after" };
    format!("{} s {when} now", age_s.unsigned_abs())
}

fn mac_for(secret: &[u8]) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()
}

/// The hex HMAC-SHA256 (lowercase) Customer.io would send for this body: for
/// tests, the demo and the simulators.
pub fn sign(secret: &[u8], timestamp_s: i64, body: &[u8]) -> String {
    let Some(mut mac) = mac_for(secret) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp_s}:").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The two headers of a signed request, lowercased as callers pass them.
pub fn signed_headers(secret: &[u8], timestamp_s: i64, body: &[u8]) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TIMESTAMP_HEADER.to_string(), timestamp_s.to_string()),
        (
            SIGNATURE_HEADER.to_string(),
            sign(secret, timestamp_s, body),
        ),
    ])
}

/// A header value, trimmed, `None` when absent or blank. Names are expected
/// lowercased; a mixed-case key is still found.
pub(crate) fn header<'a>(headers: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .or_else(|| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// Signed seconds from the timestamp to now (negative: in the future), or
/// `None` when inside the window.
pub(crate) fn outside_window(timestamp_s: i64, now_ms: Millis, tolerance: Duration) -> Option<i64> {
    let age_s = now_ms.div_euclid(1000).saturating_sub(timestamp_s);
    let limit = tolerance.as_secs();
    (age_s.unsigned_abs() > limit).then_some(age_s)
}

/// Checks a reporting webhook's signature over the raw body bytes, in
/// constant time, then its replay window. A blank secret refuses everything
/// (an empty key would make signatures forgeable).
pub fn verify_signature(
    headers: &BTreeMap<String, String>,
    body: &[u8],
    cfg: &SignatureConfig,
    now_ms: Millis,
) -> Result<(), SignatureError> {
    let ts_raw = header(headers, TIMESTAMP_HEADER).ok_or(SignatureError::MissingTimestamp)?;
    let sig_raw = header(headers, SIGNATURE_HEADER).ok_or(SignatureError::MissingSignature)?;
    let timestamp_s: i64 = ts_raw.parse().map_err(|_| SignatureError::BadTimestamp)?;

    let secret = cfg.secret.expose().as_bytes();
    if secret.iter().all(u8::is_ascii_whitespace) {
        return Err(SignatureError::Mismatch);
    }
    // hex::decode takes either case, so an uppercase signature compares as
    // lowercase.
    let provided = hex::decode(sig_raw).map_err(|_| SignatureError::Mismatch)?;
    let mut mac = mac_for(secret).ok_or(SignatureError::Mismatch)?;
    mac.update(b"v0:");
    mac.update(ts_raw.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&provided)
        .map_err(|_| SignatureError::Mismatch)?;

    // Checked after the MAC, so a Stale error means "authentic but old".
    match outside_window(timestamp_s, now_ms, cfg.tolerance) {
        Some(age_s) => Err(SignatureError::Stale { age_s }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const SECRET: &str = "whsec_test_signing_key";
    const NOW_MS: Millis = 1_751_371_500_000;
    const NOW_S: i64 = NOW_MS / 1000;

    fn cfg() -> SignatureConfig {
        SignatureConfig::new(Secret::new(SECRET))
    }

    fn body_for(object_type: &str, metric: &str) -> Vec<u8> {
        let mut data = json!({
            "identifiers": {"id": "cust_00042", "email": "ada.lovelace+42@example.com", "cio_id": "d9c106000042"},
            "customer_id": "cust_00042",
        });
        if object_type != "customer" {
            data["delivery_id"] = json!("RPILAgUBcRhIBqSfeiIwdIYJKxTY");
            data["action_id"] = json!(42);
            data["campaign_id"] = json!(7);
            data["journey_id"] = json!("01GW20GXAAXBKZD8J96M8FNV3R");
        }
        serde_json::to_vec(&json!({
            "event_id": format!("01J{object_type}{metric}").to_uppercase(),
            "object_type": object_type,
            "metric": metric,
            "timestamp": NOW_S - 3,
            "data": data,
        }))
        .unwrap()
    }

    fn headers_for(body: &[u8], ts: i64) -> BTreeMap<String, String> {
        signed_headers(SECRET.as_bytes(), ts, body)
    }

    #[test]
    fn every_table_pair_parses_when_signed() {
        let mut pairs = 0;
        for (object_type, metrics) in OBJECT_TYPE_METRICS {
            for metric in *metrics {
                let body = body_for(object_type, metric);
                let headers = headers_for(&body, NOW_S);
                verify_signature(&headers, &body, &cfg(), NOW_MS).unwrap();
                let ev = parse_reporting(&body).unwrap();
                assert_eq!(ev.object_type, *object_type);
                assert_eq!(ev.metric, *metric);
                assert!(ev.is_known());
                assert_eq!(ev.identifiers.id(), Some("cust_00042"));
                assert_eq!(ev.timestamp_s, NOW_S - 3);
                pairs += 1;
            }
        }
        assert_eq!(pairs, 3 + 13 + 10 + 10 + 12 + 8 + 6 + 6);
    }

    #[test]
    fn tampered_body_is_refused() {
        let body = body_for("email", "opened");
        let headers = headers_for(&body, NOW_S);
        let mut tampered = body.clone();
        let pos = tampered.iter().position(|b| *b == b'4').unwrap();
        tampered[pos] = b'5';
        assert_eq!(
            verify_signature(&headers, &tampered, &cfg(), NOW_MS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn reserialised_body_with_same_json_is_refused() {
        let body = body_for("email", "clicked");
        let headers = headers_for(&body, NOW_S);
        let value: Value = serde_json::from_slice(&body).unwrap();
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&pretty).unwrap(), value);
        assert_eq!(
            verify_signature(&headers, &pretty, &cfg(), NOW_MS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_timestamp_is_refused_after_the_mac_checks_out() {
        let body = body_for("sms", "delivered");
        let ts = NOW_S - 301;
        let err = verify_signature(&headers_for(&body, ts), &body, &cfg(), NOW_MS).unwrap_err();
        assert_eq!(err, SignatureError::Stale { age_s: 301 });
        assert!(err.to_string().contains("301 s before now"));
        // At the edge of the window it still passes.
        verify_signature(&headers_for(&body, NOW_S - 300), &body, &cfg(), NOW_MS).unwrap();
    }

    #[test]
    fn future_timestamp_beyond_tolerance_is_refused() {
        let body = body_for("push", "opened");
        let err =
            verify_signature(&headers_for(&body, NOW_S + 400), &body, &cfg(), NOW_MS).unwrap_err();
        assert_eq!(err, SignatureError::Stale { age_s: -400 });
        assert!(err.to_string().contains("after now"));
        verify_signature(&headers_for(&body, NOW_S + 60), &body, &cfg(), NOW_MS).unwrap();
    }

    #[test]
    fn tolerance_is_configurable() {
        let body = body_for("push", "opened");
        let mut c = cfg();
        c.tolerance = Duration::from_secs(3600);
        verify_signature(&headers_for(&body, NOW_S - 3000), &body, &c, NOW_MS).unwrap();
    }

    #[test]
    fn missing_or_bad_headers_are_named() {
        let body = body_for("email", "sent");
        let mut h = headers_for(&body, NOW_S);
        h.remove(SIGNATURE_HEADER);
        assert_eq!(
            verify_signature(&h, &body, &cfg(), NOW_MS),
            Err(SignatureError::MissingSignature)
        );
        let mut h = headers_for(&body, NOW_S);
        h.remove(TIMESTAMP_HEADER);
        assert_eq!(
            verify_signature(&h, &body, &cfg(), NOW_MS),
            Err(SignatureError::MissingTimestamp)
        );
        let mut h = headers_for(&body, NOW_S);
        h.insert(TIMESTAMP_HEADER.into(), "  ".into());
        assert_eq!(
            verify_signature(&h, &body, &cfg(), NOW_MS),
            Err(SignatureError::MissingTimestamp)
        );
        let mut h = headers_for(&body, NOW_S);
        h.insert(TIMESTAMP_HEADER.into(), "yesterday".into());
        assert_eq!(
            verify_signature(&h, &body, &cfg(), NOW_MS),
            Err(SignatureError::BadTimestamp)
        );
        let mut h = headers_for(&body, NOW_S);
        h.insert(SIGNATURE_HEADER.into(), "not-hex".into());
        assert_eq!(
            verify_signature(&h, &body, &cfg(), NOW_MS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn uppercase_hex_signature_is_accepted() {
        let body = body_for("email", "delivered");
        let mut h = headers_for(&body, NOW_S);
        let upper = h[SIGNATURE_HEADER].to_uppercase();
        h.insert(SIGNATURE_HEADER.into(), upper);
        verify_signature(&h, &body, &cfg(), NOW_MS).unwrap();
    }

    #[test]
    fn mixed_case_header_names_are_found() {
        let body = body_for("email", "delivered");
        let h: BTreeMap<String, String> = headers_for(&body, NOW_S)
            .into_iter()
            .map(|(k, v)| (k.replace("x-cio", "X-CIO"), v))
            .collect();
        verify_signature(&h, &body, &cfg(), NOW_MS).unwrap();
    }

    #[test]
    fn wrong_or_blank_secret_is_a_mismatch() {
        let body = body_for("email", "delivered");
        let h = signed_headers(b"another-secret", NOW_S, &body);
        assert_eq!(
            verify_signature(&h, &body, &cfg(), NOW_MS),
            Err(SignatureError::Mismatch)
        );
        let blank = SignatureConfig::new(Secret::new(""));
        let h = signed_headers(b"", NOW_S, &body);
        assert_eq!(
            verify_signature(&h, &body, &blank, NOW_MS),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn sign_matches_the_documented_string_to_sign() {
        // HMAC-SHA256("secret", "v0:1:{}") computed independently of `sign`.
        let mut mac = mac_for(b"secret").unwrap();
        mac.update(b"v0:1:{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sign(b"secret", 1, b"{}"), expected);
        assert_eq!(expected.len(), 64);
        assert_eq!(expected, expected.to_lowercase());
    }

    fn fixture_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("events")
            .join("customerio")
    }

    #[test]
    fn every_reporting_fixture_parses() {
        let dir = fixture_dir().join("reporting");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let ev = parse_reporting(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(ev.is_known(), "{}: unknown pair", path.display());
            let h = headers_for(&body, NOW_S);
            verify_signature(&h, &body, &cfg(), NOW_MS).unwrap();
            seen.push(ev);
        }
        for ot in [
            "customer", "email", "sms", "push", "in_app", "whatsapp", "slack", "webhook",
        ] {
            assert!(
                seen.iter().any(|e| e.object_type == ot),
                "no fixture for {ot}"
            );
        }
        assert!(seen
            .iter()
            .any(|e| e.identifiers.id.is_none() && e.identifiers.cio_id.is_some()));
        assert!(seen
            .iter()
            .any(|e| e.origin() == MessageOrigin::Transactional));
        assert!(seen.iter().any(|e| e.origin() == MessageOrigin::Broadcast));
        assert!(seen.iter().any(|e| e.preferences_content().is_some()));
        assert!(seen
            .iter()
            .any(|e| e.metric == "bounced" && e.data.contains_key("failure_message")));
    }

    #[test]
    fn every_reporting_line_of_the_demo_stream_parses() {
        let text = std::fs::read_to_string(fixture_dir().join("demo-stream.jsonl")).unwrap();
        let mut ids = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
            if v["route"] == "reporting" {
                let body = serde_json::to_vec(&v["body"]).unwrap();
                let ev = parse_reporting(&body).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
                assert!(
                    (0..=600).contains(&ev.timestamp_s),
                    "line {}: not a small offset",
                    n + 1
                );
                ids.push(ev.event_id);
            }
        }
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(
            unique.len() + 1,
            ids.len(),
            "exactly one duplicate delivery"
        );
    }

    #[test]
    fn id_null_falls_back_to_cio_id_then_email() {
        let body = br#"{"event_id":"E1","object_type":"email","metric":"opened","timestamp":1751371200,
            "data":{"identifiers":{"id":null,"email":"grace.hopper+7@example.com","cio_id":"d9c10600a1b2"},"customer_id":""}}"#;
        let ev = parse_reporting(body).unwrap();
        assert_eq!(ev.identifiers.id, None);
        assert_eq!(
            ev.identifiers.person_key().unwrap().as_str(),
            "cio:d9c10600a1b2"
        );
        let body = br#"{"event_id":"E1","object_type":"email","metric":"opened","timestamp":1751371200,
            "data":{"identifiers":{"id":null,"email":"grace.hopper+7@example.com","cio_id":null}}}"#;
        let ev = parse_reporting(body).unwrap();
        assert!(ev
            .identifiers
            .person_key()
            .unwrap()
            .as_str()
            .starts_with("email:"));
    }

    #[test]
    fn missing_identifiers_fall_back_to_customer_id_and_email_address() {
        let body = br#"{"event_id":"E2","object_type":"customer","metric":"unsubscribed","timestamp":1751371200,
            "data":{"customer_id":"cust_00012","email_address":"alan.turing+12@example.com"}}"#;
        let ev = parse_reporting(body).unwrap();
        assert_eq!(ev.identifiers.id(), Some("cust_00012"));
        assert_eq!(ev.identifiers.email(), Some("alan.turing+12@example.com"));
    }

    #[test]
    fn recipient_fills_email_or_phone_only_where_it_is_one() {
        let sms =
            br#"{"event_id":"E3","object_type":"sms","metric":"delivered","timestamp":1751371200,
            "data":{"identifiers":{"id":"cust_00013"},"recipient":"+15551234567"}}"#;
        assert_eq!(
            parse_reporting(sms).unwrap().identifiers.phone(),
            Some("+15551234567")
        );
        let push =
            br#"{"event_id":"E4","object_type":"push","metric":"delivered","timestamp":1751371200,
            "data":{"identifiers":{"id":"cust_00013"},"recipient":"fcm-device-token"}}"#;
        let ev = parse_reporting(push).unwrap();
        assert_eq!(ev.identifiers.phone, None);
        assert_eq!(ev.identifiers.email, None);
    }

    #[test]
    fn no_usable_identifier_is_refused_with_where() {
        let body =
            br#"{"event_id":"E5","object_type":"email","metric":"opened","timestamp":1751371200,
            "data":{"identifiers":{"id":null,"email":null,"cio_id":""}}}"#;
        let err = parse_reporting(body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no usable identifier in data.identifiers (id, cio_id, email all null or blank)"
        );
        let body = br#"{"event_id":"E5","object_type":"customer","metric":"subscribed","timestamp":1751371200,
            "data":{"customer_id":"","email_address":null}}"#;
        assert!(matches!(
            parse_reporting(body),
            Err(ParseError::NoIdentifier { .. })
        ));
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = parse_reporting(b"{\"event_id\": \"E6\",, }").unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::MalformedJson {
                    line: 1,
                    column: 19,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("malformed JSON at line 1 column 19: "));
        assert!(!err.to_string().ends_with("column 19"));
    }

    #[test]
    fn required_fields_are_named_when_missing() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"object_type":"email","metric":"sent","timestamp":1,"data":{}}"#, "missing `event_id`"),
            (br#"{"event_id":"","object_type":"email","metric":"sent","timestamp":1,"data":{}}"#, "`event_id` is blank"),
            (br#"{"event_id":"E","metric":"sent","timestamp":1,"data":{}}"#, "missing `object_type`"),
            (br#"{"event_id":"E","object_type":"email","timestamp":1,"data":{}}"#, "missing `metric`"),
            (br#"{"event_id":"E","object_type":"email","metric":"sent","data":{}}"#, "missing `timestamp`"),
            (br#"{"event_id":"E","object_type":"email","metric":"sent","timestamp":1}"#, "missing `data`"),
            (br#"{"event_id":"E","object_type":7,"metric":"sent","timestamp":1,"data":{}}"#, "`object_type` is a JSON number, expected string"),
            (br#"{"event_id":"E","object_type":"email","metric":"sent","timestamp":1,"data":[]}"#, "`data` is a JSON array, expected object"),
            (br#"{"event_id":"E","object_type":"email","metric":"sent","timestamp":1,"data":{"identifiers":{"id":{}}}}"#, "`data.identifiers.id` is a JSON object, expected string or null"),
            (br#"[{"event_id":"E"}]"#, "body is a JSON array, expected one event object (Customer.io sends one event per POST, not a list)"),
            (b"  \n", "empty body"),
        ];
        for (body, reason) in cases {
            assert_eq!(parse_reporting(body).unwrap_err().to_string(), *reason);
        }
    }

    #[test]
    fn oversize_body_is_refused_before_parsing() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            parse_reporting(&body),
            Err(ParseError::TooLarge {
                len: MAX_BODY_BYTES + 1
            })
        );
        assert_eq!(
            parse_reporting(&body).unwrap_err().to_string(),
            format!("body over 256 KiB ({} bytes)", MAX_BODY_BYTES + 1)
        );
    }

    #[test]
    fn timestamps_accept_float_and_numeric_string_but_not_negative_or_absurd() {
        let with_ts = |ts: &str| {
            format!(
                r#"{{"event_id":"E","object_type":"email","metric":"sent","timestamp":{ts},"data":{{"identifiers":{{"id":"1"}}}}}}"#
            )
        };
        assert_eq!(
            parse_reporting(with_ts("1751371200.9").as_bytes())
                .unwrap()
                .timestamp_s,
            1_751_371_200
        );
        assert_eq!(
            parse_reporting(with_ts("\"1751371200\"").as_bytes())
                .unwrap()
                .timestamp_s,
            1_751_371_200
        );
        assert_eq!(
            parse_reporting(with_ts("\" 1751371200.5 \"").as_bytes())
                .unwrap()
                .timestamp_s,
            1_751_371_200
        );
        let neg = parse_reporting(with_ts("-5").as_bytes()).unwrap_err();
        assert_eq!(neg.to_string(), "`timestamp` -5 is negative");
        let ms = parse_reporting(with_ts("1751371200000").as_bytes()).unwrap_err();
        assert!(
            ms.to_string().contains("milliseconds sent as seconds?"),
            "{ms}"
        );
        let big = parse_reporting(with_ts("18446744073709551615").as_bytes()).unwrap_err();
        assert!(matches!(big, ParseError::BadTimestamp { .. }));
        let s = parse_reporting(with_ts("\"soon\"").as_bytes()).unwrap_err();
        assert_eq!(s.to_string(), "`timestamp` is \"soon\", not Unix seconds");
        let b = parse_reporting(with_ts("true").as_bytes()).unwrap_err();
        assert_eq!(
            b.to_string(),
            "`timestamp` is a JSON boolean, expected Unix seconds"
        );
    }

    #[test]
    fn unknown_metric_object_type_and_fields_are_kept() {
        let body = br#"{"event_id":"E7","object_type":"carrier_pigeon","metric":"landed","timestamp":1751371200,
            "workspace_id":3,"data":{"identifiers":{"id":"cust_00014"},"campaign_id":12,"action_id":96,"wing":"left"}}"#;
        let ev = parse_reporting(body).unwrap();
        assert!(!ev.is_known());
        assert_eq!(ev.object_type, "carrier_pigeon");
        assert_eq!(ev.extra.get("workspace_id"), Some(&json!(3)));
        assert_eq!(ev.data.get("wing"), Some(&json!("left")));
        assert!(ev.data.contains_key("identifiers"));
        assert_eq!(ev.campaign_id.as_deref(), Some("12"));
        assert_eq!(ev.action_id.as_deref(), Some("96"));
        assert_eq!(ev.origin(), MessageOrigin::Campaign);
    }

    #[test]
    fn preferences_content_string_is_decoded() {
        let body = br#"{"event_id":"E8","object_type":"customer","metric":"cio_subscription_preferences_changed","timestamp":1751371200,
            "data":{"identifiers":{"id":"cust_00015"},"content":"{\"topics\":{\"topic_1\":false,\"topic_3\":true}}"}}"#;
        let ev = parse_reporting(body).unwrap();
        let content = ev.preferences_content().unwrap();
        assert_eq!(content["topics"]["topic_1"], json!(false));
    }

    #[test]
    fn reporting_event_round_trips_through_serde() {
        let ev = parse_reporting(&body_for("email", "clicked")).unwrap();
        let back: ReportingEvent =
            serde_json::from_value(serde_json::to_value(&ev).unwrap()).unwrap();
        assert_eq!(back, ev);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z0-9@.+_ ]{0,12}".prop_map(Value::String),
            Just(json!("")),
            Just(json!("1751371200")),
        ];
        let keys = prop_oneof![
            Just("event_id".to_string()),
            Just("object_type".to_string()),
            Just("metric".to_string()),
            Just("timestamp".to_string()),
            Just("data".to_string()),
            Just("identifiers".to_string()),
            Just("id".to_string()),
            Just("cio_id".to_string()),
            Just("email".to_string()),
            Just("customer_id".to_string()),
            Just("email_address".to_string()),
            Just("recipient".to_string()),
            Just("content".to_string()),
            "[a-z_]{1,8}",
        ];
        leaf.prop_recursive(4, 48, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_reporting_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_reporting(&bytes);
        }

        #[test]
        fn parse_reporting_never_panics_on_json(v in arb_json()) {
            let body = serde_json::to_vec(&v).unwrap();
            if let Ok(ev) = parse_reporting(&body) {
                prop_assert!(ev.identifiers.person_key().is_some());
                let _ = ev.preferences_content();
            }
        }

        #[test]
        fn verify_signature_never_panics(ts in ".{0,24}", sig in ".{0,80}", body in prop::collection::vec(any::<u8>(), 0..64)) {
            let h = BTreeMap::from([
                (TIMESTAMP_HEADER.to_string(), ts),
                (SIGNATURE_HEADER.to_string(), sig),
            ]);
            let _ = verify_signature(&h, &body, &cfg(), NOW_MS);
        }
    }
}
