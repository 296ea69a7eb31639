use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::*;

const NOW: i64 = 1_760_000_000;
const KEY: &str = "sim-app-key";

#[test]
fn peak_counts_the_fullest_one_second_window() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    // Ten 100 ms apart: at most ten in any second.
    let even: Vec<Instant> = (0..20).map(|k| at(k * 100)).collect();
    assert_eq!(peak_within(&even, Duration::from_secs(1)), 10);
    // Plus a burst of five inside one second.
    let mut bursty = even.clone();
    bursty.extend((0..5).map(|k| at(1_500 + k)));
    assert_eq!(peak_within(&bursty, Duration::from_secs(1)), 15);
    assert_eq!(peak_within(&[], Duration::from_secs(1)), 0);
}

fn share(ws: &CioWorkspace, segment: u64) -> f64 {
    ws.members(segment).len() as f64 / ws.people.len() as f64
}

#[test]
fn demo_workspace_is_deterministic_for_a_seed() {
    assert_eq!(
        demo_workspace_at(7, 500, NOW),
        demo_workspace_at(7, 500, NOW)
    );
    assert_ne!(
        demo_workspace_at(7, 500, NOW),
        demo_workspace_at(8, 500, NOW)
    );
}

#[test]
fn demo_segments_have_realistic_shares_and_101_102_are_disjoint() {
    let ws = demo_workspace_at(42, 5_000, NOW);
    let carts = share(&ws, SEGMENT_CART_ABANDONERS);
    let recent = share(&ws, SEGMENT_RECENT_PURCHASERS);
    let lapsed = share(&ws, SEGMENT_LAPSED_VIPS);
    assert!((0.08..0.12).contains(&carts), "101 share {carts}");
    assert!((0.13..0.17).contains(&recent), "102 share {recent}");
    assert!((0.045..0.08).contains(&lapsed), "103 share {lapsed}");
    let s101 = &ws.segments[&SEGMENT_CART_ABANDONERS].members;
    let s102 = &ws.segments[&SEGMENT_RECENT_PURCHASERS].members;
    assert!(s101.is_disjoint(s102));
    for i in s101 {
        let a = &ws.people[*i].attributes;
        let cart: i64 = a["cart_started_at"].parse().unwrap();
        assert!(cart > NOW - DAY && cart <= NOW);
        let value: f64 = a["cart_value"].parse().unwrap();
        assert!((10.0..=400.0).contains(&value));
    }
    for i in &ws.segments[&SEGMENT_LAPSED_VIPS].members {
        let a = &ws.people[*i].attributes;
        assert!(matches!(a["vip_tier"].as_str(), "gold" | "silver"));
    }
}

#[test]
fn demo_people_mix_identifier_shapes() {
    let ws = demo_workspace_at(1, 3_000, NOW);
    let without_id = ws.people.iter().filter(|p| p.id.is_none()).count();
    assert!((30..200).contains(&without_id), "{without_id} without id");
    assert_eq!(
        ws.people[0].id.as_deref().unwrap_or("cust_00000"),
        "cust_00000"
    );
    let emails: Vec<&str> = ws
        .people
        .iter()
        .filter_map(|p| p.email.as_deref())
        .collect();
    assert!(emails.iter().any(|e| e.chars().any(char::is_uppercase)));
    assert!(emails.iter().any(|e| e.starts_with(' ')));
    assert!(emails
        .iter()
        .any(|e| e.ends_with("@gmail.com") && e.contains('.')));
    let unique: BTreeSet<String> = emails.iter().map(|e| e.trim().to_lowercase()).collect();
    assert_eq!(unique.len(), emails.len());
    let cio: BTreeSet<&str> = ws.people.iter().map(|p| p.cio_id.as_str()).collect();
    assert_eq!(cio.len(), ws.people.len());
}

#[test]
fn demo_phones_are_valid_numbers_for_their_country() {
    let ws = demo_workspace_at(3, 2_000, NOW);
    let mut formats = BTreeSet::new();
    for p in &ws.people {
        let Some(phone) = p.attributes.get("phone") else {
            continue;
        };
        let country: phonenumber::country::Id = p.attributes["country"].parse().unwrap();
        let parsed = phonenumber::parse(Some(country), phone)
            .unwrap_or_else(|e| panic!("{phone} ({country:?}): {e}"));
        assert!(
            phonenumber::is_valid(&parsed),
            "{phone} ({country:?}) invalid"
        );
        formats.insert(phone.starts_with('+'));
    }
    assert_eq!(formats.len(), 2, "both E.164 and national formats");
}

#[test]
fn recompute_follows_changed_attributes() {
    let mut ws = demo_workspace_at(5, 400, NOW);
    let i = *ws.segments[&SEGMENT_CART_ABANDONERS]
        .members
        .iter()
        .next()
        .unwrap();
    ws.people[i]
        .attributes
        .insert("last_order_at".into(), (NOW - 60).to_string());
    ws.recompute_demo_segments(NOW);
    assert!(!ws.segments[&SEGMENT_CART_ABANDONERS].members.contains(&i));
    assert!(ws.segments[&SEGMENT_RECENT_PURCHASERS].members.contains(&i));
}

async fn sim(config: CioSimConfig) -> (CioSim, reqwest::Client) {
    (start(config).await.unwrap(), reqwest::Client::new())
}

fn small(seed: u64) -> CioSimConfig {
    CioSimConfig::new(KEY, demo_workspace_at(seed, 600, NOW)).rate_limit(0)
}

#[tokio::test]
async fn membership_pages_cover_the_segment_and_end_with_an_empty_next() {
    let (sim, http) = sim(small(11)).await;
    let url = format!("{}/v1/segments/102/membership", sim.base_url());
    let mut seen = Vec::new();
    let mut start = String::new();
    loop {
        let body: Value = http
            .get(&url)
            .bearer_auth(KEY)
            .query(&[("start", start.as_str()), ("limit", "25")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids = body["ids"].as_array().unwrap();
        let identifiers = body["identifiers"].as_array().unwrap();
        assert_eq!(ids.len(), identifiers.len());
        assert!(ids.len() <= 25);
        for (id, ident) in ids.iter().zip(identifiers) {
            let cio = ident["cio_id"].as_str().unwrap().to_string();
            assert_eq!(id.as_str().unwrap(), ident["id"].as_str().unwrap_or(""));
            seen.push(cio);
        }
        start = body["next"].as_str().unwrap().to_string();
        if start.is_empty() {
            break;
        }
        assert!(B64.decode(&start).is_ok(), "token is base64");
    }
    let ws = sim.handle.snapshot();
    let expected: Vec<String> = ws
        .members(102)
        .into_iter()
        .map(|i| ws.people[i].cio_id.clone())
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn contract_violations_get_the_documented_errors() {
    let (sim, http) = sim(small(12)).await;
    let base = sim.base_url().to_string();
    let status = |r: reqwest::Response| r.status().as_u16();

    let r = http
        .get(format!("{base}/v1/segments"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 401);
    let r = http
        .get(format!("{base}/v1/segments"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 401);
    let r = http
        .get(format!("{base}/v1/segments/999/customer_count"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 404);
    let r = http
        .get(format!("{base}/v1/segments/101/membership?limit=30001"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 400);
    let r = http
        .get(format!(
            "{base}/v1/segments/101/membership?limit=30000&start=bm9wZQ=="
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 400, "foreign token refused");
    let ids: Vec<String> = (0..101).map(|i| format!("cust_{i:05}")).collect();
    let r = http
        .post(format!("{base}/v1/customers/attributes?id_type=id"))
        .bearer_auth(KEY)
        .json(&json!({ "ids": ids }))
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 400);
    let c = sim.handle.counters();
    assert_eq!(c.unauthorized, 2);
    assert!(c.bulk_batch_sizes.is_empty());
}

#[tokio::test]
async fn bulk_attributes_are_strings_and_leave_unknown_people_out() {
    let (sim, http) = sim(small(13)).await;
    let ws = sim.handle.snapshot();
    let body: Value = http
        .post(format!(
            "{}/v1/customers/attributes?id_type=cio_id",
            sim.base_url()
        ))
        .bearer_auth(KEY)
        .json(&json!({ "ids": [ws.people[3].cio_id, "nobody", ws.people[4].cio_id] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let customers = body["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 2);
    for c in customers {
        let attrs = c["customer"]["attributes"].as_object().unwrap();
        assert!(attrs.values().all(Value::is_string));
        assert!(attrs.contains_key("cio_id"));
    }
    let one: Value = http
        .get(format!(
            "{}/v1/customers/{}/attributes?id_type=cio_id",
            sim.base_url(),
            ws.people[3].cio_id
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        one["customer"]["attributes"]["cio_id"],
        ws.people[3].cio_id.as_str()
    );
    assert_eq!(sim.handle.counters().bulk_batch_sizes, vec![3]);
}

#[tokio::test]
async fn bursts_over_the_rate_get_429_and_injected_failures_come_first() {
    let config = small(14).rate_limit(5).fail_next(2, 503);
    let (sim, http) = sim(config).await;
    let url = format!("{}/v1/segments", sim.base_url());
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = http.get(&url).bearer_auth(KEY).send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..2], &[503, 503]);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3);
    let c = sim.handle.counters();
    assert_eq!(c.rate_limited, 5);
    assert_eq!(c.injected, 2);
    assert_eq!(c.requests_to(endpoint::LIST_SEGMENTS), 10);
}

#[tokio::test]
async fn trailing_empty_page_mode_ends_with_an_empty_page() {
    let (sim, http) = sim(small(15).trailing_empty_page(true)).await;
    let url = format!("{}/v1/segments/103/membership", sim.base_url());
    let first: Value = http
        .get(&url)
        .bearer_auth(KEY)
        .query(&[("limit", "30000")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = first["next"].as_str().unwrap();
    assert!(!next.is_empty());
    let last: Value = http
        .get(&url)
        .bearer_auth(KEY)
        .query(&[("limit", "30000"), ("start", next)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last["ids"].as_array().unwrap().len(), 0);
    assert_eq!(last["next"], "");
}

#[tokio::test]
async fn handle_moves_people_between_runs() {
    let (sim, _) = sim(small(16)).await;
    let h = &sim.handle;
    h.remove_member(101, 0);
    let before = h.snapshot().members(101).len();
    assert!(h.add_member(101, 0));
    assert!(!h.add_member(101, 0), "already a member");
    assert_eq!(h.snapshot().members(101).len(), before + 1);
    assert!(h.remove_member(101, 0));
    assert!(!h.add_member(101, 999_999), "no such person");
    assert!(h.set_attribute(0, "city", "Hobart"));
    assert_eq!(h.snapshot().people[0].attributes["city"], "Hobart");
}
