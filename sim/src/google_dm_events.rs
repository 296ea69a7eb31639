//! The Data Manager simulator's conversions: `POST /v1/events:ingest`
//! (`API-CONTRACTS.md` §4c; request shape from googleapis
//! `google/ads/datamanager/v1/ingestion_service.proto` and `event.proto`).
//!
//! Strict as the platform's fast-fail model: ONE bad event refuses the
//! whole request (400 INVALID_ARGUMENT, nothing recorded), with a
//! `google.rpc.BadRequest` detail whose `fieldViolations[].field` names the
//! event (`events[3].conversionValue`). Refused: auth as the audience routes
//! (an expired or unknown token is 401, the per-project minute budget 429);
//! more than `max_events_per_request` (2,000) events or none; destinations
//! whose `productDestinationId` is not a conversion action of the account
//! (`create_conversion_action`); no `encoding`; an event without
//! `eventTimestamp`, or one in the future or older than `max_event_age`
//! (90 days) (EVENT_TIME_INVALID); without `transactionId` (this simulator
//! stands for conversion actions counted once per transaction, where Google
//! needs it) or with one over 64 characters; a `conversionValue` that is
//! not a non-negative number, or one without a 3-letter `currency`; an
//! `eventSource` outside the enum; no user identifier and no ad identifier
//! (NO_IDENTIFIERS_PROVIDED); unhashed identifiers and bad consent values,
//! as for audience members; unknown fields.
//!
//! What it accepts it records, each event as received: a second event with
//! the same `(account, conversion action, transactionId)` is recorded as a
//! DUPLICATE (Google counts one conversion per transaction id and conversion
//! action), never merged silently, so a test can catch a resend. An event
//! whose effective consent denies ad user data is recorded but not counted.
//! Processing is asynchronous: `requestStatus:retrieve` answers PROCESSING
//! for `processing_delay`, then SUCCESS, or FAILED when the request was
//! made to fail (`fail_next_requests`, shared with the audience routes);
//! the conversions of a FAILED request do not count.
//!
//! Fault: `answer_500_after_accepting(n)` makes the next `n` accepted
//! requests record their events and then answer 500 INTERNAL, the outcome
//! a client cannot tell from a request that never arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::ids::{
    check_consent, denies_user_data, digest_check, parse_destinations_with, parse_user_identifiers,
    time_from_rfc3339,
};
use super::{
    admit, new_request_id, now_ms, DataManagerSim, DmMember, DmRequest, DmState, RpcError,
};

pub const MAX_EVENTS_PER_REQUEST: usize = 2_000;
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
pub const MAX_TRANSACTION_ID_CHARS: usize = 64;
const PATH: &str = "/v1/events:ingest";
const REQUEST_FIELDS: &[&str] = &[
    "destinations",
    "events",
    "consent",
    "validateOnly",
    "encoding",
    "encryptionInfo",
];
const EVENT_FIELDS: &[&str] = &[
    "destinationReferences",
    "transactionId",
    "eventTimestamp",
    "lastUpdatedTimestamp",
    "userData",
    "consent",
    "adIdentifiers",
    "currency",
    "conversionValue",
    "eventSource",
    "eventDeviceInfo",
    "cartData",
    "customVariables",
    "experimentalFields",
    "userProperties",
];
const EVENT_SOURCES: &[&str] = &["WEB", "APP", "IN_STORE", "PHONE", "OTHER"];

/// One event as the simulator received it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConversion {
    pub account: String,
    pub action: String,
    pub transaction_id: String,
    pub event_ms: i64,
    pub value: Option<f64>,
    pub currency: Option<String>,
    pub event_source: Option<String>,
    pub identifiers: DmMember,
    /// Effective consent did not deny ad user data.
    pub consented: bool,
    /// An earlier accepted event had the same account, action and
    /// transaction id: Google does not count this one.
    pub duplicate: bool,
    pub request_id: String,
}

struct EventsJob {
    destinations: Vec<Value>,
    ready_at: Instant,
    failure: Option<String>,
    events: u64,
}

/// The conversions part of the simulator's state.
pub(super) struct EventsState {
    actions: BTreeSet<(String, String)>,
    received: Vec<SimConversion>,
    jobs: BTreeMap<String, EventsJob>,
    max_events_per_request: usize,
    max_event_age: Duration,
    answer_500: usize,
}

impl Default for EventsState {
    fn default() -> Self {
        EventsState {
            actions: BTreeSet::new(),
            received: Vec::new(),
            jobs: BTreeMap::new(),
            max_events_per_request: MAX_EVENTS_PER_REQUEST,
            max_event_age: MAX_EVENT_AGE,
            answer_500: 0,
        }
    }
}

impl EventsState {
    fn failed_requests(&self) -> BTreeSet<&str> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.failure.is_some())
            .map(|(id, _)| id.as_str())
            .collect()
    }
}

impl DataManagerSim {
    /// Create a Google Ads conversion action of `account`.
    pub fn create_conversion_action(&self, account: &str, action: &str) {
        self.lock()
            .events
            .actions
            .insert((account.to_string(), action.to_string()));
    }

    /// Every event received for a conversion action, duplicates included,
    /// in arrival order.
    pub fn received_events(&self, account: &str, action: &str) -> Vec<SimConversion> {
        self.lock()
            .events
            .received
            .iter()
            .filter(|c| c.account == account && c.action == action)
            .cloned()
            .collect()
    }

    /// The conversions Google would count: first of their transaction id,
    /// consented, and not in a FAILED request.
    pub fn conversions(&self, account: &str, action: &str) -> Vec<SimConversion> {
        let state = self.lock();
        let failed = state.events.failed_requests();
        state
            .events
            .received
            .iter()
            .filter(|c| c.account == account && c.action == action)
            .filter(|c| !c.duplicate && c.consented && !failed.contains(c.request_id.as_str()))
            .cloned()
            .collect()
    }

    /// Events received again for a transaction id already received.
    pub fn duplicate_events(&self) -> Vec<SimConversion> {
        self.lock()
            .events
            .received
            .iter()
            .filter(|c| c.duplicate)
            .cloned()
            .collect()
    }

    /// How many times a transaction id reached this conversion action.
    pub fn times_received(&self, account: &str, action: &str, transaction_id: &str) -> usize {
        self.lock()
            .events
            .received
            .iter()
            .filter(|c| {
                c.account == account && c.action == action && c.transaction_id == transaction_id
            })
            .count()
    }

    pub fn set_max_events_per_request(&self, n: usize) {
        self.lock().events.max_events_per_request = n;
    }

    pub fn set_max_event_age(&self, age: Duration) {
        self.lock().events.max_event_age = age;
    }

    /// The next `n` accepted events requests are recorded, then answered
    /// 500 INTERNAL.
    pub fn answer_500_after_accepting(&self, n: usize) {
        self.lock().events.answer_500 += n;
    }

    /// Finish every PROCESSING events request now (`process_now` finishes
    /// these and the audience requests).
    pub fn process_events_now(&self) {
        finish_all(&mut self.lock());
    }
}

/// Make every events request due now.
pub(super) fn finish_all(state: &mut DmState) {
    let now = Instant::now();
    for job in state.events.jobs.values_mut() {
        job.ready_at = job.ready_at.min(now);
    }
}

/// `requestStatus:retrieve` of an events request, if `id` is one.
pub(super) fn status(state: &DmState, id: &str) -> Option<Value> {
    let job = state.events.jobs.get(id)?;
    let status = match (&job.failure, Instant::now() >= job.ready_at) {
        (_, false) => "PROCESSING",
        (Some(_), true) => "FAILED",
        (None, true) => "SUCCESS",
    };
    let per_destination: Vec<Value> = job
        .destinations
        .iter()
        .map(|d| {
            let mut entry = json!({
                "destination": d,
                "requestStatus": status,
                "eventsIngestionStatus": { "recordCount": job.events.to_string() },
            });
            if let (Some(reason), "FAILED") = (&job.failure, status) {
                entry["errorInfo"] = json!({ "errorCounts": [{
                    "recordCount": job.events.to_string(),
                    "reason": reason,
                }]});
            }
            entry
        })
        .collect();
    Some(json!({ "requestStatusPerDestination": per_destination }))
}

/// A refusal naming the field at fault (`google.rpc.BadRequest`).
struct Refusal {
    error: RpcError,
    field: Option<String>,
}

impl From<RpcError> for Refusal {
    fn from(error: RpcError) -> Self {
        Refusal { error, field: None }
    }
}

impl Refusal {
    fn at(field: String, reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            error: RpcError::invalid(reason, message),
            field: Some(field),
        }
    }

    /// Name the event of an error raised by a shared check.
    fn in_event(error: RpcError, field: String) -> Self {
        Refusal {
            error,
            field: Some(field),
        }
    }

    fn into_response(self) -> Response {
        let e = self.error;
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": e.reason,
            "domain": "datamanager.googleapis.com",
        })];
        if let Some(field) = self.field {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{
                    "field": field,
                    "description": e.message,
                    "reason": e.reason,
                }],
            }));
        }
        (
            e.status,
            Json(json!({"error": {
                "code": e.status.as_u16(),
                "message": e.message,
                "status": e.rpc_status,
                "details": details,
            }})),
        )
            .into_response()
    }
}

/// One checked event.
struct Parsed {
    transaction_id: String,
    event_ms: i64,
    value: Option<f64>,
    currency: Option<String>,
    event_source: Option<String>,
    identifiers: DmMember,
    consented: bool,
}

fn parse_event(
    state: &DmState,
    request: &Map<String, Value>,
    i: usize,
    event: &Value,
    digests: super::ids::Digests,
    now: i64,
) -> Result<Parsed, Refusal> {
    let at = format!("events[{i}]");
    let obj = event.as_object().ok_or_else(|| {
        Refusal::at(
            at.clone(),
            "INVALID_EVENT",
            format!("{at} must be an object."),
        )
    })?;
    if let Some(k) = obj.keys().find(|k| !EVENT_FIELDS.contains(&k.as_str())) {
        return Err(Refusal::at(
            format!("{at}.{k}"),
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. Unknown name \"{k}\" at {at}."),
        ));
    }
    let time_at = format!("{at}.eventTimestamp");
    let ts = obj
        .get("eventTimestamp")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Refusal::at(
                time_at.clone(),
                "REQUIRED_FIELD_MISSING",
                format!("{time_at} is required."),
            )
        })?;
    let event_ms = time_from_rfc3339(ts).ok_or_else(|| {
        Refusal::at(
            time_at.clone(),
            "INVALID_FORMAT",
            format!("{time_at} {ts:?} is not an RFC 3339 timestamp."),
        )
    })?;
    if event_ms > now + 1_000 {
        return Err(Refusal::at(
            time_at.clone(),
            "EVENT_TIME_INVALID",
            format!("{time_at} is in the future."),
        ));
    }
    let max_age = i64::try_from(state.events.max_event_age.as_millis()).unwrap_or(i64::MAX);
    if now.saturating_sub(event_ms) > max_age {
        return Err(Refusal::at(
            time_at,
            "EVENT_TIME_INVALID",
            format!(
                "events[{i}].eventTimestamp is older than {} days.",
                state.events.max_event_age.as_secs() / 86_400
            ),
        ));
    }
    let tx_at = format!("{at}.transactionId");
    let transaction_id = obj
        .get("transactionId")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Refusal::at(
                tx_at.clone(),
                "REQUIRED_FIELD_MISSING",
                format!("{tx_at} is required."),
            )
        })?;
    if transaction_id.chars().count() > MAX_TRANSACTION_ID_CHARS {
        return Err(Refusal::at(
            tx_at.clone(),
            "FIELD_VALUE_TOO_LONG",
            format!("{tx_at} is longer than {MAX_TRANSACTION_ID_CHARS} characters."),
        ));
    }
    let value = match obj.get("conversionValue") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    Refusal::at(
                        format!("{at}.conversionValue"),
                        "INVALID_NUMBER_FORMAT",
                        format!("{at}.conversionValue must be a non-negative number."),
                    )
                })?,
        ),
    };
    let currency = obj
        .get("currency")
        .and_then(Value::as_str)
        .map(str::to_string);
    let currency_ok = currency
        .as_deref()
        .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
    if (value.is_some() || currency.is_some()) && !currency_ok {
        return Err(Refusal::at(
            format!("{at}.currency"),
            "INVALID_CURRENCY_CODE",
            format!("{at}.currency must be an ISO 4217 code when a conversion value is given."),
        ));
    }
    let event_source = match obj.get("eventSource") {
        None => None,
        Some(s) => Some(
            s.as_str()
                .filter(|s| EVENT_SOURCES.contains(s))
                .ok_or_else(|| {
                    Refusal::at(
                        format!("{at}.eventSource"),
                        "INVALID_ENUM_VALUE",
                        format!(
                            "{at}.eventSource must be one of {}.",
                            EVENT_SOURCES.join(", ")
                        ),
                    )
                })?
                .to_string(),
        ),
    };
    check_consent(obj.get("consent"), &at)
        .map_err(|e| Refusal::in_event(e, format!("{at}.consent")))?;
    let ids = obj
        .get("userData")
        .and_then(|u| u.get("userIdentifiers"))
        .and_then(Value::as_array);
    let identifiers = match ids {
        Some(ids) => {
            parse_user_identifiers(ids, &at, state.config.max_identifiers_per_member, digests)
                .map_err(|e| Refusal::in_event(e, format!("{at}.userData")))?
        }
        None if obj.contains_key("adIdentifiers") => DmMember::new(),
        None => {
            return Err(Refusal::at(
                format!("{at}.userData"),
                "NO_IDENTIFIERS_PROVIDED",
                format!("{at} contains no user identifiers or ad identifiers."),
            ))
        }
    };
    Ok(Parsed {
        transaction_id: transaction_id.to_string(),
        event_ms,
        value,
        currency: currency.filter(|_| value.is_some()),
        event_source,
        identifiers,
        consented: !denies_user_data(obj.get("consent"), request.get("consent")),
    })
}

/// What one request did: its answer, and whether to answer 500 instead.
fn serve(
    sim: &DataManagerSim,
    headers: &HeaderMap,
    body: &[u8],
    record: &mut DmRequest,
) -> Result<(Value, bool), Refusal> {
    let mut state = sim.lock();
    admit(&mut state, &sim.authority, headers, false)?;
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        RpcError::invalid(
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(RpcError::invalid(
            "INVALID_ARGUMENT",
            "The request body must be a JSON object.",
        )
        .into());
    };
    if let Some(k) = obj.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Err(RpcError::invalid(
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."),
        )
        .into());
    }
    let (destinations, targets) = parse_destinations_with(
        &state,
        &obj,
        &|state, account, action| {
            if state
                .events
                .actions
                .contains(&(account.to_string(), action.to_string()))
            {
                Ok(())
            } else {
                Err(RpcError::invalid(
                "INVALID_CONVERSION_ACTION_ID",
                format!("productDestinationId {action:?} is not a conversion action of account {account}."),
            ))
            }
        },
    )?;
    check_consent(obj.get("consent"), "consent")?;
    let events = obj
        .get("events")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| RpcError::invalid("REQUIRED_FIELD_MISSING", "events is required."))?;
    record.members = events.len();
    let max = state.events.max_events_per_request;
    if events.len() > max {
        return Err(RpcError::invalid(
            "TOO_MANY_EVENTS",
            format!("{} events in one request; at most {max}.", events.len()),
        )
        .into());
    }
    let digests = digest_check(&obj)?;
    let now = now_ms();
    let mut parsed = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let p = parse_event(&state, &obj, i, event, digests, now)?;
        record.identifiers += p.identifiers.len();
        parsed.push(p);
    }
    if obj.get("validateOnly") == Some(&Value::Bool(true)) {
        return Ok((json!({}), false));
    }
    let id = new_request_id(&mut state);
    for (account, action) in &targets {
        for p in &parsed {
            let duplicate = state.events.received.iter().any(|c| {
                c.account == *account && c.action == *action && c.transaction_id == p.transaction_id
            });
            state.events.received.push(SimConversion {
                account: account.clone(),
                action: action.clone(),
                transaction_id: p.transaction_id.clone(),
                event_ms: p.event_ms,
                value: p.value,
                currency: p.currency.clone(),
                event_source: p.event_source.clone(),
                identifiers: p.identifiers.clone(),
                consented: p.consented,
                duplicate,
                request_id: id.clone(),
            });
        }
    }
    let failure = state.fail_next.pop_front();
    let ready_at = Instant::now() + state.config.processing_delay;
    state.events.jobs.insert(
        id.clone(),
        EventsJob {
            destinations,
            ready_at,
            failure,
            events: parsed.len() as u64,
        },
    );
    record.request_id = Some(id.clone());
    let fail = state.events.answer_500 > 0;
    if fail {
        state.events.answer_500 -= 1;
    }
    Ok((json!({ "requestId": id }), fail))
}

pub(super) async fn ingest(
    State(sim): State<DataManagerSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut record = DmRequest {
        path: PATH.to_string(),
        status: 200,
        error_status: None,
        message: None,
        members: 0,
        identifiers: 0,
        request_id: None,
    };
    let response = match serve(&sim, &headers, &body, &mut record) {
        Ok((_, true)) => {
            record.status = 500;
            record.error_status = Some("INTERNAL".into());
            Refusal::from(RpcError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "INTERNAL_ERROR",
                "Internal error encountered.",
            ))
            .into_response()
        }
        Ok((v, false)) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => {
            record.status = e.error.status.as_u16();
            record.error_status = Some(e.error.rpc_status.to_string());
            record.message = Some(e.error.message.clone());
            e.into_response()
        }
    };
    sim.lock().requests.push(record);
    response
}

#[cfg(test)]
#[path = "google_dm_events_tests.rs"]
mod tests;
