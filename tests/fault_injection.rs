//! Proof under faults: membership changes across five exports and every
//! audience destination kind, on DynamoDB, SQS and S3 (moto) and the
//! simulators, while destinations, the state store, the queue and the
//! delivery workers fail at random (see `faults`). Afterwards every
//! destination holds exactly the source of truth, less the people the
//! world is designed to have refused; the destinations that keep every
//! change received each change once, in order; every op enqueued was
//! counted exactly once; and every fault kind was observed firing where it
//! takes effect. The self-check runs the same world with every fault off:
//! it must observe none and find the same exactness.
//!
//! Sized for `./scripts/test`; `./scripts/bench --bench faults` runs it
//! larger. `FAULTS_REALTIME`, `FAULTS_BATCH_PEOPLE`, `FAULTS_ROUNDS` and
//! `FAULTS_SEED` change the size and the draw.

use std::sync::OnceLock;

use dataout_integration_tests::faults::{run, Outcome, OutcomeLog, Scale};

/// One log subscriber per process, one scenario at a time (moto is shared).
async fn scenario(scale: Scale) -> Outcome {
    static LOG: OnceLock<OutcomeLog> = OnceLock::new();
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let log = LOG
        .get_or_init(|| OutcomeLog::install().expect("one subscriber per test binary"))
        .clone();
    let outcome = run(scale, log).await.expect("the scenario ran to the end");
    for line in &outcome.figures {
        println!("{line}");
    }
    assert!(
        outcome.mismatches.is_empty(),
        "{} differences from the source of truth, the world's design, or between counters:\n{}",
        outcome.mismatches.len(),
        outcome.mismatches.join("\n")
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_change_reaches_every_destination_exactly_once_in_effect_under_faults() {
    let outcome = scenario(Scale::from_env(Scale::test())).await;
    // Both halves ran at size (the default draw makes 900 webhooks and
    // ~1,700 batch changes): fewer means the scenario did not run.
    let batch = outcome.changes - outcome.webhooks;
    assert!(
        outcome.webhooks >= 500 && batch >= 1_000,
        "too few changes to prove anything: {} webhooks, {batch} batch changes",
        outcome.webhooks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_every_fault_off_no_fault_is_observed_and_every_destination_is_still_exact() {
    let outcome = scenario(Scale::self_check()).await;
    let batch = outcome.changes - outcome.webhooks;
    assert!(
        outcome.webhooks >= 200 && batch >= 200,
        "too few changes: {} webhooks, {batch} batch changes",
        outcome.webhooks
    );
}
