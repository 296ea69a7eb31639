//! Graph error answers as Meta defines them (`docs/meta-graph.md`): the
//! error object, what each code means for a retry, and the wait Meta asks
//! for. Shared by the audience and the Conversions API destinations.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::destinations::status_is_retryable;

/// Error 100 with this subcode: the audience is flagged (operation_status 471).
pub const FLAGGED_AUDIENCE_SUBCODE: i64 = 1713230;
/// Error code of a deprecated (expired) Graph API version.
pub const DEPRECATED_VERSION_CODE: i64 = 2635;
/// Every `usersreplace` refusal, and the audience-update refusals of `users`.
pub const AUDIENCE_UPDATE_CODE: i64 = 2650;
/// 2650 subcodes that say "the audience is busy, try later": an update is
/// in progress (1870145), a replace session ran out of its 90 minutes and
/// is being swapped in (1870158).
pub const BUSY_AUDIENCE_SUBCODES: &[i64] = &[1870145, 1870158];
/// 2650 subcode of "something went wrong, consider trying again".
pub const AUDIENCE_UPDATE_FAILED_SUBCODE: i64 = 1870148;
/// 2650 subcodes after which the session takes no batch: timed out
/// (1870158), finished (1870159), first batch_seq missing (1870147).
pub const SESSION_ENDED_SUBCODES: &[i64] = &[1870158, 1870159, 1870147];

/// Throttling codes: app (4), user (17), page (32), custom (613), the
/// custom-audience (80003) and ads-management (80004) business use cases,
/// and the application limit (341). Meta: wait, then retry.
pub(crate) const RATE_LIMIT_CODES: &[i64] = &[4, 17, 32, 613, 80003, 80004, 341];
/// Meta: temporary, retry (unknown error, service down).
pub(crate) const TRANSIENT_CODES: &[i64] = &[1, 2];
/// Meta: temporarily blocked for a policy violation; wait and retry.
pub(crate) const POLICY_BLOCK_CODE: i64 = 368;
/// Codes no retry will fix: parameters, session, token, permissions,
/// deprecated version, parameter counts, failed audience update.
pub(crate) const PERMANENT_CODES: &[i64] = &[100, 102, 10, 190, 200, 2635, 105, 194, 2650];

/// How long to wait when Meta throttles without saying for how long.
pub(crate) const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// How long to wait for a busy audience (a replace can run 90 minutes).
pub(crate) const BUSY_AUDIENCE_WAIT: Duration = Duration::from_secs(5 * 60);
/// How long to wait after a temporary policy block.
pub(crate) const POLICY_BLOCK_WAIT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GraphErrorBody {
    pub(crate) error: Option<GraphError>,
}

/// Graph's error object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GraphError {
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) code: Option<i64>,
    #[serde(default)]
    pub(crate) error_subcode: Option<i64>,
    /// Meta's own word that the same request may succeed later.
    #[serde(default)]
    pub(crate) is_transient: Option<bool>,
    #[serde(default)]
    pub(crate) error_user_title: Option<String>,
    /// The message meant for a person.
    #[serde(default)]
    pub(crate) error_user_msg: Option<String>,
    #[serde(default)]
    pub(crate) fbtrace_id: Option<String>,
}

impl GraphError {
    /// The error object of an answer body (empty when it is not Graph JSON).
    pub(crate) fn parse(body: &[u8]) -> GraphError {
        serde_json::from_slice::<GraphErrorBody>(body)
            .ok()
            .and_then(|b| b.error)
            .unwrap_or_default()
    }

    /// `HTTP 400, code 2650, subcode 1870145: message (fbtrace_id …)`.
    pub(crate) fn describe(&self, status: u16, body: &[u8], prefer_user_msg: bool) -> String {
        let detail = if prefer_user_msg {
            self.error_user_msg.clone().or_else(|| self.message.clone())
        } else {
            self.message.clone()
        }
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
        let mut message = format!("HTTP {status}");
        if let Some(code) = self.code {
            message.push_str(&format!(", code {code}"));
        }
        if let Some(sub) = self.error_subcode {
            message.push_str(&format!(", subcode {sub}"));
        }
        if let Some(title) = self.error_user_title.as_deref().filter(|t| !t.is_empty()) {
            message.push_str(&format!(" ({title})"));
        }
        message.push_str(&format!(": {detail}"));
        if let Some(trace) = &self.fbtrace_id {
            message.push_str(&format!(" (fbtrace_id {trace})"));
        }
        if self.code == Some(190) {
            message.push_str(" (the access token needs replacing)");
        }
        message
    }

    /// The audience is busy (an update or a replace under way).
    pub(crate) fn is_busy_audience(&self) -> bool {
        self.code == Some(AUDIENCE_UPDATE_CODE)
            && self
                .error_subcode
                .is_some_and(|s| BUSY_AUDIENCE_SUBCODES.contains(&s))
    }

    /// Meta takes no more batches in the request's session.
    pub(crate) fn ends_session(&self) -> bool {
        self.code == Some(AUDIENCE_UPDATE_CODE)
            && self
                .error_subcode
                .is_some_and(|s| SESSION_ENDED_SUBCODES.contains(&s))
    }

    /// What Meta's definition of the error says to do.
    pub(crate) fn class(&self, status: u16) -> ErrorClass {
        let code = self.code;
        if self.is_busy_audience() {
            return ErrorClass::Wait(BUSY_AUDIENCE_WAIT);
        }
        if code == Some(AUDIENCE_UPDATE_CODE)
            && self.error_subcode == Some(AUDIENCE_UPDATE_FAILED_SUBCODE)
        {
            return ErrorClass::Retry;
        }
        match code {
            Some(c) if RATE_LIMIT_CODES.contains(&c) => return ErrorClass::Wait(RATE_LIMIT_WAIT),
            Some(POLICY_BLOCK_CODE) => return ErrorClass::Wait(POLICY_BLOCK_WAIT),
            _ => {}
        }
        // Meta marks errors a retry may fix, whatever their code.
        if self.is_transient == Some(true) {
            return ErrorClass::Retry;
        }
        match code {
            Some(c) if TRANSIENT_CODES.contains(&c) => ErrorClass::Retry,
            Some(c) if PERMANENT_CODES.contains(&c) || (200..300).contains(&c) => {
                ErrorClass::Permanent
            }
            _ if status_is_retryable(status) => ErrorClass::Retry,
            _ => ErrorClass::Permanent,
        }
    }
}

/// What to do about a failed Graph call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// Retry after Meta's wait, or this long when Meta names none.
    Wait(Duration),
    /// Retry; no particular wait.
    Retry,
    /// No retry will fix it.
    Permanent,
}

/// The business-use-case type of custom-audience calls in
/// `X-Business-Use-Case-Usage`.
pub const CUSTOM_AUDIENCE_USE_CASE: &str = "custom_audience";

/// The entries of `X-Business-Use-Case-Usage` (business object id → list of
/// `{type, call_count, total_cputime, total_time,
/// estimated_time_to_regain_access}`) of use case `kind`, or of any use
/// case when `kind` is `None`.
pub(crate) fn usage_entries(
    headers: &reqwest::header::HeaderMap,
    kind: Option<&str>,
) -> Vec<(String, Value)> {
    let usage: Map<String, Value> = match headers
        .get("x-business-use-case-usage")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())
    {
        Some(map) => map,
        None => return Vec::new(),
    };
    usage
        .into_iter()
        .filter_map(|(id, list)| match list {
            Value::Array(items) => Some((id, items)),
            _ => None,
        })
        .flat_map(|(id, items)| items.into_iter().map(move |e| (id.clone(), e)))
        .filter(|(_, e)| kind.is_none_or(|k| e.get("type").and_then(Value::as_str) == Some(k)))
        .collect()
}

/// The wait Meta asks for: `Retry-After` seconds, else the largest
/// `estimated_time_to_regain_access` (minutes) of the usage entries of
/// use case `kind` (any when `None`).
pub(crate) fn retry_after(
    headers: &reqwest::header::HeaderMap,
    kind: Option<&str>,
) -> Option<Duration> {
    if let Some(secs) = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs));
    }
    let minutes = usage_entries(headers, kind)
        .iter()
        .filter_map(|(_, e)| e.get("estimated_time_to_regain_access")?.as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
}
