//! Meta Custom Audiences (customer list), `API-CONTRACTS.md` §3a.
//!
//! Ops are grouped by audience and kind: Add / Update go to
//! `POST /{v}/{audience}/users`, Remove to `DELETE /{v}/{audience}/users`
//! (the same JSON body; Graph reads a DELETE's parameters from the body as it
//! does a POST's). Each request carries at most `batch_size` rows (≤ 10,000).
//! When one group needs more than one request, its requests share a session
//! (`session_id` random positive int64, `batch_seq` from 1, `last_batch_flag`
//! on the last, `estimated_num_total`), as Meta asks for large uploads.
//!
//! Rows are built by `domain::identity::meta_row` from the binding's match
//! keys (or the kind's defaults): a person with no usable identifier is
//! `Unmatched` and never sent. Meta answers with counts and only *samples* of
//! invalid entries, so the rule is: a row is `Rejected` when one of its cell
//! values is a key of `invalid_entry_samples`; every other row of an answered
//! request is `Accepted` (invalid entries beyond the samples cannot be tied to
//! a row and are only logged by count).
//!
//! The access token goes in `Authorization: Bearer`, never in the URL, so it
//! cannot leak into an error message. Errors are classified by Graph code
//! (§3a table), then by HTTP status. A retried job resends every chunk: adds
//! and removes are idempotent at Meta.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{status_is_retryable, Destination, DestinationError, OpOutcome};
use crate::domain::identity::{match_keys, meta_row, meta_schema, IdentityOptions};
use crate::domain::model::{DeliveryOp, OpKind};
use crate::domain::spec::{
    DestinationKind, DestinationSettings, DestinationSpec, ExportDestination, ExportSpec,
};
use crate::ports::{Secret, Secrets};

pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// Meta's cap on rows per `users` request.
pub const MAX_ROWS_PER_REQUEST: usize = 10_000;

/// Graph codes worth another attempt: rate limits (80003, 4, 17, 613, 32)
/// and unknown / transient errors (1, 2).
const RETRYABLE_CODES: &[i64] = &[80003, 4, 17, 613, 32, 1, 2];
/// Graph codes no retry will fix (parameters, token, permissions, abuse,
/// deprecated version, parameter counts, failed audience update).
const PERMANENT_CODES: &[i64] = &[100, 190, 200, 368, 2635, 105, 194, 2650];

pub struct MetaAudienceDestination {
    name: String,
    /// Base URL with the API version, e.g. `https://graph.facebook.com/v25.0`.
    api_url: String,
    ad_account_id: String,
    access_token: Secret,
    batch_size: usize,
    http: reqwest::Client,
}

impl std::fmt::Debug for MetaAudienceDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaAudienceDestination")
            .field("name", &self.name)
            .field("api_url", &self.api_url)
            .field("ad_account_id", &self.ad_account_id)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// The answer to a `users` request.
#[derive(Debug, Default, Deserialize)]
struct UsersResponse {
    #[serde(default)]
    num_received: Option<u64>,
    #[serde(default)]
    num_invalid_entries: Option<u64>,
    #[serde(default)]
    invalid_entry_samples: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct GraphErrorBody {
    error: Option<GraphError>,
}

#[derive(Debug, Default, Deserialize)]
struct GraphError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    error_subcode: Option<i64>,
    #[serde(default)]
    fbtrace_id: Option<String>,
}

/// One row to send, remembering which op it came from.
struct Row {
    index: usize,
    cells: Vec<String>,
}

/// Session fields of one request of a multi-request upload.
struct SessionPart {
    id: i64,
    batch_seq: usize,
    last: bool,
    total: usize,
}

impl MetaAudienceDestination {
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
        let DestinationSettings::MetaAudience {
            api_version,
            ad_account_id,
            access_token_env,
        } = &spec.settings
        else {
            return Err(permanent("settings are not of kind meta_audience".into()));
        };
        let access_token = super::required_secret(secrets, &name, access_token_env)?;
        let version = api_version.trim();
        if version.is_empty() {
            return Err(permanent("api_version is empty".into()));
        }
        let version = if version.starts_with('v') {
            version.to_string()
        } else {
            format!("v{version}")
        };
        let base = spec
            .base_url
            .as_deref()
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/');
        Ok(Self {
            api_url: format!("{base}/{version}"),
            ad_account_id: ad_account_id.trim_start_matches("act_").to_string(),
            access_token,
            batch_size: spec.batch_size.clamp(1, MAX_ROWS_PER_REQUEST),
            name,
            http,
        })
    }

    fn permanent(&self, message: String) -> DestinationError {
        DestinationError::Permanent {
            destination: self.name.clone(),
            message,
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> DestinationError {
        let e = e.without_url();
        if e.is_builder() {
            self.permanent(format!("could not build the request: {e}"))
        } else {
            DestinationError::Retryable {
                destination: self.name.clone(),
                message: format!("transport: {e}"),
                retry_after: None,
            }
        }
    }

    /// A failed Graph answer, classified by error code, then by HTTP status.
    fn graph_error(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> DestinationError {
        let parsed: GraphErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let error = parsed.error.unwrap_or_default();
        let detail = match &error.message {
            Some(m) => m.clone(),
            None => String::from_utf8_lossy(body).chars().take(200).collect(),
        };
        let mut message = format!("HTTP {status}");
        if let Some(code) = error.code {
            message.push_str(&format!(", code {code}"));
        }
        if let Some(sub) = error.error_subcode {
            message.push_str(&format!(", subcode {sub}"));
        }
        message.push_str(&format!(": {detail}"));
        if let Some(trace) = &error.fbtrace_id {
            message.push_str(&format!(" (fbtrace_id {trace})"));
        }
        if error.code == Some(190) {
            message.push_str(" (the access token needs replacing)");
        }
        let retryable = match error.code {
            Some(code) if RETRYABLE_CODES.contains(&code) => true,
            Some(code) if PERMANENT_CODES.contains(&code) => false,
            _ => status_is_retryable(status),
        };
        if retryable {
            DestinationError::Retryable {
                destination: self.name.clone(),
                message,
                retry_after: retry_after(headers),
            }
        } else {
            self.permanent(message)
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<&Value>,
    ) -> Result<Value, DestinationError> {
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.access_token.expose());
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            return Err(self.graph_error(status, &headers, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            // Meta may have applied the rows: resending is safe, losing them is not.
            DestinationError::Retryable {
                destination: self.name.clone(),
                message: format!("unreadable Graph answer: {e}"),
                retry_after: None,
            }
        })
    }

    /// Send one group (one audience, one direction) in chunks; fills `outcomes`.
    async fn send_group(
        &self,
        audience: &str,
        remove: bool,
        schema: &[&str],
        rows: &[Row],
        outcomes: &mut [Option<OpOutcome>],
    ) -> Result<(), DestinationError> {
        let chunks: Vec<&[Row]> = rows.chunks(self.batch_size).collect();
        let session_id = (chunks.len() > 1).then(new_session_id);
        let url = format!("{}/{}/users", self.api_url, audience);
        let method = if remove {
            reqwest::Method::DELETE
        } else {
            reqwest::Method::POST
        };
        for (n, chunk) in chunks.iter().enumerate() {
            let session = session_id.map(|id| SessionPart {
                id,
                batch_seq: n + 1,
                last: n + 1 == chunks.len(),
                total: rows.len(),
            });
            let body = users_body(schema, chunk, session.as_ref());
            let answer = self.call(method.clone(), url.clone(), Some(&body)).await?;
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

fn users_body(schema: &[&str], rows: &[Row], session: Option<&SessionPart>) -> Value {
    let data: Vec<&Vec<String>> = rows.iter().map(|r| &r.cells).collect();
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
fn rejected_rows(rows: &[Row], samples: Option<&Value>) -> BTreeMap<usize, String> {
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

/// The wait Meta asks for: `Retry-After` seconds, else the largest
/// `estimated_time_to_regain_access` (minutes) of `X-Business-Use-Case-Usage`.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(secs) = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs));
    }
    let usage: Map<String, Value> = headers
        .get("x-business-use-case-usage")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())?;
    let minutes = usage
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|u| u.get("estimated_time_to_regain_access")?.as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
}

#[async_trait]
impl Destination for MetaAudienceDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::MetaAudience
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
        let keys = match_keys(binding, DestinationKind::MetaAudience);
        let schema = meta_schema(&keys);
        let opts = IdentityOptions {
            default_phone_region: export.identity.default_phone_region.clone(),
            gmail_remove_dots: false,
        };
        let mut outcomes: Vec<Option<OpOutcome>> = vec![None; ops.len()];
        // (audience, remove?) → rows, in op order.
        let mut groups: BTreeMap<(&str, bool), Vec<Row>> = BTreeMap::new();
        for (index, op) in ops.iter().enumerate() {
            let remove = match op.op {
                OpKind::Add | OpKind::Update => false,
                OpKind::Remove => true,
                OpKind::Event => {
                    outcomes[index] = Some(OpOutcome::Rejected {
                        reason: "Meta Custom Audiences take membership ops, not events".into(),
                    });
                    continue;
                }
            };
            match meta_row(&keys, &op.ids, &op.attributes, &opts) {
                Ok(cells) => groups
                    .entry((op.audience.as_str(), remove))
                    .or_default()
                    .push(Row { index, cells }),
                Err(e) => {
                    tracing::debug!(
                        destination = %self.name,
                        person = %op.person_key.log_safe(),
                        "no Meta match key"
                    );
                    outcomes[index] = Some(OpOutcome::Unmatched {
                        reason: format!("no Meta match key: {e}"),
                    });
                }
            }
        }
        for ((audience, remove), rows) in &groups {
            self.send_group(audience, *remove, &schema, rows, &mut outcomes)
                .await?;
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

    async fn audience_size(
        &self,
        _export: &ExportSpec,
        binding: &ExportDestination,
    ) -> Result<Option<u64>, DestinationError> {
        let url = format!(
            "{}/{}?fields=approximate_count_lower_bound,approximate_count_upper_bound",
            self.api_url, binding.audience
        );
        let answer = self.call(reqwest::Method::GET, url, None).await?;
        // Meta gives a range; the lower bound is the conservative count.
        // Negative values mean "too small to tell".
        Ok(answer
            .get("approximate_count_lower_bound")
            .and_then(Value::as_i64)
            .and_then(|n| u64::try_from(n).ok()))
    }

    fn describe_output(&self, _export: &ExportSpec, binding: &ExportDestination) -> String {
        format!(
            "Meta custom audience {} (ad account act_{})",
            binding.audience, self.ad_account_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::sha256_hex;
    use crate::domain::model::{Identifiers, PersonKey};
    use crate::domain::spec::{
        Cadence, ExportMode, ExportSource, GuardRails, IdKind, IdentitySpec,
    };
    use crate::ports::MapSecrets;
    use dataout_sim::meta::{MetaFault, MetaSim, MetaSimConfig, DEFAULT_ACCESS_TOKEN};
    use dataout_sim::RunningSim;

    const AUDIENCE: &str = "23850000000001";

    fn spec(base_url: &str, batch_size: usize) -> DestinationSpec {
        DestinationSpec {
            name: "meta".into(),
            kind: DestinationKind::MetaAudience,
            base_url: Some(base_url.into()),
            batch_size,
            max_concurrency: 1,
            max_attempts: 3,
            settings: DestinationSettings::MetaAudience {
                api_version: "v25.0".into(),
                ad_account_id: "1234567890".into(),
                access_token_env: "META_ACCESS_TOKEN".into(),
            },
        }
    }

    fn binding() -> ExportDestination {
        ExportDestination {
            destination: "meta".into(),
            audience: AUDIENCE.into(),
            tier_audiences: Default::default(),
            keys: Vec::new(),
        }
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
            attributes: Vec::new(),
            tiers: Vec::new(),
            exit_on: Vec::new(),
            suppress: Vec::new(),
            destinations: vec![binding()],
            guard_rails: GuardRails::default(),
            test_profiles: Vec::new(),
        }
    }

    fn op(kind: OpKind, id: Option<&str>, email: Option<&str>, phone: Option<&str>) -> DeliveryOp {
        DeliveryOp {
            op: kind,
            person_key: PersonKey(format!("id:{}", id.unwrap_or("anon"))),
            ids: Identifiers {
                id: id.map(str::to_string),
                email: email.map(str::to_string),
                cio_id: None,
                phone: phone.map(str::to_string),
            },
            audience: AUDIENCE.into(),
            tier: None,
            attributes: Default::default(),
            event: None,
            source_ts: 0,
            intake_ts: 0,
        }
    }

    async fn setup(
        batch_size: usize,
        token: &str,
    ) -> (RunningSim, MetaSim, MetaAudienceDestination) {
        let (running, sim) = MetaSim::start(MetaSimConfig::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sim.create_audience(AUDIENCE);
        let secrets = MapSecrets::default().with("META_ACCESS_TOKEN", token);
        let dest = MetaAudienceDestination::new(
            "meta".into(),
            &spec(&running.base_url, batch_size),
            &secrets,
            reqwest::Client::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (running, sim, dest)
    }

    #[tokio::test]
    async fn adds_land_as_hashed_rows_and_removes_take_them_out() {
        let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
        let ops = vec![
            op(
                OpKind::Add,
                Some("u1"),
                Some(" Ann@Example.com "),
                Some("+1 (555) 123-4567"),
            ),
            op(OpKind::Add, None, Some("bob@example.com"), None),
            op(OpKind::Add, None, None, None),
        ];
        let outcomes = dest
            .send(&export(), &binding(), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes[0], OpOutcome::Accepted);
        assert_eq!(outcomes[1], OpOutcome::Accepted);
        assert!(matches!(outcomes[2], OpOutcome::Unmatched { .. }));
        assert_eq!(sim.member_count(AUDIENCE), 2);
        assert!(sim.has_member_with(AUDIENCE, "EMAIL", &sha256_hex("ann@example.com")));
        assert!(sim.has_member_with(AUDIENCE, "EXTERN_ID", "u1"));
        assert_eq!(sim.request_count(), 1, "an unmatched person is never sent");

        let remove = vec![op(
            OpKind::Remove,
            Some("u1"),
            Some("ann@example.com"),
            None,
        )];
        let outcomes = dest
            .send(&export(), &binding(), &remove)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes, vec![OpOutcome::Accepted]);
        assert_eq!(sim.member_count(AUDIENCE), 1);
        assert!(!sim.has_member_with(AUDIENCE, "EMAIL", &sha256_hex("ann@example.com")));
        let methods: Vec<String> = sim.requests().into_iter().map(|r| r.method).collect();
        assert_eq!(methods, vec!["POST", "DELETE"]);
    }

    #[tokio::test]
    async fn phone_is_hashed_as_digits_without_plus() {
        let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
        let ops = vec![op(OpKind::Add, None, None, Some("+1 650-253-0000"))];
        dest.send(&export(), &binding(), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(sim.has_member_with(AUDIENCE, "PHONE", &sha256_hex("16502530000")));
        assert!(!sim.has_member_with(AUDIENCE, "PHONE", &sha256_hex("+16502530000")));
    }

    #[tokio::test]
    async fn wrong_token_is_permanent() {
        let (_running, _sim, dest) = setup(100, "stale-token").await;
        let ops = vec![op(OpKind::Add, Some("u1"), None, None)];
        let err = dest.send(&export(), &binding(), &ops).await.err();
        match err {
            Some(DestinationError::Permanent { message, .. }) => {
                assert!(message.contains("190"), "{message}")
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn rate_limit_codes_are_retryable_with_the_wait_meta_asks() {
        let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
        let ops = vec![op(OpKind::Add, Some("u1"), None, None)];
        sim.fail_next(1, MetaFault::AudienceRateLimit);
        match dest.send(&export(), &binding(), &ops).await {
            Err(DestinationError::Retryable {
                retry_after,
                message,
                ..
            }) => {
                assert!(message.contains("80003"), "{message}");
                assert_eq!(retry_after, Some(Duration::from_secs(120)));
            }
            other => panic!("expected retryable, got {other:?}"),
        }
        sim.fail_next(1, MetaFault::UserRateLimit);
        assert!(dest
            .send(&export(), &binding(), &ops)
            .await
            .is_err_and(|e| e.is_retryable()));
        sim.fail_next(1, MetaFault::ServerError);
        assert!(dest
            .send(&export(), &binding(), &ops)
            .await
            .is_err_and(|e| e.is_retryable()));
        let outcomes = dest
            .send(&export(), &binding(), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes, vec![OpOutcome::Accepted]);
    }

    #[tokio::test]
    async fn unknown_audience_is_permanent() {
        let (_running, _sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
        let mut lost = op(OpKind::Add, Some("u1"), None, None);
        lost.audience = "999".into();
        let err = dest.send(&export(), &binding(), &[lost]).await.err();
        assert!(
            matches!(err, Some(DestinationError::Permanent { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn large_add_is_one_session_in_batch_sized_chunks() {
        let (_running, sim, dest) = setup(2, DEFAULT_ACCESS_TOKEN).await;
        let ops: Vec<DeliveryOp> = (0..5)
            .map(|i| op(OpKind::Add, Some(&format!("u{i}")), None, None))
            .collect();
        let outcomes = dest
            .send(&export(), &binding(), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(outcomes.iter().all(|o| *o == OpOutcome::Accepted));
        assert_eq!(sim.member_count(AUDIENCE), 5);
        let requests = sim.requests();
        let rows: Vec<usize> = requests.iter().map(|r| r.rows).collect();
        assert_eq!(rows, vec![2, 2, 1]);
        let session = requests[0].session_id;
        assert!(session.is_some_and(|s| s > 0));
        assert!(requests.iter().all(|r| r.session_id == session));
        let seqs: Vec<Option<u64>> = requests.iter().map(|r| r.batch_seq).collect();
        assert_eq!(seqs, vec![Some(1), Some(2), Some(3)]);
        let last: Vec<Option<bool>> = requests.iter().map(|r| r.last_batch_flag).collect();
        assert_eq!(last, vec![Some(false), Some(false), Some(true)]);
    }

    #[tokio::test]
    async fn ops_split_by_audience_and_direction_keep_their_order() {
        let (_running, sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
        sim.create_audience("777");
        let mut tiered = op(OpKind::Add, Some("u2"), None, None);
        tiered.audience = "777".into();
        let event = op(OpKind::Event, Some("u3"), None, None);
        let ops = vec![
            op(OpKind::Add, Some("u1"), None, None),
            tiered,
            event,
            op(OpKind::Remove, Some("u9"), None, None),
        ];
        let outcomes = dest
            .send(&export(), &binding(), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcomes[0], OpOutcome::Accepted);
        assert_eq!(outcomes[1], OpOutcome::Accepted);
        assert!(matches!(outcomes[2], OpOutcome::Rejected { .. }));
        assert_eq!(outcomes[3], OpOutcome::Accepted);
        assert!(sim.has_member_with("777", "EXTERN_ID", "u2"));
        assert_eq!(sim.request_count(), 3);
    }

    #[tokio::test]
    async fn audience_size_reads_the_count_fields() {
        let (_running, _sim, dest) = setup(100, DEFAULT_ACCESS_TOKEN).await;
        let ops = vec![
            op(OpKind::Add, Some("u1"), None, None),
            op(OpKind::Add, Some("u2"), None, None),
        ];
        dest.send(&export(), &binding(), &ops)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let size = dest
            .audience_size(&export(), &binding())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(size, Some(2));
    }

    #[test]
    fn missing_token_secret_is_permanent_and_names_the_variable() {
        let err = MetaAudienceDestination::new(
            "meta".into(),
            &spec("http://127.0.0.1:1", 100),
            &MapSecrets::default(),
            reqwest::Client::new(),
        )
        .err();
        match err {
            Some(DestinationError::Permanent { message, .. }) => {
                assert!(message.contains("META_ACCESS_TOKEN"))
            }
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[test]
    fn invalid_sample_rejects_only_the_row_holding_it() {
        let rows = vec![
            Row {
                index: 4,
                cells: vec!["aa".into(), String::new()],
            },
            Row {
                index: 9,
                cells: vec!["bad".into(), "u9".into()],
            },
        ];
        let samples = json!({ "bad": "EMAIL: not a SHA-256 lowercase hex digest" });
        let rejected = rejected_rows(&rows, Some(&samples));
        assert_eq!(rejected.keys().copied().collect::<Vec<_>>(), vec![9]);
        assert!(rejected.get(&9).is_some_and(|r| r.contains("EMAIL")));
    }

    #[test]
    fn graph_codes_decide_retry_before_http_status() {
        let dest = MetaAudienceDestination::new(
            "meta".into(),
            &spec("http://127.0.0.1:1", 100),
            &MapSecrets::default().with("META_ACCESS_TOKEN", "t"),
            reqwest::Client::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let headers = reqwest::header::HeaderMap::new();
        let body = |code: i64| json!({"error": {"message": "x", "code": code}}).to_string();
        for code in [80003, 4, 17, 613, 32, 1, 2] {
            assert!(
                dest.graph_error(400, &headers, body(code).as_bytes())
                    .is_retryable(),
                "{code}"
            );
        }
        for code in [100, 190, 200, 368, 2635, 105, 194, 2650] {
            assert!(
                !dest
                    .graph_error(500, &headers, body(code).as_bytes())
                    .is_retryable(),
                "{code}"
            );
        }
        assert!(dest
            .graph_error(502, &headers, b"<html>bad gateway</html>")
            .is_retryable());
        assert!(!dest.graph_error(404, &headers, b"not found").is_retryable());
    }
}
