//! CleverTap's API as CleverTap defines it (`tests/contracts/clevertap.json`,
//! written from CleverTap's developer pages, its Node library and SDKs, and
//! its recorded example answers), checked against both sides we wrote:
//! * our client: every request the pipeline makes (profile and event
//!   uploads, a refused phone sent again, a Charged event, the read-back),
//!   captured on the wire, is a call of the contract with its verb, path,
//!   query, headers and record shapes, within its limits;
//! * our simulator: it serves exactly the contract's routes, refuses what
//!   CleverTap refuses, answers in the contract's shapes and names only
//!   codes the contract defines.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dataout::destinations::ReadBack;
use dataout::domain::model::{DeliveryOp, EventPayload, Identifiers, OpKind, PersonKey};
use dataout::domain::spec::{DestinationKind, ExportMode};
use dataout_cli::demo::SimEnv;
use dataout_integration_tests::contract_support::{drive_demo_pipeline, query_pairs};
use dataout_sim::clevertap::{self as ct_sim, ClevertapSimConfig, WireExchange};
use serde_json::{json, Map, Value};

const CONTRACT: &str = include_str!("contracts/clevertap.json");

fn contract() -> Value {
    serde_json::from_str(CONTRACT).unwrap_or_else(|e| panic!("contract is not JSON: {e}"))
}

fn method_of<'c>(c: &'c Value, verb: &str, path: &str) -> Option<&'c Value> {
    c["methods"]
        .as_array()?
        .iter()
        .find(|m| m["verb"] == verb && m["path"] == path)
}

fn limit(c: &Value, name: &str) -> usize {
    c["limits"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("limit {name} missing")) as usize
}

fn code_known(c: &Value, table: &str, code: u64) -> bool {
    c[table].get(code.to_string()).is_some()
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// A `$D_` value must carry integer epoch seconds.
fn date_ok(v: &Value) -> bool {
    match v.as_str().and_then(|s| s.strip_prefix("$D_")) {
        Some(rest) => rest.parse::<i64>().is_ok(),
        None => true,
    }
}

/// Key and value sizes of one property.
fn check_sizes(c: &Value, at: &str, key: &str, v: &Value, errors: &mut Vec<String>) {
    if key.is_empty() || key.len() > limit(c, "profile_key_bytes") {
        errors.push(format!("{at}: key {key:?} is empty or over 120 bytes"));
    }
    let too_long = |s: &str| s.len() > limit(c, "profile_value_bytes");
    let long = match v {
        Value::String(s) => too_long(s),
        Value::Array(items) => items.iter().any(|i| i.as_str().is_some_and(too_long)),
        _ => false,
    };
    if long {
        errors.push(format!("{at}.{key}: value over 512 bytes"));
    }
    if !date_ok(v) {
        errors.push(format!("{at}.{key}: $D_ takes epoch seconds"));
    }
}

/// One upload record against the contract's `Record`.
fn check_record(c: &Value, at: &str, record: &Value, errors: &mut Vec<String>) {
    let Some(obj) = record.as_object() else {
        errors.push(format!("{at}: a record is an object"));
        return;
    };
    let fields = &c["messages"]["Record"]["fields"];
    for key in obj.keys() {
        if fields.get(key).is_none() {
            errors.push(format!("{at}: Record has no field {key:?}"));
        }
    }
    let users: Vec<&String> = obj
        .keys()
        .filter(|k| fields[k.as_str()]["oneof"] == "user")
        .collect();
    if users.len() != 1 {
        errors.push(format!(
            "{at}: exactly one of identity, objectId, FBID, GPID (found {users:?})"
        ));
    }
    for k in users {
        if obj[k].as_str().is_none_or(|s| s.trim().is_empty()) {
            errors.push(format!("{at}.{k}: must be a non-empty string"));
        }
    }
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
    let kinds = &c["enums"]["RecordType"]["values"];
    if !kinds
        .as_array()
        .into_iter()
        .flatten()
        .any(|k| k.as_str() == Some(kind))
    {
        errors.push(format!("{at}.type: {kind:?} is not profile or event"));
    }
    if let Some(ts) = obj.get("ts") {
        let ok = ts
            .as_i64()
            .is_some_and(|t| (1..10_000_000_000).contains(&t));
        if !ok {
            errors.push(format!("{at}.ts: {ts} is not epoch seconds"));
        }
    }
    for (key, field) in fields.as_object().into_iter().flatten() {
        if let Some(with) = field["with_type"].as_str() {
            if obj.contains_key(key) && with != kind {
                errors.push(format!("{at}.{key}: only on {with} records"));
            }
        }
        if let Some(with) = field["required_with_type"].as_str() {
            if with == kind && !obj.contains_key(key) {
                errors.push(format!("{at}: a {with} record needs {key}"));
            }
        }
    }
    match kind {
        "profile" => {
            let Some(data) = obj.get("profileData").and_then(Value::as_object) else {
                errors.push(format!("{at}.profileData: must be an object"));
                return;
            };
            if data.len() > limit(c, "custom_profile_keys") {
                errors.push(format!("{at}.profileData: over 256 keys"));
            }
            for (k, v) in data {
                let multi = v
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string));
                if !is_scalar(v) && !multi {
                    errors.push(format!("{at}.profileData.{k}: {v} is not a profile value"));
                }
                check_sizes(c, &format!("{at}.profileData"), k, v, errors);
            }
        }
        "event" => {
            let name = obj
                .get("evtName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if name.trim().is_empty() || name.chars().count() > limit(c, "event_name_chars") {
                errors.push(format!("{at}.evtName: {name:?} is not an event name"));
            }
            let empty = Map::new();
            let data = match obj.get("evtData") {
                None => &empty,
                Some(Value::Object(m)) => m,
                Some(other) => {
                    errors.push(format!("{at}.evtData: {other} is not an object"));
                    return;
                }
            };
            if data.len() > limit(c, "event_properties_per_event_type") {
                errors.push(format!("{at}.evtData: over 256 properties"));
            }
            for (k, v) in data {
                if name == "Charged" && k == "Items" {
                    let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
                    if !v.is_array() || items.len() > limit(c, "charged_items") {
                        errors.push(format!("{at}.evtData.Items: an array of at most 50"));
                    }
                    for (i, item) in items.iter().enumerate() {
                        match item.as_object() {
                            Some(fields) => {
                                for (ik, iv) in fields {
                                    if !is_scalar(iv) {
                                        errors.push(format!(
                                            "{at}.evtData.Items[{i}].{ik}: not a scalar"
                                        ));
                                    }
                                    check_sizes(c, &format!("{at}.Items[{i}]"), ik, iv, errors);
                                }
                            }
                            None => errors.push(format!("{at}.evtData.Items[{i}]: an object")),
                        }
                    }
                    continue;
                }
                if !is_scalar(v) {
                    errors.push(format!("{at}.evtData.{k}: {v} is not an event value"));
                }
                check_sizes(c, &format!("{at}.evtData"), k, v, errors);
            }
        }
        _ => {}
    }
}

/// A `{status: fail, error, code}` body with a code the contract knows.
fn check_failure(c: &Value, at: &str, status: u16, answer: &Value, errors: &mut Vec<String>) {
    if answer["status"] != "fail" || !answer["error"].is_string() || !answer["code"].is_u64() {
        errors.push(format!(
            "{at}: {status} is not CleverTap's failure shape: {answer}"
        ));
    }
    if !code_known(c, "http_statuses", u64::from(status)) {
        errors.push(format!(
            "{at}: HTTP {status} is not a status CleverTap defines"
        ));
    }
    if status == 429 && answer["error"] != c["throttling"]["error"] {
        errors.push(format!("{at}: 429 without CleverTap's words: {answer}"));
    }
}

/// The answer to an exchange, as the contract sees it.
fn check_answer(c: &Value, x: &WireExchange, name: &str, errors: &mut Vec<String>) {
    let at = format!("{name} answer");
    let answer: Value = serde_json::from_slice(&x.response_body).unwrap_or(Value::Null);
    if !(200..300).contains(&x.status) {
        check_failure(c, &at, x.status, &answer, errors);
        return;
    }
    let statuses = &c["enums"]["UploadStatus"]["values"];
    let status_ok = statuses
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| *s == answer["status"]);
    if !status_ok {
        errors.push(format!("{at}: status {} unknown", answer["status"]));
    }
    match name {
        "Upload" if answer["status"] == "fail" && answer.get("unprocessed").is_none() => {
            check_failure(c, &at, 200, &answer, errors);
        }
        "Upload" => {
            if !answer["processed"].is_u64() {
                errors.push(format!("{at}: processed missing: {answer}"));
            }
            let Some(unprocessed) = answer["unprocessed"].as_array() else {
                errors.push(format!("{at}: unprocessed missing: {answer}"));
                return;
            };
            for (i, u) in unprocessed.iter().enumerate() {
                let code = u["code"].as_u64().unwrap_or(0);
                if u["status"] != "fail" || !u["error"].is_string() || u.get("record").is_none() {
                    errors.push(format!("{at}.unprocessed[{i}]: shape {u}"));
                }
                if !code_known(c, "record_codes", code) {
                    errors.push(format!("{at}.unprocessed[{i}]: code {code} undefined"));
                }
            }
        }
        "GetProfile" => {
            if answer["status"] == "fail" {
                check_failure(c, &at, 200, &answer, errors);
                return;
            }
            let fields = &c["messages"]["ProfileRecord"]["fields"];
            let Some(record) = answer["record"].as_object() else {
                errors.push(format!("{at}: no record: {answer}"));
                return;
            };
            for (k, v) in record {
                if fields.get(k).is_none() && !["FBID", "GPID"].contains(&k.as_str()) {
                    errors.push(format!("{at}.record: field {k:?} undefined"));
                }
                if k == "profileData" && !v.is_object() {
                    errors.push(format!("{at}.record.profileData: not an object"));
                }
            }
            if !record.contains_key("profileData") {
                errors.push(format!("{at}.record: profileData missing"));
            }
        }
        _ => {}
    }
}

/// Everything wrong with one exchange. Returns the contract method it is.
fn check_exchange(c: &Value, x: &WireExchange, errors: &mut Vec<String>) -> Option<String> {
    let at = format!("{} {}", x.method, x.path);
    let Some(method) = method_of(c, &x.method, &x.path) else {
        errors.push(format!("{at}: not a call of CleverTap's definition"));
        return None;
    };
    let name = method["name"].as_str().unwrap_or_default().to_string();
    let header = |h: &str| {
        x.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(h))
            .map(|(_, v)| v.as_str())
    };
    for h in c["auth"]["headers"].as_array().into_iter().flatten() {
        let h = h.as_str().unwrap_or_default();
        if header(h).is_none_or(str::is_empty) {
            errors.push(format!("{at}: header {h} missing"));
        }
    }
    let pairs = x.query.as_deref().map(query_pairs).unwrap_or_default();
    for (k, _) in &pairs {
        if method["query"].get(k).is_none() {
            errors.push(format!(
                "{at}: query parameter {k:?} is not one {name} takes"
            ));
        }
    }
    if let Some(one_of) = method["one_of_query"].as_array() {
        let given = pairs
            .iter()
            .filter(|(k, v)| one_of.iter().any(|o| o == k.as_str()) && !v.is_empty())
            .count();
        if given != 1 {
            errors.push(format!("{at}: exactly one of {one_of:?} (given {given})"));
        }
    }
    match x.method.as_str() {
        "GET" => {
            if !x.body.is_empty() {
                errors.push(format!("{at}: a GET carries no body"));
            }
            if header("content-type").is_some() {
                errors.push(format!("{at}: a GET carries no Content-Type"));
            }
        }
        _ => {
            let json_type = header("content-type")
                .and_then(|t| t.split(';').next())
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
            if !json_type {
                errors.push(format!("{at}: Content-Type must be application/json"));
            }
            match serde_json::from_slice::<Value>(&x.body) {
                Ok(body) => {
                    let keys: Vec<&String> = body
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                        .collect();
                    if keys != ["d"] {
                        errors.push(format!(
                            "{at}: the body is {{\"d\":[…]}} only (keys {keys:?})"
                        ));
                    }
                    let records = body["d"].as_array().map(Vec::as_slice).unwrap_or_default();
                    if records.is_empty() || records.len() > limit(c, "records_per_upload") {
                        errors.push(format!(
                            "{at}: d holds {} records (1 to 1000)",
                            records.len()
                        ));
                    }
                    for (i, r) in records.iter().enumerate() {
                        check_record(c, &format!("d[{i}]"), r, errors);
                    }
                }
                Err(e) => errors.push(format!("{at}: body is not JSON: {e}")),
            }
        }
    }
    check_answer(c, x, &name, errors);
    Some(name)
}

fn person(id: &str, email: &str) -> DeliveryOp {
    DeliveryOp {
        op: OpKind::Add,
        person_key: PersonKey(format!("id:{id}")),
        ids: Identifiers {
            id: Some(id.to_string()),
            email: Some(email.to_string()),
            cio_id: None,
            phone: None,
        },
        audience: String::new(),
        tier: None,
        attributes: Default::default(),
        event: None,
        source_ts: 1_700_000_000_000,
        intake_ts: 1_700_000_000_000,
    }
}

#[tokio::test]
async fn every_request_our_client_makes_is_a_call_of_clevertaps_definition() {
    let c = contract();
    let dir = tempfile::tempdir().unwrap();
    let env = SimEnv::start(60, &dir.path().join("warehouse"))
        .await
        .unwrap();
    env.clevertap.record_wire(true);
    let (rt, _server) =
        drive_demo_pipeline(&env, &dir.path().join("state"), 1, Duration::from_secs(120))
            .await
            .unwrap();

    // The calls the pipeline may not make with the demo's people: a phone
    // CleverTap refuses (sent again without it), a Charged event with
    // Items, and the read-back.
    let (export, binding) = env
        .spec
        .exports
        .values()
        .find_map(|e| {
            e.destinations
                .iter()
                .find(|b| {
                    env.spec.destinations.get(&b.destination).map(|d| d.kind)
                        == Some(DestinationKind::Clevertap)
                        && e.mode == ExportMode::Membership
                })
                .map(|b| (e.clone(), b.clone()))
        })
        .unwrap();
    let ct = rt.destinations.get(&binding.destination).unwrap().clone();
    let mut add = person("contract_1", "contract-1@example.com");
    add.audience = binding.audience.clone();
    add.attributes.insert("Phone".into(), json!("555-0100"));
    let out = ct
        .send(&export, &binding, std::slice::from_ref(&add))
        .await
        .unwrap();
    assert!(out[0].is_accepted(), "{out:?}");
    let mut member = person("contract_2", "contract-2@example.com");
    member.audience = binding.audience.clone();
    member.attributes.insert("Cart Value".into(), json!(140));
    ct.send(&export, &binding, std::slice::from_ref(&member))
        .await
        .unwrap();
    let answer = ct.read_back(&export, &binding, &member).await.unwrap();
    assert!(matches!(answer, ReadBack::Agrees(_)), "{answer:?}");
    let (events_export, events_binding) = env
        .spec
        .exports
        .values()
        .find_map(|e| {
            e.destinations
                .iter()
                .find(|b| {
                    env.spec.destinations.get(&b.destination).map(|d| d.kind)
                        == Some(DestinationKind::Clevertap)
                        && e.mode == ExportMode::Events
                })
                .map(|b| (e.clone(), b.clone()))
        })
        .unwrap();
    let mut charged = person("contract_1", "contract-1@example.com");
    charged.op = OpKind::Event;
    charged.audience = "Charged".into();
    charged.event = Some(EventPayload {
        event_id: "contract-e1".into(),
        name: "order_placed".into(),
        data: serde_json::from_value(json!({"order_id": "o1", "items": [
            {"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}
        ]}))
        .unwrap(),
        value: Some(30.0),
        currency: Some("EUR".into()),
        ..EventPayload::default()
    });
    let mut events_binding = events_binding;
    events_binding.audience = "Charged".into();
    let out = ct
        .send(&events_export, &events_binding, &[charged])
        .await
        .unwrap();
    assert!(out[0].is_accepted(), "{out:?}");
    rt.shutdown().await;

    let wire = env.clevertap.wire();
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
    // Every call of the contract was made and answered: the check above
    // cannot pass by seeing nothing.
    let all: BTreeSet<String> = c["methods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    let called: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(called, all, "calls answered: {seen:?}");
    // The refused phone went again: a 516 then the same identity accepted.
    let uploads: Vec<Value> = wire
        .iter()
        .filter(|x| x.path == "/1/upload")
        .filter_map(|x| serde_json::from_slice(&x.response_body).ok())
        .collect();
    assert!(
        uploads.iter().any(|a| a["unprocessed"]
            .as_array()
            .is_some_and(|u| u.iter().any(|r| r["code"] == 516))),
        "no 516 seen"
    );
}

#[tokio::test]
async fn the_simulator_serves_exactly_the_contracts_routes_and_names_only_clevertaps_codes() {
    let c = contract();
    let (running, sim) = ct_sim::start(ClevertapSimConfig {
        response_delay: Some(Duration::from_millis(300)),
        ..ClevertapSimConfig::default()
    })
    .await
    .unwrap();
    sim.record_wire(true);
    let base = running.base_url.clone();
    let config = sim.config().clone();
    let http = reqwest::Client::new();
    let call = |verb: &str, path: &str, body: Option<Value>| {
        let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
        let mut req = http
            .request(method, format!("{base}{path}"))
            .header("X-CleverTap-Account-Id", &config.account_id)
            .header("X-CleverTap-Passcode", &config.passcode);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
    };
    let mut errors = Vec::new();
    let good = json!({"d": [{"type": "profile", "identity": "u1", "ts": 1_700_000_000,
                             "profileData": {"Email": "a@b.co", "Cart Value": 3, "cio_x": true}}]});
    // Served verbs are served; every other verb is CleverTap's 405.
    for m in c["methods"].as_array().unwrap() {
        let path = m["path"].as_str().unwrap();
        for verb in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let body = (verb != "GET").then(|| good.clone());
            let target = if path == "/1/profile.json" {
                format!("{path}?identity=u1")
            } else {
                path.to_string()
            };
            let resp = call(verb, &target, body).await.unwrap();
            let status = resp.status().as_u16();
            let answer: Value = resp.json().await.unwrap_or(Value::Null);
            let served = m["verb"] == verb;
            if served && matches!(status, 404 | 405) {
                errors.push(format!("{verb} {path}: a contract call is not served"));
            }
            if !served {
                if status != 405 {
                    errors.push(format!("{verb} {path}: {status} instead of 405"));
                }
                check_failure(&c, &format!("{verb} {path}"), status, &answer, &mut errors);
            }
        }
    }
    // Paths CleverTap does not serve (for us): 404 in its failure shape.
    for path in [
        "/1/profiles.json",
        "/1/uploads",
        "/2/upload",
        "/",
        "/1/upload/x",
    ] {
        for verb in ["GET", "POST"] {
            let resp = call(verb, path, Some(json!({}))).await.unwrap();
            let status = resp.status().as_u16();
            let answer: Value = resp.json().await.unwrap_or(Value::Null);
            if status != 404 {
                errors.push(format!("{verb} {path}: {status}, not 404"));
            }
            check_failure(&c, &format!("{verb} {path}"), status, &answer, &mut errors);
        }
    }
    // Unknown keys: in the body (400), in a record (per-record 512).
    let mut extra = good.clone();
    extra["data"] = json!([]);
    let resp = call("POST", "/1/upload", Some(extra)).await.unwrap();
    if resp.status().as_u16() != 400 {
        errors.push(format!("unknown body key: {}", resp.status()));
    }
    let misspelt = json!({"d": [{"type": "profile", "identity": "u9", "profileDta": {"a": 1}}]});
    let answer: Value = call("POST", "/1/upload", Some(misspelt))
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null);
    if answer["unprocessed"][0]["code"] != 512 {
        errors.push(format!("unknown record key: {answer}"));
    }
    // ts 0 is not a time (525); a phone without + is 516.
    let answer: Value = call(
        "POST",
        "/1/upload",
        Some(json!({"d": [
            {"type": "profile", "identity": "u7", "ts": 0, "profileData": {"a": 1}},
            {"type": "profile", "identity": "u8", "profileData": {"Phone": "4155551234"}}
        ]})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap_or(Value::Null);
    let codes: Vec<u64> = answer["unprocessed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["code"].as_u64())
        .collect();
    if codes != [525, 516] {
        errors.push(format!("ts 0 and a bad phone: {answer}"));
    }
    // Wrong passcode: 401.
    let resp = http
        .get(format!("{base}/1/profile.json?identity=u1"))
        .header("X-CleverTap-Account-Id", &config.account_id)
        .header("X-CleverTap-Passcode", "wrong")
        .send()
        .await
        .unwrap();
    if resp.status().as_u16() != 401 {
        errors.push(format!("wrong passcode: {}", resp.status()));
    }
    // The profile read cap: more reads in flight than CleverTap's 3 → 429.
    let cap = c["throttling"]["concurrent"]["GetProfile"]
        .as_u64()
        .unwrap() as usize;
    let reads: Vec<_> = (0..=cap)
        .map(|_| {
            let base = base.clone();
            let config = config.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(format!("{base}/1/profile.json?identity=u1"))
                    .header("X-CleverTap-Account-Id", &config.account_id)
                    .header("X-CleverTap-Passcode", &config.passcode)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in reads {
        statuses.push(r.await.unwrap().unwrap());
    }
    if statuses.iter().filter(|s| **s == 429).count() != 1 {
        errors.push(format!("{} reads at once: {statuses:?}", cap + 1));
    }
    // Every answer the simulator gave is in the contract's shapes.
    let mut served = BTreeSet::new();
    for x in sim.wire() {
        if let Some(method) = method_of(&c, &x.method, &x.path) {
            let name = method["name"].as_str().unwrap_or_default().to_string();
            let mut found = Vec::new();
            check_answer(&c, &x, &name, &mut found);
            errors.extend(found);
            if (200..300).contains(&x.status) {
                served.insert(name);
            }
        }
    }
    assert_eq!(served.len(), 2, "both calls answered: {served:?}");
    // Every code the simulator's source can answer with is one the contract
    // defines (no invented per-record codes or HTTP statuses).
    let src_dir =
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sim/src/clevertap"));
    let mut files = 0;
    for entry in std::fs::read_dir(src_dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if !file.ends_with(".rs") || file == "tests.rs" {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for token in code.split(|ch: char| !ch.is_ascii_alphanumeric() && ch != '_') {
            let is_code = token.len() == 3
                && token.bytes().all(|b| b.is_ascii_digit())
                && matches!(token.as_bytes()[0], b'4' | b'5');
            if is_code {
                let n: u64 = token.parse().unwrap();
                if !code_known(&c, "record_codes", n) && !code_known(&c, "http_statuses", n) {
                    errors.push(format!(
                        "sim/src/clevertap/{file}: code {n} is not CleverTap's"
                    ));
                }
            }
        }
        for (name, status) in [
            ("BAD_REQUEST", 400),
            ("UNAUTHORIZED", 401),
            ("FORBIDDEN", 403),
            ("NOT_FOUND", 404),
            ("METHOD_NOT_ALLOWED", 405),
            ("CONFLICT", 409),
            ("TOO_MANY_REQUESTS", 429),
            ("INTERNAL_SERVER_ERROR", 500),
            ("SERVICE_UNAVAILABLE", 503),
            ("UNPROCESSABLE_ENTITY", 422),
            ("BAD_GATEWAY", 502),
            ("GATEWAY_TIMEOUT", 504),
        ] {
            if code.contains(&format!("StatusCode::{name}"))
                && !code_known(&c, "http_statuses", status)
            {
                errors.push(format!(
                    "sim/src/clevertap/{file}: StatusCode::{name} is not CleverTap's"
                ));
            }
        }
    }
    assert!(files >= 3, "the simulator's source was not found");
    errors.sort();
    errors.dedup();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
