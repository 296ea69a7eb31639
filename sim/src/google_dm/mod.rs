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

use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use crate::google_oauth::{OAuthSimConfig, TokenAuthority};
use crate::RunningSim;

/// One list member: `(identifier kind, value)` pairs.
pub type DmMember = BTreeSet<(String, String)>;

/// `(operating account, user list id)`.
type ListKey = (String, String);

pub const DEFAULT_FAILURE_REASON: &str = "PROCESSING_ERROR_REASON_INTERNAL_ERROR";
pub const DENIED_CONSENT_REASON: &str = "PROCESSING_ERROR_REASON_DENIED_CONSENT";

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
}

/// Handle on a Data Manager simulator; cheap to clone.
#[derive(Clone)]
pub struct DataManagerSim {
    state: Arc<Mutex<DmState>>,
    authority: TokenAuthority,
    /// Raw exchanges, when recording.
    wire: WireLog,
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
            })),
            authority,
            wire: WireLog::default(),
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
                self.wire.clone(),
                crate::wire::record,
            ))
    }

    /// Keep (or stop keeping) every exchange as it crossed the wire.
    pub fn record_wire(&self, on: bool) {
        self.wire.record(on);
    }

    /// The exchanges kept since recording began.
    pub fn wire(&self) -> Vec<WireExchange> {
        self.wire.exchanges()
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

    /// Requests that ended PARTIAL_SUCCESS or FAILED (some member failed).
    pub fn failed_request_count(&self) -> usize {
        let mut state = self.lock();
        process_due(&mut state, false);
        state
            .jobs
            .values()
            .filter(|j| matches!(j.status, DmStatus::PartialSuccess | DmStatus::Failed))
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

/// The HTTP front: refusals, auth, quotas, each method.
mod serve;
pub use serve::NOT_FOUND_PAGE;
use serve::*;

/// Checks of user data shared by audience members and events.
mod ids;

/// Google's message definitions, from the contract.
mod schema;

pub use crate::wire::WireExchange;
use crate::wire::WireLog;
use ids::*;

/// `events:ingest` (conversions).
mod events;
pub use events::SimConversion;

#[cfg(test)]
mod tests;
