//! Phone numbers: E.164 for every platform, digits only for Meta.

use std::str::FromStr;

use super::{invalid, IdentityError};

/// Longest input worth handing to the phone parser; anything longer is noise.
const MAX_PHONE_INPUT: usize = 64;

/// E.164 with `+` ("+14155551234"). A number without a country code needs
/// `default_region` (ISO alpha-2); a leading `00` international prefix is read
/// as `+`; digits alone with no region are tried as a full international
/// number. A number is kept when the metadata calls it valid or when its
/// length is possible for its country (a new range the metadata has not
/// caught up with); only impossible numbers are `Invalid`. A trunk `0`
/// written after the country code ("+44 (0)20 7946 0958", "+44 07911 …") is
/// dropped when the number is not valid with it. Zeros written before the
/// country code ("0 1 212 …", "+00 1 …") are dropped when the number read
/// that way is valid and the plain reading is not (docs/meta-identifiers.md).
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
    let number = match phonenumber::parse(region, &candidate) {
        Ok(number) => keepable(number).ok_or("not a possible number for its country".to_string()),
        Err(e) => Err(format!("not a phone number ({e})")),
    };
    let number = match number {
        Ok(number) => number,
        // Written with zeros before the country code ("0 1 212 …",
        // "+00 1 212 …"): Meta's SDKs drop up to two of them and read the
        // rest as international. Taken only when the rest is a valid
        // number, so a national number with a trunk 0 is never misread.
        Err(reason) => zeros_before_country_code(&compact)
            .and_then(|rest| phonenumber::parse(None, format!("+{rest}")).ok())
            .filter(phonenumber::is_valid)
            .ok_or_else(|| invalid("phone", reason))?,
    };
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    if e164.len() < 3 || !e164.starts_with('+') {
        return Err(invalid("phone", "could not format as E.164"));
    }
    Ok(e164)
}

/// The number as kept: valid, valid or possible without a trunk `0` written
/// after the country code, or of a length possible for its country.
fn keepable(number: phonenumber::PhoneNumber) -> Option<phonenumber::PhoneNumber> {
    if phonenumber::is_valid(&number) {
        Some(number)
    } else if let Some(without_trunk) = drop_trunk_zero(&number) {
        Some(without_trunk)
    } else {
        is_possible_number(&number).then_some(number)
    }
}

/// The digits after a `+` and one or two zeros ("+0012…", "012…"), when
/// something other than a zero follows them.
fn zeros_before_country_code(compact: &str) -> Option<&str> {
    let digits = compact.strip_prefix('+').unwrap_or(compact);
    let rest = digits
        .strip_prefix("00")
        .or_else(|| digits.strip_prefix('0'))?;
    (rest.starts_with(|c: char| c.is_ascii_digit() && c != '0')
        && rest.bytes().all(|b| b.is_ascii_digit()))
    .then_some(rest)
}

/// The national significant number as written, leading zeros included.
fn national_digits(number: &phonenumber::PhoneNumber) -> String {
    let national = number.national();
    format!(
        "{}{}",
        "0".repeat(usize::from(national.zeros())),
        national.value()
    )
}

/// True when the national number's length is one the numbering plan allows
/// for its country code (libphonenumber's "possible number": a length check,
/// not a range check).
fn is_possible_number(number: &phonenumber::PhoneNumber) -> bool {
    let length = national_digits(number).len();
    let Ok(length) = u16::try_from(length) else {
        return false;
    };
    phonenumber::metadata::DATABASE
        .by_code(&number.code().value())
        .is_some_and(|regions| {
            regions.iter().any(|meta| {
                // The general descriptor's lengths are the union of the
                // number types' (empty in this crate's metadata): check all.
                let d = meta.descriptors();
                std::iter::once(Some(d.general()))
                    .chain([
                        d.fixed_line(),
                        d.mobile(),
                        d.toll_free(),
                        d.premium_rate(),
                        d.shared_cost(),
                        d.personal_number(),
                        d.voip(),
                        d.pager(),
                        d.uan(),
                        d.voicemail(),
                    ])
                    .flatten()
                    .any(|desc| desc.possible_length().contains(&length))
            })
        })
}

/// The same number without a trunk `0` kept after the country code, when
/// that makes it valid or possible and it was neither before.
fn drop_trunk_zero(number: &phonenumber::PhoneNumber) -> Option<phonenumber::PhoneNumber> {
    if is_possible_number(number) && number.national().zeros() == 0 {
        return None;
    }
    let digits = national_digits(number);
    let rest = digits.strip_prefix('0')?;
    if rest.is_empty() {
        return None;
    }
    let retry = phonenumber::parse(None, format!("+{}{rest}", number.code().value())).ok()?;
    (phonenumber::is_valid(&retry) || (!is_possible_number(number) && is_possible_number(&retry)))
        .then_some(retry)
}

/// Meta's phone form: the E.164 digits without `+` (country code included).
pub fn meta_phone_digits(e164: &str) -> String {
    e164.chars().filter(char::is_ascii_digit).collect()
}
