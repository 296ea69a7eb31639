//! The webhook intake's configuration, the same on every runtime: the
//! Lambda function, `dataout serve`, the demo and a quarantine replay.

use std::time::Duration;

use crate::customerio::actions::{
    ActionAuthConfig, ActionAuthMode, BasicCredentials, DEFAULT_TOKEN_HEADER,
};
use crate::customerio::webhook::{SignatureConfig, DEFAULT_TOLERANCE};
use crate::pipeline::intake::IntakeConfig;
use crate::ports::{Secret, Secrets};

use super::{
    value, SettingsError, ACTION_AUTH, ACTION_BASIC_SECRET, ACTION_HEADER, ACTION_SECRET,
    OLD_TOLERANCE_NAME, REPORTING_SECRET, SIGNATURE_TOLERANCE_SECS,
};

/// Customer.io retries a reporting webhook for up to 7 days
/// (docs/customerio.md): event ids are remembered a day longer.
pub const DEDUP_TTL: Duration = Duration::from_secs(8 * 24 * 3600);
/// A claim on an event id outlives one intake request (the function's
/// timeout is 8 s; Customer.io gives up waiting after 4 s and retries).
pub const IN_PROGRESS_TTL: Duration = Duration::from_secs(30);

/// The configuration with every default, for the given secrets.
pub fn defaults(reporting_secret: Secret, action_secret: Secret) -> IntakeConfig {
    IntakeConfig {
        reporting: SignatureConfig {
            secret: reporting_secret,
            tolerance: DEFAULT_TOLERANCE,
        },
        actions: ActionAuthConfig {
            header_name: DEFAULT_TOKEN_HEADER.to_string(),
            secret: action_secret,
            mode: ActionAuthMode::SharedSecret,
            tolerance: DEFAULT_TOLERANCE,
            basic: None,
        },
        dedup_ttl: DEDUP_TTL,
        in_progress_ttl: IN_PROGRESS_TTL,
    }
}

/// Read the intake configuration: the knobs from `env` (the environment,
/// or a map in tests), the keys from `secrets`. A missing key or a bad
/// value is refused with its name; a secret's value is never printed.
pub fn intake_config(
    env: impl Fn(&str) -> Option<String>,
    secrets: &dyn Secrets,
) -> Result<IntakeConfig, SettingsError> {
    if value(&env, OLD_TOLERANCE_NAME).is_some() {
        return Err(SettingsError::Renamed {
            old: OLD_TOLERANCE_NAME,
            new: SIGNATURE_TOLERANCE_SECS,
        });
    }
    let reporting_secret = secrets
        .get(REPORTING_SECRET)
        .ok_or(SettingsError::MissingSecret {
            name: REPORTING_SECRET,
            hint: "the signing key of Customer.io's reporting webhooks",
        })?;
    let action_secret = secrets
        .get(ACTION_SECRET)
        .ok_or(SettingsError::MissingSecret {
            name: ACTION_SECRET,
            hint: "the token campaign webhook actions send in their header",
        })?;
    let mut cfg = defaults(reporting_secret, action_secret);
    if let Some(v) = value(&env, SIGNATURE_TOLERANCE_SECS) {
        let tolerance = match v.parse::<u64>() {
            Ok(s) if s > 0 => Duration::from_secs(s),
            _ => {
                return Err(SettingsError::Malformed {
                    name: SIGNATURE_TOLERANCE_SECS,
                    reason: format!("`{v}` is not a whole number of seconds above 0"),
                })
            }
        };
        cfg.reporting.tolerance = tolerance;
        cfg.actions.tolerance = tolerance;
    }
    cfg.actions.mode = match value(&env, ACTION_AUTH).as_deref() {
        None | Some("shared_secret") => ActionAuthMode::SharedSecret,
        Some("hmac") => ActionAuthMode::Hmac,
        Some(other) => {
            return Err(SettingsError::Malformed {
                name: ACTION_AUTH,
                reason: format!("`{other}` is neither `shared_secret` nor `hmac`"),
            })
        }
    };
    if let Some(raw) = secrets.get(ACTION_BASIC_SECRET) {
        let basic = BasicCredentials::parse(&raw).map_err(|e| SettingsError::Malformed {
            name: ACTION_BASIC_SECRET,
            reason: e.to_string(),
        })?;
        cfg.actions.basic = Some(basic);
    }
    if let Some(header) = value(&env, ACTION_HEADER) {
        cfg.actions.header_name = header.to_ascii_lowercase();
    }
    Ok(cfg)
}
