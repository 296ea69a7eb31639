//! Customer.io's definitions as checks: contract types and shapes, reporting webhook
//! bodies (strict: only fields Customer.io defines), bodies made from the contract, and
//! App API exchanges against the contract's methods.

use dataout_sim::customerio::WireExchange;
use serde_json::{json, Map, Value};

pub fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

// ------------------------------------------------------------------ types

/// Whether `v` is of the contract type `ty` (problems of nested objects go to `errors`).
pub fn check_type(
    c: &Value,
    ty: &Value,
    v: &Value,
    at: &str,
    strict: bool,
    errors: &mut Vec<String>,
) {
    match ty {
        Value::String(t) => {
            if let Some(values) = t.strip_prefix("enum:") {
                if !v
                    .as_str()
                    .is_some_and(|s| values.split('|').any(|x| x == s))
                {
                    errors.push(format!("{at}: {v} is not one of {values}"));
                }
                return;
            }
            if let Some(name) = t.strip_prefix("message:") {
                check_object(c, &c["app_api"]["messages"][name], v, at, strict, errors);
                return;
            }
            let ok = t.split('|').any(|one| match one {
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "boolean" => v.is_boolean(),
                "object" => v.is_object(),
                "null" => v.is_null(),
                "any" => true,
                _ => false,
            });
            if !ok {
                errors.push(format!("{at}: {v} is not {t}"));
            }
        }
        Value::Object(o) if o.contains_key("array") => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_type(c, &o["array"], item, &format!("{at}[{i}]"), strict, errors);
                }
            }
            // Customer.io's own example lists `tags: null`.
            None if v.is_null() && !strict => {}
            None => errors.push(format!("{at}: {v} is not an array")),
        },
        Value::Object(_) => check_object(c, ty, v, at, strict, errors),
        _ => errors.push(format!("{at}: the contract's type {ty} is unreadable")),
    }
}

/// `v` against `{required, fields}`; `strict` refuses fields the spec does not define.
pub fn check_object(
    c: &Value,
    spec: &Value,
    v: &Value,
    at: &str,
    strict: bool,
    errors: &mut Vec<String>,
) {
    let Some(obj) = v.as_object() else {
        errors.push(format!("{at}: {v} is not an object"));
        return;
    };
    for key in strs(&spec["required"]) {
        if !obj.contains_key(key) {
            errors.push(format!("{at}: required `{key}` missing"));
        }
    }
    for (key, value) in obj {
        match spec["fields"].get(key) {
            Some(ty) => check_type(c, ty, value, &format!("{at}.{key}"), strict, errors),
            None if strict => errors.push(format!(
                "{at}: `{key}` is not a field Customer.io defines here"
            )),
            None => {}
        }
    }
}

/// Everything wrong with one reporting webhook body, as Customer.io defines them. A pair
/// defined twice (`email.unsubscribed` is a message metric and a subscription change) may
/// match either definition.
pub fn check_reporting(c: &Value, body: &Value, at: &str, errors: &mut Vec<String>) {
    let rw = &c["reporting_webhook"];
    check_object(c, &rw["envelope"], body, at, true, errors);
    let (ot, metric) = (
        body["object_type"].as_str().unwrap_or_default(),
        body["metric"].as_str().unwrap_or_default(),
    );
    let data = &body["data"];
    let mut candidates: Vec<Vec<String>> = Vec::new();
    let subs = &rw["subscription_events"];
    if let Some(event) = subs["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["metric"] == metric)
    {
        let mut found = Vec::new();
        if !strs(&subs["object_types"]).contains(&ot) {
            found.push(format!("{at}: {ot} is not an object type of {metric}"));
        }
        let mut spec = json!({"required": [], "fields": {}});
        merge(&mut spec, &event["data"], true);
        for origin in strs(&event["origins_optional"]) {
            merge(&mut spec, &rw["origins"][origin], false);
        }
        check_object(c, &spec, data, &format!("{at}.data"), true, &mut found);
        candidates.push(found);
    }
    if let Some(event) = rw["message_events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["object_type"] == ot && e["metric"] == metric)
    {
        let mut found = Vec::new();
        let mut spec = json!({"required": [], "fields": {}});
        merge(&mut spec, &event["data"], true);
        // Exactly one origin group: the first whose required fields are all there.
        let origin = strs(&event["origins"]).into_iter().find(|o| {
            strs(&rw["origins"][*o]["required"])
                .iter()
                .all(|k| data.get(*k).is_some())
        });
        match origin {
            Some(o) => merge(&mut spec, &rw["origins"][o], true),
            None => found.push(format!(
                "{at}: data matches none of the origins of {ot}.{metric}"
            )),
        }
        check_object(c, &spec, data, &format!("{at}.data"), true, &mut found);
        candidates.push(found);
    }
    if candidates.is_empty() {
        errors.push(format!(
            "{at}: {ot}.{metric} is not an event Customer.io defines"
        ));
    } else if !candidates.iter().any(Vec::is_empty) {
        errors.extend(candidates.swap_remove(0));
    }
    if data.get("identifiers").is_some() {
        check_object(
            c,
            &rw["identifiers"],
            &data["identifiers"],
            &format!("{at}.data.identifiers"),
            true,
            errors,
        );
    }
}

/// Adds `from`'s fields (and, when `required`, its required list) to `spec`.
pub fn merge(spec: &mut Value, from: &Value, required: bool) {
    for (k, t) in from["fields"].as_object().into_iter().flatten() {
        spec["fields"][k] = t.clone();
    }
    if required {
        let mut req = spec["required"].as_array().cloned().unwrap_or_default();
        req.extend(from["required"].as_array().cloned().unwrap_or_default());
        spec["required"] = Value::Array(req);
    }
}

// ------------------------------------------------------------------ bodies from the contract

/// A value of contract type `ty` for field `name`.
pub fn sample(ty: &Value, name: &str, n: usize) -> Value {
    match ty {
        Value::String(t) if t.starts_with("enum:") => {
            json!(t[5..].split('|').next().unwrap_or_default())
        }
        Value::String(t) => match t.split('|').next().unwrap_or_default() {
            "integer" => json!(7),
            "boolean" => json!(false),
            "object" if name == "identifiers" => json!({
                "id": format!("cust_{n:05}"),
                "email": format!("contract+{n}@example.com"),
                "cio_id": format!("d9c1{n:08x}"),
            }),
            "object" => json!({}),
            _ => json!(format!("{name}-{n}")),
        },
        Value::Object(o) if o.contains_key("array") => json!([sample(&o["array"], name, n)]),
        Value::Object(_) => {
            let mut obj = Map::new();
            for (k, t) in ty["fields"].as_object().into_iter().flatten() {
                obj.insert(k.clone(), sample(t, k, n));
            }
            Value::Object(obj)
        }
        _ => Value::Null,
    }
}

pub fn fill(spec: &Value, data: &mut Map<String, Value>, n: usize) {
    for (k, t) in spec["fields"].as_object().into_iter().flatten() {
        data.insert(k.clone(), sample(t, k, n));
    }
}

/// One body per message event and origin, and per subscription metric and object type.
pub fn bodies_from_contract(c: &Value) -> Vec<Value> {
    let rw = &c["reporting_webhook"];
    let mut out = Vec::new();
    let mut envelope = |ot: &str, metric: &str, data: Map<String, Value>| {
        let n = out.len() + 1;
        out.push(json!({
            "event_id": format!("01JCONTRACT{n:015}"),
            "object_type": ot,
            "metric": metric,
            "timestamp": 1_751_371_200 + n as i64,
            "data": data,
        }));
    };
    for (i, event) in rw["message_events"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for origin in strs(&event["origins"]) {
            let mut data = Map::new();
            fill(&rw["origins"][origin], &mut data, i);
            fill(&event["data"], &mut data, i);
            envelope(
                event["object_type"].as_str().unwrap_or_default(),
                event["metric"].as_str().unwrap_or_default(),
                data,
            );
        }
    }
    for (i, event) in rw["subscription_events"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for ot in strs(&rw["subscription_events"]["object_types"]) {
            let mut data = Map::new();
            fill(&event["data"], &mut data, 900 + i);
            envelope(ot, event["metric"].as_str().unwrap_or_default(), data);
        }
    }
    out
}

// ------------------------------------------------------------------ App API exchanges

pub fn method_of<'c>(c: &'c Value, verb: &str, path: &str) -> Option<&'c Value> {
    c["app_api"]["methods"].as_array()?.iter().find(|m| {
        m["verb"] == verb && {
            let t: Vec<&str> = m["path"].as_str().unwrap_or_default().split('/').collect();
            let p: Vec<&str> = path.split('/').collect();
            t.len() == p.len()
                && t.iter().zip(&p).all(|(t, p)| {
                    if t.starts_with('{') {
                        !p.is_empty()
                    } else {
                        t == p
                    }
                })
        }
    })
}

pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%2B", "+").replace("%40", "@"))
        })
        .collect()
}

/// Everything wrong with one exchange; the method's name when it is one.
pub fn check_exchange(c: &Value, x: &WireExchange, errors: &mut Vec<String>) -> Option<String> {
    let at = format!("{} {}", x.method, x.path);
    let Some(method) = method_of(c, &x.method, &x.path) else {
        errors.push(format!(
            "{at}: not a method of Customer.io's App API as defined"
        ));
        return None;
    };
    let name = method["name"].as_str().unwrap_or_default().to_string();
    for (k, v) in query_pairs(x.query.as_deref()) {
        match method["query"].get(&k) {
            Some(ty) => {
                let value = if ty == "integer" {
                    v.parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(Value::String(v.clone()))
                } else {
                    Value::String(v.clone())
                };
                check_type(c, ty, &value, &format!("{at}?{k}"), true, errors);
                if k == "limit" {
                    let max = method["limits"]["limit_max"].as_i64().unwrap_or(i64::MAX);
                    if !value.as_i64().is_some_and(|l| (1..=max).contains(&l)) {
                        errors.push(format!("{at}: limit {v} outside 1..={max}"));
                    }
                }
            }
            None => errors.push(format!(
                "{at}: query parameter {k:?} is not one {name} takes"
            )),
        }
    }
    let auth = &c["app_api"]["auth"];
    let scheme = auth["scheme"].as_str().unwrap_or_default();
    if !x
        .headers
        .iter()
        .any(|(h, v)| h == auth["header"].as_str().unwrap_or_default() && v.starts_with(scheme))
    {
        errors.push(format!("{at}: no {scheme} App API key"));
    }
    match &method["request"] {
        Value::Null if !x.body.is_empty() => errors.push(format!("{at}: {name} takes no body")),
        Value::Null => {}
        spec => match serde_json::from_slice::<Value>(&x.body) {
            Ok(body) => {
                check_object(c, spec, &body, &format!("{name} request"), true, errors);
                let n = body["ids"].as_array().map_or(0, Vec::len) as u64;
                let (lo, hi) = (
                    spec["limits"]["ids_min"].as_u64().unwrap_or(0),
                    spec["limits"]["ids_max"].as_u64().unwrap_or(u64::MAX),
                );
                if !(lo..=hi).contains(&n) {
                    errors.push(format!("{at}: {n} ids outside {lo}..={hi}"));
                }
            }
            Err(e) => errors.push(format!("{at}: body is not JSON: {e}")),
        },
    }
    if (200..300).contains(&x.status) {
        let answer: Value = serde_json::from_slice(&x.response_body).unwrap_or(Value::Null);
        check_object(
            c,
            &method["response"],
            &answer,
            &format!("{name} answer"),
            false,
            errors,
        );
    } else if !method["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s.as_u64() == Some(u64::from(x.status)))
    {
        errors.push(format!(
            "{at}: status {} is not one {name} answers",
            x.status
        ));
    }
    Some(name)
}
