//! Google's EU user consent rule, shared by both Google paths (the Data
//! Manager API, `google_dm.rs`, and the Ads API offline user data jobs,
//! `google.rs`).
//!
//! A person's consent is the destination's (`consent_ad_user_data`,
//! `consent_ad_personalization`) unless the export attribute the settings
//! name (`consent_attribute`) says otherwise for that person: then that one
//! value holds for both. A person in the EEA, the UK or Switzerland (by the
//! `country_attribute`; an unknown country counts as one when
//! `unknown_country_is_eea`) is sent only with both consents granted;
//! otherwise the op is `Unmatched` with [`NO_CONSENT_EEA`].
//!
//! Google: "Data from unconsented EEA users will not be processed" and both
//! fields must be GRANTED (Google Ads Help 14310715, "FAQs About the EU user
//! consent policy for Customer Match upload partners").

use serde_json::Value;

use super::OpOutcome;
use crate::domain::model::Attributes;
use crate::domain::spec::{ConsentStatus, GoogleConsentSpec};

/// EEA members, the UK and Switzerland: where Google's EU user consent
/// policy requires both consents.
pub const CONSENT_REGIONS: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO", "GB", "CH",
];

/// The reason of an op held back by the EEA rule.
pub const NO_CONSENT_EEA: &str =
    "no consent (EEA): ad_user_data and ad_personalization must both be granted";

/// A person's consent from the attribute: true / "granted" / "yes" grant,
/// false / "denied" / "no" deny; anything else says nothing.
pub fn consent_of(value: Option<&Value>) -> Option<ConsentStatus> {
    match value? {
        Value::Bool(true) => Some(ConsentStatus::Granted),
        Value::Bool(false) => Some(ConsentStatus::Denied),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "granted" | "consent_granted" | "true" | "yes" | "1" => Some(ConsentStatus::Granted),
            "denied" | "consent_denied" | "false" | "no" | "0" => Some(ConsentStatus::Denied),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a person falls under the EEA consent rule.
pub fn in_consent_region(spec: &GoogleConsentSpec, attrs: &Attributes) -> bool {
    let country = spec
        .country_attribute
        .as_ref()
        .and_then(|a| attrs.get(a))
        .and_then(Value::as_str)
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| c.len() == 2);
    match country {
        Some(c) => CONSENT_REGIONS.contains(&c.as_str()),
        None => spec.unknown_country_is_eea,
    }
}

/// One person's consent, as it would be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersonConsent {
    pub ad_user_data: ConsentStatus,
    pub ad_personalization: ConsentStatus,
    /// The person's own consent from the attribute, when it said something.
    pub own: Option<ConsentStatus>,
}

impl PersonConsent {
    pub fn both_granted(&self) -> bool {
        self.ad_user_data == ConsentStatus::Granted
            && self.ad_personalization == ConsentStatus::Granted
    }

    pub fn any_denied(&self) -> bool {
        self.ad_user_data == ConsentStatus::Denied
            || self.ad_personalization == ConsentStatus::Denied
    }
}

/// A person's effective consent, or `Unmatched` ([`NO_CONSENT_EEA`]) when
/// the EEA rule holds them back.
pub fn person_consent(
    spec: &GoogleConsentSpec,
    attrs: &Attributes,
) -> Result<PersonConsent, OpOutcome> {
    let own = spec
        .attribute
        .as_ref()
        .and_then(|a| consent_of(attrs.get(a)));
    let consent = PersonConsent {
        ad_user_data: own.unwrap_or(spec.ad_user_data),
        ad_personalization: own.unwrap_or(spec.ad_personalization),
        own,
    };
    if in_consent_region(spec, attrs) && !consent.both_granted() {
        return Err(OpOutcome::Unmatched {
            reason: NO_CONSENT_EEA.into(),
        });
    }
    Ok(consent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(user_data: ConsentStatus, personalization: ConsentStatus) -> GoogleConsentSpec {
        GoogleConsentSpec {
            ad_user_data: user_data,
            ad_personalization: personalization,
            attribute: Some("consent".into()),
            country_attribute: Some("country".into()),
            unknown_country_is_eea: true,
        }
    }

    fn attrs(pairs: &[(&str, Value)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn eea_uk_and_swiss_people_need_both_consents_granted() {
        let unspecified = spec(ConsentStatus::Unspecified, ConsentStatus::Unspecified);
        for country in ["DE", "gb", " ch ", "NO"] {
            let out = person_consent(&unspecified, &attrs(&[("country", json!(country))]));
            assert!(
                matches!(&out, Err(OpOutcome::Unmatched { reason }) if reason.starts_with("no consent (EEA)")),
                "{country}: {out:?}"
            );
        }
        let us = person_consent(&unspecified, &attrs(&[("country", json!("US"))]));
        assert_eq!(
            us.map(|c| c.ad_user_data),
            Ok(ConsentStatus::Unspecified),
            "outside the EEA the destination's consent is sent as is"
        );
    }

    #[test]
    fn unknown_country_follows_the_setting() {
        let mut s = spec(ConsentStatus::Unspecified, ConsentStatus::Unspecified);
        assert!(person_consent(&s, &attrs(&[])).is_err());
        s.unknown_country_is_eea = false;
        assert!(person_consent(&s, &attrs(&[])).is_ok());
    }

    #[test]
    fn own_consent_overrides_the_destinations_for_both_fields() {
        let granted = spec(ConsentStatus::Granted, ConsentStatus::Granted);
        let denied = person_consent(
            &granted,
            &attrs(&[("country", json!("US")), ("consent", json!(false))]),
        );
        assert_eq!(
            denied,
            Ok(PersonConsent {
                ad_user_data: ConsentStatus::Denied,
                ad_personalization: ConsentStatus::Denied,
                own: Some(ConsentStatus::Denied),
            })
        );
        let unspecified = spec(ConsentStatus::Unspecified, ConsentStatus::Unspecified);
        let eea_granted = person_consent(
            &unspecified,
            &attrs(&[("country", json!("FR")), ("consent", json!("yes"))]),
        );
        assert!(eea_granted.is_ok_and(|c| c.both_granted()));
    }
}
