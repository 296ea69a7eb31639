use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::*;
use crate::conformance::queue::QueueUnderTest;
use crate::ports::{ManualClock, SystemClock};

fn job(id: &str) -> DeliveryJob {
    DeliveryJob {
        replace: false,
        replace_from: None,
        repair: false,
        job_id: id.into(),
        export: "vip".into(),
        destination: "warehouse".into(),
        run_id: None,
        created_at: 0,
        config_hash: "h".into(),
        attempt: 0,
        ops: vec![],
    }
}

const SECOND: Duration = Duration::from_secs(1);

fn settings(vt: Duration, max_receives: u32) -> QueueSettings {
    QueueSettings {
        visibility_timeout: vt,
        max_receives,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_queue_passes_the_queue_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One queue file for every case, so queues really share a store and
    // the isolation case means something.
    let vt = Duration::from_millis(500);
    let queue = EmbeddedQueue::open(
        &dir.path().join("queue.redb"),
        settings(vt, 3),
        Arc::new(SystemClock),
    )
    .expect("open");
    let n = AtomicUsize::new(0);
    crate::conformance::queue::run(|| {
        let name = format!("q{}", n.fetch_add(1, Ordering::SeqCst));
        let queue = queue.clone();
        async move {
            QueueUnderTest {
                queue: Arc::new(queue),
                name,
                visibility_timeout: vt,
                max_receives: 3,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn jobs_survive_a_restart_and_in_flight_ones_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q/queue.redb");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let defaults = settings(Duration::from_secs(30), 2);
    let in_flight_id = {
        let q = EmbeddedQueue::open(&path, defaults, clock.clone()).expect("open");
        q.send("d", &[job("a"), job("b"), job("c")])
            .await
            .expect("send");
        let got = q.receive("d", 1).await.expect("receive");
        assert_eq!(got.len(), 1);
        // Use up "b"'s two receives: the next receive dead-letters it.
        for round in 1..=2 {
            let b = q.receive("d", 1).await.expect("receive");
            assert_eq!((b[0].job.job_id.as_str(), b[0].receive_count), ("b", round));
            q.retry_later("d", &b[0].receipt, Duration::ZERO)
                .await
                .expect("retry");
        }
        got[0].message_id.clone()
    };
    let q = EmbeddedQueue::open(&path, defaults, clock.clone()).expect("reopen");
    let got = q.receive("d", 10).await.expect("receive");
    let ids: Vec<&str> = got.iter().map(|r| r.job.job_id.as_str()).collect();
    assert_eq!(ids, ["c"], "b is dead, a is still in flight");
    assert_eq!(q.dead_letters("d", 10).await.expect("dead"), vec![job("b")]);
    clock.advance(Duration::from_secs(31));
    let back = q.receive("d", 10).await.expect("receive");
    let back: Vec<(&str, u32)> = back
        .iter()
        .filter(|r| r.message_id == in_flight_id)
        .map(|r| (r.job.job_id.as_str(), r.receive_count))
        .collect();
    assert_eq!(back, [("a", 2)]);
}

#[tokio::test]
async fn visibility_follows_the_injected_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(0));
    let q = EmbeddedQueue::open(
        &dir.path().join("q.redb"),
        settings(Duration::from_secs(30), 5),
        clock.clone(),
    )
    .expect("open");
    q.send("d", &[job("a")]).await.expect("send");
    let first = q.receive("d", 10).await.expect("receive");
    clock.advance(Duration::from_secs(29));
    assert!(q.receive("d", 10).await.expect("receive").is_empty());
    clock.advance(SECOND);
    let again = q.receive("d", 10).await.expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    // The first receipt is stale now: acking with it does nothing.
    q.ack("d", &first[0].receipt).await.expect("stale ack");
    assert_eq!(q.depth("d").await.expect("depth").in_flight, 1);
    q.ack("d", &again[0].receipt).await.expect("ack");
    assert_eq!(q.depth("d").await.expect("depth"), QueueDepth::default());
}

#[tokio::test]
async fn settings_apply_per_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(0));
    let q = EmbeddedQueue::open(
        &dir.path().join("q.redb"),
        settings(Duration::from_secs(30), 5),
        clock.clone(),
    )
    .expect("open");
    q.set_queue_settings("strict", settings(Duration::from_secs(5), 1));
    q.send("strict", &[job("s")]).await.expect("send");
    q.send("loose", &[job("l")]).await.expect("send");
    q.receive("strict", 1).await.expect("receive");
    q.receive("loose", 1).await.expect("receive");
    clock.advance(Duration::from_secs(6));
    assert!(
        q.receive("strict", 1).await.expect("receive").is_empty(),
        "dead-lettered after 1"
    );
    assert_eq!(q.depth("strict").await.expect("depth").dead, 1);
    assert!(
        q.receive("loose", 1).await.expect("receive").is_empty(),
        "still hidden for 30 s"
    );
    assert_eq!(q.depth("loose").await.expect("depth").in_flight, 1);
}

#[tokio::test]
async fn a_malformed_receipt_is_a_permanent_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = EmbeddedQueue::open(
        &dir.path().join("q.redb"),
        QueueSettings::default(),
        Arc::new(SystemClock),
    )
    .expect("open");
    let err = q.ack("d", "no-separator").await.expect_err("malformed");
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_jobs_wakes_on_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = EmbeddedQueue::open(
        &dir.path().join("q.redb"),
        QueueSettings::default(),
        Arc::new(SystemClock),
    )
    .expect("open");
    let sender = q.clone();
    let start = Instant::now();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sender.send("d", &[job("a")]).await.expect("send");
    });
    q.wait_for_jobs("d", Duration::from_secs(5)).await;
    let waited = start.elapsed();
    send.await.expect("sender");
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    assert_eq!(q.receive("d", 10).await.expect("receive").len(), 1);
    // Something visible: no wait at all.
    q.send("d", &[job("b")]).await.expect("send");
    let start = Instant::now();
    q.wait_for_jobs("d", Duration::from_secs(5)).await;
    assert!(start.elapsed() < Duration::from_secs(1));
    // Nothing coming: the timeout bounds the wait.
    let start = Instant::now();
    q.wait_for_jobs("empty", Duration::from_millis(100)).await;
    assert!(start.elapsed() >= Duration::from_millis(90));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_jobs_wakes_when_an_in_flight_job_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = EmbeddedQueue::open(
        &dir.path().join("q.redb"),
        settings(Duration::from_millis(200), 5),
        Arc::new(SystemClock),
    )
    .expect("open");
    q.send("d", &[job("a")]).await.expect("send");
    q.receive("d", 1).await.expect("receive");
    let start = Instant::now();
    q.wait_for_jobs("d", Duration::from_secs(5)).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(q.receive("d", 1).await.expect("receive").len(), 1);
}
