//! The template's deploy parameters, conditions and function globals.

use super::*;

pub(super) fn parameters(spec: &ActivationSpec, arch: Arch) -> Y {
    m([(
        "Parameters",
        m([
            (
                "ConfigS3Uri",
                m([
                    ("Type", s("String")),
                    ("Description", s("Where the activation spec lives, s3://bucket/key (upload it before the first deploy; it must be the spec this template was rendered from). The functions may read this one object only.")),
                    ("AllowedPattern", s("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$")),
                    ("ConstraintDescription", s("must be s3://<bucket>/<key>")),
                ]),
            ),
            (
                "SecretsId",
                m([
                    ("Type", s("String")),
                    ("Description", s(format!(
                        "Secrets Manager secret (name or full ARN) holding a JSON object of the keys the spec names: {}. Read through the Parameters and Secrets Lambda Extension; the functions may read this secret only.",
                        secret_names(spec).join(", ")
                    ))),
                    ("MinLength", n(1)),
                    // A name or an ARN, never a wildcard: the functions'
                    // ReadSecrets grant is built from this value.
                    ("AllowedPattern", s("^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:)?[A-Za-z0-9/_+=.@-]+$")),
                    ("ConstraintDescription", s("must be a secret name (letters, digits, /_+=.@-) or its full ARN; no wildcards")),
                ]),
            ),
            (
                "SecretsExtensionLayerArn",
                m([
                    ("Type", s("String")),
                    ("Description", s(format!("ARN of the AWS Parameters and Secrets Lambda Extension layer for {} in the deploy region, e.g. in us-east-1 arn:aws:lambda:us-east-1:177933569100:layer:AWS-Parameters-and-Secrets-Lambda-Extension{}:<version> (the Secrets Manager user guide lists the ARN per region).", arch.lambda_name(), arch.layer_suffix()))),
                    ("AllowedPattern", s("^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]+:[0-9]+$")),
                ]),
            ),
            (
                "CustomerIoRegion",
                m([
                    ("Type", s("String")),
                    ("Description", s("Data centre of the Customer.io workspace (App API host).")),
                    ("AllowedValues", ls(["us", "eu"])),
                    ("Default", s("us")),
                ]),
            ),
            (
                "RejectRatePercent",
                m([
                    ("Type", s("Number")),
                    ("Description", s(format!(
                        "Alarm when a destination rejects more than this share of the ops sent to it in an hour (judged from {REJECT_RATE_MIN_OPS} ops an hour up)."
                    ))),
                    ("MinValue", n(0)),
                    ("MaxValue", n(100)),
                    ("Default", n(5)),
                ]),
            ),
            (
                "AlarmEmail",
                m([
                    ("Type", s("String")),
                    ("Description", s("Optional e-mail address subscribed to every alarm (empty for none).")),
                    ("Default", s("")),
                ]),
            ),
        ]),
    )])
}

pub(super) fn conditions() -> Y {
    m([(
        "Conditions",
        m([
            (
                "HasAlarmEmail",
                m([(
                    "Fn::Not",
                    l([m([("Fn::Equals", l([r#ref("AlarmEmail"), s("")]))])]),
                )]),
            ),
            (
                "SecretsIdIsArn",
                m([(
                    "Fn::Equals",
                    l([
                        m([(
                            "Fn::Select",
                            l([n(0), m([("Fn::Split", l([s(":"), r#ref("SecretsId")]))])]),
                        )]),
                        s("arn"),
                    ]),
                )]),
            ),
        ]),
    )])
}

/// `DATAOUT_QUEUES`: destination -> queue and DLQ URLs (for `Fn::Sub`).
pub(super) fn queues_json(dests: &[Dest<'_>]) -> String {
    let entries: Vec<String> = dests
        .iter()
        .map(|d| {
            format!(
                "\"{}\":{{\"queue_url\":\"${{{}}}\",\"dlq_url\":\"${{{}}}\"}}",
                d.name,
                d.queue(),
                d.dlq()
            )
        })
        .collect();
    format!("{{{}}}", entries.join(","))
}

pub(super) fn globals(dests: &[Dest<'_>], arch: Arch) -> Y {
    m([(
        "Globals",
        m([(
            "Function",
            m([
                ("Runtime", s("provided.al2023")),
                ("Architectures", ls([arch.lambda_name()])),
                ("Handler", s("bootstrap")),
                ("MemorySize", n(256)),
                ("Timeout", n(60)),
                ("Tracing", s("Active")),
                (
                    "LoggingConfig",
                    m([
                        ("LogFormat", s("JSON")),
                        ("ApplicationLogLevel", s("INFO")),
                        ("SystemLogLevel", s("WARN")),
                    ]),
                ),
                ("Layers", l([r#ref("SecretsExtensionLayerArn")])),
                (
                    "Environment",
                    m([(
                        "Variables",
                        m([
                            ("DATAOUT_TABLE", r#ref("StateTable")),
                            ("DATAOUT_CONFIG", r#ref("ConfigS3Uri")),
                            ("DATAOUT_SECRETS_ID", r#ref("SecretsId")),
                            ("DATAOUT_METRICS_NAMESPACE", namespace()),
                            ("CIO_REGION", r#ref("CustomerIoRegion")),
                            ("DATAOUT_QUEUES", sub(queues_json(dests))),
                        ]),
                    )]),
                ),
            ]),
        )]),
    )])
}
