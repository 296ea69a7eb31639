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

mod checks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use checks::{bodies_from_contract, check_exchange, check_reporting, method_of, strs};
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
use dataout_sim::customerio::{demo_workspace_at, start, CioSimConfig};
use serde_json::{json, Value};

const CONTRACT: &str = include_str!("../contracts/customerio.json");

fn contract() -> Value {
    serde_json::from_str(CONTRACT).unwrap_or_else(|e| panic!("contract is not JSON: {e}"))
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
