//! Google Data Manager API simulator, audiences (`API-CONTRACTS.md` §4b).
//!
//! Routes (under the server root, like `https://datamanager.googleapis.com`),
//! exactly those of `tests/contracts/google-datamanager.json`:
//! * `POST /v1/audienceMembers:ingest`, `POST /v1/audienceMembers:remove`,
//!   `POST /v1/audienceMembers:removeAll` → `{requestId}`.
//! * `GET /v1/requestStatus:retrieve?requestId=…` →
//!   `{requestStatusPerDestination:[{destination, requestStatus, errorInfo?,
//!   audienceMembersIngestionStatus.userDataIngestionStatus |
//!   audienceMembersRemovalStatus.userDataRemovalStatus |
//!   removeAllAudienceMembersStatus}]}`; an unknown id is 400 INVALID_REQUEST_ID.
//! * `GET /v1/accountTypes/GOOGLE_ADS/accounts/{id}/userLists/{list}` →
//!   `{name, id, sizeInfo:{searchNetworkMembersCount, displayNetworkMembersCount}}`.
//! * `POST /token`: the OAuth token endpoint ([`crate::google_oauth`]).
//! * `POST /v1/events:ingest`: conversions, in `google_dm_events.rs`.
//!
//! Anything else, and a known path on another verb, is Google's 404 HTML page.
//!
//! Refused as the platform refuses them (400 INVALID_ARGUMENT unless said,
//! with Google's `ErrorReason` names): a bearer token not issued by the token
//! endpoint or expired (401 UNAUTHENTICATED), or without the `datamanager`
//! scope (403 ACCESS_TOKEN_SCOPE_INSUFFICIENT); an operating account not
//! accessible (403 PERMISSION_DENIED), where an account managed through a
//! manager needs that manager as login account (in `destinations`, or the
//! `login-account` header on reads); a linked account without a
//! DATA_PARTNER login; no `encoding` on a request carrying user data; an
//! ingest without `termsOfService.customerMatchTermsOfServiceStatus:
//! ACCEPTED` (TERMS_AND_CONDITIONS_NOT_SIGNED); no destinations or more
//! than 10; an unknown user list; 0 or more than 10,000 members; a member
//! with 0 or more than 10 identifiers; an identifier that is not exactly one
//! of emailAddress / phoneNumber / address; an email or phone that is not a
//! SHA-256 digest in the declared encoding; address names not hashed, a
//! region code that is not 2 uppercase letters, a postal code missing or
//! hashed; a consent value outside the enum; a field the method does not
//! take; a `removeAsOfTime` in the future. Bad members are all named in
//! `BadRequest.fieldViolations` (`audience_members[i]`). More than
//! `requests_per_minute` (300 per Cloud project; status reads count apart)
//! API requests in a sliding minute, or `requests_per_day`: 429
//! RESOURCE_EXHAUSTED with the quota's unit in `ErrorInfo.metadata`.
//!
//! Slow as the platform: an accepted request is PROCESSING for
//! `processing_delay`, and only then changes the list (a list's size moves
//! when its requests are processed, not when they are accepted). It ends
//! SUCCESS, PARTIAL_SUCCESS (some members failed) or FAILED (all did), with
//! `errorInfo.errorCounts[{reason, recordCount}]`: like the platform, counts
//! per reason, not which member. Members fail by a configurable share,
//! individually (by identifier digest), or the next N requests fail whole.
//! A member whose effective consent denies ad user data is not added and is
//! reported as PROCESSING_ERROR_REASON_DENIED_CONSENT.
//!
//! Population model: a configurable share of members match no Google user
//! (decided from the digest of the member's smallest identifier, so the same
//! person always (mis)matches, whatever else they carry).
//! The list holds every member processed; `sizeInfo` counts only matched
//! members, as Google's size estimates do.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::google_oauth::{OAuthSimConfig, TokenAuthority, TokenCheck, DATA_MANAGER_SCOPE};
use crate::RunningSim;

/// One list member: `(identifier kind, value)` pairs.
pub type DmMember = BTreeSet<(String, String)>;

/// `(operating account, user list id)`.
type ListKey = (String, String);

pub const DEFAULT_FAILURE_REASON: &str = "PROCESSING_ERROR_REASON_INTERNAL_ERROR";
pub const DENIED_CONSENT_REASON: &str = "PROCESSING_ERROR_REASON_DENIED_CONSENT";

/// Google's 404 page for a URL (or verb) it does not serve.
pub const NOT_FOUND_PAGE: &str = "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n  <p><b>404.</b> <ins>That’s an error.</ins>\n  <p>The requested URL was not found on this server.  <ins>That’s all we know.</ins>\n";

/// Largest body a recorded exchange keeps (a full request is 10,000 members).
const WIRE_BODY_LIMIT: usize = 64 * 1024 * 1024;

async fn record_wire(
    State(sim): State<DataManagerSim>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if sim.lock().wire.is_none() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, WIRE_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let v = v.to_str().unwrap_or("");
            let v = if k == "authorization" {
                v.split_whitespace().next().unwrap_or("").to_string() + " …"
            } else {
                v.to_string()
            };
            (k.as_str().to_ascii_lowercase(), v)
        })
        .collect();
    let mut exchange = WireExchange {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body: body.to_vec(),
        status: 0,
        response_content_type: None,
        response_body: Vec::new(),
    };
    let response = next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(body),
        ))
        .await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, WIRE_BODY_LIMIT)
        .await
        .unwrap_or_default();
    exchange.status = parts.status.as_u16();
    exchange.response_content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    exchange.response_body = body.to_vec();
    if let Some(wire) = sim.lock().wire.as_mut() {
        wire.push(exchange);
    }
    Response::from_parts(parts, axum::body::Body::from(body))
}

async fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "text/html; charset=UTF-8")],
        NOT_FOUND_PAGE,
    )
        .into_response()
}

#[derive(Clone, Debug)]
pub struct DataManagerSimConfig {
    /// Google Ads accounts the credentials may operate.
    pub operating_accounts: Vec<String>,
    /// Accounts the credentials reach only through a manager: operating
    /// account → manager account id. Writes must name the manager as
    /// `loginAccount`, reads in the `login-account` header; else 403.
    pub managed_accounts: BTreeMap<String, String>,
    pub max_members_per_request: usize,
    pub max_identifiers_per_member: usize,
    pub max_destinations_per_request: usize,
    /// Time a request stays PROCESSING (the platform: minutes to hours).
    pub processing_delay: Duration,
    /// Share (0–1) of members that match no Google user.
    pub non_matching_share: f64,
    /// Share (0–1) of members that fail processing.
    pub failing_share: f64,
    /// API requests per sliding minute (per Cloud project: 300; status
    /// reads have a budget of their own of the same size).
    pub requests_per_minute: usize,
    /// API requests per day (per Cloud project: 100,000), reset at 08:00
    /// UTC (midnight Pacific standard time).
    pub requests_per_day: usize,
    pub oauth: OAuthSimConfig,
}

impl Default for DataManagerSimConfig {
    fn default() -> Self {
        DataManagerSimConfig {
            operating_accounts: vec!["1234567890".into()],
            managed_accounts: BTreeMap::new(),
            max_members_per_request: 10_000,
            max_identifiers_per_member: 10,
            max_destinations_per_request: 10,
            processing_delay: Duration::from_secs(2),
            non_matching_share: 0.0,
            failing_share: 0.0,
            requests_per_minute: 300,
            requests_per_day: 100_000,
            oauth: OAuthSimConfig::default(),
        }
    }
}

/// One HTTP exchange as it crossed the wire, kept when recording is on
/// ([`DataManagerSim::record_wire`]): contract tests check both sides of it.
#[derive(Clone, Debug)]
pub struct WireExchange {
    pub method: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Request headers, names lower-cased (the authorization value is kept
    /// as `Bearer …` only).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub response_content_type: Option<String>,
    pub response_body: Vec<u8>,
}

/// What the simulator saw of one API request.
#[derive(Clone, Debug, PartialEq)]
pub struct DmRequest {
    pub path: String,
    pub status: u16,
    /// The google.rpc status of a refusal (`INVALID_ARGUMENT`, …).
    pub error_status: Option<String>,
    pub message: Option<String>,
    pub members: usize,
    pub identifiers: usize,
    /// The request id answered, when accepted.
    pub request_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmStatus {
    Processing,
    Success,
    PartialSuccess,
    Failed,
}

impl DmStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DmStatus::Processing => "PROCESSING",
            DmStatus::Success => "SUCCESS",
            DmStatus::PartialSuccess => "PARTIAL_SUCCESS",
            DmStatus::Failed => "FAILED",
        }
    }
}

#[derive(Clone, Debug)]
struct ListMember {
    ids: DmMember,
    added_at_ms: i64,
}

#[derive(Clone, Debug)]
enum Work {
    Ingest(Vec<(DmMember, bool)>),
    Remove(Vec<DmMember>),
    RemoveAll { as_of_ms: i64 },
}

struct DmJob {
    destinations: Vec<Value>,
    /// `(account, list)` per destination.
    lists: Vec<(String, String)>,
    work: Work,
    received_ms: i64,
    ready_at: Instant,
    status: DmStatus,
    /// Forced whole-request failure reason.
    forced_failure: Option<String>,
    errors: BTreeMap<String, u64>,
    records: u64,
    identifiers: u64,
}

struct DmState {
    config: DataManagerSimConfig,
    /// `(account, list id)` → members.
    lists: BTreeMap<(String, String), Vec<ListMember>>,
    jobs: BTreeMap<String, DmJob>,
    recent: VecDeque<Instant>,
    recent_status_reads: VecDeque<Instant>,
    /// `(quota day, requests counted that day)`.
    day: (i64, usize),
    /// Digests whose members fail validation (400, named by index).
    invalid_ids: BTreeSet<String>,
    failing_ids: BTreeSet<String>,
    fail_next: VecDeque<String>,
    requests: Vec<DmRequest>,
    next_id: u64,
    /// Conversion actions, conversions received, events requests.
    events: events::EventsState,
    /// Raw exchanges, when recording.
    wire: Option<Vec<WireExchange>>,
}

/// Handle on a Data Manager simulator; cheap to clone.
#[derive(Clone)]
pub struct DataManagerSim {
    state: Arc<Mutex<DmState>>,
    authority: TokenAuthority,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether a digest matches a Google user under the population model.
fn matches_a_user(value: &str, non_matching_share: f64) -> bool {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(value.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    (f64::from(n) / f64::from(u32::MAX)) >= non_matching_share
}

fn member_draw(member: &DmMember, salt: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    for (k, v) in member {
        h.update(k.as_bytes());
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    f64::from(n) / f64::from(u32::MAX)
}

impl DataManagerSim {
    pub fn new(config: DataManagerSimConfig) -> Self {
        let authority = TokenAuthority::new(config.oauth.clone());
        DataManagerSim {
            state: Arc::new(Mutex::new(DmState {
                config,
                lists: BTreeMap::new(),
                jobs: BTreeMap::new(),
                recent: VecDeque::new(),
                recent_status_reads: VecDeque::new(),
                day: (0, 0),
                invalid_ids: BTreeSet::new(),
                failing_ids: BTreeSet::new(),
                fail_next: VecDeque::new(),
                requests: Vec::new(),
                next_id: 0,
                events: events::EventsState::default(),
                wire: None,
            })),
            authority,
        }
    }

    /// Serve a new simulator on 127.0.0.1 (API and token endpoint).
    pub async fn start(
        config: DataManagerSimConfig,
    ) -> anyhow::Result<(RunningSim, DataManagerSim)> {
        let sim = DataManagerSim::new(config);
        let running = crate::serve(sim.router()).await?;
        Ok((running, sim))
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/audienceMembers:ingest", post(ingest))
            .route("/v1/audienceMembers:remove", post(remove))
            .route("/v1/audienceMembers:removeAll", post(remove_all))
            .route("/v1/requestStatus:retrieve", get(retrieve))
            .route("/v1/events:ingest", post(events::ingest))
            .route(
                "/v1/accountTypes/{kind}/accounts/{account}/userLists/{list}",
                get(user_list),
            )
            .with_state(self.clone())
            .merge(self.authority.router())
            // Google's front end answers an unknown URL, or a known one on a
            // verb it is not served on, with a 404 HTML page.
            .fallback(not_found_page)
            .method_not_allowed_fallback(not_found_page)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                record_wire,
            ))
    }

    /// Keep (or stop keeping) every exchange as it crossed the wire.
    pub fn record_wire(&self, on: bool) {
        self.lock().wire = on.then(Vec::new);
    }

    /// The exchanges kept since recording began.
    pub fn wire(&self) -> Vec<WireExchange> {
        self.lock().wire.clone().unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, DmState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token authority: expire tokens, read grants.
    pub fn authority(&self) -> &TokenAuthority {
        &self.authority
    }

    /// Create an empty Customer Match user list.
    pub fn create_user_list(&self, account: &str, list: &str) {
        self.lock()
            .lists
            .entry((account.to_string(), list.to_string()))
            .or_default();
    }

    /// Members of a list, matched or not, as processed so far.
    pub fn members(&self, account: &str, list: &str) -> Vec<DmMember> {
        let mut state = self.lock();
        process_due(&mut state, false);
        state
            .lists
            .get(&(account.to_string(), list.to_string()))
            .map(|m| m.iter().map(|m| m.ids.clone()).collect())
            .unwrap_or_default()
    }

    pub fn member_count(&self, account: &str, list: &str) -> usize {
        self.members(account, list).len()
    }

    /// Google's size estimate: processed members matching a Google user.
    pub fn size(&self, account: &str, list: &str) -> u64 {
        let mut state = self.lock();
        process_due(&mut state, false);
        size_of(&state, account, list)
    }

    pub fn has_member_with(&self, account: &str, list: &str, kind: &str, value: &str) -> bool {
        let pair = (kind.to_string(), value.to_string());
        self.members(account, list)
            .iter()
            .any(|m| m.contains(&pair))
    }

    pub fn requests(&self) -> Vec<DmRequest> {
        self.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// Requests still PROCESSING.
    pub fn pending_count(&self) -> usize {
        let mut state = self.lock();
        process_due(&mut state, false);
        state
            .jobs
            .values()
            .filter(|j| j.status == DmStatus::Processing)
            .count()
    }

    /// Status of a request, as processed so far.
    pub fn status_of(&self, request_id: &str) -> Option<DmStatus> {
        let mut state = self.lock();
        process_due(&mut state, false);
        state.jobs.get(request_id).map(|j| j.status)
    }

    pub fn set_processing_delay(&self, delay: Duration) {
        self.lock().config.processing_delay = delay;
    }

    pub fn set_non_matching_share(&self, share: f64) {
        self.lock().config.non_matching_share = share;
    }

    pub fn set_failing_share(&self, share: f64) {
        self.lock().config.failing_share = share;
    }

    pub fn set_requests_per_minute(&self, n: usize) {
        self.lock().config.requests_per_minute = n;
    }

    /// Members carrying any of these digests fail validation: the request
    /// is refused with 400 INVALID_AUDIENCE_MEMBER naming each of them.
    pub fn refuse_members_with(&self, digests: &[&str]) {
        self.lock()
            .invalid_ids
            .extend(digests.iter().map(|d| d.to_string()));
    }

    /// Members carrying any of these digests fail processing.
    pub fn fail_members_with(&self, digests: &[&str]) {
        self.lock()
            .failing_ids
            .extend(digests.iter().map(|d| d.to_string()));
    }

    /// The next `n` accepted requests end FAILED with `reason`.
    pub fn fail_next_requests(&self, n: usize, reason: &str) {
        self.lock()
            .fail_next
            .extend(std::iter::repeat_n(reason.to_string(), n));
    }

    /// Finish every PROCESSING request now, whatever its delay.
    pub fn process_now(&self) {
        let mut state = self.lock();
        process_due(&mut state, true);
        events::finish_all(&mut state);
    }
}

fn size_of(state: &DmState, account: &str, list: &str) -> u64 {
    let share = state.config.non_matching_share;
    state
        .lists
        .get(&(account.to_string(), list.to_string()))
        .map(|members| {
            members
                .iter()
                .filter(|m| {
                    m.ids
                        .iter()
                        .map(|(_, v)| v)
                        .min()
                        .is_some_and(|v| matches_a_user(v, share))
                })
                .count() as u64
        })
        .unwrap_or(0)
}

/// Apply every request whose processing time has come (all with `force`),
/// in the order received.
fn process_due(state: &mut DmState, force: bool) {
    let now = Instant::now();
    let due: Vec<String> = {
        let mut due: Vec<(&String, &DmJob)> = state
            .jobs
            .iter()
            .filter(|(_, j)| j.status == DmStatus::Processing && (force || j.ready_at <= now))
            .collect();
        due.sort_by_key(|(id, j)| (j.received_ms, (*id).clone()));
        due.into_iter().map(|(id, _)| id.clone()).collect()
    };
    for id in due {
        let Some(mut job) = state.jobs.remove(&id) else {
            continue;
        };
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut failed = 0u64;
        let failing_share = state.config.failing_share;
        let total = match &job.work {
            Work::Ingest(m) => m.len(),
            Work::Remove(m) => m.len(),
            Work::RemoveAll { .. } => 0,
        } as u64;
        if let Some(reason) = job.forced_failure.clone() {
            errors.insert(reason, total.max(1));
            failed = total;
        } else {
            let fails = |m: &DmMember, failing: &BTreeSet<String>| {
                m.iter().any(|(_, v)| failing.contains(v))
                    || (failing_share > 0.0 && member_draw(m, "fail") < failing_share)
            };
            for (account, list) in job.lists.clone() {
                let failing = state.failing_ids.clone();
                let members = state.lists.entry((account, list)).or_default();
                match &job.work {
                    Work::Ingest(batch) => {
                        for (m, consented) in batch {
                            if fails(m, &failing) {
                                failed += 1;
                                *errors.entry(DEFAULT_FAILURE_REASON.into()).or_default() += 1;
                                continue;
                            }
                            if !consented {
                                // Reported, not dropped silently
                                // (processing_errors.proto: DENIED_CONSENT).
                                failed += 1;
                                *errors.entry(DENIED_CONSENT_REASON.into()).or_default() += 1;
                                continue;
                            }
                            let mut merged = m.clone();
                            members.retain(|existing| {
                                if existing.ids.iter().any(|p| merged.contains(p)) {
                                    merged.extend(existing.ids.iter().cloned());
                                    false
                                } else {
                                    true
                                }
                            });
                            members.push(ListMember {
                                ids: merged,
                                added_at_ms: job.received_ms,
                            });
                        }
                    }
                    Work::Remove(batch) => {
                        for m in batch {
                            if fails(m, &failing) {
                                failed += 1;
                                *errors.entry(DEFAULT_FAILURE_REASON.into()).or_default() += 1;
                                continue;
                            }
                            members.retain(|existing| !existing.ids.iter().any(|p| m.contains(p)));
                        }
                    }
                    Work::RemoveAll { as_of_ms } => {
                        members.retain(|existing| existing.added_at_ms >= *as_of_ms);
                    }
                }
            }
        }
        job.status = if failed == 0 {
            DmStatus::Success
        } else if failed >= total {
            DmStatus::Failed
        } else {
            DmStatus::PartialSuccess
        };
        job.errors = errors;
        state.jobs.insert(id, job);
    }
}

/// A refusal, as google.rpc.Status over REST.
struct RpcError {
    status: StatusCode,
    rpc_status: &'static str,
    reason: &'static str,
    message: String,
    /// `BadRequest.fieldViolations`: `(field, description)`, fields named
    /// by their proto path (`audience_members[3].user_data…`).
    violations: Vec<(String, String)>,
    /// A quota refusal of the daily quota (else the per-minute one).
    daily: bool,
}

/// Reasons Google's front end gives (domain `googleapis.com`), not the API's
/// own `ErrorReason` (domain `datamanager.googleapis.com`).
const FRONT_END_REASONS: &[&str] = &[
    "ACCESS_TOKEN_EXPIRED",
    "ACCESS_TOKEN_TYPE_UNSUPPORTED",
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    "RATE_LIMIT_EXCEEDED",
];

impl RpcError {
    fn new(
        status: StatusCode,
        rpc_status: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        RpcError {
            status,
            rpc_status,
            reason,
            message: message.into(),
            violations: Vec::new(),
            daily: false,
        }
    }
    fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        RpcError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", reason, message)
    }
    fn into_response(self) -> Response {
        let domain = if FRONT_END_REASONS.contains(&self.reason) {
            "googleapis.com"
        } else {
            "datamanager.googleapis.com"
        };
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": self.reason,
            "domain": domain,
        })];
        if self.reason == "RATE_LIMIT_EXCEEDED" {
            details[0]["metadata"] = json!({
                "quota_unit": if self.daily { "1/d/{project}" } else { "1/min/{project}" },
                "service": "datamanager.googleapis.com",
            });
        }
        if !self.violations.is_empty() {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": self.violations.iter().map(|(field, description)| json!({
                    "field": field,
                    "description": description,
                })).collect::<Vec<_>>(),
            }));
        }
        (
            self.status,
            Json(json!({"error": {
                "code": self.status.as_u16(),
                "message": self.message,
                "status": self.rpc_status,
                "details": details,
            }})),
        )
            .into_response()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Ingest,
    Remove,
    RemoveAll,
    Retrieve,
}

impl Method {
    fn path(self) -> &'static str {
        match self {
            Method::Ingest => "/v1/audienceMembers:ingest",
            Method::Remove => "/v1/audienceMembers:remove",
            Method::RemoveAll => "/v1/audienceMembers:removeAll",
            Method::Retrieve => "/v1/requestStatus:retrieve",
        }
    }
    fn fields(self) -> &'static [&'static str] {
        match self {
            Method::Ingest => &[
                "destinations",
                "audienceMembers",
                "consent",
                "validateOnly",
                "encoding",
                "encryptionInfo",
                "termsOfService",
            ],
            Method::Remove => &[
                "destinations",
                "audienceMembers",
                "validateOnly",
                "encoding",
                "encryptionInfo",
            ],
            Method::RemoveAll => &["destinations", "removeAsOfTime", "validateOnly"],
            Method::Retrieve => &["requestId"],
        }
    }
}

/// Auth (a live token of the `datamanager` scope) and the per-minute
/// budget, shared by every API route; status reads have a budget of their own.
fn admit(
    state: &mut DmState,
    authority: &TokenAuthority,
    headers: &HeaderMap,
    status_read: bool,
) -> Result<(), RpcError> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let check = bearer.map_or(TokenCheck::Unknown, |t| authority.check(t));
    if check != TokenCheck::Valid {
        return Err(RpcError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            if check == TokenCheck::Expired {
                "ACCESS_TOKEN_EXPIRED"
            } else {
                "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            },
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    }
    if !bearer.is_some_and(|t| authority.has_scope(t, DATA_MANAGER_SCOPE)) {
        return Err(RpcError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "Request had insufficient authentication scopes.",
        ));
    }
    let now = Instant::now();
    let limit = state.config.requests_per_minute;
    let recent = if status_read {
        &mut state.recent_status_reads
    } else {
        &mut state.recent
    };
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        recent.pop_front();
    }
    if recent.len() >= limit {
        return Err(RpcError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "RATE_LIMIT_EXCEEDED",
            format!("Quota exceeded: {limit} requests per minute per project."),
        ));
    }
    let today = (now_ms() - 8 * 3_600_000).div_euclid(86_400_000);
    if state.day.0 != today {
        state.day = (today, 0);
    }
    if state.day.1 >= state.config.requests_per_day {
        let mut e = RpcError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "RATE_LIMIT_EXCEEDED",
            format!(
                "Quota exceeded: {} requests per day per project.",
                state.config.requests_per_day
            ),
        );
        e.daily = true;
        return Err(e);
    }
    state.day.1 += 1;
    let recent = if status_read {
        &mut state.recent_status_reads
    } else {
        &mut state.recent
    };
    recent.push_back(now);
    Ok(())
}

fn parse_body(method: Method, body: &[u8]) -> Result<Map<String, Value>, RpcError> {
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
        ));
    };
    if let Some(k) = obj.keys().find(|k| !method.fields().contains(&k.as_str())) {
        return Err(RpcError::invalid(
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."),
        ));
    }
    // Nested too: Google's JSON front end knows every message's fields.
    let request = match method {
        Method::Ingest => "IngestAudienceMembersRequest",
        Method::Remove => "RemoveAudienceMembersRequest",
        Method::RemoveAll => "RemoveAllAudienceMembersRequest",
        Method::Retrieve => "RetrieveRequestStatusRequest",
    };
    if let Some(message) =
        crate::google_dm_schema::unknown_field(request, &Value::Object(obj.clone()))
    {
        return Err(RpcError::invalid("INVALID_ARGUMENT", message));
    }
    Ok(obj)
}

/// Members of an ingest / remove request: `(member, consented)` each.
fn parse_members(
    state: &DmState,
    obj: &Map<String, Value>,
    record: &mut DmRequest,
) -> Result<Vec<(DmMember, bool)>, RpcError> {
    let members = obj
        .get("audienceMembers")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            RpcError::invalid("REQUIRED_FIELD_MISSING", "audienceMembers is required.")
        })?;
    record.members = members.len();
    let max = state.config.max_members_per_request;
    if members.len() > max {
        return Err(RpcError::invalid(
            "TOO_MANY_AUDIENCE_MEMBERS",
            format!(
                "{} audience members in one request; at most {max}.",
                members.len()
            ),
        ));
    }
    let digest_ok = digest_check(obj)?;
    let request_consent = obj.get("consent");
    let max_ids = state.config.max_identifiers_per_member;
    let mut out = Vec::with_capacity(members.len());
    // Google checks every member and names each bad one
    // (`BadRequest.fieldViolations`, `audience_members[i]…`), failing the
    // whole request.
    let mut first_reason: Option<&'static str> = None;
    let mut violations = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let at = format!("audienceMembers[{i}]");
        let checked = check_consent(m.get("consent"), &at).and_then(|()| {
            let ids = m
                .get("userData")
                .and_then(|u| u.get("userIdentifiers"))
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    RpcError::invalid(
                        "REQUIRED_FIELD_MISSING",
                        format!("{at}.userData.userIdentifiers is required."),
                    )
                })?;
            record.identifiers += ids.len();
            let member = parse_user_identifiers(ids, &at, max_ids, digest_ok)?;
            if member.iter().any(|(_, v)| state.invalid_ids.contains(v)) {
                return Err(RpcError::invalid(
                    "INVALID_AUDIENCE_MEMBER",
                    format!("{at} is not a valid audience member."),
                ));
            }
            Ok(member)
        });
        match checked {
            Ok(member) => {
                let consented = !denies_user_data(m.get("consent"), request_consent);
                out.push((member, consented));
            }
            Err(e) => {
                first_reason.get_or_insert(e.reason);
                violations.push((format!("audience_members[{i}]"), e.message));
            }
        }
    }
    if let Some(reason) = first_reason {
        let mut e = RpcError::invalid(
            reason,
            format!(
                "There was a problem with the request: {} audience member(s) are not valid.",
                violations.len()
            ),
        );
        e.violations = violations;
        return Err(e);
    }
    Ok(out)
}

fn new_request_id(state: &mut DmState) -> String {
    state.next_id += 1;
    format!("sim-dm-{:08}-{:08x}", state.next_id, rand::random::<u32>())
}

fn enqueue(
    state: &mut DmState,
    destinations: Vec<Value>,
    lists: Vec<(String, String)>,
    work: Work,
    identifiers: u64,
) -> String {
    let id = new_request_id(state);
    let records = match &work {
        Work::Ingest(m) => m.len(),
        Work::Remove(m) => m.len(),
        Work::RemoveAll { .. } => 0,
    } as u64;
    let forced_failure = state.fail_next.pop_front();
    let job = DmJob {
        destinations,
        lists,
        work,
        received_ms: now_ms(),
        ready_at: Instant::now() + state.config.processing_delay,
        status: DmStatus::Processing,
        forced_failure,
        errors: BTreeMap::new(),
        records,
        identifiers,
    };
    state.jobs.insert(id.clone(), job);
    id
}

fn serve(
    sim: &DataManagerSim,
    method: Method,
    headers: &HeaderMap,
    body: &[u8],
    record: &mut DmRequest,
) -> Result<Value, RpcError> {
    let mut state = sim.lock();
    process_due(&mut state, false);
    admit(&mut state, &sim.authority, headers, false)?;
    let obj = parse_body(method, body)?;
    let validate_only = obj.get("validateOnly") == Some(&Value::Bool(true));
    match method {
        Method::Ingest | Method::Remove => {
            let (dests, lists) = parse_destinations(&state, &obj)?;
            if method == Method::Ingest {
                let accepted = obj
                    .get("termsOfService")
                    .and_then(|t| t.get("customerMatchTermsOfServiceStatus"))
                    .and_then(Value::as_str)
                    == Some("ACCEPTED");
                if !accepted {
                    return Err(RpcError::invalid(
                        "TERMS_AND_CONDITIONS_NOT_SIGNED",
                        "termsOfService.customerMatchTermsOfServiceStatus must be ACCEPTED to upload Customer Match data.",
                    ));
                }
                check_consent(obj.get("consent"), "consent")?;
            }
            let members = parse_members(&state, &obj, record)?;
            if validate_only {
                return Ok(json!({}));
            }
            let work = if method == Method::Ingest {
                Work::Ingest(members)
            } else {
                Work::Remove(members.into_iter().map(|(m, _)| m).collect())
            };
            let id = enqueue(&mut state, dests, lists, work, record.identifiers as u64);
            record.request_id = Some(id.clone());
            Ok(json!({ "requestId": id }))
        }
        Method::RemoveAll => {
            let (dests, lists) = parse_destinations(&state, &obj)?;
            let as_of_ms = match obj.get("removeAsOfTime").and_then(Value::as_str) {
                None => now_ms(),
                Some(t) => time_from_rfc3339(t).ok_or_else(|| {
                    RpcError::invalid(
                        "INVALID_ARGUMENT",
                        format!("removeAsOfTime {t:?} is not an RFC 3339 timestamp."),
                    )
                })?,
            };
            if as_of_ms > now_ms() + 1_000 {
                return Err(RpcError::invalid(
                    "INVALID_REMOVE_AS_OF_TIME",
                    "removeAsOfTime must not be in the future.",
                ));
            }
            if validate_only {
                return Ok(json!({}));
            }
            let id = enqueue(&mut state, dests, lists, Work::RemoveAll { as_of_ms }, 0);
            record.request_id = Some(id.clone());
            Ok(json!({ "requestId": id }))
        }
        Method::Retrieve => Err(RpcError::invalid(
            "INVALID_ARGUMENT",
            "requestStatus:retrieve takes no body.",
        )),
    }
}

/// `GET /v1/requestStatus:retrieve?requestId=…`: the status per destination
/// (request_status_per_destination.proto); an id Google does not know is
/// 400 INVALID_REQUEST_ID.
fn serve_retrieve(
    sim: &DataManagerSim,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Value, RpcError> {
    let mut state = sim.lock();
    process_due(&mut state, false);
    admit(&mut state, &sim.authority, headers, true)?;
    if let Some((k, _)) = query
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "requestId" | "request_id"))
    {
        return Err(RpcError::invalid(
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot bind query parameter. Field '{k}' could not be found in request message."),
        ));
    }
    let id = query
        .iter()
        .find(|(k, _)| matches!(k.as_str(), "requestId" | "request_id"))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| RpcError::invalid("REQUIRED_FIELD_MISSING", "request_id is required."))?;
    if let Some(answer) = events::status(&state, id) {
        return Ok(answer);
    }
    let job = state.jobs.get(id).ok_or_else(|| {
        RpcError::invalid(
            "INVALID_REQUEST_ID",
            format!("Request ID {id:?} is not valid."),
        )
    })?;
    let per_destination: Vec<Value> = job
        .destinations
        .iter()
        .map(|d| {
            let mut entry = json!({
                "destination": d,
                "requestStatus": job.status.as_str(),
            });
            if !job.errors.is_empty() {
                entry["errorInfo"] = json!({ "errorCounts": job.errors.iter().map(|(reason, n)| json!({
                    "recordCount": n.to_string(),
                    "reason": reason,
                })).collect::<Vec<_>>() });
            }
            let counts = json!({
                "recordCount": job.records.to_string(),
                "userIdentifierCount": job.identifiers.to_string(),
            });
            match job.work {
                Work::Ingest(_) => {
                    entry["audienceMembersIngestionStatus"] =
                        json!({ "userDataIngestionStatus": counts });
                }
                Work::Remove(_) => {
                    entry["audienceMembersRemovalStatus"] =
                        json!({ "userDataRemovalStatus": counts });
                }
                Work::RemoveAll { .. } => {
                    entry["removeAllAudienceMembersStatus"] = json!({});
                }
            }
            entry
        })
        .collect();
    Ok(json!({ "requestStatusPerDestination": per_destination }))
}

fn new_record(path: String) -> DmRequest {
    DmRequest {
        path,
        status: 200,
        error_status: None,
        message: None,
        members: 0,
        identifiers: 0,
        request_id: None,
    }
}

/// Answer with `result`, and keep what was seen of the request.
fn answer(
    sim: &DataManagerSim,
    mut record: DmRequest,
    result: Result<Value, RpcError>,
) -> Response {
    let response = match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => {
            record.status = e.status.as_u16();
            record.error_status = Some(e.rpc_status.to_string());
            record.message = Some(e.message.clone());
            e.into_response()
        }
    };
    sim.lock().requests.push(record);
    response
}

async fn handle(sim: DataManagerSim, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    let mut record = new_record(method.path().to_string());
    let result = serve(&sim, method, &headers, &body, &mut record);
    answer(&sim, record, result)
}

async fn ingest(State(sim): State<DataManagerSim>, headers: HeaderMap, body: Bytes) -> Response {
    handle(sim, Method::Ingest, headers, body).await
}

async fn remove(State(sim): State<DataManagerSim>, headers: HeaderMap, body: Bytes) -> Response {
    handle(sim, Method::Remove, headers, body).await
}

async fn remove_all(
    State(sim): State<DataManagerSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(sim, Method::RemoveAll, headers, body).await
}

async fn retrieve(
    State(sim): State<DataManagerSim>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let record = new_record(Method::Retrieve.path().to_string());
    let result = serve_retrieve(&sim, &headers, &query);
    answer(&sim, record, result)
}

async fn user_list(
    State(sim): State<DataManagerSim>,
    Path((kind, account, list)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let record = new_record(format!(
        "/v1/accountTypes/{kind}/accounts/{account}/userLists/{list}"
    ));
    let result = {
        let mut state = sim.lock();
        process_due(&mut state, false);
        admit(&mut state, &sim.authority, &headers, false).and_then(|()| {
            // Reads name the manager in the `login-account` header
            // (user_list_service.proto): `accountTypes/GOOGLE_ADS/accounts/{id}`.
            let login = headers
                .get("login-account")
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.strip_prefix("accountTypes/GOOGLE_ADS/accounts/")
                        .unwrap_or("")
                        .to_string()
                });
            account_access(&state, &account, login.as_deref())?;
            if kind != "GOOGLE_ADS" || !state.lists.contains_key(&(account.clone(), list.clone())) {
                return Err(RpcError::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "NOT_FOUND",
                    format!("User list {list} of account {account} not found."),
                ));
            }
            let size = size_of(&state, &account, &list).to_string();
            Ok(json!({
                "name": format!("accountTypes/{kind}/accounts/{account}/userLists/{list}"),
                "id": list,
                "sizeInfo": {
                    "searchNetworkMembersCount": size,
                    "displayNetworkMembersCount": size,
                },
            }))
        })
    };
    answer(&sim, record, result)
}

/// Checks of user data shared by audience members and events.
#[path = "google_dm_ids.rs"]
mod ids;
use ids::*;

/// `events:ingest` (conversions).
#[path = "google_dm_events.rs"]
mod events;
pub use events::SimConversion;

#[cfg(test)]
#[path = "google_dm_tests.rs"]
mod tests;
