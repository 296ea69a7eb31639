//! Normalisation and hashing vectors for the rules of API-CONTRACTS §3a
//! (Meta) and §4b (Google). Every expected digest is written out literally,
//! computed outside this code base (SHA-256 / MD5 of the normalised text),
//! so a rule that drifts fails here rather than in a match rate.

use serde_json::{json, Value};

use super::*;
use crate::domain::model::{Attributes, Identifiers};
use crate::domain::spec::MatchKey;

fn person(id: Option<&str>, email: Option<&str>, phone: Option<&str>) -> Identifiers {
    Identifiers {
        id: id.map(String::from),
        email: email.map(String::from),
        cio_id: None,
        phone: phone.map(String::from),
    }
}

fn attrs(pairs: &[(&str, Value)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn us() -> IdentityOptions {
    IdentityOptions {
        default_phone_region: Some("US".into()),
        ..IdentityOptions::default()
    }
}

/// One Meta cell for `key` from attributes alone.
fn meta_attr_cell(key: MatchKey, column: &str, a: &Attributes) -> String {
    let keys = [MatchKey::ExternId, key];
    let row =
        meta_row(&keys, &person(Some("p"), None, None), a, &us()).unwrap_or_else(|e| panic!("{e}"));
    let schema = meta_schema(&keys);
    let at = schema
        .iter()
        .position(|c| *c == column)
        .unwrap_or_else(|| panic!("{column} not in schema"));
    row[at].clone()
}

fn meta_cell_for(ids: &Identifiers, column: &str) -> String {
    let keys = [MatchKey::Email, MatchKey::Phone, MatchKey::ExternId];
    let row = meta_row(&keys, ids, &Attributes::new(), &us()).unwrap_or_else(|e| panic!("{e}"));
    let at = meta_schema(&keys)
        .iter()
        .position(|c| *c == column)
        .unwrap_or_else(|| panic!("{column} not in schema"));
    row[at].clone()
}

#[test]
fn meta_names_lose_inner_whitespace_and_punctuation() {
    assert_eq!(normalize_name("  Mary Ann ").as_deref(), Some("maryann"));
    assert_eq!(
        normalize_name("Van der Berg").as_deref(),
        Some("vanderberg")
    );
    assert_eq!(normalize_name("Zoë  Anne").as_deref(), Some("zoëanne"));
    assert_eq!(
        meta_attr_cell(
            MatchKey::FirstName,
            "FN",
            &attrs(&[("first_name", json!("Mary Ann"))])
        ),
        "16b3f07f0ec2f9dd127b71dc2e6c791b7d93116a1c3bc99d057eaa7a8a077e73"
    );
    assert_eq!(
        meta_attr_cell(
            MatchKey::LastName,
            "LN",
            &attrs(&[("last_name", json!("Van der Berg"))])
        ),
        "aad607ca3121d5d843c2cd64e8c73c2a24fa3a4cb890ed8d40a1efa8af7a14d5"
    );
}

#[test]
fn meta_cities_lose_digits_spaces_and_punctuation() {
    assert_eq!(normalize_city("Seattle-98121").as_deref(), Some("seattle"));
    assert_eq!(normalize_city("75001 Paris").as_deref(), Some("paris"));
    assert_eq!(normalize_city("12345"), None);
    assert_eq!(
        meta_attr_cell(
            MatchKey::City,
            "CT",
            &attrs(&[("city", json!("Seattle-98121"))])
        ),
        "3151a8f227c0e11fd9a7fd1aa24ebfee734503dea095c22c3b2fae09d62eeb25"
    );
    assert_eq!(
        meta_attr_cell(
            MatchKey::City,
            "CT",
            &attrs(&[("city", json!(" St. Louis "))])
        ),
        "8ba24bdf99947996f3000259be455de791b06fcc0e802ce05031030df1ee8ea3"
    );
}

#[test]
fn meta_states_lose_digits_before_the_us_name_lookup() {
    assert_eq!(
        normalize_state("New York 10001", Some("US")).as_deref(),
        Some("ny")
    );
    assert_eq!(
        normalize_state("Île-de-France 75", Some("FR")).as_deref(),
        Some("îledefrance")
    );
    assert_eq!(
        meta_attr_cell(
            MatchKey::State,
            "ST",
            &attrs(&[("state", json!("New York 10001")), ("country", json!("US"))])
        ),
        "1b06e2003f8420d6fa42badd8f77ec0f706b976b7a48b13c567dc5a559681683"
    );
    assert_eq!(
        meta_attr_cell(
            MatchKey::State,
            "ST",
            &attrs(&[
                ("state", json!("Île-de-France 75")),
                ("country", json!("FR"))
            ])
        ),
        "7f2f97f2a36f4cae0d099b382c08f83ec00532733befa7a2831942ab70360a48"
    );
}

#[test]
fn meta_passes_md5_digests_through_lowercased() {
    let email = "55502F40DC8B7C769880B10874ABC9D0";
    assert_eq!(
        meta_cell_for(&person(None, Some(email), None), "EMAIL"),
        "55502f40dc8b7c769880b10874abc9d0"
    );
    // Detected before a phone loses its non-digits.
    assert_eq!(
        meta_cell_for(
            &person(None, None, Some("079dd4b96b2e0ccd7861be2db0279d7c")),
            "PHONE"
        ),
        "079dd4b96b2e0ccd7861be2db0279d7c"
    );
    // Google takes SHA-256 only: an MD5 is not passed on as a hash.
    let keys = [MatchKey::Email];
    assert!(google_identifiers(
        &keys,
        &person(None, Some(email), None),
        &Attributes::new(),
        &us()
    )
    .is_err());
}

#[test]
fn meta_sends_no_hash_for_an_invalid_email() {
    for bad in [
        "john..doe@example.com",
        "john@example",
        "john@example..com",
        "john doe@example.com",
    ] {
        assert_eq!(
            meta_cell_for(&person(Some("p"), Some(bad), None), "EMAIL"),
            "",
            "{bad:?}"
        );
    }
    assert_eq!(
        meta_cell_for(&person(None, Some(" John.Doe@Example.com "), None), "EMAIL"),
        "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"
    );
}

#[test]
fn phone_with_a_trunk_zero_after_the_country_code_loses_it() {
    for raw in [
        "+44 07911 123456",
        "+44 (0)7911 123456",
        "0044 07911 123456",
    ] {
        assert_eq!(
            normalize_phone_e164(raw, None).as_deref(),
            Ok("+447911123456"),
            "{raw:?}"
        );
        assert_eq!(
            meta_cell_for(&person(None, None, Some(raw)), "PHONE"),
            "40b5c38342a9c584ec707e8679b003f8c779c6aaa138c976ef94e049cc05208f",
            "{raw:?}"
        );
    }
    // Italy keeps the leading zero of its fixed lines: it is not a trunk prefix.
    assert_eq!(
        normalize_phone_e164("+39 06 1234 5678", None).as_deref(),
        Ok("+390612345678")
    );
}

#[test]
fn google_gmail_plus_suffix_is_stripped_only_when_asked() {
    let mut opts = IdentityOptions {
        gmail_remove_dots: true,
        ..IdentityOptions::default()
    };
    let raw = " Jane.Doe+Shopping@Gmail.com ";
    assert_eq!(
        normalize_email_google(raw, &opts).as_deref(),
        Ok("janedoe+shopping@gmail.com")
    );
    let keys = [MatchKey::Email];
    let ids = person(None, Some(raw), None);
    assert_eq!(
        google_identifiers(&keys, &ids, &Attributes::new(), &opts),
        Ok(vec![GoogleIdentifier::HashedEmail(
            "4454dcceb759b0e316d6a42fa6c65bf81b56a0517764041c812c06085ec22d80".into()
        )])
    );
    opts.gmail_strip_plus_suffix = true;
    assert_eq!(
        google_identifiers(&keys, &ids, &Attributes::new(), &opts),
        Ok(vec![GoogleIdentifier::HashedEmail(
            "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69".into()
        )])
    );
    assert_eq!(
        normalize_email_google("jane.doe+s@googlemail.com", &opts).as_deref(),
        Ok("janedoe@googlemail.com")
    );
    // Other domains keep their dots and +tags.
    assert_eq!(
        google_identifiers(
            &keys,
            &person(None, Some("Jane.Doe+Shopping@example.com"), None),
            &Attributes::new(),
            &opts
        ),
        Ok(vec![GoogleIdentifier::HashedEmail(
            "5bc4d748c6c47c76e7ba275506e146afc322ae64c4920c9d241273fdfa731576".into()
        )])
    );
    // Inner whitespace goes, as Google's formatting asks.
    assert_eq!(
        normalize_email_google("jane doe @gmail.com", &opts).as_deref(),
        Ok("janedoe@gmail.com")
    );
}

#[test]
fn google_postal_codes_are_trimmed_only() {
    assert_eq!(
        normalize_postal_code_google(" 1229-076 ").as_deref(),
        Some("1229-076")
    );
    assert_eq!(
        normalize_postal_code_google("94107-1234").as_deref(),
        Some("94107-1234")
    );
    assert_eq!(
        normalize_postal_code_google("SW1A 1AA").as_deref(),
        Some("SW1A 1AA")
    );
    assert_eq!(normalize_postal_code_google("   "), None);
    let keys = [
        MatchKey::FirstName,
        MatchKey::LastName,
        MatchKey::Country,
        MatchKey::Zip,
    ];
    let a = attrs(&[
        ("first_name", json!("João")),
        ("last_name", json!("Silva")),
        ("country", json!("Portugal")),
        ("zip", json!(" 1229-076 ")),
    ]);
    let got = google_identifiers(&keys, &person(None, None, None), &a, &us())
        .unwrap_or_else(|e| panic!("{e}"));
    match &got[..] {
        [GoogleIdentifier::AddressInfo {
            country_code,
            postal_code,
            ..
        }] => {
            assert_eq!(country_code, "PT");
            assert_eq!(postal_code, "1229-076");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn google_phone_keeps_the_plus() {
    let keys = [MatchKey::Phone];
    assert_eq!(
        google_identifiers(
            &keys,
            &person(None, None, Some("+44 07911 123456")),
            &Attributes::new(),
            &us()
        ),
        Ok(vec![GoogleIdentifier::HashedPhoneNumber(
            "20b18ac9de7b3aad174961827d8e451c410af9aedfd1d699927f4b29b81aa1fa".into()
        )])
    );
}

#[test]
fn possible_numbers_the_metadata_calls_invalid_are_kept() {
    // France's 07 00 range and a NANP exchange starting with 0: the right
    // length for their country, unknown to the numbering metadata.
    let fr = "+33 7 00 00 00 00";
    let parsed = phonenumber::parse(None, fr).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !phonenumber::is_valid(&parsed),
        "pick a number the metadata calls invalid"
    );
    assert_eq!(
        normalize_phone_e164(fr, None).as_deref(),
        Ok("+33700000000")
    );
    assert_eq!(
        meta_cell_for(&person(None, None, Some(fr)), "PHONE"),
        "af3bc3e3a4d120d0da9fc616e85f9e03e2021067100df4748e194eabeddb31dc"
    );
    assert_eq!(
        google_identifiers(
            &[MatchKey::Phone],
            &person(None, None, Some("(201) 055-0123")),
            &Attributes::new(),
            &us()
        ),
        Ok(vec![GoogleIdentifier::HashedPhoneNumber(
            "730d5402fab29a3434ecbbe03b46f9852a9df1049ab4e81d9355f1066770850a".into()
        )])
    );
    // Impossible lengths are still refused.
    for raw in ["+33 7 00 00 00", "+1 201 055 01234", "+44 20 79"] {
        assert!(
            matches!(
                normalize_phone_e164(raw, None),
                Err(IdentityError::Invalid { key: "phone", .. })
            ),
            "{raw:?} accepted"
        );
    }
}
