//! The activation spec loader: YAML in, a validated [`ActivationSpec`] out.
//!
//! Validation is strict and collects every problem in one pass, each with the
//! line and column it points at, so a config change fails at review time with
//! the whole list rather than one error per deploy.
//!
//! The YAML surface is documented key by key in `config/exports.example.yaml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use sha2::{Digest, Sha256};

use super::identity::default_keys;
use super::model::Millis;
use super::spec::{
    ActivationSpec, AttributeSpec, Cadence, DestinationKind, DestinationSettings, DestinationSpec,
    ExportDestination, ExportMode, ExportSource, ExportSpec, GuardRails, IdKind, IdentitySpec,
    MatchKey, ReportingFeed, TierRule, TierSpec, Transform,
};

#[path = "config_google.rs"]
mod google;
// `exports.<name>.latency_slo`: parsed and checked in its own file.
mod slo;

/// The only spec format version this build reads.
pub const SPEC_VERSION: u32 = 1;
/// Delivery attempts before a job is dead-lettered, unless a destination says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// One problem found in a spec file. `line` is 1-based; `column` is 1-based
/// (both 0 when the problem has no position, e.g. the file cannot be read).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    pub line: usize,
    pub column: usize,
    /// The export the problem belongs to, if any.
    pub export: Option<String>,
    /// Dotted path of the key, e.g. `exports.cart_abandoners.tiers[1].min_age`.
    pub key: String,
    pub message: String,
}

/// Every problem found in one spec file.
#[derive(Debug, thiserror::Error)]
#[error("{}", render_issues(.origin, .issues))]
pub struct ConfigErrors {
    /// The file name the issues point into.
    pub origin: String,
    pub issues: Vec<ConfigIssue>,
}

fn render_issues(origin: &str, issues: &[ConfigIssue]) -> String {
    let mut lines = Vec::with_capacity(issues.len());
    for issue in issues {
        let mut line = if issue.line == 0 {
            format!("{origin}: ")
        } else {
            format!("{origin}:{}:{}: ", issue.line, issue.column)
        };
        if let Some(export) = &issue.export {
            line.push_str(&format!("export `{export}`: "));
        }
        if !issue.key.is_empty() {
            line.push_str(&format!("`{}`: ", issue.key));
        }
        line.push_str(&issue.message);
        lines.push(line);
    }
    lines.join("\n")
}

/// People per request when the spec does not say.
pub fn default_batch_size(kind: DestinationKind) -> usize {
    match kind {
        // The docs allow 1000 per upload; the official client sends 100.
        DestinationKind::Clevertap => 100,
        DestinationKind::MetaAudience => 10_000,
        DestinationKind::GoogleCustomerMatch => 10_000,
        DestinationKind::GoogleDataManager => 10_000,
        DestinationKind::Warehouse => 5_000,
        DestinationKind::Webhook => 500,
    }
}

/// The hard maximum of people per request (the destination's documented limit).
pub fn max_batch_size(kind: DestinationKind) -> usize {
    match kind {
        DestinationKind::Clevertap => 1_000,
        DestinationKind::MetaAudience => 10_000,
        DestinationKind::GoogleCustomerMatch => 100_000,
        // ≤ 10,000 audience members per ingest / remove request.
        DestinationKind::GoogleDataManager => 10_000,
        DestinationKind::Warehouse => 100_000,
        DestinationKind::Webhook => 10_000,
    }
}

/// Concurrent requests when the spec does not say.
pub fn default_max_concurrency(kind: DestinationKind) -> u32 {
    match kind {
        // CleverTap caps an account at 15 concurrent requests; leave headroom.
        DestinationKind::Clevertap => 10,
        DestinationKind::MetaAudience => 4,
        DestinationKind::GoogleCustomerMatch => 2,
        DestinationKind::GoogleDataManager => 2,
        DestinationKind::Warehouse => 4,
        DestinationKind::Webhook => 4,
    }
}

/// The most concurrent requests a destination accepts, if it has a cap.
pub fn max_concurrency_cap(kind: DestinationKind) -> Option<u32> {
    match kind {
        DestinationKind::Clevertap => Some(15),
        _ => None,
    }
}

/// Reads and validates a spec file. An unreadable file is a single issue.
pub fn load_spec_file(path: &Path) -> Result<ActivationSpec, ConfigErrors> {
    let origin = path.display().to_string();
    let unreadable = |message: String| ConfigErrors {
        origin: origin.clone(),
        issues: vec![ConfigIssue {
            line: 0,
            column: 0,
            export: None,
            key: String::new(),
            message,
        }],
    };
    let bytes =
        std::fs::read(path).map_err(|e| unreadable(format!("cannot read the file: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| unreadable(format!("the file is not UTF-8 text: {e}")))?;
    parse_spec(&text, &origin)
}

/// Parses and validates a spec. `origin` names the file in messages.
pub fn parse_spec(text: &str, origin: &str) -> Result<ActivationSpec, ConfigErrors> {
    let config_hash = hex::encode(Sha256::digest(text.as_bytes()));
    let mut checker = Checker::default();
    let spec = match MarkedYaml::load_from_str(text) {
        Err(e) => {
            checker.issues.push(ConfigIssue {
                line: e.marker().line(),
                column: e.marker().col() + 1,
                export: None,
                key: String::new(),
                message: format!("invalid YAML: {}", e.info()),
            });
            None
        }
        Ok(docs) => match docs.as_slice() {
            [] => {
                checker.issues.push(ConfigIssue {
                    line: 1,
                    column: 1,
                    export: None,
                    key: String::new(),
                    message: "the file is empty; expected `version`, `destinations` and `exports`"
                        .into(),
                });
                None
            }
            [root] => checker.spec(root, config_hash),
            [_, second, ..] => {
                checker.issue(
                    second,
                    &Here::root(),
                    "one YAML document per spec file (found a second `---` document)",
                );
                None
            }
        },
    };
    let mut issues = checker.issues;
    issues.sort_by_key(|i| (i.line, i.column));
    match spec {
        Some(spec) if issues.is_empty() => Ok(spec),
        _ => {
            if issues.is_empty() {
                // Defensive: a failed build always records why; never return an empty error.
                issues.push(ConfigIssue {
                    line: 0,
                    column: 0,
                    export: None,
                    key: String::new(),
                    message: "the spec is invalid".into(),
                });
            }
            Err(ConfigErrors {
                origin: origin.to_owned(),
                issues,
            })
        }
    }
}

type Node<'y> = MarkedYaml<'y>;

/// Where in the document a check is: export and dotted key path.
#[derive(Clone)]
struct Here<'e> {
    export: Option<&'e str>,
    key: String,
}

impl<'e> Here<'e> {
    fn root() -> Self {
        Here {
            export: None,
            key: String::new(),
        }
    }
    fn child(&self, k: &str) -> Here<'e> {
        let key = if self.key.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.key)
        };
        Here {
            export: self.export,
            key,
        }
    }
    fn index(&self, i: usize) -> Here<'e> {
        Here {
            export: self.export,
            key: format!("{}[{i}]", self.key),
        }
    }
    fn in_export(&self, name: &'e str) -> Here<'e> {
        Here {
            export: Some(name),
            key: self.key.clone(),
        }
    }
}

/// A mapping's entries with their nodes. Null values read as absent.
struct Fields<'n, 'y> {
    at: &'n Node<'y>,
    entries: Vec<(&'n str, &'n Node<'y>, &'n Node<'y>)>,
}

impl<'n, 'y> Fields<'n, 'y> {
    fn get(&self, key: &str) -> Option<&'n Node<'y>> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
            .filter(|v| !is_null(v))
    }
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

fn is_null(node: &Node<'_>) -> bool {
    matches!(node.data, YamlData::Value(Scalar::Null))
}

fn as_str<'n>(node: &'n Node<'_>) -> Option<&'n str> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.as_ref()),
        _ => None,
    }
}

fn describe(node: &Node<'_>) -> String {
    match &node.data {
        YamlData::Value(Scalar::Null) => "nothing".into(),
        YamlData::Value(Scalar::Boolean(b)) => format!("the boolean `{b}`"),
        YamlData::Value(Scalar::Integer(i)) => format!("the number `{i}`"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("the number `{}`", f.0),
        YamlData::Value(Scalar::String(_)) => "a string".into(),
        YamlData::Sequence(_) => "a list".into(),
        YamlData::Mapping(_) => "a mapping".into(),
        YamlData::Tagged(..) => "a tagged value (tags are not supported)".into(),
        _ => "an unreadable value".into(),
    }
}

/// Keys that would hold a secret literally; the file may only name env vars.
const SECRET_WORDS: &[&str] = &[
    "passcode",
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "developer_token",
    "refresh_token",
    "client_secret",
    "signing_secret",
    "private_key",
];

const CLEVERTAP_REGIONS: &[&str] = &["us1", "in1", "sg1", "aps3", "mec1", "eu1"];
const REPORTING_OBJECT_TYPES: &[&str] = &[
    "customer", "email", "sms", "push", "in_app", "slack", "webhook", "whatsapp", "*",
];
const GOOGLE_KEYS: &[MatchKey] = &[
    MatchKey::Email,
    MatchKey::Phone,
    MatchKey::FirstName,
    MatchKey::LastName,
    MatchKey::Country,
    MatchKey::Zip,
];
const GOOGLE_ADDRESS_KEYS: &[MatchKey] = &[
    MatchKey::FirstName,
    MatchKey::LastName,
    MatchKey::Country,
    MatchKey::Zip,
];

const DESTINATION_COMMON_KEYS: &[&str] = &[
    "kind",
    "base_url",
    "batch_size",
    "max_concurrency",
    "max_requests_per_second",
    "max_attempts",
];

fn destination_keys(kind: DestinationKind) -> &'static [&'static str] {
    match kind {
        DestinationKind::Warehouse => &["location"],
        DestinationKind::Clevertap => &["region", "account_id_env", "passcode_env"],
        DestinationKind::MetaAudience => &["api_version", "ad_account_id", "access_token_env"],
        DestinationKind::GoogleCustomerMatch => google::CUSTOMER_MATCH_KEYS,
        DestinationKind::GoogleDataManager => google::DATA_MANAGER_KEYS,
        DestinationKind::Webhook => &["url", "secret_env"],
    }
}

const KINDS: &[(&str, DestinationKind)] = &[
    ("warehouse", DestinationKind::Warehouse),
    ("clevertap", DestinationKind::Clevertap),
    ("meta_audience", DestinationKind::MetaAudience),
    (
        "google_customer_match",
        DestinationKind::GoogleCustomerMatch,
    ),
    ("google_data_manager", DestinationKind::GoogleDataManager),
    ("webhook", DestinationKind::Webhook),
];
const MODES: &[(&str, ExportMode)] = &[
    ("membership", ExportMode::Membership),
    ("attributes", ExportMode::Attributes),
    ("events", ExportMode::Events),
    ("conversions", ExportMode::Conversions),
];
const ID_KINDS: &[(&str, IdKind)] = &[
    ("id", IdKind::Id),
    ("email", IdKind::Email),
    ("phone", IdKind::Phone),
    ("cio_id", IdKind::CioId),
];
const MATCH_KEYS: &[(&str, MatchKey)] = &[
    ("email", MatchKey::Email),
    ("phone", MatchKey::Phone),
    ("extern_id", MatchKey::ExternId),
    ("first_name", MatchKey::FirstName),
    ("last_name", MatchKey::LastName),
    ("city", MatchKey::City),
    ("state", MatchKey::State),
    ("zip", MatchKey::Zip),
    ("country", MatchKey::Country),
    ("gender", MatchKey::Gender),
    ("date_of_birth", MatchKey::DateOfBirth),
];
const SIMPLE_TRANSFORMS: &[(&str, Transform)] = &[
    ("identity", Transform::Identity),
    ("number", Transform::Number),
    ("bool", Transform::Bool),
    ("lowercase", Transform::Lowercase),
    ("date", Transform::Date),
];

fn transform_name(t: &Transform) -> &'static str {
    match t {
        Transform::Identity => "identity",
        Transform::Number => "number",
        Transform::Bool => "bool",
        Transform::Lowercase => "lowercase",
        Transform::Date => "date",
        Transform::Bucket { .. } => "bucket",
        Transform::Enum { .. } => "enum",
    }
}

/// Names used in resource names and counters: keep them plain.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// `15m`, `1h`, `30s`, `2d`, `500ms`, or `0`.
fn parse_duration_ms(s: &str) -> Option<Millis> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits.parse().ok()?;
    let factor: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn format_duration(ms: Millis) -> String {
    for (unit, factor) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms % factor == 0 {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

/// What the exports may refer to, known before any export is read.
struct Declared {
    exports: BTreeSet<String>,
    /// Destination name -> kind (None when the destination itself is broken).
    destinations: BTreeMap<String, Option<DestinationKind>>,
}

#[derive(Default)]
struct Checker {
    issues: Vec<ConfigIssue>,
}

impl Checker {
    fn issue(&mut self, node: &Node<'_>, here: &Here<'_>, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            line: node.span.start.line(),
            column: node.span.start.col() + 1,
            export: here.export.map(str::to_owned),
            key: here.key.clone(),
            message: message.into(),
        });
    }

    /// A mapping (null reads as empty). With `allowed`, every other key is an issue.
    fn mapping<'n, 'y>(
        &mut self,
        node: &'n Node<'y>,
        here: &Here<'_>,
        allowed: Option<&[&str]>,
    ) -> Option<Fields<'n, 'y>> {
        let map = match &node.data {
            YamlData::Mapping(map) => map,
            YamlData::Value(Scalar::Null) => {
                return Some(Fields {
                    at: node,
                    entries: Vec::new(),
                })
            }
            _ => {
                self.issue(
                    node,
                    here,
                    format!("expected a mapping, found {}", describe(node)),
                );
                return None;
            }
        };
        let mut entries = Vec::with_capacity(map.len());
        for (k, v) in map.iter() {
            let Some(key) = as_str(k) else {
                self.issue(
                    k,
                    here,
                    format!("keys must be strings, found {}", describe(k)),
                );
                continue;
            };
            if let Some(allowed) = allowed {
                if !allowed.contains(&key) {
                    self.unknown_key(k, key, &here.child(key), allowed);
                    continue;
                }
            }
            entries.push((key, k, v));
        }
        Some(Fields { at: node, entries })
    }

    fn unknown_key(&mut self, node: &Node<'_>, key: &str, here: &Here<'_>, allowed: &[&str]) {
        let env_twin = format!("{key}_env");
        let message = if allowed.contains(&env_twin.as_str()) {
            format!(
                "secrets never live in the spec file: name the environment variable that holds it with `{env_twin}` instead"
            )
        } else if SECRET_WORDS.contains(&key) {
            "secrets never live in the spec file: only `*_env` keys naming an environment variable are allowed".to_owned()
        } else {
            format!(
                "unknown key `{key}`; expected one of: {}",
                allowed.join(", ")
            )
        };
        self.issue(node, here, message);
    }

    fn require<'n, 'y>(
        &mut self,
        fields: &Fields<'n, 'y>,
        key: &str,
        here: &Here<'_>,
    ) -> Option<&'n Node<'y>> {
        let found = fields.get(key);
        if found.is_none() {
            self.issue(
                fields.at,
                &here.child(key),
                format!("missing required key `{key}`"),
            );
        }
        found
    }

    fn string(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<String> {
        match as_str(node) {
            Some(s) if !s.trim().is_empty() => Some(s.to_owned()),
            Some(_) => {
                self.issue(node, here, "must not be blank");
                None
            }
            None => {
                let hint = if matches!(node.data, YamlData::Value(Scalar::Integer(_))) {
                    " (quote numeric ids: \"1234567890\")"
                } else {
                    ""
                };
                self.issue(
                    node,
                    here,
                    format!("expected a string, found {}{hint}", describe(node)),
                );
                None
            }
        }
    }

    fn plain_name(&mut self, node: &Node<'_>, here: &Here<'_>, what: &str) -> Option<String> {
        let s = self.string(node, here)?;
        if is_plain_name(&s) {
            Some(s)
        } else {
            self.issue(
                node,
                here,
                format!("{what} `{s}` may use only lowercase letters, digits and `_`"),
            );
            None
        }
    }

    fn env_name(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<String> {
        let s = self.string(node, here)?;
        if is_env_name(&s) {
            Some(s)
        } else {
            // Never echo the value: it may be a secret pasted by mistake.
            self.issue(
                node,
                here,
                "must name an environment variable (A-Z, 0-9, `_`), not hold the secret itself",
            );
            None
        }
    }

    fn uint(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<u64> {
        match &node.data {
            YamlData::Value(Scalar::Integer(i)) if *i >= 0 => u64::try_from(*i).ok(),
            _ => {
                self.issue(
                    node,
                    here,
                    format!("expected a whole number >= 0, found {}", describe(node)),
                );
                None
            }
        }
    }

    fn number(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<f64> {
        match &node.data {
            YamlData::Value(Scalar::Integer(i)) => Some(*i as f64),
            YamlData::Value(Scalar::FloatingPoint(f)) if f.0.is_finite() => Some(f.0),
            _ => {
                self.issue(
                    node,
                    here,
                    format!("expected a number, found {}", describe(node)),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<bool> {
        match &node.data {
            YamlData::Value(Scalar::Boolean(b)) => Some(*b),
            _ => {
                self.issue(
                    node,
                    here,
                    format!("expected `true` or `false`, found {}", describe(node)),
                );
                None
            }
        }
    }

    /// A list (null reads as empty).
    fn list<'n, 'y>(&mut self, node: &'n Node<'y>, here: &Here<'_>) -> Option<Vec<&'n Node<'y>>> {
        match &node.data {
            YamlData::Sequence(items) => Some(items.iter().collect()),
            YamlData::Value(Scalar::Null) => Some(Vec::new()),
            _ => {
                self.issue(
                    node,
                    here,
                    format!("expected a list, found {}", describe(node)),
                );
                None
            }
        }
    }

    /// A list of strings, each with its node (for later cross-checks).
    fn strings<'n, 'y>(
        &mut self,
        node: &'n Node<'y>,
        here: &Here<'_>,
    ) -> Option<Vec<(String, &'n Node<'y>)>> {
        let items = self.list(node, here)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            match self.string(item, &here.index(i)) {
                Some(s) => out.push((s, item)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn choice<T: Clone>(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
        options: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(node, here)?;
        match options.iter().find(|(name, _)| *name == s) {
            Some((_, v)) => Some(v.clone()),
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.issue(
                    node,
                    here,
                    format!("unknown value `{s}`; expected one of: {}", names.join(", ")),
                );
                None
            }
        }
    }

    fn duration_ms(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<Millis> {
        let parsed = match &node.data {
            YamlData::Value(Scalar::Integer(0)) => Some(0),
            YamlData::Value(Scalar::String(s)) => parse_duration_ms(s),
            _ => None,
        };
        if parsed.is_none() {
            self.issue(
                node,
                here,
                format!(
                    "expected a duration like `15m`, `1h`, `30s` or `2d`, found {}",
                    describe(node)
                ),
            );
        }
        parsed
    }

    // ----- the document -----

    fn spec(&mut self, root: &Node<'_>, config_hash: String) -> Option<ActivationSpec> {
        let here = Here::root();
        let top = self.mapping(
            root,
            &here,
            Some(&["version", "destinations", "exports", "reporting_feeds"]),
        )?;

        let version = self.require(&top, "version", &here).and_then(|n| {
            let v = self.uint(n, &here.child("version"))?;
            if v == u64::from(SPEC_VERSION) {
                Some(SPEC_VERSION)
            } else {
                self.issue(
                    n,
                    &here.child("version"),
                    format!("unsupported version {v}; this build reads version {SPEC_VERSION}"),
                );
                None
            }
        });

        // Names first, so references can be checked whatever the file order.
        let dest_fields = self
            .require(&top, "destinations", &here)
            .and_then(|n| self.mapping(n, &here.child("destinations"), None));
        let export_fields = self
            .require(&top, "exports", &here)
            .and_then(|n| self.mapping(n, &here.child("exports"), None));

        let mut destinations = BTreeMap::new();
        let mut declared = Declared {
            exports: BTreeSet::new(),
            destinations: BTreeMap::new(),
        };
        let mut destinations_ok = dest_fields.is_some();
        if let Some(fields) = &dest_fields {
            if fields.entries.is_empty() {
                self.issue(
                    fields.at,
                    &here.child("destinations"),
                    "declare at least one destination",
                );
                destinations_ok = false;
            }
            for (name, key_node, value) in &fields.entries {
                let at = here.child("destinations").child(name);
                let named = self.plain_name(key_node, &at, "destination name").is_some();
                let spec = self.destination(name, value, &at);
                declared
                    .destinations
                    .insert((*name).to_owned(), spec.as_ref().map(|d| d.kind));
                match spec {
                    Some(spec) if named => {
                        destinations.insert((*name).to_owned(), spec);
                    }
                    _ => destinations_ok = false,
                }
            }
        }

        let mut exports = BTreeMap::new();
        let mut latency_slo_ms = BTreeMap::new();
        let mut exports_ok = export_fields.is_some();
        if let Some(fields) = &export_fields {
            if fields.entries.is_empty() {
                self.issue(
                    fields.at,
                    &here.child("exports"),
                    "declare at least one export",
                );
                exports_ok = false;
            }
            for (name, _, _) in &fields.entries {
                declared.exports.insert((*name).to_owned());
            }
            for (name, key_node, value) in &fields.entries {
                let at = here.child("exports").child(name).in_export(name);
                let named = self.plain_name(key_node, &at, "export name").is_some();
                match self.latency_slo(value, &at) {
                    Some(Some(ms)) => {
                        latency_slo_ms.insert((*name).to_owned(), ms);
                    }
                    Some(None) => {}
                    None => exports_ok = false,
                }
                match self.export(name, value, &at, &declared) {
                    Some(spec) if named => {
                        exports.insert((*name).to_owned(), spec);
                    }
                    _ => exports_ok = false,
                }
            }
        }

        let reporting_feeds = match top.get("reporting_feeds") {
            None => Some(Vec::new()),
            Some(n) => self.reporting_feeds(n, &here.child("reporting_feeds"), &declared),
        };

        if !(destinations_ok && exports_ok) {
            return None;
        }
        Some(ActivationSpec {
            version: version?,
            config_hash,
            destinations,
            exports,
            reporting_feeds: reporting_feeds?,
            latency_slo_ms,
        })
    }

    fn reporting_feeds(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
        declared: &Declared,
    ) -> Option<Vec<ReportingFeed>> {
        let fields = self.mapping(node, here, None)?;
        let mut feeds = Vec::new();
        let mut ok = true;
        for (key, key_node, value) in &fields.entries {
            let at = here.child(key);
            let split = key.split_once('.');
            let parsed = match split {
                Some((object_type, metric))
                    if REPORTING_OBJECT_TYPES.contains(&object_type) && !metric.is_empty() =>
                {
                    Some((object_type.to_owned(), metric.to_owned()))
                }
                _ => {
                    self.issue(
                        key_node,
                        &at,
                        format!(
                            "a feed is named `<object_type>.<metric>` (e.g. `email.unsubscribed`) with object_type one of: {}",
                            REPORTING_OBJECT_TYPES.join(", ")
                        ),
                    );
                    None
                }
            };
            let targets = self.strings(value, &at);
            if let Some(targets) = &targets {
                if targets.is_empty() {
                    self.issue(
                        value,
                        &at,
                        "name at least one export this feed enters people into",
                    );
                    ok = false;
                }
                for (i, (export, n)) in targets.iter().enumerate() {
                    if !declared.exports.contains(export) {
                        self.issue(
                            n,
                            &at.index(i),
                            format!("export `{export}` is not declared"),
                        );
                        ok = false;
                    }
                }
            }
            match (parsed, targets) {
                (Some((object_type, metric)), Some(targets)) => feeds.push(ReportingFeed {
                    object_type,
                    metric,
                    exports: targets.into_iter().map(|(s, _)| s).collect(),
                }),
                _ => ok = false,
            }
        }
        ok.then_some(feeds)
    }

    // ----- destinations -----

    fn destination(
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

    fn url(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<String> {
        let s = self.string(node, here)?;
        if s.starts_with("https://") || s.starts_with("http://") {
            Some(s.trim_end_matches('/').to_owned())
        } else {
            self.issue(node, here, "expected an http:// or https:// URL");
            None
        }
    }

    fn api_version(&mut self, node: &Node<'_>, here: &Here<'_>, example: &str) -> Option<String> {
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

    fn digits(&mut self, node: &Node<'_>, here: &Here<'_>, what: &str) -> Option<String> {
        let s = self.string(node, here)?;
        if is_digits(&s) {
            Some(s)
        } else {
            self.issue(node, here, format!("{what} must be digits only"));
            None
        }
    }

    fn google_customer_id(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<String> {
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

    fn settings(
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
                Some(DestinationSettings::Clevertap {
                    region: region?,
                    account_id_env: account_id_env?,
                    passcode_env: passcode_env?,
                })
            }
            DestinationKind::MetaAudience => {
                // Optional: the newest Graph version we have checked the
                // contract against (v22-v24 have expired; 2635 alarms).
                let api_version = match fields.get("api_version") {
                    Some(n) => self.api_version(n, &here.child("api_version"), "v27.0"),
                    None => Some(crate::destinations::meta::DEFAULT_API_VERSION.to_string()),
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
            DestinationKind::GoogleCustomerMatch => self.google_customer_match(fields, here),
            DestinationKind::GoogleDataManager => self.google_data_manager(fields, here),
            DestinationKind::Webhook => {
                let url = self
                    .require(fields, "url", here)
                    .and_then(|n| self.url(n, &here.child("url")));
                let secret_env = self.required_env(fields, "secret_env", here);
                Some(DestinationSettings::Webhook {
                    url: url?,
                    secret_env: secret_env?,
                })
            }
        }
    }

    fn required_env(
        &mut self,
        fields: &Fields<'_, '_>,
        key: &str,
        here: &Here<'_>,
    ) -> Option<String> {
        self.require(fields, key, here)
            .and_then(|n| self.env_name(n, &here.child(key)))
    }

    // ----- exports -----

    fn export(
        &mut self,
        name: &str,
        node: &Node<'_>,
        here: &Here<'_>,
        declared: &Declared,
    ) -> Option<ExportSpec> {
        let fields = self.mapping(
            node,
            here,
            Some(&[
                "source",
                "mode",
                "cadence",
                "identity",
                "attributes",
                "tiers",
                "exit_on",
                "suppress",
                "destinations",
                "guard_rails",
                "test_profiles",
                "latency_slo",
            ]),
        )?;

        let source = self
            .require(&fields, "source", here)
            .and_then(|n| self.source(n, &here.child("source")));
        let mode_node = self.require(&fields, "mode", here);
        let mode = mode_node.and_then(|n| self.choice(n, &here.child("mode"), MODES));
        if let (Some(src), Some(m), Some(n)) = (&source, mode, mode_node) {
            let event_mode = matches!(m, ExportMode::Events | ExportMode::Conversions);
            let event_source = matches!(src, ExportSource::Events { .. });
            if event_mode != event_source {
                self.issue(
                    n,
                    &here.child("mode"),
                    "modes `events` and `conversions` go with an `events` source, and only they do",
                );
            }
        }

        let cadence = match fields.get("cadence") {
            None => {
                self.issue(
                    fields.at,
                    &here.child("cadence"),
                    "missing required key `cadence`: say `realtime: true` and/or `every: 15m`",
                );
                None
            }
            Some(n) => self.cadence(n, &here.child("cadence"), source.as_ref()),
        };

        let identity = self
            .require(&fields, "identity", here)
            .and_then(|n| self.identity(n, &here.child("identity")));

        let attributes = match fields.get("attributes") {
            None => Some(Vec::new()),
            Some(n) => self.attributes(n, &here.child("attributes")),
        };

        let tiers = match fields.get("tiers") {
            None => Some(Vec::new()),
            Some(n) => {
                let at = here.child("tiers");
                let tiers = self.tiers(n, &at, attributes.as_deref());
                if let (Some(t), Some(m)) = (&tiers, mode) {
                    if !t.is_empty() && m != ExportMode::Membership {
                        self.issue(n, &at, "tiers apply to `membership` exports only");
                    }
                }
                tiers
            }
        };

        let exit_on = match fields.get("exit_on") {
            None => Some(Vec::new()),
            Some(n) => self
                .strings(n, &here.child("exit_on"))
                .map(|v| v.into_iter().map(|(s, _)| s).collect()),
        };

        let suppress = match fields.get("suppress") {
            None => Some(Vec::new()),
            Some(n) => {
                let at = here.child("suppress");
                self.strings(n, &at).and_then(|items| {
                    let mut ok = true;
                    for (i, (other, item)) in items.iter().enumerate() {
                        if other == name {
                            self.issue(item, &at.index(i), "an export cannot suppress itself");
                            ok = false;
                        } else if !declared.exports.contains(other) {
                            self.issue(
                                item,
                                &at.index(i),
                                format!("export `{other}` is not declared"),
                            );
                            ok = false;
                        }
                    }
                    ok.then(|| items.into_iter().map(|(s, _)| s).collect())
                })
            }
        };

        let destinations = self.require(&fields, "destinations", here).and_then(|n| {
            self.export_destinations(
                name,
                n,
                &here.child("destinations"),
                declared,
                identity.as_ref(),
                attributes.as_deref(),
                tiers.as_deref(),
            )
        });

        let guard_rails = match fields.get("guard_rails") {
            None => Some(GuardRails {
                refuse_empty_source: true,
                ..GuardRails::default()
            }),
            Some(n) => self.guard_rails(n, &here.child("guard_rails"), source.as_ref()),
        };

        let test_profiles = match fields.get("test_profiles") {
            None => Some(Vec::new()),
            Some(n) => self
                .strings(n, &here.child("test_profiles"))
                .map(|v| v.into_iter().map(|(s, _)| s).collect()),
        };

        Some(ExportSpec {
            name: name.to_owned(),
            source: source?,
            mode: mode?,
            cadence: cadence?,
            identity: identity?,
            attributes: attributes?,
            tiers: tiers?,
            exit_on: exit_on?,
            suppress: suppress?,
            destinations: destinations?,
            guard_rails: guard_rails?,
            test_profiles: test_profiles?,
        })
    }

    /// `action`, `{segment: 101}` or `{events: [order_placed]}`.
    fn source(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<ExportSource> {
        if let Some(s) = as_str(node) {
            if s == "action" {
                return Some(ExportSource::Action);
            }
            self.issue(
                node,
                here,
                format!("unknown source `{s}`; expected `action`, `{{segment: <id>}}` or `{{events: [names]}}`"),
            );
            return None;
        }
        let fields = self.mapping(node, here, Some(&["segment", "events"]))?;
        match (fields.get("segment"), fields.get("events")) {
            (Some(n), None) => {
                let at = here.child("segment");
                match self.uint(n, &at) {
                    Some(0) => {
                        self.issue(n, &at, "a segment id is at least 1");
                        None
                    }
                    Some(segment_id) => Some(ExportSource::Segment { segment_id }),
                    None => None,
                }
            }
            (None, Some(n)) => {
                let at = here.child("events");
                let names = self.strings(n, &at)?;
                if names.is_empty() {
                    self.issue(n, &at, "name at least one event");
                    return None;
                }
                Some(ExportSource::Events {
                    names: names.into_iter().map(|(s, _)| s).collect(),
                })
            }
            _ => {
                self.issue(
                    node,
                    here,
                    "a source is exactly one of `action`, `{segment: <id>}` or `{events: [names]}`",
                );
                None
            }
        }
    }

    fn cadence(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
        source: Option<&ExportSource>,
    ) -> Option<Cadence> {
        let fields = self.mapping(node, here, Some(&["realtime", "every"]))?;
        let realtime = match fields.get("realtime") {
            None => Some(false),
            Some(n) => self.boolean(n, &here.child("realtime")),
        };
        let every_minutes = match fields.get("every") {
            None => Some(None),
            Some(n) => {
                let at = here.child("every");
                match self.duration_ms(n, &at) {
                    Some(ms) if ms >= 60_000 && ms % 60_000 == 0 => {
                        if matches!(source, Some(ExportSource::Action)) {
                            self.issue(
                                n,
                                &at,
                                "an action-only export has no batch source to poll; use `realtime: true` only",
                            );
                            None
                        } else {
                            match u32::try_from(ms / 60_000) {
                                Ok(m) => Some(Some(m)),
                                Err(_) => {
                                    self.issue(n, &at, "the interval is far too long");
                                    None
                                }
                            }
                        }
                    }
                    Some(_) => {
                        self.issue(n, &at, "the batch interval is whole minutes, at least `1m`");
                        None
                    }
                    None => None,
                }
            }
        };
        let cadence = Cadence {
            realtime: realtime?,
            every_minutes: every_minutes?,
        };
        if !cadence.realtime && cadence.every_minutes.is_none() {
            self.issue(
                node,
                here,
                "this export would never run: set `realtime: true` and/or `every: <interval>`",
            );
            return None;
        }
        Some(cadence)
    }

    /// `email` (golden only) or `{golden, fallbacks, default_phone_region}`.
    fn identity(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<IdentitySpec> {
        if as_str(node).is_some() {
            let golden = self.choice(node, here, ID_KINDS)?;
            return Some(IdentitySpec {
                golden,
                fallbacks: Vec::new(),
                default_phone_region: None,
            });
        }
        let fields = self.mapping(
            node,
            here,
            Some(&["golden", "fallbacks", "default_phone_region"]),
        )?;
        let golden = self
            .require(&fields, "golden", here)
            .and_then(|n| self.choice(n, &here.child("golden"), ID_KINDS));
        let fallbacks = match fields.get("fallbacks") {
            None => Some(Vec::new()),
            Some(n) => {
                let at = here.child("fallbacks");
                self.list(n, &at).and_then(|items| {
                    let mut out: Vec<IdKind> = Vec::new();
                    let mut ok = true;
                    for (i, item) in items.into_iter().enumerate() {
                        let at_i = at.index(i);
                        match self.choice(item, &at_i, ID_KINDS) {
                            Some(k) if Some(k) == golden || out.contains(&k) => {
                                self.issue(
                                    item,
                                    &at_i,
                                    format!(
                                        "`{}` is already the golden id or a fallback",
                                        k.as_str()
                                    ),
                                );
                                ok = false;
                            }
                            Some(k) => out.push(k),
                            None => ok = false,
                        }
                    }
                    ok.then_some(out)
                })
            }
        };
        let default_phone_region = match fields.get("default_phone_region") {
            None => Some(None),
            Some(n) => {
                let at = here.child("default_phone_region");
                self.string(n, &at).and_then(|r| {
                    if r.len() == 2 && r.chars().all(|c| c.is_ascii_uppercase()) {
                        Some(Some(r))
                    } else {
                        self.issue(n, &at, "expected an ISO 3166-1 alpha-2 region like `US`");
                        None
                    }
                })
            }
        };
        Some(IdentitySpec {
            golden: golden?,
            fallbacks: fallbacks?,
            default_phone_region: default_phone_region?,
        })
    }

    /// `name:` (identity), `name: <transform>`, or `name: {from, transform}`.
    fn attributes(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<Vec<AttributeSpec>> {
        let fields = self.mapping(node, here, None)?;
        let mut out = Vec::with_capacity(fields.entries.len());
        let mut ok = true;
        for (name, key_node, value) in &fields.entries {
            let at = here.child(name);
            if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
                self.issue(
                    key_node,
                    &at,
                    "attribute names may not be blank or contain spaces",
                );
                ok = false;
                continue;
            }
            let parsed = if is_null(value) {
                Some(((*name).to_owned(), Transform::Identity))
            } else if as_str(value).is_some() {
                self.transform(value, &at).map(|t| ((*name).to_owned(), t))
            } else {
                self.mapping(value, &at, Some(&["from", "transform"]))
                    .and_then(|f| {
                        let from = match f.get("from") {
                            None => Some((*name).to_owned()),
                            Some(n) => self.string(n, &at.child("from")),
                        };
                        let transform = match f.get("transform") {
                            None => Some(Transform::Identity),
                            Some(n) => self.transform(n, &at.child("transform")),
                        };
                        Some((from?, transform?))
                    })
            };
            match parsed {
                Some((from, transform)) => out.push(AttributeSpec {
                    name: (*name).to_owned(),
                    from,
                    transform,
                }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `number`, `date`, ..., `{bucket: [edges]}`, `{enum: [values]}` or
    /// `{enum: {values: [...], fallback: other}}`.
    fn transform(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<Transform> {
        if as_str(node).is_some() {
            return self.choice(node, here, SIMPLE_TRANSFORMS);
        }
        let fields = self.mapping(node, here, Some(&["bucket", "enum"]))?;
        match (fields.get("bucket"), fields.get("enum")) {
            (Some(n), None) => {
                let at = here.child("bucket");
                let items = self.list(n, &at)?;
                let mut edges = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    edges.push(self.number(item, &at.index(i))?);
                }
                if edges.is_empty() {
                    self.issue(n, &at, "give at least one bucket edge");
                    return None;
                }
                if edges.windows(2).any(|w| w[0] >= w[1]) {
                    self.issue(n, &at, "bucket edges must be strictly ascending");
                    return None;
                }
                Some(Transform::Bucket { edges })
            }
            (None, Some(n)) => {
                let at = here.child("enum");
                let (values, fallback) = if matches!(n.data, YamlData::Sequence(_)) {
                    (self.strings(n, &at), Some(None))
                } else {
                    let f = self.mapping(n, &at, Some(&["values", "fallback"]))?;
                    let values = self
                        .require(&f, "values", &at)
                        .and_then(|v| self.strings(v, &at.child("values")));
                    let fallback = match f.get("fallback") {
                        None => Some(None),
                        Some(fb) => self.string(fb, &at.child("fallback")).map(Some),
                    };
                    (values, fallback)
                };
                let values: Vec<String> = values?.into_iter().map(|(s, _)| s).collect();
                if values.is_empty() {
                    self.issue(n, &at, "list at least one enum value");
                    return None;
                }
                Some(Transform::Enum {
                    values,
                    fallback: fallback?,
                })
            }
            _ => {
                let names: Vec<&str> = SIMPLE_TRANSFORMS.iter().map(|(n, _)| *n).collect();
                self.issue(
                    node,
                    here,
                    format!(
                        "a transform is one of {}, `{{bucket: [edges]}}` or `{{enum: {{values: [...], fallback: ...}}}}`",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// A list of `{name, min_age, max_age}` or `{name, attribute, min}`.
    fn tiers(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
        attributes: Option<&[AttributeSpec]>,
    ) -> Option<Vec<TierSpec>> {
        let items = self.list(node, here)?;
        let mut out: Vec<TierSpec> = Vec::with_capacity(items.len());
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut ages: Vec<(Millis, Millis, String)> = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            let at = here.index(i);
            let Some(f) = self.mapping(
                item,
                &at,
                Some(&["name", "min_age", "max_age", "attribute", "min"]),
            ) else {
                ok = false;
                continue;
            };
            let name = self.require(&f, "name", &at).and_then(|n| {
                let s = self.plain_name(n, &at.child("name"), "tier name")?;
                if let Some(line) = names.get(&s) {
                    self.issue(
                        n,
                        &at.child("name"),
                        format!("tier name `{s}` is used twice (also line {line})"),
                    );
                    return None;
                }
                names.insert(s.clone(), n.span.start.line());
                Some(s)
            });
            let is_age = f.has("min_age") || f.has("max_age");
            let is_value = f.has("attribute") || f.has("min");
            let rule = match (is_age, is_value) {
                (true, false) => {
                    let min = self
                        .require(&f, "min_age", &at)
                        .and_then(|n| self.duration_ms(n, &at.child("min_age")));
                    let max = self
                        .require(&f, "max_age", &at)
                        .and_then(|n| self.duration_ms(n, &at.child("max_age")));
                    match (min, max) {
                        (Some(min), Some(max)) if min >= max => {
                            self.issue(
                                f.at,
                                &at,
                                format!(
                                    "min_age {} must be below max_age {}",
                                    format_duration(min),
                                    format_duration(max)
                                ),
                            );
                            None
                        }
                        (Some(min_age_ms), Some(max_age_ms)) => {
                            let tier = name.clone().unwrap_or_default();
                            if let Some((_, _, other)) = ages
                                .iter()
                                .find(|(lo, hi, _)| min_age_ms < *hi && *lo < max_age_ms)
                            {
                                self.issue(
                                    f.at,
                                    &at,
                                    format!("age tier `{tier}` overlaps age tier `{other}`; a person is in one age tier at a time"),
                                );
                                None
                            } else {
                                ages.push((min_age_ms, max_age_ms, tier));
                                Some(TierRule::Age {
                                    min_age_ms,
                                    max_age_ms,
                                })
                            }
                        }
                        _ => None,
                    }
                }
                (false, true) => {
                    let attribute = self.require(&f, "attribute", &at).and_then(|n| {
                        let a_at = at.child("attribute");
                        let a = self.string(n, &a_at)?;
                        match attributes.map(|list| list.iter().find(|x| x.name == a)) {
                            // Attributes broken: already reported there.
                            None => Some(a),
                            Some(None) => {
                                self.issue(
                                    n,
                                    &a_at,
                                    format!("attribute `{a}` is not declared in this export's attributes"),
                                );
                                None
                            }
                            Some(Some(spec)) if spec.transform != Transform::Number => {
                                self.issue(
                                    n,
                                    &a_at,
                                    format!(
                                        "a value tier needs a numeric attribute; `{a}` has transform `{}` (use `number`)",
                                        transform_name(&spec.transform)
                                    ),
                                );
                                None
                            }
                            Some(Some(_)) => Some(a),
                        }
                    });
                    let min = self
                        .require(&f, "min", &at)
                        .and_then(|n| self.number(n, &at.child("min")));
                    match (attribute, min) {
                        (Some(attribute), Some(min)) => Some(TierRule::Value { attribute, min }),
                        _ => None,
                    }
                }
                _ => {
                    self.issue(
                        f.at,
                        &at,
                        "a tier is either an age tier (`min_age`, `max_age`) or a value tier (`attribute`, `min`)",
                    );
                    None
                }
            };
            match (name, rule) {
                (Some(name), Some(rule)) => out.push(TierSpec { name, rule }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn export_destinations(
        &mut self,
        export: &str,
        node: &Node<'_>,
        here: &Here<'_>,
        declared: &Declared,
        identity: Option<&IdentitySpec>,
        attributes: Option<&[AttributeSpec]>,
        tiers: Option<&[TierSpec]>,
    ) -> Option<Vec<ExportDestination>> {
        let fields = self.mapping(node, here, None)?;
        if fields.entries.is_empty() {
            self.issue(node, here, "send this export to at least one destination");
            return None;
        }
        let mut out = Vec::with_capacity(fields.entries.len());
        let mut ok = true;
        for (dest, key_node, value) in &fields.entries {
            let at = here.child(dest);
            let kind = match declared.destinations.get(*dest) {
                None => {
                    self.issue(
                        key_node,
                        &at,
                        format!("destination `{dest}` is not declared under `destinations`"),
                    );
                    ok = false;
                    continue;
                }
                Some(kind) => *kind,
            };
            match self.binding(
                export, dest, kind, key_node, value, &at, identity, attributes, tiers,
            ) {
                Some(b) => out.push(b),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn binding(
        &mut self,
        export: &str,
        dest: &str,
        kind: Option<DestinationKind>,
        key_node: &Node<'_>,
        node: &Node<'_>,
        here: &Here<'_>,
        identity: Option<&IdentitySpec>,
        attributes: Option<&[AttributeSpec]>,
        tiers: Option<&[TierSpec]>,
    ) -> Option<ExportDestination> {
        let fields = self.mapping(node, here, Some(&["audience", "tier_audiences", "keys"]))?;
        let numeric_audience = kind.is_some_and(DestinationKind::is_ad_platform);
        let audience_value = |c: &mut Self, n: &Node<'_>, at: &Here<'_>| {
            if numeric_audience {
                c.digits(n, at, "an ad platform audience id")
            } else {
                c.string(n, at)
            }
        };

        let audience = match fields.get("audience") {
            Some(n) => audience_value(self, n, &here.child("audience")),
            None => {
                match kind {
                    Some(DestinationKind::Warehouse | DestinationKind::Webhook) => {
                        Some(export.to_owned())
                    }
                    Some(k) => {
                        self.issue(
                        key_node,
                        &here.child("audience"),
                        format!("missing required key `audience` ({} needs the audience to write to)", k.as_str()),
                    );
                        None
                    }
                    None => None,
                }
            }
        };

        let tier_audiences = match fields.get("tier_audiences") {
            None => Some(BTreeMap::new()),
            Some(n) => {
                let at = here.child("tier_audiences");
                self.mapping(n, &at, None).and_then(|f| {
                    let mut map = BTreeMap::new();
                    let mut ok = true;
                    for (tier, tier_key, value) in &f.entries {
                        let t_at = at.child(tier);
                        let known = tiers.is_none_or(|list| list.iter().any(|t| t.name == *tier));
                        if !known {
                            self.issue(
                                tier_key,
                                &t_at,
                                format!("tier `{tier}` is not declared in this export's tiers"),
                            );
                            ok = false;
                        }
                        match audience_value(self, value, &t_at) {
                            Some(a) => {
                                map.insert((*tier).to_owned(), a);
                            }
                            None => ok = false,
                        }
                    }
                    ok.then_some(map)
                })
            }
        };

        let keys = match fields.get("keys") {
            None => Some(Vec::new()),
            Some(n) => {
                let at = here.child("keys");
                self.list(n, &at).and_then(|items| {
                    let mut keys: Vec<MatchKey> = Vec::new();
                    let mut ok = true;
                    for (i, item) in items.into_iter().enumerate() {
                        match self.choice(item, &at.index(i), MATCH_KEYS) {
                            Some(k) if keys.contains(&k) => {
                                self.issue(
                                    item,
                                    &at.index(i),
                                    format!("key `{}` is listed twice", k.as_str()),
                                );
                                ok = false;
                            }
                            Some(k) => {
                                if !self.key_fits(kind, &k, item, &at.index(i), attributes) {
                                    ok = false;
                                }
                                keys.push(k);
                            }
                            None => ok = false,
                        }
                    }
                    ok.then_some(keys)
                })
            }
        };

        let reachable_ok = match (kind, identity, &keys) {
            (Some(kind), Some(identity), Some(keys)) => {
                let node_for = fields.get("keys").unwrap_or(key_node);
                self.identifiers_reachable(kind, dest, identity, keys, node_for, here)
            }
            _ => true,
        };

        let binding = ExportDestination {
            destination: dest.to_owned(),
            audience: audience?,
            tier_audiences: tier_audiences?,
            keys: keys?,
        };
        reachable_ok.then_some(binding)
    }

    /// A listed key is valid for the kind and, if attribute-backed, declared.
    fn key_fits(
        &mut self,
        kind: Option<DestinationKind>,
        key: &MatchKey,
        node: &Node<'_>,
        here: &Here<'_>,
        attributes: Option<&[AttributeSpec]>,
    ) -> bool {
        let mut ok = true;
        match kind {
            Some(DestinationKind::MetaAudience) | None => {}
            Some(
                g @ (DestinationKind::GoogleCustomerMatch | DestinationKind::GoogleDataManager),
            ) => {
                if !GOOGLE_KEYS.contains(key) {
                    let names: Vec<&str> = GOOGLE_KEYS.iter().map(MatchKey::as_str).collect();
                    self.issue(
                        node,
                        here,
                        format!(
                            "{} does not take `{}`; its keys are: {}",
                            g.as_str(),
                            key.as_str(),
                            names.join(", ")
                        ),
                    );
                    ok = false;
                }
            }
            Some(k) => {
                self.issue(
                    node,
                    here,
                    format!(
                        "match keys apply to ad platforms only, not to {}",
                        k.as_str()
                    ),
                );
                return false;
            }
        }
        if key.attribute_backed() {
            if let Some(attrs) = attributes {
                if !attrs.iter().any(|a| a.name == key.as_str()) {
                    self.issue(
                        node,
                        here,
                        format!(
                            "key `{0}` reads the export attribute `{0}`, which is not declared in attributes",
                            key.as_str()
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok
    }

    /// The destination can identify people with what the identity provides.
    fn identifiers_reachable(
        &mut self,
        kind: DestinationKind,
        dest: &str,
        identity: &IdentitySpec,
        keys: &[MatchKey],
        node: &Node<'_>,
        here: &Here<'_>,
    ) -> bool {
        let mut reachable: BTreeSet<IdKind> = identity.fallbacks.iter().copied().collect();
        reachable.insert(identity.golden);
        let id_for = |k: &MatchKey| match k {
            MatchKey::Email => Some(IdKind::Email),
            MatchKey::Phone => Some(IdKind::Phone),
            MatchKey::ExternId => Some(IdKind::Id),
            _ => None,
        };
        let at = here.child("keys");
        match kind {
            DestinationKind::Warehouse | DestinationKind::Webhook => true,
            DestinationKind::Clevertap => {
                let ok = [IdKind::Id, IdKind::Email, IdKind::Phone]
                    .iter()
                    .any(|k| reachable.contains(k));
                if !ok {
                    self.issue(
                        node,
                        here,
                        format!("destination `{dest}` (clevertap) needs the person's id, email or phone: add one to identity (golden or fallbacks)"),
                    );
                }
                ok
            }
            DestinationKind::MetaAudience
            | DestinationKind::GoogleCustomerMatch
            | DestinationKind::GoogleDataManager => {
                let meta = kind == DestinationKind::MetaAudience;
                let mut ok = true;
                // Listed identifier keys that identity can never fill.
                for k in keys {
                    if let Some(id) = id_for(k) {
                        if !reachable.contains(&id) {
                            self.issue(
                                node,
                                &at,
                                format!(
                                    "key `{}` is never available: identity has no `{}` among golden or fallbacks",
                                    k.as_str(),
                                    id.as_str()
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                if !meta {
                    let listed: Vec<&MatchKey> = GOOGLE_ADDRESS_KEYS
                        .iter()
                        .filter(|k| keys.contains(k))
                        .collect();
                    if !listed.is_empty() && listed.len() < GOOGLE_ADDRESS_KEYS.len() {
                        let missing: Vec<&str> = GOOGLE_ADDRESS_KEYS
                            .iter()
                            .filter(|k| !keys.contains(k))
                            .map(MatchKey::as_str)
                            .collect();
                        self.issue(
                            node,
                            &at,
                            format!(
                                "Google address matching needs first_name, last_name, country and zip together (missing: {})",
                                missing.join(", ")
                            ),
                        );
                        ok = false;
                    }
                }
                let candidates: Vec<MatchKey> = if keys.iter().any(|k| id_for(k).is_some()) {
                    keys.iter()
                        .filter(|k| id_for(k).is_some())
                        .cloned()
                        .collect()
                } else if keys.is_empty() {
                    default_keys(kind)
                } else {
                    Vec::new()
                };
                let usable = candidates
                    .iter()
                    .filter_map(id_for)
                    .any(|id| reachable.contains(&id));
                if !usable {
                    let need = if meta {
                        "email, phone or extern_id (the person id)"
                    } else {
                        "email or phone"
                    };
                    self.issue(
                        node,
                        here,
                        format!("destination `{dest}` ({}) needs {need} reachable from identity (golden or fallbacks) and among its keys", kind.as_str()),
                    );
                    ok = false;
                }
                ok
            }
        }
    }

    fn guard_rails(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
        source: Option<&ExportSource>,
    ) -> Option<GuardRails> {
        let fields = self.mapping(
            node,
            here,
            Some(&[
                "size",
                "max_churn_pct",
                "min_match_rate",
                "refuse_empty_source",
            ]),
        )?;
        let size = match fields.get("size") {
            None => Some((None, None)),
            Some(n) => {
                let at = here.child("size");
                let band = self.list(n, &at).and_then(|items| match items.as_slice() {
                    [lo, hi] => {
                        let lo_v = if is_null(lo) {
                            Some(None)
                        } else {
                            self.uint(lo, &at.index(0)).map(Some)
                        };
                        let hi_v = if is_null(hi) {
                            Some(None)
                        } else {
                            self.uint(hi, &at.index(1)).map(Some)
                        };
                        Some((lo_v?, hi_v?))
                    }
                    _ => {
                        self.issue(n, &at, "a size band is `[min, max]` (use `~` for no bound)");
                        None
                    }
                });
                match band {
                    Some((Some(lo), Some(hi))) if lo > hi => {
                        self.issue(
                            n,
                            &at,
                            format!("size band [{lo}, {hi}] is impossible: min is above max"),
                        );
                        None
                    }
                    Some(b @ (lo, hi)) if lo.is_some() || hi.is_some() => {
                        if matches!(source, Some(ExportSource::Action)) {
                            self.issue(
                                n,
                                &at,
                                "a size band needs a batch source; this export is action-only (webhook actions)",
                            );
                            None
                        } else {
                            Some(b)
                        }
                    }
                    other => other,
                }
            }
        };
        let max_churn_pct = match fields.get("max_churn_pct") {
            None => Some(None),
            Some(n) => {
                let at = here.child("max_churn_pct");
                self.number(n, &at).and_then(|v| {
                    if (0.0..=100.0).contains(&v) {
                        Some(Some(v))
                    } else {
                        self.issue(n, &at, format!("max_churn_pct {v} is outside 0–100"));
                        None
                    }
                })
            }
        };
        let min_match_rate = match fields.get("min_match_rate") {
            None => Some(None),
            Some(n) => {
                let at = here.child("min_match_rate");
                self.number(n, &at).and_then(|v| {
                    if (0.0..=1.0).contains(&v) {
                        Some(Some(v))
                    } else {
                        self.issue(
                            n,
                            &at,
                            format!("min_match_rate {v} is outside 0–1 (a fraction, e.g. 0.5)"),
                        );
                        None
                    }
                })
            }
        };
        let refuse_empty_source = match fields.get("refuse_empty_source") {
            None => Some(true),
            Some(n) => self.boolean(n, &here.child("refuse_empty_source")),
        };
        let (min_size, max_size) = size?;
        Some(GuardRails {
            min_size,
            max_size,
            max_churn_pct: max_churn_pct?,
            min_match_rate: min_match_rate?,
            refuse_empty_source: refuse_empty_source?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"version: 1
destinations:
  ct:
    kind: clevertap
    region: us1
    account_id_env: CT_ACCOUNT
    passcode_env: CT_PASSCODE
  meta:
    kind: meta_audience
    api_version: v25.0
    ad_account_id: "123"
    access_token_env: META_TOKEN
  google:
    kind: google_customer_match
    api_version: v26
    customer_id: "1234567890"
    developer_token_env: G_DEV
    access_token_env: G_TOKEN
  wh:
    kind: warehouse
    location: ./out
exports:
  carts:
    source: {segment: 1}
    mode: membership
    cadence: {realtime: true, every: 15m}
    identity: {golden: id, fallbacks: [email, phone]}
    attributes:
      cart_value: number
      first_name:
    tiers:
      - {name: fresh, min_age: 0, max_age: 1h}
      - {name: rich, attribute: cart_value, min: 120}
    suppress: [buyers]
    destinations:
      ct: {audience: cio_carts, tier_audiences: {fresh: cio_carts_fresh}}
      meta: {audience: "111", keys: [email, phone, first_name]}
      google: {audience: "222"}
      wh:
    guard_rails: {size: [10, 1000], max_churn_pct: 30, min_match_rate: 0.5}
  buyers:
    source: {segment: 2}
    mode: membership
    cadence: {every: 1h}
    identity: email
    destinations:
      meta: {audience: "333"}
"#;

    /// BASE with one edit (which must apply).
    fn edited(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "test edit target missing: {from}");
        BASE.replacen(from, to, 1)
    }

    fn issues(text: &str) -> Vec<ConfigIssue> {
        match parse_spec(text, "spec.yaml") {
            Ok(_) => Vec::new(),
            Err(e) => e.issues,
        }
    }

    /// 1-based line of the first line containing `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("needle missing: {needle}"))
    }

    /// Exactly one issue, at `needle`'s line, whose message contains `says`.
    fn one_issue_at(text: &str, needle: &str, says: &str) -> ConfigIssue {
        let found = issues(text);
        assert_eq!(found.len(), 1, "expected one issue, got {found:#?}");
        let issue = found[0].clone();
        assert_eq!(issue.line, line_of(text, needle), "{issue:#?}");
        assert!(
            issue.message.contains(says),
            "message {:?} lacks {says:?}",
            issue.message
        );
        issue
    }

    #[test]
    fn base_spec_is_valid() {
        let spec = parse_spec(BASE, "spec.yaml").unwrap();
        assert_eq!(spec.exports.len(), 2);
        let carts = spec.export("carts").unwrap();
        assert_eq!(carts.binding("wh").unwrap().audience, "carts");
        assert_eq!(
            carts.tiers[0].rule,
            TierRule::Age {
                min_age_ms: 0,
                max_age_ms: 3_600_000
            }
        );
        assert_eq!(carts.attributes[1].from, "first_name");
        assert_eq!(carts.attributes[1].transform, Transform::Identity);
        assert!(carts.guard_rails.refuse_empty_source);
        let buyers = spec.export("buyers").unwrap();
        assert_eq!(buyers.identity.golden, IdKind::Email);
        assert_eq!(buyers.cadence.every_minutes, Some(60));
    }

    #[test]
    fn example_file_parses_into_the_demo_spec() {
        let text = include_str!("../../../config/exports.example.yaml");
        let spec = match parse_spec(text, "exports.example.yaml") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(spec.version, 1);
        assert_eq!(spec.destinations.len(), 5);
        assert_eq!(spec.exports.len(), 4);
        assert_eq!(spec.reporting_feeds.len(), 3);
        assert!(spec
            .reporting_feeds
            .iter()
            .all(|f| f.object_type == "email" && f.exports == ["email_suppression"]));

        let ct = spec.destination("clevertap").unwrap();
        assert_eq!(
            (ct.batch_size, ct.max_concurrency, ct.max_attempts),
            (100, 10, 5)
        );
        let google = spec.destination("google").unwrap();
        assert_eq!((google.batch_size, google.max_concurrency), (10_000, 2));
        assert!(matches!(
            &spec.destination("meta").unwrap().settings,
            DestinationSettings::MetaAudience { ad_account_id, .. } if ad_account_id == "1234567890"
        ));

        let carts = spec.export("cart_abandoners").unwrap();
        assert_eq!(carts.source, ExportSource::Segment { segment_id: 101 });
        assert_eq!(
            carts.cadence,
            Cadence {
                realtime: true,
                every_minutes: Some(15)
            }
        );
        assert_eq!(carts.attributes.len(), 9);
        assert_eq!(
            carts.attribute("cart_value_bucket").unwrap().transform,
            Transform::Bucket {
                edges: vec![50.0, 100.0, 150.0]
            }
        );
        let tier_names: Vec<&str> = carts.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(tier_names, ["0_1h", "1_4h", "4_24h", "high_value"]);
        assert_eq!(carts.binding("clevertap").unwrap().tier_audiences.len(), 4);
        assert_eq!(carts.binding("meta").unwrap().keys.len(), 9);
        assert_eq!(carts.guard_rails.min_size, Some(50));
        assert_eq!(carts.guard_rails.max_churn_pct, Some(60.0));
        assert_eq!(carts.test_profiles, ["cust_00000", "cust_00001"]);
        assert_eq!(spec.exports_exiting_on("order_placed").count(), 2);
        assert_eq!(
            spec.exports_suppressed_by("recent_purchasers")
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["cart_abandoners"]
        );

        let vips = spec.export("lapsed_vips").unwrap();
        assert_eq!(
            vips.attribute("vip_tier").unwrap().transform,
            Transform::Enum {
                values: vec!["gold".into(), "silver".into(), "bronze".into()],
                fallback: Some("other".into())
            }
        );
        assert_eq!(vips.binding("warehouse").unwrap().audience, "lapsed_vips");
        let sup = spec.export("email_suppression").unwrap();
        assert_eq!(sup.source, ExportSource::Action);
        assert_eq!(sup.identity.golden, IdKind::Email);
    }

    #[test]
    fn three_mistakes_file_reports_exactly_three_issues_at_their_lines() {
        let text = include_str!("../../../config/testdata/three-mistakes.yaml");
        let err = parse_spec(text, "three-mistakes.yaml").unwrap_err();
        let got: Vec<(usize, &str)> = err
            .issues
            .iter()
            .map(|i| (i.line, i.key.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (21, "exports.cart_abandoners.tiers[0].attribute"),
                (26, "exports.cart_abandoners.guard_rails.size"),
                (27, "exports.cart_abandoners.retention_days"),
            ],
            "{err}"
        );
        assert!(err.issues[0]
            .message
            .contains("`cart_total` is not declared"));
        assert!(err.issues[1].message.contains("impossible"));
        assert!(err.issues[2]
            .message
            .contains("unknown key `retention_days`"));
        assert!(err
            .issues
            .iter()
            .all(|i| i.export.as_deref() == Some("cart_abandoners")));
    }

    #[test]
    fn display_prints_one_line_per_issue_with_origin_position_export_and_key() {
        let text = include_str!("../../../config/testdata/three-mistakes.yaml");
        let err = parse_spec(text, "three-mistakes.yaml").unwrap_err();
        let shown = err.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[2].starts_with(
                "three-mistakes.yaml:27:5: export `cart_abandoners`: `exports.cart_abandoners.retention_days`: unknown key"
            ),
            "{shown}"
        );
    }

    #[test]
    fn every_issue_is_collected_not_just_the_first() {
        let text = BASE
            .replacen("region: us1", "region: mars", 1)
            .replacen("max_churn_pct: 30", "max_churn_pct: 300", 1)
            .replacen("suppress: [buyers]", "suppress: [nobody]", 1)
            .replacen(
                "cadence: {every: 1h}",
                "cadence: {every: 1h, jitter: 5m}",
                1,
            );
        let found = issues(&text);
        assert_eq!(found.len(), 4, "{found:#?}");
        let lines: Vec<usize> = found.iter().map(|i| i.line).collect();
        assert_eq!(
            lines,
            [
                line_of(&text, "region: mars"),
                line_of(&text, "suppress: [nobody]"),
                line_of(&text, "max_churn_pct: 300"),
                line_of(&text, "jitter"),
            ]
        );
    }

    #[test]
    fn unknown_key_is_reported_at_every_level() {
        one_issue_at(
            &edited("version: 1", "version: 1\ncolour: blue"),
            "colour",
            "unknown key `colour`",
        );
        one_issue_at(
            &edited("location: ./out", "location: ./out\n    region: eu9"),
            "region: eu9",
            "unknown key `region`",
        );
        one_issue_at(
            &edited("min_match_rate: 0.5}", "min_match_rate: 0.5, max_size: 9}"),
            "max_size: 9",
            "unknown key `max_size`",
        );
        let issue = one_issue_at(
            &edited(
                "google: {audience: \"222\"}",
                "google: {audience: \"222\", colour: red}",
            ),
            "colour",
            "unknown key",
        );
        assert_eq!(issue.key, "exports.carts.destinations.google.colour");
        assert_eq!(issue.export.as_deref(), Some("carts"));
    }

    #[test]
    fn wrong_type_is_reported_with_what_was_found() {
        one_issue_at(
            &edited("location: ./out", "location: ./out\n    batch_size: many"),
            "batch_size",
            "whole number",
        );
        one_issue_at(
            &edited("realtime: true, every", "realtime: yes please, every"),
            "yes please",
            "`true` or `false`",
        );
        one_issue_at(
            &edited("ad_account_id: \"123\"", "ad_account_id: 123"),
            "ad_account_id",
            "quote numeric ids",
        );
        one_issue_at(
            &edited("suppress: [buyers]", "suppress: buyers"),
            "suppress: buyers",
            "expected a list",
        );
    }

    #[test]
    fn missing_required_key_is_reported() {
        one_issue_at(
            &edited("    location: ./out\n", ""),
            "kind: warehouse",
            "missing required key `location`",
        );
        let text = edited(
            "    mode: membership\n    cadence: {every: 1h}",
            "    cadence: {every: 1h}",
        );
        let issue = one_issue_at(&text, "source: {segment: 2}", "missing required key `mode`");
        assert_eq!(issue.key, "exports.buyers.mode");
    }

    #[test]
    fn version_other_than_1_is_refused() {
        one_issue_at(
            &edited("version: 1", "version: 2"),
            "version: 2",
            "unsupported version 2",
        );
    }

    #[test]
    fn invalid_yaml_is_one_issue_with_position() {
        let text = edited("    region: us1", "    region: [us1");
        let found = issues(&text);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].message.starts_with("invalid YAML"));
        assert!(found[0].line >= line_of(&text, "region: [us1"));
    }

    #[test]
    fn value_tier_attribute_must_be_declared() {
        one_issue_at(
            &edited("attribute: cart_value", "attribute: cart_total"),
            "cart_total",
            "not declared",
        );
    }

    #[test]
    fn value_tier_attribute_must_have_a_numeric_transform() {
        let text = edited(
            "cart_value: number",
            "cart_value: {transform: {bucket: [50, 100]}}",
        );
        one_issue_at(&text, "attribute: cart_value", "transform `bucket`");
    }

    #[test]
    fn attribute_backed_match_key_needs_the_attribute_declared() {
        let text = edited(
            "keys: [email, phone, first_name]",
            "keys: [email, phone, first_name, city]",
        );
        one_issue_at(
            &text,
            "first_name, city]",
            "key `city` reads the export attribute `city`",
        );
    }

    #[test]
    fn meta_without_reachable_email_phone_or_id_is_refused() {
        let text = edited("identity: email", "identity: cio_id");
        one_issue_at(
            &text,
            "meta: {audience: \"333\"}",
            "email, phone or extern_id",
        );
    }

    #[test]
    fn clevertap_needs_id_email_or_phone() {
        let text = edited("identity: email", "identity: cio_id").replacen(
            "meta: {audience: \"333\"}",
            "ct: {audience: cio_buyers}",
            1,
        );
        one_issue_at(
            &text,
            "ct: {audience: cio_buyers}",
            "needs the person's id, email or phone",
        );
    }

    #[test]
    fn listed_identifier_key_must_be_reachable_from_identity() {
        let text = edited(
            "meta: {audience: \"333\"}",
            "meta: {audience: \"333\", keys: [email, phone]}",
        );
        one_issue_at(
            &text,
            "keys: [email, phone]",
            "key `phone` is never available",
        );
    }

    #[test]
    fn google_refuses_keys_it_does_not_take_and_partial_addresses() {
        let text = edited(
            "google: {audience: \"222\"}",
            "google: {audience: \"222\", keys: [email, city]}",
        );
        // city: not a Google key, and not a declared attribute either.
        let found = issues(&text);
        assert!(
            found
                .iter()
                .any(|i| i.message.contains("does not take `city`")),
            "{found:#?}"
        );
        let text = edited(
            "google: {audience: \"222\"}",
            "google: {audience: \"222\", keys: [email, first_name]}",
        );
        one_issue_at(
            &text,
            "keys: [email, first_name]",
            "missing: last_name, country, zip",
        );
    }

    #[test]
    fn match_keys_on_a_non_ad_destination_are_refused() {
        let text = edited(
            "ct: {audience: cio_carts,",
            "ct: {keys: [email], audience: cio_carts,",
        );
        one_issue_at(&text, "ct: {keys", "ad platforms only");
    }

    #[test]
    fn impossible_size_band_is_refused() {
        one_issue_at(
            &edited("size: [10, 1000]", "size: [1000, 10]"),
            "size: [1000, 10]",
            "min is above max",
        );
    }

    #[test]
    fn churn_outside_0_to_100_is_refused() {
        one_issue_at(
            &edited("max_churn_pct: 30", "max_churn_pct: 130"),
            "max_churn_pct",
            "outside 0–100",
        );
        one_issue_at(
            &edited("max_churn_pct: 30", "max_churn_pct: -1"),
            "max_churn_pct",
            "outside 0–100",
        );
    }

    #[test]
    fn match_rate_outside_0_to_1_is_refused() {
        one_issue_at(
            &edited("min_match_rate: 0.5", "min_match_rate: 50"),
            "min_match_rate",
            "outside 0–1",
        );
    }

    #[test]
    fn size_band_on_an_action_only_export_is_refused() {
        let text = edited(
            "    cadence: {every: 1h}\n    identity: email",
            "    cadence: {realtime: true}\n    identity: email\n    guard_rails: {size: [1, 10]}",
        )
        .replacen("source: {segment: 2}", "source: action", 1);
        one_issue_at(&text, "size: [1, 10]", "action-only");
    }

    #[test]
    fn batch_interval_on_an_action_only_export_is_refused() {
        let text = edited("source: {segment: 2}", "source: action");
        one_issue_at(&text, "cadence: {every: 1h}", "no batch source");
    }

    #[test]
    fn export_that_never_runs_is_refused() {
        let text = edited("cadence: {every: 1h}", "cadence: {realtime: false}");
        one_issue_at(&text, "realtime: false", "never run");
    }

    #[test]
    fn reference_to_undeclared_destination_is_refused() {
        let text = edited("meta: {audience: \"333\"}", "tiktok: {audience: \"333\"}");
        one_issue_at(&text, "tiktok", "destination `tiktok` is not declared");
    }

    #[test]
    fn suppressing_an_undeclared_export_is_refused() {
        one_issue_at(
            &edited("suppress: [buyers]", "suppress: [buyerz]"),
            "buyerz",
            "export `buyerz` is not declared",
        );
    }

    #[test]
    fn export_suppressing_itself_is_refused() {
        one_issue_at(
            &edited("suppress: [buyers]", "suppress: [carts]"),
            "suppress: [carts]",
            "cannot suppress itself",
        );
    }

    #[test]
    fn reporting_feed_to_undeclared_export_is_refused() {
        let text = format!("{BASE}reporting_feeds:\n  email.bounced: [nobody]\n");
        one_issue_at(&text, "email.bounced", "export `nobody` is not declared");
        let text = format!("{BASE}reporting_feeds:\n  letter.bounced: [buyers]\n");
        one_issue_at(&text, "letter.bounced", "<object_type>.<metric>");
    }

    #[test]
    fn tier_audience_for_undeclared_tier_is_refused() {
        let text = edited("tier_audiences: {fresh:", "tier_audiences: {stale:");
        one_issue_at(&text, "stale", "tier `stale` is not declared");
    }

    #[test]
    fn batch_size_over_the_kind_maximum_or_zero_is_refused() {
        let text = edited(
            "passcode_env: CT_PASSCODE",
            "passcode_env: CT_PASSCODE\n    batch_size: 5000",
        );
        one_issue_at(&text, "batch_size: 5000", "hard maximum of 1000");
        let text = edited("location: ./out", "location: ./out\n    batch_size: 0");
        one_issue_at(&text, "batch_size: 0", "at least 1");
    }

    #[test]
    fn clevertap_concurrency_over_the_account_cap_is_refused() {
        let text = edited(
            "passcode_env: CT_PASSCODE",
            "passcode_env: CT_PASSCODE\n    max_concurrency: 20",
        );
        one_issue_at(&text, "max_concurrency: 20", "account cap of 15");
    }

    #[test]
    fn max_requests_per_second_is_read_and_must_be_positive() {
        let text = edited(
            "passcode_env: CT_PASSCODE",
            "passcode_env: CT_PASSCODE\n    max_requests_per_second: 2.5",
        );
        let spec = parse_spec(&text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        let limits: Vec<Option<f64>> = spec
            .destinations
            .values()
            .map(|d| d.max_requests_per_second)
            .collect();
        assert!(limits.contains(&Some(2.5)), "{limits:?}");
        assert!(limits.contains(&None), "unset stays unlimited: {limits:?}");
        let text = edited(
            "passcode_env: CT_PASSCODE",
            "passcode_env: CT_PASSCODE\n    max_requests_per_second: 0",
        );
        one_issue_at(&text, "max_requests_per_second: 0", "must be above 0");
    }

    #[test]
    fn age_tier_with_min_not_below_max_is_refused() {
        let text = edited("min_age: 0, max_age: 1h", "min_age: 2h, max_age: 1h");
        one_issue_at(&text, "min_age: 2h", "min_age 2h must be below max_age 1h");
    }

    #[test]
    fn duplicate_tier_names_are_refused() {
        let text = edited("name: rich,", "name: fresh,");
        one_issue_at(&text, "name: fresh, attribute", "used twice");
    }

    #[test]
    fn overlapping_age_tiers_are_refused() {
        let text = edited(
            "      - {name: rich,",
            "      - {name: older, min_age: 30m, max_age: 2h}\n      - {name: rich,",
        );
        one_issue_at(&text, "name: older", "overlaps age tier `fresh`");
    }

    #[test]
    fn secret_literal_is_refused_naming_the_env_key() {
        let text = edited("passcode_env: CT_PASSCODE", "passcode: hunter2");
        let found = issues(&text);
        let secret = found
            .iter()
            .find(|i| i.line == line_of(&text, "passcode: hunter2"))
            .unwrap_or_else(|| panic!("{found:#?}"));
        assert!(
            secret.message.contains("`passcode_env`"),
            "{}",
            secret.message
        );
        assert!(!secret.message.contains("hunter2"));
        // The env key is then missing too: two issues in all.
        assert_eq!(found.len(), 2, "{found:#?}");
    }

    #[test]
    fn secret_like_key_elsewhere_says_only_env_names_are_allowed() {
        let text = edited("location: ./out", "location: ./out\n    api_key: abc");
        one_issue_at(&text, "api_key", "only `*_env` keys");
    }

    #[test]
    fn env_key_holding_something_else_than_a_variable_name_is_refused() {
        let text = edited(
            "access_token_env: META_TOKEN",
            "access_token_env: EAAB-xyz.secret",
        );
        let issue = one_issue_at(&text, "EAAB", "must name an environment variable");
        assert!(!issue.message.contains("EAAB"));
    }

    #[test]
    fn events_mode_needs_an_events_source() {
        let text = edited(
            "    mode: membership\n    cadence: {every: 1h}",
            "    mode: conversions\n    cadence: {every: 1h}",
        );
        one_issue_at(&text, "mode: conversions", "events");
    }

    #[test]
    fn durations_and_transforms_read_their_short_forms() {
        assert_eq!(parse_duration_ms("15m"), Some(900_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Some(172_800_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("15"), None);
        assert_eq!(parse_duration_ms("1.5h"), None);
        let text = edited(
            "first_name:\n",
            "first_name:\n      tier: {transform: {enum: [gold, silver]}}\n",
        );
        let spec = parse_spec(&text, "spec.yaml").unwrap();
        assert_eq!(
            spec.export("carts")
                .unwrap()
                .attribute("tier")
                .unwrap()
                .transform,
            Transform::Enum {
                values: vec!["gold".into(), "silver".into()],
                fallback: None
            }
        );
        let text = edited(
            "cart_value: number",
            "cart_value: {transform: {bucket: [100, 50]}}",
        );
        assert!(issues(&text)
            .iter()
            .any(|i| i.message.contains("strictly ascending")));
    }

    #[test]
    fn config_hash_is_stable_and_changes_with_one_byte() {
        let a = parse_spec(BASE, "a").unwrap().config_hash;
        let b = parse_spec(BASE, "b").unwrap().config_hash;
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(a, hex::encode(Sha256::digest(BASE.as_bytes())));
        let changed = parse_spec(&BASE.replacen("every: 15m", "every: 16m", 1), "a")
            .unwrap()
            .config_hash;
        assert_ne!(a, changed);
    }

    #[test]
    fn load_spec_file_reads_the_file_and_reports_an_unreadable_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.yaml");
        std::fs::write(&path, BASE).unwrap();
        assert!(load_spec_file(&path).is_ok());
        let err = load_spec_file(&dir.path().join("missing.yaml")).unwrap_err();
        assert_eq!(err.issues.len(), 1);
        assert_eq!(err.issues[0].line, 0);
        assert!(err
            .to_string()
            .contains("missing.yaml: cannot read the file"));
    }

    #[test]
    fn odd_documents_are_issues_never_panics() {
        for text in [
            "",
            "# only a comment\n",
            "- a\n- b\n",
            "42",
            "version: 1\n---\nversion: 1\n",
            "!!map {}",
        ] {
            let err = parse_spec(text, "odd.yaml").unwrap_err();
            assert!(!err.issues.is_empty(), "{text:?}");
        }
        let err = parse_spec("version: 1\n", "odd.yaml").unwrap_err();
        let keys: Vec<&str> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["destinations", "exports"]);
    }

    #[test]
    fn batch_defaults_and_maxima_per_kind() {
        let cases = [
            (DestinationKind::Clevertap, 100, 1_000),
            (DestinationKind::MetaAudience, 10_000, 10_000),
            (DestinationKind::GoogleCustomerMatch, 10_000, 100_000),
            (DestinationKind::Warehouse, 5_000, 100_000),
            (DestinationKind::Webhook, 500, 10_000),
        ];
        for (kind, default, max) in cases {
            assert_eq!(default_batch_size(kind), default);
            assert_eq!(max_batch_size(kind), max);
        }
    }
}
