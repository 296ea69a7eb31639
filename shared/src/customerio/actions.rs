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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW_MS: Millis = 1_751_371_500_000;
    const NOW_S: i64 = NOW_MS / 1000;

    fn shared() -> ActionAuthConfig {
        ActionAuthConfig::shared_secret(Secret::new("tok_live_4f9a"))
    }

    fn hmac_cfg() -> ActionAuthConfig {
        ActionAuthConfig::hmac(Secret::new("hmac-key-1"))
    }

    const ENTER: &[u8] = br#"{"action":"enter","export":"cart_abandoners","person":{"id":"cust_00021","email":"mary.shelley+21@example.com","cio_id":"","phone":""},"attributes":{"cart_value":"129.90","cart_currency":""},"sent_at":1751371200}"#;

    fn basic_cfg() -> ActionAuthConfig {
        let creds = BasicCredentials::parse(&Secret::new("cio-hooks:s3cr3t:pass")).unwrap();
        shared().with_basic(creds)
    }

    fn authorization(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("authorization".to_string(), value.to_string())])
    }

    #[test]
    fn basic_credentials_from_the_action_url_are_accepted_when_configured() {
        // `printf %s 'cio-hooks:s3cr3t:pass' | base64`: what a URL
        // `https://cio-hooks:s3cr3t:pass@host/...` sends.
        let h = authorization("Basic Y2lvLWhvb2tzOnMzY3IzdDpwYXNz");
        verify_action(&h, ENTER, &basic_cfg(), NOW_MS).unwrap();
        let h = authorization("basic   Y2lvLWhvb2tzOnMzY3IzdDpwYXNz ");
        verify_action(&h, ENTER, &basic_cfg(), NOW_MS).unwrap();
        // The configured token still works alongside.
        verify_action(
            &action_headers(&basic_cfg(), 0, ENTER),
            ENTER,
            &basic_cfg(),
            NOW_MS,
        )
        .unwrap();
        let creds = BasicCredentials::parse(&Secret::new("Aladdin:open sesame")).unwrap();
        assert_eq!(creds.header_value(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }

    #[test]
    fn wrong_or_absent_basic_credentials_are_refused_without_echoing_them() {
        for value in [
            "Basic Y2lvLWhvb2tzOndyb25n", // cio-hooks:wrong
            "Basic not*base64",
        ] {
            let err =
                verify_action(&authorization(value), ENTER, &basic_cfg(), NOW_MS).unwrap_err();
            assert_eq!(err, ActionAuthError::BasicMismatch, "{value}");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
            assert!(!err.to_string().contains("wrong"), "{err}");
        }
        // A right token does not rescue wrong Basic credentials.
        let mut h = action_headers(&basic_cfg(), 0, ENTER);
        h.insert("authorization".into(), "Basic Y2lvLWhvb2tzOndyb25n".into());
        assert_eq!(
            verify_action(&h, ENTER, &basic_cfg(), NOW_MS),
            Err(ActionAuthError::BasicMismatch)
        );
        // A scheme without credentials counts as none sent.
        assert!(matches!(
            verify_action(&authorization("Basic "), ENTER, &basic_cfg(), NOW_MS),
            Err(ActionAuthError::Missing { .. })
        ));
        let err = verify_action(&BTreeMap::new(), ENTER, &basic_cfg(), NOW_MS).unwrap_err();
        assert!(
            matches!(&err, ActionAuthError::Missing { header } if header.contains("Basic")),
            "{err:?}"
        );
    }

    #[test]
    fn basic_credentials_are_refused_when_none_are_configured() {
        let h = authorization("Basic Y2lvLWhvb2tzOnMzY3IzdDpwYXNz");
        let err = verify_action(&h, ENTER, &shared(), NOW_MS).unwrap_err();
        assert_eq!(err, ActionAuthError::BasicNotConfigured);
        assert!(err.to_string().contains("DATAOUT_ACTION_BASIC_AUTH"));
    }

    #[test]
    fn basic_credentials_setting_needs_user_and_password() {
        for raw in ["", "nocolon", ":pass", "user:", "  "] {
            assert_eq!(
                BasicCredentials::parse(&Secret::new(raw)).unwrap_err(),
                BasicCredentialsError::Malformed,
                "{raw:?}"
            );
        }
        assert!(format!("{:?}", basic_cfg()).contains("***"));
        assert!(!format!("{:?}", basic_cfg()).contains("s3cr3t"));
    }

    #[test]
    fn shared_secret_accepts_the_configured_token() {
        let h = action_headers(&shared(), 0, ENTER);
        verify_action(&h, ENTER, &shared(), NOW_MS).unwrap();
        let h = BTreeMap::from([("x-dataout-token".to_string(), " tok_live_4f9a ".to_string())]);
        verify_action(&h, ENTER, &shared(), NOW_MS).unwrap();
    }

    #[test]
    fn shared_secret_refuses_a_wrong_or_missing_token() {
        let h = BTreeMap::from([("x-dataout-token".to_string(), "tok_live_4f9b".to_string())]);
        assert_eq!(
            verify_action(&h, ENTER, &shared(), NOW_MS),
            Err(ActionAuthError::Mismatch)
        );
        let h = BTreeMap::from([("x-dataout-token".to_string(), "tok_live_4f9a0".to_string())]);
        assert_eq!(
            verify_action(&h, ENTER, &shared(), NOW_MS),
            Err(ActionAuthError::Mismatch)
        );
        let err = verify_action(&BTreeMap::new(), ENTER, &shared(), NOW_MS).unwrap_err();
        assert_eq!(
            err,
            ActionAuthError::Missing {
                header: "x-dataout-token".into()
            }
        );
        assert_eq!(err.to_string(), "missing `x-dataout-token` header");
    }

    #[test]
    fn bearer_authorization_header_can_carry_the_secret() {
        let mut cfg = shared();
        cfg.header_name = "Authorization".into();
        let h = BTreeMap::from([(
            "authorization".to_string(),
            "Bearer tok_live_4f9a".to_string(),
        )]);
        verify_action(&h, ENTER, &cfg, NOW_MS).unwrap();
    }

    #[test]
    fn blank_secret_refuses_everything() {
        let cfg = ActionAuthConfig::shared_secret(Secret::new("  "));
        let h = BTreeMap::from([("x-dataout-token".to_string(), "  x".to_string())]);
        assert_eq!(
            verify_action(&h, ENTER, &cfg, NOW_MS),
            Err(ActionAuthError::Mismatch)
        );
    }

    #[test]
    fn hmac_mode_accepts_a_signed_body_and_uppercase_hex() {
        let cfg = hmac_cfg();
        let mut h = action_headers(&cfg, NOW_S - 10, ENTER);
        verify_action(&h, ENTER, &cfg, NOW_MS).unwrap();
        let upper = h[DEFAULT_TOKEN_HEADER].to_uppercase();
        h.insert(DEFAULT_TOKEN_HEADER.into(), upper);
        verify_action(&h, ENTER, &cfg, NOW_MS).unwrap();
    }

    #[test]
    fn hmac_mode_refuses_tampered_stale_and_untimed_requests() {
        let cfg = hmac_cfg();
        let h = action_headers(&cfg, NOW_S, ENTER);
        let tampered = String::from_utf8_lossy(ENTER).replace("129.90", "999.90");
        assert_eq!(
            verify_action(&h, tampered.as_bytes(), &cfg, NOW_MS),
            Err(ActionAuthError::Mismatch)
        );
        let h = action_headers(&cfg, NOW_S - 301, ENTER);
        assert_eq!(
            verify_action(&h, ENTER, &cfg, NOW_MS),
            Err(ActionAuthError::Stale { age_s: 301 })
        );
        let h = action_headers(&cfg, NOW_S + 301, ENTER);
        assert_eq!(
            verify_action(&h, ENTER, &cfg, NOW_MS),
            Err(ActionAuthError::Stale { age_s: -301 })
        );
        let mut h = action_headers(&cfg, NOW_S, ENTER);
        h.remove(TIMESTAMP_HEADER);
        assert_eq!(
            verify_action(&h, ENTER, &cfg, NOW_MS),
            Err(ActionAuthError::Missing {
                header: TIMESTAMP_HEADER.into()
            })
        );
        let mut h = action_headers(&cfg, NOW_S, ENTER);
        h.insert(TIMESTAMP_HEADER.into(), "12:00".into());
        assert_eq!(
            verify_action(&h, ENTER, &cfg, NOW_MS),
            Err(ActionAuthError::BadTimestamp)
        );
        // The shared secret itself is not a valid HMAC.
        let h = BTreeMap::from([
            (DEFAULT_TOKEN_HEADER.to_string(), "hmac-key-1".to_string()),
            (TIMESTAMP_HEADER.to_string(), NOW_S.to_string()),
        ]);
        assert_eq!(
            verify_action(&h, ENTER, &cfg, NOW_MS),
            Err(ActionAuthError::Mismatch)
        );
    }

    #[test]
    fn hmac_signs_timestamp_colon_body() {
        let mut mac = mac_for(b"k").unwrap();
        mac.update(b"5:{}");
        assert_eq!(
            sign_action(b"k", 5, b"{}"),
            hex::encode(mac.finalize().into_bytes())
        );
    }

    #[test]
    fn segment_enter_parses_with_empty_strings_as_absent() {
        let a = parse_action(ENTER).unwrap();
        assert_eq!(a.action, ActionKind::Enter);
        assert_eq!(a.export.as_deref(), Some("cart_abandoners"));
        assert_eq!(a.person.id.as_deref(), Some("cust_00021"));
        assert_eq!(a.person.cio_id, None);
        assert_eq!(a.person.phone, None);
        assert_eq!(a.attributes.get("cart_value"), Some(&json!("129.90")));
        assert!(!a.attributes.contains_key("cart_currency"));
        assert_eq!(a.sent_at_ms, Some(1_751_371_200_000));
        assert!(a.dedup_id.starts_with("body:"));
        assert_eq!(a.dedup_id.len(), 5 + 64);
    }

    #[test]
    fn empty_export_or_id_or_sent_at_count_as_absent() {
        let body =
            br#"{"action":"exit","export":"","id":"","person":{"id":"cust_00022"},"sent_at":""}"#;
        assert_eq!(
            parse_action(body),
            Err(ActionParseError::MissingExport { action: "exit" })
        );
        let body = br#"{"action":"exit","export":"cart_abandoners","id":" ","person":{"id":"cust_00022"},"sent_at":""}"#;
        let a = parse_action(body).unwrap();
        assert!(a.dedup_id.starts_with("body:"));
        assert_eq!(a.sent_at_ms, None);
        let body = br#"{"action":"","person":{"id":"cust_00022"}}"#;
        assert_eq!(
            parse_action(body),
            Err(ActionParseError::MissingField {
                field: "action".into()
            })
        );
    }

    #[test]
    fn person_needs_one_usable_identifier() {
        let body = br#"{"action":"enter","export":"x","person":{"id":"","email":"","cio_id":"","phone":"+15551230000"}}"#;
        assert_eq!(parse_action(body), Err(ActionParseError::NoIdentifier));
        let body = br#"{"action":"enter","export":"x"}"#;
        assert_eq!(parse_action(body), Err(ActionParseError::NoIdentifier));
        let body =
            br#"{"action":"enter","export":"x","person":{"email":"ada.lovelace+1@example.com"}}"#;
        assert_eq!(
            parse_action(body).unwrap().person.email(),
            Some("ada.lovelace+1@example.com")
        );
        let body = br#"{"action":"enter","export":"x","person":{"id":10042}}"#;
        assert_eq!(parse_action(body).unwrap().person.id(), Some("10042"));
        let body = br#"{"action":"enter","export":"x","person":"cust_1"}"#;
        assert!(matches!(
            parse_action(body),
            Err(ActionParseError::WrongType { .. })
        ));
    }

    #[test]
    fn dedup_id_is_stable_for_the_same_bytes_and_prefers_the_caller_id() {
        let a = parse_action(ENTER).unwrap();
        let b = parse_action(ENTER).unwrap();
        assert_eq!(a.dedup_id, b.dedup_id);
        let spaced = String::from_utf8_lossy(ENTER).replace("\"enter\",", "\"enter\", ");
        assert_ne!(
            parse_action(spaced.as_bytes()).unwrap().dedup_id,
            a.dedup_id
        );
        let with_id = br#"{"action":"enter","export":"x","id":"enter:x:cust_1:1751371200","person":{"id":"cust_1"}}"#;
        assert_eq!(
            parse_action(with_id).unwrap().dedup_id,
            "enter:x:cust_1:1751371200"
        );
    }

    #[test]
    fn event_action_needs_a_name_and_keeps_its_data() {
        let body = br#"{"action":"event","id":"order_placed:ord_5001","person":{"id":"cust_00030"},
            "event":{"name":"order_placed","id":"ord_5001","data":{"order_id":"ord_5001","total":"84.50","currency":"EUR","coupon":"","items":{"sku":"","qty":"2"}}},"sent_at":"1751371200"}"#;
        let a = parse_action(body).unwrap();
        let ev = a.event.unwrap();
        assert_eq!(ev.name, "order_placed");
        assert_eq!(ev.id.as_deref(), Some("ord_5001"));
        assert_eq!(ev.data.get("total"), Some(&json!("84.50")));
        assert!(!ev.data.contains_key("coupon"));
        assert_eq!(ev.data["items"], json!({"qty":"2"}));
        assert_eq!(a.export, None);
        assert_eq!(a.dedup_id, "order_placed:ord_5001");
        for body in [
            &br#"{"action":"event","person":{"id":"c"}}"#[..],
            br#"{"action":"event","person":{"id":"c"},"event":{"name":""}}"#,
            br#"{"action":"event","person":{"id":"c"},"event":""}"#,
        ] {
            assert_eq!(parse_action(body), Err(ActionParseError::MissingEventName));
        }
        let short = br#"{"action":"event","person":{"id":"c"},"event":"cart_started"}"#;
        assert_eq!(
            parse_action(short).unwrap().event.unwrap().name,
            "cart_started"
        );
        let stringly =
            br#"{"action":"event","person":{"id":"c"},"event":{"name":"n","data":"{\"a\":1}"}}"#;
        assert_eq!(
            parse_action(stringly).unwrap().event.unwrap().data["a"],
            json!(1)
        );
    }

    #[test]
    fn unknown_action_and_bad_shapes_are_named() {
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"action":"leave","export":"x","person":{"id":"c"}}"#,
                "unknown `action` \"leave\" (expected enter, exit or event)",
            ),
            (
                br#"{"action":"enter","person":{"id":"c"}}"#,
                "`export` is required for action `enter`",
            ),
            (
                br#"{"action":"enter","export":"x","person":{"id":"c"},"attributes":[1]}"#,
                "`attributes` is a JSON array, expected object",
            ),
            (
                br#"{"action":"enter","export":"x","person":{"id":"c"},"sent_at":-3}"#,
                "`sent_at` -3 is negative",
            ),
            (
                br#"{"action":"enter","export":{},"person":{"id":"c"}}"#,
                "`export` is a JSON object, expected string",
            ),
            (br#"["enter"]"#, "body is a JSON array, expected an object"),
            (b"", "empty body"),
        ];
        for (body, reason) in cases {
            assert_eq!(parse_action(body).unwrap_err().to_string(), *reason);
        }
        let err = parse_action(br#"{"action":"enter","sent_at": }"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("malformed JSON at line 1 column "),
            "{err}"
        );
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            parse_action(&big),
            Err(ActionParseError::TooLarge {
                len: MAX_BODY_BYTES + 1
            })
        );
    }

    #[test]
    fn sent_at_takes_seconds_millis_strings_and_rfc3339() {
        let with = |v: &str| {
            let body =
                format!(r#"{{"action":"exit","export":"x","person":{{"id":"c"}},"sent_at":{v}}}"#);
            parse_action(body.as_bytes()).map(|a| a.sent_at_ms)
        };
        assert_eq!(with("1751371200"), Ok(Some(1_751_371_200_000)));
        assert_eq!(with("\"1751371200\""), Ok(Some(1_751_371_200_000)));
        assert_eq!(with("1751371200123"), Ok(Some(1_751_371_200_123)));
        assert_eq!(
            with("\"2025-07-01T12:00:00Z\""),
            Ok(Some(1_751_371_200_000))
        );
        assert_eq!(with("null"), Ok(None));
        assert_eq!(with("120"), Ok(Some(120_000)));
        assert!(with("\"tomorrow\"").is_err());
        assert!(with("1e300").is_err());
    }

    #[test]
    fn unknown_top_level_fields_are_ignored() {
        let body = br#"{"action":"enter","export":"x","person":{"id":"c"},"campaign":"Cart abandoners","v":2}"#;
        parse_action(body).unwrap();
    }

    fn fixture_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("events")
            .join("customerio")
    }

    #[test]
    fn every_action_fixture_parses() {
        let expected = [
            ("cart_started.json", ActionKind::Event),
            ("checkout_started.json", ActionKind::Event),
            ("order_placed.json", ActionKind::Event),
            ("segment_enter_cart_abandoners.json", ActionKind::Enter),
            ("segment_exit_cart_abandoners.json", ActionKind::Exit),
        ];
        let dir = fixture_dir().join("actions");
        let count = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(count, expected.len());
        for (file, kind) in expected {
            let body = std::fs::read(dir.join(file)).unwrap();
            let a = parse_action(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(a.action, kind, "{file}");
            assert!(a.sent_at_ms.is_some(), "{file}");
            verify_action(
                &action_headers(&shared(), 0, &body),
                &body,
                &shared(),
                NOW_MS,
            )
            .unwrap();
        }
        let order = parse_action(&std::fs::read(dir.join("order_placed.json")).unwrap()).unwrap();
        let data = order.event.unwrap().data;
        for key in ["order_id", "total", "currency"] {
            assert!(data.contains_key(key), "order_placed lacks {key}");
        }
    }

    #[test]
    fn every_action_line_of_the_demo_stream_parses() {
        let text = std::fs::read_to_string(fixture_dir().join("demo-stream.jsonl")).unwrap();
        let mut actions = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
            assert!(
                v["route"] == "actions" || v["route"] == "reporting",
                "line {}",
                n + 1
            );
            if v["route"] == "actions" {
                let body = serde_json::to_vec(&v["body"]).unwrap();
                let a = parse_action(&body).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
                let at = a.sent_at_ms.unwrap_or(-1);
                assert!(
                    (0..=600_000).contains(&at),
                    "line {}: sent_at not a small offset",
                    n + 1
                );
                actions.push(a);
            }
        }
        let has = |kind: ActionKind, export: &str| {
            actions
                .iter()
                .any(|a| a.action == kind && a.export.as_deref() == Some(export))
        };
        assert!(has(ActionKind::Enter, "cart_abandoners"));
        assert!(has(ActionKind::Exit, "cart_abandoners"));
        assert!(has(ActionKind::Enter, "lapsed_vips"));
        assert!(has(ActionKind::Enter, "recent_purchasers"));
        let orders = actions
            .iter()
            .filter(|a| a.event.as_ref().is_some_and(|e| e.name == "order_placed"))
            .count();
        assert!(orders >= 3);
        // The out-of-order pair: an exit older than the entry delivered before it.
        let out_of_order = actions.iter().enumerate().any(|(i, exit)| {
            exit.action == ActionKind::Exit
                && actions[..i].iter().any(|enter| {
                    enter.action == ActionKind::Enter
                        && enter.export == exit.export
                        && enter.person.id == exit.person.id
                        && enter.sent_at_ms > exit.sent_at_ms
                })
        });
        assert!(out_of_order);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z0-9@.:+_ -]{0,12}".prop_map(Value::String),
            Just(json!("")),
            prop_oneof![
                Just(json!("enter")),
                Just(json!("exit")),
                Just(json!("event"))
            ],
        ];
        let keys = prop_oneof![
            Just("action".to_string()),
            Just("export".to_string()),
            Just("id".to_string()),
            Just("person".to_string()),
            Just("email".to_string()),
            Just("cio_id".to_string()),
            Just("attributes".to_string()),
            Just("event".to_string()),
            Just("name".to_string()),
            Just("data".to_string()),
            Just("sent_at".to_string()),
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
        fn parse_action_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_action(&bytes);
        }

        #[test]
        fn parse_action_never_panics_on_json(v in arb_json()) {
            let body = serde_json::to_vec(&v).unwrap();
            if let Ok(a) = parse_action(&body) {
                prop_assert!(a.person.person_key().is_some());
                prop_assert!(!a.dedup_id.is_empty());
                match a.action {
                    ActionKind::Event => prop_assert!(a.event.is_some()),
                    _ => prop_assert!(a.export.is_some()),
                }
            }
        }

        #[test]
        fn verify_action_never_panics(token in ".{0,80}", ts in ".{0,24}") {
            let h = BTreeMap::from([
                (DEFAULT_TOKEN_HEADER.to_string(), token),
                (TIMESTAMP_HEADER.to_string(), ts),
            ]);
            let _ = verify_action(&h, b"{}", &shared(), NOW_MS);
            let _ = verify_action(&h, b"{}", &hmac_cfg(), NOW_MS);
        }
    }
}
