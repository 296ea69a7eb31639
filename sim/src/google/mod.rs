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

/// The jobs and the search over them.
mod jobs;
use jobs::*;

#[cfg(test)]
mod tests;
