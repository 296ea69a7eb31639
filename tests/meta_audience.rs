//! Meta Custom Audiences end to end: intake → delivery workers → the Meta
//! simulator, on the embedded adapters. Pins the two things a Meta bug
//! would cost our users: a person whose email changes stays in the
//! audience, and a flagged audience pauses without flooding the DLQ.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataout::destinations::DestinationAlert;
use dataout::domain::identity::sha256_hex;
use dataout::local::LocalRuntime;
use dataout::ports::SystemClock;
use dataout_cli::demo::{SimEnv, ACTION_SECRET};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The cart abandoners' main Meta audience in the example spec.
const AUDIENCE: &str = "23850000000000101";

struct Setup {
    _dir: TempDir,
    env: SimEnv,
    rt: Arc<LocalRuntime>,
    server: dataout_sim::RunningSim,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let env = SimEnv::start(50, &dir.path().join("warehouse"))
        .await
        .unwrap();
    let rt = Arc::new(
        env.runtime(&dir.path().join("state"), Arc::new(SystemClock))
            .unwrap(),
    );
    rt.start_workers().await.unwrap();
    let server = dataout_sim::serve(rt.router()).await.unwrap();
    Setup {
        _dir: dir,
        env,
        rt,
        server,
    }
}

async fn post(s: &Setup, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/actions", s.server.base_url))
        .header("x-dataout-token", ACTION_SECRET)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

fn enter_cart(id: &str, email: &str, phone: &str, sent_at: i64) -> Value {
    json!({
        "action": "enter", "export": "cart_abandoners",
        "person": {"id": id, "email": email, "phone": phone},
        "attributes": {"cart_value": "80"},
        "sent_at": sent_at,
    })
}

/// Wait until the Meta queue has nothing visible or in flight.
async fn meta_queue_settles(rt: &LocalRuntime) -> dataout::ports::QueueDepth {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let depth = rt.deps.queue.depth("meta").await.unwrap();
        if depth.visible == 0 && depth.in_flight == 0 {
            return depth;
        }
        assert!(
            Instant::now() < deadline,
            "meta queue never settled: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn email_change_keeps_the_person_in_the_meta_audience() {
    let s = setup().await;
    let t = chrono::Utc::now().timestamp();
    // Same EXTERN_ID and phone before and after: Meta matches the old row's
    // remove to the same person, so it must reach Meta before the new add.
    post(
        &s,
        enter_cart("cust_90011", "old@example.com", "+14155550111", t - 20),
    )
    .await;
    let old_hash = sha256_hex("old@example.com");
    wait_for("the first add never reached Meta", || {
        s.env.meta.has_member_with(AUDIENCE, "EMAIL", &old_hash)
    })
    .await;
    post(
        &s,
        enter_cart("cust_90011", "new@example.com", "+14155550111", t - 10),
    )
    .await;
    let new_hash = sha256_hex("new@example.com");
    wait_for("the new email never reached Meta", || {
        s.env.meta.has_member_with(AUDIENCE, "EMAIL", &new_hash)
    })
    .await;
    meta_queue_settles(&s.rt).await;
    // Let any change Meta still holds apply, then look again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        s.env
            .meta
            .has_member_with(AUDIENCE, "EXTERN_ID", "cust_90011"),
        "the email change removed the person from the audience"
    );
    assert!(s.env.meta.has_member_with(AUDIENCE, "EMAIL", &new_hash));
    assert!(!s.env.meta.has_member_with(AUDIENCE, "EMAIL", &old_hash));
    // On the wire: the remove of the old row came before the add of the new.
    let methods: Vec<String> = s
        .env
        .meta
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(AUDIENCE))
        .map(|r| r.method)
        .collect();
    let last_delete = methods.iter().rposition(|m| m == "DELETE");
    let last_post = methods.iter().rposition(|m| m == "POST");
    assert!(
        matches!((last_delete, last_post), (Some(d), Some(p)) if d < p),
        "{methods:?}"
    );
    s.rt.shutdown().await;
}

#[tokio::test]
async fn flagged_meta_audience_pauses_with_an_alert_and_nothing_dead_lettered() {
    let s = setup().await;
    s.env.meta.flag_audience(AUDIENCE);
    let t = chrono::Utc::now().timestamp();
    // Five people enter with a cart of 80 (under the high_value tier's 120)
    // ten seconds ago: each has one op for the flagged main audience and one
    // for the 0_1h tier audience, which is not flagged.
    let people: Vec<String> = (0..5).map(|n| format!("cust_9002{n}")).collect();
    for (n, id) in people.iter().enumerate() {
        post(
            &s,
            enter_cart(
                id,
                &format!("flagged{n}@example.com"),
                &format!("+1415555012{n}"),
                t - 10,
            ),
        )
        .await;
    }
    let depth = meta_queue_settles(&s.rt).await;
    assert_eq!(depth.dead, 0, "a flagged audience must not flood the DLQ");
    let alerts = s.rt.destinations["meta"].alerts();
    assert!(
        alerts.iter().any(
            |a| matches!(a, DestinationAlert::AudiencePaused { audience, .. } if audience == AUDIENCE)
        ),
        "{alerts:?}"
    );
    assert_eq!(s.env.meta.member_count(AUDIENCE), 0);
    // The other audience of the same people got exactly them.
    let tier: std::collections::BTreeSet<String> = s
        .env
        .meta
        .members("23850000000000111")
        .iter()
        .filter_map(|m| {
            m.iter()
                .find(|(k, _)| k == "EXTERN_ID")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(tier, people.iter().cloned().collect());
    // Every op for the flagged audience is counted as rejected, once; every
    // op for the tier audience accepted, once.
    let counters: BTreeMap<String, i64> =
        s.rt.deps
            .state
            .get_counters(&dataout::domain::model::CounterScope::delivery(
                "cart_abandoners",
                "meta",
            ))
            .await
            .unwrap();
    let per_audience = people.len() as i64;
    assert_eq!(
        (
            counters.get("rejected").copied().unwrap_or(0),
            counters.get("accepted").copied().unwrap_or(0)
        ),
        (per_audience, per_audience),
        "{counters:?}"
    );
    assert_eq!(counters.get("jobs_dead").copied().unwrap_or(0), 0);
    s.rt.shutdown().await;
}
