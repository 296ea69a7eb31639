//! Settings of the two Google destination kinds (a child of `config`, so it
//! shares the checker's helpers).
//!
//! Credentials, either kind (exactly one way):
//! * `service_account_key_env`: a service-account key file (JSON);
//! * `client_id_env` + `client_secret_env` + `refresh_token_env`: a user's
//!   OAuth refresh token;
//! * `access_token_env`: a fixed access token (cannot be refreshed).
//!
//! and `token_url` (default Google's token endpoint).

use super::{Checker, Fields, Here};
use crate::domain::spec::{
    ConsentStatus, DestinationSettings, GoogleAuthSpec, GoogleConsentSpec, GoogleCredentialsSpec,
};

const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

const CREDENTIAL_KEYS: &[&str] = &[
    "token_url",
    "service_account_key_env",
    "client_id_env",
    "client_secret_env",
    "refresh_token_env",
    "access_token_env",
];

pub(super) const CUSTOMER_MATCH_KEYS: &[&str] = &[
    "api_version",
    "customer_id",
    "login_customer_id",
    "developer_token_env",
    "gmail_remove_dots",
    "job_wait",
    "consent_ad_user_data",
    "consent_ad_personalization",
    "consent_attribute",
    "country_attribute",
    "unknown_country_is_eea",
    "token_url",
    "service_account_key_env",
    "client_id_env",
    "client_secret_env",
    "refresh_token_env",
    "access_token_env",
];

pub(super) const DATA_MANAGER_KEYS: &[&str] = &[
    "operating_account_id",
    "login_account_id",
    "linked_account_id",
    "consent_ad_user_data",
    "consent_ad_personalization",
    "consent_attribute",
    "country_attribute",
    "unknown_country_is_eea",
    "gmail_remove_dots",
    "gmail_strip_plus_suffix",
    "status_poll_after",
    "token_url",
    "service_account_key_env",
    "client_id_env",
    "client_secret_env",
    "refresh_token_env",
    "access_token_env",
];

const CONSENT: &[(&str, ConsentStatus)] = &[
    ("granted", ConsentStatus::Granted),
    ("denied", ConsentStatus::Denied),
    ("unspecified", ConsentStatus::Unspecified),
];

impl Checker {
    fn google_auth(&mut self, fields: &Fields<'_, '_>, here: &Here<'_>) -> Option<GoogleAuthSpec> {
        debug_assert!(CREDENTIAL_KEYS
            .iter()
            .all(|k| DATA_MANAGER_KEYS.contains(k)));
        let token_url = match fields.get("token_url") {
            None => Some(DEFAULT_TOKEN_URL.to_string()),
            Some(n) => self.url(n, &here.child("token_url")),
        };
        let env =
            |c: &mut Self, key: &str| fields.get(key).map(|n| c.env_name(n, &here.child(key)));
        let sa = env(self, "service_account_key_env");
        let client_id = env(self, "client_id_env");
        let client_secret = env(self, "client_secret_env");
        let refresh = env(self, "refresh_token_env");
        let fixed = env(self, "access_token_env");
        let refresh_given = client_id.is_some() || client_secret.is_some() || refresh.is_some();
        let ways =
            usize::from(sa.is_some()) + usize::from(refresh_given) + usize::from(fixed.is_some());
        let credentials = if ways != 1 {
            self.issue(
                fields.at,
                here,
                "Google credentials: give exactly one of service_account_key_env, \
                 client_id_env + client_secret_env + refresh_token_env, or access_token_env",
            );
            None
        } else if let Some(key_env) = sa {
            key_env.map(|key_env| GoogleCredentialsSpec::ServiceAccount { key_env })
        } else if let Some(access_token_env) = fixed {
            access_token_env
                .map(|access_token_env| GoogleCredentialsSpec::AccessToken { access_token_env })
        } else {
            let id = self
                .require(fields, "client_id_env", here)
                .and(client_id.flatten());
            let secret = self
                .require(fields, "client_secret_env", here)
                .and(client_secret.flatten());
            let token = self
                .require(fields, "refresh_token_env", here)
                .and(refresh.flatten());
            match (id, secret, token) {
                (Some(client_id_env), Some(client_secret_env), Some(refresh_token_env)) => {
                    Some(GoogleCredentialsSpec::RefreshToken {
                        client_id_env,
                        client_secret_env,
                        refresh_token_env,
                    })
                }
                _ => None,
            }
        };
        Some(GoogleAuthSpec {
            token_url: token_url?,
            credentials: credentials?,
        })
    }

    /// The consent keys, the same for both kinds: `consent_ad_user_data` and
    /// `consent_ad_personalization` (granted / denied / unspecified, both
    /// required), `consent_attribute`, `country_attribute` and
    /// `unknown_country_is_eea` (default true).
    fn google_consent(
        &mut self,
        fields: &Fields<'_, '_>,
        here: &Here<'_>,
    ) -> Option<GoogleConsentSpec> {
        let consent_of = |c: &mut Self, key: &str| {
            c.require(fields, key, here)
                .and_then(|n| c.choice(n, &here.child(key), CONSENT))
        };
        let ad_user_data = consent_of(self, "consent_ad_user_data");
        let ad_personalization = consent_of(self, "consent_ad_personalization");
        let optional_name = |c: &mut Self, key: &str| match fields.get(key) {
            None => Some(None),
            Some(n) => c.plain_name(n, &here.child(key), "attribute").map(Some),
        };
        let attribute = optional_name(self, "consent_attribute");
        let country_attribute = optional_name(self, "country_attribute");
        let unknown_country_is_eea = match fields.get("unknown_country_is_eea") {
            None => Some(true),
            Some(n) => self.boolean(n, &here.child("unknown_country_is_eea")),
        };
        Some(GoogleConsentSpec {
            ad_user_data: ad_user_data?,
            ad_personalization: ad_personalization?,
            attribute: attribute?,
            country_attribute: country_attribute?,
            unknown_country_is_eea: unknown_country_is_eea?,
        })
    }

    pub(super) fn google_customer_match(
        &mut self,
        fields: &Fields<'_, '_>,
        here: &Here<'_>,
    ) -> Option<DestinationSettings> {
        let api_version = self
            .require(fields, "api_version", here)
            .and_then(|n| self.api_version(n, &here.child("api_version"), "v26"));
        let customer_id = self
            .require(fields, "customer_id", here)
            .and_then(|n| self.google_customer_id(n, &here.child("customer_id")));
        let login_customer_id = match fields.get("login_customer_id") {
            None => Some(None),
            Some(n) => self
                .google_customer_id(n, &here.child("login_customer_id"))
                .map(Some),
        };
        let developer_token_env = self.required_env(fields, "developer_token_env", here);
        let auth = self.google_auth(fields, here);
        let gmail_remove_dots = match fields.get("gmail_remove_dots") {
            None => Some(false),
            Some(n) => self.boolean(n, &here.child("gmail_remove_dots")),
        };
        let job_wait_ms = match fields.get("job_wait") {
            None => Some(15 * 60 * 1000),
            Some(n) => self
                .duration_ms(n, &here.child("job_wait"))
                .and_then(|ms| u64::try_from(ms).ok()),
        };
        let consent = self.google_consent(fields, here);
        if let Some(c) = &consent {
            // Google answers CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS to a
            // job whose consent denies either: no create job could run.
            for (key, value) in [
                ("consent_ad_user_data", c.ad_user_data),
                ("consent_ad_personalization", c.ad_personalization),
            ] {
                if value == ConsentStatus::Denied {
                    if let Some(n) = fields.get(key) {
                        self.issue(
                            n,
                            &here.child(key),
                            "google_customer_match cannot send `denied`: Google refuses a Customer Match \
                             job whose consent denies (CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS); use \
                             granted or unspecified",
                        );
                    }
                }
            }
        }
        Some(DestinationSettings::GoogleCustomerMatch {
            api_version: api_version?,
            customer_id: customer_id?,
            login_customer_id: login_customer_id?,
            developer_token_env: developer_token_env?,
            auth: auth?,
            gmail_remove_dots: gmail_remove_dots?,
            job_wait_ms: job_wait_ms?,
            consent: consent.filter(|c| {
                c.ad_user_data != ConsentStatus::Denied
                    && c.ad_personalization != ConsentStatus::Denied
            })?,
        })
    }

    pub(super) fn google_data_manager(
        &mut self,
        fields: &Fields<'_, '_>,
        here: &Here<'_>,
    ) -> Option<DestinationSettings> {
        let operating_account_id =
            self.require(fields, "operating_account_id", here)
                .and_then(|n| {
                    self.digits(
                        n,
                        &here.child("operating_account_id"),
                        "operating_account_id",
                    )
                });
        let optional_account = |c: &mut Self, key: &str| match fields.get(key) {
            None => Some(None),
            Some(n) => c.digits(n, &here.child(key), key).map(Some),
        };
        let login_account_id = optional_account(self, "login_account_id");
        if let Some(n) = fields.get("linked_account_id") {
            // Google refuses a linked account unless the login account is a
            // data partner (LINKED_ACCOUNT_ONLY_ALLOWED_WITH_DATA_PARTNER_LOGIN_ACCOUNT,
            // error.proto); an advertiser reaches a client account through
            // its manager, the login account.
            self.issue(
                n,
                &here.child("linked_account_id"),
                "linked_account_id is for data partners only: Google refuses a linked account \
                 with a Google Ads login account. To reach a client account through a manager, \
                 set login_account_id to the manager's id and remove linked_account_id",
            );
        }
        let auth = self.google_auth(fields, here);
        let consent = self.google_consent(fields, here);
        let flag = |c: &mut Self, key: &str, default: bool| match fields.get(key) {
            None => Some(default),
            Some(n) => c.boolean(n, &here.child(key)),
        };
        let gmail_remove_dots = flag(self, "gmail_remove_dots", true);
        let gmail_strip_plus_suffix = flag(self, "gmail_strip_plus_suffix", true);
        let status_poll_after_ms = match fields.get("status_poll_after") {
            None => Some(30 * 60 * 1000),
            Some(n) => self
                .duration_ms(n, &here.child("status_poll_after"))
                .and_then(|ms| u64::try_from(ms).ok()),
        };
        Some(DestinationSettings::GoogleDataManager {
            operating_account_id: operating_account_id?,
            login_account_id: login_account_id?,
            auth: auth?,
            consent: consent?,
            gmail_remove_dots: gmail_remove_dots?,
            gmail_strip_plus_suffix: gmail_strip_plus_suffix?,
            status_poll_after_ms: status_poll_after_ms?,
        })
    }
}
