//! One App API request budget per Customer.io workspace.
//!
//! Customer.io allows 10 App API requests per second per workspace
//! (API-CONTRACTS §1c), shared by every export. Each batch export runs in
//! its own Lambda invocation, so a pace kept inside one process cannot hold
//! the account-wide limit when schedules overlap or Lambda retries an
//! invocation. The budget is the port they share: before every request the
//! client reserves the next free *slot* of its workspace and sleeps until
//! that slot.
//!
//! The algorithm is GCRA (a token bucket of one token): the budget stores
//! one number per workspace, the next free slot. A reservation at `now` gets
//! `max(now, next)` and moves `next` one interval later, so slots handed
//! out are always at least one interval apart whichever process took them.
//! The interval is `1 / rate` plus [`JITTER_MARGIN_PCT`] percent: requests
//! leave at their slot but arrive with some network and scheduling jitter,
//! and the margin keeps a jittered second at or under the rate on the
//! server side.
//!
//! Adapters: [`LocalBudget`] (in memory, for the local runtime where every
//! export shares one process) and
//! [`DynamoBudget`](crate::adapters::dynamodb::budget::DynamoBudget) (one
//! item per workspace in the state table, two atomic updates at most per
//! request, for the Lambda functions). Both pass
//! [`conformance::budget`](crate::conformance::budget).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::ports::Secret;

/// Added to the interval between slots, in percent of `1 / rate`.
pub const JITTER_MARGIN_PCT: i64 = 5;

#[derive(Debug, Error)]
pub enum BudgetError {
    /// The shared store is throttled or unreachable: try the request later.
    #[error("App API budget temporarily unavailable: {0}")]
    Retryable(String),
    /// Misconfigured store (no table, no permission) or a corrupt item.
    #[error("App API budget error: {0}")]
    Permanent(String),
}

impl BudgetError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, BudgetError::Retryable(_))
    }
}

/// The shared request budget of Customer.io workspaces. Times are
/// microseconds since the Unix epoch (wall clock: the slots of different
/// machines are compared).
#[async_trait]
pub trait RequestBudget: Send + Sync {
    /// Reserve the next slot of `workspace` at `now_us`, slots
    /// `interval_us` apart. Returns the slot: the caller sends its request
    /// at that time (at once when it is not in the future). Every call
    /// gets its own slot, whoever else calls at the same time.
    async fn reserve(
        &self,
        workspace: &str,
        interval_us: i64,
        now_us: i64,
    ) -> Result<i64, BudgetError>;

    /// Nobody gets a slot before `until_us` (after a 429 with
    /// `Retry-After`). Never moves the next slot earlier.
    async fn hold_until(&self, workspace: &str, until_us: i64) -> Result<(), BudgetError>;
}

/// The interval between two slots at `per_second` requests per second,
/// margin included.
pub fn interval_us(per_second: u32) -> i64 {
    let base = 1_000_000 / i64::from(per_second.max(1));
    base + base * JITTER_MARGIN_PCT / 100
}

/// The budget's name for a workspace: a digest of the region and the App
/// API key (the key identifies the workspace; the digest never reveals it).
/// Every export that reads with the same key shares one budget.
pub fn workspace_id(region: &str, key: &Secret) -> String {
    let mut h = Sha256::new();
    h.update(region.as_bytes());
    h.update(b"\n");
    h.update(key.expose().as_bytes());
    let digest = h.finalize();
    hex::encode(&digest[..12])
}

/// Wall-clock now in microseconds.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// How long to wait from `now_us` until `slot_us`.
pub fn wait_for(slot_us: i64, now_us: i64) -> Duration {
    Duration::from_micros(u64::try_from(slot_us.saturating_sub(now_us)).unwrap_or(0))
}

/// The budget in memory: every clone shares the same slots. For the local
/// runtime, whose exports all run in one process.
#[derive(Clone, Debug, Default)]
pub struct LocalBudget {
    next: Arc<Mutex<HashMap<String, i64>>>,
}

impl LocalBudget {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RequestBudget for LocalBudget {
    async fn reserve(
        &self,
        workspace: &str,
        interval_us: i64,
        now_us: i64,
    ) -> Result<i64, BudgetError> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let entry = next.entry(workspace.to_string()).or_insert(now_us);
        let slot = (*entry).max(now_us);
        *entry = slot + interval_us.max(1);
        Ok(slot)
    }

    async fn hold_until(&self, workspace: &str, until_us: i64) -> Result<(), BudgetError> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let entry = next.entry(workspace.to_string()).or_insert(until_us);
        *entry = (*entry).max(until_us);
        Ok(())
    }
}

/// A budget bound to one workspace and rate: what the App API client holds.
#[derive(Clone)]
pub struct WorkspaceBudget {
    budget: Arc<dyn RequestBudget>,
    workspace: String,
    interval_us: i64,
}

impl std::fmt::Debug for WorkspaceBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceBudget")
            .field("workspace", &self.workspace)
            .field("interval_us", &self.interval_us)
            .finish_non_exhaustive()
    }
}

impl WorkspaceBudget {
    pub fn new(
        budget: Arc<dyn RequestBudget>,
        workspace: impl Into<String>,
        per_second: u32,
    ) -> Self {
        Self {
            budget,
            workspace: workspace.into(),
            interval_us: interval_us(per_second),
        }
    }

    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// Take a token: reserve a slot and sleep until it.
    pub async fn take(&self) -> Result<(), BudgetError> {
        let slot = self
            .budget
            .reserve(&self.workspace, self.interval_us, now_us())
            .await?;
        let wait = wait_for(slot, now_us());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Hold every process of the workspace back for `pause`.
    pub async fn hold_for(&self, pause: Duration) -> Result<(), BudgetError> {
        let until = now_us().saturating_add(i64::try_from(pause.as_micros()).unwrap_or(i64::MAX));
        self.budget.hold_until(&self.workspace, until).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_budget_passes_the_conformance_suite() {
        let base = LocalBudget::new();
        crate::conformance::budget::run_all(move || {
            Arc::new(base.clone()) as Arc<dyn RequestBudget>
        })
        .await;
    }

    #[test]
    fn interval_is_a_tenth_of_a_second_plus_the_margin_at_ten_per_second() {
        assert_eq!(interval_us(10), 105_000);
        assert_eq!(interval_us(0), 1_050_000);
    }

    #[test]
    fn workspace_id_depends_on_key_and_region_and_hides_the_key() {
        let a = workspace_id("us", &Secret::new("key-one"));
        assert_eq!(a, workspace_id("us", &Secret::new("key-one")));
        assert_ne!(a, workspace_id("eu", &Secret::new("key-one")));
        assert_ne!(a, workspace_id("us", &Secret::new("key-two")));
        assert!(!a.contains("key-one"));
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn wait_is_zero_for_a_slot_in_the_past() {
        assert_eq!(wait_for(10, 20), Duration::ZERO);
        assert_eq!(wait_for(1_500, 500), Duration::from_millis(1));
    }
}
