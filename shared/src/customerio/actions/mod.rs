//! Campaign webhook actions: the bodies Customer.io campaigns POST to us
//! ("send and receive data" steps). The format is ours; this page is its
//! definition and the templates users paste into Customer.io.
//!
//! ## Authentication
//!
//! Customer.io signs webhook actions with a key the customer cannot set
//! (API-CONTRACTS §1b, **Verify**), so we use our own secret:
//!
//! * **Shared secret** (default): add a custom header to the webhook action,
//!   `X-Dataout-Token: <secret>` (the header name is configurable; an
//!   `Authorization: Bearer <secret>` header works too with
//!   `header_name = "authorization"`). Compared in constant time.
//! * **HMAC** (for our simulators, proxies and anything that can compute it):
//!   `X-Dataout-Timestamp: <unix seconds>` and the token header holding the hex
//!   HMAC-SHA256 of `"<timestamp>:<raw body>"`, within a replay window
//!   (default 5 minutes, both ways).
//! * **Basic** (a configured alternative to either): Customer.io's webhook
//!   action page tells users to put `user:pass@` in the request URL when the
//!   receiver wants Basic authentication; the request then carries
//!   `Authorization: Basic base64(user:pass)`. With [`BasicCredentials`]
//!   configured (secret `DATAOUT_ACTION_BASIC_AUTH`, `user:password`) such a
//!   request is checked against them in constant time; wrong or absent
//!   credentials are refused, and without the setting a Basic header is
//!   refused with a reason that says so. Credentials are never logged or
//!   kept in quarantine (`docs/customerio.md`).
//!
//! ## Body
//!
//! ```json
//! {
//!   "action": "enter" | "exit" | "event",
//!   "export": "cart_abandoners",          // required for enter / exit
//!   "id": "…",                            // optional, unique per send: the dedup key
//!   "person": {"id": "…", "email": "…", "cio_id": "…", "phone": "…"},
//!   "attributes": {"cart_value": "129.90"},
//!   "event": {"name": "order_placed", "id": "…", "data": {…}},   // required for event
//!   "sent_at": 1751371200                 // Unix seconds (ms, numeric strings, RFC 3339 also taken)
//! }
//! ```
//!
//! * Liquid renders a missing value as an empty string, so `""` means absent
//!   everywhere (identifiers, attributes, event data, `id`, `export`,
//!   `sent_at`). `null` attribute values are kept (they clear an attribute).
//! * At least one of `person.id`, `person.cio_id`, `person.email` must be
//!   non-empty. A phone alone does not identify a person.
//! * Unknown top-level fields are ignored.
//! * Values arrive as Liquid renders them: strings. Quote every Liquid tag
//!   (`"{{customer.cart_value}}"`); an unquoted tag that renders empty makes
//!   the body invalid JSON. The export's attribute transforms parse numbers.
//! * Dedup: `id` when given, else `"body:" + sha256(raw body)`. We found no
//!   documented Liquid variable holding a per-send id (**Verify**), so the
//!   templates below build `id` from data that is unique per send where there
//!   is some (an order id), and otherwise leave it out: a redelivery of the
//!   same bytes is then recognised by its hash. Since `sent_at` renders the
//!   current second, re-rendered retries hash differently; applying the same
//!   enter or exit twice is harmless (membership is ordered by `sent_at`).
//! * Free-text attributes containing `"` break the JSON; keep templates to
//!   ids, numbers, dates and enums (the export allow-list wants those
//!   anyway). **Verify** whether your workspace's Liquid has a `json` filter
//!   before using one.
//!
//! ## Templates to paste into Customer.io
//!
//! Create each as a webhook action (method POST, URL = the intake's actions
//! URL, header `X-Dataout-Token`), then set the action to *send
//! automatically* (new actions start as Draft).
//!
//! Segment entry: a segment-triggered campaign on the segment, first step:
//!
//! ```text
//! {"action":"enter","export":"cart_abandoners","person":{"id":"{{customer.id}}","email":"{{customer.email}}","cio_id":"{{customer.cio_id}}","phone":"{{customer.phone}}"},"attributes":{"cart_value":"{{customer.cart_value}}","cart_currency":"{{customer.cart_currency}}"},"sent_at":{{ "now" | date: "%s" }}}
//! ```
//!
//! Segment exit: campaign exits do not fire a webhook, so build a second
//! segment-triggered campaign on the complement segment (people who are NOT
//! in `cart_abandoners`, e.g. "cart_started in the last 7 days and not in
//! Cart abandoners") with:
//!
//! ```text
//! {"action":"exit","export":"cart_abandoners","person":{"id":"{{customer.id}}","email":"{{customer.email}}","cio_id":"{{customer.cio_id}}"},"sent_at":{{ "now" | date: "%s" }}}
//! ```
//!
//! Event-triggered (a campaign triggered by the event; list the event's
//! properties explicitly):
//!
//! ```text
//! {"action":"event","id":"order_placed:{{event.order_id}}","person":{"id":"{{customer.id}}","email":"{{customer.email}}","cio_id":"{{customer.cio_id}}","phone":"{{customer.phone}}"},"event":{"name":"order_placed","id":"{{event.order_id}}","data":{"order_id":"{{event.order_id}}","total":"{{event.total}}","currency":"{{event.currency}}"}},"sent_at":{{ "now" | date: "%s" }}}
//! ```
//!
//! ```text
//! {"action":"event","person":{"id":"{{customer.id}}","email":"{{customer.email}}","cio_id":"{{customer.cio_id}}"},"event":{"name":"cart_started","data":{"cart_id":"{{event.cart_id}}","cart_value":"{{event.cart_value}}","currency":"{{event.currency}}"}},"sent_at":{{ "now" | date: "%s" }}}
//! ```
//!
//! The batch export against App API membership stays the ground truth: it
//! repairs any entry or exit these actions missed.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::webhook::{
    header, id_value, json_error_parts, json_kind, outside_window, seconds_value, MAX_TIMESTAMP_S,
};
use crate::domain::model::{Identifiers, Millis};
use crate::ports::Secret;

/// Default header carrying the shared secret or the HMAC (lowercased).
pub const DEFAULT_TOKEN_HEADER: &str = "x-dataout-token";
/// Header carrying the Unix seconds an HMAC-mode request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-dataout-timestamp";
pub const DEFAULT_TOLERANCE: Duration = super::webhook::DEFAULT_TOLERANCE;
pub const MAX_BODY_BYTES: usize = super::webhook::MAX_BODY_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionAuthMode {
    /// The header holds the secret itself.
    SharedSecret,
    /// The header holds hex HMAC-SHA256 of `"<X-Dataout-Timestamp>:<body>"`.
    Hmac,
}

#[derive(Clone, Debug)]
pub struct ActionAuthConfig {
    /// Lowercased header name; default [`DEFAULT_TOKEN_HEADER`].
    pub header_name: String,
    pub secret: Secret,
    pub mode: ActionAuthMode,
    /// Replay window of HMAC mode (unused by shared-secret mode).
    pub tolerance: Duration,
    /// Accepted as an alternative when set: `Authorization: Basic`.
    pub basic: Option<BasicCredentials>,
}

/// The `user:password` a webhook action's URL carries (`https://user:pass@…`),
/// which arrives as `Authorization: Basic base64(user:password)`.
#[derive(Clone, Debug)]
pub struct BasicCredentials {
    /// `user:password` as one secret: it is what the header encodes.
    pair: Secret,
}

/// Why configured Basic credentials are unusable. Never holds the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BasicCredentialsError {
    #[error("expected `user:password` with a non-empty user and password (value not shown)")]
    Malformed,
}

impl BasicCredentials {
    /// From `user:password`; the user may not contain `:` (RFC 7617), the
    /// password may.
    pub fn parse(raw: &Secret) -> Result<Self, BasicCredentialsError> {
        let value = raw.expose().trim();
        match value.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Ok(BasicCredentials {
                    pair: Secret::new(value),
                })
            }
            _ => Err(BasicCredentialsError::Malformed),
        }
    }

    /// The header value a request with these credentials carries.
    pub fn header_value(&self) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(self.pair.expose());
        format!("Basic {encoded}")
    }
}

impl ActionAuthConfig {
    pub fn shared_secret(secret: Secret) -> Self {
        ActionAuthConfig {
            header_name: DEFAULT_TOKEN_HEADER.to_string(),
            secret,
            mode: ActionAuthMode::SharedSecret,
            tolerance: DEFAULT_TOLERANCE,
            basic: None,
        }
    }

    /// Also accept `Authorization: Basic` with these credentials.
    pub fn with_basic(mut self, basic: BasicCredentials) -> Self {
        self.basic = Some(basic);
        self
    }

    pub fn hmac(secret: Secret) -> Self {
        ActionAuthConfig {
            mode: ActionAuthMode::Hmac,
            ..Self::shared_secret(secret)
        }
    }
}

/// Why a webhook action was not authenticated. Every variant maps to 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionAuthError {
    #[error("missing `{header}` header")]
    Missing { header: String },
    #[error("action token does not match (wrong secret, or the body was altered)")]
    Mismatch,
    #[error("X-Dataout-Timestamp is {age_s} s from now, outside the replay window")]
    Stale { age_s: i64 },
    #[error("X-Dataout-Timestamp is not integer Unix seconds")]
    BadTimestamp,
    #[error("Basic credentials do not match the configured user and password (check the action URL's `user:password@`)")]
    BasicMismatch,
    #[error("Authorization: Basic sent, but no Basic credentials are configured (secret DATAOUT_ACTION_BASIC_AUTH)")]
    BasicNotConfigured,
}

fn mac_for(secret: &[u8]) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()
}

/// Hex HMAC-SHA256 (lowercase) of `"<timestamp_s>:<body>"`, for HMAC mode.
pub fn sign_action(secret: &[u8], timestamp_s: i64, body: &[u8]) -> String {
    let Some(mut mac) = mac_for(secret) else {
        return String::new();
    };
    mac.update(format!("{timestamp_s}:").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The headers an authenticated request carries under `cfg` (tests, demo,
/// simulators). `timestamp_s` is only used in HMAC mode.
pub fn action_headers(
    cfg: &ActionAuthConfig,
    timestamp_s: i64,
    body: &[u8],
) -> BTreeMap<String, String> {
    let name = cfg.header_name.to_ascii_lowercase();
    match cfg.mode {
        ActionAuthMode::SharedSecret => BTreeMap::from([(name, cfg.secret.expose().to_string())]),
        ActionAuthMode::Hmac => BTreeMap::from([
            (
                name,
                sign_action(cfg.secret.expose().as_bytes(), timestamp_s, body),
            ),
            (TIMESTAMP_HEADER.to_string(), timestamp_s.to_string()),
        ]),
    }
}

/// Checks a webhook action's token or HMAC in constant time. A blank secret
/// refuses everything.
pub fn verify_action(
    headers: &BTreeMap<String, String>,
    body: &[u8],
    cfg: &ActionAuthConfig,
    now_ms: Millis,
) -> Result<(), ActionAuthError> {
    let name = cfg.header_name.trim().to_ascii_lowercase();
    let basic = header(headers, "authorization").and_then(strip_basic);
    let token = header(headers, &name).filter(|v| strip_basic(v).is_none());
    match (basic, &cfg.basic) {
        (Some(sent), Some(expected)) => return verify_basic(sent, expected),
        (Some(_), None) if token.is_none() => return Err(ActionAuthError::BasicNotConfigured),
        _ => {}
    }
    let provided = token.ok_or_else(|| ActionAuthError::Missing {
        header: if cfg.basic.is_some() {
            format!("{name}` or `authorization: Basic")
        } else {
            name.clone()
        },
    })?;
    let secret = cfg.secret.expose().trim();
    if secret.is_empty() {
        return Err(ActionAuthError::Mismatch);
    }
    match cfg.mode {
        ActionAuthMode::SharedSecret => {
            let token = strip_bearer(provided);
            // Digests first, so the comparison leaks no length either.
            let a = Sha256::digest(token.as_bytes());
            let b = Sha256::digest(secret.as_bytes());
            if bool::from(a.ct_eq(&b)) {
                Ok(())
            } else {
                Err(ActionAuthError::Mismatch)
            }
        }
        ActionAuthMode::Hmac => {
            let ts_raw =
                header(headers, TIMESTAMP_HEADER).ok_or_else(|| ActionAuthError::Missing {
                    header: TIMESTAMP_HEADER.to_string(),
                })?;
            let timestamp_s: i64 = ts_raw.parse().map_err(|_| ActionAuthError::BadTimestamp)?;
            let sig = hex::decode(provided).map_err(|_| ActionAuthError::Mismatch)?;
            let mut mac = mac_for(secret.as_bytes()).ok_or(ActionAuthError::Mismatch)?;
            mac.update(ts_raw.as_bytes());
            mac.update(b":");
            mac.update(body);
            mac.verify_slice(&sig)
                .map_err(|_| ActionAuthError::Mismatch)?;
            match outside_window(timestamp_s, now_ms, cfg.tolerance) {
                Some(age_s) => Err(ActionAuthError::Stale { age_s }),
                None => Ok(()),
            }
        }
    }
}

/// The credentials part of `Basic <base64>`, scheme matched in any case.
fn strip_basic(v: &str) -> Option<&str> {
    match v.get(..6) {
        Some(p) if p.eq_ignore_ascii_case("basic ") => v.get(6..).map(str::trim),
        _ => None,
    }
}

/// Decoded `user:password` against the configured pair, compared as digests
/// so neither content nor length leaks through timing.
fn verify_basic(sent: &str, expected: &BasicCredentials) -> Result<(), ActionAuthError> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(sent)
        .map_err(|_| ActionAuthError::BasicMismatch)?;
    let a = Sha256::digest(&decoded);
    let b = Sha256::digest(expected.pair.expose().as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ActionAuthError::BasicMismatch)
    }
}

fn strip_bearer(v: &str) -> &str {
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v.get(7..).map_or(v, str::trim),
        _ => v,
    }
}

// ---------------------------------------------------------------------------
// Body
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Enter,
    Exit,
    Event,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionEventBody {
    pub name: String,
    pub id: Option<String>,
    pub data: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionBody {
    /// The caller's `id`, else `"body:" + sha256 hex of the raw body`.
    pub dedup_id: String,
    pub action: ActionKind,
    /// Always set for enter / exit.
    pub export: Option<String>,
    /// Always set for event.
    pub event: Option<ActionEventBody>,
    pub person: Identifiers,
    /// `""` values removed.
    pub attributes: Map<String, Value>,
    pub sent_at_ms: Option<Millis>,
}

/// Why a webhook action body could not be used. All permanent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionParseError {
    #[error("body over 256 KiB ({len} bytes)")]
    TooLarge { len: usize },
    #[error("empty body")]
    Empty,
    #[error("malformed JSON at line {line} column {column}: {detail} (an unquoted Liquid tag that rendered empty?)")]
    MalformedJson {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("body is a JSON {found}, expected an object")]
    NotAnObject { found: &'static str },
    #[error("missing `{field}`")]
    MissingField { field: String },
    #[error("`{field}` is a JSON {found}, expected {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("unknown `action` {value:?} (expected enter, exit or event)")]
    UnknownAction { value: String },
    #[error("`export` is required for action `{action}`")]
    MissingExport { action: &'static str },
    #[error("`event.name` is required for action `event`")]
    MissingEventName,
    #[error("`{field}` {reason}")]
    BadTimestamp { field: String, reason: String },
    #[error("no usable identifier in `person` (id, email, cio_id all absent or empty)")]
    NoIdentifier,
}

/// `""` = absent: drops empty-string values from objects, recursively.
fn drop_empty(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) if s.trim().is_empty() => None,
            Value::Object(m) => Some((k, Value::Object(drop_empty(m)))),
            other => Some((k, other)),
        })
        .collect()
}

fn opt_str(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, ActionParseError> {
    id_value(obj.get(key)).map_err(|found| ActionParseError::WrongType {
        field: format!("{path}{key}"),
        expected: "string",
        found,
    })
}

fn opt_object(
    obj: &mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Map<String, Value>, ActionParseError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(drop_empty(m)),
        // A template that rendered an object as a JSON string.
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => Ok(drop_empty(m)),
            _ => Err(ActionParseError::WrongType {
                field: format!("{path}{key}"),
                expected: "object",
                found: "string",
            }),
        },
        Some(other) => Err(ActionParseError::WrongType {
            field: format!("{path}{key}"),
            expected: "object",
            found: json_kind(&other),
        }),
    }
}

/// Unix seconds (integer, float, numeric string), milliseconds (numbers
/// from 10^11 up: no seconds value that large is plausible), or RFC 3339.
fn sent_at_ms(v: &Value) -> Result<Option<Millis>, String> {
    if let Value::String(s) = v {
        let t = s.trim();
        if t.is_empty() {
            return Ok(None);
        }
        if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
            let ms = dt.timestamp_millis();
            return if ms < 0 {
                Err(format!("{t} is before 1970"))
            } else {
                Ok(Some(ms))
            };
        }
    }
    if let Value::Null = v {
        return Ok(None);
    }
    const MS_FROM: f64 = 1e11;
    let as_f64 = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    if let Some(f) = as_f64.filter(|f| f.is_finite() && *f >= MS_FROM) {
        return if f <= (MAX_TIMESTAMP_S as f64) * 1000.0 {
            Ok(Some(f.trunc() as i64))
        } else {
            Err(format!("{f} is past year 9999"))
        };
    }
    seconds_value(v).map(|s| Some(s.saturating_mul(1000)))
}

/// Parses a webhook action body (after [`verify_action`]).
pub fn parse_action(body: &[u8]) -> Result<ActionBody, ActionParseError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ActionParseError::TooLarge { len: body.len() });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ActionParseError::Empty);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let (line, column, detail) = json_error_parts(&e);
        ActionParseError::MalformedJson {
            line,
            column,
            detail,
        }
    })?;
    let mut top = match value {
        Value::Object(m) => m,
        other => {
            return Err(ActionParseError::NotAnObject {
                found: json_kind(&other),
            })
        }
    };

    let action = match opt_str(&top, "action", "")? {
        None => {
            return Err(ActionParseError::MissingField {
                field: "action".into(),
            })
        }
        Some(a) => match a.to_ascii_lowercase().as_str() {
            "enter" => ActionKind::Enter,
            "exit" => ActionKind::Exit,
            "event" => ActionKind::Event,
            _ => return Err(ActionParseError::UnknownAction { value: a }),
        },
    };
    let export = opt_str(&top, "export", "")?;
    match (action, &export) {
        (ActionKind::Enter, None) => {
            return Err(ActionParseError::MissingExport { action: "enter" })
        }
        (ActionKind::Exit, None) => return Err(ActionParseError::MissingExport { action: "exit" }),
        _ => {}
    }

    let event = match top.remove("event") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => {
            let name = name.trim();
            (!name.is_empty()).then(|| ActionEventBody {
                name: name.to_string(),
                id: None,
                data: Map::new(),
            })
        }
        Some(Value::Object(mut ev)) => match opt_str(&ev, "name", "event.")? {
            None => None,
            Some(name) => Some(ActionEventBody {
                name,
                id: opt_str(&ev, "id", "event.")?,
                data: opt_object(&mut ev, "data", "event.")?,
            }),
        },
        Some(other) => {
            return Err(ActionParseError::WrongType {
                field: "event".into(),
                expected: "object",
                found: json_kind(&other),
            })
        }
    };
    if action == ActionKind::Event && event.is_none() {
        return Err(ActionParseError::MissingEventName);
    }

    let person = match top.get("person") {
        None | Some(Value::Null) => return Err(ActionParseError::NoIdentifier),
        Some(Value::Object(p)) => Identifiers {
            id: opt_str(p, "id", "person.")?,
            email: opt_str(p, "email", "person.")?,
            cio_id: opt_str(p, "cio_id", "person.")?,
            phone: opt_str(p, "phone", "person.")?,
        },
        Some(other) => {
            return Err(ActionParseError::WrongType {
                field: "person".into(),
                expected: "object",
                found: json_kind(other),
            })
        }
    };
    if person.person_key().is_none() {
        return Err(ActionParseError::NoIdentifier);
    }

    let attributes = opt_object(&mut top, "attributes", "")?;
    let sent_at_ms = match top.get("sent_at") {
        None => None,
        Some(v) => sent_at_ms(v).map_err(|reason| ActionParseError::BadTimestamp {
            field: "sent_at".into(),
            reason,
        })?,
    };
    let dedup_id = match opt_str(&top, "id", "")? {
        Some(id) => id,
        None => format!("body:{}", hex::encode(Sha256::digest(body))),
    };

    Ok(ActionBody {
        dedup_id,
        action,
        export,
        event,
        person,
        attributes,
        sent_at_ms,
    })
}

#[cfg(test)]
mod tests;
