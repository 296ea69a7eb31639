//! Conformance of [`RequestBudget`] adapters. `make` returns a handle on
//! the same store each time it is called (two handles = two processes
//! sharing one budget); every case uses workspace names of its own, so
//! cases may share a store.

use std::sync::Arc;

use super::{fail, OrFail};
use crate::customerio::budget::RequestBudget;

const SUITE: &str = "budget";
const I: i64 = 100_000;

fn ws(case: &str) -> String {
    format!("{case}-{}", uuid::Uuid::new_v4().simple())
}

/// Every case, in order.
pub async fn run_all<F>(make: F)
where
    F: Fn() -> Arc<dyn RequestBudget> + Send + Sync + 'static,
{
    idle_budget_grants_now(make()).await;
    back_to_back_reservations_are_one_interval_apart(make()).await;
    concurrent_reservations_from_two_handles_get_distinct_spaced_slots(make(), make()).await;
    an_idle_period_is_not_banked_as_a_burst(make()).await;
    hold_pushes_the_next_slot_and_never_moves_it_back(make()).await;
    workspaces_are_independent(make()).await;
}

pub async fn idle_budget_grants_now(b: Arc<dyn RequestBudget>) {
    let case = "idle_budget_grants_now";
    let w = ws(case);
    let slot = b
        .reserve(&w, I, 5_000_000)
        .await
        .or_fail(SUITE, case, "reserve");
    if slot != 5_000_000 {
        fail(
            SUITE,
            case,
            format!("first slot {slot}, expected now (5000000)"),
        );
    }
}

pub async fn back_to_back_reservations_are_one_interval_apart(b: Arc<dyn RequestBudget>) {
    let case = "back_to_back_reservations_are_one_interval_apart";
    let w = ws(case);
    let now = 1_000_000;
    let mut slots = Vec::new();
    for _ in 0..5 {
        slots.push(b.reserve(&w, I, now).await.or_fail(SUITE, case, "reserve"));
    }
    let expected: Vec<i64> = (0..5).map(|k| now + k * I).collect();
    if slots != expected {
        fail(
            SUITE,
            case,
            format!("slots {slots:?}, expected {expected:?}"),
        );
    }
}

pub async fn concurrent_reservations_from_two_handles_get_distinct_spaced_slots(
    a: Arc<dyn RequestBudget>,
    b: Arc<dyn RequestBudget>,
) {
    let case = "concurrent_reservations_from_two_handles_get_distinct_spaced_slots";
    let w = ws(case);
    let now = 2_000_000;
    let mut tasks = Vec::new();
    for k in 0..24 {
        let handle = if k % 2 == 0 { a.clone() } else { b.clone() };
        let w = w.clone();
        tasks.push(tokio::spawn(
            async move { handle.reserve(&w, I, now).await },
        ));
    }
    let mut slots = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => slots.push(r.or_fail(SUITE, case, "reserve")),
            Err(e) => fail(SUITE, case, format!("task failed: {e}")),
        }
    }
    slots.sort_unstable();
    if slots.first() != Some(&now) {
        fail(
            SUITE,
            case,
            format!("earliest slot {:?}, expected {now}", slots.first()),
        );
    }
    for pair in slots.windows(2) {
        if pair[1] - pair[0] < I {
            fail(
                SUITE,
                case,
                format!(
                    "slots {} and {} are closer than one interval: {slots:?}",
                    pair[0], pair[1]
                ),
            );
        }
    }
}

pub async fn an_idle_period_is_not_banked_as_a_burst(b: Arc<dyn RequestBudget>) {
    let case = "an_idle_period_is_not_banked_as_a_burst";
    let w = ws(case);
    b.reserve(&w, I, 1_000_000)
        .await
        .or_fail(SUITE, case, "reserve");
    let later = 1_000_000 + 50 * I;
    let first = b
        .reserve(&w, I, later)
        .await
        .or_fail(SUITE, case, "reserve");
    let second = b
        .reserve(&w, I, later)
        .await
        .or_fail(SUITE, case, "reserve");
    if first != later || second != later + I {
        fail(
            SUITE,
            case,
            format!(
                "after idling got {first}, {second}; expected {later}, {}",
                later + I
            ),
        );
    }
}

pub async fn hold_pushes_the_next_slot_and_never_moves_it_back(b: Arc<dyn RequestBudget>) {
    let case = "hold_pushes_the_next_slot_and_never_moves_it_back";
    let w = ws(case);
    let now = 3_000_000;
    b.reserve(&w, I, now).await.or_fail(SUITE, case, "reserve");
    let until = now + 20 * I;
    b.hold_until(&w, until)
        .await
        .or_fail(SUITE, case, "hold_until");
    b.hold_until(&w, now)
        .await
        .or_fail(SUITE, case, "hold_until (earlier)");
    let slot = b
        .reserve(&w, I, now + I)
        .await
        .or_fail(SUITE, case, "reserve");
    if slot != until {
        fail(
            SUITE,
            case,
            format!("slot after hold {slot}, expected {until}"),
        );
    }
    // A hold on a workspace nobody used yet applies too.
    let fresh = ws(case);
    b.hold_until(&fresh, until)
        .await
        .or_fail(SUITE, case, "hold_until (fresh)");
    let slot = b
        .reserve(&fresh, I, now)
        .await
        .or_fail(SUITE, case, "reserve (fresh)");
    if slot != until {
        fail(
            SUITE,
            case,
            format!("fresh workspace slot {slot}, expected {until}"),
        );
    }
}

pub async fn workspaces_are_independent(b: Arc<dyn RequestBudget>) {
    let case = "workspaces_are_independent";
    let (w1, w2) = (ws(case), ws(case));
    let now = 4_000_000;
    for _ in 0..3 {
        b.reserve(&w1, I, now)
            .await
            .or_fail(SUITE, case, "reserve w1");
    }
    let other = b
        .reserve(&w2, I, now)
        .await
        .or_fail(SUITE, case, "reserve w2");
    if other != now {
        fail(
            SUITE,
            case,
            format!("second workspace slot {other}, expected {now}"),
        );
    }
}
