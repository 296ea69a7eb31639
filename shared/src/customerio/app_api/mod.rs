//! Customer.io App API client: the batch source (API-CONTRACTS.md §1c).
//!
//! Reads segment counts, membership pages and people's attributes. Paces
//! itself under the App API rate limit (10 requests/s by default, shared by
//! every clone), retries 429 and 5xx with exponential backoff and jitter
//! (honouring `Retry-After`), and classifies what is left as retryable or
//! permanent. Unknown JSON keys are ignored: the API adds fields without
//! notice. Errors and logs never carry an email, a phone or a customer id.
//!
//! Paging ends when `next` is empty or absent (inferred, not documented), so
//! both that and a trailing empty page are handled; a token that does not
//! advance is refused rather than looped on. Members come from `identifiers`
//! when present (`ids` holds `""` for people without an `id`), else `ids`.
//! Attribute lookups go by `id`, else `cio_id`, else email (`id_type=email`
//! must be enabled in the workspace, or the API answers 400).

use crate::settings;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable as _};
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use thiserror::Error;
use tokio::time::Instant;

use crate::customerio::budget::{workspace_id, BudgetError, RequestBudget, WorkspaceBudget};
use crate::domain::model::{Attributes, Identifiers, Person};
use crate::ports::{MembershipPage, Secret, Secrets, SegmentSource, SourceError};

mod parse;
use parse::*;
pub use parse::{parse_bulk_attributes, parse_customer_attributes, parse_membership_page};

/// Documented maximum of a membership page.
pub const MAX_PAGE_LIMIT: u32 = 30_000;
/// Documented maximum of ids in one bulk attributes request.
pub const MAX_BULK_IDS: usize = 100;

/// Which Customer.io data centre the workspace lives in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Region {
    #[default]
    Us,
    Eu,
}

impl Region {
    pub fn base_url(self) -> &'static str {
        match self {
            Region::Us => "https://api.customer.io",
            Region::Eu => "https://api-eu.customer.io",
        }
    }
}

#[derive(Clone, Debug)]
pub struct AppApiConfig {
    /// Overrides the region's host (simulators, proxies).
    pub base_url: Option<String>,
    pub region: Region,
    /// Name of the secret holding the App API key.
    pub api_key_env: String,
    /// Client-side pace; keep at or under the workspace's limit.
    pub requests_per_second: u32,
    /// Retries after the first attempt, for 429, 5xx and transport errors.
    pub max_retries: u32,
    /// Membership page size (capped at [`MAX_PAGE_LIMIT`]).
    pub page_limit: u32,
    /// First backoff delay; doubles per retry, with jitter.
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    /// Longest `Retry-After` we wait for one retry.
    pub max_retry_after: Duration,
}

impl Default for AppApiConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            region: Region::Us,
            api_key_env: "CIO_APP_API_KEY".to_string(),
            requests_per_second: 10,
            max_retries: 5,
            page_limit: 1_000,
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl AppApiConfig {
    /// The deployment's App API settings, read from `CIO_REGION` (`us` or
    /// `eu`, any case; default `us`) and `CIO_APP_API_BASE_URL`, so every
    /// entry point (functions, CLI) agrees on them. `lookup` is the
    /// environment, or a map in tests; blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AppApiError> {
        let value = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let region = match value(settings::CIO_REGION)
            .map(|r| r.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("us") => Region::Us,
            Some("eu") => Region::Eu,
            Some(other) => {
                return Err(AppApiError::Config(format!(
                "environment variable CIO_REGION is malformed: `{other}` is neither `us` nor `eu`"
            )))
            }
        };
        Ok(AppApiConfig {
            base_url: value(settings::CIO_APP_API_BASE_URL),
            region,
            ..AppApiConfig::default()
        })
    }
}

/// What went wrong with one App API call. Converted to [`SourceError`] at the
/// port; messages name the endpoint and status, never a person.
#[derive(Debug, Error)]
pub enum AppApiError {
    #[error("{endpoint}: rate limited (429)")]
    RateLimited {
        endpoint: &'static str,
        retry_after: Option<Duration>,
    },
    #[error("{endpoint}: server error {status}")]
    Unavailable {
        endpoint: &'static str,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("{endpoint}: transport error")]
    Transport {
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{endpoint}: refused with {status} ({reason})")]
    Refused {
        endpoint: &'static str,
        status: u16,
        reason: &'static str,
    },
    #[error("{endpoint}: malformed response at line {line} column {column}")]
    Malformed {
        endpoint: &'static str,
        line: usize,
        column: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("App API configuration: {0}")]
    Config(String),
    /// The shared request budget could not hand out a slot.
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

impl AppApiError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AppApiError::RateLimited { .. }
                | AppApiError::Unavailable { .. }
                | AppApiError::Transport { .. }
        ) || matches!(self, AppApiError::Budget(e) if e.is_retryable())
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            AppApiError::RateLimited { retry_after, .. }
            | AppApiError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<AppApiError> for SourceError {
    fn from(e: AppApiError) -> Self {
        if e.is_retryable() {
            SourceError::Retryable {
                retry_after: e.retry_after(),
                message: e.to_string(),
            }
        } else {
            SourceError::Permanent {
                message: e.to_string(),
            }
        }
    }
}

/// Spaces requests at least `1 / rate` apart across every clone of the
/// client: no bursts, so a server-side token bucket of the same rate never
/// empties. Callers queue in FIFO order (tokio's mutex is fair), and each
/// next slot is measured from when the previous caller actually went, so a
/// stalled process does not release a burst of overdue slots.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Pacer {
    fn new(per_second: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    async fn acquire(&self) {
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = Instant::now() + self.interval;
    }

    /// After a 429 with `Retry-After`, hold every caller back, not just the
    /// one that was refused.
    async fn hold_for(&self, pause: Duration) {
        let mut next = self.next.lock().await;
        let until = Instant::now() + pause;
        if *next < until {
            *next = until;
        }
    }
}

/// The App API client. Cheap to clone; clones share the pace and the
/// request counter.
#[derive(Clone, Debug)]
pub struct AppApiClient {
    http: reqwest::Client,
    base: Url,
    key: Secret,
    config: AppApiConfig,
    pacer: Arc<Pacer>,
    /// The workspace's shared budget; without it, this client's own pace.
    budget: Option<WorkspaceBudget>,
    requests: Arc<AtomicU64>,
}

/// Which identifier a lookup uses (`id_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum IdType {
    Id,
    CioId,
    Email,
}

impl IdType {
    fn as_str(self) -> &'static str {
        match self {
            IdType::Id => "id",
            IdType::CioId => "cio_id",
            IdType::Email => "email",
        }
    }

    /// The best identifier to look a person up by: `id`, else `cio_id`,
    /// else email.
    fn choose(ids: &Identifiers) -> Option<(IdType, String)> {
        if let Some(id) = ids.id() {
            return Some((IdType::Id, id.to_string()));
        }
        if let Some(cio) = ids.cio_id() {
            return Some((IdType::CioId, cio.to_string()));
        }
        ids.email().map(|e| (IdType::Email, e.to_string()))
    }

    /// The key to match an answer against a request.
    fn match_key(self, value: &str) -> String {
        match self {
            IdType::Email => value.trim().to_lowercase(),
            _ => value.to_string(),
        }
    }
}

/// Summary of a segment from `GET /v1/segments`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SegmentInfo {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

impl AppApiClient {
    pub fn new(
        config: AppApiConfig,
        secrets: &dyn Secrets,
        http: reqwest::Client,
    ) -> Result<Self, SourceError> {
        let key = secrets.get(&config.api_key_env).ok_or_else(|| {
            SourceError::from(AppApiError::Config(format!(
                "secret {} is missing or blank",
                config.api_key_env
            )))
        })?;
        let raw = config
            .base_url
            .clone()
            .unwrap_or_else(|| config.region.base_url().to_string());
        let base = Url::parse(raw.trim_end_matches('/')).map_err(|e| {
            SourceError::from(AppApiError::Config(format!("base url is not a URL: {e}")))
        })?;
        if base.cannot_be_a_base() {
            return Err(AppApiError::Config("base url cannot hold a path".into()).into());
        }
        if config.requests_per_second == 0 {
            return Err(
                AppApiError::Config("requests_per_second must be at least 1".into()).into(),
            );
        }
        Ok(Self {
            pacer: Arc::new(Pacer::new(config.requests_per_second)),
            budget: None,
            requests: Arc::new(AtomicU64::new(0)),
            http,
            base,
            key,
            config,
        })
    }

    /// Take a token from the workspace's shared budget before every request
    /// (instead of this client's own pace), so every export of the
    /// workspace, in any process, stays within `requests_per_second`
    /// together. The workspace is named by a digest of region and key.
    pub fn with_budget(mut self, budget: Arc<dyn RequestBudget>) -> Self {
        let workspace = workspace_id(&format!("{:?}", self.config.region), &self.key);
        self.budget = Some(WorkspaceBudget::new(
            budget,
            workspace,
            self.config.requests_per_second,
        ));
        self
    }

    /// HTTP requests sent so far (retries included), by this client and its
    /// clones.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Every segment of the workspace.
    pub async fn segments(&self) -> Result<Vec<SegmentInfo>, SourceError> {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            segments: Vec<SegmentInfo>,
        }
        let url = self.url(&["v1", "segments"]);
        let body: Body = self.call("list_segments", Method::GET, url, None).await?;
        Ok(body.segments)
    }

    /// One person's attributes (`GET /v1/customers/{id}/attributes`);
    /// `None` when the source does not know them.
    pub async fn person(&self, ids: &Identifiers) -> Result<Option<Person>, SourceError> {
        let Some((id_type, key)) = IdType::choose(ids) else {
            return Ok(None);
        };
        let mut url = self.url(&["v1", "customers", &key, "attributes"]);
        url.query_pairs_mut()
            .append_pair("id_type", id_type.as_str());
        match self
            .call::<WirePerson>("customer_attributes", Method::GET, url, None)
            .await
        {
            Ok(body) => Ok(Some(to_person(ids, body.customer))),
            Err(AppApiError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One call with pacing and retries.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, AppApiError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.retry_min_delay)
            .with_max_delay(self.config.retry_max_delay)
            .with_max_times(self.config.max_retries as usize)
            .with_jitter();
        let max_retry_after = self.config.max_retry_after;
        let attempt = || self.attempt::<T>(endpoint, method.clone(), url.clone(), body);
        attempt
            .retry(backoff)
            .when(AppApiError::is_retryable)
            .adjust(|err, planned| {
                // Out of retries stays out of retries; otherwise wait at
                // least what the server asked for.
                let planned = planned?;
                Some(match err.retry_after() {
                    Some(asked) => planned.max(asked.min(max_retry_after)),
                    None => planned,
                })
            })
            .notify(|err, wait| {
                tracing::warn!(
                    endpoint,
                    error = %err,
                    wait_ms = wait.as_millis() as u64,
                    "App API call failed; retrying"
                );
            })
            .await
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, AppApiError> {
        match &self.budget {
            Some(budget) => budget.take().await?,
            None => self.pacer.acquire().await,
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.key.expose()))
            .map_err(|_| AppApiError::Config("API key is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let mut req = self.http.request(method, url).header(AUTHORIZATION, auth);
        if let Some(body) = body {
            req = req.json(body);
        }
        let transport = |e: reqwest::Error| AppApiError::Transport {
            endpoint,
            source: e.without_url(),
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = parse_retry_after(resp.headers().get(RETRY_AFTER));
        if status == StatusCode::TOO_MANY_REQUESTS {
            if let Some(pause) = retry_after {
                let pause = pause.min(self.config.max_retry_after);
                self.pacer.hold_for(pause).await;
                if let Some(budget) = &self.budget {
                    // Best effort: the refused call is retried anyway.
                    if let Err(e) = budget.hold_for(pause).await {
                        tracing::warn!(error = %e, "could not hold the shared App API budget");
                    }
                }
            }
            return Err(AppApiError::RateLimited {
                endpoint,
                retry_after,
            });
        }
        if status.is_server_error() {
            return Err(AppApiError::Unavailable {
                endpoint,
                status: status.as_u16(),
                retry_after,
            });
        }
        if !status.is_success() {
            return Err(AppApiError::Refused {
                endpoint,
                status: status.as_u16(),
                reason: refusal_reason(status),
            });
        }
        let bytes = resp.bytes().await.map_err(transport)?;
        decode(endpoint, &bytes)
    }

    /// One bulk request: people looked up by one id type (≤ 100).
    async fn bulk(
        &self,
        id_type: IdType,
        chunk: &[(usize, String)],
        people: &[Identifiers],
        out: &mut Vec<(usize, Person)>,
    ) -> Result<(), SourceError> {
        let mut url = self.url(&["v1", "customers", "attributes"]);
        url.query_pairs_mut()
            .append_pair("id_type", id_type.as_str());
        let keys: Vec<&str> = chunk.iter().map(|(_, k)| k.as_str()).collect();
        let body = serde_json::json!({ "ids": keys });
        let answer: WireBulk = self
            .call("bulk_attributes", Method::POST, url, Some(&body))
            .await?;
        match_bulk(id_type, chunk, people, answer, out);
        Ok(())
    }
}

#[async_trait]
impl SegmentSource for AppApiClient {
    async fn segment_count(&self, segment_id: u64) -> Result<u64, SourceError> {
        #[derive(Deserialize)]
        struct Body {
            count: u64,
        }
        let url = self.url(&["v1", "segments", &segment_id.to_string(), "customer_count"]);
        let body: Body = self.call("customer_count", Method::GET, url, None).await?;
        Ok(body.count)
    }

    async fn membership_page(
        &self,
        segment_id: u64,
        start: Option<&str>,
        limit: u32,
    ) -> Result<MembershipPage, SourceError> {
        let cap = self.config.page_limit.clamp(1, MAX_PAGE_LIMIT);
        let limit = if limit == 0 { cap } else { limit.min(cap) };
        let mut url = self.url(&["v1", "segments", &segment_id.to_string(), "membership"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(start) = start.filter(|s| !s.is_empty()) {
                q.append_pair("start", start);
            }
            q.append_pair("limit", &limit.to_string());
        }
        let body: WireMembership = self.call("membership", Method::GET, url, None).await?;
        Ok(page_from_wire(segment_id, body, start)?)
    }

    async fn attributes(&self, people: &[Identifiers]) -> Result<Vec<Person>, SourceError> {
        let mut groups: Vec<(IdType, Vec<(usize, String)>)> = Vec::new();
        for (i, ids) in people.iter().enumerate() {
            let Some((id_type, key)) = IdType::choose(ids) else {
                continue;
            };
            match groups.iter_mut().find(|(t, _)| *t == id_type) {
                Some((_, keys)) => keys.push((i, key)),
                None => groups.push((id_type, vec![(i, key)])),
            }
        }
        let mut found = Vec::with_capacity(people.len());
        for (id_type, keys) in &groups {
            for chunk in keys.chunks(MAX_BULK_IDS) {
                self.bulk(*id_type, chunk, people, &mut found).await?;
            }
        }
        found.sort_by_key(|(i, _)| *i);
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }
}

fn refusal_reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad request: check the limit, token or id_type",
        401 => "unauthorized: check the App API key",
        403 => "forbidden: the key lacks access",
        404 => "not found: unknown segment or person",
        _ => "unexpected status",
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn parse_retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests;
