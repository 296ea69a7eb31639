//! Google Ads Customer Match through offline user data jobs, `API-CONTRACTS.md`
//! §4d: for accounts Google still allowlists (everyone else uses
//! `google_data_manager`, see `google_dm.rs`). What we send, call by call,
//! with Google's sources: `docs/google-ads-api.md` and the machine-readable
//! `tests/contracts/google-ads-api.json`.
//!
//! One job per user list at a time, recorded in the state store under
//! `job/<list id>`. A send to a list with no recorded job creates one
//! (`CUSTOMER_MATCH_USER_LIST`; the record is written create-if-absent, so
//! two workers never both own a list), adds its operations in requests of at
//! most `batch_size` operations and 100,000 identifiers (`enablePartialFailure:
//! true`), runs it and records it as running. A send to a list whose job is
//! still PENDING / RUNNING does not create another (Google would answer
//! CONCURRENT_MODIFICATION): it is `Retryable` with `retry_after` =
//! `job_wait`, so the queue holds the ops until the job is done, and nothing
//! is dead-lettered for waiting as long as `max_attempts × job_wait` covers a
//! job (jobs take hours: e.g. 15 min × 40). A finished job's record is
//! dropped by the next send or by `settle` (called at every delivery
//! invocation), which polls running jobs and logs FAILED ones with Google's
//! `failure_reason`.
//!
//! What one job carries: Add / Update become `create` operations and Remove
//! `remove`, but never both in one job (Google refuses the mix with
//! CONFLICTING_OPERATION), and a job's consent
//! (`customerMatchUserListMetadata.consent`) holds for everyone in it
//! (Google: "use separate jobs to upload users with different consent
//! signals"). So the ops of one list fall into kinds: removes (no consent:
//! Google needs none for removes), creates under the destination's consent,
//! creates of people whose own consent attribute grants both where the
//! destination's does not. A send runs the job of the largest kind (ties:
//! the kind of the earliest op); the other ops are `Retry` and come back once
//! that job is done (a stale one is then superseded by the delivery step).
//! Consent per person in `UserData.consent` is not used: the proto says it
//! overrides the job's, but Google's Customer Match guides say to split jobs
//! instead and `OPERATION_LEVEL_CONSENT_PROVIDED` warns that some job types
//! ignore it.
//!
//! Consent rule (shared with the Data Manager path, `google_consent.rs`): a
//! person of the EEA, the UK or Switzerland without both consents granted is
//! `Unmatched` ("no consent (EEA)…") and never sent; a person whose own
//! consent denies is `Unmatched` too (Google refuses a job whose consent
//! denies: CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS). Removes are always
//! sent.
//!
//! An operation Google names in `partialFailureError` (by
//! `fieldPathElements[0].index`) is `Rejected` with Google's message; a person
//! with no usable identifier is `Unmatched` and never sent; every other op of
//! the job is `Accepted` once the job runs.
//!
//! Identifiers come from `domain::identity::google_identifiers` (phone E.164
//! with `+`; gmail dots per the destination's `gmail_remove_dots`).
//!
//! Credentials: the developer token from the secret store, and OAuth access
//! tokens from `google_auth::GoogleTokens` (service account or refresh token,
//! cached and refreshed before expiry; a 401 refreshes once and retries).
//!
//! Errors: 401 (after the refresh) / 403 and other request errors are
//! permanent; RESOURCE_EXHAUSTED / UNAVAILABLE / INTERNAL / DEADLINE_EXCEEDED /
//! ABORTED (and 408, 429, 5xx) are retryable.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use std::sync::Arc;

use super::google_auth::{GoogleTokens, ADS_SCOPE};
use super::google_consent::person_consent;
use super::{status_is_retryable, Destination, DestinationError, OpOutcome, SettleSummary};
use crate::domain::identity::{google_identifiers, match_keys, IdentityOptions};
use crate::domain::model::{DeliveryOp, OpKind};
use crate::domain::spec::{
    ConsentStatus, DestinationKind, DestinationSettings, DestinationSpec, ExportDestination,
    ExportSpec, GoogleConsentSpec, MatchKey,
};
use crate::ports::{Clock, RecordWrite, Secret, Secrets, StateStore};

pub const DEFAULT_BASE_URL: &str = "https://googleads.googleapis.com";
/// Most operations per addOperations request we send.
pub const MAX_OPERATIONS_PER_REQUEST: usize = 10_000;
/// Google's cap on identifiers per addOperations request.
pub const MAX_IDENTIFIERS_PER_REQUEST: usize = 100_000;

/// google.rpc status names worth another attempt.
const RETRYABLE_STATUSES: &[&str] = &[
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "INTERNAL",
    "DEADLINE_EXCEEDED",
    "ABORTED",
];

pub struct GoogleCustomerMatchDestination {
    name: String,
    /// Base URL with the API version, e.g. `https://googleads.googleapis.com/v26`.
    api_url: String,
    customer_id: String,
    login_customer_id: Option<String>,
    developer_token: Secret,
    tokens: GoogleTokens,
    gmail_remove_dots: bool,
    batch_size: usize,
    job_wait: Duration,
    consent: GoogleConsentSpec,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    state: Arc<dyn StateStore>,
}

/// A job recorded PENDING (created, never run) this long ago was abandoned
/// by a failed send: Google drops unrun jobs, and so do we.
const ABANDONED_PENDING_MS: i64 = 10 * 60 * 1000;

impl std::fmt::Debug for GoogleCustomerMatchDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleCustomerMatchDestination")
            .field("name", &self.name)
            .field("api_url", &self.api_url)
            .field("customer_id", &self.customer_id)
            .field("login_customer_id", &self.login_customer_id)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// What one job carries: Google refuses creates and removes in one job
/// (CONFLICTING_OPERATION), and a job's consent holds for all its people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobKind {
    Remove,
    Create {
        ad_user_data: ConsentStatus,
        ad_personalization: ConsentStatus,
    },
}

/// Ops of other kinds than the job a send runs wait for their own job.
const WAITS_FOR_ITS_OWN_JOB: &str =
    "waits for a job of its own: Google Ads takes creates and removes, \
     and people of different consent, in separate jobs, one job per list at a time";

/// One operation to send, remembering which op it came from.
struct Operation {
    index: usize,
    identifiers: usize,
    kind: JobKind,
    body: Value,
}

/// The kind of job a send runs for one list: the kind with the most
/// operations, ties going to the kind of the earliest op.
fn job_kind(operations: &[Operation]) -> Option<JobKind> {
    let mut counts: Vec<(JobKind, usize)> = Vec::new();
    for op in operations {
        match counts.iter_mut().find(|(k, _)| *k == op.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((op.kind, 1)),
        }
    }
    // `counts` is in order of first appearance: `max_by_key` keeps the last
    // maximum, so scan it reversed to keep the first.
    counts
        .into_iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(k, _)| k)
}

fn numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn ten_digits(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())
}

impl GoogleCustomerMatchDestination {
    pub fn new(
        name: String,
        spec: &DestinationSpec,
        secrets: &dyn Secrets,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        state: Arc<dyn StateStore>,
    ) -> Result<Self, DestinationError> {
        let permanent = |message: String| DestinationError::Permanent {
            destination: name.clone(),
            message,
        };
        let DestinationSettings::GoogleCustomerMatch {
            api_version,
            customer_id,
            login_customer_id,
            developer_token_env,
            auth,
            gmail_remove_dots,
            job_wait_ms,
            consent,
        } = &spec.settings
        else {
            return Err(permanent(
                "settings are not of kind google_customer_match".into(),
            ));
        };
        let secret = |env: &str| super::required_secret(secrets, &name, env);
        let developer_token = secret(developer_token_env)?;
        let tokens =
            GoogleTokens::new(&name, auth, ADS_SCOPE, secrets, http.clone(), clock.clone())?;
        if !ten_digits(customer_id) {
            return Err(permanent(format!(
                "customer_id must be 10 digits without dashes, not {customer_id:?}"
            )));
        }
        if let Some(login) = login_customer_id {
            if !ten_digits(login) {
                return Err(permanent(format!(
                    "login_customer_id must be 10 digits without dashes, not {login:?}"
                )));
            }
        }
        if consent.ad_user_data == ConsentStatus::Denied
            || consent.ad_personalization == ConsentStatus::Denied
        {
            return Err(permanent(
                "consent denied: Google refuses a Customer Match job whose consent denies \
                 (CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS)"
                    .into(),
            ));
        }
        let version = api_version.trim();
        if version.is_empty() {
            return Err(permanent("api_version is empty".into()));
        }
        let version = if version.starts_with('v') {
            version.to_string()
        } else {
            format!("v{version}")
        };
        let base = spec
            .base_url
            .as_deref()
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/');
        Ok(Self {
            api_url: format!("{base}/{version}"),
            customer_id: customer_id.clone(),
            login_customer_id: login_customer_id.clone(),
            developer_token,
            tokens,
            gmail_remove_dots: *gmail_remove_dots,
            batch_size: spec.batch_size.clamp(1, MAX_OPERATIONS_PER_REQUEST),
            job_wait: Duration::from_millis(*job_wait_ms),
            consent: consent.clone(),
            name,
            http,
            clock,
            state,
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

    /// A failed call, classified by google.rpc status, then by HTTP status.
    fn rpc_error(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> DestinationError {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let error = parsed.get("error");
        let rpc_status = error
            .and_then(|e| e.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let detail = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
        let codes = error
            .and_then(|e| e.get("details"))
            .map(|d| error_codes(d).join(", "))
            .unwrap_or_default();
        let mut message = format!("HTTP {status}");
        if !rpc_status.is_empty() {
            message.push_str(&format!(" {rpc_status}"));
        }
        if !codes.is_empty() {
            message.push_str(&format!(" [{codes}]"));
        }
        message.push_str(&format!(": {detail}"));
        let retryable = if rpc_status.is_empty() {
            status_is_retryable(status)
        } else {
            RETRYABLE_STATUSES.contains(&rpc_status)
        };
        if retryable {
            DestinationError::Retryable {
                destination: self.name.clone(),
                message,
                retry_after: retry_after(headers, error),
            }
        } else {
            self.permanent(message)
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, DestinationError> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.token().await?;
            let mut req = self
                .http
                .post(format!("{}/{path}", self.api_url))
                .bearer_auth(token.expose())
                .header("developer-token", self.developer_token.expose())
                .json(body);
            if let Some(login) = &self.login_customer_id {
                req = req.header("login-customer-id", login);
            }
            let resp = req.send().await.map_err(|e| self.transport_error(e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
            if status == 401 && !refreshed && self.tokens.can_refresh() {
                tracing::info!(destination = %self.name, "access token refused (401): refreshing once");
                self.tokens.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(self.rpc_error(status, &headers, &bytes));
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                self.retryable(format!("unreadable Google Ads answer to {path}: {e}"))
            });
        }
    }

    fn state_error(&self, e: crate::ports::StateError) -> DestinationError {
        self.retryable(format!("state store: {e}"))
    }

    /// A job's status and failure reason, read through `googleAds:search`.
    async fn job_status(&self, job: &str) -> Result<(String, Option<String>), DestinationError> {
        let query = format!(
            "SELECT offline_user_data_job.status, offline_user_data_job.failure_reason \
             FROM offline_user_data_job WHERE offline_user_data_job.resource_name = '{job}'"
        );
        let answer = self
            .post(
                &format!("customers/{}/googleAds:search", self.customer_id),
                &json!({ "query": query }),
            )
            .await?;
        let found = answer
            .get("results")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|r| field(r, "offlineUserDataJob", "offline_user_data_job"));
        let Some(found) = found else {
            // Google no longer knows the job: treat it as finished.
            return Ok(("UNKNOWN".into(), None));
        };
        let status = found
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_string();
        let reason = field(found, "failureReason", "failure_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok((status, reason))
    }

    /// Whether the recorded job of a list is done; drops its record if so.
    /// `Ok(Some(job))` names a job still PENDING / RUNNING.
    async fn recorded_job_busy(&self, list_id: &str) -> Result<Option<String>, DestinationError> {
        let key = format!("job/{list_id}");
        let Some(record) = self
            .state
            .get_destination_record(&self.name, &key)
            .await
            .map_err(|e| self.state_error(e))?
        else {
            return Ok(None);
        };
        let job = record
            .value
            .get("job")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (status, reason) = if job.is_empty() {
            ("UNKNOWN".to_string(), None)
        } else {
            self.job_status(&job).await?
        };
        let never_run = record.value.get("status").and_then(Value::as_str) == Some("PENDING");
        let age = self.clock.now_ms()
            - record
                .value
                .get("created_at")
                .and_then(Value::as_i64)
                .unwrap_or(0);
        let abandoned = status == "PENDING" && never_run && age > ABANDONED_PENDING_MS;
        if matches!(status.as_str(), "PENDING" | "RUNNING") && !abandoned {
            return Ok(Some(job));
        }
        if status == "FAILED" {
            tracing::warn!(destination = %self.name, job = %job, reason = reason.as_deref().unwrap_or(""), "Customer Match job FAILED");
        } else {
            tracing::info!(destination = %self.name, job = %job, %status, "Customer Match job finished");
        }
        self.state
            .delete_destination_record(&self.name, &key, record.version)
            .await
            .map_err(|e| self.state_error(e))?;
        Ok(None)
    }

    /// Create, fill and run one job for one user list; fills `outcomes`.
    async fn send_list(
        &self,
        list_id: &str,
        kind: JobKind,
        operations: &[Operation],
        outcomes: &mut [Option<OpOutcome>],
    ) -> Result<(), DestinationError> {
        if let Some(job) = self.recorded_job_busy(list_id).await? {
            return Err(DestinationError::Retryable {
                destination: self.name.clone(),
                message: format!(
                    "user list {list_id} is busy with job {job}: one job per list at a time; waiting for it"
                ),
                retry_after: Some(self.job_wait),
            });
        }
        let user_list = format!("customers/{}/userLists/{list_id}", self.customer_id);
        let mut metadata = json!({ "userList": user_list });
        if let JobKind::Create {
            ad_user_data,
            ad_personalization,
        } = kind
        {
            // Google needs consent on create jobs only.
            metadata["consent"] = json!({
                "adUserData": ad_user_data.as_ads_api(),
                "adPersonalization": ad_personalization.as_ads_api(),
            });
        }
        let created = self
            .post(
                &format!("customers/{}/offlineUserDataJobs:create", self.customer_id),
                &json!({
                    "job": {
                        "type": "CUSTOMER_MATCH_USER_LIST",
                        "customerMatchUserListMetadata": metadata,
                    }
                }),
            )
            .await?;
        let job = created
            .get("resourceName")
            .or_else(|| created.get("resource_name"))
            .and_then(Value::as_str)
            .ok_or_else(|| self.retryable("job create answer has no resourceName".into()))?
            .to_string();
        let key = format!("job/{list_id}");
        let mut record = json!({
            "job": job,
            "list": list_id,
            "status": "PENDING",
            "created_at": self.clock.now_ms(),
        });
        let version = match self
            .state
            .put_destination_record(&self.name, &key, &record, None)
            .await
            .map_err(|e| self.state_error(e))?
        {
            RecordWrite::Applied { version } => version,
            RecordWrite::Conflict => {
                // Another worker owns this list's job: ours is left unrun
                // (Google drops unrun jobs) and the ops wait for theirs.
                return Err(DestinationError::Retryable {
                    destination: self.name.clone(),
                    message: format!(
                        "user list {list_id} got a job from another worker; waiting for it"
                    ),
                    retry_after: Some(self.job_wait),
                });
            }
        };
        for chunk in chunk_operations(operations, self.batch_size) {
            let body = json!({
                "operations": chunk.iter().map(|o| &o.body).collect::<Vec<_>>(),
                "enablePartialFailure": true,
            });
            let answer = self.post(&format!("{job}:addOperations"), &body).await?;
            let failures = partial_failures(&answer);
            let unplaced = failures.iter().filter(|(i, _)| i.is_none()).count();
            if unplaced > 0 {
                tracing::warn!(
                    destination = %self.name,
                    job = %job,
                    unplaced,
                    "partial failure errors without an operation index"
                );
            }
            let by_index: BTreeMap<usize, String> = failures
                .into_iter()
                .filter_map(|(i, m)| i.map(|i| (i, m)))
                .collect();
            for (pos, op) in chunk.iter().enumerate() {
                let outcome = match by_index.get(&pos) {
                    Some(reason) => OpOutcome::Rejected {
                        reason: reason.clone(),
                    },
                    None => OpOutcome::Accepted,
                };
                if let Some(slot) = outcomes.get_mut(op.index) {
                    *slot = Some(outcome);
                }
            }
            tracing::info!(
                destination = %self.name,
                job = %job,
                operations = chunk.len(),
                rejected = by_index.len(),
                "Customer Match operations added"
            );
        }
        self.post(&format!("{job}:run"), &json!({})).await?;
        record["status"] = json!("RUNNING");
        if let Err(e) = self
            .state
            .put_destination_record(&self.name, &key, &record, Some(version))
            .await
        {
            tracing::warn!(destination = %self.name, job = %job, error = %e, "could not mark the job running");
        }
        tracing::info!(destination = %self.name, job = %job, "Customer Match job running");
        Ok(())
    }

    fn operation(
        &self,
        keys: &[MatchKey],
        opts: &IdentityOptions,
        index: usize,
        op: &DeliveryOp,
    ) -> Result<Operation, OpOutcome> {
        let create = match op.op {
            OpKind::Add | OpKind::Update => true,
            OpKind::Remove => false,
            OpKind::Event => {
                return Err(OpOutcome::Rejected {
                    reason: "Customer Match takes membership ops, not events".into(),
                })
            }
        };
        let identifiers = google_identifiers(keys, &op.ids, &op.attributes, opts).map_err(|e| {
            tracing::debug!(
                destination = %self.name,
                person = %op.person_key.log_safe(),
                "no Google identifier"
            );
            OpOutcome::Unmatched {
                reason: format!("no Google identifier: {e}"),
            }
        })?;
        let kind = if create {
            let consent = person_consent(&self.consent, &op.attributes)?;
            if consent.any_denied() {
                return Err(OpOutcome::Unmatched {
                    reason: "consent denied: Google Ads refuses a Customer Match job whose \
                             consent denies (CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS)"
                        .into(),
                });
            }
            JobKind::Create {
                ad_user_data: consent.ad_user_data,
                ad_personalization: consent.ad_personalization,
            }
        } else {
            JobKind::Remove
        };
        let verb = if create { "create" } else { "remove" };
        let ids: Vec<Value> = identifiers.iter().map(|i| i.to_json()).collect();
        Ok(Operation {
            index,
            identifiers: ids.len(),
            kind,
            body: json!({ verb: { "userIdentifiers": ids } }),
        })
    }
}

/// Consecutive chunks of at most `max_ops` operations and
/// `MAX_IDENTIFIERS_PER_REQUEST` identifiers.
fn chunk_operations(operations: &[Operation], max_ops: usize) -> Vec<&[Operation]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut identifiers = 0;
    for (i, op) in operations.iter().enumerate() {
        let full =
            i - start >= max_ops || identifiers + op.identifiers > MAX_IDENTIFIERS_PER_REQUEST;
        if full && i > start {
            chunks.extend(operations.get(start..i));
            start = i;
            identifiers = 0;
        }
        identifiers += op.identifiers;
    }
    if start < operations.len() {
        chunks.extend(operations.get(start..));
    }
    chunks
}

#[async_trait]
impl Destination for GoogleCustomerMatchDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::GoogleCustomerMatch
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
        let keys = match_keys(binding, DestinationKind::GoogleCustomerMatch);
        let opts = IdentityOptions {
            default_phone_region: export.identity.default_phone_region.clone(),
            gmail_remove_dots: self.gmail_remove_dots,
            ..IdentityOptions::default()
        };
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
        let mut lists: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
        for (index, op) in ops.iter().enumerate() {
            match self.operation(&keys, &opts, index, op) {
                Ok(operation) => lists
                    .entry(op.audience.as_str())
                    .or_default()
                    .push(operation),
                Err(outcome) => {
                    if let Some(slot) = outcomes.get_mut(index) {
                        *slot = Some(outcome);
                    }
                }
            }
        }
        if let Some(bad) = lists.keys().find(|id| !numeric(id)) {
            return Err(self.permanent(format!("user list id must be numeric, not {bad:?}")));
        }
        for (list_id, operations) in lists {
            let Some(kind) = job_kind(&operations) else {
                continue;
            };
            let (job, waiting): (Vec<Operation>, Vec<Operation>) =
                operations.into_iter().partition(|o| o.kind == kind);
            for op in &waiting {
                if let Some(slot) = outcomes.get_mut(op.index) {
                    *slot = Some(OpOutcome::Retry {
                        reason: WAITS_FOR_ITS_OWN_JOB.into(),
                    });
                }
            }
            self.send_list(list_id, kind, &job, &mut outcomes).await?;
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

    async fn settle(&self) -> Result<SettleSummary, DestinationError> {
        let records = self
            .state
            .list_destination_records(&self.name, "job/", 100)
            .await
            .map_err(|e| self.state_error(e))?;
        let mut summary = SettleSummary::default();
        for r in records {
            let list_id = r.key.trim_start_matches("job/");
            match self.recorded_job_busy(list_id).await? {
                Some(_) => summary.pending += 1,
                None => summary.finished += 1,
            }
        }
        Ok(summary)
    }

    async fn audience_size(
        &self,
        _export: &ExportSpec,
        binding: &ExportDestination,
    ) -> Result<Option<u64>, DestinationError> {
        let list_id = &binding.audience;
        if !numeric(list_id) {
            return Err(self.permanent(format!("user list id must be numeric, not {list_id:?}")));
        }
        let query = format!(
            "SELECT user_list.id, user_list.size_for_search, user_list.size_for_display \
             FROM user_list WHERE user_list.id = {list_id}"
        );
        let answer = self
            .post(
                &format!("customers/{}/googleAds:search", self.customer_id),
                &json!({ "query": query }),
            )
            .await?;
        // Google reports sizes rounded, with a lag, and 0 under 1,000 members;
        // search size is the one Customer Match lists fill.
        let list = answer
            .get("results")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|r| field(r, "userList", "user_list"));
        let size = list.and_then(|l| {
            [
                "sizeForSearch",
                "size_for_search",
                "sizeForDisplay",
                "size_for_display",
            ]
            .iter()
            .find_map(|k| match l.get(*k)? {
                Value::String(s) => s.parse::<u64>().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            })
        });
        Ok(size)
    }

    fn describe_output(&self, _export: &ExportSpec, binding: &ExportDestination) -> String {
        format!(
            "Google Ads user list customers/{}/userLists/{}",
            self.customer_id, binding.audience
        )
    }
}

/// Reading Google Ads answers: errors, partial failures, delays.
mod answers;
use answers::*;

#[cfg(test)]
mod tests;
