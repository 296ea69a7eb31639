//! A fault-injecting proxy in front of moto (or any AWS endpoint) that
//! answers the way DynamoDB and S3 answer when they shed load, so the AWS
//! adapters' own throttling and retry paths run: the SDK's retries, then
//! the adapter's, then the caller's.
//!
//! ## Faults (one seeded draw per request)
//! * DynamoDB (an `X-Amz-Target: DynamoDB_20120810.*` request):
//!   - `dynamodb_throttled` → HTTP 400 with
//!     `ProvisionedThroughputExceededException` (the JSON error body DynamoDB
//!     sends: `__type` and `message`), not forwarded;
//!   - `transaction_throttled`, on `TransactWriteItems` only → HTTP 400 with
//!     `TransactionCanceledException` whose `CancellationReasons` say
//!     `ThrottlingError` for the first item and `None` for the others, not
//!     forwarded (DynamoDB cancels a transaction it lacks capacity for).
//! * S3 (any request without `X-Amz-Target`):
//!   - `s3_slow_down` → HTTP 503 with the S3 XML error `SlowDown`, not
//!     forwarded;
//!   - `s3_error_after_apply`, on `PUT` only → forwarded, then HTTP 500
//!     with the S3 XML error `InternalError` (S3 says a request answered
//!     `InternalError` may or may not have been processed).
//! * Anything else (SQS) is forwarded untouched.
//!
//! [`AwsFaultProxyState::fail_next_s3_puts`] queues S3 faults for the next
//! PUTs, ahead of the draw.
//!
//! Sources (our reading, in `docs/aws-faults.md`): the DynamoDB developer
//! guide's "Error handling with DynamoDB" (error components, throttling
//! retried by the SDKs), the `TransactionCanceledException` reference
//! (cancelled for insufficient capacity, `CancellationReasons`), and S3's
//! "Error best practices" (retry `InternalError`, `SlowDown` under load).

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::faults::{forward_to, forwarding_client};
use crate::RunningSim;

/// Shares of requests to fail, each in `0..=1`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AwsFaultPlan {
    pub dynamodb_throttled: f64,
    pub transaction_throttled: f64,
    pub s3_slow_down: f64,
    pub s3_error_after_apply: f64,
    pub seed: u64,
}

/// What the proxy saw and answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AwsFaultCounts {
    pub dynamodb_requests: u64,
    pub dynamodb_throttled: u64,
    pub transactions_cancelled: u64,
    pub s3_requests: u64,
    pub s3_slow_downs: u64,
    pub s3_errors_after_apply: u64,
    /// Requests of other services, forwarded untouched.
    pub other_requests: u64,
}

pub struct AwsFaultProxyState {
    upstream: String,
    client: reqwest::Client,
    inner: Mutex<(AwsFaultPlan, StdRng, AwsFaultCounts)>,
    /// Faults for the next S3 PUTs, before any draw.
    next_puts: Mutex<std::collections::VecDeque<Fault>>,
}

impl AwsFaultProxyState {
    fn lock(&self) -> MutexGuard<'_, (AwsFaultPlan, StdRng, AwsFaultCounts)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace the plan (reseeding); counts are kept.
    pub fn set_plan(&self, plan: AwsFaultPlan) {
        let mut inner = self.lock();
        inner.0 = plan;
        inner.1 = StdRng::seed_from_u64(plan.seed);
    }

    pub fn counts(&self) -> AwsFaultCounts {
        self.lock().2
    }

    /// Answer the next S3 PUTs `SlowDown` (`slow_downs` of them), then
    /// `InternalError` after writing (`errors_after_apply`), whatever the
    /// plan draws: a run sure to meet both, however few PUTs it makes.
    pub fn fail_next_s3_puts(&self, slow_downs: usize, errors_after_apply: usize) {
        let mut next = self.next_puts.lock().unwrap_or_else(|p| p.into_inner());
        next.extend(std::iter::repeat_n(Fault::SlowDown, slow_downs));
        next.extend(std::iter::repeat_n(
            Fault::ErrorAfterApply,
            errors_after_apply,
        ));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Throttled,
    TransactionCancelled,
    SlowDown,
    ErrorAfterApply,
}

/// Serve the proxy on 127.0.0.1 in front of `upstream` (moto's base URL).
pub async fn start(
    upstream: &str,
    plan: AwsFaultPlan,
) -> anyhow::Result<(RunningSim, Arc<AwsFaultProxyState>)> {
    let state = Arc::new(AwsFaultProxyState {
        upstream: upstream.trim_end_matches('/').to_string(),
        client: forwarding_client()?,
        inner: Mutex::new((plan, StdRng::seed_from_u64(plan.seed), Default::default())),
        next_puts: Mutex::new(Default::default()),
    });
    let router = Router::new()
        .fallback(proxy)
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state.clone());
    Ok((crate::serve(router).await?, state))
}

fn decide(state: &AwsFaultProxyState, target: Option<&str>, method: &Method) -> Fault {
    let mut inner = state.lock();
    let (plan, rng, counts) = &mut *inner;
    let u: f64 = rng.random();
    match target {
        Some(t) if t.starts_with("DynamoDB_20120810.") => {
            counts.dynamodb_requests += 1;
            if u < plan.dynamodb_throttled {
                counts.dynamodb_throttled += 1;
                Fault::Throttled
            } else if t.ends_with(".TransactWriteItems")
                && u < plan.dynamodb_throttled + plan.transaction_throttled
            {
                counts.transactions_cancelled += 1;
                Fault::TransactionCancelled
            } else {
                Fault::None
            }
        }
        Some(_) => {
            counts.other_requests += 1;
            Fault::None
        }
        None => {
            counts.s3_requests += 1;
            let queued = if method == Method::PUT {
                state
                    .next_puts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front()
            } else {
                None
            };
            if let Some(fault) = queued {
                match fault {
                    Fault::SlowDown => counts.s3_slow_downs += 1,
                    _ => counts.s3_errors_after_apply += 1,
                }
                fault
            } else if u < plan.s3_slow_down {
                counts.s3_slow_downs += 1;
                Fault::SlowDown
            } else if method == Method::PUT && u < plan.s3_slow_down + plan.s3_error_after_apply {
                counts.s3_errors_after_apply += 1;
                Fault::ErrorAfterApply
            } else {
                Fault::None
            }
        }
    }
}

fn dynamodb_error(kind: &str, message: &str, extra: Value) -> Response {
    let mut body = json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
        "message": message,
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>injected</RequestId><HostId>injected</HostId></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Items of a `TransactWriteItems` request (1 when it cannot be read).
fn transaction_items(body: &[u8]) -> usize {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("TransactItems")?.as_array().map(Vec::len))
        .unwrap_or(1)
        .max(1)
}

async fn proxy(
    State(state): State<Arc<AwsFaultProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fault = decide(&state, target.as_deref(), &method);
    match fault {
        Fault::Throttled => return dynamodb_error(
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded (injected).",
            json!({}),
        ),
        Fault::TransactionCancelled => {
            let n = transaction_items(&body);
            let reasons: Vec<Value> = (0..n)
                .map(|i| {
                    if i == 0 {
                        json!({"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity of your table or index (injected)."})
                    } else {
                        json!({"Code": "None"})
                    }
                })
                .collect();
            let names: Vec<&str> = reasons.iter().filter_map(|r| r["Code"].as_str()).collect();
            return dynamodb_error(
                "TransactionCanceledException",
                &format!(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                    names.join(", ")
                ),
                json!({ "CancellationReasons": reasons }),
            );
        }
        Fault::SlowDown => {
            return s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
            )
        }
        Fault::None | Fault::ErrorAfterApply => {}
    }
    let after_apply = fault == Fault::ErrorAfterApply;
    let forwarding = tokio::spawn({
        let state = state.clone();
        async move { forward_to(&state.client, &state.upstream, method, uri, headers, body).await }
    });
    let answer = match forwarding.await {
        Ok(a) => a,
        Err(e) => Err(format!("forwarding task failed: {e}")),
    };
    if after_apply {
        return s3_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        );
    }
    answer.unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e).into_response())
}
