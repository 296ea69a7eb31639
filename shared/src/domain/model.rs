//! The domain model: people, membership, changes, delivery jobs, runs, counters.
//!
//! Times are Unix milliseconds (`Millis`) everywhere inside the product; the
//! edges convert (Customer.io sends seconds, CleverTap wants seconds).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Unix time in milliseconds.
pub type Millis = i64;

/// Attribute values as they travel: already mapped and transformed by the
/// export's allow-list (never the raw profile).
pub type Attributes = BTreeMap<String, Value>;

/// The identifiers a person may carry. Any of them may be missing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifiers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cio_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

fn non_blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Identifiers {
    pub fn id(&self) -> Option<&str> {
        non_blank(&self.id)
    }
    pub fn email(&self) -> Option<&str> {
        non_blank(&self.email)
    }
    pub fn cio_id(&self) -> Option<&str> {
        non_blank(&self.cio_id)
    }
    pub fn phone(&self) -> Option<&str> {
        non_blank(&self.phone)
    }

    /// The key a person is stored under: `id`, else `cio_id`, else the email
    /// (hashed, so keys never carry an address). `None` when nothing usable.
    pub fn person_key(&self) -> Option<PersonKey> {
        if let Some(id) = self.id() {
            return Some(PersonKey(format!("id:{id}")));
        }
        if let Some(cio) = self.cio_id() {
            return Some(PersonKey(format!("cio:{cio}")));
        }
        self.email().map(|e| {
            let digest = Sha256::digest(e.to_lowercase().as_bytes());
            PersonKey(format!("email:{}", hex::encode(&digest[..16])))
        })
    }

    /// Fill the gaps of `self` with what `other` knows.
    pub fn merge_missing(&mut self, other: &Identifiers) {
        for (mine, theirs) in [
            (&mut self.id, &other.id),
            (&mut self.email, &other.email),
            (&mut self.cio_id, &other.cio_id),
            (&mut self.phone, &other.phone),
        ] {
            if non_blank(mine).is_none() && non_blank(theirs).is_some() {
                mine.clone_from(theirs);
            }
        }
    }
}

/// Stable state key of a person. Safe to log: never holds an email or phone
/// (ids may, in odd workspaces, so logs use [`PersonKey::log_safe`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PersonKey(pub String);

impl PersonKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A short digest for log lines.
    pub fn log_safe(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!("pk_{}", hex::encode(&digest[..6]))
    }
}

impl std::fmt::Display for PersonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person as a source describes them: identifiers plus profile attributes
/// (raw; the export's allow-list maps them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub ids: Identifiers,
    #[serde(default)]
    pub attributes: Attributes,
}

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOrigin {
    /// A campaign webhook action (segment entry / exit, event).
    Action,
    /// A reporting webhook (message or subscription metric).
    Reporting,
    /// The scheduled batch diff against App API membership.
    Batch,
    /// An exit event (e.g. order placed) removing the person.
    ExitRule,
    /// A suppression export gained the person.
    Suppression,
    /// Time moved the person between age tiers.
    TierClock,
    /// An operator (replay, rollback, repair).
    Operator,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Enter,
    Exit,
}

/// One change to one person's membership of one export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembershipChange {
    pub export: String,
    pub person: Person,
    pub kind: ChangeKind,
    /// When it happened at the source: the ordering key.
    pub source_ts: Millis,
    /// When we accepted it: for latency reporting.
    pub intake_ts: Millis,
    pub origin: ChangeOrigin,
    /// Event id or run id: re-applying the same change is idempotent.
    pub change_id: String,
}

/// An event worth forwarding (events / conversions mode) or evaluating
/// (exit rules, suppression feeds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventSignal {
    pub event_id: String,
    pub name: String,
    pub person: Identifiers,
    #[serde(default)]
    pub data: serde_json::Map<String, Value>,
    pub source_ts: Millis,
    pub intake_ts: Millis,
    pub origin: ChangeOrigin,
}

/// The part of a membership record that ops are derived from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MembershipSnapshot {
    pub member: bool,
    #[serde(default)]
    pub tiers: BTreeSet<String>,
    #[serde(default)]
    pub ids: Identifiers,
    #[serde(default)]
    pub attributes: Attributes,
}

/// Stored membership of one person in one export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembershipRecord {
    pub export: String,
    pub person_key: PersonKey,
    #[serde(flatten)]
    pub current: MembershipSnapshot,
    /// What was true before the last change: lets a retried change re-derive
    /// exactly the ops it produced the first time.
    #[serde(default)]
    pub previous: Option<MembershipSnapshot>,
    /// Source time of the last applied change: an older change never wins.
    pub source_ts: Millis,
    pub intake_ts: Millis,
    /// Source time the person last entered (drives age tiers).
    #[serde(default)]
    pub entered_at: Option<Millis>,
    pub change_id: String,
    pub origin: ChangeOrigin,
}

/// What to do for one person in one destination audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Put the person into the audience (with attributes).
    Add,
    /// Take the person out of the audience.
    Remove,
    /// Attributes changed; membership did not.
    Update,
    /// Forward an event (events / conversions mode).
    Event,
}

/// One unit of delivery work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryOp {
    pub op: OpKind,
    pub person_key: PersonKey,
    pub ids: Identifiers,
    /// The destination audience, resolved at enqueue time from the export's
    /// destination binding (audience id, property name, table label).
    pub audience: String,
    /// The tier this audience stands for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventPayload>,
    pub source_ts: Millis,
    pub intake_ts: Millis,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventPayload {
    /// The source event's id: Meta deduplicates on it, Google on order_id.
    pub event_id: String,
    /// The source event's name (`order_placed`, or `email.opened` for a
    /// reporting-webhook metric).
    pub name: String,
    /// Properties after the taxonomy's allow-list and transforms.
    #[serde(default)]
    pub data: serde_json::Map<String, Value>,
    /// Conversion value, currency (ISO 4217, upper case) and order id, read
    /// from the properties the taxonomy names (`events.<name>.value` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// A batch of ops for one export and one destination: one queue message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// Deterministic: the same change re-derived gives the same id, so a
    /// re-enqueued job is recognised at delivery.
    pub job_id: String,
    pub export: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub created_at: Millis,
    pub config_hash: String,
    /// 0 for a first job; a follow-up job holding only the ops a
    /// destination asked us to retry counts up from there.
    #[serde(default)]
    pub attempt: u32,
    pub ops: Vec<DeliveryOp>,
    /// A full replace (a rollback's, at destinations that have one): the
    /// destination's audiences of the export are replaced by the export's
    /// members in state, read at delivery. `ops` is empty then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// With `replace`: the run whose staged members replace the audiences,
    /// instead of state (a one-destination rollback, which leaves state as
    /// it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_from: Option<String>,
    /// A repair (see `pipeline::deliver::repair`): re-asserts what state
    /// holds after an op of another job may have landed after a newer
    /// change's. Counted `repairs`, never in the delivered-members counters
    /// (the ops it repairs were counted already).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
}

impl DeliveryJob {
    /// A job id from the fields that make the work unique.
    pub fn derive_id(
        export: &str,
        destination: &str,
        origin_id: &str,
        ops: &[DeliveryOp],
    ) -> String {
        let mut h = Sha256::new();
        for part in [export, destination, origin_id] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        // When intake received the change is not part of the work: a source
        // that sends the same change again (Customer.io retrying a webhook
        // whose answer it lost) must make the same job, which delivery then
        // knows as done instead of sending it twice.
        for op in ops {
            let received_whenever = DeliveryOp {
                intake_ts: 0,
                ..op.clone()
            };
            h.update(serde_json::to_vec(&received_whenever).unwrap_or_default());
            h.update([0]);
        }
        format!("job_{}", hex::encode(&h.finalize()[..12]))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Batch,
    Reconcile,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RunStatus {
    /// Reading the source (phase 1) or committing the diff (phase 2).
    Running,
    /// A guard rail stopped the write; nothing was sent.
    Held {
        reason: String,
    },
    /// An operator approved a held run; it commits on the next invocation.
    Approved,
    Finished,
    Failed {
        reason: String,
    },
}

/// Every run is a record: what it read, changed and sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub export: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub config_hash: String,
    pub started_at: Millis,
    #[serde(default)]
    pub finished_at: Option<Millis>,
    /// Checkpoint: where a continued invocation picks up.
    #[serde(default)]
    pub checkpoint: RunCheckpoint,
    #[serde(default)]
    pub stats: RunStats,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCheckpoint {
    /// Phase 1: the source's paging token of the next page to read.
    #[serde(default)]
    pub source_cursor: Option<String>,
    /// Phase 1 done: every source page staged.
    #[serde(default)]
    pub source_done: bool,
    /// Phase 2: number of diff chunks already committed and enqueued.
    #[serde(default)]
    pub chunks_committed: u64,
    /// Phase 2: the last person key committed (changes go in key order, so
    /// a resumed run skips exactly what is done, whatever else moved).
    #[serde(default)]
    pub committed_through: Option<String>,
    /// Phase 2: the export's test profiles (canaries) are committed and
    /// enqueued, ahead of everyone else.
    #[serde(default)]
    pub canaries_committed: bool,
    /// A rollback run: the run whose members it restores (`""`: none, it
    /// empties what we added). Its staged members are that run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<String>,
    /// A rollback of one destination only: it alone is restored; state
    /// and the export's other destinations stay as they are, and the
    /// export's next batch run replaces its audiences from state again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_destination: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    pub pages: u64,
    pub members: u64,
    pub adds: u64,
    pub removes: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub tier_moves: u64,
    pub unmatched: u64,
    /// Members kept out because a suppression export holds them, or an
    /// exit event removed them after the source was read.
    #[serde(default)]
    pub suppressed: u64,
    pub jobs_enqueued: u64,
    pub ops_enqueued: u64,
}

/// Counter names. Counters live per scope (`Counters::scope`).
pub mod counter {
    pub const OPS_ENQUEUED: &str = "ops_enqueued";
    pub const SENT: &str = "sent";
    pub const ACCEPTED: &str = "accepted";
    /// Fields a destination refused on ops it accepted without them
    /// (`OpOutcome::AcceptedWithout`: CleverTap's invalid email or phone).
    pub const FIELDS_REFUSED: &str = "fields_refused";
    pub const REJECTED: &str = "rejected";
    pub const UNMATCHED: &str = "unmatched";
    /// Ops our own checks kept from being sent (see `OpOutcome::Invalid`).
    pub const INVALID: &str = "invalid";
    pub const SUPERSEDED: &str = "superseded";
    /// Ops of repair jobs settled (each also counted as accepted, rejected,
    /// … like any op): how often a late-landing op had to be undone.
    pub const REPAIRS: &str = "repairs";
    pub const ADDS_ACCEPTED: &str = "adds_accepted";
    pub const REMOVES_ACCEPTED: &str = "removes_accepted";
    pub const JOBS_DEAD: &str = "jobs_dead";
    pub const JOBS_DUPLICATE: &str = "jobs_duplicate";
    pub const WEBHOOKS_ACCEPTED: &str = "webhooks_accepted";
    pub const WEBHOOKS_DUPLICATE: &str = "webhooks_duplicate";
    pub const WEBHOOKS_QUARANTINED: &str = "webhooks_quarantined";
    /// Reporting webhooks correctly signed but outside the replay window
    /// (applied, or quarantined past the dedup memory; never refused).
    pub const WEBHOOKS_SIGNED_STALE: &str = "webhooks_signed_stale";
    pub const CHANGES_STALE: &str = "changes_stale";

    /// Latency histogram bucket upper bounds (ms), source event to
    /// destination acknowledgement. Stored as `latency_le_<bound>` counters.
    pub const LATENCY_BUCKETS_MS: &[i64] = &[
        250,
        500,
        1_000,
        2_000,
        5_000,
        10_000,
        30_000,
        60_000,
        300_000,
        900_000,
        3_600_000,
        14_400_000,
        86_400_000,
        i64::MAX,
    ];

    pub fn latency_bucket(ms: i64) -> String {
        let bound = LATENCY_BUCKETS_MS
            .iter()
            .copied()
            .find(|b| ms <= *b)
            .unwrap_or(i64::MAX);
        if bound == i64::MAX {
            "latency_le_inf".to_string()
        } else {
            format!("latency_le_{bound}")
        }
    }
}

/// Counter scopes, so AWS and embedded stores key them alike.
pub struct CounterScope;

impl CounterScope {
    /// Delivery counters of one export at one destination.
    pub fn delivery(export: &str, destination: &str) -> String {
        format!("delivery#{export}#{destination}")
    }
    /// Intake counters (webhooks accepted, duplicates, quarantined).
    pub fn intake() -> String {
        "intake".to_string()
    }
}

/// One line of the daily reconciliation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconcileRow {
    pub export: String,
    pub destination: String,
    /// Customer.io's own count (None when the source has no count: action or event exports).
    pub source_count: Option<u64>,
    pub state_count: u64,
    /// Members we believe the destination holds: adds accepted - removes accepted.
    pub delivered_members: i64,
    /// The destination's own count where its API gives one.
    pub destination_count: Option<u64>,
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub unmatched: u64,
    /// Ops our own checks kept from being sent (an event the taxonomy or
    /// the platform's rules refuse, a conversion without a value).
    #[serde(default)]
    pub invalid: u64,
    /// Repair ops settled: ops re-asserting state after an op a newer
    /// change overtook may have landed last (see `counter::REPAIRS`).
    #[serde(default)]
    pub repairs: u64,
    /// An events or conversions export: its row counts events, not members.
    #[serde(default)]
    pub events: bool,
    /// The platform's own match rate: matched / received of its finished
    /// uploads (Meta sessions) or, failing that, its count / delivered
    /// members. `None` when the platform gives neither (CleverTap). Where it
    /// comes from is `check.match_source`.
    pub match_rate: Option<f64>,
    /// state_count - source_count.
    pub drift_source_state: Option<i64>,
    /// delivered_members - state_count.
    pub drift_state_delivered: i64,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    /// Where the output went (a path, an audience id).
    pub output: String,
    /// Over the drift threshold.
    pub alarm: bool,
    /// The destination's count against what we delivered, and why the row
    /// alarms.
    #[serde(default)]
    pub check: DestinationCheck,
}

/// How the destination's own count compares with what we delivered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DestinationCheck {
    /// Our acceptance rate: accepted / (sent + unmatched).
    #[serde(default)]
    pub acceptance_rate: Option<f64>,
    /// `"platform sessions"` (matched / received) or `"size / delivered"`.
    #[serde(default)]
    pub match_source: Option<String>,
    /// The platform's received and matched rows of finished uploads.
    #[serde(default)]
    pub platform_received: Option<u64>,
    #[serde(default)]
    pub platform_matched: Option<u64>,
    /// Rows the platform is still processing (not in its count yet).
    #[serde(default)]
    pub pending_rows: u64,
    /// What the destination should hold: delivered × the platform's match rate.
    #[serde(default)]
    pub expected_count: Option<u64>,
    /// destination_count − expected_count.
    #[serde(default)]
    pub drift: Option<i64>,
    /// The drift allowed before alarming (platform lag, match-rate noise,
    /// the relative threshold).
    #[serde(default)]
    pub tolerance: Option<u64>,
    /// Why the row alarms, one line per reason.
    #[serde(default)]
    pub alarm_reasons: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub report_id: String,
    pub generated_at: Millis,
    pub config_hash: String,
    pub rows: Vec<ReconcileRow>,
}

/// A webhook we verified but could not use: kept byte for byte with the
/// reason, answered 2xx, replayable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: String,
    pub received_at: Millis,
    pub route: String,
    pub reason: String,
    /// The raw body, base64 (bodies need not be UTF-8).
    pub body_b64: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub replayed_at: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_key_prefers_id_then_cio_id_then_hashed_email() {
        let mut ids = Identifiers {
            id: Some("u1".into()),
            email: Some("A@x.com".into()),
            cio_id: Some("c1".into()),
            phone: None,
        };
        assert_eq!(ids.person_key().unwrap().as_str(), "id:u1");
        ids.id = Some("  ".into());
        assert_eq!(ids.person_key().unwrap().as_str(), "cio:c1");
        ids.cio_id = None;
        let k = ids.person_key().unwrap();
        assert!(k.as_str().starts_with("email:"));
        assert!(!k.as_str().contains('@'));
        ids.email = None;
        assert!(ids.person_key().is_none());
    }

    #[test]
    fn job_id_is_deterministic_and_content_sensitive() {
        let op = DeliveryOp {
            op: OpKind::Add,
            person_key: PersonKey("id:1".into()),
            ids: Identifiers::default(),
            audience: "a".into(),
            tier: None,
            attributes: Attributes::new(),
            event: None,
            source_ts: 1,
            intake_ts: 2,
        };
        let a = DeliveryJob::derive_id("e", "d", "evt1", std::slice::from_ref(&op));
        let b = DeliveryJob::derive_id("e", "d", "evt1", std::slice::from_ref(&op));
        let c = DeliveryJob::derive_id("e", "d", "evt2", std::slice::from_ref(&op));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let later = DeliveryOp {
            source_ts: 5,
            ..op.clone()
        };
        assert_ne!(a, DeliveryJob::derive_id("e", "d", "evt1", &[later]));
    }

    #[test]
    fn the_same_change_received_again_later_makes_the_same_job() {
        let op = |intake_ts| DeliveryOp {
            op: OpKind::Event,
            person_key: PersonKey("id:1".into()),
            ids: Identifiers::default(),
            audience: "Placed Order".into(),
            tier: None,
            attributes: Attributes::new(),
            event: None,
            source_ts: 1,
            intake_ts,
        };
        assert_eq!(
            DeliveryJob::derive_id("orders", "ct", "event:ord_1", &[op(2)]),
            DeliveryJob::derive_id("orders", "ct", "event:ord_1", &[op(9_000)])
        );
    }

    #[test]
    fn latency_buckets_cover_everything() {
        assert_eq!(counter::latency_bucket(10), "latency_le_250");
        assert_eq!(counter::latency_bucket(1_500), "latency_le_2000");
        assert_eq!(counter::latency_bucket(i64::MAX), "latency_le_inf");
    }
}
