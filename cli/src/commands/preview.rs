//! `dataout preview`: the requests an export would send, for a file of people.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use dataout::domain::config::load_spec_file;
use dataout::telemetry::{self, LogFormat};

pub async fn run(
    config: &Path,
    export: &str,
    destination: &str,
    people: &Path,
) -> anyhow::Result<ExitCode> {
    telemetry::init(LogFormat::Text, "error");
    preview(config, export, destination, people).await
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
