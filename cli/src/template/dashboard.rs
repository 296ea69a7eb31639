//! The CloudWatch dashboard: a row per export × destination.
//!
//! Metric names and dimensions are the ones the functions emit as EMF
//! (namespace `DataOut/<stack>`):
//! * deliver: `Accepted`, `Rejected` by `service=deliver`, `destination`
//!   (one deliver function per destination, all exports together);
//! * reconcile (daily): `DeliveredMembers`, `Rejected`, `DriftPct`,
//!   `LatencyP95` by `service=reconcile`, `export`, `destination`;
//! * batch-export: `Held` by `service=batch-export`, `export`;
//! * SQS: `ApproximateNumberOfMessagesVisible` of the destination's DLQ.

use serde_json::{json, Value};

use dataout::domain::spec::ActivationSpec;

use super::{pascal, DRIFT_ALARM_PCT};

const NS: &str = "DataOut/${AWS::StackName}";
const DAY: u32 = 86_400;
const FIVE_MIN: u32 = 300;

fn widget(x: u32, y: u32, title: String, metrics: Vec<Value>, extra: Option<Value>) -> Value {
    let mut properties = json!({
        "title": title,
        "region": "${AWS::Region}",
        "view": "timeSeries",
        "stacked": false,
        "metrics": metrics,
    });
    if let (Some(extra), Some(map)) = (extra, properties.as_object_mut()) {
        if let Some(extra) = extra.as_object() {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    json!({"type": "metric", "x": x, "y": y, "width": 4, "height": 6, "properties": properties})
}

fn text(x: u32, y: u32, width: u32, height: u32, markdown: String) -> Value {
    json!({"type": "text", "x": x, "y": y, "width": width, "height": height,
           "properties": {"markdown": markdown}})
}

fn reconcile_metric(name: &str, export: &str, dest: &str, stat: &str, label: &str) -> Value {
    json!([NS, name, "service", "reconcile", "export", export, "destination", dest,
           {"stat": stat, "period": DAY, "label": label}])
}

fn deliver_metric(name: &str, dest: &str, label: &str) -> Value {
    json!([NS, name, "service", "deliver", "destination", dest,
           {"stat": "Sum", "period": FIVE_MIN, "label": label, "yAxis": "right"}])
}

fn duration(ms: i64) -> String {
    for (unit, factor) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms % factor == 0 {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

/// The dashboard body (JSON for `Fn::Sub`: `${AWS::Region}`,
/// `${AWS::StackName}` and the DLQ names are filled in by CloudFormation),
/// one widget a line.
pub fn body(spec: &ActivationSpec) -> String {
    let mut widgets = Vec::new();
    let mut y = 0;
    for (export, e) in &spec.exports {
        let slo = spec.latency_slo_ms(export);
        let cadence = match e.cadence.every_minutes {
            Some(m) => format!("batch every {m}m"),
            None => "no batch".to_string(),
        };
        let realtime = if e.cadence.realtime { ", realtime" } else { "" };
        let objective = slo
            .map(|ms| format!(", latency objective {}", duration(ms)))
            .unwrap_or_default();
        widgets.push(text(
            0,
            y,
            24,
            1,
            format!("### export `{export}` ({cadence}{realtime}{objective})"),
        ));
        y += 1;
        for binding in &e.destinations {
            let d = binding.destination.as_str();
            let title = |what: &str| format!("{what} · {export} → {d}");
            widgets.push(widget(
                0,
                y,
                title("Delivered"),
                vec![
                    reconcile_metric(
                        "DeliveredMembers",
                        export,
                        d,
                        "Maximum",
                        "members delivered (reconcile)",
                    ),
                    deliver_metric("Accepted", d, "ops accepted, all exports (deliver)"),
                ],
                None,
            ));
            widgets.push(widget(
                4,
                y,
                title("Rejected"),
                vec![
                    reconcile_metric("Rejected", export, d, "Maximum", "ops rejected (reconcile)"),
                    deliver_metric("Rejected", d, "ops rejected, all exports (deliver)"),
                ],
                None,
            ));
            widgets.push(widget(
                8,
                y,
                title("Drift %"),
                vec![reconcile_metric(
                    "DriftPct",
                    export,
                    d,
                    "Maximum",
                    "drift % (reconcile)",
                )],
                Some(json!({"annotations": {"horizontal": [
                    {"label": "alarm", "value": DRIFT_ALARM_PCT}]}})),
            ));
            let latency_extra = slo.map(|ms| {
                json!({"annotations": {"horizontal": [
                    {"label": "latency_slo", "value": ms}]}})
            });
            widgets.push(widget(
                12,
                y,
                title("Latency p95 (ms)"),
                vec![reconcile_metric(
                    "LatencyP95",
                    export,
                    d,
                    "Maximum",
                    "p95 ms (reconcile)",
                )],
                latency_extra,
            ));
            widgets.push(widget(
                16,
                y,
                format!("DLQ depth · {d}"),
                vec![json!(["AWS/SQS", "ApproximateNumberOfMessagesVisible",
                    "QueueName", format!("${{{}DLQ.QueueName}}", pascal(d)),
                    {"stat": "Maximum", "period": FIVE_MIN, "label": "dead letters"}])],
                None,
            ));
            if e.cadence.every_minutes.is_some() {
                widgets.push(widget(
                    20,
                    y,
                    format!("Held runs · {export}"),
                    vec![
                        json!([NS, "Held", "service", "batch-export", "export", export,
                        {"stat": "Sum", "period": 900, "label": "runs held by a guard rail"}]),
                    ],
                    None,
                ));
            } else {
                widgets.push(text(
                    20,
                    y,
                    4,
                    6,
                    format!(
                        "Held runs · {export}\n\nNo batch runs: guard rails hold batch runs only."
                    ),
                ));
            }
            y += 6;
        }
    }
    let lines: Vec<String> = widgets.iter().map(Value::to_string).collect();
    format!("{{\"widgets\": [\n{}\n]}}\n", lines.join(",\n"))
}
