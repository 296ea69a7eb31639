//! The Data Manager simulator's conversions: `POST /v1/events:ingest`
//! (request shape from googleapis `google/ads/datamanager/v1/`
//! `ingestion_service.proto` and `event.proto`; `docs/google-conversions.md`).
//!
//! Strict as the platform's fast-fail model: ONE bad event refuses the
//! whole request (400 INVALID_ARGUMENT, nothing recorded), with a
//! `google.rpc.BadRequest` detail whose `fieldViolations[].field` names the
//! event (`events[3].conversionValue`). Refused: auth as the audience routes
//! (an expired or unknown token is 401, the per-project minute budget 429);
//! more than `max_events_per_request` (2,000) events or none; destinations
//! whose `productDestinationId` is not a conversion action of the account
//! (`create_conversion_action`); no `encoding`; a field `Event` does not
//! have; an event without `eventTimestamp`, or one in the future or older
//! than `max_event_age` (90 days) (EVENT_TIME_INVALID); without
//! `transactionId` (this simulator stands for conversion actions counted
//! once per transaction, where Google needs it) or with one over 64
//! characters; a `conversionValue` that is not a non-negative number, or
//! one without a 3-letter `currency`; an `eventSource` outside event.proto's
//! `EventSource` (WEB, APP, IN_STORE, PHONE, MESSAGE, OTHER); an
//! `adIdentifiers` with a field `AdIdentifiers` does not have or a click id
//! that is not a string; no user identifier and no ad identifier
//! (NO_IDENTIFIERS_PROVIDED); unhashed identifiers and bad consent values,
//! as for audience members.
//!
//! Enhanced conversions for leads: an event with user identifiers and no
//! click id (`adIdentifiers.gclid` / `gbraid` / `wbraid`) is a lead
//! conversion. Each Google Ads account has conversion settings
//! ([`LeadSettings`]; a fresh account here has opted in to enhanced
//! conversions for leads and accepted the customer data terms, which
//! `set_enhanced_conversions_for_leads`, `set_customer_data_terms_accepted`
//! and `set_enhanced_conversions_prohibited_by_policy` change). A request
//! carrying a lead conversion for an account that cannot take it is refused
//! whole, 400 INVALID_ARGUMENT with the `google.rpc.ErrorInfo` reason of
//! error.proto: DESTINATION_ACCOUNT_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS,
//! DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS or
//! DESTINATION_ACCOUNT_ENHANCED_CONVERSIONS_TERMS_NOT_SIGNED (checked in
//! that order), also under `validateOnly`. Events carrying a click id are
//! not lead conversions and are not refused for these settings. Google does
//! not publish the canonical code of these refusals; INVALID_ARGUMENT is
//! our choice (see the doc).
//!
//! What it accepts it records, each event as received, and decides then
//! what processing will say of it (processing_errors.proto), in this order:
//! more than one of gclid / gbraid / wbraid (Google takes exactly one) is
//! PROCESSING_ERROR_REASON_INVALID_AD_IDENTIFIERS; a click id with spaces or
//! control characters cannot be decoded (PROCESSING_ERROR_REASON_INVALID_
//! GCLID / _GBRAID / _WBRAID); effective consent denying ad user data is
//! PROCESSING_ERROR_REASON_DENIED_CONSENT; a second event with the same
//! `(account, conversion action, transactionId)` as one that counts is a
//! DUPLICATE (PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID: Google
//! counts one conversion per transaction id and conversion action), never
//! merged silently, so a test can catch a resend. Such events do not count.
//!
//! Processing is asynchronous: `requestStatus:retrieve` answers PROCESSING
//! for `processing_delay`; then, per destination, SUCCESS when no event
//! failed, FAILED when all did, PARTIAL_SUCCESS otherwise, with
//! `errorInfo.errorCounts[{recordCount, reason}]` (counts per reason, the
//! int64 `recordCount` as a JSON string as proto3 JSON writes it) and
//! `eventsIngestionStatus.recordCount` (request_status_per_destination.proto).
//! A request made to fail (`fail_next_requests`, shared with the audience
//! routes) is FAILED with that reason for every event; its conversions do
//! not count.
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
/// The fields of event.proto's `Event`, as proto3 JSON names them.
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
    "conversionCount",
    "eventSource",
    "eventDeviceInfo",
    "cartData",
    "customVariables",
    "experimentalFields",
    "userProperties",
    "eventName",
    "clientId",
    "userId",
    "additionalEventParameters",
    "thirdPartyUserData",
    "eventLocation",
    "appInstanceId",
];
/// event.proto's `EventSource`, without EVENT_SOURCE_UNSPECIFIED ("should
/// never be used").
pub const EVENT_SOURCES: &[&str] = &["WEB", "APP", "IN_STORE", "PHONE", "MESSAGE", "OTHER"];
/// The fields of event.proto's `AdIdentifiers`.
const AD_IDENTIFIER_FIELDS: &[&str] = &[
    "sessionAttributes",
    "gclid",
    "gbraid",
    "wbraid",
    "landingPageDeviceInfo",
    "mobileDeviceId",
    "dclid",
    "impressionId",
    "matchId",
    "encryptedUserIds",
];

/// error.proto `ErrorReason`s of a destination account that cannot take
/// enhanced conversions for leads.
pub const NOT_ENABLED_FOR_LEADS: &str =
    "DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS";
pub const TERMS_NOT_SIGNED: &str = "DESTINATION_ACCOUNT_ENHANCED_CONVERSIONS_TERMS_NOT_SIGNED";
pub const POLICY_PROHIBITS: &str = "DESTINATION_ACCOUNT_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS";

/// processing_errors.proto `ProcessingErrorReason`s this simulator reports.
pub const DUPLICATE_TRANSACTION_ID: &str = "PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID";
pub const DENIED_CONSENT: &str = "PROCESSING_ERROR_REASON_DENIED_CONSENT";
pub const INVALID_AD_IDENTIFIERS: &str = "PROCESSING_ERROR_REASON_INVALID_AD_IDENTIFIERS";
pub const INVALID_GCLID: &str = "PROCESSING_ERROR_REASON_INVALID_GCLID";
pub const INVALID_GBRAID: &str = "PROCESSING_ERROR_REASON_INVALID_GBRAID";
pub const INVALID_WBRAID: &str = "PROCESSING_ERROR_REASON_INVALID_WBRAID";

/// A Google Ads account's conversion settings that decide whether it takes
/// enhanced conversions for leads (the Google Ads API reads them as
/// `customer.conversion_tracking_setting.enhanced_conversions_for_leads_enabled`
/// and `accepted_customer_data_terms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeadSettings {
    /// Opted in to enhanced conversions for leads.
    pub enhanced_conversions_for_leads: bool,
    /// Accepted the customer data terms.
    pub customer_data_terms_accepted: bool,
    /// Google's customer data policies forbid enhanced conversions.
    pub prohibited_by_policy: bool,
}

impl Default for LeadSettings {
    /// An account set up for enhanced conversions for leads.
    fn default() -> Self {
        LeadSettings {
            enhanced_conversions_for_leads: true,
            customer_data_terms_accepted: true,
            prohibited_by_policy: false,
        }
    }
}

impl LeadSettings {
    /// Why a lead conversion is refused for this account, if it is.
    fn refusal(&self) -> Option<(&'static str, &'static str)> {
        if self.prohibited_by_policy {
            Some((POLICY_PROHIBITS, "Enhanced conversions can't be used for the destination account because of Google customer data policies."))
        } else if !self.enhanced_conversions_for_leads {
            Some((
                NOT_ENABLED_FOR_LEADS,
                "The destination account is not enabled for enhanced conversions for leads.",
            ))
        } else if !self.customer_data_terms_accepted {
            Some((
                TERMS_NOT_SIGNED,
                "The destination account hasn't agreed to the terms for enhanced conversions.",
            ))
        } else {
            None
        }
    }
}

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
    /// `adIdentifiers` click ids, as received.
    pub gclid: Option<String>,
    pub gbraid: Option<String>,
    pub wbraid: Option<String>,
    /// Effective consent did not deny ad user data.
    pub consented: bool,
    /// An earlier event that counts had the same account, action and
    /// transaction id: Google does not count this one.
    pub duplicate: bool,
    /// What processing reports of this event (a processing_errors.proto
    /// reason), if it fails: it then does not count.
    pub error: Option<&'static str>,
    pub request_id: String,
}

impl SimConversion {
    /// No click id: an enhanced conversion for leads.
    pub fn is_lead(&self) -> bool {
        self.gclid.is_none() && self.gbraid.is_none() && self.wbraid.is_none()
    }
}

struct EventsJob {
    destinations: Vec<Value>,
    /// `(account, conversion action)` per destination.
    targets: Vec<(String, String)>,
    ready_at: Instant,
    failure: Option<String>,
}

/// The conversions part of the simulator's state.
pub(super) struct EventsState {
    actions: BTreeSet<(String, String)>,
    settings: BTreeMap<String, LeadSettings>,
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
            settings: BTreeMap::new(),
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

    fn settings_of(&self, account: &str) -> LeadSettings {
        self.settings.get(account).copied().unwrap_or_default()
    }

    fn edit_settings(&mut self, account: &str, edit: impl FnOnce(&mut LeadSettings)) {
        edit(self.settings.entry(account.to_string()).or_default());
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

    /// Opt `account` in to (or out of) enhanced conversions for leads.
    pub fn set_enhanced_conversions_for_leads(&self, account: &str, enabled: bool) {
        self.lock()
            .events
            .edit_settings(account, |s| s.enhanced_conversions_for_leads = enabled);
    }

    /// Whether `account` has accepted the customer data terms.
    pub fn set_customer_data_terms_accepted(&self, account: &str, accepted: bool) {
        self.lock()
            .events
            .edit_settings(account, |s| s.customer_data_terms_accepted = accepted);
    }

    /// Whether Google's customer data policies forbid enhanced conversions
    /// for `account`.
    pub fn set_enhanced_conversions_prohibited_by_policy(&self, account: &str, prohibited: bool) {
        self.lock()
            .events
            .edit_settings(account, |s| s.prohibited_by_policy = prohibited);
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

    /// The conversions Google would count: no processing error (first of
    /// their transaction id, consented, usable click ids), and not in a
    /// FAILED request.
    pub fn conversions(&self, account: &str, action: &str) -> Vec<SimConversion> {
        let state = self.lock();
        let failed = state.events.failed_requests();
        state
            .events
            .received
            .iter()
            .filter(|c| c.account == account && c.action == action)
            .filter(|c| c.error.is_none() && !failed.contains(c.request_id.as_str()))
            .cloned()
            .collect()
    }

    /// Events received again for a transaction id already counted.
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
    let done = Instant::now() >= job.ready_at;
    let per_destination: Vec<Value> = job
        .destinations
        .iter()
        .zip(&job.targets)
        .map(|(d, (account, action))| {
            let records: Vec<&SimConversion> = state
                .events
                .received
                .iter()
                .filter(|c| c.request_id == id && c.account == *account && c.action == *action)
                .collect();
            let total = records.len() as u64;
            let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
            match &job.failure {
                Some(reason) => {
                    errors.insert(reason.as_str(), total.max(1));
                }
                None => {
                    for reason in records.iter().filter_map(|c| c.error) {
                        *errors.entry(reason).or_default() += 1;
                    }
                }
            }
            let failed: u64 = errors.values().sum();
            let status = if !done {
                "PROCESSING"
            } else if failed == 0 {
                "SUCCESS"
            } else if failed >= total {
                "FAILED"
            } else {
                "PARTIAL_SUCCESS"
            };
            let mut entry = json!({
                "destination": d,
                "requestStatus": status,
                "eventsIngestionStatus": { "recordCount": total.to_string() },
            });
            if done && failed > 0 {
                entry["errorInfo"] = json!({ "errorCounts": errors
                    .iter()
                    .map(|(reason, n)| json!({ "recordCount": n.to_string(), "reason": reason }))
                    .collect::<Vec<_>>() });
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

/// The click ids of one event's `adIdentifiers`.
#[derive(Default)]
struct ClickIds {
    gclid: Option<String>,
    gbraid: Option<String>,
    wbraid: Option<String>,
    /// Any ad identifier at all (click ids or others).
    any: bool,
}

impl ClickIds {
    /// What processing says of these click ids, if they fail.
    fn processing_error(&self) -> Option<&'static str> {
        let set = [&self.gclid, &self.gbraid, &self.wbraid]
            .iter()
            .filter(|c| c.is_some())
            .count();
        if set > 1 {
            return Some(INVALID_AD_IDENTIFIERS);
        }
        let decodable =
            |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic() || !c.is_ascii());
        for (value, reason) in [
            (&self.gclid, INVALID_GCLID),
            (&self.gbraid, INVALID_GBRAID),
            (&self.wbraid, INVALID_WBRAID),
        ] {
            if value.as_deref().is_some_and(|v| !decodable(v)) {
                return Some(reason);
            }
        }
        None
    }

    fn is_click(&self) -> bool {
        self.gclid.is_some() || self.gbraid.is_some() || self.wbraid.is_some()
    }
}

fn parse_ad_identifiers(v: Option<&Value>, at: &str) -> Result<ClickIds, Refusal> {
    let Some(v) = v else {
        return Ok(ClickIds::default());
    };
    let at = format!("{at}.adIdentifiers");
    let obj = v.as_object().ok_or_else(|| {
        Refusal::at(
            at.clone(),
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. {at} must be an object."),
        )
    })?;
    if let Some(k) = obj
        .keys()
        .find(|k| !AD_IDENTIFIER_FIELDS.contains(&k.as_str()))
    {
        return Err(Refusal::at(
            format!("{at}.{k}"),
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. Unknown name \"{k}\" at {at}."),
        ));
    }
    let mut ids = ClickIds::default();
    for (name, slot) in [
        ("gclid", &mut ids.gclid),
        ("gbraid", &mut ids.gbraid),
        ("wbraid", &mut ids.wbraid),
    ] {
        match obj.get(name) {
            None => {}
            Some(Value::String(s)) => {
                // proto3: an empty string is the field left unset.
                *slot = Some(s.clone()).filter(|s| !s.is_empty());
            }
            Some(_) => {
                return Err(Refusal::at(
                    format!("{at}.{name}"),
                    "INVALID_ARGUMENT",
                    format!("Invalid JSON payload received. {at}.{name} must be a string."),
                ))
            }
        }
    }
    ids.any = ids.is_click()
        || obj.iter().any(|(_, v)| match v {
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => false,
        });
    Ok(ids)
}

/// One checked event.
struct Parsed {
    transaction_id: String,
    event_ms: i64,
    value: Option<f64>,
    currency: Option<String>,
    event_source: Option<String>,
    identifiers: DmMember,
    clicks: ClickIds,
    consented: bool,
}

impl Parsed {
    /// User identifiers and no click id: an enhanced conversion for leads.
    fn is_lead(&self) -> bool {
        !self.clicks.is_click() && !self.identifiers.is_empty()
    }
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
    let clicks = parse_ad_identifiers(obj.get("adIdentifiers"), &at)?;
    let ids = obj
        .get("userData")
        .and_then(|u| u.get("userIdentifiers"))
        .and_then(Value::as_array);
    let identifiers = match ids {
        Some(ids) => {
            parse_user_identifiers(ids, &at, state.config.max_identifiers_per_member, digests)
                .map_err(|e| Refusal::in_event(e, format!("{at}.userData")))?
        }
        None if clicks.any => DmMember::new(),
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
        clicks,
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
    // Enhanced conversions for leads need an account set up for them.
    if parsed.iter().any(Parsed::is_lead) {
        for (account, _) in &targets {
            if let Some((reason, message)) = state.events.settings_of(account).refusal() {
                return Err(RpcError::invalid(reason, message).into());
            }
        }
    }
    if obj.get("validateOnly") == Some(&Value::Bool(true)) {
        return Ok((json!({}), false));
    }
    let id = new_request_id(&mut state);
    let failure = state.fail_next.pop_front();
    let failed = state.events.failed_requests();
    // Earlier events count unless processing failed them or their request;
    // this request's own count unless it is made to fail.
    let counted = |c: &&SimConversion| c.error.is_none() && !failed.contains(c.request_id.as_str());
    let counted_here = |c: &&SimConversion| c.error.is_none() && failure.is_none();
    let mut received: Vec<SimConversion> = Vec::new();
    for (account, action) in &targets {
        for p in &parsed {
            let same = |c: &&SimConversion| {
                c.account == *account && c.action == *action && c.transaction_id == p.transaction_id
            };
            let duplicate = state
                .events
                .received
                .iter()
                .filter(same)
                .any(|c| counted(&c))
                || received.iter().filter(same).any(|c| counted_here(&c));
            let error = p
                .clicks
                .processing_error()
                .or((!p.consented).then_some(DENIED_CONSENT))
                .or(duplicate.then_some(DUPLICATE_TRANSACTION_ID));
            received.push(SimConversion {
                account: account.clone(),
                action: action.clone(),
                transaction_id: p.transaction_id.clone(),
                event_ms: p.event_ms,
                value: p.value,
                currency: p.currency.clone(),
                event_source: p.event_source.clone(),
                identifiers: p.identifiers.clone(),
                gclid: p.clicks.gclid.clone(),
                gbraid: p.clicks.gbraid.clone(),
                wbraid: p.clicks.wbraid.clone(),
                consented: p.consented,
                duplicate: error == Some(DUPLICATE_TRANSACTION_ID),
                error,
                request_id: id.clone(),
            });
        }
    }
    state.events.received.extend(received);
    let ready_at = Instant::now() + state.config.processing_delay;
    state.events.jobs.insert(
        id.clone(),
        EventsJob {
            destinations,
            targets,
            ready_at,
            failure,
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
mod tests;
