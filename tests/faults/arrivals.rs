//! What arrived, change by change, at the destinations that keep every
//! change (the webhook receiver, the warehouse table): each membership
//! change the world made must be there exactly once, in source order, and
//! nothing else. A receiver drops a redelivery by its `op_id`; a warehouse
//! reader has no such id, so a row written twice is counted twice.
//!
//! The expected changes come from the world (the webhooks sent, the
//! segments as the Customer.io simulator held them before each batch
//! round), never from what the pipeline enqueued or logged.

use super::*;

/// A person's membership changes in the order they happened: `true` an
/// add, `false` a remove. By person key.
pub(super) type Changes = BTreeMap<String, Vec<bool>>;

/// The changes the realtime webhooks of `export` made: an enter for
/// someone outside, an exit for someone inside (a repeated enter changes
/// nothing).
pub(super) fn realtime_changes(webhooks: &[Webhook], export: &str) -> Changes {
    let mut inside = BTreeSet::new();
    let mut out = Changes::new();
    for w in webhooks.iter().filter(|w| w.export == export) {
        if w.enter == inside.contains(&w.person) {
            continue;
        }
        if w.enter {
            inside.insert(w.person);
        } else {
            inside.remove(&w.person);
        }
        out.entry(key_of(&realtime_id(w.person)))
            .or_default()
            .push(w.enter);
    }
    out
}

/// The changes a batch export's runs made: between the segment's members
/// before one round and before the next, those who joined and those who
/// left (the first round starts from nobody).
pub(super) fn batch_changes(
    rounds: &[BTreeSet<usize>],
    id_of: impl Fn(usize) -> String,
) -> Changes {
    let mut out = Changes::new();
    let empty = BTreeSet::new();
    let mut before = &empty;
    for now in rounds {
        for i in now.difference(before) {
            out.entry(key_of(&id_of(*i))).or_default().push(true);
        }
        for i in before.difference(now) {
            out.entry(key_of(&id_of(*i))).or_default().push(false);
        }
        before = now;
    }
    out
}

/// One add or remove as a destination received it.
pub(super) struct Arrival {
    pub(super) person: String,
    pub(super) add: bool,
    pub(super) source_ts: i64,
    /// The op's id, where the destination gets one to drop repeats by.
    pub(super) op_id: Option<String>,
}

impl Arrival {
    /// An add or remove row or op of `audience` (anything else: `None`).
    pub(super) fn of(v: &Value, audience: &str) -> Option<Arrival> {
        if v.get("audience")?.as_str()? != audience {
            return None;
        }
        let add = match v.get("op")?.as_str()? {
            "add" => true,
            "remove" => false,
            _ => return None,
        };
        Some(Arrival {
            person: v.get("person_key")?.as_str()?.to_string(),
            add,
            source_ts: v.get("source_ts")?.as_i64()?,
            op_id: v.get("op_id").and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// Check what arrived at one audience against the world's changes; a line
/// for the figures.
pub(super) fn check(
    what: &str,
    arrivals: &[Arrival],
    expected: &Changes,
    out: &mut Outcome,
) -> String {
    // Repeats of one op id are the at-least-once delivery the receiver
    // drops; without ids every arrival counts.
    let mut seen_ids = BTreeSet::new();
    let mut kept = Vec::new();
    for a in arrivals {
        match &a.op_id {
            Some(id) if !seen_ids.insert(id.clone()) => {}
            _ => kept.push(a),
        }
    }
    let repeats = arrivals.len() - kept.len();
    // The same change (person, add or remove, source time) arriving twice
    // under different ids, or in two rows: counted twice downstream.
    let mut times: BTreeMap<(&str, i64, bool), usize> = BTreeMap::new();
    for a in &kept {
        *times
            .entry((a.person.as_str(), a.source_ts, a.add))
            .or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    if !twice.is_empty() {
        out.mismatches.push(format!(
            "{what}: {} changes arrived more than once in effect (e.g. {:?})",
            twice.len(),
            twice.iter().take(3).collect::<Vec<_>>()
        ));
    }
    // Each person's distinct changes in source order against the world's.
    let mut got: BTreeMap<&str, Vec<(i64, bool)>> = BTreeMap::new();
    for (person, ts, add) in times.keys() {
        got.entry(person).or_default().push((*ts, *add));
    }
    let mut wrong = Vec::new();
    for person in expected
        .keys()
        .map(String::as_str)
        .chain(got.keys().copied())
        .collect::<BTreeSet<_>>()
    {
        let mut arrived = got.get(person).cloned().unwrap_or_default();
        arrived.sort();
        let arrived: Vec<bool> = arrived.into_iter().map(|(_, add)| add).collect();
        let want = expected.get(person).cloned().unwrap_or_default();
        if arrived != want {
            wrong.push(format!("{person}: world {want:?}, arrived {arrived:?}"));
        }
    }
    if !wrong.is_empty() {
        out.mismatches.push(format!(
            "{what}: {} people's changes differ from the world's (missing, extra or out of order), e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(3)]
        ));
    }
    let changes: usize = expected.values().map(Vec::len).sum();
    format!(
        "{what}: {} arrivals, {repeats} repeats of an op id, {} distinct changes for the world's {changes}",
        arrivals.len(),
        times.len()
    )
}
