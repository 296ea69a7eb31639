//! Daily reconciliation: for every export and destination, Customer.io's
//! count, our state's count, what we delivered and what the destination says
//! it holds; drift between them, match rate and latency.
//!
//! The destination's count is checked against what we delivered, in the
//! platform's own numbers:
//! * the **match rate** is the platform's: matched / received of its
//!   finished uploads (Meta's sessions) when it reports them, else its
//!   count / our delivered members. Our own acceptance rate (accepted /
//!   (sent + unmatched)) is kept apart, as `check.acceptance_rate`.
//! * with a session match rate, the destination should hold about
//!   delivered × match rate. The drift allowed is the largest of
//!   `min_drift` people, `drift_alarm` × delivered and `match_noise_sigmas`
//!   binomial standard deviations of the match (√(n·m·(1−m))), plus every
//!   row the platform is still processing (platform lag). Beyond it the
//!   row alarms and says by how much.
//! * with only a count, the match rate *is* count / delivered, so a
//!   shortfall cannot be told from non-matching people: the row alarms only
//!   when the count exceeds what we delivered beyond the tolerance, or when
//!   the rate falls under the export's `min_match_rate`.
//! * a destination whose API gives no count (CleverTap) reports it unknown.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::warn;

use super::{Deps, PipelineError};
use crate::destinations::{AudienceStats, Destination};
use crate::domain::model::{
    counter, CounterScope, DestinationCheck, ReconcileReport, ReconcileRow,
};
use crate::domain::spec::{ExportMode, ExportSource};
use crate::ports::SegmentSource;

#[derive(Clone, Debug)]
pub struct ReconcileOptions {
    /// Drift (as a share of the larger count) above which a row alarms.
    pub drift_alarm: f64,
    /// The smallest drift, in people, that alarms at a destination.
    pub min_drift: u64,
    /// Binomial standard deviations of the platform's match rate allowed
    /// between the destination's count and delivered × match rate.
    pub match_noise_sigmas: f64,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            drift_alarm: 0.02,
            min_drift: 2,
            match_noise_sigmas: 3.0,
        }
    }
}

/// What the platform said, in the row's terms.
fn check_destination(
    delivered: i64,
    stats: &AudienceStats,
    min_match_rate: Option<f64>,
    opts: &ReconcileOptions,
) -> (Option<f64>, DestinationCheck) {
    let mut check = DestinationCheck {
        platform_received: stats.received,
        platform_matched: stats.matched,
        pending_rows: stats.pending_rows,
        ..DestinationCheck::default()
    };
    let delivered_u = delivered.max(0) as u64;
    let session_rate = stats
        .received
        .zip(stats.matched)
        .filter(|(received, _)| *received > 0)
        .map(|(received, matched)| (matched as f64 / received as f64).min(1.0));
    let Some(size) = stats.size else {
        if session_rate.is_some() {
            check.match_source = Some("platform sessions".into());
        }
        return (session_rate, check);
    };
    let relative = (opts.drift_alarm * delivered_u as f64).ceil() as u64;
    let base_tolerance = opts.min_drift.max(relative) + stats.pending_rows;
    let rate = match session_rate {
        Some(m) => {
            check.match_source = Some("platform sessions".into());
            let expected = (delivered_u as f64 * m).round() as u64;
            let noise = (opts.match_noise_sigmas * (delivered_u as f64 * m * (1.0 - m)).sqrt())
                .ceil() as u64;
            let tolerance = base_tolerance.max(noise + stats.pending_rows);
            let drift = size as i64 - expected as i64;
            check.expected_count = Some(expected);
            check.drift = Some(drift);
            check.tolerance = Some(tolerance);
            if drift.unsigned_abs() > tolerance {
                let (what, by) = if drift < 0 {
                    ("missing", drift.unsigned_abs())
                } else {
                    ("more than expected", drift.unsigned_abs())
                };
                check.alarm_reasons.push(format!(
                    "destination holds {size}, expected ~{expected} ({delivered_u} delivered × {:.1}% matched per the platform's sessions): {by} {what}, beyond the tolerance of {tolerance}",
                    m * 100.0
                ));
            }
            Some(m)
        }
        None if delivered_u > 0 => {
            // No expectation to hold the count to: the rate is derived
            // from the count itself. Only an excess over what we delivered
            // shows, and it is reported as an alarm reason.
            check.match_source = Some("size / delivered".into());
            if size > delivered_u + base_tolerance {
                check.alarm_reasons.push(format!(
                    "destination holds {size}, more than the {delivered_u} members we delivered (tolerance {base_tolerance})"
                ));
            }
            Some((size as f64 / delivered_u as f64).min(1.0))
        }
        None => {
            if size > base_tolerance {
                check.alarm_reasons.push(format!(
                    "destination holds {size} but we delivered no members"
                ));
            }
            None
        }
    };
    if let (Some(min), Some(rate)) = (min_match_rate, rate) {
        if rate < min {
            check.alarm_reasons.push(format!(
                "match rate {:.1}% (platform's numbers) is under the export's min_match_rate {:.1}%",
                rate * 100.0,
                min * 100.0
            ));
        }
    }
    (rate, check)
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
            let invalid = get(counter::INVALID).max(0) as u64;
            let repairs = get(counter::REPAIRS).max(0) as u64;
            let acceptance_rate =
                (sent + unmatched > 0).then(|| accepted as f64 / (sent + unmatched) as f64);
            let dest = destinations.get(&binding.destination);
            let stats = match dest {
                Some(d) => d.audience_stats(export, binding).await.unwrap_or_else(|e| {
                    warn!(export = %export.name, destination = %binding.destination, error = %e, "destination count unavailable");
                    AudienceStats::default()
                }),
                None => AudienceStats::default(),
            };
            let (match_rate, mut check) = check_destination(
                delivered_members,
                &stats,
                export.guard_rails.min_match_rate,
                opts,
            );
            check.acceptance_rate = acceptance_rate;
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
            if let (Some(d), Some(s)) = (drift_source_state, source_count) {
                if over(d, s as i64) {
                    check.alarm_reasons.push(format!(
                        "our state holds {state_count}, Customer.io counts {s}: drift {d} over {:.0}%",
                        opts.drift_alarm * 100.0
                    ));
                }
            }
            // Only membership exports deliver members: an attributes export
            // holds its segment in state but sends properties, never adds.
            if export.mode == ExportMode::Membership
                && over(drift_state_delivered, state_count as i64)
            {
                check.alarm_reasons.push(format!(
                    "we delivered {delivered_members} members for a state of {state_count}: drift {drift_state_delivered} over {:.0}%",
                    opts.drift_alarm * 100.0
                ));
            }
            let alarm = !check.alarm_reasons.is_empty();
            rows.push(ReconcileRow {
                export: export.name.clone(),
                destination: binding.destination.clone(),
                source_count,
                state_count,
                delivered_members,
                destination_count: stats.size,
                sent,
                accepted,
                rejected,
                unmatched,
                invalid,
                repairs,
                events: matches!(export.mode, ExportMode::Events | ExportMode::Conversions),
                match_rate,
                drift_source_state,
                drift_state_delivered,
                latency_p50_ms: p50,
                latency_p95_ms: p95,
                output,
                alarm,
                check,
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

    fn stats(size: u64, received: u64, matched: u64, pending: u64) -> AudienceStats {
        AudienceStats {
            size: Some(size),
            received: Some(received),
            matched: Some(matched),
            pending_rows: pending,
        }
    }

    #[test]
    fn twenty_percent_non_matching_reads_as_eighty_percent_match_without_alarm() {
        // 1000 delivered; the platform matched 803 of the 1000 rows it
        // received and holds those 803.
        let (rate, check) =
            check_destination(1000, &stats(803, 1000, 803, 0), None, &Default::default());
        let rate = rate.unwrap_or_default();
        assert!((rate - 0.803).abs() < 1e-9, "{rate}");
        assert_eq!(check.match_source.as_deref(), Some("platform sessions"));
        assert_eq!(check.expected_count, Some(803));
        assert!(check.alarm_reasons.is_empty(), "{:?}", check.alarm_reasons);
    }

    #[test]
    fn members_missing_beyond_tolerance_alarm_and_say_how_many() {
        // Same match rate, but 60 of the matched people are not there.
        let (_, check) =
            check_destination(1000, &stats(743, 1000, 803, 0), None, &Default::default());
        assert_eq!(check.drift, Some(-60));
        let reason = check.alarm_reasons.join("; ");
        assert!(reason.contains("60 missing"), "{reason}");
        assert!(reason.contains("expected ~803"), "{reason}");
    }

    #[test]
    fn rows_still_processing_widen_the_tolerance() {
        // 60 short, but 100 rows are still being processed: platform lag.
        let (_, check) =
            check_destination(1000, &stats(743, 900, 723, 100), None, &Default::default());
        assert!(check.alarm_reasons.is_empty(), "{:?}", check.alarm_reasons);
        assert!(check.tolerance.unwrap_or(0) >= 100);
    }

    #[test]
    fn count_alone_gives_size_over_delivered_and_alarms_only_on_excess_or_floor() {
        let only_size = AudienceStats {
            size: Some(400),
            ..AudienceStats::default()
        };
        let (rate, check) = check_destination(500, &only_size, None, &Default::default());
        assert_eq!(rate, Some(0.8));
        assert_eq!(check.match_source.as_deref(), Some("size / delivered"));
        assert_eq!((check.expected_count, check.drift), (None, None));
        assert!(check.alarm_reasons.is_empty());
        let (_, floor) = check_destination(500, &only_size, Some(0.9), &Default::default());
        assert!(
            floor.alarm_reasons[0].contains("min_match_rate"),
            "{:?}",
            floor.alarm_reasons
        );
        let too_many = AudienceStats {
            size: Some(600),
            ..AudienceStats::default()
        };
        let (_, excess) = check_destination(500, &too_many, None, &Default::default());
        assert!(
            excess.alarm_reasons[0].contains("more than the 500"),
            "{:?}",
            excess.alarm_reasons
        );
    }

    #[test]
    fn unknown_count_has_no_rate_and_no_alarm() {
        let (rate, check) =
            check_destination(500, &AudienceStats::default(), None, &Default::default());
        assert_eq!(rate, None);
        assert_eq!(check.expected_count, None);
        assert!(check.alarm_reasons.is_empty());
    }

    #[test]
    fn meta_sessions_answer_sums_finished_and_counts_processing_as_pending() {
        let mut s = AudienceStats::default();
        s.add_meta_sessions(&serde_json::json!({"data": [
            {"session_id": "1", "stage": "finished", "num_received": 100, "num_matched": 80},
            {"session_id": "2", "stage": "finished", "num_received": "50", "num_matched": "41"},
            {"session_id": "3", "stage": "processing", "num_received": 30, "num_matched": 0}
        ]}));
        assert_eq!(
            (s.received, s.matched, s.pending_rows),
            (Some(150), Some(121), 30)
        );
    }
}
