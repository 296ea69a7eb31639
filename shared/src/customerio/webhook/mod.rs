//! Customer.io reporting webhooks: signature check and parsing, no IO.
//!
//! One POST carries one event object (`event_id`, `object_type`, `metric`,
//! `timestamp`, `data`), signed with HMAC-SHA256 over
//! `"v0:" + <X-CIO-Timestamp> + ":" + <raw body>` (API-CONTRACTS §1a).
//!
//! Customer.io holds back every later event while one is refused, for up to
//! 7 days, so callers answer 401 only for a failed signature; a signed body
//! that [`parse_reporting`] refuses is quarantined with the error's reason and
//! answered 2xx, and a correctly signed body outside the replay window
//! ([`SignatureError::Stale`]) is applied. Every [`ParseError`] is
//! permanent: retrying the same bytes gives the same answer. Sources and
//! our reading: `docs/customerio.md`.
//!
//! `object_type` and `metric` are open data: unknown values parse and are
//! kept, [`is_known_metric`] tells whether the §1a table lists them.

mod parse;
mod signature;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub(crate) use parse::{id_value, json_error_parts, json_kind, seconds_value};
pub use parse::{parse_reporting, MessageOrigin, ParseError, PushDevice, ReportingEvent};
pub(crate) use signature::{header, outside_window};
pub use signature::{sign, signed_headers, verify_signature, SignatureConfig, SignatureError};

/// Header holding the Unix seconds the request was signed at (lowercased).
pub const TIMESTAMP_HEADER: &str = "x-cio-timestamp";
/// Header holding the hex HMAC-SHA256 signature (lowercased).
pub const SIGNATURE_HEADER: &str = "x-cio-signature";
/// Customer.io documents no replay window; 5 minutes is the common choice.
/// Outside it a correctly signed body is still taken (see the module doc).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// Refused before parsing: one event object is a few KiB even with body
/// content enabled.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// 9999-12-31T23:59:59Z: anything later is a unit mistake (milliseconds).
pub(crate) const MAX_TIMESTAMP_S: i64 = 253_402_300_799;

/// The message metrics of each object type, as Customer.io's reporting
/// webhook definition lists them (`tests/contracts/customerio.json`).
/// Metrics are open data: this table says what we expect, not what we
/// accept. Subscription metrics are in [`SUBSCRIPTION_METRICS`].
pub const OBJECT_TYPE_METRICS: &[(&str, &[&str])] = &[
    (
        "customer",
        &[
            "subscribed",
            "unsubscribed",
            "cio_subscription_preferences_changed",
        ],
    ),
    (
        "email",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "unsubscribed",
            "bounced",
            "dropped",
            "spammed",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "push",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "bounced",
            "dropped",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "sms",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "clicked",
            "converted",
            "bounced",
            "failed",
            "undeliverable",
            "replied",
        ],
    ),
    (
        "whatsapp",
        &[
            "drafted",
            "attempted",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
            "bounced",
            "dropped",
            "failed",
            "undeliverable",
            "replied",
        ],
    ),
    (
        "in_app",
        &[
            "drafted",
            "attempted",
            "sent",
            "opened",
            "clicked",
            "converted",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "slack",
        &[
            "drafted",
            "attempted",
            "sent",
            "clicked",
            "failed",
            "undeliverable",
        ],
    ),
    (
        "webhook",
        &[
            "drafted",
            "attempted",
            "sent",
            "clicked",
            "failed",
            "undeliverable",
        ],
    ),
];

/// A person's subscription changed. Customer.io sends these with any
/// object type: the channel of the message that led to the change, or
/// `customer` when there was none or it cannot tell.
pub const SUBSCRIPTION_METRICS: &[&str] = &[
    "subscribed",
    "unsubscribed",
    "cio_subscription_preferences_changed",
];

/// Whether Customer.io defines this pair: a message metric of the object
/// type, or a subscription metric on any known object type. Unknown pairs
/// still parse.
pub fn is_known_metric(object_type: &str, metric: &str) -> bool {
    OBJECT_TYPE_METRICS.iter().any(|(ot, metrics)| {
        *ot == object_type && (metrics.contains(&metric) || SUBSCRIPTION_METRICS.contains(&metric))
    })
}
