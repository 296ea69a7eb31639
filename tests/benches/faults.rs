//! The fault-injection scenario (`tests/faults`) at 100,000 changes and
//! more, every fault on at once, on the embedded adapters (moto serves
//! ~100 requests/s, too few for this size in ten minutes; `./scripts/test`
//! runs the moto scenario at its own size). Prints its figures, throughput
//! and peak memory, and every difference found.
//!
//! Size: `FAULTS_REALTIME` (webhooks), `FAULTS_BATCH_PEOPLE`,
//! `FAULTS_ROUNDS`, `FAULTS_SENDERS`; `FAULTS_BACKEND=moto` to run on moto;
//! `FAULTS_LOG=warn` also prints the pipeline's log.

use std::time::Instant;

use dataout_integration_tests::faults::{run, Backend, OutcomeLog, Scale};

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let log = OutcomeLog::install()?;
    let base = Scale {
        realtime_people: 8_750,
        realtime_changes: 35_000,
        batch_people: 55_000,
        churn_rounds: 3,
        senders: 16,
        backend: Backend::Embedded,
        ..Scale::test()
    };
    let scale = Scale::from_env(base);
    let started = Instant::now();
    let outcome = runtime.block_on(run(scale.clone(), log))?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "== fault injection ({:?} adapters + simulators, every fault on)",
        scale.backend
    );
    for line in &outcome.figures {
        println!("{line}");
    }
    println!(
        "{} changes in {elapsed:.0} s end to end ({:.0} changes/s, faults and checks included); peak memory {} MiB",
        outcome.changes,
        outcome.changes as f64 / elapsed,
        peak_rss_mib().map_or("?".into(), |m| format!("{m:.0}"))
    );
    if outcome.mismatches.is_empty() {
        println!(
            "exact: every destination holds the source of truth less the world's refusals; every change arrived once; every op enqueued counted once; every fault fired"
        );
        Ok(())
    } else {
        for m in &outcome.mismatches {
            println!("MISMATCH {m}");
        }
        anyhow::bail!("{} differences", outcome.mismatches.len())
    }
}
