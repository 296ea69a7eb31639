//! The stack as the template defines it, made real on moto: the rendered
//! template's resources (state table, queues and their DLQs) created, the
//! spec uploaded where `ConfigS3Uri` points, the secret in Secrets Manager,
//! and each function's environment read from the rendered template with its
//! intrinsics (`Ref`, `Fn::Sub`, `Fn::GetAtt`) resolved to those resources.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::SdkConfig;
use dataout::adapters::dynamodb::DynamoStateStore;
use dataout::adapters::sqs::SqsJobQueue;
use dataout::domain::config::parse_spec;
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{json, Value};

use super::moto;

/// One function of the rendered template.
#[derive(Clone, Debug)]
pub struct FunctionDef {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the Cargo binary SAM builds.
    pub binary: String,
    /// Globals' variables overlaid with the function's own, resolved.
    pub env: BTreeMap<String, String>,
}

/// What the test created for the template.
pub struct Stack {
    pub template: Value,
    pub functions: Vec<FunctionDef>,
    pub bucket: String,
    pub spec_key: String,
}

impl Stack {
    pub fn function(&self, logical_id: &str) -> Result<&FunctionDef> {
        self.functions
            .iter()
            .find(|f| f.logical_id == logical_id)
            .ok_or_else(|| anyhow!("the template has no function {logical_id}"))
    }

    /// The deliver function consuming `destination`'s queue.
    pub fn deliver_for(&self, destination: &str) -> Result<&FunctionDef> {
        self.functions
            .iter()
            .find(|f| {
                f.binary == "deliver"
                    && f.env.get("DATAOUT_DESTINATION").map(String::as_str) == Some(destination)
            })
            .ok_or_else(|| anyhow!("no deliver function has DATAOUT_DESTINATION={destination}"))
    }

    /// The queue URL a function's `DATAOUT_QUEUES` gives for `destination`.
    pub fn queue_of(&self, destination: &str) -> Result<String> {
        let f = self.function("WebhookIntake")?;
        let queues: Value =
            serde_json::from_str(f.env.get("DATAOUT_QUEUES").context("DATAOUT_QUEUES")?)?;
        queues[destination]["queue_url"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("DATAOUT_QUEUES has no {destination}"))
    }
}

/// YAML to JSON (the template is written with long-form intrinsics).
pub fn to_json(node: &Yaml<'_>) -> Value {
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
        Yaml::Tagged(_, inner) => to_json(inner),
        _ => Value::Null,
    }
}

/// Render the spec's stack as `dataout template` does and read it back.
pub fn render(spec_yaml: &str) -> Result<Value> {
    let spec = parse_spec(spec_yaml, "lambda-runtime.yaml").map_err(|e| anyhow!("{e}"))?;
    let text = dataout_cli::template::render(&spec, "lambda-runtime.yaml")?;
    let docs = Yaml::load_from_str(&text).map_err(|e| anyhow!("rendered template: {e}"))?;
    Ok(to_json(docs.first().context("an empty template")?))
}

/// Resolve one template value: a string, `Ref`, `Fn::GetAtt` or `Fn::Sub`.
fn resolve(v: &Value, refs: &BTreeMap<String, String>) -> Result<String> {
    let lookup = |name: &str| {
        refs.get(name).cloned().ok_or_else(|| {
            anyhow!("the template refers to {name}, which this test does not create")
        })
    };
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Object(o) if o.len() == 1 => {
            let (k, arg) = o.iter().next().context("one key")?;
            match (k.as_str(), arg) {
                ("Ref", Value::String(name)) => lookup(name),
                ("Fn::GetAtt", Value::Array(parts)) => {
                    let parts: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
                    lookup(&parts.join("."))
                }
                ("Fn::Sub", Value::String(text)) => {
                    let mut out = String::new();
                    let mut rest = text.as_str();
                    while let Some(start) = rest.find("${") {
                        out.push_str(&rest[..start]);
                        let end =
                            rest[start..].find('}').context("unclosed ${ in Fn::Sub")? + start;
                        out.push_str(&lookup(&rest[start + 2..end])?);
                        rest = &rest[end + 1..];
                    }
                    out.push_str(rest);
                    Ok(out)
                }
                _ => bail!("intrinsic {k} is not resolved by this test: {v}"),
            }
        }
        other => bail!("unexpected template value {other}"),
    }
}

/// Create everything the template's functions refer to and read their
/// environments. `secrets` is the JSON object stored as the secret;
/// `parameters` override the template's parameter defaults.
pub async fn create(
    sdk: &SdkConfig,
    endpoint: &str,
    spec_yaml: &str,
    bucket: &str,
    secrets: &Value,
    parameters: &[(&str, &str)],
) -> Result<Stack> {
    let template = render(spec_yaml)?;
    let resources = template["Resources"].as_object().context("Resources")?;
    let mut refs: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in [
        ("AWS::Partition", "aws"),
        ("AWS::Region", "us-east-1"),
        ("AWS::AccountId", "123456789012"),
        ("AWS::StackName", "dataout-e2e"),
    ] {
        refs.insert(k.into(), v.into());
    }
    for (name, p) in template["Parameters"].as_object().into_iter().flatten() {
        if let Some(d) = p.get("Default") {
            refs.insert(name.clone(), resolve(d, &refs)?);
        }
    }
    let run = super::unique("e2e");
    let spec_key = format!("{run}/exports.yaml");
    let secret_id = format!("dataout/{run}");
    refs.insert("ConfigS3Uri".into(), format!("s3://{bucket}/{spec_key}"));
    refs.insert("SecretsId".into(), secret_id.clone());
    for (k, v) in parameters {
        refs.insert(k.to_string(), v.to_string());
    }

    // The state table.
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    for (id, r) in resources {
        if r["Type"] == "AWS::DynamoDB::Table" {
            let table = super::unique(&id.to_lowercase());
            DynamoStateStore::create_table(&ddb, &table).await?;
            refs.insert(id.clone(), table.clone());
            refs.insert(
                format!("{id}.Arn"),
                format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}"),
            );
        }
    }
    // Each queue with a redrive policy, and its DLQ, with the template's
    // receive count.
    let sqs = aws_sdk_sqs::Client::new(sdk);
    for (id, r) in resources {
        let Some(redrive) = r["Properties"].get("RedrivePolicy") else {
            continue;
        };
        let dlq_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            .as_str()
            .with_context(|| format!("{id}: RedrivePolicy names no DLQ"))?;
        let max = redrive["maxReceiveCount"].as_u64().unwrap_or(5) as u32;
        let name = super::unique(&id.to_lowercase());
        let created = SqsJobQueue::create_queues(
            &sqs,
            &[name.as_str()],
            std::time::Duration::from_secs(2),
            max,
        )
        .await?;
        let pair = created.get(&name).context("queue created")?;
        for (lid, url) in [(id.as_str(), &pair.queue_url), (dlq_id, &pair.dlq_url)] {
            refs.insert(lid.to_string(), url.clone());
            refs.insert(format!("{lid}.QueueUrl"), url.clone());
            let arn = format!(
                "arn:aws:sqs:us-east-1:123456789012:{}",
                url.rsplit('/').next().unwrap_or_default()
            );
            refs.insert(format!("{lid}.Arn"), arn);
            refs.insert(
                format!("{lid}.QueueName"),
                url.rsplit('/').next().unwrap_or_default().to_string(),
            );
        }
    }

    // The spec where ConfigS3Uri points, the secret where SecretsId points.
    let s3 = super::s3_client(sdk);
    s3.put_object()
        .bucket(bucket)
        .key(&spec_key)
        .body(spec_yaml.as_bytes().to_vec().into())
        .send()
        .await?;
    moto::secretsmanager(
        endpoint,
        "CreateSecret",
        &json!({"Name": secret_id, "SecretString": secrets.to_string()}),
    )
    .await?;

    let globals = template["Globals"]["Function"]["Environment"]["Variables"].clone();
    let mut functions = Vec::new();
    for (id, r) in resources {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = r["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .with_context(|| format!("{id}: no Metadata.BuildProperties.Binary"))?
            .to_string();
        let mut env = BTreeMap::new();
        for vars in [&globals, &r["Properties"]["Environment"]["Variables"]] {
            for (k, v) in vars.as_object().into_iter().flatten() {
                env.insert(
                    k.clone(),
                    resolve(v, &refs).with_context(|| format!("{id}: {k}"))?,
                );
            }
        }
        functions.push(FunctionDef {
            logical_id: id.clone(),
            binary,
            env,
        });
    }
    Ok(Stack {
        template,
        functions,
        bucket: bucket.to_string(),
        spec_key,
    })
}
