//! Normalisation and hashing vectors for the rules of API-CONTRACTS §3a
//! (Meta) and §4b (Google). Every expected digest is written out literally,
//! computed outside this code base (SHA-256 / MD5 of the normalised text),
//! so a rule that drifts fails here rather than in a match rate.

use serde_json::{json, Value};

use super::*;
use crate::domain::model::{Attributes, Identifiers};
use crate::domain::spec::MatchKey;

/// Meta's rules as its business SDKs and customer list pages state them.
mod meta;

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

// ----- Google's current rules (Data Manager formatting page and the
// `UserDataFormatter` of googleads/data-manager-java) -----

/// The options the Data Manager destination uses when the spec leaves the
/// Gmail keys out: dots removed and the `+suffix` stripped.
fn data_manager_defaults() -> IdentityOptions {
    IdentityOptions {
        default_phone_region: Some("US".into()),
        gmail_remove_dots: true,
        gmail_strip_plus_suffix: true,
    }
}

/// The AddressInfo (and only it) built for these name attributes.
fn google_address_for(first: &str, last: &str) -> Result<Vec<GoogleIdentifier>, IdentityError> {
    let keys = [
        MatchKey::FirstName,
        MatchKey::LastName,
        MatchKey::Country,
        MatchKey::Zip,
    ];
    let a = attrs(&[
        ("first_name", json!(first)),
        ("last_name", json!(last)),
        ("country", json!("US")),
        ("zip", json!("94107")),
    ]);
    google_identifiers(&keys, &person(None, None, None), &a, &us())
}

fn address(first_hash: &str, last_hash: &str) -> GoogleIdentifier {
    GoogleIdentifier::AddressInfo {
        hashed_first_name: first_hash.into(),
        hashed_last_name: last_hash.into(),
        country_code: "US".into(),
        postal_code: "94107".into(),
    }
}

#[test]
fn gmail_local_part_loses_dots_and_plus_suffix_with_the_data_manager_defaults() {
    let opts = data_manager_defaults();
    // Consecutive dots are harmless once every dot goes.
    assert_eq!(
        normalize_email_google("a.b..c+news@gmail.com", &opts).as_deref(),
        Ok("abc@gmail.com")
    );
    // Google's own example, with a googlemail.com twin: the domain is kept.
    assert_eq!(
        normalize_email_google(" Cloudy.SanFrancisco+Shopping@GoogleMail.com ", &opts).as_deref(),
        Ok("cloudysanfrancisco@googlemail.com")
    );
    // Everything from the first `+` goes, dots and `+` of the suffix too.
    assert_eq!(
        normalize_email_google("j.e.f..f+a..b+c@gmail.com", &opts).as_deref(),
        Ok("jeff@gmail.com")
    );
    assert_eq!(
        google_identifiers(
            &[MatchKey::Email],
            &person(None, Some("A.B..C+News@Gmail.com"), None),
            &Attributes::new(),
            &opts
        ),
        Ok(vec![GoogleIdentifier::HashedEmail(
            "48ddb93f0b30c475423fe177832912c5bcdce3cc72872f8051627967ef278e08".into()
        )])
    );
    // A local part the rules leave empty is refused, never sent as "@gmail.com".
    for raw in ["+news@gmail.com", "..+x@gmail.com", ".@googlemail.com"] {
        assert!(
            matches!(
                normalize_email_google(raw, &opts),
                Err(IdentityError::Invalid { key: "email", .. })
            ),
            "{raw:?} accepted"
        );
    }
}

#[test]
fn gmail_plus_suffix_is_kept_when_stripping_is_off() {
    let opts = IdentityOptions {
        gmail_strip_plus_suffix: false,
        ..data_manager_defaults()
    };
    assert_eq!(
        normalize_email_google("a.b..c+news@gmail.com", &opts).as_deref(),
        Ok("abc+news@gmail.com")
    );
    assert_eq!(
        google_identifiers(
            &[MatchKey::Email],
            &person(None, Some("a.b..c+news@gmail.com"), None),
            &Attributes::new(),
            &opts
        ),
        Ok(vec![GoogleIdentifier::HashedEmail(
            "3d34a5b4864de0a82f04d51bf2ea87c77f7f448c8070f517c77ad3980744a6de".into()
        )])
    );
}

#[test]
fn only_gmail_and_googlemail_lose_dots_and_plus_suffix() {
    let opts = data_manager_defaults();
    assert_eq!(
        normalize_email_google("a..b+c@googlemail.com", &opts).as_deref(),
        Ok("ab@googlemail.com")
    );
    // Other domains keep dots and +tags, and a consecutive-dot address
    // there stays refused.
    assert_eq!(
        normalize_email_google("X.Y+Z@Example.com", &opts).as_deref(),
        Ok("x.y+z@example.com")
    );
    // A look-alike of gmail.com is another domain.
    assert_eq!(
        normalize_email_google("a.b+c@gmail.co", &opts).as_deref(),
        Ok("a.b+c@gmail.co")
    );
    assert_eq!(
        normalize_email_google("a.b+c@mail.gmail.com", &opts).as_deref(),
        Ok("a.b+c@mail.gmail.com")
    );
    for raw in ["a..b+news@example.com", "a.b+c@gmail..com", "a..b@gmail.co"] {
        assert!(
            matches!(
                normalize_email_google(raw, &opts),
                Err(IdentityError::Invalid { key: "email", .. })
            ),
            "{raw:?} accepted"
        );
    }
}

#[test]
fn gmail_consecutive_dots_are_refused_while_dots_are_kept() {
    // Only removing the dots makes them harmless: with the dots kept the
    // address is refused as before.
    let opts = IdentityOptions {
        gmail_remove_dots: false,
        ..data_manager_defaults()
    };
    assert_eq!(
        normalize_email_google("a.b+x..y@gmail.com", &opts).as_deref(),
        Ok("a.b@gmail.com")
    );
    assert!(normalize_email_google("a..b+news@gmail.com", &opts).is_err());
}

#[test]
fn google_given_name_loses_its_prefix_and_punctuation() {
    // "jane" / "smithjones"
    let expected = address(
        "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2",
        "6a77f47e3dec33252edbebb457d65e90501b643806c50cf8d6c3e2bd9cb74681",
    );
    for first in [
        "Mrs. Jane",
        "  MRS JANE ",
        "Dr. Jane",
        "Ms Jane",
        "Miss Jane",
        "Mr. Dr. Jane",
    ] {
        assert_eq!(
            google_address_for(first, "Smith-Jones"),
            Ok(vec![expected.clone()]),
            "{first:?}"
        );
    }
}

#[test]
fn google_family_name_loses_its_suffix_and_punctuation() {
    // "jane" / "smithjones"
    let expected = address(
        "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2",
        "6a77f47e3dec33252edbebb457d65e90501b643806c50cf8d6c3e2bd9cb74681",
    );
    for last in [
        "Smith-Jones, Jr.",
        "Smith-Jones Jr",
        "smith-jones,Sr.",
        "Smith-Jones III",
        "Smith-Jones, Jr., Ph.D.",
        " SMITH-JONES 2nd ",
    ] {
        assert_eq!(
            google_address_for("Jane", last),
            Ok(vec![expected.clone()]),
            "{last:?}"
        );
    }
}

#[test]
fn google_names_keep_inner_words_and_letters_that_only_look_like_titles() {
    // "jeanluc" / "de la cruz": punctuation goes, inner spaces collapse to one.
    assert_eq!(
        google_address_for(" Jean-Luc ", "De  La Cruz"),
        Ok(vec![address(
            "7fef38066db9900f992fa9926eea8cc648f44c2af50c4d511c415422196c8ef5",
            "341a715580af4bbc3c3bff363245177e84fbc38c4a77d3047edeb6bee38495aa",
        )])
    );
    // "maryann" / "obrien": an apostrophe (straight or curly) is punctuation.
    assert_eq!(
        google_address_for("Mary-Ann", "O\u{2019}Brien"),
        Ok(vec![address(
            "16b3f07f0ec2f9dd127b71dc2e6c791b7d93116a1c3bc99d057eaa7a8a077e73",
            "b4cb6cb33fe4b865868de825023a1e2790dc12ac01ecc8d7c5afe8254071c8ba",
        )])
    );
    // "drew" / "junior": words that only start like a title or suffix stay.
    assert_eq!(
        google_address_for("Drew", "Junior"),
        Ok(vec![address(
            "c850c75d30a9360f81eff0a01abcf9125ba034ef9a2dd9f95bbc073a60032299",
            "8fdd880f097cddfef86895d2c48f649e943bed14639f0ad29671508b536c9fc1",
        )])
    );
    assert_eq!(
        google_address_for("O'Brien", "O'Brien"),
        Ok(vec![address(
            "b4cb6cb33fe4b865868de825023a1e2790dc12ac01ecc8d7c5afe8254071c8ba",
            "b4cb6cb33fe4b865868de825023a1e2790dc12ac01ecc8d7c5afe8254071c8ba",
        )])
    );
}

#[test]
fn google_name_made_only_of_a_title_gives_no_address_rather_than_an_empty_hash() {
    for (first, last) in [
        ("Dr", "Smith"),
        ("Mrs.", "Smith"),
        (" Mr. ", "Smith"),
        ("Jane", "Jr."),
        ("Jane", ", Jr., DDS"),
        ("...", "Smith"),
    ] {
        assert_eq!(
            google_address_for(first, last),
            Err(IdentityError::Missing { key: "identifiers" }),
            "{first:?} {last:?}"
        );
    }
    // The person's other identifiers still go.
    let keys = [
        MatchKey::Email,
        MatchKey::FirstName,
        MatchKey::LastName,
        MatchKey::Country,
        MatchKey::Zip,
    ];
    let a = attrs(&[
        ("first_name", json!("Dr.")),
        ("last_name", json!("Smith")),
        ("country", json!("US")),
        ("zip", json!("94107")),
    ]);
    assert_eq!(
        google_identifiers(
            &keys,
            &person(None, Some("x.y+z@example.com"), None),
            &a,
            &data_manager_defaults()
        ),
        Ok(vec![GoogleIdentifier::HashedEmail(
            "8bf93444621e4ac3e685b95b7078058ee03783993ad02b9e04e1bcd98dd6c5fb".into()
        )])
    );
}
