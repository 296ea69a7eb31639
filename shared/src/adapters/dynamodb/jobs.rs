//! The delivery-job side of the DynamoDB state store: claims that keep the
//! ops earlier attempts finished, an attempt's outcome settled in one
//! transaction, and membership records read in batches.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};

use super::*;

impl DynamoStateStore {
    pub(super) async fn settle_jobs_in_one_transaction(
        &self,
        jobs: &[JobSettlement],
        counters: &[(String, Vec<(String, i64)>)],
    ) -> Result<Vec<String>, StateError> {
        let what = "settle jobs";
        let mut lost: Vec<String> = Vec::new();
        // A job whose claim another attempt took over cancels the whole
        // transaction: leave it out (with its counters) and write the rest.
        for _ in 0..=jobs.len() {
            let live: Vec<&JobSettlement> =
                jobs.iter().filter(|j| !lost.contains(&j.key)).collect();
            let actions = self.settle_actions(&live, counters)?;
            if actions.is_empty() {
                return Ok(lost);
            }
            if actions.len() > MAX_TRANSACT_ITEMS {
                return Err(StateError::permanent(format!(
                    "{what}: {} writes are more than one transaction holds ({MAX_TRANSACT_ITEMS}); settle fewer jobs at a time",
                    actions.len()
                )));
            }
            let refused = self
                .retrying(what, || async {
                    match self
                        .client
                        .transact_write_items()
                        .set_transact_items(Some(actions.clone()))
                        .send()
                        .await
                    {
                        Ok(_) => Ok(Vec::new()),
                        Err(e) => {
                            // Which actions failed their condition: the claims
                            // come first, one per live job, in order.
                            let failed: Vec<usize> = e
                                .as_service_error()
                                .and_then(|se| match se {
                                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(tc) => Some(tc),
                                    _ => None,
                                })
                                .map(|tc| {
                                    tc.cancellation_reasons()
                                        .iter()
                                        .enumerate()
                                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                                        .map(|(i, _)| i)
                                        .collect()
                                })
                                .unwrap_or_default();
                            if !failed.is_empty() {
                                Ok(failed)
                            } else if e.code() == Some("TransactionCanceledException") {
                                // Cancelled for throttling or a conflict.
                                Err(StateError::Retryable {
                                    message: format!("{what}: {}", describe_sdk_error(&e)),
                                    source: Some(Box::new(e)),
                                })
                            } else {
                                Err(classify(what, e))
                            }
                        }
                    }
                })
                .await?;
            if refused.is_empty() {
                return Ok(lost);
            }
            for i in refused {
                match live.get(i) {
                    Some(job) => lost.push(job.key.clone()),
                    None => {
                        return Err(StateError::permanent(format!(
                            "{what}: a counter update failed a condition it does not have"
                        )))
                    }
                }
            }
        }
        Err(StateError::retryable(format!(
            "{what}: the claims kept changing under the write"
        )))
    }

    /// The writes of one settle: each live job's claim (conditional on
    /// still being the claim it names), then one counter update per scope.
    fn settle_actions(
        &self,
        jobs: &[&JobSettlement],
        counters: &[(String, Vec<(String, i64)>)],
    ) -> Result<Vec<TransactWriteItem>, StateError> {
        let what = "settle jobs";
        let build = |e| build_err(what, e);
        let mut actions = Vec::new();
        let mut merged: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
        for (scope, deltas) in counters {
            for (name, delta) in deltas {
                let slot = merged.entry(scope).or_default().entry(name).or_insert(0);
                *slot = slot.saturating_add(*delta);
            }
        }
        for job in jobs {
            for (scope, name, delta) in &job.counters {
                let slot = merged.entry(scope).or_default().entry(name).or_insert(0);
                *slot = slot.saturating_add(*delta);
            }
            let pk = idem_pk(&job.key);
            let mut claim = key(pk.clone(), IDEM_SK);
            claim.insert(TTL_ATTRIBUTE.into(), n(ttl_seconds(job.expires_at)));
            claim.insert("expires_at_ms".into(), n(job.expires_at));
            match &job.finished_ops {
                None => {
                    claim.insert("status".into(), s(COMPLETED));
                    claim.insert("in_progress_expiration".into(), n(job.expires_at));
                }
                Some(done) => {
                    // A claim already run out: the next claim takes it over,
                    // and reads which ops are finished.
                    claim.insert("status".into(), s(IN_PROGRESS));
                    claim.insert("in_progress_expiration".into(), n(0));
                    claim.insert(PROGRESS_ATTRIBUTE.into(), s(encode_ops(done)));
                }
            }
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(claim))
                .condition_expression("#status = :in_progress AND in_progress_expiration = :until")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":in_progress", s(IN_PROGRESS))
                .expression_attribute_values(":until", n(job.claimed_until))
                .build()
                .map_err(build)?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        for (scope, deltas) in merged {
            let deltas: Vec<(&str, i64)> = deltas.into_iter().filter(|(_, v)| *v != 0).collect();
            if deltas.is_empty() {
                continue;
            }
            let mut update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(counters_pk(scope), COUNTERS_SK)));
            let mut clauses = Vec::with_capacity(deltas.len());
            for (i, (name, delta)) in deltas.iter().enumerate() {
                update = update
                    .expression_attribute_names(format!("#n{i}"), format!("{COUNTER_PREFIX}{name}"))
                    .expression_attribute_values(format!(":v{i}"), n(*delta));
                clauses.push(format!("#n{i} :v{i}"));
            }
            let update = update
                .update_expression(format!("ADD {}", clauses.join(", ")))
                .build()
                .map_err(build)?;
            actions.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(actions)
    }

    pub(super) async fn claim_job_keeping_progress(
        &self,
        key_: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<(IdempotencyStart, Vec<u32>), StateError> {
        let what = "claim job";
        let pk = idem_pk(key_);
        for _ in 0..CONTENDED_ATTEMPTS {
            // An update, not a put: the finished ops stay, and the old
            // values come back with the claim in the same request.
            let claimed = self
                .retrying(what, || async {
                    let answer = self
                        .client
                        .update_item()
                        .table_name(&self.table)
                        .set_key(Some(key(pk.clone(), IDEM_SK)))
                        .update_expression(
                            "SET #status = :in_progress, #ttl = :ttl, expires_at_ms = :exp, \
                             in_progress_expiration = :until",
                        )
                        .condition_expression(
                            "attribute_not_exists(#pk) OR expires_at_ms <= :now \
                             OR (#status = :in_progress AND in_progress_expiration <= :now)",
                        )
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_names("#status", "status")
                        .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                        .expression_attribute_values(":in_progress", s(IN_PROGRESS))
                        .expression_attribute_values(":ttl", n(ttl_seconds(expires_at)))
                        .expression_attribute_values(":exp", n(expires_at))
                        .expression_attribute_values(":until", n(in_progress_until))
                        .expression_attribute_values(":now", n(now))
                        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                        .send()
                        .await;
                    match answer {
                        Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                        {
                            Ok(None)
                        }
                        Err(e) => Err(classify(what, e)),
                    }
                })
                .await?;
            if let Some(old) = claimed {
                // Progress of an expired record is forgotten with it.
                let live = old
                    .get("expires_at_ms")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|exp| exp > now);
                let done = match old.get(PROGRESS_ATTRIBUTE) {
                    Some(AttributeValue::S(ops)) if live => decode_ops(ops, what)?,
                    _ => Vec::new(),
                };
                if !live && old.contains_key(PROGRESS_ATTRIBUTE) {
                    self.retrying(what, || async {
                        self.client
                            .update_item()
                            .table_name(&self.table)
                            .set_key(Some(key(pk.clone(), IDEM_SK)))
                            .update_expression("REMOVE #ops")
                            .expression_attribute_names("#ops", PROGRESS_ATTRIBUTE)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| classify(what, e))
                    })
                    .await?;
                }
                return Ok((IdempotencyStart::Started, done));
            }
            let Some(stored) = self.get_item(what, &pk, IDEM_SK).await? else {
                continue;
            };
            if get_n(&stored, "expires_at_ms", what)? <= now {
                continue;
            }
            match get_s(&stored, "status", what)? {
                COMPLETED => return Ok((IdempotencyStart::Completed, Vec::new())),
                IN_PROGRESS if get_n(&stored, "in_progress_expiration", what)? > now => {
                    return Ok((IdempotencyStart::InProgress, Vec::new()))
                }
                IN_PROGRESS => continue,
                other => {
                    return Err(StateError::permanent(format!(
                        "{what}: unknown idempotency status `{other}`"
                    )))
                }
            }
        }
        Err(StateError::retryable(format!(
            "{what}: the claim kept changing under the write"
        )))
    }

    pub(super) async fn batch_get_memberships(
        &self,
        export: &str,
        people: &[PersonKey],
    ) -> Result<Vec<Option<MembershipRecord>>, StateError> {
        let what = "get memberships";
        let pk = membership_pk(export);
        let mut found: HashMap<String, MembershipRecord> = HashMap::new();
        let mut wanted: Vec<&str> = people.iter().map(PersonKey::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        for chunk in wanted.chunks(MAX_BATCH_GET) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|p| key(pk.clone(), *p)).collect()))
                .consistent_read(true)
                .build()
                .map_err(|e| build_err(what, e))?;
            // Keys DynamoDB leaves unprocessed (throttling) are asked again.
            for round in 0.. {
                let table = self.table.clone();
                let ask = pending.clone();
                let out = self
                    .retrying(what, || async {
                        self.client
                            .batch_get_item()
                            .request_items(table.clone(), ask.clone())
                            .send()
                            .await
                            .map_err(|e| classify(what, e))
                    })
                    .await?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let record: MembershipRecord = from_blob(&item, "record", what)?;
                    found.insert(record.person_key.0.clone(), record);
                }
                match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    Some(rest) if !rest.keys().is_empty() => {
                        if round >= 10 {
                            return Err(StateError::retryable(format!(
                                "{what}: keys still unprocessed after {round} rounds"
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(50 << round.min(5))).await;
                        pending = rest;
                    }
                    _ => break,
                }
            }
        }
        Ok(people
            .iter()
            .map(|p| found.get(p.as_str()).cloned())
            .collect())
    }
}

fn encode_ops(ops: &[u32]) -> String {
    ops.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn decode_ops(ops: &str, what: &str) -> Result<Vec<u32>, StateError> {
    ops.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>().map_err(|_| {
                StateError::permanent(format!("{what}: corrupt op index `{p}` in the claim"))
            })
        })
        .collect()
}
