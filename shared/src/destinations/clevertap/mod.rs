//! CleverTap: profile and event upload (`POST /1/upload`; docs/clevertap.md).
//!
//! Membership is a boolean profile property per export audience (option a of
//! the contract): Add sends `{<audience>: true, ...attributes}`, Remove sends
//! `{<audience>: false}` alone, Update sends the attributes. Add and Update
//! also carry the person's normalised `Email` and `Phone` when known, unless
//! the export's attributes already name those keys.
//!
//! Attribute-only sync (`mode: attributes`): an Update is a profile upload of
//! exactly the export's allow-listed attributes: no membership property, no
//! implicit `Email` / `Phone`. (Those exports never produce Add or Remove;
//! one arriving anyway is `Invalid`, so a membership flag can never leak.)
//!
//! Event ops become event records (`events.rs`: `evtName`,
//! flattened `evtData`, `$D_` dates, the account's property limit).
//!
//! Profile attributes the export's allow-list transforms with `date` travel
//! as CleverTap dates (`$D_<epoch seconds>`).
//!
//! The record's `identity` is the person's golden id per the export's
//! identity spec (golden, then fallbacks); a person with none is `Unmatched`
//! and never sent.
//!
//! An HTTP 200 can still carry failed records, even with `status: success`:
//! the `unprocessed` array is always read and each failed record mapped back
//! to its op, first by the exact record echoed, then by identity. Code 555 is
//! worth retrying; every other code rejects that op only, except 515 / 516
//! (email / phone invalid): CleverTap skips the whole record for them, so
//! the profile goes again at once without that field and, once it lands, the
//! op is `AcceptedWithout` that field (counted as `fields_refused`).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{status_is_retryable, Destination, DestinationError, OpOutcome};
use crate::domain::identity::{normalize_email, normalize_phone_e164};
use crate::domain::model::{DeliveryOp, Identifiers, OpKind};
use crate::domain::spec::{
    DestinationKind, DestinationSettings, DestinationSpec, ExportDestination, ExportMode,
    ExportSpec, IdKind, IdentitySpec, Transform,
};

pub mod events;
mod read;
use crate::ports::{Secret, Secrets};

/// Records per request: current docs allow 1000 (the official library uses 100).
pub const MAX_RECORDS_PER_REQUEST: usize = 1000;
/// Per-record code of a miscellaneous server error: the only retryable one.
pub const CODE_RETRYABLE: u16 = 555;

/// CleverTap's regions, each with its own host `https://<region>.api.clevertap.com`
/// (its Node library's `lib/regions.js`; the Region table of its API docs).
pub const REGIONS: [&str; 6] = ["in1", "sg1", "us1", "aps3", "mec1", "eu1"];

/// The API host of a region; anything off the list is refused (a typo would
/// otherwise fail DNS on every attempt until the job is dead-lettered).
pub fn base_url_for_region(region: &str) -> Result<String, String> {
    if REGIONS.contains(&region) {
        Ok(format!("https://{region}.api.clevertap.com"))
    } else {
        Err(format!(
            "unknown CleverTap region `{region}`; expected one of: {}",
            REGIONS.join(", ")
        ))
    }
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
    /// The account's event-property limit.
    max_event_properties: usize,
    http: reqwest::Client,
}

impl std::fmt::Debug for ClevertapDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClevertapDestination")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("batch_size", &self.batch_size)
            .field("max_event_properties", &self.max_event_properties)
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
            max_event_properties,
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
            max_event_properties: (*max_event_properties).max(1),
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
                let (name, data) = events::event_fields(op, self.max_event_properties)?;
                record.insert("type".into(), json!("event"));
                record.insert("evtName".into(), json!(name));
                record.insert("evtData".into(), Value::Object(data));
            }
            OpKind::Add | OpKind::Update if export.mode == ExportMode::Attributes => {
                let data = attribute_properties(export, op);
                if data.is_empty() {
                    return Err(OpOutcome::Invalid {
                        reason: "no allow-listed attribute to upload".to_string(),
                    });
                }
                record.insert("type".into(), json!("profile"));
                record.insert("profileData".into(), Value::Object(data));
            }
            OpKind::Remove if export.mode == ExportMode::Attributes => {
                return Err(OpOutcome::Invalid {
                    reason: "an attributes export never removes: it sets no membership property"
                        .to_string(),
                });
            }
            OpKind::Add | OpKind::Remove | OpKind::Update => {
                let mut data = Map::new();
                if op.op != OpKind::Remove {
                    self.known_contact(export, &op.ids, &mut data);
                    data.extend(attribute_properties(export, op));
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
    #[cfg(test)]
    fn chunk_outcomes(
        &self,
        export: &ExportSpec,
        ops: &[DeliveryOp],
        chunk: &[Prepared],
        resp: UploadResponse,
    ) -> Result<Vec<OpOutcome>, DestinationError> {
        Ok(self
            .chunk_results(export, ops, chunk, resp)?
            .into_iter()
            .map(|(outcome, _)| outcome)
            .collect())
    }

    /// Outcomes of one uploaded chunk, in chunk order, each with the code
    /// CleverTap refused its record with when the refusal is surely its own.
    fn chunk_results(
        &self,
        export: &ExportSpec,
        ops: &[DeliveryOp],
        chunk: &[Prepared],
        resp: UploadResponse,
    ) -> Result<Vec<(OpOutcome, Option<u16>)>, DestinationError> {
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
        let mut codes: Vec<Option<u16>> = vec![None; chunk.len()];
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
                if !ambiguous {
                    codes[pos] = Some(code);
                }
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
            .zip(codes)
            .map(|(o, code)| {
                let outcome = o.unwrap_or_else(|| {
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
                });
                (outcome, code)
            })
            .collect())
    }

    /// Upload one chunk; records refused for a contact field (515 email,
    /// 516 phone) go again without it, because CleverTap skips the whole
    /// record and the membership flag with it. Each contact field is taken
    /// out at most once, so a record is resent at most twice.
    async fn upload_chunk(
        &self,
        export: &ExportSpec,
        ops: &[DeliveryOp],
        chunk: Vec<Prepared>,
    ) -> Result<Vec<(usize, OpOutcome)>, DestinationError> {
        let mut settled = Vec::with_capacity(chunk.len());
        // Records still to send, with the contact fields taken out so far.
        let mut pending: Vec<(Prepared, Vec<(u16, &'static str)>)> =
            chunk.into_iter().map(|p| (p, Vec::new())).collect();
        for _ in 0..=CONTACT_FIELDS.len() {
            if pending.is_empty() {
                break;
            }
            let sent: Vec<Prepared> = pending
                .iter()
                .map(|(p, _)| Prepared {
                    index: p.index,
                    record: p.record.clone(),
                })
                .collect();
            let records: Vec<&Value> = sent.iter().map(|p| &p.record).collect();
            let resp = self.upload(&records).await?;
            let results = self.chunk_results(export, ops, &sent, resp)?;
            let mut again = Vec::new();
            for ((p, mut dropped), (outcome, code)) in pending.into_iter().zip(results) {
                match code.and_then(|c| without_contact_field(&p.record, c, &dropped)) {
                    Some((record, field)) => {
                        let code = code.unwrap_or_default();
                        tracing::warn!(
                            destination = %self.name,
                            export = %export.name,
                            code,
                            field,
                            person = %ops.get(p.index).map(|o| o.person_key.log_safe()).unwrap_or_default(),
                            "clevertap refused a contact field: sending the profile again without it"
                        );
                        dropped.push((code, field));
                        again.push((
                            Prepared {
                                index: p.index,
                                record,
                            },
                            dropped,
                        ));
                    }
                    None => settled.push((p.index, with_dropped(outcome, &dropped))),
                }
            }
            pending = again;
        }
        // Past the rounds (cannot happen: each field goes once): say so.
        settled.extend(pending.into_iter().map(|(p, _)| {
            (
                p.index,
                OpOutcome::Retry {
                    reason: "clevertap kept refusing contact fields".to_string(),
                },
            )
        }));
        Ok(settled)
    }
}

/// Contact fields CleverTap refuses per record (skipping the whole record),
/// by code: 515 email invalid, 516 phone invalid.
const CONTACT_FIELDS: [(u16, &str); 2] = [(515, "Email"), (516, "Phone")];

/// The profile record without the contact field `code` refused, unless the
/// field was already taken out, is absent, or nothing else would be left.
fn without_contact_field(
    record: &Value,
    code: u16,
    dropped: &[(u16, &'static str)],
) -> Option<(Value, &'static str)> {
    let (_, field) = CONTACT_FIELDS.iter().find(|(c, _)| *c == code)?;
    if dropped.iter().any(|(_, f)| f == field) || record.get("type")? != "profile" {
        return None;
    }
    let mut record = record.clone();
    let data = record.get_mut("profileData")?.as_object_mut()?;
    data.remove(*field)?;
    if data.is_empty() {
        return None;
    }
    Some((record, field))
}

/// An outcome after contact fields were taken out: accepted becomes
/// accepted without them (counted apart); a refusal says what was tried.
fn with_dropped(outcome: OpOutcome, dropped: &[(u16, &'static str)]) -> OpOutcome {
    if dropped.is_empty() {
        return outcome;
    }
    let fields: Vec<&str> = dropped.iter().map(|(_, f)| *f).collect();
    let refused: Vec<String> = dropped
        .iter()
        .map(|(c, f)| format!("clevertap {c}: {} (`{f}`)", code_meaning(*c)))
        .collect();
    match outcome {
        OpOutcome::Accepted => OpOutcome::AcceptedWithout {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            reason: format!("{}; the profile was sent without it", refused.join("; ")),
        },
        OpOutcome::Rejected { reason } => OpOutcome::Rejected {
            reason: format!(
                "{reason} (after {} was refused and left out)",
                fields.join(", ")
            ),
        },
        OpOutcome::Retry { reason } => OpOutcome::Retry {
            reason: format!(
                "{reason} (after {} was refused and left out)",
                fields.join(", ")
            ),
        },
        other => other,
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

/// The op's attributes as profile properties: nulls dropped, values the
/// allow-list transforms with `date` as CleverTap dates.
fn attribute_properties(export: &ExportSpec, op: &DeliveryOp) -> Map<String, Value> {
    op.attributes
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let is_date = export
                .attribute(k)
                .is_some_and(|a| matches!(a.transform, Transform::Date));
            let value = match v.as_str().filter(|_| is_date).and_then(events::date_value) {
                Some(date) => Value::String(date),
                None => profile_value(v),
            };
            (k.clone(), value)
        })
        .collect()
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

    async fn read_back(
        &self,
        export: &ExportSpec,
        _binding: &ExportDestination,
        op: &DeliveryOp,
    ) -> Result<super::ReadBack, DestinationError> {
        self.read_profile(export, op).await
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
        let mut prepared = prepared.into_iter().peekable();
        while prepared.peek().is_some() {
            let chunk: Vec<Prepared> = prepared.by_ref().take(self.batch_size).collect();
            for (index, outcome) in self.upload_chunk(export, ops, chunk).await? {
                outcomes[index] = Some(outcome);
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

    fn describe_output(&self, export: &ExportSpec, binding: &ExportDestination) -> String {
        match export.mode {
            ExportMode::Attributes => {
                let names: Vec<&str> = export.attributes.iter().map(|a| a.name.as_str()).collect();
                format!(
                    "CleverTap profile properties ({}) at {}",
                    names.join(", "),
                    self.base_url
                )
            }
            ExportMode::Events | ExportMode::Conversions if binding.audience.is_empty() => {
                format!("CleverTap events (source names) at {}", self.base_url)
            }
            ExportMode::Events | ExportMode::Conversions => {
                format!(
                    "CleverTap event `{}` at {}",
                    binding.audience, self.base_url
                )
            }
            ExportMode::Membership => format!(
                "CleverTap profile property `{}` at {}",
                binding.audience, self.base_url
            ),
        }
    }
}

#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod tests;
