//! Settings of the intake function: the two signing secrets (from the
//! secrets port: Secrets Manager on AWS) and the verification knobs (from
//! the environment). Read once at cold start, by the reader every runtime
//! shares (`dataout::settings::intake`); a missing secret fails it.

pub use dataout::settings::intake::{intake_config, DEDUP_TTL, IN_PROGRESS_TTL};
pub use dataout::settings::SettingsError as ConfigError;
pub use dataout::settings::{ACTION_BASIC_SECRET, ACTION_SECRET, REPORTING_SECRET};
