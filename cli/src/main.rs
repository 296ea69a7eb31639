//! `dataout`: the operator tool of the Customer.io Data Out bundle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use dataout::customerio::actions::{ActionAuthConfig, ActionAuthMode};
use dataout::customerio::app_api::{AppApiClient, AppApiConfig};
use dataout::customerio::budget::LocalBudget;
use dataout::customerio::webhook::SignatureConfig;
use dataout::domain::config::load_spec_file;
use dataout::local::LocalRuntime;
use dataout::pipeline::intake::IntakeConfig;
use dataout::ports::{EnvSecrets, Secret, SegmentSource, SystemClock};
use dataout::telemetry::{self, LogFormat};

use dataout_cli::demo;
use dataout_cli::ops::{self, DlqCmd, QuarantineCmd, ReconcileCmd, RunsCmd, Target};
use dataout_cli::stack::TargetArgs;

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
        Command::Validate { file } => Ok(validate(&file)),
        Command::Template { config, out } => {
            let text = dataout_cli::template::render_file(&config, &config.display().to_string())?;
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

/// Intake settings from the environment (secrets never from files).
pub fn intake_config_from_env() -> anyhow::Result<IntakeConfig> {
    let Some(signing) = env_secret("CIO_WEBHOOK_SIGNING_SECRET") else {
        bail!("CIO_WEBHOOK_SIGNING_SECRET is not set: the reporting-webhook signing key from Customer.io");
    };
    let action_secret = env_secret("DATAOUT_ACTION_SECRET").unwrap_or_else(|| signing.clone());
    let tolerance = std::env::var("DATAOUT_WEBHOOK_TOLERANCE_SECS")
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .context("DATAOUT_WEBHOOK_TOLERANCE_SECS must be whole seconds")
        })
        .transpose()?
        .unwrap_or(300);
    let mode = match std::env::var("DATAOUT_ACTION_AUTH").as_deref() {
        Ok("hmac") => ActionAuthMode::Hmac,
        _ => ActionAuthMode::SharedSecret,
    };
    Ok(IntakeConfig {
        reporting: SignatureConfig {
            secret: signing,
            tolerance: Duration::from_secs(tolerance),
        },
        actions: ActionAuthConfig {
            header_name: std::env::var("DATAOUT_ACTION_HEADER")
                .unwrap_or_else(|_| "x-dataout-token".into())
                .to_ascii_lowercase(),
            secret: action_secret,
            mode,
            tolerance: Duration::from_secs(tolerance),
        },
        dedup_ttl: Duration::from_secs(7 * 24 * 3600),
        in_progress_ttl: Duration::from_secs(5),
    })
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
