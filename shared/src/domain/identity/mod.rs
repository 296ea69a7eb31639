//! Identifier normalisation and hashing per destination.
//!
//! Match rate on ad platforms depends entirely on normalising exactly as the
//! platform does before SHA-256 (API-CONTRACTS §3a, §3b, §4). The rules that
//! differ by destination are kept apart on purpose:
//! * Meta hashes the phone as digits only (no `+`); Google hashes E.164 with `+`.
//! * Meta never removes gmail dots; Google does only when the destination asks
//!   (`gmail_remove_dots`: on by default for the Data Manager destination, off
//!   for the Customer Match one).
//! * A value that is already a digest is passed through lowercased, never
//!   hashed twice (a bug peers have): SHA-256 (64 hex) everywhere, and for
//!   Meta also MD5 (32 hex), as Meta's own SDKs accept it.
//! * A `+tag` in an email local part is kept, except for Google's Gmail
//!   addresses when the destination asks (`gmail_strip_plus_suffix`: on by
//!   default for the Data Manager destination, as Google's formatting page
//!   and its Java formatting utility do). Once a Gmail local part loses its
//!   dots, consecutive dots in it are harmless and no longer refused.
//! * Google names lose punctuation, a given name its leading titles ("Mrs.")
//!   and a family name its trailing suffixes ("Jr."); a name that is nothing
//!   but those gives no address identifier. Sources: `docs/google-identifiers.md`.
//! * A phone number that is *possible* for its country (right length) is
//!   kept even when the numbering metadata does not know its range yet; a
//!   trunk `0` written after the country code ("+44 (0)20 …") is dropped.
//! * Meta: a `YYYYMMDD` birth date is that day; a UK ZIP is cut to
//!   Area/District/Sector; a CAPI `external_id` is trimmed and lower-cased
//!   before hashing; zeros before a country code go. Sources:
//!   `docs/meta-identifiers.md`, vectors in `vectors/meta.rs`.

use crate::domain::model::{Attributes, Identifiers};
use crate::domain::spec::{DestinationKind, ExportDestination, MatchKey};
use chrono::{DateTime, Datelike, NaiveDate};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

mod phone;
mod places;

pub use phone::{meta_phone_digits, normalize_phone_e164};
pub use places::{normalize_city, normalize_country, normalize_state, normalize_zip};

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
    /// Remove a `+suffix` from gmail.com / googlemail.com local parts
    /// (Google only).
    pub gmail_strip_plus_suffix: bool,
}

/// SHA-256 as lowercase hex, the form every ad platform expects.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// True for a SHA-256 hex digest (64 hex characters, any case).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True for an MD5 hex digest (32 hex characters, any case).
pub fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Hash a normalised value, or pass an existing digest through lowercased.
fn hash_once(normalised: &str) -> String {
    if is_sha256_hex(normalised) {
        normalised.to_ascii_lowercase()
    } else {
        sha256_hex(normalised)
    }
}

/// The value trimmed and lowercased when it already is a SHA-256 digest
/// (Google takes SHA-256 only).
fn pre_hashed(raw: &str) -> Option<String> {
    let t = raw.trim();
    is_sha256_hex(t).then(|| t.to_ascii_lowercase())
}

/// Meta's rule: a SHA-256 or an MD5 digest passes through lowercased. Checked
/// on the raw value, before a phone loses its non-digits.
fn pre_hashed_meta(raw: &str) -> Option<String> {
    let t = raw.trim();
    (is_sha256_hex(t) || is_md5_hex(t)).then(|| t.to_ascii_lowercase())
}

fn invalid(key: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Trim and lowercase, with a basic shape check (one `@`, a dotted domain,
/// no consecutive dots, no whitespace). With `gmail_remove_dots`, every dot
/// of a gmail.com or googlemail.com local part is removed (not only the
/// first), so consecutive ones there are no longer refused; `+tag` is kept.
pub fn normalize_email(raw: &str, gmail_remove_dots: bool) -> Result<String, IdentityError> {
    email_form(raw, gmail_remove_dots, false)
}

/// gmail.com and googlemail.com: the same mailboxes, the same rules (the
/// domain itself is kept as written, as Google's own utility does).
fn is_gmail(domain: &str) -> bool {
    domain == "gmail.com" || domain == "googlemail.com"
}

/// The email checked and normalised; for a Gmail address, the `+suffix`
/// (from the first `+`) removed when `strip_plus` and every dot when
/// `remove_dots`. The local part is checked for consecutive dots and
/// emptiness only after that: what the rules remove cannot make it invalid.
fn email_form(raw: &str, remove_dots: bool, strip_plus: bool) -> Result<String, IdentityError> {
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
    if domain.contains("..") {
        return Err(invalid("email", "consecutive dots"));
    }
    let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
    if !labels_ok {
        return Err(invalid("email", "domain is not a dotted host name"));
    }
    let mut local = local.to_string();
    if is_gmail(domain) {
        if strip_plus {
            if let Some(at) = local.find('+') {
                local.truncate(at);
            }
        }
        if remove_dots {
            local.retain(|c| c != '.');
        }
    }
    if local.is_empty() {
        return Err(invalid("email", "empty local part"));
    }
    if local.contains("..") {
        return Err(invalid("email", "consecutive dots"));
    }
    Ok(format!("{local}@{domain}"))
}

/// Google's email form (API-CONTRACTS §4b): lowercase, whitespace removed
/// wherever it is (leading, trailing and inner), every dot of a Gmail local
/// part removed when `opts.gmail_remove_dots`, and a Gmail `+suffix` removed
/// when `opts.gmail_strip_plus_suffix`. Other domains keep dots and `+tags`.
pub fn normalize_email_google(raw: &str, opts: &IdentityOptions) -> Result<String, IdentityError> {
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    email_form(
        &compact,
        opts.gmail_remove_dots,
        opts.gmail_strip_plus_suffix,
    )
}

/// Meta FN / LN: lowercase, no punctuation and no whitespace at all (inner
/// spaces too, as Meta's capi-param-builder does: "Mary Ann" -> "maryann"),
/// accents kept.
pub fn normalize_name(raw: &str) -> Option<String> {
    squash(raw)
}

/// Titles written before a given name, compared without their dots.
const GOOGLE_NAME_PREFIXES: &[&str] = &["mr", "mrs", "ms", "miss", "mx", "dr", "prof"];

/// Generational and professional suffixes written after a family name,
/// compared without their dots ("Ph.D." is `phd`).
const GOOGLE_NAME_SUFFIXES: &[&str] = &[
    "jr", "sr", "ii", "iii", "iv", "v", "vi", "2nd", "3rd", "md", "phd", "dds", "dvm", "cpa", "esq",
];

/// Punctuation and symbols a Google name loses: ASCII punctuation, the
/// Latin-1 signs (`¡`, `«`, `·`, …), the general punctuation block (dashes,
/// curly quotes, `…`) and the CJK / fullwidth punctuation. Letters, digits,
/// combining marks and joiners are kept, so no script loses its letters.
fn is_name_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || (('\u{a1}'..='\u{bf}').contains(&c) && !c.is_alphanumeric())
        || c == '\u{d7}'
        || c == '\u{f7}'
        || ('\u{2010}'..='\u{2027}').contains(&c)
        || ('\u{2030}'..='\u{205e}').contains(&c)
        || ('\u{3001}'..='\u{3003}').contains(&c)
        || ('\u{3008}'..='\u{301f}').contains(&c)
        || ('\u{ff01}'..='\u{ff0f}').contains(&c)
        || ('\u{ff1a}'..='\u{ff20}').contains(&c)
        || ('\u{ff3b}'..='\u{ff40}').contains(&c)
        || ('\u{ff5b}'..='\u{ff65}').contains(&c)
}

/// A name's words: lowercased, split at whitespace and commas, each without
/// punctuation, empty ones dropped.
fn google_name_words(raw: &str) -> Vec<String> {
    raw.to_lowercase()
        .split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.chars().filter(|c| !is_name_punctuation(*c)).collect())
        .filter(|w: &String| !w.is_empty())
        .collect()
}

fn join_name(words: &[String]) -> Option<String> {
    Some(words.join(" ")).filter(|s| !s.is_empty())
}

/// Google's given name: lowercase, no punctuation, no leading or trailing
/// whitespace (inner runs collapsed to one space), leading titles ("Mrs.",
/// "Dr") removed. A value that is only titles or punctuation is unknown
/// (None): no hash of an empty or meaningless name is ever sent.
pub fn normalize_given_name_google(raw: &str) -> Option<String> {
    let words = google_name_words(raw);
    let first = words
        .iter()
        .position(|w| !GOOGLE_NAME_PREFIXES.contains(&w.as_str()))?;
    join_name(&words[first..])
}

/// Google's family name: as the given name, with trailing suffixes ("Jr.",
/// "III", ", Ph.D.") removed instead of titles. A value that is only
/// suffixes or punctuation is unknown (None).
pub fn normalize_family_name_google(raw: &str) -> Option<String> {
    let words = google_name_words(raw);
    let end = words
        .iter()
        .rposition(|w| !GOOGLE_NAME_SUFFIXES.contains(&w.as_str()))?;
    join_name(&words[..=end])
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
    /// A birth date in 1900 up to this year; anything else is a typo or a
    /// placeholder, and hashing it would only add a wrong identifier.
    fn from_date(d: NaiveDate) -> Option<Self> {
        let this_year = chrono::Utc::now().year();
        (1900..=this_year).contains(&d.year()).then(|| DateOfBirth {
            year: format!("{:04}", d.year()),
            month: format!("{:02}", d.month()),
            day: format!("{:02}", d.day()),
        })
    }
}

/// Accepts `YYYYMMDD` (the form Meta documents for `db`), `YYYY-MM-DD` (a
/// trailing time is ignored), `MM/DD/YYYY` (US order) and Unix seconds; an
/// impossible date, or a year outside 1900..=this year, is unknown.
///
/// Eight digits shaped like `YYYYMMDD` (month 01-12, day 01-31) are read as
/// such and nothing else: as Unix seconds they would be a day between April
/// 1970 and March 1973, while `19850704` is far likelier the 4th of July 1985
/// than the 18th of August 1970 (and `20250230` a typo than a 1970 date).
/// Other eight-digit values stay Unix seconds.
pub fn normalize_date_of_birth(raw: &str) -> Option<DateOfBirth> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    let is_int = {
        let digits = t.strip_prefix('-').unwrap_or(t);
        !digits.is_empty() && digits.len() <= 12 && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if is_int && t.len() == 8 {
        let (y, m, d) = (t[..4].parse(), t[4..6].parse(), t[6..].parse());
        if let (Ok(y), Ok(m @ 1..=12), Ok(d @ 1..=31)) = (y, m, d) {
            return NaiveDate::from_ymd_opt(y, m, d).and_then(DateOfBirth::from_date);
        }
    }
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

/// Conversions API `external_id`: trimmed and lower-cased before SHA-256, as
/// Meta's Node business SDK does (`ServerSideUtils.normalizeAndHash`), so
/// `Cust-ABC-9` and `cust-abc-9` match the same person; a SHA-256 or MD5
/// digest passes through lower-cased. Sources: `docs/meta-identifiers.md`.
pub fn meta_capi_external_id(raw: &str) -> Option<String> {
    let id = raw.trim().to_lowercase();
    if id.is_empty() {
        return None;
    }
    Some(pre_hashed_meta(&id).unwrap_or_else(|| sha256_hex(&id)))
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
    LookalikeValue,
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
    (
        MetaColumn::LookalikeValue,
        MatchKey::LookalikeValue,
        "LOOKALIKE_VALUE",
    ),
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

/// An attribute that is a digest already (SHA-256 or, for Meta, MD5), or
/// normalised then hashed.
fn hashed_attr(
    attrs: &Attributes,
    key: MatchKey,
    normalise: impl FnOnce(&str) -> Option<String>,
) -> Option<String> {
    let raw = attr_text(attrs, key)?;
    pre_hashed_meta(&raw).or_else(|| normalise(&raw).map(|n| hash_once(&n)))
}

/// Google's form of an attribute: a SHA-256 digest already, or normalised
/// then hashed (Google takes no MD5).
fn hashed_attr_google(
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
            pre_hashed_meta(raw)
                .or_else(|| normalize_email(raw, false).ok().map(|e| sha256_hex(&e)))
        }
        MetaColumn::Phone => {
            let raw = ids.phone()?;
            pre_hashed_meta(raw).or_else(|| {
                normalize_phone_e164(raw, opts.default_phone_region.as_deref())
                    .ok()
                    .map(|e| sha256_hex(&meta_phone_digits(&e)))
            })
        }
        MetaColumn::ExternId => ids.id().map(str::to_string),
        MetaColumn::FirstName => hashed_attr(attrs, MatchKey::FirstName, normalize_name),
        MetaColumn::FirstInitial => {
            let raw = attr_text(attrs, MatchKey::FirstName)?;
            if pre_hashed_meta(&raw).is_some() {
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
        MetaColumn::LookalikeValue => lookalike_value(attrs),
    }
}

/// A value-based audience's value: a finite number >= 0, as text (the
/// Meta destination sends the column as a JSON number).
fn lookalike_value(attrs: &Attributes) -> Option<String> {
    let n = match attrs.get(MatchKey::LookalikeValue.as_str())? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then(|| {
        if n.fract() == 0.0 && n < 1e15 {
            format!("{n:.0}")
        } else {
            n.to_string()
        }
    })
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
    let columns: Vec<MetaColumn> = meta_columns(keys).map(|(c, _, _)| *c).collect();
    let row: Vec<String> = columns
        .iter()
        .map(|column| {
            meta_cell(*column, ids, attrs, opts, country.as_deref(), dob.as_ref())
                .unwrap_or_default()
        })
        .collect();
    // A value alone identifies nobody.
    let identifies = columns
        .iter()
        .zip(&row)
        .any(|(c, cell)| *c != MetaColumn::LookalikeValue && !cell.is_empty());
    if !identifies {
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
/// when `opts.gmail_remove_dots`, a gmail `+suffix` only when
/// `opts.gmail_strip_plus_suffix`), phone E.164 WITH `+` hashed, ExternId as
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
                normalize_email_google(raw, opts)
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

/// Google's postalCode: trimmed only, never hashed (API-CONTRACTS §4b: the
/// dash of a Portuguese "1229-076" stays, a US ZIP+4 stays whole).
pub fn normalize_postal_code_google(raw: &str) -> Option<String> {
    Some(raw.trim().to_string()).filter(|s| !s.is_empty())
}

fn google_address(attrs: &Attributes) -> Option<GoogleIdentifier> {
    let first = hashed_attr_google(attrs, MatchKey::FirstName, normalize_given_name_google)?;
    let last = hashed_attr_google(attrs, MatchKey::LastName, normalize_family_name_google)?;
    let country = person_country(attrs)?;
    let postal = normalize_postal_code_google(&attr_text(attrs, MatchKey::Zip)?)?;
    Some(GoogleIdentifier::AddressInfo {
        hashed_first_name: first,
        hashed_last_name: last,
        country_code: country.to_ascii_uppercase(),
        postal_code: postal,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod vectors;
