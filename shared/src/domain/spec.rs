//! The activation spec, typed. `domain::config` parses and validates the YAML
//! file into these; nothing else constructs them from outside input.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::Millis;

/// A validated activation spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationSpec {
    pub version: u32,
    /// SHA-256 (hex) of the file's bytes: stamped on every run record.
    pub config_hash: String,
    pub destinations: BTreeMap<String, DestinationSpec>,
    pub exports: BTreeMap<String, ExportSpec>,
    /// Reporting-webhook metrics that feed suppression exports, e.g.
    /// `email.unsubscribed -> [email_suppression]`.
    #[serde(default)]
    pub reporting_feeds: Vec<ReportingFeed>,
    /// Each export's latency objective (`exports.<name>.latency_slo`), in
    /// ms: p95 of source-to-acknowledgement latency above it alarms. Kept
    /// here, keyed by export name, so `ExportSpec` literals stay unchanged.
    #[serde(default)]
    pub latency_slo_ms: BTreeMap<String, Millis>,
    /// The event taxonomy (`events.<name>`): what each forwarded event must
    /// carry and which of its properties travel.
    #[serde(default)]
    pub events: BTreeMap<String, EventSpec>,
}

/// One event of the taxonomy. An event named by an events export must be
/// declared here; one missing a required property is rejected and counted,
/// never forwarded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventSpec {
    pub name: String,
    /// Properties every such event must carry (present, not null, not blank).
    #[serde(default)]
    pub required: Vec<String>,
    /// The allow-list of properties forwarded, with transforms, as for
    /// attributes; nothing else travels. Required properties are in it.
    #[serde(default)]
    pub properties: Vec<AttributeSpec>,
    /// Conversion fields: the properties holding the value, its currency
    /// (ISO 4217) and the order id (Google's transaction id).
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub order_id: Option<String>,
}

impl ActivationSpec {
    pub fn export(&self, name: &str) -> Option<&ExportSpec> {
        self.exports.get(name)
    }
    pub fn destination(&self, name: &str) -> Option<&DestinationSpec> {
        self.destinations.get(name)
    }
    /// The export's latency objective in ms, if the spec sets one.
    pub fn latency_slo_ms(&self, export: &str) -> Option<Millis> {
        self.latency_slo_ms.get(export).copied()
    }
    /// Exports that list `event` among their exit events.
    pub fn exports_exiting_on<'a>(
        &'a self,
        event: &'a str,
    ) -> impl Iterator<Item = &'a ExportSpec> + 'a {
        self.exports
            .values()
            .filter(move |e| e.exit_on.iter().any(|n| n == event))
    }
    /// Exports that must never contain members of `export`.
    pub fn exports_suppressed_by<'a>(
        &'a self,
        export: &'a str,
    ) -> impl Iterator<Item = &'a ExportSpec> + 'a {
        self.exports
            .values()
            .filter(move |e| e.suppress.iter().any(|n| n == export))
    }
}

/// A reporting metric (object_type + metric) that enters people into exports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportingFeed {
    /// `customer`, `email`, ... or `*`.
    pub object_type: String,
    pub metric: String,
    pub exports: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    Warehouse,
    Clevertap,
    MetaAudience,
    GoogleCustomerMatch,
    /// Google audiences through the Data Manager API (the default Google path).
    GoogleDataManager,
    Webhook,
    /// Meta Conversions API: server events for a pixel (dataset).
    MetaConversions,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Warehouse => "warehouse",
            DestinationKind::Clevertap => "clevertap",
            DestinationKind::MetaAudience => "meta_audience",
            DestinationKind::GoogleCustomerMatch => "google_customer_match",
            DestinationKind::GoogleDataManager => "google_data_manager",
            DestinationKind::Webhook => "webhook",
            DestinationKind::MetaConversions => "meta_conversions",
        }
    }
    /// Ad platforms: hashed identifiers, remove the old identifier on change.
    pub fn is_ad_platform(self) -> bool {
        matches!(
            self,
            DestinationKind::MetaAudience
                | DestinationKind::GoogleCustomerMatch
                | DestinationKind::GoogleDataManager
        )
    }
}

/// A destination: where and how to send. Secrets are named by environment
/// variable, never given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DestinationSpec {
    pub name: String,
    pub kind: DestinationKind,
    /// Override of the API base URL (tests and the demo point it at `sim/`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// People per request; each kind has a default and a hard maximum.
    pub batch_size: usize,
    /// Concurrent requests at most (the destination's rate limit).
    pub max_concurrency: u32,
    /// Requests per second at most, per process (`pipeline::limits`);
    /// `None`: no rate limit beyond `max_concurrency`.
    #[serde(default)]
    pub max_requests_per_second: Option<f64>,
    /// Delivery attempts before a job is dead-lettered.
    pub max_attempts: u32,
    pub settings: DestinationSettings,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DestinationSettings {
    Warehouse {
        /// A local directory, or `s3://bucket/prefix`.
        location: String,
    },
    Clevertap {
        /// `us1`, `in1`, `sg1`, `aps3`, `mec1`, `eu1`.
        region: String,
        account_id_env: String,
        passcode_env: String,
        /// Event properties per event type (CleverTap's limits page: 256;
        /// docs/clevertap.md): an event with more properties after
        /// flattening is `Invalid`, never sent to be refused (522).
        #[serde(default = "default_clevertap_max_event_properties")]
        max_event_properties: usize,
    },
    MetaAudience {
        api_version: String,
        ad_account_id: String,
        access_token_env: String,
    },
    /// Google Ads API Customer Match (offline user data jobs): for accounts
    /// Google still allowlists for it; everyone else uses `GoogleDataManager`.
    GoogleCustomerMatch {
        api_version: String,
        /// 10 digits, no dashes.
        customer_id: String,
        #[serde(default)]
        login_customer_id: Option<String>,
        developer_token_env: String,
        /// OAuth credentials and token endpoint.
        auth: GoogleAuthSpec,
        /// Remove dots from gmail.com local parts before hashing.
        #[serde(default)]
        gmail_remove_dots: bool,
        /// How long a send waits before looking again at a list whose job
        /// is still running (the job itself takes hours), in ms.
        #[serde(default = "default_job_wait_ms")]
        job_wait_ms: u64,
        /// The job's `customerMatchUserListMetadata.consent`, and the EEA
        /// rule, as on the Data Manager path.
        consent: GoogleConsentSpec,
    },
    /// Google audiences through the Data Manager API (`API-CONTRACTS.md` §4b).
    GoogleDataManager {
        /// The Google Ads account owning the user lists (digits).
        operating_account_id: String,
        /// A manager account the credentials log in through, if any.
        #[serde(default)]
        login_account_id: Option<String>,
        auth: GoogleAuthSpec,
        consent: GoogleConsentSpec,
        /// Remove dots from gmail.com / googlemail.com local parts (on by
        /// default here).
        #[serde(default = "default_true")]
        gmail_remove_dots: bool,
        /// Remove a `+suffix` from gmail.com / googlemail.com local parts (on
        /// by default here, as Google's formatting guidance asks).
        #[serde(default = "default_true")]
        gmail_strip_plus_suffix: bool,
        /// How long after sending a request its status is first read, in ms
        /// (Google asks for about 30 minutes); later reads back off
        /// exponentially from it.
        #[serde(default = "default_status_poll_after_ms")]
        status_poll_after_ms: u64,
    },
    Webhook {
        url: String,
        secret_env: String,
        /// Local testing only: lets the URL (or `base_url`) be `http://`
        /// and a loopback or private address (see `destinations::net_guard`).
        #[serde(default)]
        allow_private_network: bool,
    },
    /// Meta Conversions API (`API-CONTRACTS.md` §3b): events of events /
    /// conversions exports, sent to `/{api_version}/{pixel_id}/events`.
    MetaConversions {
        api_version: String,
        /// The pixel (dataset) id, digits.
        pixel_id: String,
        access_token_env: String,
        /// Where the conversions happened: `system_generated`, `email`,
        /// `website`, `phone_call`, `chat`, `physical_store` or `other`.
        action_source: String,
        /// A Test Events code from Events Manager: events sent with it
        /// show in the Test Events tool only.
        #[serde(default)]
        test_event_code_env: Option<String>,
    },
}

fn default_true() -> bool {
    true
}

/// CleverTap's event-property limit per event type (its limits page).
pub const DEFAULT_CLEVERTAP_MAX_EVENT_PROPERTIES: usize = 256;

fn default_clevertap_max_event_properties() -> usize {
    DEFAULT_CLEVERTAP_MAX_EVENT_PROPERTIES
}

fn default_job_wait_ms() -> u64 {
    15 * 60 * 1000
}

fn default_status_poll_after_ms() -> u64 {
    30 * 60 * 1000
}

/// Where a Google destination gets its OAuth access tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoogleAuthSpec {
    /// The OAuth token endpoint (default Google's).
    pub token_url: String,
    pub credentials: GoogleCredentialsSpec,
}

/// Google credentials, each secret named by environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GoogleCredentialsSpec {
    /// A service-account key file (JSON), JWT bearer grant.
    ServiceAccount { key_env: String },
    /// An OAuth client and a user's refresh token.
    RefreshToken {
        client_id_env: String,
        client_secret_env: String,
        refresh_token_env: String,
    },
    /// A fixed access token: cannot be refreshed (tests, or rotated outside).
    AccessToken { access_token_env: String },
}

/// A consent value (Data Manager and Google Ads API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    Denied,
    Unspecified,
}

impl ConsentStatus {
    pub fn as_api(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "CONSENT_GRANTED",
            ConsentStatus::Denied => "CONSENT_DENIED",
            ConsentStatus::Unspecified => "CONSENT_STATUS_UNSPECIFIED",
        }
    }

    /// The Google Ads API's name (`ConsentStatusEnum.ConsentStatus`).
    pub fn as_ads_api(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "GRANTED",
            ConsentStatus::Denied => "DENIED",
            ConsentStatus::Unspecified => "UNSPECIFIED",
        }
    }
}

/// Consent sent to Google (Data Manager: per request from these settings,
/// per member from an export attribute; Ads API: per job). EEA (and UK,
/// Swiss) people without both consents granted are not sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoogleConsentSpec {
    pub ad_user_data: ConsentStatus,
    pub ad_personalization: ConsentStatus,
    /// Export attribute carrying a person's consent to both (true / false,
    /// or granted / denied); it overrides the request's.
    #[serde(default)]
    pub attribute: Option<String>,
    /// Export attribute with the person's country (ISO alpha-2), which
    /// decides whether the EEA rule applies.
    #[serde(default)]
    pub country_attribute: Option<String>,
    /// Whether a person whose country is unknown is treated as in the EEA.
    #[serde(default = "default_true")]
    pub unknown_country_is_eea: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportSource {
    /// A Customer.io segment, read in batch from the App API (and fed in
    /// real time by webhook actions naming this export).
    Segment { segment_id: u64 },
    /// Webhook actions only (no batch source).
    Action,
    /// Events by name (events / conversions mode).
    Events { names: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportMode {
    Membership,
    Attributes,
    Events,
    Conversions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    Id,
    Email,
    Phone,
    CioId,
}

impl IdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Id => "id",
            IdKind::Email => "email",
            IdKind::Phone => "phone",
            IdKind::CioId => "cio_id",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySpec {
    pub golden: IdKind,
    #[serde(default)]
    pub fallbacks: Vec<IdKind>,
    /// Default phone region for numbers without a country code (ISO alpha-2).
    #[serde(default)]
    pub default_phone_region: Option<String>,
}

/// Match keys a destination may be sent (Meta's multi-key schema, Google's
/// identifiers). Attribute-backed keys name the export attribute to read.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKey {
    Email,
    Phone,
    ExternId,
    FirstName,
    LastName,
    City,
    State,
    Zip,
    Country,
    Gender,
    DateOfBirth,
    /// Meta value-based audiences (lookalike seeds): the person's value,
    /// e.g. lifetime value, from the export attribute `lookalike_value`.
    /// Sent as a number, never hashed, and never a match key on its own.
    LookalikeValue,
}

impl MatchKey {
    pub fn as_str(&self) -> &'static str {
        match self {
            MatchKey::Email => "email",
            MatchKey::Phone => "phone",
            MatchKey::ExternId => "extern_id",
            MatchKey::FirstName => "first_name",
            MatchKey::LastName => "last_name",
            MatchKey::City => "city",
            MatchKey::State => "state",
            MatchKey::Zip => "zip",
            MatchKey::Country => "country",
            MatchKey::Gender => "gender",
            MatchKey::DateOfBirth => "date_of_birth",
            MatchKey::LookalikeValue => "lookalike_value",
        }
    }
    /// Keys read from export attributes (not from identifiers).
    pub fn attribute_backed(&self) -> bool {
        !matches!(self, MatchKey::Email | MatchKey::Phone | MatchKey::ExternId)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Transform {
    /// Passed as the source gives it (a string).
    Identity,
    /// A number from the source string.
    Number,
    /// `true` / `false` from the source string.
    Bool,
    /// Lowercased, trimmed string.
    Lowercase,
    /// A Unix-seconds or RFC 3339 source value, emitted as `YYYY-MM-DD`.
    Date,
    /// A number bucketed by ascending edges: `[50, 100, 150]` gives
    /// `lt_50`, `50_100`, `100_150`, `gte_150`.
    Bucket { edges: Vec<f64> },
    /// One of the listed values, else the fallback (or dropped).
    Enum {
        values: Vec<String>,
        #[serde(default)]
        fallback: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeSpec {
    /// Name the destinations see.
    pub name: String,
    /// Customer.io attribute (or webhook action attribute) read.
    pub from: String,
    pub transform: Transform,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TierRule {
    /// Time since entry in `[min_age, max_age)`.
    Age {
        min_age_ms: Millis,
        max_age_ms: Millis,
    },
    /// A numeric export attribute at or above `min`.
    Value { attribute: String, min: f64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierSpec {
    pub name: String,
    pub rule: TierRule,
}

/// How an export lands in one destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportDestination {
    pub destination: String,
    /// The audience for all members: Meta audience id, Google user list id,
    /// CleverTap profile property, warehouse table label.
    pub audience: String,
    /// Audiences per tier; a tier not listed is not sent to this destination.
    #[serde(default)]
    pub tier_audiences: BTreeMap<String, String>,
    /// Match keys sent (ad platforms); empty means the kind's default.
    #[serde(default)]
    pub keys: Vec<MatchKey>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardRails {
    /// Expected audience size band; a run outside it is held.
    #[serde(default)]
    pub min_size: Option<u64>,
    #[serde(default)]
    pub max_size: Option<u64>,
    /// (adds + removes) / current size, in percent; above it the run is held.
    #[serde(default)]
    pub max_churn_pct: Option<f64>,
    /// Below it reconciliation alarms (0.0..=1.0).
    #[serde(default)]
    pub min_match_rate: Option<f64>,
    /// Refuse to remove everyone because the source came back empty.
    #[serde(default = "yes")]
    pub refuse_empty_source: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cadence {
    /// Webhook actions and exit events apply at once.
    #[serde(default)]
    pub realtime: bool,
    /// Batch every N minutes (EventBridge `rate()`), if any.
    #[serde(default)]
    pub every_minutes: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportSpec {
    pub name: String,
    pub source: ExportSource,
    pub mode: ExportMode,
    pub cadence: Cadence,
    pub identity: IdentitySpec,
    /// The governed allow-list; nothing else travels.
    pub attributes: Vec<AttributeSpec>,
    pub tiers: Vec<TierSpec>,
    /// Events that remove a person from this export (and every tier) at once.
    pub exit_on: Vec<String>,
    /// Exports whose members this export must never contain.
    pub suppress: Vec<String>,
    pub destinations: Vec<ExportDestination>,
    pub guard_rails: GuardRails,
    /// Person ids of canary profiles, always delivered first.
    pub test_profiles: Vec<String>,
}

impl ExportSpec {
    pub fn binding(&self, destination: &str) -> Option<&ExportDestination> {
        self.destinations
            .iter()
            .find(|d| d.destination == destination)
    }
    pub fn attribute(&self, name: &str) -> Option<&AttributeSpec> {
        self.attributes.iter().find(|a| a.name == name)
    }
}
