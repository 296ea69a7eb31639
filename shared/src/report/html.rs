//! The page: one HTML document with inline CSS and inline SVG, nothing
//! fetched (no script, no font, no image URL). Every value that comes from
//! the spec or the state (export, destination and audience names, reasons)
//! is escaped.

use std::fmt::Write as _;

use super::charts::{self, LatencyBar};
use super::{ExportSection, PairSection, ReportPage};
use crate::domain::model::Millis;

/// HTML-escape text for element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "–".into())
}

fn latency(v: Option<i64>) -> String {
    match v {
        None => "–".into(),
        Some(i64::MAX) => "&gt;1d".into(),
        Some(v) => format!("≤{}", charts::human_ms(v as f64)),
    }
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#111827;background:#f8fafc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:2px solid #e5e7eb;padding-bottom:4px}
h3{font-size:15px;margin:14px 0 6px}.meta{color:#4b5563;margin:0 0 16px}
table{border-collapse:collapse;background:#fff;margin:8px 0 16px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f1f5f9;font-weight:600}td.l,th.l{text-align:left}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px;margin:12px 0}
.pairs{display:flex;flex-wrap:wrap;gap:16px}.pair{flex:1 1 560px}
.b{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;margin-right:4px}
.ok{background:#dcfce7;color:#166534}.bad{background:#fee2e2;color:#991b1b}.warn{background:#fef3c7;color:#92400e}.na{background:#e5e7eb;color:#374151}
ul.reasons{margin:4px 0 0 18px;padding:0;color:#991b1b}.note{color:#92400e}
.legend span{display:inline-block;width:12px;height:12px;border-radius:2px;margin:0 4px 0 10px;vertical-align:middle}
svg{max-width:100%;height:auto}.wide{overflow-x:auto}table.summary{font-size:13px}
td.v{text-align:left;white-space:normal;min-width:180px}
"#;

fn badge(class: &str, text: &str) -> String {
    format!(r#"<span class="b {class}">{}</span>"#, escape(text))
}

/// The verdicts of one pair, as badges; `compact`: the problems only (or
/// one "ok").
fn verdicts(section: &ExportSection, pair: &PairSection, compact: bool) -> String {
    let out = all_verdicts(section, pair);
    if !compact {
        return out.concat();
    }
    let problems: Vec<String> = out
        .into_iter()
        .filter(|b| !b.contains("b ok") && !b.contains("b na"))
        .collect();
    if problems.is_empty() {
        badge("ok", "ok")
    } else {
        problems.concat()
    }
}

fn all_verdicts(section: &ExportSection, pair: &PairSection) -> Vec<String> {
    let mut out = Vec::new();
    match &pair.latest {
        Some(r) if r.alarm => out.push(badge("bad", "drift alarm")),
        Some(_) => out.push(badge("ok", "counts reconcile")),
        None => out.push(badge("na", "not reconciled yet")),
    }
    if let (Some(slo), Some(p95)) = (
        section.latency_slo_ms,
        pair.latest.as_ref().and_then(|r| r.latency_p95_ms),
    ) {
        if p95 > slo {
            out.push(badge("bad", "p95 over objective"));
        } else {
            out.push(badge("ok", "p95 within objective"));
        }
    }
    if !section.held_runs.is_empty() {
        out.push(badge(
            "warn",
            &format!("{} held run(s)", section.held_runs.len()),
        ));
    }
    if let Some(q) = pair.queue.filter(|q| q.dead > 0) {
        out.push(badge("warn", &format!("{} dead-lettered", q.dead)));
    }
    let overlap: u64 = pair.overlaps.iter().map(|o| o.people).sum();
    if overlap > 0 {
        out.push(badge(
            "bad",
            &format!("{overlap} suppressed people targeted"),
        ));
    }
    out
}

fn summary_table(page: &ReportPage, out: &mut String) {
    out.push_str(
        "<div class=wide><table class=summary><thead><tr><th class=l>export</th><th class=l>destination</th><th>source</th><th>state</th>\
<th>delivered</th><th>dest.</th><th>drift</th><th>match</th><th>p50</th><th>p95</th><th>objective</th>\
<th>held</th><th>DLQ</th><th>overlap</th><th class=l>verdict</th></tr></thead><tbody>",
    );
    for section in &page.sections {
        for pair in &section.pairs {
            let r = pair.latest.as_ref();
            let drift = r
                .map(|r| match (r.check.drift, r.check.tolerance) {
                    (Some(d), Some(t)) => format!("{d:+} (±{t})"),
                    _ => format!("{:+}", r.drift_state_delivered),
                })
                .unwrap_or_else(|| "–".into());
            let overlap = if pair.overlaps.is_empty() {
                "–".to_string()
            } else {
                pair.overlaps
                    .iter()
                    .map(|o| o.people)
                    .sum::<u64>()
                    .to_string()
            };
            let _ = write!(
                out,
                "<tr><td class=l>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=v>{}</td></tr>",
                escape(&section.export),
                escape(&pair.destination),
                opt(r.and_then(|r| r.source_count)),
                opt(r.map(|r| r.state_count)),
                opt(r.map(|r| r.delivered_members)),
                r.map(|r| opt(r.destination_count).replace('–', "unknown"))
                    .unwrap_or_else(|| "–".into()),
                escape(&drift),
                r.and_then(|r| r.match_rate)
                    .map(|m| format!("{:.1}%", m * 100.0))
                    .unwrap_or_else(|| "–".into()),
                latency(r.and_then(|r| r.latency_p50_ms)),
                latency(r.and_then(|r| r.latency_p95_ms)),
                latency(section.latency_slo_ms),
                section.held_runs.len(),
                pair.queue
                    .map(|q| q.dead.to_string())
                    .unwrap_or_else(|| "–".into()),
                overlap,
                verdicts(section, pair, true),
            );
        }
    }
    out.push_str("</tbody></table></div>");
}

fn legend(out: &mut String) {
    let item = |c: plotters::style::RGBColor, name: &str| {
        format!(
            r#"<span style="background:#{:02x}{:02x}{:02x}"></span>{name}"#,
            c.0, c.1, c.2
        )
    };
    let _ = write!(
        out,
        r#"<div class="legend">Counts by day:{}{}{}{}</div>"#,
        item(charts::SOURCE, "source (Customer.io)"),
        item(charts::STATE, "state (our members)"),
        item(charts::DELIVERED, "delivered (adds − removes accepted)"),
        item(charts::DESTINATION, "destination (its own count)")
    );
}

fn pair_card(section: &ExportSection, pair: &PairSection, out: &mut String) {
    let _ = write!(
        out,
        r#"<div class="card pair"><h3>{} → {}</h3><div>{}</div>"#,
        escape(&section.export),
        escape(&pair.destination),
        verdicts(section, pair, false)
    );
    if pair.days.is_empty() {
        out.push_str("<p class=note>No reconciliation report has this pair yet.</p>");
    } else {
        match charts::counts_by_day(&pair.days) {
            Ok(svg) => out.push_str(&svg),
            Err(e) => {
                let _ = write!(out, "<p class=note>Chart not drawn: {}</p>", escape(&e));
            }
        }
        out.push_str("<table><thead><tr><th class=l>day</th><th>source</th><th>state</th><th>delivered</th><th>destination</th></tr></thead><tbody>");
        for d in pair.days.iter().rev() {
            let _ = write!(
                out,
                "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&d.day),
                opt(d.source),
                d.state,
                d.delivered,
                d.destination
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "unknown".into())
            );
        }
        out.push_str("</tbody></table>");
    }
    if let Some(r) = &pair.latest {
        if !r.check.alarm_reasons.is_empty() {
            out.push_str("<ul class=reasons>");
            for reason in &r.check.alarm_reasons {
                let _ = write!(out, "<li>{}</li>", escape(reason));
            }
            out.push_str("</ul>");
        }
        let _ =
            write!(
            out,
            "<p>Output: <code>{}</code>. Sent {}, accepted {}, rejected {}, unmatched {}{}{}.</p>",
            escape(&r.output),
            r.sent,
            r.accepted,
            r.rejected,
            r.unmatched,
            if r.repairs > 0 {
                format!(", repaired {} (ops re-sent after a late one landed)", r.repairs)
            } else {
                String::new()
            },
            r.check
                .match_source
                .as_deref()
                .map(|s| format!("; match rate from {}", escape(s)))
                .unwrap_or_default()
        );
    }
    if let Some(q) = pair.queue {
        let _ = write!(
            out,
            "<p>Queue: {} waiting, {} in flight, {} in the dead-letter queue.</p>",
            q.visible, q.in_flight, q.dead
        );
    }
    for o in &pair.overlaps {
        let _ = write!(
            out,
            "<p>Suppression by <b>{}</b>: {} {} member(s) of {} also in {} ({} members; {} delivered here).</p>",
            escape(&o.suppression),
            if o.people > 0 { badge("bad", "overlap") } else { badge("ok", "clean") },
            o.people,
            escape(&o.suppression),
            escape(&o.export),
            o.export_members,
            o.delivered_members
        );
    }
    out.push_str("</div>");
}

fn export_section(section: &ExportSection, out: &mut String) {
    let _ = write!(out, "<h2>{}</h2>", escape(&section.export));
    let _ = write!(
        out,
        "<p>Latency objective (p95, source event to destination acknowledgement): {}.</p>",
        section
            .latency_slo_ms
            .map(|v| latency(Some(v)))
            .unwrap_or_else(|| "none set".into())
    );
    if !section.held_runs.is_empty() {
        out.push_str("<table><thead><tr><th class=l>held run</th><th class=l>started</th><th class=l>reason</th></tr></thead><tbody>");
        for h in &section.held_runs {
            let _ = write!(
                out,
                "<tr><td class=l><code>{}</code></td><td class=l>{}</td><td class=l>{}</td></tr>",
                escape(&h.run_id),
                time(h.started_at),
                escape(&h.reason)
            );
        }
        out.push_str("</tbody></table><p>Release one with <code>dataout runs approve &lt;run_id&gt;</code>.</p>");
    }
    let bars: Vec<LatencyBar> = section
        .pairs
        .iter()
        .map(|p| LatencyBar {
            destination: p.destination.clone(),
            p50_ms: p.latest.as_ref().and_then(|r| r.latency_p50_ms),
            p95_ms: p.latest.as_ref().and_then(|r| r.latency_p95_ms),
        })
        .collect();
    if bars
        .iter()
        .any(|b| b.p50_ms.is_some() || b.p95_ms.is_some())
    {
        out.push_str("<div class=card><h3>Latency p50 / p95 per destination</h3>");
        match charts::latency(&bars, section.latency_slo_ms) {
            Ok(svg) => out.push_str(&svg),
            Err(e) => {
                let _ = write!(out, "<p class=note>Chart not drawn: {}</p>", escape(&e));
            }
        }
        out.push_str("</div>");
    }
    out.push_str("<div class=pairs>");
    for pair in &section.pairs {
        pair_card(section, pair, out);
    }
    out.push_str("</div>");
}

/// The whole page.
pub fn render(page: &ReportPage) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>");
    out.push_str(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#);
    // Nothing may be fetched: no script, style sheet, font or image URL.
    out.push_str(r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">"#);
    out.push_str("<title>Customer.io Data Out — activation report</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>");
    out.push_str("<h1>Customer.io Data Out — activation report</h1>");
    let _ = write!(
        out,
        "<p class=meta>Generated {}{}{}. Counts by day over the last {} days from {} stored reconciliation report(s).</p>",
        time(page.generated_at),
        page.latest_report
            .as_ref()
            .map(|(id, at)| format!(" · newest report <code>{}</code> at {}", escape(id), time(*at)))
            .unwrap_or_default(),
        page.config_hash
            .as_deref()
            .map(|h| format!(" · config <code>{}</code>", escape(&h[..12.min(h.len())])))
            .unwrap_or_default(),
        page.days,
        page.reports_read
    );
    for note in &page.notes {
        let _ = write!(out, "<p class=note>{}</p>", escape(note));
    }
    summary_table(page, &mut out);
    legend(&mut out);
    for section in &page.sections {
        export_section(section, &mut out);
    }
    out.push_str(
        "<p class=meta>source = the Customer.io segment count; state = our members; delivered = adds − removes \
the destination acknowledged; dest. = the destination's own count (unknown where its API gives none); \
drift = dest. − delivered × the platform's match rate, with its tolerance, where the platform reports \
upload sessions, else delivered − state; latency = source event to \
destination acknowledgement (histogram bucket bounds); DLQ = jobs in the destination's dead-letter queue; \
held = runs held by a guard rail; overlap = suppression overlap, members of a suppression export who are also members of this export (our state).</p>",
    );
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{DayCounts, HeldRun, Overlap};

    fn page(name: &str) -> ReportPage {
        ReportPage {
            generated_at: 1_764_547_200_000,
            config_hash: Some("abcdef0123456789".into()),
            latest_report: Some(("rec_1".into(), 1_764_547_200_000)),
            reports_read: 1,
            days: 30,
            notes: vec![],
            sections: vec![ExportSection {
                export: name.into(),
                latency_slo_ms: Some(60_000),
                held_runs: vec![HeldRun {
                    run_id: "run_1".into(),
                    started_at: 0,
                    reason: format!("churn of {name} over 20%"),
                }],
                pairs: vec![PairSection {
                    destination: format!("{name}-dest"),
                    days: vec![DayCounts {
                        day: "2025-12-01".into(),
                        report_id: "rec_1".into(),
                        source: Some(10),
                        state: 10,
                        delivered: 9,
                        destination: Some(8),
                    }],
                    latest: None,
                    queue: None,
                    overlaps: vec![Overlap {
                        export: name.into(),
                        suppression: "unsubscribed".into(),
                        destination: format!("{name}-dest"),
                        people: 3,
                        export_members: 10,
                        suppression_members: 4,
                        delivered_members: 9,
                    }],
                }],
            }],
        }
    }

    #[test]
    fn names_from_the_spec_are_escaped_everywhere() {
        let html = render(&page(r#"<script>alert("x")</script>"#));
        assert!(!html.contains("<script"), "a script tag got through");
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)"));
    }

    #[test]
    fn page_fetches_nothing_and_shows_overlap_held_runs_and_a_chart() {
        let html = render(&page("vips"));
        for fetch in ["src=", "href=", "url(", "@import", "<script", "<link"] {
            assert!(!html.contains(fetch), "page contains {fetch}");
        }
        assert!(html.contains("<svg"), "chart inlined");
        assert!(html.contains("3 suppressed people targeted"));
        assert!(html.contains("run_1"));
    }
}
