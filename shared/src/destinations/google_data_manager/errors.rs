//! Reading the Data Manager API's refusals: a `google.rpc.Status` over REST
//! (`{error: {code, message, status, details: [...]}}`), whose details carry
//! an `ErrorInfo` (the API's `ErrorReason`, `google/ads/datamanager/v1/error.proto`,
//! or the Cloud front end's own reasons such as `RATE_LIMIT_EXCEEDED`), a
//! `BadRequest` naming fields (`fieldViolations[].field`, e.g.
//! `audience_members[3].user_data.user_identifiers[0]`) and, for quotas,
//! a `RetryInfo`. See `docs/google-data-manager.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// Which of the project's quotas a 429 spent (`docs/google-data-manager.md`:
/// 300 requests per minute and 100,000 per day per Cloud project).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaWindow {
    PerMinute,
    PerDay,
}

/// One refusal, read.
#[derive(Clone, Debug, Default)]
pub struct Refusal {
    /// `error.status`: the canonical code (`INVALID_ARGUMENT`, …).
    pub status: String,
    /// `ErrorInfo.reason`, when given.
    pub reason: Option<String>,
    pub message: String,
    /// `BadRequest.fieldViolations`: `(field, description)`.
    pub violations: Vec<(String, String)>,
    /// For quota refusals: which window, from `ErrorInfo.metadata`.
    pub quota: Option<QuotaWindow>,
    /// `RetryInfo.retryDelay`.
    pub retry_delay: Option<Duration>,
}

fn type_is(detail: &Value, name: &str) -> bool {
    detail
        .get("@type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.ends_with(name))
}

/// A protobuf `Duration` in JSON: `"30s"`, `"1.5s"`.
fn proto_duration(v: &Value) -> Option<Duration> {
    let s = v.as_str()?.strip_suffix('s')?;
    let secs: f64 = s.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Read a refusal body; anything unreadable gives a refusal with the body's
/// first characters as its message.
pub fn read(body: &[u8]) -> Refusal {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(error) = parsed.get("error") else {
        return Refusal {
            message: String::from_utf8_lossy(body).chars().take(200).collect(),
            ..Refusal::default()
        };
    };
    let mut out = Refusal {
        status: error
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ..Refusal::default()
    };
    for detail in error
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if type_is(detail, "google.rpc.ErrorInfo") {
            out.reason = detail
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            let meta = |k: &str| {
                detail
                    .get("metadata")
                    .and_then(|m| m.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_ascii_lowercase()
            };
            let (unit, limit) = (meta("quota_unit"), meta("quota_limit"));
            if unit.contains("/d/") || limit.contains("perday") {
                out.quota = Some(QuotaWindow::PerDay);
            } else if unit.contains("/min/") || limit.contains("perminute") {
                out.quota = Some(QuotaWindow::PerMinute);
            }
        } else if type_is(detail, "google.rpc.BadRequest") {
            for v in detail
                .get("fieldViolations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let field = v.get("field").and_then(Value::as_str).unwrap_or_default();
                let what = v
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.violations.push((field.to_string(), what.to_string()));
            }
        } else if type_is(detail, "google.rpc.RetryInfo") {
            out.retry_delay = detail.get("retryDelay").and_then(proto_duration);
        }
    }
    out
}

/// Items of a request's list `list` (its proto name, e.g. `audience_members`,
/// also matched in lowerCamelCase) that the violations name, within
/// `0..len`, each with what Google said of it.
pub fn named_items(refusal: &Refusal, list: &str, len: usize) -> BTreeMap<usize, String> {
    let camel = snake_to_camel(list);
    let mut out: BTreeMap<usize, String> = BTreeMap::new();
    for (field, what) in &refusal.violations {
        for prefix in [list, camel.as_str()] {
            let Some(rest) = field.strip_prefix(prefix) else {
                continue;
            };
            let Some(rest) = rest.strip_prefix('[') else {
                continue;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !rest[digits.len()..].starts_with(']') {
                continue;
            }
            if let Ok(i) = digits.parse::<usize>() {
                if i < len {
                    let text = if what.is_empty() {
                        field.clone()
                    } else {
                        format!("{field}: {what}")
                    };
                    out.entry(i)
                        .and_modify(|t| {
                            t.push_str("; ");
                            t.push_str(&text);
                        })
                        .or_insert(text);
                }
            }
            break;
        }
    }
    out
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Time from `now_ms` to the next reset of a daily quota. Google resets
/// daily API quotas at midnight Pacific time; 08:00 UTC is midnight PST and
/// 01:00 PDT, so waiting for it is never early and at most an hour late.
pub fn until_daily_reset(now_ms: i64) -> Duration {
    const DAY_MS: i64 = 86_400_000;
    const RESET_MS: i64 = 8 * 3_600_000;
    let into_day = now_ms.rem_euclid(DAY_MS);
    let wait = if into_day < RESET_MS {
        RESET_MS - into_day
    } else {
        DAY_MS - into_day + RESET_MS
    };
    Duration::from_millis(u64::try_from(wait).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_violations_name_members_in_either_spelling() {
        let body = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "INVALID_HEX_ENCODING", "domain": "datamanager.googleapis.com"},
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
                {"field": "audience_members[2].user_data.user_identifiers[0].email_address", "description": "not hex"},
                {"field": "audienceMembers[5]", "description": "empty"},
                {"field": "audience_members[99]", "description": "out of range"},
                {"field": "destinations[0]", "description": "other list"}
            ]}
        ]}});
        let r = read(body.to_string().as_bytes());
        assert_eq!(r.reason.as_deref(), Some("INVALID_HEX_ENCODING"));
        let named = named_items(&r, "audience_members", 10);
        assert_eq!(named.keys().copied().collect::<Vec<_>>(), vec![2, 5]);
        assert!(named[&2].contains("not hex"));
    }

    #[test]
    fn quota_window_is_read_from_the_error_info_metadata() {
        let day = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "q",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com", "metadata": {"quota_unit": "1/d/{project}", "quota_limit_value": "100000"}}]}});
        let minute = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "q",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com", "metadata": {"quota_unit": "1/min/{project}"}},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]}});
        assert_eq!(
            read(day.to_string().as_bytes()).quota,
            Some(QuotaWindow::PerDay)
        );
        let m = read(minute.to_string().as_bytes());
        assert_eq!(m.quota, Some(QuotaWindow::PerMinute));
        assert_eq!(m.retry_delay, Some(Duration::from_secs(17)));
    }

    #[test]
    fn daily_quota_waits_until_eight_utc() {
        // 2026-12-07T07:00:00Z → one hour; 2026-12-07T09:00:00Z → 23 hours.
        let seven = 1_796_626_800_000;
        assert_eq!(until_daily_reset(seven), Duration::from_secs(3_600));
        assert_eq!(
            until_daily_reset(seven + 2 * 3_600_000),
            Duration::from_secs(23 * 3_600)
        );
    }

    #[test]
    fn an_html_page_reads_as_a_refusal_without_reason() {
        let r = read(b"<!DOCTYPE html><html><title>Error 404 (Not Found)</title></html>");
        assert!(r.reason.is_none());
        assert!(r.message.starts_with("<!DOCTYPE html>"));
    }
}
