//! Reading Google Ads API answers: `GoogleAdsFailure` error codes, the
//! operations `partialFailureError` names, and how long to wait on a retry.
//! Field names come in lowerCamelCase or snake_case, as proto JSON allows.

use std::time::Duration;

use serde_json::Value;

pub(super) fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

/// GoogleAdsError entries in a list of status details.
pub(super) fn ads_errors(details: &Value) -> impl Iterator<Item = &Value> {
    details
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("errors").and_then(Value::as_array))
        .flatten()
}

/// `kind=CODE` of each error, e.g. `quotaError=RESOURCE_EXHAUSTED`.
pub(super) fn error_codes(details: &Value) -> Vec<String> {
    ads_errors(details)
        .filter_map(|e| field(e, "errorCode", "error_code")?.as_object())
        .flat_map(|codes| {
            codes
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        })
        .collect()
}

/// (failing operation index, message) of each partial-failure error.
pub(super) fn partial_failures(answer: &Value) -> Vec<(Option<usize>, String)> {
    let Some(status) = field(answer, "partialFailureError", "partial_failure_error") else {
        return Vec::new();
    };
    let Some(details) = status.get("details") else {
        return Vec::new();
    };
    ads_errors(details)
        .map(|e| {
            let index = field(e, "location", "location")
                .and_then(|l| field(l, "fieldPathElements", "field_path_elements"))
                .and_then(Value::as_array)
                .and_then(|path| {
                    path.iter().find(|p| {
                        field(p, "fieldName", "field_name").and_then(Value::as_str)
                            == Some("operations")
                    })
                })
                .and_then(|p| p.get("index"))
                .and_then(|i| match i {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                })
                .and_then(|i| usize::try_from(i).ok());
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("rejected by Google Ads");
            let code = field(e, "errorCode", "error_code")
                .and_then(Value::as_object)
                .and_then(|c| c.iter().next())
                .map(|(k, v)| format!(" ({k}={})", v.as_str().unwrap_or_default()))
                .unwrap_or_default();
            (index, format!("{message}{code}"))
        })
        .collect()
}

/// `Retry-After` seconds, else a quota error's `retryDelay` ("30s").
pub(super) fn retry_after(
    headers: &reqwest::header::HeaderMap,
    error: Option<&Value>,
) -> Option<Duration> {
    if let Some(secs) = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs));
    }
    let details = error?.get("details")?;
    ads_errors(details)
        .filter_map(|e| {
            let quota = field(
                e.get("details")?,
                "quotaErrorDetails",
                "quota_error_details",
            )?;
            let delay = field(quota, "retryDelay", "retry_delay")?.as_str()?;
            let secs: f64 = delay.strip_suffix('s')?.parse().ok()?;
            (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
        })
        .max()
}
