//! `dataout`: the operator tool of the Customer.io Data Out bundle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use dataout::customerio::app_api::{AppApiClient, AppApiConfig};
use dataout::customerio::budget::LocalBudget;
use dataout::domain::config::load_spec_file;
use dataout::local::LocalRuntime;
use dataout::pipeline::intake::IntakeConfig;
use dataout::ports::{EnvSecrets, Secret, SegmentSource, SystemClock};
use dataout::telemetry::{self, LogFormat};

use dataout_cli::demo;
use dataout_cli::ops::{self, DlqCmd, QuarantineCmd, ReconcileCmd, RunsCmd, Target};
use dataout_cli::stack::TargetArgs;

/// `dataout export` exit status for a run a guard rail held: nothing was
/// committed and it waits for `dataout runs approve` (1 stays "failed").
const EXIT_HELD: u8 = 3;

#[derive(Parser)]
#[command(
    name = "dataout",
    version,
    about = "Customer.io Data Out: activate segments in CleverTap, Meta, Google and a warehouse"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the exact requests an export would send to one destination for
    /// a file of people (JSON Lines), one JSON line per request; sends nothing.
    Preview {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        export: String,
        #[arg(long)]
        destination: String,
        /// One Customer.io person per line: {"id", "email", "cio_id",
        /// "phone", "attributes": {…}} (and "event" for events exports).
        #[arg(long)]
        people: PathBuf,
    },
    /// One batch run of an export on the local state, reading the source
    /// configured as for `serve`. With --dry-run, print its plan only.
    /// Exit status: 0 finished (or planned), 3 held by a guard rail, 1 failed.
    Export {
        name: String,
        #[arg(long)]
        config: PathBuf,
        /// Diff and print the plan (adds, removes, attribute changes, tier
        /// moves, ops per destination, guard-rail verdict); write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = ".state/serve")]
        state_dir: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send an export's canary profiles (test_profiles) through every
    /// destination of the export (enter, attribute change, exit, leaving
    /// each as found), read the destinations back where their APIs allow,
    /// and print pass/fail per destination. Exits non-zero on a failure.
    Qa {
        #[arg(long)]
        export: String,
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = ".state/serve")]
        state_dir: PathBuf,
        /// Print the verdicts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the whole pipeline locally against simulators and print the report.
    Demo {
        /// People in the simulated Customer.io workspace.
        #[arg(long, default_value_t = 3000)]
        people: usize,
        /// Where the warehouse files and the demo's state go.
        #[arg(long, default_value = "out/demo")]
        out: PathBuf,
    },
    /// Serve intake on localhost with delivery workers and batch schedules.
    Serve {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        #[arg(long, default_value = ".state/serve")]
        state_dir: PathBuf,
    },
    /// Check an activation spec; prints every error with its line.
    Validate { file: PathBuf },
    /// Render the SAM template for a spec (stdout, or --out): one queue, DLQ
    /// and deliver function per destination, one schedule per batch export.
    Template {
        #[arg(long)]
        config: PathBuf,
        /// The functions' architecture: arm64 (default) or x86_64.
        #[arg(long, default_value = "arm64")]
        arch: String,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    // Operator commands: each acts on a local state dir (--state-dir) or a
    // deployed stack (--stack, or --table/--queues); see `ops` and `stack`.
    /// Webhooks that were signed but unusable, kept byte for byte.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineCmd,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Put an export's destinations back to what they held after one of
    /// its runs (--to <run_id>), or empty what we added (no --to), as a run
    /// held until `runs approve`.
    Rollback {
        #[arg(long)]
        export: String,
        /// A finished run of the export (one of its newest three).
        #[arg(long)]
        to: Option<String>,
        /// Restore this destination alone (Meta or Google: those with a
        /// full-replace call). State and the export's other destinations
        /// stay; the export's next batch run re-syncs it from state.
        #[arg(long)]
        destination: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Batch runs: list them, approve one a guard rail held.
    Runs {
        #[command(subcommand)]
        action: RunsCmd,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Dead-lettered delivery jobs: list them, move them back to their queue.
    Dlq {
        #[command(subcommand)]
        action: DlqCmd,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Reconciliation reports.
    Reconcile {
        #[command(subcommand)]
        action: ReconcileCmd,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// The report people look at: one self-contained HTML file (charts
    /// inline) per export × destination, from the stored reconciliations.
    Report {
        /// Write the page here.
        #[arg(long)]
        html: PathBuf,
        /// Days of history drawn.
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// The weekly check: suppression really suppresses, audiences are not
    /// stale, growth within the guard rails. Exits non-zero on a failure.
    Check {
        /// Grace after an export's cadence before it counts as stale, in
        /// percent of the cadence (at least --min-grace-minutes).
        #[arg(long, default_value_t = 50)]
        grace_pct: u32,
        #[arg(long, default_value_t = 15)]
        min_grace_minutes: u32,
        #[command(flatten)]
        target: TargetArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo { people, out } => {
            telemetry::init(LogFormat::Text, "warn");
            demo::run(people, &out).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Preview {
            config,
            export,
            destination,
            people,
        } => {
            telemetry::init(LogFormat::Text, "error");
            preview(&config, &export, &destination, &people).await
        }
        Command::Export {
            name,
            config,
            dry_run,
            state_dir,
            json,
        } => {
            telemetry::init(LogFormat::Text, "warn");
            let held = export(&name, &config, dry_run, &state_dir, json).await?;
            // A script must tell a held run from a finished one.
            Ok(if held {
                ExitCode::from(EXIT_HELD)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Qa {
            export,
            config,
            state_dir,
            json,
        } => {
            telemetry::init(LogFormat::Text, "warn");
            qa(&export, &config, &state_dir, json).await
        }
        Command::Validate { file } => Ok(validate(&file)),
        Command::Template { config, arch, out } => {
            let arch = dataout_cli::template::Arch::parse(&arch)
                .ok_or_else(|| anyhow::anyhow!("--arch is arm64 or x86_64, not `{arch}`"))?;
            let text = dataout_cli::template::render_file_for(
                &config,
                &config.display().to_string(),
                arch,
            )?;
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            config,
            addr,
            state_dir,
        } => {
            telemetry::init(LogFormat::Text, "info");
            serve(&config, addr, &state_dir).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quarantine { action, target } => {
            telemetry::init(LogFormat::Text, "warn");
            ops::quarantine(&Target::open(&target).await?, action).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback {
            export,
            to,
            destination,
            target,
        } => {
            telemetry::init(LogFormat::Text, "warn");
            let deps = Target::open(&target).await?.deps().await?;
            let run = dataout::pipeline::rollback::prepare(
                &deps,
                &export,
                to.as_deref(),
                destination.as_deref(),
            )
            .await?;
            if let dataout::domain::model::RunStatus::Held { reason } = &run.status {
                println!("{} held: {reason}", run.run_id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { action, target } => {
            telemetry::init(LogFormat::Text, "warn");
            ops::runs(&Target::open(&target).await?, action).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { action, target } => {
            telemetry::init(LogFormat::Text, "warn");
            ops::dlq(&Target::open(&target).await?, action).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile { action, target } => {
            telemetry::init(LogFormat::Text, "warn");
            ops::reconcile(&Target::open(&target).await?, action).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { html, days, target } => {
            telemetry::init(LogFormat::Text, "warn");
            dataout_cli::html_report::write(&Target::open(&target).await?, &html, days).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            grace_pct,
            min_grace_minutes,
            target,
        } => {
            telemetry::init(LogFormat::Text, "warn");
            let opts = dataout_cli::check::CheckOptions {
                grace_pct,
                min_grace_minutes,
                ..Default::default()
            };
            dataout_cli::check::command(&Target::open(&target).await?, &opts).await
        }
    }
}

fn validate(file: &Path) -> ExitCode {
    match load_spec_file(file) {
        Ok(spec) => {
            println!(
                "{}: valid — {} exports, {} destinations, config hash {}",
                file.display(),
                spec.exports.len(),
                spec.destinations.len(),
                &spec.config_hash[..12.min(spec.config_hash.len())]
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for issue in errors.to_string().lines() {
                eprintln!("{issue}");
            }
            eprintln!("{} error(s)", errors.issues.len());
            ExitCode::FAILURE
        }
    }
}

fn env_secret(name: &str) -> Option<Secret> {
    dataout::ports::Secrets::get(&EnvSecrets, name)
}

/// Intake settings from the environment (secrets never from files), read
/// as the Lambda reads them.
pub fn intake_config_from_env() -> anyhow::Result<IntakeConfig> {
    Ok(dataout::settings::intake::intake_config(
        |name| std::env::var(name).ok(),
        &EnvSecrets,
    )?)
}

fn open_runtime(
    config: &Path,
    state_dir: &Path,
    intake: IntakeConfig,
) -> anyhow::Result<LocalRuntime> {
    let spec = load_spec_file(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = config
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(LocalRuntime::open(
        spec,
        state_dir,
        &EnvSecrets,
        Arc::new(SystemClock),
        intake,
        &base,
    )?)
}

async fn serve(config: &Path, addr: SocketAddr, state_dir: &Path) -> anyhow::Result<()> {
    let intake = intake_config_from_env()?;
    let rt = Arc::new(open_runtime(config, state_dir, intake)?);
    rt.start_workers().await?;
    if env_secret("CIO_APP_API_KEY").is_some() {
        let source = AppApiClient::new(
            AppApiConfig::from_lookup(|name| std::env::var(name).ok())?,
            &EnvSecrets,
            reqwest::Client::new(),
        )?
        // Every export's schedule shares this one client: one budget.
        .with_budget(Arc::new(LocalBudget::new()));
        let source: Arc<dyn SegmentSource> = Arc::new(source);
        rt.start_schedules(source);
    } else {
        tracing::warn!("CIO_APP_API_KEY is not set: batch schedules are off, webhooks only");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr}"))?;
    tracing::info!(%addr, state_dir = %state_dir.display(), "serving intake: POST /webhooks/customerio, POST /webhooks/actions, GET /healthz");
    axum::serve(listener, rt.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    rt.shutdown().await;
    Ok(())
}

async fn qa(export: &str, config: &Path, state_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    // qa serves no webhooks: the runtime's intake settings are never used.
    let rt = open_runtime(config, state_dir, dataout_cli::demo::intake_config())?;
    let source = if env_secret("CIO_APP_API_KEY").is_some() {
        Some(app_api_source()?)
    } else {
        None
    };
    let verdicts = dataout_cli::qa::run(
        &rt,
        source.as_ref().map(|s| s as &dyn SegmentSource),
        export,
    )
    .await;
    rt.shutdown().await;
    let verdicts = verdicts?;
    if json {
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        print!("{}", dataout_cli::qa::render(export, &verdicts));
    }
    Ok(if verdicts.iter().all(|v| v.pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn preview(
    config: &Path,
    export: &str,
    destination: &str,
    people: &Path,
) -> anyhow::Result<ExitCode> {
    let spec = load_spec_file(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let file =
        std::fs::File::open(people).with_context(|| format!("opening {}", people.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = dataout_cli::preview::preview(
        &spec,
        export,
        destination,
        std::io::BufReader::new(file),
        &mut out,
    )
    .await?;
    drop(out);
    eprint!(
        "{}",
        dataout_cli::preview::render_summary(destination, &summary)
    );
    Ok(if summary.bad_lines.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The batch source as `serve` configures it (the App API, from the environment).
fn app_api_source() -> anyhow::Result<AppApiClient> {
    if env_secret("CIO_APP_API_KEY").is_none() {
        bail!("CIO_APP_API_KEY is not set: the export reads its segment from the App API");
    }
    Ok(AppApiClient::new(
        AppApiConfig::from_lookup(|name| std::env::var(name).ok())?,
        &EnvSecrets,
        reqwest::Client::new(),
    )?
    .with_budget(Arc::new(LocalBudget::new())))
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
