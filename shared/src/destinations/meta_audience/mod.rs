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
//! **Quota.** Every answer's `X-Business-Use-Case-Usage` is read for its
//! `custom_audience` entries (`usage`); above 75 % of that hourly quota
//! requests are spaced out, above 95 % (or while Meta says to wait) the job
//! goes back to the queue before Meta answers 80003.
//! When one group needs more than one request, its requests share a session
//! (`session_id` random positive int64, `batch_seq` from 1, `last_batch_flag`
//! on the last, `estimated_num_total`), as Meta asks for large uploads; a
//! session a failed request left open is continued and closed by the next
//! send (`upload`).
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
//! cannot leak into an error message. Errors are classified as Meta defines
//! them (`errors`, `docs/meta-graph.md`): a busy audience (2650 subcodes
//! 1870145 / 1870158), throttling codes and policy blocks are waits, Meta's
//! `is_transient` and codes 1 / 2 are retries, the rest by code, then by
//! HTTP status. A retried job resends every chunk: adds and removes are
//! idempotent at Meta.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use super::{
    send_slots, AudienceStats, Destination, DestinationAlert, DestinationError, OpOutcome,
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
/// Meta's cap on rows per `users` request.
pub const MAX_ROWS_PER_REQUEST: usize = 10_000;

mod errors;
mod upload;
mod usage;

pub(crate) use errors::{retry_after, ErrorClass, GraphError};
pub use errors::{
    AUDIENCE_UPDATE_CODE, BUSY_AUDIENCE_SUBCODES, CUSTOM_AUDIENCE_USE_CASE,
    DEPRECATED_VERSION_CODE, FLAGGED_AUDIENCE_SUBCODE,
};
use upload::{Edit, OpenSession, Row};
use usage::UsageState;

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
    /// What `X-Business-Use-Case-Usage` last said of custom audiences.
    usage: Mutex<UsageState>,
    /// Sessions failed sends left open, by audience and edit.
    open_sessions: Mutex<BTreeMap<(String, Edit), OpenSession>>,
}

/// Why a Graph call failed: the flagged-audience case is handled per
/// audience, everything else fails the request.
enum CallError {
    AudienceFlagged(String),
    Destination(DestinationError),
    /// Meta will take no more batches in the request's session (timed out,
    /// finished, or never started): it must not be continued.
    SessionEnded(DestinationError),
}

#[cfg(test)]
impl CallError {
    fn is_retryable(&self) -> bool {
        matches!(self, CallError::Destination(e) | CallError::SessionEnded(e) if e.is_retryable())
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
            open_sessions: Mutex::new(BTreeMap::new()),
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

    /// A failed Graph answer, classified as Meta defines its errors.
    fn graph_error(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> CallError {
        let error = GraphError::parse(body);
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
        let message = error.describe(status, body, false);
        let asked = retry_after(headers, Some(CUSTOM_AUDIENCE_USE_CASE));
        let failure = match error.class(status) {
            ErrorClass::Wait(default) => {
                let wait = asked.unwrap_or(default);
                if error.is_busy_audience() {
                    tracing::warn!(
                        destination = %self.name,
                        error = %message,
                        "Meta audience busy (an update or replace under way): the job waits and retries"
                    );
                } else {
                    // Throttled: no request of this destination until then.
                    let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
                    let until = std::time::Instant::now() + wait;
                    usage.blocked_until = Some(usage.blocked_until.map_or(until, |u| u.max(until)));
                }
                DestinationError::Retryable {
                    destination: self.name.clone(),
                    message,
                    retry_after: Some(wait),
                }
            }
            ErrorClass::Retry => DestinationError::Retryable {
                destination: self.name.clone(),
                message,
                retry_after: asked,
            },
            ErrorClass::Permanent => self.permanent(message),
        };
        if error.ends_session() {
            CallError::SessionEnded(failure)
        } else {
            CallError::Destination(failure)
        }
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
}

/// The outcome of an op for a flagged (paused) audience.
fn flagged_outcome(audience: &str) -> OpOutcome {
    OpOutcome::Rejected {
        reason: format!(
            "Meta audience {audience} is flagged (operation_status 471, error 100 subcode 1713230): paused until resolved in Ads Manager"
        ),
    }
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
            Err(CallError::Destination(e) | CallError::SessionEnded(e)) => return Err(e),
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
            Err(CallError::Destination(e) | CallError::SessionEnded(e)) => return Err(e),
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
mod retry_tests;
#[cfg(test)]
mod tests;
