//! The four functions as Lambda runs them: the built binaries under
//! cargo-lambda's Lambda emulator, each with the environment the rendered
//! template gives it, against moto (DynamoDB, SQS, S3, Secrets Manager) and
//! the platform simulators. Events arrive as Lambda delivers them: a
//! Function URL request (payload 2.0, plain and base64 bodies), SQS batches
//! received from the real queue, the Scheduler input, the daily schedule.
//! The only variables not taken from the template point the SDK and the App
//! API at loopback and the secrets extension at its stand-in.

mod emulator;
mod moto;
mod stack;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use base64::Engine as _;
use dataout_sim::clevertap::ClevertapSimConfig;
use dataout_sim::customerio::{demo_workspace, CioSim, CioSimConfig};
use emulator::Emulator;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use stack::Stack;

const SIGNING_SECRET: &str = "e2e-signing-secret";
const ACTION_TOKEN: &str = "e2e-action-token";
const CIO_KEY: &str = "e2e-app-api-key";
const SESSION_TOKEN: &str = "e2e-session-token";
const SEGMENT: u64 = 101;
const POISON: &str = r#"{"job_id":"job_poison","export":"cart_abandoners","ops":[{"op":"add""#;

fn endpoint() -> String {
    match std::env::var("DATAOUT_TEST_AWS_ENDPOINT") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => panic!(
            "DATAOUT_TEST_AWS_ENDPOINT is not set: run `eval \"$(scripts/moto-server start)\"` \
             first, or ./scripts/test"
        ),
    }
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!("{prefix}-{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn sdk() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "e2e"))
        .load()
        .await
}

pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

fn spec_yaml(clevertap_base: &str, bucket: &str) -> String {
    format!(
        r#"version: 1
destinations:
  clevertap:
    kind: clevertap
    base_url: {clevertap_base}
    region: us1
    account_id_env: CLEVERTAP_ACCOUNT_ID
    passcode_env: CLEVERTAP_PASSCODE
    max_attempts: 3
  warehouse:
    kind: warehouse
    location: s3://{bucket}/warehouse
reporting_feeds:
  email.unsubscribed: [email_suppression]
exports:
  cart_abandoners:
    source: {{segment: {SEGMENT}}}
    mode: membership
    cadence: {{realtime: true, every: 15m}}
    identity:
      golden: id
      fallbacks: [email]
    attributes:
      cart_value: number
    destinations:
      clevertap:
        audience: cio_cart_abandoners
      warehouse:
  email_suppression:
    source: action
    mode: membership
    cadence: {{realtime: true}}
    identity: {{golden: email}}
    destinations:
      warehouse:
"#
    )
}

/// Everything one run needs: moto resources from the template, simulators,
/// the secrets extension stand-in.
struct World {
    sdk: SdkConfig,
    stack: Stack,
    cio: CioSim,
    clevertap: std::sync::Arc<dataout_sim::clevertap::ClevertapState>,
    _servers: Vec<dataout_sim::RunningSim>,
    extension_port: u16,
}

impl World {
    /// `secrets` may drop keys (cold-start tests); `parameters` override
    /// the template's parameters.
    async fn start(drop_secret: Option<&str>, parameters: &[(&str, &str)]) -> Result<World> {
        let sdk = sdk().await;
        let (ct_server, clevertap) = dataout_sim::clevertap::start(ClevertapSimConfig {
            response_delay: None,
            ..ClevertapSimConfig::default()
        })
        .await?;
        let cio =
            dataout_sim::customerio::start(CioSimConfig::new(CIO_KEY, demo_workspace(11, 200)))
                .await?;
        let bucket = unique("e2e").to_lowercase();
        s3_client(&sdk)
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await?;
        let mut secrets = json!({
            "CIO_WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
            "DATAOUT_ACTION_SECRET": ACTION_TOKEN,
            "CIO_APP_API_KEY": CIO_KEY,
            "CLEVERTAP_ACCOUNT_ID": clevertap.config().account_id,
            "CLEVERTAP_PASSCODE": clevertap.config().passcode,
        });
        if let Some(name) = drop_secret {
            secrets.as_object_mut().context("object")?.remove(name);
        }
        let stack = stack::create(
            &sdk,
            &endpoint(),
            &spec_yaml(&ct_server.base_url, &bucket),
            &bucket,
            &secrets,
            parameters,
        )
        .await?;
        let ext = moto::secrets_extension(&endpoint(), SESSION_TOKEN).await?;
        Ok(World {
            sdk,
            stack,
            cio,
            clevertap,
            extension_port: ext.addr.port(),
            _servers: vec![ct_server, ext],
        })
    }

    /// A function's environment: the template's, plus loopback endpoints.
    fn env_of(
        &self,
        logical_id_or_destination: &str,
    ) -> Result<(String, BTreeMap<String, String>)> {
        let f = match self.stack.function(logical_id_or_destination) {
            Ok(f) => f,
            Err(_) => self.stack.deliver_for(logical_id_or_destination)?,
        };
        let mut env = f.env.clone();
        for (k, v) in [
            ("AWS_ENDPOINT_URL", endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN.into()),
            (
                "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
                self.extension_port.to_string(),
            ),
            ("CIO_APP_API_BASE_URL", self.cio.base_url().to_string()),
        ] {
            env.insert(k.to_string(), v);
        }
        Ok((f.binary.clone(), env))
    }

    /// An emulator running one function deployment.
    fn run(&self, function: &str) -> Result<Emulator> {
        let (binary, env) = self.env_of(function)?;
        let mut e = Emulator::start()?;
        e.start_function(&binary, &env)?;
        Ok(e)
    }
}

/// Hex HMAC-SHA256 of `v0:<ts>:<body>` with the signing key (Customer.io's
/// reporting-webhook signature, docs/customerio.md), computed here.
fn signature(ts: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).expect("any key length");
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn reporting_body(event_id: &str, metric: &str, email: &str, id: &str, ts: i64) -> Vec<u8> {
    json!({
        "event_id": event_id,
        "object_type": "email",
        "metric": metric,
        "timestamp": ts,
        "data": {"customer_id": id, "identifiers": {"id": id, "email": email}, "recipient": email}
    })
    .to_string()
    .into_bytes()
}

/// The SQS event Lambda's event source mapping builds from received messages.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attrs: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect())
                .unwrap_or_default();
            let msg_attrs: serde_json::Map<String, Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({"stringValue": v.string_value(), "stringListValues": [], "binaryListValues": [], "dataType": v.data_type()}),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attrs,
                "messageAttributes": msg_attrs,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Play the SQS event source mapping for one destination until its queue
/// holds nothing but the poison message: receive up to 10, invoke, delete
/// what the answer does not list in `batchItemFailures`. Returns the ids
/// every answer listed.
async fn drain(
    world: &World,
    destination: &str,
    poison_id: Option<&str>,
) -> Result<BTreeSet<String>> {
    let emu = world.run(destination)?;
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let url = world.stack.queue_of(destination)?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("queue ARN")?;
    let mut failed = BTreeSet::new();
    for _round in 0..40 {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?;
        let messages = got.messages().to_vec();
        if messages.is_empty() {
            return Ok(failed);
        }
        let (status, answer) = emu.invoke(&sqs_event(&messages, &arn)).await?;
        if status != 200 {
            let (out, err) = emu.function_output();
            bail!("deliver {destination} answered {status}: {answer}\n{out}\n{err}");
        }
        let listed: BTreeSet<String> = answer["batchItemFailures"]
            .as_array()
            .with_context(|| format!("no batchItemFailures in {answer}"))?
            .iter()
            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
            .collect();
        for m in &messages {
            let id = m.message_id().unwrap_or_default();
            if !listed.contains(id) {
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await?;
            }
        }
        failed.extend(listed);
        let only_poison = messages.iter().all(|m| m.message_id() == poison_id);
        if only_poison {
            return Ok(failed);
        }
    }
    bail!("{destination}'s queue did not drain in 40 batches")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_functions_under_the_lambda_emulator_sync_what_the_source_says() -> Result<()> {
    let world = World::start(None, &[]).await?;
    let snapshot = world.cio.handle.snapshot();
    let members: Vec<&dataout_sim::customerio::SimPerson> = snapshot
        .members(SEGMENT)
        .iter()
        .map(|&i| &snapshot.people[i])
        .collect();
    assert!(members.len() >= 5, "the demo segment has members");
    let member_ids: BTreeSet<String> = members.iter().filter_map(|p| p.id.clone()).collect();
    // The spec's identity: the id, else the email (people known by
    // cio_id and email only).
    let member_keys: BTreeSet<String> = members
        .iter()
        .filter_map(|p| p.id.clone().or_else(|| p.email.clone()))
        .collect();
    assert_eq!(member_keys.len(), members.len());
    let now = chrono::Utc::now().timestamp();

    // 1. Intake through the Function URL: a signed reporting webhook as
    // Customer.io sends it (JSON: the emulator passes the text), one with a
    // binary content type (base64 in the event), and a webhook action.
    let intake = world.run("WebhookIntake")?;
    let body = reporting_body(
        "01E2E0000000000000000000A1",
        "unsubscribed",
        "ada+e2e@example.com",
        "e2e_1",
        now,
    );
    let (status, answer) = intake
        .function_url(
            "/webhooks/customerio",
            &[
                ("content-type", "application/json".into()),
                ("x-cio-timestamp", now.to_string()),
                ("x-cio-signature", signature(now, &body)),
            ],
            body,
        )
        .await?;
    assert_eq!(status, 200, "{answer}\n{:?}", intake.function_output());
    let body = reporting_body(
        "01E2E0000000000000000000A2",
        "unsubscribed",
        "bob+e2e@example.com",
        "e2e_2",
        now,
    );
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/webhooks/customerio",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/octet-stream",
            "x-cio-timestamp": now.to_string(),
            "x-cio-signature": signature(now, &body),
        },
        "requestContext": {
            "accountId": "anonymous", "apiId": "e2e", "domainName": "e2e.lambda-url.us-east-1.on.aws",
            "domainPrefix": "e2e", "requestId": "e2e-1", "routeKey": "$default", "stage": "$default",
            "time": "08/Dec/2026:00:00:00 +0000", "timeEpoch": now * 1000,
            "http": {"method": "POST", "path": "/webhooks/customerio", "protocol": "HTTP/1.1", "sourceIp": "34.29.50.21", "userAgent": "Customer.io Webhook"}
        },
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
        "isBase64Encoded": true,
    });
    let (status, answer) = intake.invoke(&event).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    // A wrong signature is refused (the function, not the emulator, checks).
    let body = reporting_body(
        "01E2E0000000000000000000A3",
        "unsubscribed",
        "eve+e2e@example.com",
        "e2e_3",
        now,
    );
    let (status, _) = intake
        .function_url(
            "/webhooks/customerio",
            &[
                ("content-type", "application/json".into()),
                ("x-cio-timestamp", now.to_string()),
                ("x-cio-signature", "0".repeat(64)),
            ],
            body,
        )
        .await?;
    assert_eq!(status, 401);
    let first = members[0];
    let action = json!({
        "action": "enter",
        "export": "cart_abandoners",
        "person": {"id": first.id, "email": first.email},
        "attributes": {"cart_value": "120.5"},
        "sent_at": now,
    })
    .to_string();
    let (status, answer) = intake
        .function_url(
            "/webhooks/actions",
            &[
                ("content-type", "application/json".into()),
                ("x-dataout-token", ACTION_TOKEN.into()),
            ],
            action.into_bytes(),
        )
        .await?;
    assert!((200..300).contains(&status), "{status} {answer}");
    drop(intake);

    // 2. The batch export's scheduled tick, with the Scheduler input the
    // template defines for it.
    let export = world.run("BatchExport")?;
    let input = world.stack.template["Resources"]["BatchExport"]["Properties"]["Events"]
        ["CartAbandoners"]["Properties"]["Input"]
        .as_str()
        .context("the template's Scheduler input for cart_abandoners")?
        .replace("<aws.scheduler.scheduled-time>", "2026-12-08T00:00:00Z")
        .replace("<aws.scheduler.execution-id>", "e2e-execution");
    let (status, outcome) = export.invoke(&serde_json::from_str(&input)?).await?;
    assert_eq!(status, 200, "{outcome}\n{:?}", export.function_output());
    assert_eq!(outcome["status"], "finished", "{outcome}");
    assert_eq!(outcome["members"], members.len() as u64, "{outcome}");
    let (emf, _) = export.function_output();
    assert!(
        emf.contains("\"CloudWatchMetrics\""),
        "EMF lines on stdout: {emf}"
    );
    drop(export);

    // 3. Delivery: SQS batches from the real queues; a poison message among
    // the clevertap jobs comes back in batchItemFailures, alone.
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let poison = sqs
        .send_message()
        .queue_url(world.stack.queue_of("clevertap")?)
        .message_body(POISON)
        .send()
        .await?;
    let poison_id = poison.message_id().context("poison id")?.to_string();
    let failed = drain(&world, "clevertap", Some(&poison_id)).await?;
    assert_eq!(failed, BTreeSet::from([poison_id.clone()]));
    let failed = drain(&world, "warehouse", None).await?;
    assert!(failed.is_empty(), "{failed:?}");

    // The destinations hold what the source says: CleverTap's audience flag
    // on exactly the segment's members; the warehouse's rows in S3.
    let in_audience: BTreeSet<String> = world
        .clevertap
        .profiles()
        .into_iter()
        .filter(|p| p.data.get("cio_cart_abandoners") == Some(&json!(true)))
        .map(|p| p.key)
        .collect();
    assert_eq!(in_audience, member_keys);
    let s3 = s3_client(&world.sdk);
    let listed = s3
        .list_objects_v2()
        .bucket(&world.stack.bucket)
        .prefix("warehouse/")
        .send()
        .await?;
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    let mut warehouse = String::new();
    for key in &keys {
        let obj = s3
            .get_object()
            .bucket(&world.stack.bucket)
            .key(key)
            .send()
            .await?;
        warehouse.push_str(&String::from_utf8_lossy(
            &obj.body.collect().await?.into_bytes(),
        ));
    }
    assert!(
        keys.iter().any(|k| k.contains("export=email_suppression/")),
        "{keys:?}"
    );
    for id in &member_ids {
        assert!(
            warehouse.contains(&format!("\"{id}\"")),
            "{id} in the warehouse rows"
        );
    }

    // 4. The daily reconcile run: its report lands in S3 where the template
    // says, and agrees with the source.
    let reconcile = world.run("Reconcile")?;
    let event: Value =
        serde_json::from_str(include_str!("../../events/lambda/schedule-reconcile.json"))?;
    let (status, summary) = reconcile.invoke(&event).await?;
    assert_eq!(status, 200, "{summary}\n{:?}", reconcile.function_output());
    let location = world
        .stack
        .function("Reconcile")?
        .env
        .get("DATAOUT_REPORT_LOCATION")
        .cloned()
        .context("report location")?;
    let (bucket, prefix) = dataout::aws::parse_s3_uri(&location).context("s3 uri")?;
    let obj = s3
        .get_object()
        .bucket(&bucket)
        .key(format!("{prefix}/latest.json"))
        .send()
        .await?;
    let report: Value = serde_json::from_slice(&obj.body.collect().await?.into_bytes())?;
    let row = report["rows"]
        .as_array()
        .context("rows")?
        .iter()
        .find(|r| r["export"] == "cart_abandoners" && r["destination"] == "clevertap")
        .context("the cart_abandoners/clevertap row")?
        .clone();
    assert_eq!(row["source_count"], members.len() as u64, "{row}");
    assert_eq!(row["state_count"], members.len() as u64, "{row}");
    assert_eq!(row["delivered_members"], members.len() as i64, "{row}");
    Ok(())
}

/// Run one function whose cold start must fail; its whole output.
async fn failed_cold_start(
    world: &World,
    function: &str,
    env_edit: impl FnOnce(&mut BTreeMap<String, String>),
) -> Result<(String, String)> {
    let (binary, mut env) = world.env_of(function)?;
    env_edit(&mut env);
    let mut emu = Emulator::start()?;
    emu.start_function(&binary, &env)?;
    let status = emu.wait_function_exit(Duration::from_secs(60))?;
    let (out, err) = emu.function_output();
    assert!(!status.success(), "{function} started: {out}{err}");
    Ok((out, err))
}

/// The one log line: JSON at ERROR, naming the cause.
fn the_one_line(out: &str, err: &str) -> Result<Value> {
    let lines: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.len() != 1 {
        return Err(anyhow!(
            "expected one log line, got {}:\n{}",
            lines.len(),
            lines.join("\n")
        ));
    }
    let line: Value =
        serde_json::from_str(lines[0]).with_context(|| format!("not JSON: {}", lines[0]))?;
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["message"], "cold start failed", "{line}");
    Ok(line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_without_a_secret_key_fails_with_one_line_naming_it() -> Result<()> {
    let world = World::start(Some("DATAOUT_ACTION_SECRET"), &[]).await?;
    let (out, err) = failed_cold_start(&world, "WebhookIntake", |_| {}).await?;
    let line = the_one_line(&out, &err)?;
    let error = line["error"].as_str().unwrap_or_default();
    assert!(error.contains("DATAOUT_ACTION_SECRET"), "{line}");
    assert!(
        !error.contains(SIGNING_SECRET),
        "no secret value in the log: {line}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_with_an_unreadable_spec_object_fails_with_one_line_naming_it() -> Result<()> {
    let world = World::start(None, &[]).await?;
    let missing = format!(
        "s3://{}/{}.missing",
        world.stack.bucket, world.stack.spec_key
    );
    let (out, err) = failed_cold_start(&world, "clevertap", |env| {
        env.insert("DATAOUT_CONFIG".into(), missing.clone());
    })
    .await?;
    let line = the_one_line(&out, &err)?;
    assert!(
        line["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&missing),
        "{line}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_with_an_invalid_setting_fails_with_one_line_naming_it() -> Result<()> {
    // A region outside the parameter's AllowedValues (us, eu), as if set
    // anyway: the template passes it on as CIO_REGION, the function refuses it.
    let world = World::start(None, &[("CustomerIoRegion", "mars")]).await?;
    let (out, err) = failed_cold_start(&world, "Reconcile", |_| {}).await?;
    let line = the_one_line(&out, &err)?;
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("CIO_REGION") && error.contains("mars"),
        "{line}"
    );
    Ok(())
}

/// Every variable the template sets is a setting the code knows
/// (`dataout::settings::SETTINGS`), so a rename on the template's side
/// alone fails here without the emulator (the end-to-end test catches the
/// function's side).
#[test]
fn template_sets_only_variables_the_settings_list_names() -> Result<()> {
    let template = stack::render(&spec_yaml("http://127.0.0.1:9", "bucket"))?;
    let known: BTreeSet<&str> = dataout::settings::SETTINGS.iter().map(|s| s.name).collect();
    let mut set = BTreeSet::new();
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    set.extend(
        globals
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone()),
    );
    for (_, r) in template["Resources"].as_object().into_iter().flatten() {
        let vars = &r["Properties"]["Environment"]["Variables"];
        set.extend(
            vars.as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
    }
    assert!(set.len() >= 8, "{set:?}");
    let unknown: Vec<&String> = set.iter().filter(|k| !known.contains(k.as_str())).collect();
    assert!(
        unknown.is_empty(),
        "the template sets {unknown:?}, which no setting names"
    );
    Ok(())
}
