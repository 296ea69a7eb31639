//! One IAM role per function, written out statement by statement.
//!
//! The functions name their role (`Role:`), so SAM generates none and adds
//! no managed policy: with a generated role an SQS event source would bring
//! `AWSLambdaSQSQueueExecutionRole` (SQS and CloudWatch Logs actions on
//! Resource `*`), `Tracing: Active` would bring `AWSXrayWriteOnlyAccess`, and
//! every function would get `AWSLambdaBasicExecutionRole` (logs on `*`). Each
//! statement below is an action the code calls, on the one resource it calls
//! it on. X-Ray is the one `*`: its actions have no resource-level scope.

use super::yaml::{att, iff, l, ls, m, r#ref, s, sub, sub_with, Y};

/// DynamoDB calls of the state adapters (`adapters/dynamodb.rs`, the App
/// API budget in `adapters/dynamodb/budget.rs`): no Scan, no table reads of
/// other tables, no DescribeTable.
pub const STATE_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchWriteItem",
];

/// What the Lambda service needs to run an SQS event source mapping, plus
/// what the deliver code does on its own queue (a later retry is a
/// visibility change; a follow-up job is a send).
pub const CONSUMER_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
    "sqs:SendMessage",
];

fn statement(sid: &str, actions: &[&str], resource: Y) -> Y {
    m([
        ("Sid", s(sid)),
        ("Effect", s("Allow")),
        ("Action", ls(actions.iter().copied())),
        ("Resource", resource),
    ])
}

/// Statements every function has: its own log group, X-Ray, the state
/// table, the secret, and the activation spec object.
pub fn common(log_group: &str) -> Vec<Y> {
    vec![
        statement(
            "OwnLogGroup",
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            att(log_group, "Arn"),
        ),
        statement(
            "XRayTraces",
            &["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            s("*"),
        ),
        statement("StateTable", STATE_ACTIONS, att("StateTable", "Arn")),
        statement(
            "ReadSecrets",
            &["secretsmanager:GetSecretValue"],
            iff(
                "SecretsIdIsArn",
                r#ref("SecretsId"),
                sub("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretsId}-??????"),
            ),
        ),
        statement(
            "ReadActivationSpec",
            &["s3:GetObject"],
            sub_with(
                "arn:${AWS::Partition}:s3:::${SpecObject}",
                [(
                    "SpecObject",
                    m([(
                        "Fn::Select",
                        l([
                            super::yaml::n(1),
                            m([("Fn::Split", l([s("s3://"), r#ref("ConfigS3Uri")]))]),
                        ]),
                    )]),
                )],
            ),
        ),
    ]
}

/// Send to every destination queue (intake and batch export enqueue jobs).
pub fn send_to_queues(queue_ids: &[String]) -> Y {
    statement(
        "EnqueueJobs",
        &["sqs:SendMessage"],
        l(queue_ids.iter().map(|q| att(q, "Arn"))),
    )
}

/// Consume one destination queue.
pub fn consume(queue_id: &str) -> Y {
    statement("ConsumeOwnQueue", CONSUMER_ACTIONS, att(queue_id, "Arn"))
}

/// Write warehouse files under one object prefix (an ARN or `Fn::Sub`).
pub fn write_objects(resource: Y) -> Y {
    statement("WriteWarehouseFiles", &["s3:PutObject"], resource)
}

/// Write the reconciliation report and its HTML page (an ARN or `Fn::Sub`).
pub fn write_reports(resource: Y) -> Y {
    statement("WriteReports", &["s3:PutObject"], resource)
}

/// Read queue depths (the report's dead-letter column).
pub fn read_queue_depth(resource: Y) -> Y {
    statement("ReadQueueDepth", &["sqs:GetQueueAttributes"], resource)
}

/// The role resource.
pub fn role(description: &str, statements: Vec<Y>) -> Y {
    m([
        ("Type", s("AWS::IAM::Role")),
        (
            "Properties",
            m([
                ("Description", s(description)),
                (
                    "AssumeRolePolicyDocument",
                    m([
                        ("Version", s("2012-10-17")),
                        (
                            "Statement",
                            l([m([
                                ("Effect", s("Allow")),
                                ("Principal", m([("Service", s("lambda.amazonaws.com"))])),
                                ("Action", s("sts:AssumeRole")),
                            ])]),
                        ),
                    ]),
                ),
                (
                    "Policies",
                    l([m([
                        ("PolicyName", s("least-privilege")),
                        (
                            "PolicyDocument",
                            m([("Version", s("2012-10-17")), ("Statement", l(statements))]),
                        ),
                    ])]),
                ),
            ]),
        ),
    ])
}
