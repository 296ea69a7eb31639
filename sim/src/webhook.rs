//! Generic signed-webhook receiver simulator: stands in for whatever
//! analytics tool a customer points the webhook destination at.
//!
//! ## Our signing scheme (version `v1`)
//! Every delivery carries two headers:
//! * `X-Dataout-Timestamp`: Unix seconds when the request was signed;
//! * `X-Dataout-Signature`: `v1=<hex>` where `<hex>` is the lowercase hex of
//!   HMAC-SHA256 with the shared secret as key over the bytes
//!   `<timestamp> "." <raw body>`. Several comma-separated `v1=` values may
//!   be sent (secret rotation); one valid signature is enough.
//!
//! A receiver recomputes the MAC over the raw body (never re-serialised
//! JSON), compares in constant time and refuses timestamps more than
//! `tolerance` (default 5 minutes) away from its clock, so a captured
//! request cannot be replayed later.
//!
//! ## Body
//! `{"export": "...", "destination": "...", "ops": [ ... ]}` as JSON. An op
//! with `"type": "event"` is an event payload and must carry a non-empty
//! string `event_id` and `event_name` and an RFC 3339 UTC `event_time`
//! (`YYYY-MM-DDTHH:MM:SS[.fff]Z`).
//!
//! ## Answers
//! bad or missing signature or stale timestamp → 401; body over `max_body`
//! (default 1 MiB) → 413; content type not JSON → 415; malformed JSON, not
//! the shape above, or one malformed event payload → 400 (the whole
//! delivery, as a strict receiver would); otherwise 200
//! `{"status":"ok","received":<ops>}` and the delivery is recorded.
//! [`WebhookState::fail_next`] injects failures. [`WebhookState::events`]
//! lists the event payloads received, redeliveries included, so a test can
//! count each `event_id` exactly once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::RunningSim;

pub const TIMESTAMP_HEADER: &str = "X-Dataout-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Dataout-Signature";

#[derive(Clone, Debug)]
pub struct WebhookSimConfig {
    pub secret: String,
    /// How far the signed timestamp may be from the receiver's clock.
    pub tolerance: Duration,
    pub max_body: usize,
}

impl Default for WebhookSimConfig {
    fn default() -> Self {
        Self {
            secret: "test-webhook-secret".to_string(),
            tolerance: Duration::from_secs(300),
            max_body: 1024 * 1024,
        }
    }
}

/// One accepted delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedDelivery {
    pub path: String,
    pub timestamp: i64,
    pub body: Value,
}

impl ReceivedDelivery {
    pub fn ops(&self) -> &[Value] {
        self.body["ops"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookCounters {
    pub requests: u64,
    /// Requests answered with a failure `fail_next` queued.
    pub injected: u64,
    pub accepted: u64,
    pub unauthorized: u64,
}

#[derive(Default)]
struct Inner {
    deliveries: Vec<ReceivedDelivery>,
    counters: WebhookCounters,
    fail_next: VecDeque<u16>,
}

pub struct WebhookState {
    config: WebhookSimConfig,
    inner: Mutex<Inner>,
}

impl WebhookState {
    pub fn new(config: WebhookSimConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &WebhookSimConfig {
        &self.config
    }

    /// Answer the next `n` requests with `status`, before any check.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.lock().fail_next.extend(std::iter::repeat_n(status, n));
    }

    pub fn deliveries(&self) -> Vec<ReceivedDelivery> {
        self.lock().deliveries.clone()
    }

    /// Every op of every accepted delivery, in arrival order.
    pub fn ops(&self) -> Vec<Value> {
        self.lock()
            .deliveries
            .iter()
            .flat_map(|d| d.ops().to_vec())
            .collect()
    }

    pub fn counters(&self) -> WebhookCounters {
        self.lock().counters
    }

    /// Every event payload (`"type": "event"` op) of every accepted
    /// delivery, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.ops()
            .into_iter()
            .filter(|op| op["type"] == EVENT_TYPE)
            .collect()
    }
}

/// The `type` of an event payload op.
pub const EVENT_TYPE: &str = "event";

/// `YYYY-MM-DDTHH:MM:SS`, optional fraction, then `Z`: RFC 3339 in UTC.
fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let head = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19);
    let tail = match b.get(19..) {
        Some([b'Z']) => true,
        Some([b'.', rest @ ..]) => {
            rest.len() >= 2
                && rest.last() == Some(&b'Z')
                && rest[..rest.len() - 1].iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    head && tail
}

/// Why an event payload op is malformed, if it is.
fn event_problem(op: &Value) -> Option<String> {
    if op["type"] != EVENT_TYPE {
        return None;
    }
    for key in ["event_id", "event_name"] {
        if op[key].as_str().is_none_or(|s| s.trim().is_empty()) {
            return Some(format!("event payload without a string `{key}`"));
        }
    }
    if !op["event_time"].as_str().is_some_and(is_rfc3339_utc) {
        return Some("event payload `event_time` is not RFC 3339 UTC".to_string());
    }
    None
}

/// Lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"`: the `v1` signature.
pub fn sign_v1(secret: &str, timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac_for(secret, timestamp, body).finalize().into_bytes())
}

fn mac_for(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; the error branch cannot happen, and an
    // empty key is still a valid (if useless) key.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a signature check failed (the sim answers 401 for all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    MissingTimestamp,
    StaleTimestamp,
    MissingSignature,
    Mismatch,
}

/// Check `v1` signature headers against `body` at `now` (Unix seconds).
pub fn verify_v1(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let ts: i64 = headers
        .get(TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or(SignatureError::MissingTimestamp)?;
    if now.abs_diff(ts) > tolerance.as_secs() {
        return Err(SignatureError::StaleTimestamp);
    }
    let header = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(SignatureError::MissingSignature)?;
    let candidates: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h.trim().to_ascii_lowercase()).ok())
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    let valid = candidates
        .iter()
        .any(|sig| mac_for(secret, ts, body).verify_slice(sig).is_ok());
    if valid {
        Ok(ts)
    } else {
        Err(SignatureError::Mismatch)
    }
}

pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .fallback(post(receive))
        // The sim checks `max_body` itself (413); this only caps memory.
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state)
}

/// Serve a webhook receiver on 127.0.0.1; it accepts POSTs on any path.
pub async fn start(config: WebhookSimConfig) -> anyhow::Result<(RunningSim, Arc<WebhookState>)> {
    let state = Arc::new(WebhookState::new(config));
    let running = crate::serve(router(state.clone())).await?;
    Ok((running, state))
}

fn answer(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"status": "error", "error": error}))).into_response()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn receive(
    State(state): State<Arc<WebhookState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let injected = {
        let mut inner = state.lock();
        inner.counters.requests += 1;
        inner.fail_next.pop_front()
    };
    if let Some(code) = injected {
        state.lock().counters.injected += 1;
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return answer(status, "injected failure");
    }
    if body.len() > state.config.max_body {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    let cfg = &state.config;
    let ts = match verify_v1(&cfg.secret, &headers, &body, unix_now(), cfg.tolerance) {
        Ok(ts) => ts,
        Err(e) => {
            state.lock().counters.unauthorized += 1;
            return answer(StatusCode::UNAUTHORIZED, &format!("signature: {e:?}"));
        }
    };
    let json_content = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json_content {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}")),
    };
    let shape_ok = parsed["export"].is_string()
        && parsed["destination"].is_string()
        && parsed["ops"].is_array();
    if !shape_ok {
        return answer(
            StatusCode::BAD_REQUEST,
            "expected {\"export\":..,\"destination\":..,\"ops\":[..]}",
        );
    }
    let problem = parsed["ops"]
        .as_array()
        .and_then(|ops| ops.iter().find_map(event_problem));
    if let Some(problem) = problem {
        return answer(StatusCode::BAD_REQUEST, &problem);
    }
    let delivery = ReceivedDelivery {
        path: uri.path().to_string(),
        timestamp: ts,
        body: parsed,
    };
    let received = delivery.ops().len();
    let mut inner = state.lock();
    inner.counters.accepted += 1;
    inner.deliveries.push(delivery);
    Json(json!({"status": "ok", "received": received})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post_signed(base: &str, secret: &str, ts: i64, body: &[u8]) -> anyhow::Result<u16> {
        let sig = sign_v1(secret, ts, body);
        let resp = reqwest::Client::new()
            .post(format!("{base}/hooks/in"))
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, format!("v1={sig}"))
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        Ok(resp.status().as_u16())
    }

    fn body() -> Vec<u8> {
        br#"{"export":"e","destination":"d","ops":[{"op":"add"}]}"#.to_vec()
    }

    #[tokio::test]
    async fn signed_delivery_is_recorded() -> anyhow::Result<()> {
        let (sim, state) = start(WebhookSimConfig::default()).await?;
        let status = post_signed(&sim.base_url, "test-webhook-secret", unix_now(), &body()).await?;
        assert_eq!(status, 200);
        let d = state.deliveries();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "/hooks/in");
        assert_eq!(state.ops().len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn wrong_secret_stale_timestamp_and_missing_headers_are_401() -> anyhow::Result<()> {
        let (sim, state) = start(WebhookSimConfig::default()).await?;
        assert_eq!(
            post_signed(&sim.base_url, "other", unix_now(), &body()).await?,
            401
        );
        let stale = unix_now() - 600;
        assert_eq!(
            post_signed(&sim.base_url, "test-webhook-secret", stale, &body()).await?,
            401
        );
        let resp = reqwest::Client::new()
            .post(format!("{}/x", sim.base_url))
            .header("Content-Type", "application/json")
            .body(body())
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 401);
        assert!(state.deliveries().is_empty());
        assert_eq!(state.counters().unauthorized, 3);
        Ok(())
    }

    #[tokio::test]
    async fn malformed_json_is_400_and_oversized_body_is_413() -> anyhow::Result<()> {
        let (sim, state) = start(WebhookSimConfig {
            max_body: 100,
            ..Default::default()
        })
        .await?;
        let secret = "test-webhook-secret";
        assert_eq!(
            post_signed(&sim.base_url, secret, unix_now(), b"{\"ops\":").await?,
            400
        );
        let big = format!(
            r#"{{"export":"e","destination":"d","ops":["{}"]}}"#,
            "x".repeat(200)
        );
        assert_eq!(
            post_signed(&sim.base_url, secret, unix_now(), big.as_bytes()).await?,
            413
        );
        state.fail_next(1, 503);
        assert_eq!(
            post_signed(&sim.base_url, secret, unix_now(), &body()).await?,
            503
        );
        assert_eq!(
            post_signed(&sim.base_url, secret, unix_now(), &body()).await?,
            200
        );
        Ok(())
    }

    #[tokio::test]
    async fn event_payloads_are_recorded_and_a_malformed_one_refuses_the_delivery(
    ) -> anyhow::Result<()> {
        let (sim, state) = start(WebhookSimConfig::default()).await?;
        let secret = "test-webhook-secret";
        let good = json!({"export": "e", "destination": "d", "ops": [
            {"type": "event", "event_id": "ev1", "event_name": "email.opened",
             "event_time": "2026-12-01T09:30:00.000Z"},
            {"op": "add"},
        ]});
        let body = serde_json::to_vec(&good)?;
        assert_eq!(
            post_signed(&sim.base_url, secret, unix_now(), &body).await?,
            200
        );
        for bad_op in [
            json!({"type": "event", "event_name": "email.opened", "event_time": "2026-12-01T09:30:00Z"}),
            json!({"type": "event", "event_id": "ev2", "event_name": "", "event_time": "2026-12-01T09:30:00Z"}),
            json!({"type": "event", "event_id": "ev2", "event_name": "x", "event_time": "2026-12-01 09:30:00"}),
            json!({"type": "event", "event_id": "ev2", "event_name": "x", "event_time": 1764581400}),
        ] {
            let body =
                serde_json::to_vec(&json!({"export": "e", "destination": "d", "ops": [bad_op]}))?;
            assert_eq!(
                post_signed(&sim.base_url, secret, unix_now(), &body).await?,
                400
            );
        }
        let events = state.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["event_id"], "ev1");
        assert_eq!(state.ops().len(), 2);
        Ok(())
    }

    #[test]
    fn rfc3339_utc_times_are_recognised() {
        assert!(is_rfc3339_utc("2026-12-01T09:30:00Z"));
        assert!(is_rfc3339_utc("2026-12-01T09:30:00.123Z"));
        assert!(!is_rfc3339_utc("2026-12-01T09:30:00+01:00"));
        assert!(!is_rfc3339_utc("2026-12-01T09:30:00.Z"));
        assert!(!is_rfc3339_utc("2026-12-01"));
    }

    #[test]
    fn rotated_signatures_accept_any_valid_one() -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        let ts = 1_700_000_000;
        let good = sign_v1("s", ts, b"{}");
        headers.insert(TIMESTAMP_HEADER, ts.to_string().parse()?);
        headers.insert(SIGNATURE_HEADER, format!("v1=deadbeef, v1={good}").parse()?);
        let tol = Duration::from_secs(300);
        assert_eq!(verify_v1("s", &headers, b"{}", ts + 10, tol), Ok(ts));
        assert_eq!(
            verify_v1("s", &headers, b"{ }", ts, tol),
            Err(SignatureError::Mismatch)
        );
        Ok(())
    }
}
