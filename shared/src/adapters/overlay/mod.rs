//! Overlay adapters: run the real pipeline without touching real state.
//!
//! * [`OverlayStateStore`] reads through to a base store and keeps every
//!   write in memory; reads see the overlay first. Nothing is ever written
//!   to the base. With no base it is a plain in-memory store.
//! * [`RecordingQueue`] keeps the jobs sent to it in memory (an in-memory
//!   queue: receive / ack / retry work on them) and never forwards them.
//!
//! `dataout export --dry-run` runs the real batch export on these, so the
//! plan it prints is exactly what a real run would carry out; `dataout
//! preview` gives destinations an in-memory store to keep their records in.
//!
//! One limit: the base's idempotency records cannot be read without
//! claiming them (the port has no read-only call), so the overlay sees only
//! the claims made through itself.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::model::{
    DeliveryJob, MembershipRecord, Millis, Person, PersonKey, QuarantineEntry, ReconcileReport,
    RunRecord,
};
use crate::ports::{
    DestinationRecord, IdempotencyStart, JobQueue, JobSettlement, MembershipWrite, Page,
    QueueDepth, QueueError, ReceivedJob, RecordWrite, StateError, StateStore,
};

mod queue;
pub use queue::RecordingQueue;

/// Page size used to read the base in full.
const BASE_PAGE: usize = 1000;

#[derive(Clone, Copy, Debug)]
struct Claim {
    completed: bool,
    expires_at: Millis,
    in_progress_until: Millis,
}

#[derive(Default)]
struct Overlay {
    /// Membership records written through the overlay, per export.
    members: HashMap<String, BTreeMap<PersonKey, MembershipRecord>>,
    /// The base's records of an export, read once (the base never changes
    /// under the overlay: nothing writes to it through here).
    base_members: HashMap<String, Arc<BTreeMap<PersonKey, MembershipRecord>>>,
    /// Change in member count per export against the base's count.
    member_delta: HashMap<String, i64>,
    staged: HashMap<String, BTreeMap<PersonKey, Person>>,
    base_staged: HashMap<String, Arc<BTreeMap<PersonKey, Person>>>,
    staged_cleared: HashSet<String>,
    runs: BTreeMap<String, RunRecord>,
    /// `None`: released.
    claims: HashMap<String, Option<Claim>>,
    /// Ops of claimed jobs finished by earlier attempts.
    progress: HashMap<String, Vec<u32>>,
    counters: HashMap<String, BTreeMap<String, i64>>,
    reports: Vec<ReconcileReport>,
    quarantine: BTreeMap<String, QuarantineEntry>,
    /// `None`: deleted through the overlay.
    records: BTreeMap<(String, String), Option<DestinationRecord>>,
}

/// A state store that keeps every write in memory over a read-only base.
pub struct OverlayStateStore {
    base: Option<Arc<dyn StateStore>>,
    inner: Mutex<Overlay>,
}

impl std::fmt::Debug for OverlayStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayStateStore")
            .field("has_base", &self.base.is_some())
            .finish_non_exhaustive()
    }
}

impl OverlayStateStore {
    /// Read through to `base`; write to memory only.
    pub fn over(base: Arc<dyn StateStore>) -> Self {
        Self {
            base: Some(base),
            inner: Mutex::new(Overlay::default()),
        }
    }

    /// An empty in-memory store.
    pub fn in_memory() -> Self {
        Self {
            base: None,
            inner: Mutex::new(Overlay::default()),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Overlay>, StateError> {
        self.inner
            .lock()
            .map_err(|_| StateError::permanent("overlay state: lock poisoned"))
    }

    /// Every membership record written through the overlay (of every
    /// export), in export then person-key order.
    pub fn written_memberships(&self) -> Result<Vec<MembershipRecord>, StateError> {
        let g = self.lock()?;
        let mut exports: Vec<&String> = g.members.keys().collect();
        exports.sort();
        Ok(exports
            .into_iter()
            .flat_map(|e| g.members[e].values().cloned())
            .collect())
    }

    /// Every run record written through the overlay.
    pub fn written_runs(&self) -> Result<Vec<RunRecord>, StateError> {
        Ok(self.lock()?.runs.values().cloned().collect())
    }

    async fn base_members(
        &self,
        export: &str,
    ) -> Result<Arc<BTreeMap<PersonKey, MembershipRecord>>, StateError> {
        if let Some(m) = self.lock()?.base_members.get(export) {
            return Ok(m.clone());
        }
        let mut all = BTreeMap::new();
        if let Some(base) = &self.base {
            let mut cursor = None;
            loop {
                let page = base.list_memberships(export, cursor, BASE_PAGE).await?;
                all.extend(page.items.into_iter().map(|r| (r.person_key.clone(), r)));
                match page.next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
        }
        let all = Arc::new(all);
        self.lock()?
            .base_members
            .insert(export.to_string(), all.clone());
        Ok(all)
    }

    async fn base_staged(
        &self,
        run_id: &str,
    ) -> Result<Arc<BTreeMap<PersonKey, Person>>, StateError> {
        if let Some(m) = self.lock()?.base_staged.get(run_id) {
            return Ok(m.clone());
        }
        let mut all = BTreeMap::new();
        if let Some(base) = &self.base {
            let mut cursor = None;
            loop {
                let page = base.list_staged(run_id, cursor, BASE_PAGE).await?;
                all.extend(page.items);
                match page.next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
        }
        let all = Arc::new(all);
        self.lock()?
            .base_staged
            .insert(run_id.to_string(), all.clone());
        Ok(all)
    }

    /// What a read sees: the overlay's record, else the base's.
    async fn visible_membership(
        &self,
        export: &str,
        person: &PersonKey,
    ) -> Result<Option<MembershipRecord>, StateError> {
        {
            let g = self.lock()?;
            if let Some(r) = g.members.get(export).and_then(|m| m.get(person)) {
                return Ok(Some(r.clone()));
            }
            if let Some(snapshot) = g.base_members.get(export) {
                return Ok(snapshot.get(person).cloned());
            }
        }
        match &self.base {
            Some(base) => base.get_membership(export, person).await,
            None => Ok(None),
        }
    }

    async fn visible_record(
        &self,
        destination: &str,
        key: &str,
    ) -> Result<Option<DestinationRecord>, StateError> {
        if let Some(r) = self
            .lock()?
            .records
            .get(&(destination.to_string(), key.to_string()))
        {
            return Ok(r.clone());
        }
        match &self.base {
            Some(base) => base.get_destination_record(destination, key).await,
            None => Ok(None),
        }
    }
}

/// One page of `over` laid on `under` (same keys: `over` wins), after
/// `cursor` (exclusive), in key order.
fn merged_page<V, T>(
    over: Option<&BTreeMap<PersonKey, V>>,
    under: &BTreeMap<PersonKey, V>,
    cursor: Option<&str>,
    limit: usize,
    item: impl Fn(&PersonKey, &V) -> T,
) -> Page<T> {
    let limit = limit.max(1);
    let lower = match cursor {
        Some(c) => Bound::Excluded(PersonKey(c.to_string())),
        None => Bound::Unbounded,
    };
    let empty = BTreeMap::new();
    let over = over.unwrap_or(&empty);
    let mut a = over.range((lower.clone(), Bound::Unbounded)).peekable();
    let mut b = under.range((lower, Bound::Unbounded)).peekable();
    let mut items = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, _)), Some((kb, _))) if ka == kb => {
                b.next();
                a.next()
            }
            (Some((ka, _)), Some((kb, _))) if ka < kb => a.next(),
            (Some(_), None) => a.next(),
            _ => b.next(),
        };
        let Some((k, v)) = next else { break };
        if items.len() == limit {
            return Page { items, next: last };
        }
        items.push(item(k, v));
        last = Some(k.0.clone());
    }
    Page { items, next: None }
}

#[async_trait]
impl StateStore for OverlayStateStore {
    async fn get_membership(
        &self,
        export: &str,
        person: &PersonKey,
    ) -> Result<Option<MembershipRecord>, StateError> {
        self.visible_membership(export, person).await
    }

    async fn put_membership(
        &self,
        record: &MembershipRecord,
    ) -> Result<MembershipWrite, StateError> {
        let stored = self
            .visible_membership(&record.export, &record.person_key)
            .await?;
        if let Some(cur) = &stored {
            let wins = cur.source_ts < record.source_ts
                || (cur.source_ts == record.source_ts && cur.change_id == record.change_id);
            if !wins {
                return Ok(MembershipWrite::Stale {
                    current: Box::new(cur.clone()),
                });
            }
        }
        let was = stored.is_some_and(|s| s.current.member);
        let is = record.current.member;
        let mut g = self.lock()?;
        if was != is {
            *g.member_delta.entry(record.export.clone()).or_default() += if is { 1 } else { -1 };
        }
        g.members
            .entry(record.export.clone())
            .or_default()
            .insert(record.person_key.clone(), record.clone());
        Ok(MembershipWrite::Applied)
    }

    async fn list_memberships(
        &self,
        export: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<MembershipRecord>, StateError> {
        let base = self.base_members(export).await?;
        let g = self.lock()?;
        Ok(merged_page(
            g.members.get(export),
            &base,
            cursor.as_deref(),
            limit,
            |_, r| r.clone(),
        ))
    }

    async fn count_members(&self, export: &str) -> Result<u64, StateError> {
        let base = match &self.base {
            Some(b) => b.count_members(export).await?,
            None => 0,
        };
        let delta = self.lock()?.member_delta.get(export).copied().unwrap_or(0);
        Ok((base as i64 + delta).max(0) as u64)
    }

    async fn stage_people(
        &self,
        run_id: &str,
        people: &[(PersonKey, Person)],
    ) -> Result<(), StateError> {
        let mut g = self.lock()?;
        g.staged
            .entry(run_id.to_string())
            .or_default()
            .extend(people.iter().cloned());
        Ok(())
    }

    async fn list_staged(
        &self,
        run_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<(PersonKey, Person)>, StateError> {
        let cleared = self.lock()?.staged_cleared.contains(run_id);
        let base = if cleared {
            Arc::new(BTreeMap::new())
        } else {
            self.base_staged(run_id).await?
        };
        let g = self.lock()?;
        Ok(merged_page(
            g.staged.get(run_id),
            &base,
            cursor.as_deref(),
            limit,
            |k, p| (k.clone(), p.clone()),
        ))
    }

    async fn clear_staged(&self, run_id: &str) -> Result<(), StateError> {
        let mut g = self.lock()?;
        g.staged.remove(run_id);
        g.staged_cleared.insert(run_id.to_string());
        Ok(())
    }

    async fn put_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.lock()?.runs.insert(run.run_id.clone(), run.clone());
        Ok(())
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StateError> {
        if let Some(r) = self.lock()?.runs.get(run_id) {
            return Ok(Some(r.clone()));
        }
        match &self.base {
            Some(base) => base.get_run(run_id).await,
            None => Ok(None),
        }
    }

    async fn list_runs(&self, export: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let ours: Vec<RunRecord> = self
            .lock()?
            .runs
            .values()
            .filter(|r| r.export == export)
            .cloned()
            .collect();
        let mut all: BTreeMap<String, RunRecord> = match &self.base {
            Some(base) => base
                .list_runs(export, limit.saturating_add(ours.len()))
                .await?
                .into_iter()
                .map(|r| (r.run_id.clone(), r))
                .collect(),
            None => BTreeMap::new(),
        };
        all.extend(ours.into_iter().map(|r| (r.run_id.clone(), r)));
        let mut runs: Vec<RunRecord> = all.into_values().collect();
        // Newest first, as the stores order them.
        runs.sort_by(|a, b| {
            (b.started_at, b.run_id.as_str()).cmp(&(a.started_at, a.run_id.as_str()))
        });
        runs.truncate(limit);
        Ok(runs)
    }

    async fn idempotency_start(
        &self,
        key: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<IdempotencyStart, StateError> {
        let mut g = self.lock()?;
        let verdict = match g.claims.get(key).copied().flatten() {
            Some(c) if c.expires_at > now => {
                if c.completed {
                    IdempotencyStart::Completed
                } else if c.in_progress_until > now {
                    IdempotencyStart::InProgress
                } else {
                    IdempotencyStart::Started
                }
            }
            _ => IdempotencyStart::Started,
        };
        if verdict == IdempotencyStart::Started {
            g.claims.insert(
                key.to_string(),
                Some(Claim {
                    completed: false,
                    expires_at,
                    in_progress_until,
                }),
            );
        }
        Ok(verdict)
    }

    async fn idempotency_complete(&self, key: &str, expires_at: Millis) -> Result<(), StateError> {
        self.lock()?.claims.insert(
            key.to_string(),
            Some(Claim {
                completed: true,
                expires_at,
                in_progress_until: expires_at,
            }),
        );
        Ok(())
    }

    async fn idempotency_release(&self, key: &str) -> Result<(), StateError> {
        let mut g = self.lock()?;
        if !g
            .claims
            .get(key)
            .copied()
            .flatten()
            .is_some_and(|c| c.completed)
        {
            g.claims.insert(key.to_string(), None);
        }
        Ok(())
    }

    async fn settle_jobs(
        &self,
        jobs: &[JobSettlement],
        counters: &[(String, Vec<(String, i64)>)],
    ) -> Result<Vec<String>, StateError> {
        let mut g = self.lock()?;
        let mut deltas: Vec<(String, String, i64)> = counters
            .iter()
            .flat_map(|(scope, d)| d.iter().map(|(n, v)| (scope.clone(), n.clone(), *v)))
            .collect();
        let mut lost = Vec::new();
        for job in jobs {
            let ours = g
                .claims
                .get(&job.key)
                .copied()
                .flatten()
                .is_some_and(|c| !c.completed && c.in_progress_until == job.claimed_until);
            if !ours {
                lost.push(job.key.clone());
                continue;
            }
            let claim = Claim {
                completed: job.finished_ops.is_none(),
                expires_at: job.expires_at,
                in_progress_until: match job.finished_ops {
                    None => job.expires_at,
                    Some(_) => Millis::MIN,
                },
            };
            g.claims.insert(job.key.clone(), Some(claim));
            match &job.finished_ops {
                Some(done) => g.progress.insert(job.key.clone(), done.clone()),
                None => g.progress.remove(&job.key),
            };
            deltas.extend(job.counters.iter().cloned());
        }
        for (scope, name, delta) in deltas {
            let v = g
                .counters
                .entry(scope)
                .or_default()
                .entry(name)
                .or_default();
            *v = v.saturating_add(delta);
        }
        Ok(lost)
    }

    async fn claim_job(
        &self,
        key: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<(IdempotencyStart, Vec<u32>), StateError> {
        let expired = self
            .lock()?
            .claims
            .get(key)
            .copied()
            .flatten()
            .is_some_and(|c| c.expires_at <= now);
        if expired {
            // Progress of an expired record is forgotten with it.
            self.lock()?.progress.remove(key);
        }
        let verdict = self
            .idempotency_start(key, now, in_progress_until, expires_at)
            .await?;
        if verdict != IdempotencyStart::Started {
            return Ok((verdict, Vec::new()));
        }
        let done = self.lock()?.progress.get(key).cloned().unwrap_or_default();
        Ok((verdict, done))
    }

    async fn add_counters(&self, scope: &str, deltas: &[(&str, i64)]) -> Result<(), StateError> {
        let mut g = self.lock()?;
        let c = g.counters.entry(scope.to_string()).or_default();
        for (name, delta) in deltas {
            let v = c.entry((*name).to_string()).or_default();
            *v = v.saturating_add(*delta);
        }
        Ok(())
    }

    async fn get_counters(&self, scope: &str) -> Result<BTreeMap<String, i64>, StateError> {
        let mut out = match &self.base {
            Some(base) => base.get_counters(scope).await?,
            None => BTreeMap::new(),
        };
        if let Some(ours) = self.lock()?.counters.get(scope) {
            for (name, delta) in ours {
                let v = out.entry(name.clone()).or_default();
                *v = v.saturating_add(*delta);
            }
        }
        Ok(out)
    }

    async fn put_report(&self, report: &ReconcileReport) -> Result<(), StateError> {
        let mut g = self.lock()?;
        g.reports.retain(|r| r.report_id != report.report_id);
        g.reports.push(report.clone());
        Ok(())
    }

    async fn latest_report(&self) -> Result<Option<ReconcileReport>, StateError> {
        let ours = self
            .lock()?
            .reports
            .iter()
            .max_by(|a, b| {
                (a.generated_at, a.report_id.as_str()).cmp(&(b.generated_at, b.report_id.as_str()))
            })
            .cloned();
        let theirs = match &self.base {
            Some(base) => base.latest_report().await?,
            None => None,
        };
        Ok(match (ours, theirs) {
            (Some(o), Some(t)) if t.generated_at > o.generated_at => Some(t),
            (Some(o), _) => Some(o),
            (None, t) => t,
        })
    }

    async fn list_reports(&self, limit: usize) -> Result<Vec<ReconcileReport>, StateError> {
        let ours: Vec<ReconcileReport> = self.lock()?.reports.clone();
        let mut all: BTreeMap<String, ReconcileReport> = match &self.base {
            Some(base) => base
                .list_reports(limit.saturating_add(ours.len()))
                .await?
                .into_iter()
                .map(|r| (r.report_id.clone(), r))
                .collect(),
            None => BTreeMap::new(),
        };
        all.extend(ours.into_iter().map(|r| (r.report_id.clone(), r)));
        let mut reports: Vec<ReconcileReport> = all.into_values().collect();
        reports.sort_by(|a, b| {
            (b.generated_at, b.report_id.as_str()).cmp(&(a.generated_at, a.report_id.as_str()))
        });
        reports.truncate(limit);
        Ok(reports)
    }

    async fn put_quarantine(&self, entry: &QuarantineEntry) -> Result<(), StateError> {
        self.lock()?
            .quarantine
            .insert(entry.id.clone(), entry.clone());
        Ok(())
    }

    async fn get_quarantine(&self, id: &str) -> Result<Option<QuarantineEntry>, StateError> {
        if let Some(e) = self.lock()?.quarantine.get(id) {
            return Ok(Some(e.clone()));
        }
        match &self.base {
            Some(base) => base.get_quarantine(id).await,
            None => Ok(None),
        }
    }

    async fn list_quarantine(&self, limit: usize) -> Result<Vec<QuarantineEntry>, StateError> {
        let ours: Vec<QuarantineEntry> = self.lock()?.quarantine.values().cloned().collect();
        let mut all: BTreeMap<String, QuarantineEntry> = match &self.base {
            Some(base) => base
                .list_quarantine(limit.saturating_add(ours.len()))
                .await?
                .into_iter()
                .map(|e| (e.id.clone(), e))
                .collect(),
            None => BTreeMap::new(),
        };
        all.extend(ours.into_iter().map(|e| (e.id.clone(), e)));
        let mut entries: Vec<QuarantineEntry> = all.into_values().collect();
        entries.sort_by(|a, b| (b.received_at, b.id.as_str()).cmp(&(a.received_at, a.id.as_str())));
        entries.truncate(limit);
        Ok(entries)
    }

    async fn get_destination_record(
        &self,
        destination: &str,
        key: &str,
    ) -> Result<Option<DestinationRecord>, StateError> {
        self.visible_record(destination, key).await
    }

    async fn put_destination_record(
        &self,
        destination: &str,
        key: &str,
        value: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<RecordWrite, StateError> {
        let current = self.visible_record(destination, key).await?;
        let version = match (current.as_ref().map(|r| r.version), expected) {
            (None, None) => 1,
            (Some(v), Some(e)) if v == e => v + 1,
            _ => return Ok(RecordWrite::Conflict),
        };
        self.lock()?.records.insert(
            (destination.to_string(), key.to_string()),
            Some(DestinationRecord {
                destination: destination.to_string(),
                key: key.to_string(),
                version,
                value: value.clone(),
            }),
        );
        Ok(RecordWrite::Applied { version })
    }

    async fn list_destination_records(
        &self,
        destination: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<DestinationRecord>, StateError> {
        let ours: Vec<(String, Option<DestinationRecord>)> = self
            .lock()?
            .records
            .iter()
            .filter(|((d, k), _)| d == destination && k.starts_with(prefix))
            .map(|((_, k), r)| (k.clone(), r.clone()))
            .collect();
        let mut all: BTreeMap<String, DestinationRecord> = match &self.base {
            Some(base) => base
                .list_destination_records(destination, prefix, limit.saturating_add(ours.len()))
                .await?
                .into_iter()
                .map(|r| (r.key.clone(), r))
                .collect(),
            None => BTreeMap::new(),
        };
        for (k, r) in ours {
            match r {
                Some(r) => all.insert(k, r),
                None => all.remove(&k),
            };
        }
        Ok(all.into_values().take(limit).collect())
    }

    async fn delete_destination_record(
        &self,
        destination: &str,
        key: &str,
        expected: u64,
    ) -> Result<bool, StateError> {
        let current = self.visible_record(destination, key).await?;
        if current.is_none_or(|r| r.version != expected) {
            return Ok(false);
        }
        self.lock()?
            .records
            .insert((destination.to_string(), key.to_string()), None);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
