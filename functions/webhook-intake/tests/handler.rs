//! The intake handler on real-shaped Function URL and HTTP API events:
//! state in DynamoDB and jobs on SQS (moto's server).

#[path = "../../test-support/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dataout::adapters::sqs::{parse_job_body, QueueUrls};
use dataout::pipeline::intake::IntakeConfig;
use dataout::pipeline::Deps;
use dataout::ports::{ManualClock, MapSecrets, StateStore};
use webhook_intake::config::{intake_config, ACTION_SECRET, REPORTING_SECRET};
use webhook_intake::event::{http_request, http_response};
use webhook_intake::handler::{handle_request, HttpRequest};

const FUNCTION_URL: &str = include_str!("../../../events/lambda/function-url-reporting.json");
const FUNCTION_URL_BASE64: &str =
    include_str!("../../../events/lambda/function-url-reporting-base64.json");
const HTTP_API_ACTION: &str = include_str!("../../../events/lambda/http-api-actions.json");

/// Inside the replay window of both reporting fixtures.
const NOW_MS: i64 = 1_751_371_360_000;

struct Setup {
    deps: Deps,
    cfg: IntakeConfig,
    state: Arc<dataout::adapters::dynamodb::DynamoStateStore>,
    sdk: aws_config::SdkConfig,
    urls: std::collections::BTreeMap<String, QueueUrls>,
    _dir: tempfile::TempDir,
}

fn config_with(signing_secret: &str) -> Result<IntakeConfig> {
    let secrets = MapSecrets::default()
        .with(REPORTING_SECRET, signing_secret)
        .with(ACTION_SECRET, harness::ACTION_TOKEN);
    Ok(intake_config(|_| None, &secrets)?)
}

async fn setup() -> Result<Setup> {
    setup_at(NOW_MS).await
}

async fn setup_at(now_ms: i64) -> Result<Setup> {
    let sdk = harness::sdk_config().await;
    let dir = tempfile::tempdir()?;
    let spec = harness::parse(&harness::spec_yaml(
        "http://127.0.0.1:9",
        &dir.path().display().to_string(),
    ))?;
    let state = harness::fresh_state(&sdk).await?;
    let (queue, urls) = harness::fresh_queues(
        &sdk,
        &["clevertap", "warehouse"],
        Duration::from_secs(30),
        5,
    )
    .await?;
    let deps = harness::deps(
        spec,
        state.clone(),
        queue,
        Arc::new(ManualClock::new(now_ms)),
    );
    Ok(Setup {
        deps,
        cfg: config_with(harness::SIGNING_SECRET)?,
        state,
        sdk,
        urls,
        _dir: dir,
    })
}

fn request(fixture: &str) -> Result<HttpRequest> {
    Ok(http_request(lambda_http::request::from_str(fixture)?))
}

async fn members(state: &dyn StateStore, export: &str) -> Result<Vec<(String, bool)>> {
    let page = state.list_memberships(export, None, 100).await?;
    Ok(page
        .items
        .into_iter()
        .map(|r| (r.person_key.0, r.current.member))
        .collect())
}

#[tokio::test]
async fn function_url_reporting_webhook_with_a_good_signature_lands_in_dynamodb() -> Result<()> {
    let s = setup().await?;
    let req = request(FUNCTION_URL)?;
    assert_eq!(req.path, "/webhooks/customerio");
    assert!(req.headers.contains_key("x-cio-signature"));

    let resp = handle_request(&s.deps, &s.cfg, &req).await;

    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["status"], "accepted");
    // email.unsubscribed feeds the suppression export.
    assert_eq!(
        members(s.state.as_ref(), "email_suppression").await?,
        vec![("id:cust_00050".to_string(), true)]
    );
    let warehouse = s.urls.get("warehouse").context("warehouse queue")?;
    let bodies = harness::peek_bodies(&s.sdk, &warehouse.queue_url).await?;
    assert_eq!(bodies.len(), 1);
    assert_eq!(parse_job_body(&bodies[0])?.export, "email_suppression");

    let http = http_response(&resp);
    assert_eq!(http.status().as_u16(), 200);
    assert_eq!(
        http.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    Ok(())
}

#[tokio::test]
async fn base64_encoded_body_is_verified_over_its_decoded_bytes() -> Result<()> {
    let s = setup().await?;
    let req = request(FUNCTION_URL_BASE64)?;
    assert!(req.body.starts_with(b"{\"event_id\""), "body was decoded");
    let resp = handle_request(&s.deps, &s.cfg, &req).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        members(s.state.as_ref(), "email_suppression").await?,
        vec![("id:cust_00052".to_string(), true)]
    );
    Ok(())
}

#[tokio::test]
async fn bad_signature_is_refused_with_401_and_changes_nothing() -> Result<()> {
    let s = setup().await?;
    let mut tampered = request(FUNCTION_URL)?;
    let body = String::from_utf8(tampered.body.clone())?.replace("cust_00050", "cust_00051");
    tampered.body = body.into_bytes();
    let resp = handle_request(&s.deps, &s.cfg, &tampered).await;
    assert_eq!(resp.status, 401, "{}", resp.body);

    let wrong_key = config_with("not-the-signing-secret")?;
    let resp = handle_request(&s.deps, &wrong_key, &request(FUNCTION_URL)?).await;
    assert_eq!(resp.status, 401, "{}", resp.body);

    let mut unsigned = request(FUNCTION_URL)?;
    unsigned.headers.remove("x-cio-signature");
    let resp = handle_request(&s.deps, &s.cfg, &unsigned).await;
    assert_eq!(resp.status, 401, "{}", resp.body);

    assert!(members(s.state.as_ref(), "email_suppression")
        .await?
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn redelivered_webhook_is_answered_as_a_duplicate() -> Result<()> {
    let s = setup().await?;
    let first = handle_request(&s.deps, &s.cfg, &request(FUNCTION_URL)?).await;
    assert_eq!(first.body["status"], "accepted");
    let again = handle_request(&s.deps, &s.cfg, &request(FUNCTION_URL)?).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "duplicate");
    Ok(())
}

#[tokio::test]
async fn http_api_webhook_action_enters_the_export_and_enqueues_delivery() -> Result<()> {
    let s = setup().await?;
    let req = request(HTTP_API_ACTION)?;
    assert_eq!(req.path, "/webhooks/actions");

    let resp = handle_request(&s.deps, &s.cfg, &req).await;

    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        members(s.state.as_ref(), "cart_abandoners").await?,
        vec![("id:cust_00032".to_string(), true)]
    );
    let clevertap = s.urls.get("clevertap").context("clevertap queue")?;
    let bodies = harness::peek_bodies(&s.sdk, &clevertap.queue_url).await?;
    assert!(!bodies.is_empty(), "a job waits for CleverTap");

    let mut wrong_token = request(HTTP_API_ACTION)?;
    wrong_token
        .headers
        .insert("x-dataout-token".into(), "guess".into());
    assert_eq!(
        handle_request(&s.deps, &s.cfg, &wrong_token).await.status,
        401
    );
    Ok(())
}

#[tokio::test]
async fn unknown_path_is_404_and_other_methods_are_405() -> Result<()> {
    let s = setup().await?;
    let mut elsewhere = request(FUNCTION_URL)?;
    elsewhere.path = "/admin".into();
    assert_eq!(
        handle_request(&s.deps, &s.cfg, &elsewhere).await.status,
        404
    );

    let mut get = request(FUNCTION_URL)?;
    get.method = "GET".into();
    assert_eq!(handle_request(&s.deps, &s.cfg, &get).await.status, 405);

    // An HTTP API stage prefix still routes.
    let mut staged = request(FUNCTION_URL)?;
    staged.path = "/prod/webhooks/customerio".into();
    assert_eq!(handle_request(&s.deps, &s.cfg, &staged).await.status, 200);
    Ok(())
}

#[tokio::test]
async fn replayed_reporting_webhook_is_applied_once_on_the_lambda_path() -> Result<()> {
    let s = setup().await?;
    // The same body, signature and timestamp, three times.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = handle_request(&s.deps, &s.cfg, &request(FUNCTION_URL)?).await;
        statuses.push(resp.body["status"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(statuses, ["accepted", "duplicate", "duplicate"]);
    assert_eq!(
        members(s.state.as_ref(), "email_suppression").await?,
        vec![("id:cust_00050".to_string(), true)]
    );
    // One job, not three.
    let warehouse = s.urls.get("warehouse").context("warehouse queue")?;
    assert_eq!(
        harness::peek_bodies(&s.sdk, &warehouse.queue_url)
            .await?
            .len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn reporting_webhook_signed_outside_the_replay_window_is_applied_on_the_lambda_path(
) -> Result<()> {
    // Ten minutes after the fixture was signed (the window is five), and
    // ten minutes before: authentic, so applied (a 401 would hold back
    // Customer.io's whole stream), with the age in the answer.
    for now in [NOW_MS + 600_000, NOW_MS - 600_000] {
        let s = setup_at(now).await?;
        let req = request(FUNCTION_URL)?;
        let signed_at: i64 = req.headers["x-cio-timestamp"].parse()?;
        let resp = handle_request(&s.deps, &s.cfg, &req).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.body["status"], "accepted", "{}", resp.body);
        assert_eq!(
            resp.body["signed_age_s"],
            now / 1000 - signed_at,
            "{}",
            resp.body
        );
        assert!(!members(s.state.as_ref(), "email_suppression")
            .await?
            .is_empty());
    }
    Ok(())
}

#[tokio::test]
async fn body_over_the_limit_is_refused_413_unread_and_nothing_is_kept() -> Result<()> {
    let s = setup().await?;
    for (path, len) in [
        (
            "/webhooks/customerio",
            dataout::pipeline::intake::MAX_BODY_BYTES + 1,
        ),
        ("/webhooks/actions", 10 * 1024 * 1024),
    ] {
        // A real signed request's headers, a body far past the limit.
        let mut big = request(FUNCTION_URL)?;
        big.path = path.into();
        big.body = vec![b'{'; len];
        let resp = handle_request(&s.deps, &s.cfg, &big).await;
        assert_eq!(resp.status, 413, "{}", resp.body);
        assert_eq!(resp.body["status"], "too_large");
    }
    assert!(s.state.list_quarantine(10).await?.is_empty(), "kept a body");
    assert!(members(s.state.as_ref(), "email_suppression")
        .await?
        .is_empty());
    Ok(())
}
