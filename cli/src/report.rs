//! Human-readable reports for the terminal.

use dataout::domain::model::{Millis, ReconcileReport};

/// `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn ms(v: Option<i64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v == i64::MAX => ">1d".into(),
        Some(v) if v < 1_000 => format!("≤{v}ms"),
        Some(v) if v < 60_000 => format!("≤{}s", v / 1_000),
        Some(v) if v < 3_600_000 => format!("≤{}m", v / 60_000),
        Some(v) => format!("≤{}h", v / 3_600_000),
    }
}

/// The platform's match rate with where it comes from: `s` its upload
/// sessions (matched / received), `c` its count / our delivered members.
fn alarm_cell(r: &dataout::domain::model::ReconcileRow) -> String {
    if r.alarm {
        "ALARM".into()
    } else {
        String::new()
    }
}

/// A text table: the first two columns left-aligned, the rest right-aligned.
fn table(header: &[&str], body: Vec<Vec<String>>) -> String {
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    rows.extend(body);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i < 2 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

fn match_cell(r: &dataout::domain::model::ReconcileRow) -> String {
    let Some(m) = r.match_rate else {
        return "-".into();
    };
    let tag = match r.check.match_source.as_deref() {
        Some("platform sessions") => " s",
        Some("size / delivered") => " c",
        _ => "",
    };
    format!("{:.1}%{tag}", m * 100.0)
}

/// The destination's count against delivered × match rate, with its tolerance.
fn drift_cell(r: &dataout::domain::model::ReconcileRow) -> String {
    match (r.check.drift, r.check.tolerance) {
        (Some(d), Some(t)) => format!("{d:+} (±{t})"),
        (Some(d), None) => format!("{d:+}"),
        _ => "-".into(),
    }
}

/// The reconciliation as a table: one row per export and destination.
pub fn render(report: &ReconcileReport) -> String {
    let header = [
        "export",
        "destination",
        "source",
        "state",
        "delivered",
        "dest.",
        "expected",
        "drift",
        "accepted",
        "rejected",
        "unmatched",
        "match",
        "p50",
        "p95",
        "",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in report.rows.iter().filter(|r| !r.events) {
        rows.push(vec![
            r.export.clone(),
            r.destination.clone(),
            opt(r.source_count),
            r.state_count.to_string(),
            r.delivered_members.to_string(),
            r.destination_count
                .map(|n| n.to_string())
                .unwrap_or_else(|| "unknown".into()),
            opt(r.check.expected_count),
            drift_cell(r),
            r.accepted.to_string(),
            r.rejected.to_string(),
            r.unmatched.to_string(),
            match_cell(r),
            ms(r.latency_p50_ms),
            ms(r.latency_p95_ms),
            alarm_cell(r),
        ]);
    }
    let mut out = table(&header, rows);
    out.push_str(
        "\ndest.: the destination's own count (\"unknown\" where its API gives none). \
match: the platform's match rate, s = its upload sessions (matched / received), \
c = its count / delivered (no independent check then). expected: delivered × the \
session match rate, where the platform reports sessions; drift: dest. − expected, with \
the tolerance (rows still processing, match noise, the drift threshold).\n",
    );
    let events: Vec<Vec<String>> = report
        .rows
        .iter()
        .filter(|r| r.events)
        .map(|r| {
            vec![
                r.export.clone(),
                r.destination.clone(),
                (r.sent + r.invalid + r.unmatched).to_string(),
                r.sent.to_string(),
                r.accepted.to_string(),
                r.rejected.to_string(),
                r.invalid.to_string(),
                r.unmatched.to_string(),
                ms(r.latency_p50_ms),
                ms(r.latency_p95_ms),
                alarm_cell(r),
            ]
        })
        .collect();
    if !events.is_empty() {
        out.push_str("\nEvents and conversions:\n");
        out.push_str(&table(
            &[
                "export",
                "destination",
                "events",
                "sent",
                "accepted",
                "rejected",
                "invalid",
                "unmatched",
                "p50",
                "p95",
                "",
            ],
            events,
        ));
        out.push_str(
            "events: forwarded to the destination; invalid: kept back by our own checks \
(a required property missing, a value that is not a number, an event too old or missing what the \
platform needs), never sent.\n",
        );
    }
    let alarms: Vec<_> = report
        .rows
        .iter()
        .filter(|r| !r.check.alarm_reasons.is_empty())
        .collect();
    if !alarms.is_empty() {
        out.push_str("\nAlarms:\n");
        for r in alarms {
            for reason in &r.check.alarm_reasons {
                out.push_str(&format!(
                    "  {:<18} {:<18} {reason}\n",
                    r.export, r.destination
                ));
            }
        }
    }
    out.push_str("\nWhere the output went:\n");
    for r in &report.rows {
        out.push_str(&format!(
            "  {:<18} {:<18} {}\n",
            r.export, r.destination, r.output
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataout::domain::model::{DestinationCheck, ReconcileRow};

    fn row(destination: &str, count: Option<u64>, check: DestinationCheck) -> ReconcileRow {
        ReconcileRow {
            invalid: 0,
            repairs: 0,
            events: false,
            export: "vips".into(),
            destination: destination.into(),
            source_count: Some(100),
            state_count: 100,
            delivered_members: 100,
            destination_count: count,
            sent: 100,
            accepted: 100,
            rejected: 0,
            unmatched: 0,
            match_rate: count.map(|c| c as f64 / 100.0),
            drift_source_state: Some(0),
            drift_state_delivered: 0,
            latency_p50_ms: None,
            latency_p95_ms: None,
            output: "out".into(),
            alarm: !check.alarm_reasons.is_empty(),
            check,
        }
    }

    #[test]
    fn table_shows_unknown_counts_match_source_and_alarm_reasons() {
        let report = ReconcileReport {
            report_id: "r".into(),
            generated_at: 0,
            config_hash: "h".into(),
            rows: vec![
                row("clevertap", None, DestinationCheck::default()),
                row(
                    "meta",
                    Some(60),
                    DestinationCheck {
                        match_source: Some("platform sessions".into()),
                        expected_count: Some(80),
                        drift: Some(-20),
                        tolerance: Some(12),
                        alarm_reasons: vec!["destination holds 60, expected ~80".into()],
                        ..DestinationCheck::default()
                    },
                ),
            ],
        };
        let text = render(&report);
        assert!(text.contains("unknown"), "{text}");
        assert!(text.contains("60.0% s"), "{text}");
        assert!(text.contains("-20 (±12)"), "{text}");
        assert!(text.contains("Alarms:"), "{text}");
        assert!(text.contains("expected ~80"), "{text}");
    }
}
