//! `dataout export`: one batch run on the local state, or its plan.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use dataout::domain::config::load_spec_file;
use dataout::ports::SystemClock;
use dataout::telemetry::{self, LogFormat};

use super::app_api_source;

/// Exit status for a run a guard rail held: nothing was committed and it
/// waits for `dataout runs approve` (1 stays "failed").
const EXIT_HELD: u8 = 3;

pub async fn run(
    name: &str,
    config: &Path,
    dry_run: bool,
    state_dir: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "warn");
    let held = export(name, config, dry_run, state_dir, json).await?;
    // A script must tell a held run from a finished one.
    Ok(if held {
        ExitCode::from(EXIT_HELD)
    } else {
        ExitCode::SUCCESS
    })
}

async fn export(
    name: &str,
    config: &Path,
    dry_run: bool,
    state_dir: &Path,
    json: bool,
) -> anyhow::Result<bool> {
    let spec = load_spec_file(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let source = app_api_source()?;
    let mut plan = if dry_run {
        let snapshot = dataout_cli::dry_run::open_local_state(state_dir)?;
        dataout_cli::dry_run::plan(
            Arc::new(spec),
            snapshot.state.clone(),
            &source,
            name,
            Arc::new(SystemClock),
        )
        .await?
    } else {
        let deps = dataout_cli::dry_run::open_local_deps(spec, state_dir, Arc::new(SystemClock))?;
        dataout_cli::dry_run::run(&deps, &source, name).await?
    };
    let held = !dry_run && plan.held_reason.is_some();
    if held {
        plan.approve_with = Some(dataout_cli::dry_run::approve_command(
            &plan.run_id,
            config,
            state_dir,
        ));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", dataout_cli::dry_run::render(&plan));
    }
    Ok(held)
}
