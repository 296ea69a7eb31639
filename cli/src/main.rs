//! `dataout`: the operator tool of the Customer.io Data Out bundle.

mod commands;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use dataout_cli::ops::{DlqCmd, QuarantineCmd, ReconcileCmd, RunsCmd};
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
    use commands as c;
    match cli.command {
        Command::Demo { people, out } => c::demo::run(people, &out).await,
        Command::Preview {
            config,
            export,
            destination,
            people,
        } => c::preview::run(&config, &export, &destination, &people).await,
        Command::Export {
            name,
            config,
            dry_run,
            state_dir,
            json,
        } => c::export::run(&name, &config, dry_run, &state_dir, json).await,
        Command::Qa {
            export,
            config,
            state_dir,
            json,
        } => c::qa::run(&export, &config, &state_dir, json).await,
        Command::Validate { file } => Ok(c::validate::run(&file)),
        Command::Template { config, arch, out } => c::template::run(&config, &arch, out),
        Command::Serve {
            config,
            addr,
            state_dir,
        } => c::serve::run(&config, addr, &state_dir).await,
        Command::Quarantine { action, target } => c::quarantine::run(action, &target).await,
        Command::Rollback {
            export,
            to,
            destination,
            target,
        } => c::rollback::run(&export, to.as_deref(), destination.as_deref(), &target).await,
        Command::Runs { action, target } => c::runs::run(action, &target).await,
        Command::Dlq { action, target } => c::dlq::run(action, &target).await,
        Command::Reconcile { action, target } => c::reconcile::run(action, &target).await,
        Command::Report { html, days, target } => c::report::run(&html, days, &target).await,
        Command::Check {
            grace_pct,
            min_grace_minutes,
            target,
        } => c::check::run(grace_pct, min_grace_minutes, &target).await,
    }
}
