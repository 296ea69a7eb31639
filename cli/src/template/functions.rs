//! The functions' resources: intake, one batch export per schedule, one
//! deliver function per destination, and the daily reconcile.

use super::*;

pub(super) fn intake(doc: &mut Doc, queue_ids: &[String]) -> Result<(), TemplateError> {
    doc.comment(
        "Customer.io waits 4 s: the intake answers well before, heavy work is queued.\n\
         The URL is public (AuthType NONE); every request is verified in code\n\
         (HMAC signature for reporting webhooks, token for webhook actions).",
    );
    let (role, logs) = with_role_and_logs(
        doc,
        "WebhookIntake",
        "dataout webhook intake: state, enqueue to every destination queue",
        vec![iam::send_to_queues(queue_ids)],
    )?;
    doc.add(
        "WebhookIntake",
        "intake function",
        function(
            "webhook-intake",
            "functions/webhook-intake",
            "Customer.io webhooks in (verify, dedup, apply, enqueue)",
            &role,
            &logs,
            vec![
                ("Timeout", n(8)),
                (
                    "FunctionUrlConfig",
                    m([("AuthType", s("NONE")), ("InvokeMode", s("BUFFERED"))]),
                ),
            ],
        ),
    )?;
    doc.comment(
        "Since October 2025 a public Function URL needs lambda:InvokeFunction\n\
         too; the condition keeps it to calls made through the URL.",
    );
    doc.add(
        "WebhookIntakeUrlInvokePermission",
        "intake URL permission",
        m([
            ("Type", s("AWS::Lambda::Permission")),
            (
                "Properties",
                m([
                    ("Action", s("lambda:InvokeFunction")),
                    ("FunctionName", r#ref("WebhookIntake")),
                    ("Principal", s("*")),
                    ("InvokedViaFunctionUrl", b(true)),
                ]),
            ),
        ]),
    )
}

pub(super) fn batch_export(
    doc: &mut Doc,
    batch: &[(&str, u32)],
    queue_ids: &[String],
) -> Result<(), TemplateError> {
    // Two invocations of one export must never overlap: the timeout is at
    // most the shortest interval (and never over Lambda's 900 s).
    let shortest = batch
        .iter()
        .map(|(_, m)| i64::from(*m) * 60)
        .min()
        .unwrap_or(BATCH_TIMEOUT_SECS);
    let timeout = shortest.min(BATCH_TIMEOUT_SECS);
    let margin = (timeout / 10).clamp(5, 60);
    doc.comment(&format!(
        "One tick per batch export; a run that outlives an invocation checkpoints\n\
         and the next tick continues it. Timeout {timeout} s = the shortest interval\n\
         (at most 900 s), so two invocations of one export never overlap; async\n\
         retries are off for the same reason (the next tick is the retry)."
    ));
    let (role, logs) = with_role_and_logs(
        doc,
        "BatchExport",
        "dataout batch export: state, enqueue to every destination queue",
        vec![iam::send_to_queues(queue_ids)],
    )?;
    let mut events = Vec::new();
    for (export, minutes) in batch {
        let input = serde_json::json!({
            "export": export,
            "scheduled_time": "<aws.scheduler.scheduled-time>",
            "execution_id": "<aws.scheduler.execution-id>",
        });
        let event_id = pascal(export);
        doc.claim(&format!("BatchExport{event_id}"), export)?;
        events.push((
            event_id,
            m([
                ("Type", s("ScheduleV2")),
                (
                    "Properties",
                    m([
                        ("Description", s(format!("Batch export {export}"))),
                        ("ScheduleExpression", s(rate_expression(*minutes))),
                        ("Input", s(input.to_string())),
                        (
                            "RetryPolicy",
                            m([
                                ("MaximumRetryAttempts", n(3)),
                                ("MaximumEventAgeInSeconds", n(600)),
                            ]),
                        ),
                        ("DeadLetterConfig", m([("Arn", att("SchedulerDLQ", "Arn"))])),
                    ]),
                ),
            ]),
        ));
    }
    doc.add(
        "BatchExport",
        "batch export function",
        function(
            "batch-export",
            "functions/batch-export",
            "Scheduled batch export of one segment per invocation",
            &role,
            &logs,
            vec![
                ("Timeout", n(timeout)),
                ("MemorySize", n(512)),
                (
                    "Environment",
                    m([(
                        "Variables",
                        m([("DATAOUT_DEADLINE_MARGIN_SECS", s(margin.to_string()))]),
                    )]),
                ),
                (
                    "EventInvokeConfig",
                    m([
                        ("MaximumRetryAttempts", n(0)),
                        ("MaximumEventAgeInSeconds", n(900)),
                    ]),
                ),
                ("Events", m(events)),
            ],
        ),
    )
}

pub(super) fn deliver(doc: &mut Doc, d: &Dest<'_>) -> Result<(), TemplateError> {
    let fid = d.function();
    let mut extra = vec![iam::consume(&d.queue())];
    if let DestinationSettings::Warehouse { location } = &d.spec.settings {
        let objects = match dataout::aws::parse_s3_uri(location) {
            Some((bucket, prefix)) => {
                let prefix = prefix.trim_matches('/');
                let path = if prefix.is_empty() {
                    format!("{bucket}/*")
                } else {
                    format!("{bucket}/{prefix}/*")
                };
                sub(format!("arn:${{AWS::Partition}}:s3:::{path}"))
            }
            None => sub("${WarehouseBucket.Arn}/*"),
        };
        extra.push(iam::write_objects(objects));
    }
    let (role, logs) = with_role_and_logs(
        doc,
        &fid,
        &format!("dataout deliver {}: consume its queue", d.name),
        extra,
    )?;
    doc.add(
        &fid,
        d.name,
        function(
            "deliver",
            "functions/deliver",
            &format!("Deliver {} jobs to {}", d.name, describe_kind(d.spec.kind)),
            &role,
            &logs,
            vec![
                ("Timeout", n(DELIVER_TIMEOUT_SECS)),
                (
                    "Environment",
                    m([(
                        "Variables",
                        m([
                            ("DATAOUT_DESTINATION", s(d.name)),
                            (
                                "DATAOUT_MAX_RECEIVE_COUNT",
                                s(d.spec.max_attempts.to_string()),
                            ),
                        ]),
                    )]),
                ),
                (
                    "Events",
                    m([(
                        "Jobs",
                        m([
                            ("Type", s("SQS")),
                            (
                                "Properties",
                                m([
                                    ("Queue", att(&d.queue(), "Arn")),
                                    ("BatchSize", n(10)),
                                    (
                                        "MaximumBatchingWindowInSeconds",
                                        n(batching_window(d.spec.kind)),
                                    ),
                                    ("FunctionResponseTypes", ls(["ReportBatchItemFailures"])),
                                    (
                                        "ScalingConfig",
                                        m([(
                                            "MaximumConcurrency",
                                            n(i64::from(sqs_concurrency(d.spec))),
                                        )]),
                                    ),
                                ]),
                            ),
                        ]),
                    )]),
                ),
            ],
        ),
    )
}

/// Where reconcile writes its reports: the stack's warehouse bucket, else
/// the first warehouse destination's own S3 location; none without either.
/// (S3 URI, object ARN pattern.)
pub(super) fn report_location(dests: &[Dest<'_>], has_warehouse_bucket: bool) -> Option<(Y, Y)> {
    if has_warehouse_bucket {
        return Some((
            sub("s3://${WarehouseBucket}/reports"),
            sub("${WarehouseBucket.Arn}/reports/*"),
        ));
    }
    dests.iter().find_map(|d| match &d.spec.settings {
        DestinationSettings::Warehouse { location } => {
            let (bucket, prefix) = dataout::aws::parse_s3_uri(location)?;
            let prefix = prefix.trim_matches('/');
            let path = if prefix.is_empty() {
                format!("{bucket}/reports")
            } else {
                format!("{bucket}/{prefix}/reports")
            };
            Some((
                s(format!("s3://{path}")),
                sub(format!("arn:${{AWS::Partition}}:s3:::{path}/*")),
            ))
        }
        _ => None,
    })
}

pub(super) fn reconcile(
    doc: &mut Doc,
    dests: &[Dest<'_>],
    has_warehouse_bucket: bool,
) -> Result<(), TemplateError> {
    let reports = report_location(dests, has_warehouse_bucket);
    doc.comment(
        "Daily, after the night's batch runs: source, state and destination\n\
         counts, drift, match rate and latency per export x destination. The\n\
         report (JSON) and its HTML page go to the warehouse bucket, reports/.",
    );
    // The page shows each destination's dead-letter depth.
    let queue_arns = dests
        .iter()
        .flat_map(|d| [att(&d.queue(), "Arn"), att(&d.dlq(), "Arn")]);
    let (role, logs) = with_role_and_logs(
        doc,
        "Reconcile",
        "dataout reconcile: state, reports",
        reports
            .iter()
            .map(|(_, arn)| iam::write_reports(arn.clone()))
            .chain([iam::read_queue_depth(l(queue_arns))])
            .collect(),
    )?;
    let mut variables = vec![(
        "DATAOUT_DRIFT_ALARM",
        s(format!("{}", DRIFT_ALARM_PCT / 100.0)),
    )];
    if let Some((uri, _)) = reports {
        variables.push(("DATAOUT_REPORT_LOCATION", uri));
    }
    doc.add(
        "Reconcile",
        "reconcile function",
        function(
            "reconcile",
            "functions/reconcile",
            "Daily reconciliation of source, state and destination counts",
            &role,
            &logs,
            vec![
                ("Timeout", n(300)),
                ("Environment", m([("Variables", m(variables))])),
                (
                    "Events",
                    m([(
                        "Daily",
                        m([
                            ("Type", s("Schedule")),
                            (
                                "Properties",
                                m([
                                    ("Description", s("Daily reconciliation at 03:00 UTC")),
                                    ("Schedule", s("cron(0 3 * * ? *)")),
                                ]),
                            ),
                        ]),
                    )]),
                ),
            ],
        ),
    )
}
