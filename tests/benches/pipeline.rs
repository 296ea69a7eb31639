//! Benchmarks: intake handler latency and throughput on the embedded
//! adapters, and a batch export + delivery run against the simulators.
//! Prints throughput, latency percentiles, peak memory and request counts.
//!
//! Run: `cargo bench -p dataout-integration-tests --bench pipeline`
//! (or `./scripts/bench`). Sizes: `BENCH_WEBHOOKS` (default 5000),
//! `BENCH_PEOPLE` (default 20000).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataout::customerio::webhook::sign;
use dataout::pipeline::intake::{handle, Route};
use dataout::ports::SystemClock;
use dataout_cli::demo::{SimEnv, ACTION_SECRET, SIGNING_SECRET};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process (Linux), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// CPU time of this process (user + system), for events per CPU-second.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

async fn bench_intake(webhooks: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let env = SimEnv::start(100, &dir.path().join("warehouse")).await?;
    let rt = Arc::new(env.runtime(&dir.path().join("state"), Arc::new(SystemClock))?);
    let now = chrono::Utc::now().timestamp();
    let action_headers: BTreeMap<String, String> =
        [("x-dataout-token".to_string(), ACTION_SECRET.to_string())].into();
    // A realistic mix: cart entries, purchases (exit events), reporting metrics.
    let mut requests: Vec<(Route, BTreeMap<String, String>, Vec<u8>)> =
        Vec::with_capacity(webhooks);
    for i in 0..webhooks {
        let (route, body) = match i % 5 {
            0..=2 => (
                Route::Actions,
                json!({"action": "enter", "export": "cart_abandoners", "id": format!("b-enter-{i}"),
                       "person": {"id": format!("bench_{i:06}"), "email": format!("bench{i}@example.com")},
                       "attributes": {"cart_value": format!("{}", 40 + i % 200)}, "sent_at": now - 60}),
            ),
            3 => (
                Route::Actions,
                json!({"action": "event", "id": format!("b-order-{i}"),
                       "person": {"id": format!("bench_{:06}", i - 3)},
                       "event": {"name": "order_placed", "id": format!("ord_{i}")}, "sent_at": now - 30}),
            ),
            _ => (
                Route::Reporting,
                json!({"event_id": format!("01HZBENCH{i:017}"), "object_type": "email",
                       "metric": if i % 10 == 4 { "unsubscribed" } else { "opened" }, "timestamp": now - 10,
                       "data": {"identifiers": {"id": format!("bench_{i:06}"), "email": format!("bench{i}@example.com"), "cio_id": format!("c{i}")}}}),
            ),
        };
        let bytes = serde_json::to_vec(&body)?;
        let headers = match route {
            Route::Actions => action_headers.clone(),
            Route::Reporting => [
                ("x-cio-timestamp".to_string(), now.to_string()),
                (
                    "x-cio-signature".to_string(),
                    sign(SIGNING_SECRET.as_bytes(), now, &bytes),
                ),
            ]
            .into(),
        };
        requests.push((route, headers, bytes));
    }
    let warmup = requests.len().min(200);
    for (route, headers, body) in &requests[..warmup] {
        handle(&rt.deps, &rt.intake, *route, headers, body).await;
    }
    let mut samples = Vec::with_capacity(requests.len());
    let mut jobs = 0u64;
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    for (route, headers, body) in &requests[warmup..] {
        let t = Instant::now();
        let resp = handle(&rt.deps, &rt.intake, *route, headers, body).await;
        samples.push(t.elapsed());
        jobs += resp.body["jobs"].as_u64().unwrap_or(0);
        anyhow::ensure!(resp.status == 200, "unexpected answer {resp:?}");
    }
    let wall = started.elapsed();
    let cpu = cpu_seconds() - cpu0;
    samples.sort();
    let n = samples.len() as f64;
    println!(
        "intake ({} webhooks after {warmup} warm-up, one at a time, embedded adapters)",
        samples.len()
    );
    println!(
        "  handler time: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        percentile(&samples, 1.0).as_secs_f64() * 1e3
    );
    println!(
        "  throughput: {:.0} webhooks/s wall, {:.0} webhooks per CPU-second; {jobs} delivery jobs enqueued",
        n / wall.as_secs_f64(),
        if cpu > 0.0 { n / cpu } else { 0.0 }
    );
    Ok(())
}

async fn bench_batch(people: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut env = SimEnv::start(people, &dir.path().join("warehouse")).await?;
    // The example's size bands fit the demo's 3,000 people, not this size.
    for export in env.spec.exports.values_mut() {
        export.guard_rails = Default::default();
    }
    let rt = Arc::new(env.runtime(&dir.path().join("state"), Arc::new(SystemClock))?);
    let source = env.source()?;
    let started = Instant::now();
    let mut members = 0;
    let mut ops = 0;
    for name in ["cart_abandoners", "recent_purchasers", "lapsed_vips"] {
        let run = rt.run_batch(&source, name).await?;
        anyhow::ensure!(
            run.status == dataout::domain::model::RunStatus::Finished,
            "{name}: {:?}",
            run.status
        );
        members += run.stats.members;
        ops += run.stats.ops_enqueued;
    }
    let read = started.elapsed();
    rt.start_workers().await?;
    let drained = rt.wait_idle(Duration::from_secs(600)).await?;
    let total = started.elapsed();
    let cio = env.cio.handle.counters();
    println!("batch export ({people} people in the workspace, 3 segment exports, first sync)");
    println!(
        "  {members} members read and diffed in {:.2} s ({:.0} members/s, App API paced at 10 requests/s); {ops} ops enqueued",
        read.as_secs_f64(),
        members as f64 / read.as_secs_f64()
    );
    println!(
        "  delivered to 5 destinations in {:.2} s total{}",
        total.as_secs_f64(),
        if drained { "" } else { " (NOT drained)" }
    );
    println!(
        "  requests: Customer.io App API {}, CleverTap {}, Meta {}, Google {}, webhook {}",
        cio.total_requests(),
        env.clevertap.counters().requests,
        env.meta.requests().len(),
        env.google.request_count(),
        env.hook.deliveries().len()
    );
    rt.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets with --bench absent: stay quick then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        bench_intake(if quick {
            300
        } else {
            env_usize("BENCH_WEBHOOKS", 5000)
        })
        .await?;
        bench_batch(if quick {
            500
        } else {
            env_usize("BENCH_PEOPLE", 20000)
        })
        .await
    })?;
    println!("peak memory (RSS): {:.1} MiB", peak_rss_mib());
    Ok(())
}
