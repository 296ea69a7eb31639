use std::collections::BTreeSet;

use dataout_sim::customerio::{self as sim, endpoint, CioSim, CioSimConfig, CioWorkspace};

use super::*;
use crate::ports::MapSecrets;

const KEY: &str = "test-app-key";
const NOW: i64 = 1_760_000_000;

fn workspace(people: usize) -> CioWorkspace {
    sim::demo_workspace_at(21, people, NOW)
}

fn config(base: &str, rate: u32) -> AppApiConfig {
    AppApiConfig {
        base_url: Some(base.to_string()),
        requests_per_second: rate,
        max_retries: 4,
        page_limit: MAX_PAGE_LIMIT,
        retry_min_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(40),
        ..AppApiConfig::default()
    }
}

fn client_with(config: AppApiConfig, key: &str) -> AppApiClient {
    let secrets = MapSecrets::default().with("CIO_APP_API_KEY", key);
    AppApiClient::new(config, &secrets, reqwest::Client::new()).unwrap()
}

async fn start(config: CioSimConfig) -> (CioSim, AppApiClient) {
    let sim = sim::start(config).await.unwrap();
    let client = client_with(config_for(&sim), KEY);
    (sim, client)
}

fn config_for(sim: &CioSim) -> AppApiConfig {
    config(sim.base_url(), 1_000)
}

fn fast(ws: CioWorkspace) -> CioSimConfig {
    CioSimConfig::new(KEY, ws).rate_limit(0)
}

async fn all_members(client: &AppApiClient, segment: u64, limit: u32) -> (Vec<Identifiers>, u32) {
    let mut people = Vec::new();
    let mut start: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = client
            .membership_page(segment, start.as_deref(), limit)
            .await
            .unwrap();
        pages += 1;
        people.extend(page.people);
        match page.next {
            Some(next) => start = Some(next),
            None => return (people, pages),
        }
    }
}

fn expected_keys(ws: &CioWorkspace, segment: u64) -> Vec<String> {
    ws.members(segment)
        .into_iter()
        .map(|i| {
            let p = &ws.people[i];
            match &p.id {
                Some(id) => format!("id:{id}"),
                None => format!("cio:{}", p.cio_id),
            }
        })
        .collect()
}

#[tokio::test]
async fn paging_collects_every_member_exactly_once_across_pages() {
    for trailing in [false, true] {
        let (sim, client) = start(fast(workspace(1_200)).trailing_empty_page(trailing)).await;
        let (people, pages) = all_members(&client, 102, 25).await;
        let keys: Vec<String> = people
            .iter()
            .map(|p| p.person_key().unwrap().as_str().to_string())
            .collect();
        let unique: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "nobody twice");
        assert_eq!(keys, expected_keys(&sim.handle.snapshot(), 102));
        assert!(pages > 5);
        assert_eq!(client.requests(), u64::from(pages));
        assert_eq!(sim.handle.counters().page_limits.iter().max(), Some(&25));
    }
}

#[tokio::test]
async fn members_without_id_come_through_with_cio_id_and_email() {
    let (sim, client) = start(fast(workspace(600))).await;
    let ws = sim.handle.snapshot();
    let no_id: Vec<usize> = (0..ws.people.len())
        .filter(|i| ws.people[*i].id.is_none())
        .collect();
    assert!(!no_id.is_empty());
    for i in &no_id {
        sim.handle.add_member(101, *i);
    }
    let (people, _) = all_members(&client, 101, 1_000).await;
    let anonymous: Vec<&Identifiers> = people.iter().filter(|p| p.id().is_none()).collect();
    assert_eq!(anonymous.len(), no_id.len());
    assert!(anonymous
        .iter()
        .all(|p| p.cio_id().is_some() && p.email().is_some()));
    assert!(
        people.iter().all(|p| p.id.as_deref() != Some("")),
        "blank ids dropped"
    );

    let owned: Vec<Identifiers> = anonymous.into_iter().cloned().collect();
    let found = client.attributes(&owned).await.unwrap();
    assert_eq!(found.len(), owned.len());
    for (person, asked) in found.iter().zip(&owned) {
        assert_eq!(person.ids.cio_id, asked.cio_id);
        assert!(person.ids.email().is_some());
        assert_eq!(
            person.attributes["cio_id"],
            Value::String(asked.cio_id.clone().unwrap())
        );
    }
    let c = sim.handle.counters();
    assert_eq!(
        c.requests_to(endpoint::BULK_ATTRIBUTES),
        1,
        "looked up by cio_id in one call"
    );
}

#[tokio::test]
async fn rate_limited_and_unavailable_answers_are_retried_and_the_run_completes() {
    let config = fast(workspace(800))
        .fail_next(2, 429)
        .fail_next(1, 503)
        .fail_next(1, 500);
    let (sim, client) = start(config).await;
    let count = client.segment_count(101).await.unwrap();
    let (people, _) = all_members(&client, 101, 20).await;
    assert_eq!(people.len() as u64, count);
    let c = sim.handle.counters();
    assert_eq!(c.status_429, 2);
    assert_eq!(c.injected, 4);
    assert_eq!(client.requests(), c.total_requests());
}

#[tokio::test]
async fn retries_stop_after_max_retries_as_retryable() {
    let (sim, _) = start(fast(workspace(50)).fail_next(10, 503)).await;
    let client = client_with(
        AppApiConfig {
            max_retries: 2,
            ..config_for(&sim)
        },
        KEY,
    );
    let err = client.segment_count(101).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(sim.handle.counters().total_requests(), 3);
}

#[tokio::test]
async fn wrong_key_is_permanent_and_not_retried() {
    let (sim, _) = start(fast(workspace(50))).await;
    let client = client_with(config_for(&sim), "not-the-key");
    let err = client.segment_count(101).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(sim.handle.counters().unauthorized, 1);
}

#[tokio::test]
async fn unknown_segment_is_permanent() {
    let (_sim, client) = start(fast(workspace(50))).await;
    let err = client.membership_page(999, None, 10).await.unwrap_err();
    assert!(matches!(err, SourceError::Permanent { ref message } if message.contains("404")));
}

#[test]
fn missing_key_fails_at_construction() {
    let err = AppApiClient::new(
        AppApiConfig::default(),
        &MapSecrets::default(),
        reqwest::Client::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("CIO_APP_API_KEY"));
}

#[tokio::test]
async fn bulk_attributes_are_chunked_to_100_and_values_are_strings() {
    let (sim, client) = start(fast(workspace(400))).await;
    let ws = sim.handle.snapshot();
    let mut asked: Vec<Identifiers> = Vec::new();
    for p in ws.people.iter().take(280) {
        asked.push(match &p.id {
            // Some by id, a few by cio_id, a few by email only.
            Some(id) if asked.len() % 40 != 7 => Identifiers {
                id: Some(id.clone()),
                ..Default::default()
            },
            _ if asked.len() % 80 == 7 => Identifiers {
                email: p.email.as_ref().map(|e| e.trim().to_uppercase()),
                ..Default::default()
            },
            _ => Identifiers {
                cio_id: Some(p.cio_id.clone()),
                ..Default::default()
            },
        });
    }
    asked.push(Identifiers {
        id: Some("cust_unknown".into()),
        ..Default::default()
    });
    asked.push(Identifiers::default());

    let found = client.attributes(&asked).await.unwrap();
    assert_eq!(
        found.len(),
        280,
        "unknown and unidentifiable people left out"
    );
    let c = sim.handle.counters();
    assert!(
        c.bulk_batch_sizes.iter().all(|n| *n <= 100),
        "{:?}",
        c.bulk_batch_sizes
    );
    assert_eq!(c.bulk_batch_sizes.iter().sum::<usize>(), 281);
    assert_eq!(
        c.requests_to(endpoint::BULK_ATTRIBUTES),
        5,
        "3 by id, 1 by cio_id, 1 by email"
    );
    for (person, source) in found.iter().zip(&ws.people) {
        assert!(person.attributes.values().all(Value::is_string));
        assert_eq!(person.ids.cio_id.as_deref(), Some(source.cio_id.as_str()));
        assert_eq!(person.ids.id, source.id);
        assert_eq!(person.ids.phone.as_ref(), source.attributes.get("phone"));
        assert_eq!(
            person.attributes.get("first_name"),
            Some(&Value::String(source.attributes["first_name"].clone()))
        );
    }
}

#[tokio::test]
async fn single_person_lookup_finds_known_and_misses_unknown() {
    let (sim, client) = start(fast(workspace(30))).await;
    let ws = sim.handle.snapshot();
    let p = ws.people.iter().find(|p| p.id.is_some()).unwrap();
    let ids = Identifiers {
        id: p.id.clone(),
        ..Default::default()
    };
    let person = client.person(&ids).await.unwrap().unwrap();
    assert_eq!(person.ids.cio_id.as_deref(), Some(p.cio_id.as_str()));
    let nobody = Identifiers {
        email: Some("nobody+x@example.com".into()),
        ..Default::default()
    };
    assert!(client.person(&nobody).await.unwrap().is_none());
    assert_eq!(client.segments().await.unwrap().len(), 7);
}

#[tokio::test]
async fn page_limit_is_capped_at_the_documented_maximum() {
    let (sim, client) = start(fast(workspace(100))).await;
    client.membership_page(102, None, 50_000).await.unwrap();
    assert_eq!(sim.handle.counters().page_limits, vec![MAX_PAGE_LIMIT]);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let config = fast(workspace(50)).retry_after(1).fail_next(1, 429);
    let (_sim, client) = start(config).await;
    let began = std::time::Instant::now();
    client.segment_count(102).await.unwrap();
    assert!(began.elapsed() >= Duration::from_millis(950));
}

#[tokio::test]
async fn client_never_exceeds_the_sim_rate_limit_in_a_burst() {
    const RATE: u32 = 50;
    let sim_config = CioSimConfig::new(KEY, workspace(50))
        .rate_limit(RATE)
        .burst(2);
    let sim = sim::start(sim_config).await.unwrap();
    let client = client_with(
        AppApiConfig {
            max_retries: 0,
            ..config(sim.base_url(), RATE)
        },
        KEY,
    );
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let client = client.clone();
        calls.spawn(async move { client.segment_count(101).await });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap().unwrap();
    }
    let c = sim.handle.counters();
    assert_eq!(c.status_429, 0);
    assert_eq!(client.requests(), 50);

    // The same burst unpaced is refused: the sim would have caught a
    // client that went too fast.
    let http = reqwest::Client::new();
    let url = format!("{}/v1/segments/101/customer_count", sim.base_url());
    let mut raw = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let req = http.get(&url).bearer_auth(KEY);
        raw.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    }
    while raw.join_next().await.is_some() {}
    assert!(sim.handle.counters().rate_limited > 10);
}

#[test]
fn region_picks_the_documented_host() {
    assert_eq!(Region::Us.base_url(), "https://api.customer.io");
    assert_eq!(Region::Eu.base_url(), "https://api-eu.customer.io");
    let client = client_with(
        AppApiConfig {
            region: Region::Eu,
            ..AppApiConfig::default()
        },
        KEY,
    );
    assert_eq!(
        client
            .url(&["v1", "customers", "a b+c@x.com", "attributes"])
            .as_str(),
        "https://api-eu.customer.io/v1/customers/a%20b+c@x.com/attributes"
    );
}

#[test]
fn retry_after_reads_seconds_only() {
    let v = |s: &str| HeaderValue::from_str(s).unwrap();
    assert_eq!(
        parse_retry_after(Some(&v("3"))),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        parse_retry_after(Some(&v("Wed, 21 Oct 2015 07:28:00 GMT"))),
        None
    );
    assert_eq!(parse_retry_after(None), None);
}

#[test]
fn membership_falls_back_to_ids_and_ignores_unknown_keys() {
    let body: WireMembership =
        serde_json::from_str(r#"{"ids":["a",""],"next":null,"total":2,"identifiers":null}"#)
            .unwrap();
    assert_eq!(body.ids, vec![Some("a".to_string()), None]);
    assert!(body.identifiers.is_empty());
    assert!(body.next.is_none());
}

#[test]
fn bulk_answer_accepts_wrapped_and_bare_customers() {
    let body: Vec<BulkEntry> = serde_json::from_str(
        r#"[{"customer":{"id":7,"attributes":{"n":3,"b":true,"x":null},"devices":[]}},
            {"id":"u2","attributes":{"email":"A@X.com"},"extra":{}}]"#,
    )
    .unwrap();
    let people: Vec<Person> = body
        .into_iter()
        .map(|e| to_person(&Identifiers::default(), e.into_customer()))
        .collect();
    assert_eq!(people[0].ids.id.as_deref(), Some("7"));
    assert_eq!(people[0].attributes["n"], Value::String("3".into()));
    assert_eq!(people[0].attributes["b"], Value::String("true".into()));
    assert!(!people[0].attributes.contains_key("x"));
    assert_eq!(people[1].ids.email.as_deref(), Some("A@X.com"));
}
