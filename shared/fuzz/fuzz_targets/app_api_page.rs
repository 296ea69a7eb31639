#![no_main]
//! Customer.io App API response bodies: any bytes given to the membership
//! page, single-person attributes and bulk attributes parsers are answered
//! without a panic, and whatever parses keeps the parsers' promises.
//!
//! Input: a response body, given to every parser (JSON parsing is cheap, and
//! one body may reach all three shapes).
//!
//! - membership: every member kept has a person key; `next` is absent or not
//!   blank; asking again with `next` as the start token is refused (the token
//!   did not advance), and any other start token gives the same page.
//! - attributes: the person keeps the identifiers we asked with, and every
//!   attribute value is a string.
//! - bulk: at most one answer per person asked for, in the order asked,
//!   each keeping that person's identifiers, every value a string.

use dataout::customerio::app_api::{
    parse_bulk_attributes, parse_customer_attributes, parse_membership_page, AppApiError,
};
use dataout::domain::model::{Identifiers, Person};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SEGMENT: u64 = 42;

fn ids(id: Option<&str>, email: Option<&str>, cio_id: Option<&str>) -> Identifiers {
    Identifiers {
        id: id.map(str::to_string),
        email: email.map(str::to_string),
        cio_id: cio_id.map(str::to_string),
        phone: None,
    }
}

/// Who we asked for: one person by `id`, one by `cio_id` only, one by email
/// only (mixed case, as people type it), and one with nothing usable.
fn asked() -> [Identifiers; 4] {
    [
        ids(Some("cust_1"), Some("a@example.com"), None),
        ids(None, None, Some("d9c106000001")),
        ids(None, Some(" B@Example.com "), None),
        ids(Some(" "), Some(""), None),
    ]
}

/// The bulk requests the client would send: by id, by cio_id, by email.
fn bulk_requests() -> [Vec<Identifiers>; 3] {
    [
        vec![
            ids(Some("cust_1"), None, None),
            ids(Some("cust_2"), Some("c@example.com"), None),
            ids(Some("1001"), None, None),
            // Asked twice: at most one answer.
            ids(Some("cust_1"), None, None),
        ],
        vec![
            ids(None, None, Some("d9c106000001")),
            ids(None, Some("x@example.com"), Some("d9c106000002")),
        ],
        vec![
            ids(None, Some("A@Example.com"), None),
            ids(None, Some("b@example.com"), None),
        ],
    ]
}

fn check_error(e: &AppApiError) {
    assert!(!e.to_string().is_empty(), "error without a reason");
    assert!(!e.is_retryable(), "a body judged retryable: {e}");
}

/// `got` kept every non-blank identifier of `asked`, and only strings.
fn check_person(asked: &Identifiers, got: &Person) {
    for (name, mine, theirs) in [
        ("id", asked.id(), got.ids.id()),
        ("email", asked.email(), got.ids.email()),
        ("cio_id", asked.cio_id(), got.ids.cio_id()),
        ("phone", asked.phone(), got.ids.phone()),
    ] {
        if mine.is_some() {
            assert_eq!(theirs, mine, "the answer replaced the {name} we asked with");
        }
    }
    if asked.person_key().is_some() {
        assert!(got.ids.person_key().is_some(), "person key lost");
    }
    for (k, v) in &got.attributes {
        assert!(
            matches!(v, Value::String(_)),
            "attribute {k:?} is not a string: {v}"
        );
    }
}

/// Whether `got` carries every non-blank identifier of `asked`.
fn keeps(asked: &Identifiers, got: &Person) -> bool {
    [
        (asked.id(), got.ids.id()),
        (asked.email(), got.ids.email()),
        (asked.cio_id(), got.ids.cio_id()),
    ]
    .iter()
    .all(|(mine, theirs)| mine.is_none() || mine == theirs)
}

fn check_membership(body: &[u8]) {
    let page = match parse_membership_page(SEGMENT, body, None) {
        Ok(page) => page,
        Err(e) => {
            check_error(&e);
            return;
        }
    };
    for p in &page.people {
        assert!(p.person_key().is_some(), "member without a person key kept");
    }
    let Some(next) = page.next.as_deref() else {
        return;
    };
    assert!(!next.trim().is_empty(), "blank next token kept");
    match parse_membership_page(SEGMENT, body, Some(next)) {
        Err(AppApiError::Refused { status: 200, .. }) => {}
        other => panic!("a page repeating its start token was not refused: {other:?}"),
    }
    let other = format!("{next}-other");
    let again = parse_membership_page(SEGMENT, body, Some(&other))
        .expect("the page parsed without a start token");
    assert_eq!(again, page, "another start token changed the page");
}

fn check_attributes(body: &[u8]) {
    for asked in asked() {
        match parse_customer_attributes(&asked, body) {
            Ok(person) => check_person(&asked, &person),
            Err(e) => {
                check_error(&e);
                return;
            }
        }
    }
}

fn check_bulk(body: &[u8]) {
    for people in bulk_requests() {
        match parse_bulk_attributes(&people, body) {
            Ok(found) => {
                assert!(
                    found.len() <= people.len(),
                    "more answers than people asked"
                );
                // In the order asked, each matched to a distinct person.
                let mut from = 0;
                for got in &found {
                    let at = people[from..]
                        .iter()
                        .position(|asked| keeps(asked, got))
                        .unwrap_or_else(|| panic!("an answer for nobody asked: {:?}", got.ids));
                    check_person(&people[from + at], got);
                    from += at + 1;
                }
            }
            Err(e) => {
                check_error(&e);
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check_membership(data);
    check_attributes(data);
    check_bulk(data);
});
