//! `exports.<name>`: source, mode, cadence, identity, the attribute
//! allow-list and tiers.

use super::*;

impl Checker {
    // ----- exports -----

    pub(super) fn export(
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
                mode,
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
    pub(super) fn source(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<ExportSource> {
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

    pub(super) fn cadence(
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
    pub(super) fn identity(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<IdentitySpec> {
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
    pub(super) fn attributes(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
    ) -> Option<Vec<AttributeSpec>> {
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
    pub(super) fn transform(&mut self, node: &Node<'_>, here: &Here<'_>) -> Option<Transform> {
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
    pub(super) fn tiers(
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
}
