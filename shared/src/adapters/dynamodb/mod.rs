//! DynamoDB adapter of the state store: one table, string keys `pk` / `sk`,
//! on-demand billing, TTL on the Number attribute `expires_at` (epoch
//! seconds). The SAM template creates the same table; [`DynamoStateStore::create_table`]
//! does it for tests and local setups.
//!
//! # Layout
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | membership | `MEMBER#<export>` | `<person_key>` | `member` (BOOL), `source_ts` (N), `change_id` (S), `record` (S, JSON) |
//! | staged person | `STAGE#<run_id>` | `<person_key>` | `person` (S, JSON) |
//! | run | `RUN#<run_id>` | `RUN` | `record`, `index_pk`, `index_sk` |
//! | run, by export | `RUNS#<export>` | `<time>#<run_id>` | `record` |
//! | idempotency | `IDEM#<key>` | `IDEM` | `status` (INPROGRESS / COMPLETED), `expires_at` (N, s, TTL), `expires_at_ms` (N), `in_progress_expiration` (N, ms) |
//! | counters | `COUNTERS#<scope>` | `COUNTERS` | one Number `c#<name>` per counter |
//! | report | `REPORT#<report_id>` | `REPORT` | `record`, `index_pk`, `index_sk` |
//! | report, by time | `REPORTS` | `<time>#<report_id>` | `record` |
//! | quarantine | `QUAR#<id>` | `QUAR` | `record`, `index_pk`, `index_sk` |
//! | quarantine, by time | `QUARANTINE` | `<time>#<id>` | `record` |
//! | destination record | `DEST#<destination>` | `<key>` | `version` (N), `record` (S, JSON) |
//!
//! `<time>` is the Unix millisecond time mapped order-preservingly to a
//! 20-digit number, so a descending Query lists newest first. Items keyed by
//! id carry where their time-ordered copy lives (`index_pk`, `index_sk`);
//! both are written in one transaction, guarded by a condition on the id
//! item, so a re-put that moves the time never leaves a stale copy.
//!
//! # Choices
//!
//! * Membership writes are one conditional PutItem (`attribute_not_exists(pk)
//!   OR source_ts < :ts OR (source_ts = :ts AND change_id = :cid)`); a refusal
//!   reads the stored record back and returns it as `Stale`.
//! * `count_members` is a Query of the export's partition with a filter on
//!   `member` and `Select=COUNT`: no counter to keep in step on every write
//!   (that would need a transaction per change), at the price of reading the
//!   partition once per call (reconciliation calls it once a day).
//! * Idempotency follows Powertools: a claim succeeds when no record exists,
//!   or it expired, or it is in progress past its in-progress expiry.
//!   Conditions use `expires_at_ms` (exact); `expires_at` only drives TTL,
//!   whose deletion lags, so a present but expired record counts as absent.
//! * Staged people carry no TTL: a held run may wait days for approval, and
//!   a staged set that vanished half-way would read as mass exits.
//!   `clear_staged` removes them.
//! * Counter adds (`UpdateItem ADD`) are not idempotent: a call retried after
//!   a timeout may count twice. Counters feed reports, not decisions.
//! * Throttling, 5xx and timeouts are retried here (exponential backoff, on
//!   top of the SDK's own retry policy), then surface as `Retryable`;
//!   everything else is `Permanent` with the SDK error as source.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, KeySchemaElement,
    KeyType, Put, PutRequest, ScalarAttributeType, Select, TimeToLiveSpecification,
    TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use backon::{BackoffBuilder, ExponentialBuilder};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::model::{
    MembershipRecord, Millis, Person, PersonKey, QuarantineEntry, ReconcileReport, RunRecord,
};
use crate::ports::{
    DestinationRecord, IdempotencyStart, JobSettlement, MembershipWrite, Page, RecordWrite,
    StateError, StateStore,
};

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// TTL attribute: Number, epoch seconds.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// BatchWriteItem takes at most 25 requests.
const BATCH_WRITE_MAX: usize = 25;
const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";
const COUNTER_PREFIX: &str = "c#";
/// Attempts of a write that loses a race (membership read-back, idempotency
/// claim, id-indexed put) before giving up as retryable.
const CONTENDED_ATTEMPTS: usize = 5;

type Item = HashMap<String, AttributeValue>;

pub mod budget;
mod items;
mod table;
mod writes;
use super::aws_errors::describe_sdk_error;
use super::aws_errors::{retry_counted, SdkFailure};
use items::*;

/// Where an id-keyed record and its time-ordered copy live.
struct Indexed {
    what: &'static str,
    id_pk: String,
    id_sk: &'static str,
    index_pk: String,
    index_sk: String,
}

/// The state store on a DynamoDB table (layout in the module docs).
#[derive(Clone, Debug)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
    requests: Arc<AtomicU64>,
}

impl DynamoStateStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// DynamoDB requests sent so far (retries included): sizes the bill.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

fn membership_pk(export: &str) -> String {
    format!("MEMBER#{export}")
}

fn stage_pk(run_id: &str) -> String {
    format!("STAGE#{run_id}")
}

fn idem_pk(key: &str) -> String {
    format!("IDEM#{key}")
}

fn dest_pk(destination: &str) -> String {
    format!("DEST#{destination}")
}

fn dest_record(
    destination: &str,
    item: &Item,
    what: &str,
) -> Result<DestinationRecord, StateError> {
    let version = u64::try_from(get_n(item, "version", what)?)
        .map_err(|_| StateError::permanent(format!("{what}: negative version")))?;
    Ok(DestinationRecord {
        destination: destination.to_string(),
        key: get_s(item, SK, what)?.to_string(),
        version,
        value: from_blob(item, "record", what)?,
    })
}

fn counters_pk(scope: &str) -> String {
    format!("COUNTERS#{scope}")
}

const RUN_SK: &str = "RUN";
const IDEM_SK: &str = "IDEM";
/// TransactWriteItems' limit on actions per call.
const MAX_TRANSACT_ITEMS: usize = 100;
/// On a delivery job's claim: the ops earlier attempts finished.
const PROGRESS_ATTRIBUTE: &str = "finished_ops";
/// BatchGetItem's limit on keys per call.
const MAX_BATCH_GET: usize = 100;
const COUNTERS_SK: &str = "COUNTERS";
const REPORTS_PK: &str = "REPORTS";
const QUARANTINE_PK: &str = "QUARANTINE";

mod jobs;

#[async_trait]
impl StateStore for DynamoStateStore {
    async fn get_membership(
        &self,
        export: &str,
        person: &PersonKey,
    ) -> Result<Option<MembershipRecord>, StateError> {
        let what = "get membership";
        match self
            .get_item(what, &membership_pk(export), person.as_str())
            .await?
        {
            Some(item) => Ok(Some(from_blob(&item, "record", what)?)),
            None => Ok(None),
        }
    }

    async fn put_membership(
        &self,
        record: &MembershipRecord,
    ) -> Result<MembershipWrite, StateError> {
        let what = "put membership";
        let mut item = key(membership_pk(&record.export), record.person_key.as_str());
        item.insert("member".into(), AttributeValue::Bool(record.current.member));
        item.insert("source_ts".into(), n(record.source_ts));
        item.insert("change_id".into(), s(record.change_id.clone()));
        item.insert("record".into(), s(to_json(what, record)?));
        for _ in 0..CONTENDED_ATTEMPTS {
            let written = self
                .put_conditional(
                    what,
                    item.clone(),
                    "attribute_not_exists(#pk) OR source_ts < :ts OR (source_ts = :ts AND change_id = :cid)",
                    &[("#pk", PK)],
                    &[(":ts", n(record.source_ts)), (":cid", s(record.change_id.clone()))],
                )
                .await?;
            if written {
                return Ok(MembershipWrite::Applied);
            }
            if let Some(current) = self
                .get_membership(&record.export, &record.person_key)
                .await?
            {
                tracing::debug!(
                    export = %record.export,
                    person = %record.person_key.log_safe(),
                    "older membership change refused"
                );
                return Ok(MembershipWrite::Stale {
                    current: Box::new(current),
                });
            }
            // Deleted between the write and the read: try again.
        }
        Err(StateError::retryable(format!(
            "{what}: the record kept changing under the write"
        )))
    }

    async fn list_memberships(
        &self,
        export: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<MembershipRecord>, StateError> {
        let what = "list memberships";
        let (items, next) = self
            .page(what, &membership_pk(export), cursor, limit)
            .await?;
        let items = items
            .iter()
            .map(|item| from_blob(item, "record", what))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    async fn count_members(&self, export: &str) -> Result<u64, StateError> {
        let what = "count members";
        let pk = membership_pk(export);
        let mut total: u64 = 0;
        let mut start: Option<Item> = None;
        loop {
            let (count, last) = self
                .retrying(what, || async {
                    self.client
                        .query()
                        .table_name(&self.table)
                        .key_condition_expression("#pk = :pk")
                        .filter_expression("#member = :yes")
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_names("#member", "member")
                        .expression_attribute_values(":pk", s(pk.clone()))
                        .expression_attribute_values(":yes", AttributeValue::Bool(true))
                        .select(Select::Count)
                        .consistent_read(true)
                        .set_exclusive_start_key(start.clone())
                        .send()
                        .await
                        .map(|out| (out.count, out.last_evaluated_key))
                        .map_err(|e| classify(what, e))
                })
                .await?;
            total += u64::try_from(count).unwrap_or(0);
            match last {
                Some(last) => start = Some(last),
                None => return Ok(total),
            }
        }
    }

    async fn stage_people(
        &self,
        run_id: &str,
        people: &[(PersonKey, Person)],
    ) -> Result<(), StateError> {
        let what = "stage people";
        // One batch may not name a key twice: the last staging of a person wins.
        let mut latest: BTreeMap<&str, &Person> = BTreeMap::new();
        for (key, person) in people {
            latest.insert(key.as_str(), person);
        }
        let pk = stage_pk(run_id);
        let mut requests = Vec::with_capacity(latest.len());
        for (person_key, person) in latest {
            let mut item = key(pk.clone(), person_key);
            item.insert("person".into(), s(to_json(what, person)?));
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| build_err(what, e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(what, requests).await
    }

    async fn list_staged(
        &self,
        run_id: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<(PersonKey, Person)>, StateError> {
        let what = "list staged";
        let (items, next) = self.page(what, &stage_pk(run_id), cursor, limit).await?;
        let items = items
            .iter()
            .map(|item| {
                Ok((
                    PersonKey(get_s(item, SK, what)?.to_string()),
                    from_blob(item, "person", what)?,
                ))
            })
            .collect::<Result<_, StateError>>()?;
        Ok(Page { items, next })
    }

    async fn clear_staged(&self, run_id: &str) -> Result<(), StateError> {
        let what = "clear staged";
        let pk = stage_pk(run_id);
        let mut start = None;
        loop {
            let (items, last) = self.query(what, &pk, start.take(), None, true).await?;
            let mut deletes = Vec::with_capacity(items.len());
            for item in &items {
                let del = DeleteRequest::builder()
                    .set_key(Some(key(pk.clone(), get_s(item, SK, what)?)))
                    .build()
                    .map_err(|e| build_err(what, e))?;
                deletes.push(WriteRequest::builder().delete_request(del).build());
            }
            self.batch_write(what, deletes).await?;
            match last {
                Some(last) => start = Some(last),
                None => return Ok(()),
            }
        }
    }

    async fn put_run(&self, run: &RunRecord) -> Result<(), StateError> {
        let at = Indexed {
            what: "put run",
            id_pk: format!("RUN#{}", run.run_id),
            id_sk: RUN_SK,
            index_pk: format!("RUNS#{}", run.export),
            index_sk: time_key(run.started_at, &run.run_id),
        };
        self.put_indexed(at, to_json("put run", run)?).await
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>, StateError> {
        let what = "get run";
        match self
            .get_item(what, &format!("RUN#{run_id}"), RUN_SK)
            .await?
        {
            Some(item) => Ok(Some(from_blob(&item, "record", what)?)),
            None => Ok(None),
        }
    }

    async fn list_runs(&self, export: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let what = "list runs";
        self.newest(what, &format!("RUNS#{export}"), limit)
            .await?
            .iter()
            .map(|item| from_blob(item, "record", what))
            .collect()
    }

    async fn idempotency_start(
        &self,
        key_: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<IdempotencyStart, StateError> {
        let what = "idempotency start";
        let pk = idem_pk(key_);
        let mut item = key(pk.clone(), IDEM_SK);
        item.insert("status".into(), s(IN_PROGRESS));
        item.insert(TTL_ATTRIBUTE.into(), n(ttl_seconds(expires_at)));
        item.insert("expires_at_ms".into(), n(expires_at));
        item.insert("in_progress_expiration".into(), n(in_progress_until));
        for _ in 0..CONTENDED_ATTEMPTS {
            let claimed = self
                .put_conditional(
                    what,
                    item.clone(),
                    "attribute_not_exists(#pk) OR expires_at_ms <= :now \
                     OR (#status = :in_progress AND in_progress_expiration <= :now)",
                    &[("#pk", PK), ("#status", "status")],
                    &[(":now", n(now)), (":in_progress", s(IN_PROGRESS))],
                )
                .await?;
            if claimed {
                return Ok(IdempotencyStart::Started);
            }
            let Some(stored) = self.get_item(what, &pk, IDEM_SK).await? else {
                continue;
            };
            if get_n(&stored, "expires_at_ms", what)? <= now {
                continue;
            }
            match get_s(&stored, "status", what)? {
                COMPLETED => return Ok(IdempotencyStart::Completed),
                IN_PROGRESS if get_n(&stored, "in_progress_expiration", what)? > now => {
                    return Ok(IdempotencyStart::InProgress)
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

    async fn idempotency_complete(&self, key_: &str, expires_at: Millis) -> Result<(), StateError> {
        let what = "idempotency complete";
        let mut item = key(idem_pk(key_), IDEM_SK);
        item.insert("status".into(), s(COMPLETED));
        item.insert(TTL_ATTRIBUTE.into(), n(ttl_seconds(expires_at)));
        item.insert("expires_at_ms".into(), n(expires_at));
        item.insert("in_progress_expiration".into(), n(expires_at));
        self.retrying(what, || async {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(what, e))
        })
        .await
    }

    async fn idempotency_release(&self, key_: &str) -> Result<(), StateError> {
        let what = "idempotency release";
        let pk = idem_pk(key_);
        // The claim runs out now; a delivery job's finished ops stay with it.
        self.retrying(what, || async {
            match self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(pk.clone(), IDEM_SK)))
                .update_expression("SET in_progress_expiration = :zero")
                .condition_expression("#status = :in_progress")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":in_progress", s(IN_PROGRESS))
                .expression_attribute_values(":zero", n(0))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Nothing claimed (or completed meanwhile): nothing to give back.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(classify(what, e)),
            }
        })
        .await
    }

    async fn settle_jobs(
        &self,
        jobs: &[JobSettlement],
        counters: &[(String, Vec<(String, i64)>)],
    ) -> Result<Vec<String>, StateError> {
        self.settle_jobs_in_one_transaction(jobs, counters).await
    }

    async fn claim_job(
        &self,
        key_: &str,
        now: Millis,
        in_progress_until: Millis,
        expires_at: Millis,
    ) -> Result<(IdempotencyStart, Vec<u32>), StateError> {
        self.claim_job_keeping_progress(key_, now, in_progress_until, expires_at)
            .await
    }

    async fn get_memberships(
        &self,
        export: &str,
        people: &[PersonKey],
    ) -> Result<Vec<Option<MembershipRecord>>, StateError> {
        self.batch_get_memberships(export, people).await
    }

    async fn add_counters(&self, scope: &str, deltas: &[(&str, i64)]) -> Result<(), StateError> {
        let what = "add counters";
        // ADD may not name one attribute twice: sum repeated names first.
        let mut merged: BTreeMap<&str, i64> = BTreeMap::new();
        for (name, delta) in deltas {
            let slot = merged.entry(name).or_insert(0);
            *slot = slot.saturating_add(*delta);
        }
        if merged.is_empty() {
            return Ok(());
        }
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut clauses = Vec::with_capacity(merged.len());
        for (i, (name, delta)) in merged.iter().enumerate() {
            names.insert(format!("#n{i}"), format!("{COUNTER_PREFIX}{name}"));
            values.insert(format!(":v{i}"), n(*delta));
            clauses.push(format!("#n{i} :v{i}"));
        }
        let update = format!("ADD {}", clauses.join(", "));
        let pk = counters_pk(scope);
        self.retrying(what, || async {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(pk.clone(), COUNTERS_SK)))
                .update_expression(&update)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(what, e))
        })
        .await
    }

    async fn get_counters(&self, scope: &str) -> Result<BTreeMap<String, i64>, StateError> {
        let what = "get counters";
        let Some(item) = self
            .get_item(what, &counters_pk(scope), COUNTERS_SK)
            .await?
        else {
            return Ok(BTreeMap::new());
        };
        let mut out = BTreeMap::new();
        for attr in item.keys() {
            if let Some(name) = attr.strip_prefix(COUNTER_PREFIX) {
                out.insert(name.to_string(), get_n(&item, attr, what)?);
            }
        }
        Ok(out)
    }

    async fn put_report(&self, report: &ReconcileReport) -> Result<(), StateError> {
        let at = Indexed {
            what: "put report",
            id_pk: format!("REPORT#{}", report.report_id),
            id_sk: "REPORT",
            index_pk: REPORTS_PK.to_string(),
            index_sk: time_key(report.generated_at, &report.report_id),
        };
        self.put_indexed(at, to_json("put report", report)?).await
    }

    async fn latest_report(&self) -> Result<Option<ReconcileReport>, StateError> {
        let what = "latest report";
        match self.newest(what, REPORTS_PK, 1).await?.first() {
            Some(item) => Ok(Some(from_blob(item, "record", what)?)),
            None => Ok(None),
        }
    }

    async fn list_reports(&self, limit: usize) -> Result<Vec<ReconcileReport>, StateError> {
        let what = "list reports";
        self.newest(what, REPORTS_PK, limit)
            .await?
            .iter()
            .map(|item| from_blob(item, "record", what))
            .collect()
    }

    async fn put_quarantine(&self, entry: &QuarantineEntry) -> Result<(), StateError> {
        let at = Indexed {
            what: "put quarantine",
            id_pk: format!("QUAR#{}", entry.id),
            id_sk: "QUAR",
            index_pk: QUARANTINE_PK.to_string(),
            index_sk: time_key(entry.received_at, &entry.id),
        };
        self.put_indexed(at, to_json("put quarantine", entry)?)
            .await
    }

    async fn get_quarantine(&self, id: &str) -> Result<Option<QuarantineEntry>, StateError> {
        let what = "get quarantine";
        match self.get_item(what, &format!("QUAR#{id}"), "QUAR").await? {
            Some(item) => Ok(Some(from_blob(&item, "record", what)?)),
            None => Ok(None),
        }
    }

    async fn list_quarantine(&self, limit: usize) -> Result<Vec<QuarantineEntry>, StateError> {
        let what = "list quarantine";
        self.newest(what, QUARANTINE_PK, limit)
            .await?
            .iter()
            .map(|item| from_blob(item, "record", what))
            .collect()
    }

    async fn get_destination_record(
        &self,
        destination: &str,
        key_: &str,
    ) -> Result<Option<DestinationRecord>, StateError> {
        let what = "get destination record";
        match self.get_item(what, &dest_pk(destination), key_).await? {
            Some(item) => Ok(Some(dest_record(destination, &item, what)?)),
            None => Ok(None),
        }
    }

    async fn put_destination_record(
        &self,
        destination: &str,
        key_: &str,
        value: &serde_json::Value,
        expected: Option<u64>,
    ) -> Result<RecordWrite, StateError> {
        let what = "put destination record";
        let version = expected.unwrap_or(0) + 1;
        let signed = |v: u64| {
            i64::try_from(v).map_err(|_| StateError::permanent(format!("{what}: version overflow")))
        };
        let mut item = key(dest_pk(destination), key_);
        item.insert("version".into(), n(signed(version)?));
        item.insert("record".into(), s(to_json(what, value)?));
        let written = match expected {
            None => {
                self.put_conditional(what, item, "attribute_not_exists(#pk)", &[("#pk", PK)], &[])
                    .await?
            }
            Some(v) => {
                self.put_conditional(
                    what,
                    item,
                    "#version = :expected",
                    &[("#version", "version")],
                    &[(":expected", n(signed(v)?))],
                )
                .await?
            }
        };
        Ok(if written {
            RecordWrite::Applied { version }
        } else {
            RecordWrite::Conflict
        })
    }

    async fn list_destination_records(
        &self,
        destination: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<DestinationRecord>, StateError> {
        let what = "list destination records";
        let pk = dest_pk(destination);
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let want = limit - out.len();
            let (items, last) = self
                .retrying(what, || async {
                    let mut req = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_values(":pk", s(pk.clone()))
                        .consistent_read(true)
                        .set_limit(Some(limit_i32(want)))
                        .set_exclusive_start_key(start.clone());
                    req = if prefix.is_empty() {
                        req.key_condition_expression("#pk = :pk")
                    } else {
                        req.key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                            .expression_attribute_names("#sk", SK)
                            .expression_attribute_values(":prefix", s(prefix))
                    };
                    req.send()
                        .await
                        .map(|o| (o.items.unwrap_or_default(), o.last_evaluated_key))
                        .map_err(|e| classify(what, e))
                })
                .await?;
            for item in &items {
                out.push(dest_record(destination, item, what)?);
            }
            match last {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn delete_destination_record(
        &self,
        destination: &str,
        key_: &str,
        expected: u64,
    ) -> Result<bool, StateError> {
        let what = "delete destination record";
        let expected = i64::try_from(expected)
            .map_err(|_| StateError::permanent(format!("{what}: version overflow")))?;
        let pk = dest_pk(destination);
        self.retrying(what, || async {
            match self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(pk.clone(), key_)))
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(expected))
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                {
                    Ok(false)
                }
                Err(e) => Err(classify(what, e)),
            }
        })
        .await
    }
}
