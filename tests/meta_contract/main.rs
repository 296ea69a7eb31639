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
use std::time::Duration;

use dataout::domain::model::{DeliveryOp, Identifiers, OpKind, PersonKey};
use dataout::domain::spec::{DestinationKind, ExportSource};
use dataout_cli::demo::SimEnv;
use dataout_integration_tests::contract_support::drive_demo_pipeline;
use dataout_sim::meta::{MetaSim, MetaSimConfig, DEFAULT_ACCESS_TOKEN};
use serde_json::{json, Value};

mod check;
use check::{check_exchange, check_refusal, check_sessions, contract, enum_values, method_of};

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
    let (rt, _server) =
        drive_demo_pipeline(&env, &dir.path().join("state"), 2, Duration::from_secs(60))
            .await
            .unwrap();
    let source = env.source().unwrap();
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
    // Every source file of the simulator, in its folders too.
    let mut dirs = vec![src_dir.to_path_buf()];
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    while let Some(dir) = dirs.pop() {
        for path in std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
        {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.contains("tests"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("capi/mod.rs")) && files.len() >= 4,
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
