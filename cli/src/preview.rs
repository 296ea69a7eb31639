//! `dataout preview`: the exact requests an export would send to one
//! destination for a file of people, sending nothing.
//!
//! How: the people become ops exactly as the pipeline derives them (the
//! export's identity rules, allow-list and transforms, tiers and tier
//! audiences; events as intake forwards them), and the real destination
//! client sends them, in batches of its `max_batch`, to a capture server on
//! loopback that records each request and answers what the platform answers
//! on success. Its secrets are placeholders (`<secret NAME>`), never read
//! from the environment; its HTTP client resolves every host name to the
//! capture server and uses no proxy, so nothing can leave the machine. The
//! warehouse writes to an in-memory object store instead. Each request is
//! printed as one JSON line with the platform's real URL, its header names
//! (never values) and its body.
//!
//! Not applied, because they need state: suppression by other exports, and
//! the removes an identifier change causes (every person is a first entry).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use dataout::adapters::overlay::OverlayStateStore;
use dataout::destinations::{self, OpOutcome};
use dataout::domain::events::shape_event;
use dataout::domain::membership::{apply_change, ops_for_export, Decision};
use dataout::domain::model::{
    ChangeKind, ChangeOrigin, DeliveryOp, EventPayload, Identifiers, MembershipChange, Millis,
    OpKind, Person,
};
use dataout::domain::spec::{
    ActivationSpec, DestinationKind, DestinationSettings, DestinationSpec, ExportMode,
    ExportSource, ExportSpec, GoogleCredentialsSpec,
};
use dataout::pipeline::changes::mapped_attributes;
use dataout::ports::{
    Clock, EnvSecrets, ObjectStore, ObjectStoreError, Secret, Secrets, SystemClock,
};

// ---------------------------------------------------------------- input

/// One input line: a Customer.io person, and for events / conversions
/// exports the event they did.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    email: Option<Value>,
    #[serde(default)]
    cio_id: Option<Value>,
    #[serde(default)]
    phone: Option<Value>,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    event: Option<InputEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputEvent {
    name: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    data: Map<String, Value>,
    /// Unix seconds, as Customer.io sends them.
    #[serde(default)]
    timestamp: Option<i64>,
}

/// A line that could not be previewed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// What one preview did.
#[derive(Clone, Debug, Default)]
pub struct PreviewSummary {
    /// Lines turned into ops.
    pub people: u64,
    pub bad_lines: Vec<BadLine>,
    pub ops: u64,
    pub requests: u64,
    /// Ops by outcome the capture answers led to: `accepted`, or why the
    /// client did not send them (`unmatched`, `invalid`).
    pub outcomes: BTreeMap<String, u64>,
    pub seconds: f64,
}

/// An identifier given as a string or a number (Customer.io ids may be
/// numeric); `null` is absent.
fn identifier(field: &str, v: Option<Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!(
            "`{field}` must be a string or a number, not {}",
            match other {
                Value::Bool(_) => "a boolean",
                Value::Array(_) => "an array",
                _ => "an object",
            }
        )),
    }
}

/// Turn one input line into the ops the export sends to `binding`.
fn ops_of_line(
    spec: &ActivationSpec,
    export: &ExportSpec,
    dest: &DestinationSpec,
    line_no: usize,
    line: &str,
    now: Millis,
) -> Result<Vec<DeliveryOp>, String> {
    let input: InputLine = serde_json::from_str(line).map_err(|e| format!("not a person: {e}"))?;
    let ids = Identifiers {
        id: identifier("id", input.id)?,
        email: identifier("email", input.email)?,
        cio_id: identifier("cio_id", input.cio_id)?,
        phone: identifier("phone", input.phone)?,
    };
    let Some(person_key) = ids.person_key() else {
        return Err("no usable identifier: give `id`, `cio_id` or `email`".into());
    };
    let Some(binding) = export.binding(&dest.name) else {
        return Err(format!(
            "export `{}` is not sent to `{}`",
            export.name, dest.name
        ));
    };
    let attributes = input.attributes.into_iter().collect();
    match export.mode {
        ExportMode::Events | ExportMode::Conversions => {
            let Some(event) = input.event else {
                return Err(format!(
                    "export `{}` forwards events: the line needs an `event` ({{\"name\", \"id\", \"data\", \"timestamp\"}})",
                    export.name
                ));
            };
            if let ExportSource::Events { names } = &export.source {
                if !names.contains(&event.name) {
                    return Err(format!(
                        "event `{}` is not one export `{}` forwards ({})",
                        event.name,
                        export.name,
                        names.join(", ")
                    ));
                }
            }
            let ts = match event.timestamp {
                Some(s) => s
                    .checked_mul(1000)
                    .ok_or_else(|| "event timestamp out of range".to_string())?,
                None => now,
            };
            // As intake forwards an event (`pipeline::forward`): shaped by
            // the taxonomy, refused with its reason when it falls short.
            let Some(taxonomy) = spec.events.get(&event.name) else {
                return Err(format!(
                    "event `{}` is not declared under `events:`",
                    event.name
                ));
            };
            let shaped =
                shape_event(taxonomy, &event.data).map_err(|r| format!("not forwarded: {r}"))?;
            Ok(vec![DeliveryOp {
                op: OpKind::Event,
                person_key,
                ids,
                audience: binding.audience.clone(),
                tier: None,
                attributes: mapped_attributes(export, &attributes),
                event: Some(EventPayload {
                    event_id: event
                        .id
                        .unwrap_or_else(|| format!("preview-line-{line_no}")),
                    name: event.name,
                    data: shaped.data,
                    value: shaped.value,
                    currency: shaped.currency,
                    order_id: shaped.order_id,
                }),
                source_ts: ts,
                intake_ts: now,
            }])
        }
        ExportMode::Membership | ExportMode::Attributes => {
            if input.event.is_some() {
                return Err(format!(
                    "export `{}` syncs {} : `event` is for events and conversions exports",
                    export.name,
                    if export.mode == ExportMode::Membership {
                        "membership"
                    } else {
                        "attributes"
                    }
                ));
            }
            // A first entry, as a batch run applies it.
            let change = MembershipChange {
                export: export.name.clone(),
                person: Person {
                    ids,
                    attributes: Default::default(),
                },
                kind: ChangeKind::Enter,
                source_ts: now,
                intake_ts: now,
                origin: ChangeOrigin::Batch,
                change_id: format!("preview:{line_no}"),
            };
            let mapped = mapped_attributes(export, &attributes);
            let record = match apply_change(export, None, &change, &mapped, now) {
                Decision::Write(r) => *r,
                Decision::Stale => return Err("internal: a first entry cannot be stale".into()),
            };
            Ok(ops_for_export(export, &record, binding, dest.kind))
        }
    }
}

// ---------------------------------------------------------------- capture

/// One request the destination made.
#[derive(Clone, Debug)]
struct Captured {
    method: String,
    path_and_query: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

struct Capture {
    kind: DestinationKind,
    requests: Mutex<Vec<Captured>>,
}

/// Rows (records, events, members) in a request body, for the answer.
fn rows_in(body: &Value) -> usize {
    for path in [
        &["d"][..],
        &["data"],
        &["payload", "data"],
        &["audienceMembers"],
        &["events"],
        &["operations"],
        &["ops"],
    ] {
        let mut v = body;
        let mut found = true;
        for key in path {
            match v.get(*key) {
                Some(next) => v = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if let (true, Some(a)) = (found, v.as_array()) {
            return a.len();
        }
    }
    0
}

/// What the platform answers a request that succeeded.
fn success_answer(kind: DestinationKind, path: &str, body: &Value, seq: usize) -> Value {
    let n = rows_in(body);
    match kind {
        DestinationKind::Clevertap => {
            json!({"status": "success", "processed": n, "unprocessed": []})
        }
        DestinationKind::MetaAudience => json!({
            "audience_id": path.rsplit('/').nth(1).unwrap_or_default(),
            "session_id": seq,
            "num_received": n,
            "num_invalid_entries": 0,
            "invalid_entry_samples": {},
        }),
        DestinationKind::MetaConversions => {
            json!({"events_received": n, "messages": [], "fbtrace_id": format!("preview{seq}")})
        }
        DestinationKind::GoogleDataManager => json!({"requestId": format!("preview-{seq}")}),
        DestinationKind::GoogleCustomerMatch => {
            if path.ends_with(":create") {
                let customer = path
                    .split('/')
                    .skip_while(|p| *p != "customers")
                    .nth(1)
                    .unwrap_or("0");
                json!({"resourceName": format!("customers/{customer}/offlineUserDataJobs/{seq}")})
            } else if path.ends_with(":run") {
                json!({"name": format!("operations/preview-{seq}")})
            } else if path.ends_with("googleAds:search") {
                json!({"results": [{"offlineUserDataJob": {"status": "SUCCESS"}}]})
            } else {
                json!({})
            }
        }
        DestinationKind::Webhook | DestinationKind::Warehouse => json!({}),
        #[allow(unreachable_patterns)]
        _ => json!({}),
    }
}

async fn capture(
    State(cap): State<Arc<Capture>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_string();
    let seq = {
        let Ok(mut requests) = cap.requests.lock() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({}))).into_response();
        };
        requests.push(Captured {
            method: method.to_string(),
            path_and_query: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| path.clone()),
            headers: headers.keys().map(|k| k.as_str().to_string()).collect(),
            body: body.to_vec(),
        });
        requests.len()
    };
    (
        StatusCode::OK,
        Json(success_answer(cap.kind, &path, &parsed, seq)),
    )
        .into_response()
}

/// Resolves every host name to the capture server: a client that ignored
/// its base URL would still reach only loopback.
struct LoopbackResolver(SocketAddr);

impl reqwest::dns::Resolve for LoopbackResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addr = self.0;
        Box::pin(async move {
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(addr));
            Ok(addrs)
        })
    }
}

/// Placeholder secrets: `<secret NAME>` for every name asked, except an
/// optional one (a test event code) that is not set here, which stays
/// absent as it would in a real run. Nothing real is ever returned.
struct PlaceholderSecrets {
    optional: HashSet<String>,
}

impl Secrets for PlaceholderSecrets {
    fn get(&self, name: &str) -> Option<Secret> {
        if self.optional.contains(name) && EnvSecrets.get(name).is_none() {
            return None;
        }
        Some(Secret::new(format!("<secret {name}>")))
    }
}

/// Objects the warehouse writes, kept in memory.
#[derive(Default)]
struct CaptureStore {
    location: String,
    objects: Mutex<Vec<(String, String, Vec<u8>)>>,
}

#[async_trait]
impl ObjectStore for CaptureStore {
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectStoreError> {
        let mut objects = self
            .objects
            .lock()
            .map_err(|_| ObjectStoreError::Permanent {
                message: "preview store: lock poisoned".into(),
            })?;
        objects.retain(|(k, _, _)| k != key);
        objects.push((key.to_string(), content_type.to_string(), body));
        Ok(())
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectStoreError> {
        let objects = self
            .objects
            .lock()
            .map_err(|_| ObjectStoreError::Permanent {
                message: "preview store: lock poisoned".into(),
            })?;
        Ok(objects
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, b)| b.clone()))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        let objects = self
            .objects
            .lock()
            .map_err(|_| ObjectStoreError::Permanent {
                message: "preview store: lock poisoned".into(),
            })?;
        let mut keys: Vec<String> = objects
            .iter()
            .filter(|(k, _, _)| k.starts_with(prefix))
            .map(|(k, _, _)| k.clone())
            .collect();
        keys.sort();
        Ok(keys)
    }
    fn locate(&self, key: &str) -> String {
        format!("{}/{key}", self.location.trim_end_matches('/'))
    }
}

// ---------------------------------------------------------------- hosts

/// The API base a destination really talks to (before any override here).
fn real_base(dest: &DestinationSpec) -> Result<String, String> {
    if let Some(url) = &dest.base_url {
        return Ok(url.clone());
    }
    Ok(match &dest.settings {
        DestinationSettings::Clevertap { region, .. } => {
            destinations::clevertap::base_url_for_region(region)?
        }
        DestinationSettings::MetaAudience { .. } | DestinationSettings::MetaConversions { .. } => {
            destinations::meta_audience::DEFAULT_BASE_URL.to_string()
        }
        DestinationSettings::GoogleDataManager { .. } => {
            destinations::google_data_manager::DEFAULT_BASE_URL.to_string()
        }
        DestinationSettings::GoogleCustomerMatch { .. } => {
            destinations::google_customer_match::DEFAULT_BASE_URL.to_string()
        }
        DestinationSettings::Webhook { url, .. } => url.clone(),
        DestinationSettings::Warehouse { location } => location.clone(),
        #[allow(unreachable_patterns)]
        _ => return Err(format!("destination `{}`: no known API host", dest.name)),
    })
}

/// `(origin, path)` of a base URL: `https://host[:port]` and its path
/// without a trailing slash (empty for a bare host).
fn split_base(base: &str) -> Result<(String, String), String> {
    let url = reqwest::Url::parse(base).map_err(|e| format!("base URL {base:?}: {e}"))?;
    let origin = url.origin().ascii_serialization();
    let mut path = url.path().trim_end_matches('/').to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok((origin, path))
}

/// The destination as the preview builds it: pointed at the capture server
/// at `capture_origin`, with a fixed placeholder token for Google.
fn pointed_at(
    dest: &DestinationSpec,
    capture_origin: &str,
    base_path: &str,
) -> (DestinationSpec, HashSet<String>) {
    let mut d = dest.clone();
    let mut optional = HashSet::new();
    d.base_url = Some(format!("{capture_origin}{base_path}"));
    match &mut d.settings {
        // The capture server is on loopback; the real URL was judged when
        // the spec loaded and is what the preview prints.
        DestinationSettings::Webhook {
            allow_private_network,
            ..
        } => *allow_private_network = true,
        DestinationSettings::GoogleDataManager { auth, .. }
        | DestinationSettings::GoogleCustomerMatch { auth, .. } => {
            // No token exchange: a fixed token sends the same requests.
            auth.token_url = format!("{capture_origin}/token");
            let env = match &auth.credentials {
                GoogleCredentialsSpec::ServiceAccount { key_env } => key_env.clone(),
                GoogleCredentialsSpec::RefreshToken {
                    refresh_token_env, ..
                } => refresh_token_env.clone(),
                GoogleCredentialsSpec::AccessToken { access_token_env } => access_token_env.clone(),
            };
            auth.credentials = GoogleCredentialsSpec::AccessToken {
                access_token_env: env,
            };
        }
        DestinationSettings::MetaConversions {
            test_event_code_env: Some(env),
            ..
        } => {
            optional.insert(env.clone());
        }
        _ => {}
    }
    (d, optional)
}

// ---------------------------------------------------------------- output

fn body_json(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
    }
}

/// A JSON object with its keys in the order given (serde_json's maps sort
/// them), so each line reads method, URL, headers, then the body.
fn ordered(fields: &[(&str, Value)]) -> Result<String, serde_json::Error> {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k)?);
        out.push(':');
        out.push_str(&serde_json::to_string(v)?);
    }
    out.push('}');
    Ok(out)
}

/// JSON Lines rows of a warehouse object (gzip or plain).
fn object_rows(body: &[u8]) -> Result<Vec<Value>, String> {
    let text = if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = String::new();
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut out)
            .map_err(|e| format!("gzip: {e}"))?;
        out
    } else {
        String::from_utf8(body.to_vec()).map_err(|e| format!("utf-8: {e}"))?
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("row: {e}")))
        .collect()
}

// ---------------------------------------------------------------- run

/// Preview `export` at `destination` for the people read from `input`,
/// writing one JSON line per request to `out`.
pub async fn preview(
    spec: &ActivationSpec,
    export: &str,
    destination: &str,
    input: impl BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<PreviewSummary> {
    let started = Instant::now();
    let export = spec
        .export(export)
        .ok_or_else(|| anyhow!("no export `{export}` in the spec"))?;
    let dest = spec
        .destination(destination)
        .ok_or_else(|| anyhow!("no destination `{destination}` in the spec"))?;
    if export.binding(destination).is_none() {
        bail!(
            "export `{}` is not sent to `{destination}` (it goes to: {})",
            export.name,
            export
                .destinations
                .iter()
                .map(|d| d.destination.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now_ms();

    let mut summary = PreviewSummary::default();
    let mut ops: Vec<DeliveryOp> = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                summary.bad_lines.push(BadLine {
                    line: line_no,
                    reason: format!("unreadable: {e}"),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match ops_of_line(spec, export, dest, line_no, &line, now) {
            Ok(o) => {
                summary.people += 1;
                ops.extend(o);
            }
            Err(reason) => summary.bad_lines.push(BadLine {
                line: line_no,
                reason,
            }),
        }
    }
    summary.ops = ops.len() as u64;

    let cap = Arc::new(Capture {
        kind: dest.kind,
        requests: Mutex::new(Vec::new()),
    });
    let router = Router::new().fallback(capture).with_state(cap.clone());
    let server = dataout_sim::serve(router).await?;
    let real = real_base(dest).map_err(|e| anyhow!(e))?;
    let is_warehouse = dest.kind == DestinationKind::Warehouse;
    let (real_origin, base_path) = if is_warehouse {
        (String::new(), String::new())
    } else {
        split_base(&real).map_err(|e| anyhow!(e))?
    };
    let (pointed, optional) = pointed_at(dest, &server.base_url, &base_path);
    let store = Arc::new(CaptureStore {
        location: real.clone(),
        ..CaptureStore::default()
    });
    let http = reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(LoopbackResolver(server.addr)))
        .build()
        .context("http client")?;
    let client = destinations::build(
        &pointed,
        &PlaceholderSecrets { optional },
        http,
        Some(store.clone() as Arc<dyn ObjectStore>),
        clock,
        Arc::new(OverlayStateStore::in_memory()),
    )
    .map_err(|e| anyhow!("building destination `{destination}`: {e}"))?;
    let Some(binding) = export.binding(destination) else {
        bail!("export `{}` is not sent to `{destination}`", export.name);
    };

    for chunk in ops.chunks(client.max_batch().max(1)) {
        let outcomes = client
            .send(export, binding, chunk)
            .await
            .map_err(|e| anyhow!("the destination client refused the batch: {e}"))?;
        for o in outcomes {
            let name = match o {
                OpOutcome::Accepted => "accepted".to_string(),
                OpOutcome::AcceptedWithout { reason, .. } => format!("accepted without: {reason}"),
                OpOutcome::Rejected { reason } => format!("rejected: {reason}"),
                OpOutcome::Unmatched { reason } => format!("unmatched: {reason}"),
                OpOutcome::Retry { reason } => format!("retry: {reason}"),
                OpOutcome::Invalid { reason } => format!("invalid: {reason}"),
            };
            *summary.outcomes.entry(name).or_default() += 1;
        }
    }

    let requests = std::mem::take(
        &mut *cap
            .requests
            .lock()
            .map_err(|_| anyhow!("capture: lock poisoned"))?,
    );
    for (i, r) in requests.iter().enumerate() {
        let line = ordered(&[
            ("seq", json!(i + 1)),
            ("destination", json!(destination)),
            ("kind", json!(dest.kind.as_str())),
            ("method", json!(r.method)),
            ("url", json!(format!("{real_origin}{}", r.path_and_query))),
            ("path", json!(r.path_and_query)),
            ("headers", json!(r.headers)),
            ("body", body_json(&r.body)),
        ])?;
        writeln!(out, "{line}")?;
    }
    summary.requests = requests.len() as u64;
    let objects = std::mem::take(
        &mut *store
            .objects
            .lock()
            .map_err(|_| anyhow!("capture store: lock poisoned"))?,
    );
    for (i, (key, content_type, body)) in objects.iter().enumerate() {
        let rows = object_rows(body).map_err(|e| anyhow!("warehouse object {key}: {e}"))?;
        let line = ordered(&[
            ("seq", json!(requests.len() + i + 1)),
            ("destination", json!(destination)),
            ("kind", json!(dest.kind.as_str())),
            ("method", json!("PUT")),
            ("url", json!(store.locate(key))),
            ("object_key", json!(key)),
            ("content_type", json!(content_type)),
            ("rows", json!(rows)),
        ])?;
        writeln!(out, "{line}")?;
    }
    summary.requests += objects.len() as u64;
    out.flush()?;
    server.shutdown().await;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The summary for stderr.
pub fn render_summary(destination: &str, s: &PreviewSummary) -> String {
    let mut out = format!(
        "preview: {} people, {} ops, {} requests to `{destination}` (nothing sent) in {:.2}s",
        s.people, s.ops, s.requests, s.seconds
    );
    if s.seconds > 0.0 {
        out.push_str(&format!(" — {:.0} people/s", s.people as f64 / s.seconds));
    }
    out.push('\n');
    for (outcome, n) in &s.outcomes {
        out.push_str(&format!("  {n} ops {outcome}\n"));
    }
    for bad in &s.bad_lines {
        out.push_str(&format!("error: {bad}\n"));
    }
    if !s.bad_lines.is_empty() {
        out.push_str(&format!(
            "{} bad line(s): the others were previewed\n",
            s.bad_lines.len()
        ));
    }
    out
}
