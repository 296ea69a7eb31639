//! Settings of the batch-export function, read once at cold start.

use dataout::settings;
use std::time::Duration;

use dataout::customerio::app_api::{AppApiConfig, AppApiError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
    #[error(transparent)]
    AppApi(#[from] AppApiError),
}

pub const DEFAULT_NAMESPACE: &str = settings::DEFAULT_METRICS_NAMESPACE;
/// Time kept back before the Lambda deadline to save the checkpoint.
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct ExportSettings {
    /// The Customer.io App API (membership and attributes).
    pub app_api: AppApiConfig,
    /// Stop this long before the invocation's deadline and checkpoint.
    pub deadline_margin: Duration,
    /// CloudWatch namespace of the EMF metrics.
    pub metrics_namespace: String,
    /// Timeout of each HTTP request to Customer.io.
    pub http_timeout: Duration,
}

impl ExportSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let app_api = AppApiConfig::from_lookup(&get)?;
        let deadline_margin =
            match value(settings::DEADLINE_MARGIN_SECS) {
                None => DEFAULT_DEADLINE_MARGIN,
                Some(v) => v.parse::<u64>().map(Duration::from_secs).map_err(|_| {
                    ConfigError::Malformed {
                        name: settings::DEADLINE_MARGIN_SECS,
                        reason: format!("`{v}` is not a whole number of seconds"),
                    }
                })?,
            };
        Ok(ExportSettings {
            app_api,
            deadline_margin,
            metrics_namespace: value(settings::METRICS_NAMESPACE)
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            http_timeout: Duration::from_secs(30),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataout::customerio::app_api::Region;
    use std::collections::BTreeMap;

    fn from(pairs: &[(&str, &str)]) -> Result<ExportSettings, ConfigError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_keep_a_minute_before_the_deadline() {
        let s = from(&[]).unwrap();
        assert_eq!(s.deadline_margin, DEFAULT_DEADLINE_MARGIN);
        assert_eq!(s.app_api.region, Region::Us);
    }

    #[test]
    fn region_margin_and_base_url_are_read() {
        let s = from(&[
            ("CIO_REGION", "eu"),
            ("DATAOUT_DEADLINE_MARGIN_SECS", "30"),
            ("CIO_APP_API_BASE_URL", "http://127.0.0.1:9"),
        ])
        .unwrap();
        assert_eq!(s.app_api.region, Region::Eu);
        assert_eq!(s.deadline_margin, Duration::from_secs(30));
        assert_eq!(s.app_api.base_url.as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn defaults_are_the_ones_the_settings_list_shows() {
        let s = from(&[]).unwrap();
        assert_eq!(
            dataout::settings::default_of("DATAOUT_DEADLINE_MARGIN_SECS"),
            Some(s.deadline_margin.as_secs().to_string().as_str())
        );
        assert_eq!(
            dataout::settings::default_of("DATAOUT_METRICS_NAMESPACE"),
            Some(s.metrics_namespace.as_str())
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = from(&[("CIO_REGION", "mars")]).unwrap_err().to_string();
        assert!(e.contains("CIO_REGION"), "{e}");
        let e = from(&[("DATAOUT_DEADLINE_MARGIN_SECS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DATAOUT_DEADLINE_MARGIN_SECS"), "{e}");
    }
}
