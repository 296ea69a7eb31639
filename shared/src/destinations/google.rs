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

fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

/// GoogleAdsError entries in a list of status details.
fn ads_errors(details: &Value) -> impl Iterator<Item = &Value> {
    details
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("errors").and_then(Value::as_array))
        .flatten()
}

/// `kind=CODE` of each error, e.g. `quotaError=RESOURCE_EXHAUSTED`.
fn error_codes(details: &Value) -> Vec<String> {
    ads_errors(details)
        .filter_map(|e| field(e, "errorCode", "error_code")?.as_object())
        .flat_map(|codes| {
            codes
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        })
        .collect()
}

/// (failing operation index, message) of each partial-failure error.
fn partial_failures(answer: &Value) -> Vec<(Option<usize>, String)> {
    let Some(status) = field(answer, "partialFailureError", "partial_failure_error") else {
        return Vec::new();
    };
    let Some(details) = status.get("details") else {
        return Vec::new();
    };
    ads_errors(details)
        .map(|e| {
            let index = field(e, "location", "location")
                .and_then(|l| field(l, "fieldPathElements", "field_path_elements"))
                .and_then(Value::as_array)
                .and_then(|path| {
                    path.iter().find(|p| {
                        field(p, "fieldName", "field_name").and_then(Value::as_str)
                            == Some("operations")
                    })
                })
                .and_then(|p| p.get("index"))
                .and_then(|i| match i {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                })
                .and_then(|i| usize::try_from(i).ok());
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("rejected by Google Ads");
            let code = field(e, "errorCode", "error_code")
                .and_then(Value::as_object)
                .and_then(|c| c.iter().next())
                .map(|(k, v)| format!(" ({k}={})", v.as_str().unwrap_or_default()))
                .unwrap_or_default();
            (index, format!("{message}{code}"))
        })
        .collect()
}

/// `Retry-After` seconds, else a quota error's `retryDelay` ("30s").
fn retry_after(headers: &reqwest::header::HeaderMap, error: Option<&Value>) -> Option<Duration> {
    if let Some(secs) = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs));
    }
    let details = error?.get("details")?;
    ads_errors(details)
        .filter_map(|e| {
            let quota = field(
                e.get("details")?,
                "quotaErrorDetails",
                "quota_error_details",
            )?;
            let delay = field(quota, "retryDelay", "retry_delay")?.as_str()?;
            let secs: f64 = delay.strip_suffix('s')?.parse().ok()?;
            (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
        })
        .max()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::sha256_hex;
    use crate::domain::model::{Identifiers, PersonKey};
    use crate::domain::spec::{
        Cadence, ExportMode, ExportSource, GoogleAuthSpec, GoogleCredentialsSpec, GuardRails,
        IdKind, IdentitySpec,
    };
    use crate::ports::MapSecrets;
    use dataout_sim::google::{
        GoogleFault, GoogleSim, GoogleSimConfig, JobStatus, SimConsent, DEFAULT_ACCESS_TOKEN,
        DEFAULT_DEVELOPER_TOKEN,
    };
    use dataout_sim::RunningSim;

    const CUSTOMER: &str = "1234567890";
    const LIST: &str = "555";

    fn spec(
        base_url: &str,
        batch_size: usize,
        login: Option<&str>,
        gmail_remove_dots: bool,
    ) -> DestinationSpec {
        DestinationSpec {
            name: "google".into(),
            kind: DestinationKind::GoogleCustomerMatch,
            base_url: Some(base_url.into()),
            batch_size,
            max_concurrency: 1,
            max_requests_per_second: None,
            max_attempts: 3,
            settings: DestinationSettings::GoogleCustomerMatch {
                api_version: "v26".into(),
                customer_id: CUSTOMER.into(),
                login_customer_id: login.map(str::to_string),
                developer_token_env: "GOOGLE_ADS_DEVELOPER_TOKEN".into(),
                auth: GoogleAuthSpec {
                    token_url: format!("{base_url}/token"),
                    credentials: GoogleCredentialsSpec::AccessToken {
                        access_token_env: "GOOGLE_ADS_ACCESS_TOKEN".into(),
                    },
                },
                gmail_remove_dots,
                job_wait_ms: 1_000,
                consent: GoogleConsentSpec {
                    ad_user_data: ConsentStatus::Granted,
                    ad_personalization: ConsentStatus::Granted,
                    attribute: Some("ads_consent".into()),
                    country_attribute: Some("country".into()),
                    unknown_country_is_eea: true,
                },
            },
        }
    }

    fn binding(keys: Vec<MatchKey>) -> ExportDestination {
        ExportDestination {
            destination: "google".into(),
            audience: LIST.into(),
            tier_audiences: Default::default(),
            keys,
        }
    }

    fn export() -> ExportSpec {
        ExportSpec {
            name: "cart_abandoners".into(),
            source: ExportSource::Segment { segment_id: 7 },
            mode: ExportMode::Membership,
            cadence: Cadence::default(),
            identity: IdentitySpec {
                golden: IdKind::Email,
                fallbacks: vec![IdKind::Phone],
                default_phone_region: Some("US".into()),
            },
            attributes: Vec::new(),
            tiers: Vec::new(),
            exit_on: Vec::new(),
            suppress: Vec::new(),
            destinations: vec![binding(Vec::new())],
            guard_rails: GuardRails::default(),
            test_profiles: Vec::new(),
        }
    }

    fn op(kind: OpKind, id: Option<&str>, email: Option<&str>, phone: Option<&str>) -> DeliveryOp {
        DeliveryOp {
            op: kind,
            person_key: PersonKey(format!("id:{}", id.or(email).unwrap_or("anon"))),
            ids: Identifiers {
                id: id.map(str::to_string),
                email: email.map(str::to_string),
                cio_id: None,
                phone: phone.map(str::to_string),
            },
            audience: LIST.into(),
            tier: None,
            attributes: Default::default(),
            event: None,
            source_ts: 0,
            intake_ts: 0,
        }
    }

    struct Setup {
        _running: RunningSim,
        _dir: tempfile::TempDir,
        sim: GoogleSim,
        dest: GoogleCustomerMatchDestination,
    }

    fn state_in(dir: &tempfile::TempDir) -> Arc<dyn StateStore> {
        Arc::new(
            crate::adapters::embedded::state::EmbeddedStateStore::open(&dir.path().join("s.redb"))
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    async fn setup_with(
        config: GoogleSimConfig,
        dest_spec: impl FnOnce(&str) -> DestinationSpec,
        token: &str,
    ) -> Setup {
        let (running, sim) = GoogleSim::start(config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sim.create_user_list(CUSTOMER, LIST);
        let secrets = MapSecrets::default()
            .with("GOOGLE_ADS_DEVELOPER_TOKEN", DEFAULT_DEVELOPER_TOKEN)
            .with("GOOGLE_ADS_ACCESS_TOKEN", token);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dest = GoogleCustomerMatchDestination::new(
            "google".into(),
            &dest_spec(&running.base_url),
            &secrets,
            reqwest::Client::new(),
            Arc::new(crate::ports::SystemClock),
            state_in(&dir),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Setup {
            _running: running,
            _dir: dir,
            sim,
            dest,
        }
    }

    async fn setup(batch_size: usize) -> Setup {
        setup_with(
            GoogleSimConfig::default(),
            |url| spec(url, batch_size, None, false),
            DEFAULT_ACCESS_TOKEN,
        )
        .await
    }

    #[tokio::test]
    async fn adds_land_as_hashed_identifiers_and_removes_take_them_out() {
        let t = setup(100).await;
        let ops = vec![
            op(
                OpKind::Add,
                None,
                Some(" Ann@Example.com "),
                Some("+1 650-253-0000"),
            ),
            op(OpKind::Update, None, Some("bob@example.com"), None),
            op(OpKind::Add, Some("u3"), None, None),
        ];
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes[0], OpOutcome::Accepted);
        assert_eq!(outcomes[1], OpOutcome::Accepted);
        assert!(
            matches!(outcomes[2], OpOutcome::Unmatched { .. }),
            "default keys are email and phone"
        );
        assert_eq!(t.sim.member_count(CUSTOMER, LIST), 2);
        assert!(t.sim.has_member_with(
            CUSTOMER,
            LIST,
            "hashedEmail",
            &sha256_hex("ann@example.com")
        ));
        assert!(t.sim.has_member_with(
            CUSTOMER,
            LIST,
            "hashedPhoneNumber",
            &sha256_hex("+16502530000")
        ));
        assert!(!t.sim.has_member_with(
            CUSTOMER,
            LIST,
            "hashedPhoneNumber",
            &sha256_hex("16502530000")
        ));

        let remove = vec![op(OpKind::Remove, None, Some("ann@example.com"), None)];
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &remove)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes, vec![OpOutcome::Accepted]);
        assert_eq!(t.sim.member_count(CUSTOMER, LIST), 1);
        assert!(!t.sim.has_member_with(
            CUSTOMER,
            LIST,
            "hashedEmail",
            &sha256_hex("ann@example.com")
        ));
        assert!(t
            .sim
            .jobs()
            .iter()
            .all(|(_, status)| *status == JobStatus::Success));
    }

    #[tokio::test]
    async fn partial_failure_rejects_exactly_the_bad_op() {
        let t = setup(100).await;
        // A CONTACT_INFO list refuses a third-party user id: only op 1 carries one.
        let keys = vec![MatchKey::Email, MatchKey::ExternId];
        let ops = vec![
            op(OpKind::Add, None, Some("a@example.com"), None),
            op(OpKind::Add, Some("u2"), None, None),
            op(OpKind::Add, None, Some("c@example.com"), None),
        ];
        let outcomes = t
            .dest
            .send(&export(), &binding(keys), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes[0], OpOutcome::Accepted);
        match &outcomes[1] {
            OpOutcome::Rejected { reason } => {
                assert!(reason.contains("INCOMPATIBLE_UPLOAD_KEY_TYPE"), "{reason}")
            }
            other => panic!("expected rejected, got {other:?}"),
        }
        assert_eq!(outcomes[2], OpOutcome::Accepted);
        assert_eq!(t.sim.member_count(CUSTOMER, LIST), 2);
    }

    #[tokio::test]
    async fn one_job_takes_all_chunks_then_runs() {
        let t = setup(2).await;
        let ops: Vec<DeliveryOp> = (0..5)
            .map(|i| op(OpKind::Add, None, Some(&format!("p{i}@example.com")), None))
            .collect();
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(outcomes.iter().all(|o| *o == OpOutcome::Accepted));
        assert_eq!(t.sim.member_count(CUSTOMER, LIST), 5);
        let paths: Vec<String> = t.sim.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths.len(), 5, "{paths:?}");
        assert!(paths[0].ends_with("offlineUserDataJobs:create"));
        assert!(paths[1..4].iter().all(|p| p.ends_with(":addOperations")));
        assert!(paths[4].ends_with(":run"));
        let sizes: Vec<usize> = t.sim.requests().iter().map(|r| r.operations).collect();
        assert_eq!(&sizes[1..4], &[2, 2, 1]);
        assert_eq!(t.sim.jobs().len(), 1);
    }

    #[tokio::test]
    async fn wrong_token_is_permanent() {
        let t = setup_with(
            GoogleSimConfig::default(),
            |url| spec(url, 100, None, false),
            "expired",
        )
        .await;
        let ops = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
        match t.dest.send(&export(), &binding(Vec::new()), &ops).await {
            Err(DestinationError::Permanent { message, .. }) => {
                assert!(message.contains("UNAUTHENTICATED"), "{message}")
            }
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn login_customer_id_is_sent_and_a_wrong_one_is_permanent() {
        let config = || GoogleSimConfig {
            login_customer_id: Some("9999999999".into()),
            ..GoogleSimConfig::default()
        };
        let ops = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
        let good = setup_with(
            config(),
            |url| spec(url, 100, Some("9999999999"), false),
            DEFAULT_ACCESS_TOKEN,
        )
        .await;
        let outcomes = good
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes, vec![OpOutcome::Accepted]);
        let bad = setup_with(
            config(),
            |url| spec(url, 100, Some("1111111111"), false),
            DEFAULT_ACCESS_TOKEN,
        )
        .await;
        match bad.dest.send(&export(), &binding(Vec::new()), &ops).await {
            Err(DestinationError::Permanent { message, .. }) => {
                assert!(message.contains("PERMISSION_DENIED"), "{message}")
            }
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn quota_and_server_errors_are_retryable() {
        let t = setup(100).await;
        let ops = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
        t.sim.fail_next(1, GoogleFault::ResourceExhausted);
        match t.dest.send(&export(), &binding(Vec::new()), &ops).await {
            Err(DestinationError::Retryable {
                retry_after,
                message,
                ..
            }) => {
                assert!(message.contains("RESOURCE_EXHAUSTED"), "{message}");
                assert_eq!(retry_after, Some(Duration::from_secs(30)));
            }
            other => panic!("expected retryable, got {other:?}"),
        }
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            outcomes,
            vec![OpOutcome::Accepted],
            "the retried job goes through"
        );
        t.sim.fail_next(1, GoogleFault::Unavailable);
        assert!(t
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .is_err_and(|e| e.is_retryable()));
        t.sim.fail_next(1, GoogleFault::Internal);
        assert!(t
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .is_err_and(|e| e.is_retryable()));
    }

    #[tokio::test]
    async fn a_list_busy_with_another_job_is_retryable() {
        let config = GoogleSimConfig {
            run_completes: false,
            ..GoogleSimConfig::default()
        };
        let t = setup_with(
            config,
            |url| spec(url, 100, None, false),
            DEFAULT_ACCESS_TOKEN,
        )
        .await;
        let ops = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
        let first = t.dest.send(&export(), &binding(Vec::new()), &ops).await;
        assert!(first.is_ok(), "{first:?}");
        let second = t.dest.send(&export(), &binding(Vec::new()), &ops).await;
        assert!(second.is_err_and(|e| e.is_retryable()));
        t.sim.complete_jobs();
        assert_eq!(t.sim.member_count(CUSTOMER, LIST), 1);
    }

    #[tokio::test]
    async fn three_sends_to_one_list_while_its_job_runs_30s_wait_one_job_at_a_time() {
        let config = GoogleSimConfig {
            job_duration: Duration::from_secs(30),
            ..GoogleSimConfig::default()
        };
        let t = setup_with(
            config,
            |url| {
                let mut s = spec(url, 100, None, false);
                if let DestinationSettings::GoogleCustomerMatch { job_wait_ms, .. } =
                    &mut s.settings
                {
                    *job_wait_ms = 10_000;
                }
                s
            },
            DEFAULT_ACCESS_TOKEN,
        )
        .await;
        let max_attempts = 5;
        for n in 0..3 {
            let ops = vec![op(
                OpKind::Add,
                None,
                Some(&format!("p{n}@example.com")),
                None,
            )];
            let mut attempts = 0;
            let outcomes = loop {
                attempts += 1;
                assert!(attempts <= max_attempts, "send {n} would be dead-lettered");
                match t.dest.send(&export(), &binding(Vec::new()), &ops).await {
                    Ok(outcomes) => break outcomes,
                    Err(DestinationError::Retryable {
                        retry_after: Some(wait),
                        message,
                        ..
                    }) => {
                        assert!(message.contains("busy"), "{message}");
                        // The queue brings the job back after `wait` (simulated).
                        t.sim.advance(wait);
                    }
                    Err(e) => panic!("send {n}: {e}"),
                }
            };
            assert_eq!(outcomes, vec![OpOutcome::Accepted], "send {n}");
        }
        t.sim.advance(Duration::from_secs(30));
        assert_eq!(t.sim.max_running_per_list(), 1, "one job at a time");
        assert_eq!(
            t.sim.concurrent_refusals(),
            0,
            "never CONCURRENT_MODIFICATION"
        );
        assert_eq!(t.sim.jobs().len(), 3);
        assert_eq!(
            t.sim.member_count(CUSTOMER, LIST),
            3,
            "every operation applied"
        );
    }

    #[tokio::test]
    async fn gmail_dots_removed_only_when_the_destination_asks() {
        let ops = vec![op(OpKind::Add, None, Some("John.Smith@gmail.com"), None)];
        let plain = setup(100).await;
        plain
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(plain.sim.has_member_with(
            CUSTOMER,
            LIST,
            "hashedEmail",
            &sha256_hex("john.smith@gmail.com")
        ));
        let dotless = setup_with(
            GoogleSimConfig::default(),
            |url| spec(url, 100, None, true),
            DEFAULT_ACCESS_TOKEN,
        )
        .await;
        dotless
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(dotless.sim.has_member_with(
            CUSTOMER,
            LIST,
            "hashedEmail",
            &sha256_hex("johnsmith@gmail.com")
        ));
    }

    #[tokio::test]
    async fn nothing_matchable_sends_nothing() {
        let t = setup(100).await;
        let ops = vec![
            op(OpKind::Add, Some("u1"), None, None),
            op(OpKind::Event, None, Some("a@example.com"), None),
        ];
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(outcomes[0], OpOutcome::Unmatched { .. }));
        assert!(matches!(outcomes[1], OpOutcome::Rejected { .. }));
        assert_eq!(t.sim.request_count(), 0);
    }

    #[tokio::test]
    async fn audience_size_reads_the_user_list_size() {
        let t = setup(100).await;
        let ops = vec![
            op(OpKind::Add, None, Some("a@example.com"), None),
            op(OpKind::Add, None, Some("b@example.com"), None),
        ];
        t.dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let size = t
            .dest
            .audience_size(&export(), &binding(Vec::new()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(size, Some(2));
    }

    fn with_consent(mut s: DestinationSpec, consent: GoogleConsentSpec) -> DestinationSpec {
        if let DestinationSettings::GoogleCustomerMatch { consent: c, .. } = &mut s.settings {
            *c = consent;
        }
        s
    }

    fn consent(user_data: ConsentStatus, personalization: ConsentStatus) -> GoogleConsentSpec {
        GoogleConsentSpec {
            ad_user_data: user_data,
            ad_personalization: personalization,
            attribute: Some("ads_consent".into()),
            country_attribute: Some("country".into()),
            unknown_country_is_eea: true,
        }
    }

    fn with_attrs(mut op: DeliveryOp, attrs: &[(&str, Value)]) -> DeliveryOp {
        op.attributes = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        op
    }

    fn sim_consent(user_data: &str, personalization: &str) -> Option<SimConsent> {
        Some(SimConsent {
            ad_user_data: user_data.into(),
            ad_personalization: personalization.into(),
        })
    }

    #[tokio::test]
    async fn create_jobs_carry_the_destinations_consent_and_remove_jobs_none() {
        let t = setup(100).await;
        let adds = vec![op(OpKind::Add, None, Some("a@example.com"), None)];
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &adds)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes, vec![OpOutcome::Accepted]);
        let removes = vec![op(OpKind::Remove, None, Some("a@example.com"), None)];
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &removes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes, vec![OpOutcome::Accepted]);
        let jobs = t.sim.job_details();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].consent, sim_consent("GRANTED", "GRANTED"));
        assert_eq!((jobs[0].creates, jobs[0].removes), (1, 0));
        assert_eq!(jobs[1].consent, None, "Google needs no consent for removes");
        assert_eq!((jobs[1].creates, jobs[1].removes), (0, 1));
        assert!(jobs.iter().all(|j| j.operation_consents.is_empty()));
    }

    #[tokio::test]
    async fn creates_and_removes_never_share_a_job_the_smaller_kind_waits() {
        let t = setup(100).await;
        let ops = vec![
            op(OpKind::Remove, None, Some("gone@example.com"), None),
            op(OpKind::Add, None, Some("a@example.com"), None),
            op(OpKind::Update, None, Some("b@example.com"), None),
        ];
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(&outcomes[0], OpOutcome::Retry { reason } if reason.contains("separate jobs")),
            "{outcomes:?}"
        );
        assert_eq!(&outcomes[1..], &[OpOutcome::Accepted, OpOutcome::Accepted]);
        let jobs = t.sim.job_details();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].creates, jobs[0].removes), (2, 0));
        // The remove comes back (the queue retries it) and gets its own job.
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &ops[..1])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes, vec![OpOutcome::Accepted]);
        let jobs = t.sim.job_details();
        assert_eq!((jobs[1].creates, jobs[1].removes), (0, 1));
    }

    #[tokio::test]
    async fn eea_people_without_both_consents_are_not_sent_and_own_grants_get_their_own_job() {
        let t = setup_with(
            GoogleSimConfig::default(),
            |url| {
                with_consent(
                    spec(url, 100, None, false),
                    consent(ConsentStatus::Unspecified, ConsentStatus::Unspecified),
                )
            },
            DEFAULT_ACCESS_TOKEN,
        )
        .await;
        let ops = vec![
            with_attrs(
                op(OpKind::Add, None, Some("us@example.com"), None),
                &[("country", json!("US"))],
            ),
            with_attrs(
                op(OpKind::Add, None, Some("de@example.com"), None),
                &[("country", json!("DE"))],
            ),
            op(OpKind::Add, None, Some("nowhere@example.com"), None),
            with_attrs(
                op(OpKind::Add, None, Some("fr@example.com"), None),
                &[("country", json!("FR")), ("ads_consent", json!("granted"))],
            ),
            with_attrs(
                op(OpKind::Add, None, Some("no@example.com"), None),
                &[("country", json!("US")), ("ads_consent", json!(false))],
            ),
            with_attrs(
                op(OpKind::Remove, None, Some("old@example.de"), None),
                &[("country", json!("DE"))],
            ),
        ];
        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes[0], OpOutcome::Accepted);
        for i in [1, 2] {
            assert!(
                matches!(&outcomes[i], OpOutcome::Unmatched { reason } if reason.starts_with("no consent (EEA)")),
                "{i}: {outcomes:?}"
            );
        }
        assert!(
            matches!(&outcomes[3], OpOutcome::Retry { .. }),
            "granted in a job of its own: {outcomes:?}"
        );
        assert!(
            matches!(&outcomes[4], OpOutcome::Unmatched { reason } if reason.contains("CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS")),
            "{outcomes:?}"
        );
        assert!(
            matches!(&outcomes[5], OpOutcome::Retry { .. }),
            "removes need no consent, in their own job: {outcomes:?}"
        );
        let jobs = t.sim.job_details();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].consent, sim_consent("UNSPECIFIED", "UNSPECIFIED"));
        assert_eq!(jobs[0].creates, 1);

        let outcomes = t
            .dest
            .send(&export(), &binding(Vec::new()), &ops[3..4])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes, vec![OpOutcome::Accepted]);
        let jobs = t.sim.job_details();
        assert_eq!(jobs[1].consent, sim_consent("GRANTED", "GRANTED"));
        assert!(t.sim.has_member_with(
            CUSTOMER,
            LIST,
            "hashedEmail",
            &sha256_hex("fr@example.com")
        ));
        assert!(!t.sim.has_member_with(
            CUSTOMER,
            LIST,
            "hashedEmail",
            &sha256_hex("de@example.com")
        ));
    }

    #[test]
    fn a_denying_consent_setting_is_permanent_before_any_call() {
        let secrets = MapSecrets::default()
            .with("GOOGLE_ADS_DEVELOPER_TOKEN", "d")
            .with("GOOGLE_ADS_ACCESS_TOKEN", "t");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let err = GoogleCustomerMatchDestination::new(
            "google".into(),
            &with_consent(
                spec("http://127.0.0.1:1", 100, None, false),
                consent(ConsentStatus::Denied, ConsentStatus::Granted),
            ),
            &secrets,
            reqwest::Client::new(),
            Arc::new(crate::ports::SystemClock),
            state_in(&dir),
        )
        .err();
        match err {
            Some(DestinationError::Permanent { message, .. }) => {
                assert!(message.contains("CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"))
            }
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[test]
    fn the_job_takes_the_largest_kind_ties_going_to_the_earliest_op() {
        let granted = JobKind::Create {
            ad_user_data: ConsentStatus::Granted,
            ad_personalization: ConsentStatus::Granted,
        };
        let ops = |kinds: &[JobKind]| -> Vec<Operation> {
            kinds
                .iter()
                .enumerate()
                .map(|(index, kind)| Operation {
                    index,
                    identifiers: 1,
                    kind: *kind,
                    body: Value::Null,
                })
                .collect()
        };
        use JobKind::Remove;
        assert_eq!(job_kind(&ops(&[Remove, granted, granted])), Some(granted));
        assert_eq!(job_kind(&ops(&[Remove, granted])), Some(Remove));
        assert_eq!(job_kind(&ops(&[granted, Remove])), Some(granted));
        assert_eq!(job_kind(&ops(&[])), None);
    }

    #[test]
    fn missing_secret_is_permanent_and_names_the_variable() {
        let secrets = MapSecrets::default().with("GOOGLE_ADS_DEVELOPER_TOKEN", "d");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let err = GoogleCustomerMatchDestination::new(
            "google".into(),
            &spec("http://127.0.0.1:1", 100, None, false),
            &secrets,
            reqwest::Client::new(),
            Arc::new(crate::ports::SystemClock),
            state_in(&dir),
        )
        .err();
        match err {
            Some(DestinationError::Permanent { message, .. }) => {
                assert!(message.contains("GOOGLE_ADS_ACCESS_TOKEN"))
            }
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[test]
    fn partial_failure_indices_read_in_either_field_case() {
        let answer = json!({"partial_failure_error": {"code": 3, "details": [{
            "errors": [{
                "error_code": {"offline_user_data_job_error": "INVALID_SHA256_FORMAT"},
                "message": "bad hash",
                "location": {"field_path_elements": [
                    {"field_name": "operations", "index": "4"},
                    {"field_name": "create"}
                ]}
            }]
        }]}});
        let failures = partial_failures(&answer);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, Some(4));
        assert!(failures[0].1.contains("bad hash"));
    }

    #[test]
    fn chunks_respect_operation_and_identifier_caps() {
        let ops = |n: usize, identifiers: usize| -> Vec<Operation> {
            (0..n)
                .map(|index| Operation {
                    index,
                    identifiers,
                    kind: JobKind::Remove,
                    body: Value::Null,
                })
                .collect()
        };
        let sizes = |ops: &[Operation], max: usize| -> Vec<usize> {
            chunk_operations(ops, max).iter().map(|c| c.len()).collect()
        };
        assert_eq!(
            sizes(&ops(7, 1), 3),
            vec![3, 3, 1],
            "batch_size operations at most"
        );
        assert_eq!(
            sizes(&ops(7, 40_000), 3),
            vec![2, 2, 2, 1],
            "100,000 identifiers at most"
        );
        assert_eq!(sizes(&ops(2, 1), 10), vec![2]);
        assert!(sizes(&ops(0, 1), 10).is_empty());
    }
}
