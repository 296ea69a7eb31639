//! `dataout template`: the stack is rendered from the spec.
//!
//! * The committed `template.yaml` is the rendering of the example spec,
//!   byte for byte (the staleness check CI runs with the rest of the tests).
//! * A second spec with other names gets its own queues, consumers,
//!   schedules, concurrency and alarms with no template edit.
//! * No IAM statement grants a wildcard action or resource on a data service.

use std::path::{Path, PathBuf};
use std::process::Command;

use dataout::domain::config::{load_spec_file, parse_spec};
use dataout_cli::template::{render, render_file, TemplateError};
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{json, Value};

const EXAMPLE: &str = "config/exports.example.yaml";
const SECOND: &str = "config/exports.replenishment.yaml";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// YAML (as CloudFormation reads it) as JSON, for easy navigation.
fn to_json(node: &Yaml<'_>) -> Value {
    match node {
        Yaml::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Value(Scalar::String(s)) => json!(s.as_ref()),
        Yaml::Value(Scalar::Integer(i)) => json!(i),
        Yaml::Value(Scalar::FloatingPoint(f)) => json!(f.into_inner()),
        Yaml::Value(Scalar::Boolean(b)) => json!(b),
        Yaml::Value(Scalar::Null) => Value::Null,
        other => panic!("unexpected YAML node {other:?}"),
    }
}

fn parse_template(text: &str) -> Value {
    let docs = Yaml::load_from_str(text).expect("the template is YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    to_json(&docs[0])
}

fn rendered(rel: &str) -> Value {
    parse_template(&render_file(&repo(rel), rel).expect("renders"))
}

fn resources_of_type<'v>(t: &'v Value, kind: &str) -> Vec<(&'v String, &'v Value)> {
    t["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

#[test]
fn committed_template_is_the_rendering_of_the_example_spec() {
    let fresh = render_file(&repo(EXAMPLE), EXAMPLE).expect("the example spec renders");
    let committed = std::fs::read_to_string(repo("template.yaml")).expect("template.yaml");
    if fresh != committed {
        let first = fresh
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or_else(|| fresh.lines().count().min(committed.lines().count()) + 1);
        panic!(
            "template.yaml is stale (first difference at line {first}); run:\n  \
             cargo run -p dataout-cli -- template --config {EXAMPLE} --out template.yaml"
        );
    }
}

#[test]
fn the_cli_prints_the_same_template() {
    let out = Command::new(env!("CARGO_BIN_EXE_dataout"))
        .current_dir(repo(""))
        .args(["template", "--config", SECOND])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = render_file(&repo(SECOND), SECOND).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn second_spec_validates() {
    let out = Command::new(env!("CARGO_BIN_EXE_dataout"))
        .arg("validate")
        .arg(repo(SECOND))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn second_spec_gets_a_queue_dlq_and_consumer_per_destination() {
    let t = rendered(SECOND);
    let res = &t["Resources"];
    // (destination, logical id stem, expected MaximumConcurrency, maxReceiveCount)
    let expected = [
        ("lake", "Lake", 2, 5), // max_concurrency 1, clamped to Lambda's 2
        ("crm", "Crm", 12, 8),
        ("ads_lists", "AdsLists", 3, 5),
    ];
    for (name, id, concurrency, receives) in expected {
        assert_eq!(res[format!("{id}DLQ")]["Type"], "AWS::SQS::Queue", "{name}");
        let queue = &res[format!("{id}Queue")];
        assert_eq!(queue["Type"], "AWS::SQS::Queue", "{name}");
        assert_eq!(
            queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"],
            json!([format!("{id}DLQ"), "Arn"])
        );
        assert_eq!(
            queue["Properties"]["RedrivePolicy"]["maxReceiveCount"],
            receives
        );
        let f = &res[format!("Deliver{id}")];
        assert_eq!(f["Type"], "AWS::Serverless::Function", "{name}");
        assert_eq!(
            f["Properties"]["Environment"]["Variables"]["DATAOUT_DESTINATION"],
            name
        );
        let ev = &f["Properties"]["Events"]["Jobs"];
        assert_eq!(ev["Type"], "SQS");
        assert_eq!(
            ev["Properties"]["Queue"]["Fn::GetAtt"],
            json!([format!("{id}Queue"), "Arn"])
        );
        assert_eq!(
            ev["Properties"]["FunctionResponseTypes"],
            json!(["ReportBatchItemFailures"])
        );
        assert_eq!(
            ev["Properties"]["ScalingConfig"]["MaximumConcurrency"], concurrency,
            "{name}"
        );
        assert_eq!(
            res[format!("{id}DLQAlarm")]["Type"],
            "AWS::CloudWatch::Alarm"
        );
        assert_eq!(
            res[format!("{id}RejectRateAlarm")]["Type"],
            "AWS::CloudWatch::Alarm"
        );
    }
    // Three destination queues + three DLQs + the scheduler's DLQ; no
    // queue of the example spec's names.
    assert_eq!(resources_of_type(&t, "AWS::SQS::Queue").len(), 7);
    let deliver: Vec<_> = resources_of_type(&t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"] == "deliver")
        .collect();
    assert_eq!(deliver.len(), 3);
    assert!(res.get("MetaQueue").is_none() && res.get("WarehouseQueue").is_none());
    let queues = t["Globals"]["Function"]["Environment"]["Variables"]["DATAOUT_QUEUES"]["Fn::Sub"]
        .as_str()
        .unwrap()
        .to_string();
    for name in ["lake", "crm", "ads_lists"] {
        assert!(queues.contains(&format!("\"{name}\":")), "{queues}");
    }
}

#[test]
fn second_spec_gets_one_schedule_per_batch_export_at_its_rate() {
    let t = rendered(SECOND);
    let events = t["Resources"]["BatchExport"]["Properties"]["Events"]
        .as_object()
        .unwrap();
    let schedules: Vec<(&String, &Value)> = events
        .iter()
        .filter(|(_, e)| e["Type"] == "ScheduleV2")
        .collect();
    assert_eq!(schedules.len(), 2);
    for (id, export, rate) in [
        ("BrowseAbandoners", "browse_abandoners", "rate(30 minutes)"),
        ("ReplenishmentDue", "replenishment_due", "rate(360 minutes)"),
    ] {
        let p = &events[id]["Properties"];
        assert_eq!(p["ScheduleExpression"], rate);
        let input: Value = serde_json::from_str(p["Input"].as_str().unwrap()).unwrap();
        assert_eq!(input["export"], export);
    }
}

#[test]
fn latency_objectives_become_alarms_at_the_spec_threshold() {
    let t = rendered(SECOND);
    let res = &t["Resources"];
    let browse = &res["BrowseAbandonersLatencyObjectiveAlarm"]["Properties"];
    assert_eq!(browse["Threshold"], 900_000);
    let metrics = browse["Metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 4, "three destinations and the MAX");
    assert_eq!(metrics[3]["Expression"], "MAX([m0, m1, m2])");
    assert_eq!(
        metrics[0]["MetricStat"]["Metric"]["MetricName"],
        "LatencyP95"
    );
    assert_eq!(
        res["ReplenishmentDueLatencyObjectiveAlarm"]["Properties"]["Threshold"],
        86_400_000
    );
    // The example spec: every export with a latency_slo has its alarm.
    let spec = load_spec_file(&repo(EXAMPLE)).unwrap();
    let example = rendered(EXAMPLE);
    for export in spec.exports.keys() {
        let id = format!(
            "{}LatencyObjectiveAlarm",
            dataout_cli::template::pascal(export)
        );
        match spec.latency_slo_ms(export) {
            Some(ms) => assert_eq!(example["Resources"][&id]["Properties"]["Threshold"], ms),
            None => assert!(example["Resources"].get(&id).is_none()),
        }
    }
}

#[test]
fn dashboard_has_a_row_per_export_and_destination() {
    let t = rendered(SECOND);
    let body = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .unwrap();
    let dash: Value = serde_json::from_str(body).expect("the dashboard body is JSON");
    let titles: Vec<&str> = dash["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["properties"]["title"].as_str())
        .collect();
    for export in ["browse_abandoners", "replenishment_due"] {
        for dest in ["crm", "ads_lists", "lake"] {
            for what in ["Delivered", "Rejected", "Drift %", "Latency p95 (ms)"] {
                let title = format!("{what} · {export} → {dest}");
                assert!(titles.contains(&title.as_str()), "missing {title}");
            }
        }
        assert!(titles.contains(&format!("Held runs · {export}").as_str()));
    }
    for dest in ["crm", "ads_lists", "lake"] {
        assert!(titles.contains(&format!("DLQ depth · {dest}").as_str()));
    }
}

// ---------------------------------------------------------------- IAM

const DATA_SERVICES: &[&str] = &["dynamodb:", "sqs:", "s3:", "secretsmanager:"];

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        other => vec![other.to_string()],
    }
}

/// An ARN (or `Fn::Sub` text) whose resource part is a wildcard: `*`, or a
/// service / region / account / whole-resource wildcard.
fn wildcard_resource(r: &str) -> bool {
    if r == "*" {
        return true;
    }
    let r = r
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::Region}", "region")
        .replace("${AWS::AccountId}", "123456789012");
    let parts: Vec<&str> = r.splitn(6, ':').collect();
    parts.len() == 6 && (parts[2..5].contains(&"*") || parts[5].starts_with('*'))
}

/// Every problem in the template's IAM: SAM policy templates or managed
/// policies on functions, and Allow statements with a wildcard action or
/// resource on a data service.
fn iam_violations(t: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (id, r) in t["Resources"].as_object().unwrap() {
        let props = &r["Properties"];
        if r["Type"] == "AWS::Serverless::Function" {
            if props.get("Policies").is_some() {
                out.push(format!(
                    "{id}: SAM Policies (use the function's explicit Role)"
                ));
            }
            if props.get("Role").is_none() {
                out.push(format!(
                    "{id}: no explicit Role (SAM would add managed policies)"
                ));
            }
        }
        if r["Type"] == "AWS::IAM::Role" {
            if props.get("ManagedPolicyArns").is_some() {
                out.push(format!("{id}: ManagedPolicyArns"));
            }
            for p in props["Policies"].as_array().into_iter().flatten() {
                for st in p["PolicyDocument"]["Statement"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if st["Effect"] != "Allow" {
                        continue;
                    }
                    let actions = strings(&st["Action"]);
                    let data: Vec<&String> = actions
                        .iter()
                        .filter(|a| *a == "*" || DATA_SERVICES.iter().any(|s| a.starts_with(s)))
                        .collect();
                    if data.is_empty() {
                        continue;
                    }
                    for a in &data {
                        if a.contains('*') {
                            out.push(format!("{id}: wildcard action {a}"));
                        }
                    }
                    let resources = match &st["Resource"] {
                        Value::Object(o) if o.contains_key("Fn::Sub") => {
                            strings(&o["Fn::Sub"]).into_iter().take(1).collect()
                        }
                        Value::Object(_) => vec![],
                        other => strings(other),
                    };
                    for res in resources {
                        if wildcard_resource(&res) {
                            out.push(format!("{id}: wildcard resource {res} for {data:?}"));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn no_iam_grant_has_a_wildcard_on_a_data_service() {
    for (name, text) in [
        (
            "template.yaml",
            std::fs::read_to_string(repo("template.yaml")).unwrap(),
        ),
        (SECOND, render_file(&repo(SECOND), SECOND).unwrap()),
    ] {
        let t = parse_template(&text);
        let v = iam_violations(&t);
        assert!(v.is_empty(), "{name}: {v:#?}");
        assert!(!resources_of_type(&t, "AWS::IAM::Role").is_empty());
    }
}

#[test]
fn the_iam_check_catches_wildcards_and_managed_policies() {
    let t = json!({"Resources": {
        "F": {"Type": "AWS::Serverless::Function", "Properties": {
            "Policies": [{"SQSPollerPolicy": {"QueueName": "q"}}]}},
        "R": {"Type": "AWS::IAM::Role", "Properties": {
            "ManagedPolicyArns": ["arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"],
            "Policies": [{"PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": "sqs:*", "Resource": "arn:aws:sqs:us-east-1:1:q"},
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
                {"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": "arn:aws:dynamodb:*:1:table/t"},
                {"Effect": "Allow", "Action": ["xray:PutTraceSegments"], "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
            ]}}]}}
    }});
    let v = iam_violations(&t);
    assert_eq!(v.len(), 6, "{v:#?}");
}

#[test]
fn names_that_clash_as_logical_ids_are_refused() {
    // `scheduler` + a batch export would both want `SchedulerDLQ`.
    let text = r#"version: 1
destinations:
  scheduler:
    kind: warehouse
    location: ./out
exports:
  carts:
    source: {segment: 1}
    mode: membership
    cadence: {every: 15m}
    identity: email
    destinations:
      scheduler:
"#;
    let spec = parse_spec(text, "clash.yaml").unwrap();
    match render(&spec, "clash.yaml") {
        Err(TemplateError::Clash { id, .. }) => assert_eq!(id, "SchedulerDLQ"),
        other => panic!("expected a clash, got {other:?}"),
    }
}

#[test]
fn a_meta_conversions_destination_gets_its_queue_secrets_and_version_alarm_only() {
    let text = r#"version: 1
destinations:
  capi:
    kind: meta_conversions
    pixel_id: "555000111"
    access_token_env: META_CAPI_TOKEN
    test_event_code_env: META_CAPI_TEST_CODE
exports:
  purchases:
    source: {events: [order_placed]}
    mode: conversions
    cadence: {realtime: true}
    identity: {golden: id, fallbacks: [email]}
    destinations:
      capi: {audience: Purchase}
events:
  order_placed:
    properties: {order_id: , total: number, currency: }
    value: total
    currency: currency
    order_id: order_id
"#;
    let spec = parse_spec(text, "capi.yaml").unwrap_or_else(|e| panic!("{e}"));
    let t = parse_template(&render(&spec, "capi.yaml").expect("renders"));
    let res = &t["Resources"];
    assert_eq!(res["CapiQueue"]["Type"], "AWS::SQS::Queue");
    assert_eq!(res["DeliverCapi"]["Type"], "AWS::Serverless::Function");
    let secrets = t["Parameters"]["SecretsId"]["Description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        secrets.contains("META_CAPI_TOKEN") && secrets.contains("META_CAPI_TEST_CODE"),
        "{secrets}"
    );
    // Error 2635 alarms; a pixel has no audiences to pause.
    assert_eq!(res["CapiApiVersionAlarm"]["Type"], "AWS::CloudWatch::Alarm");
    let audience_alarms: Vec<&String> = res
        .as_object()
        .expect("Resources")
        .keys()
        .filter(|k| k.starts_with("CapiAudience"))
        .collect();
    assert!(audience_alarms.is_empty(), "{audience_alarms:?}");
}

/// The `dataout …` commands an alarm's description names, each cut before
/// its first placeholder or flag (`<export>`, `--stack`, `${…}`).
fn named_commands(description: &str) -> Vec<Vec<String>> {
    description
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| quoted.strip_prefix("dataout "))
        .map(|rest| {
            rest.split_whitespace()
                .take_while(|w| !w.starts_with('<') && !w.starts_with('-') && !w.contains('$'))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_alarm_description_names_a_dataout_command_that_exists() {
    for spec in [EXAMPLE, SECOND] {
        let t = rendered(spec);
        let alarms = resources_of_type(&t, "AWS::CloudWatch::Alarm");
        assert!(alarms.len() >= 10, "{spec}: {} alarms", alarms.len());
        let mut checked = std::collections::BTreeSet::new();
        for (name, alarm) in alarms {
            let d = &alarm["Properties"]["AlarmDescription"];
            let text = d
                .as_str()
                .or_else(|| d["Fn::Sub"].as_str())
                .unwrap_or_else(|| panic!("{spec}: {name} has no description: {d}"));
            let commands = named_commands(text);
            assert!(
                !commands.is_empty(),
                "{spec}: {name} names no dataout command: {text}"
            );
            for words in commands {
                // Destination / export names are arguments, not subcommands.
                let sub: Vec<&str> = words.iter().take(2).map(String::as_str).collect();
                let sub: Vec<&str> = match sub.as_slice() {
                    [first, second] if is_subcommand_pair(first, second) => sub,
                    [first, ..] => vec![*first],
                    [] => panic!("{spec}: {name}: an empty command in {text}"),
                };
                if !checked.insert(sub.join(" ")) {
                    continue;
                }
                let out = Command::new(env!("CARGO_BIN_EXE_dataout"))
                    .args(&sub)
                    .arg("--help")
                    .output()
                    .expect("run dataout");
                assert!(
                    out.status.success(),
                    "{spec}: {name} names `dataout {}`, which does not exist: {}",
                    sub.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// `runs list`, `dlq redrive`, `reconcile show`, `quarantine replay`: the
/// operator commands with a subcommand of their own.
fn is_subcommand_pair(first: &str, second: &str) -> bool {
    matches!(first, "runs" | "dlq" | "reconcile" | "quarantine")
        && second.chars().all(|c| c.is_ascii_lowercase())
}

#[test]
fn a_spec_with_its_own_lake_bucket_gets_reports_there_and_no_reference_to_a_stack_bucket() {
    let text = render_file(&repo(SECOND), SECOND).expect("renders");
    // No warehouse bucket in this stack: nothing may point at one.
    assert!(
        !text.contains("WarehouseBucket"),
        "a dangling WarehouseBucket reference"
    );
    let t = parse_template(&text);
    let vars = &t["Resources"]["Reconcile"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        vars["DATAOUT_REPORT_LOCATION"], "s3://replenishment-lake/dataout/reports",
        "{vars}"
    );
    let example = rendered(EXAMPLE);
    let vars = &example["Resources"]["Reconcile"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        vars["DATAOUT_REPORT_LOCATION"]["Fn::Sub"], "s3://${WarehouseBucket}/reports",
        "{vars}"
    );
}

#[test]
fn the_architecture_is_arm64_unless_x86_64_is_asked_for() {
    use dataout_cli::template::{render_file_for, Arch};
    let arm = rendered(SECOND);
    assert_eq!(
        arm["Globals"]["Function"]["Architectures"],
        json!(["arm64"])
    );
    let text = render_file_for(&repo(SECOND), SECOND, Arch::X86_64).expect("renders");
    let x86 = parse_template(&text);
    assert_eq!(
        x86["Globals"]["Function"]["Architectures"],
        json!(["x86_64"])
    );
    let layer = x86["Parameters"]["SecretsExtensionLayerArn"]["Description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        layer.contains("for x86_64") && !layer.contains("Arm64"),
        "{layer}"
    );
    assert_eq!(Arch::parse("aarch64"), None);
}
