use std::collections::BTreeMap;
use std::time::Duration;

use hmac::Mac;

use super::signature::mac_for;
use super::*;
use crate::domain::model::Millis;
use crate::ports::Secret;
use proptest::prelude::*;
use serde_json::json;
use serde_json::Value;

const SECRET: &str = "whsec_test_signing_key";
const NOW_MS: Millis = 1_751_371_500_000;
const NOW_S: i64 = NOW_MS / 1000;

fn cfg() -> SignatureConfig {
    SignatureConfig::new(Secret::new(SECRET))
}

fn body_for(object_type: &str, metric: &str) -> Vec<u8> {
    let mut data = json!({
        "identifiers": {"id": "cust_00042", "email": "ada.lovelace+42@example.com", "cio_id": "d9c106000042"},
        "customer_id": "cust_00042",
    });
    if object_type != "customer" {
        data["delivery_id"] = json!("RPILAgUBcRhIBqSfeiIwdIYJKxTY");
        data["action_id"] = json!(42);
        data["campaign_id"] = json!(7);
        data["journey_id"] = json!("01GW20GXAAXBKZD8J96M8FNV3R");
    }
    serde_json::to_vec(&json!({
        "event_id": format!("01J{object_type}{metric}").to_uppercase(),
        "object_type": object_type,
        "metric": metric,
        "timestamp": NOW_S - 3,
        "data": data,
    }))
    .unwrap()
}

fn headers_for(body: &[u8], ts: i64) -> BTreeMap<String, String> {
    signed_headers(SECRET.as_bytes(), ts, body)
}

#[test]
fn every_table_pair_parses_when_signed() {
    let mut pairs = 0;
    for (object_type, metrics) in OBJECT_TYPE_METRICS {
        for metric in *metrics {
            let body = body_for(object_type, metric);
            let headers = headers_for(&body, NOW_S);
            verify_signature(&headers, &body, &cfg(), NOW_MS).unwrap();
            let ev = parse_reporting(&body).unwrap();
            assert_eq!(ev.object_type, *object_type);
            assert_eq!(ev.metric, *metric);
            assert!(ev.is_known());
            assert_eq!(ev.identifiers.id(), Some("cust_00042"));
            assert_eq!(ev.timestamp_s, NOW_S - 3);
            pairs += 1;
        }
    }
    assert_eq!(pairs, 3 + 13 + 11 + 10 + 12 + 8 + 6 + 6);
}

#[test]
fn subscription_metrics_are_known_with_any_channel() {
    // Customer.io's definition: a subscription change carries the channel
    // of the message that led to it, `customer` when none.
    for ot in [
        "customer", "email", "sms", "push", "in_app", "slack", "webhook", "whatsapp",
    ] {
        for metric in [
            "subscribed",
            "unsubscribed",
            "cio_subscription_preferences_changed",
        ] {
            assert!(is_known_metric(ot, metric), "{ot}.{metric}");
        }
    }
    assert!(!is_known_metric("carrier_pigeon", "unsubscribed"));
    assert!(!is_known_metric("sms", "spammed"));
    let body = br#"{"event_id":"01E4C4CT6YDC7Y5M7FE1GWWPQJ","object_type":"sms","metric":"unsubscribed","timestamp":1613063089,
        "data":{"customer_id":"42","email_address":"test@example.com","identifiers":{"id":"42","email":"test@example.com","cio_id":"d9c106000001"}}}"#;
    let ev = parse_reporting(body).unwrap();
    assert!(ev.is_known());
    assert!(ev.is_subscription_change());
    assert_eq!(ev.identifiers.id(), Some("42"));
}

#[test]
fn push_recipients_are_read_as_devices() {
    // The shape of Customer.io's push events: devices, never an address.
    let body = br#"{"event_id":"01E4C4CT6YDC7Y5M7FE1GWWPQJ","object_type":"push","metric":"delivered","timestamp":1613063089,
        "data":{"identifiers":{"id":"42"},"delivery_id":"RPILAgUBcRhIBqSfeiIwdIYJKxTY","action_id":96,"campaign_id":5,
        "recipients":[{"device_id":"fcm-token-1","device_platform":"android"},{"device_id":"apns-token-2"},{"device_platform":"ios"}]}}"#;
    let ev = parse_reporting(body).unwrap();
    assert_eq!(
        ev.push_devices(),
        vec![
            PushDevice {
                device_id: "fcm-token-1".into(),
                platform: Some("android".into())
            },
            PushDevice {
                device_id: "apns-token-2".into(),
                platform: None
            },
        ]
    );
    // No device token is ever taken for an email or phone.
    assert_eq!(ev.identifiers.email, None);
    assert_eq!(ev.identifiers.phone, None);
    assert_eq!(ev.data["recipients"].as_array().map(Vec::len), Some(3));
    // Not an array: no devices, and the event is still taken.
    let odd = br#"{"event_id":"E","object_type":"push","metric":"opened","timestamp":1,"data":{"identifiers":{"id":"42"},"recipients":"fcm-token-1"}}"#;
    assert!(parse_reporting(odd).unwrap().push_devices().is_empty());
}

#[test]
fn tampered_body_is_refused() {
    let body = body_for("email", "opened");
    let headers = headers_for(&body, NOW_S);
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'4').unwrap();
    tampered[pos] = b'5';
    assert_eq!(
        verify_signature(&headers, &tampered, &cfg(), NOW_MS),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn reserialised_body_with_same_json_is_refused() {
    let body = body_for("email", "clicked");
    let headers = headers_for(&body, NOW_S);
    let value: Value = serde_json::from_slice(&body).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&pretty).unwrap(), value);
    assert_eq!(
        verify_signature(&headers, &pretty, &cfg(), NOW_MS),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn stale_timestamp_is_refused_after_the_mac_checks_out() {
    let body = body_for("sms", "delivered");
    let ts = NOW_S - 301;
    let err = verify_signature(&headers_for(&body, ts), &body, &cfg(), NOW_MS).unwrap_err();
    assert_eq!(err, SignatureError::Stale { age_s: 301 });
    assert!(err.to_string().contains("301 s before now"));
    // At the edge of the window it still passes.
    verify_signature(&headers_for(&body, NOW_S - 300), &body, &cfg(), NOW_MS).unwrap();
}

#[test]
fn future_timestamp_beyond_tolerance_is_refused() {
    let body = body_for("push", "opened");
    let err =
        verify_signature(&headers_for(&body, NOW_S + 400), &body, &cfg(), NOW_MS).unwrap_err();
    assert_eq!(err, SignatureError::Stale { age_s: -400 });
    assert!(err.to_string().contains("after now"));
    verify_signature(&headers_for(&body, NOW_S + 60), &body, &cfg(), NOW_MS).unwrap();
}

#[test]
fn tolerance_is_configurable() {
    let body = body_for("push", "opened");
    let mut c = cfg();
    c.tolerance = Duration::from_secs(3600);
    verify_signature(&headers_for(&body, NOW_S - 3000), &body, &c, NOW_MS).unwrap();
}

#[test]
fn missing_or_bad_headers_are_named() {
    let body = body_for("email", "sent");
    let mut h = headers_for(&body, NOW_S);
    h.remove(SIGNATURE_HEADER);
    assert_eq!(
        verify_signature(&h, &body, &cfg(), NOW_MS),
        Err(SignatureError::MissingSignature)
    );
    let mut h = headers_for(&body, NOW_S);
    h.remove(TIMESTAMP_HEADER);
    assert_eq!(
        verify_signature(&h, &body, &cfg(), NOW_MS),
        Err(SignatureError::MissingTimestamp)
    );
    let mut h = headers_for(&body, NOW_S);
    h.insert(TIMESTAMP_HEADER.into(), "  ".into());
    assert_eq!(
        verify_signature(&h, &body, &cfg(), NOW_MS),
        Err(SignatureError::MissingTimestamp)
    );
    let mut h = headers_for(&body, NOW_S);
    h.insert(TIMESTAMP_HEADER.into(), "yesterday".into());
    assert_eq!(
        verify_signature(&h, &body, &cfg(), NOW_MS),
        Err(SignatureError::BadTimestamp)
    );
    let mut h = headers_for(&body, NOW_S);
    h.insert(SIGNATURE_HEADER.into(), "not-hex".into());
    assert_eq!(
        verify_signature(&h, &body, &cfg(), NOW_MS),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn uppercase_hex_signature_is_accepted() {
    let body = body_for("email", "delivered");
    let mut h = headers_for(&body, NOW_S);
    let upper = h[SIGNATURE_HEADER].to_uppercase();
    h.insert(SIGNATURE_HEADER.into(), upper);
    verify_signature(&h, &body, &cfg(), NOW_MS).unwrap();
}

#[test]
fn mixed_case_header_names_are_found() {
    let body = body_for("email", "delivered");
    let h: BTreeMap<String, String> = headers_for(&body, NOW_S)
        .into_iter()
        .map(|(k, v)| (k.replace("x-cio", "X-CIO"), v))
        .collect();
    verify_signature(&h, &body, &cfg(), NOW_MS).unwrap();
}

#[test]
fn wrong_or_blank_secret_is_a_mismatch() {
    let body = body_for("email", "delivered");
    let h = signed_headers(b"another-secret", NOW_S, &body);
    assert_eq!(
        verify_signature(&h, &body, &cfg(), NOW_MS),
        Err(SignatureError::Mismatch)
    );
    let blank = SignatureConfig::new(Secret::new(""));
    let h = signed_headers(b"", NOW_S, &body);
    assert_eq!(
        verify_signature(&h, &body, &blank, NOW_MS),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn sign_matches_the_documented_string_to_sign() {
    // HMAC-SHA256("secret", "v0:1:{}") computed independently of `sign`.
    let mut mac = mac_for(b"secret").unwrap();
    mac.update(b"v0:1:{}");
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(sign(b"secret", 1, b"{}"), expected);
    assert_eq!(expected.len(), 64);
    assert_eq!(expected, expected.to_lowercase());
}

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("events")
        .join("customerio")
}

#[test]
fn every_reporting_fixture_parses() {
    let dir = fixture_dir().join("reporting");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        let ev = parse_reporting(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(ev.is_known(), "{}: unknown pair", path.display());
        let h = headers_for(&body, NOW_S);
        verify_signature(&h, &body, &cfg(), NOW_MS).unwrap();
        seen.push(ev);
    }
    for ot in [
        "customer", "email", "sms", "push", "in_app", "whatsapp", "slack", "webhook",
    ] {
        assert!(
            seen.iter().any(|e| e.object_type == ot),
            "no fixture for {ot}"
        );
    }
    assert!(seen
        .iter()
        .any(|e| e.identifiers.id.is_none() && e.identifiers.cio_id.is_some()));
    assert!(seen
        .iter()
        .any(|e| e.origin() == MessageOrigin::Transactional));
    assert!(seen.iter().any(|e| e.origin() == MessageOrigin::Broadcast));
    assert!(seen.iter().any(|e| e.preferences_content().is_some()));
    assert!(seen
        .iter()
        .any(|e| e.metric == "bounced" && e.data.contains_key("failure_message")));
    // Push events name devices (`recipients`), never a `recipient` address.
    for push in seen.iter().filter(|e| e.object_type == "push") {
        assert!(!push.push_devices().is_empty(), "{}", push.event_id);
        assert!(!push.data.contains_key("recipient"), "{}", push.event_id);
    }
    assert!(seen
        .iter()
        .any(|e| e.is_subscription_change() && e.object_type != "customer"));
}

#[test]
fn every_reporting_line_of_the_demo_stream_parses() {
    let text = std::fs::read_to_string(fixture_dir().join("demo-stream.jsonl")).unwrap();
    let mut ids = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        if v["route"] == "reporting" {
            let body = serde_json::to_vec(&v["body"]).unwrap();
            let ev = parse_reporting(&body).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
            assert!(
                (0..=600).contains(&ev.timestamp_s),
                "line {}: not a small offset",
                n + 1
            );
            ids.push(ev.event_id);
        }
    }
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(
        unique.len() + 1,
        ids.len(),
        "exactly one duplicate delivery"
    );
}

#[test]
fn id_null_falls_back_to_cio_id_then_email() {
    let body = br#"{"event_id":"E1","object_type":"email","metric":"opened","timestamp":1751371200,
        "data":{"identifiers":{"id":null,"email":"grace.hopper+7@example.com","cio_id":"d9c10600a1b2"},"customer_id":""}}"#;
    let ev = parse_reporting(body).unwrap();
    assert_eq!(ev.identifiers.id, None);
    assert_eq!(
        ev.identifiers.person_key().unwrap().as_str(),
        "cio:d9c10600a1b2"
    );
    let body = br#"{"event_id":"E1","object_type":"email","metric":"opened","timestamp":1751371200,
        "data":{"identifiers":{"id":null,"email":"grace.hopper+7@example.com","cio_id":null}}}"#;
    let ev = parse_reporting(body).unwrap();
    assert!(ev
        .identifiers
        .person_key()
        .unwrap()
        .as_str()
        .starts_with("email:"));
}

#[test]
fn missing_identifiers_fall_back_to_customer_id_and_email_address() {
    let body = br#"{"event_id":"E2","object_type":"customer","metric":"unsubscribed","timestamp":1751371200,
        "data":{"customer_id":"cust_00012","email_address":"alan.turing+12@example.com"}}"#;
    let ev = parse_reporting(body).unwrap();
    assert_eq!(ev.identifiers.id(), Some("cust_00012"));
    assert_eq!(ev.identifiers.email(), Some("alan.turing+12@example.com"));
}

#[test]
fn recipient_fills_email_or_phone_only_where_it_is_one() {
    let sms = br#"{"event_id":"E3","object_type":"sms","metric":"delivered","timestamp":1751371200,
        "data":{"identifiers":{"id":"cust_00013"},"recipient":"+15551234567"}}"#;
    assert_eq!(
        parse_reporting(sms).unwrap().identifiers.phone(),
        Some("+15551234567")
    );
    let push =
        br#"{"event_id":"E4","object_type":"push","metric":"delivered","timestamp":1751371200,
        "data":{"identifiers":{"id":"cust_00013"},"recipient":"fcm-device-token"}}"#;
    let ev = parse_reporting(push).unwrap();
    assert_eq!(ev.identifiers.phone, None);
    assert_eq!(ev.identifiers.email, None);
}

#[test]
fn no_usable_identifier_is_refused_with_where() {
    let body = br#"{"event_id":"E5","object_type":"email","metric":"opened","timestamp":1751371200,
        "data":{"identifiers":{"id":null,"email":null,"cio_id":""}}}"#;
    let err = parse_reporting(body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no usable identifier in data.identifiers (id, cio_id, email all null or blank)"
    );
    let body =
        br#"{"event_id":"E5","object_type":"customer","metric":"subscribed","timestamp":1751371200,
        "data":{"customer_id":"","email_address":null}}"#;
    assert!(matches!(
        parse_reporting(body),
        Err(ParseError::NoIdentifier { .. })
    ));
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = parse_reporting(b"{\"event_id\": \"E6\",, }").unwrap_err();
    assert!(
        matches!(
            err,
            ParseError::MalformedJson {
                line: 1,
                column: 19,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("malformed JSON at line 1 column 19: "));
    assert!(!err.to_string().ends_with("column 19"));
}

#[test]
fn required_fields_are_named_when_missing() {
    let cases: &[(&[u8], &str)] = &[
        (br#"{"object_type":"email","metric":"sent","timestamp":1,"data":{}}"#, "missing `event_id`"),
        (br#"{"event_id":"","object_type":"email","metric":"sent","timestamp":1,"data":{}}"#, "`event_id` is blank"),
        (br#"{"event_id":"E","metric":"sent","timestamp":1,"data":{}}"#, "missing `object_type`"),
        (br#"{"event_id":"E","object_type":"email","timestamp":1,"data":{}}"#, "missing `metric`"),
        (br#"{"event_id":"E","object_type":"email","metric":"sent","data":{}}"#, "missing `timestamp`"),
        (br#"{"event_id":"E","object_type":"email","metric":"sent","timestamp":1}"#, "missing `data`"),
        (br#"{"event_id":"E","object_type":7,"metric":"sent","timestamp":1,"data":{}}"#, "`object_type` is a JSON number, expected string"),
        (br#"{"event_id":"E","object_type":"email","metric":"sent","timestamp":1,"data":[]}"#, "`data` is a JSON array, expected object"),
        (br#"{"event_id":"E","object_type":"email","metric":"sent","timestamp":1,"data":{"identifiers":{"id":{}}}}"#, "`data.identifiers.id` is a JSON object, expected string or null"),
        (br#"[{"event_id":"E"}]"#, "body is a JSON array, expected one event object (Customer.io sends one event per POST, not a list)"),
        (b"  \n", "empty body"),
    ];
    for (body, reason) in cases {
        assert_eq!(parse_reporting(body).unwrap_err().to_string(), *reason);
    }
}

#[test]
fn oversize_body_is_refused_before_parsing() {
    let body = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        parse_reporting(&body),
        Err(ParseError::TooLarge {
            len: MAX_BODY_BYTES + 1
        })
    );
    assert_eq!(
        parse_reporting(&body).unwrap_err().to_string(),
        format!("body over 256 KiB ({} bytes)", MAX_BODY_BYTES + 1)
    );
}

#[test]
fn timestamps_accept_float_and_numeric_string_but_not_negative_or_absurd() {
    let with_ts = |ts: &str| {
        format!(
            r#"{{"event_id":"E","object_type":"email","metric":"sent","timestamp":{ts},"data":{{"identifiers":{{"id":"1"}}}}}}"#
        )
    };
    assert_eq!(
        parse_reporting(with_ts("1751371200.9").as_bytes())
            .unwrap()
            .timestamp_s,
        1_751_371_200
    );
    assert_eq!(
        parse_reporting(with_ts("\"1751371200\"").as_bytes())
            .unwrap()
            .timestamp_s,
        1_751_371_200
    );
    assert_eq!(
        parse_reporting(with_ts("\" 1751371200.5 \"").as_bytes())
            .unwrap()
            .timestamp_s,
        1_751_371_200
    );
    let neg = parse_reporting(with_ts("-5").as_bytes()).unwrap_err();
    assert_eq!(neg.to_string(), "`timestamp` -5 is negative");
    let ms = parse_reporting(with_ts("1751371200000").as_bytes()).unwrap_err();
    assert!(
        ms.to_string().contains("milliseconds sent as seconds?"),
        "{ms}"
    );
    let big = parse_reporting(with_ts("18446744073709551615").as_bytes()).unwrap_err();
    assert!(matches!(big, ParseError::BadTimestamp { .. }));
    let s = parse_reporting(with_ts("\"soon\"").as_bytes()).unwrap_err();
    assert_eq!(s.to_string(), "`timestamp` is \"soon\", not Unix seconds");
    let b = parse_reporting(with_ts("true").as_bytes()).unwrap_err();
    assert_eq!(
        b.to_string(),
        "`timestamp` is a JSON boolean, expected Unix seconds"
    );
}

#[test]
fn unknown_metric_object_type_and_fields_are_kept() {
    let body = br#"{"event_id":"E7","object_type":"carrier_pigeon","metric":"landed","timestamp":1751371200,
        "workspace_id":3,"data":{"identifiers":{"id":"cust_00014"},"campaign_id":12,"action_id":96,"wing":"left"}}"#;
    let ev = parse_reporting(body).unwrap();
    assert!(!ev.is_known());
    assert_eq!(ev.object_type, "carrier_pigeon");
    assert_eq!(ev.extra.get("workspace_id"), Some(&json!(3)));
    assert_eq!(ev.data.get("wing"), Some(&json!("left")));
    assert!(ev.data.contains_key("identifiers"));
    assert_eq!(ev.campaign_id.as_deref(), Some("12"));
    assert_eq!(ev.action_id.as_deref(), Some("96"));
    assert_eq!(ev.origin(), MessageOrigin::Campaign);
}

#[test]
fn preferences_content_string_is_decoded() {
    let body = br#"{"event_id":"E8","object_type":"customer","metric":"cio_subscription_preferences_changed","timestamp":1751371200,
        "data":{"identifiers":{"id":"cust_00015"},"content":"{\"topics\":{\"topic_1\":false,\"topic_3\":true}}"}}"#;
    let ev = parse_reporting(body).unwrap();
    let content = ev.preferences_content().unwrap();
    assert_eq!(content["topics"]["topic_1"], json!(false));
}

#[test]
fn reporting_event_round_trips_through_serde() {
    let ev = parse_reporting(&body_for("email", "clicked")).unwrap();
    let back: ReportingEvent = serde_json::from_value(serde_json::to_value(&ev).unwrap()).unwrap();
    assert_eq!(back, ev);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9@.+_ ]{0,12}".prop_map(Value::String),
        Just(json!("")),
        Just(json!("1751371200")),
    ];
    let keys = prop_oneof![
        Just("event_id".to_string()),
        Just("object_type".to_string()),
        Just("metric".to_string()),
        Just("timestamp".to_string()),
        Just("data".to_string()),
        Just("identifiers".to_string()),
        Just("id".to_string()),
        Just("cio_id".to_string()),
        Just("email".to_string()),
        Just("customer_id".to_string()),
        Just("email_address".to_string()),
        Just("recipient".to_string()),
        Just("content".to_string()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn parse_reporting_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_reporting(&bytes);
    }

    #[test]
    fn parse_reporting_never_panics_on_json(v in arb_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        if let Ok(ev) = parse_reporting(&body) {
            prop_assert!(ev.identifiers.person_key().is_some());
            let _ = ev.preferences_content();
        }
    }

    #[test]
    fn verify_signature_never_panics(ts in ".{0,24}", sig in ".{0,80}", body in prop::collection::vec(any::<u8>(), 0..64)) {
        let h = BTreeMap::from([
            (TIMESTAMP_HEADER.to_string(), ts),
            (SIGNATURE_HEADER.to_string(), sig),
        ]);
        let _ = verify_signature(&h, &body, &cfg(), NOW_MS);
    }
}
