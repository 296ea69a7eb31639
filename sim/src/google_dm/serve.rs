//! The simulator's HTTP front: Google's 404 page, refusals as
//! `google.rpc.Status`, auth and quotas, and parsing and answering each
//! method (see the parent module's doc for what is refused and why).

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::*;
use crate::google_oauth::{TokenAuthority, TokenCheck, DATA_MANAGER_SCOPE};

/// Google's 404 page for a URL (or verb) it does not serve.
pub const NOT_FOUND_PAGE: &str = "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n  <p><b>404.</b> <ins>That’s an error.</ins>\n  <p>The requested URL was not found on this server.  <ins>That’s all we know.</ins>\n";

pub(super) async fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "text/html; charset=UTF-8")],
        NOT_FOUND_PAGE,
    )
        .into_response()
}

/// A refusal, as google.rpc.Status over REST.
pub(super) struct RpcError {
    pub(super) status: StatusCode,
    pub(super) rpc_status: &'static str,
    pub(super) reason: &'static str,
    pub(super) message: String,
    /// `BadRequest.fieldViolations`: `(field, description)`, fields named
    /// by their proto path (`audience_members[3].user_data…`).
    pub(super) violations: Vec<(String, String)>,
    /// A quota refusal of the daily quota (else the per-minute one).
    pub(super) daily: bool,
}

/// Reasons Google's front end gives (domain `googleapis.com`), not the API's
/// own `ErrorReason` (domain `datamanager.googleapis.com`).
pub(super) const FRONT_END_REASONS: &[&str] = &[
    "ACCESS_TOKEN_EXPIRED",
    "ACCESS_TOKEN_TYPE_UNSUPPORTED",
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    "RATE_LIMIT_EXCEEDED",
];

impl RpcError {
    pub(super) fn new(
        status: StatusCode,
        rpc_status: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        RpcError {
            status,
            rpc_status,
            reason,
            message: message.into(),
            violations: Vec::new(),
            daily: false,
        }
    }
    pub(super) fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        RpcError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", reason, message)
    }
    pub(super) fn into_response(self) -> Response {
        let domain = if FRONT_END_REASONS.contains(&self.reason) {
            "googleapis.com"
        } else {
            "datamanager.googleapis.com"
        };
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": self.reason,
            "domain": domain,
        })];
        if self.reason == "RATE_LIMIT_EXCEEDED" {
            details[0]["metadata"] = json!({
                "quota_unit": if self.daily { "1/d/{project}" } else { "1/min/{project}" },
                "service": "datamanager.googleapis.com",
            });
        }
        if !self.violations.is_empty() {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": self.violations.iter().map(|(field, description)| json!({
                    "field": field,
                    "description": description,
                })).collect::<Vec<_>>(),
            }));
        }
        (
            self.status,
            Json(json!({"error": {
                "code": self.status.as_u16(),
                "message": self.message,
                "status": self.rpc_status,
                "details": details,
            }})),
        )
            .into_response()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Ingest,
    Remove,
    RemoveAll,
    Retrieve,
}

impl Method {
    pub(super) fn path(self) -> &'static str {
        match self {
            Method::Ingest => "/v1/audienceMembers:ingest",
            Method::Remove => "/v1/audienceMembers:remove",
            Method::RemoveAll => "/v1/audienceMembers:removeAll",
            Method::Retrieve => "/v1/requestStatus:retrieve",
        }
    }
    pub(super) fn fields(self) -> &'static [&'static str] {
        match self {
            Method::Ingest => &[
                "destinations",
                "audienceMembers",
                "consent",
                "validateOnly",
                "encoding",
                "encryptionInfo",
                "termsOfService",
            ],
            Method::Remove => &[
                "destinations",
                "audienceMembers",
                "validateOnly",
                "encoding",
                "encryptionInfo",
            ],
            Method::RemoveAll => &["destinations", "removeAsOfTime", "validateOnly"],
            Method::Retrieve => &["requestId"],
        }
    }
}

/// Auth (a live token of the `datamanager` scope) and the per-minute
/// budget, shared by every API route; status reads have a budget of their own.
pub(super) fn admit(
    state: &mut DmState,
    authority: &TokenAuthority,
    headers: &HeaderMap,
    status_read: bool,
) -> Result<(), RpcError> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let check = bearer.map_or(TokenCheck::Unknown, |t| authority.check(t));
    if check != TokenCheck::Valid {
        return Err(RpcError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            if check == TokenCheck::Expired {
                "ACCESS_TOKEN_EXPIRED"
            } else {
                "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            },
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    }
    if !bearer.is_some_and(|t| authority.has_scope(t, DATA_MANAGER_SCOPE)) {
        return Err(RpcError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "Request had insufficient authentication scopes.",
        ));
    }
    let now = Instant::now();
    let limit = state.config.requests_per_minute;
    let recent = if status_read {
        &mut state.recent_status_reads
    } else {
        &mut state.recent
    };
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        recent.pop_front();
    }
    if recent.len() >= limit {
        return Err(RpcError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "RATE_LIMIT_EXCEEDED",
            format!("Quota exceeded: {limit} requests per minute per project."),
        ));
    }
    let today = (now_ms() - 8 * 3_600_000).div_euclid(86_400_000);
    if state.day.0 != today {
        state.day = (today, 0);
    }
    if state.day.1 >= state.config.requests_per_day {
        let mut e = RpcError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "RATE_LIMIT_EXCEEDED",
            format!(
                "Quota exceeded: {} requests per day per project.",
                state.config.requests_per_day
            ),
        );
        e.daily = true;
        return Err(e);
    }
    state.day.1 += 1;
    let recent = if status_read {
        &mut state.recent_status_reads
    } else {
        &mut state.recent
    };
    recent.push_back(now);
    Ok(())
}

pub(super) fn parse_body(method: Method, body: &[u8]) -> Result<Map<String, Value>, RpcError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        RpcError::invalid(
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(RpcError::invalid(
            "INVALID_ARGUMENT",
            "The request body must be a JSON object.",
        ));
    };
    if let Some(k) = obj.keys().find(|k| !method.fields().contains(&k.as_str())) {
        return Err(RpcError::invalid(
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."),
        ));
    }
    // Nested too: Google's JSON front end knows every message's fields.
    let request = match method {
        Method::Ingest => "IngestAudienceMembersRequest",
        Method::Remove => "RemoveAudienceMembersRequest",
        Method::RemoveAll => "RemoveAllAudienceMembersRequest",
        Method::Retrieve => "RetrieveRequestStatusRequest",
    };
    if let Some(message) = schema::unknown_field(request, &obj) {
        return Err(RpcError::invalid("INVALID_ARGUMENT", message));
    }
    Ok(obj)
}

/// Members of an ingest / remove request: `(member, consented)` each.
pub(super) fn parse_members(
    state: &DmState,
    obj: &Map<String, Value>,
    record: &mut DmRequest,
) -> Result<Vec<(DmMember, bool)>, RpcError> {
    let members = obj
        .get("audienceMembers")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            RpcError::invalid("REQUIRED_FIELD_MISSING", "audienceMembers is required.")
        })?;
    record.members = members.len();
    let max = state.config.max_members_per_request;
    if members.len() > max {
        return Err(RpcError::invalid(
            "TOO_MANY_AUDIENCE_MEMBERS",
            format!(
                "{} audience members in one request; at most {max}.",
                members.len()
            ),
        ));
    }
    let digest_ok = digest_check(obj)?;
    let request_consent = obj.get("consent");
    let max_ids = state.config.max_identifiers_per_member;
    let mut out = Vec::with_capacity(members.len());
    // Google checks every member and names each bad one
    // (`BadRequest.fieldViolations`, `audience_members[i]…`), failing the
    // whole request.
    let mut first_reason: Option<&'static str> = None;
    let mut violations = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let at = format!("audienceMembers[{i}]");
        let checked = check_consent(m.get("consent"), &at).and_then(|()| {
            let ids = m
                .get("userData")
                .and_then(|u| u.get("userIdentifiers"))
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    RpcError::invalid(
                        "REQUIRED_FIELD_MISSING",
                        format!("{at}.userData.userIdentifiers is required."),
                    )
                })?;
            record.identifiers += ids.len();
            let member = parse_user_identifiers(ids, &at, max_ids, digest_ok)?;
            if member.iter().any(|(_, v)| state.invalid_ids.contains(v)) {
                return Err(RpcError::invalid(
                    "INVALID_AUDIENCE_MEMBER",
                    format!("{at} is not a valid audience member."),
                ));
            }
            Ok(member)
        });
        match checked {
            Ok(member) => {
                let consented = !denies_user_data(m.get("consent"), request_consent);
                out.push((member, consented));
            }
            Err(e) => {
                first_reason.get_or_insert(e.reason);
                violations.push((format!("audience_members[{i}]"), e.message));
            }
        }
    }
    if let Some(reason) = first_reason {
        let mut e = RpcError::invalid(
            reason,
            format!(
                "There was a problem with the request: {} audience member(s) are not valid.",
                violations.len()
            ),
        );
        e.violations = violations;
        return Err(e);
    }
    Ok(out)
}

pub(super) fn new_request_id(state: &mut DmState) -> String {
    state.next_id += 1;
    format!("sim-dm-{:08}-{:08x}", state.next_id, rand::random::<u32>())
}

pub(super) fn enqueue(
    state: &mut DmState,
    destinations: Vec<Value>,
    lists: Vec<(String, String)>,
    work: Work,
    identifiers: u64,
) -> String {
    let id = new_request_id(state);
    let records = match &work {
        Work::Ingest(m) => m.len(),
        Work::Remove(m) => m.len(),
        Work::RemoveAll { .. } => 0,
    } as u64;
    let forced_failure = state.fail_next.pop_front();
    let job = DmJob {
        destinations,
        lists,
        work,
        received_ms: now_ms(),
        ready_at: Instant::now() + state.config.processing_delay,
        status: DmStatus::Processing,
        forced_failure,
        errors: BTreeMap::new(),
        records,
        identifiers,
    };
    state.jobs.insert(id.clone(), job);
    id
}

pub(super) fn serve(
    sim: &DataManagerSim,
    method: Method,
    headers: &HeaderMap,
    body: &[u8],
    record: &mut DmRequest,
) -> Result<Value, RpcError> {
    let mut state = sim.lock();
    process_due(&mut state, false);
    admit(&mut state, &sim.authority, headers, false)?;
    let obj = parse_body(method, body)?;
    let validate_only = obj.get("validateOnly") == Some(&Value::Bool(true));
    match method {
        Method::Ingest | Method::Remove => {
            let (dests, lists) = parse_destinations(&state, &obj)?;
            if method == Method::Ingest {
                let accepted = obj
                    .get("termsOfService")
                    .and_then(|t| t.get("customerMatchTermsOfServiceStatus"))
                    .and_then(Value::as_str)
                    == Some("ACCEPTED");
                if !accepted {
                    return Err(RpcError::invalid(
                        "TERMS_AND_CONDITIONS_NOT_SIGNED",
                        "termsOfService.customerMatchTermsOfServiceStatus must be ACCEPTED to upload Customer Match data.",
                    ));
                }
                check_consent(obj.get("consent"), "consent")?;
            }
            let members = parse_members(&state, &obj, record)?;
            if validate_only {
                return Ok(json!({}));
            }
            let work = if method == Method::Ingest {
                Work::Ingest(members)
            } else {
                Work::Remove(members.into_iter().map(|(m, _)| m).collect())
            };
            let id = enqueue(&mut state, dests, lists, work, record.identifiers as u64);
            record.request_id = Some(id.clone());
            Ok(json!({ "requestId": id }))
        }
        Method::RemoveAll => {
            let (dests, lists) = parse_destinations(&state, &obj)?;
            let as_of_ms = match obj.get("removeAsOfTime").and_then(Value::as_str) {
                None => now_ms(),
                Some(t) => time_from_rfc3339(t).ok_or_else(|| {
                    RpcError::invalid(
                        "INVALID_ARGUMENT",
                        format!("removeAsOfTime {t:?} is not an RFC 3339 timestamp."),
                    )
                })?,
            };
            if as_of_ms > now_ms() + 1_000 {
                return Err(RpcError::invalid(
                    "INVALID_REMOVE_AS_OF_TIME",
                    "removeAsOfTime must not be in the future.",
                ));
            }
            if validate_only {
                return Ok(json!({}));
            }
            let id = enqueue(&mut state, dests, lists, Work::RemoveAll { as_of_ms }, 0);
            record.request_id = Some(id.clone());
            Ok(json!({ "requestId": id }))
        }
        Method::Retrieve => Err(RpcError::invalid(
            "INVALID_ARGUMENT",
            "requestStatus:retrieve takes no body.",
        )),
    }
}

/// `GET /v1/requestStatus:retrieve?requestId=…`: the status per destination
/// (request_status_per_destination.proto); an id Google does not know is
/// 400 INVALID_REQUEST_ID.
pub(super) fn serve_retrieve(
    sim: &DataManagerSim,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<Value, RpcError> {
    let mut state = sim.lock();
    process_due(&mut state, false);
    admit(&mut state, &sim.authority, headers, true)?;
    if let Some((k, _)) = query
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "requestId" | "request_id"))
    {
        return Err(RpcError::invalid(
            "INVALID_ARGUMENT",
            format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot bind query parameter. Field '{k}' could not be found in request message."),
        ));
    }
    let id = query
        .iter()
        .find(|(k, _)| matches!(k.as_str(), "requestId" | "request_id"))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| RpcError::invalid("REQUIRED_FIELD_MISSING", "request_id is required."))?;
    if let Some(answer) = events::status(&state, id) {
        return Ok(answer);
    }
    let job = state.jobs.get(id).ok_or_else(|| {
        RpcError::invalid(
            "INVALID_REQUEST_ID",
            format!("Request ID {id:?} is not valid."),
        )
    })?;
    let per_destination: Vec<Value> = job
        .destinations
        .iter()
        .map(|d| {
            let mut entry = json!({
                "destination": d,
                "requestStatus": job.status.as_str(),
            });
            if !job.errors.is_empty() {
                entry["errorInfo"] = json!({ "errorCounts": job.errors.iter().map(|(reason, n)| json!({
                    "recordCount": n.to_string(),
                    "reason": reason,
                })).collect::<Vec<_>>() });
            }
            let counts = json!({
                "recordCount": job.records.to_string(),
                "userIdentifierCount": job.identifiers.to_string(),
            });
            match job.work {
                Work::Ingest(_) => {
                    entry["audienceMembersIngestionStatus"] =
                        json!({ "userDataIngestionStatus": counts });
                }
                Work::Remove(_) => {
                    entry["audienceMembersRemovalStatus"] =
                        json!({ "userDataRemovalStatus": counts });
                }
                Work::RemoveAll { .. } => {
                    entry["removeAllAudienceMembersStatus"] = json!({});
                }
            }
            entry
        })
        .collect();
    Ok(json!({ "requestStatusPerDestination": per_destination }))
}

pub(super) fn new_record(path: String) -> DmRequest {
    DmRequest {
        path,
        status: 200,
        error_status: None,
        message: None,
        members: 0,
        identifiers: 0,
        request_id: None,
    }
}

/// Answer with `result`, and keep what was seen of the request.
pub(super) fn answer(
    sim: &DataManagerSim,
    mut record: DmRequest,
    result: Result<Value, RpcError>,
) -> Response {
    let response = match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => {
            record.status = e.status.as_u16();
            record.error_status = Some(e.rpc_status.to_string());
            record.message = Some(e.message.clone());
            e.into_response()
        }
    };
    sim.lock().requests.push(record);
    response
}

pub(super) async fn handle(
    sim: DataManagerSim,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut record = new_record(method.path().to_string());
    let result = serve(&sim, method, &headers, &body, &mut record);
    answer(&sim, record, result)
}

pub(super) async fn ingest(
    State(sim): State<DataManagerSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(sim, Method::Ingest, headers, body).await
}

pub(super) async fn remove(
    State(sim): State<DataManagerSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(sim, Method::Remove, headers, body).await
}

pub(super) async fn remove_all(
    State(sim): State<DataManagerSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(sim, Method::RemoveAll, headers, body).await
}

pub(super) async fn retrieve(
    State(sim): State<DataManagerSim>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let record = new_record(Method::Retrieve.path().to_string());
    let result = serve_retrieve(&sim, &headers, &query);
    answer(&sim, record, result)
}

pub(super) async fn user_list(
    State(sim): State<DataManagerSim>,
    Path((kind, account, list)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let record = new_record(format!(
        "/v1/accountTypes/{kind}/accounts/{account}/userLists/{list}"
    ));
    let result = {
        let mut state = sim.lock();
        process_due(&mut state, false);
        admit(&mut state, &sim.authority, &headers, false).and_then(|()| {
            // Reads name the manager in the `login-account` header
            // (user_list_service.proto): `accountTypes/GOOGLE_ADS/accounts/{id}`.
            let login = headers
                .get("login-account")
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.strip_prefix("accountTypes/GOOGLE_ADS/accounts/")
                        .unwrap_or("")
                        .to_string()
                });
            account_access(&state, &account, login.as_deref())?;
            if kind != "GOOGLE_ADS" || !state.lists.contains_key(&(account.clone(), list.clone())) {
                return Err(RpcError::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "NOT_FOUND",
                    format!("User list {list} of account {account} not found."),
                ));
            }
            let size = size_of(&state, &account, &list).to_string();
            Ok(json!({
                "name": format!("accountTypes/{kind}/accounts/{account}/userLists/{list}"),
                "id": list,
                "sizeInfo": {
                    "searchNetworkMembersCount": size,
                    "displayNetworkMembersCount": size,
                },
            }))
        })
    };
    answer(&sim, record, result)
}
