//! Every runtime setting of the bundle in one place: the environment
//! variables and secret names the Lambda functions, the CLI and the demo
//! read, with one set of names and defaults. [`SETTINGS`] lists them (the
//! README's settings table is checked against it); [`intake`] builds the
//! webhook intake's configuration for every runtime.

pub mod intake;

use thiserror::Error;

/// A setting that cannot be used. Always permanent: the value has to be
/// fixed where it is set; retrying the same cold start changes nothing.
#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("environment variable {name} is not set: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("secret {name} is missing or blank ({hint})")]
    MissingSecret {
        name: &'static str,
        hint: &'static str,
    },
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
    #[error("environment variable {old} was renamed: set {new} instead")]
    Renamed {
        old: &'static str,
        new: &'static str,
    },
}

/// Where a setting's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An environment variable (the template sets these on AWS).
    Env,
    /// A key of the secrets (Secrets Manager on AWS, the environment locally).
    Secret,
}

/// One runtime setting.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub name: &'static str,
    pub source: Source,
    /// The value used when unset, as the README shows it (`-`: required or none).
    pub default: &'static str,
    /// Which runtimes read it.
    pub read_by: &'static str,
}

pub const TABLE: &str = "DATAOUT_TABLE";
pub const QUEUES: &str = "DATAOUT_QUEUES";
pub const CONFIG: &str = "DATAOUT_CONFIG";
pub const SECRETS_ID: &str = "DATAOUT_SECRETS_ID";
pub const SECRETS_EXTENSION_PORT: &str = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT";
pub const METRICS_NAMESPACE: &str = "DATAOUT_METRICS_NAMESPACE";
pub const CIO_REGION: &str = "CIO_REGION";
pub const CIO_APP_API_BASE_URL: &str = "CIO_APP_API_BASE_URL";
pub const SIGNATURE_TOLERANCE_SECS: &str = "DATAOUT_SIGNATURE_TOLERANCE_SECS";
pub const ACTION_AUTH: &str = "DATAOUT_ACTION_AUTH";
pub const ACTION_HEADER: &str = "DATAOUT_ACTION_HEADER";
pub const DESTINATION: &str = "DATAOUT_DESTINATION";
pub const MAX_RECEIVE_COUNT: &str = "DATAOUT_MAX_RECEIVE_COUNT";
pub const DEADLINE_MARGIN_SECS: &str = "DATAOUT_DEADLINE_MARGIN_SECS";
pub const DRIFT_ALARM: &str = "DATAOUT_DRIFT_ALARM";
pub const REPORT_LOCATION: &str = "DATAOUT_REPORT_LOCATION";
pub const REPORTING_SECRET: &str = "CIO_WEBHOOK_SIGNING_SECRET";
pub const ACTION_SECRET: &str = "DATAOUT_ACTION_SECRET";
pub const ACTION_BASIC_SECRET: &str = "DATAOUT_ACTION_BASIC_AUTH";
pub const APP_API_KEY: &str = "CIO_APP_API_KEY";

/// The name the CLI used for [`SIGNATURE_TOLERANCE_SECS`]; refused with the
/// new name rather than silently ignored.
pub const OLD_TOLERANCE_NAME: &str = "DATAOUT_WEBHOOK_TOLERANCE_SECS";

/// Default CloudWatch namespace of the EMF metrics.
pub const DEFAULT_METRICS_NAMESPACE: &str = "DataOut";

const LAMBDAS: &str = "all functions";
const ALL: &str = "all functions, CLI";

/// Every setting, in the README's order.
#[rustfmt::skip]
pub const SETTINGS: &[Setting] = &[
    Setting { name: TABLE, source: Source::Env, default: "-", read_by: LAMBDAS },
    Setting { name: QUEUES, source: Source::Env, default: "-", read_by: LAMBDAS },
    Setting { name: CONFIG, source: Source::Env, default: "-", read_by: LAMBDAS },
    Setting { name: SECRETS_ID, source: Source::Env, default: "-", read_by: LAMBDAS },
    Setting { name: SECRETS_EXTENSION_PORT, source: Source::Env, default: "2773", read_by: LAMBDAS },
    Setting { name: METRICS_NAMESPACE, source: Source::Env, default: DEFAULT_METRICS_NAMESPACE, read_by: LAMBDAS },
    Setting { name: CIO_REGION, source: Source::Env, default: "us", read_by: ALL },
    Setting { name: CIO_APP_API_BASE_URL, source: Source::Env, default: "-", read_by: ALL },
    Setting { name: SIGNATURE_TOLERANCE_SECS, source: Source::Env, default: "300", read_by: "webhook-intake, CLI" },
    Setting { name: ACTION_AUTH, source: Source::Env, default: "shared_secret", read_by: "webhook-intake, CLI" },
    Setting { name: ACTION_HEADER, source: Source::Env, default: "x-dataout-token", read_by: "webhook-intake, CLI" },
    Setting { name: DESTINATION, source: Source::Env, default: "-", read_by: "deliver" },
    Setting { name: MAX_RECEIVE_COUNT, source: Source::Env, default: "-", read_by: "deliver" },
    Setting { name: DEADLINE_MARGIN_SECS, source: Source::Env, default: "60", read_by: "batch-export" },
    Setting { name: DRIFT_ALARM, source: Source::Env, default: "0.02", read_by: "reconcile" },
    Setting { name: REPORT_LOCATION, source: Source::Env, default: "-", read_by: "reconcile" },
    Setting { name: REPORTING_SECRET, source: Source::Secret, default: "-", read_by: "webhook-intake, CLI" },
    Setting { name: ACTION_SECRET, source: Source::Secret, default: "-", read_by: "webhook-intake, CLI" },
    Setting { name: ACTION_BASIC_SECRET, source: Source::Secret, default: "-", read_by: "webhook-intake, CLI" },
    Setting { name: APP_API_KEY, source: Source::Secret, default: "-", read_by: "batch-export, reconcile, CLI" },
];

/// The default [`SETTINGS`] (and so the README) gives `name`.
pub fn default_of(name: &str) -> Option<&'static str> {
    SETTINGS.iter().find(|s| s.name == name).map(|s| s.default)
}

/// A variable's value; blank counts as unset.
pub fn value(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Ends a cold start that cannot go on: one error log line naming what is
/// wrong (the whole cause chain on that line), then exit 1, which Lambda
/// reports as a failed init.
pub fn fail_cold_start(function: &str, error: &anyhow::Error) -> ! {
    tracing::error!(function, error = format!("{error:#}"), "cold start failed");
    std::process::exit(1)
}

#[cfg(test)]
mod tests;
