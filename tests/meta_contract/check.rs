//! Reading `tests/contracts/meta-graph.json` and checking one exchange,
//! message or session log against it.

use std::collections::BTreeMap;

use dataout_integration_tests::contract_support::query_pairs;
use dataout_sim::meta::WireExchange;
use serde_json::{Map, Value};

const CONTRACT: &str = include_str!("../contracts/meta-graph.json");

pub(crate) fn contract() -> Value {
    serde_json::from_str(CONTRACT).unwrap_or_else(|e| panic!("contract is not JSON: {e}"))
}

/// A template segment: `{x}` is any segment, `act_{x}` any with that prefix.
pub(crate) fn segment_matches(template: &str, segment: &str) -> bool {
    match template.find('{') {
        Some(at) if template.ends_with('}') => {
            let prefix = &template[..at];
            segment.len() > prefix.len() && segment.starts_with(prefix)
        }
        _ => template == segment,
    }
}

pub(crate) fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| segment_matches(t, p))
}

/// The contract's method served at `verb path`, if any. A node id with a
/// prefix (`act_…`) is a better match than a bare one.
pub(crate) fn method_of<'c>(c: &'c Value, verb: &str, path: &str) -> Option<&'c Value> {
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

pub(crate) fn is_int64(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

pub(crate) fn enum_values<'c>(c: &'c Value, name: &str, list: &str) -> Vec<&'c str> {
    c["enums"][name][list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Check `value` against message `name`; problems go to `errors`.
pub(crate) fn check_message(
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

pub(crate) fn check_value(
    c: &Value,
    ty: &str,
    v: &Value,
    at: &str,
    request: bool,
    errors: &mut Vec<String>,
) {
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
pub(crate) fn check_rows(
    c: &Value,
    payload: &Map<String, Value>,
    at: &str,
    errors: &mut Vec<String>,
) {
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

/// A Graph error answer: the error object's fields, a code Meta defines and
/// a subcode Meta defines for it.
pub(crate) fn check_refusal(c: &Value, answer: &Value, at: &str, errors: &mut Vec<String>) {
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
pub(crate) fn check_usage_header(c: &Value, x: &WireExchange, at: &str, errors: &mut Vec<String>) {
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
pub(crate) fn check_exchange(
    c: &Value,
    x: &WireExchange,
    errors: &mut Vec<String>,
) -> Option<String> {
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
pub(crate) fn check_sessions(wire: &[WireExchange], errors: &mut Vec<String>) {
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
