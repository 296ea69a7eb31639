//! Settings of the intake function: the two signing secrets (from the
//! secrets port: Secrets Manager on AWS) and the verification knobs (from
//! the environment). Read once at cold start; a missing secret fails it.

use std::time::Duration;

use dataout::customerio::actions::{
    ActionAuthConfig, ActionAuthMode, BasicCredentials, DEFAULT_TOKEN_HEADER,
};
use dataout::customerio::webhook::{SignatureConfig, DEFAULT_TOLERANCE};
use dataout::pipeline::intake::IntakeConfig;
use dataout::ports::Secrets;
use thiserror::Error;

/// Secret holding the reporting-webhook signing key.
pub const REPORTING_SECRET: &str = "CIO_WEBHOOK_SIGNING_SECRET";
/// Secret holding the webhook actions' token (or HMAC key).
pub const ACTION_SECRET: &str = "DATAOUT_ACTION_SECRET";
/// Optional secret, `user:password`: webhook actions whose URL carries
/// `user:password@` arrive with `Authorization: Basic` and are accepted.
pub const ACTION_BASIC_SECRET: &str = "DATAOUT_ACTION_BASIC_AUTH";
/// Customer.io retries a reporting webhook for up to 7 days: remember event
/// ids at least that long.
pub const DEDUP_TTL: Duration = Duration::from_secs(8 * 24 * 3600);
/// A claim on an event id outlives the function timeout (10 s).
pub const IN_PROGRESS_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("secret {name} is missing or blank ({hint})")]
    MissingSecret {
        name: &'static str,
        hint: &'static str,
    },
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

/// Build the intake configuration. `env` reads environment variables
/// (tests pass a map).
pub fn intake_config(
    env: impl Fn(&str) -> Option<String>,
    secrets: &dyn Secrets,
) -> Result<IntakeConfig, ConfigError> {
    let value = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let reporting_secret = secrets
        .get(REPORTING_SECRET)
        .ok_or(ConfigError::MissingSecret {
            name: REPORTING_SECRET,
            hint: "the signing key of Customer.io's reporting webhooks",
        })?;
    let action_secret = secrets
        .get(ACTION_SECRET)
        .ok_or(ConfigError::MissingSecret {
            name: ACTION_SECRET,
            hint: "the token campaign webhook actions send in their header",
        })?;
    let tolerance = match value("DATAOUT_SIGNATURE_TOLERANCE_SECS") {
        None => DEFAULT_TOLERANCE,
        Some(v) => match v.parse::<u64>() {
            Ok(s) if s > 0 => Duration::from_secs(s),
            _ => {
                return Err(ConfigError::Malformed {
                    name: "DATAOUT_SIGNATURE_TOLERANCE_SECS",
                    reason: format!("`{v}` is not a whole number of seconds above 0"),
                })
            }
        },
    };
    let mode = match value("DATAOUT_ACTION_AUTH").as_deref() {
        None | Some("shared_secret") => ActionAuthMode::SharedSecret,
        Some("hmac") => ActionAuthMode::Hmac,
        Some(other) => {
            return Err(ConfigError::Malformed {
                name: "DATAOUT_ACTION_AUTH",
                reason: format!("`{other}` is neither `shared_secret` nor `hmac`"),
            })
        }
    };
    let basic = match secrets.get(ACTION_BASIC_SECRET) {
        None => None,
        Some(raw) => Some(
            BasicCredentials::parse(&raw).map_err(|e| ConfigError::Malformed {
                name: ACTION_BASIC_SECRET,
                reason: e.to_string(),
            })?,
        ),
    };
    let header_name = value("DATAOUT_ACTION_HEADER")
        .map(|h| h.to_ascii_lowercase())
        .unwrap_or_else(|| DEFAULT_TOKEN_HEADER.to_string());
    Ok(IntakeConfig {
        reporting: SignatureConfig {
            secret: reporting_secret,
            tolerance,
        },
        actions: ActionAuthConfig {
            header_name,
            secret: action_secret,
            mode,
            tolerance,
            basic,
        },
        dedup_ttl: DEDUP_TTL,
        in_progress_ttl: IN_PROGRESS_TTL,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataout::ports::MapSecrets;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn both() -> MapSecrets {
        MapSecrets::default()
            .with(REPORTING_SECRET, "r")
            .with(ACTION_SECRET, "a")
    }

    #[test]
    fn defaults_are_shared_secret_header_and_five_minute_window() {
        let cfg = intake_config(env(&[]), &both()).unwrap();
        assert_eq!(cfg.actions.mode, ActionAuthMode::SharedSecret);
        assert_eq!(cfg.actions.header_name, DEFAULT_TOKEN_HEADER);
        assert_eq!(cfg.reporting.tolerance, DEFAULT_TOLERANCE);
        assert!(cfg.dedup_ttl >= Duration::from_secs(7 * 24 * 3600));
    }

    #[test]
    fn missing_secret_is_named_and_never_printed() {
        let only_action = MapSecrets::default().with(ACTION_SECRET, "hunter2");
        let err = intake_config(env(&[]), &only_action)
            .unwrap_err()
            .to_string();
        assert!(err.contains(REPORTING_SECRET), "{err}");
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn hmac_mode_custom_header_and_window_are_read() {
        let cfg = intake_config(
            env(&[
                ("DATAOUT_ACTION_AUTH", "hmac"),
                ("DATAOUT_ACTION_HEADER", "X-Hook-Signature"),
                ("DATAOUT_SIGNATURE_TOLERANCE_SECS", "120"),
            ]),
            &both(),
        )
        .unwrap();
        assert_eq!(cfg.actions.mode, ActionAuthMode::Hmac);
        assert_eq!(cfg.actions.header_name, "x-hook-signature");
        assert_eq!(cfg.reporting.tolerance, Duration::from_secs(120));
    }

    #[test]
    fn basic_credentials_are_read_from_their_optional_secret_and_never_printed() {
        assert!(intake_config(env(&[]), &both())
            .unwrap()
            .actions
            .basic
            .is_none());
        let with = both().with(ACTION_BASIC_SECRET, "cio-hooks:s3cr3t");
        let cfg = intake_config(env(&[]), &with).unwrap();
        assert_eq!(
            cfg.actions.basic.map(|b| b.header_value()),
            // `printf %s 'cio-hooks:s3cr3t' | base64`
            Some("Basic Y2lvLWhvb2tzOnMzY3IzdA==".to_string())
        );
        let bad = both().with(ACTION_BASIC_SECRET, "s3cr3t-without-user");
        let err = intake_config(env(&[]), &bad).unwrap_err().to_string();
        assert!(err.contains(ACTION_BASIC_SECRET), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn unknown_auth_mode_is_refused() {
        let err = intake_config(env(&[("DATAOUT_ACTION_AUTH", "none")]), &both())
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATAOUT_ACTION_AUTH"), "{err}");
    }
}
