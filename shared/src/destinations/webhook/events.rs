//! Event ops on the signed webhook (events exports): each travels in the
//! `ops` array of the same signed body as membership ops, as an event
//! payload rather than a membership change:
//!
//! ```json
//! {"type":"event","op_id":"…","op":"event",
//!  "event_id":"01J…","event_name":"email.opened",
//!  "event_time":"2026-12-01T09:30:00.000Z","received_at":"2026-12-01T09:30:01.250Z",
//!  "source_ts":1764581400000,"audience":"engagement","person_key":"id:u1",
//!  "ids":{"id":"u1","cio_id":"…","email_sha256":"…","phone_sha256":"…"},
//!  "properties":{"campaign_id":42,"delivery_id":"…"},
//!  "value":null,"currency":null,"order_id":null,
//!  "object_type":"email","metric":"opened","attributes":{}}
//! ```
//!
//! * `ids` are exactly what membership ops carry: `id` and `cio_id` as
//!   given, email and phone only as SHA-256 of their normalised form.
//! * `event_id` is the source event's id and `op_id` is stable for the same
//!   op: a receiver drops redeliveries on either.
//! * `event_time` / `received_at` are RFC 3339 UTC (milliseconds);
//!   `source_ts` is the same instant as `event_time`, in Unix milliseconds.
//! * `properties` are the event's allow-listed properties, as they are.
//! * `object_type` / `metric` split a reporting-metric name (`email.opened`),
//!   null for other events; `value`, `currency`, `order_id` come from the
//!   event taxonomy (null when the event has none).
//!
//! An event op that cannot be described (no payload, no id or name, a time
//! out of range) is `Invalid` and never sent; the other ops still go.

use serde_json::{json, Map, Value};

pub use crate::destinations::warehouse::events::invalid_event;
use crate::destinations::warehouse::events::{reporting_metric, rfc3339_utc};
use crate::domain::model::{DeliveryOp, EventPayload};

/// The `"type"` of an event payload.
pub const EVENT_TYPE: &str = "event";

/// One event op as the receiver sees it. `ids` is the op's identifier map
/// (built as for membership ops), `op_id` its stable id.
pub fn event_json(
    op: &DeliveryOp,
    event: &EventPayload,
    ids: Map<String, Value>,
    op_id: String,
) -> Value {
    let (object_type, metric) = match reporting_metric(&event.name) {
        Some((o, m)) => (Some(o), Some(m)),
        None => (None, None),
    };
    json!({
        "type": EVENT_TYPE,
        "op_id": op_id,
        "op": "event",
        "event_id": event.event_id,
        "event_name": event.name,
        "event_time": rfc3339_utc(op.source_ts),
        "received_at": rfc3339_utc(op.intake_ts),
        "source_ts": op.source_ts,
        "audience": op.audience,
        "person_key": op.person_key.as_str(),
        "ids": ids,
        "properties": event.data,
        "value": event.value.filter(|v| v.is_finite()),
        "currency": event.currency,
        "order_id": event.order_id,
        "object_type": object_type,
        "metric": metric,
        "attributes": op.attributes,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::destinations::webhook::WebhookDestination;
    use crate::destinations::{Destination, OpOutcome};
    use crate::domain::identity::sha256_hex;
    use crate::domain::model::{Attributes, Identifiers, OpKind, PersonKey};
    use crate::domain::spec::{
        Cadence, DestinationKind, DestinationSettings, DestinationSpec, ExportDestination,
        ExportMode, ExportSource, ExportSpec, GuardRails, IdKind, IdentitySpec,
    };
    use crate::ports::MapSecrets;
    use dataout_sim::webhook::{self as sim, WebhookSimConfig};

    const TS: i64 = 1_764_581_400_000; // 2025-12-01T09:30:00Z

    fn export() -> ExportSpec {
        ExportSpec {
            name: "engagement".into(),
            source: ExportSource::Events {
                names: vec!["email.*".into(), "order_placed".into()],
            },
            mode: ExportMode::Events,
            cadence: Cadence::default(),
            identity: IdentitySpec {
                golden: IdKind::Id,
                fallbacks: vec![IdKind::Email],
                default_phone_region: Some("US".into()),
            },
            attributes: vec![],
            tiers: vec![],
            exit_on: vec![],
            suppress: vec![],
            destinations: vec![binding()],
            guard_rails: GuardRails::default(),
            test_profiles: vec![],
        }
    }

    fn binding() -> ExportDestination {
        ExportDestination {
            destination: "hook".into(),
            audience: "engagement".into(),
            tier_audiences: Default::default(),
            keys: vec![],
        }
    }

    fn event_op(id: &str, name: &str, person: Option<&str>) -> DeliveryOp {
        let mut data = Map::new();
        data.insert("campaign_id".into(), json!(42));
        data.insert("items".into(), json!([{"sku": "A1"}]));
        DeliveryOp {
            op: OpKind::Event,
            person_key: PersonKey(format!("id:{}", person.unwrap_or("-"))),
            ids: Identifiers {
                id: person.map(String::from),
                email: person.map(|p| format!(" {p}@Example.com")),
                cio_id: None,
                phone: person.map(|_| "(415) 555-0100".into()),
            },
            audience: "engagement".into(),
            tier: None,
            attributes: Attributes::new(),
            event: Some(EventPayload {
                event_id: id.into(),
                name: name.into(),
                data,
                value: (name == "order_placed").then_some(150.0),
                currency: (name == "order_placed").then(|| "USD".into()),
                order_id: (name == "order_placed").then(|| "ord_1".into()),
            }),
            source_ts: TS,
            intake_ts: TS + 1_250,
        }
    }

    fn dest(url: &str) -> anyhow::Result<WebhookDestination> {
        let spec = DestinationSpec {
            name: "hook".into(),
            kind: DestinationKind::Webhook,
            base_url: None,
            batch_size: 100,
            max_concurrency: 1,
            max_requests_per_second: None,
            max_attempts: 3,
            settings: DestinationSettings::Webhook {
                url: url.to_string(),
                secret_env: "HOOK_SECRET".into(),
                allow_private_network: true,
            },
        };
        let secrets = MapSecrets::default().with("HOOK_SECRET", "test-webhook-secret");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(WebhookDestination::new(
            "hook".into(),
            &spec,
            &secrets,
            http,
        )?)
    }

    #[test]
    fn reporting_metric_names_split_and_other_names_do_not() {
        let op = event_op("e1", "email.opened", Some("u1"));
        let event = op.event.clone().unwrap_or_default();
        let v = event_json(&op, &event, Map::new(), "op1".into());
        assert_eq!(v["type"], "event");
        assert_eq!(v["object_type"], "email");
        assert_eq!(v["metric"], "opened");
        assert_eq!(v["event_time"], "2025-12-01T09:30:00.000Z");
        assert_eq!(v["received_at"], "2025-12-01T09:30:01.250Z");
        assert_eq!(v["value"], Value::Null);

        let op = event_op("e2", "order_placed", Some("u1"));
        let event = op.event.clone().unwrap_or_default();
        let v = event_json(&op, &event, Map::new(), "op2".into());
        assert_eq!(v["object_type"], Value::Null);
        assert_eq!(v["metric"], Value::Null);
        assert_eq!(v["value"], json!(150.0));
        assert_eq!(v["currency"], "USD");
        assert_eq!(v["order_id"], "ord_1");
        assert_eq!(v["properties"]["items"], json!([{"sku": "A1"}]));
    }

    #[tokio::test]
    async fn events_are_sent_signed_with_hashed_contacts_and_per_event_outcomes(
    ) -> anyhow::Result<()> {
        let (running, state) = sim::start(WebhookSimConfig::default()).await?;
        let d = dest(&format!("{}/events", running.base_url))?;
        let mut no_payload = event_op("e3", "email.clicked", Some("u3"));
        no_payload.event = None;
        let ops = [
            event_op("e1", "email.opened", Some("u1")),
            event_op("e2", "order_placed", Some("u2")),
            no_payload,
            event_op("e4", "email.opened", None),
        ];
        let out = d.send(&export(), &binding(), &ops).await?;
        assert_eq!(out[0], OpOutcome::Accepted);
        assert_eq!(out[1], OpOutcome::Accepted);
        assert!(matches!(&out[2], OpOutcome::Invalid { reason } if reason.contains("payload")));
        assert!(matches!(out[3], OpOutcome::Unmatched { .. }));

        let events = state.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["event_id"], "e1");
        assert_eq!(events[0]["event_name"], "email.opened");
        assert_eq!(events[0]["ids"]["id"], "u1");
        assert_eq!(
            events[0]["ids"]["email_sha256"],
            sha256_hex("u1@example.com")
        );
        assert_eq!(events[0]["ids"]["phone_sha256"], sha256_hex("+14155550100"));
        assert_eq!(events[1]["event_id"], "e2");
        assert_eq!(events[1]["value"], json!(150.0));
        let raw = state.deliveries()[0].body.to_string();
        assert!(!raw.to_lowercase().contains("example.com"), "{raw}");
        assert!(!raw.contains("555-0100"));
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_of_only_invalid_events_sends_nothing() -> anyhow::Result<()> {
        let (running, state) = sim::start(WebhookSimConfig::default()).await?;
        let d = dest(&running.base_url)?;
        let mut op = event_op("e1", "order_placed", Some("u1"));
        op.source_ts = i64::MAX;
        let out = d.send(&export(), &binding(), &[op]).await?;
        assert!(
            matches!(&out[0], OpOutcome::Invalid { reason } if reason.contains("out of range"))
        );
        assert_eq!(state.counters().requests, 0);
        Ok(())
    }
}
