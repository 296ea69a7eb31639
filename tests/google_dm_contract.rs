//! Google's Data Manager API as Google defines it (`tests/contracts/google-datamanager.json`,
//! written from googleapis' `google/ads/datamanager/v1` protos and Google's developer pages),
//! checked against both sides we wrote from our own reading:
//! * our client: every request the pipeline makes (batch, realtime, conversions, status reads,
//!   reconciliation, full replace, read-back), captured on the wire, is a method of the
//!   contract with the contract's verb, path, query, headers and fields;
//! * our simulator: it serves exactly the contract's routes, answers in the contract's shapes
//!   and names only reasons Google defines; everything else is Google's 404 page.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dataout::domain::model::{DeliveryOp, Identifiers, OpKind, PersonKey};
use dataout::domain::spec::{DestinationKind, ExportSource};
use dataout_cli::demo::{self, SimEnv};
use dataout_integration_tests::contract_support::{drive_demo_pipeline, query_pairs};
use dataout_sim::google_dm::{DataManagerSim, DataManagerSimConfig, WireExchange};
use dataout_sim::google_oauth::{TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_REFRESH_TOKEN};
use serde_json::{json, Value};

const CONTRACT: &str = include_str!("contracts/google-datamanager.json");

fn contract() -> Value {
    serde_json::from_str(CONTRACT).unwrap_or_else(|e| panic!("contract is not JSON: {e}"))
}

/// The contract's method served at `verb path`, if any (`{x}` is one segment).
fn method_of<'c>(c: &'c Value, verb: &str, path: &str) -> Option<&'c Value> {
    c["methods"]
        .as_array()?
        .iter()
        .find(|m| m["verb"] == verb && path_matches(m["path"].as_str().unwrap_or_default(), path))
}

fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

/// Every value any enum of the contract knows, and the refusal vocabulary.
fn known_names(c: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in c["enums"].as_object().into_iter().flatten() {
        for v in e.1["values"].as_array().into_iter().flatten() {
            names.extend(v.as_str().map(str::to_string));
        }
    }
    for r in c["refusal"]["front_end_reasons"]
        .as_array()
        .into_iter()
        .flatten()
    {
        names.extend(r.as_str().map(str::to_string));
    }
    for code in c["refusal"]["canonical_codes"]
        .as_object()
        .into_iter()
        .flatten()
    {
        names.insert(code.0.clone());
    }
    names
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

/// Check `value` against message `name` of the contract; problems go to `errors`.
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
    let mut oneofs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, v) in obj {
        let Some(field) = fields.get(key) else {
            errors.push(format!("{at}.{key}: {name} has no field {key:?}"));
            continue;
        };
        if let Some(group) = field["oneof"].as_str() {
            oneofs.entry(group).or_default().push(key);
        }
        if request && field["output_only"] == true {
            errors.push(format!("{at}.{key}: output only, not for requests"));
        }
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
    for (group, keys) in oneofs {
        if keys.len() > 1 {
            errors.push(format!("{at}: oneof {group} set twice ({keys:?})"));
        }
    }
    if request {
        for (key, field) in fields.as_object().into_iter().flatten() {
            if field["required"] == true && !obj.contains_key(key) {
                errors.push(format!("{at}: required field {key} of {name} missing"));
            }
        }
    }
}

fn check_value(c: &Value, ty: &str, v: &Value, at: &str, request: bool, errors: &mut Vec<String>) {
    let ok = match ty {
        "string" | "bytes" => v.is_string(),
        "bool" => v.is_boolean(),
        "int64" | "int32" => is_int64(v),
        "double" => v.is_number(),
        "timestamp" => v
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        t if t.starts_with("enum:") => {
            let values = &c["enums"][&t[5..]]["values"];
            v.as_str().is_some_and(|s| {
                values
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x.as_str() == Some(s))
            })
        }
        t if t.starts_with("message:") => {
            check_message(c, &t[8..], v, at, request, errors);
            true
        }
        // Types the contract does not detail (never sent by us).
        _ => true,
    };
    if !ok {
        errors.push(format!("{at}: {v} is not a valid {ty}"));
    }
}

/// Everything wrong with one exchange, as the contract sees it. Returns the
/// method's name when the exchange is one of the contract's methods.
fn check_exchange(c: &Value, x: &WireExchange, errors: &mut Vec<String>) -> Option<String> {
    let at = format!("{} {}", x.method, x.path);
    if x.path == "/token" {
        return None; // OAuth, not the Data Manager API
    }
    let Some(method) = method_of(c, &x.method, &x.path) else {
        errors.push(format!("{at}: not a method of Google's definition"));
        return None;
    };
    let name = method["name"].as_str().unwrap_or_default().to_string();
    // Query parameters: only those the method binds, the required ones present.
    let pairs = x.query.as_deref().map(query_pairs).unwrap_or_default();
    for (k, _) in &pairs {
        if method["query"].get(k).is_none() {
            errors.push(format!(
                "{at}: query parameter {k:?} is not bound by {name}"
            ));
        }
    }
    for k in method["required_query"].as_array().into_iter().flatten() {
        let k = k.as_str().unwrap_or_default();
        if !pairs.iter().any(|(q, v)| q == k && !v.is_empty()) {
            errors.push(format!("{at}: {name} needs query parameter {k}"));
        }
    }
    // Headers the contract names for the method: the account-name format.
    for (h, v) in &x.headers {
        if h == "login-account" || h == "linked-account" {
            if method["headers"].get(h).is_none() {
                errors.push(format!("{at}: header {h} is not one {name} takes"));
            }
            let parts: Vec<&str> = v.split('/').collect();
            let types = &c["enums"]["ProductAccount.AccountType"]["values"];
            let known_type = |t: &str| {
                types
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x.as_str() == Some(t))
            };
            let ok = parts.len() == 4
                && parts[0] == "accountTypes"
                && known_type(parts[1])
                && parts[2] == "accounts"
                && !parts[3].is_empty()
                && parts[3].bytes().all(|b| b.is_ascii_digit());
            if !ok {
                errors.push(format!(
                    "{at}: header {h}: {v:?} is not accountTypes/{{type}}/accounts/{{id}}"
                ));
            }
        }
    }
    if !x
        .headers
        .iter()
        .any(|(h, v)| h == "authorization" && v.starts_with("Bearer"))
    {
        errors.push(format!("{at}: no bearer token"));
    }
    // The body: none on GET, the request message on POST.
    match x.method.as_str() {
        "GET" => {
            if !x.body.is_empty() {
                errors.push(format!("{at}: a GET carries no body"));
            }
        }
        _ => match serde_json::from_slice::<Value>(&x.body) {
            Ok(body) => check_message(
                c,
                method["request"].as_str().unwrap_or_default(),
                &body,
                &name,
                true,
                errors,
            ),
            Err(e) => errors.push(format!("{at}: body is not JSON: {e}")),
        },
    }
    // The answer: the response message, or a google.rpc.Status with known names.
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
        check_refusal(c, x.status, &answer, &at, errors);
    }
    Some(name)
}

fn check_refusal(c: &Value, status: u16, answer: &Value, at: &str, errors: &mut Vec<String>) {
    let code = answer["error"]["status"].as_str().unwrap_or_default();
    match c["refusal"]["canonical_codes"][code].as_u64() {
        Some(http) if http == u64::from(status) => {}
        _ => errors.push(format!(
            "{at}: refusal {status} {code:?} is not Google's pairing"
        )),
    }
    let names = known_names(c);
    for d in answer["error"]["details"].as_array().into_iter().flatten() {
        let ty = d["@type"].as_str().unwrap_or_default();
        let known_type = c["refusal"]["detail_types"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t.as_str() == Some(ty));
        if !known_type {
            errors.push(format!("{at}: detail type {ty:?} unknown"));
        }
        if ty.ends_with("ErrorInfo") {
            let reason = d["reason"].as_str().unwrap_or_default();
            if !names.contains(reason) {
                errors.push(format!("{at}: reason {reason:?} is not one Google defines"));
            }
        }
    }
}

/// A conversion op of the demo's people, for the full-replace call.
fn member(email: &str, list: &str) -> DeliveryOp {
    DeliveryOp {
        op: OpKind::Add,
        person_key: PersonKey(format!("id:{email}")),
        ids: Identifiers {
            id: None,
            email: Some(email.to_string()),
            cio_id: None,
            phone: None,
        },
        audience: list.into(),
        tier: None,
        attributes: Default::default(),
        event: None,
        source_ts: 0,
        intake_ts: 0,
    }
}

#[tokio::test]
async fn every_request_our_client_makes_is_a_method_of_googles_definition() {
    let c = contract();
    let dir = tempfile::tempdir().unwrap();
    let env = SimEnv::start(300, &dir.path().join("warehouse"))
        .await
        .unwrap();
    env.google.record_wire(true);
    let (rt, _server) =
        drive_demo_pipeline(&env, &dir.path().join("state"), 2, Duration::from_secs(60))
            .await
            .unwrap();
    let source = env.source().unwrap();
    demo::settle_google(&env, &rt).await.unwrap();
    rt.reconcile(Some(&source)).await.unwrap();
    // Full replace and read-back, as rollback and canaries use them.
    let (export, binding) = env
        .spec
        .exports
        .values()
        .find_map(|e| {
            e.destinations
                .iter()
                .find(|b| {
                    env.spec.destinations.get(&b.destination).map(|d| d.kind)
                        == Some(DestinationKind::GoogleDataManager)
                        && matches!(e.source, ExportSource::Segment { .. })
                })
                .map(|b| (e.clone(), b.clone()))
        })
        .unwrap();
    let google = rt.destinations.get(&binding.destination).unwrap().clone();
    let op = member("contract-check@example.com", &binding.audience);
    google
        .replace_audience(
            &export,
            &binding,
            &binding.audience,
            std::slice::from_ref(&op),
        )
        .await
        .unwrap();
    google.read_back(&export, &binding, &op).await.unwrap();
    rt.shutdown().await;

    let wire = env.google.wire();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for x in &wire {
        if let Some(name) = check_exchange(&c, x, &mut errors) {
            if (200..300).contains(&x.status) {
                *seen.entry(name).or_default() += 1;
            }
        }
    }
    errors.sort();
    errors.dedup();
    assert!(
        errors.is_empty(),
        "{} problems in {} exchanges:\n{}",
        errors.len(),
        wire.len(),
        errors.join("\n")
    );
    // Every method of the contract was called and answered: the check above
    // cannot pass by seeing nothing.
    let all: BTreeSet<String> = c["methods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    let called: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(called, all, "methods answered: {seen:?}");
}

/// A token from the simulator's OAuth endpoint.
async fn token(http: &reqwest::Client, base: &str) -> String {
    let grant: Value = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", TEST_REFRESH_TOKEN),
            ("client_id", TEST_CLIENT_ID),
            ("client_secret", TEST_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    grant["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_simulator_serves_exactly_the_contracts_routes_and_names_only_googles_reasons() {
    let c = contract();
    let (running, sim) = DataManagerSim::start(DataManagerSimConfig::default())
        .await
        .unwrap();
    sim.create_user_list("1234567890", "7000000101");
    sim.record_wire(true);
    let base = running.base_url.clone();
    let http = reqwest::Client::new();
    let bearer = token(&http, &base).await;
    let concrete = |template: &str| {
        template
            .replace("{account_type}", "GOOGLE_ADS")
            .replace("{account}", "1234567890")
            .replace("{user_list}", "7000000101")
    };
    let verbs = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let mut errors = Vec::new();
    for m in c["methods"].as_array().unwrap() {
        let path = concrete(m["path"].as_str().unwrap());
        for verb in verbs {
            let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
            let mut req = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(&bearer);
            if verb == "POST" {
                req = req.json(&json!({}));
            }
            if m["verb"] == "GET" && m["query"].get("requestId").is_some() {
                req = req.query(&[("requestId", "no-such-request")]);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let html = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("text/html"));
            let served = m["verb"] == verb;
            let not_found_page = status == 404 && html;
            if served && not_found_page {
                errors.push(format!("{verb} {path}: a contract method is not served"));
            }
            if !served && !not_found_page {
                errors.push(format!(
                    "{verb} {path}: not in the contract, answered {status} instead of Google's 404 page"
                ));
            }
        }
    }
    for path in [
        "/v1/audienceMembers:upsert",
        "/v1/requestStatus",
        "/v2/audienceMembers:ingest",
        "/v1/accountTypes/GOOGLE_ADS/accounts/1234567890/userLists",
        "/",
    ] {
        for verb in ["GET", "POST"] {
            let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
            let resp = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(&bearer)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            if status != 404 || !body.starts_with("<!DOCTYPE html>") {
                errors.push(format!("{verb} {path}: {status}, not Google's 404 page"));
            }
        }
    }
    // A field the method does not take: 400 INVALID_ARGUMENT.
    let member = json!({"userData": {"userIdentifiers": [{"emailAddress": "ab".repeat(32)}]}});
    let good = json!({
        "destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
                          "productDestinationId": "7000000101"}],
        "audienceMembers": [member],
        "encoding": "HEX",
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
    });
    let mut unknown_field = good.clone();
    unknown_field["audienceMember"] = json!([]);
    let mut bad_member = good.clone();
    bad_member["audienceMembers"] =
        json!([member, {"userData": {"userIdentifiers": [{"emailAddress": "not-a-digest"}]}}]);
    let mut nested_unknown = good.clone();
    nested_unknown["destinations"][0]["productDestinationType"] = json!("USER_LIST");
    for (what, body, expect_field) in [
        ("unknown field", unknown_field, None),
        ("nested unknown field", nested_unknown, None),
        ("bad member", bad_member, Some("audience_members[1]")),
    ] {
        let resp = http
            .post(format!("{base}/v1/audienceMembers:ingest"))
            .bearer_auth(&bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 400 || answer["error"]["status"] != "INVALID_ARGUMENT" {
            errors.push(format!("{what}: {status} {answer}"));
        }
        if let Some(field) = expect_field {
            let named = answer["error"]["details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|d| d["fieldViolations"].as_array().into_iter().flatten())
                .any(|v| v["field"] == field);
            if !named {
                errors.push(format!(
                    "{what}: no field violation names {field}: {answer}"
                ));
            }
        }
    }
    // The good request and its status, answered in the contract's shapes.
    let resp = http
        .post(format!("{base}/v1/audienceMembers:ingest"))
        .bearer_auth(&bearer)
        .json(&good)
        .send()
        .await
        .unwrap();
    let id = resp.json::<Value>().await.unwrap()["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    sim.process_now();
    http.get(format!("{base}/v1/requestStatus:retrieve"))
        .query(&[("requestId", id.as_str())])
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    for x in sim.wire() {
        if method_of(&c, &x.method, &x.path).is_some() {
            let mut found = Vec::new();
            check_exchange(&c, &x, &mut found);
            // Our probes send bodies the contract refuses on purpose; only
            // the answers are the simulator's to get right.
            errors.extend(
                found.into_iter().filter(|e| {
                    e.contains("answer") || e.contains("refusal") || e.contains("reason")
                }),
            );
        }
    }
    // Every Google name the simulator's source can answer with is one the
    // contract defines (no invented reasons, statuses or enum values).
    let names = known_names(&c);
    let src_dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sim/src/"));
    let mut files = Vec::new();
    let mut folders = vec![src_dir.join("google_dm")];
    while let Some(dir) = folders.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                files.push(path);
            }
        }
    }
    assert!(
        files.len() >= 5,
        "the simulator's source was not found: {files:?}"
    );
    for path in files {
        let file = path
            .strip_prefix(src_dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for literal in code.split('"').skip(1).step_by(2) {
            let shaped = literal.len() > 3
                && literal.contains('_')
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if shaped && !names.contains(literal) {
                errors.push(format!(
                    "sim/src/{file}: {literal:?} is not a name Google defines"
                ));
            }
        }
    }
    errors.sort();
    errors.dedup();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
