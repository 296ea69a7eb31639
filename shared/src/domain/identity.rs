//! Identifier normalisation and hashing per destination.
//!
//! Match rate on ad platforms depends entirely on normalising exactly as the
//! platform does before SHA-256 (API-CONTRACTS §3a, §3b, §4). The rules that
//! differ by destination are kept apart on purpose:
//! * Meta hashes the phone as digits only (no `+`); Google hashes E.164 with `+`.
//! * Meta never removes gmail dots; Google does only when the destination asks
//!   (`gmail_remove_dots`, from the enhanced-conversions guide; the Customer
//!   Match example does not).
//! * A value that is already a SHA-256 hex digest is passed through lowercased,
//!   never hashed twice (a bug peers have).
//! * A `+tag` in an email local part is kept: neither platform's guide says to
//!   strip it, and stripping would merge addresses the person keeps apart.

use crate::domain::model::{Attributes, Identifiers};
use crate::domain::spec::{DestinationKind, ExportDestination, MatchKey};
use chrono::{DateTime, Datelike, NaiveDate};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::str::FromStr;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    #[error("{key}: missing")]
    Missing { key: &'static str },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityOptions {
    /// ISO alpha-2 region for phone numbers stored without a country code.
    pub default_phone_region: Option<String>,
    /// Remove dots from gmail.com / googlemail.com local parts (Google only).
    pub gmail_remove_dots: bool,
}

/// SHA-256 as lowercase hex, the form every ad platform expects.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// True for a SHA-256 hex digest (64 hex characters, any case).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Hash a normalised value, or pass an existing digest through lowercased.
fn hash_once(normalised: &str) -> String {
    if is_sha256_hex(normalised) {
        normalised.to_ascii_lowercase()
    } else {
        sha256_hex(normalised)
    }
}

/// The value trimmed and lowercased when it already is a digest.
fn pre_hashed(raw: &str) -> Option<String> {
    let t = raw.trim();
    is_sha256_hex(t).then(|| t.to_ascii_lowercase())
}

fn invalid(key: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Trim and lowercase, with a basic shape check (one `@`, a dotted domain,
/// no whitespace). With `gmail_remove_dots`, every dot of a gmail.com or
/// googlemail.com local part is removed (not only the first); `+tag` is kept.
pub fn normalize_email(raw: &str, gmail_remove_dots: bool) -> Result<String, IdentityError> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err(IdentityError::Missing { key: "email" });
    }
    if email.chars().any(char::is_whitespace) {
        return Err(invalid("email", "contains whitespace"));
    }
    let (local, domain) = email
        .split_once('@')
        .ok_or_else(|| invalid("email", "no '@'"))?;
    if local.is_empty() {
        return Err(invalid("email", "empty local part"));
    }
    if domain.contains('@') {
        return Err(invalid("email", "more than one '@'"));
    }
    let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
    if !labels_ok {
        return Err(invalid("email", "domain is not a dotted host name"));
    }
    if gmail_remove_dots && (domain == "gmail.com" || domain == "googlemail.com") {
        let local: String = local.chars().filter(|&c| c != '.').collect();
        if local.is_empty() {
            return Err(invalid("email", "empty local part"));
        }
        return Ok(format!("{local}@{domain}"));
    }
    Ok(email)
}

/// Longest input worth handing to the phone parser; anything longer is noise.
const MAX_PHONE_INPUT: usize = 64;

/// E.164 with `+` ("+14155551234"). A number without a country code needs
/// `default_region` (ISO alpha-2); a leading `00` international prefix is read
/// as `+`; digits alone with no region are tried as a full international
/// number. Numbers the metadata says are not valid are `Invalid`.
pub fn normalize_phone_e164(
    raw: &str,
    default_region: Option<&str>,
) -> Result<String, IdentityError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(IdentityError::Missing { key: "phone" });
    }
    if trimmed.len() > MAX_PHONE_INPUT {
        return Err(invalid("phone", "too long"));
    }
    let region = match default_region.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => Some(
            phonenumber::country::Id::from_str(&r.to_ascii_uppercase())
                .map_err(|_| invalid("phone", format!("unknown default region {r:?}")))?,
        ),
        None => None,
    };
    // "00" is the international prefix almost everywhere but NANP (where no
    // national number starts with 0), so reading it as "+" is safe.
    let compact: String = trimmed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
        .collect();
    let candidate = match compact.strip_prefix("00") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit() && c != '0') => {
            format!("+{rest}")
        }
        _ => trimmed.to_string(),
    };
    let candidate = if region.is_none()
        && !candidate.starts_with('+')
        && !compact.is_empty()
        && compact.bytes().all(|b| b.is_ascii_digit())
        && !compact.starts_with('0')
    {
        format!("+{compact}")
    } else {
        candidate
    };
    let number = phonenumber::parse(region, &candidate)
        .map_err(|e| invalid("phone", format!("not a phone number ({e})")))?;
    if !phonenumber::is_valid(&number) {
        return Err(invalid("phone", "not a valid number for its country"));
    }
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    if e164.len() < 3 || !e164.starts_with('+') {
        return Err(invalid("phone", "could not format as E.164"));
    }
    Ok(e164)
}

/// Meta's phone form: the E.164 digits without `+` (country code included).
pub fn meta_phone_digits(e164: &str) -> String {
    e164.chars().filter(char::is_ascii_digit).collect()
}

/// Collapse runs of whitespace to one space and trim.
fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Meta FN / LN: trimmed, lowercase, punctuation removed, accents kept.
pub fn normalize_name(raw: &str) -> Option<String> {
    let kept: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect();
    Some(collapse_spaces(&kept)).filter(|s| !s.is_empty())
}

/// Google names: trimmed, lowercase, inner spaces collapsed (Google does not
/// ask for punctuation to be removed).
pub fn normalize_name_google(raw: &str) -> Option<String> {
    Some(collapse_spaces(&raw.to_lowercase())).filter(|s| !s.is_empty())
}

/// Meta FI: the first letter of the normalised first name.
pub fn first_initial(raw: &str) -> Option<String> {
    normalize_name(raw).and_then(|n| n.chars().next().map(String::from))
}

/// Lowercase letters and digits only: no spaces, no punctuation.
fn squash(raw: &str) -> Option<String> {
    let s: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    Some(s).filter(|s| !s.is_empty())
}

/// Meta CT: lowercase, no spaces or punctuation ("San Francisco" -> "sanfrancisco").
pub fn normalize_city(raw: &str) -> Option<String> {
    squash(raw)
}

/// US states, DC and territories: (code, name without spaces).
const US_STATES: &[(&str, &str)] = &[
    ("al", "alabama"),
    ("ak", "alaska"),
    ("az", "arizona"),
    ("ar", "arkansas"),
    ("ca", "california"),
    ("co", "colorado"),
    ("ct", "connecticut"),
    ("de", "delaware"),
    ("fl", "florida"),
    ("ga", "georgia"),
    ("hi", "hawaii"),
    ("id", "idaho"),
    ("il", "illinois"),
    ("in", "indiana"),
    ("ia", "iowa"),
    ("ks", "kansas"),
    ("ky", "kentucky"),
    ("la", "louisiana"),
    ("me", "maine"),
    ("md", "maryland"),
    ("ma", "massachusetts"),
    ("mi", "michigan"),
    ("mn", "minnesota"),
    ("ms", "mississippi"),
    ("mo", "missouri"),
    ("mt", "montana"),
    ("ne", "nebraska"),
    ("nv", "nevada"),
    ("nh", "newhampshire"),
    ("nj", "newjersey"),
    ("nm", "newmexico"),
    ("ny", "newyork"),
    ("nc", "northcarolina"),
    ("nd", "northdakota"),
    ("oh", "ohio"),
    ("ok", "oklahoma"),
    ("or", "oregon"),
    ("pa", "pennsylvania"),
    ("ri", "rhodeisland"),
    ("sc", "southcarolina"),
    ("sd", "southdakota"),
    ("tn", "tennessee"),
    ("tx", "texas"),
    ("ut", "utah"),
    ("vt", "vermont"),
    ("va", "virginia"),
    ("wa", "washington"),
    ("wv", "westvirginia"),
    ("wi", "wisconsin"),
    ("wy", "wyoming"),
    ("dc", "districtofcolumbia"),
    ("dc", "washingtondc"),
    ("pr", "puertorico"),
    ("gu", "guam"),
    ("vi", "usvirginislands"),
    ("as", "americansamoa"),
    ("mp", "northernmarianaislands"),
];

/// Meta ST. For the US (or an unknown country) a full state name maps to its
/// 2-letter code; otherwise lowercase with no spaces or punctuation.
pub fn normalize_state(raw: &str, country: Option<&str>) -> Option<String> {
    let squashed = squash(raw)?;
    let us_or_unknown = match country.and_then(normalize_country) {
        Some(c) => c == "us",
        None => true,
    };
    if us_or_unknown {
        if let Some((code, _)) = US_STATES.iter().find(|(_, name)| *name == squashed) {
            return Some((*code).to_string());
        }
    }
    Some(squashed)
}

/// Meta ZIP. US: the first 5 digits ("94107-1234" -> "94107"). Unknown
/// country: the same when the value looks like a US ZIP. Elsewhere lowercase
/// with no spaces or dashes ("SW1A 1AA" -> "sw1a1aa").
pub fn normalize_zip(raw: &str, country: Option<&str>) -> Option<String> {
    let trimmed = raw.trim();
    let country = country.and_then(normalize_country);
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let looks_us = {
        let b = trimmed.as_bytes();
        (b.len() == 5 || (b.len() == 10 && b[5] == b'-') || b.len() == 9)
            && trimmed.chars().all(|c| c.is_ascii_digit() || c == '-')
    };
    match country.as_deref() {
        Some("us") => (digits.len() >= 5).then(|| digits[..5].to_string()),
        None if looks_us && digits.len() >= 5 => Some(digits[..5].to_string()),
        _ => squash(trimmed),
    }
}

/// Common English names and alpha-3 codes for major countries: (alpha-2, aliases).
const COUNTRY_ALIASES: &[(&str, &[&str])] = &[
    (
        "us",
        &["usa", "unitedstates", "unitedstatesofamerica", "america"],
    ),
    (
        "gb",
        &[
            "gbr",
            "uk",
            "unitedkingdom",
            "greatbritain",
            "britain",
            "england",
            "scotland",
            "wales",
            "northernireland",
        ],
    ),
    ("ca", &["can", "canada"]),
    ("au", &["aus", "australia"]),
    ("nz", &["nzl", "newzealand"]),
    ("ie", &["irl", "ireland"]),
    ("de", &["deu", "germany", "deutschland"]),
    ("fr", &["fra", "france"]),
    ("es", &["esp", "spain", "espana", "españa"]),
    ("it", &["ita", "italy", "italia"]),
    ("pt", &["prt", "portugal"]),
    ("nl", &["nld", "netherlands", "holland", "thenetherlands"]),
    ("be", &["bel", "belgium"]),
    ("ch", &["che", "switzerland"]),
    ("at", &["aut", "austria"]),
    ("se", &["swe", "sweden"]),
    ("no", &["nor", "norway"]),
    ("dk", &["dnk", "denmark"]),
    ("fi", &["fin", "finland"]),
    ("pl", &["pol", "poland"]),
    ("cz", &["cze", "czechia", "czechrepublic"]),
    ("gr", &["grc", "greece"]),
    ("ro", &["rou", "romania"]),
    ("hu", &["hun", "hungary"]),
    ("ua", &["ukr", "ukraine"]),
    ("ru", &["rus", "russia", "russianfederation"]),
    ("tr", &["tur", "turkey", "turkiye", "türkiye"]),
    ("il", &["isr", "israel"]),
    ("ae", &["are", "uae", "unitedarabemirates"]),
    ("sa", &["sau", "saudiarabia"]),
    ("eg", &["egy", "egypt"]),
    ("za", &["zaf", "southafrica"]),
    ("ng", &["nga", "nigeria"]),
    ("ke", &["ken", "kenya"]),
    ("ma", &["mar", "morocco"]),
    ("in", &["ind", "india"]),
    ("pk", &["pak", "pakistan"]),
    ("bd", &["bgd", "bangladesh"]),
    ("cn", &["chn", "china", "peoplesrepublicofchina"]),
    ("hk", &["hkg", "hongkong"]),
    ("tw", &["twn", "taiwan"]),
    ("jp", &["jpn", "japan"]),
    ("kr", &["kor", "southkorea", "korea", "republicofkorea"]),
    ("sg", &["sgp", "singapore"]),
    ("my", &["mys", "malaysia"]),
    ("id", &["idn", "indonesia"]),
    ("th", &["tha", "thailand"]),
    ("vn", &["vnm", "vietnam"]),
    ("ph", &["phl", "philippines"]),
    ("mx", &["mex", "mexico", "méxico"]),
    ("br", &["bra", "brazil", "brasil"]),
    ("ar", &["arg", "argentina"]),
    ("cl", &["chl", "chile"]),
    ("co", &["col", "colombia"]),
    ("pe", &["per", "peru"]),
];

/// Meta COUNTRY / Google country code: ISO 3166-1 alpha-2, lowercase.
/// Accepts any alpha-2 region the phone metadata knows, plus the common
/// English names and alpha-3 codes of major countries ("UK" -> "gb").
pub fn normalize_country(raw: &str) -> Option<String> {
    let squashed = squash(raw)?;
    if let Some((code, _)) = COUNTRY_ALIASES
        .iter()
        .find(|(_, aliases)| aliases.contains(&squashed.as_str()))
    {
        return Some((*code).to_string());
    }
    if squashed.len() == 2
        && squashed.bytes().all(|b| b.is_ascii_lowercase())
        && phonenumber::country::Id::from_str(&squashed.to_ascii_uppercase()).is_ok()
    {
        return Some(squashed);
    }
    None
}

/// Meta GEN: "m" or "f"; anything else is unknown.
pub fn normalize_gender(raw: &str) -> Option<String> {
    match squash(raw)?.as_str() {
        "m" | "male" | "man" | "boy" | "masculine" | "masculino" | "homme" => Some("m".into()),
        "f" | "female" | "woman" | "girl" | "feminine" | "femenino" | "femme" | "w" => {
            Some("f".into())
        }
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateOfBirth {
    /// "1990"
    pub year: String,
    /// "04"
    pub month: String,
    /// "07"
    pub day: String,
}

impl DateOfBirth {
    fn from_date(d: NaiveDate) -> Option<Self> {
        (1..=9999).contains(&d.year()).then(|| DateOfBirth {
            year: format!("{:04}", d.year()),
            month: format!("{:02}", d.month()),
            day: format!("{:02}", d.day()),
        })
    }
}

/// Accepts `YYYY-MM-DD` (a trailing time is ignored), `MM/DD/YYYY` (US order)
/// and Unix seconds; an impossible date is unknown.
pub fn normalize_date_of_birth(raw: &str) -> Option<DateOfBirth> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    let is_int = {
        let digits = t.strip_prefix('-').unwrap_or(t);
        !digits.is_empty() && digits.len() <= 12 && digits.bytes().all(|b| b.is_ascii_digit())
    };
    let date = if is_int {
        let secs: i64 = t.parse().ok()?;
        DateTime::from_timestamp(secs, 0)?.date_naive()
    } else if t.contains('/') {
        let mut parts = t.splitn(3, '/');
        let m: u32 = parts.next()?.trim().parse().ok()?;
        let d: u32 = parts.next()?.trim().parse().ok()?;
        let y_part = parts.next()?.trim();
        if y_part.len() != 4 {
            return None;
        }
        NaiveDate::from_ymd_opt(y_part.parse().ok()?, m, d)?
    } else {
        let head = t.get(..10)?;
        let rest = &t[10..];
        if !(rest.is_empty() || rest.starts_with(['T', 't', ' '])) {
            return None;
        }
        NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()?
    };
    DateOfBirth::from_date(date)
}

/// Default match keys when an export binding lists none.
pub fn default_keys(kind: DestinationKind) -> Vec<MatchKey> {
    match kind {
        DestinationKind::MetaAudience => vec![MatchKey::Email, MatchKey::Phone, MatchKey::ExternId],
        _ => vec![MatchKey::Email, MatchKey::Phone],
    }
}

/// The match keys a binding sends: its own list, or the destination's
/// defaults when it lists none.
pub fn match_keys(binding: &ExportDestination, kind: DestinationKind) -> Vec<MatchKey> {
    if binding.keys.is_empty() {
        default_keys(kind)
    } else {
        binding.keys.clone()
    }
}

/// One Meta multi-key column and the match key it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MetaColumn {
    Email,
    Phone,
    ExternId,
    FirstName,
    FirstInitial,
    LastName,
    City,
    State,
    Zip,
    Country,
    Gender,
    BirthYear,
    BirthMonth,
    BirthDay,
}

/// Columns in schema order. FI comes with FN: it still matches when only the
/// initial agrees.
const META_COLUMNS: &[(MetaColumn, MatchKey, &str)] = &[
    (MetaColumn::Email, MatchKey::Email, "EMAIL"),
    (MetaColumn::Phone, MatchKey::Phone, "PHONE"),
    (MetaColumn::ExternId, MatchKey::ExternId, "EXTERN_ID"),
    (MetaColumn::FirstName, MatchKey::FirstName, "FN"),
    (MetaColumn::FirstInitial, MatchKey::FirstName, "FI"),
    (MetaColumn::LastName, MatchKey::LastName, "LN"),
    (MetaColumn::City, MatchKey::City, "CT"),
    (MetaColumn::State, MatchKey::State, "ST"),
    (MetaColumn::Zip, MatchKey::Zip, "ZIP"),
    (MetaColumn::Country, MatchKey::Country, "COUNTRY"),
    (MetaColumn::Gender, MatchKey::Gender, "GEN"),
    (MetaColumn::BirthYear, MatchKey::DateOfBirth, "DOBY"),
    (MetaColumn::BirthMonth, MatchKey::DateOfBirth, "DOBM"),
    (MetaColumn::BirthDay, MatchKey::DateOfBirth, "DOBD"),
];

fn meta_columns(
    keys: &[MatchKey],
) -> impl Iterator<Item = &'static (MetaColumn, MatchKey, &'static str)> + '_ {
    META_COLUMNS
        .iter()
        .filter(move |(_, key, _)| keys.contains(key))
}

/// Meta multi-key schema column names for these keys, in a stable order
/// (EMAIL, PHONE, EXTERN_ID, FN, FI, LN, CT, ST, ZIP, COUNTRY, GEN, DOBY,
/// DOBM, DOBD), whatever order or repeats `keys` has.
pub fn meta_schema(keys: &[MatchKey]) -> Vec<&'static str> {
    meta_columns(keys).map(|(_, _, name)| *name).collect()
}

/// An export attribute as text: strings trimmed, integral numbers without
/// a fraction ("94107", not "94107.0"); other JSON kinds are unknown.
fn attr_text(attrs: &Attributes, key: MatchKey) -> Option<String> {
    let text = match attrs.get(key.as_str())? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        _ => return None,
    };
    Some(text).filter(|s| !s.is_empty())
}

/// An attribute that is a digest already, or normalised then hashed.
fn hashed_attr(
    attrs: &Attributes,
    key: MatchKey,
    normalise: impl FnOnce(&str) -> Option<String>,
) -> Option<String> {
    let raw = attr_text(attrs, key)?;
    pre_hashed(&raw).or_else(|| normalise(&raw).map(|n| hash_once(&n)))
}

fn meta_cell(
    column: MetaColumn,
    ids: &Identifiers,
    attrs: &Attributes,
    opts: &IdentityOptions,
    country: Option<&str>,
    dob: Option<&DateOfBirth>,
) -> Option<String> {
    match column {
        MetaColumn::Email => {
            let raw = ids.email()?;
            pre_hashed(raw).or_else(|| normalize_email(raw, false).ok().map(|e| sha256_hex(&e)))
        }
        MetaColumn::Phone => {
            let raw = ids.phone()?;
            pre_hashed(raw).or_else(|| {
                normalize_phone_e164(raw, opts.default_phone_region.as_deref())
                    .ok()
                    .map(|e| sha256_hex(&meta_phone_digits(&e)))
            })
        }
        MetaColumn::ExternId => ids.id().map(str::to_string),
        MetaColumn::FirstName => hashed_attr(attrs, MatchKey::FirstName, normalize_name),
        MetaColumn::FirstInitial => {
            let raw = attr_text(attrs, MatchKey::FirstName)?;
            if is_sha256_hex(&raw) {
                return None;
            }
            first_initial(&raw).map(|i| sha256_hex(&i))
        }
        MetaColumn::LastName => hashed_attr(attrs, MatchKey::LastName, normalize_name),
        MetaColumn::City => hashed_attr(attrs, MatchKey::City, normalize_city),
        MetaColumn::State => hashed_attr(attrs, MatchKey::State, |s| normalize_state(s, country)),
        MetaColumn::Zip => hashed_attr(attrs, MatchKey::Zip, |s| normalize_zip(s, country)),
        MetaColumn::Country => hashed_attr(attrs, MatchKey::Country, normalize_country),
        MetaColumn::Gender => hashed_attr(attrs, MatchKey::Gender, normalize_gender),
        MetaColumn::BirthYear => dob.map(|d| sha256_hex(&d.year)),
        MetaColumn::BirthMonth => dob.map(|d| sha256_hex(&d.month)),
        MetaColumn::BirthDay => dob.map(|d| sha256_hex(&d.day)),
    }
}

/// The person's country (alpha-2) when the export carries one; it decides
/// the US rules for state and ZIP.
fn person_country(attrs: &Attributes) -> Option<String> {
    attr_text(attrs, MatchKey::Country).and_then(|c| normalize_country(&c))
}

/// One Meta row matching `meta_schema(keys)`: hashed per Meta rules, EXTERN_ID
/// (= ids.id) unhashed, "" for unknown or unusable values; Err(Missing{key:
/// "identifiers"}) when every column is empty.
pub fn meta_row(
    keys: &[MatchKey],
    ids: &Identifiers,
    attrs: &Attributes,
    opts: &IdentityOptions,
) -> Result<Vec<String>, IdentityError> {
    let country = person_country(attrs);
    let dob = attr_text(attrs, MatchKey::DateOfBirth).and_then(|d| normalize_date_of_birth(&d));
    let row: Vec<String> = meta_columns(keys)
        .map(|(column, _, _)| {
            meta_cell(*column, ids, attrs, opts, country.as_deref(), dob.as_ref())
                .unwrap_or_default()
        })
        .collect();
    if row.iter().all(String::is_empty) {
        return Err(IdentityError::Missing { key: "identifiers" });
    }
    Ok(row)
}

/// One Google Ads `UserIdentifier` (a oneof: exactly one field set).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GoogleIdentifier {
    HashedEmail(String),
    HashedPhoneNumber(String),
    ThirdPartyUserId(String),
    AddressInfo {
        hashed_first_name: String,
        hashed_last_name: String,
        /// Alpha-2, uppercase, not hashed.
        country_code: String,
        /// Not hashed.
        postal_code: String,
    },
}

impl GoogleIdentifier {
    /// The Google Ads REST JSON form (lowerCamelCase field names).
    pub fn to_json(&self) -> Value {
        match self {
            GoogleIdentifier::HashedEmail(h) => json!({ "hashedEmail": h }),
            GoogleIdentifier::HashedPhoneNumber(h) => json!({ "hashedPhoneNumber": h }),
            GoogleIdentifier::ThirdPartyUserId(id) => json!({ "thirdPartyUserId": id }),
            GoogleIdentifier::AddressInfo {
                hashed_first_name,
                hashed_last_name,
                country_code,
                postal_code,
            } => json!({
                "addressInfo": {
                    "hashedFirstName": hashed_first_name,
                    "hashedLastName": hashed_last_name,
                    "countryCode": country_code,
                    "postalCode": postal_code,
                }
            }),
        }
    }
}

/// Google's cap on identifiers per UserData (one person).
pub const GOOGLE_MAX_IDENTIFIERS: usize = 20;

/// Google identifiers for one person: email hashed (gmail dots removed only
/// when `opts.gmail_remove_dots`), phone E.164 WITH `+` hashed, ExternId as
/// ThirdPartyUserId (unhashed), and AddressInfo when first name, last name,
/// country and zip are all keys and all known. At most 20; Err(Missing) if none.
pub fn google_identifiers(
    keys: &[MatchKey],
    ids: &Identifiers,
    attrs: &Attributes,
    opts: &IdentityOptions,
) -> Result<Vec<GoogleIdentifier>, IdentityError> {
    let mut out = Vec::new();
    if keys.contains(&MatchKey::Email) {
        if let Some(raw) = ids.email() {
            let hashed = pre_hashed(raw).or_else(|| {
                normalize_email(raw, opts.gmail_remove_dots)
                    .ok()
                    .map(|e| sha256_hex(&e))
            });
            out.extend(hashed.map(GoogleIdentifier::HashedEmail));
        }
    }
    if keys.contains(&MatchKey::Phone) {
        if let Some(raw) = ids.phone() {
            let hashed = pre_hashed(raw).or_else(|| {
                normalize_phone_e164(raw, opts.default_phone_region.as_deref())
                    .ok()
                    .map(|e| sha256_hex(&e))
            });
            out.extend(hashed.map(GoogleIdentifier::HashedPhoneNumber));
        }
    }
    if keys.contains(&MatchKey::ExternId) {
        out.extend(
            ids.id()
                .map(|id| GoogleIdentifier::ThirdPartyUserId(id.to_string())),
        );
    }
    let address_keys = [
        MatchKey::FirstName,
        MatchKey::LastName,
        MatchKey::Country,
        MatchKey::Zip,
    ];
    if address_keys.iter().all(|k| keys.contains(k)) {
        out.extend(google_address(attrs));
    }
    if out.is_empty() {
        return Err(IdentityError::Missing { key: "identifiers" });
    }
    out.truncate(GOOGLE_MAX_IDENTIFIERS);
    Ok(out)
}

fn google_address(attrs: &Attributes) -> Option<GoogleIdentifier> {
    let first = hashed_attr(attrs, MatchKey::FirstName, normalize_name_google)?;
    let last = hashed_attr(attrs, MatchKey::LastName, normalize_name_google)?;
    let country = person_country(attrs)?;
    let postal = normalize_zip(&attr_text(attrs, MatchKey::Zip)?, Some(&country))?;
    Some(GoogleIdentifier::AddressInfo {
        hashed_first_name: first,
        hashed_last_name: last,
        country_code: country.to_ascii_uppercase(),
        postal_code: postal,
    })
}

#[cfg(test)]
mod tests {
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
        assert_eq!(normalize_name("Zoë  Anne").as_deref(), Some("zoë anne"));
        assert_eq!(normalize_name(" .,- "), None);
        assert_eq!(first_initial("  Émile").as_deref(), Some("é"));
        assert_eq!(first_initial("'Mary").as_deref(), Some("m"));
        assert_eq!(first_initial(""), None);
        assert_eq!(
            normalize_name_google("  Jean-Luc  Picard ").as_deref(),
            Some("jean-luc picard")
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
            Some("sw1a1aa")
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
                hashed_first_name: sha256_hex("jean-luc"),
                hashed_last_name: sha256_hex("picard"),
                country_code: "US".into(),
                postal_code: "94107".into(),
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
            let opts = IdentityOptions { default_phone_region: region, gmail_remove_dots: true };
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
}
