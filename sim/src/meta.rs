//! Meta Custom Audiences simulator (Graph API, `API-CONTRACTS.md` §3a).
//!
//! Routes, under `/{version}` (e.g. `/v25.0`):
//! * `POST   /{v}/act_{ad_account}/customaudiences` creates an audience → `{id}`.
//! * `POST   /{v}/{audience_id}/users` adds rows; `DELETE` the same path removes.
//! * `POST   /{v}/{audience_id}/usersreplace` replaces the audience (session required).
//! * `GET    /{v}/{audience_id}?fields=approximate_count_lower_bound,approximate_count_upper_bound`.
//!
//! Graph takes its parameters from the query string, a form body or a JSON
//! body alike; the official SDKs send a DELETE's `payload` in the query string
//! and others (Segment) as a JSON body, so all three are accepted. `payload`
//! and `session` may be JSON objects or JSON text.
//!
//! Contract enforced: `access_token` (parameter, or `Authorization: Bearer` /
//! `OAuth`) must match, else code 190 (HTTP 400, as Graph answers it); an
//! unknown audience is code 100 subcode 33; the schema must use known keys;
//! every row has the schema's length; at most `max_rows` rows (10,000) else
//! code 100; hashed columns must be 64 lowercase hex characters or `""`. A row
//! with a bad cell is an *invalid entry*: counted in `num_invalid_entries`,
//! its bad cell listed in `invalid_entry_samples` (cell value → reason), and
//! not applied. A session's first request must carry `batch_seq` 1 (else 2650
//! subcode 1870147); a finished session takes no more batches.
//! An injected 80003 carries `X-Business-Use-Case-Usage` with
//! `estimated_time_to_regain_access` 2 (minutes), as Meta's rate limits do.
//!
//! Members are stored per audience as sets of `(schema key, value)` pairs;
//! `EMAIL_SHA256` is stored as `EMAIL`, `PHONE_SHA256` as `PHONE` and
//! `MOBILE_ADVERTISER_ID` as `MADID`. An add merges into a member sharing a
//! strong key (EMAIL, PHONE, EXTERN_ID, MADID); a remove drops every member
//! sharing a strong key with the row (or equal to it). Changes apply at once
//! (Meta takes up to 24 h).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Map, Value};

use crate::RunningSim;

/// The token the simulator accepts unless configured otherwise.
pub const DEFAULT_ACCESS_TOKEN: &str = "meta-sim-token";

/// Keys of the multi-key schema and the single-key schemas.
const MULTI_KEYS: &[&str] = &[
    "EXTERN_ID",
    "EMAIL",
    "PHONE",
    "GEN",
    "DOBY",
    "DOBM",
    "DOBD",
    "LN",
    "FN",
    "FI",
    "CT",
    "ST",
    "ZIP",
    "MADID",
    "COUNTRY",
    "LOOKALIKE_VALUE",
    "DATA_PROCESSING_OPTIONS",
];
const SINGLE_KEYS: &[&str] = &["EMAIL_SHA256", "PHONE_SHA256", "MOBILE_ADVERTISER_ID"];
/// Keys whose values Meta expects SHA-256 hashed.
const HASHED_KEYS: &[&str] = &[
    "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP", "COUNTRY",
];
/// Keys that identify a person on their own.
const STRONG_KEYS: &[&str] = &["EMAIL", "PHONE", "EXTERN_ID", "MADID"];

/// One audience member: `(schema key, value)` pairs.
pub type Member = BTreeSet<(String, String)>;

#[derive(Clone, Debug)]
pub struct MetaSimConfig {
    pub access_token: String,
    /// Oldest Graph major version served; older ones answer code 2635.
    pub min_version: u32,
    /// Most rows per request.
    pub max_rows: usize,
    /// Ad account (without `act_`) whose `customaudiences` edge is served.
    pub ad_account_id: String,
}

impl Default for MetaSimConfig {
    fn default() -> Self {
        MetaSimConfig {
            access_token: DEFAULT_ACCESS_TOKEN.to_string(),
            min_version: 20,
            max_rows: 10_000,
            ad_account_id: "1234567890".to_string(),
        }
    }
}

/// An injected failure, answered instead of the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaFault {
    /// Code 80003, too many custom-audience calls on the ad account (HTTP 400).
    AudienceRateLimit,
    /// Code 17, user request limit reached (HTTP 400).
    UserRateLimit,
    /// Code 2, temporary service issue (HTTP 503).
    Transient,
    /// HTTP 500 with a body that is not Graph JSON (a proxy failing).
    ServerError,
}

/// What the simulator saw of one request (for assertions on chunking and sessions).
#[derive(Clone, Debug, PartialEq)]
pub struct MetaRequest {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Graph error code of the answer, if it was an error.
    pub error_code: Option<i64>,
    pub rows: usize,
    pub session_id: Option<i64>,
    pub batch_seq: Option<u64>,
    pub last_batch_flag: Option<bool>,
}

#[derive(Default)]
struct Audience {
    name: String,
    members: Vec<Member>,
}

struct Session {
    audience: String,
    replace: bool,
    finished: bool,
    staged: Vec<Member>,
}

struct MetaState {
    config: MetaSimConfig,
    audiences: BTreeMap<String, Audience>,
    sessions: HashMap<i64, Session>,
    faults: VecDeque<MetaFault>,
    requests: Vec<MetaRequest>,
    next_id: u64,
}

/// Handle on a Meta simulator's state; cheap to clone.
#[derive(Clone)]
pub struct MetaSim {
    state: Arc<Mutex<MetaState>>,
}

impl MetaSim {
    pub fn new(config: MetaSimConfig) -> Self {
        MetaSim {
            state: Arc::new(Mutex::new(MetaState {
                config,
                audiences: BTreeMap::new(),
                sessions: HashMap::new(),
                faults: VecDeque::new(),
                requests: Vec::new(),
                next_id: 23_850_000_000_000,
            })),
        }
    }

    /// Serve a new simulator on 127.0.0.1; the handle reads and steers it.
    pub async fn start(config: MetaSimConfig) -> anyhow::Result<(RunningSim, MetaSim)> {
        let sim = MetaSim::new(config);
        let running = crate::serve(sim.router()).await?;
        Ok((running, sim))
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/{version}/{node}/users", post(users).delete(users))
            .route("/{version}/{node}/usersreplace", post(users_replace))
            .route("/{version}/{node}/customaudiences", post(create_audience))
            .route("/{version}/{node}", get(read_audience))
            .with_state(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, MetaState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Create an (empty) audience with a chosen id.
    pub fn create_audience(&self, id: &str) {
        self.lock().audiences.entry(id.to_string()).or_default();
    }

    pub fn members(&self, audience: &str) -> Vec<Member> {
        self.lock()
            .audiences
            .get(audience)
            .map(|a| a.members.clone())
            .unwrap_or_default()
    }

    pub fn member_count(&self, audience: &str) -> usize {
        self.lock()
            .audiences
            .get(audience)
            .map_or(0, |a| a.members.len())
    }

    /// Whether a member of `audience` carries `key` = `value` (e.g. `EMAIL`, a hash).
    pub fn has_member_with(&self, audience: &str, key: &str, value: &str) -> bool {
        let pair = (key.to_string(), value.to_string());
        self.lock()
            .audiences
            .get(audience)
            .is_some_and(|a| a.members.iter().any(|m| m.contains(&pair)))
    }

    /// Answer the next `n` requests with `fault` instead of serving them.
    pub fn fail_next(&self, n: usize, fault: MetaFault) {
        let mut state = self.lock();
        state.faults.extend(std::iter::repeat_n(fault, n));
    }

    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    pub fn requests(&self) -> Vec<MetaRequest> {
        self.lock().requests.clone()
    }
}

/// A Graph error answer.
struct GraphError {
    /// `X-Business-Use-Case-Usage` minutes to regain access, on rate limits.
    regain_minutes: Option<u64>,
    status: StatusCode,
    code: i64,
    subcode: Option<i64>,
    kind: &'static str,
    message: String,
}

impl GraphError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        GraphError {
            regain_minutes: None,
            status: StatusCode::BAD_REQUEST,
            code,
            subcode: None,
            kind: "OAuthException",
            message: message.into(),
        }
    }
    fn param(message: impl Into<String>) -> Self {
        GraphError::new(100, format!("(#100) {}", message.into()))
    }
    fn subcode(mut self, subcode: i64) -> Self {
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
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(minutes) = self.regain_minutes {
            let usage = json!({ "sim": [{
                "type": "CUSTOM_AUDIENCE",
                "call_count": 100,
                "total_cputime": 10,
                "total_time": 10,
                "estimated_time_to_regain_access": minutes,
            }]});
            if let Ok(value) = header::HeaderValue::from_str(&usage.to_string()) {
                response
                    .headers_mut()
                    .insert("x-business-use-case-usage", value);
            }
        }
        response
    }
}

fn fault_error(fault: MetaFault) -> Option<GraphError> {
    match fault {
        MetaFault::AudienceRateLimit => Some(GraphError {
            regain_minutes: Some(2),
            ..GraphError::new(
                80003,
                "(#80003) There have been too many calls to this ad-account. Wait a bit and try again.",
            )
        }),
        MetaFault::UserRateLimit => Some(GraphError::new(17, "(#17) User request limit reached")),
        MetaFault::Transient => Some(GraphError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..GraphError::new(
                2,
                "An unexpected error has occurred. Please retry your request later.",
            )
        }),
        MetaFault::ServerError => None,
    }
}

/// Parameters of a Graph call, merged from query string and body.
struct Params {
    map: Map<String, Value>,
}

impl Params {
    async fn read(req: Request) -> Result<(HeaderMap, Params), GraphError> {
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

    fn str(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(Value::as_str)
    }

    /// A parameter that may be given as JSON or as JSON text.
    fn json(&self, name: &str) -> Result<Option<Value>, GraphError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => serde_json::from_str(text)
                .map(Some)
                .map_err(|_| GraphError::param(format!("param {name} must be JSON"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }
}

fn check_version(config: &MetaSimConfig, version: &str) -> Result<(), GraphError> {
    let major = version
        .strip_prefix('v')
        .and_then(|rest| rest.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| GraphError::new(2500, format!("Unknown path components: /{version}")))?;
    if major < config.min_version {
        return Err(GraphError::new(
            2635,
            format!("(#2635) You are calling a deprecated version of the Ads API ({version})."),
        ));
    }
    Ok(())
}

fn check_token(
    config: &MetaSimConfig,
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
        Some(t) if t == config.access_token => Ok(()),
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

fn unknown_object(node: &str) -> GraphError {
    GraphError {
        kind: "GraphMethodException",
        ..GraphError::param(format!(
            "Unsupported request. Object with ID '{node}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"
        ))
        .subcode(33)
    }
}

/// Record and answer one request: runs `serve` unless a fault is queued.
fn answer(
    sim: &MetaSim,
    method: &str,
    path: String,
    info: RowInfo,
    serve: impl FnOnce(&mut MetaState) -> Result<Value, GraphError>,
) -> Response {
    let mut state = sim.lock();
    let trace = state.requests.len() as u64 + 1;
    let result = match state.faults.pop_front() {
        Some(fault) => Err(fault_error(fault)),
        None => serve(&mut state).map_err(Some),
    };
    let (status, error_code, response) = match result {
        Ok(body) => (200, None, (StatusCode::OK, Json(body)).into_response()),
        Err(Some(err)) => (
            err.status.as_u16(),
            Some(err.code),
            err.into_response(trace),
        ),
        Err(None) => (
            500,
            None,
            (StatusCode::INTERNAL_SERVER_ERROR, "upstream connect error").into_response(),
        ),
    };
    state.requests.push(MetaRequest {
        method: method.to_string(),
        path,
        status,
        error_code,
        rows: info.rows,
        session_id: info.session_id,
        batch_seq: info.batch_seq,
        last_batch_flag: info.last_batch_flag,
    });
    response
}

#[derive(Default)]
struct RowInfo {
    rows: usize,
    session_id: Option<i64>,
    batch_seq: Option<u64>,
    last_batch_flag: Option<bool>,
}

async fn users(
    State(sim): State<MetaSim>,
    Path((version, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    let remove = req.method() == Method::DELETE;
    let method = if remove { "DELETE" } else { "POST" };
    let mode = if remove { Mode::Remove } else { Mode::Add };
    edit(sim, version, node, req, method, "users", mode).await
}

async fn users_replace(
    State(sim): State<MetaSim>,
    Path((version, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    edit(
        sim,
        version,
        node,
        req,
        "POST",
        "usersreplace",
        Mode::Replace,
    )
    .await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Add,
    Remove,
    Replace,
}

async fn edit(
    sim: MetaSim,
    version: String,
    node: String,
    req: Request,
    method: &str,
    edge: &str,
    mode: Mode,
) -> Response {
    let path = format!("/{version}/{node}/{edge}");
    let read = Params::read(req).await;
    let (headers, params) = match read {
        Ok(ok) => ok,
        Err(err) => return answer(&sim, method, path, RowInfo::default(), |_| Err(err)),
    };
    let payload = params.json("payload");
    let session = params.json("session");
    let mut info = RowInfo::default();
    if let Ok(Some(p)) = &payload {
        info.rows = p.get("data").and_then(Value::as_array).map_or(0, Vec::len);
    }
    let parsed_session = match &session {
        Ok(Some(s)) => Some(parse_session(s)),
        _ => None,
    };
    if let Some(Ok(s)) = &parsed_session {
        info.session_id = Some(s.id);
        info.batch_seq = Some(s.batch_seq);
        info.last_batch_flag = Some(s.last);
    }
    answer(&sim, method, path, info, move |state| {
        check_version(&state.config, &version)?;
        check_token(&state.config, &headers, &params)?;
        if !state.audiences.contains_key(&node) {
            return Err(unknown_object(&node));
        }
        let payload =
            payload?.ok_or_else(|| GraphError::param("The parameter payload is required"))?;
        let session = match parsed_session {
            Some(s) => Some(s?),
            None => {
                session?;
                None
            }
        };
        if mode == Mode::Replace && session.is_none() {
            return Err(GraphError::param("The parameter session is required"));
        }
        let batch = parse_payload(&payload, state.config.max_rows)?;
        apply(state, &node, mode, session.as_ref(), &batch)?;
        state.next_id += 1;
        let session_id = session.as_ref().map_or(state.next_id as i64, |s| s.id);
        Ok(json!({
            "audience_id": node,
            "session_id": session_id.to_string(),
            "num_received": batch.received,
            "num_invalid_entries": batch.invalid,
            "invalid_entry_samples": batch.samples,
        }))
    })
}

struct SessionParams {
    id: i64,
    batch_seq: u64,
    last: bool,
}

fn int_field(v: &Value, name: &str) -> Option<i64> {
    match v.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn parse_session(v: &Value) -> Result<SessionParams, GraphError> {
    let id = int_field(v, "session_id")
        .ok_or_else(|| GraphError::param("session.session_id must be an int64"))?;
    let batch_seq = int_field(v, "batch_seq")
        .filter(|n| *n >= 1)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| GraphError::param("session.batch_seq must be an integer from 1"))?;
    let last = match v.get("last_batch_flag") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        None => false,
        Some(_) => {
            return Err(GraphError::param(
                "session.last_batch_flag must be a boolean",
            ))
        }
    };
    if v.get("estimated_num_total").is_some()
        && int_field(v, "estimated_num_total").is_none_or(|n| n < 0)
    {
        return Err(GraphError::param(
            "session.estimated_num_total must be a non-negative integer",
        ));
    }
    Ok(SessionParams {
        id,
        batch_seq,
        last,
    })
}

/// The valid rows of a payload, with Meta's invalid-entry accounting.
struct Batch {
    received: usize,
    invalid: usize,
    samples: Map<String, Value>,
    rows: Vec<Member>,
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn stored_key(key: &str) -> &str {
    match key {
        "EMAIL_SHA256" => "EMAIL",
        "PHONE_SHA256" => "PHONE",
        "MOBILE_ADVERTISER_ID" => "MADID",
        other => other,
    }
}

fn parse_payload(payload: &Value, max_rows: usize) -> Result<Batch, GraphError> {
    let schema: Vec<String> = match payload.get("schema") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(keys)) => keys
            .iter()
            .map(|k| k.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| GraphError::param("payload.schema must hold strings"))?,
        _ => return Err(GraphError::param("payload.schema is required")),
    };
    if schema.is_empty() {
        return Err(GraphError::param("payload.schema is empty"));
    }
    for key in &schema {
        let single = SINGLE_KEYS.contains(&key.as_str());
        if single && schema.len() > 1 {
            return Err(GraphError::param(format!(
                "{key} must be the only key of a schema"
            )));
        }
        if !single && !MULTI_KEYS.contains(&key.as_str()) {
            return Err(GraphError::param(format!("Invalid schema key: {key}")));
        }
    }
    let data = payload
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| GraphError::param("payload.data must be an array"))?;
    if data.is_empty() {
        return Err(GraphError::param("payload.data is empty"));
    }
    if data.len() > max_rows {
        return Err(GraphError::param(format!(
            "Too many entries: {} rows, at most {max_rows} per request",
            data.len()
        )));
    }
    let mut batch = Batch {
        received: data.len(),
        invalid: 0,
        samples: Map::new(),
        rows: Vec::new(),
    };
    for (i, row) in data.iter().enumerate() {
        let cells: Vec<&Value> = match row {
            Value::Array(cells) => cells.iter().collect(),
            scalar if schema.len() == 1 => vec![scalar],
            _ => {
                return Err(GraphError::param(format!(
                    "payload.data[{i}] must be an array"
                )))
            }
        };
        if cells.len() != schema.len() {
            return Err(GraphError::param(format!(
                "payload.data[{i}] has {} values for a schema of {}",
                cells.len(),
                schema.len()
            )));
        }
        match check_row(&schema, &cells) {
            Ok(member) => batch.rows.push(member),
            Err((value, reason)) => {
                batch.invalid += 1;
                batch.samples.insert(value, Value::String(reason));
            }
        }
    }
    Ok(batch)
}

/// A row as a member, or its first bad cell (value, reason).
fn check_row(schema: &[String], cells: &[&Value]) -> Result<Member, (String, String)> {
    let mut member = Member::new();
    for (key, cell) in schema.iter().zip(cells) {
        let key = key.as_str();
        let value = match (key, cell) {
            ("LOOKALIKE_VALUE", Value::Number(n)) => n.to_string(),
            ("LOOKALIKE_VALUE", Value::String(s)) if s.is_empty() => continue,
            ("LOOKALIKE_VALUE", other) => {
                return Err((other.to_string(), "LOOKALIKE_VALUE: not a number".into()))
            }
            ("DATA_PROCESSING_OPTIONS", Value::Array(_)) => continue,
            (_, Value::String(s)) => s.clone(),
            (_, other) => return Err((other.to_string(), format!("{key}: not a string"))),
        };
        if value.is_empty() {
            continue;
        }
        let hashed = HASHED_KEYS.contains(&key) || key == "EMAIL_SHA256" || key == "PHONE_SHA256";
        if hashed && !is_sha256_hex(&value) {
            return Err((value, format!("{key}: not a SHA-256 lowercase hex digest")));
        }
        member.insert((stored_key(key).to_string(), value));
    }
    if member.is_empty() {
        return Err(("[]".into(), "row has no values".into()));
    }
    Ok(member)
}

fn apply(
    state: &mut MetaState,
    audience: &str,
    mode: Mode,
    session: Option<&SessionParams>,
    batch: &Batch,
) -> Result<(), GraphError> {
    let mut replace_done = None;
    if let Some(s) = session {
        match state.sessions.get_mut(&s.id) {
            None if s.batch_seq != 1 => {
                return Err(GraphError::new(
                    2650,
                    "(#2650) Failed to update the custom audience: first batch_seq not detected",
                )
                .subcode(1_870_147))
            }
            None => {
                state.sessions.insert(
                    s.id,
                    Session {
                        audience: audience.to_string(),
                        replace: mode == Mode::Replace,
                        finished: false,
                        staged: Vec::new(),
                    },
                );
            }
            Some(existing) => {
                if existing.audience != audience || existing.replace != (mode == Mode::Replace) {
                    return Err(GraphError::param(
                        "session_id is already used for another audience or operation",
                    ));
                }
                if existing.finished {
                    return Err(GraphError::new(2650, "(#2650) Failed to update the custom audience: the session is already finished"));
                }
            }
        }
        if let Some(current) = state.sessions.get_mut(&s.id) {
            if mode == Mode::Replace {
                current.staged.extend(batch.rows.iter().cloned());
            }
            if s.last {
                current.finished = true;
                if mode == Mode::Replace {
                    replace_done = Some(std::mem::take(&mut current.staged));
                }
            }
        }
    }
    let entry = state.audiences.entry(audience.to_string()).or_default();
    match mode {
        Mode::Add => {
            for row in &batch.rows {
                upsert(&mut entry.members, row.clone());
            }
        }
        Mode::Remove => {
            for row in &batch.rows {
                entry.members.retain(|m| !same_person(m, row));
            }
        }
        Mode::Replace => {
            if let Some(staged) = replace_done {
                entry.members.clear();
                for row in staged {
                    upsert(&mut entry.members, row);
                }
            }
        }
    }
    Ok(())
}

fn same_person(a: &Member, b: &Member) -> bool {
    a == b
        || a.iter()
            .any(|pair| STRONG_KEYS.contains(&pair.0.as_str()) && b.contains(pair))
}

fn upsert(members: &mut Vec<Member>, row: Member) {
    let mut merged = row;
    members.retain(|m| {
        if same_person(m, &merged) {
            merged.extend(m.iter().cloned());
            false
        } else {
            true
        }
    });
    members.push(merged);
}

async fn create_audience(
    State(sim): State<MetaSim>,
    Path((version, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    let path = format!("/{version}/{node}/customaudiences");
    let read = Params::read(req).await;
    answer(&sim, "POST", path, RowInfo::default(), move |state| {
        let (headers, params) = read?;
        check_version(&state.config, &version)?;
        check_token(&state.config, &headers, &params)?;
        if node != format!("act_{}", state.config.ad_account_id) {
            return Err(unknown_object(&node));
        }
        let name = params
            .str("name")
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| GraphError::param("The parameter name is required"))?
            .to_string();
        if params.str("subtype").is_some_and(|s| s != "CUSTOM") {
            return Err(GraphError::param(
                "subtype must be CUSTOM for a customer list",
            ));
        }
        state.next_id += 1;
        let id = state.next_id.to_string();
        state.audiences.insert(
            id.clone(),
            Audience {
                name,
                members: Vec::new(),
            },
        );
        Ok(json!({ "id": id }))
    })
}

async fn read_audience(
    State(sim): State<MetaSim>,
    Path((version, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    let path = format!("/{version}/{node}");
    let read = Params::read(req).await;
    answer(&sim, "GET", path, RowInfo::default(), move |state| {
        let (headers, params) = read?;
        check_version(&state.config, &version)?;
        check_token(&state.config, &headers, &params)?;
        let audience = state
            .audiences
            .get(&node)
            .ok_or_else(|| unknown_object(&node))?;
        let count = audience.members.len();
        let mut out = Map::new();
        out.insert("id".into(), json!(node));
        for field in params
            .str("fields")
            .unwrap_or("id")
            .split(',')
            .map(str::trim)
        {
            let value = match field {
                "id" | "" => continue,
                "name" => json!(audience.name),
                "approximate_count_lower_bound" | "approximate_count_upper_bound" => json!(count),
                other => {
                    return Err(GraphError::param(format!(
                        "Tried accessing nonexisting field ({other})"
                    )))
                }
            };
            out.insert(field.to_string(), value);
        }
        Ok(Value::Object(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(s: &str) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(s.as_bytes()))
    }

    async fn sim() -> (RunningSim, MetaSim, Client) {
        let (running, sim) = MetaSim::start(MetaSimConfig::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sim.create_audience("111");
        let client = Client {
            base: running.base_url.clone(),
            http: reqwest::Client::new(),
        };
        (running, sim, client)
    }

    struct Client {
        base: String,
        http: reqwest::Client,
    }

    impl Client {
        async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
            let method =
                reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
            let mut req = self.http.request(method, format!("{}{path}", self.base));
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        }
    }

    fn email_payload(values: &[&str]) -> Value {
        json!({"payload": {"schema": ["EMAIL"], "data": values.iter().map(|v| vec![*v]).collect::<Vec<_>>()}})
    }

    #[tokio::test]
    async fn raw_email_counts_as_invalid_entry_and_is_not_added() {
        let (_running, sim, client) = sim().await;
        let good = sha("a@example.com");
        let (status, body) = client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&email_payload(&[&good, "B@Example.com"])),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["num_received"], 2);
        assert_eq!(body["num_invalid_entries"], 1);
        assert!(body["invalid_entry_samples"].get("B@Example.com").is_some());
        assert_eq!(sim.member_count("111"), 1);
        assert!(sim.has_member_with("111", "EMAIL", &good));
    }

    #[tokio::test]
    async fn delete_with_payload_in_query_string_removes_member() {
        let (_running, sim, client) = sim().await;
        let h = sha("a@example.com");
        client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&email_payload(&[&h])),
            )
            .await;
        assert_eq!(sim.member_count("111"), 1);
        let payload = json!({"schema": "EMAIL_SHA256", "data": [h]}).to_string();
        let resp = client
            .http
            .delete(format!("{}/v25.0/111/users", client.base))
            .query(&[
                ("access_token", "meta-sim-token"),
                ("payload", payload.as_str()),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "{body}");
        assert_eq!(sim.member_count("111"), 0);
    }

    #[tokio::test]
    async fn wrong_token_answers_code_190() {
        let (_running, _sim, client) = sim().await;
        let (status, body) = client
            .call(
                "POST",
                "/v25.0/111/users?access_token=nope",
                Some(&email_payload(&[&sha("x")])),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], 190);
        assert_eq!(body["error"]["type"], "OAuthException");
    }

    #[tokio::test]
    async fn unknown_audience_answers_code_100() {
        let (_running, _sim, client) = sim().await;
        let (_, body) = client
            .call(
                "POST",
                "/v25.0/999/users?access_token=meta-sim-token",
                Some(&email_payload(&[&sha("x")])),
            )
            .await;
        assert_eq!(body["error"]["code"], 100);
    }

    #[tokio::test]
    async fn more_than_ten_thousand_rows_refused_with_code_100() {
        let (_running, sim, client) = sim().await;
        let h = sha("x");
        let rows: Vec<&str> = std::iter::repeat_n(h.as_str(), 10_001).collect();
        let (status, body) = client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&email_payload(&rows)),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], 100);
        assert_eq!(sim.member_count("111"), 0);
    }

    #[tokio::test]
    async fn row_of_wrong_length_and_unknown_schema_key_are_refused() {
        let (_running, _sim, client) = sim().await;
        let bad_len = json!({"payload": {"schema": ["EMAIL", "PHONE"], "data": [[sha("x")]]}});
        let (_, body) = client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&bad_len),
            )
            .await;
        assert_eq!(body["error"]["code"], 100);
        let bad_key =
            json!({"payload": {"schema": ["EMAIL", "SHOE_SIZE"], "data": [[sha("x"), "42"]]}});
        let (_, body) = client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&bad_key),
            )
            .await;
        assert_eq!(body["error"]["code"], 100);
    }

    #[tokio::test]
    async fn session_must_start_at_batch_seq_one() {
        let (_running, _sim, client) = sim().await;
        let mut body = email_payload(&[&sha("x")]);
        body["session"] = json!({"session_id": 77, "batch_seq": 2, "last_batch_flag": false});
        let (_, answer) = client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&body),
            )
            .await;
        assert_eq!(answer["error"]["code"], 2650);
        assert_eq!(answer["error"]["error_subcode"], 1_870_147);
    }

    #[tokio::test]
    async fn replace_session_swaps_members_on_last_batch() {
        let (_running, sim, client) = sim().await;
        let (old, new_a, new_b) = (sha("old"), sha("a"), sha("b"));
        client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&email_payload(&[&old])),
            )
            .await;
        let mut first = email_payload(&[&new_a]);
        first["session"] = json!({"session_id": 5, "batch_seq": 1, "last_batch_flag": false, "estimated_num_total": 2});
        client
            .call(
                "POST",
                "/v25.0/111/usersreplace?access_token=meta-sim-token",
                Some(&first),
            )
            .await;
        assert!(sim.has_member_with("111", "EMAIL", &old));
        let mut last = email_payload(&[&new_b]);
        last["session"] = json!({"session_id": 5, "batch_seq": 2, "last_batch_flag": true});
        let (status, _) = client
            .call(
                "POST",
                "/v25.0/111/usersreplace?access_token=meta-sim-token",
                Some(&last),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(sim.member_count("111"), 2);
        assert!(!sim.has_member_with("111", "EMAIL", &old));
    }

    #[tokio::test]
    async fn injected_rate_limit_answers_80003_then_recovers() {
        let (_running, sim, client) = sim().await;
        sim.fail_next(1, MetaFault::AudienceRateLimit);
        let body = email_payload(&[&sha("x")]);
        let (status, answer) = client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&body),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (400, json!(80003))
        );
        let (status, _) = client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&body),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(sim.request_count(), 2);
    }

    #[tokio::test]
    async fn count_fields_report_member_count() {
        let (_running, _sim, client) = sim().await;
        client
            .call(
                "POST",
                "/v25.0/111/users?access_token=meta-sim-token",
                Some(&email_payload(&[&sha("a"), &sha("b")])),
            )
            .await;
        let (status, body) = client
            .call("GET", "/v25.0/111?fields=approximate_count_lower_bound,approximate_count_upper_bound&access_token=meta-sim-token", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["approximate_count_lower_bound"], 2);
    }

    #[tokio::test]
    async fn deprecated_version_answers_2635() {
        let (_running, _sim, client) = sim().await;
        let (_, body) = client
            .call(
                "POST",
                "/v12.0/111/users?access_token=meta-sim-token",
                Some(&email_payload(&[&sha("a")])),
            )
            .await;
        assert_eq!(body["error"]["code"], 2635);
    }
}
