//! Tests of the CleverTap upload simulator.
use super::*;

async fn post(base: &str, passcode: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/1/upload"))
        .header("X-CleverTap-Account-Id", "TEST-ACC-1")
        .header("X-CleverTap-Passcode", passcode)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(serde_json::to_vec(body)?)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let json = serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
    Ok((status, json))
}

fn profile(identity: &str, data: Value) -> Value {
    json!({"type": "profile", "identity": identity, "profileData": data})
}

#[tokio::test]
async fn wrong_passcode_is_401_invalid_credentials() -> anyhow::Result<()> {
    let (sim, state) = start(ClevertapSimConfig::default()).await?;
    let (status, body) = post(
        &sim.base_url,
        "nope",
        &json!({"d": [profile("u1", json!({}))]}),
    )
    .await?;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid credentials or URL");
    assert!(state.profiles().is_empty());
    Ok(())
}

#[tokio::test]
async fn oversized_batch_is_400_and_stores_nothing() -> anyhow::Result<()> {
    let (sim, state) = start(ClevertapSimConfig {
        max_records: 2,
        ..Default::default()
    })
    .await?;
    let d: Vec<Value> = (0..3)
        .map(|i| profile(&format!("u{i}"), json!({"a": 1})))
        .collect();
    let (status, _) = post(&sim.base_url, "TEST-PASSCODE", &json!({ "d": d })).await?;
    assert_eq!(status, 400);
    assert!(state.profiles().is_empty());
    Ok(())
}

#[tokio::test]
async fn missing_d_and_malformed_json_are_400() -> anyhow::Result<()> {
    let (sim, _state) = start(ClevertapSimConfig::default()).await?;
    let (status, _) = post(&sim.base_url, "TEST-PASSCODE", &json!({"data": []})).await?;
    assert_eq!(status, 400);
    let resp = reqwest::Client::new()
        .post(format!("{}/1/upload", sim.base_url))
        .header("X-CleverTap-Account-Id", "TEST-ACC-1")
        .header("X-CleverTap-Passcode", "TEST-PASSCODE")
        .header("Content-Type", "application/json")
        .body("{\"d\":[")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400);
    Ok(())
}

#[tokio::test]
async fn bad_records_land_in_unprocessed_while_status_says_success() -> anyhow::Result<()> {
    let (sim, state) = start(ClevertapSimConfig::default()).await?;
    let d = json!([
        profile("u1", json!({"Phone": "+14155551234", "seg": true})),
        profile("u2", json!({"Phone": "4155551234"})),
        {"type": "event", "identity": "u3", "evtData": {}},
        {"type": "profile", "identity": "u4", "objectId": "x", "profileData": {}},
        {"type": "thing", "identity": "u5"},
        {"type": "event", "identity": "u6", "ts": 1_700_000_000_000i64, "evtName": "x"},
        {"type": "event", "identity": "u7", "evtName": "x", "evtData": {"a": {"b": 1}}},
        profile("u8", json!({"Email": "not-an-email"})),
        profile("u9", json!({"Gender": "male"})),
        {"type": "event", "identity": "u1", "ts": 1_700_000_000, "evtName": "Charged", "evtData": {"v": 3}},
    ]);
    let (status, body) = post(&sim.base_url, "TEST-PASSCODE", &json!({ "d": d })).await?;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    assert_eq!(body["processed"], 2);
    let codes: Vec<u64> = body["unprocessed"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u["code"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(codes, vec![516, 509, 523, 524, 525, 512, 515, 514]);
    assert_eq!(body["unprocessed"][0]["record"]["identity"], "u2");
    let u1 = state
        .profile("u1")
        .ok_or_else(|| anyhow::anyhow!("u1 not stored"))?;
    assert_eq!(u1.data["seg"], true);
    assert_eq!(state.events().len(), 1);
    Ok(())
}

#[tokio::test]
async fn all_records_failing_says_fail_and_partial_is_configurable() -> anyhow::Result<()> {
    let (sim, _) = start(ClevertapSimConfig {
        partial_status: PartialStatus::Partial,
        ..Default::default()
    })
    .await?;
    let (_, body) = post(
        &sim.base_url,
        "TEST-PASSCODE",
        &json!({"d": [profile("u1", json!({"Phone": "1"}))]}),
    )
    .await?;
    assert_eq!(body["status"], "fail");
    let d = json!([
        profile("u1", json!({"Phone": "1"})),
        profile("u2", json!({}))
    ]);
    let (_, body) = post(&sim.base_url, "TEST-PASSCODE", &json!({ "d": d })).await?;
    assert_eq!(body["status"], "partial");
    Ok(())
}

#[tokio::test]
async fn profiles_merge_by_identity_and_dry_run_stores_nothing() -> anyhow::Result<()> {
    let (sim, state) = start(ClevertapSimConfig::default()).await?;
    post(
        &sim.base_url,
        "TEST-PASSCODE",
        &json!({"d": [profile("u1", json!({"a": 1, "b": 1}))]}),
    )
    .await?;
    post(
        &sim.base_url,
        "TEST-PASSCODE",
        &json!({"d": [profile("u1", json!({"b": 2}))]}),
    )
    .await?;
    let resp = reqwest::Client::new()
        .post(format!("{}/1/upload?dryRun=1", sim.base_url))
        .header("X-CleverTap-Account-Id", "TEST-ACC-1")
        .header("X-CleverTap-Passcode", "TEST-PASSCODE")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(
            &json!({"d": [profile("u1", json!({"a": 9}))]}),
        )?)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let u1 = state
        .profile("u1")
        .ok_or_else(|| anyhow::anyhow!("u1 not stored"))?;
    assert_eq!(u1.data["a"], 1);
    assert_eq!(u1.data["b"], 2);
    Ok(())
}

#[tokio::test]
async fn injected_failures_and_flaky_555_are_served_in_order() -> anyhow::Result<()> {
    let (sim, state) = start(ClevertapSimConfig::default()).await?;
    state.fail_next(1, 503);
    state.fail_records_555("u1", 1);
    let body = json!({"d": [profile("u1", json!({}))]});
    let (status, _) = post(&sim.base_url, "TEST-PASSCODE", &body).await?;
    assert_eq!(status, 503);
    let (_, first) = post(&sim.base_url, "TEST-PASSCODE", &body).await?;
    assert_eq!(first["unprocessed"][0]["code"], 555);
    let (_, second) = post(&sim.base_url, "TEST-PASSCODE", &body).await?;
    assert_eq!(second["status"], "success");
    assert_eq!(state.counters().requests, 3);
    Ok(())
}

#[tokio::test]
async fn unprocessed_share_answers_555_per_record_without_storing() -> anyhow::Result<()> {
    let (sim, state) = start(ClevertapSimConfig::default()).await?;
    let d: Vec<Value> = (0..20)
        .map(|i| profile(&format!("u{i}"), json!({"a": i})))
        .collect();
    let body = json!({ "d": d });

    state.set_unprocessed_share(1.0, 7);
    let (status, all_failed) = post(&sim.base_url, "TEST-PASSCODE", &body).await?;
    assert_eq!(status, 200);
    assert_eq!(all_failed["status"], "fail");
    assert_eq!(all_failed["processed"], 0);
    let unprocessed = all_failed["unprocessed"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no unprocessed: {all_failed}"))?;
    assert_eq!(unprocessed.len(), 20);
    for (i, u) in unprocessed.iter().enumerate() {
        assert_eq!(u["code"], 555);
        assert_eq!(u["status"], "fail");
        assert_eq!(u["record"]["identity"], format!("u{i}"));
    }
    assert!(state.profiles().is_empty());
    assert!(state.arrival_order().is_empty());
    let counters = state.counters();
    assert_eq!(counters.unprocessed_injected, 20);
    assert_eq!(counters.records_rejected, 20);
    assert_eq!(counters.records_accepted, 0);

    // A share strictly between 0 and 1 fails some records and stores
    // the others, in the same request.
    state.set_unprocessed_share(0.5, 7);
    let (_, mixed) = post(&sim.base_url, "TEST-PASSCODE", &body).await?;
    let failed = mixed["unprocessed"].as_array().map_or(0, Vec::len);
    assert!((1..20).contains(&failed), "{mixed}");
    assert_eq!(mixed["processed"], 20 - failed as u64);
    assert_eq!(state.profiles().len(), 20 - failed);

    state.set_unprocessed_share(0.0, 7);
    let before = state.counters();
    let (status, all_passed) = post(&sim.base_url, "TEST-PASSCODE", &body).await?;
    assert_eq!(status, 200);
    assert_eq!(all_passed["status"], "success");
    assert_eq!(all_passed["processed"], 20);
    assert_eq!(all_passed["unprocessed"], json!([]));
    assert_eq!(state.profiles().len(), 20);
    let after = state.counters();
    assert_eq!(after.unprocessed_injected, before.unprocessed_injected);
    assert_eq!(after.records_accepted, before.records_accepted + 20);
    Ok(())
}

#[tokio::test]
async fn more_than_max_concurrent_requests_get_429() -> anyhow::Result<()> {
    let (sim, state) = start(ClevertapSimConfig {
        max_concurrent: 2,
        response_delay: Some(Duration::from_millis(300)),
        ..Default::default()
    })
    .await?;
    let body = json!({"d": [profile("u1", json!({}))]});
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let base = sim.base_url.clone();
            let body = body.clone();
            tokio::spawn(async move { post(&base, "TEST-PASSCODE", &body).await.map(|(s, _)| s) })
        })
        .collect();
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await??);
    }
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(throttled >= 1, "expected a 429, got {statuses:?}");
    assert!(statuses.contains(&200));
    assert_eq!(state.counters().throttled as usize, throttled);
    Ok(())
}

#[tokio::test]
async fn peak_concurrency_is_counted_and_the_sixteenth_gets_429_without_retry_after(
) -> anyhow::Result<()> {
    let (sim, state) = start(ClevertapSimConfig {
        response_delay: Some(Duration::from_millis(400)),
        ..Default::default()
    })
    .await?;
    let body = json!({"d": [profile("u1", json!({}))]});
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let base = sim.base_url.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let resp = reqwest::Client::new()
                    .post(format!("{base}/1/upload"))
                    .header("X-CleverTap-Account-Id", "TEST-ACC-1")
                    .header("X-CleverTap-Passcode", "TEST-PASSCODE")
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(&body)?)
                    .send()
                    .await?;
                Ok::<_, anyhow::Error>((
                    resp.status().as_u16(),
                    resp.headers().contains_key("retry-after"),
                ))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await??);
    }
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    let counters = state.counters();
    // 16 requests held 400 ms each: a refusal happens exactly when the
    // 16th overlaps the other 15, and it carries no Retry-After.
    assert!(counters.peak_concurrent <= 16, "{counters:?}");
    assert_eq!(
        counters.peak_concurrent > 15,
        !refused.is_empty(),
        "{counters:?} {answers:?}"
    );
    assert!(refused.iter().all(|(_, retry_after)| !retry_after));
    assert_eq!(counters.throttled as usize, refused.len());
    assert!(counters.peak_concurrent >= 2, "{counters:?}");
    Ok(())
}

async fn get_profile(base: &str, query: &str) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/1/profile.json?{query}"))
        .header("X-CleverTap-Account-Id", "TEST-ACC-1")
        .header("X-CleverTap-Passcode", "TEST-PASSCODE")
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

fn fast() -> ClevertapSimConfig {
    ClevertapSimConfig {
        response_delay: None,
        ..ClevertapSimConfig::default()
    }
}

#[tokio::test]
async fn profile_lookup_answers_in_clevertaps_shape_and_says_when_absent() -> anyhow::Result<()> {
    let (sim, _state) = start(fast()).await?;
    let data = json!({"Email": "a@b.co", "Name": "Ann", "cio_vip": true, "Cart Value": 140});
    post(
        &sim.base_url,
        "TEST-PASSCODE",
        &json!({"d": [profile("u1", data)]}),
    )
    .await?;
    let (_, found) = get_profile(&sim.base_url, "identity=u1").await?;
    assert_eq!(found["status"], "success");
    // CleverTap's recorded answer puts `email` on the record; custom keys
    // come back lower-cased without spaces and flags as text.
    let record = &found["record"];
    assert_eq!(record["identity"], "u1");
    assert_eq!(record["email"], "a@b.co");
    assert_eq!(record["name"], "Ann");
    assert_eq!(record["profileData"]["cio_vip"], "true");
    assert_eq!(record["profileData"]["cartvalue"], 140);
    assert!(record["profileData"].get("Email").is_none(), "{found}");
    assert!(record["profileData"].get("Cart Value").is_none(), "{found}");
    let (_, by_email) = get_profile(&sim.base_url, "email=a%40b.co").await?;
    assert_eq!(by_email["record"]["identity"], "u1");
    let (_, absent) = get_profile(&sim.base_url, "identity=nobody").await?;
    assert_eq!(absent["status"], "fail");
    let unauth = reqwest::Client::new()
        .get(format!("{}/1/profile.json?identity=u1", sim.base_url))
        .send()
        .await?;
    assert_eq!(unauth.status().as_u16(), 401);
    Ok(())
}

#[tokio::test]
async fn a_fourth_profile_read_in_flight_is_refused_with_429() -> anyhow::Result<()> {
    // CleverTap's API Request Limit page: 3 concurrent Get User Profiles
    // requests per account, then HTTP 429 "Too many concurrent requests".
    let (sim, state) = start(ClevertapSimConfig {
        response_delay: Some(Duration::from_millis(500)),
        ..ClevertapSimConfig::default()
    })
    .await?;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let base = sim.base_url.clone();
            tokio::spawn(async move { get_profile(&base, &format!("identity=u{i}")).await })
        })
        .collect();
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await??);
    }
    let refused: Vec<&(u16, Value)> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert_eq!(refused[0].1["error"], "Too many concurrent requests");
    assert_eq!(state.counters().lookups_throttled, 1);
    // Once the others are answered, a read is served again.
    let (status, _) = get_profile(&sim.base_url, "identity=u0").await?;
    assert_eq!(status, 200);
    Ok(())
}

#[tokio::test]
async fn answers_take_a_second_unless_a_test_turns_latency_off() -> anyhow::Result<()> {
    let (slow, _) = start(ClevertapSimConfig::default()).await?;
    let started = std::time::Instant::now();
    let (status, _) = post(
        &slow.base_url,
        "TEST-PASSCODE",
        &json!({"d": [profile("u1", json!({"a": 1}))]}),
    )
    .await?;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    get_profile(&slow.base_url, "identity=u1").await?;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let (quick, _) = start(fast()).await?;
    let started = std::time::Instant::now();
    post(
        &quick.base_url,
        "TEST-PASSCODE",
        &json!({"d": [profile("u1", json!({"a": 1}))]}),
    )
    .await?;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn e164_and_email_checks() {
    assert!(is_e164("+14155551234"));
    assert!(!is_e164("14155551234"));
    assert!(!is_e164("+0123456789"));
    assert!(is_email("a@b.co"));
    assert!(!is_email("a@b"));
    assert!(!is_email("a b@c.de"));
}

#[tokio::test]
async fn ts_zero_is_not_a_time_and_is_refused_with_525() -> anyhow::Result<()> {
    let (sim, state) = start(ClevertapSimConfig::default()).await?;
    let d = json!([
        {"type": "profile", "identity": "u1", "ts": 0, "profileData": {"a": 1}},
        {"type": "event", "identity": "u2", "ts": 0, "evtName": "x", "evtData": {}},
        {"type": "profile", "identity": "u3", "ts": 1_700_000_000, "profileData": {"a": 1}},
    ]);
    let (status, body) = post(&sim.base_url, "TEST-PASSCODE", &json!({ "d": d })).await?;
    assert_eq!(status, 200);
    let codes: Vec<u64> = body["unprocessed"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u["code"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(codes, vec![525, 525], "{body}");
    assert!(state.profile("u1").is_none() && state.events().is_empty());
    assert!(state.profile("u3").is_some());
    Ok(())
}
