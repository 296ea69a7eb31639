//! The `X-CIO-Signature` check: HMAC-SHA256 over `v0:<timestamp>:<raw body>`,
//! compared in constant time, then the replay window.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{DEFAULT_TOLERANCE, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::domain::model::Millis;
use crate::ports::Secret;

#[derive(Clone, Debug)]
pub struct SignatureConfig {
    /// The signing key from the reporting-webhook settings page.
    pub secret: Secret,
    /// Replay window, both ways: older and future timestamps beyond it fail.
    pub tolerance: Duration,
}

impl SignatureConfig {
    /// A config with the default 5-minute replay window.
    pub fn new(secret: Secret) -> Self {
        SignatureConfig {
            secret,
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

/// Why a reporting webhook did not pass. Every variant but [`Stale`] maps to
/// HTTP 401; [`Stale`] comes only after the MAC checked out, so the body is
/// authentic and intake applies it instead (`pipeline::intake`).
///
/// [`Stale`]: SignatureError::Stale
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing X-CIO-Timestamp header")]
    MissingTimestamp,
    #[error("missing X-CIO-Signature header")]
    MissingSignature,
    #[error("X-CIO-Timestamp is not integer Unix seconds")]
    BadTimestamp,
    #[error("X-CIO-Timestamp is {}, outside the replay window (clock skew or replay)", stale_age(.age_s))]
    Stale { age_s: i64 },
    #[error(
        "X-CIO-Signature does not match the body (wrong signing secret, or the body was altered)"
    )]
    Mismatch,
}

fn stale_age(age_s: &i64) -> String {
    let when = if *age_s >= 0 { "before" } else { "after" };
    format!("{} s {when} now", age_s.unsigned_abs())
}

pub(super) fn mac_for(secret: &[u8]) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()
}

/// The hex HMAC-SHA256 (lowercase) Customer.io would send for this body: for
/// tests, the demo and the simulators.
pub fn sign(secret: &[u8], timestamp_s: i64, body: &[u8]) -> String {
    let Some(mut mac) = mac_for(secret) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp_s}:").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The two headers of a signed request, lowercased as callers pass them.
pub fn signed_headers(secret: &[u8], timestamp_s: i64, body: &[u8]) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TIMESTAMP_HEADER.to_string(), timestamp_s.to_string()),
        (
            SIGNATURE_HEADER.to_string(),
            sign(secret, timestamp_s, body),
        ),
    ])
}

/// A header value, trimmed, `None` when absent or blank. Names are expected
/// lowercased; a mixed-case key is still found.
pub(crate) fn header<'a>(headers: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .or_else(|| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// Signed seconds from the timestamp to now (negative: in the future), or
/// `None` when inside the window.
pub(crate) fn outside_window(timestamp_s: i64, now_ms: Millis, tolerance: Duration) -> Option<i64> {
    let age_s = now_ms.div_euclid(1000).saturating_sub(timestamp_s);
    let limit = tolerance.as_secs();
    (age_s.unsigned_abs() > limit).then_some(age_s)
}

/// Checks a reporting webhook's signature over the raw body bytes, in
/// constant time, then its replay window. A blank secret refuses everything
/// (an empty key would make signatures forgeable).
pub fn verify_signature(
    headers: &BTreeMap<String, String>,
    body: &[u8],
    cfg: &SignatureConfig,
    now_ms: Millis,
) -> Result<(), SignatureError> {
    let ts_raw = header(headers, TIMESTAMP_HEADER).ok_or(SignatureError::MissingTimestamp)?;
    let sig_raw = header(headers, SIGNATURE_HEADER).ok_or(SignatureError::MissingSignature)?;
    let timestamp_s: i64 = ts_raw.parse().map_err(|_| SignatureError::BadTimestamp)?;

    let secret = cfg.secret.expose().as_bytes();
    if secret.iter().all(u8::is_ascii_whitespace) {
        return Err(SignatureError::Mismatch);
    }
    // hex::decode takes either case, so an uppercase signature compares as
    // lowercase.
    let provided = hex::decode(sig_raw).map_err(|_| SignatureError::Mismatch)?;
    let mut mac = mac_for(secret).ok_or(SignatureError::Mismatch)?;
    mac.update(b"v0:");
    mac.update(ts_raw.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&provided)
        .map_err(|_| SignatureError::Mismatch)?;

    // Checked after the MAC, so a Stale error means "authentic but old".
    match outside_window(timestamp_s, now_ms, cfg.tolerance) {
        Some(age_s) => Err(SignatureError::Stale { age_s }),
        None => Ok(()),
    }
}
