//! Logging setup and metrics lines.
//!
//! Log level comes from `AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`, never from
//! code. Log lines carry export / destination / run and job ids, and person
//! keys only in their digested form (`PersonKey::log_safe`): no raw email or
//! phone number is ever logged.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line (Lambda, CloudWatch).
    Json,
    /// Human-readable (the CLI).
    Text,
}

/// Install the global subscriber once; later calls are ignored.
pub fn init(format: LogFormat, default_level: &str) {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|l| l.to_lowercase())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default_level.to_string());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .flatten_event(true)
            .with_target(false)
            .try_init(),
        LogFormat::Text => builder.with_target(false).compact().try_init(),
    };
}

/// A CloudWatch embedded-metric-format line: printed to stdout, CloudWatch
/// turns it into metrics without an API call.
pub fn emf_line(
    namespace: &str,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, &str)],
    timestamp_ms: i64,
) -> String {
    let mut root = serde_json::Map::new();
    let dims: Vec<String> = dimensions.iter().map(|(k, _)| k.to_string()).collect();
    let defs: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, _, unit)| serde_json::json!({"Name": name, "Unit": unit}))
        .collect();
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [dims], "Metrics": defs}],
        }),
    );
    for (k, v) in dimensions {
        root.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    for (name, value, _) in metrics {
        root.insert(name.to_string(), serde_json::json!(value));
    }
    serde_json::Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_and_dimension() {
        let line = emf_line(
            "DataOut",
            &[("export", "cart")],
            &[("accepted", 3.0, "Count")],
            1,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["export"], "cart");
        assert_eq!(v["accepted"], 3.0);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "accepted"
        );
    }
}
