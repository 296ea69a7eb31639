//! The warehouse `events` table: every event op of an events export (a
//! forwarded event such as `order_placed`, or a reporting-webhook metric
//! such as `email.opened`) becomes one row.
//!
//! ## Layout
//! `<location>/events/export=<export>/dt=<YYYY-MM-DD>/part-<digest>.jsonl.gz`:
//! gzip JSON Lines under Hive-style partitions, `dt` the UTC day of the
//! event time (not of delivery), so a late event lands in its own day.
//!
//! ## One object per event
//! Delivery fills a request across jobs, and which jobs share a request
//! depends on the queue, so a name derived from the request would change
//! when a job is delivered again (its first answer lost, its claim
//! expired) next to other jobs, and its rows would be written twice. An
//! event job holds one event (`event:<event_id>`), so each event is written
//! whole to its own object, named by a digest of the destination, export,
//! binding label, person and source event (id and name): a redelivered
//! event rewrites the same object with the same bytes (gzip without a
//! timestamp, no write time in the row) and is never counted twice,
//! whatever it travelled with. The cost is one PUT per event (a send
//! writes up to 16 at once; the destination's limits count sends, not PUTs);
//! at high volumes compact the table (e.g. a daily Athena CTAS into Parquet).
//!
//! ## Row schema
//! Every row has every key (`null` when unknown), all lowercase:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `event_id` | string | the source event's id (Customer.io's `event_id`) |
//! | `event_name` | string | the source name: `order_placed`, `email.opened` |
//! | `event_time` | string | when it happened, RFC 3339 UTC, milliseconds |
//! | `received_at` | string | when intake accepted it, RFC 3339 UTC |
//! | `export` | string | the export (also the `export=` partition) |
//! | `audience` | string | the binding's label (`audience:`) |
//! | `person_key` | string | our stable person key (`id:…`, `cio:…`, `email:<digest>`) |
//! | `customer_id` | string | the person's id, if any |
//! | `email_sha256` | string | SHA-256 hex of the normalised email (trimmed, lower case) |
//! | `phone_sha256` | string | SHA-256 hex of the E.164 phone (with `+`) |
//! | `value` | double | conversion value (the taxonomy's `value` property) |
//! | `currency` | string | ISO 4217, upper case |
//! | `order_id` | string | the taxonomy's `order_id` property |
//! | `properties` | map<string,string> | the event's allow-listed properties |
//! | `object_type` | string | reporting metrics: `email`, `sms`, `push`, … else null |
//! | `metric` | string | reporting metrics: `opened`, `clicked`, … else null |
//!
//! Raw email addresses and phone numbers never reach a row. `properties`
//! keeps scalar values as they are; a nested object or array becomes its
//! JSON text, so the Hive JSON SerDe can read every value as a string.
//! The Athena DDL is [`ATHENA_DDL`], quoted in the README ("The events
//! table").

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use super::WarehouseDestination;
use crate::destinations::{Destination, DestinationError, OpOutcome};
use crate::domain::identity::{normalize_email, normalize_phone_e164, sha256_hex};
use crate::domain::model::{DeliveryOp, EventPayload, Millis, OpKind};
use crate::domain::spec::{ExportDestination, ExportMode, ExportSpec};
use crate::ports::{ObjectStore, ObjectStoreError};

/// The table's directory under the warehouse location.
pub const TABLE_DIR: &str = "events";
pub const CONTENT_TYPE: &str = "application/gzip";
/// Objects written at once by one send.
const PUT_CONCURRENCY: usize = 16;
/// Hex digits of the SHA-256 in a part's name: 128 bits, collisions moot.
const DIGEST_HEX: usize = 32;

/// Object types of Customer.io reporting webhooks (API-CONTRACTS §1a).
pub const REPORTING_OBJECT_TYPES: &[&str] = &[
    "customer", "email", "sms", "push", "in_app", "slack", "webhook", "whatsapp",
];

/// The location the README's DDL names; [`athena_ddl`] replaces it.
pub const DDL_LOCATION_PLACEHOLDER: &str = "s3://your-bucket/your-prefix";

/// Athena DDL of the table (Hive JSON SerDe, partition projection). `export`
/// is a partition column, so it is not repeated among the data columns;
/// `dt` is the UTC day of `event_time`. With an injected `export`, every
/// query names its export (`WHERE export = '…'`).
pub const ATHENA_DDL: &str = r#"CREATE EXTERNAL TABLE IF NOT EXISTS dataout_events (
  `event_id`     string,
  `event_name`   string,
  `event_time`   string,
  `received_at`  string,
  `audience`     string,
  `person_key`   string,
  `customer_id`  string,
  `email_sha256` string,
  `phone_sha256` string,
  `value`        double,
  `currency`     string,
  `order_id`     string,
  `properties`   map<string,string>,
  `object_type`  string,
  `metric`       string
)
PARTITIONED BY (`export` string, `dt` string)
ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'
LOCATION 's3://your-bucket/your-prefix/events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.export.type' = 'injected',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://your-bucket/your-prefix/events/export=${export}/dt=${dt}/'
);"#;

/// [`ATHENA_DDL`] for a warehouse at `location` (`s3://bucket/prefix`).
pub fn athena_ddl(location: &str) -> String {
    ATHENA_DDL.replace(DDL_LOCATION_PLACEHOLDER, location.trim_end_matches('/'))
}

/// Where an events or conversions export's rows go (its event ops land in
/// the `events` table); `None` for membership and attributes exports.
pub fn output_prefix(export: &ExportSpec) -> Option<String> {
    matches!(export.mode, ExportMode::Events | ExportMode::Conversions)
        .then(|| format!("{TABLE_DIR}/export={}/", export.name))
}

/// One row of the `events` table (see the module docs for the schema).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub event_id: String,
    pub event_name: String,
    pub event_time: String,
    pub received_at: String,
    pub export: String,
    pub audience: String,
    pub person_key: String,
    pub customer_id: Option<String>,
    pub email_sha256: Option<String>,
    pub phone_sha256: Option<String>,
    pub value: Option<f64>,
    pub currency: Option<String>,
    pub order_id: Option<String>,
    pub properties: BTreeMap<String, Value>,
    pub object_type: Option<String>,
    pub metric: Option<String>,
}

/// `(object_type, metric)` of a reporting-metric event name such as
/// `email.opened`; `None` for any other name.
pub fn reporting_metric(name: &str) -> Option<(&str, &str)> {
    let (object_type, metric) = name.split_once('.')?;
    (REPORTING_OBJECT_TYPES.contains(&object_type) && !metric.is_empty())
        .then_some((object_type, metric))
}

/// RFC 3339 UTC with milliseconds (`2026-12-02T03:08:13.123Z`).
pub fn rfc3339_utc(ms: Millis) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// SHA-256 of the normalised email and E.164 phone, as the webhook sends
/// them; a value that does not normalise is left out.
pub fn hashed_contacts(export: &ExportSpec, op: &DeliveryOp) -> (Option<String>, Option<String>) {
    let email = op
        .ids
        .email()
        .and_then(|e| normalize_email(e, false).ok())
        .map(|e| sha256_hex(&e));
    let region = export.identity.default_phone_region.as_deref();
    let phone = op
        .ids
        .phone()
        .and_then(|p| normalize_phone_e164(p, region).ok())
        .map(|p| sha256_hex(&p));
    (email, phone)
}

/// Why an event op cannot be forwarded at all (to the warehouse or the
/// webhook), or `None` when it can.
pub fn invalid_event(op: &DeliveryOp) -> Option<String> {
    let Some(event) = op.event.as_ref() else {
        return Some("event op without an event payload".into());
    };
    if event.event_id.trim().is_empty() {
        return Some("event without an event id".into());
    }
    if event.name.trim().is_empty() {
        return Some("event without a name".into());
    }
    if rfc3339_utc(op.source_ts).is_none() {
        return Some(format!("event time {} is out of range", op.source_ts));
    }
    None
}

fn has_identifier(op: &DeliveryOp) -> bool {
    let ids = &op.ids;
    ids.id().is_some() || ids.cio_id().is_some() || ids.email().is_some() || ids.phone().is_some()
}

/// Properties as the table holds them: scalars kept, nested values as JSON text.
fn table_properties(event: &EventPayload) -> BTreeMap<String, Value> {
    event
        .data
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Array(_) | Value::Object(_) => Value::String(v.to_string()),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

impl EventRow {
    /// The row of one event op; `Err` is the reason it is invalid.
    pub fn from_op(export: &ExportSpec, op: &DeliveryOp) -> Result<EventRow, String> {
        if let Some(reason) = invalid_event(op) {
            return Err(reason);
        }
        let event = op
            .event
            .as_ref()
            .ok_or("event op without an event payload")?;
        let event_time = rfc3339_utc(op.source_ts)
            .ok_or_else(|| format!("event time {} is out of range", op.source_ts))?;
        // An intake time out of range is ours to fix, not the event's: fall back.
        let received_at = rfc3339_utc(op.intake_ts).unwrap_or_else(|| event_time.clone());
        let (email_sha256, phone_sha256) = hashed_contacts(export, op);
        let (object_type, metric) = match reporting_metric(&event.name) {
            Some((o, m)) => (Some(o.to_string()), Some(m.to_string())),
            None => (None, None),
        };
        Ok(EventRow {
            event_id: event.event_id.clone(),
            event_name: event.name.clone(),
            event_time,
            received_at,
            export: export.name.clone(),
            audience: op.audience.clone(),
            person_key: op.person_key.as_str().to_string(),
            customer_id: op.ids.id().map(str::to_string),
            email_sha256,
            phone_sha256,
            value: event.value.filter(|v| v.is_finite()),
            currency: event.currency.clone(),
            order_id: event.order_id.clone(),
            properties: table_properties(event),
            object_type,
            metric,
        })
    }

    /// The row's partition day: the UTC date of `event_time`.
    pub fn dt(&self) -> &str {
        self.event_time.get(..10).unwrap_or("1970-01-01")
    }
}

/// The object an event's row is written to: the same event gives the same key.
pub fn part_key(destination: &str, row: &EventRow) -> String {
    let mut h = Sha256::new();
    for part in [
        destination,
        row.export.as_str(),
        row.audience.as_str(),
        row.person_key.as_str(),
        row.event_id.as_str(),
        row.event_name.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = hex::encode(h.finalize());
    let short = digest.get(..DIGEST_HEX).unwrap_or(&digest);
    format!(
        "{TABLE_DIR}/export={}/dt={}/part-{short}.jsonl.gz",
        row.export,
        row.dt()
    )
}

/// Gzip JSON Lines of `rows`: the same rows give the same bytes.
pub fn encode_rows(rows: &[EventRow]) -> std::io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    for row in rows {
        serde_json::to_writer(&mut gz, row)?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

/// The rows of a part (for tests and operators reading the table).
pub fn decode_rows(body: &[u8]) -> std::io::Result<Vec<Value>> {
    let mut text = String::new();
    GzDecoder::new(body).read_to_string(&mut text)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::from))
        .collect()
}

/// Write each event op of `ops` as its own part. One outcome per op: an
/// op without identifier is unmatched, an unusable one invalid; a part
/// that could not be written is retried (or rejected, for a permanent store
/// error) alone. When no part could be written the whole request fails.
pub async fn write_events(
    store: &Arc<dyn ObjectStore>,
    destination: &str,
    export: &ExportSpec,
    ops: &[DeliveryOp],
) -> Result<Vec<OpOutcome>, DestinationError> {
    let permanent = |message: String| DestinationError::Permanent {
        destination: destination.to_string(),
        message,
    };
    let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
    let mut parts = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.op != OpKind::Event {
            outcomes[i] = Some(OpOutcome::Invalid {
                reason: "not an event op: the events table holds events only".into(),
            });
            continue;
        }
        let row = match EventRow::from_op(export, op) {
            Ok(row) => row,
            Err(reason) => {
                outcomes[i] = Some(OpOutcome::Invalid { reason });
                continue;
            }
        };
        if !has_identifier(op) {
            outcomes[i] = Some(OpOutcome::Unmatched {
                reason: "no identifier (id, cio_id, email or phone)".into(),
            });
            continue;
        }
        let key = part_key(destination, &row);
        let body = encode_rows(std::slice::from_ref(&row))
            .map_err(|e| permanent(format!("cannot encode an event row: {e}")))?;
        parts.push((i, key, body));
    }

    let attempted = parts.len();
    let mut failures: Vec<(usize, ObjectStoreError)> = Vec::new();
    let mut written = 0usize;
    let mut pending = parts.into_iter();
    loop {
        let mut set = JoinSet::new();
        for (i, key, body) in pending.by_ref().take(PUT_CONCURRENCY) {
            let store = store.clone();
            set.spawn(async move { (i, store.put(&key, body, CONTENT_TYPE).await) });
        }
        if set.is_empty() {
            break;
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, Ok(()))) => {
                    outcomes[i] = Some(OpOutcome::Accepted);
                    written += 1;
                }
                Ok((i, Err(e))) => failures.push((i, e)),
                // A write task that panicked or was cancelled: its op
                // stays without outcome and is retried below.
                Err(e) => tracing::warn!(destination, error = %e, "event part write task failed"),
            }
        }
    }
    if attempted > 0 && written == 0 {
        let retryable = failures.is_empty()
            || failures
                .iter()
                .any(|(_, e)| matches!(e, ObjectStoreError::Retryable { .. }));
        let message = failures
            .first()
            .map(|(_, e)| e.to_string())
            .unwrap_or_else(|| "no event part could be written".into());
        return Err(if retryable {
            DestinationError::Retryable {
                destination: destination.to_string(),
                message,
                retry_after: None,
            }
        } else {
            permanent(message)
        });
    }
    for (i, e) in failures {
        outcomes[i] = Some(match e {
            ObjectStoreError::Retryable { message } => OpOutcome::Retry { reason: message },
            ObjectStoreError::Permanent { message } => OpOutcome::Rejected { reason: message },
        });
    }
    tracing::debug!(destination, export = %export.name, parts = written, "warehouse event parts written");
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(OpOutcome::Retry {
                reason: "event part not written".into(),
            })
        })
        .collect())
}

impl WarehouseDestination {
    /// `send` for a batch holding event ops: the events go to the `events`
    /// table, any other ops to the membership rows; outcomes keep the order.
    pub(super) async fn send_with_events(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        ops: &[DeliveryOp],
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        let (event_idx, other_idx): (Vec<usize>, Vec<usize>) =
            (0..ops.len()).partition(|&i| ops[i].op == OpKind::Event);
        let pick = |idx: &[usize]| -> Vec<DeliveryOp> {
            idx.iter().filter_map(|&i| ops.get(i).cloned()).collect()
        };
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
        if !other_idx.is_empty() {
            let out = self.send(export, binding, &pick(&other_idx)).await?;
            for (&i, o) in other_idx.iter().zip(out) {
                outcomes[i] = Some(o);
            }
        }
        let out = write_events(&self.store, &self.name, export, &pick(&event_idx)).await?;
        for (&i, o) in event_idx.iter().zip(out) {
            outcomes[i] = Some(o);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(OpOutcome::Retry {
                    reason: "destination returned no outcome for this op".into(),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
