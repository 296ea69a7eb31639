//! Event records of the CleverTap upload simulator: per-record refusals as
//! CleverTap answers them, and the events kept per identity for tests.
//!
//! An event record (`"type":"event"`) is refused, with HTTP 200 and the
//! record in `unprocessed`, when:
//! * `evtName` is missing, not a string or blank: **509**;
//! * `evtName` is a restricted system event (`App Launched`, `Notification
//!   Viewed`, …, compared case-insensitively): **513**;
//! * `evtData` is not an object, or holds a nested object or an array (but
//!   a `Charged` event's `Items`: an array of at most 50 objects of scalar
//!   values, CleverTap's documented shape), a key over 120 bytes, a string
//!   value over 512 bytes, or a `$D_` value that is not epoch seconds:
//!   **512** (event structure invalid);
//! * `evtData` has more properties than the account's limit
//!   ([`super::ClevertapSimConfig::max_event_properties`], default 256): **522**;
//! * `ts` is not integer Unix seconds (checked for every record): **525**.

use serde_json::{Map, Value};

use super::{check_date, check_sizes, ClevertapState, RecordError, StoredEvent, ValidBody};

/// Event names CleverTap reserves for its own system events (its SDK
/// validator's restricted list).
pub const RESTRICTED_EVENT_NAMES: &[&str] = &[
    "Stayed",
    "Notification Clicked",
    "Notification Viewed",
    "UTM Visited",
    "Notification Sent",
    "App Launched",
    "wzrk_d",
    "App Uninstalled",
    "Notification Bounced",
    "Geocluster Entered",
    "Geocluster Exited",
    "SCOutgoing",
    "SCIncoming",
    "SCEnd",
    "SCCampaignOptOut",
];

/// The body of an event record, or its per-record refusal.
pub(super) fn validate_event(
    obj: &Map<String, Value>,
    max_properties: usize,
) -> Result<ValidBody, RecordError> {
    let name = match obj.get("evtName").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => n.to_string(),
        _ => return Err((509, "event name missing".into())),
    };
    if RESTRICTED_EVENT_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name.trim()))
    {
        return Err((513, format!("{name} is a restricted system event")));
    }
    let data = match obj.get("evtData") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err((512, "evtData must be an object".into())),
    };
    if data.len() > max_properties {
        return Err((
            522,
            format!(
                "too many event properties: {} (max {max_properties})",
                data.len()
            ),
        ));
    }
    for (k, v) in &data {
        if name == "Charged" && k == "Items" && v.is_array() {
            check_items(v)?;
            continue;
        }
        check_sizes(k, v)?;
        if v.is_object() || v.is_array() {
            return Err((512, format!("event property {k} is nested")));
        }
        check_date(k, v)?;
    }
    Ok(ValidBody::Event { name, data })
}

/// Items of a purchase (CleverTap's SDKs cap them at 50).
const MAX_CHARGED_ITEMS: usize = 50;

/// `Charged` `Items`: at most 50 objects whose values are scalars.
fn check_items(items: &Value) -> Result<(), RecordError> {
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.len() > MAX_CHARGED_ITEMS {
        return Err((
            512,
            format!(
                "Items has {} entries (max {MAX_CHARGED_ITEMS})",
                items.len()
            ),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let Some(fields) = item.as_object() else {
            return Err((512, format!("Items[{i}] is not an object")));
        };
        for (k, v) in fields {
            check_sizes(k, v)?;
            if v.is_object() || v.is_array() {
                return Err((512, format!("Items[{i}].{k} is nested")));
            }
            check_date(k, v)?;
        }
    }
    Ok(())
}

impl ClevertapState {
    /// Accepted events of the person whose `identity` is given, in order.
    pub fn events_of(&self, identity: &str) -> Vec<StoredEvent> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.key_kind == "identity" && e.key == identity)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{start, ClevertapSimConfig};

    async fn upload(base: &str, records: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let resp = reqwest::Client::new()
            .post(format!("{base}/1/upload"))
            .header("X-CleverTap-Account-Id", "TEST-ACC-1")
            .header("X-CleverTap-Passcode", "TEST-PASSCODE")
            .header("Content-Type", "application/json; charset=utf-8")
            .body(serde_json::to_vec(&json!({ "d": records }))?)
            .send()
            .await?;
        anyhow::ensure!(resp.status().as_u16() == 200, "HTTP {}", resp.status());
        Ok(resp.json().await?)
    }

    fn event(identity: &str, name: &str, data: serde_json::Value) -> serde_json::Value {
        json!({"type": "event", "identity": identity, "ts": 1_700_000_000,
               "evtName": name, "evtData": data})
    }

    fn codes(body: &serde_json::Value) -> Vec<u64> {
        body["unprocessed"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u["code"].as_u64()).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn each_bad_event_is_refused_with_its_code_and_the_rest_stored() -> anyhow::Result<()> {
        let (sim, state) = start(ClevertapSimConfig::default()).await?;
        let many: serde_json::Map<String, serde_json::Value> =
            (0..257).map(|i| (format!("p{i}"), json!(i))).collect();
        let body = upload(
            &sim.base_url,
            json!([
                event("u1", "Charged", json!({"Amount": 10, "at": "$D_1700000000"})),
                event("u2", " ", json!({})),
                event("u3", "App Launched", json!({})),
                event("u4", "x", json!({"items": [1, 2]})),
                event("u5", "x", json!({"ship": {"city": "Lyon"}})),
                event("u6", "x", serde_json::Value::Object(many)),
                {"type": "event", "identity": "u7", "ts": "yesterday", "evtName": "x"},
                event("u8", "x", json!({"at": "$D_soon"})),
                event("u1", "Viewed", json!({"sku": "a"})),
            ]),
        )
        .await?;
        assert_eq!(codes(&body), vec![509, 513, 512, 512, 522, 525, 512]);
        assert_eq!(body["processed"], 2);
        let u1 = state.events_of("u1");
        assert_eq!(u1.len(), 2);
        assert_eq!(u1[0].name, "Charged");
        assert_eq!(u1[0].data["at"], "$D_1700000000");
        assert_eq!(u1[0].ts, Some(1_700_000_000));
        assert_eq!(u1[1].name, "Viewed");
        assert!(state.events_of("u6").is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn charged_items_are_an_array_of_flat_objects_and_other_arrays_are_refused(
    ) -> anyhow::Result<()> {
        let (sim, state) = start(ClevertapSimConfig {
            response_delay: None,
            ..ClevertapSimConfig::default()
        })
        .await?;
        // CleverTap's upload example for Charged.
        let items = json!([
            {"Category": "books", "Book name": "The millionaire next door", "Quantity": 1},
            {"Category": "books", "Book name": "Achieving inner zen", "Quantity": 4}
        ]);
        let many: Vec<serde_json::Value> = (0..51).map(|i| json!({"sku": i})).collect();
        let body = upload(
            &sim.base_url,
            json!([
                event("u1", "Charged", json!({"Amount": 300, "Items": items})),
                event("u2", "Charged", json!({"Items": many})),
                event("u3", "Charged", json!({"Items": [{"sku": {"id": 1}}]})),
                event("u4", "Charged", json!({"Items": ["a"]})),
                event("u5", "Viewed", json!({"Items": [{"sku": 1}]})),
            ]),
        )
        .await?;
        assert_eq!(codes(&body), vec![512, 512, 512, 512], "{body}");
        let u1 = state.events_of("u1");
        assert_eq!(u1.len(), 1);
        assert_eq!(u1[0].data["Items"], items);
        Ok(())
    }

    #[tokio::test]
    async fn the_default_limit_is_256_properties_per_event() -> anyhow::Result<()> {
        let (sim, state) = start(ClevertapSimConfig::default()).await?;
        let props = |n: usize| -> serde_json::Value {
            serde_json::Value::Object((0..n).map(|i| (format!("p{i}"), json!(i))).collect())
        };
        let body = upload(
            &sim.base_url,
            json!([event("u1", "x", props(256)), event("u2", "x", props(257))]),
        )
        .await?;
        assert_eq!(codes(&body), vec![522], "{body}");
        assert_eq!(state.events_of("u1").len(), 1);
        assert!(state.events_of("u2").is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn an_account_with_a_lower_limit_refuses_smaller_events() -> anyhow::Result<()> {
        let (sim, state) = start(ClevertapSimConfig {
            max_event_properties: 100,
            ..ClevertapSimConfig::default()
        })
        .await?;
        let many: serde_json::Map<String, serde_json::Value> =
            (0..101).map(|i| (format!("p{i}"), json!(i))).collect();
        let body = upload(
            &sim.base_url,
            json!([event("u1", "x", serde_json::Value::Object(many))]),
        )
        .await?;
        assert_eq!(codes(&body), vec![522], "{body}");
        assert!(state.events_of("u1").is_empty());
        Ok(())
    }
}
