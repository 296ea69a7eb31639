//! The wire log: every exchange with the simulator as it crossed the wire
//! (method, path, query, headers, bodies, status), kept while a test has
//! recording on, so the contract test can check both sides of each one.

use axum::extract::State;
use axum::response::Response;

use super::{lock, CioSimHandle};

/// One HTTP exchange as it crossed the wire ([`CioSimHandle::record_wire`]).
#[derive(Clone, Debug)]
pub struct WireExchange {
    pub method: String,
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Request headers, names lower-cased; the authorization value keeps its
    /// scheme only (`Bearer …`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub response_content_type: Option<String>,
    pub response_body: Vec<u8>,
}

/// Largest body a recorded exchange keeps (a membership page of 30,000).
const WIRE_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub(super) async fn record(
    State(sim): State<CioSimHandle>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if lock(&sim.inner.wire).is_none() {
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
            let v = v.to_str().unwrap_or("");
            let v = if k == "authorization" {
                v.split_whitespace().next().unwrap_or("").to_string() + " …"
            } else {
                v.to_string()
            };
            (k.as_str().to_ascii_lowercase(), v)
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
    if let Some(wire) = lock(&sim.inner.wire).as_mut() {
        wire.push(exchange);
    }
    Response::from_parts(parts, axum::body::Body::from(body))
}
