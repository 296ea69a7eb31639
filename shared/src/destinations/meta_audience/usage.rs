//! Pacing by Meta's `X-Business-Use-Case-Usage`: only the
//! `custom_audience` use case limits audience uploads (a busy
//! `ads_insights` or `ads_management` quota is another budget).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::errors::{usage_entries, CUSTOM_AUDIENCE_USE_CASE};
use super::MetaAudienceDestination;
use crate::destinations::DestinationError;

/// Usage (percent of the hourly quota) from which requests are spaced out.
const USAGE_SLOW_PCT: f64 = 75.0;
/// Usage from which no request is sent until Meta's usage falls.
const USAGE_STOP_PCT: f64 = 95.0;
/// How long a usage reading is trusted.
pub(super) const USAGE_STALE: Duration = Duration::from_secs(60);

/// The custom-audience quota as Meta last reported it.
#[derive(Debug, Default)]
pub(super) struct UsageState {
    /// Highest of call_count / total_cputime / total_time, in percent.
    pub(super) pct: f64,
    /// No request before this instant (Meta's wait).
    pub(super) blocked_until: Option<Instant>,
    /// When `pct` was read: a reading older than `USAGE_STALE` no longer
    /// holds requests back (the next answer brings a fresh one).
    pub(super) observed_at: Option<Instant>,
}

/// What `X-Business-Use-Case-Usage` says of the custom-audience use case.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct UsageReport {
    pub(super) pct: f64,
    pub(super) regain_minutes: u64,
}

/// The highest usage and wait of the `custom_audience` entries for
/// `ad_account_id` (or, when the header names no such key, for any business
/// object in it); `None` when the header has no such entry.
pub(super) fn business_usage(
    headers: &reqwest::header::HeaderMap,
    ad_account_id: &str,
) -> Option<UsageReport> {
    let entries = usage_entries(headers, Some(CUSTOM_AUDIENCE_USE_CASE));
    let ours = |id: &str| id == ad_account_id || id.strip_prefix("act_") == Some(ad_account_id);
    let own: Vec<&Value> = entries
        .iter()
        .filter(|(id, _)| ours(id))
        .map(|(_, e)| e)
        .collect();
    let chosen: Vec<&Value> = if own.is_empty() {
        entries.iter().map(|(_, e)| e).collect()
    } else {
        own
    };
    if chosen.is_empty() {
        return None;
    }
    let mut report = UsageReport {
        pct: 0.0,
        regain_minutes: 0,
    };
    for entry in chosen {
        for field in ["call_count", "total_cputime", "total_time"] {
            if let Some(p) = entry.get(field).and_then(Value::as_f64) {
                report.pct = report.pct.max(p);
            }
        }
        if let Some(m) = entry
            .get("estimated_time_to_regain_access")
            .and_then(Value::as_u64)
        {
            report.regain_minutes = report.regain_minutes.max(m);
        }
    }
    Some(report)
}

impl MetaAudienceDestination {
    /// Before a request: wait a little when the quota is filling, or send the
    /// job back when it is (nearly) spent, so Meta never has to say 80003.
    pub(super) async fn pace(&self) -> Result<(), DestinationError> {
        let now = Instant::now();
        let (pct, blocked_until, age) = {
            let usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
            let age = usage
                .observed_at
                .map_or(USAGE_STALE, |at| now.saturating_duration_since(at));
            (usage.pct, usage.blocked_until, age)
        };
        let pct = if age < USAGE_STALE { pct } else { 0.0 };
        if let Some(until) = blocked_until.filter(|u| *u > now) {
            return Err(DestinationError::Retryable {
                destination: self.name.clone(),
                message: "Meta asked us to wait before the next custom-audience call".into(),
                retry_after: Some(until - now),
            });
        }
        if pct >= USAGE_STOP_PCT {
            return Err(DestinationError::Retryable {
                destination: self.name.clone(),
                message: format!("Meta custom-audience usage at {pct:.0} %: holding off"),
                retry_after: Some(USAGE_STALE.saturating_sub(age).max(Duration::from_secs(1))),
            });
        }
        if pct >= USAGE_SLOW_PCT {
            // Up to 2 s between requests as usage climbs from 75 % to 95 %.
            let share = (pct - USAGE_SLOW_PCT) / (USAGE_STOP_PCT - USAGE_SLOW_PCT);
            tokio::time::sleep(Duration::from_millis((share * 2000.0) as u64)).await;
        }
        Ok(())
    }

    /// Remember what `X-Business-Use-Case-Usage` says of the custom-audience
    /// use case for this account; other use cases are other budgets.
    pub(super) fn observe_usage(&self, headers: &reqwest::header::HeaderMap) {
        let Some(report) = business_usage(headers, &self.ad_account_id) else {
            return;
        };
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        usage.pct = report.pct;
        usage.observed_at = Some(Instant::now());
        usage.blocked_until = (report.regain_minutes > 0)
            .then(|| Instant::now() + Duration::from_secs(report.regain_minutes * 60));
    }
}
