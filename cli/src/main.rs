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
use dataout::customerio::webhook::SignatureConfig;
use dataout::domain::config::load_spec_file;
use dataout::local::LocalRuntime;
use dataout::pipeline::intake::{replay_quarantined, IntakeConfig};
use dataout::ports::{EnvSecrets, Secret, SegmentSource, SystemClock};
use dataout::telemetry::{self, LogFormat};

use dataout_cli::{demo, report};

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
    /// Webhooks that were signed but unusable, kept byte for byte.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineCmd,
        #[arg(long, global = true, default_value = ".state/serve")]
        state_dir: PathBuf,
    },
    /// Batch runs: list them, approve one a guard rail held.
    Runs {
        #[command(subcommand)]
        action: RunsCmd,
        #[arg(long, global = true, default_value = ".state/serve")]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum QuarantineCmd {
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    Show {
        id: String,
    },
    /// Run a quarantined body through intake again (after fixing the config).
    Replay {
        id: String,
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum RunsCmd {
    List {
        export: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    Approve {
        run_id: String,
        #[arg(long)]
        config: PathBuf,
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
        Command::Serve {
            config,
            addr,
            state_dir,
        } => {
            telemetry::init(LogFormat::Text, "info");
            serve(&config, addr, &state_dir).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quarantine { action, state_dir } => {
            telemetry::init(LogFormat::Text, "warn");
            quarantine(action, &state_dir).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { action, state_dir } => {
            telemetry::init(LogFormat::Text, "warn");
            runs(action, &state_dir).await?;
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
        )?;
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

async fn open_state(
    state_dir: &Path,
) -> anyhow::Result<dataout::adapters::embedded::state::EmbeddedStateStore> {
    if !state_dir.join("state.redb").exists() {
        bail!(
            "no state at {} (start `dataout serve` first, or pass --state-dir)",
            state_dir.display()
        );
    }
    Ok(
        dataout::adapters::embedded::state::EmbeddedStateStore::open(
            &state_dir.join("state.redb"),
        )?,
    )
}

async fn quarantine(action: QuarantineCmd, state_dir: &Path) -> anyhow::Result<()> {
    use dataout::ports::StateStore;
    match action {
        QuarantineCmd::List { limit } => {
            let state = open_state(state_dir).await?;
            let entries = state.list_quarantine(limit).await?;
            if entries.is_empty() {
                println!("quarantine is empty");
            }
            for e in entries {
                println!(
                    "{}  {}  {:<9}  {}{}",
                    e.id,
                    report::time(e.received_at),
                    e.route,
                    e.reason,
                    if e.replayed_at.is_some() {
                        "  (replayed)"
                    } else {
                        ""
                    }
                );
            }
        }
        QuarantineCmd::Show { id } => {
            let state = open_state(state_dir).await?;
            let Some(e) = state.get_quarantine(&id).await? else {
                bail!("no quarantine entry `{id}`");
            };
            println!("{}", serde_json::to_string_pretty(&e)?);
            use base64::Engine;
            if let Ok(body) =
                base64::engine::general_purpose::STANDARD.decode(e.body_b64.as_bytes())
            {
                println!("--- body ({} bytes) ---", body.len());
                println!("{}", String::from_utf8_lossy(&body));
            }
        }
        QuarantineCmd::Replay { id, config } => {
            let intake = intake_config_from_env()?;
            let rt = open_runtime(&config, state_dir, intake.clone())?;
            let resp = replay_quarantined(&rt.deps, &intake, &id).await?;
            println!("{} {}", resp.status, resp.body);
        }
    }
    Ok(())
}

async fn runs(action: RunsCmd, state_dir: &Path) -> anyhow::Result<()> {
    use dataout::ports::StateStore;
    match action {
        RunsCmd::List { export, limit } => {
            let state = open_state(state_dir).await?;
            for r in state.list_runs(&export, limit).await? {
                println!(
                    "{}  {}  {:?}  members {}  +{} -{} ~{}  config {}",
                    r.run_id,
                    report::time(r.started_at),
                    r.status,
                    r.stats.members,
                    r.stats.adds,
                    r.stats.removes,
                    r.stats.changed,
                    &r.config_hash[..12.min(r.config_hash.len())]
                );
            }
        }
        RunsCmd::Approve { run_id, config } => {
            let intake = intake_config_from_env().unwrap_or_else(|_| placeholder_intake());
            let rt = open_runtime(&config, state_dir, intake)?;
            let run = dataout::pipeline::export::approve(&rt.deps, &run_id).await?;
            println!("{} approved: it commits on its next invocation", run.run_id);
        }
    }
    Ok(())
}

/// Commands that never take webhooks still build a runtime.
fn placeholder_intake() -> IntakeConfig {
    IntakeConfig {
        reporting: SignatureConfig {
            secret: Secret::new(""),
            tolerance: Duration::from_secs(300),
        },
        actions: ActionAuthConfig {
            header_name: "x-dataout-token".into(),
            secret: Secret::new(""),
            mode: ActionAuthMode::SharedSecret,
            tolerance: Duration::from_secs(300),
        },
        dedup_ttl: Duration::from_secs(7 * 24 * 3600),
        in_progress_ttl: Duration::from_secs(5),
    }
}
