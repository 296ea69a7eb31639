//! CleverTap upload API simulator (`POST /1/upload`), per docs/clevertap.md.
//!
//! Fails the way the real API does, so a client bug shows up in tests:
//! * wrong or missing `X-CleverTap-Account-Id` / `X-CleverTap-Passcode` → 401
//!   `{"status":"fail","error":"invalid credentials or URL","code":401}` (the
//!   same answer a wrong region gives);
//! * content type other than `application/json`, malformed JSON, missing or
//!   empty `d`, more records than `max_records` (default 100) → 400;
//! * more than `max_concurrent` (15) uploads in flight → 429 `Too many
//!   concurrent requests`, no `Retry-After`;
//! * per record: the codes of the contract table (509, 512, 513, 514, 515,
//!   516, 522, 523, 524, 525; events: `events.rs`), answered with
//!   HTTP 200 and the failed records in
//!   `unprocessed`. When some records passed, `status` is `"success"` by
//!   default (the real API's surprising answer that clients must survive);
//!   [`ClevertapSimConfig::partial_status`] switches it to `"partial"`. When
//!   none passed, `status` is `"fail"`.
//!
//! `?dryRun=1` validates and stores nothing. A body key other than `d` is
//! 400 and a record key CleverTap does not define is 512; a path CleverTap
//! does not serve is 404 and a served path on another verb 405, both in its
//! failure shape `{"status":"fail","error":…,"code":…}`. Every exchange can be
//! kept for the contract test ([`ClevertapState::record_wire`]).
//!
//! Slow and capped like the platform: `response_delay` holds every admitted
//! request ([`DEFAULT_LATENCY`] unless a test turns it down), so overlapping
//! requests reach the 15-concurrent cap; the
//! simulator counts its peak of concurrent upload requests
//! ([`ClevertapCounters::peak_concurrent`]) so a test can pin a client's
//! own limit.
//!
//! Lookup: `GET /1/profile.json?identity=…` (or `email=…`, `objectId=…`)
//! answers `{"status":"success","record":{…}}` in CleverTap's shape
//! ([`answered_record`]: `email`/`name` on the record, custom keys
//! lower-cased without spaces, flags as `"true"`), and `{"status":"fail",
//! "error":"Profile not found","code":404}` with HTTP 200 when there is none
//! (that shape is not documented: **verify**). More than
//! `max_concurrent_reads` (3) lookups in flight → 429. CleverTap documents no endpoint counting the
//! profiles that carry a property value: its Get Profile Count API
//! (`POST /1/counts/profiles.json`) counts profiles that *performed an
//! event* in a date range. So the simulator serves no count, and reconcile
//! reports CleverTap's count as unknown.
//!
//! Accepted profiles are merged per identity (profileData keys upserted);
//! accepted events are appended, and read per identity with
//! [`ClevertapState::events_of`]. Tests read them through [`ClevertapState`],
//! inject whole-request failures with [`ClevertapState::fail_next`],
//! per-record 555s with [`ClevertapState::fail_records_555`], and a random
//! share of 555s over all records with
//! [`ClevertapState::set_unprocessed_share`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::RunningSim;

mod events;
pub use events::RESTRICTED_EVENT_NAMES;
mod lookup;
pub use crate::wire::WireExchange;
use crate::wire::WireLog;
pub use lookup::answered_record;
use lookup::lookup;

/// The identifier keys of a record; exactly one must be present.
pub const IDENTITY_KEYS: [&str; 4] = ["identity", "objectId", "FBID", "GPID"];
/// Every key a record may carry (CleverTap's upload pages); the simulator
/// refuses others with 512 so that a misspelt key cannot pass silently.
pub const RECORD_KEYS: [&str; 9] = [
    "identity",
    "objectId",
    "FBID",
    "GPID",
    "type",
    "ts",
    "profileData",
    "evtName",
    "evtData",
];

const MAX_KEY_BYTES: usize = 120;
const MAX_VALUE_BYTES: usize = 512;
/// Event properties per event type (CleverTap's limits page: 256).
pub const DEFAULT_MAX_EVENT_PROPERTIES: usize = 256;
/// CleverTap's answer time: its API FAQ says a request "may take one or
/// more seconds" to process (docs/clevertap.md, "Limits").
pub const DEFAULT_LATENCY: Duration = Duration::from_secs(1);
/// CleverTap's answer past a concurrency cap (API Request Limit page).
const THROTTLED: &str = "Too many concurrent requests";
/// Unix seconds at or above this are taken as milliseconds sent by mistake.
const MAX_TS_SECONDS: i64 = 10_000_000_000;
const HARD_MAX_RECORDS: usize = 1000;

/// What `status` says when some records passed and some failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PartialStatus {
    /// `"success"` with a non-empty `unprocessed` (default: the trap).
    #[default]
    Success,
    /// `"partial"`.
    Partial,
}

#[derive(Clone, Debug)]
pub struct ClevertapSimConfig {
    pub account_id: String,
    pub passcode: String,
    /// Records per request; clamped to 1..=1000 (docs say 1000, the official
    /// library batches 100).
    pub max_records: usize,
    /// Concurrent upload requests per account before 429 (CleverTap: 15).
    pub max_concurrent: usize,
    /// Concurrent profile reads per account before 429 (CleverTap: 3).
    pub max_concurrent_reads: usize,
    pub partial_status: PartialStatus,
    /// How long CleverTap takes to answer: every admitted request is held
    /// this long. Default [`DEFAULT_LATENCY`]; a test that needs speed sets
    /// `None` explicitly.
    pub response_delay: Option<Duration>,
    /// Event properties per event type: an event with more is refused with
    /// code 522 (default 256, CleverTap's limits page).
    pub max_event_properties: usize,
}

impl Default for ClevertapSimConfig {
    fn default() -> Self {
        Self {
            account_id: "TEST-ACC-1".to_string(),
            passcode: "TEST-PASSCODE".to_string(),
            max_records: 100,
            max_concurrent: 15,
            max_concurrent_reads: 3,
            partial_status: PartialStatus::Success,
            response_delay: Some(DEFAULT_LATENCY),
            max_event_properties: DEFAULT_MAX_EVENT_PROPERTIES,
        }
    }
}

/// A stored profile: merged profileData of every accepted profile record.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredProfile {
    /// `identity`, `objectId`, `FBID` or `GPID`.
    pub key_kind: String,
    pub key: String,
    pub data: Map<String, Value>,
    /// `ts` of the last accepted record, if it carried one.
    pub last_ts: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub key_kind: String,
    pub key: String,
    pub name: String,
    pub data: Map<String, Value>,
    pub ts: Option<i64>,
}

/// Counters for assertions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClevertapCounters {
    /// Every request that reached `/1/upload`, whatever the answer.
    pub requests: u64,
    /// Requests answered 200.
    pub uploads: u64,
    pub records_received: u64,
    pub records_accepted: u64,
    pub records_rejected: u64,
    /// Requests refused with 429 for concurrency.
    pub throttled: u64,
    /// Most upload requests in flight at once (refused ones included).
    pub peak_concurrent: u64,
    /// Profile lookups served.
    pub lookups: u64,
    /// Profile lookups refused with 429 (past `max_concurrent_reads`).
    pub lookups_throttled: u64,
    /// Records answered 555 by [`ClevertapState::set_unprocessed_share`]
    /// (also counted in `records_rejected`).
    pub unprocessed_injected: u64,
}

#[derive(Default)]
struct Inner {
    profiles: BTreeMap<(String, String), StoredProfile>,
    /// Profile keys in the order their records were stored (repeats kept).
    arrivals: Vec<String>,
    /// Profile keys whose records are answered as accepted but never
    /// stored: a platform losing data silently, for `dataout qa` tests.
    dropped: std::collections::BTreeSet<String>,
    events: Vec<StoredEvent>,
    counters: ClevertapCounters,
    fail_next: VecDeque<u16>,
    /// identity value → how many more of its records fail with 555.
    flaky: HashMap<String, u32>,
    /// Share of valid records answered 555, and the RNG drawing them
    /// (`None`: no random 555s).
    unprocessed: Option<(f64, StdRng)>,
}

/// Shared state of a running CleverTap simulator.
pub struct ClevertapState {
    config: ClevertapSimConfig,
    inner: Mutex<Inner>,
    in_flight: AtomicUsize,
    reads_in_flight: AtomicUsize,
    /// Exchanges kept while recording is on ([`ClevertapState::record_wire`]).
    wire: WireLog,
}

impl ClevertapState {
    /// Keep (or stop keeping) every exchange as it crossed the wire.
    pub fn record_wire(&self, on: bool) {
        self.wire.record(on);
    }

    /// The exchanges kept since recording began (passcodes never kept).
    pub fn wire(&self) -> Vec<WireExchange> {
        self.wire.exchanges()
    }

    pub fn new(mut config: ClevertapSimConfig) -> Self {
        config.max_records = config.max_records.clamp(1, HARD_MAX_RECORDS);
        Self {
            config,
            inner: Mutex::new(Inner::default()),
            in_flight: AtomicUsize::new(0),
            reads_in_flight: AtomicUsize::new(0),
            wire: WireLog::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the state from the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &ClevertapSimConfig {
        &self.config
    }

    /// Answer the next `n` requests with `status` (429, 500, 503, ...)
    /// before any other check.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut inner = self.lock();
        inner.fail_next.extend(std::iter::repeat_n(status, n));
    }

    /// The next `times` records whose key value is `identity` fail with
    /// per-record code 555 (after passing validation).
    pub fn fail_records_555(&self, identity: &str, times: u32) {
        self.lock().flaky.insert(identity.to_string(), times);
    }

    /// From now on each record of an upload is, with probability `share`
    /// (drawn from an RNG seeded with `seed`), answered unprocessed with
    /// code 555 exactly like [`Self::fail_records_555`]: after validation,
    /// not on dry runs, and not stored; the other records of the request
    /// are processed normally. `share` is clamped to `0..=1`; 0 turns it off.
    pub fn set_unprocessed_share(&self, share: f64, seed: u64) {
        let share = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self.lock().unprocessed = (share > 0.0).then(|| (share, StdRng::seed_from_u64(seed)));
    }

    pub fn counters(&self) -> ClevertapCounters {
        self.lock().counters
    }

    /// The profile stored under `identity` (the `identity` key kind).
    pub fn profile(&self, identity: &str) -> Option<StoredProfile> {
        self.lock()
            .profiles
            .get(&("identity".to_string(), identity.to_string()))
            .cloned()
    }

    pub fn profiles(&self) -> Vec<StoredProfile> {
        self.lock().profiles.values().cloned().collect()
    }

    pub fn events(&self) -> Vec<StoredEvent> {
        self.lock().events.clone()
    }

    /// From now on, answer `key`'s profile records as accepted and drop
    /// them (a silent loss only a read-back can see).
    pub fn drop_profiles_of(&self, key: &str) {
        self.lock().dropped.insert(key.to_string());
    }

    /// Profile keys in the order their records were stored, one entry per
    /// accepted profile record.
    pub fn arrival_order(&self) -> Vec<String> {
        self.lock().arrivals.clone()
    }
}

/// The router, for embedding the simulator in a bigger app (the demo).
pub fn router(state: Arc<ClevertapState>) -> Router {
    Router::new()
        .route("/1/upload", post(upload).fallback(not_allowed))
        .route("/1/profile.json", get(lookup).fallback(not_allowed))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            state.wire.clone(),
            crate::wire::record,
        ))
        .with_state(state)
}

/// A path CleverTap does not serve: its generic 404 (API Errors page).
async fn not_found() -> Response {
    fail(StatusCode::NOT_FOUND, "Not Found")
}

/// A served path on another verb: its generic 405 (API Errors page).
async fn not_allowed() -> Response {
    fail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// Serve a CleverTap simulator on 127.0.0.1.
pub async fn start(
    config: ClevertapSimConfig,
) -> anyhow::Result<(RunningSim, Arc<ClevertapState>)> {
    let state = Arc::new(ClevertapState::new(config));
    let running = crate::serve(router(state.clone())).await?;
    Ok((running, state))
}

fn fail(status: StatusCode, error: &str) -> Response {
    let body = json!({"status": "fail", "error": error, "code": status.as_u16()});
    (status, Json(body)).into_response()
}

/// Releases a concurrency slot when the request ends, however it ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn upload(
    State(state): State<Arc<ClevertapState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let injected = {
        let mut inner = state.lock();
        inner.counters.requests += 1;
        inner.fail_next.pop_front()
    };
    if let Some(code) = injected {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return fail(status, "injected failure");
    }

    let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _slot = Slot(&state.in_flight);
    {
        let mut inner = state.lock();
        inner.counters.peak_concurrent = inner.counters.peak_concurrent.max(in_flight as u64);
    }
    if in_flight > state.config.max_concurrent {
        state.lock().counters.throttled += 1;
        return fail(StatusCode::TOO_MANY_REQUESTS, THROTTLED);
    }
    if let Some(delay) = state.config.response_delay {
        tokio::time::sleep(delay).await;
    }

    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("X-CleverTap-Account-Id") != Some(state.config.account_id.as_str())
        || header("X-CleverTap-Passcode") != Some(state.config.passcode.as_str())
    {
        return fail(StatusCode::UNAUTHORIZED, "invalid credentials or URL");
    }
    let json_content = header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json_content {
        return fail(
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/json",
        );
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return fail(StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}")),
    };
    // The body is `{"d":[…]}` and nothing else: a misspelt key must not
    // pass silently.
    if let Some(key) = parsed
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "d"))
    {
        return fail(
            StatusCode::BAD_REQUEST,
            &format!("unknown field {key}: the payload is {{\"d\":[...]}}"),
        );
    }
    let Some(records) = parsed.get("d").and_then(Value::as_array) else {
        return fail(StatusCode::BAD_REQUEST, "payload must be {\"d\":[...]}");
    };
    if records.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "d is empty");
    }
    if records.len() > state.config.max_records {
        let msg = format!(
            "too many records: {} (max {})",
            records.len(),
            state.config.max_records
        );
        return fail(StatusCode::BAD_REQUEST, &msg);
    }
    let dry_run =
        query.as_deref().unwrap_or("").split('&').any(|kv| {
            kv.eq_ignore_ascii_case("dryRun=1") || kv.eq_ignore_ascii_case("dryRun=true")
        });

    let mut inner = state.lock();
    let mut unprocessed = Vec::new();
    let mut processed = 0u64;
    let mut injected = 0u64;
    for record in records {
        let outcome = validate(record, &state.config).and_then(|valid| {
            if dry_run {
                return Ok(valid);
            }
            let miscellaneous = || Err((555, "miscellaneous server error".to_string()));
            match inner.flaky.get_mut(&valid.key) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    return miscellaneous();
                }
                _ => {}
            }
            let unlucky = inner
                .unprocessed
                .as_mut()
                .is_some_and(|(share, rng)| rng.random::<f64>() < *share);
            if unlucky {
                injected += 1;
                return miscellaneous();
            }
            Ok(valid)
        });
        match outcome {
            Ok(valid) => {
                processed += 1;
                if !dry_run {
                    store(&mut inner, valid);
                }
            }
            Err((code, error)) => unprocessed.push(json!({
                "status": "fail",
                "code": code,
                "error": error,
                "record": record,
            })),
        }
    }
    inner.counters.uploads += 1;
    inner.counters.records_received += records.len() as u64;
    inner.counters.records_accepted += processed;
    inner.counters.records_rejected += unprocessed.len() as u64;
    inner.counters.unprocessed_injected += injected;
    drop(inner);

    let status = if processed == 0 {
        "fail"
    } else if unprocessed.is_empty() {
        "success"
    } else {
        match state.config.partial_status {
            PartialStatus::Success => "success",
            PartialStatus::Partial => "partial",
        }
    };
    Json(json!({"status": status, "processed": processed, "unprocessed": unprocessed}))
        .into_response()
}

/// A record that passed validation.
struct Valid {
    key_kind: String,
    key: String,
    ts: Option<i64>,
    body: ValidBody,
}

enum ValidBody {
    Profile(Map<String, Value>),
    Event {
        name: String,
        data: Map<String, Value>,
    },
}

type RecordError = (u16, String);

fn validate(record: &Value, config: &ClevertapSimConfig) -> Result<Valid, RecordError> {
    let Some(obj) = record.as_object() else {
        return Err((524, "record is not an object".into()));
    };
    if let Some(key) = obj.keys().find(|k| !RECORD_KEYS.contains(&k.as_str())) {
        return Err((512, format!("unknown record field {key}")));
    }
    let present: Vec<(&str, String)> = IDENTITY_KEYS
        .iter()
        .filter_map(|k| {
            let v = obj.get(*k)?;
            let s = match v {
                Value::String(s) if !s.trim().is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((*k, s))
        })
        .collect();
    let [(key_kind, key)] = present.as_slice() else {
        return Err((
            523,
            format!(
                "exactly one of identity, objectId, FBID, GPID required (found {})",
                present.len()
            ),
        ));
    };
    let kind = obj.get("type").and_then(Value::as_str);
    if !matches!(kind, Some("profile") | Some("event")) {
        return Err((524, "type must be profile or event".into()));
    }
    let ts = match obj.get("ts") {
        None => None,
        Some(v) => match v.as_i64() {
            // Epoch seconds: 0 is no time at all (CleverTap: 525).
            Some(t) if (1..MAX_TS_SECONDS).contains(&t) => Some(t),
            _ => return Err((525, "ts must be integer Unix seconds".into())),
        },
    };
    let body = if kind == Some("event") {
        events::validate_event(obj, config.max_event_properties)?
    } else {
        let data = match obj.get("profileData") {
            Some(Value::Object(m)) => m.clone(),
            _ => return Err((512, "profileData must be an object".into())),
        };
        for (k, v) in &data {
            check_sizes(k, v)?;
            check_date(k, v)?;
            check_profile_value(k, v)?;
        }
        ValidBody::Profile(data)
    };
    Ok(Valid {
        key_kind: key_kind.to_string(),
        key: key.clone(),
        ts,
        body,
    })
}

fn check_sizes(key: &str, value: &Value) -> Result<(), RecordError> {
    if key.len() > MAX_KEY_BYTES {
        return Err((512, format!("key longer than {MAX_KEY_BYTES} bytes")));
    }
    let too_long = match value {
        Value::String(s) => s.len() > MAX_VALUE_BYTES,
        Value::Array(items) => items
            .iter()
            .any(|i| i.as_str().is_some_and(|s| s.len() > MAX_VALUE_BYTES)),
        _ => false,
    };
    if too_long {
        return Err((
            512,
            format!("value of {key} longer than {MAX_VALUE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A `$D_` value must carry integer epoch seconds.
fn check_date(key: &str, value: &Value) -> Result<(), RecordError> {
    match value.as_str().and_then(|s| s.strip_prefix("$D_")) {
        Some(rest) if rest.parse::<i64>().is_err() => Err((
            512,
            format!("value of {key} is not a date: $D_ takes epoch seconds"),
        )),
        _ => Ok(()),
    }
}

fn check_profile_value(key: &str, value: &Value) -> Result<(), RecordError> {
    match value {
        Value::Object(_) => return Err((512, format!("profile property {key} is an object"))),
        // Multi-value properties: arrays of scalars only.
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            return Err((
                512,
                format!("profile property {key} nests arrays or objects"),
            ))
        }
        _ => {}
    }
    match key {
        "Phone" if !value.as_str().is_some_and(is_e164) => {
            Err((516, "Phone must be E.164 with a leading +".into()))
        }
        "Email" if !value.as_str().is_some_and(is_email) => Err((515, "Email invalid".into())),
        "Gender" if !matches!(value.as_str(), Some("M") | Some("F")) => {
            Err((514, "Gender must be M or F".into()))
        }
        _ => Ok(()),
    }
}

/// `+` then 8 to 15 digits, the first not zero.
fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

fn store(inner: &mut Inner, valid: Valid) {
    match valid.body {
        ValidBody::Profile(_) if inner.dropped.contains(&valid.key) => {}
        ValidBody::Profile(data) => {
            inner.arrivals.push(valid.key.clone());
            let entry = inner
                .profiles
                .entry((valid.key_kind.clone(), valid.key.clone()))
                .or_insert_with(|| StoredProfile {
                    key_kind: valid.key_kind,
                    key: valid.key,
                    data: Map::new(),
                    last_ts: None,
                });
            entry.data.extend(data);
            if valid.ts.is_some() {
                entry.last_ts = valid.ts;
            }
        }
        ValidBody::Event { name, data } => inner.events.push(StoredEvent {
            key_kind: valid.key_kind,
            key: valid.key,
            name,
            data,
            ts: valid.ts,
        }),
    }
}

#[cfg(test)]
mod tests;
