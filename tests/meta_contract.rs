//! Meta's Graph API as Meta defines it (`tests/contracts/meta-graph.json`,
//! written from Meta's business SDKs and developer pages), checked against
//! both sides we wrote from our own reading:
//! * our client: every request the pipeline makes (audience adds and
//!   removes, replace, count and session reads, Conversions API events),
//!   captured on the wire, is a method of the contract with its verb, path,
//!   parameters and fields; every upload session it opens is closed;
//! * our simulator: it serves exactly the contract's routes, refuses fields
//!   the contract does not define, and answers only with codes, subcodes,
//!   error types and usage entries Meta defines; everything else is Graph's
//!   unsupported-request answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use dataout::domain::model::{DeliveryOp, Identifiers, OpKind, PersonKey};
use dataout::domain::spec::{DestinationKind, ExportSource};
use dataout::ports::SystemClock;
use dataout_cli::demo::{self, SimEnv};
use dataout_sim::meta::{MetaSim, MetaSimConfig, WireExchange, DEFAULT_ACCESS_TOKEN};
use serde_json::{json, Map, Value};

const CONTRACT: &str = include_str!("contracts/meta-graph.json");

fn contract() -> Value {
    serde_json::from_str(CONTRACT).unwrap_or_else(|e| panic!("contract is not JSON: {e}"))
}

/// A template segment: `{x}` is any segment, `act_{x}` any with that prefix.
fn segment_matches(template: &str, segment: &str) -> bool {
    match template.find('{') {
        Some(at) if template.ends_with('}') => {
            let prefix = &template[..at];
            segment.len() > prefix.len() && segment.starts_with(prefix)
        }
        _ => template == segment,
    }
}

fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| segment_matches(t, p))
}

/// The contract's method served at `verb path`, if any. A node id with a
/// prefix (`act_…`) is a better match than a bare one.
fn method_of<'c>(c: &'c Value, verb: &str, path: &str) -> Option<&'c Value> {
    let methods = c["methods"].as_array()?;
    let fitting: Vec<&Value> = methods
        .iter()
        .filter(|m| m["verb"] == verb && path_matches(m["path"].as_str().unwrap_or_default(), path))
        .collect();
    fitting
        .iter()
        .find(|m| m["path"].as_str().is_some_and(|p| p.contains("_{")))
        .or_else(|| fitting.first())
        .copied()
}

fn is_int64(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

fn enum_values<'c>(c: &'c Value, name: &str, list: &str) -> Vec<&'c str> {
    c["enums"][name][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Check `value` against message `name`; problems go to `errors`.
fn check_message(
    c: &Value,
    name: &str,
    value: &Value,
    at: &str,
    request: bool,
    errors: &mut Vec<String>,
) {
    let Some(message) = c["messages"].get(name) else {
        errors.push(format!("{at}: message {name} is not in the contract"));
        return;
    };
    let Some(obj) = value.as_object() else {
        errors.push(format!("{at}: {name} must be a JSON object, got {value}"));
        return;
    };
    let fields = &message["fields"];
    for (key, v) in obj {
        let Some(field) = fields.get(key) else {
            errors.push(format!("{at}.{key}: {name} has no field {key:?}"));
            continue;
        };
        let ty = field["type"].as_str().unwrap_or_default();
        if field["repeated"] == true {
            match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        check_value(c, ty, item, &format!("{at}.{key}[{i}]"), request, errors);
                    }
                }
                None => errors.push(format!("{at}.{key}: repeated, must be an array")),
            }
        } else {
            check_value(c, ty, v, &format!("{at}.{key}"), request, errors);
        }
    }
    for (key, field) in fields.as_object().into_iter().flatten() {
        if field["required"] == true && !obj.contains_key(key) {
            errors.push(format!("{at}: required field {key} of {name} missing"));
        }
    }
    if name == "Payload" {
        check_rows(c, obj, at, errors);
    }
}

fn check_value(c: &Value, ty: &str, v: &Value, at: &str, request: bool, errors: &mut Vec<String>) {
    let ok = match ty {
        "string" => v.is_string(),
        "bool" => v.is_boolean(),
        "int64" => is_int64(v),
        "number" => v.is_number(),
        "object" => v.is_object(),
        "strings" => v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        "schema" => {
            let keys = enum_values(c, "SchemaKey", "values");
            let single = enum_values(c, "SchemaKey", "single_key");
            match v {
                Value::String(s) => keys.contains(&s.as_str()),
                Value::Array(list) => {
                    !list.is_empty()
                        && list.iter().all(|k| {
                            k.as_str().is_some_and(|k| {
                                keys.contains(&k) && (list.len() == 1 || !single.contains(&k))
                            })
                        })
                }
                _ => false,
            }
        }
        // Checked with the schema, in `check_rows`.
        "rows" => v.is_array(),
        t if t.starts_with("enum:") => {
            let values = enum_values(c, &t[5..], "values");
            v.as_str().is_some_and(|s| values.contains(&s))
        }
        t if t.starts_with("message:") && t.ends_with("[]") => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_message(
                        c,
                        &t[8..t.len() - 2],
                        item,
                        &format!("{at}[{i}]"),
                        request,
                        errors,
                    );
                }
                true
            }
            None => false,
        },
        t if t.starts_with("message:") => {
            check_message(c, &t[8..], v, at, request, errors);
            true
        }
        _ => true,
    };
    if !ok {
        errors.push(format!("{at}: {v} is not a valid {ty}"));
    }
}

/// Rows of a payload: one cell per schema key; hashed keys as SHA-256
/// lowercase hex (or empty); numbers only for LOOKALIKE_VALUE; at most
/// 10,000 rows.
fn check_rows(c: &Value, payload: &Map<String, Value>, at: &str, errors: &mut Vec<String>) {
    let schema: Vec<String> = match payload.get("schema") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(keys)) => keys
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        _ => return,
    };
    let hashed = enum_values(c, "SchemaKey", "hashed");
    let rows = payload
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let limit = c["limits"]["rows_per_users_call"].as_u64().unwrap_or(0) as usize;
    if rows.is_empty() || rows.len() > limit {
        errors.push(format!(
            "{at}.data: {} rows, Meta takes 1 to {limit}",
            rows.len()
        ));
    }
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<&Value> = match row {
            Value::Array(cells) => cells.iter().collect(),
            scalar if schema.len() == 1 => vec![scalar],
            _ => {
                errors.push(format!("{at}.data[{i}]: not an array"));
                continue;
            }
        };
        if cells.len() != schema.len() {
            errors.push(format!(
                "{at}.data[{i}]: {} cells for {} keys",
                cells.len(),
                schema.len()
            ));
            continue;
        }
        for (key, cell) in schema.iter().zip(cells) {
            let ok = match (key.as_str(), cell) {
                ("LOOKALIKE_VALUE", v) => v.is_number() || v == "",
                ("DATA_PROCESSING_OPTIONS", v) => v.is_array(),
                (k, Value::String(s)) if hashed.contains(&k) => s.is_empty() || is_sha256_hex(s),
                (_, v) => v.is_string(),
            };
            if !ok {
                errors.push(format!(
                    "{at}.data[{i}] {key}: {cell} is not what Meta takes"
                ));
            }
        }
    }
}

/// Percent-decoded `key=value` pairs of a query string.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A Graph error answer: the error object's fields, a code Meta defines and
/// a subcode Meta defines for it.
fn check_refusal(c: &Value, answer: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(error) = answer.get("error") else {
        errors.push(format!(
            "{at}: an error answer without Graph's error object: {answer}"
        ));
        return;
    };
    check_message(
        c,
        "GraphError",
        error,
        &format!("{at} error"),
        false,
        errors,
    );
    let code = error["code"]
        .as_i64()
        .map(|n| n.to_string())
        .unwrap_or_default();
    let Some(defined) = c["codes"].get(&code) else {
        errors.push(format!("{at}: code {code} is not one Meta defines"));
        return;
    };
    if let Some(sub) = error.get("error_subcode").and_then(Value::as_i64) {
        if defined["subcodes"].get(sub.to_string()).is_none() {
            errors.push(format!(
                "{at}: subcode {sub} is not one Meta defines for code {code}"
            ));
        }
    }
}

/// `X-Business-Use-Case-Usage`, when an answer carries it.
fn check_usage_header(c: &Value, x: &WireExchange, at: &str, errors: &mut Vec<String>) {
    let Some(raw) = x.response_header("x-business-use-case-usage") else {
        return;
    };
    let Ok(Value::Object(usage)) = serde_json::from_str::<Value>(raw) else {
        errors.push(format!(
            "{at}: X-Business-Use-Case-Usage is not a JSON object: {raw}"
        ));
        return;
    };
    for (id, entries) in usage {
        match entries.as_array() {
            Some(list) => {
                for (i, entry) in list.iter().enumerate() {
                    check_message(
                        c,
                        "BusinessUseCaseUsage",
                        entry,
                        &format!("{at} usage {id}[{i}]"),
                        true,
                        errors,
                    );
                }
            }
            None => errors.push(format!("{at}: usage of {id} is not a list")),
        }
    }
}

/// Everything wrong with one exchange, as the contract sees it. Returns the
/// method's name when the exchange is one of the contract's methods.
fn check_exchange(c: &Value, x: &WireExchange, errors: &mut Vec<String>) -> Option<String> {
    let at = format!("{} {}", x.method, x.path);
    let version = x.path.split('/').nth(1).unwrap_or_default();
    let version_ok = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && a.bytes().all(|d| d.is_ascii_digit())
                && !b.is_empty()
                && b.bytes().all(|d| d.is_ascii_digit())
        });
    if !version_ok {
        errors.push(format!(
            "{at}: {version:?} is not a Graph version (vMAJOR.MINOR)"
        ));
    }
    let Some(method) = method_of(c, &x.method, &x.path) else {
        errors.push(format!("{at}: not a method of Meta's definition"));
        return None;
    };
    let name = method["name"].as_str().unwrap_or_default().to_string();
    // Parameters: the query string, and on POST / DELETE the JSON body.
    let mut params: Map<String, Value> = x
        .query
        .as_deref()
        .map(query_pairs)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if x.method == "GET" {
        if !x.body.is_empty() {
            errors.push(format!("{at}: a GET carries no body"));
        }
    } else {
        match serde_json::from_slice::<Value>(&x.body) {
            Ok(Value::Object(body)) => params.extend(body),
            _ => errors.push(format!("{at}: the body is not a JSON object")),
        }
    }
    let declared = if x.method == "GET" {
        &method["query"]
    } else {
        &method["params"]
    };
    for (k, v) in &params {
        match declared.get(k).and_then(Value::as_str) {
            Some(ty) => check_value(c, ty, v, &format!("{name}.{k}"), true, errors),
            None => errors.push(format!("{at}: parameter {k:?} is not one {name} takes")),
        }
    }
    for k in method["required_params"].as_array().into_iter().flatten() {
        let k = k.as_str().unwrap_or_default();
        if !params.contains_key(k) {
            errors.push(format!("{at}: {name} needs parameter {k}"));
        }
    }
    if let Some(fields) = params.get("fields").and_then(Value::as_str) {
        let known: Vec<&str> = method["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for f in fields.split(',').map(str::trim) {
            if !known.is_empty() && !known.contains(&f) {
                errors.push(format!(
                    "{at}: field {f:?} is not one Meta defines for {name}"
                ));
            }
        }
    }
    if let Some(events) = params.get("data").and_then(Value::as_array) {
        let most = c["limits"]["events_per_request"].as_u64().unwrap_or(0) as usize;
        if events.is_empty() || events.len() > most {
            errors.push(format!(
                "{at}: {} events, Meta takes 1 to {most}",
                events.len()
            ));
        }
    }
    let token_in_header = x
        .headers
        .iter()
        .any(|(h, v)| h == "authorization" && (v.starts_with("Bearer") || v.starts_with("OAuth")));
    if !token_in_header && !params.contains_key("access_token") {
        errors.push(format!("{at}: no access token"));
    }
    // The answer: the method's response, or Graph's error object.
    let answer: Value = serde_json::from_slice(&x.response_body).unwrap_or(Value::Null);
    if (200..300).contains(&x.status) {
        check_message(
            c,
            method["response"].as_str().unwrap_or_default(),
            &answer,
            &format!("{name} answer"),
            false,
            errors,
        );
    } else {
        check_refusal(c, &answer, &at, errors);
    }
    check_usage_header(c, x, &at, errors);
    Some(name)
}

/// Meta's session rules over the whole run: each session starts at
/// `batch_seq` 1, goes on in sequence, and ends with a `last_batch_flag`
/// batch Meta took (no session is left open).
fn check_sessions(wire: &[WireExchange], errors: &mut Vec<String>) {
    let mut sessions: BTreeMap<String, Vec<(u64, bool, bool)>> = BTreeMap::new();
    for x in wire {
        if !(x.path.ends_with("/users") || x.path.ends_with("/usersreplace")) {
            continue;
        }
        let Ok(body) = serde_json::from_slice::<Value>(&x.body) else {
            continue;
        };
        let Some(s) = body.get("session") else {
            continue;
        };
        let id = s["session_id"].to_string();
        let seq = s["batch_seq"].as_u64().unwrap_or(0);
        let last = s["last_batch_flag"] == true;
        let taken = (200..300).contains(&x.status);
        sessions.entry(id).or_default().push((seq, last, taken));
    }
    for (id, batches) in &sessions {
        let taken: Vec<&(u64, bool, bool)> = batches.iter().filter(|b| b.2).collect();
        let seqs: Vec<u64> = taken.iter().map(|b| b.0).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        if seqs != expected {
            errors.push(format!(
                "session {id}: batch_seq taken {seqs:?}, Meta wants 1, 2, 3 …"
            ));
        }
        if !taken.last().is_some_and(|b| b.1) {
            errors.push(format!(
                "session {id}: left open (no last_batch_flag batch taken): {batches:?}"
            ));
        }
    }
}

fn member(email: &str, audience: &str) -> DeliveryOp {
    DeliveryOp {
        op: OpKind::Add,
        person_key: PersonKey(format!("id:{email}")),
        ids: Identifiers {
            id: Some(email.to_string()),
            email: Some(email.to_string()),
            cio_id: None,
            phone: None,
        },
        audience: audience.into(),
        tier: None,
        attributes: Default::default(),
        event: None,
        source_ts: 0,
        intake_ts: 0,
    }
}

#[tokio::test]
async fn every_request_our_client_makes_is_a_method_of_metas_definition() {
    let c = contract();
    let dir = tempfile::tempdir().unwrap();
    let env = SimEnv::start(300, &dir.path().join("warehouse"))
        .await
        .unwrap();
    env.meta.record_wire(true);
    let rt = Arc::new(
        env.runtime(&dir.path().join("state"), Arc::new(SystemClock))
            .unwrap(),
    );
    rt.start_workers().await.unwrap();
    let server = dataout_sim::serve(rt.router()).await.unwrap();
    let source = env.source().unwrap();
    let segments: Vec<String> = env
        .spec
        .exports
        .iter()
        .filter(|(_, e)| matches!(e.source, ExportSource::Segment { .. }))
        .map(|(n, _)| n.clone())
        .collect();
    for name in &segments {
        rt.run_batch(&source, name).await.unwrap();
    }
    rt.wait_idle(Duration::from_secs(60)).await.unwrap();
    demo::replay_stream(&server.base_url, &env.cio.handle, &env.spec)
        .await
        .unwrap();
    rt.wait_idle(Duration::from_secs(60)).await.unwrap();
    for name in &segments {
        rt.run_batch(&source, name).await.unwrap();
    }
    rt.wait_idle(Duration::from_secs(60)).await.unwrap();
    rt.reconcile(Some(&source)).await.unwrap();
    // A full replace, as rollback uses it.
    let (export, binding) = env
        .spec
        .exports
        .values()
        .find_map(|e| {
            e.destinations
                .iter()
                .find(|b| {
                    env.spec.destinations.get(&b.destination).map(|d| d.kind)
                        == Some(DestinationKind::MetaAudience)
                        && matches!(e.source, ExportSource::Segment { .. })
                })
                .map(|b| (e.clone(), b.clone()))
        })
        .unwrap();
    let meta = rt.destinations.get(&binding.destination).unwrap().clone();
    let op = member("contract-check@example.com", &binding.audience);
    meta.replace_audience(
        &export,
        &binding,
        &binding.audience,
        std::slice::from_ref(&op),
    )
    .await
    .unwrap();
    meta.audience_stats(&export, &binding).await.unwrap();
    rt.shutdown().await;

    let wire = env.meta.wire();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for x in &wire {
        if let Some(name) = check_exchange(&c, x, &mut errors) {
            if (200..300).contains(&x.status) {
                *seen.entry(name).or_default() += 1;
            }
        }
    }
    check_sessions(&wire, &mut errors);
    errors.sort();
    errors.dedup();
    assert!(
        errors.is_empty(),
        "{} problems in {} exchanges:\n{}",
        errors.len(),
        wire.len(),
        errors.join("\n")
    );
    // Every method our client uses was called and answered: the checks above
    // cannot pass by seeing nothing.
    let used: BTreeSet<String> = c["methods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["used_by_client"] == true)
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    let called: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(called, used, "methods answered: {seen:?}");
}

const ACCOUNT: &str = "1234567890";
const AUDIENCE: &str = "23850000000111";
const PIXEL: &str = "555000111";

fn concrete(template: &str) -> String {
    template
        .replace("{version}", "v25.0")
        .replace("act_{ad_account_id}", &format!("act_{ACCOUNT}"))
        .replace("{audience_id}", AUDIENCE)
        .replace("{pixel_id}", PIXEL)
}

/// Graph's answer to what it does not serve.
fn is_unsupported(c: &Value, status: u16, answer: &Value) -> bool {
    let u = &c["unsupported_request"];
    u64::from(status) == u["status"].as_u64().unwrap_or(0)
        && answer["error"]["type"] == u["type"]
        && answer["error"]["code"] == u["code"]
        && answer["error"]["error_subcode"] == u["error_subcode"]
}

fn sha(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn the_simulator_serves_exactly_the_contracts_routes_and_answers_only_in_metas_terms() {
    let c = contract();
    let (running, sim) = MetaSim::start(MetaSimConfig::default()).await.unwrap();
    sim.create_audience(AUDIENCE);
    sim.create_pixel(PIXEL);
    sim.record_wire(true);
    let base = running.base_url.clone();
    let http = reqwest::Client::new();
    let call = |verb: &str, path: String, body: Option<Value>| {
        let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
        let mut req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(DEFAULT_ACCESS_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let mut errors = Vec::new();
    for m in c["methods"].as_array().unwrap() {
        let path = concrete(m["path"].as_str().unwrap());
        for verb in ["GET", "POST", "PUT", "DELETE"] {
            let body = (verb != "GET").then(|| json!({}));
            let (status, answer) = call(verb, path.clone(), body).await;
            let served = method_of(&c, verb, &path).is_some();
            let unsupported = is_unsupported(&c, status, &answer);
            if served && unsupported {
                errors.push(format!("{verb} {path}: a contract method is not served"));
            }
            if !served && !unsupported {
                errors.push(format!(
                    "{verb} {path}: not in the contract, answered {status} {answer} instead of Graph's unsupported request"
                ));
            }
        }
    }
    for path in [
        format!("/v25.0/{AUDIENCE}/adaccounts"),
        format!("/v25.0/{AUDIENCE}/users/extra"),
        format!("/v25.0/act_{ACCOUNT}/usersofanyaudience"),
        format!("/v25.0/{PIXEL}/events/extra"),
        "/v25.0".to_string(),
        "/".to_string(),
    ] {
        for verb in ["GET", "POST"] {
            let (status, answer) = call(verb, path.clone(), Some(json!({}))).await;
            if !is_unsupported(&c, status, &answer) {
                errors.push(format!(
                    "{verb} {path}: {status} {answer}, not Graph's unsupported request"
                ));
            }
        }
    }
    // Fields the contract does not define are refused (code 100).
    let users = format!("/v25.0/{AUDIENCE}/users");
    let good_users = json!({"payload": {"schema": ["EMAIL"], "data": [[sha("a@example.com")]]}});
    let good_event = json!({
        "event_name": "Purchase",
        "event_time": chrono::Utc::now().timestamp(),
        "action_source": "system_generated",
        "event_id": "e-1",
        "user_data": {"em": [sha("a@example.com")]},
        "custom_data": {"value": 1.5, "currency": "USD"},
    });
    let events = format!("/v25.0/{PIXEL}/events");
    let mut extra_param = good_users.clone();
    extra_param["payloads"] = json!([]);
    let mut extra_payload = good_users.clone();
    extra_payload["payload"]["rows"] = json!([]);
    let mut extra_session = good_users.clone();
    extra_session["session"] =
        json!({"session_id": 9, "batch_seq": 1, "last_batch_flag": true, "sequence": 1});
    let mut extra_event = good_event.clone();
    extra_event["user"] = json!({});
    let mut extra_user_data = good_event.clone();
    extra_user_data["user_data"]["email"] = json!("a@example.com");
    for (what, path, body) in [
        ("unknown parameter", users.clone(), extra_param),
        ("unknown payload field", users.clone(), extra_payload),
        ("unknown session field", users.clone(), extra_session),
        (
            "unknown event field",
            events.clone(),
            json!({"data": [extra_event]}),
        ),
        (
            "unknown user_data field",
            events.clone(),
            json!({"data": [extra_user_data]}),
        ),
    ] {
        let (status, answer) = call("POST", path, Some(body)).await;
        if status != 400 || answer["error"]["code"] != 100 {
            errors.push(format!("{what}: {status} {answer}"));
        }
    }
    // Good requests, answered in the contract's shapes.
    for (verb, path, body) in [
        ("POST", users.clone(), Some(good_users.clone())),
        ("DELETE", users.clone(), Some(good_users.clone())),
        ("POST", events.clone(), Some(json!({"data": [good_event]}))),
        (
            "GET",
            format!("/v25.0/{AUDIENCE}?fields=approximate_count_lower_bound,operation_status"),
            None,
        ),
        ("GET", format!("/v25.0/{AUDIENCE}/sessions"), None),
    ] {
        let (status, answer) = call(verb, path.clone(), body).await;
        if status != 200 {
            errors.push(format!("{verb} {path}: {status} {answer}"));
        }
    }
    for x in sim.wire() {
        // Audience edits spend the custom_audience use case's quota.
        let edit = (x.path.ends_with("/users") || x.path.ends_with("/usersreplace"))
            && method_of(&c, &x.method, &x.path).is_some();
        let reports_it = x
            .response_header("x-business-use-case-usage")
            .is_some_and(|h| h.contains("\"type\":\"custom_audience\""));
        if edit && !reports_it {
            errors.push(format!(
                "{} {}: no custom_audience entry in X-Business-Use-Case-Usage",
                x.method, x.path
            ));
        }
        if method_of(&c, &x.method, &x.path).is_some() {
            let mut found = Vec::new();
            check_exchange(&c, &x, &mut found);
            // Our probes send bodies the contract refuses on purpose; only
            // the answers are the simulator's to get right.
            errors.extend(found.into_iter().filter(|e| {
                e.contains("answer")
                    || e.contains(" error")
                    || e.contains("code")
                    || e.contains("usage")
            }));
        } else {
            let mut found = Vec::new();
            check_refusal(
                &c,
                &serde_json::from_slice(&x.response_body).unwrap_or(Value::Null),
                &x.path,
                &mut found,
            );
            errors.extend(found);
        }
    }
    // Every code, subcode, error type and usage name the simulator's source
    // can answer with is one the contract defines.
    let src_dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sim/src/meta"));
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(src_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "rs")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.contains("tests"))
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "the simulator's source was not found: {files:?}"
    );
    let codes = c["codes"].as_object().unwrap();
    let all_subcodes: BTreeSet<String> = codes
        .values()
        .flat_map(|d| {
            d["subcodes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
        })
        .collect();
    let names: BTreeSet<&str> = ["ErrorType", "BusinessUseCase", "AccessTier"]
        .iter()
        .flat_map(|e| enum_values(&c, e, "values"))
        .collect();
    let number_after = |text: &str, marker: &str| -> Vec<String> {
        text.match_indices(marker)
            .map(|(i, _)| {
                text[i + marker.len()..]
                    .trim_start()
                    .chars()
                    .take_while(|ch| ch.is_ascii_digit() || *ch == '_')
                    .filter(|ch| *ch != '_')
                    .collect::<String>()
            })
            .filter(|n| !n.is_empty())
            .collect()
    };
    let mut scanned = 0;
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for n in number_after(code, "GraphError::new(") {
            scanned += 1;
            if !codes.contains_key(&n) {
                errors.push(format!(
                    "sim/src/meta/{file}: code {n} is not one Meta defines"
                ));
            }
        }
        for n in number_after(code, ".subcode(")
            .into_iter()
            .chain(number_after(code, "audience_update_error("))
        {
            scanned += 1;
            if !all_subcodes.contains(&n) {
                errors.push(format!(
                    "sim/src/meta/{file}: subcode {n} is not one Meta defines"
                ));
            }
        }
        for marker in ["kind: \"", "\"type\": \"", "=> \""] {
            for (i, _) in code.match_indices(marker) {
                let literal: String = code[i + marker.len()..]
                    .chars()
                    .take_while(|ch| *ch != '"')
                    .collect();
                let shaped = literal.ends_with("Exception")
                    || literal.ends_with("_access")
                    || (marker == "\"type\": \"" && !literal.contains(' '));
                if shaped && !names.contains(literal.as_str()) {
                    errors.push(format!(
                        "sim/src/meta/{file}: {literal:?} is not a name Meta defines"
                    ));
                }
            }
        }
    }
    assert!(
        scanned >= 10,
        "only {scanned} codes found in the simulator's source"
    );
    errors.sort();
    errors.dedup();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
