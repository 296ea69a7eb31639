//! The report's charts, drawn by `plotters` into SVG strings that the page
//! inlines (no fonts or images loaded: the SVG backend writes `<text>`, and
//! escapes it).

use plotters::prelude::*;

use super::DayCounts;

/// Colours of the four count series, also used by the page's legend.
pub const SOURCE: RGBColor = RGBColor(0x25, 0x63, 0xeb);
pub const STATE: RGBColor = RGBColor(0x16, 0xa3, 0x4a);
pub const DELIVERED: RGBColor = RGBColor(0xea, 0x58, 0x0c);
pub const DESTINATION: RGBColor = RGBColor(0x93, 0x33, 0xea);
const P50: RGBColor = RGBColor(0x0e, 0xa5, 0xe9);
const P95: RGBColor = RGBColor(0x1e, 0x3a, 0x8a);
const SLO: RGBColor = RGBColor(0xdc, 0x26, 0x26);
const GRID: RGBColor = RGBColor(0xe5, 0xe7, 0xeb);

/// Width and height of the count chart.
pub const COUNTS_SIZE: (u32, u32) = (560, 260);
/// Height of the latency chart (its width grows with the destinations).
pub const LATENCY_HEIGHT: u32 = 240;

type Plot = Result<(), Box<dyn std::error::Error + Send + Sync + 'static>>;

fn wrap<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> Box<dyn std::error::Error + Send + Sync + 'static> {
    e.to_string().into()
}

/// Counts by day: source, state, delivered and destination, one line each
/// (a series the platform does not report is left out). `days` oldest
/// first. An SVG document, or why it could not be drawn.
pub fn counts_by_day(days: &[DayCounts]) -> Result<String, String> {
    let mut svg = String::new();
    draw_counts(&mut svg, days).map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw_counts(svg: &mut String, days: &[DayCounts]) -> Plot {
    let root = SVGBackend::with_string(svg, COUNTS_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(wrap)?;
    let n = days.len().max(1);
    let max = days
        .iter()
        .flat_map(|d| {
            [
                d.source.unwrap_or(0) as f64,
                d.state as f64,
                d.delivered.max(0) as f64,
                d.destination.unwrap_or(0) as f64,
            ]
        })
        .fold(1.0_f64, f64::max);
    let labels: Vec<String> = days
        .iter()
        .map(|d| d.day.get(5..).unwrap_or(&d.day).to_string())
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..(max * 1.15))?;
    chart
        .configure_mesh()
        .light_line_style(GRID)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .x_labels(n.min(10))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            labels.get(i as usize).cloned().unwrap_or_default()
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .y_desc("people")
        .draw()?;
    type Value = fn(&DayCounts) -> Option<f64>;
    let series: [(&str, RGBColor, Value); 4] = [
        ("source", SOURCE, |d| d.source.map(|v| v as f64)),
        ("state", STATE, |d| Some(d.state as f64)),
        ("delivered", DELIVERED, |d| Some(d.delivered.max(0) as f64)),
        ("destination", DESTINATION, |d| {
            d.destination.map(|v| v as f64)
        }),
    ];
    for (name, colour, value) in series {
        let points: Vec<(f64, f64)> = days
            .iter()
            .enumerate()
            .filter_map(|(i, d)| value(d).map(|v| (i as f64, v)))
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(3))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present().map_err(wrap)?;
    Ok(())
}

/// One destination's latency: p50 and p95 (ms, bucket upper bounds; `None`
/// when nothing was delivered).
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyBar {
    pub destination: String,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

/// The "more than a day" bucket is drawn at two days.
const CAP_MS: f64 = 2.0 * 86_400_000.0;

fn bar_ms(v: Option<i64>) -> Option<f64> {
    v.map(|v| (v as f64).clamp(1.0, CAP_MS))
}

/// p50 / p95 per destination of one export on a log scale, with the
/// export's latency objective as a red line where it has one.
pub fn latency(bars: &[LatencyBar], slo_ms: Option<i64>) -> Result<String, String> {
    let mut svg = String::new();
    draw_latency(&mut svg, bars, slo_ms).map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw_latency(svg: &mut String, bars: &[LatencyBar], slo_ms: Option<i64>) -> Plot {
    let width = (160 + 110 * bars.len() as u32).clamp(360, 1100);
    let root = SVGBackend::with_string(svg, (width, LATENCY_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(wrap)?;
    let top = bars
        .iter()
        .filter_map(|b| bar_ms(b.p95_ms).or(bar_ms(b.p50_ms)))
        .chain(slo_ms.and_then(|s| bar_ms(Some(s))))
        .fold(1_000.0_f64, f64::max)
        * 3.0;
    let n = bars.len().max(1);
    let names: Vec<String> = bars.iter().map(|b| b.destination.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n as f64, (1f64..top).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(GRID)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let centre = x.floor() + 0.5;
            if (x - centre).abs() > 0.01 {
                return String::new();
            }
            names.get(x.floor() as usize).cloned().unwrap_or_default()
        })
        .y_label_formatter(&|y| human_ms(*y))
        .y_desc("latency")
        .draw()?;
    for (series, colour, offset) in [("p50", P50, 0.15), ("p95", P95, 0.5)] {
        let rects: Vec<Rectangle<(f64, f64)>> = bars
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let v = if series == "p50" { b.p50_ms } else { b.p95_ms };
                bar_ms(v).map(|v| {
                    let x = i as f64 + offset;
                    Rectangle::new([(x, 1.0), (x + 0.33, v)], colour.filled())
                })
            })
            .collect();
        chart
            .draw_series(rects)?
            .label(series)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    if let Some(slo) = slo_ms.and_then(|s| bar_ms(Some(s))) {
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, slo), (n as f64, slo)],
                SLO.stroke_width(2),
            ))?
            .label("objective")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], SLO.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present().map_err(wrap)?;
    Ok(())
}

/// `250ms`, `5s`, `10m`, `2h`, `1d`.
pub fn human_ms(v: f64) -> String {
    match v {
        v if v < 1_000.0 => format!("{v:.0}ms"),
        v if v < 60_000.0 => format!("{:.0}s", v / 1_000.0),
        v if v < 3_600_000.0 => format!("{:.0}m", v / 60_000.0),
        v if v < 86_400_000.0 => format!("{:.0}h", v / 3_600_000.0),
        v => format!("{:.0}d", v / 86_400_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: &str, state: u64) -> DayCounts {
        DayCounts {
            day: day.into(),
            report_id: format!("rec_{day}"),
            source: Some(state + 2),
            state,
            delivered: state as i64,
            destination: None,
        }
    }

    #[test]
    fn count_chart_is_svg_with_one_line_per_reported_series() {
        let svg = counts_by_day(&[day("2026-11-30", 90), day("2026-12-01", 100)]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("12-01"), "day labels drawn");
        // source, state, delivered drawn; destination (never reported) not.
        // (plotters writes each text on a line of its own)
        assert!(svg.contains("\nsource\n") && svg.contains("\ndelivered\n"));
        assert!(!svg.contains("\ndestination\n"));
    }

    #[test]
    fn latency_chart_names_destinations_escaped_and_draws_the_objective() {
        let svg = latency(
            &[LatencyBar {
                destination: "<b>meta</b>".into(),
                p50_ms: Some(250),
                p95_ms: Some(i64::MAX),
            }],
            Some(60_000),
        )
        .unwrap();
        assert!(svg.contains("&lt;b&gt;meta"), "destination escaped");
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("\nobjective\n"));
    }
}
