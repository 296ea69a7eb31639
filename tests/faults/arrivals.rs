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

/// One change to a person at an audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Change {
    Add,
    Remove,
    /// Still a member; an attribute or an identifier changed.
    Update,
}

/// A person's changes in the order they happened, by person key.
pub(super) type Changes = BTreeMap<String, Vec<Change>>;

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
            .push(if w.enter { Change::Add } else { Change::Remove });
    }
    out
}

/// The changes a batch export's runs made: between the segment's members
/// before one round and before the next, those who joined, those who left
/// (the first round starts from nobody), and those who stayed while their
/// email changed, or their lifetime value if the export carries it.
pub(super) fn batch_changes(
    rounds: &[BTreeSet<usize>],
    profiles: &[Vec<Profile>],
    carries_lifetime_value: bool,
    id_of: impl Fn(usize) -> String,
) -> Changes {
    let mut out = Changes::new();
    let empty = BTreeSet::new();
    let mut before = &empty;
    for (r, now) in rounds.iter().enumerate() {
        for i in now.difference(before) {
            out.entry(key_of(&id_of(*i))).or_default().push(Change::Add);
        }
        for i in before.difference(now) {
            out.entry(key_of(&id_of(*i)))
                .or_default()
                .push(Change::Remove);
        }
        if r > 0 {
            for i in now.intersection(before) {
                let (was, is) = (&profiles[r - 1][*i], &profiles[r][*i]);
                if was.email != is.email
                    || (carries_lifetime_value && was.lifetime_value != is.lifetime_value)
                {
                    out.entry(key_of(&id_of(*i)))
                        .or_default()
                        .push(Change::Update);
                }
            }
        }
        before = now;
    }
    out
}

/// One add, remove or update as a destination received it.
pub(super) struct Arrival {
    pub(super) person: String,
    pub(super) change: Change,
    pub(super) source_ts: i64,
    /// The op's id, where the destination gets one to drop repeats by.
    pub(super) op_id: Option<String>,
}

impl Arrival {
    /// An add, remove or update row or op of `audience` (anything else:
    /// `None`).
    pub(super) fn of(v: &Value, audience: &str) -> Option<Arrival> {
        if v.get("audience")?.as_str()? != audience {
            return None;
        }
        let change = match v.get("op")?.as_str()? {
            "add" => Change::Add,
            "remove" => Change::Remove,
            "update" => Change::Update,
            _ => return None,
        };
        Some(Arrival {
            person: v.get("person_key")?.as_str()?.to_string(),
            change,
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
    // The same change (person, kind, source time) arriving twice under
    // different ids, or in two rows: counted twice downstream.
    let mut times: BTreeMap<(&str, i64, Change), usize> = BTreeMap::new();
    for a in &kept {
        *times
            .entry((a.person.as_str(), a.source_ts, a.change))
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
    let mut got: BTreeMap<&str, Vec<(i64, Change)>> = BTreeMap::new();
    for (person, ts, change) in times.keys() {
        got.entry(person).or_default().push((*ts, *change));
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
        let arrived: Vec<Change> = arrived.into_iter().map(|(_, c)| c).collect();
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
    let updates = expected
        .values()
        .flatten()
        .filter(|c| **c == Change::Update)
        .count();
    format!(
        "{what}: {} arrivals, {repeats} repeats of an op id, {} distinct changes for the world's {changes} ({updates} of them updates)",
        arrivals.len(),
        times.len()
    )
}
