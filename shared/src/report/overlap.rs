//! Suppression overlap: people who are members of a suppression export
//! and, at the same time, of an export that lists it under `suppress`.
//!
//! Read from our state: the membership records say whom we put in (and
//! told every destination of) each export. A person is the same person in
//! two exports when they share any identifier — the person key, `id`,
//! `cio_id`, the email (trimmed, lower-cased) or the phone (digits only) —
//! so a suppression export keyed by email still meets an export keyed by
//! id. Only counts leave this module, never an identifier.
//!
//! Every member of an export is in its main audience at each of its
//! destinations (`membership::audiences`), so a person found in both is, as
//! far as our deliveries go, targeted at each destination of the export
//! that should have suppressed them: the overlap is reported per
//! destination, each with how many members that destination accepted.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::domain::model::{counter, CounterScope, Identifiers, MembershipRecord};
use crate::domain::spec::ActivationSpec;
use crate::ports::{StateError, StateStore};

/// Records read per page.
const PAGE: usize = 500;

/// One suppression rule's overlap at one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// The export that must not contain the suppressed people.
    pub export: String,
    /// The suppression export (listed in `export`'s `suppress`).
    pub suppression: String,
    /// A destination of `export`.
    pub destination: String,
    /// People who are members of both, in our state.
    pub people: u64,
    /// Members of `export` in our state.
    pub export_members: u64,
    /// Members of `suppression` in our state.
    pub suppression_members: u64,
    /// Members the destination accepted for `export` (adds − removes
    /// acknowledged): 0 means nothing reached it yet.
    pub delivered_members: i64,
}

/// The match tokens of a person: hashed so the sets held in memory carry
/// no address either.
fn tokens(record: &MembershipRecord) -> Vec<[u8; 16]> {
    fn digest(kind: &str, value: &str) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        let full = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
    let ids: &Identifiers = &record.current.ids;
    let mut out = vec![digest("key", record.person_key.as_str())];
    if let Some(id) = ids.id() {
        out.push(digest("id", id));
    }
    if let Some(cio) = ids.cio_id() {
        out.push(digest("cio", cio));
    }
    if let Some(email) = ids.email() {
        out.push(digest("email", &email.to_lowercase()));
    }
    if let Some(phone) = ids.phone() {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            out.push(digest("phone", &digits));
        }
    }
    out
}

/// Every current member of `export`, page by page.
async fn members(
    state: &dyn StateStore,
    export: &str,
) -> Result<Vec<MembershipRecord>, StateError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = state.list_memberships(export, cursor, PAGE).await?;
        out.extend(page.items.into_iter().filter(|r| r.current.member));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// The overlap of every `suppress` rule of the spec, per destination of
/// the suppressing export (an export with no destination gets one row with
/// an empty destination name).
pub async fn suppression_overlaps(
    state: &dyn StateStore,
    spec: &ActivationSpec,
) -> Result<Vec<Overlap>, StateError> {
    let mut cache: BTreeMap<String, Vec<MembershipRecord>> = BTreeMap::new();
    let mut out = Vec::new();
    for export in spec.exports.values() {
        for suppression in &export.suppress {
            for name in [&export.name, suppression] {
                if !cache.contains_key(name) {
                    let list = members(state, name).await?;
                    cache.insert(name.clone(), list);
                }
            }
            let suppressed: BTreeSet<[u8; 16]> =
                cache[suppression].iter().flat_map(tokens).collect();
            let both = cache[&export.name]
                .iter()
                .filter(|r| tokens(r).iter().any(|t| suppressed.contains(t)))
                .count() as u64;
            let export_members = cache[&export.name].len() as u64;
            let suppression_members = cache[suppression].len() as u64;
            let destinations: Vec<String> = if export.destinations.is_empty() {
                vec![String::new()]
            } else {
                export
                    .destinations
                    .iter()
                    .map(|b| b.destination.clone())
                    .collect()
            };
            for destination in destinations {
                let delivered_members = if destination.is_empty() {
                    0
                } else {
                    let c = state
                        .get_counters(&CounterScope::delivery(&export.name, &destination))
                        .await?;
                    c.get(counter::ADDS_ACCEPTED).copied().unwrap_or(0)
                        - c.get(counter::REMOVES_ACCEPTED).copied().unwrap_or(0)
                };
                out.push(Overlap {
                    export: export.name.clone(),
                    suppression: suppression.clone(),
                    destination,
                    people: both,
                    export_members,
                    suppression_members,
                    delivered_members,
                });
            }
        }
    }
    Ok(out)
}
