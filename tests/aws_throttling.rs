//! The AWS adapters under the answers DynamoDB and S3 give when they shed
//! load, injected *below* the adapters by `dataout_sim::aws_faults` in front
//! of moto: DynamoDB's `ProvisionedThroughputExceededException`, its
//! `TransactionCanceledException` for lack of capacity, S3's `SlowDown` and
//! an `InternalError` after a PUT was applied. The SDK's retries and the
//! adapters' own must carry every write through, and a throttle that never
//! ends must surface as a retryable error that names it.

use std::collections::{BTreeMap, BTreeSet};

use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::s3::S3ObjectStore;
use dataout::domain::model::{
    ChangeOrigin, Identifiers, MembershipRecord, MembershipSnapshot, PersonKey,
};
use dataout::ports::{ObjectStore, StateStore};
use dataout_integration_tests::{endpoint, sdk_config_at, test_sdk_config, unique};
use dataout_sim::aws_faults::{self, AwsFaultPlan};

fn record(export: &str, i: usize) -> MembershipRecord {
    let person = format!("id:u{i:04}");
    MembershipRecord {
        export: export.into(),
        person_key: PersonKey(person.clone()),
        current: MembershipSnapshot {
            member: true,
            tiers: BTreeSet::new(),
            ids: Identifiers {
                id: Some(format!("u{i:04}")),
                ..Identifiers::default()
            },
            attributes: BTreeMap::new(),
        },
        previous: None,
        source_ts: 1_700_000_000_000 + i as i64,
        intake_ts: 1_700_000_000_100 + i as i64,
        entered_at: Some(1_700_000_000_000 + i as i64),
        change_id: format!("c{i}"),
        origin: ChangeOrigin::Action,
    }
}

/// A state store reaching moto through the proxy, and one reaching it
/// directly (to read back what landed, with no fault in the way).
async fn stores(
    plan: AwsFaultPlan,
) -> (
    DynamoStateStore,
    DynamoStateStore,
    dataout_sim::RunningSim,
    std::sync::Arc<aws_faults::AwsFaultProxyState>,
) {
    let (proxy, faults) = aws_faults::start(&endpoint(), plan).await.expect("proxy");
    let direct = aws_sdk_dynamodb::Client::new(&test_sdk_config().await);
    let table = unique("dataout-throttled");
    DynamoStateStore::create_table(&direct, &table)
        .await
        .expect("table");
    let through = aws_sdk_dynamodb::Client::new(&sdk_config_at(&proxy.base_url).await);
    (
        DynamoStateStore::new(through, table.clone()),
        DynamoStateStore::new(direct, table),
        proxy,
        faults,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttles_and_cancelled_transactions_are_retried_until_every_write_lands() {
    let (store, direct, _proxy, faults) = stores(AwsFaultPlan {
        dynamodb_throttled: 0.25,
        transaction_throttled: 0.5,
        seed: 7,
        ..AwsFaultPlan::default()
    })
    .await;
    // What the adapter's retries give up on comes back retryable and the
    // caller (the next delivery attempt, the sender's retry) tries again:
    // as here, until it is answered.
    let mut surfaced = 0;
    for i in 0..40 {
        let mut attempts = 0;
        while let Err(e) = store.put_membership(&record("cart", i)).await {
            assert!(e.is_retryable(), "write {i}: {e}");
            surfaced += 1;
            attempts += 1;
            assert!(attempts < 10, "write {i} never landed: {e}");
        }
        // A settlement of counters alone: one TransactWriteItems.
        let mut attempts = 0;
        while let Err(e) = store
            .settle_jobs(
                &[],
                &[(
                    "delivery#cart#meta".to_string(),
                    vec![("accepted".to_string(), 1)],
                )],
            )
            .await
        {
            assert!(e.is_retryable(), "settle {i}: {e}");
            surfaced += 1;
            attempts += 1;
            assert!(attempts < 10, "settle {i} never landed: {e}");
        }
    }
    // Every write landed, once: read back past the proxy.
    for i in 0..40 {
        let got = direct
            .get_membership("cart", &PersonKey(format!("id:u{i:04}")))
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("membership {i} missing"));
        assert_eq!(got.change_id, format!("c{i}"));
    }
    let counters = direct
        .get_counters("delivery#cart#meta")
        .await
        .expect("counters");
    assert_eq!(counters.get("accepted"), Some(&40), "{counters:?}");
    let c = faults.counts();
    assert!(c.dynamodb_throttled >= 5, "throttles answered: {c:?}");
    assert!(
        c.transactions_cancelled >= 5,
        "transactions cancelled: {c:?}"
    );
    println!("{c:?}; {surfaced} failures reached the caller");
    // The adapter counts each attempt it made: the retries show.
    assert!(
        store.request_count() > 80,
        "{} requests for 80 writes",
        store.request_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_that_never_ends_is_a_retryable_error_that_names_it() {
    let (store, _direct, _proxy, faults) = stores(AwsFaultPlan {
        dynamodb_throttled: 1.0,
        seed: 8,
        ..AwsFaultPlan::default()
    })
    .await;
    let err = store
        .get_membership("cart", &PersonKey("id:u0001".into()))
        .await
        .expect_err("every call throttled");
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("ProvisionedThroughputExceededException"),
        "{err}"
    );
    // The SDK's attempts and then the adapter's: more than one each.
    assert!(
        faults.counts().dynamodb_throttled > 3,
        "{:?}",
        faults.counts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_slow_downs_and_internal_errors_after_a_put_are_retried_and_every_object_is_whole() {
    let (proxy, faults) = aws_faults::start(
        &endpoint(),
        AwsFaultPlan {
            s3_slow_down: 0.3,
            s3_error_after_apply: 0.3,
            seed: 9,
            ..AwsFaultPlan::default()
        },
    )
    .await
    .expect("proxy");
    let s3 = |config: &aws_config::SdkConfig| {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config)
                .force_path_style(true)
                .build(),
        )
    };
    let direct = s3(&test_sdk_config().await);
    let bucket = unique("throttled");
    S3ObjectStore::create_bucket(&direct, &bucket)
        .await
        .expect("bucket");
    let through = S3ObjectStore::new(s3(&sdk_config_at(&proxy.base_url).await), &bucket, "w");
    let direct = S3ObjectStore::new(direct, &bucket, "w");
    // The S3 adapter leaves retries to the SDK; what the SDK gives up on
    // comes back retryable, and the delivery queue sends the job again:
    // as here, until the write is answered.
    let mut surfaced = 0;
    for i in 0..20 {
        let body = format!("{{\"part\":{i}}}\n").repeat(100);
        let mut attempts = 0;
        while let Err(e) = through
            .put(
                &format!("part-{i}.jsonl"),
                body.clone().into_bytes(),
                "application/x-ndjson",
            )
            .await
        {
            assert!(e.is_retryable(), "part {i}: {e}");
            surfaced += 1;
            attempts += 1;
            assert!(attempts < 10, "part {i} never written: {e}");
        }
    }
    for i in 0..20 {
        let got = direct
            .get(&format!("part-{i}.jsonl"))
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("part {i} missing"));
        assert_eq!(got, format!("{{\"part\":{i}}}\n").repeat(100).into_bytes());
    }
    let c = faults.counts();
    assert!(c.s3_slow_downs >= 2, "{c:?}");
    assert!(c.s3_errors_after_apply >= 2, "{c:?}");
    // At these shares (0.6 per attempt, three SDK attempts) some reach us.
    assert!(
        surfaced >= 1,
        "no failure got past the SDK's retries: {c:?}"
    );
    // Every object exactly once under its key: a rewrite replaced it.
    assert_eq!(direct.list("").await.expect("list").len(), 20);
}
