//! Generic signed HTTPS webhook: for analytics tools we have no connector for.
//!
//! ## Request
//! `POST <url>` (the spec's `base_url`, when set, replaces `settings.url`
//! whole), `Content-Type: application/json`, body:
//! ```json
//! {"export":"cart_abandoners","mode":"membership","destination":"hook","sent_at":1700000000,
//!  "ops":[{"op_id":"…","op":"add","audience":"…","tier":null,
//!          "person_key":"id:u1",
//!          "ids":{"id":"u1","cio_id":"…","email_sha256":"…","phone_sha256":"…"},
//!          "attributes":{…},"event":{"event_id":"…","name":"…","data":{…}},
//!          "source_ts":1700000000123}]}
//! ```
//! `mode` is the export's: in an `attributes` export every op is an
//! `update` carrying the allow-listed attributes to upsert, never a
//! membership change (leaving the segment sends nothing).
//! Event ops (events exports) travel in `ops` as event payloads
//! (`{"type":"event","event_id",…}`; see `events`).
//! `id` and `cio_id` travel as given. Email and phone never travel raw: they
//! are normalised (email trimmed and lowercased; phone E.164 with `+`) and
//! sent as lowercase SHA-256 hex (`email_sha256`, `phone_sha256`); a value
//! that fails normalisation is left out. `op_id` is stable for the same op,
//! so a receiver can drop redeliveries. `source_ts` is Unix milliseconds.
//!
//! ## Signature (`v1`)
//! `X-Dataout-Timestamp: <Unix seconds>` and
//! `X-Dataout-Signature: v1=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`.
//! Receivers should recompute over the raw bytes, compare in constant time
//! and refuse timestamps more than 5 minutes off (see the `dataout-sim`
//! webhook receiver, which enforces exactly this).
//!
//! ## Outcomes
//! 2xx: every op sent is Accepted. 408, 429 and 5xx, timeouts, refused
//! connections: Retryable. Other statuses (401 bad signature, 413 too big):
//! Permanent. People with no identifier the export's identity spec lists are
//! Unmatched and never sent.

pub mod events;

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::destinations::clevertap::golden_identity;
use crate::destinations::{status_is_retryable, Destination, DestinationError, OpOutcome};
use crate::domain::identity::{normalize_email, normalize_phone_e164, sha256_hex};
use crate::domain::model::{DeliveryOp, OpKind};
use crate::domain::spec::{
    DestinationKind, DestinationSettings, DestinationSpec, ExportDestination, ExportSpec,
};
use crate::ports::{Secret, Secrets};

pub const TIMESTAMP_HEADER: &str = "X-Dataout-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Dataout-Signature";
/// Ops per request at most, whatever the spec says (keeps bodies well under
/// the 1 MiB receivers commonly accept).
pub const MAX_OPS_PER_REQUEST: usize = 1000;
/// Per request, as the shared client of the other destinations.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `v1=<hex>` for `body` signed at `timestamp` (Unix seconds).
pub fn signature_v1(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this branch is unreachable.
        Err(_) => <Hmac<Sha256> as Mac>::new(&Default::default()),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct WebhookDestination {
    name: String,
    url: String,
    secret: Secret,
    batch_size: usize,
    http: reqwest::Client,
}

impl std::fmt::Debug for WebhookDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDestination")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

fn op_kind_str(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Add => "add",
        OpKind::Remove => "remove",
        OpKind::Update => "update",
        OpKind::Event => "event",
    }
}

impl WebhookDestination {
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
        let DestinationSettings::Webhook {
            url,
            secret_env,
            allow_private_network,
        } = &spec.settings
        else {
            return Err(permanent("settings are not of kind webhook".to_string()));
        };
        let secret = crate::destinations::required_secret(secrets, &name, secret_env)?;
        let url = spec.base_url.clone().unwrap_or_else(|| url.clone());
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(permanent(format!("webhook url must be http(s): {url:?}")));
        }
        // The loader refuses these too; a spec built in code is held to
        // the same rule, and the client checks every address it resolves.
        let http = if *allow_private_network {
            http
        } else {
            if let Some(why) = crate::destinations::net_guard::refuse_private_url(&url) {
                return Err(permanent(format!("webhook url {why}")));
            }
            crate::destinations::net_guard::guarded_client(REQUEST_TIMEOUT)
                .map_err(|e| permanent(format!("http client: {e}")))?
        };
        Ok(Self {
            batch_size: spec.batch_size.clamp(1, MAX_OPS_PER_REQUEST),
            name,
            url,
            secret,
            http,
        })
    }

    fn retryable(&self, message: String, retry_after: Option<Duration>) -> DestinationError {
        DestinationError::Retryable {
            destination: self.name.clone(),
            message,
            retry_after,
        }
    }

    fn permanent(&self, message: String) -> DestinationError {
        DestinationError::Permanent {
            destination: self.name.clone(),
            message,
        }
    }

    /// One op as the receiver sees it: raw email and phone replaced by hashes.
    fn op_json(&self, export: &ExportSpec, op: &DeliveryOp) -> Value {
        let mut ids = Map::new();
        if let Some(id) = op.ids.id() {
            ids.insert("id".into(), json!(id));
        }
        if let Some(cio) = op.ids.cio_id() {
            ids.insert("cio_id".into(), json!(cio));
        }
        if let Some(email) = op.ids.email().and_then(|e| normalize_email(e, false).ok()) {
            ids.insert("email_sha256".into(), json!(sha256_hex(&email)));
        }
        let region = export.identity.default_phone_region.as_deref();
        if let Some(phone) = op
            .ids
            .phone()
            .and_then(|p| normalize_phone_e164(p, region).ok())
        {
            ids.insert("phone_sha256".into(), json!(sha256_hex(&phone)));
        }
        if let (OpKind::Event, Some(event)) = (op.op, op.event.as_ref()) {
            return events::event_json(op, event, ids, op_id(export, op));
        }
        let event = op
            .event
            .as_ref()
            .map(|e| json!({"event_id": e.event_id, "name": e.name, "data": e.data}));
        json!({
            "op_id": op_id(export, op),
            "op": op_kind_str(op.op),
            "audience": op.audience,
            "tier": op.tier,
            "person_key": op.person_key.as_str(),
            "ids": ids,
            "attributes": op.attributes,
            "event": event,
            "source_ts": op.source_ts,
        })
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), DestinationError> {
        let ts = chrono::Utc::now().timestamp();
        let signature = signature_v1(&self.secret, ts, &body);
        let resp = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_builder() {
                    self.permanent(format!("could not build the request: {e}"))
                } else {
                    self.retryable(format!("transport: {e}"), None)
                }
            })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // The receiver's answer is not ours to trust: only a short excerpt.
        let excerpt: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let message = format!("HTTP {status}: {excerpt}");
        Err(if status_is_retryable(status) {
            self.retryable(message, retry_after)
        } else {
            self.permanent(message)
        })
    }
}

/// Stable id of one op: the same op redelivered gets the same id.
fn op_id(export: &ExportSpec, op: &DeliveryOp) -> String {
    let mut h = Sha256::new();
    for part in [
        export.name.as_str(),
        op.person_key.as_str(),
        op.audience.as_str(),
        op_kind_str(op.op),
        op.event.as_ref().map(|e| e.event_id.as_str()).unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(op.source_ts.to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

#[async_trait]
impl Destination for WebhookDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Webhook
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
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut to_send = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            let invalid = (op.op == OpKind::Event)
                .then(|| events::invalid_event(op))
                .flatten();
            if let Some(reason) = invalid {
                outcomes.push(OpOutcome::Invalid { reason });
            } else if golden_identity(&export.identity, &op.ids).is_some() {
                outcomes.push(OpOutcome::Accepted);
                to_send.push(index);
            } else {
                outcomes.push(OpOutcome::Unmatched {
                    reason: "no identifier the export's identity spec lists".to_string(),
                });
            }
        }
        // Any failed chunk fails the call; the job is retried whole and
        // receivers drop repeats by `op_id`.
        for chunk in to_send.chunks(self.batch_size) {
            let ops_json: Vec<Value> = chunk
                .iter()
                .filter_map(|i| ops.get(*i))
                .map(|op| self.op_json(export, op))
                .collect();
            let body = serde_json::to_vec(&json!({
                "export": export.name,
                "mode": export.mode,
                "destination": self.name,
                "sent_at": chrono::Utc::now().timestamp(),
                "ops": ops_json,
            }))
            .map_err(|e| self.permanent(format!("could not encode the webhook body: {e}")))?;
            self.post(body).await?;
        }
        Ok(outcomes)
    }

    fn describe_output(&self, _export: &ExportSpec, _binding: &ExportDestination) -> String {
        format!("signed webhook {}", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Attributes, Identifiers, PersonKey};
    use crate::domain::spec::{
        Cadence, ExportMode, ExportSource, GuardRails, IdKind, IdentitySpec,
    };
    use crate::ports::MapSecrets;
    use dataout_sim::webhook::{self as sim, WebhookSimConfig};

    const SECRET: &str = "test-webhook-secret";

    fn dest_spec(url: &str, batch_size: usize) -> DestinationSpec {
        DestinationSpec {
            name: "hook".into(),
            kind: DestinationKind::Webhook,
            base_url: None,
            batch_size,
            max_concurrency: 2,
            max_requests_per_second: None,
            max_attempts: 3,
            settings: DestinationSettings::Webhook {
                url: url.to_string(),
                secret_env: "HOOK_SECRET".into(),
                allow_private_network: true,
            },
        }
    }

    fn export() -> ExportSpec {
        ExportSpec {
            name: "vip".into(),
            source: ExportSource::Action,
            mode: ExportMode::Membership,
            cadence: Cadence::default(),
            identity: IdentitySpec {
                golden: IdKind::Email,
                fallbacks: vec![IdKind::Id],
                default_phone_region: None,
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
            destination: "hook".into(),
            audience: "vip".into(),
            tier_audiences: Default::default(),
            keys: vec![],
        }
    }

    fn op(id: Option<&str>, email: Option<&str>) -> DeliveryOp {
        DeliveryOp {
            op: OpKind::Add,
            person_key: PersonKey(format!("id:{}", id.unwrap_or("-"))),
            ids: Identifiers {
                id: id.map(String::from),
                email: email.map(String::from),
                cio_id: None,
                phone: None,
            },
            audience: "vip".into(),
            tier: None,
            attributes: Attributes::new(),
            event: None,
            source_ts: 1_700_000_000_000,
            intake_ts: 1_700_000_000_500,
        }
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    }

    fn dest(
        url: &str,
        secret: &str,
        batch_size: usize,
    ) -> Result<WebhookDestination, DestinationError> {
        let secrets = MapSecrets::default().with("HOOK_SECRET", secret);
        WebhookDestination::new("hook".into(), &dest_spec(url, batch_size), &secrets, http())
    }

    #[tokio::test]
    async fn signed_ops_are_verified_and_recorded_with_hashed_email() -> anyhow::Result<()> {
        let (running, state) = sim::start(WebhookSimConfig::default()).await?;
        let d = dest(&format!("{}/ingest", running.base_url), SECRET, 100)?;
        let ops = [op(Some("u1"), Some(" Ann@Example.com ")), op(None, None)];
        let out = d.send(&export(), &binding(), &ops).await?;
        assert_eq!(out[0], OpOutcome::Accepted);
        assert!(matches!(out[1], OpOutcome::Unmatched { .. }));

        let deliveries = state.deliveries();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].path, "/ingest");
        assert_eq!(deliveries[0].body["export"], "vip");
        let sent = state.ops();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["ids"]["id"], "u1");
        assert_eq!(
            sent[0]["ids"]["email_sha256"],
            sha256_hex("ann@example.com")
        );
        assert!(!deliveries[0].body.to_string().contains("example.com"));
        Ok(())
    }

    #[tokio::test]
    async fn wrong_secret_is_401_and_permanent() -> anyhow::Result<()> {
        let (running, state) = sim::start(WebhookSimConfig::default()).await?;
        let d = dest(&running.base_url, "tampered", 100)?;
        let err = d
            .send(&export(), &binding(), &[op(Some("u1"), None)])
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("expected an error"))?;
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("401"), "{err}");
        assert!(state.deliveries().is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn tampered_body_fails_the_signature() -> anyhow::Result<()> {
        let (running, _state) = sim::start(WebhookSimConfig::default()).await?;
        let body = br#"{"export":"vip","destination":"hook","ops":[]}"#;
        let ts = chrono::Utc::now().timestamp();
        let signature = signature_v1(&Secret::new(SECRET), ts, body);
        let tampered = br#"{"export":"vip","destination":"evil","ops":[]}"#;
        let status = |b: &'static [u8]| {
            http()
                .post(&running.base_url)
                .header("Content-Type", "application/json")
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(SIGNATURE_HEADER, signature.clone())
                .body(b)
                .send()
        };
        assert_eq!(status(body).await?.status().as_u16(), 200);
        assert_eq!(status(tampered).await?.status().as_u16(), 401);
        Ok(())
    }

    #[tokio::test]
    async fn server_errors_are_retryable_and_batches_are_chunked() -> anyhow::Result<()> {
        let (running, state) = sim::start(WebhookSimConfig::default()).await?;
        let d = dest(&running.base_url, SECRET, 2)?;
        state.fail_next(1, 503);
        let ops: Vec<DeliveryOp> = (0..5).map(|i| op(Some(&format!("u{i}")), None)).collect();
        let err = d
            .send(&export(), &binding(), &ops)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("expected an error"))?;
        assert!(err.is_retryable());
        let out = d.send(&export(), &binding(), &ops).await?;
        assert_eq!(out, vec![OpOutcome::Accepted; 5]);
        assert_eq!(state.deliveries().len(), 3);
        assert_eq!(state.counters().requests, 4);
        Ok(())
    }

    #[test]
    fn missing_secret_names_the_variable() {
        let secrets = MapSecrets::default();
        let err = WebhookDestination::new(
            "hook".into(),
            &dest_spec("https://x.invalid", 10),
            &secrets,
            http(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("HOOK_SECRET"), "{err}");
    }

    #[test]
    fn a_spec_built_in_code_is_held_to_the_private_network_rule_too() {
        let secrets = MapSecrets::default().with("HOOK_SECRET", SECRET);
        for url in [
            "http://hooks.example.com/x",
            "https://169.254.169.254/latest",
        ] {
            let mut spec = dest_spec(url, 10);
            if let DestinationSettings::Webhook {
                allow_private_network,
                ..
            } = &mut spec.settings
            {
                *allow_private_network = false;
            }
            let err = WebhookDestination::new("hook".into(), &spec, &secrets, http())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("allow_private_network"), "{url}: {err}");
        }
    }

    #[test]
    fn op_id_is_stable_and_op_sensitive() {
        let a = op(Some("u1"), None);
        let mut b = a.clone();
        assert_eq!(op_id(&export(), &a), op_id(&export(), &b));
        b.op = OpKind::Remove;
        assert_ne!(op_id(&export(), &a), op_id(&export(), &b));
    }
}
