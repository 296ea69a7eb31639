use super::*;
use proptest::prelude::*;
use serde_json::json;

const NOW_MS: Millis = 1_751_371_500_000;
const NOW_S: i64 = NOW_MS / 1000;

fn shared() -> ActionAuthConfig {
    ActionAuthConfig::shared_secret(Secret::new("tok_live_4f9a"))
}

fn hmac_cfg() -> ActionAuthConfig {
    ActionAuthConfig::hmac(Secret::new("hmac-key-1"))
}

const ENTER: &[u8] = br#"{"action":"enter","export":"cart_abandoners","person":{"id":"cust_00021","email":"mary.shelley+21@example.com","cio_id":"","phone":""},"attributes":{"cart_value":"129.90","cart_currency":""},"sent_at":1751371200}"#;

fn basic_cfg() -> ActionAuthConfig {
    let creds = BasicCredentials::parse(&Secret::new("cio-hooks:s3cr3t:pass")).unwrap();
    shared().with_basic(creds)
}

fn authorization(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("authorization".to_string(), value.to_string())])
}

#[test]
fn basic_credentials_from_the_action_url_are_accepted_when_configured() {
    // `printf %s 'cio-hooks:s3cr3t:pass' | base64`: what a URL
    // `https://cio-hooks:s3cr3t:pass@host/...` sends.
    let h = authorization("Basic Y2lvLWhvb2tzOnMzY3IzdDpwYXNz");
    verify_action(&h, ENTER, &basic_cfg(), NOW_MS).unwrap();
    let h = authorization("basic   Y2lvLWhvb2tzOnMzY3IzdDpwYXNz ");
    verify_action(&h, ENTER, &basic_cfg(), NOW_MS).unwrap();
    // The configured token still works alongside.
    verify_action(
        &action_headers(&basic_cfg(), 0, ENTER),
        ENTER,
        &basic_cfg(),
        NOW_MS,
    )
    .unwrap();
    let creds = BasicCredentials::parse(&Secret::new("Aladdin:open sesame")).unwrap();
    assert_eq!(creds.header_value(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
}

#[test]
fn wrong_or_absent_basic_credentials_are_refused_without_echoing_them() {
    for value in [
        "Basic Y2lvLWhvb2tzOndyb25n", // cio-hooks:wrong
        "Basic not*base64",
    ] {
        let err = verify_action(&authorization(value), ENTER, &basic_cfg(), NOW_MS).unwrap_err();
        assert_eq!(err, ActionAuthError::BasicMismatch, "{value}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(!err.to_string().contains("wrong"), "{err}");
    }
    // A right token does not rescue wrong Basic credentials.
    let mut h = action_headers(&basic_cfg(), 0, ENTER);
    h.insert("authorization".into(), "Basic Y2lvLWhvb2tzOndyb25n".into());
    assert_eq!(
        verify_action(&h, ENTER, &basic_cfg(), NOW_MS),
        Err(ActionAuthError::BasicMismatch)
    );
    // A scheme without credentials counts as none sent.
    assert!(matches!(
        verify_action(&authorization("Basic "), ENTER, &basic_cfg(), NOW_MS),
        Err(ActionAuthError::Missing { .. })
    ));
    let err = verify_action(&BTreeMap::new(), ENTER, &basic_cfg(), NOW_MS).unwrap_err();
    assert!(
        matches!(&err, ActionAuthError::Missing { header } if header.contains("Basic")),
        "{err:?}"
    );
}

#[test]
fn basic_credentials_are_refused_when_none_are_configured() {
    let h = authorization("Basic Y2lvLWhvb2tzOnMzY3IzdDpwYXNz");
    let err = verify_action(&h, ENTER, &shared(), NOW_MS).unwrap_err();
    assert_eq!(err, ActionAuthError::BasicNotConfigured);
    assert!(err.to_string().contains("DATAOUT_ACTION_BASIC_AUTH"));
}

#[test]
fn basic_credentials_setting_needs_user_and_password() {
    for raw in ["", "nocolon", ":pass", "user:", "  "] {
        assert_eq!(
            BasicCredentials::parse(&Secret::new(raw)).unwrap_err(),
            BasicCredentialsError::Malformed,
            "{raw:?}"
        );
    }
    assert!(format!("{:?}", basic_cfg()).contains("***"));
    assert!(!format!("{:?}", basic_cfg()).contains("s3cr3t"));
}

#[test]
fn shared_secret_accepts_the_configured_token() {
    let h = action_headers(&shared(), 0, ENTER);
    verify_action(&h, ENTER, &shared(), NOW_MS).unwrap();
    let h = BTreeMap::from([("x-dataout-token".to_string(), " tok_live_4f9a ".to_string())]);
    verify_action(&h, ENTER, &shared(), NOW_MS).unwrap();
}

#[test]
fn shared_secret_refuses_a_wrong_or_missing_token() {
    let h = BTreeMap::from([("x-dataout-token".to_string(), "tok_live_4f9b".to_string())]);
    assert_eq!(
        verify_action(&h, ENTER, &shared(), NOW_MS),
        Err(ActionAuthError::Mismatch)
    );
    let h = BTreeMap::from([("x-dataout-token".to_string(), "tok_live_4f9a0".to_string())]);
    assert_eq!(
        verify_action(&h, ENTER, &shared(), NOW_MS),
        Err(ActionAuthError::Mismatch)
    );
    let err = verify_action(&BTreeMap::new(), ENTER, &shared(), NOW_MS).unwrap_err();
    assert_eq!(
        err,
        ActionAuthError::Missing {
            header: "x-dataout-token".into()
        }
    );
    assert_eq!(err.to_string(), "missing `x-dataout-token` header");
}

#[test]
fn bearer_authorization_header_can_carry_the_secret() {
    let mut cfg = shared();
    cfg.header_name = "Authorization".into();
    let h = BTreeMap::from([(
        "authorization".to_string(),
        "Bearer tok_live_4f9a".to_string(),
    )]);
    verify_action(&h, ENTER, &cfg, NOW_MS).unwrap();
}

#[test]
fn blank_secret_refuses_everything() {
    let cfg = ActionAuthConfig::shared_secret(Secret::new("  "));
    let h = BTreeMap::from([("x-dataout-token".to_string(), "  x".to_string())]);
    assert_eq!(
        verify_action(&h, ENTER, &cfg, NOW_MS),
        Err(ActionAuthError::Mismatch)
    );
}

#[test]
fn hmac_mode_accepts_a_signed_body_and_uppercase_hex() {
    let cfg = hmac_cfg();
    let mut h = action_headers(&cfg, NOW_S - 10, ENTER);
    verify_action(&h, ENTER, &cfg, NOW_MS).unwrap();
    let upper = h[DEFAULT_TOKEN_HEADER].to_uppercase();
    h.insert(DEFAULT_TOKEN_HEADER.into(), upper);
    verify_action(&h, ENTER, &cfg, NOW_MS).unwrap();
}

#[test]
fn hmac_mode_refuses_tampered_stale_and_untimed_requests() {
    let cfg = hmac_cfg();
    let h = action_headers(&cfg, NOW_S, ENTER);
    let tampered = String::from_utf8_lossy(ENTER).replace("129.90", "999.90");
    assert_eq!(
        verify_action(&h, tampered.as_bytes(), &cfg, NOW_MS),
        Err(ActionAuthError::Mismatch)
    );
    let h = action_headers(&cfg, NOW_S - 301, ENTER);
    assert_eq!(
        verify_action(&h, ENTER, &cfg, NOW_MS),
        Err(ActionAuthError::Stale { age_s: 301 })
    );
    let h = action_headers(&cfg, NOW_S + 301, ENTER);
    assert_eq!(
        verify_action(&h, ENTER, &cfg, NOW_MS),
        Err(ActionAuthError::Stale { age_s: -301 })
    );
    let mut h = action_headers(&cfg, NOW_S, ENTER);
    h.remove(TIMESTAMP_HEADER);
    assert_eq!(
        verify_action(&h, ENTER, &cfg, NOW_MS),
        Err(ActionAuthError::Missing {
            header: TIMESTAMP_HEADER.into()
        })
    );
    let mut h = action_headers(&cfg, NOW_S, ENTER);
    h.insert(TIMESTAMP_HEADER.into(), "12:00".into());
    assert_eq!(
        verify_action(&h, ENTER, &cfg, NOW_MS),
        Err(ActionAuthError::BadTimestamp)
    );
    // The shared secret itself is not a valid HMAC.
    let h = BTreeMap::from([
        (DEFAULT_TOKEN_HEADER.to_string(), "hmac-key-1".to_string()),
        (TIMESTAMP_HEADER.to_string(), NOW_S.to_string()),
    ]);
    assert_eq!(
        verify_action(&h, ENTER, &cfg, NOW_MS),
        Err(ActionAuthError::Mismatch)
    );
}

#[test]
fn hmac_signs_timestamp_colon_body() {
    let mut mac = mac_for(b"k").unwrap();
    mac.update(b"5:{}");
    assert_eq!(
        sign_action(b"k", 5, b"{}"),
        hex::encode(mac.finalize().into_bytes())
    );
}

#[test]
fn segment_enter_parses_with_empty_strings_as_absent() {
    let a = parse_action(ENTER).unwrap();
    assert_eq!(a.action, ActionKind::Enter);
    assert_eq!(a.export.as_deref(), Some("cart_abandoners"));
    assert_eq!(a.person.id.as_deref(), Some("cust_00021"));
    assert_eq!(a.person.cio_id, None);
    assert_eq!(a.person.phone, None);
    assert_eq!(a.attributes.get("cart_value"), Some(&json!("129.90")));
    assert!(!a.attributes.contains_key("cart_currency"));
    assert_eq!(a.sent_at_ms, Some(1_751_371_200_000));
    assert!(a.dedup_id.starts_with("body:"));
    assert_eq!(a.dedup_id.len(), 5 + 64);
}

#[test]
fn empty_export_or_id_or_sent_at_count_as_absent() {
    let body =
        br#"{"action":"exit","export":"","id":"","person":{"id":"cust_00022"},"sent_at":""}"#;
    assert_eq!(
        parse_action(body),
        Err(ActionParseError::MissingExport { action: "exit" })
    );
    let body = br#"{"action":"exit","export":"cart_abandoners","id":" ","person":{"id":"cust_00022"},"sent_at":""}"#;
    let a = parse_action(body).unwrap();
    assert!(a.dedup_id.starts_with("body:"));
    assert_eq!(a.sent_at_ms, None);
    let body = br#"{"action":"","person":{"id":"cust_00022"}}"#;
    assert_eq!(
        parse_action(body),
        Err(ActionParseError::MissingField {
            field: "action".into()
        })
    );
}

#[test]
fn person_needs_one_usable_identifier() {
    let body = br#"{"action":"enter","export":"x","person":{"id":"","email":"","cio_id":"","phone":"+15551230000"}}"#;
    assert_eq!(parse_action(body), Err(ActionParseError::NoIdentifier));
    let body = br#"{"action":"enter","export":"x"}"#;
    assert_eq!(parse_action(body), Err(ActionParseError::NoIdentifier));
    let body =
        br#"{"action":"enter","export":"x","person":{"email":"ada.lovelace+1@example.com"}}"#;
    assert_eq!(
        parse_action(body).unwrap().person.email(),
        Some("ada.lovelace+1@example.com")
    );
    let body = br#"{"action":"enter","export":"x","person":{"id":10042}}"#;
    assert_eq!(parse_action(body).unwrap().person.id(), Some("10042"));
    let body = br#"{"action":"enter","export":"x","person":"cust_1"}"#;
    assert!(matches!(
        parse_action(body),
        Err(ActionParseError::WrongType { .. })
    ));
}

#[test]
fn dedup_id_is_stable_for_the_same_bytes_and_prefers_the_caller_id() {
    let a = parse_action(ENTER).unwrap();
    let b = parse_action(ENTER).unwrap();
    assert_eq!(a.dedup_id, b.dedup_id);
    let spaced = String::from_utf8_lossy(ENTER).replace("\"enter\",", "\"enter\", ");
    assert_ne!(
        parse_action(spaced.as_bytes()).unwrap().dedup_id,
        a.dedup_id
    );
    let with_id = br#"{"action":"enter","export":"x","id":"enter:x:cust_1:1751371200","person":{"id":"cust_1"}}"#;
    assert_eq!(
        parse_action(with_id).unwrap().dedup_id,
        "enter:x:cust_1:1751371200"
    );
}

#[test]
fn event_action_needs_a_name_and_keeps_its_data() {
    let body = br#"{"action":"event","id":"order_placed:ord_5001","person":{"id":"cust_00030"},
            "event":{"name":"order_placed","id":"ord_5001","data":{"order_id":"ord_5001","total":"84.50","currency":"EUR","coupon":"","items":{"sku":"","qty":"2"}}},"sent_at":"1751371200"}"#;
    let a = parse_action(body).unwrap();
    let ev = a.event.unwrap();
    assert_eq!(ev.name, "order_placed");
    assert_eq!(ev.id.as_deref(), Some("ord_5001"));
    assert_eq!(ev.data.get("total"), Some(&json!("84.50")));
    assert!(!ev.data.contains_key("coupon"));
    assert_eq!(ev.data["items"], json!({"qty":"2"}));
    assert_eq!(a.export, None);
    assert_eq!(a.dedup_id, "order_placed:ord_5001");
    for body in [
        &br#"{"action":"event","person":{"id":"c"}}"#[..],
        br#"{"action":"event","person":{"id":"c"},"event":{"name":""}}"#,
        br#"{"action":"event","person":{"id":"c"},"event":""}"#,
    ] {
        assert_eq!(parse_action(body), Err(ActionParseError::MissingEventName));
    }
    let short = br#"{"action":"event","person":{"id":"c"},"event":"cart_started"}"#;
    assert_eq!(
        parse_action(short).unwrap().event.unwrap().name,
        "cart_started"
    );
    let stringly =
        br#"{"action":"event","person":{"id":"c"},"event":{"name":"n","data":"{\"a\":1}"}}"#;
    assert_eq!(
        parse_action(stringly).unwrap().event.unwrap().data["a"],
        json!(1)
    );
}

#[test]
fn unknown_action_and_bad_shapes_are_named() {
    let cases: &[(&[u8], &str)] = &[
        (
            br#"{"action":"leave","export":"x","person":{"id":"c"}}"#,
            "unknown `action` \"leave\" (expected enter, exit or event)",
        ),
        (
            br#"{"action":"enter","person":{"id":"c"}}"#,
            "`export` is required for action `enter`",
        ),
        (
            br#"{"action":"enter","export":"x","person":{"id":"c"},"attributes":[1]}"#,
            "`attributes` is a JSON array, expected object",
        ),
        (
            br#"{"action":"enter","export":"x","person":{"id":"c"},"sent_at":-3}"#,
            "`sent_at` -3 is negative",
        ),
        (
            br#"{"action":"enter","export":{},"person":{"id":"c"}}"#,
            "`export` is a JSON object, expected string",
        ),
        (br#"["enter"]"#, "body is a JSON array, expected an object"),
        (b"", "empty body"),
    ];
    for (body, reason) in cases {
        assert_eq!(parse_action(body).unwrap_err().to_string(), *reason);
    }
    let err = parse_action(br#"{"action":"enter","sent_at": }"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("malformed JSON at line 1 column "),
        "{err}"
    );
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        parse_action(&big),
        Err(ActionParseError::TooLarge {
            len: MAX_BODY_BYTES + 1
        })
    );
}

#[test]
fn sent_at_takes_seconds_millis_strings_and_rfc3339() {
    let with = |v: &str| {
        let body =
            format!(r#"{{"action":"exit","export":"x","person":{{"id":"c"}},"sent_at":{v}}}"#);
        parse_action(body.as_bytes()).map(|a| a.sent_at_ms)
    };
    assert_eq!(with("1751371200"), Ok(Some(1_751_371_200_000)));
    assert_eq!(with("\"1751371200\""), Ok(Some(1_751_371_200_000)));
    assert_eq!(with("1751371200123"), Ok(Some(1_751_371_200_123)));
    assert_eq!(
        with("\"2025-07-01T12:00:00Z\""),
        Ok(Some(1_751_371_200_000))
    );
    assert_eq!(with("null"), Ok(None));
    assert_eq!(with("120"), Ok(Some(120_000)));
    assert!(with("\"tomorrow\"").is_err());
    assert!(with("1e300").is_err());
}

#[test]
fn unknown_top_level_fields_are_ignored() {
    let body = br#"{"action":"enter","export":"x","person":{"id":"c"},"campaign":"Cart abandoners","v":2}"#;
    parse_action(body).unwrap();
}

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("events")
        .join("customerio")
}

#[test]
fn every_action_fixture_parses() {
    let expected = [
        ("cart_started.json", ActionKind::Event),
        ("checkout_started.json", ActionKind::Event),
        ("order_placed.json", ActionKind::Event),
        ("segment_enter_cart_abandoners.json", ActionKind::Enter),
        ("segment_exit_cart_abandoners.json", ActionKind::Exit),
    ];
    let dir = fixture_dir().join("actions");
    let count = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(count, expected.len());
    for (file, kind) in expected {
        let body = std::fs::read(dir.join(file)).unwrap();
        let a = parse_action(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(a.action, kind, "{file}");
        assert!(a.sent_at_ms.is_some(), "{file}");
        verify_action(
            &action_headers(&shared(), 0, &body),
            &body,
            &shared(),
            NOW_MS,
        )
        .unwrap();
    }
    let order = parse_action(&std::fs::read(dir.join("order_placed.json")).unwrap()).unwrap();
    let data = order.event.unwrap().data;
    for key in ["order_id", "total", "currency"] {
        assert!(data.contains_key(key), "order_placed lacks {key}");
    }
}

#[test]
fn every_action_line_of_the_demo_stream_parses() {
    let text = std::fs::read_to_string(fixture_dir().join("demo-stream.jsonl")).unwrap();
    let mut actions = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        assert!(
            v["route"] == "actions" || v["route"] == "reporting",
            "line {}",
            n + 1
        );
        if v["route"] == "actions" {
            let body = serde_json::to_vec(&v["body"]).unwrap();
            let a = parse_action(&body).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
            let at = a.sent_at_ms.unwrap_or(-1);
            assert!(
                (0..=600_000).contains(&at),
                "line {}: sent_at not a small offset",
                n + 1
            );
            actions.push(a);
        }
    }
    let has = |kind: ActionKind, export: &str| {
        actions
            .iter()
            .any(|a| a.action == kind && a.export.as_deref() == Some(export))
    };
    assert!(has(ActionKind::Enter, "cart_abandoners"));
    assert!(has(ActionKind::Exit, "cart_abandoners"));
    assert!(has(ActionKind::Enter, "lapsed_vips"));
    assert!(has(ActionKind::Enter, "recent_purchasers"));
    let orders = actions
        .iter()
        .filter(|a| a.event.as_ref().is_some_and(|e| e.name == "order_placed"))
        .count();
    // The README's demo: "the stream's 4 orders".
    assert_eq!(orders, 4);
    // The out-of-order pair: an exit older than the entry delivered before it.
    let out_of_order = actions.iter().enumerate().any(|(i, exit)| {
        exit.action == ActionKind::Exit
            && actions[..i].iter().any(|enter| {
                enter.action == ActionKind::Enter
                    && enter.export == exit.export
                    && enter.person.id == exit.person.id
                    && enter.sent_at_ms > exit.sent_at_ms
            })
    });
    assert!(out_of_order);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9@.:+_ -]{0,12}".prop_map(Value::String),
        Just(json!("")),
        prop_oneof![
            Just(json!("enter")),
            Just(json!("exit")),
            Just(json!("event"))
        ],
    ];
    let keys = prop_oneof![
        Just("action".to_string()),
        Just("export".to_string()),
        Just("id".to_string()),
        Just("person".to_string()),
        Just("email".to_string()),
        Just("cio_id".to_string()),
        Just("attributes".to_string()),
        Just("event".to_string()),
        Just("name".to_string()),
        Just("data".to_string()),
        Just("sent_at".to_string()),
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
    fn parse_action_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_action(&bytes);
    }

    #[test]
    fn parse_action_never_panics_on_json(v in arb_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        if let Ok(a) = parse_action(&body) {
            prop_assert!(a.person.person_key().is_some());
            prop_assert!(!a.dedup_id.is_empty());
            match a.action {
                ActionKind::Event => prop_assert!(a.event.is_some()),
                _ => prop_assert!(a.export.is_some()),
            }
        }
    }

    #[test]
    fn verify_action_never_panics(token in ".{0,80}", ts in ".{0,24}") {
        let h = BTreeMap::from([
            (DEFAULT_TOKEN_HEADER.to_string(), token),
            (TIMESTAMP_HEADER.to_string(), ts),
        ]);
        let _ = verify_action(&h, b"{}", &shared(), NOW_MS);
        let _ = verify_action(&h, b"{}", &hmac_cfg(), NOW_MS);
    }
}
