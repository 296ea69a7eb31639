use super::*;
use proptest::prelude::*;

fn ids(id: Option<&str>, email: Option<&str>, phone: Option<&str>) -> Identifiers {
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

fn us_opts() -> IdentityOptions {
    IdentityOptions {
        default_phone_region: Some("US".into()),
        gmail_remove_dots: false,
        gmail_strip_plus_suffix: false,
    }
}

const ALL_KEYS: &[MatchKey] = &[
    MatchKey::Email,
    MatchKey::Phone,
    MatchKey::ExternId,
    MatchKey::FirstName,
    MatchKey::LastName,
    MatchKey::City,
    MatchKey::State,
    MatchKey::Zip,
    MatchKey::Country,
    MatchKey::Gender,
    MatchKey::DateOfBirth,
];

#[test]
fn sha256_hex_is_lowercase_hex_of_utf8() {
    assert_eq!(
        sha256_hex("test@example.com"),
        "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
    );
    assert!(is_sha256_hex(&sha256_hex("x")));
    assert!(is_sha256_hex(&sha256_hex("x").to_uppercase()));
    assert!(!is_sha256_hex("abc"));
    assert!(!is_sha256_hex(&format!("{}g", &sha256_hex("x")[..63])));
}

#[test]
fn email_is_trimmed_and_lowercased() {
    assert_eq!(
        normalize_email("  John.Doe+News@Example.COM \n", false).unwrap(),
        "john.doe+news@example.com"
    );
}

#[test]
fn email_without_shape_is_rejected() {
    for bad in [
        "",
        "   ",
        "no-at-sign",
        "@example.com",
        "a@",
        "a@b",
        "a@@b.com",
        "a b@c.com",
        "a@b..com",
    ] {
        assert!(normalize_email(bad, false).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        normalize_email(" ", false),
        Err(IdentityError::Missing { key: "email" })
    );
}

#[test]
fn gmail_dots_removed_only_when_asked_and_all_of_them() {
    assert_eq!(
        normalize_email("J.o.h.n@Gmail.com", false).unwrap(),
        "j.o.h.n@gmail.com"
    );
    assert_eq!(
        normalize_email("J.o.h.n@Gmail.com", true).unwrap(),
        "john@gmail.com"
    );
    assert_eq!(
        normalize_email("j.ohn+tag@googlemail.com", true).unwrap(),
        "john+tag@googlemail.com"
    );
    assert_eq!(
        normalize_email("j.ohn@example.com", true).unwrap(),
        "j.ohn@example.com"
    );
    assert!(normalize_email("...@gmail.com", true).is_err());
}

#[test]
fn phone_formats_normalise_to_e164() {
    let cases = [
        ("(415) 555-1234", Some("US"), "+14155551234"),
        ("1-415-555-1234", Some("us"), "+14155551234"),
        ("+1 415 555 1234", None, "+14155551234"),
        ("14155551234", None, "+14155551234"),
        ("+44 20 7946 0958", None, "+442079460958"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("0044 20 7946 0958", Some("US"), "+442079460958"),
        ("011 44 20 7946 0958", Some("US"), "+442079460958"),
        ("+44 (0)20 7946 0958", None, "+442079460958"),
        ("020 7946 0958", Some("GB"), "+442079460958"),
        ("06 12 34 56 78", Some("FR"), "+33612345678"),
        ("+33 06 12 34 56 78", None, "+33612345678"),
    ];
    for (raw, region, want) in cases {
        assert_eq!(
            normalize_phone_e164(raw, region).as_deref(),
            Ok(want),
            "{raw:?} {region:?}"
        );
    }
}

#[test]
fn invalid_phone_is_an_invalid_error() {
    for (raw, region) in [
        ("12345", Some("US")),
        ("abc", None),
        ("+", None),
        ("4155551234", None),
        ("44 20 7946 0958", Some("US")),
    ] {
        assert!(
            matches!(
                normalize_phone_e164(raw, region),
                Err(IdentityError::Invalid { key: "phone", .. })
            ),
            "{raw:?} accepted"
        );
    }
    assert_eq!(
        normalize_phone_e164("  ", None),
        Err(IdentityError::Missing { key: "phone" })
    );
    assert!(normalize_phone_e164("4155551234", Some("XX")).is_err());
}

#[test]
fn meta_phone_has_digits_only_without_leading_zeros() {
    assert_eq!(meta_phone_digits("+14155551234"), "14155551234");
    let e164 = normalize_phone_e164("0044 (0)20 7946 0958", None).unwrap();
    assert_eq!(meta_phone_digits(&e164), "442079460958");
}

#[test]
fn names_lose_punctuation_but_keep_accents() {
    assert_eq!(normalize_name("  O'Brien ").as_deref(), Some("obrien"));
    assert_eq!(normalize_name("Jean-Luc").as_deref(), Some("jeanluc"));
    assert_eq!(normalize_name("JOSÉ").as_deref(), Some("josé"));
    assert_eq!(normalize_name("Zoë  Anne").as_deref(), Some("zoëanne"));
    assert_eq!(normalize_name(" .,- "), None);
    assert_eq!(first_initial("  Émile").as_deref(), Some("é"));
    assert_eq!(first_initial("'Mary").as_deref(), Some("m"));
    assert_eq!(first_initial(""), None);
    // Google: punctuation goes too (AddressInfo asks for none), inner
    // spaces collapse to one.
    assert_eq!(
        normalize_given_name_google("  Jean-Luc  Picard ").as_deref(),
        Some("jeanluc picard")
    );
}

#[test]
fn city_has_no_spaces_or_punctuation() {
    assert_eq!(
        normalize_city(" San Francisco ").as_deref(),
        Some("sanfrancisco")
    );
    assert_eq!(normalize_city("St. Louis").as_deref(), Some("stlouis"));
    assert_eq!(normalize_city("São Paulo").as_deref(), Some("sãopaulo"));
    assert_eq!(normalize_city("--"), None);
}

#[test]
fn us_states_map_by_name_and_code() {
    assert_eq!(
        normalize_state("California", Some("US")).as_deref(),
        Some("ca")
    );
    assert_eq!(normalize_state("CA", Some("us")).as_deref(), Some("ca"));
    assert_eq!(normalize_state("new york", None).as_deref(), Some("ny"));
    assert_eq!(
        normalize_state("District of Columbia", Some("USA")).as_deref(),
        Some("dc")
    );
    assert_eq!(
        normalize_state("Tx.", Some("United States")).as_deref(),
        Some("tx")
    );
    // Elsewhere: lowercase, no spaces or punctuation, no US mapping.
    assert_eq!(
        normalize_state("New South Wales", Some("AU")).as_deref(),
        Some("newsouthwales")
    );
    assert_eq!(
        normalize_state("Georgia", Some("GE")).as_deref(),
        Some("georgia")
    );
    assert_eq!(normalize_state("  ", Some("US")), None);
}

#[test]
fn us_zip_keeps_first_five_digits() {
    assert_eq!(
        normalize_zip("94107-1234", Some("US")).as_deref(),
        Some("94107")
    );
    assert_eq!(normalize_zip(" 94107 ", None).as_deref(), Some("94107"));
    assert_eq!(normalize_zip("941071234", None).as_deref(), Some("94107"));
    assert_eq!(normalize_zip("123", Some("US")), None);
    assert_eq!(
        normalize_zip("SW1A 1AA", Some("GB")).as_deref(),
        Some("sw1a1")
    );
    assert_eq!(normalize_zip("75008", Some("FR")).as_deref(), Some("75008"));
}

#[test]
fn countries_map_to_lowercase_alpha2() {
    let cases = [
        ("US", "us"),
        (" us ", "us"),
        ("USA", "us"),
        ("United States", "us"),
        ("UK", "gb"),
        ("United Kingdom", "gb"),
        ("GBR", "gb"),
        ("Deutschland", "de"),
        ("DEU", "de"),
        ("fr", "fr"),
        ("Brazil", "br"),
        ("KE", "ke"),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize_country(raw).as_deref(), Some(want), "{raw:?}");
    }
    for bad in ["", "ZZ", "Atlantis", "U"] {
        assert_eq!(normalize_country(bad), None, "{bad:?}");
    }
}

#[test]
fn gender_variants_map_to_m_or_f() {
    for m in ["M", "male", " Male ", "MAN"] {
        assert_eq!(normalize_gender(m).as_deref(), Some("m"), "{m:?}");
    }
    for f in ["F", "female", "Woman", "w"] {
        assert_eq!(normalize_gender(f).as_deref(), Some("f"), "{f:?}");
    }
    for other in ["", "x", "unknown", "non-binary"] {
        assert_eq!(normalize_gender(other), None, "{other:?}");
    }
}

#[test]
fn date_of_birth_formats() {
    let want = Some(DateOfBirth {
        year: "1990".into(),
        month: "04".into(),
        day: "07".into(),
    });
    assert_eq!(normalize_date_of_birth("1990-04-07"), want);
    assert_eq!(normalize_date_of_birth("1990-04-07T12:00:00Z"), want);
    assert_eq!(normalize_date_of_birth("04/07/1990"), want);
    assert_eq!(normalize_date_of_birth("4/7/1990"), want);
    // 1990-04-07T00:00:00Z
    assert_eq!(normalize_date_of_birth("639446400"), want);
    assert_eq!(
        normalize_date_of_birth("-86400"),
        Some(DateOfBirth {
            year: "1969".into(),
            month: "12".into(),
            day: "31".into()
        })
    );
    for bad in [
        "",
        "1990-02-30",
        "13/01/1990",
        "04/07/90",
        "yesterday",
        "1990-04-07x",
        "99999999999999999999",
    ] {
        assert_eq!(normalize_date_of_birth(bad), None, "{bad:?}");
    }
}

#[test]
fn default_keys_per_destination() {
    assert_eq!(
        default_keys(DestinationKind::MetaAudience),
        vec![MatchKey::Email, MatchKey::Phone, MatchKey::ExternId]
    );
    assert_eq!(
        default_keys(DestinationKind::GoogleCustomerMatch),
        vec![MatchKey::Email, MatchKey::Phone]
    );
    assert_eq!(
        default_keys(DestinationKind::Clevertap),
        vec![MatchKey::Email, MatchKey::Phone]
    );
}

#[test]
fn meta_schema_has_stable_order_whatever_the_key_order() {
    assert_eq!(
        meta_schema(&[
            MatchKey::ExternId,
            MatchKey::Phone,
            MatchKey::Email,
            MatchKey::Email
        ]),
        vec!["EMAIL", "PHONE", "EXTERN_ID"]
    );
    assert_eq!(
        meta_schema(ALL_KEYS),
        vec![
            "EMAIL",
            "PHONE",
            "EXTERN_ID",
            "FN",
            "FI",
            "LN",
            "CT",
            "ST",
            "ZIP",
            "COUNTRY",
            "GEN",
            "DOBY",
            "DOBM",
            "DOBD"
        ]
    );
}

#[test]
fn meta_row_hashes_per_meta_rules_and_keeps_extern_id_plain() {
    let keys = default_keys(DestinationKind::MetaAudience);
    let row = meta_row(
        &keys,
        &ids(
            Some("u-42"),
            Some(" J.Doe@Gmail.com "),
            Some("(415) 555-1234"),
        ),
        &Attributes::new(),
        &us_opts(),
    )
    .unwrap();
    assert_eq!(row.len(), meta_schema(&keys).len());
    // Meta never removes gmail dots.
    assert_eq!(row[0], sha256_hex("j.doe@gmail.com"));
    // Digits only, no '+'.
    assert_eq!(row[1], sha256_hex("14155551234"));
    assert_eq!(row[2], "u-42");
}

#[test]
fn meta_row_fills_every_attribute_column() {
    let a = attrs(&[
        ("first_name", json!("  Zoë ")),
        ("last_name", json!("O'Brien")),
        ("city", json!("San Francisco")),
        ("state", json!("California")),
        ("zip", json!(94107)),
        ("country", json!("USA")),
        ("gender", json!("Female")),
        ("date_of_birth", json!("04/07/1990")),
    ]);
    let row = meta_row(ALL_KEYS, &ids(None, None, None), &a, &us_opts()).unwrap();
    assert_eq!(row.len(), meta_schema(ALL_KEYS).len());
    let want: Vec<String> = vec![
        String::new(),
        String::new(),
        String::new(),
        sha256_hex("zoë"),
        sha256_hex("z"),
        sha256_hex("obrien"),
        sha256_hex("sanfrancisco"),
        sha256_hex("ca"),
        sha256_hex("94107"),
        sha256_hex("us"),
        sha256_hex("f"),
        sha256_hex("1990"),
        sha256_hex("04"),
        sha256_hex("07"),
    ];
    assert_eq!(row, want);
}

#[test]
fn meta_row_passes_digests_through_lowercased() {
    let email_digest = sha256_hex("a@example.com").to_uppercase();
    let phone_digest = sha256_hex("14155551234");
    let ln_digest = sha256_hex("doe");
    let row = meta_row(
        &[MatchKey::Email, MatchKey::Phone, MatchKey::LastName],
        &ids(
            None,
            Some(&format!(" {email_digest} ")),
            Some(&phone_digest),
        ),
        &attrs(&[("last_name", json!(ln_digest.clone()))]),
        &us_opts(),
    )
    .unwrap();
    assert_eq!(
        row,
        vec![email_digest.to_lowercase(), phone_digest, ln_digest]
    );
}

#[test]
fn meta_row_blanks_bad_values_and_fails_only_when_nothing_is_left() {
    let keys = [MatchKey::Email, MatchKey::Phone];
    let row = meta_row(
        &keys,
        &ids(None, Some("a@example.com"), Some("12345")),
        &Attributes::new(),
        &us_opts(),
    )
    .unwrap();
    assert_eq!(row, vec![sha256_hex("a@example.com"), String::new()]);
    assert_eq!(
        meta_row(
            &keys,
            &ids(Some("u1"), Some("not-an-email"), Some("12345")),
            &Attributes::new(),
            &us_opts()
        ),
        Err(IdentityError::Missing { key: "identifiers" })
    );
}

#[test]
fn google_hashes_phone_with_plus_and_email_without_gmail_dots_by_default() {
    let keys = [MatchKey::Email, MatchKey::Phone, MatchKey::ExternId];
    let person = ids(
        Some("crm-7"),
        Some("J.Doe@Gmail.com"),
        Some("(415) 555-1234"),
    );
    let got = google_identifiers(&keys, &person, &Attributes::new(), &us_opts()).unwrap();
    assert_eq!(
        got,
        vec![
            GoogleIdentifier::HashedEmail(sha256_hex("j.doe@gmail.com")),
            GoogleIdentifier::HashedPhoneNumber(sha256_hex("+14155551234")),
            GoogleIdentifier::ThirdPartyUserId("crm-7".into()),
        ]
    );
    let opts = IdentityOptions {
        gmail_remove_dots: true,
        ..us_opts()
    };
    let got = google_identifiers(&keys, &person, &Attributes::new(), &opts).unwrap();
    assert_eq!(
        got[0],
        GoogleIdentifier::HashedEmail(sha256_hex("jdoe@gmail.com"))
    );
}

#[test]
fn google_passes_digests_through() {
    let e = sha256_hex("a@example.com");
    let p = sha256_hex("+14155551234").to_uppercase();
    let got = google_identifiers(
        &[MatchKey::Email, MatchKey::Phone],
        &ids(None, Some(&e), Some(&p)),
        &Attributes::new(),
        &IdentityOptions::default(),
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            GoogleIdentifier::HashedEmail(e),
            GoogleIdentifier::HashedPhoneNumber(p.to_lowercase())
        ]
    );
}

#[test]
fn google_address_info_needs_names_country_and_zip() {
    let keys = [
        MatchKey::FirstName,
        MatchKey::LastName,
        MatchKey::Country,
        MatchKey::Zip,
    ];
    let full = attrs(&[
        ("first_name", json!(" Jean-Luc ")),
        ("last_name", json!("PICARD")),
        ("country", json!("United States")),
        ("zip", json!("94107-1234")),
    ]);
    let got = google_identifiers(&keys, &ids(None, None, None), &full, &us_opts()).unwrap();
    assert_eq!(
        got,
        vec![GoogleIdentifier::AddressInfo {
            hashed_first_name: sha256_hex("jeanluc"),
            hashed_last_name: sha256_hex("picard"),
            country_code: "US".into(),
            postal_code: "94107-1234".into(),
        }]
    );
    let mut partial = full.clone();
    partial.remove("zip");
    assert_eq!(
        google_identifiers(&keys, &ids(None, None, None), &partial, &us_opts()),
        Err(IdentityError::Missing { key: "identifiers" })
    );
    // Names alone (country and zip not keys) give no AddressInfo.
    assert!(google_identifiers(&keys[..2], &ids(None, None, None), &full, &us_opts()).is_err());
}

#[test]
fn google_skips_bad_values_and_fails_only_when_none_are_left() {
    let keys = [MatchKey::Email, MatchKey::Phone];
    let got = google_identifiers(
        &keys,
        &ids(None, Some("bad"), Some("+14155551234")),
        &Attributes::new(),
        &us_opts(),
    )
    .unwrap();
    assert_eq!(
        got,
        vec![GoogleIdentifier::HashedPhoneNumber(sha256_hex(
            "+14155551234"
        ))]
    );
    assert_eq!(
        google_identifiers(
            &keys,
            &ids(Some("u1"), None, None),
            &Attributes::new(),
            &us_opts()
        ),
        Err(IdentityError::Missing { key: "identifiers" })
    );
}

#[test]
fn google_json_uses_rest_field_names() {
    assert_eq!(
        GoogleIdentifier::HashedEmail("h".into()).to_json(),
        json!({"hashedEmail": "h"})
    );
    assert_eq!(
        GoogleIdentifier::HashedPhoneNumber("p".into()).to_json(),
        json!({"hashedPhoneNumber": "p"})
    );
    assert_eq!(
        GoogleIdentifier::ThirdPartyUserId("u".into()).to_json(),
        json!({"thirdPartyUserId": "u"})
    );
    let addr = GoogleIdentifier::AddressInfo {
        hashed_first_name: "f".into(),
        hashed_last_name: "l".into(),
        country_code: "US".into(),
        postal_code: "94107".into(),
    };
    assert_eq!(
        addr.to_json(),
        json!({"addressInfo": {"hashedFirstName": "f", "hashedLastName": "l", "countryCode": "US", "postalCode": "94107"}})
    );
}

proptest! {
    #[test]
    fn email_normalisation_is_idempotent(
        local in "[A-Za-z0-9._+-]{1,20}",
        domain in prop::sample::select(vec!["Gmail.com", "googlemail.com", "Example.ORG", "mail.co.uk"]),
        pad in " {0,3}",
        dots: bool,
    ) {
        let raw = format!("{pad}{local}@{domain}{pad}");
        if let Ok(once) = normalize_email(&raw, dots) {
            prop_assert_eq!(normalize_email(&once, dots), Ok(once.clone()));
        }
    }

    #[test]
    fn phone_normalisation_is_idempotent(
        raw in "[+0-9 ()-]{0,20}",
        region in prop::option::of(prop::sample::select(vec!["US", "GB", "FR", "DE", "IN"])),
    ) {
        if let Ok(once) = normalize_phone_e164(&raw, region) {
            prop_assert_eq!(normalize_phone_e164(&once, region), Ok(once.clone()));
            prop_assert_eq!(normalize_phone_e164(&once, None), Ok(once.clone()));
        }
    }

    #[test]
    fn no_input_panics(raw in "\\PC{0,40}", region in prop::option::of("[A-Za-z]{0,3}")) {
        let _ = normalize_email(&raw, true);
        let _ = normalize_email_google(&raw, &IdentityOptions { gmail_remove_dots: true, gmail_strip_plus_suffix: true, ..IdentityOptions::default() });
        let _ = normalize_given_name_google(&raw);
        let _ = normalize_family_name_google(&raw);
        let _ = normalize_phone_e164(&raw, region.as_deref());
        let _ = normalize_name(&raw);
        let _ = first_initial(&raw);
        let _ = normalize_city(&raw);
        let _ = normalize_state(&raw, Some(&raw));
        let _ = normalize_zip(&raw, region.as_deref());
        let _ = normalize_country(&raw);
        let _ = normalize_gender(&raw);
        let _ = normalize_date_of_birth(&raw);
        let a = ALL_KEYS.iter().map(|k| (k.as_str().to_string(), json!(raw.clone()))).collect();
        let person = ids(Some(&raw), Some(&raw), Some(&raw));
        let opts = IdentityOptions { default_phone_region: region, gmail_remove_dots: true, gmail_strip_plus_suffix: false };
        if let Ok(row) = meta_row(ALL_KEYS, &person, &a, &opts) {
            prop_assert_eq!(row.len(), meta_schema(ALL_KEYS).len());
        }
        if let Ok(list) = google_identifiers(ALL_KEYS, &person, &a, &opts) {
            prop_assert!(list.len() <= GOOGLE_MAX_IDENTIFIERS);
        }
    }

    #[test]
    fn phone_parser_survives_digit_soup(raw in "[+0-9]{0,30}", region in prop::option::of(prop::sample::select(vec!["US", "GB", "BR", "DE"]))) {
        let _ = normalize_phone_e164(&raw, region);
    }
}
