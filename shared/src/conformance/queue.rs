//! The job queue suite. Time passes for real here (an SQS server keeps its
//! own clock), so cases poll with deadlines of the visibility timeout plus a
//! margin, never assuming sub-second precision, and make a job visible again
//! at once with `retry_later(0)` wherever waiting proves nothing.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{fail, OrFail};
use crate::domain::model::{Attributes, DeliveryJob, DeliveryOp, Identifiers, OpKind, PersonKey};
use crate::ports::{JobQueue, ReceivedJob};

const SUITE: &str = "queue";

/// Slack on every wait: SQS times in whole seconds.
const MARGIN: Duration = Duration::from_millis(2_500);
const POLL: Duration = Duration::from_millis(100);

/// A queue set up by the adapter's harness: `name` exists (with its
/// dead-letter queue) and has these settings.
pub struct QueueUnderTest {
    pub queue: Arc<dyn JobQueue>,
    pub name: String,
    pub visibility_timeout: Duration,
    pub max_receives: u32,
}

/// Run every case, each on a queue from `fresh`.
pub async fn run<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = QueueUnderTest>,
{
    send_receive_ack(fresh().await).await;
    unacked_job_reappears_after_visibility_timeout(fresh().await).await;
    retry_later_delays_the_job(fresh().await).await;
    dead_letter_after_max_receives(fresh().await).await;
    redrive_returns_dead_letters_to_the_queue(fresh().await).await;
    batch_send_of_more_than_ten_all_arrive(fresh().await).await;
    large_job_round_trips(fresh().await).await;
    receive_respects_max(fresh().await).await;
    queues_are_isolated_by_name(fresh().await, fresh().await).await;
}

// ---------------------------------------------------------------- fixtures

fn op(n: usize, blob: &str) -> DeliveryOp {
    let mut attributes = Attributes::new();
    attributes.insert("plan".into(), json!("pro"));
    if !blob.is_empty() {
        attributes.insert("notes".into(), json!(blob));
    }
    DeliveryOp {
        op: OpKind::Add,
        person_key: PersonKey(format!("id:user-{n}")),
        ids: Identifiers {
            id: Some(format!("user-{n}")),
            email: Some(format!("user{n}@example.com")),
            cio_id: None,
            phone: None,
        },
        audience: "vip".into(),
        tier: None,
        attributes,
        event: None,
        source_ts: 1_700_000_000_000 + n as i64,
        intake_ts: 1_700_000_000_100 + n as i64,
    }
}

/// A job with a unique id (queues of a shared server never mix cases up).
fn job(tag: &str, ops: Vec<DeliveryOp>) -> DeliveryJob {
    DeliveryJob {
        replace: false,
        replace_from: None,
        repair: false,
        job_id: format!("job-{tag}-{}", uuid::Uuid::new_v4().simple()),
        export: "vip".into(),
        destination: "warehouse".into(),
        run_id: None,
        created_at: 1_700_000_000_000,
        config_hash: "cfg-1".into(),
        attempt: 0,
        ops,
    }
}

/// Receive until something arrives or `within` passes.
async fn receive_within(
    q: &QueueUnderTest,
    max: usize,
    within: Duration,
    case: &str,
) -> Vec<ReceivedJob> {
    let deadline = Instant::now() + within;
    loop {
        let got = q
            .queue
            .receive(&q.name, max)
            .await
            .or_fail(SUITE, case, "receive");
        if !got.is_empty() || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Receive exactly the one job sent in a case.
async fn receive_one(q: &QueueUnderTest, within: Duration, case: &str, when: &str) -> ReceivedJob {
    let mut got = receive_within(q, 10, within, case).await;
    if got.len() != 1 {
        fail(
            SUITE,
            case,
            format!("{when}: received {} jobs, expected 1", got.len()),
        );
    }
    got.remove(0)
}

async fn expect_nothing_now(q: &QueueUnderTest, case: &str, when: &str) {
    let got = q
        .queue
        .receive(&q.name, 10)
        .await
        .or_fail(SUITE, case, "receive");
    if !got.is_empty() {
        fail(
            SUITE,
            case,
            format!(
                "{when}: received {} jobs (receive counts {:?}) while hidden",
                got.len(),
                counts(&got)
            ),
        );
    }
}

fn counts(got: &[ReceivedJob]) -> Vec<u32> {
    got.iter().map(|r| r.receive_count).collect()
}

/// Receive a job `max_receives` times without acking it, then receive until
/// it is dead-lettered. Returns the job.
async fn drive_to_dead_letter(q: &QueueUnderTest, case: &str) -> DeliveryJob {
    let sent = job(case, vec![op(1, "")]);
    q.queue
        .send(&q.name, std::slice::from_ref(&sent))
        .await
        .or_fail(SUITE, case, "send");
    for round in 1..=q.max_receives {
        let got = receive_one(
            q,
            q.visibility_timeout + MARGIN,
            case,
            &format!("receive {round}"),
        )
        .await;
        if got.receive_count != round {
            fail(
                SUITE,
                case,
                format!("receive {round} had receive_count {}", got.receive_count),
            );
        }
        // Give it back at once: the receive count still grows.
        q.queue
            .retry_later(&q.name, &got.receipt, Duration::ZERO)
            .await
            .or_fail(SUITE, case, "retry_later");
    }
    let deadline = Instant::now() + q.visibility_timeout + MARGIN;
    loop {
        let got = q
            .queue
            .receive(&q.name, 10)
            .await
            .or_fail(SUITE, case, "receive");
        if let Some(extra) = got.first() {
            fail(
                SUITE,
                case,
                format!(
                    "received again with receive_count {} after max_receives {}",
                    extra.receive_count, q.max_receives
                ),
            );
        }
        let depth = q.queue.depth(&q.name).await.or_fail(SUITE, case, "depth");
        if depth.dead == 1 {
            if depth.visible + depth.in_flight != 0 {
                fail(
                    SUITE,
                    case,
                    format!("dead-lettered job still counted in the queue: {depth:?}"),
                );
            }
            return sent;
        }
        if Instant::now() >= deadline {
            fail(
                SUITE,
                case,
                format!(
                    "not dead-lettered after {} receives: {depth:?}",
                    q.max_receives
                ),
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------- cases

pub async fn send_receive_ack(q: QueueUnderTest) {
    const CASE: &str = "send_receive_ack";
    let sent = job(CASE, vec![op(1, ""), op(2, "")]);
    q.queue
        .send(&q.name, std::slice::from_ref(&sent))
        .await
        .or_fail(SUITE, CASE, "send");
    let depth = q.queue.depth(&q.name).await.or_fail(SUITE, CASE, "depth");
    if (depth.visible, depth.in_flight, depth.dead) != (1, 0, 0) {
        fail(
            SUITE,
            CASE,
            format!("depth after send {depth:?}, expected 1 visible"),
        );
    }
    let got = receive_one(&q, MARGIN, CASE, "first receive").await;
    if got.job != sent {
        fail(SUITE, CASE, "received job differs from the job sent");
    }
    if got.receive_count != 1 {
        fail(
            SUITE,
            CASE,
            format!("first delivery has receive_count {}", got.receive_count),
        );
    }
    let depth = q.queue.depth(&q.name).await.or_fail(SUITE, CASE, "depth");
    if (depth.visible, depth.in_flight) != (0, 1) {
        fail(
            SUITE,
            CASE,
            format!("depth while received {depth:?}, expected 1 in flight"),
        );
    }
    q.queue
        .ack(&q.name, &got.receipt)
        .await
        .or_fail(SUITE, CASE, "ack");
    let depth = q.queue.depth(&q.name).await.or_fail(SUITE, CASE, "depth");
    if (depth.visible, depth.in_flight, depth.dead) != (0, 0, 0) {
        fail(
            SUITE,
            CASE,
            format!("depth after ack {depth:?}, expected empty"),
        );
    }
    expect_nothing_now(&q, CASE, "after ack").await;
}

pub async fn unacked_job_reappears_after_visibility_timeout(q: QueueUnderTest) {
    const CASE: &str = "unacked_job_reappears_after_visibility_timeout";
    let sent = job(CASE, vec![op(1, "")]);
    q.queue
        .send(&q.name, std::slice::from_ref(&sent))
        .await
        .or_fail(SUITE, CASE, "send");
    let first = receive_one(&q, MARGIN, CASE, "first receive").await;
    expect_nothing_now(&q, CASE, "right after the first receive").await;
    let again = receive_one(
        &q,
        q.visibility_timeout + MARGIN,
        CASE,
        "after the visibility timeout",
    )
    .await;
    if again.job != sent || again.message_id != first.message_id {
        fail(SUITE, CASE, "a different job came back");
    }
    if again.receive_count != 2 {
        fail(
            SUITE,
            CASE,
            format!("second delivery has receive_count {}", again.receive_count),
        );
    }
    q.queue
        .ack(&q.name, &again.receipt)
        .await
        .or_fail(SUITE, CASE, "ack");
    let depth = q.queue.depth(&q.name).await.or_fail(SUITE, CASE, "depth");
    if depth.visible + depth.in_flight != 0 {
        fail(SUITE, CASE, format!("depth after ack {depth:?}"));
    }
}

pub async fn retry_later_delays_the_job(q: QueueUnderTest) {
    const CASE: &str = "retry_later_delays_the_job";
    let delay = Duration::from_secs(1);
    let sent = job(CASE, vec![op(1, "")]);
    q.queue
        .send(&q.name, std::slice::from_ref(&sent))
        .await
        .or_fail(SUITE, CASE, "send");
    let first = receive_one(&q, MARGIN, CASE, "first receive").await;
    q.queue
        .retry_later(&q.name, &first.receipt, delay)
        .await
        .or_fail(SUITE, CASE, "retry_later");
    let asked = Instant::now();
    expect_nothing_now(&q, CASE, "right after retry_later").await;
    let depth = q.queue.depth(&q.name).await.or_fail(SUITE, CASE, "depth");
    if (depth.visible, depth.in_flight) != (0, 1) {
        fail(
            SUITE,
            CASE,
            format!("depth while delayed {depth:?}, expected 1 in flight"),
        );
    }
    let again = receive_one(&q, delay + MARGIN, CASE, "after the delay").await;
    if asked.elapsed() < delay.mul_f32(0.5) {
        fail(
            SUITE,
            CASE,
            format!("came back after {:?}, delay was {delay:?}", asked.elapsed()),
        );
    }
    if again.job != sent || again.receive_count != 2 {
        fail(
            SUITE,
            CASE,
            format!("came back as receive_count {}", again.receive_count),
        );
    }
    q.queue
        .ack(&q.name, &again.receipt)
        .await
        .or_fail(SUITE, CASE, "ack");
}

pub async fn dead_letter_after_max_receives(q: QueueUnderTest) {
    const CASE: &str = "dead_letter_after_max_receives";
    let sent = drive_to_dead_letter(&q, CASE).await;
    let dead = q
        .queue
        .dead_letters(&q.name, 10)
        .await
        .or_fail(SUITE, CASE, "dead_letters");
    if dead != [sent.clone()] {
        fail(
            SUITE,
            CASE,
            format!(
                "dead_letters gave {} jobs, expected the one sent",
                dead.len()
            ),
        );
    }
    // Peeking does not remove.
    let again = q
        .queue
        .dead_letters(&q.name, 10)
        .await
        .or_fail(SUITE, CASE, "dead_letters");
    let depth = q.queue.depth(&q.name).await.or_fail(SUITE, CASE, "depth");
    if again.len() != 1 || depth.dead != 1 {
        fail(
            SUITE,
            CASE,
            format!("peeking dead letters removed them: {depth:?}"),
        );
    }
}

pub async fn redrive_returns_dead_letters_to_the_queue(q: QueueUnderTest) {
    const CASE: &str = "redrive_returns_dead_letters_to_the_queue";
    let sent = drive_to_dead_letter(&q, CASE).await;
    let moved = q
        .queue
        .redrive(&q.name)
        .await
        .or_fail(SUITE, CASE, "redrive");
    if moved != 1 {
        fail(SUITE, CASE, format!("redrive moved {moved}, expected 1"));
    }
    let got = receive_one(&q, q.visibility_timeout + MARGIN, CASE, "after redrive").await;
    if got.job != sent {
        fail(
            SUITE,
            CASE,
            "a different job came back from the dead-letter queue",
        );
    }
    if got.receive_count != 1 {
        fail(
            SUITE,
            CASE,
            format!(
                "redriven job has receive_count {}, expected a reset to 1",
                got.receive_count
            ),
        );
    }
    let depth = q.queue.depth(&q.name).await.or_fail(SUITE, CASE, "depth");
    if depth.dead != 0 {
        fail(
            SUITE,
            CASE,
            format!("dead-letter queue not emptied: {depth:?}"),
        );
    }
    q.queue
        .ack(&q.name, &got.receipt)
        .await
        .or_fail(SUITE, CASE, "ack");
    let moved = q
        .queue
        .redrive(&q.name)
        .await
        .or_fail(SUITE, CASE, "redrive");
    if moved != 0 {
        fail(
            SUITE,
            CASE,
            format!("an empty dead-letter queue redrove {moved}"),
        );
    }
}

pub async fn batch_send_of_more_than_ten_all_arrive(q: QueueUnderTest) {
    const CASE: &str = "batch_send_of_more_than_ten_all_arrive";
    let jobs: Vec<DeliveryJob> = (0..25)
        .map(|n| job(&format!("b{n}"), vec![op(n, "")]))
        .collect();
    q.queue
        .send(&q.name, &jobs)
        .await
        .or_fail(SUITE, CASE, "send");
    let want: BTreeSet<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + q.visibility_timeout + MARGIN;
    while seen.len() < want.len() && Instant::now() < deadline {
        let got = q
            .queue
            .receive(&q.name, 10)
            .await
            .or_fail(SUITE, CASE, "receive");
        if got.len() > 10 {
            fail(
                SUITE,
                CASE,
                format!("receive(max 10) returned {}", got.len()),
            );
        }
        for r in got {
            if !want.contains(&r.job.job_id) {
                fail(
                    SUITE,
                    CASE,
                    format!("received a job never sent: {}", r.job.job_id),
                );
            }
            seen.insert(r.job.job_id.clone());
            q.queue
                .ack(&q.name, &r.receipt)
                .await
                .or_fail(SUITE, CASE, "ack");
        }
    }
    if seen != want {
        fail(
            SUITE,
            CASE,
            format!("{} of {} jobs arrived", seen.len(), want.len()),
        );
    }
}

pub async fn large_job_round_trips(q: QueueUnderTest) {
    const CASE: &str = "large_job_round_trips";
    let blob = "x".repeat(1_800);
    let sent = job(CASE, (0..100).map(|n| op(n, &blob)).collect());
    let size = serde_json::to_vec(&sent).map(|v| v.len()).unwrap_or(0);
    if !(150 * 1024..=240 * 1024).contains(&size) {
        fail(
            SUITE,
            CASE,
            format!("fixture is {size} bytes, meant to be ~200 KiB"),
        );
    }
    q.queue
        .send(&q.name, std::slice::from_ref(&sent))
        .await
        .or_fail(SUITE, CASE, "send");
    let got = receive_one(&q, MARGIN, CASE, "receive").await;
    if got.job != sent {
        fail(SUITE, CASE, format!("a {size}-byte job came back changed"));
    }
    q.queue
        .ack(&q.name, &got.receipt)
        .await
        .or_fail(SUITE, CASE, "ack");
}

pub async fn receive_respects_max(q: QueueUnderTest) {
    const CASE: &str = "receive_respects_max";
    let jobs: Vec<DeliveryJob> = (0..5)
        .map(|n| job(&format!("m{n}"), vec![op(n, "")]))
        .collect();
    q.queue
        .send(&q.name, &jobs)
        .await
        .or_fail(SUITE, CASE, "send");
    let got = receive_within(&q, 2, MARGIN, CASE).await;
    if got.is_empty() || got.len() > 2 {
        fail(
            SUITE,
            CASE,
            format!("receive(max 2) returned {}", got.len()),
        );
    }
    let one = receive_within(&q, 1, MARGIN, CASE).await;
    if one.len() != 1 {
        fail(
            SUITE,
            CASE,
            format!("receive(max 1) returned {}", one.len()),
        );
    }
    let depth = q.queue.depth(&q.name).await.or_fail(SUITE, CASE, "depth");
    let received = (got.len() + one.len()) as u64;
    if depth.in_flight != received || depth.visible != 5 - received {
        fail(
            SUITE,
            CASE,
            format!("depth {depth:?} after receiving {received} of 5"),
        );
    }
}

/// `a` and `b` are two fresh queues; a job sent to one is never seen on the other.
pub async fn queues_are_isolated_by_name(a: QueueUnderTest, b: QueueUnderTest) {
    const CASE: &str = "queues_are_isolated_by_name";
    if a.name == b.name {
        fail(
            SUITE,
            CASE,
            "the harness gave two fresh queues the same name",
        );
    }
    let sent = job(CASE, vec![op(1, "")]);
    a.queue
        .send(&a.name, std::slice::from_ref(&sent))
        .await
        .or_fail(SUITE, CASE, "send");
    let depth_b = b.queue.depth(&b.name).await.or_fail(SUITE, CASE, "depth");
    if depth_b.visible + depth_b.in_flight + depth_b.dead != 0 {
        fail(
            SUITE,
            CASE,
            format!("the other queue has depth {depth_b:?}"),
        );
    }
    expect_nothing_now(&b, CASE, "on the other queue").await;
    let got = receive_one(&a, MARGIN, CASE, "on the queue sent to").await;
    if got.job != sent {
        fail(SUITE, CASE, "a different job arrived");
    }
    a.queue
        .ack(&a.name, &got.receipt)
        .await
        .or_fail(SUITE, CASE, "ack");
}
