//! Membership rules: how one change moves a person's stored membership, which
//! tiers they stand in, and which destination ops a transition produces.
//!
//! Pure functions. The same transition always derives the same ops, so a
//! retried change (after a crash between the state write and the enqueue)
//! re-enqueues exactly the jobs it would have enqueued the first time.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::model::{
    Attributes, ChangeKind, DeliveryOp, Identifiers, MembershipChange, MembershipRecord,
    MembershipSnapshot, Millis, OpKind, PersonKey,
};
use super::spec::{DestinationKind, ExportDestination, ExportMode, ExportSpec, TierRule};

/// What applying a change to the stored record decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Write this record (new, or the same change again: then it equals the stored one).
    Write(Box<MembershipRecord>),
    /// The store holds a newer change: nothing to do.
    Stale,
}

/// The tiers a member stands in at `now`.
pub fn tiers_for(
    export: &ExportSpec,
    attributes: &Attributes,
    entered_at: Option<Millis>,
    now: Millis,
) -> BTreeSet<String> {
    let mut tiers = BTreeSet::new();
    for tier in &export.tiers {
        let inside = match &tier.rule {
            TierRule::Age {
                min_age_ms,
                max_age_ms,
            } => entered_at
                .map(|at| now.saturating_sub(at).max(0))
                .is_some_and(|age| age >= *min_age_ms && age < *max_age_ms),
            TierRule::Value { attribute, min } => attributes
                .get(attribute)
                .and_then(number_of)
                .is_some_and(|v| v >= *min),
        };
        if inside {
            tiers.insert(tier.name.clone());
        }
    }
    tiers
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Apply `change` (attributes already mapped by the export's allow-list) on
/// top of what is stored.
///
/// * An older change never overwrites a newer one.
/// * The very same change (same change id) again returns the stored record unchanged, so its
///   `previous` snapshot (and thus its ops) are re-derived identically.
/// * Identifiers and attributes are merged: a change that carries only some
///   of them keeps the rest.
pub fn apply_change(
    export: &ExportSpec,
    stored: Option<&MembershipRecord>,
    change: &MembershipChange,
    mapped: &Attributes,
    now: Millis,
) -> Decision {
    if let Some(s) = stored {
        // Change ids are unique per change, so an equal id is a retry.
        if s.change_id == change.change_id {
            return Decision::Write(Box::new(s.clone()));
        }
        if s.source_ts > change.source_ts
            || (s.source_ts == change.source_ts && s.change_id > change.change_id)
        {
            return Decision::Stale;
        }
    }
    let was_member = stored.is_some_and(|s| s.current.member);
    let mut ids = change.person.ids.clone();
    let mut attributes = stored
        .map(|s| s.current.attributes.clone())
        .unwrap_or_default();
    if let Some(s) = stored {
        ids.merge_missing(&s.current.ids);
    }
    let member = change.kind == ChangeKind::Enter;
    for (k, v) in mapped {
        attributes.insert(k.clone(), v.clone());
    }
    let entered_at = match (member, was_member) {
        (true, true) => stored.and_then(|s| s.entered_at).or(Some(change.source_ts)),
        (true, false) => Some(change.source_ts),
        (false, _) => None,
    };
    let tiers = if member {
        tiers_for(export, &attributes, entered_at, now)
    } else {
        BTreeSet::new()
    };
    let person_key = stored
        .map(|s| s.person_key.clone())
        .or_else(|| change.person.ids.person_key())
        .unwrap_or_else(|| PersonKey(String::new()));
    Decision::Write(Box::new(MembershipRecord {
        export: export.name.clone(),
        person_key,
        current: MembershipSnapshot {
            member,
            tiers,
            ids,
            attributes,
        },
        previous: stored.map(|s| s.current.clone()),
        source_ts: change.source_ts,
        intake_ts: change.intake_ts,
        entered_at,
        change_id: change.change_id.clone(),
        origin: change.origin,
    }))
}

/// The audiences a snapshot puts a person in at one destination, each with
/// the tier it stands for (`None` for the export's main audience).
pub fn audiences(
    binding: &ExportDestination,
    snapshot: &MembershipSnapshot,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    if !snapshot.member {
        return out;
    }
    out.insert(binding.audience.clone(), None);
    for tier in &snapshot.tiers {
        if let Some(audience) = binding.tier_audiences.get(tier) {
            out.insert(audience.clone(), Some(tier.clone()));
        }
    }
    out
}

/// Identifiers an ad platform matches on changed (email or phone): the old
/// ones must be removed, or the person stays targetable under them.
fn match_ids_changed(before: &Identifiers, after: &Identifiers) -> bool {
    fn norm(v: Option<&str>) -> Option<String> {
        v.map(|s| s.trim().to_lowercase())
    }
    norm(before.email()) != norm(after.email()) || norm(before.phone()) != norm(after.phone())
}

/// Ops one destination needs for the transition `previous -> current`.
/// Removes come before adds so an identifier swap never leaves both.
pub fn ops_for_transition(
    record: &MembershipRecord,
    binding: &ExportDestination,
    kind: DestinationKind,
) -> Vec<DeliveryOp> {
    let empty = MembershipSnapshot::default();
    let before = record.previous.as_ref().unwrap_or(&empty);
    let after = &record.current;
    let was = audiences(binding, before);
    let now = audiences(binding, after);
    let op =
        |op: OpKind, snap: &MembershipSnapshot, audience: &str, tier: &Option<String>| DeliveryOp {
            op,
            person_key: record.person_key.clone(),
            ids: snap.ids.clone(),
            audience: audience.to_string(),
            tier: tier.clone(),
            attributes: if op == OpKind::Remove {
                Attributes::new()
            } else {
                snap.attributes.clone()
            },
            event: None,
            source_ts: record.source_ts,
            intake_ts: record.intake_ts,
        };
    let swap_ids = kind.is_ad_platform() && match_ids_changed(&before.ids, &after.ids);
    let mut removes = Vec::new();
    let mut adds = Vec::new();
    for (audience, tier) in &was {
        if !now.contains_key(audience) || swap_ids {
            removes.push(op(OpKind::Remove, before, audience, tier));
        }
    }
    for (audience, tier) in &now {
        if !was.contains_key(audience) || swap_ids {
            adds.push(op(OpKind::Add, after, audience, tier));
        } else if tier.is_none()
            && !kind.is_ad_platform()
            && (before.attributes != after.attributes || before.ids != after.ids)
        {
            // Attribute upserts ride on the main audience only, once per person.
            adds.push(op(OpKind::Update, after, audience, tier));
        }
    }
    removes.extend(adds);
    removes
}

/// Ops one destination needs for a written record, by the export's mode:
/// membership exports move people in and out of audiences
/// ([`ops_for_transition`]); attributes exports only upsert properties
/// ([`attribute_ops`]). Events and conversions exports forward events at
/// intake and derive nothing from membership.
pub fn ops_for_export(
    export: &ExportSpec,
    record: &MembershipRecord,
    binding: &ExportDestination,
    kind: DestinationKind,
) -> Vec<DeliveryOp> {
    match export.mode {
        ExportMode::Membership => ops_for_transition(record, binding, kind),
        ExportMode::Attributes => attribute_ops(record, binding),
        ExportMode::Events | ExportMode::Conversions => Vec::new(),
    }
}

/// Attribute-only sync (`mode: attributes`): one `Update` carrying the
/// person's allow-listed attributes when they enter, or when their
/// attributes or identifiers change while in the segment. Nothing on exit:
/// the destination keeps the properties last sent (leaving the segment says
/// nothing about them), and no membership property or tier is ever set.
/// Nothing either when the allow-list yields no attribute for the person.
pub fn attribute_ops(record: &MembershipRecord, binding: &ExportDestination) -> Vec<DeliveryOp> {
    let after = &record.current;
    if !after.member || after.attributes.is_empty() {
        return Vec::new();
    }
    let changed = match record.previous.as_ref() {
        Some(before) if before.member => {
            before.attributes != after.attributes || before.ids != after.ids
        }
        _ => true,
    };
    if !changed {
        return Vec::new();
    }
    vec![DeliveryOp {
        op: OpKind::Update,
        person_key: record.person_key.clone(),
        ids: after.ids.clone(),
        audience: binding.audience.clone(),
        tier: None,
        attributes: after.attributes.clone(),
        event: None,
        source_ts: record.source_ts,
        intake_ts: record.intake_ts,
    }]
}

/// An exit change for `export` caused by an event or a suppression.
pub fn exit_change(
    export: &str,
    ids: &Identifiers,
    source_ts: Millis,
    intake_ts: Millis,
    origin: super::model::ChangeOrigin,
    change_id: String,
) -> MembershipChange {
    MembershipChange {
        export: export.to_string(),
        person: super::model::Person {
            ids: ids.clone(),
            attributes: Attributes::new(),
        },
        kind: ChangeKind::Exit,
        source_ts,
        intake_ts,
        origin,
        change_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{ChangeOrigin, Person};
    use crate::domain::spec::{
        Cadence, ExportMode, ExportSource, GuardRails, IdKind, IdentitySpec, TierSpec,
    };
    use serde_json::json;

    const H: Millis = 3_600_000;

    fn export() -> ExportSpec {
        ExportSpec {
            name: "cart".into(),
            source: ExportSource::Segment { segment_id: 1 },
            mode: ExportMode::Membership,
            cadence: Cadence::default(),
            identity: IdentitySpec {
                golden: IdKind::Id,
                fallbacks: vec![IdKind::Email],
                default_phone_region: None,
            },
            attributes: vec![],
            tiers: vec![
                TierSpec {
                    name: "0_1h".into(),
                    rule: TierRule::Age {
                        min_age_ms: 0,
                        max_age_ms: H,
                    },
                },
                TierSpec {
                    name: "1_4h".into(),
                    rule: TierRule::Age {
                        min_age_ms: H,
                        max_age_ms: 4 * H,
                    },
                },
                TierSpec {
                    name: "high".into(),
                    rule: TierRule::Value {
                        attribute: "cart_value".into(),
                        min: 120.0,
                    },
                },
            ],
            exit_on: vec!["order_placed".into()],
            suppress: vec![],
            destinations: vec![binding()],
            guard_rails: GuardRails::default(),
            test_profiles: vec![],
        }
    }

    fn binding() -> ExportDestination {
        ExportDestination {
            destination: "meta".into(),
            audience: "aud".into(),
            tier_audiences: [("0_1h".to_string(), "aud_fresh".to_string())].into(),
            keys: vec![],
        }
    }

    fn change(
        kind: ChangeKind,
        ts: Millis,
        id: &str,
        email: &str,
        attrs: Attributes,
    ) -> MembershipChange {
        MembershipChange {
            export: "cart".into(),
            person: Person {
                ids: Identifiers {
                    id: Some("u1".into()),
                    email: Some(email.into()),
                    ..Default::default()
                },
                attributes: attrs,
            },
            kind,
            source_ts: ts,
            intake_ts: ts + 5,
            origin: ChangeOrigin::Action,
            change_id: id.into(),
        }
    }

    fn write(d: Decision) -> MembershipRecord {
        match d {
            Decision::Write(r) => *r,
            Decision::Stale => panic!("unexpected stale"),
        }
    }

    #[test]
    fn older_change_never_overwrites_newer() {
        let e = export();
        let enter = change(ChangeKind::Enter, 2_000, "b", "a@x.com", Attributes::new());
        let rec = write(apply_change(&e, None, &enter, &Attributes::new(), 2_000));
        let late_exit = change(ChangeKind::Exit, 1_000, "a", "a@x.com", Attributes::new());
        assert_eq!(
            apply_change(&e, Some(&rec), &late_exit, &Attributes::new(), 3_000),
            Decision::Stale
        );
    }

    #[test]
    fn same_change_again_rederives_the_same_ops() {
        let e = export();
        let c = change(ChangeKind::Enter, 2_000, "b", "a@x.com", Attributes::new());
        let rec = write(apply_change(&e, None, &c, &Attributes::new(), 2_000));
        let again = write(apply_change(&e, Some(&rec), &c, &Attributes::new(), 9_999));
        assert_eq!(rec, again);
        assert_eq!(
            ops_for_transition(&rec, &binding(), DestinationKind::MetaAudience),
            ops_for_transition(&again, &binding(), DestinationKind::MetaAudience)
        );
    }

    #[test]
    fn age_and_value_tiers_follow_time_and_attributes() {
        let e = export();
        let attrs: Attributes = [("cart_value".to_string(), json!(150))].into();
        assert_eq!(
            tiers_for(&e, &attrs, Some(0), 10),
            ["0_1h".to_string(), "high".to_string()].into()
        );
        assert_eq!(
            tiers_for(&e, &Attributes::new(), Some(0), 2 * H),
            ["1_4h".to_string()].into()
        );
        assert!(tiers_for(&e, &Attributes::new(), Some(0), 5 * H).is_empty());
    }

    #[test]
    fn exit_removes_every_tier_audience_at_once() {
        let e = export();
        let enter = change(ChangeKind::Enter, 1_000, "a", "a@x.com", Attributes::new());
        let rec = write(apply_change(&e, None, &enter, &Attributes::new(), 1_000));
        let adds = ops_for_transition(&rec, &binding(), DestinationKind::MetaAudience);
        assert_eq!(adds.len(), 2, "main audience and the fresh tier");
        let exit = change(ChangeKind::Exit, 2_000, "b", "a@x.com", Attributes::new());
        let out = write(apply_change(
            &e,
            Some(&rec),
            &exit,
            &Attributes::new(),
            2_000,
        ));
        let ops = ops_for_transition(&out, &binding(), DestinationKind::MetaAudience);
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().all(|o| o.op == OpKind::Remove));
    }

    #[test]
    fn email_change_removes_old_identifier_at_ad_platforms() {
        let e = export();
        let c1 = change(
            ChangeKind::Enter,
            1_000,
            "a",
            "old@x.com",
            Attributes::new(),
        );
        let r1 = write(apply_change(&e, None, &c1, &Attributes::new(), 5 * H));
        let c2 = change(
            ChangeKind::Enter,
            2_000,
            "b",
            "new@x.com",
            Attributes::new(),
        );
        let r2 = write(apply_change(&e, Some(&r1), &c2, &Attributes::new(), 5 * H));
        let ops = ops_for_transition(&r2, &binding(), DestinationKind::MetaAudience);
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].op, OpKind::Remove);
        assert_eq!(ops[0].ids.email.as_deref(), Some("old@x.com"));
        assert_eq!(ops[1].op, OpKind::Add);
        assert_eq!(ops[1].ids.email.as_deref(), Some("new@x.com"));
        let ct = ops_for_transition(&r2, &binding(), DestinationKind::Clevertap);
        assert_eq!(ct.len(), 1);
        assert_eq!(ct[0].op, OpKind::Update);
    }

    #[test]
    fn re_entry_keeps_first_entry_time_for_age_tiers() {
        let e = export();
        let c1 = change(ChangeKind::Enter, 1_000, "a", "a@x.com", Attributes::new());
        let r1 = write(apply_change(&e, None, &c1, &Attributes::new(), 1_000));
        let c2 = change(ChangeKind::Enter, 2 * H, "b", "a@x.com", Attributes::new());
        let r2 = write(apply_change(&e, Some(&r1), &c2, &Attributes::new(), 2 * H));
        assert_eq!(r2.entered_at, Some(1_000));
        assert!(r2.current.tiers.contains("1_4h"));
    }

    /// An attributes export: no tiers (the loader refuses them there).
    fn attributes_export() -> ExportSpec {
        ExportSpec {
            mode: ExportMode::Attributes,
            tiers: vec![],
            ..export()
        }
    }

    #[test]
    fn attributes_mode_sends_updates_on_entry_and_change_and_nothing_on_exit() {
        let e = attributes_export();
        let b = binding();
        let kind = DestinationKind::Clevertap;
        let plan: Attributes = [("plan".to_string(), json!("pro"))].into();
        let enter = change(ChangeKind::Enter, 1_000, "a", "a@x.com", plan.clone());
        let r1 = write(apply_change(&e, None, &enter, &plan, 1_000));
        let ops = ops_for_export(&e, &r1, &b, kind);
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert_eq!(ops[0].op, OpKind::Update);
        assert_eq!(ops[0].attributes, plan);
        assert_eq!(ops[0].tier, None);

        // Same attributes again: nothing to send.
        let same = change(ChangeKind::Enter, 2_000, "b", "a@x.com", plan.clone());
        let r2 = write(apply_change(&e, Some(&r1), &same, &plan, 2_000));
        assert!(ops_for_export(&e, &r2, &b, kind).is_empty());

        // Changed attributes: one update with the new values.
        let team: Attributes = [("plan".to_string(), json!("team"))].into();
        let moved = change(ChangeKind::Enter, 3_000, "c", "a@x.com", team.clone());
        let r3 = write(apply_change(&e, Some(&r2), &moved, &team, 3_000));
        let ops = ops_for_export(&e, &r3, &b, kind);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].op, OpKind::Update);
        assert_eq!(ops[0].attributes["plan"], "team");

        // Exit: no op at all (no remove, no membership property), and the
        // stored attributes stay for a later re-entry.
        let exit = change(ChangeKind::Exit, 4_000, "d", "a@x.com", Attributes::new());
        let r4 = write(apply_change(
            &e,
            Some(&r3),
            &exit,
            &Attributes::new(),
            4_000,
        ));
        for kind in [DestinationKind::Clevertap, DestinationKind::Warehouse] {
            assert!(ops_for_export(&e, &r4, &b, kind).is_empty());
        }
        assert_eq!(r4.current.attributes["plan"], "team");

        // Re-entry sends the properties again.
        let back = change(ChangeKind::Enter, 5_000, "e", "a@x.com", Attributes::new());
        let r5 = write(apply_change(
            &e,
            Some(&r4),
            &back,
            &Attributes::new(),
            5_000,
        ));
        let ops = ops_for_export(&e, &r5, &b, kind);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].op, OpKind::Update);
    }

    #[test]
    fn attributes_mode_sends_nothing_for_a_person_without_attributes() {
        let e = attributes_export();
        let enter = change(ChangeKind::Enter, 1_000, "a", "a@x.com", Attributes::new());
        let rec = write(apply_change(&e, None, &enter, &Attributes::new(), 1_000));
        assert!(ops_for_export(&e, &rec, &binding(), DestinationKind::Clevertap).is_empty());
        // The same record in a membership export is an add.
        let adds = ops_for_export(&export(), &rec, &binding(), DestinationKind::Clevertap);
        assert!(adds.iter().all(|o| o.op == OpKind::Add) && !adds.is_empty());
    }
}
