//! The warehouse destination: JSON Lines objects under Hive-style partitions
//! (`export=<name>/dt=<YYYY-MM-DD>/`), in a local directory or S3.
//!
//! Each `send` writes one object named by a digest of its ops, so a retried
//! send rewrites the same object and never duplicates rows (API-CONTRACTS
//! §5). Rows carry a SHA-256 of the email, never the address or the phone.
//!
//! Event ops (events exports) go to the `events` table instead, one gzip
//! JSON Lines object per event under `events/export=<name>/dt=<day>/`: see
//! `events` for its layout, row schema and Athena DDL.

pub mod events;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::DateTime;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::destinations::{Destination, DestinationError, OpOutcome};
use crate::domain::model::{Attributes, DeliveryOp, EventPayload, Millis, OpKind};
use crate::domain::spec::{
    DestinationKind, DestinationSpec, ExportDestination, ExportMode, ExportSpec,
};
use crate::ports::{Clock, ObjectStore, ObjectStoreError};

const CONTENT_TYPE: &str = "application/x-ndjson";

/// Hex digits of the SHA-256 in a part's name: 128 bits, collisions moot.
const DIGEST_HEX: usize = 32;

pub struct WarehouseDestination {
    pub(super) name: String,
    batch_size: usize,
    pub(super) store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for WarehouseDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseDestination")
            .field("name", &self.name)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// One row of the table.
#[derive(Debug, Serialize)]
struct Row<'a> {
    export: &'a str,
    /// `membership`, or `attributes`: an attribute-only sync, whose rows are
    /// all `update` (the person's allow-listed attributes as last sent;
    /// nothing is written when they leave the segment).
    mode: ExportMode,
    destination: &'a str,
    audience: &'a str,
    tier: Option<&'a str>,
    op: OpKind,
    person_key: &'a str,
    id: Option<&'a str>,
    cio_id: Option<&'a str>,
    email_sha256: Option<String>,
    attributes: &'a Attributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a EventPayload>,
    source_ts: Millis,
    intake_ts: Millis,
    written_at: Millis,
}

fn email_sha256(email: &str) -> String {
    hex::encode(Sha256::digest(email.trim().to_lowercase().as_bytes()))
}

fn has_identifier(op: &DeliveryOp) -> bool {
    let ids = &op.ids;
    ids.id().is_some() || ids.cio_id().is_some() || ids.email().is_some() || ids.phone().is_some()
}

/// UTC date of a timestamp, `YYYY-MM-DD`.
fn utc_date(ms: Millis) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d").to_string())
}

impl WarehouseDestination {
    pub fn new(
        name: String,
        spec: &DestinationSpec,
        store: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            name,
            batch_size: spec.batch_size.max(1),
            store,
            clock,
        }
    }

    /// The object a batch of ops lands in: the same ops give the same key.
    fn part_key(
        &self,
        export: &str,
        ops: &[DeliveryOp],
        now: Millis,
    ) -> Result<String, DestinationError> {
        let mut h = Sha256::new();
        for part in [export, self.name.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let body = serde_json::to_vec(ops)
            .map_err(|e| self.permanent(format!("cannot encode ops: {e}")))?;
        h.update(&body);
        let digest = hex::encode(h.finalize());
        let first_ts = ops.first().map(|op| op.source_ts).unwrap_or(now);
        let dt = utc_date(first_ts)
            .or_else(|| utc_date(now))
            .ok_or_else(|| self.permanent(format!("timestamp {first_ts} is out of range")))?;
        let short = digest.get(..DIGEST_HEX).unwrap_or(&digest);
        Ok(format!("export={export}/dt={dt}/part-{short}.jsonl"))
    }

    fn store_error(&self, e: ObjectStoreError) -> DestinationError {
        match e {
            ObjectStoreError::Retryable { message } => DestinationError::Retryable {
                destination: self.name.clone(),
                message,
                retry_after: None,
            },
            ObjectStoreError::Permanent { message } => self.permanent(message),
        }
    }

    fn permanent(&self, message: String) -> DestinationError {
        DestinationError::Permanent {
            destination: self.name.clone(),
            message,
        }
    }
}

#[async_trait]
impl Destination for WarehouseDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Warehouse
    }

    fn max_batch(&self) -> usize {
        self.batch_size
    }

    async fn send(
        &self,
        export: &ExportSpec,
        _binding: &ExportDestination,
        ops: &[DeliveryOp],
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        if ops.iter().any(|op| op.op == OpKind::Event) {
            return self.send_with_events(export, _binding, ops).await;
        }
        let now = self.clock.now_ms();
        let mut body = Vec::new();
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            if !has_identifier(op) {
                outcomes.push(OpOutcome::Unmatched {
                    reason: "no identifier (id, cio_id, email or phone)".into(),
                });
                continue;
            }
            let row = Row {
                export: &export.name,
                mode: export.mode,
                destination: &self.name,
                audience: &op.audience,
                tier: op.tier.as_deref(),
                op: op.op,
                person_key: op.person_key.as_str(),
                id: op.ids.id(),
                cio_id: op.ids.cio_id(),
                email_sha256: op.ids.email().map(email_sha256),
                attributes: &op.attributes,
                event: op.event.as_ref(),
                source_ts: op.source_ts,
                intake_ts: op.intake_ts,
                written_at: now,
            };
            serde_json::to_writer(&mut body, &row)
                .map_err(|e| self.permanent(format!("cannot encode a row: {e}")))?;
            body.push(b'\n');
            outcomes.push(OpOutcome::Accepted);
        }
        if body.is_empty() {
            return Ok(outcomes);
        }
        let key = self.part_key(&export.name, ops, now)?;
        self.store
            .put(&key, body, CONTENT_TYPE)
            .await
            .map_err(|e| self.store_error(e))?;
        tracing::debug!(destination = %self.name, export = %export.name, key = %key, rows = outcomes.len(), "warehouse part written");
        Ok(outcomes)
    }

    /// The row of `op` in its day's partition: written once, with the op's
    /// person, kind, audience and source time.
    async fn read_back(
        &self,
        export: &ExportSpec,
        _binding: &ExportDestination,
        op: &DeliveryOp,
    ) -> Result<crate::destinations::ReadBack, DestinationError> {
        if op.op == OpKind::Event {
            return Ok(crate::destinations::ReadBack::NotReadable(
                "event rows are checked by the events table's own tests".into(),
            ));
        }
        let Some(dt) = utc_date(op.source_ts) else {
            return Ok(crate::destinations::ReadBack::NotReadable(
                "the op's time is out of range".into(),
            ));
        };
        let prefix = format!("export={}/dt={dt}/", export.name);
        let keys = self
            .store
            .list(&prefix)
            .await
            .map_err(|e| self.store_error(e))?;
        let mut found = 0usize;
        for key in &keys {
            let Some(bytes) = self.store.get(key).await.map_err(|e| self.store_error(e))? else {
                continue;
            };
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let Ok(row) = serde_json::from_slice::<serde_json::Value>(line) else {
                    continue;
                };
                let op_name = serde_json::to_value(op.op).unwrap_or_default();
                if row["person_key"] == op.person_key.0.as_str()
                    && row["op"] == op_name
                    && row["audience"] == op.audience.as_str()
                    && row["source_ts"] == op.source_ts
                {
                    found += 1;
                }
            }
        }
        Ok(match found {
            1 => crate::destinations::ReadBack::Agrees(format!(
                "one row under {}",
                self.store.locate(&prefix)
            )),
            0 => crate::destinations::ReadBack::Disagrees(format!(
                "no row for the op under {}",
                self.store.locate(&prefix)
            )),
            n => {
                crate::destinations::ReadBack::Disagrees(format!("the op's row is there {n} times"))
            }
        })
    }

    fn describe_output(&self, export: &ExportSpec, _binding: &ExportDestination) -> String {
        if let Some(prefix) = events::output_prefix(export) {
            return self.store.locate(&prefix);
        }
        self.store.locate(&format!("export={}/", export.name))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use super::*;
    use crate::adapters::local_fs::LocalDirStore;
    use crate::domain::model::{Identifiers, PersonKey};
    use crate::domain::spec::{
        Cadence, DestinationSettings, ExportMode, ExportSource, GuardRails, IdKind, IdentitySpec,
    };
    use crate::ports::ManualClock;

    const TS: Millis = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn spec() -> DestinationSpec {
        DestinationSpec {
            name: "lake".into(),
            kind: DestinationKind::Warehouse,
            base_url: None,
            batch_size: 500,
            max_concurrency: 1,
            max_requests_per_second: None,
            max_attempts: 3,
            settings: DestinationSettings::Warehouse {
                location: "./out".into(),
            },
        }
    }

    fn export() -> ExportSpec {
        ExportSpec {
            name: "vip".into(),
            source: ExportSource::Action,
            mode: ExportMode::Membership,
            cadence: Cadence::default(),
            identity: IdentitySpec {
                golden: IdKind::Id,
                fallbacks: vec![],
                default_phone_region: None,
            },
            attributes: vec![],
            tiers: vec![],
            exit_on: vec![],
            suppress: vec![],
            destinations: vec![binding()],
            guard_rails: GuardRails::default(),
            test_profiles: vec![],
        }
    }

    fn binding() -> ExportDestination {
        ExportDestination {
            destination: "lake".into(),
            audience: "vip_members".into(),
            tier_audiences: BTreeMap::new(),
            keys: vec![],
        }
    }

    fn op(n: u32, ids: Identifiers) -> DeliveryOp {
        let mut attributes = Attributes::new();
        attributes.insert("plan".into(), json!("pro"));
        DeliveryOp {
            op: OpKind::Add,
            person_key: PersonKey(format!("id:{n}")),
            ids,
            audience: "vip_members".into(),
            tier: Some("gold".into()),
            attributes,
            event: None,
            source_ts: TS + i64::from(n),
            intake_ts: TS + 50,
        }
    }

    fn ids(n: u32) -> Identifiers {
        Identifiers {
            id: Some(format!("u{n}")),
            email: Some(format!("User{n}@Example.com")),
            cio_id: Some(format!("c{n}")),
            phone: Some("+14155550100".into()),
        }
    }

    fn setup() -> (
        tempfile::TempDir,
        Arc<LocalDirStore>,
        Arc<ManualClock>,
        WarehouseDestination,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(LocalDirStore::new(dir.path()));
        let clock = Arc::new(ManualClock::new(TS + 1_000));
        let dest = WarehouseDestination::new("lake".into(), &spec(), store.clone(), clock.clone());
        (dir, store, clock, dest)
    }

    async fn rows(store: &LocalDirStore, key: &str) -> Vec<Value> {
        let body = store.get(key).await.expect("get").expect("object exists");
        String::from_utf8(body)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[tokio::test]
    async fn a_retried_send_rewrites_the_same_object() {
        let (_dir, store, clock, dest) = setup();
        let ops = vec![op(1, ids(1)), op(2, ids(2))];
        let first = dest.send(&export(), &binding(), &ops).await.expect("send");
        assert_eq!(first, vec![OpOutcome::Accepted, OpOutcome::Accepted]);
        clock.advance(std::time::Duration::from_secs(60));
        dest.send(&export(), &binding(), &ops).await.expect("retry");
        let keys = store.list("export=vip/").await.expect("list");
        assert_eq!(keys.len(), 1, "{keys:?}");
        let got = rows(&store, &keys[0]).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["written_at"], json!(TS + 61_000));
    }

    #[tokio::test]
    async fn parts_land_under_export_and_utc_date_partitions() {
        let (_dir, store, _clock, dest) = setup();
        dest.send(&export(), &binding(), &[op(1, ids(1))])
            .await
            .expect("send");
        let keys = store.list("").await.expect("list");
        assert_eq!(keys.len(), 1);
        let key = &keys[0];
        let part = key
            .strip_prefix("export=vip/dt=2023-11-14/part-")
            .and_then(|k| k.strip_suffix(".jsonl"))
            .unwrap_or_else(|| panic!("unexpected key {key}"));
        assert_eq!(part.len(), DIGEST_HEX);
        assert!(part.chars().all(|c| c.is_ascii_hexdigit()));
        // Other ops, another part.
        dest.send(&export(), &binding(), &[op(3, ids(3))])
            .await
            .expect("send");
        assert_eq!(
            store
                .list("export=vip/dt=2023-11-14/")
                .await
                .expect("list")
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn rows_carry_hashed_email_and_never_raw_contact_details() {
        let (_dir, store, _clock, dest) = setup();
        dest.send(&export(), &binding(), &[op(1, ids(1))])
            .await
            .expect("send");
        let key = store.list("").await.expect("list").remove(0);
        let raw =
            String::from_utf8(store.get(&key).await.expect("get").expect("object")).expect("utf-8");
        assert!(!raw.to_lowercase().contains("user1@example.com"));
        assert!(!raw.contains("4155550100"));
        let row = &rows(&store, &key).await[0];
        assert_eq!(
            row["email_sha256"],
            json!(email_sha256("user1@example.com"))
        );
        assert_eq!(row["export"], json!("vip"));
        assert_eq!(row["destination"], json!("lake"));
        assert_eq!(row["audience"], json!("vip_members"));
        assert_eq!(row["tier"], json!("gold"));
        assert_eq!(row["op"], json!("add"));
        assert_eq!(row["person_key"], json!("id:1"));
        assert_eq!(row["id"], json!("u1"));
        assert_eq!(row["cio_id"], json!("c1"));
        assert_eq!(row["attributes"], json!({"plan": "pro"}));
        assert_eq!(row["source_ts"], json!(TS + 1));
        assert_eq!(row["intake_ts"], json!(TS + 50));
    }

    #[tokio::test]
    async fn an_op_without_identifiers_is_unmatched_and_not_written() {
        let (_dir, store, _clock, dest) = setup();
        let out = dest
            .send(
                &export(),
                &binding(),
                &[op(1, Identifiers::default()), op(2, ids(2))],
            )
            .await
            .expect("send");
        assert!(matches!(out[0], OpOutcome::Unmatched { .. }));
        assert_eq!(out[1], OpOutcome::Accepted);
        let key = store.list("").await.expect("list").remove(0);
        assert_eq!(rows(&store, &key).await.len(), 1);

        let (_dir, store, _clock, dest) = setup();
        let out = dest
            .send(&export(), &binding(), &[op(1, Identifiers::default())])
            .await
            .expect("send");
        assert!(matches!(out[0], OpOutcome::Unmatched { .. }));
        assert!(store.list("").await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn output_is_the_exports_partition_root() {
        let (dir, _store, _clock, dest) = setup();
        assert_eq!(
            dest.describe_output(&export(), &binding()),
            dir.path().join("export=vip/").display().to_string()
        );
        assert_eq!(
            dest.audience_size(&export(), &binding())
                .await
                .expect("size"),
            None
        );
        assert_eq!(dest.kind(), DestinationKind::Warehouse);
        assert_eq!(dest.max_batch(), 500);
    }
}
