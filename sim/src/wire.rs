//! The wire log shared by the simulators: every exchange kept as it crossed
//! the wire (method, path, query, headers, bodies, status) while a test has
//! recording on, so contract tests can check both sides of each exchange.
//! A simulator holds a [`WireLog`] and layers [`record`] over its router.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::Response;

/// One HTTP exchange as it crossed the wire: contract tests check both
/// sides of it.
#[derive(Clone, Debug)]
pub struct WireExchange {
    pub method: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Request headers, names lower-cased (the authorization value is kept
    /// as `Bearer …` only, a CleverTap passcode as `…`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub response_content_type: Option<String>,
    /// Response headers, names lower-cased.
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
}

impl WireExchange {
    /// A response header's value, if the answer carried it.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The exchanges kept while recording is on; cheap to clone.
#[derive(Clone, Default)]
pub struct WireLog {
    kept: Arc<Mutex<Option<Vec<WireExchange>>>>,
}

impl WireLog {
    /// Keep (or stop keeping) every exchange; turning it on starts afresh.
    pub fn record(&self, on: bool) {
        *self.lock() = on.then(Vec::new);
    }

    /// The exchanges kept since recording began.
    pub fn exchanges(&self) -> Vec<WireExchange> {
        self.lock().clone().unwrap_or_default()
    }

    /// Whether exchanges are being kept.
    pub fn is_recording(&self) -> bool {
        self.lock().is_some()
    }

    fn push(&self, exchange: WireExchange) {
        if let Some(kept) = self.lock().as_mut() {
            kept.push(exchange);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<WireExchange>>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Largest body a recorded exchange keeps (a full request is 10,000 rows).
const WIRE_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Headers whose value is a credential and is never kept.
const SECRET_HEADERS: &[&str] = &["x-clevertap-passcode"];

fn header_pairs(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let v = v.to_str().unwrap_or("");
            let v = if k == "authorization" {
                v.split_whitespace().next().unwrap_or("").to_string() + " …"
            } else if SECRET_HEADERS.contains(&k.as_str()) {
                "…".to_string()
            } else {
                v.to_string()
            };
            (k.as_str().to_ascii_lowercase(), v)
        })
        .collect()
}

/// Middleware: keep the exchange when recording is on.
pub async fn record(
    State(log): State<WireLog>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !log.is_recording() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, WIRE_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let mut exchange = WireExchange {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: header_pairs(&parts.headers),
        body: body.to_vec(),
        status: 0,
        response_content_type: None,
        response_headers: Vec::new(),
        response_body: Vec::new(),
    };
    let response = next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(body),
        ))
        .await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, WIRE_BODY_LIMIT)
        .await
        .unwrap_or_default();
    exchange.status = parts.status.as_u16();
    exchange.response_content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    exchange.response_headers = header_pairs(&parts.headers);
    exchange.response_body = body.to_vec();
    log.push(exchange);
    Response::from_parts(parts, axum::body::Body::from(body))
}
