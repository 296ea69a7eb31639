//! Destinations: one module per API. Each turns a batch of delivery ops into
//! requests, and reports an outcome for every op (never one verdict for the
//! whole batch: one bad person must not sink their neighbours).

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::domain::model::DeliveryOp;
use crate::domain::spec::{DestinationKind, ExportDestination, ExportSpec};

pub mod clevertap;
pub mod google;
pub mod meta;
pub mod warehouse;
pub mod webhook;

/// What happened to one op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    /// The destination took it.
    Accepted,
    /// The destination refused this person for good (invalid phone, ...).
    Rejected { reason: String },
    /// We had no identifier this destination can match on: never sent.
    Unmatched { reason: String },
    /// Failed in a way worth retrying (CleverTap 555, a per-record 5xx).
    Retry { reason: String },
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
    /// Where the output goes, for reports (a path, an audience URL).
    fn describe_output(&self, export: &ExportSpec, binding: &ExportDestination) -> String;
}

/// Build the client of one configured destination. The warehouse writes to
/// `store` (a local directory or S3, chosen by the caller's runtime).
pub fn build(
    spec: &crate::domain::spec::DestinationSpec,
    secrets: &dyn crate::ports::Secrets,
    http: reqwest::Client,
    store: Option<std::sync::Arc<dyn crate::ports::ObjectStore>>,
    clock: std::sync::Arc<dyn crate::ports::Clock>,
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
        K::MetaAudience => std::sync::Arc::new(meta::MetaAudienceDestination::new(
            name, spec, secrets, http,
        )?),
        K::GoogleCustomerMatch => std::sync::Arc::new(google::GoogleCustomerMatchDestination::new(
            name, spec, secrets, http,
        )?),
        K::Webhook => {
            std::sync::Arc::new(webhook::WebhookDestination::new(name, spec, secrets, http)?)
        }
    })
}
