//! Where the operator commands act: a local state directory (`dataout
//! serve`'s redb files) or a deployed stack (its DynamoDB table, SQS queues
//! and the activation spec in S3).
//!
//! A stack is named with `--stack <name>` (CloudFormation DescribeStacks:
//! outputs `StateTableName`, `QueueUrls` (or `DataoutQueues`),
//! `WarehouseBucketName`, and the spec location from the `ConfigS3Uri`
//! output or parameter), or given piece by piece with `--table`, `--queues`
//! and `--config` (the functions' own `DATAOUT_TABLE`, `DATAOUT_QUEUES`,
//! `DATAOUT_CONFIG`); explicit values win over the stack's. The AWS SDK
//! reads region and credentials as usual; `--endpoint-url` (or the SDK's
//! own `AWS_ENDPOINT_URL`) points it elsewhere, e.g. at moto.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use aws_config::{BehaviorVersion, Region};
use clap::Args;

use dataout::adapters::sqs::QueueUrls;
use dataout::aws::parse_queues;

/// Output names of the stack, in the order they are looked for.
pub const TABLE_OUTPUTS: &[&str] = &["StateTableName"];
pub const QUEUES_OUTPUTS: &[&str] = &["QueueUrls", "DataoutQueues"];
pub const BUCKET_OUTPUTS: &[&str] = &["WarehouseBucketName"];
pub const CONFIG_KEYS: &[&str] = &["ConfigS3Uri", "ConfigLocation"];

/// The target options every operator command takes.
#[derive(Args, Clone, Debug, Default)]
pub struct TargetArgs {
    /// Local state directory (of `dataout serve`), used when no stack,
    /// table or queues are given.
    #[arg(long, global = true, default_value = ".state/serve")]
    pub state_dir: PathBuf,
    /// Deployed CloudFormation stack: table, queues and spec from its
    /// outputs and parameters.
    #[arg(long, global = true, env = "DATAOUT_STACK")]
    pub stack: Option<String>,
    /// DynamoDB state table (overrides the stack's).
    #[arg(long, global = true, env = "DATAOUT_TABLE")]
    pub table: Option<String>,
    /// JSON `{"<destination>": {"queue_url": …, "dlq_url": …}}` (overrides
    /// the stack's).
    #[arg(long, global = true, env = "DATAOUT_QUEUES")]
    pub queues: Option<String>,
    /// The activation spec: a file, or `s3://bucket/key` on AWS (default:
    /// the stack's `ConfigS3Uri`).
    #[arg(long, global = true, env = "DATAOUT_CONFIG")]
    pub config: Option<String>,
    /// AWS endpoint (moto, LocalStack); default: the SDK's own.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// AWS region; default: the SDK's own (AWS_REGION, profile).
    #[arg(long, global = true)]
    pub region: Option<String>,
}

impl TargetArgs {
    /// Whether the command goes to AWS rather than the local state dir.
    pub fn is_aws(&self) -> bool {
        self.stack.is_some() || self.table.is_some() || self.queues.is_some()
    }
}

/// A deployed stack, resolved.
#[derive(Clone, Debug)]
pub struct AwsTarget {
    pub table: String,
    pub queues: BTreeMap<String, QueueUrls>,
    pub bucket: Option<String>,
    pub config: Option<String>,
    pub sdk: aws_config::SdkConfig,
}

/// What a stack's outputs and parameters say, before explicit overrides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackValues {
    pub table: Option<String>,
    pub queues: Option<String>,
    pub bucket: Option<String>,
    pub config: Option<String>,
}

fn first(map: &BTreeMap<String, String>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| map.get(*k))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Map a stack's outputs (and parameters, for the spec location) to the
/// values the commands need.
pub fn values_from_stack(
    outputs: &BTreeMap<String, String>,
    parameters: &BTreeMap<String, String>,
) -> StackValues {
    StackValues {
        table: first(outputs, TABLE_OUTPUTS),
        queues: first(outputs, QUEUES_OUTPUTS),
        bucket: first(outputs, BUCKET_OUTPUTS),
        config: first(outputs, CONFIG_KEYS).or_else(|| first(parameters, CONFIG_KEYS)),
    }
}

/// What a command needs of the stack: table, queues per destination,
/// warehouse bucket and spec location.
pub type Resolved = (
    String,
    BTreeMap<String, QueueUrls>,
    Option<String>,
    Option<String>,
);

/// Explicit values over the stack's; the table and queues are required.
pub fn merge(args: &TargetArgs, stack: StackValues) -> anyhow::Result<Resolved> {
    let from = args
        .stack
        .as_deref()
        .map(|s| format!("stack `{s}`"))
        .unwrap_or_else(|| "the flags".into());
    let Some(table) = args.table.clone().or(stack.table) else {
        bail!("no state table: {from} has no StateTableName output; pass --table");
    };
    let Some(queues_json) = args.queues.clone().or(stack.queues) else {
        bail!("no queues: {from} has no QueueUrls output; pass --queues '{{\"<destination>\": {{\"queue_url\": …, \"dlq_url\": …}}}}'");
    };
    let queues = parse_queues(&queues_json).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((
        table,
        queues,
        stack.bucket,
        args.config.clone().or(stack.config),
    ))
}

async fn sdk(args: &TargetArgs) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    }
    loader.load().await
}

/// Read a stack's outputs and parameters.
pub async fn describe_stack(
    sdk: &aws_config::SdkConfig,
    name: &str,
) -> anyhow::Result<StackValues> {
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let out = cfn
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(e)))
        .with_context(|| format!("describing stack `{name}`"))?;
    let Some(stack) = out.stacks().first() else {
        bail!("no stack `{name}`");
    };
    let outputs: BTreeMap<String, String> = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    let parameters: BTreeMap<String, String> = stack
        .parameters()
        .iter()
        .filter_map(|p| {
            Some((
                p.parameter_key()?.to_string(),
                p.parameter_value()?.to_string(),
            ))
        })
        .collect();
    Ok(values_from_stack(&outputs, &parameters))
}

/// Resolve the AWS target from the stack and the explicit flags.
pub async fn resolve(args: &TargetArgs) -> anyhow::Result<AwsTarget> {
    let sdk = sdk(args).await;
    let stack = match &args.stack {
        Some(name) => describe_stack(&sdk, name).await?,
        None => StackValues::default(),
    };
    let (table, queues, bucket, config) = merge(args, stack)?;
    Ok(AwsTarget {
        table,
        queues,
        bucket,
        config,
        sdk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const QUEUES: &str =
        r#"{"meta":{"queue_url":"https://q/meta","dlq_url":"https://q/meta-dlq"}}"#;

    #[test]
    fn stack_outputs_and_parameters_map_to_table_queues_bucket_and_spec() {
        let v = values_from_stack(
            &map(&[
                ("StateTableName", "dataout-state"),
                ("QueueUrls", QUEUES),
                ("WarehouseBucketName", "wh-bucket"),
                ("IntakeUrl", "https://x"),
            ]),
            &map(&[("ConfigS3Uri", "s3://cfg/exports.yaml")]),
        );
        assert_eq!(v.table.as_deref(), Some("dataout-state"));
        assert_eq!(v.queues.as_deref(), Some(QUEUES));
        assert_eq!(v.bucket.as_deref(), Some("wh-bucket"));
        assert_eq!(v.config.as_deref(), Some("s3://cfg/exports.yaml"));
        let (table, queues, _, config) = merge(&TargetArgs::default(), v).unwrap();
        assert_eq!(table, "dataout-state");
        assert_eq!(queues["meta"].dlq_url, "https://q/meta-dlq");
        assert_eq!(config.as_deref(), Some("s3://cfg/exports.yaml"));
    }

    #[test]
    fn explicit_flags_win_over_the_stack() {
        let args = TargetArgs {
            table: Some("other-table".into()),
            config: Some("./exports.yaml".into()),
            ..TargetArgs::default()
        };
        let v = values_from_stack(
            &map(&[
                ("StateTableName", "dataout-state"),
                ("DataoutQueues", QUEUES),
            ]),
            &map(&[]),
        );
        let (table, queues, bucket, config) = merge(&args, v).unwrap();
        assert_eq!(table, "other-table");
        assert!(queues.contains_key("meta"));
        assert_eq!(bucket, None);
        assert_eq!(config.as_deref(), Some("./exports.yaml"));
    }

    #[test]
    fn a_stack_without_the_outputs_names_what_is_missing() {
        let args = TargetArgs {
            stack: Some("mystack".into()),
            ..TargetArgs::default()
        };
        let e = merge(&args, StackValues::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("StateTableName") && e.contains("mystack"), "{e}");
        let e = merge(
            &args,
            StackValues {
                table: Some("t".into()),
                ..StackValues::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("QueueUrls"), "{e}");
        let e = merge(
            &args,
            StackValues {
                table: Some("t".into()),
                queues: Some("[".into()),
                ..StackValues::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("DATAOUT_QUEUES"), "{e}");
    }

    #[test]
    fn aws_mode_is_chosen_by_stack_table_or_queues() {
        assert!(!TargetArgs::default().is_aws());
        for args in [
            TargetArgs {
                stack: Some("s".into()),
                ..TargetArgs::default()
            },
            TargetArgs {
                table: Some("t".into()),
                ..TargetArgs::default()
            },
            TargetArgs {
                queues: Some("{}".into()),
                ..TargetArgs::default()
            },
        ] {
            assert!(args.is_aws());
        }
    }
}
