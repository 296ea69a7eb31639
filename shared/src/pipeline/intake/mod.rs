//! Webhook intake: verify, persist, enqueue, answer.
//!
//! Customer.io holds back every later reporting event while one is answered
//! non-2xx (for up to a week), so only a bad or missing signature is refused
//! (401). A signed body we cannot use is kept byte for byte in quarantine
//! and answered 2xx with the reason. Transient store or queue failures are
//! answered 503 so the sender retries: nothing accepted is ever lost.
//!
//! A correctly signed reporting webhook whose `X-CIO-Timestamp` is outside
//! the replay window is authentic, only old (a retry after an outage of
//! ours, or clock skew). It is applied, not refused: events are deduplicated
//! by `event_id` and ordered by their own timestamps, so a late or repeated
//! copy changes nothing it should not. It is counted
//! (`webhooks_signed_stale`) and its age is in the answer and the log. Only
//! when it is older than the dedup memory (a replay could no longer be told
//! from a first delivery) is it quarantined instead, with that reason, for
//! an operator to check and replay (`docs/customerio.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::changes::{apply_and_enqueue, ApplySummary};
use super::forward::{forward_event, IncomingEvent};
use super::{Deps, PipelineError};
use crate::customerio::actions::{
    parse_action, verify_action, ActionAuthConfig, ActionBody, ActionKind,
};
use crate::customerio::webhook::{
    parse_reporting, verify_signature, ReportingEvent, SignatureConfig, SignatureError,
};
use crate::domain::membership::exit_change;
use crate::domain::model::{
    counter, Attributes, ChangeKind, ChangeOrigin, CounterScope, MembershipChange, Millis, Person,
    QuarantineEntry,
};
use crate::ports::IdempotencyStart;

/// Which endpoint a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Reporting webhooks (`POST /webhooks/customerio`).
    Reporting,
    /// Campaign webhook actions (`POST /webhooks/actions`).
    Actions,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Reporting => "reporting",
            Route::Actions => "actions",
        }
    }
}

#[derive(Clone, Debug)]
pub struct IntakeConfig {
    pub reporting: SignatureConfig,
    pub actions: ActionAuthConfig,
    /// How long an event id is remembered for deduplication.
    pub dedup_ttl: Duration,
    /// How long a claim on an event id holds before a retry may take over.
    pub in_progress_ttl: Duration,
}

/// The HTTP answer, independent of the server framework.
#[derive(Clone, Debug, PartialEq)]
pub struct IntakeResponse {
    pub status: u16,
    pub body: Value,
}

impl IntakeResponse {
    pub fn new(status: u16, body: Value) -> Self {
        IntakeResponse { status, body }
    }
}

/// Handle one request. Never panics on any input; every answer says why.
pub async fn handle(
    deps: &Deps,
    cfg: &IntakeConfig,
    route: Route,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> IntakeResponse {
    if body.len() > MAX_BODY_BYTES {
        // Before the signature and the parser: neither the HMAC nor the
        // quarantine should ever see megabytes of unverified bytes.
        return too_large(route, body.len());
    }
    let now = deps.clock.now_ms();
    // `Ok(Some(age))`: authentic, but signed `age` seconds away from now.
    let verified = match route {
        Route::Reporting => match verify_signature(headers, body, &cfg.reporting, now) {
            Ok(()) => Ok(None),
            Err(SignatureError::Stale { age_s }) => Ok(Some(age_s)),
            Err(e) => Err(e.to_string()),
        },
        Route::Actions => verify_action(headers, body, &cfg.actions, now)
            .map(|()| None)
            .map_err(|e| e.to_string()),
    };
    let signed_age_s = match verified {
        Ok(age) => age,
        Err(reason) => {
            warn!(route = route.as_str(), %reason, "webhook refused");
            return IntakeResponse::new(401, json!({"status": "unauthorized", "reason": reason}));
        }
    };
    if let Some(age_s) = signed_age_s {
        return signed_stale(deps, cfg, route, headers, body, now, age_s).await;
    }
    answer(deps, cfg, route, headers, body, now).await
}

/// A correctly signed body outside the replay window: applied (dedup and
/// per-event ordering make it safe) and counted, or quarantined when it is
/// older than the dedup memory. Never refused: a 401 would hold back
/// Customer.io's whole stream.
async fn signed_stale(
    deps: &Deps,
    cfg: &IntakeConfig,
    route: Route,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    now: Millis,
    age_s: i64,
) -> IntakeResponse {
    if let Err(e) = count(deps, counter::WEBHOOKS_SIGNED_STALE).await {
        warn!(error = %e, "could not count a signed but stale webhook");
    }
    let when = if age_s >= 0 { "before" } else { "after" };
    let age = age_s.unsigned_abs();
    if u128::from(age) * 1000 > cfg.dedup_ttl.as_millis() {
        let reason = format!(
            "correctly signed, but signed {age} s {when} now: beyond the {} h dedup memory a \
             replay cannot be told from a first delivery; check it, then replay it",
            cfg.dedup_ttl.as_secs() / 3600
        );
        return match quarantine(deps, route, headers, body, &reason, now).await {
            Ok(id) => {
                warn!(route = route.as_str(), quarantine_id = %id, signed_age_s = age_s,
                      "signed webhook older than the dedup memory quarantined");
                quarantined(&id, &reason)
            }
            Err(e) => IntakeResponse::new(503, json!({"status": "retry", "reason": e.to_string()})),
        };
    }
    warn!(
        route = route.as_str(),
        signed_age_s = age_s,
        "webhook signed outside the replay window: authentic, applied (deduplicated by event id)"
    );
    let mut resp = answer(deps, cfg, route, headers, body, now).await;
    if let Some(obj) = resp.body.as_object_mut() {
        obj.insert("signed_age_s".into(), json!(age_s));
    }
    resp
}

/// Process an authenticated request and answer it.
async fn answer(
    deps: &Deps,
    cfg: &IntakeConfig,
    route: Route,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    now: Millis,
) -> IntakeResponse {
    match process(deps, cfg, route, headers, body, now).await {
        Ok(resp) => resp,
        Err(e) if e.is_retryable() => {
            warn!(route = route.as_str(), error = %e, "intake failed, sender will retry");
            IntakeResponse::new(503, json!({"status": "retry", "reason": e.to_string()}))
        }
        Err(e) => {
            // A permanent failure of our own (not the sender's): keep the
            // body so nothing is lost, and answer 2xx so the stream moves on.
            let reason = format!("could not process: {e}");
            match quarantine(deps, route, headers, body, &reason, now).await {
                Ok(id) => quarantined(&id, &reason),
                Err(qe) => {
                    IntakeResponse::new(503, json!({"status": "retry", "reason": qe.to_string()}))
                }
            }
        }
    }
}

/// Webhook bodies above this are refused unread (both routes share it).
pub const MAX_BODY_BYTES: usize = crate::customerio::webhook::MAX_BODY_BYTES;

/// 413 for a body over [`MAX_BODY_BYTES`]: nothing verified, parsed or kept.
pub fn too_large(route: Route, len: usize) -> IntakeResponse {
    warn!(
        route = route.as_str(),
        bytes = len,
        "webhook refused: body over the limit"
    );
    IntakeResponse::new(
        413,
        json!({"status": "too_large", "reason": format!(
            "body of {len} bytes is over the {} KiB limit: refused unparsed, nothing kept",
            MAX_BODY_BYTES / 1024
        )}),
    )
}

fn quarantined(id: &str, reason: &str) -> IntakeResponse {
    IntakeResponse::new(
        202,
        json!({"status": "quarantined", "quarantine_id": id, "reason": reason}),
    )
}

async fn process(
    deps: &Deps,
    cfg: &IntakeConfig,
    route: Route,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    now: Millis,
) -> Result<IntakeResponse, PipelineError> {
    let parsed = match route {
        Route::Reporting => parse_reporting(body)
            .map(Parsed::Reporting)
            .map_err(|e| e.to_string()),
        Route::Actions => parse_action(body)
            .map(Parsed::Action)
            .map_err(|e| e.to_string()),
    };
    let parsed = match parsed.and_then(|p| check_known(deps, p)) {
        Ok(p) => p,
        Err(reason) => {
            let id = quarantine(deps, route, headers, body, &reason, now).await?;
            info!(route = route.as_str(), quarantine_id = %id, %reason, "webhook quarantined");
            return Ok(quarantined(&id, &reason));
        }
    };
    let key = parsed.dedup_key();
    let until = now + cfg.in_progress_ttl.as_millis() as i64;
    let expires = now + cfg.dedup_ttl.as_millis() as i64;
    match deps
        .state
        .idempotency_start(&key, now, until, expires)
        .await?
    {
        IdempotencyStart::Completed => {
            count(deps, counter::WEBHOOKS_DUPLICATE).await?;
            return Ok(IntakeResponse::new(200, json!({"status": "duplicate"})));
        }
        IdempotencyStart::InProgress => {
            // Another request holds this event: it may still finish, or it
            // may have died mid-way. Only a retry after the claim expires
            // can tell, so ask for one: a 2xx here could lose the change.
            return Ok(IntakeResponse::new(
                503,
                json!({"status": "retry", "reason": format!(
                    "this event is being processed by another request; retry after {} s",
                    cfg.in_progress_ttl.as_secs().max(1)
                )}),
            ));
        }
        IdempotencyStart::Started => {}
    }
    let result = act(deps, &parsed, now).await;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = deps.state.idempotency_release(&key).await;
            return Err(e);
        }
    };
    deps.state.idempotency_complete(&key, expires).await?;
    count(deps, counter::WEBHOOKS_ACCEPTED).await?;
    if let Parsed::Reporting(ev) = &parsed {
        deps.state
            .add_counters(
                &CounterScope::intake(),
                &[(&format!("reporting:{}.{}", ev.object_type, ev.metric), 1)],
            )
            .await?;
    }
    Ok(IntakeResponse::new(
        200,
        json!({
            "status": "accepted",
            "changes": summary.applied,
            "stale": summary.stale,
            "jobs": summary.jobs,
            "ops": summary.ops,
            "events": summary.events_forwarded,
            "events_invalid": summary.events_invalid,
        }),
    ))
}

enum Parsed {
    Reporting(ReportingEvent),
    Action(ActionBody),
}

impl Parsed {
    fn dedup_key(&self) -> String {
        match self {
            Parsed::Reporting(e) => format!("wh:reporting:{}", e.event_id),
            Parsed::Action(a) => format!("wh:action:{}", a.dedup_id),
        }
    }
}

/// Things that parse but cannot be acted on go to quarantine too.
fn check_known(deps: &Deps, parsed: Parsed) -> Result<Parsed, String> {
    if let Parsed::Action(a) = &parsed {
        match a.action {
            ActionKind::Enter | ActionKind::Exit => {
                let Some(name) = a.export.as_deref() else {
                    return Err("enter/exit action without `export`".into());
                };
                if deps.spec.export(name).is_none() {
                    return Err(format!("unknown export `{name}`"));
                }
            }
            ActionKind::Event => {
                if a.event.is_none() {
                    return Err("event action without `event`".into());
                }
            }
        }
        if a.person.person_key().is_none() {
            return Err("no usable identifier in `person`".into());
        }
    }
    Ok(parsed)
}

async fn act(deps: &Deps, parsed: &Parsed, now: Millis) -> Result<ApplySummary, PipelineError> {
    match parsed {
        Parsed::Reporting(ev) => {
            let ts = ev.timestamp_s.saturating_mul(1000);
            let changes: Vec<MembershipChange> = deps
                .spec
                .reporting_feeds
                .iter()
                .filter(|f| {
                    // A subscription change is the person's whatever channel
                    // led to it: a `customer.<metric>` feed takes them all.
                    let channel_any = f.object_type == "customer" && ev.is_subscription_change();
                    (f.object_type == "*" || f.object_type == ev.object_type || channel_any)
                        && f.metric == ev.metric
                })
                .flat_map(|f| f.exports.iter())
                .map(|export| MembershipChange {
                    export: export.clone(),
                    person: Person {
                        ids: ev.identifiers.clone(),
                        attributes: Default::default(),
                    },
                    kind: ChangeKind::Enter,
                    source_ts: ts,
                    intake_ts: now,
                    origin: ChangeOrigin::Reporting,
                    change_id: format!("rep:{}:{export}", ev.event_id),
                })
                .collect();
            let mut summary = apply_and_enqueue(deps, changes).await?;
            summary.merge(forward_reporting(deps, ev, now).await?);
            Ok(summary)
        }
        Parsed::Action(a) => {
            let ts = a.sent_at_ms.unwrap_or(now);
            match a.action {
                ActionKind::Enter | ActionKind::Exit => {
                    let export = a.export.clone().unwrap_or_default();
                    let change = MembershipChange {
                        export,
                        person: Person {
                            ids: a.person.clone(),
                            attributes: a
                                .attributes
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        },
                        kind: if a.action == ActionKind::Enter {
                            ChangeKind::Enter
                        } else {
                            ChangeKind::Exit
                        },
                        source_ts: ts,
                        intake_ts: now,
                        origin: ChangeOrigin::Action,
                        change_id: format!("act:{}", a.dedup_id),
                    };
                    apply_and_enqueue(deps, vec![change]).await
                }
                ActionKind::Event => act_on_event(deps, a, ts, now).await,
            }
        }
    }
}

/// An event: exit every export that lists it, forward it to events exports.
async fn act_on_event(
    deps: &Deps,
    a: &ActionBody,
    ts: Millis,
    now: Millis,
) -> Result<ApplySummary, PipelineError> {
    let Some(event) = &a.event else {
        return Ok(ApplySummary::default());
    };
    let event_id = event.id.clone().unwrap_or_else(|| a.dedup_id.clone());
    let exits: Vec<MembershipChange> = deps
        .spec
        .exports_exiting_on(&event.name)
        .map(|export| {
            exit_change(
                &export.name,
                &a.person,
                ts,
                now,
                ChangeOrigin::ExitRule,
                format!("exit:{event_id}:{}", export.name),
            )
        })
        .collect();
    let mut summary = apply_and_enqueue(deps, exits).await?;
    let attributes: Attributes = a
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let incoming = IncomingEvent {
        event_id: &event_id,
        name: &event.name,
        data: &event.data,
        person: &a.person,
        attributes: &attributes,
        source_ts: ts,
    };
    summary.merge(forward_event(deps, &incoming, now).await?);
    Ok(summary)
}

/// A reporting metric (`email.opened`, …) forwarded as an event, its
/// message ids (campaign, delivery, …) and data as its properties.
async fn forward_reporting(
    deps: &Deps,
    ev: &ReportingEvent,
    now: Millis,
) -> Result<ApplySummary, PipelineError> {
    let exact = format!("{}.{}", ev.object_type, ev.metric);
    // A subscription change led to by a message (`email.subscribed`, …) is
    // also the person's `customer.<metric>` event; its channel travels in
    // the `object_type` property.
    let person_level = format!("customer.{}", ev.metric);
    let name = if deps.spec.events.contains_key(&exact) {
        exact
    } else if ev.is_subscription_change() && deps.spec.events.contains_key(&person_level) {
        person_level
    } else {
        return Ok(ApplySummary::default());
    };
    let mut data = ev.data.clone();
    for (k, v) in [
        ("campaign_id", &ev.campaign_id),
        ("delivery_id", &ev.delivery_id),
        ("action_id", &ev.action_id),
        ("journey_id", &ev.journey_id),
        ("broadcast_id", &ev.broadcast_id),
        ("newsletter_id", &ev.newsletter_id),
        ("transactional_message_id", &ev.transactional_message_id),
        ("trigger_event_id", &ev.trigger_event_id),
    ] {
        if let Some(v) = v {
            data.entry(k.to_string())
                .or_insert_with(|| Value::String(v.clone()));
        }
    }
    data.insert("object_type".into(), Value::String(ev.object_type.clone()));
    data.insert("metric".into(), Value::String(ev.metric.clone()));
    let incoming = IncomingEvent {
        event_id: &ev.event_id,
        name: &name,
        data: &data,
        person: &ev.identifiers,
        attributes: &Attributes::new(),
        source_ts: ev.timestamp_ms(),
    };
    forward_event(deps, &incoming, now).await
}

async fn count(deps: &Deps, name: &str) -> Result<(), PipelineError> {
    deps.state
        .add_counters(&CounterScope::intake(), &[(name, 1)])
        .await?;
    Ok(())
}

/// Keep an unusable body byte for byte. The id is content-derived, so the
/// sender's retries of one bad body land on one entry.
pub async fn quarantine(
    deps: &Deps,
    route: Route,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    reason: &str,
    now: Millis,
) -> Result<String, PipelineError> {
    let mut h = Sha256::new();
    h.update(route.as_str().as_bytes());
    h.update([0]);
    h.update(body);
    let id = format!("q_{}", hex::encode(&h.finalize()[..10]));
    // Signatures and secrets stay out; content type and timestamps help a replay.
    let kept: BTreeMap<String, String> = headers
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "content-type" | "x-cio-timestamp" | "user-agent" | "x-dataout-timestamp"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A retry or a failed replay of the same body keeps the entry's first
    // arrival, so the list keeps its order.
    let received_at = match deps.state.get_quarantine(&id).await? {
        Some(first) => first.received_at.min(now),
        None => now,
    };
    let entry = QuarantineEntry {
        id: id.clone(),
        received_at,
        route: route.as_str().to_string(),
        reason: reason.to_string(),
        body_b64: base64::engine::general_purpose::STANDARD.encode(body),
        headers: kept,
        replayed_at: None,
    };
    deps.state.put_quarantine(&entry).await?;
    count(deps, counter::WEBHOOKS_QUARANTINED).await?;
    Ok(id)
}

/// Re-run a quarantined body through intake (after the config was fixed, or
/// the sender's template). Signature checks are skipped: the body was
/// verified when it arrived.
pub async fn replay_quarantined(
    deps: &Deps,
    cfg: &IntakeConfig,
    id: &str,
) -> Result<IntakeResponse, PipelineError> {
    let Some(mut entry) = deps.state.get_quarantine(id).await? else {
        return Err(PipelineError::Config(format!("no quarantine entry `{id}`")));
    };
    let body = base64::engine::general_purpose::STANDARD
        .decode(entry.body_b64.as_bytes())
        .map_err(|e| PipelineError::Config(format!("quarantine entry `{id}` is corrupt: {e}")))?;
    let route = if entry.route == Route::Actions.as_str() {
        Route::Actions
    } else {
        Route::Reporting
    };
    let now = deps.clock.now_ms();
    let resp = process(deps, cfg, route, &entry.headers, &body, now).await?;
    if resp.body.get("status").and_then(Value::as_str) != Some("quarantined") {
        entry.replayed_at = Some(now);
        deps.state.put_quarantine(&entry).await?;
    }
    Ok(resp)
}

#[cfg(test)]
pub(crate) mod tests;
