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
    let entry = QuarantineEntry {
        id: id.clone(),
        received_at: now,
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
pub(crate) mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
    use crate::adapters::embedded::state::EmbeddedStateStore;
    use crate::customerio::webhook::sign;
    use crate::ports::{Secret, SystemClock};

    pub(crate) const SECRET: &str = "intake-test-secret";

    pub(crate) fn deps(dir: &std::path::Path) -> Deps {
        let spec = crate::domain::config::parse_spec(
            include_str!("../../../config/exports.example.yaml"),
            "exports.example.yaml",
        )
        .expect("example spec");
        let clock: Arc<dyn crate::ports::Clock> = Arc::new(SystemClock);
        Deps {
            spec: Arc::new(spec),
            state: Arc::new(EmbeddedStateStore::open(&dir.join("s.redb")).expect("state")),
            queue: Arc::new(
                EmbeddedQueue::open(&dir.join("q.redb"), QueueSettings::default(), clock.clone())
                    .expect("queue"),
            ),
            clock,
        }
    }

    pub(crate) fn cfg() -> IntakeConfig {
        IntakeConfig {
            reporting: SignatureConfig {
                secret: Secret::new(SECRET),
                tolerance: Duration::from_secs(300),
            },
            actions: ActionAuthConfig {
                header_name: "x-dataout-token".into(),
                secret: Secret::new(SECRET),
                mode: crate::customerio::actions::ActionAuthMode::SharedSecret,
                tolerance: Duration::from_secs(300),
                basic: None,
            },
            dedup_ttl: Duration::from_secs(3600),
            in_progress_ttl: Duration::from_secs(30),
        }
    }

    fn reporting_headers(body: &[u8]) -> BTreeMap<String, String> {
        let ts = chrono::Utc::now().timestamp();
        [
            ("x-cio-timestamp".to_string(), ts.to_string()),
            (
                "x-cio-signature".to_string(),
                sign(SECRET.as_bytes(), ts, body),
            ),
        ]
        .into()
    }

    fn signed_at(body: &[u8], ts: i64, secret: &str) -> BTreeMap<String, String> {
        [
            ("x-cio-timestamp".to_string(), ts.to_string()),
            (
                "x-cio-signature".to_string(),
                sign(secret.as_bytes(), ts, body),
            ),
        ]
        .into()
    }

    const OPENED: &[u8] = br#"{"event_id":"01JSTALE0000000000000000001","object_type":"email","metric":"opened","timestamp":1751371200,"data":{"identifiers":{"id":"cust_00077"},"delivery_id":"RPILAgUBcRhIBqSfeiIwdIYJKxTY","action_id":96,"campaign_id":5,"recipient":"x@example.com"}}"#;

    async fn intake_counter(deps: &Deps, name: &str) -> u64 {
        deps.state
            .get_counters(&CounterScope::intake())
            .await
            .expect("counters")
            .get(name)
            .copied()
            .unwrap_or(0) as u64
    }

    #[tokio::test]
    async fn correctly_signed_body_older_than_the_window_is_applied_not_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deps = deps(dir.path());
        let an_hour_ago = chrono::Utc::now().timestamp() - 3600;
        let headers = signed_at(OPENED, an_hour_ago, SECRET);
        let resp = handle(&deps, &cfg(), Route::Reporting, &headers, OPENED).await;
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.body["status"], "accepted", "{resp:?}");
        let age = resp.body["signed_age_s"]
            .as_i64()
            .expect("age in the answer");
        assert!((3600..3660).contains(&age), "{resp:?}");
        assert_eq!(
            intake_counter(&deps, counter::WEBHOOKS_SIGNED_STALE).await,
            1
        );
        // The same delivery again is recognised by its event id.
        let again = handle(&deps, &cfg(), Route::Reporting, &headers, OPENED).await;
        assert_eq!(again.status, 200, "{again:?}");
        assert_eq!(again.body["status"], "duplicate", "{again:?}");
        // Signed in the future beyond the window (clock skew): applied too.
        let body = String::from_utf8_lossy(OPENED).replace("0001\"", "0002\"");
        let ahead = signed_at(
            body.as_bytes(),
            chrono::Utc::now().timestamp() + 900,
            SECRET,
        );
        let resp = handle(&deps, &cfg(), Route::Reporting, &ahead, body.as_bytes()).await;
        assert_eq!(resp.body["status"], "accepted", "{resp:?}");
        assert!(resp.body["signed_age_s"].as_i64().is_some_and(|a| a < -800));
    }

    #[tokio::test]
    async fn signed_body_older_than_the_dedup_memory_is_quarantined_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deps = deps(dir.path());
        // cfg() remembers event ids for one hour.
        let two_hours_ago = chrono::Utc::now().timestamp() - 7200;
        let headers = signed_at(OPENED, two_hours_ago, SECRET);
        let resp = handle(&deps, &cfg(), Route::Reporting, &headers, OPENED).await;
        assert_eq!(resp.status, 202, "{resp:?}");
        assert_eq!(resp.body["status"], "quarantined", "{resp:?}");
        let reason = resp.body["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("correctly signed"), "{reason}");
        assert!(reason.contains("dedup memory"), "{reason}");
        let id = resp.body["quarantine_id"].as_str().expect("id");
        let entry = deps
            .state
            .get_quarantine(id)
            .await
            .expect("state")
            .expect("kept");
        assert_eq!(entry.reason, reason);
        assert!(!entry.headers.contains_key("x-cio-signature"));
        assert_eq!(
            intake_counter(&deps, counter::WEBHOOKS_SIGNED_STALE).await,
            1
        );
        assert_eq!(
            intake_counter(&deps, counter::WEBHOOKS_QUARANTINED).await,
            1
        );
        // The operator's replay applies it.
        let replayed = replay_quarantined(&deps, &cfg(), id).await.expect("replay");
        assert_eq!(replayed.body["status"], "accepted", "{replayed:?}");
    }

    #[tokio::test]
    async fn stale_body_with_a_wrong_signature_is_still_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deps = deps(dir.path());
        let an_hour_ago = chrono::Utc::now().timestamp() - 3600;
        let forged = signed_at(OPENED, an_hour_ago, "not-the-signing-secret");
        let resp = handle(&deps, &cfg(), Route::Reporting, &forged, OPENED).await;
        assert_eq!(resp.status, 401, "{resp:?}");
        let mut tampered = OPENED.to_vec();
        tampered[20] = b'Z';
        let headers = signed_at(OPENED, an_hour_ago, SECRET);
        let resp = handle(&deps, &cfg(), Route::Reporting, &headers, &tampered).await;
        assert_eq!(resp.status, 401, "{resp:?}");
        assert_eq!(
            intake_counter(&deps, counter::WEBHOOKS_SIGNED_STALE).await,
            0
        );
    }

    #[tokio::test]
    async fn webhook_action_with_basic_credentials_is_taken_and_they_are_never_kept() {
        use crate::customerio::actions::BasicCredentials;
        let dir = tempfile::tempdir().expect("tempdir");
        let deps = deps(dir.path());
        let mut cfg = cfg();
        cfg.actions.basic =
            Some(BasicCredentials::parse(&Secret::new("cio-hooks:s3cr3t")).expect("credentials"));
        // `printf %s 'cio-hooks:s3cr3t' | base64`
        let headers: BTreeMap<String, String> = [(
            "authorization".to_string(),
            "Basic Y2lvLWhvb2tzOnMzY3IzdA==".to_string(),
        )]
        .into();
        let enter = br#"{"action":"enter","export":"cart_abandoners","person":{"id":"cust_00091"},"sent_at":1751371200}"#;
        let resp = handle(&deps, &cfg, Route::Actions, &headers, enter).await;
        assert_eq!(resp.body["status"], "accepted", "{resp:?}");
        let unknown =
            br#"{"action":"enter","export":"no_such_export","person":{"id":"cust_00091"}}"#;
        let resp = handle(&deps, &cfg, Route::Actions, &headers, unknown).await;
        assert_eq!(resp.body["status"], "quarantined", "{resp:?}");
        let id = resp.body["quarantine_id"].as_str().expect("id");
        let entry = deps
            .state
            .get_quarantine(id)
            .await
            .expect("state")
            .expect("kept");
        assert!(!entry.headers.contains_key("authorization"), "{entry:?}");
        // Wrong credentials: refused, and the answer does not echo them.
        let wrong: BTreeMap<String, String> = [(
            "authorization".to_string(),
            "Basic Y2lvLWhvb2tzOndyb25n".to_string(),
        )]
        .into();
        let resp = handle(&deps, &cfg, Route::Actions, &wrong, enter).await;
        assert_eq!(resp.status, 401, "{resp:?}");
        assert!(!resp.body.to_string().contains("wrong"), "{resp:?}");
    }

    #[tokio::test]
    async fn unsubscribe_led_to_by_a_channel_feeds_the_customer_feed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut deps = deps(dir.path());
        let text = include_str!("../../../config/exports.example.yaml").replace(
            "email.unsubscribed: [email_suppression]",
            "customer.unsubscribed: [email_suppression]",
        );
        deps.spec = Arc::new(
            crate::domain::config::parse_spec(&text, "exports.example.yaml").expect("spec"),
        );
        // Customer.io's person_unsubscribed, led to by an SMS.
        let body = br#"{"event_id":"01JSUBSMS000000000000000001","object_type":"sms","metric":"unsubscribed","timestamp":1751371200,"data":{"customer_id":"cust_00078","email_address":"ada.byron+78@example.com","identifiers":{"id":"cust_00078","email":"ada.byron+78@example.com","cio_id":"d9c10600004e"}}}"#;
        let resp = handle(
            &deps,
            &cfg(),
            Route::Reporting,
            &reporting_headers(body),
            body,
        )
        .await;
        assert_eq!(resp.body["status"], "accepted", "{resp:?}");
        assert_eq!(resp.body["changes"], 1, "{resp:?}");
        // A message metric of a channel is not a person-level change.
        let body = br#"{"event_id":"01JSUBSMS000000000000000002","object_type":"sms","metric":"delivered","timestamp":1751371200,"data":{"identifiers":{"id":"cust_00078"},"delivery_id":"d","action_id":1,"campaign_id":2,"recipient":"+15551230078"}}"#;
        let resp = handle(
            &deps,
            &cfg(),
            Route::Reporting,
            &reporting_headers(body),
            body,
        )
        .await;
        assert_eq!(resp.body["changes"], 0, "{resp:?}");
    }

    /// JSON shaped like what Customer.io sends, with arbitrary values.
    fn jsonish() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z_@.0-9 ]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_string()),
                        Just("email".to_string()),
                        Just("cio_id".to_string()),
                        Just("identifiers".to_string()),
                        Just("data".to_string()),
                        Just("action".to_string()),
                        Just("export".to_string()),
                        Just("person".to_string()),
                        Just("event".to_string()),
                        Just("event_id".to_string()),
                        Just("metric".to_string()),
                        Just("object_type".to_string()),
                        Just("timestamp".to_string()),
                        Just("sent_at".to_string()),
                        Just("name".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..6,
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// Signed, authenticated input of any shape never panics intake,
        /// and is never refused: it is acted on, or kept in quarantine.
        #[test]
        fn no_input_panics_intake_or_is_lost(
            raw in prop::collection::vec(any::<u8>(), 0..300),
            shaped in jsonish(),
            use_shaped in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            let body = if use_shaped { serde_json::to_vec(&shaped).expect("json") } else { raw };
            let deps = deps(dir.path());
            let cfg = cfg();
            let (rep, act) = rt.block_on(async {
                let rep = handle(&deps, &cfg, Route::Reporting, &reporting_headers(&body), &body).await;
                let headers: BTreeMap<String, String> =
                    [("x-dataout-token".to_string(), SECRET.to_string())].into();
                let act = handle(&deps, &cfg, Route::Actions, &headers, &body).await;
                (rep, act)
            });
            for resp in [rep, act] {
                prop_assert!((200..300).contains(&resp.status), "{resp:?}");
                let status = resp.body["status"].as_str().unwrap_or("");
                prop_assert!(
                    matches!(status, "accepted" | "quarantined" | "duplicate"),
                    "{resp:?}"
                );
            }
        }

        /// Unsigned input of any shape is refused with a reason.
        #[test]
        fn unsigned_input_is_refused_with_a_reason(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            let deps = deps(dir.path());
            let resp = rt.block_on(handle(&deps, &cfg(), Route::Reporting, &BTreeMap::new(), &raw));
            prop_assert_eq!(resp.status, 401);
            prop_assert!(resp.body["reason"].as_str().is_some_and(|r| !r.is_empty()));
        }
    }
}
