//! The Meta simulator's routes: audience edits (queued, applied after the
//! configured delay), audience creation and reads, session progress.

use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::graph::{
    answer, check_token, check_version, only_keys, unknown_object, GraphError, Params, RowInfo,
};
use super::{
    is_sensitive, matches_user, Audience, Change, EditOp, Member, MetaSim, MetaState, Pending,
    Session, SessionProgress,
};

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
/// Parameters of the `users` and `usersreplace` edges (`method` lets a
/// POST stand for a DELETE).
const EDIT_PARAMS: &[&str] = &[
    "payload",
    "session",
    "namespace",
    "access_token",
    "appsecret_proof",
    "method",
];
/// Fields of `payload` and of `session`.
const PAYLOAD_FIELDS: &[&str] = &[
    "schema",
    "data",
    "is_raw",
    "app_ids",
    "page_ids",
    "data_source",
];
const SESSION_FIELDS: &[&str] = &[
    "session_id",
    "batch_seq",
    "last_batch_flag",
    "estimated_num_total",
];
/// Keys whose values Meta expects SHA-256 hashed.
const HASHED_KEYS: &[&str] = &[
    "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP", "COUNTRY",
];

/// Hold the request for the configured latency.
async fn latency(sim: &MetaSim) {
    let delay = sim.lock().config.response_delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
}

pub(super) async fn users(
    State(sim): State<MetaSim>,
    Path((version, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    let remove = req.method() == Method::DELETE;
    let method = if remove { "DELETE" } else { "POST" };
    let op = if remove { EditOp::Remove } else { EditOp::Add };
    edit(sim, version, node, req, method, "users", op).await
}

pub(super) async fn users_replace(
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
        EditOp::Replace,
    )
    .await
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The payload as sent, for the request log.
fn logged_rows(payload: &Value) -> (Vec<String>, Vec<Vec<String>>) {
    let schema = match payload.get("schema") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(keys)) => keys.iter().map(cell_text).collect(),
        _ => Vec::new(),
    };
    let data = payload
        .get("data")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| match row {
                    Value::Array(cells) => cells.iter().map(cell_text).collect(),
                    scalar => vec![cell_text(scalar)],
                })
                .collect()
        })
        .unwrap_or_default();
    (schema, data)
}

async fn edit(
    sim: MetaSim,
    version: String,
    node: String,
    req: Request,
    method: &str,
    edge: &str,
    op: EditOp,
) -> Response {
    latency(&sim).await;
    let path = format!("/{version}/{node}/{edge}");
    let mut info = RowInfo {
        op: Some(op),
        audience: Some(node.clone()),
        ..RowInfo::default()
    };
    let read = Params::read(req).await;
    let (headers, params) = match read {
        Ok(ok) => ok,
        Err(err) => return answer(&sim, method, path, info, |_| Err(err)),
    };
    let payload = params.json("payload");
    let session = params.json("session");
    if let Ok(Some(p)) = &payload {
        info.rows = p.get("data").and_then(Value::as_array).map_or(0, Vec::len);
        (info.schema, info.data) = logged_rows(p);
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
        check_version(state, &version)?;
        check_token(state, &headers, &params)?;
        let audience = state
            .audiences
            .get(&node)
            .ok_or_else(|| unknown_object(&node))?;
        if audience.flagged {
            return Err(GraphError::param(format!(
                "This custom audience ({node}) can't be edited: it has been flagged (operation_status 471) because its name or description may suggest a health condition or financial status. Resolve it in Ads Manager."
            ))
            .subcode(1_713_230));
        }
        params.only(EDIT_PARAMS)?;
        let payload =
            payload?.ok_or_else(|| GraphError::param("The parameter payload is required"))?;
        only_keys("payload", &payload, PAYLOAD_FIELDS)?;
        let session = match parsed_session {
            Some(s) => Some(s?),
            None => {
                session?;
                None
            }
        };
        if op == EditOp::Replace && session.is_none() {
            return Err(GraphError::param("The parameter session is required"));
        }
        let batch = parse_payload(&payload, state.config.max_rows)?;
        let session_id = enqueue(state, &node, op, session.as_ref(), &batch)?;
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
    only_keys("session", v, SESSION_FIELDS)?;
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
    schema: Vec<String>,
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
        schema: schema.clone(),
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

/// 2650 with one of the subcodes Meta documents for audience updates.
fn audience_update_error(subcode: i64, title: &str, msg: &str) -> GraphError {
    GraphError {
        user: Some(Box::new((title.to_string(), msg.to_string()))),
        ..GraphError::new(2650, "(#2650) Failed to update the custom audience").subcode(subcode)
    }
}

/// The audience is being updated (a replace under way, or for a replace
/// any open session or pending change): wait until it is Normal.
fn busy() -> GraphError {
    audience_update_error(
        1_870_145,
        "Audience Update In Progress",
        "This audience is being updated. Wait until its availability is Normal, then try again.",
    )
}

/// What becomes of one batch of an edit.
enum Admission {
    /// Take it into this session (new or continued) as its last batch or not.
    Take { session_id: i64, last: bool },
    /// A `users` session past its window: Meta discards the batch.
    Discard { session_id: i64 },
}

/// Whether the batch may be taken, as Meta's session and replace rules say.
fn admit(
    state: &mut MetaState,
    audience: &str,
    op: EditOp,
    session: Option<&SessionParams>,
    batch: &Batch,
) -> Result<Admission, GraphError> {
    let replace = op == EditOp::Replace;
    let Some(s) = session else {
        if state.replace_in_progress(audience) {
            return Err(busy());
        }
        state.next_id += 1;
        return Ok(Admission::Take {
            session_id: state.next_id as i64,
            last: true,
        });
    };
    let Some(existing) = state.sessions.get(&s.id) else {
        if s.batch_seq != 1 {
            return Err(audience_update_error(
                1_870_147,
                "Invalid Upload Batch for Replace",
                "The first batch_seq was not detected: a session starts at batch_seq 1.",
            ));
        }
        let in_the_way = if replace {
            state.updating(audience)
        } else {
            state.replace_in_progress(audience)
        };
        if in_the_way {
            return Err(busy());
        }
        return Ok(Admission::Take {
            session_id: s.id,
            last: s.last,
        });
    };
    if existing.audience != audience || existing.replace != replace {
        return Err(GraphError::param(
            "session_id is already used for another audience or operation",
        ));
    }
    if existing.timed_out {
        if !replace {
            return Ok(Admission::Discard { session_id: s.id });
        }
        return Err(audience_update_error(
            1_870_158,
            "Replace Session Timed Out",
            "The replace session passed its 90 minutes: the audience is replaced with what was uploaded. Add the rest once the replace is finished.",
        ));
    }
    if existing.last_received {
        return Err(audience_update_error(
            1_870_159,
            "Replace Session Finished",
            "This session already received its last batch. Add more once its update is finished.",
        ));
    }
    if existing.schema != batch.schema {
        return Err(GraphError::param(
            "the schema of a session's batches must stay the schema of its first batch",
        ));
    }
    if !replace && state.replace_in_progress(audience) {
        return Err(busy());
    }
    Ok(Admission::Take {
        session_id: s.id,
        last: s.last,
    })
}

/// Record the batch in its session and queue its change; returns the session id.
fn enqueue(
    state: &mut MetaState,
    audience: &str,
    op: EditOp,
    session: Option<&SessionParams>,
    batch: &Batch,
) -> Result<i64, GraphError> {
    let replace = op == EditOp::Replace;
    let start_time = state.unix_now();
    let started = state.now();
    let (session_id, last) = match admit(state, audience, op, session, batch)? {
        Admission::Take { session_id, last } => (session_id, last),
        Admission::Discard { session_id } => return Ok(session_id),
    };
    if !state.sessions.contains_key(&session_id) {
        state.session_order.push(session_id);
        state.sessions.insert(
            session_id,
            Session {
                audience: audience.to_string(),
                replace,
                last_received: false,
                timed_out: false,
                started,
                schema: batch.schema.clone(),
                staged: Vec::new(),
                pending: 0,
                num_received: 0,
                num_matched: 0,
                num_invalid: 0,
                start_time,
                end_time: None,
            },
        );
    }
    let unmatched_share = state.config.unmatched_share;
    let matched = batch
        .rows
        .iter()
        .filter(|r| matches_user(unmatched_share, r))
        .count() as u64;
    let change = {
        let Some(current) = state.sessions.get_mut(&session_id) else {
            return Err(GraphError::new(2, "session lost"));
        };
        current.num_received += batch.received as u64;
        current.num_invalid += batch.invalid as u64;
        current.pending += 1;
        if last {
            current.last_received = true;
        }
        match op {
            EditOp::Add => Change::Add(batch.rows.clone()),
            EditOp::Remove => Change::Remove(batch.rows.clone()),
            EditOp::Replace => {
                current.staged.extend(batch.rows.iter().cloned());
                if last {
                    Change::Replace(std::mem::take(&mut current.staged))
                } else {
                    Change::Nothing
                }
            }
        }
    };
    let due = state.now() + state.config.apply_delay;
    state.pending.push_back(Pending {
        due,
        audience: audience.to_string(),
        change,
        session_id,
        matched,
    });
    state.settle();
    Ok(session_id)
}

/// Sessions of one audience, newest first.
pub(super) fn session_list(state: &MetaState, audience: &str) -> Vec<SessionProgress> {
    state
        .session_order
        .iter()
        .rev()
        .filter_map(|id| state.sessions.get(id).map(|s| (*id, s)))
        .filter(|(_, s)| s.audience == audience)
        .map(|(id, s)| SessionProgress {
            session_id: id,
            audience: s.audience.clone(),
            stage: if s.last_received && s.pending == 0 {
                "finished".into()
            } else {
                "processing".into()
            },
            num_received: s.num_received,
            num_matched: s.num_matched,
            num_invalid_entries: s.num_invalid,
            start_time: s.start_time,
            end_time: s.end_time,
        })
        .collect()
}

pub(super) async fn read_sessions(
    State(sim): State<MetaSim>,
    Path((version, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    latency(&sim).await;
    let path = format!("/{version}/{node}/sessions");
    let read = Params::read(req).await;
    answer(&sim, "GET", path, RowInfo::default(), move |state| {
        let (headers, params) = read?;
        check_version(state, &version)?;
        check_token(state, &headers, &params)?;
        if !state.audiences.contains_key(&node) {
            return Err(unknown_object(&node));
        }
        params.only(&["session_id", "fields", "access_token", "appsecret_proof"])?;
        let data: Vec<Value> = session_list(state, &node)
            .into_iter()
            .map(|s| {
                let finished = s.stage == "finished";
                let mut out = json!({
                    "session_id": s.session_id.to_string(),
                    "stage": s.stage,
                    "progress": if finished { 100 } else { 0 },
                    "num_received": s.num_received,
                    "num_matched": s.num_matched,
                    "num_invalid_entries": s.num_invalid_entries,
                    "start_time": s.start_time,
                });
                if let (Some(end), Some(obj)) = (s.end_time, out.as_object_mut()) {
                    obj.insert("end_time".into(), json!(end));
                }
                out
            })
            .collect();
        Ok(json!({ "data": data }))
    })
}

pub(super) async fn create_audience(
    State(sim): State<MetaSim>,
    Path((version, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    latency(&sim).await;
    let path = format!("/{version}/{node}/customaudiences");
    let read = Params::read(req).await;
    answer(&sim, "POST", path, RowInfo::default(), move |state| {
        let (headers, params) = read?;
        check_version(state, &version)?;
        check_token(state, &headers, &params)?;
        if node != format!("act_{}", state.config.ad_account_id) {
            return Err(unknown_object(&node));
        }
        params.only(&[
            "name",
            "subtype",
            "description",
            "customer_file_source",
            "audience_labels",
            "access_token",
            "appsecret_proof",
        ])?;
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
        let description = params.str("description").unwrap_or("").to_string();
        let flagged = state.config.flag_sensitive_names
            && (is_sensitive(&name) || is_sensitive(&description));
        state.next_id += 1;
        let id = state.next_id.to_string();
        state.audiences.insert(
            id.clone(),
            Audience {
                name,
                description,
                flagged,
                members: Vec::new(),
            },
        );
        Ok(json!({ "id": id }))
    })
}

pub(super) async fn read_audience(
    State(sim): State<MetaSim>,
    Path((version, node)): Path<(String, String)>,
    req: Request,
) -> Response {
    latency(&sim).await;
    let path = format!("/{version}/{node}");
    let read = Params::read(req).await;
    answer(&sim, "GET", path, RowInfo::default(), move |state| {
        let (headers, params) = read?;
        check_version(state, &version)?;
        check_token(state, &headers, &params)?;
        let audience = state
            .audiences
            .get(&node)
            .ok_or_else(|| unknown_object(&node))?;
        params.only(&["fields", "access_token", "appsecret_proof"])?;
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
                "description" => json!(audience.description),
                "approximate_count_lower_bound" | "approximate_count_upper_bound" => json!(count),
                "operation_status" if audience.flagged => json!({
                    "code": 471,
                    "description": "This audience was flagged: its name or description may suggest a health condition or financial status."
                }),
                "operation_status" => json!({"code": 200, "description": "Normal"}),
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
