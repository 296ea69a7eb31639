//! The stack's CloudWatch alarms: per destination (backlog, dead letters,
//! rejection rate, latency, Meta's quota), per export (drift), and the
//! metric filters and EMF metrics they read.

use super::*;

pub(super) fn alarm_actions() -> Y {
    iff("HasAlarmEmail", l([r#ref("AlarmTopic")]), no_value())
}

/// A one-metric alarm: above `threshold` for `periods` periods.
pub(super) fn simple_alarm(
    description: Y,
    namespace: Y,
    metric: &str,
    dimensions: Y,
    statistic: &str,
    period: i64,
    periods: i64,
) -> Y {
    let mut props = vec![
        ("AlarmDescription", description),
        ("Namespace", namespace),
        ("MetricName", s(metric)),
        ("Dimensions", dimensions),
        ("Statistic", s(statistic)),
        ("Period", n(period)),
        ("EvaluationPeriods", n(periods)),
    ];
    if periods > 1 {
        props.push(("DatapointsToAlarm", n(periods)));
    }
    props.extend([
        ("Threshold", n(0)),
        ("ComparisonOperator", s("GreaterThanThreshold")),
        ("TreatMissingData", s("notBreaching")),
        ("AlarmActions", alarm_actions()),
    ]);
    m([
        ("Type", s("AWS::CloudWatch::Alarm")),
        ("Properties", m(props)),
    ])
}

pub(super) fn dims(pairs: &[(&str, Y)]) -> Y {
    l(pairs
        .iter()
        .map(|(k, v)| m([("Name", s(*k)), ("Value", v.clone())])))
}

pub(super) fn namespace() -> Y {
    sub("DataOut/${AWS::StackName}")
}

pub(super) fn emf_metric(
    id: &str,
    metric: &str,
    dimensions: Y,
    stat: &str,
    period: i64,
    ret: bool,
) -> Y {
    m([
        ("Id", s(id)),
        (
            "MetricStat",
            m([
                (
                    "Metric",
                    m([
                        ("Namespace", namespace()),
                        ("MetricName", s(metric)),
                        ("Dimensions", dimensions),
                    ]),
                ),
                ("Period", n(period)),
                ("Stat", s(stat)),
            ]),
        ),
        ("ReturnData", b(ret)),
    ])
}

/// Meta destinations: one alarm per audience the spec sends to, on the
/// deliver function's `AudiencePaused` metric (Meta flagged the audience:
/// every upload is refused until a person resolves it in Ads Manager), and
/// one on `ApiVersionDeprecated` (error 2635). Conversions API
/// destinations (pixels, no audiences) get the version alarm only.
pub(super) fn meta_alarms(
    doc: &mut Doc,
    spec: &ActivationSpec,
    dests: &[Dest<'_>],
) -> Result<(), TemplateError> {
    for d in dests.iter().filter(|d| {
        matches!(
            d.spec.kind,
            DestinationKind::MetaAudience | DestinationKind::MetaConversions
        )
    }) {
        let audiences: BTreeSet<&str> = spec
            .exports
            .values()
            .filter(|_| d.spec.kind == DestinationKind::MetaAudience)
            .filter_map(|e| e.binding(d.name))
            .flat_map(|b| {
                std::iter::once(b.audience.as_str())
                    .chain(b.tier_audiences.values().map(String::as_str))
            })
            .collect();
        for audience in audiences {
            let id_part: String = audience
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            doc.add(
                &format!("{}Audience{id_part}PausedAlarm", d.id),
                d.name,
                simple_alarm(
                    sub(format!(
                        "Meta flagged audience {audience} ({name}): uploads to it are refused (error 100, subcode 1713230) and its ops are rejected, not retried. Resolve it in Ads Manager, then re-sync: `dataout reconcile show --stack ${{AWS::StackName}}` shows the drift",
                        name = d.name
                    )),
                    namespace(),
                    "AudiencePaused",
                    dims(&[
                        ("service", s("deliver")),
                        ("destination", s(d.name)),
                        ("audience", s(audience)),
                    ]),
                    "Maximum",
                    300,
                    1,
                ),
            )?;
        }
        doc.add(
            &format!("{}ApiVersionAlarm", d.id),
            d.name,
            simple_alarm(
                s(format!(
                    "Meta refuses the Graph API version of {} (error 2635): set its api_version to a supported version in the spec, check it with `dataout validate <spec>`, render with `dataout template --config <spec>` and redeploy",
                    d.name
                )),
                namespace(),
                "ApiVersionDeprecated",
                dims(&[("service", s("deliver")), ("destination", s(d.name))]),
                "Maximum",
                300,
                1,
            ),
        )?;
    }
    Ok(())
}

pub(super) fn alarms(
    doc: &mut Doc,
    spec: &ActivationSpec,
    dests: &[Dest<'_>],
    has_batch: bool,
) -> Result<(), TemplateError> {
    doc.add(
        "AlarmTopic",
        "alarm topic",
        m([
            ("Type", s("AWS::SNS::Topic")),
            ("Condition", s("HasAlarmEmail")),
            (
                "Properties",
                m([
                    ("KmsMasterKeyId", s("alias/aws/sns")),
                    (
                        "Subscription",
                        l([m([
                            ("Endpoint", r#ref("AlarmEmail")),
                            ("Protocol", s("email")),
                        ])]),
                    ),
                ]),
            ),
        ]),
    )?;

    doc.comment(
        "Per destination: dead letters; the deliver function failing whole\n\
         batches for 15 minutes (an outage or rate limit); and the share of ops\n\
         the destination rejects (deliver's EMF Accepted / Rejected).",
    );
    for d in dests {
        doc.add(
            &format!("{}DLQAlarm", d.id),
            d.name,
            simple_alarm(
                sub(format!(
                    "{name} jobs are dead-lettered: inspect with `dataout dlq list {name} --stack ${{AWS::StackName}}`, fix the cause, then `dataout dlq redrive {name} --stack ${{AWS::StackName}}`",
                    name = d.name
                )),
                s("AWS/SQS"),
                "ApproximateNumberOfMessagesVisible",
                dims(&[("QueueName", att(&d.dlq(), "QueueName"))]),
                "Maximum",
                300,
                1,
            ),
        )?;
        doc.add(
            &format!("{}ErrorsAlarm", d.function()),
            d.name,
            simple_alarm(
                sub(format!(
                    "{name} delivery failing for 15 minutes (see the function's logs; failed jobs retry, then dead-letter): `dataout dlq list {name} --stack ${{AWS::StackName}}` shows what waits and what is dead",
                    name = d.name
                )),
                s("AWS/Lambda"),
                "Errors",
                dims(&[("FunctionName", r#ref(&d.function()))]),
                "Sum",
                300,
                3,
            ),
        )?;
        let deliver_dims = || dims(&[("service", s("deliver")), ("destination", s(d.name))]);
        doc.add(
            &format!("{}RejectRateAlarm", d.id),
            d.name,
            m([
                ("Type", s("AWS::CloudWatch::Alarm")),
                (
                    "Properties",
                    m([
                        (
                            "AlarmDescription",
                            sub(format!(
                                "{} rejects more than RejectRatePercent of the ops sent in an hour: `dataout reconcile show --stack ${{AWS::StackName}}` and the deliver logs name the reasons",
                                d.name
                            )),
                        ),
                        (
                            "Metrics",
                            l([
                                emf_metric("accepted", "Accepted", deliver_dims(), "Sum", 3600, false),
                                emf_metric("rejected", "Rejected", deliver_dims(), "Sum", 3600, false),
                                m([
                                    ("Id", s("rate")),
                                    ("Label", s("reject rate %")),
                                    (
                                        "Expression",
                                        s(format!(
                                            "IF(accepted + rejected >= {REJECT_RATE_MIN_OPS}, 100 * rejected / (accepted + rejected), 0)"
                                        )),
                                    ),
                                    ("ReturnData", b(true)),
                                ]),
                            ]),
                        ),
                        ("EvaluationPeriods", n(1)),
                        ("Threshold", r#ref("RejectRatePercent")),
                        ("ComparisonOperator", s("GreaterThanThreshold")),
                        ("TreatMissingData", s("notBreaching")),
                        ("AlarmActions", alarm_actions()),
                    ]),
                ),
            ]),
        )?;
    }

    meta_alarms(doc, spec, dests)?;

    let with_slo: Vec<(&String, i64)> = spec
        .exports
        .keys()
        .filter_map(|e| spec.latency_slo_ms(e).map(|ms| (e, ms)))
        .collect();
    if !with_slo.is_empty() {
        doc.comment(
            "Per export with a latency_slo: p95 latency (source event to destination\n\
             acknowledgement, reconcile's daily LatencyP95 per destination) above\n\
             the objective, for any of the export's destinations.",
        );
    }
    for (export, ms) in with_slo {
        let Some(e) = spec.export(export) else {
            continue;
        };
        let latency = |i: usize, dest: &str, ret: bool| {
            emf_metric(
                &format!("m{i}"),
                "LatencyP95",
                dims(&[
                    ("service", s("reconcile")),
                    ("export", s(export.as_str())),
                    ("destination", s(dest)),
                ]),
                "Maximum",
                86_400,
                ret,
            )
        };
        let metrics = if e.destinations.len() == 1 {
            vec![latency(0, &e.destinations[0].destination, true)]
        } else {
            let mut v: Vec<Y> = e
                .destinations
                .iter()
                .enumerate()
                .map(|(i, bnd)| latency(i, &bnd.destination, false))
                .collect();
            let ids: Vec<String> = (0..e.destinations.len()).map(|i| format!("m{i}")).collect();
            v.push(m([
                ("Id", s("p95")),
                ("Label", s("worst destination p95 (ms)")),
                ("Expression", s(format!("MAX([{}])", ids.join(", ")))),
                ("ReturnData", b(true)),
            ]));
            v
        };
        doc.add(
            &format!("{}LatencyObjectiveAlarm", pascal(export)),
            export,
            m([
                ("Type", s("AWS::CloudWatch::Alarm")),
                (
                    "Properties",
                    m([
                        (
                            "AlarmDescription",
                            sub(format!(
                                "p95 latency of export {export} is above its latency_slo ({ms} ms): `dataout reconcile show --stack ${{AWS::StackName}}` has it per destination"
                            )),
                        ),
                        ("Metrics", l(metrics)),
                        ("EvaluationPeriods", n(1)),
                        ("Threshold", n(ms)),
                        ("ComparisonOperator", s("GreaterThanThreshold")),
                        ("TreatMissingData", s("notBreaching")),
                        ("AlarmActions", alarm_actions()),
                    ]),
                ),
            ]),
        )?;
    }

    if has_batch {
        doc.comment("Batch exports: ticks that fail, schedules that cannot invoke, held runs.");
        doc.add(
            "SchedulerDLQAlarm",
            "scheduler DLQ alarm",
            simple_alarm(
                sub("EventBridge Scheduler could not invoke the batch export (messages in SchedulerDLQ): `dataout runs list <export> --stack ${AWS::StackName}` shows the last run of each export; the next tick runs again"),
                s("AWS/SQS"),
                "ApproximateNumberOfMessagesVisible",
                dims(&[("QueueName", att("SchedulerDLQ", "QueueName"))]),
                "Maximum",
                300,
                1,
            ),
        )?;
        doc.add(
            "BatchExportErrorsAlarm",
            "batch export errors alarm",
            simple_alarm(
                sub("A batch export tick failed (see the function's logs; the next tick continues the checkpointed run): `dataout runs list <export> --stack ${AWS::StackName}` shows where it stopped"),
                s("AWS/Lambda"),
                "Errors",
                dims(&[("FunctionName", r#ref("BatchExport"))]),
                "Sum",
                900,
                1,
            ),
        )?;
        doc.add(
            "HeldRunsAlarm",
            "held runs alarm",
            simple_alarm(
                sub("A batch run is held by a guard rail: `dataout runs list <export> --stack ${AWS::StackName}`, then `dataout runs approve <run_id> --stack ${AWS::StackName}`"),
                namespace(),
                "RunsHeld",
                dims(&[("service", s("batch-export"))]),
                "Sum",
                900,
                1,
            ),
        )?;
    }
    doc.comment("Reconciliation: drift or a low match rate (period one day, so the\nalarm holds until the next report), and failed runs.");
    doc.add(
        "ReconcileDriftAlarm",
        "drift alarm",
        simple_alarm(
            sub("Reconciliation found drift or a low match rate: `dataout reconcile show --stack ${AWS::StackName}`"),
            namespace(),
            "RowsInAlarm",
            dims(&[("service", s("reconcile"))]),
            "Maximum",
            86_400,
            1,
        ),
    )?;
    doc.add(
        "ReconcileErrorsAlarm",
        "reconcile errors alarm",
        simple_alarm(
            sub("The daily reconciliation failed (see the function's logs): `dataout reconcile show --stack ${AWS::StackName}` shows the last report stored"),
            s("AWS/Lambda"),
            "Errors",
            dims(&[("FunctionName", r#ref("Reconcile"))]),
            "Sum",
            86_400,
            1,
        ),
    )
}
