//! Conversions between the Lambda HTTP event (Function URL or API Gateway
//! HTTP API, both payload format 2.0) and the handler's plain types.

use std::collections::BTreeMap;

use dataout::pipeline::intake::IntakeResponse;
use lambda_http::http::header::{HeaderValue, CONTENT_TYPE};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::handler::HttpRequest;

/// The request the handler sees. Header names come lowercased; a header
/// whose value is not text is left out (no signature header is binary).
/// A repeated header keeps its first value.
pub fn http_request(req: Request) -> HttpRequest {
    let (parts, body) = req.into_parts();
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        if let Ok(v) = value.to_str() {
            headers
                .entry(name.as_str().to_ascii_lowercase())
                .or_insert_with(|| v.to_string());
        }
    }
    HttpRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        headers,
        // lambda_http has already decoded an `isBase64Encoded` body.
        body: body.to_vec(),
    }
}

/// The HTTP answer, JSON. Infallible: a status code out of range (the
/// pipeline never makes one) becomes 500.
pub fn http_response(resp: &IntakeResponse) -> Response<Body> {
    let mut out = Response::new(Body::Text(resp.body.to_string()));
    *out.status_mut() =
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out
}
