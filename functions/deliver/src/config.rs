//! Settings of the deliver function, read once at cold start.

use dataout::settings;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {name} is not set: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverSettings {
    /// The destination this deployment serves (its queue's name in
    /// `DATAOUT_QUEUES` and its name in the activation spec).
    pub destination: String,
    /// The queue's `maxReceiveCount`: the real number of attempts a job
    /// gets before SQS moves it to the DLQ. `None` falls back to the spec.
    pub max_receive_count: Option<u32>,
    /// CloudWatch namespace of the EMF metrics.
    pub metrics_namespace: String,
}

pub const DEFAULT_NAMESPACE: &str = settings::DEFAULT_METRICS_NAMESPACE;

impl DeliverSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any variable source (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let destination = value(settings::DESTINATION).ok_or(ConfigError::Missing {
            name: settings::DESTINATION,
            hint: "the destination whose queue this function consumes",
        })?;
        let max_receive_count = value(settings::MAX_RECEIVE_COUNT)
            .map(|v| match v.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(ConfigError::Malformed {
                    name: settings::MAX_RECEIVE_COUNT,
                    reason: format!("`{v}` is not a whole number of at least 1"),
                }),
            })
            .transpose()?;
        let metrics_namespace =
            value(settings::METRICS_NAMESPACE).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        Ok(DeliverSettings {
            destination,
            max_receive_count,
            metrics_namespace,
        })
    }

    /// Attempts a job gets: the queue's redrive count when known (that is
    /// what SQS enforces), else the destination's `max_attempts`.
    pub fn max_attempts(&self, spec_max_attempts: u32) -> u32 {
        self.max_receive_count.unwrap_or(spec_max_attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn from(pairs: &[(&str, &str)]) -> Result<DeliverSettings, ConfigError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DeliverSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn missing_destination_names_the_variable() {
        let err = from(&[]).unwrap_err().to_string();
        assert!(err.contains("DATAOUT_DESTINATION"), "{err}");
    }

    #[test]
    fn queue_redrive_count_wins_over_the_spec() {
        let s = from(&[
            ("DATAOUT_DESTINATION", "meta"),
            ("DATAOUT_MAX_RECEIVE_COUNT", "3"),
        ])
        .unwrap();
        assert_eq!(s.max_attempts(5), 3);
        let s = from(&[("DATAOUT_DESTINATION", "meta")]).unwrap();
        assert_eq!(s.max_attempts(5), 5);
        assert_eq!(s.metrics_namespace, DEFAULT_NAMESPACE);
    }

    #[test]
    fn malformed_receive_count_is_refused() {
        let err = from(&[
            ("DATAOUT_DESTINATION", "meta"),
            ("DATAOUT_MAX_RECEIVE_COUNT", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("DATAOUT_MAX_RECEIVE_COUNT"), "{err}");
    }
}
