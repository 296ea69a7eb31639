#![no_main]
//! Reporting webhooks: any bytes and any header strings are answered
//! without a panic, a body we sign ourselves always verifies inside the
//! replay window, and whatever parses keeps the parser's promises.
//!
//! Input: `#<timestamp> <signature>\n<body>` puts raw strings in the two
//! headers; anything else is a body, signed with a timestamp derived from
//! its bytes (inside or outside the window) and checked, then tampered with.

use std::collections::BTreeMap;
use std::time::Duration;

use dataout::customerio::webhook::{
    parse_reporting, sign, verify_signature, ReportingEvent, SignatureConfig, SignatureError,
    SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use dataout::ports::Secret;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-reporting-secret";
const NOW_S: i64 = 1_751_371_200;
const NOW_MS: i64 = NOW_S * 1000;
const TOLERANCE_S: i64 = 300;

fn headers(ts: &str, sig: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TIMESTAMP_HEADER.to_string(), ts.to_string()),
        (SIGNATURE_HEADER.to_string(), sig.to_string()),
    ])
}

/// `#ts sig\n` prefix: the raw header strings and the body after them.
fn split_headers(data: &[u8]) -> Option<(String, String, &[u8])> {
    let rest = data.strip_prefix(b"#")?;
    let nl = rest.iter().position(|b| *b == b'\n')?;
    let (head, body) = rest.split_at(nl);
    let head = String::from_utf8_lossy(head);
    let (ts, sig) = head.split_once(' ').unwrap_or((&head, ""));
    Some((
        ts.to_string(),
        sig.to_string(),
        body.get(1..).unwrap_or_default(),
    ))
}

fn check_parse(body: &[u8]) {
    match parse_reporting(body) {
        Ok(ev) => {
            assert!(!ev.event_id.trim().is_empty(), "blank event_id accepted");
            assert!(
                !ev.object_type.trim().is_empty(),
                "blank object_type accepted"
            );
            assert!(!ev.metric.trim().is_empty(), "blank metric accepted");
            assert!(ev.timestamp_s >= 0, "negative timestamp accepted");
            assert!(
                ev.identifiers.person_key().is_some(),
                "event without a person key accepted"
            );
            let _ = (
                ev.origin(),
                ev.is_known(),
                ev.is_machine(),
                ev.timestamp_ms(),
            );
            let _ = ev.preferences_content();
            let value = serde_json::to_value(&ev).expect("a parsed event serialises");
            let back: ReportingEvent =
                serde_json::from_value(value).expect("a serialised event deserialises");
            assert_eq!(back, ev, "serde round trip changed the event");
        }
        Err(e) => assert!(!e.to_string().is_empty(), "error without a reason"),
    }
}

fuzz_target!(|data: &[u8]| {
    let cfg = SignatureConfig {
        secret: Secret::new(SECRET),
        tolerance: Duration::from_secs(TOLERANCE_S as u64),
    };
    if let Some((ts, sig, body)) = split_headers(data) {
        let _ = verify_signature(&headers(&ts, &sig), body, &cfg, NOW_MS);
        check_parse(body);
        return;
    }
    check_parse(data);

    // Age in seconds from the input's bytes: about half inside the window.
    let mix = data
        .iter()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(*b)));
    let age_s = i64::from(mix % 1200) - 600;
    let ts = NOW_S - age_s;
    let good = sign(SECRET.as_bytes(), ts, data);
    let verdict = verify_signature(&headers(&ts.to_string(), &good), data, &cfg, NOW_MS);
    if age_s.abs() <= TOLERANCE_S {
        assert_eq!(verdict, Ok(()), "our own signature refused (age {age_s} s)");
    } else {
        assert_eq!(verdict, Err(SignatureError::Stale { age_s }));
    }
    let upper = verify_signature(
        &headers(&ts.to_string(), &good.to_uppercase()),
        data,
        &cfg,
        NOW_MS,
    );
    assert_eq!(
        upper.is_ok(),
        verdict.is_ok(),
        "uppercase hex judged differently"
    );

    // One flipped hex digit, or one more body byte: never authentic.
    let mut flipped = good.clone().into_bytes();
    if let Some(first) = flipped.first_mut() {
        *first = if *first == b'0' { b'1' } else { b'0' };
    }
    let flipped = String::from_utf8(flipped).expect("hex is ASCII");
    assert_eq!(
        verify_signature(&headers(&ts.to_string(), &flipped), data, &cfg, NOW_MS),
        Err(SignatureError::Mismatch)
    );
    let mut longer = data.to_vec();
    longer.push(b' ');
    assert_eq!(
        verify_signature(&headers(&ts.to_string(), &good), &longer, &cfg, NOW_MS),
        Err(SignatureError::Mismatch)
    );
});
