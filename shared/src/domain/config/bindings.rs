//! `exports.<name>.destinations` and `guard_rails`: which destination gets
//! what, whether its match keys are reachable, and the size guard rails.

use super::*;

impl Checker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn export_destinations(
        &mut self,
        export: &str,
        node: &Node<'_>,
        here: &Here<'_>,
        declared: &Declared,
        identity: Option<&IdentitySpec>,
        attributes: Option<&[AttributeSpec]>,
        tiers: Option<&[TierSpec]>,
        mode: Option<ExportMode>,
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
            if !self.binding_fits_mode(kind, mode, key_node, &at, dest) {
                ok = false;
                continue;
            }
            if !self.google_conversion_binding(kind, mode, key_node, value, &at, dest) {
                ok = false;
                continue;
            }
            match self.binding(
                export, dest, kind, key_node, value, &at, identity, attributes, tiers, mode,
            ) {
                Some(b) => out.push(b),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn binding(
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
        mode: Option<ExportMode>,
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
            Some(n) if kind == Some(DestinationKind::MetaConversions) => {
                self.meta_event_name(n, &here.child("audience"))
            }
            Some(n) => audience_value(self, n, &here.child("audience")),
            None => {
                match kind {
                    // The Meta event name; "" sends each event under its
                    // source name.
                    Some(DestinationKind::MetaConversions) => Some(String::new()),
                    // CleverTap events: "" sends each event under its
                    // source name (the binding's audience is the evtName).
                    Some(DestinationKind::Clevertap)
                        if matches!(mode, Some(ExportMode::Events | ExportMode::Conversions)) =>
                    {
                        Some(String::new())
                    }
                    // Attribute-only sync sets no membership property: the
                    // label is the export's name, for logs and reports.
                    Some(DestinationKind::Clevertap) if mode == Some(ExportMode::Attributes) => {
                        Some(export.to_owned())
                    }
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
    pub(super) fn key_fits(
        &mut self,
        kind: Option<DestinationKind>,
        key: &MatchKey,
        node: &Node<'_>,
        here: &Here<'_>,
        attributes: Option<&[AttributeSpec]>,
    ) -> bool {
        let mut ok = true;
        match kind {
            Some(DestinationKind::MetaConversions) if *key == MatchKey::LookalikeValue => {
                self.issue(
                    node,
                    here,
                    "`lookalike_value` is for meta_audience destinations (value-based custom audiences), not the Conversions API",
                );
                return false;
            }
            Some(DestinationKind::MetaAudience | DestinationKind::MetaConversions) | None => {}
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
    pub(super) fn identifiers_reachable(
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
            | DestinationKind::MetaConversions
            | DestinationKind::GoogleCustomerMatch
            | DestinationKind::GoogleDataManager => {
                let meta = matches!(
                    kind,
                    DestinationKind::MetaAudience | DestinationKind::MetaConversions
                );
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
                } else if keys.is_empty() && meta {
                    default_keys(DestinationKind::MetaAudience)
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

    /// A `meta_conversions` binding sends events: only `events` and
    /// `conversions` exports may bind it.
    pub(super) fn binding_fits_mode(
        &mut self,
        kind: Option<DestinationKind>,
        mode: Option<ExportMode>,
        node: &Node<'_>,
        here: &Here<'_>,
        dest: &str,
    ) -> bool {
        match (kind, mode) {
            (
                Some(DestinationKind::MetaConversions),
                Some(m @ (ExportMode::Membership | ExportMode::Attributes)),
            ) => {
                let m = if m == ExportMode::Membership {
                    "membership"
                } else {
                    "attributes"
                };
                self.issue(
                    node,
                    here,
                    format!("destination `{dest}` (meta_conversions) takes events: bind it from an `events` or `conversions` export, not a `{m}` one"),
                );
                false
            }
            // Attribute-only sync updates profile properties: ad platforms
            // hold audiences of hashed identifiers, not properties.
            (Some(k), Some(ExportMode::Attributes))
                if !matches!(
                    k,
                    DestinationKind::Clevertap
                        | DestinationKind::Warehouse
                        | DestinationKind::Webhook
                ) =>
            {
                self.issue(
                    node,
                    here,
                    format!("destination `{dest}` ({}) has no attribute-only sync: an `attributes` export may bind clevertap, warehouse and webhook destinations only", k.as_str()),
                );
                false
            }
            _ => true,
        }
    }

    /// Google on an `events` / `conversions` export: `google_data_manager`
    /// sends each event to a Google Ads conversion action (`events:ingest`),
    /// so `audience` is that action's id, digits only; `google_customer_match`
    /// takes membership only.
    pub(super) fn google_conversion_binding(
        &mut self,
        kind: Option<DestinationKind>,
        mode: Option<ExportMode>,
        key_node: &Node<'_>,
        node: &Node<'_>,
        here: &Here<'_>,
        dest: &str,
    ) -> bool {
        if !matches!(mode, Some(ExportMode::Events | ExportMode::Conversions)) {
            return true;
        }
        match kind {
            Some(DestinationKind::GoogleCustomerMatch) => {
                self.issue(
                    key_node,
                    here,
                    format!("destination `{dest}` (google_customer_match) takes membership only: send conversions through a `google_data_manager` destination (Data Manager events:ingest)"),
                );
                false
            }
            Some(DestinationKind::GoogleDataManager) => {
                // Not a mapping: `binding` says so.
                let YamlData::Mapping(map) = &node.data else {
                    return true;
                };
                let audience = map
                    .iter()
                    .find(|(k, _)| as_str(k) == Some("audience"))
                    .map(|(_, v)| v)
                    .filter(|v| !is_null(v));
                if audience.and_then(as_str).is_some_and(is_digits) {
                    return true;
                }
                self.issue(
                    audience.unwrap_or(key_node),
                    &here.child("audience"),
                    format!("destination `{dest}` (google_data_manager) on an events or conversions export needs `audience`: the Google Ads conversion action id, digits only (e.g. \"555000111\")"),
                );
                false
            }
            _ => true,
        }
    }

    /// A Meta event name: a standard event (`Purchase`) or a custom one, at
    /// most 50 characters, no surrounding spaces.
    pub(super) fn meta_event_name(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<String> {
        let s = self.string(node, here)?;
        if s.is_empty() || s.trim() != s || s.chars().count() > 50 {
            self.issue(
                node,
                here,
                "a Meta event name is 1 to 50 characters without surrounding spaces (e.g. `Purchase`)",
            );
            return None;
        }
        Some(s)
    }

    pub(super) fn guard_rails(
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
