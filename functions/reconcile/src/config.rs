//! Settings of the reconcile function, read once at cold start.

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
/// Drift share above which a row alarms (2 %), unless `DATAOUT_DRIFT_ALARM` says otherwise.
pub const DEFAULT_DRIFT_ALARM: f64 = 0.02;

#[derive(Clone, Debug)]
pub struct ReconcileSettings {
    /// The Customer.io App API (segment counts).
    pub app_api: AppApiConfig,
    /// Drift (a share of the larger count) above which a row alarms.
    pub drift_alarm: f64,
    /// CloudWatch namespace of the EMF metrics.
    pub metrics_namespace: String,
    /// Timeout of each HTTP request to Customer.io and the destinations.
    pub http_timeout: Duration,
    /// `s3://bucket/prefix` where each report is written as JSON and as the
    /// HTML page (`DATAOUT_REPORT_LOCATION`); none: stored in state only.
    pub report_location: Option<(String, String)>,
}

impl ReconcileSettings {
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
        let drift_alarm = match value(settings::DRIFT_ALARM) {
            None => DEFAULT_DRIFT_ALARM,
            Some(v) => match v.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => x,
                _ => {
                    return Err(ConfigError::Malformed {
                        name: settings::DRIFT_ALARM,
                        reason: format!("`{v}` is not a share between 0 and 1"),
                    })
                }
            },
        };
        let report_location = match value(settings::REPORT_LOCATION) {
            None => None,
            Some(v) => {
                Some(
                    dataout::aws::parse_s3_uri(&v).ok_or_else(|| ConfigError::Malformed {
                        name: settings::REPORT_LOCATION,
                        reason: format!("`{v}` is not s3://bucket/prefix"),
                    })?,
                )
            }
        };
        Ok(ReconcileSettings {
            report_location,
            app_api,
            drift_alarm,
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

    fn from(pairs: &[(&str, &str)]) -> Result<ReconcileSettings, ConfigError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ReconcileSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_us_region_and_two_percent_drift() {
        let s = from(&[]).unwrap();
        assert_eq!(s.app_api.region, Region::Us);
        assert_eq!(s.app_api.base_url, None);
        assert_eq!(s.drift_alarm, DEFAULT_DRIFT_ALARM);
    }

    #[test]
    fn eu_region_and_base_url_override_are_read() {
        let s = from(&[
            ("CIO_REGION", "EU"),
            ("CIO_APP_API_BASE_URL", "http://127.0.0.1:9"),
        ])
        .unwrap();
        assert_eq!(s.app_api.region, Region::Eu);
        assert_eq!(s.app_api.base_url.as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn report_location_is_an_s3_bucket_and_prefix() {
        assert_eq!(from(&[]).unwrap().report_location, None);
        let s = from(&[("DATAOUT_REPORT_LOCATION", "s3://wh-bucket/reports")]).unwrap();
        assert_eq!(
            s.report_location,
            Some(("wh-bucket".to_string(), "reports".to_string()))
        );
        let e = from(&[("DATAOUT_REPORT_LOCATION", "/tmp/reports")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DATAOUT_REPORT_LOCATION"), "{e}");
    }

    #[test]
    fn defaults_are_the_ones_the_settings_list_shows() {
        let s = from(&[]).unwrap();
        assert_eq!(
            dataout::settings::default_of("DATAOUT_DRIFT_ALARM"),
            Some(s.drift_alarm.to_string().as_str())
        );
        assert_eq!(dataout::settings::default_of("CIO_REGION"), Some("us"));
        assert_eq!(s.app_api.region, Region::Us);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = from(&[("CIO_REGION", "apac")]).unwrap_err().to_string();
        assert!(e.contains("CIO_REGION"), "{e}");
        let e = from(&[("DATAOUT_DRIFT_ALARM", "5")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DATAOUT_DRIFT_ALARM"), "{e}");
    }
}
