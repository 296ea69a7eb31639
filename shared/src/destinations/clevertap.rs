//! CleverTap: profile and event upload (`POST /1/upload`, API-CONTRACTS §2).
//!
//! Membership is a boolean profile property per export audience (option a of
//! the contract): Add sends `{<audience>: true, ...attributes}`, Remove sends
//! `{<audience>: false}` alone, Update sends the attributes, Event sends an
//! event record with nested values stringified (CleverTap refuses nested
//! event data). Add and Update also carry the person's normalised `Email` and
//! `Phone` when known, unless the export's attributes already name those keys.
//!
//! The record's `identity` is the person's golden id per the export's
//! identity spec (golden, then fallbacks); a person with none is `Unmatched`
//! and never sent.
//!
//! An HTTP 200 can still carry failed records, even with `status: success`:
//! the `unprocessed` array is always read and each failed record mapped back
//! to its op, first by the exact record echoed, then by identity. Code 555 is
//! worth retrying; every other code rejects that op only.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{status_is_retryable, Destination, DestinationError, OpOutcome};
use crate::domain::identity::{normalize_email, normalize_phone_e164};
use crate::domain::model::{DeliveryOp, Identifiers, OpKind};
use crate::domain::spec::{
    DestinationKind, DestinationSettings, DestinationSpec, ExportDestination, ExportSpec, IdKind,
    IdentitySpec,
};
use crate::ports::{Secret, Secrets};

/// Records per request: current docs allow 1000 (the official library uses 100).
pub const MAX_RECORDS_PER_REQUEST: usize = 1000;
/// Per-record code of a miscellaneous server error: the only retryable one.
pub const CODE_RETRYABLE: u16 = 555;

/// The Europe region has no prefix.
pub fn base_url_for_region(region: &str) -> Result<String, String> {
    let region = region.trim().to_ascii_lowercase();
    if region.is_empty() || region == "eu1" || region == "eu" {
        return Ok("https://api.clevertap.com".to_string());
    }
    if !region.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("invalid CleverTap region {region:?}"));
    }
    Ok(format!("https://{region}.api.clevertap.com"))
}

/// The person's identifier per the export's identity spec (golden first,
/// then fallbacks), normalised: email lowercased, phone E.164. `None` when
/// no listed kind yields a usable value.
pub fn golden_identity(spec: &IdentitySpec, ids: &Identifiers) -> Option<(IdKind, String)> {
    std::iter::once(spec.golden)
        .chain(spec.fallbacks.iter().copied())
        .find_map(|kind| {
            let value = match kind {
                IdKind::Id => ids.id().map(str::to_string),
                IdKind::CioId => ids.cio_id().map(str::to_string),
                IdKind::Email => ids.email().and_then(|e| normalize_email(e, false).ok()),
                IdKind::Phone => ids.phone().and_then(|p| {
                    normalize_phone_e164(p, spec.default_phone_region.as_deref()).ok()
                }),
            };
            value.map(|v| (kind, v))
        })
}

/// What a per-record code means (our words, so reasons never echo a value).
fn code_meaning(code: u16) -> &'static str {
    match code {
        509 => "event name missing",
        512 => "event or profile structure invalid",
        513 => "restricted system event",
        514 => "gender invalid",
        515 => "email invalid",
        516 => "phone invalid (E.164 with + required)",
        517 => "employment status invalid",
        518 => "education invalid",
        519 => "marital status invalid",
        520 => "age invalid",
        522 => "too many event properties",
        523 => "identity missing",
        524 => "neither event nor profile",
        525 => "timestamp not Unix epoch seconds",
        526 => "objectId invalid",
        528 => "event discarded",
        555 => "miscellaneous server error",
        _ => "unknown error code",
    }
}

pub struct ClevertapDestination {
    name: String,
    base_url: String,
    account_id: Secret,
    passcode: Secret,
    batch_size: usize,
    http: reqwest::Client,
}

impl std::fmt::Debug for ClevertapDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClevertapDestination")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
struct UploadResponse {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    processed: Option<u64>,
    #[serde(default)]
    unprocessed: Vec<FailedRecord>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: Option<u16>,
}

#[derive(Debug, Deserialize)]
struct FailedRecord {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    record: Option<Value>,
}

/// An op turned into a record, remembering which op it came from.
struct Prepared {
    index: usize,
    record: Value,
}

impl ClevertapDestination {
    pub fn new(
        name: String,
        spec: &DestinationSpec,
        secrets: &dyn Secrets,
        http: reqwest::Client,
    ) -> Result<Self, DestinationError> {
        let permanent = |message: String| DestinationError::Permanent {
            destination: name.clone(),
            message,
        };
        let DestinationSettings::Clevertap {
            region,
            account_id_env,
            passcode_env,
        } = &spec.settings
        else {
            return Err(permanent("settings are not of kind clevertap".to_string()));
        };
        let secret = |env: &str| super::required_secret(secrets, &name, env);
        let account_id = secret(account_id_env)?;
        let passcode = secret(passcode_env)?;
        let base_url = match &spec.base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => base_url_for_region(region).map_err(permanent)?,
        };
        Ok(Self {
            batch_size: spec.batch_size.clamp(1, MAX_RECORDS_PER_REQUEST),
            name,
            base_url,
            account_id,
            passcode,
            http,
        })
    }

    fn retryable(&self, message: String) -> DestinationError {
        DestinationError::Retryable {
            destination: self.name.clone(),
            message,
            retry_after: None,
        }
    }

    fn permanent(&self, message: String) -> DestinationError {
        DestinationError::Permanent {
            destination: self.name.clone(),
            message,
        }
    }

    /// The record for one op, or the outcome that keeps it from being sent.
    fn record_for(&self, export: &ExportSpec, op: &DeliveryOp) -> Result<Value, OpOutcome> {
        let Some((_, identity)) = golden_identity(&export.identity, &op.ids) else {
            return Err(OpOutcome::Unmatched {
                reason: format!(
                    "no usable {} identifier for CleverTap",
                    id_kinds(&export.identity)
                ),
            });
        };
        let mut record = Map::new();
        record.insert("identity".into(), Value::String(identity));
        if op.source_ts > 0 {
            record.insert("ts".into(), json!(op.source_ts / 1000));
        }
        match op.op {
            OpKind::Event => {
                let Some(event) = &op.event else {
                    return Err(OpOutcome::Rejected {
                        reason: "event op carries no event".to_string(),
                    });
                };
                let data: Map<String, Value> = event
                    .data
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), flat_event_value(v)))
                    .collect();
                record.insert("type".into(), json!("event"));
                record.insert("evtName".into(), json!(event.name));
                record.insert("evtData".into(), Value::Object(data));
            }
            OpKind::Add | OpKind::Remove | OpKind::Update => {
                let mut data = Map::new();
                if op.op != OpKind::Remove {
                    self.known_contact(export, &op.ids, &mut data);
                    for (k, v) in &op.attributes {
                        if !v.is_null() {
                            data.insert(k.clone(), profile_value(v));
                        }
                    }
                }
                // Last, so no attribute can clobber the membership flag.
                match op.op {
                    OpKind::Add => {
                        data.insert(op.audience.clone(), Value::Bool(true));
                    }
                    OpKind::Remove => {
                        data.insert(op.audience.clone(), Value::Bool(false));
                    }
                    _ => {}
                }
                record.insert("type".into(), json!("profile"));
                record.insert("profileData".into(), Value::Object(data));
            }
        }
        Ok(Value::Object(record))
    }

    /// Normalised `Email` / `Phone` (values that fail normalisation are left out).
    fn known_contact(&self, export: &ExportSpec, ids: &Identifiers, data: &mut Map<String, Value>) {
        if let Some(email) = ids.email().and_then(|e| normalize_email(e, false).ok()) {
            data.insert("Email".into(), Value::String(email));
        }
        let region = export.identity.default_phone_region.as_deref();
        if let Some(phone) = ids
            .phone()
            .and_then(|p| normalize_phone_e164(p, region).ok())
        {
            data.insert("Phone".into(), Value::String(phone));
        }
    }

    async fn upload(&self, records: &[&Value]) -> Result<UploadResponse, DestinationError> {
        let body = serde_json::to_vec(&json!({ "d": records }))
            .map_err(|e| self.permanent(format!("could not encode the upload: {e}")))?;
        let resp = self
            .http
            .post(format!("{}/1/upload", self.base_url))
            .header("X-CleverTap-Account-Id", self.account_id.expose())
            .header("X-CleverTap-Passcode", self.passcode.expose())
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            let parsed: UploadResponse = serde_json::from_slice(&bytes).unwrap_or_default();
            let detail = parsed
                .error
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            let message = format!("HTTP {status}: {detail}");
            return Err(if status_is_retryable(status) {
                DestinationError::Retryable {
                    destination: self.name.clone(),
                    message,
                    retry_after,
                }
            } else if status == 401 {
                self.permanent(format!("{message} (check region, account id and passcode)"))
            } else {
                self.permanent(message)
            });
        }
        // A 200 we cannot read may still have stored records: resending is
        // safe (profile upserts), losing them is not.
        serde_json::from_slice(&bytes)
            .map_err(|e| self.retryable(format!("unreadable upload response: {e}")))
    }

    fn transport_error(&self, e: reqwest::Error) -> DestinationError {
        if e.is_builder() {
            self.permanent(format!("could not build the request: {e}"))
        } else {
            // Timeouts, refused connections, resets: worth another attempt.
            self.retryable(format!("transport: {e}"))
        }
    }

    /// Outcomes of one uploaded chunk, in chunk order.
    fn chunk_outcomes(
        &self,
        export: &ExportSpec,
        ops: &[DeliveryOp],
        chunk: &[Prepared],
        resp: UploadResponse,
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        let status = resp.status.as_deref().unwrap_or("");
        if status == "fail" && resp.unprocessed.is_empty() {
            // The whole request failed without naming records.
            let message = format!(
                "upload failed: {}",
                resp.error.as_deref().unwrap_or("no error given")
            );
            return Err(match resp.code {
                Some(code) if status_is_retryable(code) => self.retryable(message),
                _ => self.permanent(message),
            });
        }
        if let Some(processed) = resp.processed {
            let reported = processed as usize + resp.unprocessed.len();
            if reported != chunk.len() {
                tracing::warn!(
                    destination = %self.name,
                    export = %export.name,
                    sent = chunk.len(),
                    reported,
                    "clevertap processed + unprocessed does not match records sent"
                );
            }
        }
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; chunk.len()];
        let mut unmatched_failures = 0usize;
        for failed in &resp.unprocessed {
            let code = failed.code.unwrap_or(0);
            let outcome = if code == CODE_RETRYABLE {
                OpOutcome::Retry {
                    reason: format!("clevertap {code}: {}", code_meaning(code)),
                }
            } else {
                OpOutcome::Rejected {
                    reason: format!("clevertap {code}: {}", code_meaning(code)),
                }
            };
            let targets = match_failed(chunk, &outcomes, failed.record.as_ref());
            if targets.is_empty() {
                unmatched_failures += 1;
                continue;
            }
            let ambiguous = targets.len() > 1;
            for pos in targets {
                let op = ops.get(chunk[pos].index);
                tracing::warn!(
                    destination = %self.name,
                    export = %export.name,
                    code,
                    person = %op.map(|o| o.person_key.log_safe()).unwrap_or_default(),
                    ambiguous,
                    "clevertap refused a record"
                );
                outcomes[pos] = Some(if ambiguous {
                    OpOutcome::Retry {
                        reason: format!(
                            "clevertap {code} for one of several records of this identity"
                        ),
                    }
                } else {
                    outcome.clone()
                });
            }
        }
        if unmatched_failures > 0 {
            tracing::warn!(
                destination = %self.name,
                export = %export.name,
                unmatched_failures,
                "clevertap reported failed records that match nothing sent; retrying the rest"
            );
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    if unmatched_failures > 0 {
                        // Some record failed and we cannot tell which: never
                        // report Accepted for what may not have landed.
                        OpOutcome::Retry {
                            reason: format!(
                                "clevertap reported {unmatched_failures} failed records it did not identify"
                            ),
                        }
                    } else {
                        OpOutcome::Accepted
                    }
                })
            })
            .collect())
    }
}

/// Chunk positions a failed record stands for: the first still-open exact
/// match; else every open record of the same identity and type (several =
/// ambiguous); else none.
fn match_failed(
    chunk: &[Prepared],
    outcomes: &[Option<OpOutcome>],
    failed: Option<&Value>,
) -> Vec<usize> {
    let Some(failed) = failed else {
        return Vec::new();
    };
    let open = |pos: &usize| outcomes.get(*pos).is_some_and(Option::is_none);
    if let Some(pos) = (0..chunk.len())
        .filter(open)
        .find(|p| chunk[*p].record == *failed)
    {
        return vec![pos];
    }
    let identity = failed.get("identity");
    let kind = failed.get("type");
    if identity.is_none() {
        return Vec::new();
    }
    (0..chunk.len())
        .filter(open)
        .filter(|p| {
            let r = &chunk[*p].record;
            r.get("identity") == identity && (kind.is_none() || r.get("type") == kind)
        })
        .collect()
}

fn id_kinds(spec: &IdentitySpec) -> String {
    std::iter::once(spec.golden)
        .chain(spec.fallbacks.iter().copied())
        .map(IdKind::as_str)
        .collect::<Vec<_>>()
        .join("/")
}

/// Event properties must be flat: nested values travel as JSON strings.
fn flat_event_value(v: &Value) -> Value {
    match v {
        Value::Object(_) | Value::Array(_) => Value::String(v.to_string()),
        other => other.clone(),
    }
}

/// Profile properties may be scalars or arrays of scalars (multi-value).
fn profile_value(v: &Value) -> Value {
    match v {
        Value::Object(_) => Value::String(v.to_string()),
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            Value::String(v.to_string())
        }
        other => other.clone(),
    }
}

#[async_trait]
impl Destination for ClevertapDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Clevertap
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
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
        let mut prepared = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            match self.record_for(export, op) {
                Ok(record) => prepared.push(Prepared { index, record }),
                Err(outcome) => outcomes[index] = Some(outcome),
            }
        }
        // A failed chunk fails the call: the job is retried whole, which is
        // safe because profile uploads are upserts. Delivery hands at most
        // `max_batch` ops, so this is one chunk in practice.
        for chunk in prepared.chunks(self.batch_size) {
            let records: Vec<&Value> = chunk.iter().map(|p| &p.record).collect();
            let resp = self.upload(&records).await?;
            let chunk_outcomes = self.chunk_outcomes(export, ops, chunk, resp)?;
            for (p, outcome) in chunk.iter().zip(chunk_outcomes) {
                outcomes[p.index] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(OpOutcome::Retry {
                    reason: "no outcome recorded".to_string(),
                })
            })
            .collect())
    }

    fn describe_output(&self, _export: &ExportSpec, binding: &ExportDestination) -> String {
        format!(
            "CleverTap profile property `{}` at {}",
            binding.audience, self.base_url
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Attributes, EventPayload, PersonKey};
    use crate::domain::spec::{Cadence, ExportMode, ExportSource, GuardRails};
    use crate::ports::MapSecrets;
    use dataout_sim::clevertap::{self as sim, ClevertapSimConfig};

    fn dest_spec(base_url: &str, batch_size: usize) -> DestinationSpec {
        DestinationSpec {
            name: "ct".into(),
            kind: DestinationKind::Clevertap,
            base_url: Some(base_url.to_string()),
            batch_size,
            max_concurrency: 4,
            max_requests_per_second: None,
            max_attempts: 3,
            settings: DestinationSettings::Clevertap {
                region: "us1".into(),
                account_id_env: "CT_ACCOUNT".into(),
                passcode_env: "CT_PASSCODE".into(),
            },
        }
    }

    fn secrets(passcode: &str) -> MapSecrets {
        MapSecrets::default()
            .with("CT_ACCOUNT", "TEST-ACC-1")
            .with("CT_PASSCODE", passcode)
    }

    fn export() -> ExportSpec {
        ExportSpec {
            name: "cart_abandoners".into(),
            source: ExportSource::Segment { segment_id: 7 },
            mode: ExportMode::Membership,
            cadence: Cadence::default(),
            identity: IdentitySpec {
                golden: IdKind::Id,
                fallbacks: vec![IdKind::Email],
                default_phone_region: Some("US".into()),
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
            destination: "ct".into(),
            audience: "cio_cart_abandoners".into(),
            tier_audiences: Default::default(),
            keys: vec![],
        }
    }

    fn op(kind: OpKind, id: Option<&str>, email: Option<&str>) -> DeliveryOp {
        DeliveryOp {
            op: kind,
            person_key: PersonKey(format!("id:{}", id.unwrap_or("-"))),
            ids: Identifiers {
                id: id.map(String::from),
                email: email.map(String::from),
                cio_id: None,
                phone: None,
            },
            audience: "cio_cart_abandoners".into(),
            tier: None,
            attributes: Attributes::new(),
            event: None,
            source_ts: 1_700_000_000_123,
            intake_ts: 1_700_000_001_000,
        }
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    }

    async fn setup(
        batch_size: usize,
    ) -> anyhow::Result<(
        dataout_sim::RunningSim,
        std::sync::Arc<sim::ClevertapState>,
        ClevertapDestination,
    )> {
        let (running, state) = sim::start(ClevertapSimConfig::default()).await?;
        let dest = ClevertapDestination::new(
            "ct".into(),
            &dest_spec(&running.base_url, batch_size),
            &secrets("TEST-PASSCODE"),
            http(),
        )?;
        Ok((running, state, dest))
    }

    #[tokio::test]
    async fn membership_and_attributes_land_as_profile_properties() -> anyhow::Result<()> {
        let (_sim, state, dest) = setup(100).await?;
        let mut add = op(OpKind::Add, Some("u1"), Some(" Ann@Example.com "));
        add.attributes.insert("plan".into(), json!("pro"));
        add.attributes.insert("prefs".into(), json!({"a": 1}));
        let remove = op(OpKind::Remove, Some("u2"), None);
        let mut event = op(OpKind::Event, Some("u1"), None);
        event.event = Some(EventPayload {
            event_id: "e1".into(),
            name: "Charged".into(),
            data: serde_json::from_value(json!({"amount": 5, "items": [1, 2]}))?,
            ..EventPayload::default()
        });
        let out = dest
            .send(&export(), &binding(), &[add, remove, event])
            .await?;
        assert_eq!(out, vec![OpOutcome::Accepted; 3]);

        let u1 = state
            .profile("u1")
            .ok_or_else(|| anyhow::anyhow!("u1 missing"))?;
        assert_eq!(u1.data["cio_cart_abandoners"], true);
        assert_eq!(u1.data["plan"], "pro");
        assert_eq!(u1.data["prefs"], "{\"a\":1}");
        assert_eq!(u1.data["Email"], "ann@example.com");
        assert_eq!(u1.last_ts, Some(1_700_000_000));
        let u2 = state
            .profile("u2")
            .ok_or_else(|| anyhow::anyhow!("u2 missing"))?;
        assert_eq!(u2.data["cio_cart_abandoners"], false);
        let events = state.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name, "Charged");
        assert_eq!(events[0].data["items"], "[1,2]");
        Ok(())
    }

    #[tokio::test]
    async fn person_without_usable_identifier_is_unmatched_and_never_sent() -> anyhow::Result<()> {
        let (_sim, state, dest) = setup(100).await?;
        let out = dest
            .send(&export(), &binding(), &[op(OpKind::Add, None, None)])
            .await?;
        assert!(matches!(out[0], OpOutcome::Unmatched { .. }));
        assert_eq!(state.counters().requests, 0);
        Ok(())
    }

    #[tokio::test]
    async fn wrong_passcode_is_permanent() -> anyhow::Result<()> {
        let (running, _state) = sim::start(ClevertapSimConfig::default()).await?;
        let dest = ClevertapDestination::new(
            "ct".into(),
            &dest_spec(&running.base_url, 100),
            &secrets("WRONG"),
            http(),
        )?;
        let err = dest
            .send(&export(), &binding(), &[op(OpKind::Add, Some("u1"), None)])
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("expected an error"))?;
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("401"));
        Ok(())
    }

    #[test]
    fn missing_secret_names_the_variable() {
        let spec = dest_spec("http://127.0.0.1:1", 100);
        let secrets = MapSecrets::default().with("CT_ACCOUNT", "a");
        let err = ClevertapDestination::new("ct".into(), &spec, &secrets, http())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("CT_PASSCODE"), "{err}");
    }

    #[tokio::test]
    async fn one_bad_phone_rejects_only_that_op_even_when_status_says_success() -> anyhow::Result<()>
    {
        let (_sim, state, dest) = setup(100).await?;
        let mut bad = op(OpKind::Add, Some("u2"), None);
        bad.attributes.insert("Phone".into(), json!("415-555-1234"));
        let ops = vec![
            op(OpKind::Add, Some("u1"), None),
            bad,
            op(OpKind::Add, Some("u3"), None),
        ];
        let out = dest.send(&export(), &binding(), &ops).await?;
        assert_eq!(out[0], OpOutcome::Accepted);
        assert!(
            matches!(&out[1], OpOutcome::Rejected { reason } if reason.contains("516")),
            "{out:?}"
        );
        assert_eq!(out[2], OpOutcome::Accepted);
        assert!(state.profile("u1").is_some() && state.profile("u3").is_some());
        assert!(state.profile("u2").is_none());
        Ok(())
    }

    #[tokio::test]
    async fn several_ops_of_one_identity_map_failures_to_the_right_op() -> anyhow::Result<()> {
        let (_sim, _state, dest) = setup(100).await?;
        let add = op(OpKind::Add, Some("u1"), None);
        let mut update = op(OpKind::Update, Some("u1"), None);
        update.attributes.insert("Gender".into(), json!("x"));
        let out = dest.send(&export(), &binding(), &[add, update]).await?;
        assert_eq!(out[0], OpOutcome::Accepted);
        assert!(matches!(&out[1], OpOutcome::Rejected { reason } if reason.contains("514")));
        Ok(())
    }

    #[tokio::test]
    async fn code_555_is_retry() -> anyhow::Result<()> {
        let (_sim, state, dest) = setup(100).await?;
        state.fail_records_555("u2", 1);
        let ops = [
            op(OpKind::Add, Some("u1"), None),
            op(OpKind::Add, Some("u2"), None),
        ];
        let out = dest.send(&export(), &binding(), &ops).await?;
        assert_eq!(out[0], OpOutcome::Accepted);
        assert!(matches!(&out[1], OpOutcome::Retry { reason } if reason.contains("555")));
        Ok(())
    }

    #[tokio::test]
    async fn http_429_and_503_are_retryable() -> anyhow::Result<()> {
        let (_sim, state, dest) = setup(100).await?;
        for status in [429, 503] {
            state.fail_next(1, status);
            let err = dest
                .send(&export(), &binding(), &[op(OpKind::Add, Some("u1"), None)])
                .await
                .err()
                .ok_or_else(|| anyhow::anyhow!("expected an error for {status}"))?;
            assert!(err.is_retryable(), "{status}: {err}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn unreachable_host_is_retryable() -> anyhow::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        drop(listener);
        let dest = ClevertapDestination::new(
            "ct".into(),
            &dest_spec(&format!("http://{addr}"), 100),
            &secrets("TEST-PASSCODE"),
            http(),
        )?;
        let err = dest
            .send(&export(), &binding(), &[op(OpKind::Add, Some("u1"), None)])
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("expected an error"))?;
        assert!(err.is_retryable());
        Ok(())
    }

    #[tokio::test]
    async fn ops_are_chunked_to_batch_size() -> anyhow::Result<()> {
        let (_sim, state, dest) = setup(2).await?;
        assert_eq!(dest.max_batch(), 2);
        let ops: Vec<DeliveryOp> = (0..5)
            .map(|i| op(OpKind::Add, Some(&format!("u{i}")), None))
            .collect();
        let out = dest.send(&export(), &binding(), &ops).await?;
        assert_eq!(out, vec![OpOutcome::Accepted; 5]);
        let c = state.counters();
        assert_eq!(c.requests, 3);
        assert_eq!(c.records_accepted, 5);
        Ok(())
    }

    fn offline_dest() -> anyhow::Result<ClevertapDestination> {
        Ok(ClevertapDestination::new(
            "ct".into(),
            &dest_spec("http://127.0.0.1:1", 100),
            &secrets("p"),
            http(),
        )?)
    }

    fn response(v: Value) -> anyhow::Result<UploadResponse> {
        Ok(serde_json::from_value(v)?)
    }

    #[test]
    fn failure_echoed_differently_for_a_repeated_identity_retries_all_candidates(
    ) -> anyhow::Result<()> {
        let dest = offline_dest()?;
        let ops = [
            op(OpKind::Add, Some("u1"), None),
            op(OpKind::Update, Some("u1"), None),
            op(OpKind::Add, Some("u2"), None),
        ];
        let chunk: Vec<Prepared> = ops
            .iter()
            .enumerate()
            .map(|(index, o)| {
                dest.record_for(&export(), o)
                    .map(|record| Prepared { index, record })
            })
            .collect::<Result<_, _>>()
            .map_err(|o| anyhow::anyhow!("{o:?}"))?;
        let resp = response(json!({"status": "success", "processed": 2, "unprocessed": [
            {"status": "fail", "code": 512, "error": "x",
             "record": {"type": "profile", "identity": "u1", "profileData": {"changed": 1}}}
        ]}))?;
        let out = dest.chunk_outcomes(&export(), &ops, &chunk, resp)?;
        assert!(matches!(out[0], OpOutcome::Retry { .. }));
        assert!(matches!(out[1], OpOutcome::Retry { .. }));
        assert_eq!(out[2], OpOutcome::Accepted);
        Ok(())
    }

    #[test]
    fn failure_matching_nothing_sent_never_reports_accepted() -> anyhow::Result<()> {
        let dest = offline_dest()?;
        let ops = [op(OpKind::Add, Some("u1"), None)];
        let record = dest
            .record_for(&export(), &ops[0])
            .map_err(|o| anyhow::anyhow!("{o:?}"))?;
        let chunk = [Prepared { index: 0, record }];
        let resp = response(json!({"status": "partial", "unprocessed": [
            {"status": "fail", "code": 516, "record": {"identity": "someone-else"}}
        ]}))?;
        let out = dest.chunk_outcomes(&export(), &ops, &chunk, resp)?;
        assert!(matches!(out[0], OpOutcome::Retry { .. }));
        Ok(())
    }

    #[test]
    fn fail_status_without_records_fails_the_request() -> anyhow::Result<()> {
        let dest = offline_dest()?;
        let ops = [op(OpKind::Add, Some("u1"), None)];
        let record = dest
            .record_for(&export(), &ops[0])
            .map_err(|o| anyhow::anyhow!("{o:?}"))?;
        let chunk = [Prepared { index: 0, record }];
        let resp = response(json!({"status": "fail", "error": "bad", "code": 400}))?;
        let err = dest.chunk_outcomes(&export(), &ops, &chunk, resp).err();
        assert!(matches!(err, Some(DestinationError::Permanent { .. })));
        Ok(())
    }

    #[tokio::test]
    async fn partial_status_is_read_like_success() -> anyhow::Result<()> {
        let (running, _state) = sim::start(ClevertapSimConfig {
            partial_status: sim::PartialStatus::Partial,
            ..Default::default()
        })
        .await?;
        let dest = ClevertapDestination::new(
            "ct".into(),
            &dest_spec(&running.base_url, 100),
            &secrets("TEST-PASSCODE"),
            http(),
        )?;
        let mut bad = op(OpKind::Add, Some("u2"), None);
        bad.attributes.insert("Email".into(), json!("nope"));
        let out = dest
            .send(
                &export(),
                &binding(),
                &[op(OpKind::Add, Some("u1"), None), bad],
            )
            .await?;
        assert_eq!(out[0], OpOutcome::Accepted);
        assert!(matches!(&out[1], OpOutcome::Rejected { reason } if reason.contains("515")));
        Ok(())
    }

    #[test]
    fn region_picks_host_and_eu_has_no_prefix() {
        assert_eq!(
            base_url_for_region("in1").ok().as_deref(),
            Some("https://in1.api.clevertap.com")
        );
        assert_eq!(
            base_url_for_region("eu1").ok().as_deref(),
            Some("https://api.clevertap.com")
        );
        assert!(base_url_for_region("us1.evil.com/").is_err());
    }

    #[test]
    fn golden_identity_falls_back_in_order() {
        let spec = IdentitySpec {
            golden: IdKind::Id,
            fallbacks: vec![IdKind::CioId, IdKind::Email],
            default_phone_region: None,
        };
        let ids = Identifiers {
            id: Some(" ".into()),
            email: Some("A@B.co".into()),
            cio_id: None,
            phone: None,
        };
        assert_eq!(
            golden_identity(&spec, &ids),
            Some((IdKind::Email, "a@b.co".to_string()))
        );
    }
}
