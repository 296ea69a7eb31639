//! The Google Ads API contract (`tests/contracts/google-ads-api.json`,
//! written from googleapis' protos and Google's pages) held against both
//! sides: what our `google_customer_match` client sends, captured by a
//! recording reverse proxy in front of the simulator, and which routes the
//! simulator serves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::destinations::google_customer_match::GoogleCustomerMatchDestination;
use dataout::destinations::{Destination, OpOutcome};
use dataout::domain::model::{DeliveryOp, Identifiers, OpKind, PersonKey};
use dataout::domain::spec::{
    ConsentStatus, DestinationKind, DestinationSettings, DestinationSpec, ExportDestination,
    ExportMode, ExportSource, ExportSpec, GoogleAuthSpec, GoogleConsentSpec, GoogleCredentialsSpec,
    GuardRails, IdKind, IdentitySpec, MatchKey,
};
use dataout::ports::{MapSecrets, SystemClock};
use dataout_sim::google::{
    GoogleSim, GoogleSimConfig, SimConsent, DEFAULT_ACCESS_TOKEN, DEFAULT_DEVELOPER_TOKEN,
};

const CUSTOMER: &str = "1234567890";
const MANAGER: &str = "9999999999";
const LIST: &str = "555";

// ---------------------------------------------------------------- contract

fn contract() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/google-ads-api.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let contract: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    every_entry_has_a_source(&contract);
    contract
}

/// Every entry of the contract names where it comes from: a googleapis
/// proto at a commit, or a Google page.
fn every_entry_has_a_source(c: &Value) {
    let mut entries: Vec<(String, &Value)> = Vec::new();
    fn map<'a>(at: &str, v: &'a Value) -> Vec<(String, &'a Value)> {
        v.as_object()
            .map(|o| o.iter().map(|(k, e)| (format!("{at}.{k}"), e)).collect())
            .unwrap_or_default()
    }
    fn list<'a>(at: &str, v: &'a Value) -> Vec<(String, &'a Value)> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, e)| (format!("{at}[{i}]"), e))
                    .collect()
            })
            .unwrap_or_default()
    }
    for key in ["google_definition", "base_url", "json_names"] {
        entries.push((key.to_string(), &c[key]));
    }
    for key in ["headers", "enums", "consent"] {
        entries.extend(map(key, &c[key]));
    }
    entries.extend(map("gaql.resources", &c["gaql"]["resources"]));
    entries.extend(map("gaql.fields", &c["gaql"]["fields"]));
    for key in ["body", "rpc_status", "retry_delay"] {
        entries.push((format!("errors.{key}"), &c["errors"][key]));
    }
    entries.extend(map("errors.codes_handled", &c["errors"]["codes_handled"]));
    for (at, message) in map("messages", &c["messages"]) {
        entries.push((at.clone(), message));
        entries.extend(map(&format!("{at}.fields"), &message["fields"]));
        entries.extend(list(&format!("{at}.oneofs"), &message["oneofs"]));
    }
    for (at, method) in list("methods", &c["methods"]) {
        entries.push((at.clone(), method));
        entries.extend(map(&format!("{at}.we_send"), &method["we_send"]));
        entries.extend(map(&format!("{at}.reads"), &method["reads"]));
        entries.extend(list(&format!("{at}.rules"), &method["rules"]));
    }
    assert!(entries.len() > 100, "the contract looks empty");
    for (at, entry) in entries {
        let source = entry["source"].as_str().unwrap_or("");
        let proto = source.starts_with("googleapis/googleapis@") && source.contains(":google/");
        let page = source.starts_with("https://");
        assert!(proto || page, "{at}: no usable source ({source:?})");
    }
}

fn methods(contract: &Value) -> Vec<&Value> {
    contract["methods"]
        .as_array()
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

/// `template` (`/{version}/customers/{customer_id}/…`) as a matcher of a
/// request path: each `{…}` is one non-empty segment part.
fn path_matches(template: &str, path: &str) -> bool {
    let mut rest = path;
    let mut parts = template.split('{').peekable();
    let Some(lead) = parts.next() else {
        return false;
    };
    let Some(after) = rest.strip_prefix(lead) else {
        return false;
    };
    rest = after;
    for part in parts {
        let Some((_, literal)) = part.split_once('}') else {
            return false;
        };
        // A variable runs to the next literal, within one path segment.
        let end = if literal.is_empty() {
            rest.len()
        } else {
            match rest.find(literal) {
                Some(i) => i,
                None => return false,
            }
        };
        let value = &rest[..end];
        if value.is_empty() || value.contains('/') || value.contains(':') {
            return false;
        }
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty()
}

fn method_for<'c>(contract: &'c Value, verb: &str, path: &str) -> Option<&'c Value> {
    methods(contract).into_iter().find(|m| {
        m["verb"].as_str() == Some(verb) && path_matches(m["path"].as_str().unwrap_or(""), path)
    })
}

/// Check one body against the request message, Google's side: every field
/// a field of its message, enum values inside their enum and not output
/// only, at most one member of each oneof. Returns the JSON paths of the
/// leaves (`a.b[].c`).
fn check_against_messages(
    contract: &Value,
    message: &str,
    value: &Value,
    path: &str,
    leaves: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let def = &contract["messages"][message];
    let Some(obj) = value.as_object() else {
        problems.push(format!("{path}: expected an object ({message})"));
        return;
    };
    if obj.is_empty() && !path.is_empty() {
        leaves.insert(path.to_string());
    }
    for (key, v) in obj {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let Some(field) = def["fields"].get(key) else {
            problems.push(format!("{here}: not a field of {message}"));
            continue;
        };
        let ty = field["type"].as_str().unwrap_or("");
        let repeated = field["repeated"].as_bool().unwrap_or(false);
        let items: Vec<&Value> = if repeated {
            match v.as_array() {
                Some(items) => items.iter().collect(),
                None => {
                    problems.push(format!("{here}: expected a list"));
                    continue;
                }
            }
        } else {
            vec![v]
        };
        let here = if repeated { format!("{here}[]") } else { here };
        for item in items {
            if let Some(inner) = ty.strip_prefix("message:") {
                check_against_messages(contract, inner, item, &here, leaves, problems);
                continue;
            }
            leaves.insert(here.clone());
            let ok = match ty {
                "string" => item.is_string(),
                "bool" => item.is_boolean(),
                "int64" | "int32" => {
                    item.is_i64() || item.as_str().is_some_and(|s| s.parse::<i64>().is_ok())
                }
                "object" => item.is_object(),
                t => match t.strip_prefix("enum:") {
                    Some(name) => {
                        let e = &contract["enums"][name];
                        let listed = |key: &str| {
                            e[key]
                                .as_array()
                                .is_some_and(|vals| vals.iter().any(|x| x == item))
                        };
                        listed("values") && !listed("output_only")
                    }
                    None => false,
                },
            };
            if !ok {
                problems.push(format!("{here}: {item} is not a valid {ty}"));
            }
        }
    }
    for oneof in def["oneofs"].as_array().into_iter().flatten() {
        let set: Vec<&str> = oneof["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|m| obj.get(*m).is_some_and(|v| !v.is_null()))
            .collect();
        if set.len() > 1 {
            problems.push(format!("{path}: oneof {} has {set:?}", oneof["name"]));
        }
    }
}

/// `resource.field` names of a GAQL query.
fn gaql_names(query: &str) -> BTreeSet<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|t| t.contains('.') && t.starts_with(|c: char| c.is_ascii_lowercase()))
        .map(str::to_string)
        .collect()
}

fn gaql_resource(query: &str) -> Option<String> {
    let lower = query.to_ascii_lowercase();
    let (_, rest) = lower.split_once(" from ")?;
    rest.split_whitespace().next().map(str::to_string)
}

// ------------------------------------------------------- recording proxy

#[derive(Clone, Debug)]
struct Captured {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Captured>>>,
}

async fn forward(
    State(proxy): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers_seen = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or("<not text>").to_string(),
            )
        })
        .collect();
    let parsed = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::String("<not JSON>".into()))
    };
    proxy
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Captured {
            method: method.to_string(),
            path: uri.path().to_string(),
            headers: headers_seen,
            body: parsed,
        });
    let url = format!(
        "{}{}",
        proxy.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut req = proxy.http.request(method, url).body(body);
    for (k, v) in &headers {
        if !matches!(k.as_str(), "host" | "content-length") {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let bytes = resp.bytes().await.unwrap_or_default();
            (status, [("content-type", content_type)], bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

// ------------------------------------------------------- the client side

fn spec(base_url: &str, consent: GoogleConsentSpec) -> DestinationSpec {
    DestinationSpec {
        name: "google_ads".into(),
        kind: DestinationKind::GoogleCustomerMatch,
        base_url: Some(base_url.into()),
        batch_size: 2,
        max_concurrency: 1,
        max_requests_per_second: None,
        max_attempts: 3,
        settings: DestinationSettings::GoogleCustomerMatch {
            api_version: "v25".into(),
            customer_id: CUSTOMER.into(),
            login_customer_id: Some(MANAGER.into()),
            developer_token_env: "GOOGLE_ADS_DEVELOPER_TOKEN".into(),
            auth: GoogleAuthSpec {
                token_url: format!("{base_url}/token"),
                credentials: GoogleCredentialsSpec::AccessToken {
                    access_token_env: "GOOGLE_ADS_ACCESS_TOKEN".into(),
                },
            },
            gmail_remove_dots: false,
            job_wait_ms: 1_000,
            consent,
        },
    }
}

fn binding() -> ExportDestination {
    ExportDestination {
        destination: "google_ads".into(),
        audience: LIST.into(),
        tier_audiences: Default::default(),
        keys: vec![
            MatchKey::Email,
            MatchKey::Phone,
            MatchKey::FirstName,
            MatchKey::LastName,
            MatchKey::Country,
            MatchKey::Zip,
        ],
    }
}

fn export() -> ExportSpec {
    ExportSpec {
        name: "buyers".into(),
        source: ExportSource::Segment { segment_id: 7 },
        mode: ExportMode::Membership,
        cadence: Default::default(),
        identity: IdentitySpec {
            golden: IdKind::Email,
            fallbacks: vec![IdKind::Phone],
            default_phone_region: Some("US".into()),
        },
        attributes: Vec::new(),
        tiers: Vec::new(),
        exit_on: Vec::new(),
        suppress: Vec::new(),
        destinations: vec![binding()],
        guard_rails: GuardRails::default(),
        test_profiles: Vec::new(),
    }
}

fn op(kind: OpKind, email: &str, attrs: &[(&str, Value)]) -> DeliveryOp {
    DeliveryOp {
        op: kind,
        person_key: PersonKey(format!("email:{email}")),
        ids: Identifiers {
            id: None,
            email: Some(email.into()),
            cio_id: None,
            phone: None,
        },
        audience: LIST.into(),
        tier: None,
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        event: None,
        source_ts: 0,
        intake_ts: 0,
    }
}

/// What a drive of the client left: every request, the simulator, and
/// whether the scenario's own expectations held (a panic's message if not).
struct Driven {
    seen: Vec<Captured>,
    sim: GoogleSim,
    scenario: Result<(), String>,
}

/// Drive the client through every call it makes (create with consent,
/// addOperations of creates and of removes, run, both searches), through the
/// recording proxy. The scenario runs in its own task so that the requests
/// are checked against the contract even when a request was refused.
async fn drive_the_client() -> Driven {
    let (sim_running, sim) = GoogleSim::start(GoogleSimConfig {
        login_customer_id: Some(MANAGER.into()),
        ..GoogleSimConfig::default()
    })
    .await
    .unwrap();
    sim.create_user_list(CUSTOMER, LIST);
    let proxy = Proxy {
        upstream: sim_running.base_url.clone(),
        http: reqwest::Client::new(),
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let router = Router::new().fallback(forward).with_state(proxy.clone());
    let proxy_running = dataout_sim::serve(router).await.unwrap();

    let consent = GoogleConsentSpec {
        ad_user_data: ConsentStatus::Unspecified,
        ad_personalization: ConsentStatus::Unspecified,
        attribute: Some("ads_consent".into()),
        country_attribute: Some("country".into()),
        unknown_country_is_eea: true,
    };
    let secrets = MapSecrets::default()
        .with("GOOGLE_ADS_DEVELOPER_TOKEN", DEFAULT_DEVELOPER_TOKEN)
        .with("GOOGLE_ADS_ACCESS_TOKEN", DEFAULT_ACCESS_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let dest = GoogleCustomerMatchDestination::new(
        "google_ads".into(),
        &spec(&proxy_running.base_url, consent),
        &secrets,
        reqwest::Client::new(),
        Arc::new(SystemClock),
        Arc::new(EmbeddedStateStore::open(&dir.path().join("state.redb")).unwrap()),
    )
    .unwrap();

    let scenario = tokio::spawn(scenario(dest)).await.map_err(|e| {
        let panic = e.into_panic();
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the scenario panicked".into())
    });
    let seen = proxy.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Driven {
        seen,
        sim,
        scenario,
    }
}

async fn scenario(dest: GoogleCustomerMatchDestination) {
    let us = || ("country", json!("US"));
    let address = [
        us(),
        ("first_name", json!("Ann")),
        ("last_name", json!("Lee")),
        ("zip", json!("94043")),
    ];
    // 1st send: three creates of the destination's (unspecified) consent,
    // one EEA person held back, one granting person left for a later job.
    let first = vec![
        op(OpKind::Add, "ann@example.com", &address),
        op(OpKind::Add, "bob@example.com", &[us()]),
        op(OpKind::Update, "cy@example.com", &[us()]),
        op(OpKind::Add, "dora@example.de", &[("country", json!("DE"))]),
        op(
            OpKind::Add,
            "eve@example.com",
            &[us(), ("ads_consent", json!(true))],
        ),
    ];
    let outcomes = dest.send(&export(), &binding(), &first).await.unwrap();
    assert_eq!(
        &outcomes[..3],
        &vec![OpOutcome::Accepted; 3][..],
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[3], OpOutcome::Unmatched { reason } if reason.starts_with("no consent (EEA)")),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[4], OpOutcome::Retry { .. }),
        "{outcomes:?}"
    );
    // 2nd send: the granting person, in a job of its own consent.
    let outcomes = dest.send(&export(), &binding(), &first[4..]).await.unwrap();
    assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    // 3rd send: removes, in a job without consent.
    let removes = vec![
        op(OpKind::Remove, "bob@example.com", &[us()]),
        op(OpKind::Remove, "ann@example.com", &address),
    ];
    let outcomes = dest.send(&export(), &binding(), &removes).await.unwrap();
    assert_eq!(outcomes, vec![OpOutcome::Accepted; 2]);
    dest.settle().await.unwrap();
    assert_eq!(
        dest.audience_size(&export(), &binding()).await.unwrap(),
        Some(2)
    );
}

#[tokio::test]
async fn every_request_our_client_sends_is_one_googles_definition_allows() {
    let contract = contract();
    let Driven {
        seen,
        sim,
        scenario,
    } = drive_the_client().await;
    let problems = check_requests(&contract, &seen);
    assert!(problems.is_empty(), "{problems:#?}");
    if let Err(panic) = scenario {
        panic!("the scenario failed: {panic}");
    }
    let all: BTreeSet<String> = methods(&contract)
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    let called: BTreeSet<String> = seen
        .iter()
        .filter_map(|r| method_for(&contract, &r.method, &r.path))
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        called, all,
        "the scenario calls every method of the contract"
    );

    // The jobs as the simulator recorded them: consent on creates only.
    let jobs = sim.job_details();
    let consents: Vec<(Option<SimConsent>, usize, usize)> = jobs
        .iter()
        .map(|j| (j.consent.clone(), j.creates, j.removes))
        .collect();
    let consent = |c: &str| {
        Some(SimConsent {
            ad_user_data: c.into(),
            ad_personalization: c.into(),
        })
    };
    assert_eq!(
        consents,
        vec![
            (consent("UNSPECIFIED"), 3, 0),
            (consent("GRANTED"), 1, 0),
            (None, 0, 2),
        ]
    );
    assert!(jobs.iter().all(|j| j.operation_consents.is_empty()));
}

/// Every way the captured requests stray from the contract.
fn check_requests(contract: &Value, seen: &[Captured]) -> Vec<String> {
    let mut problems = Vec::new();
    for req in seen {
        let at = format!("{} {}", req.method, req.path);
        let Some(method) = method_for(contract, &req.method, &req.path) else {
            problems.push(format!("{at}: no method of the contract"));
            continue;
        };
        let name = method["name"].as_str().unwrap_or("");
        // Headers.
        for (header, rule) in contract["headers"].as_object().into_iter().flatten() {
            let got = req.headers.get(header.as_str());
            if rule["required"] == json!(true) && got.is_none() {
                problems.push(format!("{at}: no {header} header"));
            }
            if let (Some(got), Some(value)) = (got, rule["value"].as_str()) {
                if !got.starts_with(value) {
                    problems.push(format!("{at}: {header} is {got:?}"));
                }
            }
        }
        if !req
            .headers
            .get("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
        {
            problems.push(format!("{at}: authorization is not a bearer token"));
        }
        if let Some(login) = req.headers.get("login-customer-id") {
            if login.len() != 10 || !login.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!("{at}: login-customer-id {login:?}"));
            }
        }
        // Body: Google's messages, then what we say we send.
        let request = method["request"].as_str().unwrap_or("");
        let mut leaves = BTreeSet::new();
        check_against_messages(contract, request, &req.body, "", &mut leaves, &mut problems);
        for leaf in &leaves {
            match method["we_send"].get(leaf.as_str()) {
                None => problems.push(format!("{at}: sends {leaf}, not in we_send of {name}")),
                Some(entry) => {
                    if let Some(values) = entry["values"].as_array() {
                        let sent = leaf_values(&req.body, leaf);
                        for v in sent {
                            if !values.contains(&v) {
                                problems.push(format!("{at}: {leaf} = {v}, not one of {values:?}"));
                            }
                        }
                    }
                }
            }
        }
        // GAQL: resources and fields the contract lists.
        if let Some(query) = req.body.get("query").and_then(Value::as_str) {
            match gaql_resource(query) {
                Some(r) if contract["gaql"]["resources"].get(&r).is_some() => {}
                other => problems.push(format!("{at}: GAQL resource {other:?}")),
            }
            for field in gaql_names(query) {
                if contract["gaql"]["fields"].get(&field).is_none() {
                    problems.push(format!("{at}: GAQL field {field} not in the contract"));
                }
            }
        }
    }
    problems
}

/// The values a body holds at a leaf path (`a.b[].c`).
fn leaf_values(body: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![body.clone()];
    for part in path.split('.') {
        let (name, list) = match part.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (part, false),
        };
        current = current
            .into_iter()
            .filter_map(|v| v.get(name).cloned())
            .flat_map(|v| {
                if list {
                    v.as_array().cloned().unwrap_or_default()
                } else {
                    vec![v]
                }
            })
            .collect();
    }
    current
}

// ---------------------------------------------------- the simulator side

#[tokio::test]
async fn the_simulator_serves_exactly_the_contracts_routes() {
    let contract = contract();
    let (running, sim) = GoogleSim::start(GoogleSimConfig::default()).await.unwrap();
    sim.create_user_list(CUSTOMER, LIST);
    let http = reqwest::Client::new();
    let call = |verb: Method, path: String, body: Value| {
        let req = http
            .request(verb, format!("{}{path}", running.base_url))
            .bearer_auth(DEFAULT_ACCESS_TOKEN)
            .header("developer-token", DEFAULT_DEVELOPER_TOKEN)
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // A real job, so the job methods have one to name.
    let (status, created) = call(
        Method::POST,
        format!("/v25/customers/{CUSTOMER}/offlineUserDataJobs:create"),
        json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST",
            "customerMatchUserListMetadata": {"userList": format!("customers/{CUSTOMER}/userLists/{LIST}")}}}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let job_id = created["resourceName"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    let fill = |template: &str| {
        template
            .replace("{version}", "v25")
            .replace("{customer_id}", CUSTOMER)
            .replace("{job_id}", &job_id)
    };

    let mut problems = Vec::new();
    let mut contract_routes = BTreeSet::new();
    for m in methods(&contract) {
        let path = fill(m["path"].as_str().unwrap_or(""));
        let verb = m["verb"].as_str().unwrap_or("");
        contract_routes.insert((verb.to_string(), path.clone()));
        let (status, body) = call(Method::POST, path.clone(), json!({})).await;
        if verb != "POST" || status == 404 {
            problems.push(format!("{verb} {path}: {status} {body}"));
        }
    }
    // Every other verb on a contract path, and paths near the contract's
    // (a job read, other verbs of the services, other services): 404.
    let mut others: Vec<(Method, String)> = Vec::new();
    for (_, path) in &contract_routes {
        for verb in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            others.push((verb, path.clone()));
        }
    }
    for path in [
        format!("/v25/customers/{CUSTOMER}/offlineUserDataJobs/{job_id}"),
        format!("/v25/customers/{CUSTOMER}/offlineUserDataJobs:list"),
        format!("/v25/customers/{CUSTOMER}/offlineUserDataJobs/{job_id}:cancel"),
        format!("/v25/customers/{CUSTOMER}/googleAds:searchStream"),
        format!("/v25/customers/{CUSTOMER}/googleAds:mutate"),
        format!("/v25/customers/{CUSTOMER}/userLists:mutate"),
        format!("/v25/customers/{CUSTOMER}:uploadUserData"),
        format!("/v25/customers/{CUSTOMER}/offlineUserDataJobs/{job_id}:run/extra"),
        "/v25/offlineUserDataJobs:create".to_string(),
    ] {
        others.push((Method::GET, path.clone()));
        others.push((Method::POST, path));
    }
    for (verb, path) in others {
        let (status, body) = call(verb.clone(), path.clone(), json!({})).await;
        if status != 404 {
            problems.push(format!("{verb} {path}: {status} (expected 404) {body}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
