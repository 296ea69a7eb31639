//! Wiring for the Lambda functions: settings from the environment, the SDK
//! clients, the activation spec from S3 or a bundled file, secrets, and the
//! AWS adapters assembled into [`Deps`]. Loaded once per cold start; a
//! missing or malformed variable fails fast with its name.
//!
//! Environment:
//! * `DATAOUT_TABLE` — the DynamoDB table (the template's `StateTable`).
//! * `DATAOUT_QUEUES` — JSON `{"<destination>": {"queue_url": …, "dlq_url": …}}`.
//! * `DATAOUT_CONFIG` — `s3://bucket/key` or a file path of the activation spec.
//! * `DATAOUT_SECRETS_ID` — optional Secrets Manager secret (a JSON object of
//!   `NAME: value`) read through the AWS Parameters and Secrets Lambda
//!   Extension on `localhost:2773`; without it, secrets come from the
//!   environment.
//! * `AWS_ENDPOINT_URL` — honoured by the SDK (tests point it at moto).

use crate::settings;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use thiserror::Error;

use crate::adapters::dynamodb::DynamoStateStore;
use crate::adapters::s3::S3ObjectStore;
use crate::adapters::sqs::{QueueUrls, SqsJobQueue};
use crate::destinations::{self, Destination};
use crate::domain::config::parse_spec;
use crate::domain::spec::{ActivationSpec, DestinationSettings};
use crate::pipeline::Deps;
use crate::ports::{Clock, MapSecrets, ObjectStore, Secret, Secrets, SystemClock};

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("environment variable {name} is not set: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
    #[error("activation spec {location}: {reason}")]
    Config { location: String, reason: String },
    #[error("secrets {id}: {reason}")]
    Secrets { id: String, reason: String },
    #[error("destination `{name}`: {reason}")]
    Destination { name: String, reason: String },
}

/// Settings every function reads.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    pub table: String,
    pub queues: BTreeMap<String, QueueUrls>,
    pub config: String,
    pub secrets_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct QueueEntry {
    queue_url: String,
    dlq_url: String,
}

fn var(name: &'static str, hint: &'static str) -> Result<String, SetupError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(SetupError::Missing { name, hint })
}

impl AwsSettings {
    pub fn from_env() -> Result<Self, SetupError> {
        let table = var(settings::TABLE, "the DynamoDB state table name")?;
        let queues_json = var(
            settings::QUEUES,
            "JSON map of destination name to {queue_url, dlq_url}",
        )?;
        let queues = parse_queues(&queues_json)?;
        let config = var(
            settings::CONFIG,
            "s3://bucket/key or a file path of the activation spec",
        )?;
        let secrets_id = std::env::var(settings::SECRETS_ID)
            .ok()
            .filter(|v| !v.trim().is_empty());
        Ok(AwsSettings {
            table,
            queues,
            config,
            secrets_id,
        })
    }
}

pub fn parse_queues(json: &str) -> Result<BTreeMap<String, QueueUrls>, SetupError> {
    let raw: BTreeMap<String, QueueEntry> =
        serde_json::from_str(json).map_err(|e| SetupError::Malformed {
            name: settings::QUEUES,
            reason: e.to_string(),
        })?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                QueueUrls {
                    queue_url: v.queue_url,
                    dlq_url: v.dlq_url,
                },
            )
        })
        .collect())
}

/// The SDK configuration of the running function (region, credentials,
/// `AWS_ENDPOINT_URL`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Split `s3://bucket/key/parts` into bucket and key.
pub fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), key.trim_matches('/').to_string()))
}

/// Read and validate the activation spec.
pub async fn load_spec(
    location: &str,
    s3: &aws_sdk_s3::Client,
) -> Result<ActivationSpec, SetupError> {
    let err = |reason: String| SetupError::Config {
        location: location.to_string(),
        reason,
    };
    let text = if let Some((bucket, key)) = parse_s3_uri(location) {
        let store = S3ObjectStore::new(s3.clone(), bucket, "");
        let bytes = store
            .get(&key)
            .await
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| err("no such object".into()))?;
        String::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?
    } else {
        std::fs::read_to_string(location).map_err(|e| err(e.to_string()))?
    };
    parse_spec(&text, location).map_err(|e| err(e.to_string()))
}

/// Secrets: the Secrets Manager JSON through the Lambda extension when
/// `DATAOUT_SECRETS_ID` is set, else the environment.
pub async fn load_secrets(settings: &AwsSettings) -> Result<Arc<dyn Secrets>, SetupError> {
    let Some(id) = &settings.secrets_id else {
        return Ok(Arc::new(crate::ports::EnvSecrets));
    };
    let port = std::env::var(settings::SECRETS_EXTENSION_PORT).unwrap_or_else(|_| "2773".into());
    let token = std::env::var("AWS_SESSION_TOKEN").unwrap_or_default();
    let fail = |reason: String| SetupError::Secrets {
        id: id.clone(),
        reason,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = http
        .get(format!("http://localhost:{port}/secretsmanager/get"))
        .query(&[("secretId", id.as_str())])
        .header("X-Aws-Parameters-Secrets-Token", token)
        .send()
        .await
        .map_err(|e| fail(format!("extension unreachable: {e}")))?;
    if !resp.status().is_success() {
        return Err(fail(format!("extension answered {}", resp.status())));
    }
    let body: serde_json::Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
    secrets_from_extension_answer(&body).map_err(fail)
}

/// The extension answers `{"SecretString": "{\"NAME\":\"value\"}", …}`.
pub fn secrets_from_extension_answer(body: &serde_json::Value) -> Result<Arc<dyn Secrets>, String> {
    let inner = body
        .get("SecretString")
        .and_then(|s| s.as_str())
        .ok_or("no SecretString in the answer")?;
    let map: BTreeMap<String, String> = serde_json::from_str(inner)
        .map_err(|e| format!("SecretString is not a JSON object of strings: {e}"))?;
    Ok(Arc::new(MapSecrets(
        map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect(),
    )))
}

/// Everything a function needs, built once per cold start.
pub struct AwsWiring {
    pub deps: Deps,
    pub settings: AwsSettings,
    pub secrets: Arc<dyn Secrets>,
    pub sdk: aws_config::SdkConfig,
}

pub async fn wire() -> Result<AwsWiring, SetupError> {
    let settings = AwsSettings::from_env()?;
    let sdk = sdk_config().await;
    wire_with(settings, sdk).await
}

pub async fn wire_with(
    settings: AwsSettings,
    sdk: aws_config::SdkConfig,
) -> Result<AwsWiring, SetupError> {
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let spec = load_spec(&settings.config, &s3).await?;
    let secrets = load_secrets(&settings).await?;
    let state = Arc::new(DynamoStateStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        settings.table.clone(),
    ));
    let queue = Arc::new(SqsJobQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        settings.queues.clone(),
    ));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(AwsWiring {
        deps: Deps {
            spec: Arc::new(spec),
            state,
            queue,
            clock,
        },
        settings,
        secrets,
        sdk,
    })
}

impl AwsWiring {
    /// The client of one destination; the warehouse writes to S3.
    pub fn destination(&self, name: &str) -> Result<Arc<dyn Destination>, SetupError> {
        let fail = |reason: String| SetupError::Destination {
            name: name.to_string(),
            reason,
        };
        let spec = self
            .deps
            .spec
            .destination(name)
            .ok_or_else(|| fail("not in the activation spec".into()))?;
        let store: Option<Arc<dyn ObjectStore>> = match &spec.settings {
            DestinationSettings::Warehouse { location } => {
                let (bucket, prefix) = parse_s3_uri(location).ok_or_else(|| {
                    fail(format!(
                        "warehouse location {location} is not s3://bucket/prefix"
                    ))
                })?;
                Some(Arc::new(S3ObjectStore::new(
                    aws_sdk_s3::Client::new(&self.sdk),
                    bucket,
                    prefix,
                )))
            }
            _ => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        destinations::build(
            spec,
            self.secrets.as_ref(),
            http,
            store,
            self.deps.clock.clone(),
            self.deps.state.clone(),
        )
        .map_err(|e| fail(e.to_string()))
    }

    /// Every destination of the spec (the reconcile function reads counts).
    pub fn destinations(&self) -> Result<BTreeMap<String, Arc<dyn Destination>>, SetupError> {
        self.deps
            .spec
            .destinations
            .keys()
            .map(|n| self.destination(n).map(|d| (n.clone(), d)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uri_splits_bucket_and_key() {
        assert_eq!(
            parse_s3_uri("s3://b/config/exports.yaml"),
            Some(("b".into(), "config/exports.yaml".into()))
        );
        assert_eq!(parse_s3_uri("s3://b"), Some(("b".into(), String::new())));
        assert_eq!(parse_s3_uri("/tmp/x.yaml"), None);
        assert_eq!(parse_s3_uri("s3:///x"), None);
    }

    #[test]
    fn queues_parse_and_malformed_names_the_variable() {
        let q = parse_queues(r#"{"meta":{"queue_url":"u","dlq_url":"d"}}"#).unwrap();
        assert_eq!(q["meta"].queue_url, "u");
        let e = parse_queues("[").unwrap_err().to_string();
        assert!(e.contains("DATAOUT_QUEUES"), "{e}");
    }

    #[test]
    fn extension_answer_becomes_secrets() {
        let body = serde_json::json!({"SecretString": "{\"META_ACCESS_TOKEN\":\"t\"}"});
        let s = secrets_from_extension_answer(&body).unwrap();
        assert_eq!(s.get("META_ACCESS_TOKEN").unwrap().expose(), "t");
        assert!(secrets_from_extension_answer(&serde_json::json!({})).is_err());
    }
}
