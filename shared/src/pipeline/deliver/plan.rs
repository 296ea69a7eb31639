//! How ops are planned into requests.

use crate::domain::model::DeliveryOp;
use crate::domain::spec::ExportSpec;

/// An op of one of the export's test profiles (canaries).
pub(super) fn is_canary(export: &ExportSpec, op: &DeliveryOp) -> bool {
    !export.test_profiles.is_empty()
        && op
            .ids
            .id
            .as_deref()
            .is_some_and(|id| export.test_profiles.iter().any(|t| t == id))
}

/// An op of a claimed job: (job index, op index).
type OpRef = (usize, usize);

/// The requests one export's ops go out in, each at most `max` ops:
/// canaries (test profiles) first, in requests of their own, so they reach
/// the destination before anyone else of their run; then the rest in
/// order. With `per_job` no request spans two jobs: the warehouse names an
/// object by its rows, so a job redelivered after a crash must be batched
/// alone to rewrite its own object rather than add a second one.
pub fn plan_requests(
    refs: &[(usize, usize)],
    canary: impl Fn(usize, usize) -> bool,
    per_job: bool,
    max: usize,
) -> Vec<Vec<(usize, usize)>> {
    let max = max.max(1);
    let (first, rest): (Vec<OpRef>, Vec<OpRef>) =
        refs.iter().copied().partition(|(ci, oi)| canary(*ci, *oi));
    let mut out = Vec::new();
    for group in [first, rest] {
        let mut current: Vec<(usize, usize)> = Vec::new();
        for r in group {
            let other_job = per_job && current.first().is_some_and(|(ci, _)| *ci != r.0);
            if current.len() == max || other_job {
                out.push(std::mem::take(&mut current));
            }
            current.push(r);
        }
        if !current.is_empty() {
            out.push(current);
        }
    }
    out
}
