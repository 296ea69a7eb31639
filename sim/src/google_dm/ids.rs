//! Checks the Data Manager simulator applies to every request carrying
//! user data (audience members and events alike): destinations, encoding,
//! hashed identifiers, consent values, RFC 3339 times. A child of
//! `google_dm`, sharing its state and error types.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::{DmMember, DmState, ListKey, RpcError};

pub(super) fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a value is not a digest in the request's encoding (error.proto):
/// not HEX / base64 at all, or well encoded but not 32 bytes of SHA-256.
pub(super) fn digest_reason(digests: Digests, s: &str) -> &'static str {
    use base64::Engine;
    match digests.name {
        "HEX" if !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            "INVALID_SHA256_FORMAT"
        }
        "HEX" => "INVALID_HEX_ENCODING",
        _ if base64::engine::general_purpose::STANDARD.decode(s).is_ok() => "INVALID_SHA256_FORMAT",
        _ => "INVALID_BASE64_ENCODING",
    }
}

pub(super) fn is_b64_digest(s: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .is_ok_and(|b| b.len() == 32)
}

/// `destinations` of an audience request: each names a user list.
pub(super) fn parse_destinations(
    state: &DmState,
    obj: &Map<String, Value>,
) -> Result<(Vec<Value>, Vec<ListKey>), RpcError> {
    parse_destinations_with(state, obj, &|state, account, list| {
        if state
            .lists
            .contains_key(&(account.to_string(), list.to_string()))
        {
            Ok(())
        } else {
            Err(RpcError::invalid(
                "INVALID_USER_LIST_ID",
                format!("productDestinationId {list:?} is not a Customer Match user list of account {account}."),
            ))
        }
    })
}

/// `destinations` of any request: 1 to 10, each with a GOOGLE_ADS operating
/// account the credentials may operate, well-formed login / linked
/// accounts, and a `productDestinationId` that `known` accepts.
pub(super) fn parse_destinations_with(
    state: &DmState,
    obj: &Map<String, Value>,
    known: &dyn Fn(&DmState, &str, &str) -> Result<(), RpcError>,
) -> Result<(Vec<Value>, Vec<ListKey>), RpcError> {
    let dests = obj
        .get("destinations")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| RpcError::invalid("REQUIRED_FIELD_MISSING", "destinations is required."))?;
    if dests.len() > state.config.max_destinations_per_request {
        return Err(RpcError::invalid(
            "TOO_MANY_DESTINATIONS",
            format!(
                "At most {} destinations per request.",
                state.config.max_destinations_per_request
            ),
        ));
    }
    let mut lists = Vec::new();
    for d in dests {
        let op = d.get("operatingAccount");
        let kind = op
            .and_then(|o| o.get("accountType"))
            .and_then(Value::as_str);
        let account = op
            .and_then(|o| o.get("accountId"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if kind != Some("GOOGLE_ADS")
            || account.is_empty()
            || !account.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(RpcError::invalid(
                "INVALID_DESTINATION",
                "destinations[].operatingAccount needs accountType GOOGLE_ADS and a numeric accountId.",
            ));
        }
        for other in ["loginAccount", "linkedAccount"] {
            if let Some(acc) = d.get(other) {
                let ok = acc.get("accountType").and_then(Value::as_str).is_some()
                    && acc
                        .get("accountId")
                        .and_then(Value::as_str)
                        .is_some_and(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()));
                if !ok {
                    return Err(RpcError::invalid(
                        "INVALID_DESTINATION",
                        format!(
                            "destinations[].{other} needs an accountType and a numeric accountId."
                        ),
                    ));
                }
            }
        }
        let login_type = d
            .get("loginAccount")
            .and_then(|a| a.get("accountType"))
            .and_then(Value::as_str);
        if d.get("linkedAccount").is_some() && login_type != Some("DATA_PARTNER") {
            return Err(RpcError::invalid(
                "LINKED_ACCOUNT_ONLY_ALLOWED_WITH_DATA_PARTNER_LOGIN_ACCOUNT",
                "A linked account is only supported when the login account is a DATA_PARTNER account.",
            ));
        }
        let login = d
            .get("loginAccount")
            .filter(|_| login_type == Some("GOOGLE_ADS"))
            .and_then(|a| a.get("accountId"))
            .and_then(Value::as_str);
        account_access(state, account, login)?;
        let list = d
            .get("productDestinationId")
            .and_then(Value::as_str)
            .unwrap_or("");
        known(state, account, list)?;
        lists.push((account.to_string(), list.to_string()));
    }
    Ok((dests.clone(), lists))
}

/// Whether the credentials reach `account`: directly, or through the
/// manager the simulator says manages it, named as the login account.
pub(super) fn account_access(
    state: &DmState,
    account: &str,
    login: Option<&str>,
) -> Result<(), RpcError> {
    let direct = state.config.operating_accounts.iter().any(|a| a == account);
    let managed = state
        .config
        .managed_accounts
        .get(account)
        .is_some_and(|manager| login == Some(manager.as_str()));
    if direct || managed {
        return Ok(());
    }
    Err(RpcError::new(
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        "PERMISSION_DENIED",
        format!("The caller does not have permission to access account {account}."),
    ))
}

pub(super) const CONSENT_VALUES: &[&str] = &[
    "CONSENT_GRANTED",
    "CONSENT_DENIED",
    "CONSENT_STATUS_UNSPECIFIED",
];

pub(super) fn check_consent(v: Option<&Value>, at: &str) -> Result<(), RpcError> {
    let Some(v) = v else { return Ok(()) };
    for field in ["adUserData", "adPersonalization"] {
        if let Some(x) = v.get(field) {
            if !x.as_str().is_some_and(|s| CONSENT_VALUES.contains(&s)) {
                return Err(RpcError::invalid(
                    "INVALID_ENUM_VALUE",
                    format!("{at}.{field} must be one of {}.", CONSENT_VALUES.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn denies_user_data(member: Option<&Value>, request: Option<&Value>) -> bool {
    fn get(c: Option<&Value>) -> Option<&str> {
        c.and_then(|c| c.get("adUserData"))
            .and_then(Value::as_str)
            .filter(|s| *s != "CONSENT_STATUS_UNSPECIFIED")
    }
    get(member).or(get(request)) == Some("CONSENT_DENIED")
}

/// How the request's `encoding` says digests are written.
#[derive(Clone, Copy)]
pub(super) struct Digests {
    pub(super) name: &'static str,
    pub(super) check: fn(&str) -> bool,
}

/// The request's `encoding`: required with user data, HEX or BASE64.
pub(super) fn digest_check(obj: &Map<String, Value>) -> Result<Digests, RpcError> {
    match obj.get("encoding").and_then(Value::as_str) {
        Some("HEX") => Ok(Digests {
            name: "HEX",
            check: is_hex_digest,
        }),
        Some("BASE64") => Ok(Digests {
            name: "BASE64",
            check: is_b64_digest,
        }),
        None => Err(RpcError::invalid(
            "REQUIRED_FIELD_MISSING",
            "encoding is required when sending user data (HEX or BASE64).",
        )),
        Some(other) => Err(RpcError::invalid(
            "INVALID_ENUM_VALUE",
            format!("Unknown encoding {other:?}."),
        )),
    }
}

/// One `userData.userIdentifiers` list (of the member or event at `at`):
/// 1 to `max_ids` identifiers, each exactly one of a hashed email, a hashed
/// phone or an address with hashed names and plain region / postal code.
pub(super) fn parse_user_identifiers(
    ids: &[Value],
    at: &str,
    max_ids: usize,
    digests: Digests,
) -> Result<DmMember, RpcError> {
    if ids.is_empty() || ids.len() > max_ids {
        return Err(RpcError::invalid(
            "TOO_MANY_USER_IDENTIFIERS",
            format!(
                "{at} has {} identifiers; 1 to {max_ids} per member.",
                ids.len()
            ),
        ));
    }
    let digest_ok = digests.check;
    let mut member = DmMember::new();
    for (j, id) in ids.iter().enumerate() {
        let at = format!("{at}.userData.userIdentifiers[{j}]");
        let obj = id.as_object().ok_or_else(|| {
            RpcError::invalid("INVALID_ARGUMENT", format!("{at} must be an object."))
        })?;
        let [(kind, value)] = obj.iter().collect::<Vec<_>>()[..] else {
            return Err(RpcError::invalid(
                "INVALID_ARGUMENT",
                format!("{at} must set exactly one of emailAddress, phoneNumber, address."),
            ));
        };
        match kind.as_str() {
            "emailAddress" | "phoneNumber" => {
                let s = value.as_str().unwrap_or("");
                if !digest_ok(s) {
                    return Err(RpcError::invalid(
                        digest_reason(digests, s),
                        format!(
                            "{at}.{kind} is not a SHA-256 digest in {} encoding.",
                            digests.name
                        ),
                    ));
                }
                member.insert((kind.clone(), s.to_ascii_lowercase()));
            }
            "address" => {
                let get = |f: &str| value.get(f).and_then(Value::as_str).unwrap_or("");
                let (given, family) = (get("givenName"), get("familyName"));
                let (region, postal) = (get("regionCode"), get("postalCode"));
                if !digest_ok(given) || !digest_ok(family) {
                    let bad = if digest_ok(given) { family } else { given };
                    return Err(RpcError::invalid(
                        digest_reason(digests, bad),
                        format!("{at}.address givenName and familyName must be SHA-256 digests."),
                    ));
                }
                if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(RpcError::invalid(
                        "INVALID_REGION_CODE",
                        format!(
                            "{at}.address.regionCode must be 2 uppercase letters (not hashed)."
                        ),
                    ));
                }
                if postal.trim().is_empty() || is_hex_digest(postal) || postal != postal.trim() {
                    return Err(RpcError::invalid(
                        "INVALID_POSTAL_CODE",
                        format!("{at}.address.postalCode must be given, trimmed and not hashed."),
                    ));
                }
                member.insert((
                    "address".into(),
                    format!(
                        "{}|{}|{region}|{postal}",
                        given.to_ascii_lowercase(),
                        family.to_ascii_lowercase()
                    ),
                ));
            }
            other => {
                return Err(RpcError::invalid(
                    "INVALID_ARGUMENT",
                    format!("Invalid JSON payload received. Unknown name \"{other}\" at {at}."),
                ))
            }
        }
    }
    Ok(member)
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp
/// (`YYYY-MM-DDTHH:MM:SS[.fff]Z`; offsets `±HH:MM` too).
pub(super) fn time_from_rfc3339(t: &str) -> Option<i64> {
    let (date, rest) = t.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off.get(1..)?.split_once(':')?;
        (
            c,
            sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?),
        )
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut p = hms.split(':');
    let (h, mi, s): (i64, i64, i64) = (
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
    );
    let ms: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").get(..3)?.parse().ok()?
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60) * 1000) + ms)
}
