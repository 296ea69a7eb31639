//! `dataout template`: the SAM template, rendered from an activation spec.
//!
//! The spec is the one source of truth for the stack's per-spec parts: one
//! SQS queue + DLQ + deliver function per destination (concurrency from
//! `max_concurrency`, receive count from `max_attempts`), one EventBridge
//! Scheduler schedule per batch export (`rate()` from `every:`), alarms per
//! destination (dead letters, errors, reject rate) and per export (latency
//! objective from `latency_slo:`), and the dashboard. The fixed parts (state
//! table, intake, reconcile, IAM) are rendered here too, so the template is
//! one output of one function; `template.yaml` in the repository is this
//! output for `config/exports.example.yaml`, and a test keeps it current.

mod alarms;
mod dashboard;
mod iam;
mod parameters;
mod yaml;

use alarms::*;
use parameters::*;

use std::collections::BTreeSet;
use std::path::Path;

use dataout::domain::config::load_spec_file;
use dataout::domain::spec::{
    ActivationSpec, DestinationKind, DestinationSettings, DestinationSpec,
};

use yaml::{att, b, emit, iff, l, ls, m, n, no_value, r#ref, s, sub, sub_block, Y};

mod functions;
use functions::*;

/// Why a template could not be rendered. All permanent: fix the spec.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The spec does not validate (the message lists every issue).
    #[error("{0}")]
    Spec(String),
    /// Two names map to one CloudFormation logical id.
    #[error("logical id `{id}` would be used twice ({what}); rename one of them")]
    Clash { id: String, what: String },
    #[error("YAML emitter: {0}")]
    Emit(String),
}

/// Reconciliation's drift alarm threshold, in percent (`DATAOUT_DRIFT_ALARM`
/// is the same as a fraction).
pub const DRIFT_ALARM_PCT: f64 = 2.0;
/// Lambda's minimum for an SQS event source's `MaximumConcurrency`.
pub const MIN_SQS_CONCURRENCY: u32 = 2;
/// Lambda's maximum for it.
pub const MAX_SQS_CONCURRENCY: u32 = 1000;
/// Deliver function timeout; queue visibility is six times it.
const DELIVER_TIMEOUT_SECS: i64 = 120;
/// The batch export's longest run per invocation.
const BATCH_TIMEOUT_SECS: i64 = 900;
/// Reject-rate alarm: ops an hour below which the rate is not judged.
pub const REJECT_RATE_MIN_OPS: u32 = 20;
const LOG_RETENTION_DAYS: i64 = 30;

/// `analytics_webhook` -> `AnalyticsWebhook`.
pub fn pascal(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `MaximumConcurrency` of a destination's event source: its
/// `max_concurrency`, clamped to what Lambda accepts.
pub fn sqs_concurrency(d: &DestinationSpec) -> u32 {
    d.max_concurrency
        .clamp(MIN_SQS_CONCURRENCY, MAX_SQS_CONCURRENCY)
}

/// EventBridge rate expression for an `every:` in minutes.
pub fn rate_expression(minutes: u32) -> String {
    if minutes == 1 {
        "rate(1 minute)".to_string()
    } else {
        format!("rate({minutes} minutes)")
    }
}

/// Reads, validates and renders a spec file. `label` is how the header
/// names the spec (a repository-relative path keeps the output stable).
pub fn render_file(path: &Path, label: &str) -> Result<String, TemplateError> {
    render_file_for(path, label, Arch::Arm64)
}

/// The functions' processor architecture (`Globals.Function.Architectures`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arch {
    /// Graviton: the default, the cheaper per GB-second.
    #[default]
    Arm64,
    /// For machines that cannot build for aarch64 (no aarch64 std library).
    X86_64,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "arm64" => Some(Arch::Arm64),
            "x86_64" => Some(Arch::X86_64),
            _ => None,
        }
    }
    fn lambda_name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }
    fn layer_suffix(self) -> &'static str {
        match self {
            Arch::Arm64 => "-Arm64",
            Arch::X86_64 => "",
        }
    }
}

pub fn render_file_for(path: &Path, label: &str, arch: Arch) -> Result<String, TemplateError> {
    let spec = load_spec_file(path).map_err(|e| TemplateError::Spec(e.to_string()))?;
    render_for(&spec, label, arch)
}

/// A template under construction: resources in order, with comments, and
/// every logical id checked for uniqueness.
struct Doc {
    ids: BTreeSet<String>,
    resources: String,
    /// A comment or section heading was just written (no blank line then).
    headed: bool,
}

impl Doc {
    fn claim(&mut self, id: &str, what: &str) -> Result<(), TemplateError> {
        if self.ids.insert(id.to_owned()) {
            Ok(())
        } else {
            Err(TemplateError::Clash {
                id: id.to_owned(),
                what: what.to_owned(),
            })
        }
    }
    fn section(&mut self, title: &str) {
        let dashes = 66usize.saturating_sub(title.len());
        self.resources
            .push_str(&format!("\n  # {} {title}\n", "-".repeat(dashes)));
        self.headed = true;
    }
    fn comment(&mut self, text: &str) {
        self.resources.push('\n');
        for line in text.lines() {
            self.resources.push_str(&format!("  # {line}\n"));
        }
        self.headed = true;
    }
    fn add(&mut self, id: &str, what: &str, body: Y) -> Result<(), TemplateError> {
        self.claim(id, what)?;
        if !std::mem::take(&mut self.headed) {
            self.resources.push('\n');
        }
        self.resources.push_str(&emit(&m([(id, body)]), 2)?);
        Ok(())
    }
}

struct Dest<'s> {
    name: &'s str,
    id: String,
    spec: &'s DestinationSpec,
}

impl Dest<'_> {
    fn queue(&self) -> String {
        format!("{}Queue", self.id)
    }
    fn dlq(&self) -> String {
        format!("{}DLQ", self.id)
    }
    fn function(&self) -> String {
        format!("Deliver{}", self.id)
    }
}

fn describe_kind(kind: DestinationKind) -> &'static str {
    match kind.as_str() {
        "warehouse" => "the warehouse (S3 files)",
        "clevertap" => "CleverTap profiles",
        "meta_audience" => "a Meta Custom Audience",
        "meta_conversions" => "a Meta pixel (Conversions API)",
        "google_customer_match" => "Google Ads Customer Match",
        "google_data_manager" => "Google audiences (Data Manager API)",
        "webhook" => "a signed webhook",
        _ => "its API",
    }
}

/// Seconds SQS waits to fill a batch: short for the per-person APIs, long
/// for the bulk ones.
fn batching_window(kind: DestinationKind) -> i64 {
    if kind == DestinationKind::Warehouse {
        30
    } else if kind.is_ad_platform() {
        10
    } else {
        5
    }
}

/// The `*_env` names the spec's destinations read secrets from, plus the
/// workspace's own.
fn secret_names(spec: &ActivationSpec) -> Vec<String> {
    let mut names: BTreeSet<String> = [
        "CIO_WEBHOOK_SIGNING_SECRET",
        "DATAOUT_ACTION_SECRET",
        "CIO_APP_API_KEY",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    fn collect(value: &serde_json::Value, names: &mut BTreeSet<String>) {
        if let serde_json::Value::Object(map) = value {
            for (k, v) in map {
                match v.as_str() {
                    Some(name) if k.ends_with("_env") => {
                        names.insert(name.to_owned());
                    }
                    _ => collect(v, names),
                }
            }
        }
    }
    for d in spec.destinations.values() {
        if let Ok(settings) = serde_json::to_value(&d.settings) {
            collect(&settings, &mut names);
        }
    }
    names.into_iter().collect()
}

fn function(
    binary: &str,
    code_uri: &str,
    description: &str,
    role: &str,
    logs: &str,
    mut properties: Vec<(&'static str, Y)>,
) -> Y {
    let mut props: Vec<(&'static str, Y)> = vec![
        ("Description", s(description)),
        ("CodeUri", s(code_uri)),
        ("Role", att(role, "Arn")),
        ("LoggingConfig", m([("LogGroup", r#ref(logs))])),
    ];
    props.append(&mut properties);
    m([
        ("Type", s("AWS::Serverless::Function")),
        (
            "Metadata",
            m([
                ("BuildMethod", s("rust-cargolambda")),
                ("BuildProperties", m([("Binary", s(binary))])),
            ]),
        ),
        ("Properties", m(props)),
    ])
}

fn log_group() -> Y {
    m([
        ("Type", s("AWS::Logs::LogGroup")),
        (
            "Properties",
            m([("RetentionInDays", n(LOG_RETENTION_DAYS))]),
        ),
    ])
}

fn queue(dlq: &str, max_receive_count: u32) -> Y {
    m([
        ("Type", s("AWS::SQS::Queue")),
        (
            "Properties",
            m([
                ("VisibilityTimeout", n(6 * DELIVER_TIMEOUT_SECS)),
                ("MessageRetentionPeriod", n(345_600)),
                ("SqsManagedSseEnabled", b(true)),
                (
                    "RedrivePolicy",
                    m([
                        ("deadLetterTargetArn", att(dlq, "Arn")),
                        ("maxReceiveCount", n(i64::from(max_receive_count))),
                    ]),
                ),
            ]),
        ),
    ])
}

fn dead_letter_queue() -> Y {
    m([
        ("Type", s("AWS::SQS::Queue")),
        (
            "Properties",
            m([
                ("MessageRetentionPeriod", n(1_209_600)),
                ("SqsManagedSseEnabled", b(true)),
            ]),
        ),
    ])
}

/// Renders the whole template for a validated spec.
pub fn render(spec: &ActivationSpec, label: &str) -> Result<String, TemplateError> {
    render_for(spec, label, Arch::Arm64)
}

pub fn render_for(spec: &ActivationSpec, label: &str, arch: Arch) -> Result<String, TemplateError> {
    let dests: Vec<Dest<'_>> = spec
        .destinations
        .iter()
        .map(|(name, d)| Dest {
            name,
            id: pascal(name),
            spec: d,
        })
        .collect();
    let batch: Vec<(&str, u32)> = spec
        .exports
        .iter()
        .filter_map(|(name, e)| e.cadence.every_minutes.map(|m| (name.as_str(), m)))
        .collect();
    let has_warehouse_bucket = dests.iter().any(|d| {
        matches!(&d.spec.settings, DestinationSettings::Warehouse { location } if !location.starts_with("s3://"))
    });
    let queue_ids: Vec<String> = dests.iter().map(Dest::queue).collect();
    let mut doc = Doc {
        ids: BTreeSet::new(),
        resources: String::new(),
        headed: false,
    };

    // ------------------------------------------------------------ state
    doc.section("state");
    doc.add(
        "StateTable",
        "state table",
        m([
            ("Type", s("AWS::DynamoDB::Table")),
            ("DeletionPolicy", s("Retain")),
            ("UpdateReplacePolicy", s("Retain")),
            (
                "Properties",
                m([
                    ("BillingMode", s("PAY_PER_REQUEST")),
                    (
                        "AttributeDefinitions",
                        l(["pk", "sk"]
                            .map(|a| m([("AttributeName", s(a)), ("AttributeType", s("S"))]))),
                    ),
                    (
                        "KeySchema",
                        l([("pk", "HASH"), ("sk", "RANGE")]
                            .map(|(a, k)| m([("AttributeName", s(a)), ("KeyType", s(k))]))),
                    ),
                    (
                        "TimeToLiveSpecification",
                        m([("AttributeName", s("expires_at")), ("Enabled", b(true))]),
                    ),
                    (
                        "PointInTimeRecoverySpecification",
                        m([("PointInTimeRecoveryEnabled", b(true))]),
                    ),
                    ("SSESpecification", m([("SSEEnabled", b(true))])),
                ]),
            ),
        ]),
    )?;
    if has_warehouse_bucket {
        doc.comment(
            "A warehouse destination whose location is not s3://... writes here:\n\
             set its location to s3://<WarehouseBucketName output>/<prefix> in the\n\
             spec you upload to ConfigS3Uri.",
        );
        warehouse_bucket(&mut doc)?;
    }

    // ------------------------------------------------------------ queues
    doc.section("queues");
    doc.comment(&format!(
        "One standard queue + DLQ per destination. Visibility {} s = 6 x the\n\
         deliver timeout; maxReceiveCount = the destination's max_attempts;\n\
         DLQs keep messages the SQS maximum, 14 days.",
        6 * DELIVER_TIMEOUT_SECS
    ));
    for d in &dests {
        doc.add(&d.dlq(), d.name, dead_letter_queue())?;
        doc.add(&d.queue(), d.name, queue(&d.dlq(), d.spec.max_attempts))?;
    }
    if !batch.is_empty() {
        doc.comment("Scheduler invocations that could not be delivered to BatchExport.");
        doc.add("SchedulerDLQ", "scheduler DLQ", dead_letter_queue())?;
    }

    // ------------------------------------------------------------ functions
    doc.section("functions");
    intake(&mut doc, &queue_ids)?;
    if !batch.is_empty() {
        batch_export(&mut doc, &batch, &queue_ids)?;
    }
    doc.comment(
        "One deliver function per destination queue. MaximumConcurrency is the\n\
         destination's max_concurrency (Lambda accepts 2 to 1000).",
    );
    for d in &dests {
        deliver(&mut doc, d)?;
    }
    reconcile(&mut doc, &dests, has_warehouse_bucket)?;

    // ------------------------------------------------------------ alarms
    doc.section("alarms");
    alarms(&mut doc, spec, &dests, !batch.is_empty())?;

    // ------------------------------------------------------------ dashboard
    doc.section("dashboard");
    doc.comment(
        "Per export x destination: delivered, rejected, drift, latency p95,\n\
         DLQ depth, held runs (see cli/src/template/dashboard.rs).",
    );
    doc.add(
        "Dashboard",
        "dashboard",
        m([
            ("Type", s("AWS::CloudWatch::Dashboard")),
            (
                "Properties",
                m([
                    ("DashboardName", sub("${AWS::StackName}-dataout")),
                    ("DashboardBody", sub_block(dashboard::body(spec))),
                ]),
            ),
        ]),
    )?;

    let mut out = header(spec, label, &dests, &batch);
    out.push_str(&emit(&parameters(spec, arch), 0)?);
    out.push('\n');
    out.push_str(&emit(&conditions(), 0)?);
    out.push('\n');
    out.push_str(&emit(&globals(&dests, arch), 0)?);
    out.push_str("\nResources:");
    out.push_str(&doc.resources);
    out.push('\n');
    out.push_str(&emit(&outputs(&dests, has_warehouse_bucket), 0)?);
    Ok(out)
}

fn header(spec: &ActivationSpec, label: &str, dests: &[Dest<'_>], batch: &[(&str, u32)]) -> String {
    let names: Vec<&str> = dests.iter().map(|d| d.name).collect();
    let schedules: Vec<String> = batch
        .iter()
        .map(|(e, m)| format!("{e} {}", rate_expression(*m)))
        .collect();
    let mut h = String::new();
    h.push_str(&format!(
        "# GENERATED by `dataout template --config {label}`; do not edit.\n\
         # Change the spec (or cli/src/template/) and render again. A test\n\
         # compares this file with the rendering of config/exports.example.yaml.\n\
         #\n\
         # Destinations: {}\n\
         # Batch schedules: {}\n\
         # Exports: {}\n",
        names.join(", "),
        if schedules.is_empty() {
            "none".to_string()
        } else {
            schedules.join(", ")
        },
        spec.exports.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    h.push_str(
        "AWSTemplateFormatVersion: \"2010-09-09\"\n\
         Transform: AWS::Serverless-2016-10-31\n\
         Description: >-\n  \
           Customer.io Data Out: webhook intake, scheduled batch exports, one delivery\n  \
           function per destination queue, and a daily reconciliation. Build and deploy\n  \
           with scripts/package <spec> and `sam deploy --guided`.\n\n",
    );
    h
}

fn warehouse_bucket(doc: &mut Doc) -> Result<(), TemplateError> {
    doc.add(
        "WarehouseBucket",
        "warehouse bucket",
        m([
            ("Type", s("AWS::S3::Bucket")),
            ("DeletionPolicy", s("Retain")),
            ("UpdateReplacePolicy", s("Retain")),
            (
                "Properties",
                m([
                    (
                        "BucketEncryption",
                        m([(
                            "ServerSideEncryptionConfiguration",
                            l([m([(
                                "ServerSideEncryptionByDefault",
                                m([("SSEAlgorithm", s("AES256"))]),
                            )])]),
                        )]),
                    ),
                    (
                        "PublicAccessBlockConfiguration",
                        m([
                            ("BlockPublicAcls", b(true)),
                            ("BlockPublicPolicy", b(true)),
                            ("IgnorePublicAcls", b(true)),
                            ("RestrictPublicBuckets", b(true)),
                        ]),
                    ),
                    (
                        "OwnershipControls",
                        m([(
                            "Rules",
                            l([m([("ObjectOwnership", s("BucketOwnerEnforced"))])]),
                        )]),
                    ),
                    ("VersioningConfiguration", m([("Status", s("Enabled"))])),
                ]),
            ),
        ]),
    )?;
    doc.add(
        "WarehouseBucketPolicy",
        "warehouse bucket policy",
        m([
            ("Type", s("AWS::S3::BucketPolicy")),
            (
                "Properties",
                m([
                    ("Bucket", r#ref("WarehouseBucket")),
                    (
                        "PolicyDocument",
                        m([
                            ("Version", s("2012-10-17")),
                            (
                                "Statement",
                                l([m([
                                    ("Sid", s("DenyInsecureTransport")),
                                    ("Effect", s("Deny")),
                                    ("Principal", s("*")),
                                    ("Action", s("s3:*")),
                                    (
                                        "Resource",
                                        l([
                                            att("WarehouseBucket", "Arn"),
                                            sub("${WarehouseBucket.Arn}/*"),
                                        ]),
                                    ),
                                    (
                                        "Condition",
                                        m([("Bool", m([("aws:SecureTransport", s("false"))]))]),
                                    ),
                                ])]),
                            ),
                        ]),
                    ),
                ]),
            ),
        ]),
    )
}

fn with_role_and_logs(
    doc: &mut Doc,
    function_id: &str,
    role_description: &str,
    statements: Vec<Y>,
) -> Result<(String, String), TemplateError> {
    let logs = format!("{function_id}Logs");
    let role = format!("{function_id}Role");
    doc.add(&logs, function_id, log_group())?;
    let mut all = iam::common(&logs);
    all.extend(statements);
    doc.add(&role, function_id, iam::role(role_description, all))?;
    Ok((role, logs))
}

fn outputs(dests: &[Dest<'_>], has_warehouse_bucket: bool) -> Y {
    let mut o: Vec<(String, Y)> = vec![
        (
            "IntakeUrl".into(),
            m([
                ("Description", s("Function URL of the webhook intake")),
                ("Value", att("WebhookIntakeUrl", "FunctionUrl")),
            ]),
        ),
        (
            "ReportingWebhookUrl".into(),
            m([
                (
                    "Description",
                    s("Paste into Customer.io's reporting webhook settings"),
                ),
                (
                    "Value",
                    sub("${WebhookIntakeUrl.FunctionUrl}webhooks/customerio"),
                ),
            ]),
        ),
        (
            "ActionsWebhookUrl".into(),
            m([
                (
                    "Description",
                    s("URL of Customer.io campaign webhook actions (header X-Dataout-Token)"),
                ),
                (
                    "Value",
                    sub("${WebhookIntakeUrl.FunctionUrl}webhooks/actions"),
                ),
            ]),
        ),
        (
            "StateTableName".into(),
            m([
                (
                    "Description",
                    s("DynamoDB state table (DATAOUT_TABLE for the CLI)"),
                ),
                ("Value", r#ref("StateTable")),
            ]),
        ),
    ];
    if has_warehouse_bucket {
        o.push((
            "WarehouseBucketName".into(),
            m([
                (
                    "Description",
                    s("Set the spec's warehouse location to s3://<this bucket>/<prefix>"),
                ),
                ("Value", r#ref("WarehouseBucket")),
            ]),
        ));
    }
    o.push((
        "QueueUrls".into(),
        m([
            (
                "Description",
                s("DATAOUT_QUEUES for the CLI (redrive, dead letters)"),
            ),
            ("Value", sub(queues_json(dests))),
        ]),
    ));
    for d in dests {
        o.push((
            format!("{}QueueUrl", d.id),
            m([("Value", r#ref(&d.queue()))]),
        ));
    }
    o.push((
        "DashboardName".into(),
        m([
            ("Description", s("CloudWatch dashboard of this stack")),
            ("Value", r#ref("Dashboard")),
        ]),
    ));
    m([("Outputs", m(o))])
}
