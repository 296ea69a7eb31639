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

mod nodes;
use nodes::*;

mod google;
// `exports.<name>.latency_slo`: parsed and checked in its own file.
mod slo;
// The Checker's other sections, one file per part of the spec.
mod bindings;
mod destinations;
mod events;
mod exports;

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
        // Meta Conversions API: ≤ 1,000 events per request.
        DestinationKind::MetaConversions => 1_000,
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
        DestinationKind::MetaConversions => 1_000,
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
        DestinationKind::MetaConversions => 4,
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
            Some(&[
                "version",
                "destinations",
                "exports",
                "reporting_feeds",
                "events",
            ]),
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

        let taxonomy = match top.get("events") {
            None => Some(BTreeMap::new()),
            Some(n) => self.taxonomy(n, &here.child("events")),
        };
        if let Some(taxonomy) = &taxonomy {
            self.check_events_declared(top.get("exports"), &exports, taxonomy);
        }

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
            events: taxonomy?,
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
}

#[cfg(test)]
mod tests;
