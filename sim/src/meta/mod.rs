//! Meta Custom Audiences simulator (Graph API, `API-CONTRACTS.md` §3a).
//!
//! Routes, under `/{version}` (e.g. `/v25.0`):
//! * `POST   /{v}/act_{ad_account}/customaudiences` creates an audience → `{id}`.
//! * `POST   /{v}/{audience_id}/users` adds rows; `DELETE` the same path removes.
//! * `POST   /{v}/{audience_id}/usersreplace` replaces the audience (session required).
//! * `GET    /{v}/{audience_id}?fields=approximate_count_lower_bound,approximate_count_upper_bound,operation_status,name`.
//! * `GET    /{v}/{audience_id}/sessions` → `{data:[{session_id, stage, progress,
//!   num_received, num_matched, num_invalid_entries, start_time, end_time}]}`, newest first.
//! * `POST   /{v}/{pixel_id}/events`: the Conversions API, see [`capi`] (its
//!   calls share the token, version checks, faults, quota and request log).
//!
//! Graph takes its parameters from the query string, a form body or a JSON
//! body alike; the official SDKs send a DELETE's `payload` in the query string
//! and others (Segment) as a JSON body, so all three are accepted. `payload`
//! and `session` may be JSON objects or JSON text.
//!
//! Contract enforced (each behaviour that makes the simulator slower or
//! stricter is a [`MetaSimConfig`] field or a handle method, so a test can
//! switch it):
//! * **token**: `access_token` (parameter, or `Authorization: Bearer` /
//!   `OAuth`) must match, else code 190 (HTTP 400, `OAuthException`);
//!   [`MetaSim::expire_token`] makes the current token answer 190 subcode 463
//!   ("session has expired") until [`MetaSim::set_access_token`] installs a new one.
//! * **version**: a major version below `min_version` (default 25: v22–v24
//!   have expired) answers code 2635.
//! * **payload**: an unknown audience is code 100 subcode 33; the schema must
//!   use known keys; every row has the schema's length; at most `max_rows`
//!   rows (10,000) else code 100; hashed columns must be 64 lowercase hex
//!   characters or `""`. A row with a bad cell is an *invalid entry*: counted
//!   in `num_invalid_entries`, its bad cell listed in `invalid_entry_samples`
//!   (cell value → reason), and not applied. A session's first request must
//!   carry `batch_seq` 1 (else 2650 subcode 1870147); a finished session
//!   takes no more batches.
//! * **flagged audiences**: [`MetaSim::flag_audience`] (or, with
//!   `flag_sensitive_names`, an audience created with a name suggesting a
//!   health condition or financial status) has `operation_status` 471 and
//!   refuses every upload with code 100 subcode 1713230 (HTTP 400), as Meta
//!   does since 2025-09-02.
//! * **population**: a share `unmatched_share` of identifiers match no Meta
//!   user. Which ones is decided by hashing the row's most stable key value
//!   (EXTERN_ID, else EMAIL, PHONE, MADID, else the whole row), so it is
//!   reproducible and a person keeps their fate when an email changes.
//!   Unmatched rows are received (and counted in `num_received`) but never
//!   join the audience; sessions report `num_matched`.
//! * **asynchronous application**: adds, removes and replaces answer at
//!   once but reach the audience (and its count) only `apply_delay` later
//!   (Meta: up to 24 h), strictly in arrival order. The simulator has its own
//!   clock: [`MetaSim::advance`] moves it forward so a test need not sleep.
//! * **latency**: every request is held `response_delay` before it is served.
//! * **hourly quota** per ad account, Meta's `custom_audience` business use
//!   case: `quota_base + quota_per_audience × audiences` calls per hour,
//!   capped at 700,000. The defaults are the Development tier (5,000 + 40 ×
//!   active audiences, every app's tier until App Review); [`AccessTier`]
//!   gives the Standard tier's 190,000 + 40 × audiences. Every answer
//!   carries `X-Business-Use-Case-Usage`, keyed by the ad account id
//!   (digits, no `act_`): `[{type: "custom_audience", call_count,
//!   total_cputime, total_time, estimated_time_to_regain_access,
//!   ads_api_access_tier}]`, percentages of the quota used (the simulator
//!   has no CPU model, so the three percentages are equal) and minutes until
//!   the window ends when the quota is spent. Over the quota: code 80003.
//! * **sessions and replaces** (Meta's Customer File Custom Audiences
//!   guide): a session takes batches for `session_window` (90 minutes) from
//!   its first; after that a replace session is swapped in with what it
//!   received and a later batch answers 2650 subcode 1870158, and a `users`
//!   session's late batches are discarded. A batch for a finished session
//!   answers 2650 subcode 1870159; a session's schema cannot change. While a
//!   replace is under way (its session open or its swap not yet applied) an
//!   add, a remove or another replace of the audience answers 2650 subcode
//!   1870145 (audience update in progress); so does a replace while the
//!   audience is being updated (any session of it open or change pending).
//! * a **request log** ([`MetaSim::requests`]) keeps every request in arrival
//!   order with its operation (add / remove / replace), audience, schema and
//!   rows, so a test can pin that removes reach the wire before adds.
//!
//! Members are stored per audience as sets of `(schema key, value)` pairs;
//! `EMAIL_SHA256` is stored as `EMAIL`, `PHONE_SHA256` as `PHONE` and
//! `MOBILE_ADVERTISER_ID` as `MADID`. An add merges into a member sharing a
//! strong key (EMAIL, PHONE, EXTERN_ID, MADID); a remove drops every member
//! sharing a strong key with the row (or equal to it).
//!
//! The audience count fields are exact (Meta rounds them and gives a range;
//! the simulator answers lower bound = upper bound = the number of matched
//! members applied so far).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};

pub use crate::wire::WireExchange;
use crate::wire::WireLog;
use crate::RunningSim;

pub mod capi;
mod edit;
mod graph;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;

/// The token the simulator accepts unless configured otherwise.
pub const DEFAULT_ACCESS_TOKEN: &str = "meta-sim-token";

/// Keys that identify a person on their own.
const STRONG_KEYS: &[&str] = &["EMAIL", "PHONE", "EXTERN_ID", "MADID"];
/// The key whose value decides whether a row matches a Meta user, most
/// stable first.
const POPULATION_KEYS: &[&str] = &["EXTERN_ID", "EMAIL", "PHONE", "MADID"];
/// Words in an audience name or description that get it flagged (Meta's own
/// examples of health conditions and financial status).
const SENSITIVE_WORDS: &[&str] = &["diabetes", "credit score", "debt", "cancer", "pregnan"];
/// Meta's cap on the custom-audience business use case's hourly calls.
const QUOTA_CAP: u64 = 700_000;
/// How long a session takes batches after its first (Meta: 90 minutes).
pub const SESSION_WINDOW: Duration = Duration::from_secs(90 * 60);

/// Meta's access tiers of the Marketing API, as they set the hourly calls
/// of the `custom_audience` business use case (Meta's rate-limiting page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessTier {
    /// Every app until App Review grants more: 5,000 + 40 × audiences.
    Development,
    /// After App Review: 190,000 + 40 × audiences.
    Standard,
}

impl AccessTier {
    /// Calls an hour before any audience counts.
    pub fn base_calls(self) -> u64 {
        match self {
            AccessTier::Development => 5_000,
            AccessTier::Standard => 190_000,
        }
    }

    /// Calls an hour each active audience adds.
    pub fn calls_per_audience(self) -> u64 {
        40
    }

    /// The hourly calls for `audiences` active audiences.
    pub fn hourly_calls(self, audiences: u64) -> u64 {
        self.base_calls()
            .saturating_add(self.calls_per_audience().saturating_mul(audiences))
            .min(QUOTA_CAP)
    }

    /// How the usage header names the tier (`ads_api_access_tier`).
    pub fn header_name(self) -> &'static str {
        match self {
            AccessTier::Development => "development_access",
            AccessTier::Standard => "standard_access",
        }
    }
}

/// One audience member: `(schema key, value)` pairs.
pub type Member = BTreeSet<(String, String)>;

#[derive(Clone, Debug)]
pub struct MetaSimConfig {
    pub access_token: String,
    /// Oldest Graph major version served; older ones answer code 2635.
    pub min_version: u32,
    /// Most rows per request.
    pub max_rows: usize,
    /// Ad account (without `act_`) whose `customaudiences` edge is served.
    pub ad_account_id: String,
    /// Share (0.0–1.0) of identifiers that match no Meta user.
    pub unmatched_share: f64,
    /// How long after a request its changes reach the audience.
    pub apply_delay: Duration,
    /// How long every request is held before it is served.
    pub response_delay: Option<Duration>,
    /// The app's access tier, as the usage header reports it.
    pub access_tier: AccessTier,
    /// Hourly calls per ad account before 80003, plus `quota_per_audience`
    /// for each audience of the account (the tier's figures unless a test
    /// wants a smaller quota). `None` switches the quota off.
    pub quota_base: Option<u64>,
    pub quota_per_audience: u64,
    /// The quota's window (an hour at Meta).
    pub quota_window: Duration,
    /// Flag audiences whose name or description suggests a health condition
    /// or financial status when they are created.
    pub flag_sensitive_names: bool,
    /// How long a session takes batches after its first.
    pub session_window: Duration,
}

impl MetaSimConfig {
    /// The default configuration with `tier`'s quota.
    pub fn for_tier(tier: AccessTier) -> Self {
        MetaSimConfig {
            access_tier: tier,
            quota_base: Some(tier.base_calls()),
            quota_per_audience: tier.calls_per_audience(),
            ..MetaSimConfig::default()
        }
    }
}

impl Default for MetaSimConfig {
    fn default() -> Self {
        MetaSimConfig {
            access_token: DEFAULT_ACCESS_TOKEN.to_string(),
            min_version: 25,
            max_rows: 10_000,
            ad_account_id: "1234567890".to_string(),
            unmatched_share: 0.0,
            apply_delay: Duration::ZERO,
            response_delay: None,
            access_tier: AccessTier::Development,
            quota_base: Some(AccessTier::Development.base_calls()),
            quota_per_audience: AccessTier::Development.calls_per_audience(),
            quota_window: Duration::from_secs(3600),
            flag_sensitive_names: true,
            session_window: SESSION_WINDOW,
        }
    }
}

/// An injected failure, answered instead of the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaFault {
    /// Code 80003, too many custom-audience calls on the ad account (HTTP 400),
    /// with access estimated back in 2 minutes.
    AudienceRateLimit,
    /// Code 80003 with this `estimated_time_to_regain_access` (minutes; 0:
    /// a brief throttle, try again soon).
    AudienceRateLimitFor { minutes: u64 },
    /// Code 17, user request limit reached (HTTP 400).
    UserRateLimit,
    /// Code 2, temporary service issue (HTTP 503).
    Transient,
    /// HTTP 500 with a body that is not Graph JSON (a proxy failing).
    ServerError,
}

/// Which edit a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditOp {
    /// `POST /{audience}/users`
    Add,
    /// `DELETE /{audience}/users`
    Remove,
    /// `POST /{audience}/usersreplace`
    Replace,
}

/// What the simulator saw of one request, in arrival order.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Graph error code of the answer, if it was an error.
    pub error_code: Option<i64>,
    /// Graph error subcode of the answer, if any.
    pub error_subcode: Option<i64>,
    pub rows: usize,
    pub session_id: Option<i64>,
    pub batch_seq: Option<u64>,
    pub last_batch_flag: Option<bool>,
    /// Set for `users` / `usersreplace` requests.
    pub op: Option<EditOp>,
    /// The audience an edit was addressed to.
    pub audience: Option<String>,
    /// The payload's schema and rows as sent (cells as text).
    pub schema: Vec<String>,
    pub data: Vec<Vec<String>>,
}

/// Progress of one upload session, as `GET /{audience}/sessions` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionProgress {
    pub session_id: i64,
    pub audience: String,
    /// `"processing"` until every batch is received and applied, then `"finished"`.
    pub stage: String,
    pub num_received: u64,
    /// Received rows that matched a Meta user, counted once applied.
    pub num_matched: u64,
    pub num_invalid_entries: u64,
    /// Unix seconds.
    pub start_time: u64,
    pub end_time: Option<u64>,
}

#[derive(Default)]
struct Audience {
    name: String,
    description: String,
    flagged: bool,
    members: Vec<Member>,
}

struct Session {
    audience: String,
    replace: bool,
    /// The last batch arrived, or the session's window closed.
    last_received: bool,
    /// The window closed before the last batch.
    timed_out: bool,
    /// When the first batch arrived (simulator clock).
    started: Instant,
    /// The schema of the first batch.
    schema: Vec<String>,
    staged: Vec<Member>,
    /// Batches received but not yet applied.
    pending: usize,
    num_received: u64,
    num_matched: u64,
    num_invalid: u64,
    start_time: u64,
    end_time: Option<u64>,
}

/// A change waiting to reach its audience.
struct Pending {
    due: Instant,
    audience: String,
    change: Change,
    session_id: i64,
    /// Rows of this change that match a Meta user.
    matched: u64,
}

enum Change {
    Add(Vec<Member>),
    Remove(Vec<Member>),
    /// Replace the audience with these rows (a replace session's last batch).
    Replace(Vec<Member>),
    /// Nothing to apply; completes a session batch (a replace batch before the last).
    Nothing,
}

struct Quota {
    window_start: Instant,
    calls: u64,
}

struct MetaState {
    config: MetaSimConfig,
    audiences: BTreeMap<String, Audience>,
    sessions: HashMap<i64, Session>,
    /// Session ids in creation order.
    session_order: Vec<i64>,
    pending: VecDeque<Pending>,
    /// Answers queued for the next requests: a fault, or `None` to serve.
    faults: VecDeque<Option<MetaFault>>,
    requests: Vec<MetaRequest>,
    next_id: u64,
    /// How far the simulator's clock is ahead of the real one.
    offset: Duration,
    token_expired: bool,
    quota: Option<Quota>,
    /// Conversions API pixels and the events they received.
    capi: capi::CapiState,
}

impl MetaState {
    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    fn unix_now(&self) -> u64 {
        (SystemTime::now() + self.offset)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Close sessions whose window has passed, then apply every pending
    /// change that is due, in arrival order.
    fn settle(&mut self) {
        let now = self.now();
        self.close_late_sessions(now);
        while self.pending.front().is_some_and(|p| p.due <= now) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let unmatched_share = self.config.unmatched_share;
            let entry = self.audiences.entry(p.audience.clone()).or_default();
            match p.change {
                Change::Add(rows) => {
                    for row in rows {
                        if matches_user(unmatched_share, &row) {
                            upsert(&mut entry.members, row);
                        }
                    }
                }
                Change::Remove(rows) => {
                    for row in &rows {
                        entry.members.retain(|m| !same_person(m, row));
                    }
                }
                Change::Replace(rows) => {
                    entry.members.clear();
                    for row in rows {
                        if matches_user(unmatched_share, &row) {
                            upsert(&mut entry.members, row);
                        }
                    }
                }
                Change::Nothing => {}
            }
            let unix = self.unix_now();
            if let Some(s) = self.sessions.get_mut(&p.session_id) {
                s.pending = s.pending.saturating_sub(1);
                s.num_matched += p.matched;
                if s.last_received && s.pending == 0 {
                    s.end_time = Some(unix);
                }
            }
        }
    }

    /// A session still open after its window closes: a replace is swapped in
    /// with what it received; a `users` session just ends.
    fn close_late_sessions(&mut self, now: Instant) {
        let window = self.config.session_window;
        let apply_delay = self.config.apply_delay;
        let mut swaps = Vec::new();
        for (id, s) in &mut self.sessions {
            if s.last_received || now.saturating_duration_since(s.started) < window {
                continue;
            }
            s.last_received = true;
            s.timed_out = true;
            if s.replace {
                s.pending += 1;
                swaps.push(Pending {
                    due: s.started + window + apply_delay,
                    audience: s.audience.clone(),
                    change: Change::Replace(std::mem::take(&mut s.staged)),
                    session_id: *id,
                    matched: 0,
                });
            }
        }
        self.pending.extend(swaps);
    }

    /// Whether a replace of `audience` is under way: its session still takes
    /// batches, or its swap is not applied yet.
    fn replace_in_progress(&self, audience: &str) -> bool {
        self.sessions
            .values()
            .any(|s| s.audience == audience && s.replace && (!s.last_received || s.pending > 0))
    }

    /// Whether `audience` is being updated: a session of it still takes
    /// batches, or a change to it is not applied yet.
    fn updating(&self, audience: &str) -> bool {
        self.sessions
            .values()
            .any(|s| s.audience == audience && (!s.last_received || s.pending > 0))
    }

    /// The hourly quota of the ad account, if on.
    fn quota_limit(&self) -> Option<u64> {
        let base = self.config.quota_base?;
        let audiences = self.audiences.len() as u64;
        Some(
            base.saturating_add(self.config.quota_per_audience.saturating_mul(audiences))
                .min(QUOTA_CAP),
        )
    }

    /// Restart the quota window when it has passed.
    fn quota_window(&mut self) -> &mut Quota {
        let now = self.now();
        let window = self.config.quota_window;
        let quota = self.quota.get_or_insert(Quota {
            window_start: now,
            calls: 0,
        });
        if now.duration_since(quota.window_start) >= window {
            quota.window_start = now;
            quota.calls = 0;
        }
        quota
    }

    /// Minutes until the quota window ends (at least 1).
    fn minutes_to_regain(&mut self) -> u64 {
        let now = self.now();
        let window = self.config.quota_window;
        let start = self.quota_window().window_start;
        let left = window.saturating_sub(now.duration_since(start));
        left.as_secs().div_ceil(60).max(1)
    }
}

/// Whether a row matches a Meta user under the population model.
fn matches_user(unmatched_share: f64, row: &Member) -> bool {
    if unmatched_share <= 0.0 {
        return true;
    }
    let key = POPULATION_KEYS
        .iter()
        .find_map(|k| row.iter().find(|(key, _)| key == k))
        .map(|(k, v)| format!("{k}={v}"))
        .unwrap_or_else(|| {
            row.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        });
    let digest = Sha256::digest(format!("meta-sim-population\0{key}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let share = u64::from_be_bytes(first) as f64 / u64::MAX as f64;
    share >= unmatched_share
}

fn same_person(a: &Member, b: &Member) -> bool {
    a == b
        || a.iter()
            .any(|pair| STRONG_KEYS.contains(&pair.0.as_str()) && b.contains(pair))
}

fn upsert(members: &mut Vec<Member>, row: Member) {
    let mut merged = row;
    members.retain(|m| {
        if same_person(m, &merged) {
            merged.extend(m.iter().cloned());
            false
        } else {
            true
        }
    });
    members.push(merged);
}

fn is_sensitive(text: &str) -> bool {
    let lower = text.to_lowercase();
    SENSITIVE_WORDS.iter().any(|w| lower.contains(w))
}

/// Handle on a Meta simulator's state; cheap to clone.
#[derive(Clone)]
pub struct MetaSim {
    state: Arc<Mutex<MetaState>>,
    /// Raw exchanges, when recording.
    wire: WireLog,
}

impl MetaSim {
    pub fn new(config: MetaSimConfig) -> Self {
        MetaSim {
            state: Arc::new(Mutex::new(MetaState {
                config,
                audiences: BTreeMap::new(),
                sessions: HashMap::new(),
                session_order: Vec::new(),
                pending: VecDeque::new(),
                faults: VecDeque::new(),
                requests: Vec::new(),
                next_id: 23_850_000_000_000,
                offset: Duration::ZERO,
                token_expired: false,
                quota: None,
                capi: capi::CapiState::default(),
            })),
            wire: WireLog::default(),
        }
    }

    /// Serve a new simulator on 127.0.0.1; the handle reads and steers it.
    pub async fn start(config: MetaSimConfig) -> anyhow::Result<(RunningSim, MetaSim)> {
        let sim = MetaSim::new(config);
        let running = crate::serve(sim.router()).await?;
        Ok((running, sim))
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/{version}/{node}/users",
                post(edit::users).delete(edit::users),
            )
            .route("/{version}/{node}/usersreplace", post(edit::users_replace))
            .route(
                "/{version}/{node}/customaudiences",
                post(edit::create_audience),
            )
            .route("/{version}/{node}/sessions", get(edit::read_sessions))
            .route("/{version}/{node}/events", post(capi::events))
            .route("/{version}/{node}", get(edit::read_audience))
            .with_state(self.clone())
            // Graph answers a path or verb it does not serve as an object
            // that does not support the operation.
            .fallback(graph::unsupported)
            .method_not_allowed_fallback(graph::unsupported)
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

    fn lock(&self) -> MutexGuard<'_, MetaState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state with every due change applied.
    fn settled(&self) -> MutexGuard<'_, MetaState> {
        let mut state = self.lock();
        state.settle();
        state
    }

    /// The configuration the simulator runs with.
    pub fn config(&self) -> MetaSimConfig {
        self.lock().config.clone()
    }

    /// Create an (empty) audience with a chosen id.
    pub fn create_audience(&self, id: &str) {
        self.lock().audiences.entry(id.to_string()).or_default();
    }

    /// Flag an audience (`operation_status` 471): every upload to it is
    /// refused with code 100 subcode 1713230 until [`MetaSim::unflag_audience`].
    pub fn flag_audience(&self, id: &str) {
        self.lock()
            .audiences
            .entry(id.to_string())
            .or_default()
            .flagged = true;
    }

    /// A person resolved the flag in Ads Manager.
    pub fn unflag_audience(&self, id: &str) {
        if let Some(a) = self.lock().audiences.get_mut(id) {
            a.flagged = false;
        }
    }

    pub fn is_flagged(&self, id: &str) -> bool {
        self.lock().audiences.get(id).is_some_and(|a| a.flagged)
    }

    /// Members applied so far (pending changes that are due are applied first).
    pub fn members(&self, audience: &str) -> Vec<Member> {
        self.settled()
            .audiences
            .get(audience)
            .map(|a| a.members.clone())
            .unwrap_or_default()
    }

    /// Matched members applied so far: what the count fields report.
    pub fn member_count(&self, audience: &str) -> usize {
        self.settled()
            .audiences
            .get(audience)
            .map_or(0, |a| a.members.len())
    }

    /// Whether a member of `audience` carries `key` = `value` (e.g. `EMAIL`, a hash).
    pub fn has_member_with(&self, audience: &str, key: &str, value: &str) -> bool {
        let pair = (key.to_string(), value.to_string());
        self.settled()
            .audiences
            .get(audience)
            .is_some_and(|a| a.members.iter().any(|m| m.contains(&pair)))
    }

    /// Changes received but not yet applied.
    pub fn pending_changes(&self) -> usize {
        self.settled().pending.len()
    }

    /// Move the simulator's clock forward: pending changes and the quota
    /// window see the time pass.
    pub fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.offset += by;
        state.settle();
    }

    /// Whether the population model counts this row as a Meta user.
    pub fn would_match(&self, row: &Member) -> bool {
        matches_user(self.lock().config.unmatched_share, row)
    }

    /// The current token now answers 190 (expired session).
    pub fn expire_token(&self) {
        self.lock().token_expired = true;
    }

    /// Accept `token` from now on (and only it).
    pub fn set_access_token(&self, token: &str) {
        let mut state = self.lock();
        state.config.access_token = token.to_string();
        state.token_expired = false;
    }

    /// Answer the next `n` requests with `fault` instead of serving them.
    pub fn fail_next(&self, n: usize, fault: MetaFault) {
        let mut state = self.lock();
        state.faults.extend(std::iter::repeat_n(Some(fault), n));
    }

    /// Serve the next `n - 1` requests, then answer the `n`-th with `fault`
    /// (after any faults already queued).
    pub fn fail_nth(&self, n: usize, fault: MetaFault) {
        let mut state = self.lock();
        state
            .faults
            .extend(std::iter::repeat_n(None, n.saturating_sub(1)));
        state.faults.push_back(Some(fault));
    }

    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// Every request in arrival order.
    pub fn requests(&self) -> Vec<MetaRequest> {
        self.lock().requests.clone()
    }

    /// Calls counted against the ad account's quota in the current window.
    pub fn quota_calls(&self) -> u64 {
        self.lock().quota.as_ref().map_or(0, |q| q.calls)
    }

    /// Sessions of one audience, newest first.
    pub fn sessions(&self, audience: &str) -> Vec<SessionProgress> {
        let state = self.settled();
        edit::session_list(&state, audience)
    }
}
