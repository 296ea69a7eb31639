//! `exports.<name>.latency_slo`: the export's latency objective.
//!
//! Latency is measured per export × destination from the source event (a
//! webhook action, or the batch run that found the change) to the
//! destination's acknowledgement, kept as a histogram and reported as p95 by
//! reconciliation (the `LatencyP95` metric). The deployed stack alarms when
//! the p95 of any of the export's destinations exceeds the objective.

use saphyr::YamlData;

use super::super::model::Millis;
use super::{as_str, describe, format_duration, Checker, Here, Node};

/// Below this an objective cannot be told apart: the latency histogram's
/// first bucket ends at 250 ms and reconciliation reports bucket bounds.
pub(super) const MIN_LATENCY_SLO_MS: Millis = 1_000;
/// A week: past it the objective no longer says anything an operator acts on.
pub(super) const MAX_LATENCY_SLO_MS: Millis = 7 * 86_400_000;

impl Checker {
    /// Reads `latency_slo` from an export's mapping. `Some(None)` when absent
    /// (or when the export is not a mapping: `export()` reports that),
    /// `None` after recording an issue.
    pub(super) fn latency_slo(
        &mut self,
        export: &Node<'_>,
        here: &Here<'_>,
    ) -> Option<Option<Millis>> {
        let YamlData::Mapping(map) = &export.data else {
            return Some(None);
        };
        let Some(node) = map
            .iter()
            .find(|(k, _)| as_str(k) == Some("latency_slo"))
            .map(|(_, v)| v)
        else {
            return Some(None);
        };
        let at = here.child("latency_slo");
        if matches!(node.data, YamlData::Value(saphyr::Scalar::Null)) {
            self.issue(
                node,
                &at,
                "`latency_slo` needs a duration, e.g. `15m` or `24h` (or leave the key out)",
            );
            return None;
        }
        let ms = self.duration_ms(node, &at)?;
        if !(MIN_LATENCY_SLO_MS..=MAX_LATENCY_SLO_MS).contains(&ms) {
            self.issue(
                node,
                &at,
                format!(
                    "a latency objective is between {} and {}, found {}",
                    format_duration(MIN_LATENCY_SLO_MS),
                    format_duration(MAX_LATENCY_SLO_MS),
                    describe(node)
                ),
            );
            return None;
        }
        Some(Some(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_spec;

    const SPEC: &str = r#"version: 1
destinations:
  wh:
    kind: warehouse
    location: ./out
exports:
  carts:
    source: {segment: 1}
    mode: membership
    cadence: {realtime: true, every: 15m}
    identity: email
    destinations:
      wh:
    latency_slo: 15m
  buyers:
    source: {segment: 2}
    mode: membership
    cadence: {every: 1h}
    identity: email
    destinations:
      wh:
"#;

    fn messages(text: &str) -> Vec<String> {
        match parse_spec(text, "spec.yaml") {
            Ok(_) => Vec::new(),
            Err(e) => e
                .issues
                .into_iter()
                .map(|i| format!("{}:{} {}", i.line, i.key, i.message))
                .collect(),
        }
    }

    #[test]
    fn latency_slo_is_read_per_export_in_ms() {
        let spec = parse_spec(SPEC, "spec.yaml").unwrap();
        assert_eq!(spec.latency_slo_ms("carts"), Some(900_000));
        assert_eq!(spec.latency_slo_ms("buyers"), None);
    }

    #[test]
    fn latency_slo_takes_the_spec_duration_forms() {
        let spec = parse_spec(&SPEC.replace("latency_slo: 15m", "latency_slo: 24h"), "a").unwrap();
        assert_eq!(spec.latency_slo_ms("carts"), Some(86_400_000));
        let spec = parse_spec(&SPEC.replace("latency_slo: 15m", "latency_slo: 90s"), "a").unwrap();
        assert_eq!(spec.latency_slo_ms("carts"), Some(90_000));
    }

    #[test]
    fn latency_slo_that_is_not_a_duration_is_an_issue_with_its_line() {
        let m = messages(&SPEC.replace("latency_slo: 15m", "latency_slo: fast"));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].starts_with("14:exports.carts.latency_slo"), "{m:?}");
        assert!(m[0].contains("expected a duration"), "{m:?}");
    }

    #[test]
    fn latency_slo_out_of_range_is_refused() {
        for bad in ["500ms", "0", "8d"] {
            let m = messages(&SPEC.replace("latency_slo: 15m", &format!("latency_slo: {bad}")));
            assert_eq!(m.len(), 1, "{bad}: {m:?}");
            assert!(m[0].contains("between 1s and 7d"), "{bad}: {m:?}");
        }
    }

    #[test]
    fn empty_latency_slo_is_refused_not_ignored() {
        let m = messages(&SPEC.replace("latency_slo: 15m", "latency_slo:"));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("needs a duration"), "{m:?}");
    }
}
