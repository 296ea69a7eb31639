//! Reporting webhooks as Customer.io sends them: one event object per POST,
//! shaped per object type and metric, signed with `X-CIO-Signature` over
//! `v0:<X-CIO-Timestamp>:<raw body>`. For tests and demos that play
//! Customer.io's side of the intake.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::SimPerson;

/// The message metrics of each object type Customer.io reports.
pub const MESSAGE_METRICS: &[(&str, &[&str])] = &[
    (
        "email",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "unsubscribed",
            "bounced",
            "dropped",
            "spammed",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "push",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "bounced",
            "dropped",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "sms",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "clicked",
            "converted",
            "bounced",
            "failed",
            "undeliverable",
            "replied",
        ],
    ),
    (
        "whatsapp",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "bounced",
            "dropped",
            "failed",
            "undeliverable",
            "replied",
        ],
    ),
    (
        "in_app",
        &[
            "drafted",
            "attempted",
            "sent",
            "opened",
            "clicked",
            "converted",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "slack",
        &[
            "drafted",
            "attempted",
            "sent",
            "clicked",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "webhook",
        &[
            "drafted",
            "attempted",
            "sent",
            "clicked",
            "failed",
            "undeliverable",
        ],
    ),
];

/// Subscription changes: reported with any object type (the channel that
/// led to the change, or `customer`).
pub const SUBSCRIPTION_METRICS: &[&str] = &[
    "subscribed",
    "unsubscribed",
    "cio_subscription_preferences_changed",
];

/// Every object type, `customer` first.
pub const OBJECT_TYPES: &[&str] = &[
    "customer", "email", "sms", "push", "in_app", "slack", "webhook", "whatsapp",
];

/// One reporting event for `person`: a subscription change when `metric` is
/// one, else a campaign message event of `object_type`.
pub fn reporting_event(
    object_type: &str,
    metric: &str,
    person: &SimPerson,
    event_id: &str,
    timestamp_s: i64,
) -> Value {
    let identifiers = json!({
        "id": person.id,
        "email": person.email.as_deref().map(str::trim),
        "cio_id": person.cio_id,
    });
    let customer_id = person.id.clone().unwrap_or_default();
    let mut data = Map::new();
    data.insert("identifiers".into(), identifiers);
    data.insert("customer_id".into(), json!(customer_id));
    if SUBSCRIPTION_METRICS.contains(&metric) {
        data.insert(
            "email_address".into(),
            json!(person.email.as_deref().map(str::trim)),
        );
        if metric == "cio_subscription_preferences_changed" {
            data.insert("content".into(), json!("{\"topics\":{\"topic_1\":true}}"));
        }
    } else {
        message_data(object_type, metric, person, &mut data);
    }
    json!({
        "event_id": event_id,
        "object_type": object_type,
        "metric": metric,
        "timestamp": timestamp_s,
        "data": data,
    })
}

/// A campaign origin plus what the metric carries.
fn message_data(
    object_type: &str,
    metric: &str,
    person: &SimPerson,
    data: &mut Map<String, Value>,
) {
    data.insert("campaign_id".into(), json!(31));
    data.insert("action_id".into(), json!(208));
    data.insert("journey_id".into(), json!("01J2JRNYSIM000000000000000"));
    data.insert("delivery_id".into(), json!("dgSIMAZA9mTOuUCvN="));
    let failure = matches!(
        metric,
        "attempted" | "bounced" | "dropped" | "failed" | "undeliverable"
    );
    if failure {
        data.insert("failure_message".into(), json!("mailbox unavailable"));
    }
    if metric == "clicked" {
        data.insert("href".into(), json!("https://shop.example.com/cart"));
        data.insert("link_id".into(), json!(2));
    }
    // Drafts, attempts and failures before sending name no recipient.
    let names_recipient = !matches!(metric, "drafted" | "attempted" | "failed" | "undeliverable");
    let in_app_open = object_type == "in_app" && metric == "opened";
    match object_type {
        "push" if names_recipient => {
            let mut device = json!({
                "device_id": format!("fcm-{}", person.cio_id),
                "device_platform": "android",
            });
            if matches!(metric, "bounced" | "dropped") {
                device["failure_message"] = json!("unregistered device");
                data.remove("failure_message");
            }
            data.insert("recipients".into(), json!([device]));
        }
        // Every email metric but `attempted` names the address and subject.
        "email" if metric != "attempted" => {
            data.insert(
                "recipient".into(),
                json!(person.email.as_deref().map(str::trim).unwrap_or_default()),
            );
            data.insert("subject".into(), json!("You left something in your cart"));
        }
        "sms" | "whatsapp" | "slack" | "webhook" | "in_app" => {
            if names_recipient && !in_app_open {
                let to = match object_type {
                    "sms" | "whatsapp" => person
                        .attributes
                        .get("phone")
                        .cloned()
                        .unwrap_or_else(|| "+15551230000".into()),
                    "slack" => "#cart-alerts".into(),
                    "webhook" => "https://hooks.example.com/cart".into(),
                    _ => person.cio_id.clone(),
                };
                data.insert("recipient".into(), json!(to));
            }
            if metric == "replied" {
                data.insert(
                    "inbound_event_id".into(),
                    json!("01J2INBOUNDSIM000000000000"),
                );
                data.insert("to".into(), json!("+15550000000"));
            }
        }
        _ => {}
    }
}

/// The `X-CIO-Timestamp` and `X-CIO-Signature` headers for `body`.
pub fn signed_headers(secret: &str, timestamp_s: i64, body: &[u8]) -> BTreeMap<String, String> {
    let signature = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .map(|mut mac| {
            mac.update(format!("v0:{timestamp_s}:").as_bytes());
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default();
    BTreeMap::from([
        ("x-cio-timestamp".to_string(), timestamp_s.to_string()),
        ("x-cio-signature".to_string(), signature),
    ])
}
