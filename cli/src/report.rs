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

/// The reconciliation as a table: one row per export and destination.
pub fn render(report: &ReconcileReport) -> String {
    let header = [
        "export",
        "destination",
        "source",
        "state",
        "delivered",
        "dest.",
        "accepted",
        "rejected",
        "unmatched",
        "match",
        "p50",
        "p95",
        "",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in &report.rows {
        rows.push(vec![
            r.export.clone(),
            r.destination.clone(),
            opt(r.source_count),
            r.state_count.to_string(),
            r.delivered_members.to_string(),
            opt(r.destination_count),
            r.accepted.to_string(),
            r.rejected.to_string(),
            r.unmatched.to_string(),
            r.match_rate
                .map(|m| format!("{:.1}%", m * 100.0))
                .unwrap_or_else(|| "-".into()),
            ms(r.latency_p50_ms),
            ms(r.latency_p95_ms),
            if r.alarm {
                "ALARM".into()
            } else {
                String::new()
            },
        ]);
    }
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
    out.push_str("\nWhere the output went:\n");
    for r in &report.rows {
        out.push_str(&format!(
            "  {:<18} {:<18} {}\n",
            r.export, r.destination, r.output
        ));
    }
    out
}
