//! Proof under faults: membership changes across five exports and every
//! audience destination kind, on DynamoDB, SQS and S3 (moto) and the
//! simulators, while destinations, the state store, the queue and the
//! delivery workers fail at random (see `faults`). Afterwards every
//! destination holds exactly the source of truth, less the people it
//! refused or could not match (each logged with its reason), and every op
//! enqueued was counted exactly once.
//!
//! Sized for `./scripts/test`; `./scripts/bench --bench faults` runs it
//! larger. `FAULTS_REALTIME`, `FAULTS_BATCH_PEOPLE`, `FAULTS_ROUNDS` and
//! `FAULTS_SEED` change the size and the draw.

use dataout_integration_tests::faults::{run, OutcomeLog, Scale};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_change_reaches_every_destination_exactly_once_in_effect_under_faults() {
    let log = OutcomeLog::install().expect("one subscriber per test binary");
    let outcome = run(Scale::from_env(Scale::test()), log)
        .await
        .expect("the scenario ran to the end");
    for line in &outcome.figures {
        println!("{line}");
    }
    // The draw decides how many (2,579 with the default seed; any seed
    // gives well over 1,500): fewer means the scenario did not run.
    assert!(
        outcome.changes >= 1_500,
        "too few changes to prove anything: {}",
        outcome.changes
    );
    assert!(
        outcome.mismatches.is_empty(),
        "{} differences from the source of truth or between counters:\n{}",
        outcome.mismatches.len(),
        outcome.mismatches.join("\n")
    );
}
