//! Fault-injecting wrappers around the AWS adapters: lost answers in front
//! of the state store, lost acks and failed or
//! half-done sends in front of the job queue. Each draws from its own
//! seeded generator, so a failing run can be told apart from another.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dataout::domain::model::{
    DeliveryJob, MembershipRecord, Millis, Person, PersonKey, QuarantineEntry, ReconcileReport,
    RunRecord,
};
use dataout::ports::{
    DestinationRecord, IdempotencyStart, JobQueue, JobSettlement, MembershipWrite, Page,
    QueueDepth, QueueError, ReceivedJob, RecordWrite, StateError, StateStore,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How often each wrapper fails, per call.
#[derive(Clone, Copy, Debug)]
pub struct StoreFaults {
    /// Refused before the call reaches the store (throttled: nothing done).
    /// Only for the embedded store: DynamoDB's throttling is answered below
    /// the adapter, by `dataout_sim::aws_faults`.
    pub throttled: f64,
    /// A write done, its answer lost (the caller sees a failure).
    pub answer_lost: f64,
}

/// What the state wrapper injected.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreFaultCounts {
    pub calls: u64,
    pub throttled: u64,
    pub answers_lost: u64,
}

/// A state store that throttles and loses answers after writes at random.
pub struct FaultyState {
    inner: Arc<dyn StateStore>,
    faults: Mutex<(StoreFaults, StdRng)>,
    enabled: AtomicBool,
    calls: AtomicU64,
    throttled: AtomicU64,
    answers_lost: AtomicU64,
}

impl FaultyState {
    pub fn new(inner: Arc<dyn StateStore>, faults: StoreFaults, seed: u64) -> Self {
        FaultyState {
            inner,
            faults: Mutex::new((faults, StdRng::seed_from_u64(seed))),
            enabled: AtomicBool::new(true),
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            answers_lost: AtomicU64::new(0),
        }
    }

    /// Faults on or off (off to read the final state).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    pub fn counts(&self) -> StoreFaultCounts {
        StoreFaultCounts {
            calls: self.calls.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            answers_lost: self.answers_lost.load(Ordering::Relaxed),
        }
    }

    /// Refuse the call (throttled), or say whether its answer is to be lost.
    fn before(&self, what: &str) -> Result<bool, StateError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.enabled.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let (f, u): (StoreFaults, f64) = {
            let mut g = self.faults.lock().unwrap_or_else(|e| e.into_inner());
            let u = g.1.random();
            (g.0, u)
        };
        if u < f.throttled {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(StateError::retryable(format!(
                "{what}: throttled (injected)"
            )));
        }
        Ok(u < f.throttled + f.answer_lost)
    }

    fn after<T>(&self, what: &str, lose: bool, r: Result<T, StateError>) -> Result<T, StateError> {
        if lose && r.is_ok() {
            self.answers_lost.fetch_add(1, Ordering::Relaxed);
            return Err(StateError::retryable(format!(
                "{what}: the answer was lost after the write (injected timeout)"
            )));
        }
        r
    }
}

macro_rules! faulty {
    ($self:ident, $what:literal, $call:expr) => {{
        let lose = $self.before($what)?;
        let r = $call.await;
        $self.after($what, lose, r)
    }};
}

#[async_trait]
impl StateStore for FaultyState {
    async fn get_membership(
        &self,
        export: &str,
        person: &PersonKey,
    ) -> Result<Option<MembershipRecord>, StateError> {
        faulty!(
            self,
            "get membership",
            self.inner.get_membership(export, person)
        )
    }
    async fn put_membership(
        &self,
        record: &MembershipRecord,
    ) -> Result<MembershipWrite, StateError> {
        faulty!(self, "put membership", self.inner.put_membership(record))
    }
    async fn list_memberships(
        &self,
        export: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<MembershipRecord>, StateError> {
        faulty!(
            self,
            "list memberships",
            self.inner.list_memberships(export, cursor, limit)
        )
    }
    async fn count_members(&self, export: &str) -> Result<u64, StateError> {
        faulty!(self, "count members", self.inner.count_members(export))
    }
    async fn get_memberships(
        &self,
        export: &str,
        people: &[PersonKey],
    ) -> Result<Vec<Option<MembershipRecord>>, StateError> {
        faulty!(
            self,
            "get memberships",
            self.inner.get_memberships(export, people)
        )
    }
    async fn stage_people(
        &self,
        run_id: &str,
        people: &[(PersonKey, Person)],
    ) -> Result<(), StateError> {
        faulty!(
            self,
            "stage people",
            self.inner.stage_people(run_id, people)
        )
    }
    async fn list_staged(
        &self,
        run_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<(PersonKey, Person)>, StateError> {
        faulty!(
            self,
            "list staged",
            self.inner.list_staged(run_id, cursor, limit)
        )
    }
    async fn clear_staged(&self, run_id: &str) -> Result<(), StateError> {
        faulty!(self, "clear staged", self.inner.clear_staged(run_id))
    }
    async fn put_run(&self, run: &RunRecord) -> Result<(), StateError> {
        faulty!(self, "put run", self.inner.put_run(run))
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StateError> {
        faulty!(self, "get run", self.inner.get_run(run_id))
    }
    async fn list_runs(&self, export: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        faulty!(self, "list runs", self.inner.list_runs(export, limit))
    }
    async fn idempotency_start(
        &self,
        key: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<IdempotencyStart, StateError> {
        faulty!(
            self,
            "idempotency start",
            self.inner
                .idempotency_start(key, now, in_progress_until, expires_at)
        )
    }
    async fn idempotency_complete(&self, key: &str, expires_at: Millis) -> Result<(), StateError> {
        faulty!(
            self,
            "idempotency complete",
            self.inner.idempotency_complete(key, expires_at)
        )
    }
    async fn idempotency_release(&self, key: &str) -> Result<(), StateError> {
        faulty!(
            self,
            "idempotency release",
            self.inner.idempotency_release(key)
        )
    }
    async fn settle_jobs(
        &self,
        jobs: &[JobSettlement],
        counters: &[(String, Vec<(String, i64)>)],
    ) -> Result<Vec<String>, StateError> {
        faulty!(self, "settle jobs", self.inner.settle_jobs(jobs, counters))
    }
    async fn claim_job(
        &self,
        key: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<(IdempotencyStart, Vec<u32>), StateError> {
        faulty!(
            self,
            "claim job",
            self.inner
                .claim_job(key, now, in_progress_until, expires_at)
        )
    }
    async fn add_counters(&self, scope: &str, deltas: &[(&str, i64)]) -> Result<(), StateError> {
        faulty!(self, "add counters", self.inner.add_counters(scope, deltas))
    }
    async fn get_counters(&self, scope: &str) -> Result<BTreeMap<String, i64>, StateError> {
        faulty!(self, "get counters", self.inner.get_counters(scope))
    }
    async fn put_report(&self, report: &ReconcileReport) -> Result<(), StateError> {
        faulty!(self, "put report", self.inner.put_report(report))
    }
    async fn latest_report(&self) -> Result<Option<ReconcileReport>, StateError> {
        faulty!(self, "latest report", self.inner.latest_report())
    }
    async fn list_reports(&self, limit: usize) -> Result<Vec<ReconcileReport>, StateError> {
        faulty!(self, "list reports", self.inner.list_reports(limit))
    }
    async fn put_quarantine(&self, entry: &QuarantineEntry) -> Result<(), StateError> {
        faulty!(self, "put quarantine", self.inner.put_quarantine(entry))
    }
    async fn get_quarantine(&self, id: &str) -> Result<Option<QuarantineEntry>, StateError> {
        faulty!(self, "get quarantine", self.inner.get_quarantine(id))
    }
    async fn list_quarantine(&self, limit: usize) -> Result<Vec<QuarantineEntry>, StateError> {
        faulty!(self, "list quarantine", self.inner.list_quarantine(limit))
    }
    async fn get_destination_record(
        &self,
        destination: &str,
        key: &str,
    ) -> Result<Option<DestinationRecord>, StateError> {
        faulty!(
            self,
            "get destination record",
            self.inner.get_destination_record(destination, key)
        )
    }
    async fn put_destination_record(
        &self,
        destination: &str,
        key: &str,
        value: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<RecordWrite, StateError> {
        faulty!(
            self,
            "put destination record",
            self.inner
                .put_destination_record(destination, key, value, expected)
        )
    }
    async fn list_destination_records(
        &self,
        destination: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<DestinationRecord>, StateError> {
        faulty!(
            self,
            "list destination records",
            self.inner
                .list_destination_records(destination, prefix, limit)
        )
    }
    async fn delete_destination_record(
        &self,
        destination: &str,
        key: &str,
        expected: u64,
    ) -> Result<bool, StateError> {
        faulty!(
            self,
            "delete destination record",
            self.inner
                .delete_destination_record(destination, key, expected)
        )
    }
}

/// How often the queue wrapper fails, per call.
#[derive(Clone, Copy, Debug)]
pub struct QueueFaults {
    /// An ack that never reaches SQS: the message comes back once its
    /// visibility timeout runs out (a redelivery of processed work).
    pub ack_lost: f64,
    /// A send refused before it reaches SQS.
    pub send_refused: f64,
    /// A send done whose answer is lost (the caller sends again).
    pub send_answer_lost: f64,
}

/// What the queue wrapper injected, and the distinct jobs that reached it.
#[derive(Clone, Debug, Default)]
pub struct QueueFaultCounts {
    pub acks_lost: u64,
    pub sends_refused: u64,
    pub send_answers_lost: u64,
}

/// One job as first sent: its export and op count.
#[derive(Clone, Debug)]
pub struct SentJob {
    pub export: String,
    pub ops: usize,
}

/// A job queue that loses acks and fails sends at random, and records
/// every distinct job that reached the queue (by destination and job id).
pub struct FaultyQueue {
    inner: Arc<dyn JobQueue>,
    faults: Mutex<(QueueFaults, StdRng)>,
    enabled: AtomicBool,
    sent: Mutex<HashMap<String, BTreeMap<String, SentJob>>>,
    counts: Mutex<QueueFaultCounts>,
}

impl FaultyQueue {
    pub fn new(inner: Arc<dyn JobQueue>, faults: QueueFaults, seed: u64) -> Self {
        FaultyQueue {
            inner,
            faults: Mutex::new((faults, StdRng::seed_from_u64(seed))),
            enabled: AtomicBool::new(true),
            sent: Mutex::new(HashMap::new()),
            counts: Mutex::new(QueueFaultCounts::default()),
        }
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    pub fn counts(&self) -> QueueFaultCounts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Distinct jobs sent to `queue`, by job id.
    pub fn sent(&self, queue: &str) -> BTreeMap<String, SentJob> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
            .cloned()
            .unwrap_or_default()
    }

    fn draw(&self) -> f64 {
        if !self.enabled.load(Ordering::SeqCst) {
            return 1.0;
        }
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .random()
    }

    fn rates(&self) -> QueueFaults {
        self.faults.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

#[async_trait]
impl JobQueue for FaultyQueue {
    async fn send(&self, queue: &str, jobs: &[DeliveryJob]) -> Result<(), QueueError> {
        let f = self.rates();
        let u = self.draw();
        if u < f.send_refused {
            self.counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sends_refused += 1;
            return Err(QueueError::retryable("send: throttled (injected)"));
        }
        self.inner.send(queue, jobs).await?;
        {
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            let q = sent.entry(queue.to_string()).or_default();
            for job in jobs {
                q.entry(job.job_id.clone()).or_insert_with(|| SentJob {
                    export: job.export.clone(),
                    ops: job.ops.len(),
                });
            }
        }
        if u < f.send_refused + f.send_answer_lost {
            self.counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send_answers_lost += 1;
            return Err(QueueError::retryable(
                "send: the answer was lost after the send (injected timeout)",
            ));
        }
        Ok(())
    }
    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<ReceivedJob>, QueueError> {
        self.inner.receive(queue, max).await
    }
    async fn ack(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        if self.draw() < self.rates().ack_lost {
            self.counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .acks_lost += 1;
            return Ok(());
        }
        self.inner.ack(queue, receipt).await
    }
    async fn retry_later(
        &self,
        queue: &str,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.inner.retry_later(queue, receipt, delay).await
    }
    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        self.inner.depth(queue).await
    }
    async fn dead_letters(&self, queue: &str, max: usize) -> Result<Vec<DeliveryJob>, QueueError> {
        self.inner.dead_letters(queue, max).await
    }
    async fn redrive(&self, queue: &str) -> Result<u64, QueueError> {
        self.inner.redrive(queue).await
    }
}
