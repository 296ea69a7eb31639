//! The HTTP front: the App API routes, the gate (key, rate limit, injected
//! failures) and the answers in the App API's shapes.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{
    endpoint, lock, CioSimConfig, CioSimHandle, CioWorkspace, Inner, SimPerson, SimSegment,
    MAX_BULK_IDS,
};

/// The App API routes, for callers that serve them themselves.
pub fn router(handle: CioSimHandle) -> Router {
    Router::new()
        .route("/v1/segments", get(list_segments))
        .route("/v1/segments/{id}", get(get_segment))
        .route("/v1/segments/{id}/customer_count", get(customer_count))
        .route("/v1/segments/{id}/membership", get(membership))
        .route("/v1/customers/attributes", post(bulk_attributes))
        .route("/v1/customers/{id}/attributes", get(customer_attributes))
        // Anything else, another verb on a known path included, is not a
        // route of the App API here.
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .method_not_allowed_fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::from_fn_with_state(
            handle.inner.wire.clone(),
            crate::wire::record,
        ))
        .with_state(handle)
}

/// An error answer in the App API's error shape.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    detail: String,
    retry_after: Option<u64>,
}

fn error(status: StatusCode, detail: impl Into<String>) -> Refusal {
    Refusal {
        status,
        detail: detail.into(),
        retry_after: None,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({
            "errors": [{ "detail": self.detail, "status": self.status.as_u16().to_string() }]
        });
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

type Answer = Result<Response, Refusal>;

impl Inner {
    /// Count, authenticate, rate-limit and inject failures, in that order.
    fn gate(&self, headers: &HeaderMap, endpoint: &'static str) -> Result<(), Refusal> {
        *lock(&self.counters).requests.entry(endpoint).or_default() += 1;
        lock(&self.arrivals).push(Instant::now());

        let expected = format!("Bearer {}", self.config.api_key);
        let authorised = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected);
        if !authorised {
            lock(&self.counters).unauthorized += 1;
            return Err(error(StatusCode::UNAUTHORIZED, "unauthorized"));
        }

        if self.config.rate_limit > 0 {
            let rate = f64::from(self.config.rate_limit);
            let cap = f64::from(self.config.burst.unwrap_or(self.config.rate_limit).max(1));
            let mut b = lock(&self.bucket);
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(cap);
            b.last = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
            } else {
                drop(b);
                let mut c = lock(&self.counters);
                c.rate_limited += 1;
                c.status_429 += 1;
                return Err(self.too_many());
            }
        }

        let injected = lock(&self.failures).pop_front();
        if let Some(status) = injected {
            let mut c = lock(&self.counters);
            c.injected += 1;
            if status == 429 {
                c.status_429 += 1;
                return Err(self.too_many());
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(error(status, "injected failure"));
        }
        Ok(())
    }

    fn too_many(&self) -> Refusal {
        Refusal {
            retry_after: self.config.retry_after_secs,
            ..error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
        }
    }
}

fn segment_json(id: u64, s: &SimSegment) -> Value {
    json!({
        "id": id,
        "deduplicate_id": format!("{id}:1700000000"),
        "name": s.name,
        "description": s.description,
        "state": "finished",
        "progress": null,
        "type": "dynamic",
        "tags": [],
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_000,
    })
}

fn parse_segment(raw: &str) -> Result<u64, Refusal> {
    // Segment ids are integers: anything else names no segment.
    raw.parse::<u64>()
        .map_err(|_| error(StatusCode::NOT_FOUND, "segment not found"))
}

async fn list_segments(State(h): State<CioSimHandle>, headers: HeaderMap) -> Answer {
    h.inner.gate(&headers, endpoint::LIST_SEGMENTS)?;
    let ws = lock(&h.inner.workspace);
    let segments: Vec<Value> = ws
        .segments
        .iter()
        .map(|(id, s)| segment_json(*id, s))
        .collect();
    Ok(Json(json!({ "segments": segments })).into_response())
}

async fn get_segment(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    h.inner.gate(&headers, endpoint::GET_SEGMENT)?;
    let id = parse_segment(&id)?;
    let ws = lock(&h.inner.workspace);
    let segment = ws
        .segments
        .get(&id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "segment not found"))?;
    Ok(Json(json!({ "segment": segment_json(id, segment) })).into_response())
}

async fn customer_count(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    h.inner.gate(&headers, endpoint::CUSTOMER_COUNT)?;
    let id = parse_segment(&id)?;
    let ws = lock(&h.inner.workspace);
    let segment = ws
        .segments
        .get(&id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "segment not found"))?;
    Ok(Json(json!({ "segment_id": id, "count": segment.members.len() })).into_response())
}

fn encode_token(segment: u64, after: usize) -> String {
    B64.encode(format!("{{\"s\":{segment},\"after\":{after}}}"))
}

fn decode_token(segment: u64, token: &str) -> Option<usize> {
    let raw = B64.decode(token).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    if v.get("s")?.as_u64()? != segment {
        return None;
    }
    usize::try_from(v.get("after")?.as_u64()?).ok()
}

async fn membership(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let inner = &h.inner;
    inner.gate(&headers, endpoint::MEMBERSHIP)?;
    let id = parse_segment(&id)?;
    let max = inner.config.max_page_limit;
    let limit = match q.get("limit").map(|l| l.parse::<u32>()) {
        None => inner.config.default_page_limit,
        Some(Ok(l)) if (1..=max).contains(&l) => l,
        Some(_) => {
            let msg = format!("limit must be between 1 and {max}");
            return Err(error(StatusCode::BAD_REQUEST, msg));
        }
    };
    let after = match q.get("start").filter(|s| !s.is_empty()) {
        None => None,
        Some(token) => Some(
            decode_token(id, token)
                .ok_or_else(|| error(StatusCode::BAD_REQUEST, "invalid start token"))?,
        ),
    };
    let ws = lock(&inner.workspace);
    let segment = ws
        .segments
        .get(&id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "segment not found"))?;
    let range = match after {
        Some(a) => segment.members.range(a + 1..),
        None => segment.members.range(0..),
    };
    let page: Vec<usize> = range.take(limit as usize).copied().collect();
    let more = page
        .last()
        .is_some_and(|last| segment.members.range(last + 1..).next().is_some());
    let next = match page.last() {
        Some(last) if more || inner.config.trailing_empty_page => encode_token(id, *last),
        _ => String::new(),
    };
    let mut ids = Vec::with_capacity(page.len());
    let mut identifiers = Vec::with_capacity(page.len());
    for p in page.iter().filter_map(|i| ws.people.get(*i)) {
        ids.push(Value::String(p.id.clone().unwrap_or_default()));
        identifiers.push(json!({ "id": p.id, "email": p.email, "cio_id": p.cio_id }));
    }
    drop(ws);
    lock(&inner.counters).page_limits.push(limit);
    Ok(Json(json!({ "ids": ids, "identifiers": identifiers, "next": next })).into_response())
}

fn customer_json(p: &SimPerson) -> Value {
    let mut attributes: Map<String, Value> = p
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    attributes.insert("cio_id".into(), Value::String(p.cio_id.clone()));
    if let Some(id) = &p.id {
        attributes.insert("id".into(), Value::String(id.clone()));
    }
    if let Some(email) = &p.email {
        attributes.insert("email".into(), Value::String(email.clone()));
    }
    attributes.insert(
        "_created_in_customerio_at".into(),
        Value::String(p.created_at.to_string()),
    );
    let timestamps: Map<String, Value> = attributes
        .keys()
        .map(|k| (k.clone(), Value::from(p.created_at)))
        .collect();
    json!({
        "id": p.id,
        "identifiers": { "id": p.id, "email": p.email, "cio_id": p.cio_id },
        "attributes": attributes,
        "timestamps": timestamps,
        "unsubscribed": p.unsubscribed,
        "devices": [],
    })
}

/// Resolve `key` under `id_type`; `Err` for an id type the workspace refuses.
fn find(
    config: &CioSimConfig,
    ws: &CioWorkspace,
    id_type: &str,
    key: &str,
) -> Result<Option<usize>, Refusal> {
    match id_type {
        "id" => Ok(ws.index_of_id(key)),
        "cio_id" => Ok(ws.index_of_cio_id(key)),
        "email" if config.email_lookup => Ok(ws.index_of_email(key)),
        "email" | "phone" => Err(error(
            StatusCode::BAD_REQUEST,
            "id_type not enabled in this workspace",
        )),
        _ => Err(error(StatusCode::BAD_REQUEST, "unknown id_type")),
    }
}

async fn bulk_attributes(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    let inner = &h.inner;
    inner.gate(&headers, endpoint::BULK_ATTRIBUTES)?;
    let id_type = q.get("id_type").map(String::as_str).unwrap_or("id");
    let body = serde_json::from_slice::<Value>(&body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "body must be JSON"))?;
    let ids = body
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "body needs an ids array"))?;
    if ids.is_empty() || ids.len() > MAX_BULK_IDS {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "ids must hold 1 to 100 entries",
        ));
    }
    let ws = lock(&inner.workspace);
    let mut customers = Vec::new();
    for raw in ids {
        let key = match raw {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(error(StatusCode::BAD_REQUEST, "ids must be strings")),
        };
        if let Some(p) = find(&inner.config, &ws, id_type, &key)?.and_then(|i| ws.people.get(i)) {
            customers.push(json!({ "customer": customer_json(p) }));
        }
    }
    drop(ws);
    lock(&inner.counters).bulk_batch_sizes.push(ids.len());
    Ok(Json(json!({ "customers": customers })).into_response())
}

async fn customer_attributes(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let inner = &h.inner;
    inner.gate(&headers, endpoint::CUSTOMER_ATTRIBUTES)?;
    let id_type = q.get("id_type").map(String::as_str).unwrap_or("id");
    let ws = lock(&inner.workspace);
    let person = find(&inner.config, &ws, id_type, &key)?
        .and_then(|i| ws.people.get(i))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "customer not found"))?;
    Ok(Json(json!({ "customer": customer_json(person) })).into_response())
}
