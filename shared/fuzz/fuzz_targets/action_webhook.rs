#![no_main]
//! Campaign webhook actions: any bytes and any header strings are answered
//! without a panic, our own token and HMAC always verify, and whatever
//! parses keeps the parser's promises (export for enter / exit, an event
//! name for event, a person key, no blank attribute values).
//!
//! Input: `#<token> <timestamp>\n<body>` puts raw strings in the token and
//! timestamp headers, checked under both auth modes; anything else is a
//! body, authenticated by us and then tampered with.

use std::collections::BTreeMap;
use std::time::Duration;

use dataout::customerio::actions::{
    action_headers, parse_action, sign_action, verify_action, ActionAuthConfig, ActionAuthError,
    ActionAuthMode, ActionKind, DEFAULT_TOKEN_HEADER, TIMESTAMP_HEADER,
};
use dataout::ports::Secret;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const SECRET: &str = "fuzz-action-secret";
const NOW_S: i64 = 1_751_371_200;
const NOW_MS: i64 = NOW_S * 1000;
const TOLERANCE_S: i64 = 300;

fn config(mode: ActionAuthMode) -> ActionAuthConfig {
    ActionAuthConfig {
        header_name: DEFAULT_TOKEN_HEADER.to_string(),
        secret: Secret::new(SECRET),
        mode,
        tolerance: Duration::from_secs(TOLERANCE_S as u64),
        basic: None,
    }
}

/// `#token ts\n` prefix: the raw header strings and the body after them.
fn split_headers(data: &[u8]) -> Option<(BTreeMap<String, String>, &[u8])> {
    let rest = data.strip_prefix(b"#")?;
    let nl = rest.iter().position(|b| *b == b'\n')?;
    let (head, body) = rest.split_at(nl);
    let head = String::from_utf8_lossy(head);
    let (token, ts) = head.split_once(' ').unwrap_or((&head, ""));
    let headers = BTreeMap::from([
        (DEFAULT_TOKEN_HEADER.to_string(), token.to_string()),
        (TIMESTAMP_HEADER.to_string(), ts.to_string()),
    ]);
    Some((headers, body.get(1..).unwrap_or_default()))
}

/// Whether any string value, in this object or the objects inside it, is
/// blank: Liquid's "absent" must have been dropped.
fn has_blank_string(map: &Map<String, Value>) -> bool {
    map.values().any(|v| match v {
        Value::String(s) => s.trim().is_empty(),
        Value::Object(m) => has_blank_string(m),
        _ => false,
    })
}

fn check_parse(body: &[u8]) {
    match parse_action(body) {
        Ok(a) => {
            assert!(!a.dedup_id.trim().is_empty(), "blank dedup id");
            match a.action {
                ActionKind::Enter | ActionKind::Exit => {
                    assert!(a.export.is_some(), "enter/exit without export")
                }
                ActionKind::Event => {
                    let ev = a.event.as_ref().expect("event action without event");
                    assert!(!ev.name.trim().is_empty(), "blank event name");
                    assert!(
                        !has_blank_string(&ev.data),
                        "blank value kept in event.data"
                    );
                }
            }
            assert!(
                a.person.person_key().is_some(),
                "action without a person key"
            );
            assert!(
                !has_blank_string(&a.attributes),
                "blank value kept in attributes"
            );
            if let Some(ms) = a.sent_at_ms {
                assert!(ms >= 0, "sent_at before 1970 accepted: {ms}");
            }
        }
        Err(e) => assert!(!e.to_string().is_empty(), "error without a reason"),
    }
}

fuzz_target!(|data: &[u8]| {
    let shared = config(ActionAuthMode::SharedSecret);
    let hmac = config(ActionAuthMode::Hmac);
    if let Some((headers, body)) = split_headers(data) {
        let _ = verify_action(&headers, body, &shared, NOW_MS);
        let _ = verify_action(&headers, body, &hmac, NOW_MS);
        check_parse(body);
        return;
    }
    check_parse(data);

    // Shared secret, plain and as a bearer token.
    let h = action_headers(&shared, NOW_S, data);
    assert_eq!(verify_action(&h, data, &shared, NOW_MS), Ok(()));
    let bearer = BTreeMap::from([(DEFAULT_TOKEN_HEADER.to_string(), format!("Bearer {SECRET}"))]);
    assert_eq!(verify_action(&bearer, data, &shared, NOW_MS), Ok(()));

    // HMAC at an age from the input's bytes: about half inside the window.
    let mix = data
        .iter()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(*b)));
    let age_s = i64::from(mix % 1200) - 600;
    let ts = NOW_S - age_s;
    let h = action_headers(&hmac, ts, data);
    let verdict = verify_action(&h, data, &hmac, NOW_MS);
    if age_s.abs() <= TOLERANCE_S {
        assert_eq!(verdict, Ok(()), "our own HMAC refused (age {age_s} s)");
    } else {
        assert_eq!(verdict, Err(ActionAuthError::Stale { age_s }));
    }
    // The same HMAC over one more byte, or the HMAC sent as a shared token.
    let mut longer = data.to_vec();
    longer.push(b' ');
    assert_eq!(
        verify_action(&h, &longer, &hmac, NOW_MS),
        Err(ActionAuthError::Mismatch)
    );
    let as_token = BTreeMap::from([(
        DEFAULT_TOKEN_HEADER.to_string(),
        sign_action(SECRET.as_bytes(), ts, data),
    )]);
    assert_eq!(
        verify_action(&as_token, data, &shared, NOW_MS),
        Err(ActionAuthError::Mismatch)
    );
});
