//! `dataout template`: the SAM template for a spec file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

pub fn run(config: &Path, arch: &str, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let arch = dataout_cli::template::Arch::parse(arch)
        .ok_or_else(|| anyhow::anyhow!("--arch is arm64 or x86_64, not `{arch}`"))?;
    let text = dataout_cli::template::render_file_for(config, &config.display().to_string(), arch)?;
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
