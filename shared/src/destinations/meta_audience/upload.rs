//! One group of rows (one audience, one edit) on the wire: chunks of at
//! most `batch_size` rows, their session, and what Meta's answer says of
//! each row.
//!
//! **Sessions are closed deliberately.** Meta keeps a session open (and the
//! audience "updating", refusing a replace with 2650 / 1870145) until a batch
//! carries `last_batch_flag` or 90 minutes pass. When a chunk fails, the
//! session it belongs to is remembered, and the next send of the same
//! audience and edit (the retried job) continues it: the same `session_id`,
//! `batch_seq` going on from the last batch Meta took, its last batch
//! flagged. A session older than [`SESSION_REUSE_LIMIT`] is left to Meta's
//! own 90-minute end and a new one is started.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{flagged_outcome, CallError, MetaAudienceDestination};
use crate::destinations::{DestinationError, OpOutcome};

/// How long after its first batch a session we left open is continued:
/// Meta takes batches for 90 minutes; the margin covers a slow retry.
pub(super) const SESSION_REUSE_LIMIT: Duration = Duration::from_secs(80 * 60);

/// What one group of rows does to its audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Edit {
    Add,
    Remove,
    /// `usersreplace`: the audience ends holding exactly these rows.
    Replace,
}

/// One row to send, remembering which op it came from.
pub(super) struct Row {
    pub(super) index: usize,
    pub(super) cells: Vec<String>,
}

/// Session fields of one request.
pub(super) struct SessionPart {
    id: i64,
    batch_seq: usize,
    last: bool,
    total: usize,
}

/// A session a failed send left open, to be continued by the next send of
/// the same audience and edit.
#[derive(Clone, Debug)]
pub(super) struct OpenSession {
    pub(super) id: i64,
    /// The `batch_seq` of the next batch.
    pub(super) next_seq: usize,
    /// `estimated_num_total` as first announced.
    pub(super) total: usize,
    pub(super) started: Instant,
}

/// The answer to a `users` / `usersreplace` request.
#[derive(Debug, Default, Deserialize)]
struct UsersResponse {
    #[serde(default)]
    num_received: Option<u64>,
    #[serde(default)]
    num_invalid_entries: Option<u64>,
    #[serde(default)]
    invalid_entry_samples: Option<Value>,
}

impl MetaAudienceDestination {
    /// Send one group (one audience, one direction) in chunks; fills
    /// `outcomes`. A flagged audience pauses it and rejects its rows.
    pub(super) async fn send_group(
        &self,
        audience: &str,
        mode: Edit,
        schema: &[&str],
        rows: &[Row],
        outcomes: &mut [Option<OpOutcome>],
    ) -> Result<(), DestinationError> {
        match self
            .send_group_chunks(audience, mode, schema, rows, outcomes)
            .await
        {
            Ok(()) => Ok(()),
            Err(CallError::Destination(e) | CallError::SessionEnded(e)) => Err(e),
            Err(CallError::AudienceFlagged(message)) => {
                self.pause(audience, &message);
                for row in rows {
                    if let Some(slot @ None) = outcomes.get_mut(row.index) {
                        *slot = Some(flagged_outcome(audience));
                    }
                }
                Ok(())
            }
        }
    }

    /// The session a failed send of this audience and edit left open, if it
    /// is still young enough to continue; taken, so no other send shares it.
    fn take_open_session(&self, audience: &str, mode: Edit) -> Option<OpenSession> {
        let mut open = self.open_sessions.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&(audience.to_string(), mode))
            .filter(|s| s.started.elapsed() < SESSION_REUSE_LIMIT)
    }

    fn keep_open_session(&self, audience: &str, mode: Edit, session: OpenSession) {
        self.open_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((audience.to_string(), mode), session);
    }

    async fn send_group_chunks(
        &self,
        audience: &str,
        mode: Edit,
        schema: &[&str],
        rows: &[Row],
        outcomes: &mut [Option<OpOutcome>],
    ) -> Result<(), CallError> {
        let chunks: Vec<&[Row]> = rows.chunks(self.batch_size).collect();
        // A replace always goes in a session (its last batch swaps the
        // audience), so does a group of several chunks, and so does any
        // group that must close a session a failed send left open.
        let mut session = self.take_open_session(audience, mode).or_else(|| {
            (mode == Edit::Replace || chunks.len() > 1).then(|| OpenSession {
                id: new_session_id(),
                next_seq: 1,
                total: rows.len(),
                started: Instant::now(),
            })
        });
        let remove = mode == Edit::Remove;
        let url = match mode {
            Edit::Replace => format!("{}/{}/usersreplace", self.api_url, audience),
            _ => format!("{}/{}/users", self.api_url, audience),
        };
        let method = if remove {
            reqwest::Method::DELETE
        } else {
            reqwest::Method::POST
        };
        for (n, chunk) in chunks.iter().enumerate() {
            let part = session.as_ref().map(|s| SessionPart {
                id: s.id,
                batch_seq: s.next_seq,
                last: n + 1 == chunks.len(),
                total: s.total.max(rows.len()),
            });
            let body = users_body(schema, chunk, part.as_ref());
            let answer = match self.call(method.clone(), url.clone(), Some(&body)).await {
                Ok(answer) => answer,
                Err(e) => {
                    // A session Meta ended is dropped: the retry starts anew.
                    let ended = matches!(e, CallError::SessionEnded(_));
                    if let Some(open) = session.take().filter(|_| !ended) {
                        tracing::info!(
                            destination = %self.name,
                            audience,
                            session_id = open.id,
                            next_batch_seq = open.next_seq,
                            "Meta upload session left open by a failed request: the next send continues and closes it"
                        );
                        self.keep_open_session(audience, mode, open);
                    }
                    return Err(e);
                }
            };
            if let Some(s) = session.as_mut() {
                s.next_seq += 1;
            }
            let answer: UsersResponse = serde_json::from_value(answer).unwrap_or_default();
            let rejected = rejected_rows(chunk, answer.invalid_entry_samples.as_ref());
            let invalid = answer.num_invalid_entries.unwrap_or(0);
            if invalid as usize > rejected.len() {
                tracing::warn!(
                    destination = %self.name,
                    audience,
                    invalid,
                    tied_to_rows = rejected.len(),
                    "Meta counted invalid entries it gave no sample of"
                );
            }
            tracing::info!(
                destination = %self.name,
                audience,
                remove,
                rows = chunk.len(),
                received = answer.num_received.unwrap_or(0),
                invalid,
                "Meta audience request answered"
            );
            for row in chunk.iter() {
                let outcome = match rejected.get(&row.index) {
                    Some(reason) => OpOutcome::Rejected {
                        reason: reason.clone(),
                    },
                    None => OpOutcome::Accepted,
                };
                if let Some(slot) = outcomes.get_mut(row.index) {
                    *slot = Some(outcome);
                }
            }
        }
        Ok(())
    }
}

/// A random positive int64: unique per ad account in practice.
fn new_session_id() -> i64 {
    let id = rand::random::<i64>() & i64::MAX;
    id.max(1)
}

pub(super) fn users_body(schema: &[&str], rows: &[Row], session: Option<&SessionPart>) -> Value {
    // LOOKALIKE_VALUE travels as a number (Meta refuses it as text); every
    // other cell is a string.
    let value_at = schema.iter().position(|c| *c == "LOOKALIKE_VALUE");
    let data: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| {
            r.cells
                .iter()
                .enumerate()
                .map(
                    |(i, cell)| match (Some(i) == value_at, cell.parse::<f64>()) {
                        (true, Ok(n)) => serde_json::Number::from_f64(n)
                            .map_or_else(|| Value::String(String::new()), Value::Number),
                        _ => Value::String(cell.clone()),
                    },
                )
                .collect()
        })
        .collect();
    let mut body = json!({ "payload": { "schema": schema, "data": data } });
    if let (Some(s), Some(obj)) = (session, body.as_object_mut()) {
        obj.insert(
            "session".into(),
            json!({
                "session_id": s.id,
                "batch_seq": s.batch_seq,
                "last_batch_flag": s.last,
                "estimated_num_total": s.total,
            }),
        );
    }
    body
}

/// Rows whose cell value Meta listed among the invalid samples, with the reason.
pub(super) fn rejected_rows(rows: &[Row], samples: Option<&Value>) -> BTreeMap<usize, String> {
    let mut out = BTreeMap::new();
    let Some(Value::Object(samples)) = samples else {
        return out;
    };
    for row in rows {
        let hit = row
            .cells
            .iter()
            .filter(|c| !c.is_empty())
            .find_map(|c| samples.get(c.as_str()));
        if let Some(reason) = hit {
            let reason = match reason {
                Value::String(s) if !s.is_empty() => format!("Meta invalid entry: {s}"),
                _ => "Meta counted this row as an invalid entry".to_string(),
            };
            out.insert(row.index, reason);
        }
    }
    out
}
