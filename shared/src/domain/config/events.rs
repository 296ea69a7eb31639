//! `events.<name>`: the event taxonomy. Every event an events or conversions
//! export forwards is declared here with the properties it must carry, the
//! allow-list of properties that travel (with transforms, as attributes do)
//! and, for conversions, which properties hold the value, the currency and
//! the order id.

use super::*;
use crate::domain::spec::EventSpec;

const EVENT_KEYS: &[&str] = &["required", "properties", "value", "currency", "order_id"];

/// Event names are Customer.io's: `order_placed`, `Placed Order`,
/// `email.opened`. Anything printable, not blank, at most 200 bytes.
fn is_event_name(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= 200 && !s.chars().any(char::is_control)
}

impl Checker {
    /// Reads the `events:` mapping. `None` after recording an issue.
    pub(super) fn taxonomy(
        &mut self,
        node: &Node<'_>,
        here: &Here<'_>,
    ) -> Option<BTreeMap<String, EventSpec>> {
        let fields = self.mapping(node, here, None)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, key_node, value) in &fields.entries {
            let at = here.child(name);
            if !is_event_name(name) {
                self.issue(
                    key_node,
                    &at,
                    "event names may not be blank, over 200 bytes or hold control characters",
                );
                ok = false;
                continue;
            }
            match self.event_spec(name, value, &at) {
                Some(spec) => {
                    out.insert((*name).to_owned(), spec);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn event_spec(&mut self, name: &str, node: &Node<'_>, here: &Here<'_>) -> Option<EventSpec> {
        let fields = self.mapping(node, here, Some(EVENT_KEYS))?;
        let properties = match fields.get("properties") {
            None => Some(Vec::new()),
            Some(n) => self.attributes(n, &here.child("properties")),
        };
        let required = match fields.get("required") {
            None => Some(Vec::new()),
            Some(n) => self.strings(n, &here.child("required")),
        };
        let mut ok = true;
        // Required and conversion-field names are names the destinations
        // see, so each must be on the allow-list: nothing else travels.
        let allowed: BTreeSet<&str> = properties
            .iter()
            .flatten()
            .map(|p| p.name.as_str())
            .collect();
        let mut required_names = Vec::new();
        if let (Some(req), Some(_)) = (&required, &properties) {
            for (i, (prop, n)) in req.iter().enumerate() {
                if !allowed.contains(prop.as_str()) {
                    self.issue(
                        n,
                        &here.child("required").index(i),
                        format!("required property `{prop}` is not in `properties`: list it there (what is not listed never travels)"),
                    );
                    ok = false;
                }
                required_names.push(prop.clone());
            }
        }
        let field = |key: &str, this: &mut Self| -> Option<Option<String>> {
            let Some(n) = fields.get(key) else {
                return Some(None);
            };
            let at = here.child(key);
            let prop = this.string(n, &at)?;
            if properties.is_some() && !allowed.contains(prop.as_str()) {
                this.issue(
                    n,
                    &at,
                    format!("`{prop}` is not in `properties`: the {key} is read from an allow-listed property"),
                );
                return None;
            }
            Some(Some(prop))
        };
        let value = field("value", self);
        let currency = field("currency", self);
        let order_id = field("order_id", self);
        if !(ok && value.is_some() && currency.is_some() && order_id.is_some()) {
            return None;
        }
        Some(EventSpec {
            name: name.to_owned(),
            required: required_names,
            properties: properties?,
            value: value?,
            currency: currency?,
            order_id: order_id?,
        })
    }

    /// Every event an events or conversions export forwards, and every
    /// reporting metric it names, must be declared in the taxonomy; a
    /// conversions export's events need a value and a currency.
    pub(super) fn check_events_declared(
        &mut self,
        exports_node: Option<&Node<'_>>,
        exports: &BTreeMap<String, ExportSpec>,
        taxonomy: &BTreeMap<String, EventSpec>,
    ) {
        let Some(exports_node) = exports_node else {
            return;
        };
        let YamlData::Mapping(map) = &exports_node.data else {
            return;
        };
        for (name, export) in exports {
            let ExportSource::Events { names } = &export.source else {
                continue;
            };
            // Point at the export's `source` key.
            let Some(export_node) = map
                .iter()
                .find(|(k, _)| as_str(k) == Some(name.as_str()))
                .map(|(_, v)| v)
            else {
                continue;
            };
            let source_node = match &export_node.data {
                YamlData::Mapping(m) => m
                    .iter()
                    .find(|(k, _)| as_str(k) == Some("source"))
                    .map(|(_, v)| v)
                    .unwrap_or(export_node),
                _ => export_node,
            };
            let here = Here::root()
                .child("exports")
                .child(name)
                .child("source")
                .in_export(name);
            for event in names {
                match taxonomy.get(event) {
                    None => self.issue(
                        source_node,
                        &here,
                        format!("event `{event}` is not declared under `events:`; declare it with its `required` and `properties` (only listed properties travel)"),
                    ),
                    Some(spec) if export.mode == ExportMode::Conversions
                        && (spec.value.is_none() || spec.currency.is_none()) =>
                    {
                        self.issue(
                            source_node,
                            &here,
                            format!("conversions export: event `{event}` needs `value` and `currency` under `events.{event}` (the properties holding the conversion value and its ISO 4217 currency)"),
                        )
                    }
                    Some(_) => {}
                }
            }
        }
    }
}
