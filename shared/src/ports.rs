//! Ports: a trait at every IO seam. Each has an AWS adapter and an embedded
//! adapter (`adapters/`), and one conformance suite (`conformance`) that both
//! must pass.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::domain::model::{
    DeliveryJob, Identifiers, MembershipRecord, Millis, Person, PersonKey, QuarantineEntry,
    ReconcileReport, RunRecord,
};

// ---------------------------------------------------------------- clock

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> Millis;
}

/// Wall-clock time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock tests and simulations move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: Millis) -> Self {
        Self(AtomicI64::new(start_ms))
    }
    pub fn set(&self, ms: Millis) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------- state store

#[derive(Debug, Error)]
pub enum StateError {
    /// Throttling, timeouts, transient IO: the caller may retry.
    #[error("state store temporarily unavailable: {message}")]
    Retryable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Corrupt data, bad configuration, a bug.
    #[error("state store error: {message}")]
    Permanent {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StateError {
    pub fn retryable(message: impl Into<String>) -> Self {
        StateError::Retryable {
            message: message.into(),
            source: None,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        StateError::Permanent {
            message: message.into(),
            source: None,
        }
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, StateError::Retryable { .. })
    }
}

/// Result of a conditional membership write.
#[derive(Clone, Debug, PartialEq)]
pub enum MembershipWrite {
    /// Written: it was newer than what was stored (or the same change again).
    Applied,
    /// Refused: the store holds a newer change. Carries what is stored.
    Stale { current: Box<MembershipRecord> },
}

/// Result of starting an idempotent operation (Powertools' layout: a key,
/// a status, an expiry, and an in-progress expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// First time (or a previous attempt expired): go ahead.
    Started,
    /// Another attempt holds it and has not expired.
    InProgress,
    /// Done before: skip.
    Completed,
}

/// How one claimed delivery job ends an attempt ([`StateStore::settle_jobs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSettlement {
    /// The job's idempotency key.
    pub key: String,
    /// `None`: every op is finished and the job is completed. `Some`: the
    /// indices of the ops finished so far (earlier attempts' included); the
    /// claim is given back, and the next delivery sends only the others.
    pub finished_ops: Option<Vec<u32>>,
    /// When the record may be forgotten.
    pub expires_at: Millis,
    /// The claim this attempt holds (the `in_progress_until` it claimed
    /// with): the settlement is refused if another attempt took the job
    /// over since, so only one of them ever counts.
    pub claimed_until: Millis,
    /// This attempt's counter deltas: `(scope, name, delta)`.
    pub counters: Vec<(String, String, i64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque cursor of the next page; `None` at the end.
    pub next: Option<String>,
}

/// A small document a destination keeps between invocations (an open Google
/// Ads job of a list, a Data Manager request waiting for its status), keyed
/// by destination name and a key of the destination's choosing.
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationRecord {
    pub destination: String,
    pub key: String,
    /// 1 when created, bumped by every write: the token of a conditional put.
    pub version: u64,
    pub value: serde_json::Value,
}

/// Result of a conditional destination-record write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordWrite {
    /// Written; the record now has this version.
    Applied { version: u64 },
    /// The stored version was not the expected one (or a record exists
    /// where none was expected): nothing written.
    Conflict,
}

#[async_trait]
pub trait StateStore: Send + Sync {
    // -- membership
    async fn get_membership(
        &self,
        export: &str,
        person: &PersonKey,
    ) -> Result<Option<MembershipRecord>, StateError>;

    /// Write iff nothing is stored, or the stored `source_ts` is older, or it
    /// is the very same change (`source_ts` and `change_id` equal).
    async fn put_membership(
        &self,
        record: &MembershipRecord,
    ) -> Result<MembershipWrite, StateError>;

    /// Every record of an export (members and former members), in key order.
    async fn list_memberships(
        &self,
        export: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<MembershipRecord>, StateError>;

    /// Records whose `member` flag is set.
    async fn count_members(&self, export: &str) -> Result<u64, StateError>;

    // -- batch staging (phase 1 of a run)
    /// Stage source people under a run, keyed by person key (re-staging the
    /// same person overwrites).
    async fn stage_people(
        &self,
        run_id: &str,
        people: &[(PersonKey, Person)],
    ) -> Result<(), StateError>;
    async fn list_staged(
        &self,
        run_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<(PersonKey, Person)>, StateError>;
    async fn clear_staged(&self, run_id: &str) -> Result<(), StateError>;

    // -- runs
    async fn put_run(&self, run: &RunRecord) -> Result<(), StateError>;
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StateError>;
    /// Newest first.
    async fn list_runs(&self, export: &str, limit: usize) -> Result<Vec<RunRecord>, StateError>;

    // -- idempotency (dedup keys with expiry)
    /// Claim `key`. Expired records (past `expires_at`) count as absent even
    /// if the store has not yet deleted them.
    async fn idempotency_start(
        &self,
        key: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<IdempotencyStart, StateError>;
    async fn idempotency_complete(&self, key: &str, expires_at: Millis) -> Result<(), StateError>;
    /// Give a claim back after a failed attempt, so a retry can start at
    /// once. A completed key stays completed (a release after a completion
    /// whose answer was lost must not reopen it); a delivery job's finished
    /// ops stay remembered.
    async fn idempotency_release(&self, key: &str) -> Result<(), StateError>;

    /// End a delivery attempt in one atomic write: settle each claimed job
    /// (completed, or with the ops finished so far remembered and its claim
    /// given back) and add its counters, plus `counters`
    /// (`(scope, [(name, delta)])`). A worker that dies before this write
    /// has counted nothing and finished nothing; one that dies after it has
    /// done both. A job whose claim is no longer the one it names (another
    /// attempt took it over) is left out with its counters; the keys of
    /// those are returned.
    async fn settle_jobs(
        &self,
        jobs: &[JobSettlement],
        counters: &[(String, Vec<(String, i64)>)],
    ) -> Result<Vec<String>, StateError>;
    /// Claim a delivery job: as [`StateStore::idempotency_start`], and
    /// with `Started`, the ops earlier attempts finished (indices into its
    /// ops, as a partial [`JobSettlement`] left them; empty if none).
    async fn claim_job(
        &self,
        key: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<(IdempotencyStart, Vec<u32>), StateError>;

    /// Several records of one export in one read, in the order asked
    /// (`None` where nothing is stored).
    async fn get_memberships(
        &self,
        export: &str,
        people: &[PersonKey],
    ) -> Result<Vec<Option<MembershipRecord>>, StateError> {
        let mut out = Vec::with_capacity(people.len());
        for p in people {
            out.push(self.get_membership(export, p).await?);
        }
        Ok(out)
    }

    // -- counters (atomic adds)
    async fn add_counters(&self, scope: &str, deltas: &[(&str, i64)]) -> Result<(), StateError>;
    async fn get_counters(&self, scope: &str) -> Result<BTreeMap<String, i64>, StateError>;

    // -- reports
    async fn put_report(&self, report: &ReconcileReport) -> Result<(), StateError>;
    async fn latest_report(&self) -> Result<Option<ReconcileReport>, StateError>;
    /// The newest `limit` reports, newest first (the HTML report's history).
    async fn list_reports(&self, limit: usize) -> Result<Vec<ReconcileReport>, StateError>;

    // -- quarantine
    async fn put_quarantine(&self, entry: &QuarantineEntry) -> Result<(), StateError>;
    async fn get_quarantine(&self, id: &str) -> Result<Option<QuarantineEntry>, StateError>;
    /// Newest first.
    async fn list_quarantine(&self, limit: usize) -> Result<Vec<QuarantineEntry>, StateError>;

    // -- destination records (small JSON documents, conditional writes)
    async fn get_destination_record(
        &self,
        destination: &str,
        key: &str,
    ) -> Result<Option<DestinationRecord>, StateError>;
    /// Write `value` iff the stored version is `expected` (`None`: iff no
    /// record is stored). "One open job per list" is a put with `None`.
    async fn put_destination_record(
        &self,
        destination: &str,
        key: &str,
        value: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<RecordWrite, StateError>;
    /// Records of `destination` whose key starts with `prefix`, in key
    /// order, at most `limit`.
    async fn list_destination_records(
        &self,
        destination: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<DestinationRecord>, StateError>;
    /// Delete iff the stored version is `expected`; deleting what is not
    /// there is not an error. Returns whether a record was deleted.
    async fn delete_destination_record(
        &self,
        destination: &str,
        key: &str,
        expected: u64,
    ) -> Result<bool, StateError>;
}

// ---------------------------------------------------------------- job queue

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("queue temporarily unavailable: {message}")]
    Retryable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("queue error: {message}")]
    Permanent {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl QueueError {
    pub fn retryable(message: impl Into<String>) -> Self {
        QueueError::Retryable {
            message: message.into(),
            source: None,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        QueueError::Permanent {
            message: message.into(),
            source: None,
        }
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Retryable { .. })
    }
}

/// A received job: hidden from other consumers until acked, retried or its
/// visibility timeout passes.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedJob {
    pub message_id: String,
    /// Handle for ack / retry (SQS receipt handle).
    pub receipt: String,
    /// 1 on first delivery.
    pub receive_count: u32,
    pub job: DeliveryJob,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Ready to receive (including delayed ones whose delay passed).
    pub visible: u64,
    /// Received, not yet acked, or waiting out a retry delay.
    pub in_flight: u64,
    /// In the dead-letter queue.
    pub dead: u64,
}

/// One queue per destination, each with a dead-letter queue. At-least-once:
/// a job not acked within the visibility timeout comes back; after
/// `max_receives` receives it moves to the dead-letter queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn send(&self, queue: &str, jobs: &[DeliveryJob]) -> Result<(), QueueError>;
    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<ReceivedJob>, QueueError>;
    async fn ack(&self, queue: &str, receipt: &str) -> Result<(), QueueError>;
    /// Make the job visible again after `delay` (retry with backoff).
    async fn retry_later(
        &self,
        queue: &str,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError>;
    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError>;
    /// Read (without removing) up to `max` dead-lettered jobs.
    async fn dead_letters(&self, queue: &str, max: usize) -> Result<Vec<DeliveryJob>, QueueError>;
    /// Move dead-lettered jobs back to the queue; returns how many.
    async fn redrive(&self, queue: &str) -> Result<u64, QueueError>;
}

// ---------------------------------------------------------------- source

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("source temporarily unavailable: {message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("source refused the request: {message}")]
    Permanent { message: String },
}

impl SourceError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SourceError::Retryable { .. })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipPage {
    pub people: Vec<Identifiers>,
    pub next: Option<String>,
}

/// The batch source: Customer.io's App API.
#[async_trait]
pub trait SegmentSource: Send + Sync {
    async fn segment_count(&self, segment_id: u64) -> Result<u64, SourceError>;
    async fn membership_page(
        &self,
        segment_id: u64,
        start: Option<&str>,
        limit: u32,
    ) -> Result<MembershipPage, SourceError>;
    /// Attributes of these people (at most 100 per call); people the source
    /// does not know are left out.
    async fn attributes(&self, people: &[Identifiers]) -> Result<Vec<Person>, SourceError>;
}

// ---------------------------------------------------------------- object store

#[derive(Debug, Error)]
pub enum ObjectStoreError {
    #[error("object store temporarily unavailable: {message}")]
    Retryable { message: String },
    #[error("object store error: {message}")]
    Permanent { message: String },
}

impl ObjectStoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ObjectStoreError::Retryable { .. })
    }
}

/// Where the warehouse destination writes: a local directory or S3.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Write an object whole; writing the same key again replaces it.
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectStoreError>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectStoreError>;
    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError>;
    /// Human-readable location of a key (a path or an s3:// URL).
    fn locate(&self, key: &str) -> String;
}

// ---------------------------------------------------------------- secrets

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where API keys come from: environment variables locally, SSM / Secrets
/// Manager references resolved into the environment on AWS.
pub trait Secrets: Send + Sync {
    /// `None` when the named secret is absent or blank.
    fn get(&self, name: &str) -> Option<Secret>;
}

/// Secrets from the process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvSecrets;

impl Secrets for EnvSecrets {
    fn get(&self, name: &str) -> Option<Secret> {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(Secret)
    }
}

/// Secrets from a map (the demo and tests).
#[derive(Clone, Debug, Default)]
pub struct MapSecrets(pub BTreeMap<String, Secret>);

impl MapSecrets {
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_string(), Secret::new(value));
        self
    }
}

impl Secrets for MapSecrets {
    fn get(&self, name: &str) -> Option<Secret> {
        self.0.get(name).cloned()
    }
}
