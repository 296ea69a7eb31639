//! The delivery-job side of the embedded state store: claims that keep
//! the ops earlier attempts finished, an attempt settled in one write
//! transaction (fenced on its claim), membership records read together.

use super::*;

impl EmbeddedStateStore {
    pub(super) async fn claim_keeping_progress(
        &self,
        key: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<(IdempotencyStart, Vec<u32>), StateError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db
                .begin_write()
                .map_err(|e| db_err("idempotency start", e))?;
            let verdict = {
                let mut t = txn
                    .open_table(IDEMPOTENCY)
                    .map_err(|e| db_err("idempotency start", e))?;
                let stored: Option<IdempotencyRecord> = t
                    .get(key.as_str())
                    .map_err(|e| db_err("idempotency start", e))?
                    .map(|v| decode("idempotency record", v.value()))
                    .transpose()?;
                // A claim taken over keeps the ops earlier attempts finished.
                let finished_ops = match &stored {
                    Some(r) if r.expiration > now => r.finished_ops.clone(),
                    _ => Vec::new(),
                };
                let verdict = match stored {
                    // Expired records count as absent, whatever their status.
                    Some(r) if r.expiration > now => match r.status {
                        IdempotencyStatus::Completed => IdempotencyStart::Completed,
                        IdempotencyStatus::InProgress if r.in_progress_expiration > now => {
                            IdempotencyStart::InProgress
                        }
                        // The attempt holding it ran out of time: take over.
                        IdempotencyStatus::InProgress => IdempotencyStart::Started,
                    },
                    _ => IdempotencyStart::Started,
                };
                let mut done = Vec::new();
                if verdict == IdempotencyStart::Started {
                    done.clone_from(&finished_ops);
                    let record = IdempotencyRecord {
                        status: IdempotencyStatus::InProgress,
                        expiration: expires_at,
                        in_progress_expiration: in_progress_until,
                        finished_ops,
                    };
                    let bytes = encode("idempotency record", &record)?;
                    t.insert(key.as_str(), bytes.as_slice())
                        .map_err(|e| db_err("idempotency start", e))?;
                }
                (verdict, done)
            };
            if verdict.0 == IdempotencyStart::Started {
                commit(txn, "idempotency start")?;
            }
            Ok(verdict)
        })
        .await
    }

    pub(super) async fn settle_in_one_transaction(
        &self,
        jobs: &[JobSettlement],
        counters: &[(String, Vec<(String, i64)>)],
    ) -> Result<Vec<String>, StateError> {
        let jobs = jobs.to_vec();
        let counters = counters.to_vec();
        self.blocking(move |db| {
            let what = "settle jobs";
            // One write transaction: counters and settlements land together.
            let txn = db.begin_write().map_err(|e| db_err(what, e))?;
            let mut lost = Vec::new();
            let mut deltas: Vec<(String, String, i64)> = counters
                .iter()
                .flat_map(|(scope, d)| d.iter().map(|(n, v)| (scope.clone(), n.clone(), *v)))
                .collect();
            {
                let mut t = txn.open_table(IDEMPOTENCY).map_err(|e| db_err(what, e))?;
                for job in &jobs {
                    let stored: Option<IdempotencyRecord> = t
                        .get(job.key.as_str())
                        .map_err(|e| db_err(what, e))?
                        .map(|v| decode("idempotency record", v.value()))
                        .transpose()?;
                    let ours = stored.is_some_and(|r| {
                        r.status == IdempotencyStatus::InProgress
                            && r.in_progress_expiration == job.claimed_until
                    });
                    if !ours {
                        lost.push(job.key.clone());
                        continue;
                    }
                    let record = match &job.finished_ops {
                        None => IdempotencyRecord {
                            status: IdempotencyStatus::Completed,
                            expiration: job.expires_at,
                            in_progress_expiration: job.expires_at,
                            finished_ops: Vec::new(),
                        },
                        // A claim that has already run out: the next start takes it.
                        Some(done) => IdempotencyRecord {
                            status: IdempotencyStatus::InProgress,
                            expiration: job.expires_at,
                            in_progress_expiration: Millis::MIN,
                            finished_ops: done.clone(),
                        },
                    };
                    let bytes = encode("idempotency record", &record)?;
                    t.insert(job.key.as_str(), bytes.as_slice())
                        .map_err(|e| db_err(what, e))?;
                    deltas.extend(job.counters.iter().cloned());
                }
                let mut t = txn.open_table(COUNTER).map_err(|e| db_err(what, e))?;
                for (scope, name, delta) in &deltas {
                    let key = (scope.as_str(), name.as_str());
                    let cur = t
                        .get(key)
                        .map_err(|e| db_err(what, e))?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    t.insert(key, cur.saturating_add(*delta))
                        .map_err(|e| db_err(what, e))?;
                }
            }
            commit(txn, what)?;
            Ok(lost)
        })
        .await
    }

    pub(super) async fn read_memberships(
        &self,
        export: &str,
        people: &[PersonKey],
    ) -> Result<Vec<Option<MembershipRecord>>, StateError> {
        let export = export.to_string();
        let people = people.to_vec();
        self.blocking(move |db| {
            let what = "get memberships";
            let txn = db.begin_read().map_err(|e| db_err(what, e))?;
            let t = txn.open_table(MEMBERSHIP).map_err(|e| db_err(what, e))?;
            people
                .iter()
                .map(|p| {
                    t.get((export.as_str(), p.as_str()))
                        .map_err(|e| db_err(what, e))?
                        .map(|v| decode("membership", v.value()))
                        .transpose()
                })
                .collect()
        })
        .await
    }
}
