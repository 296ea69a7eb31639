//! The delivery race of issue 23, made deterministic: an add checked
//! current, held in flight while the person leaves and their remove is
//! delivered, then landing last at a destination where the last write
//! wins. Changes go through intake (state written, then the job enqueued),
//! on the embedded state store and queue, with a manual clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{deliver_jobs, DeliveryOptions, DeliveryTotals, Disposition};
use crate::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use crate::adapters::embedded::state::EmbeddedStateStore;
use crate::destinations::{Destination, DestinationError, OpOutcome};
use crate::domain::model::{counter, CounterScope, DeliveryJob, DeliveryOp, OpKind};
use crate::domain::spec::{DestinationKind, ExportDestination, ExportSpec};
use crate::pipeline::intake::tests::{cfg, SECRET};
use crate::pipeline::intake::{handle, Route};
use crate::pipeline::Deps;
use crate::ports::{JobQueue, ManualClock, QueueDepth, QueueError, ReceivedJob};

/// An export of the example spec sent to Meta, without tiers.
const EXPORT: &str = "browse_intent";
const AUDIENCE: &str = "23850000000000106";
const PERSON: &str = "id:cust_00042";
/// `sent_at` of the person's entry (Unix seconds); the exit is a second later.
const ENTERED: i64 = 1_751_371_200;

/// What the held request does once released.
#[derive(Clone, Copy)]
enum AfterHold {
    /// Lands and answers.
    Answer,
    /// Lands, then the platform answers 500.
    FailAfterApplying,
    /// Lands, then the worker dies before it hears back.
    Vanish,
}

struct Hold {
    entered: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
    landed: oneshot::Sender<()>,
    then: AfterHold,
}

/// An audience as Meta keeps it: whatever the last request to arrive says.
/// The next send can be held in flight until the test releases it.
#[derive(Default)]
struct LastWriteWins {
    members: Mutex<BTreeMap<(String, String), bool>>,
    hold: Mutex<Option<Hold>>,
}

impl LastWriteWins {
    fn members(&self, audience: &str) -> BTreeSet<String> {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members
            .iter()
            .filter(|((a, _), held)| a == audience && **held)
            .map(|((_, p), _)| p.clone())
            .collect()
    }

    /// Hold the next request; returns (entered, release, landed).
    fn hold_next(
        &self,
        then: AfterHold,
    ) -> (
        oneshot::Receiver<()>,
        oneshot::Sender<()>,
        oneshot::Receiver<()>,
    ) {
        let (entered_tx, entered) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        let (landed_tx, landed) = oneshot::channel();
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = Some(Hold {
            entered: entered_tx,
            release: release_rx,
            landed: landed_tx,
            then,
        });
        (entered, release, landed)
    }
}

struct Fake(Arc<LastWriteWins>);

#[async_trait]
impl Destination for Fake {
    fn name(&self) -> &str {
        "meta"
    }
    fn kind(&self) -> DestinationKind {
        DestinationKind::MetaAudience
    }
    fn max_batch(&self) -> usize {
        100
    }
    async fn send(
        &self,
        _export: &ExportSpec,
        _binding: &ExportDestination,
        ops: &[DeliveryOp],
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        let hold = self.0.hold.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut then = AfterHold::Answer;
        let mut landed = None;
        if let Some(h) = hold {
            let _ = h.entered.send(());
            let _ = h.release.await;
            then = h.then;
            landed = Some(h.landed);
        }
        {
            let mut members = self.0.members.lock().unwrap_or_else(|e| e.into_inner());
            for op in ops {
                let key = (op.audience.clone(), op.person_key.0.clone());
                match op.op {
                    OpKind::Add => members.insert(key, true),
                    OpKind::Remove => members.insert(key, false),
                    OpKind::Update | OpKind::Event => None,
                };
            }
        }
        if let Some(l) = landed {
            let _ = l.send(());
        }
        match then {
            AfterHold::Answer => Ok(vec![OpOutcome::Accepted; ops.len()]),
            AfterHold::FailAfterApplying => Err(DestinationError::Retryable {
                destination: "meta".into(),
                message: "500 Internal Server Error (after applying the request)".into(),
                retry_after: None,
            }),
            AfterHold::Vanish => std::future::pending().await,
        }
    }
    fn describe_output(&self, _export: &ExportSpec, binding: &ExportDestination) -> String {
        binding.audience.clone()
    }
}

/// The embedded queue, refusing the next `refusals` sends of repairs.
struct RefusesRepairs {
    inner: Arc<dyn JobQueue>,
    refusals: AtomicU32,
}

#[async_trait]
impl JobQueue for RefusesRepairs {
    async fn send(&self, queue: &str, jobs: &[DeliveryJob]) -> Result<(), QueueError> {
        let refuse = jobs.iter().any(|j| j.repair)
            && self
                .refusals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if refuse {
            return Err(QueueError::retryable("send: throttled (test)"));
        }
        self.inner.send(queue, jobs).await
    }
    async fn receive(&self, queue: &str, max: usize) -> Result<Vec<ReceivedJob>, QueueError> {
        self.inner.receive(queue, max).await
    }
    async fn ack(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
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

struct Fixture {
    deps: Deps,
    queue: Arc<RefusesRepairs>,
    clock: Arc<ManualClock>,
    meta: Arc<LastWriteWins>,
    destination: Arc<dyn Destination>,
    /// Every job received from Meta's queue: ops by job id.
    received: Mutex<BTreeMap<String, usize>>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = crate::domain::config::parse_spec(
        include_str!("../../../../config/exports.example.yaml"),
        "exports.example.yaml",
    )
    .expect("example spec");
    let clock = Arc::new(ManualClock::new(ENTERED * 1_000 + 5_000));
    let settings = QueueSettings {
        visibility_timeout: Duration::from_secs(30),
        max_receives: DeliveryOptions::default().max_attempts,
    };
    let queue = Arc::new(RefusesRepairs {
        inner: Arc::new(
            EmbeddedQueue::open(&dir.path().join("q.redb"), settings, clock.clone())
                .expect("queue"),
        ),
        refusals: AtomicU32::new(0),
    });
    let deps = Deps {
        spec: Arc::new(spec),
        state: Arc::new(EmbeddedStateStore::open(&dir.path().join("s.redb")).expect("state")),
        queue: queue.clone(),
        clock: clock.clone(),
    };
    let meta = Arc::new(LastWriteWins::default());
    Fixture {
        deps,
        queue,
        clock,
        destination: Arc::new(Fake(meta.clone())),
        meta,
        received: Mutex::new(BTreeMap::new()),
        _dir: dir,
    }
}

impl Fixture {
    /// The person enters or leaves the export through a webhook action.
    async fn action(&self, action: &str, sent_at: i64) {
        let body = format!(
            r#"{{"action":"{action}","export":"{EXPORT}","person":{{"id":"cust_00042","email":"ada.lovelace+42@example.com"}},"sent_at":{sent_at}}}"#
        );
        let headers: BTreeMap<String, String> =
            [("x-dataout-token".to_string(), SECRET.to_string())].into();
        let resp = handle(
            &self.deps,
            &cfg(),
            Route::Actions,
            &headers,
            body.as_bytes(),
        )
        .await;
        assert_eq!(resp.body["status"], "accepted", "{resp:?}");
    }

    async fn receive(&self) -> Vec<ReceivedJob> {
        let got = self.deps.queue.receive("meta", 10).await.expect("receive");
        let mut seen = self.received.lock().unwrap_or_else(|e| e.into_inner());
        for r in &got {
            seen.insert(r.job.job_id.clone(), r.job.ops.len());
        }
        got
    }

    /// Tell the queue what delivery decided, as the worker does.
    async fn settle(&self, jobs: &[ReceivedJob], dispositions: Vec<Disposition>) {
        assert_eq!(jobs.len(), dispositions.len());
        for (job, d) in jobs.iter().zip(dispositions) {
            match d {
                Disposition::Done => self.deps.queue.ack("meta", &job.receipt).await,
                Disposition::RetryAfter(delay) => {
                    self.deps
                        .queue
                        .retry_later("meta", &job.receipt, delay)
                        .await
                }
            }
            .expect("queue");
        }
    }

    async fn deliver(&self, jobs: &[ReceivedJob]) {
        let (d, _) = deliver_jobs(
            &self.deps,
            &self.destination,
            jobs,
            &DeliveryOptions::default(),
        )
        .await;
        self.settle(jobs, d).await;
    }

    /// Deliver until Meta's queue is empty, letting every delay (backoff,
    /// visibility, an abandoned claim) run out in between.
    async fn drain(&self) {
        for _ in 0..20 {
            self.clock.advance(Duration::from_secs(3_600));
            let jobs = self.receive().await;
            if jobs.is_empty() {
                let depth = self.deps.queue.depth("meta").await.expect("depth");
                assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 0, 0));
                return;
            }
            self.deliver(&jobs).await;
        }
        panic!("Meta's queue never emptied");
    }

    async fn state_members(&self) -> BTreeSet<String> {
        let page = self
            .deps
            .state
            .list_memberships(EXPORT, None, 100)
            .await
            .expect("state");
        page.items
            .into_iter()
            .filter(|r| r.current.member)
            .map(|r| r.person_key.0)
            .collect()
    }

    async fn counters(&self) -> BTreeMap<String, i64> {
        self.deps
            .state
            .get_counters(&CounterScope::delivery(EXPORT, "meta"))
            .await
            .expect("counters")
    }

    /// Ops of every job that reached Meta's queue (the fault suite's measure).
    fn ops_enqueued(&self) -> i64 {
        let seen = self.received.lock().unwrap_or_else(|e| e.into_inner());
        seen.values().map(|n| *n as i64).sum()
    }
}

/// Worker A takes the add and is held inside the send; the person leaves
/// (state, then the remove's job) and worker B delivers the remove; then
/// A's request lands. Returns worker A's jobs and its task.
async fn add_lands_after_the_remove(
    f: &Fixture,
    then: AfterHold,
) -> (
    Vec<ReceivedJob>,
    tokio::task::JoinHandle<(Vec<Disposition>, DeliveryTotals)>,
) {
    f.action("enter", ENTERED).await;
    let add = f.receive().await;
    assert_eq!(add.len(), 1);
    assert_eq!(add[0].job.ops[0].op, OpKind::Add);
    let (entered, release, landed) = f.meta.hold_next(then);
    let worker_a = {
        let (deps, destination, jobs) = (f.deps.clone(), f.destination.clone(), add.clone());
        tokio::spawn(async move {
            deliver_jobs(&deps, &destination, &jobs, &DeliveryOptions::default()).await
        })
    };
    entered.await.expect("worker A's add is in flight");

    f.action("exit", ENTERED + 1).await;
    let remove = f.receive().await;
    assert_eq!(remove.len(), 1);
    assert_eq!(remove[0].job.ops[0].op, OpKind::Remove);
    f.deliver(&remove).await;
    assert!(f.meta.members(AUDIENCE).is_empty(), "the remove landed");

    release.send(()).expect("release worker A");
    landed.await.expect("worker A's add landed");
    assert_eq!(
        f.meta.members(AUDIENCE),
        BTreeSet::from([PERSON.to_string()]),
        "the add landed last: Meta holds the person who left"
    );
    (add, worker_a)
}

async fn assert_meta_holds_what_state_holds(f: &Fixture) {
    let state = f.state_members().await;
    assert!(state.is_empty(), "state says the person left: {state:?}");
    assert_eq!(f.meta.members(AUDIENCE), state);
}

/// Every op that reached the queue settled once, the repairs counted apart.
async fn assert_counters_add_up(f: &Fixture, repairs: i64) {
    let c = f.counters().await;
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    let settled = get(counter::ACCEPTED)
        + get(counter::REJECTED)
        + get(counter::UNMATCHED)
        + get(counter::INVALID)
        + get(counter::SUPERSEDED);
    assert_eq!(f.ops_enqueued(), settled, "{c:?}");
    assert_eq!(get(counter::REPAIRS), repairs, "{c:?}");
}

/// Repairs stay out of the delivered members (adds − removes accepted):
/// they re-assert what the ops they repair counted already.
async fn assert_delivered_members_match_state(f: &Fixture) {
    let c = f.counters().await;
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    let delivered = get(counter::ADDS_ACCEPTED) - get(counter::REMOVES_ACCEPTED);
    assert_eq!(delivered, f.state_members().await.len() as i64, "{c:?}");
}

#[tokio::test]
async fn an_add_that_lands_after_the_persons_remove_is_repaired() {
    let f = fixture();
    let (add, worker_a) = add_lands_after_the_remove(&f, AfterHold::Answer).await;
    let (d, totals) = worker_a.await.expect("worker A");
    assert_eq!(totals.repairs_enqueued, 1, "worker A's read after its send");
    f.settle(&add, d).await;
    f.drain().await;
    assert_meta_holds_what_state_holds(&f).await;
    // The add, the remove and one repair (a remove).
    assert_eq!(f.ops_enqueued(), 3);
    assert_counters_add_up(&f, 1).await;
    assert_delivered_members_match_state(&f).await;
    // The operator sees it in the daily reconciliation.
    let report = crate::pipeline::reconcile::reconcile(
        &f.deps,
        None,
        &BTreeMap::new(),
        &crate::pipeline::reconcile::ReconcileOptions::default(),
    )
    .await
    .expect("reconcile");
    let row = report
        .rows
        .iter()
        .find(|r| r.export == EXPORT && r.destination == "meta")
        .expect("the export's row at Meta");
    assert_eq!((row.repairs, row.delivered_members), (1, 0), "{row:?}");
}

#[tokio::test]
async fn an_add_whose_request_failed_after_the_platform_applied_it_is_repaired() {
    let f = fixture();
    let (add, worker_a) = add_lands_after_the_remove(&f, AfterHold::FailAfterApplying).await;
    let (d, totals) = worker_a.await.expect("worker A");
    assert!(matches!(d[..], [Disposition::RetryAfter(_)]), "{d:?}");
    assert_eq!(totals.repairs_enqueued, 1, "worker A's read after its send");
    f.settle(&add, d).await;
    f.drain().await;
    assert_meta_holds_what_state_holds(&f).await;
    // The add, the remove and one repair (a remove).
    assert_eq!(f.ops_enqueued(), 3);
    assert_counters_add_up(&f, 1).await;
}

#[tokio::test]
async fn an_add_applied_for_a_worker_that_died_before_hearing_back_is_repaired_by_the_retry() {
    let f = fixture();
    let (_add, worker_a) = add_lands_after_the_remove(&f, AfterHold::Vanish).await;
    worker_a.abort();
    assert!(worker_a.await.is_err(), "worker A was killed");
    // Its message comes back once its visibility and its claim run out.
    f.drain().await;
    assert_meta_holds_what_state_holds(&f).await;
    assert_eq!(f.ops_enqueued(), 3);
    assert_counters_add_up(&f, 1).await;
}

#[tokio::test]
async fn an_attempt_whose_repair_cannot_be_enqueued_counts_nothing_and_goes_again() {
    let f = fixture();
    f.queue.refusals.store(1, Ordering::SeqCst);
    let (add, worker_a) = add_lands_after_the_remove(&f, AfterHold::Answer).await;
    let (d, totals) = worker_a.await.expect("worker A");
    assert!(matches!(d[..], [Disposition::RetryAfter(_)]), "{d:?}");
    assert_eq!((totals.accepted, totals.repairs_enqueued), (0, 0));
    let c = f.counters().await;
    assert_eq!(c.get(counter::ACCEPTED), Some(&1), "only the remove: {c:?}");
    f.settle(&add, d).await;
    // The add comes back, is superseded, and its retry repairs it.
    f.drain().await;
    assert_meta_holds_what_state_holds(&f).await;
    assert_eq!(f.ops_enqueued(), 3);
    assert_counters_add_up(&f, 1).await;
}

#[tokio::test]
async fn an_enter_then_an_exit_delivered_in_order_need_no_repair() {
    let f = fixture();
    f.action("enter", ENTERED).await;
    f.drain().await;
    assert_eq!(f.meta.members(AUDIENCE), f.state_members().await);
    f.action("exit", ENTERED + 1).await;
    f.drain().await;
    assert_meta_holds_what_state_holds(&f).await;
    assert_eq!(f.ops_enqueued(), 2, "one add, one remove, nothing else");
    assert_counters_add_up(&f, 0).await;
    assert_delivered_members_match_state(&f).await;
}
