//! `dataout validate`: load and check a spec file, listing every problem.

use std::path::Path;
use std::process::ExitCode;

use dataout::domain::config::load_spec_file;

pub fn run(file: &Path) -> ExitCode {
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
