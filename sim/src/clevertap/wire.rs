//! The CleverTap simulator's wire log: every exchange kept as it crossed the
//! wire (method, path, query, headers, bodies, status) while a test has
//! recording on, so the contract test can check both sides of each one.
//! Passcodes are never kept.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::ClevertapState;

/// One HTTP exchange with the CleverTap simulator.
#[derive(Clone, Debug)]
pub struct WireExchange {
    pub method: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Request headers, names lower-cased; the passcode's value is `…`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub response_content_type: Option<String>,
    pub response_body: Vec<u8>,
}

/// Largest body kept (an upload is at most 1000 records).
const WIRE_BODY_LIMIT: usize = 64 * 1024 * 1024;

impl ClevertapState {
    /// Keep (or stop keeping) every exchange as it crossed the wire.
    pub fn record_wire(&self, on: bool) {
        self.lock().wire = on.then(Vec::new);
    }

    /// The exchanges kept since recording began.
    pub fn wire(&self) -> Vec<WireExchange> {
        self.lock().wire.clone().unwrap_or_default()
    }
}

pub(super) async fn record(
    State(state): State<Arc<ClevertapState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.lock().wire.is_none() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, WIRE_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().to_ascii_lowercase();
            let value = if name == "x-clevertap-passcode" {
                "…".to_string()
            } else {
                v.to_str().unwrap_or("").to_string()
            };
            (name, value)
        })
        .collect();
    let mut exchange = WireExchange {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body: body.to_vec(),
        status: 0,
        response_content_type: None,
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
    exchange.response_body = body.to_vec();
    if let Some(wire) = state.lock().wire.as_mut() {
        wire.push(exchange);
    }
    Response::from_parts(parts, axum::body::Body::from(body))
}
