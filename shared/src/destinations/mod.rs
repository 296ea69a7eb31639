//! Destinations: one module per API. Each turns a batch of delivery ops into
//! requests, and reports an outcome for every op (never one verdict for the
//! whole batch: one bad person must not sink their neighbours).

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::domain::model::{DeliveryOp, OpKind, PersonKey};
use crate::domain::spec::{DestinationKind, ExportDestination, ExportSpec};

pub mod clevertap;
pub mod google_auth;
pub mod google_consent;
pub mod google_customer_match;
pub mod google_data_manager;
pub mod meta_audience;
pub mod meta_conversions;
pub mod net_guard;
pub mod warehouse;
pub mod webhook;

/// What happened to one op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    /// The destination took it.
    Accepted,
    /// The destination took it only once `fields` it refused were left out
    /// (CleverTap 515 / 516: an invalid email or phone skips the whole
    /// profile, membership included): accepted, and counted apart as
    /// `fields_refused`.
    AcceptedWithout { fields: Vec<String>, reason: String },
    /// The destination refused this person for good (invalid phone, ...).
    Rejected { reason: String },
    /// We had no identifier this destination can match on: never sent.
    Unmatched { reason: String },
    /// Failed in a way worth retrying (CleverTap 555, a per-record 5xx).
    Retry { reason: String },
    /// Refused by our own checks before sending, because the platform would
    /// refuse it (an event older than Meta's 7 days, a conversion without a
    /// field Google requires): never sent, so it cannot sink the request it
    /// would have travelled in. Counted as `invalid`.
    Invalid { reason: String },
}

impl OpOutcome {
    /// The destination holds the op (all of it, or without refused fields).
    pub fn is_accepted(&self) -> bool {
        matches!(
            self,
            OpOutcome::Accepted | OpOutcome::AcceptedWithout { .. }
        )
    }
}

/// A failure of the whole request.
#[derive(Debug, Error)]
pub enum DestinationError {
    /// 429, 5xx, timeouts, rate-limit codes: the job goes back to the queue.
    #[error("{destination}: retryable: {message}")]
    Retryable {
        destination: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Auth, malformed request, unknown audience: retrying will not help.
    #[error("{destination}: permanent: {message}")]
    Permanent {
        destination: String,
        message: String,
    },
}

impl DestinationError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DestinationError::Retryable { .. })
    }
}

/// Classification of an HTTP status for the request as a whole, shared by
/// the HTTP destinations: 408, 429 and 5xx retry; other 4xx are permanent.
pub fn status_is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// A secret a destination cannot work without; its absence is permanent
/// and names the variable to set.
pub fn required_secret(
    secrets: &dyn crate::ports::Secrets,
    destination: &str,
    env: &str,
) -> Result<crate::ports::Secret, DestinationError> {
    secrets.get(env).ok_or_else(|| DestinationError::Permanent {
        destination: destination.to_string(),
        message: format!("missing secret: environment variable {env} is not set"),
    })
}

/// A condition a destination found that needs a person: the deliver
/// function turns each into a metric its alarms watch, naming the audience.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestinationAlert {
    /// The platform refuses every upload to this audience until someone
    /// resolves it (Meta's flagged audiences); its ops are rejected, not retried.
    AudiencePaused { audience: String, reason: String },
    /// The configured API version has expired (Meta error 2635).
    ApiVersionDeprecated { api_url: String },
}

/// What one `settle` call found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettleSummary {
    /// Requests / jobs whose final status was read.
    pub finished: u64,
    /// Still processing at the platform.
    pub pending: u64,
    /// People the platform rejected after accepting the request.
    pub rejected: u64,
}

/// What a platform says of one audience, in its own numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudienceStats {
    /// Its count of the audience (`None`: its API gives none).
    pub size: Option<u64>,
    /// Rows received in finished uploads, and how many of them matched a
    /// platform user (Meta sessions' `num_received` / `num_matched`).
    pub received: Option<u64>,
    pub matched: Option<u64>,
    /// Rows of uploads the platform is still processing: not in `size` yet.
    pub pending_rows: u64,
}

impl AudienceStats {
    /// Totals of a Meta `GET /{audience}/sessions` answer
    /// (`{data:[{stage, num_received, num_matched, …}]}`): finished
    /// sessions give the match numbers, the others count as pending.
    pub fn add_meta_sessions(&mut self, answer: &serde_json::Value) {
        let num = |s: &serde_json::Value, k: &str| {
            s.get(k).and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
            })
        };
        let Some(sessions) = answer.get("data").and_then(serde_json::Value::as_array) else {
            return;
        };
        for s in sessions {
            let received = num(s, "num_received").unwrap_or(0);
            if s.get("stage").and_then(serde_json::Value::as_str) == Some("finished") {
                *self.received.get_or_insert(0) += received;
                *self.matched.get_or_insert(0) += num(s, "num_matched").unwrap_or(0);
            } else {
                self.pending_rows += received;
            }
        }
    }
}

/// One op's place in the send order: its wave, then removes before adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub wave: usize,
    /// `false` (a remove) sorts before `true` (an add).
    pub add: bool,
}

/// Wave of each op for the ad platforms, which send an audience's removes
/// before its adds (an identifier swap's old row shares keys with the new
/// one, so a late remove would take the person out). A person's op stays in
/// the wave of their previous op for the same audience unless it turns an
/// add into a remove (entered, then left, in one batch): that remove must
/// follow the add on the wire, so it opens the next wave. `None` for events.
pub fn send_slots(ops: &[DeliveryOp]) -> Vec<Option<Slot>> {
    let mut last: std::collections::HashMap<(&str, &PersonKey), Slot> =
        std::collections::HashMap::new();
    ops.iter()
        .map(|op| {
            let add = match op.op {
                OpKind::Add | OpKind::Update => true,
                OpKind::Remove => false,
                OpKind::Event => return None,
            };
            let key = (op.audience.as_str(), &op.person_key);
            let wave = match last.get(&key) {
                Some(prev) if prev.add && !add => prev.wave + 1,
                Some(prev) => prev.wave,
                None => 0,
            };
            let slot = Slot { wave, add };
            last.insert(key, slot);
            Some(slot)
        })
        .collect()
}

/// A destination API.
#[async_trait]
pub trait Destination: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> DestinationKind;
    /// Most people (ops) per request; delivery never hands `send` more.
    fn max_batch(&self) -> usize;
    /// Send `ops` of one export to this destination. Returns one outcome
    /// per op, in order. All ops share the job's export.
    async fn send(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        ops: &[DeliveryOp],
    ) -> Result<Vec<OpOutcome>, DestinationError>;
    /// The destination's own audience size, where its API gives one.
    async fn audience_size(
        &self,
        _export: &ExportSpec,
        _binding: &ExportDestination,
    ) -> Result<Option<u64>, DestinationError> {
        Ok(None)
    }
    /// The platform's own numbers for an audience, for reconciliation: its
    /// count and, where it reports them, how many uploaded rows matched a
    /// platform user (Meta sessions). Defaults to `audience_size` alone.
    async fn audience_stats(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
    ) -> Result<AudienceStats, DestinationError> {
        Ok(AudienceStats {
            size: self.audience_size(export, binding).await?,
            ..AudienceStats::default()
        })
    }
    /// Finish work the platform does asynchronously, from an earlier call:
    /// read the status of requests sent before (Google Data Manager), run or
    /// poll a list's job (Google Ads). Called once per delivery invocation;
    /// never waits for the platform. Per-person results are recorded in the
    /// state store by the destination itself.
    async fn settle(&self) -> Result<SettleSummary, DestinationError> {
        Ok(SettleSummary::default())
    }
    /// Conditions found so far that need a person (see `DestinationAlert`).
    fn alerts(&self) -> Vec<DestinationAlert> {
        Vec::new()
    }
    /// Where the output goes, for reports (a path, an audience URL).
    fn describe_output(&self, export: &ExportSpec, binding: &ExportDestination) -> String;
    /// Replace audience `audience` of this binding by exactly `members`
    /// (Add ops) with the platform's full-replace call, returning one
    /// outcome per member. Only kinds for which [`kind_can_replace`] is true
    /// implement it; the rest answer `None`.
    async fn replace_audience(
        &self,
        _export: &ExportSpec,
        _binding: &ExportDestination,
        _audience: &str,
        _members: &[DeliveryOp],
    ) -> Result<Option<Vec<OpOutcome>>, DestinationError> {
        Ok(None)
    }
    /// What the destination itself holds of one delivered op, read back
    /// where its API allows (for `dataout qa`).
    async fn read_back(
        &self,
        _export: &ExportSpec,
        _binding: &ExportDestination,
        _op: &DeliveryOp,
    ) -> Result<ReadBack, DestinationError> {
        Ok(ReadBack::NotReadable(
            "its API has no per-person read; its acknowledgement is all it says".into(),
        ))
    }
}

/// Kinds with a full-replace call: Meta (`usersreplace` sessions) and
/// Google's Data Manager (ingest, then remove every member added before).
pub fn kind_can_replace(kind: DestinationKind) -> bool {
    matches!(
        kind,
        DestinationKind::MetaAudience | DestinationKind::GoogleDataManager
    )
}

/// A destination's own answer about one person, read after delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadBack {
    /// It holds what the op says (with what it showed).
    Agrees(String),
    /// It holds something else: the op did not land as sent.
    Disagrees(String),
    /// Its API cannot say (and why).
    NotReadable(String),
    /// The platform is still processing it: ask again later.
    Pending(String),
}

/// Build the client of one configured destination. The warehouse writes to
/// `store` (a local directory or S3, chosen by the caller's runtime).
pub fn build(
    spec: &crate::domain::spec::DestinationSpec,
    secrets: &dyn crate::ports::Secrets,
    http: reqwest::Client,
    store: Option<std::sync::Arc<dyn crate::ports::ObjectStore>>,
    clock: std::sync::Arc<dyn crate::ports::Clock>,
    state: std::sync::Arc<dyn crate::ports::StateStore>,
) -> Result<std::sync::Arc<dyn Destination>, DestinationError> {
    use crate::domain::spec::DestinationKind as K;
    let name = spec.name.clone();
    Ok(match spec.kind {
        K::Warehouse => {
            let store = store.ok_or_else(|| DestinationError::Permanent {
                destination: name.clone(),
                message: "no object store configured for the warehouse".into(),
            })?;
            std::sync::Arc::new(warehouse::WarehouseDestination::new(
                name, spec, store, clock,
            ))
        }
        K::Clevertap => std::sync::Arc::new(clevertap::ClevertapDestination::new(
            name, spec, secrets, http,
        )?),
        K::MetaAudience => std::sync::Arc::new(meta_audience::MetaAudienceDestination::new(
            name, spec, secrets, http,
        )?),
        K::GoogleCustomerMatch => {
            std::sync::Arc::new(google_customer_match::GoogleCustomerMatchDestination::new(
                name, spec, secrets, http, clock, state,
            )?)
        }
        K::GoogleDataManager => {
            std::sync::Arc::new(google_data_manager::DataManagerDestination::new(
                name, spec, secrets, http, clock, state,
            )?)
        }
        K::Webhook => {
            std::sync::Arc::new(webhook::WebhookDestination::new(name, spec, secrets, http)?)
        }
        K::MetaConversions => std::sync::Arc::new(
            meta_conversions::MetaConversionsDestination::new(name, spec, secrets, http, clock)?,
        ),
    })
}
