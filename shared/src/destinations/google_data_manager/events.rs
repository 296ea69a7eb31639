//! Google conversions through the Data Manager API (`API-CONTRACTS.md` §4c):
//! the `google_data_manager` destination bound from an `events` or
//! `conversions` export sends its event ops to `POST {base}/v1/events:ingest`
//! with the same credentials, accounts and consent settings as the audience
//! path. The binding's `audience` is the Google Ads conversion action id,
//! sent as the destination's `productDestinationId`.
//!
//! Request shape (googleapis `google/ads/datamanager/v1/ingestion_service.proto`
//! `IngestEventsRequest`, `event.proto`, `user_data.proto`):
//! `{destinations:[{operatingAccount, loginAccount?, linkedAccount?,
//! productDestinationId}], events:[{transactionId, eventTimestamp (RFC 3339),
//! conversionValue?, currency?, eventSource, userData?:{userIdentifiers:[
//! {emailAddress}|{phoneNumber}|{address}]}, adIdentifiers?:{gclid |
//! gbraid | wbraid}, consent?}], consent, encoding: "HEX"}` → `{requestId}`;
//! `validateOnly` is left unset (false). At most 2,000 events per request
//! (the proto's field comment; the `TOO_MANY_EVENTS` error text says
//! 10,000: we keep the smaller). `eventSource` is the event's
//! `event_source` property when it names a value of event.proto's
//! `EventSource` (WEB, APP, IN_STORE, PHONE, MESSAGE, OTHER), else OTHER.
//!
//! Click ids (`docs/google-conversions.md`): an event whose properties carry
//! `gclid`, `gbraid` or `wbraid` (any case) sends it in `adIdentifiers`;
//! Google takes exactly one per conversion, so a gclid wins over the iOS
//! ids, and gbraid with wbraid (which the Ads API refuses as
//! GBRAID_WBRAID_BOTH_SET) is `Invalid`. With a click id the event may go
//! without user identifiers. Without one it is an *enhanced conversion for
//! leads*, matched on hashed user data, which Google takes only from an
//! account opted in to enhanced conversions for leads that has accepted the
//! customer data terms. Lead and click conversions go in separate requests,
//! so a refusal for the account's setup (error.proto
//! `DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS`,
//! `DESTINATION_ACCOUNT_ENHANCED_CONVERSIONS_TERMS_NOT_SIGNED`,
//! `DESTINATION_ACCOUNT_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS`, read
//! from the `google.rpc.ErrorInfo` whatever the HTTP status) touches the
//! leads only: every event of that request, and the lead conversions of
//! later requests of the same `send`, are `Rejected` with what to change in
//! Google Ads. It is a permanent setup problem, not retried; once fixed,
//! the conversions have to be sent again.
//!
//! Google fails the WHOLE request for one bad event (the "fast-fail model"
//! of the Data Manager error guide) and a conversion cannot be retracted, so
//! every event is checked first and a bad one is `Invalid` and never sent:
//! no transaction id (the source's `order_id`, else its event id), one over
//! 64 characters, a value that is not a finite non-negative number, a value
//! without an ISO 4217 currency, no value at all on a `conversions` export,
//! an event time older than [`MAX_EVENT_AGE`] or later than our clock plus
//! [`CLOCK_SKEW`], no identifier Google takes. EEA / UK / CH people without
//! both consents are `Unmatched` ("no consent (EEA)"), as on the audience path.
//!
//! Never twice: Google deduplicates nothing we can rely on in time, so each
//! event accepted by Google is written to the state store's idempotency
//! records under `gdm-conversion:<destination>:<account>:<action>:<transaction>`
//! (kept [`LEDGER_TTL`]). Before sending, each event claims its record:
//! `Completed` means an earlier request carried it: it is `Accepted` without
//! being sent; `InProgress` means another delivery holds it (or held it and
//! died): the whole batch is retried once that claim can have expired. The
//! record is completed only after Google answered 2xx, and released when
//! Google refused the request or it failed before an answer.
//!
//! Crash windows: (1) dying after Google's 2xx but before the records are
//! completed leaves them `InProgress` until [`CLAIM_TTL`] passes; the job then
//! comes back and is sent again. (2) A timeout or 5xx after the request left
//! us has an unknown outcome; we release the claims and retry. In both cases
//! a second copy can reach Google. We accept that because Google Ads counts
//! one conversion per conversion action and transaction id: "If 2 conversions
//! for the same conversion action have the same transaction ID, Google Ads
//! will recognise the second one as a duplicate and won't count it" (Google
//! Ads Help 6386790), and the Data Manager upgrade guide states it
//! "deduplicates conversions with the same … activity ID and transactionId".
//! That is why every event carries a transaction id here. Google reports
//! such a second copy in the request status as
//! `PROCESSING_ERROR_REASON_DUPLICATE_TRANSACTION_ID` (processing_errors.proto),
//! and so does the simulator.
//!
//! Status: `events:ingest` answers a `requestId` and processes
//! asynchronously like the audience methods, so each request is recorded
//! (`req/…`, people tagged `e`) and settled by the same
//! `requestStatus:retrieve` mechanism (`Destination::settle`): a request
//! Google later reports FAILED moves its events from accepted to rejected
//! (with Google's reasons); they stay recorded as sent and are not sent
//! again, since a resend of a processed-but-failed conversion risks a double.
//!
//! Errors: 429 retries after the server's delay; 401 refreshes the token
//! once (the shared client); an account-setup refusal (above) rejects the
//! request's events with the advice; other 400s are whole-request
//! refusals: when Google's `fieldViolations` name events (`events[3]…`),
//! those events are `Rejected` with Google's message and the others go
//! again (`Retry`); otherwise every event of the request is `Rejected` with
//! the message.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::SecondsFormat;
use serde_json::{json, Value};

use super::{is_numeric, DataManagerDestination};
use crate::destinations::google_consent::person_consent;
use crate::destinations::{DestinationError, OpOutcome};
use crate::domain::identity::match_keys;
use crate::domain::model::{DeliveryOp, OpKind};
use crate::domain::spec::{DestinationKind, ExportDestination, ExportMode, ExportSpec};
use crate::ports::IdempotencyStart;

pub const MAX_EVENTS_PER_REQUEST: usize = 2_000;
/// Oldest event time sent. Google Ads imports a conversion only within its
/// conversion action's click-through window, at most 90 days (an older one
/// is `EXPIRED_EVENT` in the Ads API's `ConversionUploadError`); the Data
/// Manager API answers `EVENT_TIME_INVALID` for times it does not accept.
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// An event time at most this far ahead of our clock is clock skew between
/// the source and us: it is sent as our clock's time (Google refuses future
/// conversion times). Further ahead is `Invalid`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Google Ads transaction ids are at most 64 characters (Help 6386790).
pub const MAX_TRANSACTION_ID_CHARS: usize = 64;
/// How long a claim on an event holds while its request is under way.
pub const CLAIM_TTL: Duration = Duration::from_secs(300);
/// How long an accepted event is remembered. An event older than
/// `MAX_EVENT_AGE` is never sent, so a week beyond it covers every
/// redelivery (the record is written no earlier than the event happened).
pub const LEDGER_TTL: Duration = Duration::from_secs((90 + 7) * 24 * 3600);
/// `eventSource` when the event's data does not name a valid one.
const DEFAULT_EVENT_SOURCE: &str = "OTHER";
/// event.proto `EventSource`, less EVENT_SOURCE_UNSPECIFIED ("should never
/// be used").
const EVENT_SOURCES: &[&str] = &["WEB", "APP", "IN_STORE", "PHONE", "MESSAGE", "OTHER"];
/// event.proto `AdIdentifiers` click ids, read from the event's properties
/// of the same name.
const CLICK_IDS: [&str; 3] = ["gclid", "gbraid", "wbraid"];

/// error.proto `ErrorReason`s with which Google refuses enhanced
/// conversions for the destination account's setup.
pub(super) const NOT_ENABLED_FOR_LEADS: &str =
    "DESTINATION_ACCOUNT_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS";
pub(super) const TERMS_NOT_SIGNED: &str =
    "DESTINATION_ACCOUNT_ENHANCED_CONVERSIONS_TERMS_NOT_SIGNED";
pub(super) const POLICY_PROHIBITS: &str =
    "DESTINATION_ACCOUNT_DATA_POLICY_PROHIBITS_ENHANCED_CONVERSIONS";
const ACCOUNT_SETUP_REASONS: [&str; 3] =
    [POLICY_PROHIBITS, NOT_ENABLED_FOR_LEADS, TERMS_NOT_SIGNED];

/// Whether an export sends events (not membership) to this destination.
pub(super) fn is_events_export(export: &ExportSpec) -> bool {
    matches!(export.mode, ExportMode::Events | ExportMode::Conversions)
}

/// One checked event, ready to claim and send.
struct Prepared {
    index: usize,
    action: String,
    transaction_id: String,
    /// No click id: an enhanced conversion for leads.
    lead: bool,
    body: Value,
}

/// The click id an event sends (`adIdentifiers` field, value), if any: a
/// gclid before the iOS ids; gbraid and wbraid together are refused.
pub(super) fn click_id(
    data: &serde_json::Map<String, Value>,
) -> Result<Option<(&'static str, String)>, String> {
    let mut found: [Option<String>; 3] = [None, None, None];
    for (key, value) in data {
        let Some(slot) = CLICK_IDS
            .iter()
            .position(|c| key.trim().eq_ignore_ascii_case(c))
        else {
            continue;
        };
        if let Some(v) = value.as_str().map(str::trim).filter(|v| !v.is_empty()) {
            found[slot] = Some(v.to_string());
        }
    }
    let [gclid, gbraid, wbraid] = found;
    Ok(match (gclid, gbraid, wbraid) {
        (Some(g), _, _) => Some(("gclid", g)),
        (None, Some(_), Some(_)) => {
            return Err(
                "both gbraid and wbraid: Google takes exactly one click id per conversion".into(),
            )
        }
        (None, Some(b), None) => Some(("gbraid", b)),
        (None, None, Some(w)) => Some(("wbraid", w)),
        (None, None, None) => None,
    })
}

/// The account-setup reason of a refusal (the `google.rpc.ErrorInfo`
/// reason, else the message), if it is one.
pub(super) fn account_setup_reason(body: &Value) -> Option<&'static str> {
    let error = body.get("error")?;
    let mut texts: Vec<&str> = error
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("reason").and_then(Value::as_str))
        .collect();
    texts.extend(error.get("message").and_then(Value::as_str));
    ACCOUNT_SETUP_REASONS
        .into_iter()
        .find(|r| texts.iter().any(|t| t.contains(r)))
}

/// The events of one request, with their claim keys.
struct Chunk {
    action: String,
    /// Lead conversions (no click id), else click conversions.
    lead: bool,
    events: Vec<(Prepared, String)>,
}

fn keys_of(claimed: Vec<(Prepared, String)>) -> Vec<String> {
    claimed.into_iter().map(|(_, k)| k).collect()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Indices of the events a 400 answer names (`fieldViolations[].field` like
/// `events[3].conversion_value`, or the message), within `0..len`.
pub(super) fn named_events(body: &Value, len: usize) -> BTreeSet<usize> {
    let mut texts: Vec<&str> = Vec::new();
    let error = body.get("error");
    if let Some(m) = error.and_then(|e| e.get("message")).and_then(Value::as_str) {
        texts.push(m);
    }
    for detail in error
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for v in detail
            .get("fieldViolations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(f) = v.get("field").and_then(Value::as_str) {
                texts.push(f);
            }
        }
    }
    let mut out = BTreeSet::new();
    for text in texts {
        let mut rest = text;
        while let Some(at) = rest.find("events[") {
            rest = &rest[at + "events[".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if rest[digits.len()..].starts_with(']') {
                if let Ok(i) = digits.parse::<usize>() {
                    if i < len {
                        out.insert(i);
                    }
                }
            }
        }
    }
    out
}

impl DataManagerDestination {
    /// The idempotency key remembering one accepted conversion.
    fn conversion_key(&self, action: &str, transaction_id: &str) -> String {
        format!(
            "gdm-conversion:{}:{}:{action}:{transaction_id}",
            self.name, self.operating_account_id
        )
    }

    /// What the operator changes in Google Ads about an account-setup
    /// refusal (`reason`, one of `ACCOUNT_SETUP_REASONS`).
    fn account_setup_advice(&self, reason: &str) -> String {
        let account = &self.operating_account_id;
        let what = if reason == POLICY_PROHIBITS {
            format!("Google's customer data policies do not allow enhanced conversions for Google Ads account {account}: contact your Google representative. Until that changes, only conversions carrying a click id (gclid, gbraid, wbraid) can go to this account")
        } else if reason == TERMS_NOT_SIGNED {
            format!("Google Ads account {account} has not accepted the customer data terms, which conversions matched on hashed email, phone or address need: an admin of the account accepts them in Google Ads (Goals > Conversions > Settings > Customer data terms), then send these conversions again")
        } else {
            format!("Google Ads account {account} is not opted in to enhanced conversions for leads, which conversions without a click id (gclid, gbraid, wbraid) need: in Google Ads (Goals > Conversions > Settings) turn on enhanced conversions for leads and accept the customer data terms, then send these conversions again")
        };
        format!("Google Data Manager refused the conversions ({reason}). {what}")
    }

    /// The event body of a conversion sent on its click id alone: the
    /// consent rules of `member` without user identifiers.
    fn click_only(&self, op: &DeliveryOp) -> Result<Value, OpOutcome> {
        let consent = person_consent(&self.consent, &op.attributes)?;
        let mut body = json!({});
        if let Some(c) = consent.own {
            body["consent"] = json!({ "adUserData": c.as_api(), "adPersonalization": c.as_api() });
        }
        Ok(body)
    }

    /// Check one event op and build its JSON, or say why it is not sent.
    fn prepare_event(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        index: usize,
        op: &DeliveryOp,
        now: i64,
    ) -> Result<Prepared, OpOutcome> {
        let invalid = |reason: String| OpOutcome::Invalid { reason };
        let Some(event) = op.event.as_ref().filter(|_| op.op == OpKind::Event) else {
            return Err(OpOutcome::Rejected {
                reason: "a conversions export carries events only".into(),
            });
        };
        let transaction_id = event
            .order_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .or_else(|| Some(event.event_id.trim()).filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                invalid("no transaction id: the event has no order_id and no event id".into())
            })?
            .to_string();
        if transaction_id.chars().count() > MAX_TRANSACTION_ID_CHARS {
            return Err(invalid(format!(
                "transaction id longer than {MAX_TRANSACTION_ID_CHARS} characters"
            )));
        }
        if now.saturating_sub(op.source_ts) > ms(MAX_EVENT_AGE) {
            return Err(invalid(format!(
                "event time older than {} days: Google does not import it",
                MAX_EVENT_AGE.as_secs() / 86_400
            )));
        }
        if op.source_ts > now.saturating_add(ms(CLOCK_SKEW)) {
            return Err(invalid("event time in the future".into()));
        }
        let at = chrono::DateTime::from_timestamp_millis(op.source_ts.min(now))
            .ok_or_else(|| invalid("event time out of range".into()))?
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let value = match (event.value, event.currency.as_deref()) {
            (Some(v), _) if !v.is_finite() || v < 0.0 => {
                return Err(invalid(format!(
                    "conversion value {v} is not a non-negative number"
                )))
            }
            (Some(v), Some(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
                Some((v, c))
            }
            (Some(_), _) => {
                return Err(invalid(
                    "conversion value without an ISO 4217 currency (3 upper-case letters)".into(),
                ))
            }
            (None, _) if export.mode == ExportMode::Conversions => {
                return Err(invalid("conversion without a value".into()))
            }
            (None, _) => None,
        };
        let click = click_id(&event.data).map_err(invalid)?;
        let keys = match_keys(binding, DestinationKind::GoogleDataManager);
        let opts = self.identity_options(export);
        // `member` applies the identifier rules and the EEA consent rule of
        // the audience path; an event Google cannot match would fail the
        // whole request (NO_IDENTIFIERS_PROVIDED), so it is Invalid here,
        // unless its click id matches it.
        let mut body = match self.member(&keys, &opts, op, true) {
            Ok(body) => body,
            Err(OpOutcome::Unmatched { reason }) if reason.starts_with("no Google identifier") => {
                if click.is_some() {
                    self.click_only(op)?
                } else {
                    return Err(OpOutcome::Invalid { reason });
                }
            }
            Err(other) => return Err(other),
        };
        body["transactionId"] = json!(transaction_id);
        body["eventTimestamp"] = json!(at);
        let source = event
            .data
            .get("event_source")
            .and_then(Value::as_str)
            .map(|s| s.trim().to_ascii_uppercase().replace(['-', ' '], "_"))
            .filter(|s| EVENT_SOURCES.contains(&s.as_str()))
            .unwrap_or_else(|| DEFAULT_EVENT_SOURCE.to_string());
        body["eventSource"] = json!(source);
        if let Some((field, id)) = &click {
            body["adIdentifiers"] = json!({ *field: id });
        }
        if let Some((v, c)) = value {
            body["conversionValue"] = json!(v);
            body["currency"] = json!(c);
        }
        Ok(Prepared {
            index,
            action: op.audience.clone(),
            transaction_id,
            lead: click.is_none(),
            body,
        })
    }

    /// Give back claims of events that did not reach Google.
    async fn release_claims(&self, keys: Vec<String>) {
        for key in keys {
            if let Err(e) = self.state.idempotency_release(&key).await {
                tracing::warn!(destination = %self.name, error = %e, "could not release a conversion claim; it expires by itself");
            }
        }
    }

    /// `send` for an events / conversions export (see the module doc).
    pub(super) async fn send_events(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        ops: &[DeliveryOp],
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        let now = self.clock.now_ms();
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
        // Same conversion twice in one batch: the later ones follow the first.
        let mut first_of: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut followers: Vec<(usize, usize)> = Vec::new();
        let mut ready: Vec<Prepared> = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            match self.prepare_event(export, binding, index, op, now) {
                Ok(p) => {
                    let key = (p.action.clone(), p.transaction_id.clone());
                    if let Some(first) = first_of.get(&key) {
                        followers.push((index, *first));
                    } else {
                        first_of.insert(key, index);
                        ready.push(p);
                    }
                }
                Err(outcome) => {
                    tracing::debug!(destination = %self.name, person = %op.person_key.log_safe(), ?outcome, "conversion not sent");
                    outcomes[index] = Some(outcome);
                }
            }
        }
        if let Some(bad) = ready.iter().find(|p| !is_numeric(&p.action)) {
            return Err(self.permanent(format!(
                "conversion action id must be numeric, not {:?}",
                bad.action
            )));
        }

        // Claim each conversion; skip those an earlier request carried.
        let mut claimed: Vec<(Prepared, String)> = Vec::new();
        let mut busy = 0usize;
        for p in ready {
            let key = self.conversion_key(&p.action, &p.transaction_id);
            let start = self
                .state
                .idempotency_start(&key, now, now + ms(CLAIM_TTL), now + ms(LEDGER_TTL))
                .await;
            match start {
                Ok(IdempotencyStart::Started) => claimed.push((p, key)),
                Ok(IdempotencyStart::Completed) => {
                    tracing::debug!(destination = %self.name, action = %p.action, "conversion already at Google: not sent again");
                    outcomes[p.index] = Some(OpOutcome::Accepted);
                }
                Ok(IdempotencyStart::InProgress) => busy += 1,
                Err(e) => {
                    self.release_claims(keys_of(claimed)).await;
                    return Err(self.state_error(e));
                }
            }
        }
        if busy > 0 {
            self.release_claims(keys_of(claimed)).await;
            return Err(self.retryable(
                format!("{busy} conversion(s) are being sent by another delivery (or one that stopped): retry once its claim has expired"),
                Some(CLAIM_TTL),
            ));
        }

        // Per conversion action, click conversions and lead conversions
        // apart (an account that cannot take leads refuses a request with
        // one whole), in requests of at most 2,000 events.
        let mut by_kind: BTreeMap<(String, bool), Vec<(Prepared, String)>> = BTreeMap::new();
        for (p, key) in claimed {
            by_kind
                .entry((p.action.clone(), p.lead))
                .or_default()
                .push((p, key));
        }
        let chunk_size = self.batch_size.min(MAX_EVENTS_PER_REQUEST);
        let mut chunks: Vec<Chunk> = Vec::new();
        for ((action, lead), mut events) in by_kind {
            while !events.is_empty() {
                let rest = events.split_off(events.len().min(chunk_size));
                chunks.push(Chunk {
                    action: action.clone(),
                    lead,
                    events: std::mem::replace(&mut events, rest),
                });
            }
        }
        // Set once Google refused lead conversions for the account's setup.
        let mut leads_refused: Option<String> = None;
        let mut pending = chunks.into_iter();
        while let Some(Chunk {
            action,
            lead,
            events: chunk,
        }) = pending.next()
        {
            if let (true, Some(advice)) = (lead, &leads_refused) {
                self.release_claims(chunk.iter().map(|(_, k)| k.clone()).collect())
                    .await;
                for (p, _) in &chunk {
                    outcomes[p.index] = Some(OpOutcome::Rejected {
                        reason: advice.clone(),
                    });
                }
                continue;
            }
            let body = json!({
                "destinations": [self.destination_json(&action)],
                "events": chunk.iter().map(|(p, _)| &p.body).collect::<Vec<_>>(),
                "consent": {
                    "adUserData": self.consent.ad_user_data.as_api(),
                    "adPersonalization": self.consent.ad_personalization.as_api(),
                },
                "encoding": "HEX",
            });
            let path = "v1/events:ingest";
            let answer = match self.exchange(path, Some(&body)).await {
                Ok(a) => a,
                Err(e) => {
                    let mut keys = keys_of(chunk);
                    keys.extend(pending.flat_map(|c| keys_of(c.events)));
                    self.release_claims(keys).await;
                    return Err(e);
                }
            };
            if (200..300).contains(&answer.status) {
                let parsed: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
                let request_id = parsed
                    .get("requestId")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                tracing::info!(destination = %self.name, action = %action, events = chunk.len(), request_id, "Data Manager events accepted; processing is asynchronous");
                let expires = self.clock.now_ms() + ms(LEDGER_TTL);
                for (p, key) in &chunk {
                    let mut done = self.state.idempotency_complete(key, expires).await;
                    if done.is_err() {
                        done = self.state.idempotency_complete(key, expires).await;
                    }
                    if let Err(e) = done {
                        tracing::warn!(destination = %self.name, error = %e, "conversion accepted by Google but not recorded: a redelivery after the claim expires relies on Google's transaction-id dedup");
                    }
                    outcomes[p.index] = Some(OpOutcome::Accepted);
                }
                let people = chunk
                    .iter()
                    .filter_map(|(p, _)| {
                        ops.get(p.index)
                            .map(|op| (op.person_key.as_str().to_string(), "e"))
                    })
                    .collect();
                self.record_request(request_id, "events", &export.name, &action, people)
                    .await;
                continue;
            }
            // Google processed none of this request: its claims go back.
            let keys: Vec<String> = chunk.iter().map(|(_, k)| k.clone()).collect();
            self.release_claims(keys).await;
            let parsed: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            if let Some(reason) = account_setup_reason(&parsed)
                .filter(|_| (400..500).contains(&answer.status) && answer.status != 429)
            {
                let advice = self.account_setup_advice(reason);
                tracing::warn!(destination = %self.name, action = %action, events = chunk.len(), lead, reason, "Google refused conversions for the Google Ads account's setup: rejected until the account is fixed");
                for (p, _) in &chunk {
                    outcomes[p.index] = Some(OpOutcome::Rejected {
                        reason: advice.clone(),
                    });
                }
                if lead {
                    leads_refused = Some(advice);
                }
                continue;
            }
            if answer.status != 400 {
                let later: Vec<String> = pending.flat_map(|c| keys_of(c.events)).collect();
                self.release_claims(later).await;
                return Err(self.refusal(path, &answer));
            }
            let message = match self.refusal(path, &answer) {
                DestinationError::Permanent { message, .. }
                | DestinationError::Retryable { message, .. } => message,
            };
            let named = named_events(&parsed, chunk.len());
            tracing::warn!(destination = %self.name, action = %action, events = chunk.len(), named = named.len(), %message, "Data Manager refused an events request whole");
            for (i, (p, _)) in chunk.iter().enumerate() {
                outcomes[p.index] = Some(if named.is_empty() || named.contains(&i) {
                    OpOutcome::Rejected {
                        reason: format!("Google Data Manager: {message}"),
                    }
                } else {
                    OpOutcome::Retry {
                        reason: "its request was refused for another event".into(),
                    }
                });
            }
        }
        for (index, first) in followers {
            outcomes[index] = Some(match &outcomes[first] {
                Some(OpOutcome::Accepted) => OpOutcome::Accepted,
                _ => OpOutcome::Retry {
                    reason: "same transaction id as another event of the batch".into(),
                },
            });
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(OpOutcome::Retry {
                    reason: "not sent".into(),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
