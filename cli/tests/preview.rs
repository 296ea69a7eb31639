//! `dataout preview`: the exact requests an export would send, one JSON line
//! per request, with the platform's host, header names only and the body;
//! nothing sent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

use dataout::domain::config::{load_spec_file, parse_spec};
use dataout_cli::preview::preview;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

const PEOPLE: &str = r#"{"id": "cust_1", "email": "Ada@Example.com", "phone": "+1 415 555 0100", "attributes": {"cart_value": 140, "first_name": "Ada", "city": "Oakland", "country": "US", "lifetime_value": 640, "not_allow_listed": "x"}}
{"id": 2, "email": "bob@example.com", "attributes": {"cart_value": "35.5"}}
{"cio_id": "c3", "email": "carol@example.com"}
"#;

async fn run(export: &str, destination: &str, people: &str) -> (Vec<Value>, u64) {
    let spec = load_spec_file(&repo_file("config/exports.example.yaml")).expect("spec");
    let mut out = Vec::new();
    let summary = preview(&spec, export, destination, people.as_bytes(), &mut out)
        .await
        .expect("preview");
    assert!(summary.bad_lines.is_empty(), "{:?}", summary.bad_lines);
    let lines = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    (lines, summary.people)
}

fn header_names(line: &Value) -> Vec<String> {
    line["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| h.as_str().expect("name").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clevertap_preview_is_one_upload_with_the_real_host_and_header_names_only() {
    let (lines, people) = run("cart_abandoners", "clevertap", PEOPLE).await;
    assert_eq!(people, 3);
    assert_eq!(lines.len(), 1, "3 people fit one request: {lines:?}");
    let r = &lines[0];
    assert_eq!(r["method"], "POST");
    assert_eq!(r["url"], "https://us1.api.clevertap.com/1/upload");
    let names = header_names(r);
    for h in [
        "x-clevertap-account-id",
        "x-clevertap-passcode",
        "content-type",
    ] {
        assert!(names.contains(&h.to_string()), "{names:?}");
    }
    assert!(
        names.iter().all(|h| !h.contains(':')),
        "names only: {names:?}"
    );
    let records = r["body"]["d"].as_array().expect("records");
    // cust_1: main audience + 0_1h + high_value; the others: main + 0_1h.
    assert_eq!(records.len(), 7, "{records:?}");
    let ada = &records[0]["profileData"];
    assert_eq!(records[0]["identity"], "cust_1");
    assert_eq!(ada["cio_cart_abandoners"], true);
    assert_eq!(ada["Email"], "ada@example.com", "normalised as sent");
    assert_eq!(ada["cart_value_bucket"], "100_150", "transform applied");
    assert!(ada.get("not_allow_listed").is_none(), "allow-list applied");
    assert!(records
        .iter()
        .any(|r| r["profileData"]["cio_cart_abandoners_high_value"] == true));
    assert_eq!(records[3]["identity"], "2", "numeric ids read as ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_google_and_webhook_previews_carry_each_audience_and_hashed_keys() {
    let (meta, _) = run("cart_abandoners", "meta", PEOPLE).await;
    let urls: Vec<&str> = meta.iter().filter_map(|l| l["url"].as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://graph.facebook.com/v27.0/23850000000000101/users",
            "https://graph.facebook.com/v27.0/23850000000000111/users",
            "https://graph.facebook.com/v27.0/23850000000000121/users",
        ],
        "main audience, then the 0_1h and high_value tier audiences"
    );
    let rows = meta[0]["body"]["payload"]["data"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    let text = serde_json::to_string(&meta).expect("json");
    assert!(!text.contains("ada@example.com"), "Meta gets hashes only");
    assert!(header_names(&meta[0]).contains(&"authorization".to_string()));

    let (google, _) = run("cart_abandoners", "google", PEOPLE).await;
    assert_eq!(google.len(), 1);
    assert_eq!(
        google[0]["url"],
        "https://datamanager.googleapis.com/v1/audienceMembers:ingest"
    );
    assert_eq!(
        google[0]["body"]["audienceMembers"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    let (hook, _) = run("lapsed_vips", "analytics_webhook", PEOPLE).await;
    assert_eq!(hook.len(), 1);
    assert_eq!(
        hook[0]["url"],
        "https://analytics.example.com/hooks/dataout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_preview_prints_the_object_key_and_its_rows() {
    let (lines, _) = run("cart_abandoners", "warehouse", PEOPLE).await;
    assert_eq!(lines.len(), 1);
    let key = lines[0]["object_key"].as_str().expect("key");
    assert!(key.starts_with("export=cart_abandoners/dt="), "{key}");
    let rows = lines[0]["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["op"], "add");
    assert!(serde_json::to_string(rows)
        .expect("json")
        .contains("email_sha256"));
}

/// A spec with an events export, to preview events as intake forwards them.
const EVENTS_SPEC: &str = r#"
version: 1
destinations:
  warehouse:
    kind: warehouse
    location: ./out/warehouse
  hook:
    kind: webhook
    url: https://hooks.example.com/orders
    secret_env: HOOK_SECRET
exports:
  orders:
    source: {events: [order_placed]}
    mode: events
    cadence: {realtime: true}
    identity: {golden: id, fallbacks: [email]}
    destinations:
      warehouse: {audience: orders}
      hook: {audience: orders}
events:
  order_placed:
    properties: {total: number, currency: , value: number}
    value: total
    currency: currency
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_export_previews_each_line_event_and_names_lines_without_one() {
    let spec = parse_spec(EVENTS_SPEC, "events.yaml").unwrap_or_else(|e| panic!("{e}"));
    let people = r#"{"id": "u1", "email": "u1@example.com", "event": {"name": "order_placed", "id": "ev-1", "data": {"total": 12.5}, "timestamp": 1764633600}}
{"id": "u2"}
{"id": "u3", "event": {"name": "page_viewed"}}
"#;
    let mut out = Vec::new();
    let summary = preview(&spec, "orders", "hook", people.as_bytes(), &mut out)
        .await
        .expect("preview");
    assert_eq!(summary.people, 1);
    let bad: Vec<usize> = summary.bad_lines.iter().map(|b| b.line).collect();
    assert_eq!(bad, [2, 3], "{:?}", summary.bad_lines);
    assert!(summary.bad_lines[1].reason.contains("page_viewed"));
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("ev-1") && text.contains("order_placed"),
        "{text}"
    );
    assert!(text.contains("https://hooks.example.com/orders"), "{text}");
}

#[test]
fn cli_names_bad_lines_exits_non_zero_and_never_prints_secret_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("people.jsonl");
    let mut f = std::fs::File::create(&file).expect("create");
    writeln!(
        f,
        r#"{{"id": "cust_1", "email": "ada@example.com", "attributes": {{"cart_value": 10}}}}"#
    )
    .expect("write");
    writeln!(f, r#"{{"id": "cust_2", "atributes": {{}}}}"#).expect("write");
    writeln!(f, "not json").expect("write");
    writeln!(f, r#"{{"phone": "+14155550100"}}"#).expect("write");
    writeln!(f, r#"{{"id": "cust_5"}}"#).expect("write");
    drop(f);
    let out = Command::new(env!("CARGO_BIN_EXE_dataout"))
        .args([
            "preview",
            "--export",
            "cart_abandoners",
            "--destination",
            "clevertap",
            "--config",
        ])
        .arg(repo_file("config/exports.example.yaml"))
        .arg("--people")
        .arg(&file)
        .env("CLEVERTAP_ACCOUNT_ID", "real-account-id-123")
        .env("CLEVERTAP_PASSCODE", "real-passcode-456")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad lines must fail the run");
    for line in [2, 3, 4] {
        assert!(
            stderr.contains(&format!("error: line {line}:")),
            "line {line} not named: {stderr}"
        );
    }
    assert!(stderr.contains("atributes"), "says what is wrong: {stderr}");
    assert!(!stderr.contains("line 1:") && !stderr.contains("line 5:"));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let body: Value = serde_json::from_str(stdout.trim()).expect("json");
    let ids: Vec<&str> = body["body"]["d"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["identity"].as_str())
        .collect();
    assert!(
        ids.contains(&"cust_1") && ids.contains(&"cust_5"),
        "{ids:?}"
    );
    for secret in ["real-account-id-123", "real-passcode-456"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_sends_nothing_to_the_configured_host() {
    // A destination pointed at a live server: the preview must not reach it.
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            "{}"
        }
    });
    let server = dataout_sim::serve(router).await.expect("serve");
    let mut spec = load_spec_file(&repo_file("config/exports.example.yaml")).expect("spec");
    if let Some(d) = spec.destinations.get_mut("clevertap") {
        d.base_url = Some(server.base_url.clone());
    }
    let mut out = Vec::new();
    preview(
        &spec,
        "cart_abandoners",
        "clevertap",
        PEOPLE.as_bytes(),
        &mut out,
    )
    .await
    .expect("preview");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.contains(&format!("{}/1/upload", server.base_url)),
        "the configured host is shown: {text}"
    );
}

/// Not a test of speed (no timing target): prints people/s for a file of
/// `DATAOUT_PREVIEW_BENCH_PEOPLE` people (default 100,000), for the README.
/// Run with `cargo test -p dataout-cli --release --test preview -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_preview_throughput() {
    let n: usize = std::env::var("DATAOUT_PREVIEW_BENCH_PEOPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut people = String::with_capacity(n * 160);
    for i in 0..n {
        people.push_str(&format!(
            r#"{{"id": "cust_{i}", "email": "person{i}@example.com", "phone": "+1415555{:04}", "attributes": {{"cart_value": {}, "first_name": "P{i}", "city": "Oakland", "country": "US"}}}}"#,
            i % 10_000,
            i % 300
        ));
        people.push('\n');
    }
    let spec = load_spec_file(&repo_file("config/exports.example.yaml")).expect("spec");
    for dest in ["clevertap", "meta", "google", "warehouse"] {
        let mut out = std::io::sink();
        let s = preview(&spec, "cart_abandoners", dest, people.as_bytes(), &mut out)
            .await
            .expect("preview");
        println!(
            "{dest}: {} people, {} ops, {} requests in {:.2}s = {:.0} people/s",
            s.people,
            s.ops,
            s.requests,
            s.seconds,
            s.people as f64 / s.seconds
        );
    }
}

/// Meta conversions (events) and the Google Ads Customer Match path.
const MORE_KINDS_SPEC: &str = r#"
version: 1
destinations:
  capi:
    kind: meta_conversions
    pixel_id: "555000111"
    access_token_env: META_CAPI_TOKEN
  ads:
    kind: google_customer_match
    api_version: v26
    customer_id: "1234567890"
    developer_token_env: G_DEV
    consent_ad_user_data: granted
    consent_ad_personalization: granted
    access_token_env: G_TOKEN
exports:
  purchases:
    source: {events: [order_placed]}
    mode: conversions
    cadence: {realtime: true}
    identity: {golden: id, fallbacks: [email, phone]}
    destinations:
      capi: {audience: Purchase}
  leads:
    source: {events: [order_placed]}
    mode: events
    cadence: {realtime: true}
    identity: {golden: id, fallbacks: [email, phone]}
    destinations:
      capi: {audience: Lead}
  buyers:
    source: {segment: 4}
    mode: membership
    cadence: {every: 1h}
    identity: {golden: id, fallbacks: [email]}
    destinations:
      ads: {audience: "7000000999"}
events:
  order_placed:
    properties: {value: number, currency: }
    value: value
    currency: currency
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_conversions_and_customer_match_previews_show_their_calls() {
    let spec = parse_spec(MORE_KINDS_SPEC, "more.yaml").unwrap_or_else(|e| panic!("{e}"));
    let ts = chrono::Utc::now().timestamp() - 60;
    let events = format!(
        r#"{{"id": "u1", "email": "u1@example.com", "event": {{"name": "order_placed", "id": "ev-9", "data": {{"value": 30}}, "timestamp": {ts}}}}}"#
    );
    // A Purchase without value and currency is one the client never sends:
    // the summary says why, and no request is printed.
    let mut out = Vec::new();
    let s = preview(&spec, "purchases", "capi", events.as_bytes(), &mut out)
        .await
        .expect("preview");
    assert!(out.is_empty());
    assert!(
        s.outcomes
            .keys()
            .any(|k| k.starts_with("invalid:") && k.contains("value and currency")),
        "{:?}",
        s.outcomes
    );

    let mut out = Vec::new();
    let s = preview(&spec, "leads", "capi", events.as_bytes(), &mut out)
        .await
        .expect("preview");
    assert!(s.bad_lines.is_empty(), "{:?}", s.bad_lines);
    assert_eq!(s.outcomes.get("accepted"), Some(&1), "{:?}", s.outcomes);
    let text = String::from_utf8(out).expect("utf-8");
    let line: Value = serde_json::from_str(text.trim()).expect("one request");
    assert_eq!(line["method"], "POST");
    let url = line["url"].as_str().expect("url");
    assert!(
        url.starts_with("https://graph.facebook.com/") && url.ends_with("/555000111/events"),
        "{url}"
    );
    assert_eq!(line["body"]["data"][0]["event_id"], "ev-9", "{line}");
    // The token travels in the body: a placeholder, never a value.
    assert_eq!(line["body"]["access_token"], "<secret META_CAPI_TOKEN>");

    let mut out = Vec::new();
    let s = preview(&spec, "buyers", "ads", PEOPLE.as_bytes(), &mut out)
        .await
        .expect("preview");
    assert_eq!(s.outcomes.get("accepted"), Some(&3), "{:?}", s.outcomes);
    let urls: Vec<String> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            v["url"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(urls.len(), 3, "create, addOperations, run: {urls:?}");
    assert!(urls[0].ends_with("/customers/1234567890/offlineUserDataJobs:create"));
    assert!(urls[1].ends_with(":addOperations"));
    assert!(urls[2].ends_with(":run"));
    assert!(urls
        .iter()
        .all(|u| u.starts_with("https://googleads.googleapis.com/v26/")));
}
