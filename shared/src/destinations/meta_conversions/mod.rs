//! Meta Conversions API, `API-CONTRACTS.md` §3b: the events of events /
//! conversions exports, as server events of one pixel (dataset).
//!
//! `POST {base}/{v}/{pixel_id}/events` with a JSON body
//! `{data: [≤ 1000 events], access_token, test_event_code?}` (the token in
//! the body, never in the URL, so it cannot leak into an error message).
//! Meta answers `{events_received, messages, fbtrace_id}`.
//!
//! **One invalid event fails the whole request**, so every event is checked
//! before it is batched, and one Meta would refuse is `OpOutcome::Invalid`
//! (never sent, counted as invalid) while its neighbours still go:
//! * `event_time` (the op's `source_ts`, in Unix seconds) older than 7 days
//!   by the destination's clock — less a safety margin, so an event in
//!   flight or retried cannot cross the limit on the way — or more than a
//!   minute in the future;
//! * no matchable `user_data` (none of em, ph, external_id, fbc, fbp, or
//!   client_ip_address with client_user_agent);
//! * a `Purchase` without `value` and `currency` (ISO 4217);
//! * `action_source: website` without the event's `client_user_agent` and
//!   `event_source_url` properties (Meta requires both for web events);
//! * no `event_id` (Meta could not deduplicate a resend) or an event name
//!   over 50 characters.
//!
//! **Never counted twice.** `event_id` is the source event's id: Meta keeps
//! one event per `event_name` + `event_id` within 48 h (and deduplicates
//! with the browser pixel on it), so a resend after a failure is harmless.
//!
//! `user_data` is hashed per CAPI rules with the Meta normalisation of
//! `domain::identity` (em, ph, fn, ln, ge, db, ct, st, zp, country SHA-256;
//! external_id hashed too, as Meta recommends); the keys Meta must receive
//! unhashed (`client_ip_address`, `client_user_agent`, `fbc`, `fbp`) are
//! read from the event's properties and sent as they are. `custom_data`
//! carries `value`, `currency`, `order_id` from the event payload and the
//! event's other properties except anything that looks like personal data.
//!
//! Errors are classified as for Meta audiences (`meta::errors`: throttling
//! waits, `is_transient` and transient codes retry, token and permission
//! errors are permanent; 2635 raises `ApiVersionDeprecated`). A code-100
//! answer means an event Meta finds invalid (our checks should have kept it
//! back) and Meta took none of the request: it is split in halves and
//! resent until the refused event stands alone, so only that event is
//! `Rejected` with Meta's message and every other event is delivered by
//! exactly one accepted request. An answer whose `events_received` is not
//! the number sent is a retryable failure (Meta deduplicates the resend).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::meta_audience::{
    retry_after, ErrorClass, GraphError, DEFAULT_API_VERSION, DEFAULT_BASE_URL,
    DEPRECATED_VERSION_CODE,
};
use crate::destinations::{Destination, DestinationAlert, DestinationError, OpOutcome};
use crate::domain::identity::{
    is_sha256_hex, meta_capi_external_id, meta_row, meta_schema, normalize_date_of_birth,
    normalize_email, sha256_hex, IdentityOptions,
};
use crate::domain::model::{DeliveryOp, EventPayload, Millis, OpKind};
use crate::domain::spec::{
    DestinationKind, DestinationSettings, DestinationSpec, ExportDestination, ExportSpec, MatchKey,
};
use crate::ports::{Clock, Secret, Secrets};

/// Meta's cap on events per request.
pub const MAX_EVENTS_PER_REQUEST: usize = 1_000;
/// Meta refuses (the whole request for) an event older than this.
pub const MAX_EVENT_AGE_MS: Millis = 7 * 24 * 3600 * 1000;
/// Events this close to the 7-day limit are refused too: a request in
/// flight, or a clock a little behind Meta's, must not cross it.
pub const AGE_SAFETY_MARGIN_MS: Millis = 5 * 60 * 1000;
/// How far in the future an event may be (clock skew).
pub const MAX_FUTURE_MS: Millis = 60 * 1000;
/// Longest custom event name Meta takes.
pub const MAX_EVENT_NAME_CHARS: usize = 50;
/// The action source when the spec names none: events a server system
/// recorded (orders, subscriptions), which is what Customer.io forwards.
pub const DEFAULT_ACTION_SOURCE: &str = "system_generated";
/// Action sources we can satisfy with what a Customer.io event carries.
pub const SUPPORTED_ACTION_SOURCES: &[&str] = &[
    "system_generated",
    "website",
    "email",
    "phone_call",
    "chat",
    "physical_store",
    "other",
];

/// Why a Meta action source we know cannot be sent, if it is one.
pub fn unsupported_action_source(value: &str) -> Option<&'static str> {
    match value {
        "app" => Some("app events need `app_data` (advertiser_tracking_enabled, application_tracking_enabled, extinfo) from the device SDK, which Customer.io events do not carry"),
        "business_messaging" => Some("business messaging events need `messaging_channel` and a page- or WhatsApp-scoped user id, which Customer.io events do not carry"),
        _ => None,
    }
}

/// Properties that go to the event or `user_data`, unhashed, never to
/// `custom_data`.
const SERVER_KEYS: &[&str] = &[
    "client_user_agent",
    "client_ip_address",
    "fbc",
    "fbp",
    "event_source_url",
];
/// Property-name fragments that mark personal data wherever they appear
/// in a name (`customerEmail`, `billing_address`): never in `custom_data`.
const PII_FRAGMENTS: &[&str] = &[
    "email",
    "phone",
    "mobile",
    "firstname",
    "first_name",
    "lastname",
    "last_name",
    "fullname",
    "full_name",
    "address",
    "street",
    "birth",
    "postal",
    "postcode",
    "zipcode",
    "password",
    "user_agent",
];
/// Short markers that count only as a whole word of the name (`zip`,
/// `billing_zip`, but not `zipper_size`; `dob`, but not `adobe_id`).
const PII_WORDS: &[&str] = &["zip", "dob", "ssn", "ip", "name"];
/// Every match key: a binding that lists none sends what the person has.
const ALL_KEYS: &[MatchKey] = &[
    MatchKey::Email,
    MatchKey::Phone,
    MatchKey::ExternId,
    MatchKey::FirstName,
    MatchKey::LastName,
    MatchKey::City,
    MatchKey::State,
    MatchKey::Zip,
    MatchKey::Country,
    MatchKey::Gender,
    MatchKey::DateOfBirth,
];

pub struct MetaConversionsDestination {
    name: String,
    /// Base URL with the API version, e.g. `https://graph.facebook.com/v27.0`.
    api_url: String,
    pixel_id: String,
    access_token: Secret,
    test_event_code: Option<Secret>,
    action_source: String,
    batch_size: usize,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    /// Set once Meta answered 2635 (the configured version has expired).
    version_deprecated: AtomicBool,
}

impl std::fmt::Debug for MetaConversionsDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaConversionsDestination")
            .field("name", &self.name)
            .field("api_url", &self.api_url)
            .field("pixel_id", &self.pixel_id)
            .field("action_source", &self.action_source)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// How a sent request ended, short of a failure of the whole send.
enum Answer {
    /// Meta took every event of the request.
    Received,
    /// Meta refused the request for its content (code 100) and took none
    /// of its events.
    Refused(String),
}

impl MetaConversionsDestination {
    pub fn new(
        name: String,
        spec: &DestinationSpec,
        secrets: &dyn Secrets,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DestinationError> {
        let permanent = |message: String| DestinationError::Permanent {
            destination: name.clone(),
            message,
        };
        let DestinationSettings::MetaConversions {
            api_version,
            pixel_id,
            access_token_env,
            action_source,
            test_event_code_env,
        } = &spec.settings
        else {
            return Err(permanent(
                "settings are not of kind meta_conversions".into(),
            ));
        };
        let access_token = crate::destinations::required_secret(secrets, &name, access_token_env)?;
        // A named test code that is not set is a mistake, not "no code":
        // events meant for the Test Events tool would count for real.
        let test_event_code = match test_event_code_env {
            Some(env) => Some(crate::destinations::required_secret(secrets, &name, env)?),
            None => None,
        };
        if !SUPPORTED_ACTION_SOURCES.contains(&action_source.as_str()) {
            return Err(permanent(format!(
                "action_source `{action_source}` cannot be sent; expected one of: {}",
                SUPPORTED_ACTION_SOURCES.join(", ")
            )));
        }
        if pixel_id.is_empty() || !pixel_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(permanent("pixel_id must be digits only".into()));
        }
        let version = api_version.trim();
        let version = match version {
            "" => DEFAULT_API_VERSION.to_string(),
            v if v.starts_with('v') => v.to_string(),
            v => format!("v{v}"),
        };
        let base = spec
            .base_url
            .as_deref()
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/');
        Ok(Self {
            api_url: format!("{base}/{version}"),
            pixel_id: pixel_id.clone(),
            access_token,
            test_event_code,
            action_source: action_source.clone(),
            batch_size: spec.batch_size.clamp(1, MAX_EVENTS_PER_REQUEST),
            name,
            http,
            clock,
            version_deprecated: AtomicBool::new(false),
        })
    }

    fn permanent(&self, message: String) -> DestinationError {
        DestinationError::Permanent {
            destination: self.name.clone(),
            message,
        }
    }

    fn retryable(&self, message: String) -> DestinationError {
        DestinationError::Retryable {
            destination: self.name.clone(),
            message,
            retry_after: None,
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> DestinationError {
        let e = e.without_url();
        if e.is_builder() {
            self.permanent(format!("could not build the request: {e}"))
        } else {
            self.retryable(format!("transport: {e}"))
        }
    }

    /// One server event for `op`, or why Meta would refuse it.
    fn event(
        &self,
        op: &DeliveryOp,
        keys: &[MatchKey],
        opts: &IdentityOptions,
        now: Millis,
    ) -> Result<Value, String> {
        let event = op
            .event
            .as_ref()
            .ok_or_else(|| "an event op without its event".to_string())?;
        build_event(op, event, &self.action_source, keys, opts, now)
    }

    /// POST one request of events.
    async fn post(&self, events: Vec<Value>) -> Result<Answer, DestinationError> {
        let sent = events.len();
        let mut body = json!({
            "data": events,
            "access_token": self.access_token.expose(),
        });
        if let (Some(code), Some(obj)) = (&self.test_event_code, body.as_object_mut()) {
            obj.insert("test_event_code".into(), json!(code.expose()));
        }
        let url = format!("{}/{}/events", self.api_url, self.pixel_id);
        let resp = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            return self.graph_error(status, &headers, &bytes);
        }
        // Meta may have taken the events: resending is safe (dedup on
        // event_id), losing them is not.
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.retryable(format!("unreadable Conversions API answer: {e}")))?;
        let received = answer.get("events_received").and_then(Value::as_u64);
        let trace = answer
            .get("fbtrace_id")
            .and_then(Value::as_str)
            .unwrap_or("-");
        if received != Some(sent as u64) {
            return Err(self.retryable(format!(
                "Meta received {} of {sent} events (fbtrace_id {trace}): resending, Meta deduplicates on event_id",
                received.map_or_else(|| "none".to_string(), |n| n.to_string())
            )));
        }
        let messages = answer
            .get("messages")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        tracing::info!(
            destination = %self.name,
            pixel = %self.pixel_id,
            events = sent,
            messages,
            fbtrace_id = trace,
            "Conversions API request answered"
        );
        Ok(Answer::Received)
    }

    /// Send `events` (op index, event). Meta refuses a request whole for
    /// one invalid event and takes none of it, so a refused request is split
    /// in halves and each half sent again, until the refused event stands
    /// alone: only it is rejected (with Meta's reason), and every good event
    /// is taken by exactly one accepted request.
    async fn deliver(
        &self,
        events: &[(usize, Value)],
        outcomes: &mut [Option<OpOutcome>],
    ) -> Result<(), DestinationError> {
        let mut parts = vec![events];
        while let Some(part) = parts.pop() {
            let body: Vec<Value> = part.iter().map(|(_, e)| e.clone()).collect();
            match self.post(body).await? {
                Answer::Received => {
                    for (index, _) in part {
                        outcomes[*index] = Some(OpOutcome::Accepted);
                    }
                }
                Answer::Refused(reason) => match part {
                    [(index, _)] => outcomes[*index] = Some(OpOutcome::Rejected { reason }),
                    _ => {
                        let (first, second) = part.split_at(part.len() / 2);
                        tracing::info!(
                            destination = %self.name,
                            pixel = %self.pixel_id,
                            events = part.len(),
                            "Meta refused a Conversions API request for one of its events: resending its halves"
                        );
                        parts.push(second);
                        parts.push(first);
                    }
                },
            }
        }
        Ok(())
    }

    /// A failed answer, classified as Meta audience answers are; code 100
    /// (other than subcode 33, an unknown or unreachable pixel) refuses the
    /// request's events.
    fn graph_error(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<Answer, DestinationError> {
        let error = GraphError::parse(body);
        if error.code == Some(DEPRECATED_VERSION_CODE) {
            self.version_deprecated.store(true, Ordering::Relaxed);
            tracing::error!(
                destination = %self.name,
                api_url = %self.api_url,
                "Meta refuses this Graph API version (error 2635): set api_version to {DEFAULT_API_VERSION} or newer"
            );
        }
        let message = error.describe(status, body, true);
        if error.code == Some(100) && error.error_subcode != Some(33) {
            tracing::warn!(
                destination = %self.name,
                pixel = %self.pixel_id,
                error = %message,
                "Meta refused a Conversions API request for an invalid event"
            );
            return Ok(Answer::Refused(format!(
                "Meta refused the request: {message}"
            )));
        }
        // Conversions API calls are not a custom-audience budget: any
        // use case's wait counts.
        let asked = retry_after(headers, None);
        Err(match error.class(status) {
            ErrorClass::Wait(default) => DestinationError::Retryable {
                destination: self.name.clone(),
                message,
                retry_after: Some(asked.unwrap_or(default)),
            },
            ErrorClass::Retry => DestinationError::Retryable {
                destination: self.name.clone(),
                message,
                retry_after: asked,
            },
            ErrorClass::Permanent => self.permanent(message),
        })
    }
}

/// The event name Meta gets: the binding's (resolved onto the op at
/// enqueue), else the source event's name.
pub fn meta_event_name<'a>(op: &'a DeliveryOp, event: &'a EventPayload) -> &'a str {
    let bound = op.audience.trim();
    if bound.is_empty() {
        event.name.as_str()
    } else {
        bound
    }
}

/// A property as non-blank text.
fn text_prop<'a>(data: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    data.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The server event for one op, validated as Meta validates it.
fn build_event(
    op: &DeliveryOp,
    event: &EventPayload,
    action_source: &str,
    keys: &[MatchKey],
    opts: &IdentityOptions,
    now: Millis,
) -> Result<Value, String> {
    let name = meta_event_name(op, event);
    if name.is_empty() {
        return Err("the event has no name".into());
    }
    if name.chars().count() > MAX_EVENT_NAME_CHARS {
        return Err(format!(
            "event name is over Meta's {MAX_EVENT_NAME_CHARS} characters"
        ));
    }
    let event_id = event.event_id.trim();
    if event_id.is_empty() {
        return Err("the event has no event_id: Meta could not deduplicate a resend".into());
    }
    check_event_time(op.source_ts, now)?;
    let user_data = user_data(op, event, keys, opts)?;
    let mut out = json!({
        "event_name": name,
        "event_time": op.source_ts.div_euclid(1000),
        "event_id": event_id,
        "action_source": action_source,
        "user_data": user_data,
        "custom_data": custom_data(name, event)?,
    });
    let source_url = text_prop(&event.data, "event_source_url");
    if let (Some(url), Some(obj)) = (source_url, out.as_object_mut()) {
        obj.insert("event_source_url".into(), json!(url));
    }
    if action_source == "website" {
        let has_agent = out
            .pointer("/user_data/client_user_agent")
            .is_some_and(Value::is_string);
        let url_ok =
            source_url.is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"));
        if !(has_agent && url_ok) {
            return Err("action_source website needs the event's client_user_agent and event_source_url (http/https) properties".into());
        }
    }
    Ok(out)
}

/// Meta takes events at most 7 days old and not in the future.
fn check_event_time(source_ts: Millis, now: Millis) -> Result<(), String> {
    let at = Utc
        .timestamp_millis_opt(source_ts)
        .single()
        .map_or_else(|| source_ts.to_string(), |t| t.to_rfc3339());
    if now - source_ts > MAX_EVENT_AGE_MS - AGE_SAFETY_MARGIN_MS {
        return Err(format!(
            "event_time {at} is more than 7 days old: Meta refuses the whole request for it"
        ));
    }
    if source_ts - now > MAX_FUTURE_MS {
        return Err(format!("event_time {at} is in the future"));
    }
    Ok(())
}

/// `user_data`: hashed match keys from the person, unhashed browser keys
/// from the event; Err when nothing in it can match a Meta user.
fn user_data(
    op: &DeliveryOp,
    event: &EventPayload,
    keys: &[MatchKey],
    opts: &IdentityOptions,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    if let Ok(row) = meta_row(keys, &op.ids, &op.attributes, opts) {
        for (column, cell) in meta_schema(keys).into_iter().zip(row) {
            if cell.is_empty() {
                continue;
            }
            let field = match column {
                "EMAIL" => "em",
                "PHONE" => "ph",
                "FN" => "fn",
                "LN" => "ln",
                "CT" => "ct",
                "ST" => "st",
                "ZIP" => "zp",
                "COUNTRY" => "country",
                "GEN" => "ge",
                "EXTERN_ID" => {
                    if let Some(hashed) = meta_capi_external_id(&cell) {
                        out.insert("external_id".into(), json!(hashed));
                    }
                    continue;
                }
                // FI and the split birth date are audience columns; CAPI
                // takes the whole date as `db`.
                _ => continue,
            };
            out.insert(field.into(), json!(cell));
        }
    }
    if keys.contains(&MatchKey::DateOfBirth) {
        if let Some(db) = date_of_birth(op) {
            out.insert("db".into(), json!(db));
        }
    }
    // Never hashed: Meta reads them as they are.
    for key in ["client_ip_address", "client_user_agent", "fbc", "fbp"] {
        let value = text_prop(&event.data, key).or_else(|| {
            op.attributes
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        });
        if let Some(v) = value {
            out.insert(key.into(), json!(v));
        }
    }
    if !is_matchable(&out) {
        return Err("no matchable user_data (email, phone, external id, fbc, fbp, or IP address with user agent)".into());
    }
    Ok(out)
}

/// `db`: SHA-256 of `YYYYMMDD` (a digest already passes through).
fn date_of_birth(op: &DeliveryOp) -> Option<String> {
    let raw = match op.attributes.get(MatchKey::DateOfBirth.as_str())? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if is_sha256_hex(&raw) {
        return Some(raw.to_ascii_lowercase());
    }
    let d = normalize_date_of_birth(&raw)?;
    Some(sha256_hex(&format!("{}{}{}", d.year, d.month, d.day)))
}

/// What Meta can match a user on.
pub fn is_matchable(user_data: &Map<String, Value>) -> bool {
    ["em", "ph", "external_id", "fbc", "fbp"]
        .iter()
        .any(|k| user_data.contains_key(*k))
        || (user_data.contains_key("client_ip_address")
            && user_data.contains_key("client_user_agent"))
}

/// Whether a property name or value looks like personal data. `name` alone
/// is a person's name; `product_name` is not.
fn looks_personal(key: &str, value: &Value) -> bool {
    let lower = key.to_lowercase();
    if PII_FRAGMENTS.iter().any(|m| lower.contains(m)) {
        return true;
    }
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let personal_word = match words.as_slice() {
        [only] => PII_WORDS.contains(only),
        many => many.iter().any(|w| *w != "name" && PII_WORDS.contains(w)),
    };
    if personal_word {
        return true;
    }
    match value {
        Value::String(s) => s.contains('@') && normalize_email(s, false).is_ok(),
        _ => false,
    }
}

/// `custom_data`: the payload's value, currency and order id, and the
/// event's other non-personal properties. A Purchase needs value and
/// currency.
fn custom_data(name: &str, event: &EventPayload) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (key, value) in &event.data {
        if SERVER_KEYS.contains(&key.as_str())
            || matches!(key.as_str(), "value" | "currency" | "order_id")
            || value.is_null()
            || looks_personal(key, value)
        {
            continue;
        }
        out.insert(key.clone(), value.clone());
    }
    let value = match event.value {
        Some(v) if v.is_finite() => Some(v),
        Some(_) => return Err("value is not a finite number".into()),
        None => None,
    };
    let currency = match event.currency.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(c.to_ascii_uppercase())
        }
        Some(c) => return Err(format!("currency `{c}` is not a 3-letter ISO 4217 code")),
    };
    if name == "Purchase" && (value.is_none() || currency.is_none()) {
        return Err(
            "a Purchase needs value and currency: Meta refuses the whole request without them"
                .into(),
        );
    }
    if let Some(v) = value {
        out.insert("value".into(), json!(v));
    }
    if let Some(c) = currency {
        out.insert("currency".into(), json!(c));
    }
    if let Some(order) = event
        .order_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        out.insert("order_id".into(), json!(order));
    }
    if let Some(contents) = out.get("contents") {
        let ok = contents
            .as_array()
            .is_some_and(|items| items.iter().all(|i| i.get("id").is_some()));
        if !ok {
            // Meta refuses contents without an id per item: drop it rather
            // than sink the request.
            out.remove("contents");
        }
    }
    Ok(out)
}

#[async_trait]
impl Destination for MetaConversionsDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::MetaConversions
    }

    fn max_batch(&self) -> usize {
        self.batch_size
    }

    async fn send(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        ops: &[DeliveryOp],
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        let keys: Vec<MatchKey> = if binding.keys.is_empty() {
            ALL_KEYS.to_vec()
        } else {
            binding.keys.clone()
        };
        let opts = IdentityOptions {
            default_phone_region: export.identity.default_phone_region.clone(),
            ..IdentityOptions::default()
        };
        let now = self.clock.now_ms();
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
        let mut ready: Vec<(usize, Value)> = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            if op.op != OpKind::Event {
                outcomes[index] = Some(OpOutcome::Rejected {
                    reason: format!(
                        "the Meta Conversions API takes events, not membership ops ({:?}): bind `{}` from an events or conversions export",
                        op.op, self.name
                    ),
                });
                continue;
            }
            match self.event(op, &keys, &opts, now) {
                Ok(event) => ready.push((index, event)),
                Err(reason) => {
                    tracing::debug!(
                        destination = %self.name,
                        person = %op.person_key.log_safe(),
                        reason = %reason,
                        "event not sent to the Conversions API"
                    );
                    outcomes[index] = Some(OpOutcome::Invalid { reason });
                }
            }
        }
        for chunk in ready.chunks(self.batch_size) {
            self.deliver(chunk, &mut outcomes).await?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(OpOutcome::Retry {
                    reason: "not sent".into(),
                })
            })
            .collect())
    }

    fn alerts(&self) -> Vec<DestinationAlert> {
        if self.version_deprecated.load(Ordering::Relaxed) {
            vec![DestinationAlert::ApiVersionDeprecated {
                api_url: self.api_url.clone(),
            }]
        } else {
            Vec::new()
        }
    }

    fn describe_output(&self, _export: &ExportSpec, binding: &ExportDestination) -> String {
        let name = if binding.audience.is_empty() {
            "each event's own name".to_string()
        } else {
            format!("`{}`", binding.audience)
        };
        format!(
            "Meta pixel {} (Conversions API, action_source {}, event name {name})",
            self.pixel_id, self.action_source
        )
    }
}

#[cfg(test)]
mod tests;
