//! The pipeline end to end on the embedded adapters, against the simulators:
//! intake semantics (exits, ordering, dedup, quarantine), batch runs (guard
//! rails, resume) and delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataout::customerio::webhook::sign;
use dataout::domain::model::{OpKind, RunStatus};
use dataout::local::LocalRuntime;
use dataout::pipeline::export::{run_export, ExportOptions};
use dataout::pipeline::intake::{handle, Route};
use dataout::ports::SystemClock;
use dataout_cli::demo::{intake_config, SimEnv, ACTION_SECRET, SIGNING_SECRET};
use dataout_sim::customerio::SEGMENT_CART_ABANDONERS;
use serde_json::{json, Value};
use tempfile::TempDir;

struct Setup {
    _dir: TempDir,
    env: SimEnv,
    rt: Arc<LocalRuntime>,
}

async fn setup(people: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let env = SimEnv::start(people, &dir.path().join("warehouse"))
        .await
        .unwrap();
    let rt = Arc::new(
        env.runtime(&dir.path().join("state"), Arc::new(SystemClock))
            .unwrap(),
    );
    Setup { _dir: dir, env, rt }
}

fn action_headers() -> BTreeMap<String, String> {
    [("x-dataout-token".to_string(), ACTION_SECRET.to_string())].into()
}

async fn post_action(rt: &LocalRuntime, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).unwrap();
    let resp = handle(
        &rt.deps,
        &rt.intake,
        Route::Actions,
        &action_headers(),
        &bytes,
    )
    .await;
    assert!((200..300).contains(&resp.status), "{resp:?}");
    resp.body
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

fn enter_cart(id: &str, email: &str, cart_value: &str, sent_at: i64) -> Value {
    json!({
        "action": "enter", "export": "cart_abandoners",
        "person": {"id": id, "email": email},
        "attributes": {"cart_value": cart_value},
        "sent_at": sent_at,
    })
}

fn order_placed(id: &str, order: &str, sent_at: i64) -> Value {
    json!({
        "action": "event",
        "person": {"id": id},
        "event": {"name": "order_placed", "id": order, "data": {"total": "150.00"}},
        "sent_at": sent_at,
    })
}

/// Every job waiting on every destination queue, acked.
async fn take_all_jobs(
    rt: &LocalRuntime,
) -> BTreeMap<String, Vec<dataout::domain::model::DeliveryJob>> {
    let mut out = BTreeMap::new();
    for name in rt.destinations.keys() {
        loop {
            let got = rt.deps.queue.receive(name, 10).await.unwrap();
            if got.is_empty() {
                break;
            }
            for j in got {
                rt.deps.queue.ack(name, &j.receipt).await.unwrap();
                out.entry(name.clone()).or_insert_with(Vec::new).push(j.job);
            }
        }
    }
    out
}

#[tokio::test]
async fn order_placed_enqueues_removes_for_every_tier_and_destination_in_the_same_request() {
    let s = setup(50).await;
    let t = now_s();
    post_action(
        &s.rt,
        &enter_cart("cust_90001", "buyer@example.com", "150", t - 10),
    )
    .await;
    let adds = take_all_jobs(&s.rt).await;
    let added: BTreeMap<String, BTreeSet<String>> = adds
        .iter()
        .map(|(d, jobs)| {
            (
                d.clone(),
                jobs.iter()
                    .flat_map(|j| j.ops.iter().map(|o| o.audience.clone()))
                    .collect(),
            )
        })
        .collect();
    // Main audience plus the fresh (0_1h) and high value tiers where bound.
    assert_eq!(added["clevertap"].len(), 3, "{added:?}");
    assert_eq!(added["meta"].len(), 3, "{added:?}");
    assert_eq!(added["google"].len(), 1);
    assert_eq!(added["warehouse"].len(), 1);

    let answer = post_action(&s.rt, &order_placed("cust_90001", "ord_1", t - 5)).await;
    assert_eq!(answer["status"], "accepted", "{answer}");
    let removes = take_all_jobs(&s.rt).await;
    for (dest, audiences) in &added {
        let removed: BTreeSet<String> = removes
            .get(dest)
            .into_iter()
            .flatten()
            .flat_map(|j| j.ops.iter())
            .filter(|o| o.op == OpKind::Remove)
            .map(|o| o.audience.clone())
            .collect();
        assert_eq!(
            &removed, audiences,
            "every audience at {dest} gets its remove"
        );
    }
    let rec =
        s.rt.deps
            .state
            .get_membership(
                "cart_abandoners",
                &dataout::domain::model::PersonKey("id:cust_90001".into()),
            )
            .await
            .unwrap()
            .unwrap();
    assert!(!rec.current.member);
    assert!(rec.current.tiers.is_empty());
}

#[tokio::test]
async fn purchaser_leaves_the_meta_audience_within_two_seconds() {
    let s = setup(50).await;
    s.rt.start_workers().await.unwrap();
    let server = dataout_sim::serve(s.rt.router()).await.unwrap();
    let http = reqwest::Client::new();
    let post = |body: Value| {
        let http = http.clone();
        let url = format!("{}/webhooks/actions", server.base_url);
        async move {
            let r = http
                .post(url)
                .header("x-dataout-token", ACTION_SECRET)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
    };
    let audience = "23850000000000101";
    let t = now_s();
    post(enter_cart("cust_90002", "fast@example.com", "80", t - 30)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s
        .env
        .meta
        .has_member_with(audience, "EXTERN_ID", "cust_90002")
    {
        assert!(Instant::now() < deadline, "the add never reached Meta");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    post(order_placed("cust_90002", "ord_2", t)).await;
    while s
        .env
        .meta
        .has_member_with(audience, "EXTERN_ID", "cust_90002")
    {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "still in the audience after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("purchase to Meta remove: {:?}", started.elapsed());
    s.rt.shutdown().await;
}

#[tokio::test]
async fn shuffled_stream_ends_in_the_same_membership_as_the_ordered_one() {
    let stream: Vec<(i64, Value)> = include_str!("../events/customerio/demo-stream.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["route"] == "actions").then(|| {
                (
                    v["body"]["sent_at"].as_i64().unwrap_or(0),
                    v["body"].clone(),
                )
            })
        })
        .collect();
    let base = now_s() - 600;
    let mut states = Vec::new();
    for seed in [None, Some(11u64), Some(12)] {
        let s = setup(20).await;
        let mut order: Vec<&(i64, Value)> = stream.iter().collect();
        if let Some(seed) = seed {
            // A deterministic shuffle: sort by a keyed digest of each line.
            order.sort_by_key(|(ts, body)| {
                let h = sha2_hex(&format!("{seed}:{ts}:{body}"));
                h
            });
        } else {
            order.sort_by_key(|(ts, _)| *ts);
        }
        for (_, body) in order {
            let mut body = body.clone();
            if let Some(rel) = body["sent_at"].as_i64() {
                body["sent_at"] = json!(base + rel);
            }
            post_action(&s.rt, &body).await;
        }
        let mut state = BTreeMap::new();
        for export in s.rt.deps.spec.exports.keys() {
            let page =
                s.rt.deps
                    .state
                    .list_memberships(export, None, 10_000)
                    .await
                    .unwrap();
            for r in page.items {
                // What a former member carried is not state anyone reads.
                let attributes = if r.current.member {
                    r.current.attributes.clone()
                } else {
                    Default::default()
                };
                state.insert(
                    (export.clone(), r.person_key.0.clone()),
                    (r.current.member, attributes),
                );
            }
        }
        states.push(state);
    }
    assert!(!states[0].is_empty());
    assert_eq!(states[0], states[1]);
    assert_eq!(states[0], states[2]);
}

fn sha2_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn duplicate_and_tampered_reporting_webhooks_are_handled() {
    let s = setup(20).await;
    let body = json!({
        "event_id": "01HZDUPLICATE0000000000000",
        "object_type": "email", "metric": "unsubscribed", "timestamp": now_s(),
        "data": {"identifiers": {"id": "cust_00003", "email": "x@example.com", "cio_id": "c3"}}
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    let ts = now_s();
    let headers: BTreeMap<String, String> = [
        ("x-cio-timestamp".to_string(), ts.to_string()),
        (
            "x-cio-signature".to_string(),
            sign(SIGNING_SECRET.as_bytes(), ts, &bytes),
        ),
    ]
    .into();
    let first = handle(&s.rt.deps, &s.rt.intake, Route::Reporting, &headers, &bytes).await;
    assert_eq!(first.body["status"], "accepted", "{first:?}");
    let again = handle(&s.rt.deps, &s.rt.intake, Route::Reporting, &headers, &bytes).await;
    assert_eq!(again.body["status"], "duplicate");
    let mut tampered = bytes.clone();
    tampered.push(b' ');
    let refused = handle(
        &s.rt.deps,
        &s.rt.intake,
        Route::Reporting,
        &headers,
        &tampered,
    )
    .await;
    assert_eq!(refused.status, 401);
    // The unsubscribe fed the suppression export.
    assert_eq!(
        s.rt.deps
            .state
            .count_members("email_suppression")
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn signed_but_malformed_body_is_quarantined_byte_for_byte_and_replayable() {
    let s = setup(20).await;
    let bytes =
        br#"{"action":"enter","export":"no_such_export","person":{"id":"cust_00001"}}"#.to_vec();
    let resp = handle(
        &s.rt.deps,
        &s.rt.intake,
        Route::Actions,
        &action_headers(),
        &bytes,
    )
    .await;
    assert!((200..300).contains(&resp.status));
    assert_eq!(resp.body["status"], "quarantined");
    let id = resp.body["quarantine_id"].as_str().unwrap().to_string();
    let listed = s.rt.deps.state.list_quarantine(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    use base64::Engine;
    let kept = base64::engine::general_purpose::STANDARD
        .decode(&listed[0].body_b64)
        .unwrap();
    assert_eq!(kept, bytes);
    let replay = dataout::pipeline::intake::replay_quarantined(&s.rt.deps, &s.rt.intake, &id)
        .await
        .unwrap();
    assert_eq!(
        replay.body["status"], "quarantined",
        "still unknown export: stays quarantined"
    );
    let _ = intake_config();
}

#[tokio::test]
async fn run_is_held_when_the_source_comes_back_empty_and_nothing_is_removed() {
    let s = setup(1000).await;
    let source = s.env.source().unwrap();
    let first = s.rt.run_batch(&source, "cart_abandoners").await.unwrap();
    assert_eq!(first.status, RunStatus::Finished);
    // The source's segment (recent purchasers, whom the export suppresses,
    // are outside it by the world's design).
    let ws = s.env.cio.handle.snapshot();
    let in_segment = ws.members(SEGMENT_CART_ABANDONERS).len() as u64;
    assert!(in_segment > 0, "the demo workspace fills the segment");
    let members =
        s.rt.deps
            .state
            .count_members("cart_abandoners")
            .await
            .unwrap();
    assert_eq!(members, in_segment);
    take_all_jobs(&s.rt).await;
    s.env.cio.handle.update(|ws| {
        if let Some(seg) = ws.segments.get_mut(&SEGMENT_CART_ABANDONERS) {
            seg.members.clear();
        }
    });
    let second = s.rt.run_batch(&source, "cart_abandoners").await.unwrap();
    assert!(
        matches!(second.status, RunStatus::Held { .. }),
        "{:?}",
        second.status
    );
    assert_eq!(
        s.rt.deps
            .state
            .count_members("cart_abandoners")
            .await
            .unwrap(),
        members
    );
    assert!(
        take_all_jobs(&s.rt).await.is_empty(),
        "a held run sends nothing"
    );
    // An operator approves: the next invocation commits the removes.
    dataout::pipeline::export::approve(&s.rt.deps, &second.run_id)
        .await
        .unwrap();
    let released = s.rt.run_batch(&source, "cart_abandoners").await.unwrap();
    assert_eq!(released.run_id, second.run_id);
    assert_eq!(released.status, RunStatus::Finished);
    assert_eq!(
        s.rt.deps
            .state
            .count_members("cart_abandoners")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn interrupted_run_resumes_and_enqueues_exactly_what_one_pass_would() {
    let one = setup(1500).await;
    let two = setup(1500).await;
    let source_one = one.env.source().unwrap();
    let source_two = two.env.source().unwrap();
    let whole = one
        .rt
        .run_batch(&source_one, "recent_purchasers")
        .await
        .unwrap();
    assert_eq!(whole.status, RunStatus::Finished);
    let jobs_whole = take_all_jobs(&one.rt).await;

    // The same run cut into many invocations: small pages and chunks, and
    // a deadline that has always passed after the first step of each.
    let opts = ExportOptions {
        page_limit: 40,
        chunk_people: 25,
        deadline: Some(Instant::now()),
        ..ExportOptions::default()
    };
    let mut invocations = 0;
    let run = loop {
        invocations += 1;
        let run = run_export(&two.rt.deps, &source_two, "recent_purchasers", &opts)
            .await
            .unwrap();
        if run.status != RunStatus::Running {
            break run;
        }
        assert!(invocations < 10_000);
    };
    assert!(
        invocations > 5,
        "the run was split ({invocations} invocations)"
    );
    assert_eq!(run.status, RunStatus::Finished);
    assert_eq!(run.stats.adds, whole.stats.adds);
    let jobs_split = take_all_jobs(&two.rt).await;
    let ops = |jobs: &BTreeMap<String, Vec<dataout::domain::model::DeliveryJob>>| -> BTreeMap<String, BTreeSet<(String, String)>> {
        jobs.iter()
            .map(|(d, js)| {
                (d.clone(), js.iter().flat_map(|j| j.ops.iter().map(|o| (o.person_key.0.clone(), o.audience.clone()))).collect())
            })
            .collect()
    };
    let count = |jobs: &BTreeMap<String, Vec<dataout::domain::model::DeliveryJob>>| -> usize {
        jobs.values().flatten().map(|j| j.ops.len()).sum()
    };
    assert_eq!(ops(&jobs_whole), ops(&jobs_split));
    assert_eq!(
        count(&jobs_whole),
        count(&jobs_split),
        "no op enqueued twice"
    );
}

fn signed(bytes: &[u8], ts: i64) -> BTreeMap<String, String> {
    [
        ("x-cio-timestamp".to_string(), ts.to_string()),
        (
            "x-cio-signature".to_string(),
            sign(SIGNING_SECRET.as_bytes(), ts, bytes),
        ),
    ]
    .into()
}

#[tokio::test]
async fn every_object_type_and_metric_is_accepted_and_recorded() {
    use dataout::customerio::webhook::OBJECT_TYPE_METRICS;
    let s = setup(10).await;
    let mut n = 0;
    for (object_type, metrics) in OBJECT_TYPE_METRICS {
        for metric in *metrics {
            n += 1;
            let body = json!({
                "event_id": format!("01HZ{n:022}"),
                "object_type": object_type, "metric": metric, "timestamp": now_s(),
                "data": {
                    "identifiers": {"id": format!("cust_{n:05}"), "email": null, "cio_id": format!("cio{n}")},
                    "delivery_id": "RAECAAFwnUSneIa0ZXkmnM", "campaign_id": 12, "action_id": 34,
                },
            });
            let bytes = serde_json::to_vec(&body).unwrap();
            let resp = handle(
                &s.rt.deps,
                &s.rt.intake,
                Route::Reporting,
                &signed(&bytes, now_s()),
                &bytes,
            )
            .await;
            assert_eq!(resp.status, 200, "{object_type}.{metric}: {resp:?}");
            assert_eq!(
                resp.body["status"], "accepted",
                "{object_type}.{metric}: {resp:?}"
            );
        }
    }
    let counters =
        s.rt.deps
            .state
            .get_counters(&dataout::domain::model::CounterScope::intake())
            .await
            .unwrap();
    for (object_type, metrics) in OBJECT_TYPE_METRICS {
        for metric in *metrics {
            assert_eq!(
                counters.get(&format!("reporting:{object_type}.{metric}")),
                Some(&1),
                "{object_type}.{metric}"
            );
        }
    }
    assert_eq!(counters.get("webhooks_accepted"), Some(&n));
}

#[tokio::test]
async fn tampered_reserialised_and_unsigned_reporting_webhooks_get_401_but_stale_signed_ones_are_applied(
) {
    let s = setup(10).await;
    let bytes = br#"{"event_id":"01HZREFUSE","object_type":"email","metric":"opened","timestamp":1700000000,"data":{"identifiers":{"id":"cust_00001"}}}"#.to_vec();
    let ts = now_s();
    let good = signed(&bytes, ts);
    let refused = |resp: dataout::pipeline::intake::IntakeResponse| {
        assert_eq!(resp.status, 401, "{resp:?}");
        assert!(resp.body["reason"].as_str().is_some_and(|r| !r.is_empty()));
    };
    let mut tampered = bytes.clone();
    tampered[40] = b'X';
    refused(handle(&s.rt.deps, &s.rt.intake, Route::Reporting, &good, &tampered).await);
    let reserialised =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&bytes).unwrap()).unwrap();
    refused(
        handle(
            &s.rt.deps,
            &s.rt.intake,
            Route::Reporting,
            &good,
            &reserialised,
        )
        .await,
    );
    // Authentic but signed an hour ago (a retry after an outage): applied,
    // never a 401 that would hold back Customer.io's stream.
    let late = br#"{"event_id":"01HZLATE","object_type":"email","metric":"opened","timestamp":1700000000,"data":{"identifiers":{"id":"cust_00001"}}}"#;
    let stale = signed(late, ts - 3600);
    let applied = handle(&s.rt.deps, &s.rt.intake, Route::Reporting, &stale, late).await;
    assert_eq!(applied.status, 200, "{applied:?}");
    assert_eq!(applied.body["status"], "accepted", "{applied:?}");
    assert!(applied.body["signed_age_s"]
        .as_i64()
        .is_some_and(|a| a >= 3600));
    refused(
        handle(
            &s.rt.deps,
            &s.rt.intake,
            Route::Reporting,
            &BTreeMap::new(),
            &bytes,
        )
        .await,
    );
    let mut no_sig = good.clone();
    no_sig.remove("x-cio-signature");
    refused(handle(&s.rt.deps, &s.rt.intake, Route::Reporting, &no_sig, &bytes).await);
    // The genuine one still goes through.
    let ok = handle(&s.rt.deps, &s.rt.intake, Route::Reporting, &good, &bytes).await;
    assert_eq!(ok.status, 200);
}
