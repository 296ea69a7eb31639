//! Offline user data jobs: create, add operations (each identifier and
//! operation checked as Google checks it), run, finish, and the GAQL
//! `search` that reads jobs and lists back.

use super::*;

pub(super) fn job_of<'a>(
    state: &'a GoogleState,
    customer: &str,
    id: u64,
) -> Result<&'a Job, RpcError> {
    state
        .jobs
        .get(&id)
        .filter(|j| j.customer == customer)
        .ok_or_else(|| {
            RpcError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                AdsError::new(
                    "requestError",
                    "RESOURCE_NOT_FOUND",
                    format!("Offline user data job {id} not found."),
                ),
            )
        })
}

pub(super) fn create_job(
    state: &mut GoogleState,
    customer: &str,
    body: &Value,
) -> Result<Value, RpcError> {
    let job_error = |code: &'static str, message: &str| {
        RpcError::invalid(AdsError::new("offlineUserDataJobError", code, message))
    };
    let field_error = |code: &'static str, message: &str| {
        RpcError::invalid(AdsError::new("fieldError", code, message))
    };
    let job = body
        .get("job")
        .ok_or_else(|| field_error("REQUIRED", "job is required."))?;
    match job.get("type").and_then(Value::as_str) {
        Some("CUSTOMER_MATCH_USER_LIST") => {}
        None | Some("UNSPECIFIED") => return Err(field_error("REQUIRED", "job.type is required.")),
        Some(_) => {
            return Err(field_error(
                "INVALID_VALUE",
                "The simulator serves CUSTOMER_MATCH_USER_LIST jobs only.",
            ))
        }
    }
    let metadata = job.get("customerMatchUserListMetadata").ok_or_else(|| {
        job_error(
            "INVALID_USER_LIST_ID",
            "customerMatchUserListMetadata is required.",
        )
    })?;
    let list = metadata
        .get("userList")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            job_error(
                "INVALID_USER_LIST_ID",
                "customerMatchUserListMetadata.userList is required.",
            )
        })?;
    let id_ok = list
        .strip_prefix(&format!("customers/{customer}/userLists/"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    if !id_ok || !state.lists.contains_key(list) {
        return Err(job_error(
            "INVALID_USER_LIST_ID",
            "The user list must be customers/{cid}/userLists/{id}, an existing CRM-based list of this customer.",
        ));
    }
    let consent = metadata.get("consent").map(SimConsent::read);
    if let Some(consent) = &consent {
        if consent.has("UNKNOWN") {
            return Err(RpcError::invalid(AdsError::new(
                "requestError",
                "INVALID_ENUM_VALUE",
                "UNKNOWN is an output-only consent status.",
            )));
        }
        if consent.has("DENIED") {
            return Err(job_error(
                "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
                "The job's consent denies ad_user_data or ad_personalization.",
            ));
        }
    }
    if state.list_busy(list, 0) {
        state.concurrent_refusals += 1;
        return Err(concurrent_modification());
    }
    if body.get("validateOnly") == Some(&Value::Bool(true)) {
        return Ok(json!({}));
    }
    state.next_id += 1;
    let job = Job {
        customer: customer.to_string(),
        id: state.next_id,
        user_list: list.to_string(),
        status: JobStatus::Pending,
        consent,
        ops: Vec::new(),
        operation_consents: Vec::new(),
        done_at: None,
    };
    let name = job.resource_name();
    state.jobs.insert(job.id, job);
    Ok(json!({ "resourceName": name }))
}

pub(super) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One operation refused: its OfflineUserDataJobError (or other) code.
pub(super) struct OpError {
    kind: &'static str,
    code: &'static str,
    message: String,
}

impl OpError {
    fn job(code: &'static str, message: impl Into<String>) -> Self {
        OpError {
            kind: "offlineUserDataJobError",
            code,
            message: message.into(),
        }
    }
}

/// One UserIdentifier as a member pair (the schema already holds it to one
/// field of the oneof, of the right JSON type).
pub(super) fn parse_identifier(v: &Value) -> Result<(String, String), OpError> {
    let obj = v
        .as_object()
        .ok_or_else(|| OpError::job("MISSING_USER_IDENTIFIER", "not an object"))?;
    let (field, value) = obj
        .iter()
        .find(|(k, _)| k.as_str() != "userIdentifierSource")
        .ok_or_else(|| {
            OpError::job(
                "MISSING_USER_IDENTIFIER",
                "a user identifier sets none of hashedEmail, hashedPhoneNumber, mobileId, thirdPartyUserId, addressInfo",
            )
        })?;
    let text = value.as_str().unwrap_or_default();
    match field.as_str() {
        "hashedEmail" | "hashedPhoneNumber" => {
            if !is_sha256_hex(text) {
                return Err(OpError::job(
                    "INVALID_SHA256_FORMAT",
                    format!("{field} is not a SHA-256 lowercase hex digest"),
                ));
            }
            Ok((field.clone(), text.to_string()))
        }
        "mobileId" | "thirdPartyUserId" => {
            if text.trim().is_empty() {
                return Err(OpError::job(
                    "MISSING_USER_IDENTIFIER",
                    format!("{field} is empty"),
                ));
            }
            Ok((field.clone(), text.to_string()))
        }
        _ => {
            let get = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("");
            let (first, last) = (get("hashedFirstName"), get("hashedLastName"));
            let (country, postal) = (get("countryCode"), get("postalCode"));
            if !is_sha256_hex(first) || !is_sha256_hex(last) {
                return Err(OpError::job(
                    "INVALID_SHA256_FORMAT",
                    "addressInfo hashed names must be SHA-256 lowercase hex digests",
                ));
            }
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(OpError::job(
                    "INVALID_COUNTRY_CODE",
                    "addressInfo needs a 2-letter countryCode",
                ));
            }
            if postal.trim().is_empty() {
                return Err(OpError::job(
                    "MISSING_USER_IDENTIFIER",
                    "addressInfo needs a postalCode (not hashed)",
                ));
            }
            Ok((field.clone(), format!("{first}|{last}|{country}|{postal}")))
        }
    }
}

/// A UserData's member and its own consent, if any.
pub(super) fn parse_user_data(v: &Value) -> Result<(Member, Option<SimConsent>), OpError> {
    let ids = v
        .get("userIdentifiers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(OpError::job(
            "MISSING_USER_IDENTIFIER",
            "userIdentifiers is required",
        ));
    }
    if ids.len() > 20 {
        return Err(OpError::job(
            "TOO_MANY_USER_IDENTIFIERS",
            format!("a UserData holds at most 20 identifiers, not {}", ids.len()),
        ));
    }
    if v.get("userAttribute").is_some() {
        return Err(OpError::job(
            "ATTRIBUTES_NOT_APPLICABLE_FOR_CUSTOMER_MATCH_USER_LIST",
            "User attributes cannot be uploaded into a user list.",
        ));
    }
    if v.get("transactionAttribute").is_some() {
        return Err(OpError {
            kind: "fieldError",
            code: "VALUE_MUST_BE_UNSET",
            message: "transactionAttribute is for store sales jobs.".into(),
        });
    }
    let consent = v.get("consent").map(SimConsent::read);
    if consent.as_ref().is_some_and(|c| c.has("UNKNOWN")) {
        return Err(OpError {
            kind: "requestError",
            code: "INVALID_ENUM_VALUE",
            message: "UNKNOWN is an output-only consent status.".into(),
        });
    }
    let member = ids
        .iter()
        .map(parse_identifier)
        .collect::<Result<Member, _>>()?;
    Ok((member, consent))
}

pub(super) fn identifier_count(op: &Value) -> usize {
    ["create", "remove"]
        .iter()
        .filter_map(|k| op.get(*k))
        .filter_map(|d| d.get("userIdentifiers").and_then(Value::as_array))
        .map(Vec::len)
        .sum()
}

pub(super) fn parse_operation(op: &Value) -> Result<(JobOp, Option<SimConsent>), OpError> {
    if let Some(data) = op.get("create") {
        return parse_user_data(data).map(|(m, c)| (JobOp::Create(m), c));
    }
    if let Some(data) = op.get("remove") {
        return parse_user_data(data).map(|(m, c)| (JobOp::Remove(m), c));
    }
    if op.get("removeAll") == Some(&Value::Bool(true)) {
        return Ok((JobOp::RemoveAll, None));
    }
    Err(OpError {
        kind: "requestError",
        code: "OPERATION_REQUIRED",
        message: "an operation sets one of create, remove, removeAll (true)".into(),
    })
}

pub(super) fn add_operations(
    state: &mut GoogleState,
    version: &str,
    customer: &str,
    id: u64,
    body: &Value,
    record: &mut GoogleRequest,
) -> Result<Value, RpcError> {
    let max = state.config.max_identifiers_per_request;
    let operations = body
        .get("operations")
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| {
            RpcError::invalid(AdsError::new(
                "collectionSizeError",
                "TOO_FEW",
                "operations must not be empty.",
            ))
        })?;
    let identifiers: usize = operations.iter().map(identifier_count).sum();
    record.operations = operations.len();
    record.identifiers = identifiers;
    let job = job_of(state, customer, id)?;
    if job.status != JobStatus::Pending {
        return Err(RpcError::invalid(AdsError::new(
            "offlineUserDataJobError",
            "JOB_ALREADY_STARTED",
            "Once the upload job is started, new operations cannot be added.",
        )));
    }
    if identifiers > max {
        return Err(RpcError::invalid(AdsError::new(
            "offlineUserDataJobError",
            "TOO_MANY_USER_IDENTIFIERS",
            format!("{identifiers} user identifiers in one request; at most {max}."),
        )));
    }
    let key_type = state
        .lists
        .get(&job.user_list)
        .and_then(|l| l.key_type)
        .unwrap_or(UploadKeyType::ContactInfo);
    // What the job holds so far, and the operations already in it.
    let mut holds_creates = job.holds_creates();
    let mut ops_in_job = job.ops.len();
    let partial = body.get("enablePartialFailure") == Some(&Value::Bool(true));
    let validate_only = body.get("validateOnly") == Some(&Value::Bool(true));
    let mut good = Vec::new();
    let mut consents = Vec::new();
    let mut errors = Vec::new();
    for (index, op) in operations.iter().enumerate() {
        let checked = parse_operation(op).and_then(|(parsed, consent)| {
            match &parsed {
                JobOp::Create(m) | JobOp::Remove(m) => {
                    if let Some((field, _)) = m.iter().find(|(f, _)| !key_type.accepts(f)) {
                        return Err(OpError::job(
                            "INCOMPATIBLE_UPLOAD_KEY_TYPE",
                            format!(
                                "{field} does not match the user list's upload key type {}",
                                key_type.as_str()
                            ),
                        ));
                    }
                    let create = matches!(parsed, JobOp::Create(_));
                    if holds_creates.is_some_and(|c| c != create) {
                        return Err(OpError::job(
                            "CONFLICTING_OPERATION",
                            "Mixing creation and removal of offline data in the same job is not allowed.",
                        ));
                    }
                    holds_creates = Some(create);
                }
                JobOp::RemoveAll => {
                    if ops_in_job > 0 {
                        return Err(OpError::job(
                            "INVALID_OPERATION_ORDER",
                            "A remove-all operation must be the first operation of the job.",
                        ));
                    }
                }
            }
            Ok((parsed, consent))
        });
        match checked {
            Ok((parsed, consent)) => {
                ops_in_job += 1;
                good.push(parsed);
                consents.extend(consent);
            }
            Err(e) => errors.push(
                AdsError {
                    kind: e.kind,
                    code: e.code,
                    ..AdsError::new("offlineUserDataJobError", "UNKNOWN", e.message)
                }
                .at(index),
            ),
        }
    }
    if !errors.is_empty() && !partial {
        return Err(RpcError {
            status: StatusCode::BAD_REQUEST,
            rpc_status: "INVALID_ARGUMENT",
            message: "Request contains an invalid argument.".into(),
            errors,
            other_details: None,
        });
    }
    if !validate_only {
        if let Some(job) = state.jobs.get_mut(&id) {
            job.ops.extend(good);
            job.operation_consents.extend(consents);
        }
    }
    if errors.is_empty() {
        return Ok(json!({}));
    }
    let message = errors
        .iter()
        .map(|e| format!("{}, at operations[{}]", e.message, e.index.unwrap_or(0)))
        .collect::<Vec<_>>()
        .join("; ");
    let request_id = state.requests.len() as u64 + 1;
    Ok(json!({
        "partialFailureError": {
            "code": 3,
            "message": message,
            "details": [google_ads_failure(version, &errors, request_id)],
        }
    }))
}

pub(super) fn run_job(
    state: &mut GoogleState,
    version: &str,
    customer: &str,
    id: u64,
) -> Result<Value, RpcError> {
    let job = job_of(state, customer, id)?;
    if job.status != JobStatus::Pending {
        return Err(RpcError::invalid(AdsError::new(
            "offlineUserDataJobError",
            "JOB_ALREADY_STARTED",
            "Only a PENDING job can be run.",
        )));
    }
    let list = job.user_list.clone();
    if state.list_busy(&list, id) {
        state.concurrent_refusals += 1;
        return Err(concurrent_modification());
    }
    let done_at = state
        .config
        .run_completes
        .then(|| state.now() + state.config.job_duration);
    if let Some(job) = state.jobs.get_mut(&id) {
        job.status = JobStatus::Running;
        job.done_at = done_at;
    }
    let running = state
        .jobs
        .values()
        .filter(|j| j.user_list == list && j.status == JobStatus::Running)
        .count();
    state.max_running_per_list = state.max_running_per_list.max(running);
    state.finish_due();
    state.next_id += 1;
    Ok(json!({
        "name": format!("customers/{customer}/operations/{}", state.next_id),
        "metadata": {
            "@type": format!("type.googleapis.com/google.ads.googleads.{version}.resources.OfflineUserDataJobMetadata"),
        },
    }))
}

pub(super) fn concurrent_modification() -> RpcError {
    RpcError::new(
        StatusCode::CONFLICT,
        "ABORTED",
        AdsError::new(
            "databaseError",
            "CONCURRENT_MODIFICATION",
            "Another job is running on this user list. Retry when it finishes.",
        ),
    )
}

pub(super) fn finish_job(state: &mut GoogleState, id: u64) {
    let Some(job) = state.jobs.get_mut(&id) else {
        return;
    };
    job.status = JobStatus::Success;
    let ops = job.ops.clone();
    let members = &mut state
        .lists
        .entry(job.user_list.clone())
        .or_default()
        .members;
    for op in ops {
        match op {
            JobOp::Create(m) => {
                let mut merged = m;
                members.retain(|existing| {
                    if existing.iter().any(|p| merged.contains(p)) {
                        merged.extend(existing.iter().cloned());
                        false
                    } else {
                        true
                    }
                });
                members.push(merged);
            }
            JobOp::Remove(m) => members.retain(|existing| !existing.iter().any(|p| m.contains(p))),
            JobOp::RemoveAll => members.clear(),
        }
    }
}

/// The value compared in a minimal GAQL `WHERE field = value`.
pub(super) fn where_value<'a>(query: &'a str, field: &str) -> Option<&'a str> {
    // Only the WHERE clause filters: the same field may also be SELECTed.
    let clause_at = query.to_ascii_lowercase().find(" where ")?;
    let clause = query.get(clause_at..)?;
    let at = clause.find(field)? + field.len();
    let rest = clause
        .get(at..)?
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    if let Some(quoted) = rest.strip_prefix('\'').or_else(|| rest.strip_prefix('"')) {
        let end = quoted.find(['\'', '"'])?;
        quoted.get(..end)
    } else {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest.get(..end).filter(|s| !s.is_empty())
    }
}

pub(super) fn search(state: &GoogleState, customer: &str, body: &Value) -> Result<Value, RpcError> {
    let query_error =
        |message: &str| RpcError::invalid(AdsError::new("queryError", "UNEXPECTED_INPUT", message));
    let query = body
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| query_error("query is required."))?;
    let lower = query.to_ascii_lowercase();
    let from = lower
        .split_once(" from ")
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or(""))
        .ok_or_else(|| query_error("Expected FROM <resource>."))?;
    let results: Vec<Value> = match from {
        "offline_user_data_job" => {
            let by_name = where_value(query, "offline_user_data_job.resource_name");
            let by_id = where_value(query, "offline_user_data_job.id");
            state
                .jobs
                .values()
                .filter(|j| j.customer == customer)
                .filter(|j| by_name.is_none_or(|n| n == j.resource_name()))
                .filter(|j| by_id.is_none_or(|n| n == j.id.to_string()))
                .map(|j| json!({ "offlineUserDataJob": j.to_json() }))
                .collect()
        }
        "user_list" => {
            let by_name = where_value(query, "user_list.resource_name");
            let by_id = where_value(query, "user_list.id");
            let prefix = format!("customers/{customer}/userLists/");
            state
                .lists
                .iter()
                .filter_map(|(name, list)| name.strip_prefix(&prefix).map(|id| (name, id, list)))
                .filter(|(name, _, _)| by_name.is_none_or(|n| n == name.as_str()))
                .filter(|(_, id, _)| by_id.is_none_or(|n| n == *id))
                .map(|(name, id, list)| {
                    let key_type = list.key_type.unwrap_or(UploadKeyType::ContactInfo);
                    json!({ "userList": {
                        "resourceName": name,
                        "id": id,
                        "crmBasedUserList": { "uploadKeyType": key_type.as_str() },
                        "sizeForSearch": list.members.len().to_string(),
                        "sizeForDisplay": list.members.len().to_string(),
                    }})
                })
                .collect()
        }
        other => {
            return Err(query_error(&format!(
                "The sim serves FROM offline_user_data_job or user_list, not {other}."
            )))
        }
    };
    Ok(json!({ "results": results }))
}
