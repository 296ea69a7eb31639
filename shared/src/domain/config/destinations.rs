//! `destinations.<name>`: kinds, limits, credentials and per-kind settings.

use super::*;

impl Checker {
    // ----- destinations -----

    pub(super) fn destination(
        &mut self,
        name: &str,
        node: &Node<'_>,
        here: &Here<'_>,
    ) -> Option<DestinationSpec> {
        let loose = self.mapping(node, here, None)?;
        let kind_node = self.require(&loose, "kind", here)?;
        let kind = self.choice(kind_node, &here.child("kind"), KINDS)?;
        let mut allowed: Vec<&str> = DESTINATION_COMMON_KEYS.to_vec();
        allowed.extend_from_slice(destination_keys(kind));
        let fields = self.mapping(node, here, Some(&allowed))?;
        let kind_str = kind.as_str();

        let base_url = match fields.get("base_url") {
            None => Some(None),
            Some(n) => self.url(n, &here.child("base_url")).map(Some),
        };

        let batch_size = match fields.get("batch_size") {
            None => Some(default_batch_size(kind)),
            Some(n) => {
                let at = here.child("batch_size");
                let max = max_batch_size(kind);
                match self.uint(n, &at) {
                    Some(0) => {
                        self.issue(n, &at, "batch_size must be at least 1");
                        None
                    }
                    Some(v) if v > max as u64 => {
                        self.issue(
                            n,
                            &at,
                            format!("batch_size {v} is over {kind_str}'s hard maximum of {max}"),
                        );
                        None
                    }
                    Some(v) => usize::try_from(v).ok(),
                    None => None,
                }
            }
        };

        let max_concurrency = match fields.get("max_concurrency") {
            None => Some(default_max_concurrency(kind)),
            Some(n) => {
                let at = here.child("max_concurrency");
                match self.uint(n, &at) {
                    Some(0) => {
                        self.issue(n, &at, "max_concurrency must be at least 1");
                        None
                    }
                    Some(v) => match (u32::try_from(v), max_concurrency_cap(kind)) {
                        (Ok(v), Some(cap)) if v > cap => {
                            self.issue(
                                n,
                                &at,
                                format!("max_concurrency {v} is over {kind_str}'s account cap of {cap} concurrent requests"),
                            );
                            None
                        }
                        (Ok(v), _) => Some(v),
                        (Err(_), _) => {
                            self.issue(n, &at, "max_concurrency is far too large");
                            None
                        }
                    },
                    None => None,
                }
            }
        };

        let max_requests_per_second = match fields.get("max_requests_per_second") {
            None => Some(None),
            Some(n) => {
                let at = here.child("max_requests_per_second");
                match self.number(n, &at) {
                    Some(v) if v.is_finite() && v > 0.0 && v <= 100_000.0 => Some(Some(v)),
                    Some(v) => {
                        self.issue(
                            n,
                            &at,
                            format!(
                                "max_requests_per_second {v} must be above 0 and at most 100000"
                            ),
                        );
                        None
                    }
                    None => None,
                }
            }
        };

        let max_attempts = match fields.get("max_attempts") {
            None => Some(DEFAULT_MAX_ATTEMPTS),
            Some(n) => {
                let at = here.child("max_attempts");
                match self.uint(n, &at) {
                    Some(v @ 1..=100) => u32::try_from(v).ok(),
                    Some(_) => {
                        self.issue(n, &at, "max_attempts must be between 1 and 100");
                        None
                    }
                    None => None,
                }
            }
        };

        let settings = self.settings(kind, &fields, here);

        Some(DestinationSpec {
            name: name.to_owned(),
            kind,
            base_url: base_url?,
            batch_size: batch_size?,
            max_concurrency: max_concurrency?,
            max_requests_per_second: max_requests_per_second?,
            max_attempts: max_attempts?,
            settings: settings?,
        })
    }

    pub(super) fn url(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<String> {
        let s = self.string(node, here)?;
        if s.starts_with("https://") || s.starts_with("http://") {
            Some(s.trim_end_matches('/').to_owned())
        } else {
            self.issue(node, here, "expected an http:// or https:// URL");
            None
        }
    }

    pub(super) fn api_version(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
        example: &str,
    ) -> Option<String> {
        let s = self.string(node, here)?;
        let ok = s
            .strip_prefix('v')
            .is_some_and(|rest| rest.split('.').all(is_digits));
        if ok {
            Some(s)
        } else {
            self.issue(
                node,
                here,
                format!("expected an API version like `{example}`"),
            );
            None
        }
    }

    pub(super) fn digits(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
        what: &str,
    ) -> Option<String> {
        let s = self.string(node, here)?;
        if is_digits(&s) {
            Some(s)
        } else {
            self.issue(node, here, format!("{what} must be digits only"));
            None
        }
    }

    pub(super) fn google_customer_id(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
    ) -> Option<String> {
        let s = self.string(node, here)?;
        if s.len() == 10 && is_digits(&s) {
            Some(s)
        } else {
            self.issue(
                node,
                here,
                "a Google Ads customer id is 10 digits, no dashes",
            );
            None
        }
    }

    pub(super) fn settings(
        &mut self,
        kind: DestinationKind,
        fields: &Fields<'_, '_>,
        here: &Here<'_>,
    ) -> Option<DestinationSettings> {
        // Read every key before combining, so each problem is reported.
        let req_string = |c: &mut Self, key: &str| {
            c.require(fields, key, here)
                .and_then(|n| c.string(n, &here.child(key)))
        };
        match kind {
            DestinationKind::Warehouse => {
                let location = req_string(self, "location");
                Some(DestinationSettings::Warehouse {
                    location: location?,
                })
            }
            DestinationKind::Clevertap => {
                let region = self.require(fields, "region", here).and_then(|n| {
                    let at = here.child("region");
                    let r = self.string(n, &at)?;
                    if CLEVERTAP_REGIONS.contains(&r.as_str()) {
                        Some(r)
                    } else {
                        self.issue(
                            n,
                            &at,
                            format!(
                                "unknown CleverTap region `{r}`; expected one of: {}",
                                CLEVERTAP_REGIONS.join(", ")
                            ),
                        );
                        None
                    }
                });
                let account_id_env = self.required_env(fields, "account_id_env", here);
                let passcode_env = self.required_env(fields, "passcode_env", here);
                // Event properties per event type: CleverTap's limits page
                // says 256 (docs/clevertap.md); an account may differ.
                let max_event_properties = match fields.get("max_event_properties") {
                    None => Some(crate::domain::spec::DEFAULT_CLEVERTAP_MAX_EVENT_PROPERTIES),
                    Some(n) => {
                        let at = here.child("max_event_properties");
                        match self.uint(n, &at) {
                            Some(v @ 1..=1000) => usize::try_from(v).ok(),
                            Some(v) => {
                                self.issue(
                                    n,
                                    &at,
                                    format!("max_event_properties {v} must be between 1 and 1000"),
                                );
                                None
                            }
                            None => None,
                        }
                    }
                };
                Some(DestinationSettings::Clevertap {
                    region: region?,
                    account_id_env: account_id_env?,
                    passcode_env: passcode_env?,
                    max_event_properties: max_event_properties?,
                })
            }
            DestinationKind::MetaAudience => {
                // Optional: the newest Graph version we have checked the
                // contract against (v22-v24 have expired; 2635 alarms).
                let api_version = match fields.get("api_version") {
                    Some(n) => self.api_version(n, &here.child("api_version"), "v27.0"),
                    None => {
                        Some(crate::destinations::meta_audience::DEFAULT_API_VERSION.to_string())
                    }
                };
                let ad_account_id = self.require(fields, "ad_account_id", here).and_then(|n| {
                    self.digits(
                        n,
                        &here.child("ad_account_id"),
                        "ad_account_id (without the `act_` prefix)",
                    )
                });
                let access_token_env = self.required_env(fields, "access_token_env", here);
                Some(DestinationSettings::MetaAudience {
                    api_version: api_version?,
                    ad_account_id: ad_account_id?,
                    access_token_env: access_token_env?,
                })
            }
            DestinationKind::MetaConversions => self.meta_conversions(fields, here),
            DestinationKind::GoogleCustomerMatch => self.google_customer_match(fields, here),
            DestinationKind::GoogleDataManager => self.google_data_manager(fields, here),
            DestinationKind::Webhook => {
                let url = self
                    .require(fields, "url", here)
                    .and_then(|n| self.url(n, &here.child("url")));
                let secret_env = self.required_env(fields, "secret_env", here);
                let allow_private_network = match fields.get("allow_private_network") {
                    None => Some(false),
                    Some(n) => self.boolean(n, &here.child("allow_private_network")),
                };
                // The address we will really call: base_url replaces url.
                if allow_private_network == Some(false) {
                    for key in ["base_url", "url"] {
                        let Some(node) = fields.get(key) else {
                            continue;
                        };
                        // A value that is not a URL string is reported
                        // where it is parsed; only judge real URLs here.
                        if let YamlData::Value(Scalar::String(target)) = &node.data {
                            if let Some(why) =
                                crate::destinations::net_guard::refuse_private_url(target)
                            {
                                self.issue(node, &here.child(key), format!("webhook {key} {why}"));
                            }
                        }
                        break;
                    }
                }
                Some(DestinationSettings::Webhook {
                    url: url?,
                    secret_env: secret_env?,
                    allow_private_network: allow_private_network?,
                })
            }
        }
    }

    /// `meta_conversions`: the pixel, its token, and an `action_source` we
    /// can satisfy (`app` needs app_data and `business_messaging` a
    /// messaging channel, which Customer.io events do not carry).
    pub(super) fn meta_conversions(
        &mut self,
        fields: &Fields<'_, '_>,
        here: &Here<'_>,
    ) -> Option<DestinationSettings> {
        use crate::destinations::meta_conversions;
        let api_version = match fields.get("api_version") {
            Some(n) => self.api_version(n, &here.child("api_version"), "v27.0"),
            None => Some(crate::destinations::meta_audience::DEFAULT_API_VERSION.to_string()),
        };
        let pixel_id = self
            .require(fields, "pixel_id", here)
            .and_then(|n| self.digits(n, &here.child("pixel_id"), "pixel_id (the dataset id)"));
        let access_token_env = self.required_env(fields, "access_token_env", here);
        let action_source = match fields.get("action_source") {
            None => Some(meta_conversions::DEFAULT_ACTION_SOURCE.to_string()),
            Some(n) => {
                let at = here.child("action_source");
                self.string(n, &at).and_then(|v| {
                    if meta_conversions::SUPPORTED_ACTION_SOURCES.contains(&v.as_str()) {
                        Some(v)
                    } else if let Some(why) = meta_conversions::unsupported_action_source(&v) {
                        self.issue(n, &at, format!("action_source `{v}` cannot be sent: {why}"));
                        None
                    } else {
                        self.issue(
                            n,
                            &at,
                            format!(
                                "unknown action_source `{v}`; expected one of: {}",
                                meta_conversions::SUPPORTED_ACTION_SOURCES.join(", ")
                            ),
                        );
                        None
                    }
                })
            }
        };
        let test_event_code_env = match fields.get("test_event_code_env") {
            None => Some(None),
            Some(n) => self
                .env_name(n, &here.child("test_event_code_env"))
                .map(Some),
        };
        Some(DestinationSettings::MetaConversions {
            api_version: api_version?,
            pixel_id: pixel_id?,
            access_token_env: access_token_env?,
            action_source: action_source?,
            test_event_code_env: test_event_code_env?,
        })
    }

    pub(super) fn required_env(
        &mut self,
        fields: &Fields<'_, '_>,
        key: &str,
        here: &Here<'_>,
    ) -> Option<String> {
        self.require(fields, key, here)
            .and_then(|n| self.env_name(n, &here.child(key)))
    }
}
