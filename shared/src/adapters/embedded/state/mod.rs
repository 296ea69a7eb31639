//! The state store on one machine: a redb file (see the parent module for
//! what a commit survives). Calls run on tokio's blocking pool: redb blocks
//! on file IO, and that must not stall the async workers serving webhooks.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{classify_db_error, DbFailure};
use crate::domain::model::{
    MembershipRecord, Millis, Person, PersonKey, QuarantineEntry, ReconcileReport, RunRecord,
};
use crate::ports::{
    DestinationRecord, IdempotencyStart, JobSettlement, MembershipWrite, Page, RecordWrite,
    StateError, StateStore,
};

mod store;
use store::*;

/// (export, person key) -> MembershipRecord (JSON).
const MEMBERSHIP: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("membership");
/// export -> records whose `member` flag is set (kept in step with MEMBERSHIP).
const MEMBER_COUNT: TableDefinition<&str, u64> = TableDefinition::new("member_count");
/// (run id, person key) -> Person (JSON).
const STAGED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("staged");
/// run id -> RunRecord (JSON).
const RUN: TableDefinition<&str, &[u8]> = TableDefinition::new("run");
/// (export, started_at, run id): the newest-first index of runs.
const RUN_BY_EXPORT: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("run_by_export");
/// key -> IdempotencyRecord (JSON).
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
/// (scope, counter name) -> value.
const COUNTER: TableDefinition<(&str, &str), i64> = TableDefinition::new("counter");
/// report id -> ReconcileReport (JSON).
const REPORT: TableDefinition<&str, &[u8]> = TableDefinition::new("report");
/// (generated_at, report id): finds the latest report.
const REPORT_BY_TIME: TableDefinition<(i64, &str), ()> = TableDefinition::new("report_by_time");
/// id -> QuarantineEntry (JSON).
const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");
/// (received_at, id): the newest-first index of quarantined webhooks.
const QUARANTINE_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("quarantine_by_time");
/// (destination, key) -> StoredRecord (JSON): destination records.
const DEST_RECORD: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dest_record");

/// A destination record as stored: its version and value.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRecord {
    version: u64,
    value: serde_json::Value,
}

/// Powertools' idempotency record: status, expiration, in-progress expiration.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyRecord {
    status: IdempotencyStatus,
    expiration: Millis,
    in_progress_expiration: Millis,
    /// Ops of a delivery job finished by earlier attempts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    finished_ops: Vec<u32>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum IdempotencyStatus {
    InProgress,
    Completed,
}

/// The embedded state store. Cheap to clone; clones share the open file.
#[derive(Clone)]
pub struct EmbeddedStateStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedStateStore")
    }
}

mod jobs;

#[async_trait]
impl StateStore for EmbeddedStateStore {
    async fn get_membership(
        &self,
        export: &str,
        person: &PersonKey,
    ) -> Result<Option<MembershipRecord>, StateError> {
        let (export, person) = (export.to_string(), person.0.clone());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("get membership", e))?;
            let t = txn
                .open_table(MEMBERSHIP)
                .map_err(|e| db_err("get membership", e))?;
            let got = t
                .get((export.as_str(), person.as_str()))
                .map_err(|e| db_err("get membership", e))?;
            got.map(|v| decode("membership", v.value())).transpose()
        })
        .await
    }

    async fn put_membership(
        &self,
        record: &MembershipRecord,
    ) -> Result<MembershipWrite, StateError> {
        let record = record.clone();
        self.blocking(move |db| {
            let bytes = encode("membership", &record)?;
            let txn = db.begin_write().map_err(|e| db_err("put membership", e))?;
            let outcome = {
                let mut t = txn
                    .open_table(MEMBERSHIP)
                    .map_err(|e| db_err("put membership", e))?;
                let key = (record.export.as_str(), record.person_key.as_str());
                let stored: Option<MembershipRecord> = t
                    .get(key)
                    .map_err(|e| db_err("put membership", e))?
                    .map(|v| decode("membership", v.value()))
                    .transpose()?;
                let wins = match &stored {
                    None => true,
                    Some(cur) => {
                        cur.source_ts < record.source_ts
                            || (cur.source_ts == record.source_ts
                                && cur.change_id == record.change_id)
                    }
                };
                match stored {
                    Some(cur) if !wins => MembershipWrite::Stale {
                        current: Box::new(cur),
                    },
                    stored => {
                        t.insert(key, bytes.as_slice())
                            .map_err(|e| db_err("put membership", e))?;
                        let was = stored.is_some_and(|s| s.current.member);
                        let is = record.current.member;
                        if was != is {
                            let mut counts = txn
                                .open_table(MEMBER_COUNT)
                                .map_err(|e| db_err("put membership", e))?;
                            let n = counts
                                .get(record.export.as_str())
                                .map_err(|e| db_err("put membership", e))?
                                .map(|v| v.value())
                                .unwrap_or(0);
                            let n = if is { n + 1 } else { n.saturating_sub(1) };
                            counts
                                .insert(record.export.as_str(), n)
                                .map_err(|e| db_err("put membership", e))?;
                        }
                        MembershipWrite::Applied
                    }
                }
            };
            if matches!(outcome, MembershipWrite::Applied) {
                commit(txn, "put membership")?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn list_memberships(
        &self,
        export: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<MembershipRecord>, StateError> {
        let export = export.to_string();
        self.blocking(move |db| {
            page_of(db, MEMBERSHIP, &export, cursor.as_deref(), limit, |_, v| {
                decode("membership", v)
            })
        })
        .await
    }

    async fn count_members(&self, export: &str) -> Result<u64, StateError> {
        let export = export.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("count members", e))?;
            let t = txn
                .open_table(MEMBER_COUNT)
                .map_err(|e| db_err("count members", e))?;
            let n = t
                .get(export.as_str())
                .map_err(|e| db_err("count members", e))?
                .map(|v| v.value())
                .unwrap_or(0);
            Ok(n)
        })
        .await
    }

    async fn stage_people(
        &self,
        run_id: &str,
        people: &[(PersonKey, Person)],
    ) -> Result<(), StateError> {
        let run_id = run_id.to_string();
        let people = people.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("stage people", e))?;
            {
                let mut t = txn
                    .open_table(STAGED)
                    .map_err(|e| db_err("stage people", e))?;
                for (key, person) in &people {
                    let bytes = encode("staged person", person)?;
                    t.insert((run_id.as_str(), key.as_str()), bytes.as_slice())
                        .map_err(|e| db_err("stage people", e))?;
                }
            }
            commit(txn, "stage people")
        })
        .await
    }

    async fn list_staged(
        &self,
        run_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<(PersonKey, Person)>, StateError> {
        let run_id = run_id.to_string();
        self.blocking(move |db| {
            page_of(db, STAGED, &run_id, cursor.as_deref(), limit, |k, v| {
                Ok((PersonKey(k.to_string()), decode("staged person", v)?))
            })
        })
        .await
    }

    async fn clear_staged(&self, run_id: &str) -> Result<(), StateError> {
        let run_id = run_id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(|e| db_err("clear staged", e))?;
            {
                let mut t = txn
                    .open_table(STAGED)
                    .map_err(|e| db_err("clear staged", e))?;
                let lower = Bound::Included((run_id.as_str(), ""));
                t.retain_in::<(&str, &str), _>((lower, Bound::Unbounded), |(r, _), _| r != run_id)
                    .map_err(|e| db_err("clear staged", e))?;
            }
            commit(txn, "clear staged")
        })
        .await
    }

    async fn put_run(&self, run: &RunRecord) -> Result<(), StateError> {
        let run = run.clone();
        self.blocking(move |db| {
            let bytes = encode("run", &run)?;
            let txn = db.begin_write().map_err(|e| db_err("put run", e))?;
            {
                let mut runs = txn.open_table(RUN).map_err(|e| db_err("put run", e))?;
                let mut index = txn
                    .open_table(RUN_BY_EXPORT)
                    .map_err(|e| db_err("put run", e))?;
                let old: Option<RunRecord> = runs
                    .get(run.run_id.as_str())
                    .map_err(|e| db_err("put run", e))?
                    .map(|v| decode("run", v.value()))
                    .transpose()?;
                if let Some(old) = old {
                    index
                        .remove((old.export.as_str(), old.started_at, old.run_id.as_str()))
                        .map_err(|e| db_err("put run", e))?;
                }
                runs.insert(run.run_id.as_str(), bytes.as_slice())
                    .map_err(|e| db_err("put run", e))?;
                index
                    .insert(
                        (run.export.as_str(), run.started_at, run.run_id.as_str()),
                        (),
                    )
                    .map_err(|e| db_err("put run", e))?;
            }
            commit(txn, "put run")
        })
        .await
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StateError> {
        let run_id = run_id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("get run", e))?;
            let t = txn.open_table(RUN).map_err(|e| db_err("get run", e))?;
            let got = t.get(run_id.as_str()).map_err(|e| db_err("get run", e))?;
            got.map(|v| decode("run", v.value())).transpose()
        })
        .await
    }

    async fn list_runs(&self, export: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let export = export.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("list runs", e))?;
            let index = txn
                .open_table(RUN_BY_EXPORT)
                .map_err(|e| db_err("list runs", e))?;
            let runs = txn.open_table(RUN).map_err(|e| db_err("list runs", e))?;
            let lower = Bound::Included((export.as_str(), i64::MIN, ""));
            let range = index
                .range::<(&str, i64, &str)>((lower, Bound::Unbounded))
                .map_err(|e| db_err("list runs", e))?;
            let mut ids = Vec::new();
            for entry in range {
                let (k, _) = entry.map_err(|e| db_err("list runs", e))?;
                let (e, _, id) = k.value();
                if e != export {
                    break;
                }
                ids.push(id.to_string());
            }
            let mut out = Vec::new();
            for id in ids.iter().rev().take(limit) {
                if let Some(v) = runs.get(id.as_str()).map_err(|e| db_err("list runs", e))? {
                    out.push(decode("run", v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn idempotency_start(
        &self,
        key: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<IdempotencyStart, StateError> {
        self.claim_job(key, now, in_progress_until, expires_at)
            .await
            .map(|(verdict, _)| verdict)
    }

    async fn claim_job(
        &self,
        key: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<(IdempotencyStart, Vec<u32>), StateError> {
        self.claim_keeping_progress(key, now, in_progress_until, expires_at)
            .await
    }

    async fn idempotency_complete(&self, key: &str, expires_at: Millis) -> Result<(), StateError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let record = IdempotencyRecord {
                status: IdempotencyStatus::Completed,
                expiration: expires_at,
                in_progress_expiration: expires_at,
                finished_ops: Vec::new(),
            };
            let bytes = encode("idempotency record", &record)?;
            let txn = db
                .begin_write()
                .map_err(|e| db_err("idempotency complete", e))?;
            {
                let mut t = txn
                    .open_table(IDEMPOTENCY)
                    .map_err(|e| db_err("idempotency complete", e))?;
                t.insert(key.as_str(), bytes.as_slice())
                    .map_err(|e| db_err("idempotency complete", e))?;
            }
            commit(txn, "idempotency complete")
        })
        .await
    }

    async fn idempotency_release(&self, key: &str) -> Result<(), StateError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db
                .begin_write()
                .map_err(|e| db_err("idempotency release", e))?;
            {
                let mut t = txn
                    .open_table(IDEMPOTENCY)
                    .map_err(|e| db_err("idempotency release", e))?;
                // Ops finished by earlier attempts stay remembered.
                let stored: Option<IdempotencyRecord> = t
                    .get(key.as_str())
                    .map_err(|e| db_err("idempotency release", e))?
                    .map(|v| decode("idempotency record", v.value()))
                    .transpose()?;
                match stored {
                    // Completed meanwhile (a retried completion): stays so.
                    Some(r) if r.status == IdempotencyStatus::Completed => {}
                    Some(r) if !r.finished_ops.is_empty() => {
                        let record = IdempotencyRecord {
                            status: IdempotencyStatus::InProgress,
                            in_progress_expiration: Millis::MIN,
                            ..r
                        };
                        let bytes = encode("idempotency record", &record)?;
                        t.insert(key.as_str(), bytes.as_slice())
                            .map_err(|e| db_err("idempotency release", e))?;
                    }
                    _ => {
                        t.remove(key.as_str())
                            .map_err(|e| db_err("idempotency release", e))?;
                    }
                }
            }
            commit(txn, "idempotency release")
        })
        .await
    }

    async fn settle_jobs(
        &self,
        jobs: &[JobSettlement],
        counters: &[(String, Vec<(String, i64)>)],
    ) -> Result<Vec<String>, StateError> {
        self.settle_in_one_transaction(jobs, counters).await
    }

    async fn get_memberships(
        &self,
        export: &str,
        people: &[PersonKey],
    ) -> Result<Vec<Option<MembershipRecord>>, StateError> {
        self.read_memberships(export, people).await
    }

    async fn add_counters(&self, scope: &str, deltas: &[(&str, i64)]) -> Result<(), StateError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let scope = scope.to_string();
        let deltas: Vec<(String, i64)> = deltas.iter().map(|(n, d)| (n.to_string(), *d)).collect();
        self.blocking(move |db| {
            // One write transaction at a time: the read-add-write is atomic.
            let txn = db.begin_write().map_err(|e| db_err("add counters", e))?;
            {
                let mut t = txn
                    .open_table(COUNTER)
                    .map_err(|e| db_err("add counters", e))?;
                for (name, delta) in &deltas {
                    let key = (scope.as_str(), name.as_str());
                    let cur = t
                        .get(key)
                        .map_err(|e| db_err("add counters", e))?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    t.insert(key, cur.saturating_add(*delta))
                        .map_err(|e| db_err("add counters", e))?;
                }
            }
            commit(txn, "add counters")
        })
        .await
    }

    async fn get_counters(&self, scope: &str) -> Result<BTreeMap<String, i64>, StateError> {
        let scope = scope.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("get counters", e))?;
            let t = txn
                .open_table(COUNTER)
                .map_err(|e| db_err("get counters", e))?;
            let lower = Bound::Included((scope.as_str(), ""));
            let range = t
                .range::<(&str, &str)>((lower, Bound::Unbounded))
                .map_err(|e| db_err("get counters", e))?;
            let mut out = BTreeMap::new();
            for entry in range {
                let (k, v) = entry.map_err(|e| db_err("get counters", e))?;
                let (s, name) = k.value();
                if s != scope {
                    break;
                }
                out.insert(name.to_string(), v.value());
            }
            Ok(out)
        })
        .await
    }

    async fn put_report(&self, report: &ReconcileReport) -> Result<(), StateError> {
        let report = report.clone();
        self.blocking(move |db| {
            let bytes = encode("report", &report)?;
            let txn = db.begin_write().map_err(|e| db_err("put report", e))?;
            {
                let mut reports = txn
                    .open_table(REPORT)
                    .map_err(|e| db_err("put report", e))?;
                let mut index = txn
                    .open_table(REPORT_BY_TIME)
                    .map_err(|e| db_err("put report", e))?;
                let old: Option<ReconcileReport> = reports
                    .get(report.report_id.as_str())
                    .map_err(|e| db_err("put report", e))?
                    .map(|v| decode("report", v.value()))
                    .transpose()?;
                if let Some(old) = old {
                    index
                        .remove((old.generated_at, old.report_id.as_str()))
                        .map_err(|e| db_err("put report", e))?;
                }
                reports
                    .insert(report.report_id.as_str(), bytes.as_slice())
                    .map_err(|e| db_err("put report", e))?;
                index
                    .insert((report.generated_at, report.report_id.as_str()), ())
                    .map_err(|e| db_err("put report", e))?;
            }
            commit(txn, "put report")
        })
        .await
    }

    async fn latest_report(&self) -> Result<Option<ReconcileReport>, StateError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("latest report", e))?;
            let index = txn
                .open_table(REPORT_BY_TIME)
                .map_err(|e| db_err("latest report", e))?;
            let reports = txn
                .open_table(REPORT)
                .map_err(|e| db_err("latest report", e))?;
            let Some((k, _)) = index.last().map_err(|e| db_err("latest report", e))? else {
                return Ok(None);
            };
            let (_, id) = k.value();
            let got = reports.get(id).map_err(|e| db_err("latest report", e))?;
            got.map(|v| decode("report", v.value())).transpose()
        })
        .await
    }

    async fn list_reports(&self, limit: usize) -> Result<Vec<ReconcileReport>, StateError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("list reports", e))?;
            let index = txn
                .open_table(REPORT_BY_TIME)
                .map_err(|e| db_err("list reports", e))?;
            let reports = txn
                .open_table(REPORT)
                .map_err(|e| db_err("list reports", e))?;
            let mut out = Vec::new();
            for entry in index.iter().map_err(|e| db_err("list reports", e))?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (k, _) = entry.map_err(|e| db_err("list reports", e))?;
                let (_, id) = k.value();
                if let Some(v) = reports.get(id).map_err(|e| db_err("list reports", e))? {
                    out.push(decode("report", v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put_quarantine(&self, entry: &QuarantineEntry) -> Result<(), StateError> {
        let entry = entry.clone();
        self.blocking(move |db| {
            let bytes = encode("quarantine entry", &entry)?;
            let txn = db.begin_write().map_err(|e| db_err("put quarantine", e))?;
            {
                let mut entries = txn
                    .open_table(QUARANTINE)
                    .map_err(|e| db_err("put quarantine", e))?;
                let mut index = txn
                    .open_table(QUARANTINE_BY_TIME)
                    .map_err(|e| db_err("put quarantine", e))?;
                let old: Option<QuarantineEntry> = entries
                    .get(entry.id.as_str())
                    .map_err(|e| db_err("put quarantine", e))?
                    .map(|v| decode("quarantine entry", v.value()))
                    .transpose()?;
                if let Some(old) = old {
                    index
                        .remove((old.received_at, old.id.as_str()))
                        .map_err(|e| db_err("put quarantine", e))?;
                }
                entries
                    .insert(entry.id.as_str(), bytes.as_slice())
                    .map_err(|e| db_err("put quarantine", e))?;
                index
                    .insert((entry.received_at, entry.id.as_str()), ())
                    .map_err(|e| db_err("put quarantine", e))?;
            }
            commit(txn, "put quarantine")
        })
        .await
    }

    async fn get_quarantine(&self, id: &str) -> Result<Option<QuarantineEntry>, StateError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("get quarantine", e))?;
            let t = txn
                .open_table(QUARANTINE)
                .map_err(|e| db_err("get quarantine", e))?;
            let got = t
                .get(id.as_str())
                .map_err(|e| db_err("get quarantine", e))?;
            got.map(|v| decode("quarantine entry", v.value()))
                .transpose()
        })
        .await
    }

    async fn list_quarantine(&self, limit: usize) -> Result<Vec<QuarantineEntry>, StateError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(|e| db_err("list quarantine", e))?;
            let index = txn
                .open_table(QUARANTINE_BY_TIME)
                .map_err(|e| db_err("list quarantine", e))?;
            let entries = txn
                .open_table(QUARANTINE)
                .map_err(|e| db_err("list quarantine", e))?;
            let mut out = Vec::new();
            for entry in index
                .iter()
                .map_err(|e| db_err("list quarantine", e))?
                .rev()
            {
                if out.len() >= limit {
                    break;
                }
                let (k, _) = entry.map_err(|e| db_err("list quarantine", e))?;
                let (_, id) = k.value();
                if let Some(v) = entries.get(id).map_err(|e| db_err("list quarantine", e))? {
                    out.push(decode("quarantine entry", v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get_destination_record(
        &self,
        destination: &str,
        key: &str,
    ) -> Result<Option<DestinationRecord>, StateError> {
        let (destination, key) = (destination.to_string(), key.to_string());
        self.blocking(move |db| {
            let what = "get destination record";
            let txn = db.begin_read().map_err(|e| db_err(what, e))?;
            let t = txn.open_table(DEST_RECORD).map_err(|e| db_err(what, e))?;
            let got = t
                .get((destination.as_str(), key.as_str()))
                .map_err(|e| db_err(what, e))?;
            match got {
                None => Ok(None),
                Some(v) => {
                    let stored: StoredRecord = decode("destination record", v.value())?;
                    Ok(Some(DestinationRecord {
                        destination: destination.clone(),
                        key: key.clone(),
                        version: stored.version,
                        value: stored.value,
                    }))
                }
            }
        })
        .await
    }

    async fn put_destination_record(
        &self,
        destination: &str,
        key: &str,
        value: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<RecordWrite, StateError> {
        let (destination, key, value) = (destination.to_string(), key.to_string(), value.clone());
        self.blocking(move |db| {
            let what = "put destination record";
            let txn = db.begin_write().map_err(|e| db_err(what, e))?;
            let verdict = {
                let mut t = txn.open_table(DEST_RECORD).map_err(|e| db_err(what, e))?;
                let stored: Option<StoredRecord> = t
                    .get((destination.as_str(), key.as_str()))
                    .map_err(|e| db_err(what, e))?
                    .map(|v| decode("destination record", v.value()))
                    .transpose()?;
                if stored.map(|r| r.version) != expected {
                    RecordWrite::Conflict
                } else {
                    let version = expected.unwrap_or(0) + 1;
                    let bytes = encode("destination record", &StoredRecord { version, value })?;
                    t.insert((destination.as_str(), key.as_str()), bytes.as_slice())
                        .map_err(|e| db_err(what, e))?;
                    RecordWrite::Applied { version }
                }
            };
            if matches!(verdict, RecordWrite::Applied { .. }) {
                commit(txn, what)?;
            }
            Ok(verdict)
        })
        .await
    }

    async fn list_destination_records(
        &self,
        destination: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<DestinationRecord>, StateError> {
        let (destination, prefix) = (destination.to_string(), prefix.to_string());
        self.blocking(move |db| {
            let what = "list destination records";
            let txn = db.begin_read().map_err(|e| db_err(what, e))?;
            let t = txn.open_table(DEST_RECORD).map_err(|e| db_err(what, e))?;
            let mut out = Vec::new();
            let range = t
                .range((destination.as_str(), prefix.as_str())..)
                .map_err(|e| db_err(what, e))?;
            for entry in range {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = entry.map_err(|e| db_err(what, e))?;
                let (d, key) = k.value();
                if d != destination || !key.starts_with(prefix.as_str()) {
                    break;
                }
                let stored: StoredRecord = decode("destination record", v.value())?;
                out.push(DestinationRecord {
                    destination: d.to_string(),
                    key: key.to_string(),
                    version: stored.version,
                    value: stored.value,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn delete_destination_record(
        &self,
        destination: &str,
        key: &str,
        expected: u64,
    ) -> Result<bool, StateError> {
        let (destination, key) = (destination.to_string(), key.to_string());
        self.blocking(move |db| {
            let what = "delete destination record";
            let txn = db.begin_write().map_err(|e| db_err(what, e))?;
            let deleted = {
                let mut t = txn.open_table(DEST_RECORD).map_err(|e| db_err(what, e))?;
                let stored: Option<StoredRecord> = t
                    .get((destination.as_str(), key.as_str()))
                    .map_err(|e| db_err(what, e))?
                    .map(|v| decode("destination record", v.value()))
                    .transpose()?;
                if stored.is_some_and(|r| r.version == expected) {
                    t.remove((destination.as_str(), key.as_str()))
                        .map_err(|e| db_err(what, e))?;
                    true
                } else {
                    false
                }
            };
            if deleted {
                commit(txn, what)?;
            }
            Ok(deleted)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
