//! Google Ads Customer Match simulator (REST, `API-CONTRACTS.md` §4), the
//! offline user data job calls as googleapis defines them
//! (`google/ads/googleads/v25/`, see `tests/contracts/google-ads-api.json`).
//!
//! Routes, under `/{version}` (e.g. `/v26`), all for a customer `cid`, and
//! nothing else (any other path or verb is 404 NOT_FOUND):
//! * `POST customers/{cid}/offlineUserDataJobs:create` → `{resourceName}`.
//! * `POST customers/{cid}/offlineUserDataJobs/{n}:addOperations` → `{}` or
//!   `{partialFailureError}`.
//! * `POST customers/{cid}/offlineUserDataJobs/{n}:run` → `{name}` (a
//!   long-running operation name).
//! * `POST customers/{cid}/googleAds:search` `{query}` with a minimal GAQL:
//!   `FROM offline_user_data_job` or `FROM user_list`, optionally
//!   `WHERE <resource>.resource_name = '…'` or `WHERE <resource>.id = N`. Every
//!   known field of the resource comes back whatever the SELECT lists.
//!
//! Bodies are read as proto3 JSON of the request message
//! (`google_ads_schema.rs`): lowerCamelCase or snake_case names; an unknown
//! name, an enum name outside its enum, a value of the wrong JSON type or two
//! members of one oneof refuse the whole request with 400 INVALID_ARGUMENT
//! and a `google.rpc.BadRequest` naming the field.
//!
//! Contract enforced: `Authorization: Bearer` and `developer-token` must match
//! (401 UNAUTHENTICATED); `login-customer-id`, when sent, must be 10 digits
//! (401) and equal the configured manager (403 PERMISSION_DENIED), and is
//! required when one is configured; the customer must be accessible (403).
//! Job type CUSTOMER_MATCH_USER_LIST with a user list
//! `customers/{cid}/userLists/{id}` that exists (INVALID_USER_LIST_ID).
//! The job's `customerMatchUserListMetadata.consent` is recorded
//! ([`GoogleSim::job_details`]); a consent that denies either field is
//! refused at create with CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS (Google's
//! Customer Match guide), and the output-only UNKNOWN with INVALID_ENUM_VALUE.
//! Each operation is exactly one of `create` / `remove` / `removeAll`; one job
//! takes creates or removes, not both (CONFLICTING_OPERATION), and
//! `removeAll` only as its first operation (INVALID_OPERATION_ORDER); a
//! UserData holds 1–20 identifiers (MISSING_USER_IDENTIFIER /
//! TOO_MANY_USER_IDENTIFIERS), hashed fields are 64 lowercase hex
//! (INVALID_SHA256_FORMAT), `userAttribute` does not go in a user list job
//! (ATTRIBUTES_NOT_APPLICABLE_FOR_CUSTOMER_MATCH_USER_LIST); a UserData's own
//! `consent` is accepted and recorded. At most `max_identifiers_per_request`
//! (100,000) identifiers per addOperations, else the whole request fails with
//! 400 TOO_MANY_USER_IDENTIFIERS. Bad operations fail the whole request unless
//! `enablePartialFailure`, in which case they come back in
//! `partialFailureError.details[0].errors[].location.fieldPathElements[0].index`
//! and the good ones are kept. Operations go only into a PENDING job, and
//! only a PENDING job runs (JOB_ALREADY_STARTED). Answers use lowerCamelCase.
//!
//! `run` marks the job RUNNING; it applies its operations in order to the
//! user list and turns SUCCESS `job_duration` later (real jobs take 6+ hours;
//! the default here is instant so tests that do not care stay fast), on the
//! simulator's clock, which tests move with `advance`. With `run_completes`
//! false a job stays RUNNING until `complete_jobs()`. While a job of a list
//! runs, creating or running another job on that list answers 409 ABORTED
//! CONCURRENT_MODIFICATION (one job per list at a time); `max_running_per_list`
//! reports the most jobs ever seen running at once on one list.
//! With a `token_authority`, bearer tokens must be issued by the simulated
//! OAuth endpoint (served at `/token`) and unexpired; otherwise the fixed
//! `access_token` is expected.
//! A list takes only the identifiers of its upload key type (CONTACT_INFO by
//! default: hashedEmail, hashedPhoneNumber, addressInfo); others fail the
//! operation with INCOMPATIBLE_UPLOAD_KEY_TYPE.
//! Members are sets of `(field, value)` pairs (`hashedEmail`, `hashedPhoneNumber`,
//! `mobileId`, `thirdPartyUserId`, `addressInfo` as `fn|ln|cc|zip`); a create
//! merges into a member sharing any pair, a remove drops every member sharing one.
//!
//! Not modelled: what Google does with an EEA person's data under a consent
//! that is not GRANTED (it is "not processed"; the simulator cannot know a
//! person's country), match rates, and list size rounding.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use std::time::Duration;

use crate::google_ads_schema::{self as schema, SchemaError, CONSENT_STATUS};
use crate::google_oauth::{TokenAuthority, TokenCheck};
use crate::RunningSim;

pub const DEFAULT_ACCESS_TOKEN: &str = "google-sim-access-token";
pub const DEFAULT_DEVELOPER_TOKEN: &str = "google-sim-developer-token";

/// One list member: `(identifier field, value)` pairs.
pub type Member = BTreeSet<(String, String)>;

#[derive(Clone, Debug)]
pub struct GoogleSimConfig {
    pub access_token: String,
    pub developer_token: String,
    /// The manager account requests must name in `login-customer-id`, if any.
    pub login_customer_id: Option<String>,
    /// Customers the credentials may act for.
    pub customer_ids: Vec<String>,
    pub max_identifiers_per_request: usize,
    /// Oldest API major version served; older ones answer 404.
    pub min_version: u32,
    /// `run` finishes the job (after `job_duration`); false leaves it
    /// RUNNING until `complete_jobs`.
    pub run_completes: bool,
    /// How long a job runs (on the simulator's clock, see `advance`).
    pub job_duration: Duration,
    /// Check bearer tokens against this OAuth authority instead of `access_token`.
    pub token_authority: Option<TokenAuthority>,
}

impl Default for GoogleSimConfig {
    fn default() -> Self {
        GoogleSimConfig {
            access_token: DEFAULT_ACCESS_TOKEN.to_string(),
            developer_token: DEFAULT_DEVELOPER_TOKEN.to_string(),
            login_customer_id: None,
            customer_ids: vec!["1234567890".to_string()],
            max_identifiers_per_request: 100_000,
            min_version: 19,
            run_completes: true,
            job_duration: Duration::ZERO,
            token_authority: None,
        }
    }
}

/// An injected failure, answered instead of the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoogleFault {
    /// HTTP 429 RESOURCE_EXHAUSTED (quota).
    ResourceExhausted,
    /// HTTP 500 INTERNAL.
    Internal,
    /// HTTP 503 UNAVAILABLE.
    Unavailable,
}

/// What the simulator saw of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct GoogleRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Operations in an addOperations request.
    pub operations: usize,
    /// Identifiers in an addOperations request.
    pub identifiers: usize,
}

/// `crm_based_user_list.upload_key_type`: which identifiers a list takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadKeyType {
    /// hashedEmail, hashedPhoneNumber, addressInfo.
    ContactInfo,
    /// thirdPartyUserId.
    CrmId,
    /// mobileId.
    MobileAdvertisingId,
}

impl UploadKeyType {
    fn accepts(self, field: &str) -> bool {
        match self {
            UploadKeyType::ContactInfo => {
                matches!(field, "hashedEmail" | "hashedPhoneNumber" | "addressInfo")
            }
            UploadKeyType::CrmId => field == "thirdPartyUserId",
            UploadKeyType::MobileAdvertisingId => field == "mobileId",
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            UploadKeyType::ContactInfo => "CONTACT_INFO",
            UploadKeyType::CrmId => "CRM_ID",
            UploadKeyType::MobileAdvertisingId => "MOBILE_ADVERTISING_ID",
        }
    }
}

#[derive(Default)]
struct UserList {
    key_type: Option<UploadKeyType>,
    members: Vec<Member>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Running,
    Success,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Running => "RUNNING",
            JobStatus::Success => "SUCCESS",
            JobStatus::Failed => "FAILED",
        }
    }
}

#[derive(Clone, Debug)]
enum JobOp {
    Create(Member),
    Remove(Member),
    RemoveAll,
}

/// A `Consent` as sent (enum names; an absent field is UNSPECIFIED).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConsent {
    pub ad_user_data: String,
    pub ad_personalization: String,
}

impl SimConsent {
    fn read(v: &Value) -> SimConsent {
        let field = |name: &str| {
            v.get(name)
                .and_then(|x| schema::enum_name(&CONSENT_STATUS, x))
                .unwrap_or("UNSPECIFIED")
                .to_string()
        };
        SimConsent {
            ad_user_data: field("adUserData"),
            ad_personalization: field("adPersonalization"),
        }
    }
    fn to_json(&self) -> Value {
        json!({ "adUserData": self.ad_user_data, "adPersonalization": self.ad_personalization })
    }
    fn has(&self, value: &str) -> bool {
        self.ad_user_data == value || self.ad_personalization == value
    }
}

/// What a test can read of one job.
#[derive(Clone, Debug, PartialEq)]
pub struct SimJob {
    pub resource_name: String,
    /// `customers/{cid}/userLists/{id}`.
    pub user_list: String,
    pub status: JobStatus,
    /// `customerMatchUserListMetadata.consent`, if the create sent one.
    pub consent: Option<SimConsent>,
    /// Operations kept, by kind.
    pub creates: usize,
    pub removes: usize,
    /// Consents carried by the job's UserData (`UserData.consent`).
    pub operation_consents: Vec<SimConsent>,
}

struct Job {
    customer: String,
    id: u64,
    /// `customers/{cid}/userLists/{id}`.
    user_list: String,
    status: JobStatus,
    consent: Option<SimConsent>,
    ops: Vec<JobOp>,
    operation_consents: Vec<SimConsent>,
    /// Simulator-clock time at which a RUNNING job finishes.
    done_at: Option<Duration>,
}

impl Job {
    fn resource_name(&self) -> String {
        format!(
            "customers/{}/offlineUserDataJobs/{}",
            self.customer, self.id
        )
    }
    fn to_json(&self) -> Value {
        let mut metadata = json!({ "userList": self.user_list });
        if let Some(consent) = &self.consent {
            metadata["consent"] = consent.to_json();
        }
        json!({
            "resourceName": self.resource_name(),
            "id": self.id.to_string(),
            "type": "CUSTOMER_MATCH_USER_LIST",
            "status": self.status.as_str(),
            "customerMatchUserListMetadata": metadata,
        })
    }
    /// Whether the job holds creates (`Some(true)`) or removes (`Some(false)`).
    fn holds_creates(&self) -> Option<bool> {
        self.ops.iter().find_map(|op| match op {
            JobOp::Create(_) => Some(true),
            JobOp::Remove(_) => Some(false),
            JobOp::RemoveAll => None,
        })
    }
    fn details(&self) -> SimJob {
        let count = |create: bool| {
            self.ops
                .iter()
                .filter(|op| match op {
                    JobOp::Create(_) => create,
                    JobOp::Remove(_) => !create,
                    JobOp::RemoveAll => false,
                })
                .count()
        };
        SimJob {
            resource_name: self.resource_name(),
            user_list: self.user_list.clone(),
            status: self.status,
            consent: self.consent.clone(),
            creates: count(true),
            removes: count(false),
            operation_consents: self.operation_consents.clone(),
        }
    }
}

struct GoogleState {
    config: GoogleSimConfig,
    /// User list resource name → list.
    lists: BTreeMap<String, UserList>,
    jobs: BTreeMap<u64, Job>,
    faults: VecDeque<GoogleFault>,
    requests: Vec<GoogleRequest>,
    next_id: u64,
    /// The simulator's clock: time since start plus what `advance` added.
    started: std::time::Instant,
    skew: Duration,
    max_running_per_list: usize,
    concurrent_refusals: usize,
}

impl GoogleState {
    fn now(&self) -> Duration {
        self.started.elapsed() + self.skew
    }

    /// Finish RUNNING jobs whose time has come.
    fn finish_due(&mut self) {
        let now = self.now();
        let due: Vec<u64> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running && j.done_at.is_some_and(|d| d <= now))
            .map(|j| j.id)
            .collect();
        for id in due {
            finish_job(self, id);
        }
    }

    fn list_busy(&self, list: &str, except: u64) -> bool {
        self.jobs
            .values()
            .any(|j| j.id != except && j.user_list == list && j.status == JobStatus::Running)
    }
}

/// Handle on a Google Ads simulator's state; cheap to clone.
#[derive(Clone)]
pub struct GoogleSim {
    state: Arc<Mutex<GoogleState>>,
}

fn user_list_name(customer: &str, list_id: &str) -> String {
    format!("customers/{customer}/userLists/{list_id}")
}

impl GoogleSim {
    pub fn new(config: GoogleSimConfig) -> Self {
        GoogleSim {
            state: Arc::new(Mutex::new(GoogleState {
                config,
                lists: BTreeMap::new(),
                jobs: BTreeMap::new(),
                faults: VecDeque::new(),
                requests: Vec::new(),
                next_id: 1000,
                started: std::time::Instant::now(),
                skew: Duration::ZERO,
                max_running_per_list: 0,
                concurrent_refusals: 0,
            })),
        }
    }

    /// Move the simulator's clock forward (jobs finish on it).
    pub fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.skew += by;
        state.finish_due();
    }

    /// The most jobs seen RUNNING at once on one list.
    pub fn max_running_per_list(&self) -> usize {
        self.lock().max_running_per_list
    }

    /// Requests refused with CONCURRENT_MODIFICATION.
    pub fn concurrent_refusals(&self) -> usize {
        self.lock().concurrent_refusals
    }

    /// Serve a new simulator on 127.0.0.1; the handle reads and steers it.
    pub async fn start(config: GoogleSimConfig) -> anyhow::Result<(RunningSim, GoogleSim)> {
        let sim = GoogleSim::new(config);
        let running = crate::serve(sim.router()).await?;
        Ok((running, sim))
    }

    pub fn router(&self) -> Router {
        let router = Router::new()
            .route("/{version}/{*rest}", any(dispatch))
            .with_state(self.clone());
        match self.lock().config.token_authority.clone() {
            Some(authority) => router.merge(authority.router()),
            None => router,
        }
    }

    fn lock(&self) -> MutexGuard<'_, GoogleState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Create an (empty) CRM-based user list of upload key type CONTACT_INFO.
    pub fn create_user_list(&self, customer_id: &str, list_id: &str) {
        self.create_user_list_of(customer_id, list_id, UploadKeyType::ContactInfo);
    }

    /// Create an (empty) CRM-based user list taking one kind of identifier.
    pub fn create_user_list_of(&self, customer_id: &str, list_id: &str, key_type: UploadKeyType) {
        self.lock()
            .lists
            .entry(user_list_name(customer_id, list_id))
            .or_default()
            .key_type = Some(key_type);
    }

    pub fn members(&self, customer_id: &str, list_id: &str) -> Vec<Member> {
        let mut state = self.lock();
        state.finish_due();
        state
            .lists
            .get(&user_list_name(customer_id, list_id))
            .map(|l| l.members.clone())
            .unwrap_or_default()
    }

    pub fn member_count(&self, customer_id: &str, list_id: &str) -> usize {
        self.members(customer_id, list_id).len()
    }

    /// Whether a member of the list carries `field` = `value` (e.g. `hashedEmail`, a hash).
    pub fn has_member_with(
        &self,
        customer_id: &str,
        list_id: &str,
        field: &str,
        value: &str,
    ) -> bool {
        let pair = (field.to_string(), value.to_string());
        self.members(customer_id, list_id)
            .iter()
            .any(|m| m.contains(&pair))
    }

    /// Status of every job, by resource name.
    pub fn jobs(&self) -> Vec<(String, JobStatus)> {
        let mut state = self.lock();
        state.finish_due();
        state
            .jobs
            .values()
            .map(|j| (j.resource_name(), j.status))
            .collect()
    }

    /// Every job as a test reads it (consent, operations kept), in creation order.
    pub fn job_details(&self) -> Vec<SimJob> {
        let mut state = self.lock();
        state.finish_due();
        state.jobs.values().map(Job::details).collect()
    }

    /// Finish every RUNNING job (when `run_completes` is false).
    pub fn complete_jobs(&self) {
        let mut state = self.lock();
        let running: Vec<u64> = state
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running)
            .map(|j| j.id)
            .collect();
        for id in running {
            finish_job(&mut state, id);
        }
    }

    /// Answer the next `n` requests with `fault` instead of serving them.
    pub fn fail_next(&self, n: usize, fault: GoogleFault) {
        self.lock().faults.extend(std::iter::repeat_n(fault, n));
    }

    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    pub fn requests(&self) -> Vec<GoogleRequest> {
        self.lock().requests.clone()
    }
}

/// One GoogleAdsError: `(error code kind, code, message, failing operation index)`.
struct AdsError {
    kind: &'static str,
    code: &'static str,
    message: String,
    index: Option<usize>,
    details: Option<Value>,
}

impl AdsError {
    fn new(kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        AdsError {
            kind,
            code,
            message: message.into(),
            index: None,
            details: None,
        }
    }
    fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
    fn to_json(&self) -> Value {
        let mut error = json!({
            "errorCode": { self.kind: self.code },
            "message": self.message,
        });
        if let (Some(details), Some(obj)) = (&self.details, error.as_object_mut()) {
            obj.insert("details".into(), details.clone());
        }
        if let (Some(index), Some(obj)) = (self.index, error.as_object_mut()) {
            obj.insert(
                "location".into(),
                json!({ "fieldPathElements": [{ "fieldName": "operations", "index": index }] }),
            );
        }
        error
    }
}

/// A request-level failure (google.rpc.Status as REST returns it).
struct RpcError {
    status: StatusCode,
    rpc_status: &'static str,
    message: String,
    errors: Vec<AdsError>,
    /// Details other than a GoogleAdsFailure (a body that is not the
    /// request message: `google.rpc.BadRequest`; an unknown route: none).
    other_details: Option<Vec<Value>>,
}

impl RpcError {
    fn new(status: StatusCode, rpc_status: &'static str, error: AdsError) -> Self {
        RpcError {
            status,
            rpc_status,
            message: error.message.clone(),
            errors: vec![error],
            other_details: None,
        }
    }
    fn invalid(error: AdsError) -> Self {
        RpcError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", error)
    }
    /// A body the REST front end could not read as the request message.
    fn bad_request(e: SchemaError) -> Self {
        RpcError {
            status: StatusCode::BAD_REQUEST,
            rpc_status: "INVALID_ARGUMENT",
            message: e.description.clone(),
            errors: Vec::new(),
            other_details: Some(vec![json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{ "field": e.field, "description": e.description }],
            })]),
        }
    }
    /// No such method: a path or verb the API does not serve.
    fn not_found(method: &Method, path: &str) -> Self {
        RpcError {
            status: StatusCode::NOT_FOUND,
            rpc_status: "NOT_FOUND",
            message: format!("The requested URL {path} was not found for {method}."),
            errors: Vec::new(),
            other_details: Some(Vec::new()),
        }
    }
    fn into_response(self, version: &str, request_id: u64) -> Response {
        let details = match self.other_details {
            Some(details) => details,
            None => vec![google_ads_failure(version, &self.errors, request_id)],
        };
        let body = json!({
            "error": {
                "code": self.status.as_u16(),
                "message": self.message,
                "status": self.rpc_status,
                "details": details,
            }
        });
        (self.status, Json(body)).into_response()
    }
}

fn google_ads_failure(version: &str, errors: &[AdsError], request_id: u64) -> Value {
    json!({
        "@type": format!("type.googleapis.com/google.ads.googleads.{version}.errors.GoogleAdsFailure"),
        "errors": errors.iter().map(AdsError::to_json).collect::<Vec<_>>(),
        "requestId": format!("simreq{request_id:06}"),
    })
}

fn fault_error(fault: GoogleFault) -> RpcError {
    match fault {
        GoogleFault::ResourceExhausted => RpcError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            AdsError {
                details: Some(json!({ "quotaErrorDetails": {
                    "rateScope": "DEVELOPER",
                    "rateName": "Number of operations for basic access",
                    "retryDelay": "30s",
                }})),
                ..AdsError::new(
                    "quotaError",
                    "RESOURCE_EXHAUSTED",
                    "Too many requests. Retry in 30 seconds.",
                )
            },
        ),
        GoogleFault::Internal => RpcError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            AdsError::new(
                "internalError",
                "INTERNAL_ERROR",
                "An internal error has occurred.",
            ),
        ),
        GoogleFault::Unavailable => RpcError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            AdsError::new(
                "internalError",
                "TRANSIENT_ERROR",
                "The service is currently unavailable.",
            ),
        ),
    }
}

/// snake_case keys → lowerCamelCase, recursively (proto JSON accepts both).
fn camelize(value: Value) -> Value {
    match value {
        Value::Object(obj) => Value::Object(
            obj.into_iter()
                .map(|(k, v)| (camel_key(&k), camelize(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camelize).collect()),
        other => other,
    }
}

fn camel_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_auth(
    config: &GoogleSimConfig,
    headers: &HeaderMap,
    customer: &str,
) -> Result<(), RpcError> {
    let unauthenticated = |code: &'static str, message: &str| {
        RpcError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            AdsError::new("authenticationError", code, message),
        )
    };
    let denied = |message: String| {
        RpcError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            AdsError::new("authorizationError", "USER_PERMISSION_DENIED", message),
        )
    };
    let bearer = header(headers, "authorization").and_then(|v| v.strip_prefix("Bearer "));
    let valid = match (&config.token_authority, bearer) {
        (Some(authority), Some(token)) => authority.check(token) == TokenCheck::Valid,
        (Some(_), None) => false,
        (None, bearer) => bearer == Some(config.access_token.as_str()),
    };
    if !valid {
        return Err(unauthenticated(
            "OAUTH_TOKEN_INVALID",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        ));
    }
    if header(headers, "developer-token") != Some(config.developer_token.as_str()) {
        return Err(unauthenticated(
            "DEVELOPER_TOKEN_INVALID",
            "The developer token is not valid.",
        ));
    }
    let login = header(headers, "login-customer-id");
    if let Some(login) = login {
        if login.len() != 10 || !login.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RpcError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                AdsError::new(
                    "headerError",
                    "INVALID_LOGIN_CUSTOMER_ID",
                    "The login customer ID could not be validated: 10 digits without dashes.",
                ),
            ));
        }
    }
    if let Some(manager) = &config.login_customer_id {
        if login != Some(manager.as_str()) {
            return Err(denied(format!(
                "User doesn't have permission to access customer {customer}. Note: If you're accessing a client customer, the manager's customer id must be set in the 'login-customer-id' header."
            )));
        }
    }
    if !config.customer_ids.iter().any(|c| c == customer) {
        return Err(denied(format!(
            "User doesn't have permission to access customer {customer}."
        )));
    }
    Ok(())
}

fn check_version(config: &GoogleSimConfig, version: &str) -> Result<(), RpcError> {
    let major = version
        .strip_prefix('v')
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= config.min_version => Ok(()),
        _ => Err(RpcError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            AdsError::new(
                "requestError",
                "UNSUPPORTED_VERSION",
                format!("Version {version} is not served."),
            ),
        )),
    }
}

/// The route a path names: the four methods of the contract, POST only.
enum Call {
    CreateJob,
    AddOperations(u64),
    Run(u64),
    Search,
}

impl Call {
    fn request_message(&self) -> &'static schema::Message {
        match self {
            Call::CreateJob => &schema::CREATE_JOB_REQUEST,
            Call::AddOperations(_) => &schema::ADD_OPERATIONS_REQUEST,
            Call::Run(_) => &schema::RUN_JOB_REQUEST,
            Call::Search => &schema::SEARCH_REQUEST,
        }
    }
}

fn parse_call(method: &Method, rest: &str) -> Option<(String, Call)> {
    if method != Method::POST {
        return None;
    }
    let tail = rest.strip_prefix("customers/")?;
    let (customer, tail) = tail.split_once('/')?;
    if customer.is_empty() || customer.contains(':') {
        return None;
    }
    let call = match tail {
        "offlineUserDataJobs:create" => Call::CreateJob,
        "googleAds:search" => Call::Search,
        _ => {
            let job = tail.strip_prefix("offlineUserDataJobs/")?;
            let (id, verb) = job.split_once(':')?;
            let id = id.parse().ok()?;
            match verb {
                "addOperations" => Call::AddOperations(id),
                "run" => Call::Run(id),
                _ => return None,
            }
        }
    };
    Some((customer.to_string(), call))
}

async fn dispatch(
    State(sim): State<GoogleSim>,
    Path((version, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = sim.lock();
    state.finish_due();
    let request_id = state.requests.len() as u64 + 1;
    let mut record = GoogleRequest {
        method: method.to_string(),
        path: format!("/{version}/{rest}"),
        status: 200,
        operations: 0,
        identifiers: 0,
    };
    let result = match state.faults.pop_front() {
        Some(fault) => Err(fault_error(fault)),
        None => serve(
            &mut state,
            &version,
            &rest,
            &method,
            &headers,
            &body,
            &mut record,
        ),
    };
    let response = match result {
        Ok(value) => (StatusCode::OK, Json(value)).into_response(),
        Err(err) => {
            record.status = err.status.as_u16();
            err.into_response(&version, request_id)
        }
    };
    state.requests.push(record);
    response
}

fn serve(
    state: &mut GoogleState,
    version: &str,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    record: &mut GoogleRequest,
) -> Result<Value, RpcError> {
    let (customer, call) = parse_call(method, rest)
        .ok_or_else(|| RpcError::not_found(method, &format!("/{version}/{rest}")))?;
    check_version(&state.config, version)?;
    check_auth(&state.config, headers, &customer)?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| {
            RpcError::bad_request(SchemaError {
                field: String::new(),
                description: format!("Invalid JSON payload received. {e}"),
            })
        })?
    };
    schema::validate(call.request_message(), &body).map_err(RpcError::bad_request)?;
    let body = camelize(body);
    match call {
        Call::CreateJob => create_job(state, &customer, &body),
        Call::AddOperations(id) => add_operations(state, version, &customer, id, &body, record),
        Call::Run(id) => run_job(state, version, &customer, id),
        Call::Search => search(state, &customer, &body),
    }
}

fn job_of<'a>(state: &'a GoogleState, customer: &str, id: u64) -> Result<&'a Job, RpcError> {
    state
        .jobs
        .get(&id)
        .filter(|j| j.customer == customer)
        .ok_or_else(|| {
            RpcError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                AdsError::new(
                    "requestError",
                    "RESOURCE_NOT_FOUND",
                    format!("Offline user data job {id} not found."),
                ),
            )
        })
}

fn create_job(state: &mut GoogleState, customer: &str, body: &Value) -> Result<Value, RpcError> {
    let job_error = |code: &'static str, message: &str| {
        RpcError::invalid(AdsError::new("offlineUserDataJobError", code, message))
    };
    let field_error = |code: &'static str, message: &str| {
        RpcError::invalid(AdsError::new("fieldError", code, message))
    };
    let job = body
        .get("job")
        .ok_or_else(|| field_error("REQUIRED", "job is required."))?;
    match job.get("type").and_then(Value::as_str) {
        Some("CUSTOMER_MATCH_USER_LIST") => {}
        None | Some("UNSPECIFIED") => return Err(field_error("REQUIRED", "job.type is required.")),
        Some(_) => {
            return Err(field_error(
                "INVALID_VALUE",
                "The simulator serves CUSTOMER_MATCH_USER_LIST jobs only.",
            ))
        }
    }
    let metadata = job.get("customerMatchUserListMetadata").ok_or_else(|| {
        job_error(
            "INVALID_USER_LIST_ID",
            "customerMatchUserListMetadata is required.",
        )
    })?;
    let list = metadata
        .get("userList")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            job_error(
                "INVALID_USER_LIST_ID",
                "customerMatchUserListMetadata.userList is required.",
            )
        })?;
    let id_ok = list
        .strip_prefix(&format!("customers/{customer}/userLists/"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    if !id_ok || !state.lists.contains_key(list) {
        return Err(job_error(
            "INVALID_USER_LIST_ID",
            "The user list must be customers/{cid}/userLists/{id}, an existing CRM-based list of this customer.",
        ));
    }
    let consent = metadata.get("consent").map(SimConsent::read);
    if let Some(consent) = &consent {
        if consent.has("UNKNOWN") {
            return Err(RpcError::invalid(AdsError::new(
                "requestError",
                "INVALID_ENUM_VALUE",
                "UNKNOWN is an output-only consent status.",
            )));
        }
        if consent.has("DENIED") {
            return Err(job_error(
                "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
                "The job's consent denies ad_user_data or ad_personalization.",
            ));
        }
    }
    if state.list_busy(list, 0) {
        state.concurrent_refusals += 1;
        return Err(concurrent_modification());
    }
    if body.get("validateOnly") == Some(&Value::Bool(true)) {
        return Ok(json!({}));
    }
    state.next_id += 1;
    let job = Job {
        customer: customer.to_string(),
        id: state.next_id,
        user_list: list.to_string(),
        status: JobStatus::Pending,
        consent,
        ops: Vec::new(),
        operation_consents: Vec::new(),
        done_at: None,
    };
    let name = job.resource_name();
    state.jobs.insert(job.id, job);
    Ok(json!({ "resourceName": name }))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One operation refused: its OfflineUserDataJobError (or other) code.
struct OpError {
    kind: &'static str,
    code: &'static str,
    message: String,
}

impl OpError {
    fn job(code: &'static str, message: impl Into<String>) -> Self {
        OpError {
            kind: "offlineUserDataJobError",
            code,
            message: message.into(),
        }
    }
}

/// One UserIdentifier as a member pair (the schema already holds it to one
/// field of the oneof, of the right JSON type).
fn parse_identifier(v: &Value) -> Result<(String, String), OpError> {
    let obj = v
        .as_object()
        .ok_or_else(|| OpError::job("MISSING_USER_IDENTIFIER", "not an object"))?;
    let (field, value) = obj
        .iter()
        .find(|(k, _)| k.as_str() != "userIdentifierSource")
        .ok_or_else(|| {
            OpError::job(
                "MISSING_USER_IDENTIFIER",
                "a user identifier sets none of hashedEmail, hashedPhoneNumber, mobileId, thirdPartyUserId, addressInfo",
            )
        })?;
    let text = value.as_str().unwrap_or_default();
    match field.as_str() {
        "hashedEmail" | "hashedPhoneNumber" => {
            if !is_sha256_hex(text) {
                return Err(OpError::job(
                    "INVALID_SHA256_FORMAT",
                    format!("{field} is not a SHA-256 lowercase hex digest"),
                ));
            }
            Ok((field.clone(), text.to_string()))
        }
        "mobileId" | "thirdPartyUserId" => {
            if text.trim().is_empty() {
                return Err(OpError::job(
                    "MISSING_USER_IDENTIFIER",
                    format!("{field} is empty"),
                ));
            }
            Ok((field.clone(), text.to_string()))
        }
        _ => {
            let get = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("");
            let (first, last) = (get("hashedFirstName"), get("hashedLastName"));
            let (country, postal) = (get("countryCode"), get("postalCode"));
            if !is_sha256_hex(first) || !is_sha256_hex(last) {
                return Err(OpError::job(
                    "INVALID_SHA256_FORMAT",
                    "addressInfo hashed names must be SHA-256 lowercase hex digests",
                ));
            }
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(OpError::job(
                    "INVALID_COUNTRY_CODE",
                    "addressInfo needs a 2-letter countryCode",
                ));
            }
            if postal.trim().is_empty() {
                return Err(OpError::job(
                    "MISSING_USER_IDENTIFIER",
                    "addressInfo needs a postalCode (not hashed)",
                ));
            }
            Ok((field.clone(), format!("{first}|{last}|{country}|{postal}")))
        }
    }
}

/// A UserData's member and its own consent, if any.
fn parse_user_data(v: &Value) -> Result<(Member, Option<SimConsent>), OpError> {
    let ids = v
        .get("userIdentifiers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(OpError::job(
            "MISSING_USER_IDENTIFIER",
            "userIdentifiers is required",
        ));
    }
    if ids.len() > 20 {
        return Err(OpError::job(
            "TOO_MANY_USER_IDENTIFIERS",
            format!("a UserData holds at most 20 identifiers, not {}", ids.len()),
        ));
    }
    if v.get("userAttribute").is_some() {
        return Err(OpError::job(
            "ATTRIBUTES_NOT_APPLICABLE_FOR_CUSTOMER_MATCH_USER_LIST",
            "User attributes cannot be uploaded into a user list.",
        ));
    }
    if v.get("transactionAttribute").is_some() {
        return Err(OpError {
            kind: "fieldError",
            code: "VALUE_MUST_BE_UNSET",
            message: "transactionAttribute is for store sales jobs.".into(),
        });
    }
    let consent = v.get("consent").map(SimConsent::read);
    if consent.as_ref().is_some_and(|c| c.has("UNKNOWN")) {
        return Err(OpError {
            kind: "requestError",
            code: "INVALID_ENUM_VALUE",
            message: "UNKNOWN is an output-only consent status.".into(),
        });
    }
    let member = ids
        .iter()
        .map(parse_identifier)
        .collect::<Result<Member, _>>()?;
    Ok((member, consent))
}

fn identifier_count(op: &Value) -> usize {
    ["create", "remove"]
        .iter()
        .filter_map(|k| op.get(*k))
        .filter_map(|d| d.get("userIdentifiers").and_then(Value::as_array))
        .map(Vec::len)
        .sum()
}

fn parse_operation(op: &Value) -> Result<(JobOp, Option<SimConsent>), OpError> {
    if let Some(data) = op.get("create") {
        return parse_user_data(data).map(|(m, c)| (JobOp::Create(m), c));
    }
    if let Some(data) = op.get("remove") {
        return parse_user_data(data).map(|(m, c)| (JobOp::Remove(m), c));
    }
    if op.get("removeAll") == Some(&Value::Bool(true)) {
        return Ok((JobOp::RemoveAll, None));
    }
    Err(OpError {
        kind: "requestError",
        code: "OPERATION_REQUIRED",
        message: "an operation sets one of create, remove, removeAll (true)".into(),
    })
}

fn add_operations(
    state: &mut GoogleState,
    version: &str,
    customer: &str,
    id: u64,
    body: &Value,
    record: &mut GoogleRequest,
) -> Result<Value, RpcError> {
    let max = state.config.max_identifiers_per_request;
    let operations = body
        .get("operations")
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| {
            RpcError::invalid(AdsError::new(
                "collectionSizeError",
                "TOO_FEW",
                "operations must not be empty.",
            ))
        })?;
    let identifiers: usize = operations.iter().map(identifier_count).sum();
    record.operations = operations.len();
    record.identifiers = identifiers;
    let job = job_of(state, customer, id)?;
    if job.status != JobStatus::Pending {
        return Err(RpcError::invalid(AdsError::new(
            "offlineUserDataJobError",
            "JOB_ALREADY_STARTED",
            "Once the upload job is started, new operations cannot be added.",
        )));
    }
    if identifiers > max {
        return Err(RpcError::invalid(AdsError::new(
            "offlineUserDataJobError",
            "TOO_MANY_USER_IDENTIFIERS",
            format!("{identifiers} user identifiers in one request; at most {max}."),
        )));
    }
    let key_type = state
        .lists
        .get(&job.user_list)
        .and_then(|l| l.key_type)
        .unwrap_or(UploadKeyType::ContactInfo);
    // What the job holds so far, and the operations already in it.
    let mut holds_creates = job.holds_creates();
    let mut ops_in_job = job.ops.len();
    let partial = body.get("enablePartialFailure") == Some(&Value::Bool(true));
    let validate_only = body.get("validateOnly") == Some(&Value::Bool(true));
    let mut good = Vec::new();
    let mut consents = Vec::new();
    let mut errors = Vec::new();
    for (index, op) in operations.iter().enumerate() {
        let checked = parse_operation(op).and_then(|(parsed, consent)| {
            match &parsed {
                JobOp::Create(m) | JobOp::Remove(m) => {
                    if let Some((field, _)) = m.iter().find(|(f, _)| !key_type.accepts(f)) {
                        return Err(OpError::job(
                            "INCOMPATIBLE_UPLOAD_KEY_TYPE",
                            format!(
                                "{field} does not match the user list's upload key type {}",
                                key_type.as_str()
                            ),
                        ));
                    }
                    let create = matches!(parsed, JobOp::Create(_));
                    if holds_creates.is_some_and(|c| c != create) {
                        return Err(OpError::job(
                            "CONFLICTING_OPERATION",
                            "Mixing creation and removal of offline data in the same job is not allowed.",
                        ));
                    }
                    holds_creates = Some(create);
                }
                JobOp::RemoveAll => {
                    if ops_in_job > 0 {
                        return Err(OpError::job(
                            "INVALID_OPERATION_ORDER",
                            "A remove-all operation must be the first operation of the job.",
                        ));
                    }
                }
            }
            Ok((parsed, consent))
        });
        match checked {
            Ok((parsed, consent)) => {
                ops_in_job += 1;
                good.push(parsed);
                consents.extend(consent);
            }
            Err(e) => errors.push(
                AdsError {
                    kind: e.kind,
                    code: e.code,
                    ..AdsError::new("offlineUserDataJobError", "UNKNOWN", e.message)
                }
                .at(index),
            ),
        }
    }
    if !errors.is_empty() && !partial {
        return Err(RpcError {
            status: StatusCode::BAD_REQUEST,
            rpc_status: "INVALID_ARGUMENT",
            message: "Request contains an invalid argument.".into(),
            errors,
            other_details: None,
        });
    }
    if !validate_only {
        if let Some(job) = state.jobs.get_mut(&id) {
            job.ops.extend(good);
            job.operation_consents.extend(consents);
        }
    }
    if errors.is_empty() {
        return Ok(json!({}));
    }
    let message = errors
        .iter()
        .map(|e| format!("{}, at operations[{}]", e.message, e.index.unwrap_or(0)))
        .collect::<Vec<_>>()
        .join("; ");
    let request_id = state.requests.len() as u64 + 1;
    Ok(json!({
        "partialFailureError": {
            "code": 3,
            "message": message,
            "details": [google_ads_failure(version, &errors, request_id)],
        }
    }))
}

fn run_job(
    state: &mut GoogleState,
    version: &str,
    customer: &str,
    id: u64,
) -> Result<Value, RpcError> {
    let job = job_of(state, customer, id)?;
    if job.status != JobStatus::Pending {
        return Err(RpcError::invalid(AdsError::new(
            "offlineUserDataJobError",
            "JOB_ALREADY_STARTED",
            "Only a PENDING job can be run.",
        )));
    }
    let list = job.user_list.clone();
    if state.list_busy(&list, id) {
        state.concurrent_refusals += 1;
        return Err(concurrent_modification());
    }
    let done_at = state
        .config
        .run_completes
        .then(|| state.now() + state.config.job_duration);
    if let Some(job) = state.jobs.get_mut(&id) {
        job.status = JobStatus::Running;
        job.done_at = done_at;
    }
    let running = state
        .jobs
        .values()
        .filter(|j| j.user_list == list && j.status == JobStatus::Running)
        .count();
    state.max_running_per_list = state.max_running_per_list.max(running);
    state.finish_due();
    state.next_id += 1;
    Ok(json!({
        "name": format!("customers/{customer}/operations/{}", state.next_id),
        "metadata": {
            "@type": format!("type.googleapis.com/google.ads.googleads.{version}.resources.OfflineUserDataJobMetadata"),
        },
    }))
}

fn concurrent_modification() -> RpcError {
    RpcError::new(
        StatusCode::CONFLICT,
        "ABORTED",
        AdsError::new(
            "databaseError",
            "CONCURRENT_MODIFICATION",
            "Another job is running on this user list. Retry when it finishes.",
        ),
    )
}

fn finish_job(state: &mut GoogleState, id: u64) {
    let Some(job) = state.jobs.get_mut(&id) else {
        return;
    };
    job.status = JobStatus::Success;
    let ops = job.ops.clone();
    let members = &mut state
        .lists
        .entry(job.user_list.clone())
        .or_default()
        .members;
    for op in ops {
        match op {
            JobOp::Create(m) => {
                let mut merged = m;
                members.retain(|existing| {
                    if existing.iter().any(|p| merged.contains(p)) {
                        merged.extend(existing.iter().cloned());
                        false
                    } else {
                        true
                    }
                });
                members.push(merged);
            }
            JobOp::Remove(m) => members.retain(|existing| !existing.iter().any(|p| m.contains(p))),
            JobOp::RemoveAll => members.clear(),
        }
    }
}

/// The value compared in a minimal GAQL `WHERE field = value`.
fn where_value<'a>(query: &'a str, field: &str) -> Option<&'a str> {
    // Only the WHERE clause filters: the same field may also be SELECTed.
    let clause_at = query.to_ascii_lowercase().find(" where ")?;
    let clause = query.get(clause_at..)?;
    let at = clause.find(field)? + field.len();
    let rest = clause
        .get(at..)?
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    if let Some(quoted) = rest.strip_prefix('\'').or_else(|| rest.strip_prefix('"')) {
        let end = quoted.find(['\'', '"'])?;
        quoted.get(..end)
    } else {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest.get(..end).filter(|s| !s.is_empty())
    }
}

fn search(state: &GoogleState, customer: &str, body: &Value) -> Result<Value, RpcError> {
    let query_error =
        |message: &str| RpcError::invalid(AdsError::new("queryError", "UNEXPECTED_INPUT", message));
    let query = body
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| query_error("query is required."))?;
    let lower = query.to_ascii_lowercase();
    let from = lower
        .split_once(" from ")
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or(""))
        .ok_or_else(|| query_error("Expected FROM <resource>."))?;
    let results: Vec<Value> = match from {
        "offline_user_data_job" => {
            let by_name = where_value(query, "offline_user_data_job.resource_name");
            let by_id = where_value(query, "offline_user_data_job.id");
            state
                .jobs
                .values()
                .filter(|j| j.customer == customer)
                .filter(|j| by_name.is_none_or(|n| n == j.resource_name()))
                .filter(|j| by_id.is_none_or(|n| n == j.id.to_string()))
                .map(|j| json!({ "offlineUserDataJob": j.to_json() }))
                .collect()
        }
        "user_list" => {
            let by_name = where_value(query, "user_list.resource_name");
            let by_id = where_value(query, "user_list.id");
            let prefix = format!("customers/{customer}/userLists/");
            state
                .lists
                .iter()
                .filter_map(|(name, list)| name.strip_prefix(&prefix).map(|id| (name, id, list)))
                .filter(|(name, _, _)| by_name.is_none_or(|n| n == name.as_str()))
                .filter(|(_, id, _)| by_id.is_none_or(|n| n == *id))
                .map(|(name, id, list)| {
                    let key_type = list.key_type.unwrap_or(UploadKeyType::ContactInfo);
                    json!({ "userList": {
                        "resourceName": name,
                        "id": id,
                        "crmBasedUserList": { "uploadKeyType": key_type.as_str() },
                        "sizeForSearch": list.members.len().to_string(),
                        "sizeForDisplay": list.members.len().to_string(),
                    }})
                })
                .collect()
        }
        other => {
            return Err(query_error(&format!(
                "The sim serves FROM offline_user_data_job or user_list, not {other}."
            )))
        }
    };
    Ok(json!({ "results": results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(s: &str) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    struct Client {
        base: String,
        http: reqwest::Client,
        token: &'static str,
    }

    impl Client {
        async fn post(&self, path: &str, body: Value) -> (u16, Value) {
            let resp = self
                .http
                .post(format!("{}/v26/{path}", self.base))
                .bearer_auth(self.token)
                .header("developer-token", DEFAULT_DEVELOPER_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        }
    }

    async fn setup() -> (RunningSim, GoogleSim, Client) {
        let (running, sim) = GoogleSim::start(GoogleSimConfig::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sim.create_user_list("1234567890", "555");
        let client = Client {
            base: running.base_url.clone(),
            http: reqwest::Client::new(),
            token: DEFAULT_ACCESS_TOKEN,
        };
        (running, sim, client)
    }

    async fn new_job(client: &Client) -> String {
        let (status, body) = client
            .post(
                "customers/1234567890/offlineUserDataJobs:create",
                json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST",
                    "customer_match_user_list_metadata": {"user_list": "customers/1234567890/userLists/555"}}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["resourceName"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn job_create_add_run_puts_members_in_list() {
        let (_running, sim, client) = setup().await;
        let job = new_job(&client).await;
        let ops = json!({"operations": [
            {"create": {"userIdentifiers": [{"hashedEmail": sha("a@example.com")}, {"hashedPhoneNumber": sha("+15551234567")}]}},
            {"create": {"user_identifiers": [{"hashed_email": sha("b@example.com")}]}},
        ], "enablePartialFailure": true});
        let (status, body) = client.post(&format!("{job}:addOperations"), ops).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("partialFailureError").is_none());
        assert_eq!(
            sim.member_count("1234567890", "555"),
            0,
            "nothing applies before run"
        );
        let (status, body) = client.post(&format!("{job}:run"), json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(sim.member_count("1234567890", "555"), 2);
        assert!(sim.has_member_with(
            "1234567890",
            "555",
            "hashedPhoneNumber",
            &sha("+15551234567")
        ));
        let query = format!("SELECT offline_user_data_job.status FROM offline_user_data_job WHERE offline_user_data_job.resource_name = '{job}'");
        let (_, found) = client
            .post(
                "customers/1234567890/googleAds:search",
                json!({ "query": query }),
            )
            .await;
        assert_eq!(
            found["results"][0]["offlineUserDataJob"]["status"],
            "SUCCESS"
        );
    }

    #[tokio::test]
    async fn partial_failure_reports_failing_operation_index() {
        let (_running, sim, client) = setup().await;
        let job = new_job(&client).await;
        let ops = json!({"operations": [
            {"create": {"userIdentifiers": [{"hashedEmail": sha("a@example.com")}]}},
            {"create": {"userIdentifiers": [{"hashedEmail": "Raw@Example.com"}]}},
            {"create": {"userIdentifiers": [{"hashedEmail": sha("c@example.com")}]}},
        ], "enablePartialFailure": true});
        let (status, body) = client.post(&format!("{job}:addOperations"), ops).await;
        assert_eq!(status, 200);
        let errors = &body["partialFailureError"]["details"][0]["errors"];
        assert_eq!(errors.as_array().map(Vec::len), Some(1));
        assert_eq!(errors[0]["location"]["fieldPathElements"][0]["index"], 1);
        client.post(&format!("{job}:run"), json!({})).await;
        assert_eq!(sim.member_count("1234567890", "555"), 2);
    }

    #[tokio::test]
    async fn bad_operation_without_partial_failure_fails_whole_request() {
        let (_running, sim, client) = setup().await;
        let job = new_job(&client).await;
        let ops = json!({"operations": [
            {"create": {"userIdentifiers": [{"hashedEmail": sha("a@example.com")}]}},
            {"create": {"userIdentifiers": [{"hashedEmail": sha("b"), "hashedPhoneNumber": sha("c")}]}},
        ]});
        let (status, body) = client.post(&format!("{job}:addOperations"), ops).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        client.post(&format!("{job}:run"), json!({})).await;
        assert_eq!(sim.member_count("1234567890", "555"), 0);
    }

    #[tokio::test]
    async fn too_many_identifiers_refused_with_400() {
        let (running, sim) = GoogleSim::start(GoogleSimConfig {
            max_identifiers_per_request: 3,
            ..GoogleSimConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        sim.create_user_list("1234567890", "555");
        let client = Client {
            base: running.base_url.clone(),
            http: reqwest::Client::new(),
            token: DEFAULT_ACCESS_TOKEN,
        };
        let job = new_job(&client).await;
        let op = json!({"create": {"userIdentifiers": [{"hashedEmail": sha("a")}, {"hashedPhoneNumber": sha("b")}]}});
        let (status, body) = client
            .post(
                &format!("{job}:addOperations"),
                json!({"operations": [op.clone(), op], "enablePartialFailure": true}),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    }

    #[tokio::test]
    async fn more_than_twenty_identifiers_in_one_user_data_is_a_bad_operation() {
        let (_running, _sim, client) = setup().await;
        let job = new_job(&client).await;
        let ids: Vec<Value> = (0..21)
            .map(|i| json!({"hashedEmail": sha(&i.to_string())}))
            .collect();
        let (_, body) = client
            .post(&format!("{job}:addOperations"), json!({"operations": [{"create": {"userIdentifiers": ids}}], "enablePartialFailure": true}))
            .await;
        assert_eq!(
            body["partialFailureError"]["details"][0]["errors"][0]["location"]["fieldPathElements"]
                [0]["index"],
            0
        );
    }

    #[tokio::test]
    async fn wrong_token_is_401_and_wrong_manager_is_403() {
        let (running, sim) = GoogleSim::start(GoogleSimConfig {
            login_customer_id: Some("9999999999".into()),
            ..GoogleSimConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        sim.create_user_list("1234567890", "555");
        let bad = Client {
            base: running.base_url.clone(),
            http: reqwest::Client::new(),
            token: "expired",
        };
        let (status, body) = bad
            .post("customers/1234567890/offlineUserDataJobs:create", json!({}))
            .await;
        assert_eq!(
            (status, body["error"]["status"].clone()),
            (401, json!("UNAUTHENTICATED"))
        );
        let good = Client {
            token: DEFAULT_ACCESS_TOKEN,
            ..bad
        };
        let (status, body) = good
            .post("customers/1234567890/offlineUserDataJobs:create", json!({}))
            .await;
        assert_eq!(
            (status, body["error"]["status"].clone()),
            (403, json!("PERMISSION_DENIED"))
        );
    }

    #[tokio::test]
    async fn injected_quota_error_is_429_resource_exhausted() {
        let (_running, sim, client) = setup().await;
        sim.fail_next(1, GoogleFault::ResourceExhausted);
        let (status, body) = client
            .post("customers/1234567890/offlineUserDataJobs:create", json!({}))
            .await;
        assert_eq!(
            (status, body["error"]["status"].clone()),
            (429, json!("RESOURCE_EXHAUSTED"))
        );
        new_job(&client).await;
        assert_eq!(sim.request_count(), 2);
    }

    #[tokio::test]
    async fn remove_operation_takes_member_out() {
        let (_running, sim, client) = setup().await;
        let add = new_job(&client).await;
        let a = json!({"userIdentifiers": [{"hashedEmail": sha("a")}, {"hashedPhoneNumber": sha("+1")}]});
        client
            .post(
                &format!("{add}:addOperations"),
                json!({"operations": [{"create": a}]}),
            )
            .await;
        client.post(&format!("{add}:run"), json!({})).await;
        assert_eq!(sim.member_count("1234567890", "555"), 1);
        let remove = new_job(&client).await;
        let by_email = json!({"userIdentifiers": [{"hashedEmail": sha("a")}]});
        client
            .post(
                &format!("{remove}:addOperations"),
                json!({"operations": [{"remove": by_email}]}),
            )
            .await;
        client.post(&format!("{remove}:run"), json!({})).await;
        assert_eq!(sim.member_count("1234567890", "555"), 0);
    }

    #[tokio::test]
    async fn second_run_on_busy_list_is_aborted() {
        let (running, sim) = GoogleSim::start(GoogleSimConfig {
            run_completes: false,
            ..GoogleSimConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        sim.create_user_list("1234567890", "555");
        let client = Client {
            base: running.base_url.clone(),
            http: reqwest::Client::new(),
            token: DEFAULT_ACCESS_TOKEN,
        };
        let (first, second) = (new_job(&client).await, new_job(&client).await);
        assert_eq!(client.post(&format!("{first}:run"), json!({})).await.0, 200);
        assert_eq!(
            client.post(&format!("{second}:run"), json!({})).await.0,
            409
        );
        sim.complete_jobs();
        assert_eq!(
            client.post(&format!("{second}:run"), json!({})).await.0,
            200
        );
    }

    #[tokio::test]
    async fn contact_info_list_refuses_third_party_user_id() {
        let (_running, _sim, client) = setup().await;
        let job = new_job(&client).await;
        let ops = json!({"operations": [
            {"create": {"userIdentifiers": [{"hashedEmail": sha("a")}]}},
            {"create": {"userIdentifiers": [{"thirdPartyUserId": "u1"}]}},
        ], "enablePartialFailure": true});
        let (_, body) = client.post(&format!("{job}:addOperations"), ops).await;
        let error = &body["partialFailureError"]["details"][0]["errors"][0];
        assert_eq!(
            error["errorCode"]["offlineUserDataJobError"],
            "INCOMPATIBLE_UPLOAD_KEY_TYPE"
        );
        assert_eq!(error["location"]["fieldPathElements"][0]["index"], 1);
    }

    async fn create_with(client: &Client, metadata_extra: Value) -> (u16, Value) {
        let mut metadata = json!({"userList": "customers/1234567890/userLists/555"});
        if let (Some(m), Some(extra)) = (metadata.as_object_mut(), metadata_extra.as_object()) {
            m.extend(extra.clone());
        }
        client
            .post(
                "customers/1234567890/offlineUserDataJobs:create",
                json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": metadata}}),
            )
            .await
    }

    #[tokio::test]
    async fn an_unknown_field_is_400_invalid_argument_naming_where() {
        let (_running, sim, client) = setup().await;
        let (status, body) = create_with(&client, json!({"colour": "red"})).await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
        let violation = &body["error"]["details"][0];
        assert_eq!(
            violation["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(
            violation["fieldViolations"][0]["field"],
            "job.customer_match_user_list_metadata"
        );
        assert!(sim.job_details().is_empty());
        let job = new_job(&client).await;
        let (status, _) = client
            .post(
                &format!("{job}:addOperations"),
                json!({"operations": [{"create": {"userIdentifiers": [{"hashedEmail": sha("a")}]}}],
                       "partialFailure": true}),
            )
            .await;
        assert_eq!(status, 400, "enablePartialFailure is the field's name");
    }

    #[tokio::test]
    async fn job_consent_is_recorded_and_read_back() {
        let (_running, sim, client) = setup().await;
        let (status, body) = create_with(
            &client,
            json!({"consent": {"adUserData": "GRANTED", "adPersonalization": "UNSPECIFIED"}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let jobs = sim.job_details();
        assert_eq!(
            jobs[0].consent,
            Some(SimConsent {
                ad_user_data: "GRANTED".into(),
                ad_personalization: "UNSPECIFIED".into(),
            })
        );
        let (_, found) = client
            .post(
                "customers/1234567890/googleAds:search",
                json!({"query": "SELECT offline_user_data_job.status FROM offline_user_data_job"}),
            )
            .await;
        assert_eq!(
            found["results"][0]["offlineUserDataJob"]["customerMatchUserListMetadata"]["consent"]
                ["adUserData"],
            "GRANTED"
        );
        let (status, _) = create_with(&client, json!({"consent": {}})).await;
        assert_eq!(status, 200);
        assert_eq!(
            sim.job_details()[1].consent,
            Some(SimConsent {
                ad_user_data: "UNSPECIFIED".into(),
                ad_personalization: "UNSPECIFIED".into(),
            }),
            "an absent field is UNSPECIFIED"
        );
    }

    #[tokio::test]
    async fn a_consent_value_outside_the_enum_is_refused() {
        let (_running, sim, client) = setup().await;
        for value in [
            json!("CONSENT_GRANTED"),
            json!("granted"),
            json!(7),
            json!(true),
        ] {
            let (status, body) =
                create_with(&client, json!({"consent": {"adUserData": value}})).await;
            assert_eq!(
                (status, body["error"]["status"].as_str()),
                (400, Some("INVALID_ARGUMENT")),
                "{value}: {body}"
            );
        }
        let (status, body) = create_with(
            &client,
            json!({"consent": {"adPersonalization": "UNKNOWN"}}),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            body["error"]["details"][0]["errors"][0]["errorCode"]["requestError"],
            "INVALID_ENUM_VALUE",
            "UNKNOWN is output only"
        );
        assert!(sim.job_details().is_empty());
    }

    #[tokio::test]
    async fn a_job_whose_consent_denies_is_refused_with_customer_data_terms() {
        let (_running, sim, client) = setup().await;
        for consent in [
            json!({"adUserData": "DENIED", "adPersonalization": "GRANTED"}),
            json!({"adUserData": "GRANTED", "adPersonalization": "DENIED"}),
        ] {
            let (status, body) = create_with(&client, json!({ "consent": consent })).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(
                body["error"]["details"][0]["errors"][0]["errorCode"]["offlineUserDataJobError"],
                "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"
            );
        }
        assert!(sim.job_details().is_empty());
    }

    #[tokio::test]
    async fn creates_and_removes_in_one_job_conflict() {
        let (_running, sim, client) = setup().await;
        let job = new_job(&client).await;
        let ops = json!({"operations": [
            {"create": {"userIdentifiers": [{"hashedEmail": sha("a")}]}},
            {"remove": {"userIdentifiers": [{"hashedEmail": sha("b")}]}},
        ], "enablePartialFailure": true});
        let (_, body) = client.post(&format!("{job}:addOperations"), ops).await;
        let error = &body["partialFailureError"]["details"][0]["errors"][0];
        assert_eq!(
            error["errorCode"]["offlineUserDataJobError"],
            "CONFLICTING_OPERATION"
        );
        assert_eq!(error["location"]["fieldPathElements"][0]["index"], 1);
        // Across requests too: the job already holds a create.
        let (status, body) = client
            .post(
                &format!("{job}:addOperations"),
                json!({"operations": [{"remove": {"userIdentifiers": [{"hashedEmail": sha("c")}]}}]}),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            body["error"]["details"][0]["errors"][0]["errorCode"]["offlineUserDataJobError"],
            "CONFLICTING_OPERATION"
        );
        let jobs = sim.job_details();
        assert_eq!((jobs[0].creates, jobs[0].removes), (1, 0));
    }

    #[tokio::test]
    async fn remove_all_goes_first_and_creates_may_follow() {
        let (_running, sim, client) = setup().await;
        let job = new_job(&client).await;
        let ops = json!({"operations": [
            {"removeAll": true},
            {"create": {"userIdentifiers": [{"hashedEmail": sha("a")}]}},
            {"removeAll": true},
        ], "enablePartialFailure": true});
        let (_, body) = client.post(&format!("{job}:addOperations"), ops).await;
        let errors = &body["partialFailureError"]["details"][0]["errors"];
        assert_eq!(errors.as_array().map(Vec::len), Some(1));
        assert_eq!(
            errors[0]["errorCode"]["offlineUserDataJobError"],
            "INVALID_OPERATION_ORDER"
        );
        assert_eq!(errors[0]["location"]["fieldPathElements"][0]["index"], 2);
        client.post(&format!("{job}:run"), json!({})).await;
        assert_eq!(sim.member_count("1234567890", "555"), 1);
    }

    #[tokio::test]
    async fn a_users_own_consent_is_accepted_and_recorded() {
        let (_running, sim, client) = setup().await;
        let job = new_job(&client).await;
        let ops = json!({"operations": [
            {"create": {"userIdentifiers": [{"hashedEmail": sha("a")}],
                        "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}}},
        ]});
        let (status, body) = client.post(&format!("{job}:addOperations"), ops).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            sim.job_details()[0].operation_consents,
            vec![SimConsent {
                ad_user_data: "GRANTED".into(),
                ad_personalization: "GRANTED".into(),
            }]
        );
    }

    #[tokio::test]
    async fn only_the_four_post_routes_exist() {
        let (running, _sim, client) = setup().await;
        let job = new_job(&client).await;
        let http = reqwest::Client::new();
        for (method, path) in [
            (reqwest::Method::GET, format!("/v26/{job}")),
            (
                reqwest::Method::GET,
                "/v26/customers/1234567890/offlineUserDataJobs:create".into(),
            ),
            (
                reqwest::Method::POST,
                "/v26/customers/1234567890/googleAds:searchStream".into(),
            ),
            (reqwest::Method::POST, format!("/v26/{job}:cancel")),
        ] {
            let status = http
                .request(method.clone(), format!("{}{path}", running.base_url))
                .bearer_auth(DEFAULT_ACCESS_TOKEN)
                .header("developer-token", DEFAULT_DEVELOPER_TOKEN)
                .json(&json!({}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(status, 404, "{method} {path}");
        }
    }

    #[test]
    fn snake_case_keys_become_lower_camel_case() {
        assert_eq!(
            camel_key("customer_match_user_list_metadata"),
            "customerMatchUserListMetadata"
        );
        assert_eq!(camel_key("hashedEmail"), "hashedEmail");
        assert_eq!(camel_key("@type"), "@type");
    }
}
