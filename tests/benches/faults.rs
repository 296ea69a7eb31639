//! The fault-injection scenario (`tests/faults`) at a larger size than
//! `./scripts/test` runs: prints its figures and every difference found.
//! Size: `FAULTS_REALTIME` (webhooks), `FAULTS_BATCH_PEOPLE`, `FAULTS_ROUNDS`;
//! `FAULTS_LOG=warn` also prints the pipeline's log.

use dataout_integration_tests::faults::{run, OutcomeLog, Scale};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let log = OutcomeLog::install()?;
    let base = Scale {
        realtime_people: 1_500,
        realtime_changes: 6_000,
        batch_people: 10_000,
        churn_rounds: 3,
        ..Scale::test()
    };
    let outcome = runtime.block_on(run(Scale::from_env(base), log))?;
    println!("== fault injection (moto + simulators, every fault on)");
    for line in &outcome.figures {
        println!("{line}");
    }
    if outcome.mismatches.is_empty() {
        println!(
            "exact: every destination holds the source of truth; every op enqueued counted once"
        );
        Ok(())
    } else {
        for m in &outcome.mismatches {
            println!("MISMATCH {m}");
        }
        anyhow::bail!("{} differences", outcome.mismatches.len())
    }
}
