//! Reading back what Google did with our requests: each accepted request
//! is recorded in the state store with the people it carried, its status is
//! read with `GET v1/requestStatus:retrieve` first `status_poll_after` after
//! sending and then at doubling gaps, and FAILED / PARTIAL_SUCCESS outcomes
//! move the counters (see the parent module's doc and
//! `docs/google-data-manager.md`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{errors, DataManagerDestination, Verb, STATUS_PATH};
use crate::destinations::{DestinationError, ReadBack, SettleSummary};
use crate::domain::model::{counter, CounterScope, DeliveryOp};
use crate::ports::RecordWrite;

/// People per state record of a request (keeps items far below 400 KB).
const PEOPLE_PER_RECORD: usize = 2_000;
/// Requests whose status one `settle` reads at most.
const STATUS_READS_PER_SETTLE: usize = 20;
/// Longest gap between two status reads of one request.
const MAX_POLL_GAP_MS: i64 = 6 * 3_600_000;
/// Processing errors that mean the record was already there: it landed.
const LANDED_REASONS: &[&str] = &[
    "PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID",
    "PROCESSING_ERROR_REASON_DUPLICATE_GCLID",
];

/// Wait before the next status read of a request still PROCESSING after
/// `polls` (≥ 1) reads: the first delay, doubled after every further read
/// (at least 1 s, at most [`MAX_POLL_GAP_MS`]).
pub(super) fn poll_gap(first_ms: i64, polls: u64) -> i64 {
    let base = first_ms.max(1_000);
    let doublings = u32::try_from(polls.saturating_sub(1).min(20)).unwrap_or(20);
    base.saturating_mul(1_i64 << doublings)
        .min(MAX_POLL_GAP_MS.max(base))
}

impl DataManagerDestination {
    /// Record a request id (in parts) so a later `settle` reads its status.
    /// A failure to record is logged, not raised: the platform has the data.
    pub(super) async fn record_request(
        &self,
        request_id: &str,
        method: &str,
        export: &str,
        list: &str,
        people: Vec<(String, &'static str)>,
    ) {
        if request_id.is_empty() {
            tracing::warn!(destination = %self.name, "Data Manager answered no requestId; its status cannot be read");
            return;
        }
        let sent_at = self.clock.now_ms();
        let chunks: Vec<&[(String, &str)]> = if people.is_empty() {
            vec![&[]]
        } else {
            people.chunks(PEOPLE_PER_RECORD).collect()
        };
        let parts = chunks.len();
        for (part, chunk) in chunks.into_iter().enumerate() {
            let value = json!({
                "request_id": request_id,
                "method": method,
                "export": export,
                "list": list,
                "sent_at": sent_at,
                "part": part,
                "parts": parts,
                "people": chunk.iter().map(|(p, t)| json!([p, t])).collect::<Vec<_>>(),
            });
            let key = format!("req/{sent_at:020}/{request_id}/{part:04}");
            if let Err(e) = self
                .state
                .put_destination_record(&self.name, &key, &value, None)
                .await
            {
                tracing::warn!(destination = %self.name, request_id, error = %e, "could not record the request for its status");
            }
        }
    }

    /// Account FAILED / PARTIAL_SUCCESS results of one request.
    async fn account_failures(
        &self,
        request_id: &str,
        records: &[(String, u64, Value)],
        status: &str,
        reasons: &[(String, u64)],
    ) -> Result<u64, DestinationError> {
        let first = records.first().map(|(_, _, v)| v);
        let export = first
            .and_then(|v| v.get("export"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let method = first
            .and_then(|v| v.get("method"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reason_text = if reasons.is_empty() {
            format!("Google {status} the request without a reason")
        } else {
            reasons
                .iter()
                .map(|(r, n)| format!("{r} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let people: Vec<(String, String)> = records
            .iter()
            .filter_map(|(_, _, v)| v.get("people").and_then(Value::as_array))
            .flatten()
            .filter_map(|p| {
                Some((
                    p.get(0)?.as_str()?.to_string(),
                    p.get(1)?.as_str()?.to_string(),
                ))
            })
            .collect();
        if method == "remove_all" {
            tracing::warn!(destination = %self.name, request_id, status, reasons = %reason_text, "full replace: remove-all failed");
            return Ok(0);
        }
        let scope = CounterScope::delivery(&export, &self.name);
        if status == "FAILED" {
            let now = self.clock.now_ms();
            let (mut adds, mut removes) = (0i64, 0i64);
            for (person, tag) in &people {
                match tag.as_str() {
                    "a" => adds += 1,
                    "r" => removes += 1,
                    _ => {}
                }
                let key = format!("rejected/{export}/{person}");
                let value = json!({
                    "reason": format!("Google Data Manager: {reason_text}"),
                    "request_id": request_id,
                    "op": tag,
                    "at": now,
                });
                self.put_latest(&key, &value).await?;
            }
            let n = people.len() as i64;
            self.state
                .add_counters(
                    &scope,
                    &[
                        (counter::ACCEPTED, -n),
                        (counter::REJECTED, n),
                        (counter::ADDS_ACCEPTED, -adds),
                        (counter::REMOVES_ACCEPTED, -removes),
                    ],
                )
                .await
                .map_err(|e| self.state_error(e))?;
            tracing::warn!(destination = %self.name, request_id, people = n, reasons = %reason_text, "Data Manager request FAILED: its people are rejected");
            Ok(n as u64)
        } else {
            let failed: u64 = reasons.iter().map(|(_, n)| *n).sum();
            let n = failed.min(people.len() as u64) as i64;
            let value = json!({
                "export": export,
                "request_id": request_id,
                "reasons": reasons.iter().map(|(r, c)| json!({"reason": r, "count": c})).collect::<Vec<_>>(),
                "people_in_request": people.len(),
                "note": "the API gives counts per reason, not which member",
            });
            self.put_latest(&format!("partial/{request_id}"), &value)
                .await?;
            self.state
                .add_counters(&scope, &[(counter::ACCEPTED, -n), (counter::REJECTED, n)])
                .await
                .map_err(|e| self.state_error(e))?;
            tracing::warn!(destination = %self.name, request_id, rejected = n, reasons = %reason_text, "Data Manager request PARTIAL_SUCCESS");
            Ok(n as u64)
        }
    }

    /// Delete every part of a request's record.
    async fn drop_request(&self, parts: &[(String, u64, Value)]) -> Result<(), DestinationError> {
        for (key, version, _) in parts {
            self.state
                .delete_destination_record(&self.name, key, *version)
                .await
                .map_err(|e| self.state_error(e))?;
        }
        Ok(())
    }

    /// Write a record whatever is stored (newest wins).
    async fn put_latest(&self, key: &str, value: &Value) -> Result<(), DestinationError> {
        for _ in 0..3 {
            let current = self
                .state
                .get_destination_record(&self.name, key)
                .await
                .map_err(|e| self.state_error(e))?;
            let written = self
                .state
                .put_destination_record(&self.name, key, value, current.map(|r| r.version))
                .await
                .map_err(|e| self.state_error(e))?;
            if matches!(written, RecordWrite::Applied { .. }) {
                return Ok(());
            }
        }
        Err(self.retryable(format!("record {key} kept changing"), None))
    }

    /// The status of the newest request still awaiting its status that
    /// carried this person (`requestStatus:retrieve`, read only: settling
    /// stays with delivery).
    pub(super) async fn status_of_request_carrying(
        &self,
        op: &DeliveryOp,
    ) -> Result<ReadBack, DestinationError> {
        let records = self
            .state
            .list_destination_records(&self.name, "req/", 500)
            .await
            .map_err(|e| self.state_error(e))?;
        let person = op.person_key.as_str();
        let request_id = records
            .iter()
            .rev()
            .find(|r| {
                r.value
                    .get("people")
                    .and_then(Value::as_array)
                    .is_some_and(|people| {
                        people
                            .iter()
                            .any(|p| p.get(0).and_then(Value::as_str) == Some(person))
                    })
            })
            .and_then(|r| r.value.get("request_id").and_then(Value::as_str))
            .map(str::to_string);
        let Some(request_id) = request_id else {
            return Ok(ReadBack::NotReadable(
                "no request of this person awaits its status (already settled, or never sent)"
                    .into(),
            ));
        };
        let answer = self
            .call_get(STATUS_PATH, &[("requestId", request_id.as_str())], true)
            .await?;
        let statuses: Vec<String> = answer
            .get("requestStatusPerDestination")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| {
                        s.get("requestStatus")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(
            if statuses.is_empty()
                || statuses
                    .iter()
                    .any(|s| matches!(s.as_str(), "PROCESSING" | "REQUEST_STATUS_UNKNOWN" | ""))
            {
                ReadBack::Pending(format!("request {request_id} is still processing"))
            } else if statuses.iter().all(|s| s == "SUCCESS") {
                ReadBack::Agrees(format!("request {request_id}: SUCCESS"))
            } else {
                ReadBack::Disagrees(format!("request {request_id}: {}", statuses.join(", ")))
            },
        )
    }

    /// Read the status of requests due for it and account their outcome
    /// (see the module doc).
    pub(super) async fn settle_requests(&self) -> Result<SettleSummary, DestinationError> {
        let now = self.clock.now_ms();
        let records = self
            .state
            .list_destination_records(&self.name, "req/", 500)
            .await
            .map_err(|e| self.state_error(e))?;
        // request id → its parts (key, version, value).
        let mut requests: BTreeMap<String, Vec<(String, u64, Value)>> = BTreeMap::new();
        for r in records {
            let id = r
                .value
                .get("request_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            requests
                .entry(id)
                .or_default()
                .push((r.key, r.version, r.value));
        }
        let mut summary = SettleSummary::default();
        let mut read = 0;
        for (request_id, parts) in requests {
            let Some((head_key, head_version, head)) = parts.first().cloned() else {
                continue;
            };
            let sent_at = head.get("sent_at").and_then(Value::as_i64).unwrap_or(0);
            let due = head
                .get("next_poll_at")
                .and_then(Value::as_i64)
                .unwrap_or_else(|| sent_at.saturating_add(self.status_poll_after_ms));
            if now < due || read >= STATUS_READS_PER_SETTLE {
                summary.pending += 1;
                continue;
            }
            read += 1;
            let answer = self
                .exchange_with(
                    Verb::Get,
                    STATUS_PATH,
                    &[("requestId", request_id.as_str())],
                    None,
                    true,
                )
                .await?;
            if !(200..300).contains(&answer.status) {
                let refusal = errors::read(&answer.body);
                if refusal.reason.as_deref() != Some("INVALID_REQUEST_ID") {
                    return Err(self.refusal(STATUS_PATH, &answer));
                }
                // Google keeps no status for this id: its outcome cannot be
                // read, so nothing moves; the record goes.
                tracing::warn!(destination = %self.name, request_id, "Google has no status for this request (INVALID_REQUEST_ID); dropping its record, outcome unknown");
                self.drop_request(&parts).await?;
                summary.finished += 1;
                continue;
            }
            let answer = self.read_answer(STATUS_PATH, &answer)?;
            let statuses: Vec<&Value> = answer
                .get("requestStatusPerDestination")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let status_of = |s: &Value| {
                s.get("requestStatus")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let all: Vec<String> = statuses.iter().map(|s| status_of(s)).collect();
            let processing = all.is_empty()
                || all
                    .iter()
                    .any(|s| matches!(s.as_str(), "PROCESSING" | "REQUEST_STATUS_UNKNOWN" | ""));
            if processing {
                // Google asks for exponential backoff between reads.
                let polls = head.get("polls").and_then(Value::as_u64).unwrap_or(0) + 1;
                let gap = poll_gap(self.status_poll_after_ms, polls);
                let mut head = head.clone();
                head["polls"] = json!(polls);
                head["next_poll_at"] = json!(now.saturating_add(gap));
                if let Err(e) = self
                    .state
                    .put_destination_record(&self.name, &head_key, &head, Some(head_version))
                    .await
                {
                    tracing::warn!(destination = %self.name, request_id, error = %e, "could not record the next status read");
                }
                summary.pending += 1;
                continue;
            }
            let worst = if all.iter().any(|s| s == "FAILED") {
                "FAILED"
            } else if all.iter().any(|s| s == "PARTIAL_SUCCESS") {
                "PARTIAL_SUCCESS"
            } else {
                "SUCCESS"
            };
            if worst != "SUCCESS" {
                let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
                for s in &statuses {
                    let counts = s
                        .get("errorInfo")
                        .and_then(|e| e.get("errorCounts"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten();
                    for c in counts {
                        let reason = c.get("reason").and_then(Value::as_str).unwrap_or("UNKNOWN");
                        let n = match c.get("recordCount") {
                            Some(Value::String(s)) => s.parse().unwrap_or(0),
                            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
                            _ => 0,
                        };
                        let e = reasons.entry(reason.to_string()).or_default();
                        *e = (*e).max(n);
                    }
                }
                // A duplicate is a record that landed before: not a failure.
                let landed: u64 = LANDED_REASONS
                    .iter()
                    .filter_map(|r| reasons.remove(*r))
                    .sum();
                let reasons: Vec<(String, u64)> = reasons.into_iter().collect();
                if landed > 0 {
                    tracing::info!(destination = %self.name, request_id, landed, "records Google already had (duplicates): counted as landed, not rejected");
                }
                if landed == 0 || !reasons.is_empty() {
                    let status = if worst == "FAILED" && landed == 0 {
                        "FAILED"
                    } else {
                        "PARTIAL_SUCCESS"
                    };
                    summary.rejected += self
                        .account_failures(&request_id, &parts, status, &reasons)
                        .await?;
                }
            }
            self.drop_request(&parts).await?;
            summary.finished += 1;
        }
        Ok(summary)
    }
}
