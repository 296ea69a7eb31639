//! `dataout serve` killed in the middle of a replay and started again on the
//! same state: every accepted change reaches the destinations, and none is
//! delivered twice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataout_sim::meta::{MetaSim, MetaSimConfig, DEFAULT_ACCESS_TOKEN};
use serde_json::{json, Value};

const AUDIENCE: &str = "23850000000000999";
const SECRET: &str = "restart-test-secret";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18080)
}

fn spawn_serve(config: &Path, state: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dataout"))
        .args(["serve", "--config"])
        .arg(config)
        .args(["--addr", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(state)
        .env("CIO_WEBHOOK_SIGNING_SECRET", SECRET)
        // The action token is required as on Lambda (no fallback to the signing key).
        .env("DATAOUT_ACTION_SECRET", SECRET)
        .env("META_ACCESS_TOKEN", DEFAULT_ACCESS_TOKEN)
        .env("RUST_LOG", "warn")
        .env_remove("CIO_APP_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dataout serve")
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stream: 120 people enter, every third one exits again later.
fn stream(base_s: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..120 {
        out.push(json!({
            "action": "enter", "export": "cart", "id": format!("enter-{i}"),
            "person": {"id": format!("p{i:04}"), "email": format!("person{i}@example.com")},
            "sent_at": base_s + i,
        }));
        if i % 3 == 0 && i >= 3 {
            let j = i - 3;
            out.push(json!({
                "action": "exit", "export": "cart", "id": format!("exit-{j}"),
                "person": {"id": format!("p{j:04}")},
                "sent_at": base_s + i,
            }));
        }
    }
    out
}

async fn post(http: &reqwest::Client, base: &str, body: &Value) -> bool {
    match http
        .post(format!("{base}/webhooks/actions"))
        .header("x-dataout-token", SECRET)
        .json(body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

fn warehouse_rows(dir: &Path) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                rows.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
            }
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_loses_no_accepted_change_and_delivers_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (meta_server, meta) = MetaSim::start(MetaSimConfig::default()).await.unwrap();
    meta.create_audience(AUDIENCE);
    let warehouse = dir.path().join("warehouse");
    let config = dir.path().join("exports.yaml");
    std::fs::write(
        &config,
        format!(
            r#"version: 1
destinations:
  warehouse:
    kind: warehouse
    location: {warehouse}
  meta:
    kind: meta_audience
    api_version: v25.0
    ad_account_id: "1234567890"
    access_token_env: META_ACCESS_TOKEN
    base_url: {meta_url}
exports:
  cart:
    source: action
    mode: membership
    cadence: {{realtime: true}}
    identity: {{golden: id, fallbacks: [email]}}
    destinations:
      meta:
        audience: "{AUDIENCE}"
        keys: [email, extern_id]
      warehouse:
"#,
            warehouse = warehouse.display(),
            meta_url = meta_server.base_url,
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let events = stream(chrono::Utc::now().timestamp() - 600);

    let mut server = spawn_serve(&config, &state, port);
    wait_healthy(&http, &base).await;
    // Post the first part of the stream, then kill the server without
    // warning while requests are still in flight.
    let mut acknowledged = 0;
    let cut = events.len() / 2;
    let mut in_flight = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if i < cut {
            assert!(post(&http, &base, e).await, "request {i} refused");
            acknowledged = i + 1;
        } else if i < cut + 8 {
            let (http, base, e) = (http.clone(), base.clone(), e.clone());
            in_flight.push(tokio::spawn(async move { post(&http, &base, &e).await }));
        }
    }
    server.kill().expect("kill serve");
    let _ = server.wait();
    for f in in_flight {
        let _ = f.await;
    }

    // Customer.io retries what was not acknowledged: restart and resend
    // from the first unacknowledged request (repeats included).
    let mut server = spawn_serve(&config, &state, port);
    wait_healthy(&http, &base).await;
    for e in &events[acknowledged..] {
        // As Customer.io does: retry with backoff until acknowledged. A
        // request the killed server had claimed is answered 503 until its
        // claim expires.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !post(&http, &base, e).await {
            assert!(
                Instant::now() < deadline,
                "request never acknowledged after restart"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    let mut expected: BTreeSet<String> = BTreeSet::new();
    let mut applied_ops = 0usize;
    for e in &events {
        let id = e["person"]["id"].as_str().unwrap().to_string();
        applied_ops += 1;
        if e["action"] == "enter" {
            expected.insert(id);
        } else {
            expected.remove(&id);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let in_meta: BTreeSet<String> = meta
            .members(AUDIENCE)
            .into_iter()
            .filter_map(|m| {
                m.iter()
                    .find(|(k, _)| k == "EXTERN_ID")
                    .map(|(_, v)| v.clone())
            })
            .collect();
        let rows = warehouse_rows(&warehouse);
        if in_meta == expected && rows.len() >= applied_ops {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered: meta has {} of {} members, warehouse {} of {} rows",
            in_meta.len(),
            expected.len(),
            rows.len(),
            applied_ops
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each change appears exactly once in the warehouse: a job redelivered
    // after the crash rewrote its own file instead of adding rows.
    let rows = warehouse_rows(&warehouse);
    let mut seen: BTreeMap<(String, String, i64), usize> = BTreeMap::new();
    for r in &rows {
        let key = (
            r["person_key"].as_str().unwrap_or("").to_string(),
            r["op"].as_str().unwrap_or("").to_string(),
            r["source_ts"].as_i64().unwrap_or(0),
        );
        *seen.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert_eq!(rows.len(), applied_ops, "one warehouse row per change");
    server.kill().ok();
    let _ = server.wait();
}
