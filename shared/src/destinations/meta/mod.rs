//! Meta Custom Audiences (customer list), `API-CONTRACTS.md` §3a.
//!
//! Ops are grouped by audience and kind: Add / Update go to
//! `POST /{v}/{audience}/users`, Remove to `DELETE /{v}/{audience}/users`
//! (the same JSON body; Graph reads a DELETE's parameters from the body as it
//! does a POST's). Each request carries at most `batch_size` rows (≤ 10,000).
//!
//! **Removes go on the wire before adds.** Meta matches a row on any of its
//! keys, so when a person's email or phone changes, the remove of the old row
//! (same EXTERN_ID, same phone) sent *after* the add of the new row takes the
//! person we just added out again. Ops are therefore sent in waves: within a
//! wave, every audience's removes precede its adds; a person whose ops turn
//! from add to remove for the same audience (entered, then left, in one
//! batch) moves to the next wave, so their later remove is never overtaken.
//!
//! **A flagged audience pauses.** Since 2025-09-02 Meta flags audiences whose
//! name suggests a health or financial condition (`operation_status` 471);
//! every upload to one answers error 100 subcode 1713230 until a person
//! resolves it in Ads Manager. Its ops are rejected with that reason (never
//! retried, never dead-lettered), the audience is paused for the life of the
//! process (later ops are rejected without a call) and reported by
//! `Destination::alerts` so the deliver function alarms with its id.
//!
//! **Quota.** Every answer's `X-Business-Use-Case-Usage` is read; above 75 %
//! of the hourly business-use-case quota requests are spaced out, above 95 %
//! (or while Meta says to wait) the job goes back to the queue before Meta
//! answers 80003.
//! When one group needs more than one request, its requests share a session
//! (`session_id` random positive int64, `batch_seq` from 1, `last_batch_flag`
//! on the last, `estimated_num_total`), as Meta asks for large uploads.
//!
//! Rows are built by `domain::identity::meta_row` from the binding's match
//! keys (or the kind's defaults): a person with no usable identifier is
//! `Unmatched` and never sent. Meta answers with counts and only *samples* of
//! invalid entries, so the rule is: a row is `Rejected` when one of its cell
//! values is a key of `invalid_entry_samples`; every other row of an answered
//! request is `Accepted` (invalid entries beyond the samples cannot be tied to
//! a row and are only logged by count).
//!
//! The access token goes in `Authorization: Bearer`, never in the URL, so it
//! cannot leak into an error message. Errors are classified by Graph code
//! (§3a table), then by HTTP status. A retried job resends every chunk: adds
//! and removes are idempotent at Meta.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    send_slots, status_is_retryable, AudienceStats, Destination, DestinationAlert,
    DestinationError, OpOutcome,
};
use crate::domain::identity::{match_keys, meta_row, meta_schema, IdentityOptions};
use crate::domain::model::DeliveryOp;
use crate::domain::spec::{
    DestinationKind, DestinationSettings, DestinationSpec, ExportDestination, ExportSpec,
};
use crate::ports::{Secret, Secrets};

pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// Graph version used when the spec names none: the newest (2026-11-04).
pub const DEFAULT_API_VERSION: &str = "v27.0";
/// Error 100 with this subcode: the audience is flagged (operation_status 471).
pub const FLAGGED_AUDIENCE_SUBCODE: i64 = 1713230;
/// Error code of a deprecated (expired) Graph API version.
pub const DEPRECATED_VERSION_CODE: i64 = 2635;
/// Usage (percent of the hourly quota) from which requests are spaced out.
const USAGE_SLOW_PCT: f64 = 75.0;
/// Usage from which no request is sent until Meta's usage falls.
const USAGE_STOP_PCT: f64 = 95.0;
/// Meta's cap on rows per `users` request.
pub const MAX_ROWS_PER_REQUEST: usize = 10_000;

/// Graph codes worth another attempt: rate limits (80003, 4, 17, 613, 32)
/// and unknown / transient errors (1, 2).
pub(crate) const RETRYABLE_CODES: &[i64] = &[80003, 4, 17, 613, 32, 1, 2];
/// Graph codes no retry will fix (parameters, token, permissions, abuse,
/// deprecated version, parameter counts, failed audience update).
pub(crate) const PERMANENT_CODES: &[i64] = &[100, 190, 200, 368, 2635, 105, 194, 2650];

pub struct MetaAudienceDestination {
    name: String,
    /// Base URL with the API version, e.g. `https://graph.facebook.com/v25.0`.
    api_url: String,
    ad_account_id: String,
    access_token: Secret,
    batch_size: usize,
    http: reqwest::Client,
    /// Audiences Meta flagged, paused for the life of the process.
    paused: Mutex<BTreeSet<String>>,
    /// Set once Meta answered 2635 (the configured version has expired).
    version_deprecated: std::sync::atomic::AtomicBool,
    /// What `X-Business-Use-Case-Usage` last said.
    usage: Mutex<UsageState>,
}

/// The business-use-case quota as Meta last reported it.
#[derive(Debug, Default)]
struct UsageState {
    /// Highest of call_count / total_cputime / total_time, in percent.
    pct: f64,
    /// No request before this instant (Meta's estimated_time_to_regain_access).
    blocked_until: Option<Instant>,
    /// When `pct` was read: a reading older than `USAGE_STALE` no longer
    /// holds requests back (the next answer brings a fresh one).
    observed_at: Option<Instant>,
}

/// How long a usage reading is trusted.
const USAGE_STALE: Duration = Duration::from_secs(60);

/// Why a Graph call failed: the flagged-audience case is handled per
/// audience, everything else fails the request.
enum CallError {
    AudienceFlagged(String),
    Destination(DestinationError),
}

#[cfg(test)]
impl CallError {
    fn is_retryable(&self) -> bool {
        matches!(self, CallError::Destination(e) if e.is_retryable())
    }
}

impl From<DestinationError> for CallError {
    fn from(e: DestinationError) -> Self {
        CallError::Destination(e)
    }
}

impl std::fmt::Debug for MetaAudienceDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaAudienceDestination")
            .field("name", &self.name)
            .field("api_url", &self.api_url)
            .field("ad_account_id", &self.ad_account_id)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// The answer to a `users` request.
#[derive(Debug, Default, Deserialize)]
struct UsersResponse {
    #[serde(default)]
    num_received: Option<u64>,
    #[serde(default)]
    num_invalid_entries: Option<u64>,
    #[serde(default)]
    invalid_entry_samples: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GraphErrorBody {
    pub(crate) error: Option<GraphError>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GraphError {
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) code: Option<i64>,
    #[serde(default)]
    pub(crate) error_subcode: Option<i64>,
    #[serde(default)]
    pub(crate) fbtrace_id: Option<String>,
    /// The message meant for a person (Conversions API errors carry it).
    #[serde(default)]
    pub(crate) error_user_msg: Option<String>,
}

/// One row to send, remembering which op it came from.
struct Row {
    index: usize,
    cells: Vec<String>,
}

/// Session fields of one request of a multi-request upload.
struct SessionPart {
    id: i64,
    batch_seq: usize,
    last: bool,
    total: usize,
}

impl MetaAudienceDestination {
    pub fn new(
        name: String,
        spec: &DestinationSpec,
        secrets: &dyn Secrets,
        http: reqwest::Client,
    ) -> Result<Self, DestinationError> {
        let permanent = |message: String| DestinationError::Permanent {
            destination: name.clone(),
            message,
        };
        let DestinationSettings::MetaAudience {
            api_version,
            ad_account_id,
            access_token_env,
        } = &spec.settings
        else {
            return Err(permanent("settings are not of kind meta_audience".into()));
        };
        let access_token = super::required_secret(secrets, &name, access_token_env)?;
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
            ad_account_id: ad_account_id.trim_start_matches("act_").to_string(),
            access_token,
            batch_size: spec.batch_size.clamp(1, MAX_ROWS_PER_REQUEST),
            name,
            http,
            paused: Mutex::new(BTreeSet::new()),
            version_deprecated: std::sync::atomic::AtomicBool::new(false),
            usage: Mutex::new(UsageState::default()),
        })
    }

    fn permanent(&self, message: String) -> DestinationError {
        DestinationError::Permanent {
            destination: self.name.clone(),
            message,
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> DestinationError {
        let e = e.without_url();
        if e.is_builder() {
            self.permanent(format!("could not build the request: {e}"))
        } else {
            DestinationError::Retryable {
                destination: self.name.clone(),
                message: format!("transport: {e}"),
                retry_after: None,
            }
        }
    }

    /// A failed Graph answer, classified by error code, then by HTTP status.
    fn graph_error(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> CallError {
        let parsed: GraphErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let error = parsed.error.unwrap_or_default();
        if error.code == Some(100) && error.error_subcode == Some(FLAGGED_AUDIENCE_SUBCODE) {
            return CallError::AudienceFlagged(
                error
                    .message
                    .clone()
                    .unwrap_or_else(|| "audience flagged".into()),
            );
        }
        if error.code == Some(DEPRECATED_VERSION_CODE) {
            self.version_deprecated
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                destination = %self.name,
                api_url = %self.api_url,
                "Meta refuses this Graph API version (error 2635): set api_version to {DEFAULT_API_VERSION} or newer"
            );
        }
        let detail = match &error.message {
            Some(m) => m.clone(),
            None => String::from_utf8_lossy(body).chars().take(200).collect(),
        };
        let mut message = format!("HTTP {status}");
        if let Some(code) = error.code {
            message.push_str(&format!(", code {code}"));
        }
        if let Some(sub) = error.error_subcode {
            message.push_str(&format!(", subcode {sub}"));
        }
        message.push_str(&format!(": {detail}"));
        if let Some(trace) = &error.fbtrace_id {
            message.push_str(&format!(" (fbtrace_id {trace})"));
        }
        if error.code == Some(190) {
            message.push_str(" (the access token needs replacing)");
        }
        let retryable = match error.code {
            Some(code) if RETRYABLE_CODES.contains(&code) => true,
            Some(code) if PERMANENT_CODES.contains(&code) => false,
            _ => status_is_retryable(status),
        };
        CallError::Destination(if retryable {
            DestinationError::Retryable {
                destination: self.name.clone(),
                message,
                retry_after: retry_after(headers),
            }
        } else {
            self.permanent(message)
        })
    }

    /// Before a request: wait a little when the quota is filling, or send the
    /// job back when it is (nearly) spent, so Meta never has to say 80003.
    async fn pace(&self) -> Result<(), DestinationError> {
        let now = Instant::now();
        let (pct, blocked_until, age) = {
            let usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
            let age = usage
                .observed_at
                .map_or(USAGE_STALE, |at| now.saturating_duration_since(at));
            (usage.pct, usage.blocked_until, age)
        };
        let pct = if age < USAGE_STALE { pct } else { 0.0 };
        if let Some(until) = blocked_until.filter(|u| *u > now) {
            return Err(DestinationError::Retryable {
                destination: self.name.clone(),
                message: "Meta asked us to wait before the next custom-audience call".into(),
                retry_after: Some(until - now),
            });
        }
        if pct >= USAGE_STOP_PCT {
            return Err(DestinationError::Retryable {
                destination: self.name.clone(),
                message: format!("Meta business-use-case usage at {pct:.0} %: holding off"),
                retry_after: Some(USAGE_STALE.saturating_sub(age).max(Duration::from_secs(1))),
            });
        }
        if pct >= USAGE_SLOW_PCT {
            // Up to 2 s between requests as usage climbs from 75 % to 95 %.
            let share = (pct - USAGE_SLOW_PCT) / (USAGE_STOP_PCT - USAGE_SLOW_PCT);
            tokio::time::sleep(Duration::from_millis((share * 2000.0) as u64)).await;
        }
        Ok(())
    }

    /// Remember what `X-Business-Use-Case-Usage` says about this account.
    fn observe_usage(&self, headers: &reqwest::header::HeaderMap) {
        let Some(report) = business_usage(headers, &self.ad_account_id) else {
            return;
        };
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        usage.pct = report.pct;
        usage.observed_at = Some(Instant::now());
        usage.blocked_until = (report.regain_minutes > 0)
            .then(|| Instant::now() + Duration::from_secs(report.regain_minutes * 60));
    }

    fn is_paused(&self, audience: &str) -> bool {
        self.paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(audience)
    }

    fn pause(&self, audience: &str, message: &str) {
        let newly = self
            .paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(audience.to_string());
        if newly {
            tracing::error!(
                destination = %self.name,
                audience,
                meta_message = message,
                "Meta flagged this audience (error 100, subcode 1713230): paused; resolve it in Ads Manager, then re-sync the export"
            );
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        self.pace().await?;
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.access_token.expose());
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        self.observe_usage(&headers);
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            return Err(self.graph_error(status, &headers, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            // Meta may have applied the rows: resending is safe, losing them is not.
            CallError::Destination(DestinationError::Retryable {
                destination: self.name.clone(),
                message: format!("unreadable Graph answer: {e}"),
                retry_after: None,
            })
        })
    }

    /// Send one group (one audience, one direction) in chunks; fills
    /// `outcomes`. A flagged audience pauses it and rejects its rows.
    async fn send_group(
        &self,
        audience: &str,
        mode: Edit,
        schema: &[&str],
        rows: &[Row],
        outcomes: &mut [Option<OpOutcome>],
    ) -> Result<(), DestinationError> {
        match self
            .send_group_chunks(audience, mode, schema, rows, outcomes)
            .await
        {
            Ok(()) => Ok(()),
            Err(CallError::Destination(e)) => Err(e),
            Err(CallError::AudienceFlagged(message)) => {
                self.pause(audience, &message);
                for row in rows {
                    if let Some(slot @ None) = outcomes.get_mut(row.index) {
                        *slot = Some(flagged_outcome(audience));
                    }
                }
                Ok(())
            }
        }
    }

    async fn send_group_chunks(
        &self,
        audience: &str,
        mode: Edit,
        schema: &[&str],
        rows: &[Row],
        outcomes: &mut [Option<OpOutcome>],
    ) -> Result<(), CallError> {
        let chunks: Vec<&[Row]> = rows.chunks(self.batch_size).collect();
        // A replace always goes in a session: its last batch swaps the audience.
        let session_id = (mode == Edit::Replace || chunks.len() > 1).then(new_session_id);
        let remove = mode == Edit::Remove;
        let url = match mode {
            Edit::Replace => format!("{}/{}/usersreplace", self.api_url, audience),
            _ => format!("{}/{}/users", self.api_url, audience),
        };
        let method = if remove {
            reqwest::Method::DELETE
        } else {
            reqwest::Method::POST
        };
        for (n, chunk) in chunks.iter().enumerate() {
            let session = session_id.map(|id| SessionPart {
                id,
                batch_seq: n + 1,
                last: n + 1 == chunks.len(),
                total: rows.len(),
            });
            let body = users_body(schema, chunk, session.as_ref());
            let answer = self.call(method.clone(), url.clone(), Some(&body)).await?;
            let answer: UsersResponse = serde_json::from_value(answer).unwrap_or_default();
            let rejected = rejected_rows(chunk, answer.invalid_entry_samples.as_ref());
            let invalid = answer.num_invalid_entries.unwrap_or(0);
            if invalid as usize > rejected.len() {
                tracing::warn!(
                    destination = %self.name,
                    audience,
                    invalid,
                    tied_to_rows = rejected.len(),
                    "Meta counted invalid entries it gave no sample of"
                );
            }
            tracing::info!(
                destination = %self.name,
                audience,
                remove,
                rows = chunk.len(),
                received = answer.num_received.unwrap_or(0),
                invalid,
                "Meta audience request answered"
            );
            for row in chunk.iter() {
                let outcome = match rejected.get(&row.index) {
                    Some(reason) => OpOutcome::Rejected {
                        reason: reason.clone(),
                    },
                    None => OpOutcome::Accepted,
                };
                if let Some(slot) = outcomes.get_mut(row.index) {
                    *slot = Some(outcome);
                }
            }
        }
        Ok(())
    }
}

/// What one group of rows does to its audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edit {
    Add,
    Remove,
    /// `usersreplace`: the audience ends holding exactly these rows.
    Replace,
}

/// The outcome of an op for a flagged (paused) audience.
fn flagged_outcome(audience: &str) -> OpOutcome {
    OpOutcome::Rejected {
        reason: format!(
            "Meta audience {audience} is flagged (operation_status 471, error 100 subcode 1713230): paused until resolved in Ads Manager"
        ),
    }
}

/// What `X-Business-Use-Case-Usage` says about one ad account.
#[derive(Clone, Copy, Debug, PartialEq)]
struct UsageReport {
    pct: f64,
    regain_minutes: u64,
}

/// The highest usage percentage and wait reported for `ad_account_id` (or,
/// when the header names no such key, for any account in it).
fn business_usage(
    headers: &reqwest::header::HeaderMap,
    ad_account_id: &str,
) -> Option<UsageReport> {
    let usage: Map<String, Value> = headers
        .get("x-business-use-case-usage")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())?;
    let entries: Vec<&Value> = match usage
        .get(ad_account_id)
        .or_else(|| usage.get(&format!("act_{ad_account_id}")))
    {
        Some(Value::Array(list)) => list.iter().collect(),
        _ => usage
            .values()
            .filter_map(Value::as_array)
            .flatten()
            .collect(),
    };
    if entries.is_empty() {
        return None;
    }
    let mut report = UsageReport {
        pct: 0.0,
        regain_minutes: 0,
    };
    for entry in entries {
        for field in ["call_count", "total_cputime", "total_time"] {
            if let Some(p) = entry.get(field).and_then(Value::as_f64) {
                report.pct = report.pct.max(p);
            }
        }
        if let Some(m) = entry
            .get("estimated_time_to_regain_access")
            .and_then(Value::as_u64)
        {
            report.regain_minutes = report.regain_minutes.max(m);
        }
    }
    Some(report)
}

/// A random positive int64: unique per ad account in practice.
fn new_session_id() -> i64 {
    let id = rand::random::<i64>() & i64::MAX;
    id.max(1)
}

fn users_body(schema: &[&str], rows: &[Row], session: Option<&SessionPart>) -> Value {
    // LOOKALIKE_VALUE travels as a number (Meta refuses it as text); every
    // other cell is a string.
    let value_at = schema.iter().position(|c| *c == "LOOKALIKE_VALUE");
    let data: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| {
            r.cells
                .iter()
                .enumerate()
                .map(
                    |(i, cell)| match (Some(i) == value_at, cell.parse::<f64>()) {
                        (true, Ok(n)) => serde_json::Number::from_f64(n)
                            .map_or_else(|| Value::String(String::new()), Value::Number),
                        _ => Value::String(cell.clone()),
                    },
                )
                .collect()
        })
        .collect();
    let mut body = json!({ "payload": { "schema": schema, "data": data } });
    if let (Some(s), Some(obj)) = (session, body.as_object_mut()) {
        obj.insert(
            "session".into(),
            json!({
                "session_id": s.id,
                "batch_seq": s.batch_seq,
                "last_batch_flag": s.last,
                "estimated_num_total": s.total,
            }),
        );
    }
    body
}

/// Rows whose cell value Meta listed among the invalid samples, with the reason.
fn rejected_rows(rows: &[Row], samples: Option<&Value>) -> BTreeMap<usize, String> {
    let mut out = BTreeMap::new();
    let Some(Value::Object(samples)) = samples else {
        return out;
    };
    for row in rows {
        let hit = row
            .cells
            .iter()
            .filter(|c| !c.is_empty())
            .find_map(|c| samples.get(c.as_str()));
        if let Some(reason) = hit {
            let reason = match reason {
                Value::String(s) if !s.is_empty() => format!("Meta invalid entry: {s}"),
                _ => "Meta counted this row as an invalid entry".to_string(),
            };
            out.insert(row.index, reason);
        }
    }
    out
}

/// The wait Meta asks for: `Retry-After` seconds, else the largest
/// `estimated_time_to_regain_access` (minutes) of `X-Business-Use-Case-Usage`.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(secs) = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs));
    }
    let usage: Map<String, Value> = headers
        .get("x-business-use-case-usage")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())?;
    let minutes = usage
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|u| u.get("estimated_time_to_regain_access")?.as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
}

#[async_trait]
impl Destination for MetaAudienceDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::MetaAudience
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
        let keys = match_keys(binding, DestinationKind::MetaAudience);
        let schema = meta_schema(&keys);
        let opts = IdentityOptions {
            default_phone_region: export.identity.default_phone_region.clone(),
            ..IdentityOptions::default()
        };
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
        // (wave, audience, add?) → rows, in op order: removes before adds.
        let mut groups: BTreeMap<(usize, &str, bool), Vec<Row>> = BTreeMap::new();
        let slots = send_slots(ops);
        for ((index, op), slot) in ops.iter().enumerate().zip(slots) {
            let Some(slot) = slot else {
                outcomes[index] = Some(OpOutcome::Rejected {
                    reason: "Meta Custom Audiences take membership ops, not events".into(),
                });
                continue;
            };
            if self.is_paused(&op.audience) {
                outcomes[index] = Some(flagged_outcome(&op.audience));
                continue;
            }
            match meta_row(&keys, &op.ids, &op.attributes, &opts) {
                Ok(cells) => groups
                    .entry((slot.wave, op.audience.as_str(), slot.add))
                    .or_default()
                    .push(Row { index, cells }),
                Err(e) => {
                    tracing::debug!(
                        destination = %self.name,
                        person = %op.person_key.log_safe(),
                        "no Meta match key"
                    );
                    outcomes[index] = Some(OpOutcome::Unmatched {
                        reason: format!("no Meta match key: {e}"),
                    });
                }
            }
        }
        for ((_, audience, add), rows) in &groups {
            if self.is_paused(audience) {
                for row in rows {
                    outcomes[row.index] = Some(flagged_outcome(audience));
                }
                continue;
            }
            let mode = if *add { Edit::Add } else { Edit::Remove };
            self.send_group(audience, mode, &schema, rows, &mut outcomes)
                .await?;
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

    /// `usersreplace` in one session: the audience ends holding exactly
    /// these members. With no member to send (none, or none matchable)
    /// there is nothing to replace with: `None`, and the caller removes.
    async fn replace_audience(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        audience: &str,
        members: &[DeliveryOp],
    ) -> Result<Option<Vec<OpOutcome>>, DestinationError> {
        let keys = match_keys(binding, DestinationKind::MetaAudience);
        let schema = meta_schema(&keys);
        let opts = IdentityOptions {
            default_phone_region: export.identity.default_phone_region.clone(),
            ..IdentityOptions::default()
        };
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; members.len()];
        if self.is_paused(audience) {
            return Ok(Some(vec![flagged_outcome(audience); members.len()]));
        }
        let mut rows = Vec::new();
        for (index, op) in members.iter().enumerate() {
            match meta_row(&keys, &op.ids, &op.attributes, &opts) {
                Ok(cells) => rows.push(Row { index, cells }),
                Err(e) => {
                    outcomes[index] = Some(OpOutcome::Unmatched {
                        reason: format!("no Meta match key: {e}"),
                    })
                }
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        self.send_group(audience, Edit::Replace, &schema, &rows, &mut outcomes)
            .await?;
        Ok(Some(
            outcomes
                .into_iter()
                .map(|o| {
                    o.unwrap_or(OpOutcome::Retry {
                        reason: "not sent".into(),
                    })
                })
                .collect(),
        ))
    }

    async fn audience_size(
        &self,
        _export: &ExportSpec,
        binding: &ExportDestination,
    ) -> Result<Option<u64>, DestinationError> {
        let url = format!(
            "{}/{}?fields=approximate_count_lower_bound,approximate_count_upper_bound",
            self.api_url, binding.audience
        );
        let answer = match self.call(reqwest::Method::GET, url, None).await {
            Ok(answer) => answer,
            Err(CallError::Destination(e)) => return Err(e),
            Err(CallError::AudienceFlagged(message)) => {
                self.pause(&binding.audience, &message);
                return Ok(None);
            }
        };
        // Meta gives a range; the lower bound is the conservative count.
        // Negative values mean "too small to tell".
        Ok(answer
            .get("approximate_count_lower_bound")
            .and_then(Value::as_i64)
            .and_then(|n| u64::try_from(n).ok()))
    }

    /// The audience's count plus its upload sessions: Meta's own matched /
    /// received figures give reconcile the platform's match rate.
    async fn audience_stats(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
    ) -> Result<AudienceStats, DestinationError> {
        let mut stats = AudienceStats {
            size: self.audience_size(export, binding).await?,
            ..AudienceStats::default()
        };
        let url = format!("{}/{}/sessions", self.api_url, binding.audience);
        match self.call(reqwest::Method::GET, url, None).await {
            Ok(answer) => stats.add_meta_sessions(&answer),
            Err(CallError::Destination(e)) => return Err(e),
            Err(CallError::AudienceFlagged(message)) => self.pause(&binding.audience, &message),
        }
        Ok(stats)
    }

    fn alerts(&self) -> Vec<DestinationAlert> {
        let mut out: Vec<DestinationAlert> = self
            .paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|audience| DestinationAlert::AudiencePaused {
                audience: audience.clone(),
                reason: "flagged by Meta (operation_status 471, subcode 1713230)".into(),
            })
            .collect();
        if self
            .version_deprecated
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            out.push(DestinationAlert::ApiVersionDeprecated {
                api_url: self.api_url.clone(),
            });
        }
        out
    }

    fn describe_output(&self, _export: &ExportSpec, binding: &ExportDestination) -> String {
        format!(
            "Meta custom audience {} (ad account act_{})",
            binding.audience, self.ad_account_id
        )
    }
}

#[cfg(test)]
mod tests;
