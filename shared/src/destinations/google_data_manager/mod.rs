//! Google audiences through the Data Manager API (`API-CONTRACTS.md` §4b),
//! the default Google path since Customer Match left the Ads API.
//!
//! `send`: per user list (the binding's audience), removes first, then adds
//! (an identifier change removes the old row before the new one lands, so a
//! shared phone does not take the new row out again), each in requests of at
//! most `batch_size` (≤ 10,000) members with ≤ 10 identifiers each:
//! `POST {base}/v1/audienceMembers:ingest` / `:remove` with `destinations`
//! (operating account GOOGLE_ADS, optional login account: a linked account
//! is for data partners only and the spec refuses it,
//! `productDestinationId` = user list id), `encoding: HEX`, and on ingest
//! `termsOfService` ACCEPTED and the request's `consent` from the settings.
//! A member's own consent comes from the export attribute the settings name
//! and overrides the request's. A person in the EEA (or the UK or
//! Switzerland: Google's EU user consent policy), decided by the country
//! attribute, without both consents granted is not sent: `Unmatched` with
//! "no consent (EEA)", counted with the unmatched.
//!
//! Identifiers: `domain::identity::google_identifiers` (lowercase, trimmed,
//! Gmail dots removed and the Gmail `+suffix` stripped by default here
//! (`gmail_remove_dots`, `gmail_strip_plus_suffix`), phone E.164 with `+`,
//! SHA-256 hex; address names hashed without punctuation, titles or
//! suffixes, region and postal code not). See `docs/google-identifiers.md`.
//!
//! Processing is asynchronous: the answer is a `requestId`, recorded in the
//! state store (`req/<sent_at>/<request id>/<part>`, with the people it
//! carried) and never waited for. [`Destination::settle`], called at the
//! start of each delivery invocation, reads `GET v1/requestStatus:retrieve?requestId=…`
//! first `status_poll_after` (30 min) after sending, then at doubling gaps
//! (kept in the record): SUCCESS drops the record; FAILED makes every
//! person of the request rejected with Google's reasons (counters move from
//! accepted to rejected, and `rejected/<export>/<person>` records the reason
//! per person); PARTIAL_SUCCESS gives counts per reason only (the API does
//! not say which member), so the counters move by those counts and
//! `partial/<request id>` keeps the reasons. Duplicate reasons mean the
//! record landed before and count as landed; an unknown id
//! (`INVALID_REQUEST_ID`) drops the record. See `docs/google-data-manager.md`.
//!
//! Why delivery and not reconcile: the delivery function already holds the
//! client, its access token and the per-project request budget, and runs
//! within minutes of every send, so a rejection is counted the same hour;
//! reconcile runs once a day. (A request whose list sees no further sends is
//! settled at that list's next delivery, or by anyone calling `settle`.)
//!
//! Conversions: an `events` / `conversions` export sends its event ops to
//! `events:ingest` instead (`events.rs`), same client and settings.
//!
//! Limits: 300 requests per minute per Cloud project, and as many status
//! reads, enforced in-process by `governor` (a wait over 5 s becomes
//! `Retryable` with that delay); other processes share the project's budget,
//! so 429 RESOURCE_EXHAUSTED is `Retryable`: the daily quota (100,000) until
//! its reset, the per-minute one after the server's delay or 60 s. A 400
//! naming members (`fieldViolations`, `audience_members[i]`) rejects those
//! and sends the rest. 401 fetches a new token once and retries; a second
//! 401 is permanent. 5xx / 408 retry; other 4xx are permanent.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{json, Value};

use super::google_auth::{GoogleTokens, DATA_MANAGER_SCOPE};
use super::google_consent::person_consent;
use super::{
    status_is_retryable, Destination, DestinationError, OpOutcome, ReadBack, SettleSummary,
};
use crate::domain::identity::{google_identifiers, match_keys, GoogleIdentifier, IdentityOptions};
use crate::domain::model::{DeliveryOp, OpKind};
use crate::domain::spec::{
    DestinationKind, DestinationSettings, DestinationSpec, ExportDestination, ExportSpec,
    GoogleConsentSpec, MatchKey,
};
use crate::ports::{Clock, Secrets, StateStore};

pub const DEFAULT_BASE_URL: &str = "https://datamanager.googleapis.com";
pub const MAX_MEMBERS_PER_REQUEST: usize = 10_000;
pub const MAX_IDENTIFIERS_PER_MEMBER: usize = 10;
pub const REQUESTS_PER_MINUTE: u32 = 300;
const LONGEST_BUDGET_WAIT: Duration = Duration::from_secs(5);
/// The status read: a GET with the id in the query (ingestion_service.proto).
const STATUS_PATH: &str = "v1/requestStatus:retrieve";
const DEFAULT_429_DELAY: Duration = Duration::from_secs(60);

pub struct DataManagerDestination {
    name: String,
    base: String,
    operating_account_id: String,
    login_account_id: Option<String>,
    consent: GoogleConsentSpec,
    gmail_remove_dots: bool,
    gmail_strip_plus_suffix: bool,
    status_poll_after_ms: i64,
    batch_size: usize,
    tokens: GoogleTokens,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    state: Arc<dyn StateStore>,
    /// Ingest / remove / user-list calls: 300 per minute per project.
    budget: DefaultDirectRateLimiter,
    /// Request-status reads have a quota of their own (300 per minute).
    status_budget: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for DataManagerDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataManagerDestination")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("operating_account_id", &self.operating_account_id)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// One member ready to send, remembering its op and how it counted
/// (`a` add, `r` remove, `u` update, `ta` / `tr` tier add / remove).
struct Member {
    index: usize,
    tag: &'static str,
    body: Value,
}

/// The HTTP verb of a call: Google serves each method on one verb only
/// (`requestStatus:retrieve` is a GET with the id in the query).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
}

/// Google's answer to one request, whatever its status.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: bytes::Bytes,
}

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl DataManagerDestination {
    pub fn new(
        name: String,
        spec: &DestinationSpec,
        secrets: &dyn Secrets,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        state: Arc<dyn StateStore>,
    ) -> Result<Self, DestinationError> {
        let permanent = |message: String| DestinationError::Permanent {
            destination: name.clone(),
            message,
        };
        let DestinationSettings::GoogleDataManager {
            operating_account_id,
            login_account_id,
            auth,
            consent,
            gmail_remove_dots,
            gmail_strip_plus_suffix,
            status_poll_after_ms,
        } = &spec.settings
        else {
            return Err(permanent(
                "settings are not of kind google_data_manager".into(),
            ));
        };
        for id in std::iter::once(operating_account_id).chain(login_account_id) {
            if !is_numeric(id) {
                return Err(permanent(format!(
                    "account ids are digits only, not {id:?}"
                )));
            }
        }
        let tokens = GoogleTokens::new(
            &name,
            auth,
            DATA_MANAGER_SCOPE,
            secrets,
            http.clone(),
            clock.clone(),
        )?;
        let per_minute = NonZeroU32::new(REQUESTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            base: spec
                .base_url
                .as_deref()
                .unwrap_or(DEFAULT_BASE_URL)
                .trim_end_matches('/')
                .to_string(),
            operating_account_id: operating_account_id.clone(),
            login_account_id: login_account_id.clone(),
            consent: consent.clone(),
            gmail_remove_dots: *gmail_remove_dots,
            gmail_strip_plus_suffix: *gmail_strip_plus_suffix,
            status_poll_after_ms: i64::try_from(*status_poll_after_ms).unwrap_or(i64::MAX),
            batch_size: spec.batch_size.clamp(1, MAX_MEMBERS_PER_REQUEST),
            tokens,
            http,
            clock,
            state,
            budget: RateLimiter::direct(Quota::per_minute(per_minute)),
            status_budget: RateLimiter::direct(Quota::per_minute(per_minute)),
            name,
        })
    }

    fn permanent(&self, message: String) -> DestinationError {
        DestinationError::Permanent {
            destination: self.name.clone(),
            message,
        }
    }

    fn retryable(&self, message: String, retry_after: Option<Duration>) -> DestinationError {
        DestinationError::Retryable {
            destination: self.name.clone(),
            message,
            retry_after,
        }
    }

    fn state_error(&self, e: crate::ports::StateError) -> DestinationError {
        self.retryable(format!("state store: {e}"), None)
    }

    /// The `destinations` entry of one user list.
    fn destination_json(&self, list: &str) -> Value {
        let mut d = json!({
            "operatingAccount": { "accountType": "GOOGLE_ADS", "accountId": self.operating_account_id },
            "productDestinationId": list,
        });
        if let Some(login) = &self.login_account_id {
            d["loginAccount"] = json!({ "accountType": "GOOGLE_ADS", "accountId": login });
        }
        d
    }

    /// Wait for the per-project budget; a long wait is the caller's retry.
    async fn take_budget(&self, status_read: bool) -> Result<(), DestinationError> {
        let budget = if status_read {
            &self.status_budget
        } else {
            &self.budget
        };
        loop {
            match budget.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    if wait > LONGEST_BUDGET_WAIT {
                        return Err(self.retryable(
                            format!(
                                "in-process budget of {REQUESTS_PER_MINUTE} requests per minute spent"
                            ),
                            Some(wait),
                        ));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One POST call: budget, bearer token, a single refresh on 401.
    async fn call(&self, path: &str, body: Option<&Value>) -> Result<Value, DestinationError> {
        let answer = self.exchange(path, body).await?;
        self.read_answer(path, &answer)
    }

    /// One GET call (`query` in the URL), with the `login-account` header
    /// when the credentials reach the account through a manager.
    async fn call_get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        status_read: bool,
    ) -> Result<Value, DestinationError> {
        let answer = self
            .exchange_with(Verb::Get, path, query, None, status_read)
            .await?;
        self.read_answer(path, &answer)
    }

    fn read_answer(&self, path: &str, answer: &Answer) -> Result<Value, DestinationError> {
        if (200..300).contains(&answer.status) {
            return serde_json::from_slice(&answer.body).map_err(|e| {
                self.retryable(
                    format!("unreadable Data Manager answer to {path}: {e}"),
                    None,
                )
            });
        }
        Err(self.refusal(path, answer))
    }

    /// Send one POST (a `body`) or GET (none) and return Google's answer
    /// whatever its status.
    async fn exchange(&self, path: &str, body: Option<&Value>) -> Result<Answer, DestinationError> {
        let verb = if body.is_some() {
            Verb::Post
        } else {
            Verb::Get
        };
        self.exchange_with(verb, path, &[], body, false).await
    }

    /// Send one request: budget (the status-read quota for status reads),
    /// bearer token, a single refresh on 401; transport failures are
    /// retryable errors.
    async fn exchange_with(
        &self,
        verb: Verb,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        status_read: bool,
    ) -> Result<Answer, DestinationError> {
        let url = format!("{}/{path}", self.base);
        let mut refreshed = false;
        loop {
            self.take_budget(status_read).await?;
            let token = self.tokens.token().await?;
            let mut req = match verb {
                Verb::Post => self.http.post(&url).json(body.unwrap_or(&Value::Null)),
                Verb::Get => {
                    let mut get = self.http.get(&url).query(query);
                    // Reads name the manager in a header (user_list_service.proto:
                    // `login-account`); writes carry it in `destinations`.
                    if let Some(login) = &self.login_account_id {
                        get = get.header(
                            "login-account",
                            format!("accountTypes/GOOGLE_ADS/accounts/{login}"),
                        );
                    }
                    get
                }
            };
            req = req.bearer_auth(token.expose());
            let resp = req
                .send()
                .await
                .map_err(|e| self.retryable(format!("transport: {}", e.without_url()), None))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = resp
                .bytes()
                .await
                .map_err(|e| self.retryable(format!("transport: {}", e.without_url()), None))?;
            if status == 401 && !refreshed && self.tokens.can_refresh() {
                tracing::info!(destination = %self.name, "access token refused (401): refreshing once");
                self.tokens.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            return Ok(Answer {
                status,
                retry_after,
                body,
            });
        }
    }

    /// The error of a non-2xx answer. 429 / RESOURCE_EXHAUSTED: the daily
    /// quota waits for its reset, the per-minute one for the server's delay
    /// (Retry-After, RetryInfo) or 60 s. 5xx / 408 retry; other 4xx are
    /// permanent, with Google's reason in the message.
    fn refusal(&self, path: &str, answer: &Answer) -> DestinationError {
        let status = answer.status;
        let read = errors::read(&answer.body);
        let reason = read
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let message = format!(
            "{path}: HTTP {status} {}{reason}: {}",
            read.status, read.message
        );
        if status == 429 || read.status == "RESOURCE_EXHAUSTED" {
            let wait = match read.quota {
                Some(errors::QuotaWindow::PerDay) => errors::until_daily_reset(self.clock.now_ms()),
                _ => answer
                    .retry_after
                    .or(read.retry_delay)
                    .unwrap_or(DEFAULT_429_DELAY),
            };
            if read.quota == Some(errors::QuotaWindow::PerDay) {
                tracing::warn!(destination = %self.name, wait_s = wait.as_secs(), "the project's daily Data Manager quota (100,000 requests) is spent: waiting for its reset");
            }
            self.retryable(message, Some(wait))
        } else if status_is_retryable(status)
            || matches!(read.status.as_str(), "UNAVAILABLE" | "INTERNAL")
        {
            self.retryable(message, answer.retry_after)
        } else {
            self.permanent(message)
        }
    }

    /// The member JSON of one op, or why it is not sent.
    fn member(
        &self,
        keys: &[MatchKey],
        opts: &IdentityOptions,
        op: &DeliveryOp,
        ingest: bool,
    ) -> Result<Value, OpOutcome> {
        let identifiers = google_identifiers(keys, &op.ids, &op.attributes, opts).map_err(|e| {
            OpOutcome::Unmatched {
                reason: format!("no Google identifier: {e}"),
            }
        })?;
        let ids: Vec<Value> = identifiers
            .iter()
            .filter_map(|i| match i {
                GoogleIdentifier::HashedEmail(h) => Some(json!({ "emailAddress": h })),
                GoogleIdentifier::HashedPhoneNumber(h) => Some(json!({ "phoneNumber": h })),
                GoogleIdentifier::AddressInfo {
                    hashed_first_name,
                    hashed_last_name,
                    country_code,
                    postal_code,
                } => Some(json!({ "address": {
                    "givenName": hashed_first_name,
                    "familyName": hashed_last_name,
                    "regionCode": country_code.trim().to_ascii_uppercase(),
                    "postalCode": postal_code.trim(),
                }})),
                // Customer Match through Data Manager takes contact info only.
                GoogleIdentifier::ThirdPartyUserId(_) => None,
            })
            .take(MAX_IDENTIFIERS_PER_MEMBER)
            .collect();
        if ids.is_empty() {
            return Err(OpOutcome::Unmatched {
                reason: "no Google identifier: only identifiers Data Manager does not take".into(),
            });
        }
        let mut member = json!({ "userData": { "userIdentifiers": ids } });
        if ingest {
            let consent = person_consent(&self.consent, &op.attributes)?;
            if let Some(c) = consent.own {
                member["consent"] =
                    json!({ "adUserData": c.as_api(), "adPersonalization": c.as_api() });
            }
        }
        Ok(member)
    }

    fn identity_options(&self, export: &ExportSpec) -> IdentityOptions {
        IdentityOptions {
            default_phone_region: export.identity.default_phone_region.clone(),
            gmail_remove_dots: self.gmail_remove_dots,
            gmail_strip_plus_suffix: self.gmail_strip_plus_suffix,
        }
    }

    /// The body of one ingest / remove request of `list`.
    fn members_body(&self, list: &str, ingest: bool, members: &[&Member]) -> Value {
        let mut body = json!({
            "destinations": [self.destination_json(list)],
            "audienceMembers": members.iter().map(|m| &m.body).collect::<Vec<_>>(),
            "encoding": "HEX",
        });
        if ingest {
            body["consent"] = json!({
                "adUserData": self.consent.ad_user_data.as_api(),
                "adPersonalization": self.consent.ad_personalization.as_api(),
            });
            body["termsOfService"] = json!({ "customerMatchTermsOfServiceStatus": "ACCEPTED" });
        }
        body
    }

    /// Send one chunk of members. Google fails the whole request for a bad
    /// member and names it (`BadRequest.fieldViolations`,
    /// `audience_members[i]…`): those are `Rejected` with Google's words and
    /// the rest go again, so one bad row never holds back the others.
    async fn send_chunk(
        &self,
        export: &ExportSpec,
        list: &str,
        ingest: bool,
        chunk: &[Member],
        ops: &[DeliveryOp],
        outcomes: &mut [Option<OpOutcome>],
    ) -> Result<(), DestinationError> {
        let path = if ingest {
            "v1/audienceMembers:ingest"
        } else {
            "v1/audienceMembers:remove"
        };
        let mut live: Vec<&Member> = chunk.iter().collect();
        while !live.is_empty() {
            let body = self.members_body(list, ingest, &live);
            let answer = self.exchange(path, Some(&body)).await?;
            if !(200..300).contains(&answer.status) {
                let refusal = errors::read(&answer.body);
                let named = if answer.status == 400 {
                    errors::named_items(&refusal, "audience_members", live.len())
                } else {
                    BTreeMap::new()
                };
                if named.is_empty() {
                    return Err(self.refusal(path, &answer));
                }
                let reason = refusal.reason.as_deref().unwrap_or(refusal.status.as_str());
                for (i, what) in named.iter().rev() {
                    let m = live.remove(*i);
                    outcomes[m.index] = Some(OpOutcome::Rejected {
                        reason: format!(
                            "Google Data Manager refused this member ({reason}): {what}"
                        ),
                    });
                }
                tracing::warn!(destination = %self.name, list, refused = named.len(), left = live.len(), reason, "Data Manager refused members by name; sending the others again");
                continue;
            }
            let answer = self.read_answer(path, &answer)?;
            let request_id = answer
                .get("requestId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            tracing::info!(destination = %self.name, list, members = live.len(), request_id, "Data Manager request accepted; processing is asynchronous");
            let people = live
                .iter()
                .filter_map(|m| {
                    ops.get(m.index)
                        .map(|op| (op.person_key.as_str().to_string(), m.tag))
                })
                .collect();
            self.record_request(
                request_id,
                if ingest { "ingest" } else { "remove" },
                &export.name,
                list,
                people,
            )
            .await;
            for m in &live {
                outcomes[m.index] = Some(OpOutcome::Accepted);
            }
            break;
        }
        Ok(())
    }

    /// Full replace of one list: note time T, ingest `adds`, then remove
    /// every member last added before T (`audienceMembers:removeAll` with
    /// `removeAsOfTime`). Rollback and resync call this. Returns one outcome
    /// per op, like `send`.
    pub async fn replace_all(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        list: &str,
        adds: &[DeliveryOp],
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        if !is_numeric(list) {
            return Err(self.permanent(format!("user list id must be numeric, not {list:?}")));
        }
        let as_of_ms = self.clock.now_ms();
        let as_of = chrono::DateTime::from_timestamp_millis(as_of_ms)
            .ok_or_else(|| self.permanent("clock out of range".into()))?
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let ops: Vec<DeliveryOp> = adds
            .iter()
            .map(|op| DeliveryOp {
                op: OpKind::Add,
                audience: list.to_string(),
                ..op.clone()
            })
            .collect();
        let outcomes = self.send(export, binding, &ops).await?;
        let body = json!({
            "destinations": [self.destination_json(list)],
            "removeAsOfTime": as_of,
        });
        let answer = self
            .call("v1/audienceMembers:removeAll", Some(&body))
            .await?;
        let request_id = answer
            .get("requestId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        tracing::info!(destination = %self.name, list, %as_of, request_id, "full replace: members added before T removed");
        self.record_request(request_id, "remove_all", &export.name, list, Vec::new())
            .await;
        Ok(outcomes)
    }
}

#[async_trait]
impl Destination for DataManagerDestination {
    fn name(&self) -> &str {
        &self.name
    }

    /// The status of the newest request still awaiting its status that
    /// carried this person (see `status.rs`).
    async fn read_back(
        &self,
        _export: &ExportSpec,
        _binding: &ExportDestination,
        op: &DeliveryOp,
    ) -> Result<ReadBack, DestinationError> {
        self.status_of_request_carrying(op).await
    }

    /// Ingest the members, then remove every member added before (see
    /// [`DataManagerDestination::replace_all`]). With no member, `None`:
    /// the caller removes.
    async fn replace_audience(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        audience: &str,
        members: &[DeliveryOp],
    ) -> Result<Option<Vec<OpOutcome>>, DestinationError> {
        if members.is_empty() {
            return Ok(None);
        }
        self.replace_all(export, binding, audience, members)
            .await
            .map(Some)
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::GoogleDataManager
    }

    fn max_batch(&self) -> usize {
        self.batch_size
    }

    async fn send(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
        ops: &[DeliveryOp],
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        if events::is_events_export(export) {
            return self.send_events(export, binding, ops).await;
        }
        let keys = match_keys(binding, DestinationKind::GoogleDataManager);
        let opts = self.identity_options(export);
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
        // (wave, list, 0 = remove / 1 = ingest) → members: removes go first,
        // and a person's remove after their add waits for the next wave.
        let mut batches: BTreeMap<(usize, &str, u8), Vec<Member>> = BTreeMap::new();
        let slots = super::send_slots(ops);
        for ((index, op), slot) in ops.iter().enumerate().zip(slots) {
            let wave = slot.map_or(0, |s| s.wave);
            let (ingest, tag) = match (op.op, op.tier.is_some()) {
                (OpKind::Add | OpKind::Update, false) => (true, "a"),
                (OpKind::Add | OpKind::Update, true) => (true, "ta"),
                (OpKind::Remove, false) => (false, "r"),
                (OpKind::Remove, true) => (false, "tr"),
                (OpKind::Event, _) => {
                    outcomes[index] = Some(OpOutcome::Rejected {
                        reason: "Customer Match takes membership ops, not events".into(),
                    });
                    continue;
                }
            };
            // Updates of people already in the list are ingests again: idempotent.
            let tag = if op.op == OpKind::Update { "u" } else { tag };
            match self.member(&keys, &opts, op, ingest) {
                Ok(body) => batches
                    .entry((wave, op.audience.as_str(), u8::from(ingest)))
                    .or_default()
                    .push(Member { index, tag, body }),
                Err(outcome) => {
                    tracing::debug!(destination = %self.name, person = %op.person_key.log_safe(), "not sent to Google");
                    outcomes[index] = Some(outcome);
                }
            }
        }
        if let Some(((_, bad, _), _)) = batches.iter().find(|((_, list, _), _)| !is_numeric(list)) {
            return Err(self.permanent(format!("user list id must be numeric, not {bad:?}")));
        }
        for ((_, list, ingest), members) in &batches {
            let ingest = *ingest == 1;
            for chunk in members.chunks(self.batch_size) {
                self.send_chunk(export, list, ingest, chunk, ops, &mut outcomes)
                    .await?;
            }
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

    async fn settle(&self) -> Result<SettleSummary, DestinationError> {
        self.settle_requests().await
    }

    async fn audience_size(
        &self,
        export: &ExportSpec,
        binding: &ExportDestination,
    ) -> Result<Option<u64>, DestinationError> {
        if events::is_events_export(export) {
            return Ok(None); // a conversion action has no size
        }
        let list = &binding.audience;
        if !is_numeric(list) {
            return Err(self.permanent(format!("user list id must be numeric, not {list:?}")));
        }
        let answer = self
            .call_get(
                &format!(
                    "v1/accountTypes/GOOGLE_ADS/accounts/{}/userLists/{list}",
                    self.operating_account_id
                ),
                &[],
                false,
            )
            .await?;
        let info = answer.get("sizeInfo");
        let size = ["searchNetworkMembersCount", "displayNetworkMembersCount"]
            .iter()
            .find_map(|k| match info?.get(*k)? {
                Value::String(s) => s.parse::<u64>().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            });
        Ok(size)
    }

    fn describe_output(&self, export: &ExportSpec, binding: &ExportDestination) -> String {
        if events::is_events_export(export) {
            return format!(
                "Google Ads conversion action {} of account {} (Data Manager API events:ingest)",
                binding.audience, self.operating_account_id
            );
        }
        format!(
            "Google Ads user list {} of account {} (Data Manager API)",
            binding.audience, self.operating_account_id
        )
    }
}

/// Reading Google's refusals.
pub mod errors;

/// Request records and their status reads.
mod status;
#[cfg(test)]
use status::poll_gap;

/// Conversions (`events:ingest`): a child module, so it shares the client.
mod events;

#[cfg(test)]
mod tests;
