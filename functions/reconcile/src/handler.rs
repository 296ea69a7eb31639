//! One reconciliation: build and store the report, and turn every row into
//! metrics. The trigger (an EventBridge scheduled event, or any JSON for a
//! manual run) carries nothing the run needs.

use std::collections::BTreeMap;
use std::sync::Arc;

use dataout::destinations::Destination;
use dataout::domain::model::{ReconcileReport, ReconcileRow};
use dataout::pipeline::reconcile::{reconcile, ReconcileOptions};
use dataout::pipeline::{Deps, PipelineError};
use dataout::ports::{ObjectStore, SegmentSource};
use dataout::report::html::render;
use dataout::report::{gather, publish, PageOptions, ReportError};
use dataout::telemetry::emf_line;
use serde::Serialize;
use thiserror::Error;
use tracing::{info, warn};

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("reconciliation failed: {0}")]
    Pipeline(#[from] PipelineError),
    #[error("the report page was not written: {0}")]
    Page(#[from] ReportError),
}

impl ReconcileError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ReconcileError::Pipeline(e) => e.is_retryable(),
            ReconcileError::Page(e) => e.is_retryable(),
        }
    }
}

/// Write the report as JSON and the HTML page (the one `dataout report
/// --html` draws, with history, held runs, dead letters and suppression
/// overlap) next to each other in `store`; returns where they went.
pub async fn publish_page(
    deps: &Deps,
    report: &ReconcileReport,
    store: &dyn ObjectStore,
) -> Result<Vec<String>, ReconcileError> {
    let page = gather(
        deps.state.as_ref(),
        Some(deps.queue.as_ref()),
        Some(deps.spec.as_ref()),
        deps.clock.now_ms(),
        &PageOptions::default(),
    )
    .await?;
    let written = publish(store, report, &render(&page)).await?;
    info!(report_id = %report.report_id, locations = ?written, "report page written");
    Ok(written)
}

/// What the invocation returns (a summary; the full report is stored).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReconcileSummary {
    pub report_id: String,
    pub rows: usize,
    pub rows_in_alarm: usize,
    /// `export/destination` of every row in alarm.
    pub alarms: Vec<String>,
}

/// The report and its metric lines.
#[derive(Clone, Debug)]
pub struct ReconcileOutcome {
    pub report: ReconcileReport,
    pub metric_lines: Vec<String>,
    pub summary: ReconcileSummary,
}

/// When the schedule fired, for the log line (scheduled events carry `time`).
pub fn trigger_time(event: &serde_json::Value) -> Option<&str> {
    event.get("time").and_then(|t| t.as_str())
}

pub async fn handle(
    deps: &Deps,
    source: Option<&dyn SegmentSource>,
    destinations: &BTreeMap<String, Arc<dyn Destination>>,
    opts: &ReconcileOptions,
    namespace: &str,
) -> Result<ReconcileOutcome, ReconcileError> {
    let report = reconcile(deps, source, destinations, opts).await?;
    let mut metric_lines: Vec<String> = report
        .rows
        .iter()
        .map(|row| row_metrics(namespace, row, report.generated_at))
        .collect();
    let alarms: Vec<String> = report
        .rows
        .iter()
        .filter(|r| r.alarm)
        .map(|r| format!("{}/{}", r.export, r.destination))
        .collect();
    let max_drift = report.rows.iter().map(drift_pct).fold(0.0, f64::max);
    metric_lines.push(emf_line(
        namespace,
        &[("service", "reconcile")],
        &[
            ("Rows", report.rows.len() as f64, "Count"),
            ("RowsInAlarm", alarms.len() as f64, "Count"),
            ("MaxDriftPct", max_drift, "Percent"),
        ],
        report.generated_at,
    ));
    for row in report.rows.iter().filter(|r| r.alarm) {
        warn!(
            export = %row.export,
            destination = %row.destination,
            drift_source_state = row.drift_source_state,
            drift_state_delivered = row.drift_state_delivered,
            match_rate = row.match_rate,
            reasons = %row.check.alarm_reasons.join("; "),
            "reconciliation alarm"
        );
    }
    info!(report_id = %report.report_id, rows = report.rows.len(), alarms = alarms.len(), "report stored");
    let summary = ReconcileSummary {
        report_id: report.report_id.clone(),
        rows: report.rows.len(),
        rows_in_alarm: alarms.len(),
        alarms,
    };
    Ok(ReconcileOutcome {
        report,
        metric_lines,
        summary,
    })
}

/// The larger of the two drifts, as a percentage of its base (the base
/// floored at 1, as the alarm rule does).
pub fn drift_pct(row: &ReconcileRow) -> f64 {
    let pct = |drift: i64, base: i64| drift.unsigned_abs() as f64 * 100.0 / base.max(1) as f64;
    let source_state = row
        .drift_source_state
        .zip(row.source_count)
        .map(|(d, s)| pct(d, s as i64))
        .unwrap_or(0.0);
    source_state.max(pct(row.drift_state_delivered, row.state_count as i64))
}

fn row_metrics(namespace: &str, row: &ReconcileRow, ts: i64) -> String {
    let mut metrics: Vec<(&str, f64, &str)> = vec![
        ("StateCount", row.state_count as f64, "Count"),
        ("DeliveredMembers", row.delivered_members as f64, "Count"),
        (
            "DriftStateDelivered",
            row.drift_state_delivered as f64,
            "Count",
        ),
        ("DriftPct", drift_pct(row), "Percent"),
        ("Rejected", row.rejected as f64, "Count"),
        ("Unmatched", row.unmatched as f64, "Count"),
        ("Alarm", if row.alarm { 1.0 } else { 0.0 }, "Count"),
    ];
    if let Some(n) = row.source_count {
        metrics.push(("SourceCount", n as f64, "Count"));
    }
    if let Some(d) = row.drift_source_state {
        metrics.push(("DriftSourceState", d as f64, "Count"));
    }
    if let Some(n) = row.destination_count {
        metrics.push(("DestinationCount", n as f64, "Count"));
    }
    if let Some(rate) = row.match_rate {
        metrics.push(("MatchRate", rate * 100.0, "Percent"));
    }
    if let Some(drift) = row.check.drift {
        metrics.push(("DriftDestination", drift as f64, "Count"));
    }
    if let Some(ms) = row.latency_p95_ms {
        metrics.push(("LatencyP95", ms as f64, "Milliseconds"));
    }
    emf_line(
        namespace,
        &[
            ("service", "reconcile"),
            ("export", &row.export),
            ("destination", &row.destination),
        ],
        &metrics,
        ts,
    )
}
