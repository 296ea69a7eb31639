//! Delivery's pure rules: which ops a newer change supersedes, what
//! re-asserts state after one landed, and how ops are planned into requests.

mod superseded_tests {
    use std::collections::BTreeSet;

    use super::super::superseded;
    use crate::domain::model::{
        ChangeOrigin, DeliveryOp, Identifiers, MembershipRecord, MembershipSnapshot, OpKind,
        PersonKey,
    };

    fn ids(email: &str) -> Identifiers {
        Identifiers {
            id: Some("u1".into()),
            email: Some(email.into()),
            ..Identifiers::default()
        }
    }

    fn op(kind: OpKind, tier: Option<&str>, email: &str, source_ts: i64) -> DeliveryOp {
        DeliveryOp {
            op: kind,
            person_key: PersonKey("id:u1".into()),
            ids: ids(email),
            audience: "a".into(),
            tier: tier.map(str::to_string),
            attributes: Default::default(),
            event: None,
            source_ts,
            intake_ts: source_ts,
        }
    }

    fn record(member: bool, tiers: &[&str], email: &str, source_ts: i64) -> MembershipRecord {
        MembershipRecord {
            export: "cart".into(),
            person_key: PersonKey("id:u1".into()),
            current: MembershipSnapshot {
                member,
                tiers: tiers.iter().map(|t| t.to_string()).collect::<BTreeSet<_>>(),
                ids: ids(email),
                attributes: Default::default(),
            },
            previous: None,
            source_ts,
            intake_ts: source_ts,
            entered_at: None,
            change_id: "c".into(),
            origin: ChangeOrigin::Action,
        }
    }

    #[test]
    fn an_op_as_new_as_the_record_is_always_sent() {
        let r = record(false, &[], "a@x.com", 10);
        assert!(!superseded(&op(OpKind::Add, None, "a@x.com", 10), &r));
        assert!(!superseded(&op(OpKind::Add, None, "a@x.com", 11), &r));
    }

    #[test]
    fn a_late_add_for_someone_who_left_and_a_late_remove_for_someone_back_are_superseded() {
        let gone = record(false, &[], "a@x.com", 20);
        let back = record(true, &["vip"], "a@x.com", 20);
        assert!(superseded(&op(OpKind::Add, None, "a@x.com", 10), &gone));
        assert!(!superseded(&op(OpKind::Add, None, "a@x.com", 10), &back));
        assert!(superseded(&op(OpKind::Remove, None, "a@x.com", 10), &back));
        assert!(!superseded(&op(OpKind::Remove, None, "a@x.com", 10), &gone));
        // Tiers: by the tier, not the main audience.
        assert!(superseded(
            &op(OpKind::Add, Some("gold"), "a@x.com", 10),
            &back
        ));
        assert!(!superseded(
            &op(OpKind::Add, Some("vip"), "a@x.com", 10),
            &back
        ));
        assert!(superseded(
            &op(OpKind::Remove, Some("vip"), "a@x.com", 10),
            &back
        ));
        assert!(!superseded(&op(OpKind::Update, None, "a@x.com", 10), &gone));
    }

    #[test]
    fn removing_identifiers_the_person_no_longer_has_is_never_superseded() {
        // An identifier swap: the old email leaves while the person stays in.
        let swapped = record(true, &[], "new@x.com", 20);
        assert!(!superseded(
            &op(OpKind::Remove, None, "old@x.com", 10),
            &swapped
        ));
    }

    #[test]
    fn a_repair_re_asserts_the_record_add_with_its_ids_or_remove_of_what_the_op_sent() {
        use super::super::repair::repair_op;
        // The person left after an add of a@x.com: take a@x.com out again.
        let gone = record(false, &[], "b@x.com", 20);
        let r = repair_op(&op(OpKind::Add, None, "a@x.com", 10), &gone);
        assert_eq!(r.op, OpKind::Remove);
        assert_eq!(r.ids.email.as_deref(), Some("a@x.com"));
        assert_eq!((r.source_ts, r.audience.as_str(), r.tier), (20, "a", None));
        // Back in (under b@x.com) after a remove: add them as state has them.
        let back = record(true, &["vip"], "b@x.com", 30);
        let r = repair_op(&op(OpKind::Remove, Some("vip"), "b@x.com", 10), &back);
        assert_eq!(r.op, OpKind::Add);
        assert_eq!(r.ids.email.as_deref(), Some("b@x.com"));
        assert_eq!((r.source_ts, r.tier.as_deref()), (30, Some("vip")));
        // In, but no longer in the tier the add was for: out of the tier.
        let r = repair_op(&op(OpKind::Add, Some("gold"), "b@x.com", 10), &back);
        assert_eq!((r.op, r.tier.as_deref()), (OpKind::Remove, Some("gold")));
    }
}

mod request_plan_tests {
    use super::super::plan_requests;

    #[test]
    fn canaries_go_first_in_requests_of_their_own_then_the_rest_in_order() {
        // Job 0 holds ops 0..3, job 1 ops 0..2; (1, 1) and (0, 2) are canaries.
        let refs = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)];
        let canary = |ci: usize, oi: usize| (ci, oi) == (1, 1) || (ci, oi) == (0, 2);
        assert_eq!(
            plan_requests(&refs, canary, false, 10),
            vec![vec![(0, 2), (1, 1)], vec![(0, 0), (0, 1), (1, 0)]]
        );
        assert_eq!(
            plan_requests(&refs, |_, _| false, false, 2),
            vec![vec![(0, 0), (0, 1)], vec![(0, 2), (1, 0)], vec![(1, 1)]]
        );
    }

    #[test]
    fn per_job_requests_never_span_two_jobs() {
        let refs = [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)];
        assert_eq!(
            plan_requests(&refs, |_, _| false, true, 10),
            vec![vec![(0, 0), (0, 1)], vec![(1, 0)], vec![(2, 0), (2, 1)]]
        );
    }
}
