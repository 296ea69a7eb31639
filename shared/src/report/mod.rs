//! The report people look at: one self-contained HTML page (inline CSS and
//! inline SVG charts, nothing fetched) per state, with, for every export ×
//! destination, counts by day from the stored reconciliation reports
//! (source / state / delivered / destination), drift, match rate, latency
//! p50/p95 against the export's objective, held runs, dead-letter depth and
//! suppression overlap.
//!
//! `gather` reads it all through the ports (so `dataout report --html` on a
//! state dir or a stack, and the reconcile function on AWS, build the same
//! page); `html::render` turns it into the page; `publish` writes the page
//! and its JSON report next to each other in an object store.

pub mod charts;
pub mod html;
pub mod overlap;

use std::collections::BTreeMap;

use thiserror::Error;

use crate::domain::model::{Millis, ReconcileReport, ReconcileRow, RunStatus};
use crate::domain::spec::ActivationSpec;
use crate::ports::{JobQueue, ObjectStore, ObjectStoreError, QueueDepth, StateError, StateStore};

pub use overlap::{suppression_overlaps, Overlap};

#[derive(Debug, Error)]
pub enum ReportError {
    /// Reading state failed; retryable when the store says so.
    #[error("reading state for the report: {0}")]
    State(#[from] StateError),
    /// Writing the page or its JSON failed.
    #[error("writing the report: {0}")]
    Store(#[from] ObjectStoreError),
    /// The report would not serialise (permanent).
    #[error("encoding the report: {0}")]
    Encode(#[from] serde_json::Error),
}

impl ReportError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ReportError::State(e) => e.is_retryable(),
            ReportError::Store(e) => matches!(e, ObjectStoreError::Retryable { .. }),
            ReportError::Encode(_) => false,
        }
    }
}

/// How much history the page reads.
#[derive(Clone, Debug)]
pub struct PageOptions {
    /// Days of counts shown (one point per day: that day's last report).
    pub days: u32,
    /// Most reports read back (several a day when reconcile runs by hand).
    pub max_reports: usize,
    /// Runs read per export to find the held ones.
    pub runs_per_export: usize,
}

impl Default for PageOptions {
    fn default() -> Self {
        PageOptions {
            days: 30,
            max_reports: 400,
            runs_per_export: 50,
        }
    }
}

/// One day's counts of an export × destination: the last report of that
/// UTC day.
#[derive(Clone, Debug, PartialEq)]
pub struct DayCounts {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub report_id: String,
    pub source: Option<u64>,
    pub state: u64,
    pub delivered: i64,
    pub destination: Option<u64>,
}

/// A run a guard rail held, waiting for `dataout runs approve`.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldRun {
    pub run_id: String,
    pub started_at: Millis,
    pub reason: String,
}

/// One export × destination.
#[derive(Clone, Debug, PartialEq)]
pub struct PairSection {
    pub destination: String,
    /// Oldest first.
    pub days: Vec<DayCounts>,
    /// The newest report's row, if any report has this pair.
    pub latest: Option<ReconcileRow>,
    /// Depth of the destination's queue and dead-letter queue.
    pub queue: Option<QueueDepth>,
    /// Suppression rules of the export, their overlap at this destination.
    pub overlaps: Vec<Overlap>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExportSection {
    pub export: String,
    pub latency_slo_ms: Option<Millis>,
    pub held_runs: Vec<HeldRun>,
    pub pairs: Vec<PairSection>,
}

/// Everything the page shows.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportPage {
    pub generated_at: Millis,
    /// The spec's hash, else the newest report's.
    pub config_hash: Option<String>,
    /// The newest report: id and time.
    pub latest_report: Option<(String, Millis)>,
    pub reports_read: usize,
    pub days: u32,
    pub sections: Vec<ExportSection>,
    /// What could not be read, said on the page.
    pub notes: Vec<String>,
}

/// `YYYY-MM-DD` of a UTC instant.
pub fn day_of(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Counts by day per export × destination: each UTC day's newest report.
/// `reports` newest first; the result oldest first.
pub fn days_by_pair(reports: &[ReconcileReport]) -> BTreeMap<(String, String), Vec<DayCounts>> {
    let mut out: BTreeMap<(String, String), Vec<DayCounts>> = BTreeMap::new();
    let mut sorted: Vec<&ReconcileReport> = reports.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.generated_at));
    for report in sorted {
        let day = day_of(report.generated_at);
        for row in &report.rows {
            let list = out
                .entry((row.export.clone(), row.destination.clone()))
                .or_default();
            if list.iter().any(|d| d.day == day) {
                continue; // a newer report of that day is already there
            }
            list.push(DayCounts {
                day: day.clone(),
                report_id: report.report_id.clone(),
                source: row.source_count,
                state: row.state_count,
                delivered: row.delivered_members,
                destination: row.destination_count,
            });
        }
    }
    for list in out.values_mut() {
        list.reverse();
    }
    out
}

/// Read everything the page shows. `queue` gives dead-letter depths (left
/// out, with a note, when absent or failing); `spec` gives the exports,
/// their objectives and suppression rules (without it, the exports of the
/// reports are shown and overlap is not computed).
pub async fn gather(
    state: &dyn StateStore,
    queue: Option<&dyn JobQueue>,
    spec: Option<&ActivationSpec>,
    now: Millis,
    opts: &PageOptions,
) -> Result<ReportPage, ReportError> {
    let since = now - i64::from(opts.days) * 86_400_000;
    let reports: Vec<ReconcileReport> = state
        .list_reports(opts.max_reports)
        .await?
        .into_iter()
        .filter(|r| r.generated_at >= since)
        .collect();
    let mut notes = Vec::new();
    let latest = reports.iter().max_by_key(|r| r.generated_at);
    if latest.is_none() {
        notes.push(format!(
            "No reconciliation report in the last {} days: the counts, drift, match rate and latency columns are empty until reconcile runs.",
            opts.days
        ));
    }
    let mut days = days_by_pair(&reports);
    // Exports and their destinations: the spec's, else the reports'.
    let mut layout: Vec<(String, Vec<String>)> = match spec {
        Some(spec) => spec
            .exports
            .values()
            .map(|e| {
                (
                    e.name.clone(),
                    e.destinations
                        .iter()
                        .map(|b| b.destination.clone())
                        .collect(),
                )
            })
            .collect(),
        None => {
            notes.push("No activation spec given (--config): latency objectives and suppression overlap are not shown.".into());
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (e, d) in days.keys() {
                m.entry(e.clone()).or_default().push(d.clone());
            }
            m.into_iter().collect()
        }
    };
    layout.retain(|(_, dests)| !dests.is_empty());
    let overlaps = match spec {
        Some(spec) => suppression_overlaps(state, spec).await?,
        None => Vec::new(),
    };
    let mut depths: BTreeMap<String, QueueDepth> = BTreeMap::new();
    match queue {
        None => notes.push("Queue depths not read (no queue given).".into()),
        Some(q) => {
            let names: std::collections::BTreeSet<&String> =
                layout.iter().flat_map(|(_, d)| d).collect();
            for name in names {
                match q.depth(name).await {
                    Ok(d) => {
                        depths.insert(name.clone(), d);
                    }
                    Err(e) => notes.push(format!("Queue depth of {name} unavailable: {e}")),
                }
            }
        }
    }
    let mut sections = Vec::new();
    for (export, dests) in layout {
        let held_runs = state
            .list_runs(&export, opts.runs_per_export)
            .await?
            .into_iter()
            .filter_map(|r| match r.status {
                RunStatus::Held { reason } => Some(HeldRun {
                    run_id: r.run_id,
                    started_at: r.started_at,
                    reason,
                }),
                _ => None,
            })
            .collect();
        let pairs = dests
            .into_iter()
            .map(|destination| {
                let key = (export.clone(), destination.clone());
                let latest_row = latest
                    .and_then(|r| {
                        r.rows
                            .iter()
                            .find(|row| row.export == export && row.destination == destination)
                    })
                    .cloned();
                PairSection {
                    days: days.remove(&key).unwrap_or_default(),
                    latest: latest_row,
                    queue: depths.get(&destination).copied(),
                    overlaps: overlaps
                        .iter()
                        .filter(|o| o.export == export && o.destination == destination)
                        .cloned()
                        .collect(),
                    destination,
                }
            })
            .collect();
        sections.push(ExportSection {
            latency_slo_ms: spec.and_then(|s| s.latency_slo_ms(&export)),
            export,
            held_runs,
            pairs,
        });
    }
    Ok(ReportPage {
        generated_at: now,
        config_hash: spec
            .map(|s| s.config_hash.clone())
            .or_else(|| latest.map(|r| r.config_hash.clone())),
        latest_report: latest.map(|r| (r.report_id.clone(), r.generated_at)),
        reports_read: reports.len(),
        days: opts.days,
        sections,
        notes,
    })
}

/// Write a report as `<report_id>.json` and `<report_id>.html`, and the
/// same two as `latest.json` / `latest.html`, in `store` (the reconcile
/// function's report location). Returns where they went.
pub async fn publish(
    store: &dyn ObjectStore,
    report: &ReconcileReport,
    page_html: &str,
) -> Result<Vec<String>, ReportError> {
    let json = serde_json::to_vec_pretty(report)?;
    let mut written = Vec::new();
    for stem in [report.report_id.as_str(), "latest"] {
        let json_key = format!("{stem}.json");
        store
            .put(&json_key, json.clone(), "application/json")
            .await?;
        let html_key = format!("{stem}.html");
        store
            .put(
                &html_key,
                page_html.as_bytes().to_vec(),
                "text/html; charset=utf-8",
            )
            .await?;
        written.push(store.locate(&json_key));
        written.push(store.locate(&html_key));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::DestinationCheck;

    fn row(export: &str, state: u64) -> ReconcileRow {
        ReconcileRow {
            invalid: 0,
            repairs: 0,
            events: false,
            export: export.into(),
            destination: "meta".into(),
            source_count: Some(state),
            state_count: state,
            delivered_members: state as i64,
            destination_count: None,
            sent: 0,
            accepted: 0,
            rejected: 0,
            unmatched: 0,
            match_rate: None,
            drift_source_state: None,
            drift_state_delivered: 0,
            latency_p50_ms: None,
            latency_p95_ms: None,
            output: String::new(),
            alarm: false,
            check: DestinationCheck::default(),
        }
    }

    fn report(id: &str, at: Millis, state: u64) -> ReconcileReport {
        ReconcileReport {
            report_id: id.into(),
            generated_at: at,
            config_hash: "h".into(),
            rows: vec![row("vips", state)],
        }
    }

    #[test]
    fn each_day_takes_its_newest_report_oldest_day_first() {
        let day = 86_400_000;
        let base = 1_764_547_200_000; // 2025-12-01T00:00Z
        let by = days_by_pair(&[
            report("late", base + day + 5_000, 12),
            report("early", base + day + 1_000, 11),
            report("first", base + 10, 10),
        ]);
        let list = &by[&("vips".to_string(), "meta".to_string())];
        let got: Vec<(&str, u64)> = list
            .iter()
            .map(|d| (d.report_id.as_str(), d.state))
            .collect();
        assert_eq!(got, [("first", 10), ("late", 12)]);
        assert_eq!(list[0].day, "2025-12-01");
    }
}
