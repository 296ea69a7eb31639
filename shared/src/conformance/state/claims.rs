//! The state store suite, claims: idempotency keys, delivery attempts
//! settled atomically and fenced on their claim, progress handed to the
//! next claim, and the batched membership read delivery checks ops with.

use super::*;
use crate::ports::JobSettlement;

// ---------------------------------------------------------------- idempotency

pub async fn idempotency_lifecycle(store: Store) {
    const CASE: &str = "idempotency_lifecycle";
    let k = "webhook#evt-1";
    let t0: Millis = 1_700_000_000_000;
    let hour = 3_600_000;
    let start = |now: Millis| {
        let store = Arc::clone(&store);
        async move {
            store
                .idempotency_start(k, now, now + 60_000, now + hour)
                .await
                .or_fail(SUITE, CASE, "idempotency_start")
        }
    };
    let check = |what: &str, got: IdempotencyStart, want: IdempotencyStart| {
        if got != want {
            fail(
                SUITE,
                CASE,
                format!("{what}: got {got:?}, expected {want:?}"),
            );
        }
    };
    check("first start", start(t0).await, IdempotencyStart::Started);
    check(
        "start while held",
        start(t0 + 1_000).await,
        IdempotencyStart::InProgress,
    );
    store
        .idempotency_complete(k, t0 + hour)
        .await
        .or_fail(SUITE, CASE, "idempotency_complete");
    check(
        "start after complete",
        start(t0 + 2_000).await,
        IdempotencyStart::Completed,
    );
    // Past the record's expiry it counts as absent, deleted or not.
    check(
        "start after expiry",
        start(t0 + 2 * hour).await,
        IdempotencyStart::Started,
    );
    check(
        "start while re-held",
        start(t0 + 2 * hour + 1_000).await,
        IdempotencyStart::InProgress,
    );
    store
        .idempotency_release(k)
        .await
        .or_fail(SUITE, CASE, "idempotency_release");
    check(
        "start after release",
        start(t0 + 2 * hour + 2_000).await,
        IdempotencyStart::Started,
    );
    // Keys are independent.
    let other = store
        .idempotency_start(
            "webhook#evt-2",
            t0 + 2 * hour + 3_000,
            t0 + 3 * hour,
            t0 + 4 * hour,
        )
        .await
        .or_fail(SUITE, CASE, "idempotency_start");
    check("another key", other, IdempotencyStart::Started);
    // Releasing a key nobody holds is harmless.
    store
        .idempotency_release("webhook#never")
        .await
        .or_fail(SUITE, CASE, "idempotency_release");
}

pub async fn idempotency_in_progress_past_its_deadline_is_taken_over(store: Store) {
    const CASE: &str = "idempotency_in_progress_past_its_deadline_is_taken_over";
    let k = "job#abc";
    let t0: Millis = 1_700_000_000_000;
    let hour = 3_600_000;
    let first = store
        .idempotency_start(k, t0, t0 + 30_000, t0 + hour)
        .await
        .or_fail(SUITE, CASE, "idempotency_start");
    // The first attempt died without releasing; its in-progress deadline passed.
    let second = store
        .idempotency_start(k, t0 + 60_000, t0 + 90_000, t0 + 60_000 + hour)
        .await
        .or_fail(SUITE, CASE, "idempotency_start");
    if (first, second) != (IdempotencyStart::Started, IdempotencyStart::Started) {
        fail(
            SUITE,
            CASE,
            format!("got {first:?} then {second:?}, expected Started twice (Powertools takeover)"),
        );
    }
    let third = store
        .idempotency_start(k, t0 + 61_000, t0 + 91_000, t0 + 61_000 + hour)
        .await
        .or_fail(SUITE, CASE, "idempotency_start");
    if third != IdempotencyStart::InProgress {
        fail(
            SUITE,
            CASE,
            format!("the new holder was not respected: {third:?}"),
        );
    }
}

pub async fn settled_jobs_and_their_counters_land_together(store: Store) {
    const CASE: &str = "settled_jobs_and_their_counters_land_together";
    let t0: Millis = 1_700_000_000_000;
    let hour = 3_600_000;
    for k in ["job:meta:a", "job:meta:b"] {
        let (v, done) = store
            .claim_job(k, t0, t0 + 30_000, t0 + hour)
            .await
            .or_fail(SUITE, CASE, "claim_job");
        if v != IdempotencyStart::Started || !done.is_empty() {
            fail(SUITE, CASE, format!("first claim of {k}: {v:?} {done:?}"));
        }
    }
    let settle = |key: &str| JobSettlement {
        key: key.to_string(),
        finished_ops: None,
        expires_at: t0 + hour,
        claimed_until: t0 + 30_000,
        counters: vec![],
    };
    let counters = vec![
        (
            "delivery#vip#meta".to_string(),
            vec![("accepted".to_string(), 7), ("sent".to_string(), 8)],
        ),
        (
            "delivery#cart#meta".to_string(),
            vec![("accepted".to_string(), 2), ("accepted".to_string(), 1)],
        ),
    ];
    store
        .settle_jobs(&[settle("job:meta:a"), settle("job:meta:b")], &counters)
        .await
        .or_fail(SUITE, CASE, "settle_jobs");
    for k in ["job:meta:a", "job:meta:b"] {
        let (v, _) = store
            .claim_job(k, t0 + 1_000, t0 + 31_000, t0 + hour)
            .await
            .or_fail(SUITE, CASE, "claim_job");
        if v != IdempotencyStart::Completed {
            fail(
                SUITE,
                CASE,
                format!("{k} after settling: {v:?}, expected Completed"),
            );
        }
    }
    let vip = store
        .get_counters("delivery#vip#meta")
        .await
        .or_fail(SUITE, CASE, "get_counters");
    let cart = store
        .get_counters("delivery#cart#meta")
        .await
        .or_fail(SUITE, CASE, "get_counters");
    if vip.get("accepted") != Some(&7)
        || vip.get("sent") != Some(&8)
        || cart.get("accepted") != Some(&3)
    {
        fail(
            SUITE,
            CASE,
            format!("counters after settling: vip {vip:?} cart {cart:?}"),
        );
    }
    // Giving back a completed claim leaves it completed.
    store
        .idempotency_release("job:meta:a")
        .await
        .or_fail(SUITE, CASE, "idempotency_release");
    let (v, _) = store
        .claim_job("job:meta:a", t0 + 2_000, t0 + 32_000, t0 + hour)
        .await
        .or_fail(SUITE, CASE, "claim_job");
    if v != IdempotencyStart::Completed {
        fail(SUITE, CASE, format!("completed job after a release: {v:?}"));
    }
    // Counters alone (duplicates of a batch with nothing to settle).
    store
        .settle_jobs(
            &[],
            &[(
                "delivery#vip#meta".to_string(),
                vec![("jobs_duplicate".to_string(), 2)],
            )],
        )
        .await
        .or_fail(SUITE, CASE, "settle_jobs");
    let vip = store
        .get_counters("delivery#vip#meta")
        .await
        .or_fail(SUITE, CASE, "get_counters");
    if vip.get("jobs_duplicate") != Some(&2) {
        fail(SUITE, CASE, format!("counters-only settle: {vip:?}"));
    }
}

pub async fn a_settle_under_a_claim_taken_over_since_counts_nothing(store: Store) {
    const CASE: &str = "a_settle_under_a_claim_taken_over_since_counts_nothing";
    let t0: Millis = 1_700_000_000_000;
    let hour = 3_600_000;
    let scope = "delivery#vip#meta";
    let settle = |key: &str, until: Millis, accepted: i64| JobSettlement {
        key: key.to_string(),
        finished_ops: None,
        expires_at: t0 + hour,
        claimed_until: until,
        counters: vec![(scope.to_string(), "accepted".to_string(), accepted)],
    };
    for k in ["job:meta:slow", "job:meta:other"] {
        store
            .claim_job(k, t0, t0 + 30_000, t0 + hour)
            .await
            .or_fail(SUITE, CASE, "claim_job");
    }
    // The slow attempt overran its claim; another took the job over.
    let (v, _) = store
        .claim_job("job:meta:slow", t0 + 40_000, t0 + 70_000, t0 + hour)
        .await
        .or_fail(SUITE, CASE, "claim_job");
    if v != IdempotencyStart::Started {
        fail(SUITE, CASE, format!("takeover: {v:?}"));
    }
    // The slow attempt settles late, beside a job it still holds.
    let lost = store
        .settle_jobs(
            &[
                settle("job:meta:slow", t0 + 30_000, 5),
                settle("job:meta:other", t0 + 30_000, 2),
            ],
            &[],
        )
        .await
        .or_fail(SUITE, CASE, "settle_jobs");
    if lost != vec!["job:meta:slow".to_string()] {
        fail(
            SUITE,
            CASE,
            format!("lost claims {lost:?}, expected the slow job's"),
        );
    }
    let c = store
        .get_counters(scope)
        .await
        .or_fail(SUITE, CASE, "get_counters");
    if c.get("accepted") != Some(&2) {
        fail(
            SUITE,
            CASE,
            format!("counters {c:?}: only the job still held counts"),
        );
    }
    let (v, _) = store
        .claim_job("job:meta:slow", t0 + 41_000, t0 + 71_000, t0 + hour)
        .await
        .or_fail(SUITE, CASE, "claim_job");
    if v != IdempotencyStart::InProgress {
        fail(
            SUITE,
            CASE,
            format!("the new holder's claim after the late settle: {v:?}"),
        );
    }
    // The holder settles and counts.
    let lost = store
        .settle_jobs(&[settle("job:meta:slow", t0 + 70_000, 5)], &[])
        .await
        .or_fail(SUITE, CASE, "settle_jobs");
    let c = store
        .get_counters(scope)
        .await
        .or_fail(SUITE, CASE, "get_counters");
    if !lost.is_empty() || c.get("accepted") != Some(&7) {
        fail(
            SUITE,
            CASE,
            format!("the holder's settle: lost {lost:?}, counters {c:?}"),
        );
    }
}

pub async fn partial_progress_is_handed_to_the_next_claim_and_survives_release(store: Store) {
    const CASE: &str = "partial_progress_is_handed_to_the_next_claim_and_survives_release";
    let t0: Millis = 1_700_000_000_000;
    let hour = 3_600_000;
    let k = "job:clevertap:c";
    let claim = |at: Millis| {
        let store = store.clone();
        async move {
            store
                .claim_job(k, at, at + 30_000, t0 + hour)
                .await
                .or_fail(SUITE, CASE, "claim_job")
        }
    };
    claim(t0).await;
    store
        .settle_jobs(
            &[JobSettlement {
                key: k.to_string(),
                finished_ops: Some(vec![0, 2, 3]),
                expires_at: t0 + hour,
                claimed_until: t0 + 30_000,
                counters: vec![],
            }],
            &[(
                "delivery#vip#clevertap".to_string(),
                vec![("accepted".to_string(), 3)],
            )],
        )
        .await
        .or_fail(SUITE, CASE, "settle_jobs");
    // The claim was given back with the settle: the next one starts at once.
    let (v, done) = claim(t0 + 1_000).await;
    if v != IdempotencyStart::Started || done != vec![0, 2, 3] {
        fail(
            SUITE,
            CASE,
            format!("claim after a partial settle: {v:?} {done:?}, expected Started [0, 2, 3]"),
        );
    }
    // While held, others see it in progress.
    let (v, _) = claim(t0 + 2_000).await;
    if v != IdempotencyStart::InProgress {
        fail(SUITE, CASE, format!("claim while held: {v:?}"));
    }
    // A failed attempt gives the claim back; the progress stays.
    store
        .idempotency_release(k)
        .await
        .or_fail(SUITE, CASE, "idempotency_release");
    let (v, done) = claim(t0 + 3_000).await;
    if v != IdempotencyStart::Started || done != vec![0, 2, 3] {
        fail(
            SUITE,
            CASE,
            format!("claim after release: {v:?} {done:?}, expected Started [0, 2, 3]"),
        );
    }
    // A worker that died holding it: taken over past its deadline, progress kept.
    let (v, done) = claim(t0 + 40_000).await;
    if v != IdempotencyStart::Started || done != vec![0, 2, 3] {
        fail(
            SUITE,
            CASE,
            format!("takeover: {v:?} {done:?}, expected Started [0, 2, 3]"),
        );
    }
    store
        .settle_jobs(
            &[JobSettlement {
                key: k.to_string(),
                finished_ops: None,
                expires_at: t0 + hour,
                claimed_until: t0 + 70_000,
                counters: vec![],
            }],
            &[(
                "delivery#vip#clevertap".to_string(),
                vec![("accepted".to_string(), 1)],
            )],
        )
        .await
        .or_fail(SUITE, CASE, "settle_jobs");
    let (v, _) = claim(t0 + 41_000).await;
    if v != IdempotencyStart::Completed {
        fail(SUITE, CASE, format!("after the last settle: {v:?}"));
    }
    let c = store
        .get_counters("delivery#vip#clevertap")
        .await
        .or_fail(SUITE, CASE, "get_counters");
    if c.get("accepted") != Some(&4) {
        fail(SUITE, CASE, format!("counters: {c:?}, expected accepted 4"));
    }
    // Past the record's expiry, its progress is forgotten with it.
    let k2 = "job:clevertap:d";
    store
        .claim_job(k2, t0, t0 + 30_000, t0 + hour)
        .await
        .or_fail(SUITE, CASE, "claim_job");
    store
        .settle_jobs(
            &[JobSettlement {
                key: k2.to_string(),
                finished_ops: Some(vec![1]),
                expires_at: t0 + hour,
                claimed_until: t0 + 30_000,
                counters: vec![],
            }],
            &[],
        )
        .await
        .or_fail(SUITE, CASE, "settle_jobs");
    let (v, done) = store
        .claim_job(k2, t0 + 2 * hour, t0 + 2 * hour + 30_000, t0 + 3 * hour)
        .await
        .or_fail(SUITE, CASE, "claim_job");
    if v != IdempotencyStart::Started || !done.is_empty() {
        fail(
            SUITE,
            CASE,
            format!("claim past expiry: {v:?} {done:?}, expected Started []"),
        );
    }
}

pub async fn memberships_read_together_in_the_order_asked(store: Store) {
    const CASE: &str = "memberships_read_together_in_the_order_asked";
    // More than one DynamoDB batch (100 keys).
    for n in (0..230).step_by(2) {
        let rec = record("vip", &key(n), n.is_multiple_of(4), 1_000 + n as i64, "evt");
        store
            .put_membership(&rec)
            .await
            .or_fail(SUITE, CASE, "put_membership");
    }
    store
        .put_membership(&record("other", &key(1), true, 5, "evt"))
        .await
        .or_fail(SUITE, CASE, "put_membership");
    let mut asked: Vec<PersonKey> = (0..230).rev().map(key).collect();
    asked.push(key(4));
    let got = store
        .get_memberships("vip", &asked)
        .await
        .or_fail(SUITE, CASE, "get_memberships");
    if got.len() != asked.len() {
        fail(
            SUITE,
            CASE,
            format!("{} answers for {} keys", got.len(), asked.len()),
        );
    }
    for (k, r) in asked.iter().zip(&got) {
        let n: usize = k
            .as_str()
            .trim_start_matches("id:user-")
            .parse()
            .unwrap_or(usize::MAX);
        let expected = n
            .is_multiple_of(2)
            .then(|| record("vip", k, n.is_multiple_of(4), 1_000 + n as i64, "evt"));
        if r.as_ref() != expected.as_ref() {
            fail(
                SUITE,
                CASE,
                format!("{k:?}: got {r:?}, expected {expected:?}"),
            );
        }
    }
    let none = store
        .get_memberships("vip", &[])
        .await
        .or_fail(SUITE, CASE, "get_memberships");
    if !none.is_empty() {
        fail(SUITE, CASE, "answers for no keys");
    }
}
