//! The AWS adapters (DynamoDB state store, SQS job queue, S3 object store)
//! against a real AWS-compatible API on loopback: moto's server, started by
//! `scripts/moto-server start` (or `./scripts/test`), whose address comes in
//! `DATAOUT_TEST_AWS_ENDPOINT`. Every case gets a fresh table, queue or
//! bucket with a unique name.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::s3::S3ObjectStore;
use dataout::adapters::sqs::{parse_job_body, SqsJobQueue, MAX_JOB_BYTES};
use dataout::conformance::queue::QueueUnderTest;
use dataout::domain::model::{
    counter, ChangeOrigin, CounterScope, DeliveryJob, DeliveryOp, Identifiers, MembershipRecord,
    MembershipSnapshot, OpKind, Person, PersonKey, QuarantineEntry, ReconcileReport, RunCheckpoint,
    RunKind, RunRecord, RunStats, RunStatus,
};
use dataout::ports::{IdempotencyStart, JobQueue, MembershipWrite, ObjectStore, StateStore};
use dataout_integration_tests::{endpoint, test_sdk_config, unique};

async fn fresh_store() -> Result<DynamoStateStore> {
    let client = aws_sdk_dynamodb::Client::new(&test_sdk_config().await);
    let table = unique("dataout-state");
    DynamoStateStore::create_table(&client, &table).await?;
    Ok(DynamoStateStore::new(client, table))
}

struct Queues {
    queue: SqsJobQueue,
    client: aws_sdk_sqs::Client,
    name: String,
    urls: dataout::adapters::sqs::QueueUrls,
}

async fn fresh_queue(max_receives: u32) -> Result<Queues> {
    let client = aws_sdk_sqs::Client::new(&test_sdk_config().await);
    let name = unique("dataout-q");
    let map = SqsJobQueue::create_queues(
        &client,
        &[name.as_str()],
        Duration::from_secs(1),
        max_receives,
    )
    .await?;
    let urls = map.get(&name).context("queue created")?.clone();
    Ok(Queues {
        queue: SqsJobQueue::new(client.clone(), map),
        client,
        name,
        urls,
    })
}

fn record(export: &str, person: &str, member: bool, ts: i64, change: &str) -> MembershipRecord {
    MembershipRecord {
        export: export.into(),
        person_key: PersonKey(person.into()),
        current: MembershipSnapshot {
            member,
            tiers: BTreeSet::new(),
            ids: Identifiers {
                id: Some(person.trim_start_matches("id:").into()),
                ..Identifiers::default()
            },
            attributes: BTreeMap::new(),
        },
        previous: None,
        source_ts: ts,
        intake_ts: ts + 5,
        entered_at: member.then_some(ts),
        change_id: change.into(),
        origin: ChangeOrigin::Action,
    }
}

fn op(i: usize, attr_bytes: usize) -> DeliveryOp {
    DeliveryOp {
        op: OpKind::Add,
        person_key: PersonKey(format!("id:{i}")),
        ids: Identifiers {
            id: Some(i.to_string()),
            ..Identifiers::default()
        },
        audience: "aud-1".into(),
        tier: None,
        attributes: [(
            "blob".to_string(),
            serde_json::json!("x".repeat(attr_bytes)),
        )]
        .into_iter()
        .collect(),
        event: None,
        source_ts: 1_000,
        intake_ts: 1_010,
    }
}

fn job(id: &str, ops: Vec<DeliveryOp>) -> DeliveryJob {
    DeliveryJob {
        replace: false,
        replace_from: None,
        repair: false,
        job_id: id.into(),
        export: "vip".into(),
        destination: "clevertap".into(),
        run_id: None,
        created_at: 1_000,
        config_hash: "cfg".into(),
        attempt: 0,
        ops,
    }
}

fn run(id: &str, export: &str, started_at: i64) -> RunRecord {
    RunRecord {
        run_id: id.into(),
        export: export.into(),
        kind: RunKind::Batch,
        status: RunStatus::Running,
        config_hash: "cfg".into(),
        started_at,
        finished_at: None,
        checkpoint: RunCheckpoint::default(),
        stats: RunStats::default(),
    }
}

// ------------------------------------------------------------- state store

#[tokio::test]
async fn state_store_conformance() {
    dataout::conformance::state::run(|| async {
        let store: Arc<dyn StateStore> = match fresh_store().await {
            Ok(store) => Arc::new(store),
            Err(e) => panic!("could not create a DynamoDB table on {}: {e:#}", endpoint()),
        };
        store
    })
    .await;
}

#[tokio::test]
async fn out_of_order_membership_change_is_refused_by_the_conditional_write() -> Result<()> {
    let store = fresh_store().await?;
    let newer = record("vip", "id:1", true, 2_000, "evt-b");
    assert_eq!(
        store.put_membership(&newer).await?,
        MembershipWrite::Applied
    );

    let older = record("vip", "id:1", false, 1_000, "evt-a");
    match store.put_membership(&older).await? {
        MembershipWrite::Stale { current } => assert_eq!(*current, newer),
        other => bail!("older change was not refused: {other:?}"),
    }
    // Same time, another change: also refused (first writer wins).
    let rival = record("vip", "id:1", false, 2_000, "evt-c");
    assert!(matches!(
        store.put_membership(&rival).await?,
        MembershipWrite::Stale { .. }
    ));
    // The very same change again is accepted (a retried delivery).
    assert_eq!(
        store.put_membership(&newer).await?,
        MembershipWrite::Applied
    );
    assert_eq!(
        store
            .get_membership("vip", &PersonKey("id:1".into()))
            .await?,
        Some(newer)
    );
    Ok(())
}

#[tokio::test]
async fn memberships_page_in_key_order_and_the_last_page_says_so() -> Result<()> {
    let store = fresh_store().await?;
    for i in 0..25 {
        store
            .put_membership(&record(
                "vip",
                &format!("id:{i:03}"),
                i % 3 != 0,
                1_000,
                "e",
            ))
            .await?;
    }
    store
        .put_membership(&record("other", "id:x", true, 1_000, "e"))
        .await?;
    let mut keys = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store.list_memberships("vip", cursor, 10).await?;
        pages += 1;
        keys.extend(page.items.iter().map(|r| r.person_key.0.clone()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("id:{i:03}")).collect();
    assert_eq!(keys, expected);
    // Exactly one page worth: no empty trailing page.
    let page = store.list_memberships("vip", None, 25).await?;
    assert_eq!((page.items.len(), page.next), (25, None));
    assert_eq!(store.count_members("vip").await?, 16);
    assert_eq!(store.count_members("nobody").await?, 0);
    assert!(store
        .list_memberships("vip", Some("%%".into()), 5)
        .await
        .is_err());
    Ok(())
}

#[tokio::test]
async fn duplicate_idempotency_key_is_refused_until_expired_and_only_open_claims_are_given_back(
) -> Result<()> {
    let store = fresh_store().await?;
    let now = 1_700_000_000_000;
    let start = |t: i64| store.idempotency_start("evt-1", t, t + 30_000, t + 3_600_000);
    assert_eq!(start(now).await?, IdempotencyStart::Started);
    assert_eq!(start(now + 1).await?, IdempotencyStart::InProgress);
    // The holder ran past its in-progress expiry: a retry takes over.
    assert_eq!(start(now + 30_000).await?, IdempotencyStart::Started);
    store.idempotency_complete("evt-1", now + 3_600_000).await?;
    assert_eq!(start(now + 40_000).await?, IdempotencyStart::Completed);
    // Giving back a completed key leaves it completed.
    store.idempotency_release("evt-1").await?;
    assert_eq!(start(now + 50_000).await?, IdempotencyStart::Completed);
    // A claim given back after a failed attempt can be taken at once.
    let start2 = |t: i64| store.idempotency_start("evt-2", t, t + 30_000, t + 3_600_000);
    assert_eq!(start2(now).await?, IdempotencyStart::Started);
    store.idempotency_release("evt-2").await?;
    assert_eq!(start2(now + 1).await?, IdempotencyStart::Started);
    Ok(())
}

#[tokio::test]
async fn expired_idempotency_item_not_yet_deleted_counts_as_absent() -> Result<()> {
    let store = fresh_store().await?;
    let now = 1_700_000_000_000;
    assert_eq!(
        store
            .idempotency_start("evt-2", now, now + 500, now + 1_000)
            .await?,
        IdempotencyStart::Started
    );
    store.idempotency_complete("evt-2", now + 1_000).await?;
    assert_eq!(
        store
            .idempotency_start("evt-2", now + 999, now + 1_500, now + 2_000)
            .await?,
        IdempotencyStart::Completed
    );
    // Past its expiry, still in the table (TTL deletion lags): a new start.
    assert_eq!(
        store
            .idempotency_start("evt-2", now + 1_000, now + 1_500, now + 9_000)
            .await?,
        IdempotencyStart::Started
    );
    Ok(())
}

#[tokio::test]
async fn counters_add_atomically_and_merge_repeated_names() -> Result<()> {
    let store = fresh_store().await?;
    let scope = CounterScope::delivery("vip", "clevertap");
    store
        .add_counters(
            &scope,
            &[
                (counter::SENT, 3),
                (counter::ACCEPTED, 2),
                (counter::SENT, 1),
            ],
        )
        .await?;
    store
        .add_counters(&scope, &[(counter::ACCEPTED, -1)])
        .await?;
    store.add_counters(&scope, &[]).await?;
    let got = store.get_counters(&scope).await?;
    assert_eq!(got.get(counter::SENT), Some(&4));
    assert_eq!(got.get(counter::ACCEPTED), Some(&1));
    assert_eq!(got.len(), 2);
    assert!(store.get_counters("nothing").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn staging_batches_past_25_restages_by_key_and_clears() -> Result<()> {
    let store = fresh_store().await?;
    let people: Vec<(PersonKey, Person)> = (0..60)
        .map(|i| {
            (
                PersonKey(format!("id:{i:03}")),
                Person {
                    ids: Identifiers {
                        id: Some(i.to_string()),
                        ..Identifiers::default()
                    },
                    attributes: BTreeMap::new(),
                },
            )
        })
        .collect();
    store.stage_people("run-1", &people).await?;
    let mut changed = people[5].clone();
    changed
        .1
        .attributes
        .insert("plan".into(), serde_json::json!("gold"));
    // The same key twice in one call: the last one wins.
    store
        .stage_people("run-1", &[people[5].clone(), changed.clone()])
        .await?;
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_staged("run-1", cursor, 25).await?;
        all.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(all.len(), 60);
    assert_eq!(all[5], changed);
    store.clear_staged("run-1").await?;
    assert!(store.list_staged("run-1", None, 10).await?.items.is_empty());
    Ok(())
}

#[tokio::test]
async fn runs_reports_and_quarantine_list_newest_first() -> Result<()> {
    let store = fresh_store().await?;
    store.put_run(&run("r1", "vip", 1_000)).await?;
    store.put_run(&run("r2", "vip", 3_000)).await?;
    store.put_run(&run("r3", "other", 2_000)).await?;
    // A re-put that moves the start time leaves no stale copy behind.
    let mut moved = run("r1", "vip", 4_000);
    moved.status = RunStatus::Finished;
    store.put_run(&moved).await?;
    let listed: Vec<String> = store
        .list_runs("vip", 10)
        .await?
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(listed, ["r1", "r2"]);
    assert_eq!(store.list_runs("vip", 1).await?.len(), 1);
    assert_eq!(store.get_run("r1").await?, Some(moved));
    assert_eq!(store.get_run("nope").await?, None);

    assert_eq!(store.latest_report().await?, None);
    for (id, at) in [("a", 10), ("b", 30), ("c", 20)] {
        let report = ReconcileReport {
            report_id: id.into(),
            generated_at: at,
            config_hash: "cfg".into(),
            rows: Vec::new(),
        };
        store.put_report(&report).await?;
    }
    assert_eq!(
        store.latest_report().await?.map(|r| r.report_id),
        Some("b".into())
    );

    for (id, at) in [("q1", 5), ("q2", 7), ("q3", 6)] {
        let entry = QuarantineEntry {
            id: id.into(),
            received_at: at,
            route: "/webhooks/reporting".into(),
            reason: "bad signature".into(),
            body_b64: "e30=".into(),
            headers: BTreeMap::new(),
            replayed_at: None,
        };
        store.put_quarantine(&entry).await?;
    }
    let ids: Vec<String> = store
        .list_quarantine(10)
        .await?
        .into_iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(ids, ["q2", "q3", "q1"]);
    assert_eq!(
        store.get_quarantine("q3").await?.map(|q| q.received_at),
        Some(6)
    );
    Ok(())
}

#[tokio::test]
async fn missing_table_is_a_permanent_error_with_its_cause() -> Result<()> {
    let client = aws_sdk_dynamodb::Client::new(&test_sdk_config().await);
    let store = DynamoStateStore::new(client, unique("no-such-table"));
    let err = store
        .get_membership("vip", &PersonKey("id:1".into()))
        .await
        .expect_err("no table");
    assert!(!err.is_retryable(), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    Ok(())
}

// ------------------------------------------------------------- job queue

#[tokio::test]
async fn job_queue_conformance() {
    dataout::conformance::queue::run(|| async {
        let max_receives = 2;
        let q = match fresh_queue(max_receives).await {
            Ok(q) => q,
            Err(e) => panic!("could not create SQS queues on {}: {e:#}", endpoint()),
        };
        QueueUnderTest {
            // Short polls: an empty receive must not eat a 1 s retry delay
            // the suite then checks (moto answers short polls exactly).
            queue: Arc::new(q.queue.with_receive_wait(Duration::ZERO)),
            name: q.name,
            visibility_timeout: Duration::from_secs(1),
            max_receives,
        }
    })
    .await;
}

#[tokio::test]
async fn job_round_trips_with_receive_count_and_ack() -> Result<()> {
    let q = fresh_queue(3).await?;
    let sent = job("job-1", vec![op(1, 10), op(2, 10)]);
    q.queue.send(&q.name, std::slice::from_ref(&sent)).await?;
    let got = q.queue.receive(&q.name, 10).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, sent);
    assert_eq!(got[0].receive_count, 1);
    q.queue.ack(&q.name, &got[0].receipt).await?;
    let depth = q.queue.depth(&q.name).await?;
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 0, 0));
    assert!(q.queue.send("no-such-destination", &[sent]).await.is_err());
    Ok(())
}

#[tokio::test]
async fn many_jobs_go_in_batches_and_all_arrive() -> Result<()> {
    let q = fresh_queue(3).await?;
    let jobs: Vec<DeliveryJob> = (0..23)
        .map(|i| job(&format!("job-{i}"), vec![op(i, 20)]))
        .collect();
    let before = q.queue.request_count();
    q.queue.send(&q.name, &jobs).await?;
    assert_eq!(
        q.queue.request_count() - before,
        3,
        "23 jobs = 3 SendMessageBatch calls"
    );
    let mut ids = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < 23 && Instant::now() < deadline {
        for r in q.queue.receive(&q.name, 50).await? {
            ids.insert(r.job.job_id.clone());
            q.queue.ack(&q.name, &r.receipt).await?;
        }
    }
    assert_eq!(ids.len(), 23);
    Ok(())
}

#[tokio::test]
async fn job_over_240_kib_is_split_and_every_part_arrives() -> Result<()> {
    let q = fresh_queue(3).await?;
    let ops: Vec<DeliveryOp> = (0..120).map(|i| op(i, 5_000)).collect();
    let big = job("job-big", ops.clone());
    assert!(serde_json::to_vec(&big)?.len() > MAX_JOB_BYTES);
    q.queue.send(&q.name, &[big]).await?;
    let mut parts = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for r in q.queue.receive(&q.name, 10).await? {
            q.queue.ack(&q.name, &r.receipt).await?;
            parts.insert(r.job.job_id.clone(), r.job);
        }
        let covered: usize = parts.values().map(|j| j.ops.len()).sum();
        if covered >= ops.len() {
            break;
        }
    }
    assert!(parts.len() >= 3, "{} parts", parts.len());
    let mut numbered: Vec<(usize, DeliveryJob)> = parts
        .into_iter()
        .map(|(id, j)| {
            let n = id
                .strip_prefix("job-big-p")
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            (n, j)
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let expected_numbers: Vec<usize> = (1..=numbered.len()).collect();
    assert_eq!(
        numbered.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        expected_numbers
    );
    let rejoined: Vec<DeliveryOp> = numbered.into_iter().flat_map(|(_, j)| j.ops).collect();
    assert_eq!(rejoined, ops);
    Ok(())
}

#[tokio::test]
async fn unacked_job_returns_and_poison_message_reaches_the_dlq() -> Result<()> {
    let q = fresh_queue(2).await?;
    q.client
        .send_message()
        .queue_url(&q.urls.queue_url)
        .message_body("this is not a job")
        .send()
        .await?;
    q.queue
        .send(&q.name, &[job("job-ok", vec![op(1, 10)])])
        .await?;

    let mut counts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        for r in q.queue.receive(&q.name, 10).await? {
            // Never acked: it must come back with a higher count.
            counts.push(r.receive_count);
        }
        let depth = q.queue.depth(&q.name).await?;
        if depth.dead >= 2 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(counts.starts_with(&[1, 2]), "receive counts {counts:?}");
    let depth = q.queue.depth(&q.name).await?;
    assert_eq!(
        depth.dead, 2,
        "poison and unacked job dead-lettered: {depth:?}"
    );

    // Peek leaves them; redrive moves the parseable and the poison back.
    let peeked = q.queue.dead_letters(&q.name, 10).await?;
    assert_eq!(
        peeked.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
        ["job-ok"]
    );
    assert_eq!(q.queue.dead_letters(&q.name, 10).await?.len(), 1);
    assert_eq!(q.queue.redrive(&q.name).await?, 2);
    let depth = q.queue.depth(&q.name).await?;
    assert_eq!((depth.visible, depth.dead), (2, 0));
    let back = q.queue.receive(&q.name, 10).await?;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].receive_count, 1);
    Ok(())
}

#[tokio::test]
async fn retry_later_hides_the_job_for_the_delay() -> Result<()> {
    let q = fresh_queue(5).await?;
    q.queue
        .send(&q.name, &[job("job-r", vec![op(1, 10)])])
        .await?;
    let got = q.queue.receive(&q.name, 1).await?;
    assert_eq!(got.len(), 1);
    q.queue
        .retry_later(&q.name, &got[0].receipt, Duration::from_secs(60))
        .await?;
    assert_eq!(q.queue.depth(&q.name).await?.in_flight, 1);
    // The visibility timeout (1 s) passes, the retry delay (60 s) does not.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(q.queue.receive(&q.name, 1).await?.is_empty());
    // A zero delay makes it visible at once.
    q.queue
        .retry_later(&q.name, &got[0].receipt, Duration::ZERO)
        .await?;
    let again = q.queue.receive(&q.name, 1).await?;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    Ok(())
}

#[test]
fn sqs_event_body_parses_as_a_job() {
    let j = job("job-e", vec![op(1, 3)]);
    let body = serde_json::to_string(&j).unwrap_or_default();
    assert_eq!(parse_job_body(&body).ok(), Some(j));
    assert!(parse_job_body("{}").is_err());
}

// ------------------------------------------------------------- object store

#[tokio::test]
async fn objects_put_get_list_under_the_prefix() -> Result<()> {
    let conf = test_sdk_config().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("dataout-wh");
    S3ObjectStore::create_bucket(&client, &bucket).await?;
    S3ObjectStore::create_bucket(&client, &bucket).await?;
    let store = S3ObjectStore::new(client.clone(), bucket.clone(), "exports/");
    let other = S3ObjectStore::new(client, bucket.clone(), "elsewhere");
    store
        .put("vip/2024-01-01.csv", b"a,b\n".to_vec(), "text/csv")
        .await?;
    store
        .put("vip/2024-01-02.csv", b"c,d\n".to_vec(), "text/csv")
        .await?;
    store
        .put("vip/2024-01-01.csv", b"e,f\n".to_vec(), "text/csv")
        .await?;
    other.put("vip/x.csv", b"z".to_vec(), "text/csv").await?;
    assert_eq!(
        store.get("vip/2024-01-01.csv").await?,
        Some(b"e,f\n".to_vec())
    );
    assert_eq!(store.get("vip/missing.csv").await?, None);
    assert_eq!(
        store.list("vip/").await?,
        ["vip/2024-01-01.csv", "vip/2024-01-02.csv"]
    );
    assert_eq!(
        store.locate("vip/2024-01-01.csv"),
        format!("s3://{bucket}/exports/vip/2024-01-01.csv")
    );
    Ok(())
}

// ------------------------------------------------------------- request counts

/// Requests a real-time change costs, modelled on the pipeline's calls: the
/// webhook's idempotency claim, the membership read and conditional write,
/// one job enqueued, two counter adds, the claim completed; then delivery
/// receiving in tens, a claim per job, a counter add per batch, an ack per
/// job. Printed for capacity planning (`--nocapture`).
#[tokio::test]
async fn requests_per_thousand_membership_changes() -> Result<()> {
    // Every step is per change or per ten, so 100 scale exactly to 1,000.
    const CHANGES: usize = 100;
    let store = Arc::new(fresh_store().await?);
    let q = fresh_queue(3).await?;
    let now = 1_700_000_000_000;
    let started = Instant::now();

    for i in 0..CHANGES {
        let key = format!("webhook-{i}");
        let person = PersonKey(format!("id:{i}"));
        store
            .idempotency_start(&key, now, now + 30_000, now + 86_400_000)
            .await?;
        let _ = store.get_membership("vip", &person).await?;
        store
            .put_membership(&record("vip", person.as_str(), true, now, &key))
            .await?;
        q.queue
            .send(&q.name, &[job(&format!("job-{i}"), vec![op(i, 50)])])
            .await?;
        store
            .add_counters(
                &CounterScope::delivery("vip", "clevertap"),
                &[(counter::OPS_ENQUEUED, 1)],
            )
            .await?;
        store
            .add_counters(&CounterScope::intake(), &[(counter::WEBHOOKS_ACCEPTED, 1)])
            .await?;
        store.idempotency_complete(&key, now + 86_400_000).await?;
    }
    let (intake_ddb, intake_sqs) = (store.request_count(), q.queue.request_count());

    let mut delivered = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered < CHANGES && Instant::now() < deadline {
        let batch = q.queue.receive(&q.name, 10).await?;
        for r in &batch {
            let key = format!("deliver#{}", r.job.job_id);
            store
                .idempotency_start(&key, now, now + 30_000, now + 86_400_000)
                .await?;
            store.idempotency_complete(&key, now + 86_400_000).await?;
        }
        if !batch.is_empty() {
            store
                .add_counters(
                    &CounterScope::delivery("vip", "clevertap"),
                    &[
                        (counter::SENT, batch.len() as i64),
                        (counter::ACCEPTED, batch.len() as i64),
                    ],
                )
                .await?;
        }
        for r in &batch {
            q.queue.ack(&q.name, &r.receipt).await?;
        }
        delivered += batch.len();
    }
    assert_eq!(delivered, CHANGES);
    let deliver_ddb = store.request_count() - intake_ddb;
    let deliver_sqs = q.queue.request_count() - intake_sqs;
    let scale = 1_000.0 / CHANGES as f64;
    println!(
        "requests per 1,000 membership changes (real-time path, one change per webhook): \
         DynamoDB intake {:.0} + delivery {:.0} = {:.0}; SQS intake {:.0} + delivery {:.0} = {:.0} \
         ({:.1} s on moto)",
        intake_ddb as f64 * scale,
        deliver_ddb as f64 * scale,
        (intake_ddb + deliver_ddb) as f64 * scale,
        intake_sqs as f64 * scale,
        deliver_sqs as f64 * scale,
        (intake_sqs + deliver_sqs) as f64 * scale,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(store.count_members("vip").await?, CHANGES as u64);

    // Batch path: staging 1,000 people is 40 BatchWriteItem calls.
    let before = store.request_count();
    let people: Vec<(PersonKey, Person)> = (0..1_000)
        .map(|i| (PersonKey(format!("id:{i}")), Person::default()))
        .collect();
    store.stage_people("run-count", &people).await?;
    println!(
        "staging 1,000 people (batch path): {} DynamoDB requests",
        store.request_count() - before
    );
    Ok(())
}
