//! Meta's normalisation as Meta's own sources state it, pinned as digests
//! computed outside this code base (`printf %s <text> | sha256sum`).
//! Sources (details in `docs/meta-identifiers.md`):
//! * [node-sdk] facebook/facebook-nodejs-business-sdk @ ebd272a3,
//!   `src/objects/serverside/utils.js` (`normalizeAndHash`, `normalizePhone`,
//!   `isInternationalPhoneNumber`) and `src/objects/serverside/user-data.js`
//!   (`normalize`: `external_id` goes through `normalizeAndHash`).
//! * [python-sdk] facebook/facebook-python-business-sdk @ 94914f9d,
//!   `facebook_business/adobjects/serverside/normalize.py` (`ph`: a `+` and
//!   up to two zeros dropped before the country code).
//! * [cal] Meta's Marketing API customer list (custom audience) parameter
//!   table: `DOBY`/`DOBM`/`DOBD`, and ZIP "lower case, no white space; US:
//!   first 5 digits; UK: Area/District/Sector".
//! * [capi] Meta's Conversions API customer information parameters: `db` is
//!   `YYYYMMDD`.

use super::*;

const SHA_19850704: &str = "2168bbab13806c125ed1f35c8838fbe8483ce209a3e34ac1eda34c2bf56714e2";
const SHA_1985: &str = "78e370b587b145920213731b7c7c725e512b3b6577c51c800218a7c764c532ae";
const SHA_07: &str = "19b100ab7725c612f3d80ff203ca53cea5cadaafae3bf0f88f0fb4089fe08815";
const SHA_04: &str = "6cd5b6e51936a442b973660c21553dd22bd72ddc8751132a943475288113b4c0";

fn dob(year: &str, month: &str, day: &str) -> Option<DateOfBirth> {
    Some(DateOfBirth {
        year: year.into(),
        month: month.into(),
        day: day.into(),
    })
}

/// [capi] [cal]: `19850704` is the 4th of July 1985, never Unix seconds
/// (which would make it the 18th of August 1970).
#[test]
fn a_yyyymmdd_birth_date_is_read_as_that_day_not_as_unix_seconds() {
    assert_eq!(normalize_date_of_birth("19850704"), dob("1985", "07", "04"));
    assert_eq!(
        normalize_date_of_birth(" 19850704 "),
        dob("1985", "07", "04")
    );
    let a = attrs(&[("date_of_birth", json!("19850704"))]);
    assert_eq!(meta_attr_cell(MatchKey::DateOfBirth, "DOBY", &a), SHA_1985);
    assert_eq!(meta_attr_cell(MatchKey::DateOfBirth, "DOBM", &a), SHA_07);
    assert_eq!(meta_attr_cell(MatchKey::DateOfBirth, "DOBD", &a), SHA_04);
    // The same value as a JSON number (Customer.io attributes often are).
    let n = attrs(&[("date_of_birth", json!(19850704))]);
    assert_eq!(meta_attr_cell(MatchKey::DateOfBirth, "DOBY", &n), SHA_1985);
    // What CAPI's `db` hashes: the YYYYMMDD text itself.
    assert_eq!(sha256_hex("19850704"), SHA_19850704);
}

#[test]
fn birth_years_outside_1900_to_this_year_are_unknown() {
    for raw in [
        "18991231",
        "1899-12-31",
        "12/31/1899",
        "3000-01-01",
        "20250230",
    ] {
        assert_eq!(normalize_date_of_birth(raw), None, "{raw:?}");
    }
    assert_eq!(normalize_date_of_birth("19000101"), dob("1900", "01", "01"));
    // Eight digits that are no YYYYMMDD stay Unix seconds: 31536000 s is
    // 1971-01-01, and nine or more digits always are seconds.
    assert_eq!(normalize_date_of_birth("31536000"), dob("1971", "01", "01"));
    assert_eq!(
        normalize_date_of_birth("489196800"),
        dob("1985", "07", "03")
    );
}

/// [cal]: the UK's Area/District/Sector is the postcode without its unit
/// (the last two letters): "SW1A 1AA" -> "sw1a1".
#[test]
fn uk_postcodes_are_cut_to_area_district_sector() {
    let zip = |raw: &str, country: Option<&str>| {
        let mut pairs = vec![("zip", json!(raw))];
        if let Some(c) = country {
            pairs.push(("country", json!(c)));
        }
        meta_attr_cell(MatchKey::Zip, "ZIP", &attrs(&pairs))
    };
    let sw1a1 = "949af780a19e6f6d4b99d7044743348dbbb7ab2245fe146863573b23d02c5890";
    assert_eq!(zip("SW1A 1AA", Some("GB")), sw1a1);
    assert_eq!(zip("sw1a1aa", Some("United Kingdom")), sw1a1);
    // Already at sector precision: kept.
    assert_eq!(zip("SW1A 1", Some("GB")), sw1a1);
    // A full UK postcode is recognisable without a country.
    assert_eq!(zip(" SW1A 1AA ", None), sw1a1);
    assert_eq!(
        zip("EC1V 9HQ", Some("GB")),
        "e3b65a56bee8dbc810379e5e5ac0e8b6990cabfe59911c24d7518d725bd53ae9"
    );
    assert_eq!(
        zip("M1 1AE", Some("GB")),
        "bb85e451e092b31aedb250d1883a6dd8f7f8de1e302fa7167ab7f9044b0f8040"
    );
    // US: the first five digits; elsewhere lowercase without spaces.
    assert_eq!(
        zip("94107-1234", Some("US")),
        "c884a209ebe08750a7d13db63bd02233b375bd79786cbe329ab11586cc35dead"
    );
    assert_eq!(
        zip("K1A 0B1", Some("CA")),
        "3e8d74314dc02166b1ea8c7bd8c2357fb3f9898074395b8c57f8799848b4daa1"
    );
    assert_eq!(
        zip("K1A 0B1", None),
        "3e8d74314dc02166b1ea8c7bd8c2357fb3f9898074395b8c57f8799848b4daa1"
    );
}

/// [node-sdk]: `external_id` is trimmed and lower-cased before SHA-256.
#[test]
fn conversions_external_id_is_trimmed_and_lower_cased_before_hashing() {
    let cust_abc_9 = "cc3acbb000c22df1818afb2fb58c0f8557c2fe819b7e0d3b8c2d52a9553d44c5";
    assert_eq!(
        meta_capi_external_id("Cust-ABC-9").as_deref(),
        Some(cust_abc_9)
    );
    assert_eq!(
        meta_capi_external_id("  cust-abc-9\t").as_deref(),
        Some(cust_abc_9)
    );
    // A digest passes through lower-cased, SHA-256 or MD5 alike.
    assert_eq!(
        meta_capi_external_id(&cust_abc_9.to_ascii_uppercase()).as_deref(),
        Some(cust_abc_9)
    );
    assert_eq!(
        meta_capi_external_id("55502F40DC8B7C769880B10874ABC9D0").as_deref(),
        Some("55502f40dc8b7c769880b10874abc9d0")
    );
    assert_eq!(meta_capi_external_id("   "), None);
}

/// [python-sdk] [node-sdk]: a `+` and up to two zeros before the country
/// code go; the digits that follow are the number.
#[test]
fn zeros_written_before_the_country_code_are_dropped() {
    let digits_12125550199 = "b220e5682592149df1f2233622bf380dbbdb495ed6a836271b4ea4e1f0b2c6e4";
    for raw in [
        "00 1 212 555 0199",
        "+00 1 212 555 0199",
        "+0012125550199",
        "0 1 212 555 0199",
        "012125550199",
    ] {
        assert_eq!(
            meta_cell_for(&person(None, None, Some(raw)), "PHONE"),
            digits_12125550199,
            "{raw:?}"
        );
    }
    // With a default region a national number keeps its trunk-0 reading:
    // "020 7946 0958" in GB is London, not country code 20 (Egypt).
    assert_eq!(
        normalize_phone_e164("020 7946 0958", Some("GB")).as_deref(),
        Ok("+442079460958")
    );
    // ...and falls back to the international reading only when the national
    // one is impossible and the international one is valid.
    assert_eq!(
        normalize_phone_e164("01 212 555 0199", Some("US")).as_deref(),
        Ok("+12125550199")
    );
}

/// [node-sdk]: Meta's SDKs check the shape of an international number, not
/// the numbering plan's ranges: a number of possible length that the
/// metadata does not list yet is sent.
#[test]
fn a_possible_number_the_metadata_does_not_list_is_sent() {
    assert_eq!(
        meta_cell_for(&person(None, None, Some("+33 7 00 12 34 56")), "PHONE"),
        "4e8d688e07bb598c443190a7fe6a1ca612148b2d9475a4feadc1183d28edf46a"
    );
}
