//! Customer.io as Customer.io defines it (`tests/contracts/customerio.json`, written from its
//! reporting-webhook OpenAPI, its App API pages, its webhook action page and its Go SDK),
//! checked against both sides we wrote from our own reading:
//! * our side: every reporting payload the contract defines (each object type, metric and
//!   origin, subscription changes on every object type) is taken by intake when signed, our
//!   fixtures conform, webhook actions take both documented auth forms, and every App API
//!   request our client makes, captured on the wire, is a contract method with the contract's
//!   verb, path, query and fields;
//! * our simulator: it serves exactly the contract's routes (anything else is a 404), answers
//!   in the contract's shapes with the contract's statuses, and the reporting webhooks it
//!   writes conform to the contract.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use dataout::customerio::actions::BasicCredentials;
use dataout::customerio::webhook::{parse_reporting, sign};
use dataout::domain::model::{CounterScope, Identifiers};
use dataout::domain::spec::ExportSource;
use dataout::pipeline::intake::{handle, Route};
use dataout::ports::{Secret, SegmentSource, SystemClock};
use dataout_cli::demo::{self, SimEnv, SIGNING_SECRET};
use dataout_sim::customerio::reporting::{
    reporting_event, signed_headers, MESSAGE_METRICS, OBJECT_TYPES, SUBSCRIPTION_METRICS,
};
use dataout_sim::customerio::{demo_workspace_at, start, CioSimConfig, WireExchange};
use serde_json::{json, Map, Value};

const CONTRACT: &str = include_str!("contracts/customerio.json");

fn contract() -> Value {
    serde_json::from_str(CONTRACT).unwrap_or_else(|e| panic!("contract is not JSON: {e}"))
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

// ------------------------------------------------------------------ types

/// Whether `v` is of the contract type `ty` (problems of nested objects go to `errors`).
fn check_type(c: &Value, ty: &Value, v: &Value, at: &str, strict: bool, errors: &mut Vec<String>) {
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
fn check_object(
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
fn check_reporting(c: &Value, body: &Value, at: &str, errors: &mut Vec<String>) {
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
fn merge(spec: &mut Value, from: &Value, required: bool) {
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
fn sample(ty: &Value, name: &str, n: usize) -> Value {
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

fn fill(spec: &Value, data: &mut Map<String, Value>, n: usize) {
    for (k, t) in spec["fields"].as_object().into_iter().flatten() {
        data.insert(k.clone(), sample(t, k, n));
    }
}

/// One body per message event and origin, and per subscription metric and object type.
fn bodies_from_contract(c: &Value) -> Vec<Value> {
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

fn method_of<'c>(c: &'c Value, verb: &str, path: &str) -> Option<&'c Value> {
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

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
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
fn check_exchange(c: &Value, x: &WireExchange, errors: &mut Vec<String>) -> Option<String> {
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

// ------------------------------------------------------------------ our side

#[tokio::test]
async fn every_payload_customerio_defines_is_taken_and_every_app_api_request_we_make_is_a_contract_method(
) {
    let c = contract();
    let dir = tempfile::tempdir().unwrap();
    let env = SimEnv::start(300, &dir.path().join("warehouse"))
        .await
        .unwrap();
    let rt = Arc::new(
        env.runtime(&dir.path().join("state"), Arc::new(SystemClock))
            .unwrap(),
    );
    let mut errors = Vec::new();

    // Reporting webhooks: one signed body per event, origin and object type the contract
    // defines, each taken (accepted, not quarantined) and counted under its own pair.
    let bodies = bodies_from_contract(&c);
    assert!(
        bodies.len() > 150,
        "only {} bodies from the contract",
        bodies.len()
    );
    let now = chrono::Utc::now().timestamp();
    let mut pairs = BTreeSet::new();
    for body in &bodies {
        let at = format!(
            "{}.{} {}",
            body["object_type"], body["metric"], body["event_id"]
        );
        let mut own = Vec::new();
        check_reporting(&c, body, &at, &mut own);
        assert!(
            own.is_empty(),
            "a body made from the contract fails the contract: {own:?}"
        );
        let bytes = serde_json::to_vec(body).unwrap();
        match parse_reporting(&bytes) {
            Ok(ev) if ev.is_known() => {}
            Ok(_) => errors.push(format!("{at}: parses but is not known to our table")),
            Err(e) => errors.push(format!("{at}: does not parse: {e}")),
        }
        let headers = BTreeMap::from([
            ("x-cio-timestamp".to_string(), now.to_string()),
            (
                "x-cio-signature".to_string(),
                sign(SIGNING_SECRET.as_bytes(), now, &bytes),
            ),
        ]);
        let resp = handle(&rt.deps, &rt.intake, Route::Reporting, &headers, &bytes).await;
        if resp.status != 200 || resp.body["status"] != "accepted" {
            errors.push(format!("{at}: {} {}", resp.status, resp.body));
        }
        pairs.insert(format!(
            "reporting:{}.{}",
            body["object_type"].as_str().unwrap_or_default(),
            body["metric"].as_str().unwrap_or_default()
        ));
    }
    let counters = rt
        .deps
        .state
        .get_counters(&CounterScope::intake())
        .await
        .unwrap();
    for pair in &pairs {
        if counters.get(pair).copied().unwrap_or(0) < 1 {
            errors.push(format!("{pair}: not counted"));
        }
    }

    // Our fixtures and the demo stream are Customer.io's shapes too.
    let fixtures =
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../events/customerio"));
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures.join("reporting")).unwrap() {
        let path = entry.unwrap().path();
        let body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        check_reporting(&c, &body, &path.display().to_string(), &mut errors);
        seen += 1;
    }
    assert!(seen >= 15, "fixtures not found");
    let stream = std::fs::read_to_string(fixtures.join("demo-stream.jsonl")).unwrap();
    for (n, line) in stream
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["route"] == "reporting" {
            check_reporting(
                &c,
                &v["body"],
                &format!("demo-stream.jsonl:{}", n + 1),
                &mut errors,
            );
        }
    }

    // Webhook actions: both documented auth forms are taken (a custom header, and
    // credentials in the URL, which arrive as Basic).
    let forms = c["webhook_actions"]["auth_forms"].as_object().unwrap();
    assert!(forms.contains_key("custom_header") && forms.contains_key("basic_in_url"));
    let mut intake = rt.intake.clone();
    intake.actions.basic = Some(BasicCredentials::parse(&Secret::new("cio-hooks:s3cr3t")).unwrap());
    let action = br#"{"action":"enter","export":"cart_abandoners","person":{"id":"cust_00001"},"sent_at":1751371200}"#;
    for (header, value) in [
        (
            "authorization",
            "Basic Y2lvLWhvb2tzOnMzY3IzdA==".to_string(),
        ), // printf %s 'cio-hooks:s3cr3t' | base64
        ("x-dataout-token", demo::ACTION_SECRET.to_string()),
    ] {
        let headers = BTreeMap::from([(header.to_string(), value)]);
        let resp = handle(&rt.deps, &intake, Route::Actions, &headers, action).await;
        if !(200..300).contains(&resp.status) {
            errors.push(format!(
                "action with {header}: {} {}",
                resp.status, resp.body
            ));
        }
    }

    // The App API: every request our client makes, on the wire.
    env.cio.handle.record_wire(true);
    rt.start_workers().await.unwrap();
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
    rt.reconcile(Some(&source)).await.unwrap();
    source.segments().await.unwrap();
    let ws = env.cio.handle.snapshot();
    let someone = &ws.people[0];
    let ids = Identifiers {
        id: someone.id.clone(),
        email: someone.email.clone(),
        cio_id: Some(someone.cio_id.clone()),
        phone: None,
    };
    source.person(&ids).await.unwrap();
    source.segment_count(101).await.unwrap();
    source.attributes(std::slice::from_ref(&ids)).await.unwrap();
    rt.shutdown().await;

    let wire = env.cio.handle.wire();
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for x in &wire {
        if let Some(name) = check_exchange(&c, x, &mut errors) {
            if (200..300).contains(&x.status) {
                *answered.entry(name).or_default() += 1;
            }
        }
    }
    errors.sort();
    errors.dedup();
    assert!(
        errors.is_empty(),
        "{} problems:\n{}",
        errors.len(),
        errors.join("\n")
    );
    // Every method our client is meant to use was called and answered: the
    // checks above cannot pass by seeing nothing.
    let used: BTreeSet<String> = c["app_api"]["methods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["used_by_client"] == true)
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    let called: BTreeSet<String> = answered.keys().cloned().collect();
    assert_eq!(called, used, "methods answered: {answered:?}");
}

// ------------------------------------------------------------------ the simulator

#[tokio::test]
async fn the_simulator_serves_exactly_the_contracts_routes_statuses_and_webhook_shapes() {
    let c = contract();
    let key = "contract-app-key";
    let ws = demo_workspace_at(11, 200, 1_760_000_000);
    let sim = start(CioSimConfig::new(key, ws.clone()).rate_limit(0))
        .await
        .unwrap();
    sim.handle.record_wire(true);
    let base = sim.base_url().to_string();
    let http = reqwest::Client::new();
    let mut errors = Vec::new();
    let concrete = |t: &str| {
        t.replace("{segment_id}", "101")
            .replace("{customer_id}", "cust_00001")
    };
    let verbs = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    for m in c["app_api"]["methods"].as_array().unwrap() {
        let path = concrete(m["path"].as_str().unwrap());
        for verb in verbs {
            let mut req = http
                .request(
                    reqwest::Method::from_bytes(verb.as_bytes()).unwrap(),
                    format!("{base}{path}"),
                )
                .bearer_auth(key);
            if verb == "POST" {
                req = req.json(&json!({"ids": ["cust_00001"]}));
            }
            let status = req.send().await.unwrap().status().as_u16();
            let served = m["verb"] == verb;
            if served && status == 404 {
                errors.push(format!("{verb} {path}: a contract method is not served"));
            }
            if !served && status != 404 {
                errors.push(format!(
                    "{verb} {path}: not in the contract, answered {status} instead of 404"
                ));
            }
        }
    }
    for path in [
        "/v1/customers",
        "/v1/segments/101/used_by",
        "/v2/segments",
        "/",
        "/v1/customers/cust_00001/segments",
    ] {
        let status = http
            .get(format!("{base}{path}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status();
        if status != 404 {
            errors.push(format!("GET {path}: {status}, not 404"));
        }
    }
    // Refusals the contract names: a bad key, an unknown segment, a page over the
    // limit, too many ids, an id type the workspace does not enable, too fast.
    let get = |path: String, bearer: &str| {
        http.get(format!("{base}{path}"))
            .bearer_auth(bearer.to_string())
            .send()
    };
    get("/v1/segments".into(), "wrong-key").await.unwrap();
    get("/v1/segments/999/membership".into(), key)
        .await
        .unwrap();
    get("/v1/segments/abc".into(), key).await.unwrap();
    get("/v1/segments/101/membership?limit=30001".into(), key)
        .await
        .unwrap();
    get("/v1/customers/nobody/attributes?id_type=id".into(), key)
        .await
        .unwrap();
    let many: Vec<String> = (0..101).map(|i| format!("cust_{i:05}")).collect();
    http.post(format!("{base}/v1/customers/attributes"))
        .bearer_auth(key)
        .json(&json!({ "ids": many }))
        .send()
        .await
        .unwrap();
    let strict = start(
        CioSimConfig::new(key, ws.clone())
            .email_lookup(false)
            .rate_limit(1),
    )
    .await
    .unwrap();
    strict.handle.record_wire(true);
    for _ in 0..3 {
        http.get(format!(
            "{}/v1/customers/a%40example.com/attributes?id_type=email",
            strict.base_url()
        ))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    }
    let mut statuses = BTreeSet::new();
    for x in sim.handle.wire().iter().chain(strict.handle.wire().iter()) {
        statuses.insert(x.status);
        if method_of(&c, &x.method, &x.path).is_some() {
            let mut found = Vec::new();
            check_exchange(&c, x, &mut found);
            // Our probes send requests the contract refuses on purpose; only the answers
            // are the simulator's to get right.
            errors.extend(found.into_iter().filter(|e| e.contains("answer")));
        }
    }
    for expected in [200, 400, 401, 404, 429] {
        if !statuses.contains(&expected) {
            errors.push(format!("no probe was answered {expected}: {statuses:?}"));
        }
    }
    // Every status the simulator's source can answer with is one the contract names.
    let known: BTreeSet<u16> = c["app_api"]["error_statuses"]
        .as_object()
        .unwrap()
        .keys()
        .chain(
            c["app_api"]["transport_statuses"]
                .as_object()
                .unwrap()
                .keys(),
        )
        .filter_map(|k| k.parse().ok())
        .collect();
    let src = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sim/src/customerio"
    ));
    let mut scanned = 0;
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for word in text.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')) {
            let constant = |n: &&str| n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
            if let Some(name) = word.strip_prefix("StatusCode::").filter(constant) {
                scanned += 1;
                let code = match name {
                    "OK" => 200,
                    "BAD_REQUEST" => 400,
                    "UNAUTHORIZED" => 401,
                    "NOT_FOUND" => 404,
                    "TOO_MANY_REQUESTS" => 429,
                    "INTERNAL_SERVER_ERROR" => 500,
                    other => {
                        errors.push(format!(
                            "{}: StatusCode::{other} is not in the contract",
                            path.display()
                        ));
                        continue;
                    }
                };
                if code != 200 && !known.contains(&code) {
                    errors.push(format!(
                        "{}: {code} is not a status the contract names",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(scanned >= 5, "the simulator's source was not scanned");

    // The reporting webhooks the simulator writes are Customer.io's shapes, for every
    // pair the contract defines (and it writes every one of them).
    let rw = &c["reporting_webhook"];
    let mut defined: BTreeSet<(String, String)> = rw["message_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["object_type"].as_str().unwrap().to_string(),
                e["metric"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for metric in strs(&rw["subscription_events"]["metrics"]) {
        for ot in strs(&rw["subscription_events"]["object_types"]) {
            defined.insert((ot.to_string(), metric.to_string()));
        }
    }
    let mut written = BTreeSet::new();
    for (ot, metrics) in MESSAGE_METRICS {
        for metric in *metrics {
            written.insert((ot.to_string(), metric.to_string()));
        }
    }
    for ot in OBJECT_TYPES {
        for metric in SUBSCRIPTION_METRICS {
            written.insert((ot.to_string(), metric.to_string()));
        }
    }
    assert_eq!(
        written, defined,
        "the simulator's pairs differ from Customer.io's"
    );
    for (i, (ot, metric)) in written.iter().enumerate() {
        for person in [
            &ws.people[1],
            ws.people
                .iter()
                .find(|p| p.id.is_none())
                .unwrap_or(&ws.people[2]),
        ] {
            let body =
                reporting_event(ot, metric, person, &format!("01JSIM{i:020}"), 1_751_371_200);
            check_reporting(&c, &body, &format!("simulator {ot}.{metric}"), &mut errors);
        }
    }
    // Signed as Customer.io signs: HMAC-SHA256 over v0:<timestamp>:<body>, hex.
    let h = signed_headers("k", 1, b"{}");
    // printf %s 'v0:1:{}' | openssl dgst -sha256 -hmac k
    assert_eq!(
        h["x-cio-signature"],
        "6e9d972a495354bb9c6b67038087671e9f624f13ec1d6aef5cce80103860a7f7"
    );
    assert_eq!(h["x-cio-timestamp"], "1");

    sim.shutdown().await;
    strict.shutdown().await;
    errors.sort();
    errors.dedup();
    assert!(
        errors.is_empty(),
        "{} problems:\n{}",
        errors.len(),
        errors.join("\n")
    );
}
