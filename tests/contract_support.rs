//! What the contract tests (`tests/*_contract*`) share: driving the demo's
//! pipeline on the simulators while their wire logs record, and reading a
//! query string as the platform would.

use std::sync::Arc;
use std::time::Duration;

use dataout::domain::spec::ExportSource;
use dataout::local::LocalRuntime;
use dataout::ports::SystemClock;
use dataout_cli::demo::{self, SimEnv};
use dataout_sim::RunningSim;

/// The demo's pipeline on `env`: every batch export, the demo's webhook
/// stream, then `batch_rounds - 1` more rounds of batch runs, each step
/// settled within `settle`. Returns the runtime and its intake server, for
/// the calls a test adds.
pub async fn drive_demo_pipeline(
    env: &SimEnv,
    state_dir: &std::path::Path,
    batch_rounds: usize,
    settle: Duration,
) -> anyhow::Result<(Arc<LocalRuntime>, RunningSim)> {
    let rt = Arc::new(env.runtime(state_dir, Arc::new(SystemClock))?);
    rt.start_workers().await?;
    let server = dataout_sim::serve(rt.router()).await?;
    let source = env.source()?;
    let segments: Vec<String> = env
        .spec
        .exports
        .iter()
        .filter(|(_, e)| matches!(e.source, ExportSource::Segment { .. }))
        .map(|(n, _)| n.clone())
        .collect();
    for round in 0..batch_rounds.max(1) {
        for name in &segments {
            rt.run_batch(&source, name).await?;
        }
        rt.wait_idle(settle).await?;
        if round == 0 {
            demo::replay_stream(&server.base_url, &env.cio.handle, &env.spec).await?;
            rt.wait_idle(settle).await?;
        }
    }
    Ok((rt, server))
}

/// Percent-decoded `key=value` pairs of a query string (form encoding: `+`
/// is a space).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}
