//! Graph plumbing of the Meta simulator: parameters, errors, token and
//! version checks, the quota and its usage header, and the request log.

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde_json::{json, Map, Value};

use super::{EditOp, MetaFault, MetaRequest, MetaSim, MetaState};

/// A Graph error answer.
pub(super) struct GraphError {
    /// `estimated_time_to_regain_access` (minutes) to report, on rate limits.
    pub regain_minutes: Option<u64>,
    pub status: StatusCode,
    pub code: i64,
    pub subcode: Option<i64>,
    pub kind: &'static str,
    pub message: String,
    /// `error_user_title` and `error_user_msg`: what Meta tells a person
    /// (boxed: errors travel in `Result`s).
    pub user: Option<Box<(String, String)>>,
    /// `is_transient`: Meta's own word that a retry may succeed.
    pub transient: bool,
}

impl GraphError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        GraphError {
            regain_minutes: None,
            status: StatusCode::BAD_REQUEST,
            code,
            subcode: None,
            kind: "OAuthException",
            message: message.into(),
            user: None,
            transient: false,
        }
    }
    pub fn param(message: impl Into<String>) -> Self {
        GraphError::new(100, format!("(#100) {}", message.into()))
    }
    pub fn subcode(mut self, subcode: i64) -> Self {
        self.subcode = Some(subcode);
        self
    }
    fn into_response(self, trace: u64) -> Response {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": format!("Asim{trace:08x}"),
        });
        if let (Some(sub), Some(obj)) = (self.subcode, error.as_object_mut()) {
            obj.insert("error_subcode".into(), json!(sub));
        }
        if let Some(obj) = error.as_object_mut() {
            if let Some(user) = self.user {
                let (title, msg) = *user;
                obj.insert("error_user_title".into(), json!(title));
                obj.insert("error_user_msg".into(), json!(msg));
            }
            obj.insert("is_transient".into(), json!(self.transient));
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

fn fault_error(fault: MetaFault) -> Option<GraphError> {
    match fault {
        MetaFault::AudienceRateLimit => Some(rate_limited(2)),
        MetaFault::AudienceRateLimitFor { minutes } => Some(rate_limited(minutes)),
        MetaFault::UserRateLimit => Some(GraphError {
            transient: true,
            ..GraphError::new(17, "(#17) User request limit reached")
        }),
        MetaFault::Transient => Some(GraphError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            transient: true,
            ..GraphError::new(
                2,
                "An unexpected error has occurred. Please retry your request later.",
            )
        }),
        MetaFault::ServerError => None,
    }
}

fn rate_limited(minutes: u64) -> GraphError {
    GraphError {
        regain_minutes: Some(minutes),
        transient: true,
        ..GraphError::new(
            80003,
            "(#80003) There have been too many calls to this ad-account. Wait a bit and try again.",
        )
    }
}

/// Parameters of a Graph call, merged from query string and body.
pub(super) struct Params {
    map: Map<String, Value>,
}

impl Params {
    pub async fn read(req: Request) -> Result<(HeaderMap, Params), GraphError> {
        let headers = req.headers().clone();
        let mut map = Map::new();
        if let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(req.uri()) {
            for (k, v) in pairs {
                map.insert(k, Value::String(v));
            }
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if req.method() == Method::GET {
            return Ok((headers, Params { map }));
        }
        if content_type.starts_with("application/x-www-form-urlencoded") {
            let Form(pairs) = Form::<Vec<(String, String)>>::from_request(req, &())
                .await
                .map_err(|e| GraphError::param(format!("unreadable form body: {e}")))?;
            for (k, v) in pairs {
                map.insert(k, Value::String(v));
            }
        } else {
            let body = Bytes::from_request(req, &())
                .await
                .map_err(|e| GraphError::param(format!("unreadable body: {e}")))?;
            if !body.iter().all(u8::is_ascii_whitespace) {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(Value::Object(obj)) => map.extend(obj),
                    _ => return Err(GraphError::param("the body is not a JSON object")),
                }
            }
        }
        Ok((headers, Params { map }))
    }

    /// Refuse a parameter the edge does not take (Graph checks its
    /// parameters against the edge's definition).
    pub fn only(&self, allowed: &[&str]) -> Result<(), GraphError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(GraphError::param(format!(
                "Param {k} is not a valid parameter of this edge"
            ))),
            None => Ok(()),
        }
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(Value::as_str)
    }

    /// A parameter that may be given as JSON or as JSON text.
    pub fn json(&self, name: &str) -> Result<Option<Value>, GraphError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => serde_json::from_str(text)
                .map(Some)
                .map_err(|_| GraphError::param(format!("param {name} must be JSON"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }
}

/// The keys of a JSON object parameter `name` outside `allowed`: refused.
pub(super) fn only_keys(name: &str, value: &Value, allowed: &[&str]) -> Result<(), GraphError> {
    match value
        .as_object()
        .and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())))
    {
        Some(k) => Err(GraphError::param(format!(
            "Param {name}[{k}] is not a valid field"
        ))),
        None => Ok(()),
    }
}

pub(super) fn check_version(state: &MetaState, version: &str) -> Result<(), GraphError> {
    let major = version
        .strip_prefix('v')
        .and_then(|rest| rest.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| GraphError::new(2500, format!("Unknown path components: /{version}")))?;
    if major < state.config.min_version {
        return Err(GraphError::new(
            2635,
            format!("(#2635) You are calling a deprecated version of the Ads API ({version}). Please update to the latest version."),
        ));
    }
    Ok(())
}

pub(super) fn check_token(
    state: &MetaState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(), GraphError> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        });
    let token = params.str("access_token").or(from_header);
    match token {
        Some(t) if t == state.config.access_token && state.token_expired => Err(GraphError::new(
            190,
            "Error validating access token: Session has expired.",
        )
        .subcode(463)),
        Some(t) if t == state.config.access_token => Ok(()),
        Some(_) => Err(GraphError::new(
            190,
            "Invalid OAuth access token - Cannot parse access token",
        )),
        None => Err(GraphError::new(
            190,
            "An active access token must be used to query information.",
        )),
    }
}

pub(super) fn unknown_object(node: &str) -> GraphError {
    GraphError {
        kind: "GraphMethodException",
        ..GraphError::param(format!(
            "Unsupported request. Object with ID '{node}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"
        ))
        .subcode(33)
    }
}

/// Any path or verb Graph does not serve: code 100 subcode 33.
pub(super) async fn unsupported(method: Method, uri: axum::http::Uri) -> Response {
    let verb = method.as_str().to_ascii_lowercase();
    let error = GraphError {
        kind: "GraphMethodException",
        ..GraphError::new(
            100,
            format!(
                "Unsupported {verb} request. Object at '{}' does not exist, cannot be loaded due to missing permissions, or does not support this operation",
                uri.path()
            ),
        )
        .subcode(33)
    };
    error.into_response(0)
}

/// What the log keeps of a request besides its answer.
#[derive(Default)]
pub(super) struct RowInfo {
    pub rows: usize,
    pub session_id: Option<i64>,
    pub batch_seq: Option<u64>,
    pub last_batch_flag: Option<bool>,
    pub op: Option<EditOp>,
    pub audience: Option<String>,
    pub schema: Vec<String>,
    pub data: Vec<Vec<String>>,
}

/// `X-Business-Use-Case-Usage` of the ad account.
fn usage_header(state: &mut MetaState, regain_override: Option<u64>) -> Option<Value> {
    let account = state.config.ad_account_id.clone();
    let (pct, regain) = match state.quota_limit() {
        Some(limit) => {
            let calls = state.quota_window().calls;
            let pct = (calls.saturating_mul(100) / limit.max(1)).min(100);
            let regain = if calls >= limit {
                state.minutes_to_regain()
            } else {
                0
            };
            (pct, regain)
        }
        None => (0, 0),
    };
    let regain = regain_override.unwrap_or(regain);
    let pct = if regain_override.is_some() { 100 } else { pct };
    let tier = state.config.access_tier.header_name();
    Some(json!({ account: [{
        "type": "custom_audience",
        "call_count": pct,
        "total_cputime": pct,
        "total_time": pct,
        "estimated_time_to_regain_access": regain,
        "ads_api_access_tier": tier,
    }]}))
}

/// Spend one call of the quota, or refuse with 80003.
fn spend_quota(state: &mut MetaState) -> Result<(), GraphError> {
    let Some(limit) = state.quota_limit() else {
        return Ok(());
    };
    if state.quota_window().calls >= limit {
        let minutes = state.minutes_to_regain();
        return Err(rate_limited(minutes));
    }
    state.quota_window().calls += 1;
    Ok(())
}

/// Record and answer one request: runs `serve` unless a fault is queued or
/// the quota is spent. Every answer carries the usage header.
pub(super) fn answer(
    sim: &MetaSim,
    method: &str,
    path: String,
    info: RowInfo,
    serve: impl FnOnce(&mut MetaState) -> Result<Value, GraphError>,
) -> Response {
    let mut state = sim.lock();
    state.settle();
    let trace = state.requests.len() as u64 + 1;
    let result = match state.faults.pop_front().flatten() {
        Some(fault) => Err(fault_error(fault)),
        None => match spend_quota(&mut state) {
            Ok(()) => serve(&mut state).map_err(Some),
            Err(e) => Err(Some(e)),
        },
    };
    let mut regain_override = None;
    let (status, error_code, error_subcode, mut response) = match result {
        Ok(body) => (
            200,
            None,
            None,
            (StatusCode::OK, Json(body)).into_response(),
        ),
        Err(Some(err)) => {
            if err.code == 80003 {
                regain_override = err.regain_minutes;
            }
            (
                err.status.as_u16(),
                Some(err.code),
                err.subcode,
                err.into_response(trace),
            )
        }
        Err(None) => (
            500,
            None,
            None,
            (StatusCode::INTERNAL_SERVER_ERROR, "upstream connect error").into_response(),
        ),
    };
    if let Some(usage) = usage_header(&mut state, regain_override) {
        if let Ok(value) = header::HeaderValue::from_str(&usage.to_string()) {
            response
                .headers_mut()
                .insert("x-business-use-case-usage", value);
        }
    }
    state.requests.push(MetaRequest {
        method: method.to_string(),
        path,
        status,
        error_code,
        error_subcode,
        rows: info.rows,
        session_id: info.session_id,
        batch_seq: info.batch_seq,
        last_batch_flag: info.last_batch_flag,
        op: info.op,
        audience: info.audience,
        schema: info.schema,
        data: info.data,
    });
    response
}
