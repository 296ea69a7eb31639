//! Meta Conversions API simulator (`API-CONTRACTS.md` §3b), served by the
//! Meta simulator's router: `POST /{v}/{pixel_id}/events` with parameters
//! `data` (the events, a JSON array or JSON text), `access_token` (or an
//! `Authorization` header) and `test_event_code`, from the query string, a
//! form or a JSON body, as Graph takes them. Answers
//! `{events_received, messages: [], fbtrace_id}`.
//!
//! As strict as Meta (each limit a [`CapiConfig`] field):
//! * the token and version checks of the audience simulator (190, expiry
//!   with subcode 463, 2635); an unknown pixel is code 100 subcode 33
//!   (register pixels with [`MetaSim::create_pixel`]);
//! * more than `max_events` (1,000) events → code 100, nothing taken;
//! * **one invalid event fails the whole request** (code 100, HTTP 400,
//!   with `error_user_title` / `error_user_msg` naming the event's index),
//!   and no event of it is taken: missing `event_name`, `event_time` or
//!   `action_source`; an unknown action source; `event_time` older than
//!   `max_age` (7 days) or more than `future_tolerance` ahead of the
//!   simulator's clock; a hashed `user_data` key (em, ph, fn, ln, ge, db,
//!   ct, st, zp, country) that is not 64 lowercase hex; an unhashed key
//!   (client_ip_address, fbc, fbp) that was hashed or malformed; nothing
//!   matchable (em, ph, external_id, fbc, fbp, or IP with user agent); a
//!   `Purchase` without `custom_data.value` and `custom_data.currency`; a
//!   `website` event without `client_user_agent` and `event_source_url`; an
//!   `app` event without `app_data`;
//! * **dedup**: an event with the `event_name` + `event_id` of one received
//!   within `dedup_window` (48 h) is received (counted in
//!   `events_received`) but counted once;
//! * events sent with a `test_event_code` go to the Test Events tool only:
//!   they are kept apart and never counted as the pixel's events.
//!
//! Inspection: [`MetaSim::capi_events`] (distinct events per pixel, after
//! dedup), [`MetaSim::capi_received`] (every event received, duplicates
//! included), [`MetaSim::capi_test_events`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::graph::{
    answer, check_token, check_version, only_keys, unknown_object, GraphError, Params, RowInfo,
};
use super::{MetaSim, MetaState};

/// Meta's action sources.
const ACTION_SOURCES: &[&str] = &[
    "website",
    "app",
    "email",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
];
/// Parameters of the `events` edge.
const EVENTS_PARAMS: &[&str] = &[
    "data",
    "access_token",
    "appsecret_proof",
    "test_event_code",
    "partner_agent",
    "namespace_id",
    "upload_id",
    "upload_tag",
    "upload_source",
];
/// Fields of a server event.
const EVENT_FIELDS: &[&str] = &[
    "event_name",
    "event_time",
    "action_source",
    "user_data",
    "custom_data",
    "event_source_url",
    "event_id",
    "opt_out",
    "app_data",
    "data_processing_options",
    "data_processing_options_country",
    "data_processing_options_state",
    "referrer_url",
    "messaging_channel",
    "original_event_data",
    "attribution_data",
    "advanced_measurement_table",
];
/// Fields of `user_data`.
const USER_DATA_FIELDS: &[&str] = &[
    "em",
    "ph",
    "db",
    "ln",
    "fn",
    "ct",
    "st",
    "zp",
    "country",
    "ge",
    "external_id",
    "client_ip_address",
    "client_user_agent",
    "fbc",
    "fbp",
    "subscription_id",
    "fb_login_id",
    "lead_id",
    "f5first",
    "f5last",
    "fi",
    "dobd",
    "dobm",
    "doby",
    "madid",
    "anon_id",
    "ctwa_clid",
    "page_id",
];
/// `user_data` keys Meta requires hashed (SHA-256, lowercase hex).
const HASHED_KEYS: &[&str] = &[
    "em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country",
];

/// Limits of the Conversions API simulator.
#[derive(Clone, Debug)]
pub struct CapiConfig {
    /// Most events per request.
    pub max_events: usize,
    /// Oldest event time taken.
    pub max_age: Duration,
    /// How far ahead of the clock an event time may be.
    pub future_tolerance: Duration,
    /// Events with the same name and id within this window count once.
    pub dedup_window: Duration,
}

impl Default for CapiConfig {
    fn default() -> Self {
        CapiConfig {
            max_events: 1_000,
            max_age: Duration::from_secs(7 * 24 * 3600),
            future_tolerance: Duration::from_secs(60),
            dedup_window: Duration::from_secs(48 * 3600),
        }
    }
}

/// One event as the pixel counted it.
#[derive(Clone, Debug, PartialEq)]
pub struct CapiEvent {
    pub event_name: String,
    pub event_id: Option<String>,
    /// Unix seconds.
    pub event_time: i64,
    pub action_source: String,
    pub user_data: Map<String, Value>,
    pub custom_data: Map<String, Value>,
    /// The whole event as sent.
    pub raw: Value,
}

#[derive(Default)]
struct Pixel {
    /// Distinct events, in arrival order.
    events: Vec<CapiEvent>,
    /// Every event received, duplicates included.
    received: u64,
    /// (event_name, event_id) → when it was first received (sim Unix s).
    seen: HashMap<(String, String), u64>,
    /// Events sent with a test_event_code.
    test_events: Vec<CapiEvent>,
}

#[derive(Default)]
pub(super) struct CapiState {
    config: CapiConfig,
    pixels: BTreeMap<String, Pixel>,
}

impl MetaSim {
    /// A pixel (dataset) that takes events; others answer 100 subcode 33.
    pub fn create_pixel(&self, pixel_id: &str) {
        self.lock()
            .capi
            .pixels
            .entry(pixel_id.to_string())
            .or_default();
    }

    /// Change the Conversions API limits.
    pub fn set_capi_config(&self, config: CapiConfig) {
        self.lock().capi.config = config;
    }

    /// The pixel's distinct events (after dedup), in arrival order.
    pub fn capi_events(&self, pixel_id: &str) -> Vec<CapiEvent> {
        self.lock()
            .capi
            .pixels
            .get(pixel_id)
            .map(|p| p.events.clone())
            .unwrap_or_default()
    }

    /// Events the pixel received, duplicates included.
    pub fn capi_received(&self, pixel_id: &str) -> u64 {
        self.lock()
            .capi
            .pixels
            .get(pixel_id)
            .map_or(0, |p| p.received)
    }

    /// Events sent with a test_event_code (never counted as the pixel's).
    pub fn capi_test_events(&self, pixel_id: &str) -> Vec<CapiEvent> {
        self.lock()
            .capi
            .pixels
            .get(pixel_id)
            .map(|p| p.test_events.clone())
            .unwrap_or_default()
    }
}

pub(super) async fn events(
    State(sim): State<MetaSim>,
    Path((version, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    let delay = sim.lock().config.response_delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let path = format!("/{version}/{node}/events");
    let mut info = RowInfo::default();
    let (headers, params) = match Params::read(req).await {
        Ok(ok) => ok,
        Err(err) => return answer(&sim, "POST", path, info, |_| Err(err)),
    };
    let data = params.json("data");
    if let Ok(Some(Value::Array(items))) = &data {
        info.rows = items.len();
    }
    let test_code = params.str("test_event_code").map(str::to_string);
    answer(&sim, "POST", path, info, move |state| {
        check_version(state, &version)?;
        check_token(state, &headers, &params)?;
        if !state.capi.pixels.contains_key(&node) {
            return Err(unknown_object(&node));
        }
        params.only(EVENTS_PARAMS)?;
        let items = match data? {
            Some(Value::Array(items)) => items,
            Some(_) => return Err(GraphError::param("param data must be an array.")),
            None => return Err(GraphError::param("The parameter data is required")),
        };
        if items.is_empty() {
            return Err(GraphError::param("param data must be a non-empty array."));
        }
        let max = state.capi.config.max_events;
        if items.len() > max {
            return Err(GraphError::param(format!(
                "param data must be an array of maximum {max} elements."
            )));
        }
        let now = state.unix_now();
        let events = items
            .iter()
            .enumerate()
            .map(|(i, e)| check_event(&state.capi.config, now, i, e))
            .collect::<Result<Vec<_>, _>>()?;
        let received = events.len();
        record(state, &node, events, test_code.is_some(), now);
        Ok(json!({
            "events_received": received,
            "messages": [],
            "fbtrace_id": format!("Asimcapi{:06}", state.requests.len() + 1),
        }))
    })
}

/// Count the events of an accepted request, applying dedup.
fn record(state: &mut MetaState, pixel_id: &str, events: Vec<CapiEvent>, test: bool, now: u64) {
    let window = state.capi.config.dedup_window.as_secs();
    let Some(pixel) = state.capi.pixels.get_mut(pixel_id) else {
        return;
    };
    if test {
        pixel.test_events.extend(events);
        return;
    }
    for event in events {
        pixel.received += 1;
        if let Some(id) = &event.event_id {
            let key = (event.event_name.clone(), id.clone());
            match pixel.seen.get(&key) {
                Some(first) if now.saturating_sub(*first) <= window => continue,
                _ => {
                    pixel.seen.insert(key, now);
                }
            }
        }
        pixel.events.push(event);
    }
}

/// The whole-request error for the event at `index`.
fn invalid(index: usize, title: &str, msg: impl Into<String>) -> GraphError {
    GraphError {
        user: Some(Box::new((
            title.to_string(),
            format!("Event at index {index}: {}", msg.into()),
        ))),
        ..GraphError::param("Invalid parameter")
    }
}

fn is_hashed(v: &str) -> bool {
    v.len() == 64
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// String values of a user_data key (a string or an array of strings).
fn values(v: &Value) -> Option<Vec<&str>> {
    match v {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

fn check_user_data(index: usize, user: &Map<String, Value>) -> Result<(), GraphError> {
    for key in HASHED_KEYS {
        let Some(v) = user.get(*key) else { continue };
        let ok = values(v).is_some_and(|vs| vs.iter().all(|s| is_hashed(s)));
        if !ok {
            return Err(invalid(
                index,
                "Invalid User Data",
                format!(
                    "user_data.{key} must be hashed with SHA-256 (64 lowercase hex characters)"
                ),
            ));
        }
    }
    if let Some(ip) = user.get("client_ip_address") {
        let ok = ip
            .as_str()
            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok());
        if !ok {
            return Err(invalid(
                index,
                "Invalid Client IP Address",
                "user_data.client_ip_address must be an unhashed IPv4 or IPv6 address",
            ));
        }
    }
    for key in ["fbc", "fbp"] {
        if let Some(v) = user.get(key) {
            if !v.as_str().is_some_and(|s| s.starts_with("fb.")) {
                return Err(invalid(
                    index,
                    "Invalid Cookie Value",
                    format!("user_data.{key} must be the unhashed _{key} cookie value (fb.…)"),
                ));
            }
        }
    }
    let matchable = ["em", "ph", "external_id", "fbc", "fbp", "madid", "anon_id"]
        .iter()
        .any(|k| user.contains_key(*k))
        || (user.contains_key("client_ip_address") && user.contains_key("client_user_agent"));
    if !matchable {
        return Err(invalid(
            index,
            "Missing User Data",
            "user_data has no customer information parameter Meta can match on",
        ));
    }
    Ok(())
}

/// One event, checked as Meta checks it.
fn check_event(
    config: &CapiConfig,
    now: u64,
    index: usize,
    event: &Value,
) -> Result<CapiEvent, GraphError> {
    let obj = event
        .as_object()
        .ok_or_else(|| invalid(index, "Invalid Event", "an event must be an object"))?;
    only_keys(&format!("data[{index}]"), event, EVENT_FIELDS)?;
    let event_name = obj
        .get("event_name")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid(index, "Missing Event Name", "event_name is required"))?;
    let event_time = match obj.get("event_time") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        invalid(
            index,
            "Missing Event Time",
            "event_time (Unix seconds) is required",
        )
    })?;
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    let max_age = i64::try_from(config.max_age.as_secs()).unwrap_or(i64::MAX);
    if now_i.saturating_sub(event_time) > max_age {
        return Err(invalid(
            index,
            "Event Timestamp Too Old",
            "The timestamp for this event is too far in the past. Events need to be sent from your server within 7 days of when they occurred.",
        ));
    }
    let tolerance = i64::try_from(config.future_tolerance.as_secs()).unwrap_or(i64::MAX);
    if event_time.saturating_sub(now_i) > tolerance {
        return Err(invalid(
            index,
            "Event Timestamp In The Future",
            "The timestamp for this event is in the future.",
        ));
    }
    let action_source = obj
        .get("action_source")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(index, "Missing Action Source", "action_source is required"))?;
    if !ACTION_SOURCES.contains(&action_source) {
        return Err(invalid(
            index,
            "Invalid Action Source",
            format!(
                "action_source `{action_source}` is not one of {}",
                ACTION_SOURCES.join(", ")
            ),
        ));
    }
    let empty = Map::new();
    let user_data = match obj.get("user_data") {
        Some(Value::Object(u)) => u,
        _ => {
            return Err(invalid(index, "Missing User Data", "user_data is required"));
        }
    };
    only_keys(
        &format!("data[{index}][user_data]"),
        &Value::Object(user_data.clone()),
        USER_DATA_FIELDS,
    )?;
    check_user_data(index, user_data)?;
    if action_source == "website" {
        let agent = user_data.get("client_user_agent").and_then(Value::as_str);
        let url = obj.get("event_source_url").and_then(Value::as_str);
        let url_ok = url.is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"));
        if agent.is_none() || !url_ok {
            return Err(invalid(
                index,
                "Missing Website Parameters",
                "website events require client_user_agent and an http(s) event_source_url",
            ));
        }
    }
    if action_source == "app" && !obj.get("app_data").is_some_and(Value::is_object) {
        return Err(invalid(
            index,
            "Missing App Data",
            "app events require app_data",
        ));
    }
    let custom_data = match obj.get("custom_data") {
        None => &empty,
        Some(Value::Object(c)) => c,
        Some(_) => {
            return Err(invalid(
                index,
                "Invalid Custom Data",
                "custom_data must be an object",
            ))
        }
    };
    if event_name == "Purchase" {
        let value_ok = custom_data.get("value").is_some_and(|v| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .is_some()
        });
        let currency_ok = custom_data
            .get("currency")
            .and_then(Value::as_str)
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()));
        if !(value_ok && currency_ok) {
            return Err(invalid(
                index,
                "Missing Purchase Value",
                "Purchase events require custom_data.value and custom_data.currency",
            ));
        }
    }
    let event_id = obj
        .get("event_id")
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .filter(|s| !s.is_empty());
    Ok(CapiEvent {
        event_name: event_name.to_string(),
        event_id,
        event_time,
        action_source: action_source.to_string(),
        user_data: user_data.clone(),
        custom_data: custom_data.clone(),
        raw: event.clone(),
    })
}

/// Distinct (event_name, event_id) pairs among `events`: what a test
/// compares with what it sent.
pub fn distinct_ids(events: &[CapiEvent]) -> BTreeSet<(String, String)> {
    events
        .iter()
        .filter_map(|e| Some((e.event_name.clone(), e.event_id.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests;
