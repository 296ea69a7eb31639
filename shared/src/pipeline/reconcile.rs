//! Daily reconciliation: for every export and destination, Customer.io's
//! count, our state's count, what we delivered and what the destination says
//! it holds; drift between them, match rate and latency.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::warn;

use super::{Deps, PipelineError};
use crate::destinations::Destination;
use crate::domain::model::{counter, CounterScope, ReconcileReport, ReconcileRow};
use crate::domain::spec::ExportSource;
use crate::ports::SegmentSource;

#[derive(Clone, Debug)]
pub struct ReconcileOptions {
    /// Drift (as a share of the larger count) above which a row alarms.
    pub drift_alarm: f64,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions { drift_alarm: 0.02 }
    }
}

/// Build, store and return today's report.
pub async fn reconcile(
    deps: &Deps,
    source: Option<&dyn SegmentSource>,
    destinations: &BTreeMap<String, Arc<dyn Destination>>,
    opts: &ReconcileOptions,
) -> Result<ReconcileReport, PipelineError> {
    let now = deps.clock.now_ms();
    let mut rows = Vec::new();
    for export in deps.spec.exports.values() {
        let source_count = match (&export.source, source) {
            (ExportSource::Segment { segment_id }, Some(src)) => {
                match src.segment_count(*segment_id).await {
                    Ok(n) => Some(n),
                    Err(e) => {
                        warn!(export = %export.name, error = %e, "source count unavailable");
                        None
                    }
                }
            }
            _ => None,
        };
        let state_count = deps.state.count_members(&export.name).await?;
        for binding in &export.destinations {
            let c = deps
                .state
                .get_counters(&CounterScope::delivery(&export.name, &binding.destination))
                .await?;
            let get = |k: &str| c.get(k).copied().unwrap_or(0);
            let delivered_members = get(counter::ADDS_ACCEPTED) - get(counter::REMOVES_ACCEPTED);
            let sent = get(counter::SENT).max(0) as u64;
            let accepted = get(counter::ACCEPTED).max(0) as u64;
            let rejected = get(counter::REJECTED).max(0) as u64;
            let unmatched = get(counter::UNMATCHED).max(0) as u64;
            let match_rate =
                (sent + unmatched > 0).then(|| accepted as f64 / (sent + unmatched) as f64);
            let dest = destinations.get(&binding.destination);
            let destination_count = match dest {
                Some(d) => d.audience_size(export, binding).await.unwrap_or_else(|e| {
                    warn!(export = %export.name, destination = %binding.destination, error = %e, "destination count unavailable");
                    None
                }),
                None => None,
            };
            let output = dest
                .map(|d| d.describe_output(export, binding))
                .unwrap_or_else(|| binding.audience.clone());
            let drift_source_state = source_count.map(|s| state_count as i64 - s as i64);
            let drift_state_delivered = delivered_members - state_count as i64;
            let (p50, p95) = latency_percentiles(&c);
            let over = |drift: i64, base: i64| {
                let base = base.max(1) as f64;
                (drift.unsigned_abs() as f64) / base > opts.drift_alarm
            };
            let alarm = drift_source_state
                .zip(source_count)
                .is_some_and(|(d, s)| over(d, s as i64))
                || over(drift_state_delivered, state_count as i64)
                || export
                    .guard_rails
                    .min_match_rate
                    .zip(match_rate)
                    .is_some_and(|(min, rate)| rate < min);
            rows.push(ReconcileRow {
                export: export.name.clone(),
                destination: binding.destination.clone(),
                source_count,
                state_count,
                delivered_members,
                destination_count,
                sent,
                accepted,
                rejected,
                unmatched,
                match_rate,
                drift_source_state,
                drift_state_delivered,
                latency_p50_ms: p50,
                latency_p95_ms: p95,
                output,
                alarm,
            });
        }
    }
    let report = ReconcileReport {
        report_id: format!("rec_{now}"),
        generated_at: now,
        config_hash: deps.spec.config_hash.clone(),
        rows,
    };
    deps.state.put_report(&report).await?;
    Ok(report)
}

/// p50 and p95 from the latency histogram counters (bucket upper bounds).
pub fn latency_percentiles(counters: &BTreeMap<String, i64>) -> (Option<i64>, Option<i64>) {
    let buckets: Vec<(i64, i64)> = counter::LATENCY_BUCKETS_MS
        .iter()
        .map(|b| {
            let name = counter::latency_bucket(*b);
            (*b, counters.get(&name).copied().unwrap_or(0).max(0))
        })
        .collect();
    let total: i64 = buckets.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return (None, None);
    }
    let at = |q: f64| {
        let target = (total as f64 * q).ceil() as i64;
        let mut seen = 0;
        for (bound, n) in &buckets {
            seen += n;
            if seen >= target {
                return Some(*bound);
            }
        }
        None
    };
    (at(0.5), at(0.95))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_read_bucket_bounds() {
        let mut c = BTreeMap::new();
        c.insert(counter::latency_bucket(100), 90);
        c.insert(counter::latency_bucket(3_000), 10);
        assert_eq!(latency_percentiles(&c), (Some(250), Some(5_000)));
        assert_eq!(latency_percentiles(&BTreeMap::new()), (None, None));
    }
}
