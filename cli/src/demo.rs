//! `dataout demo`: the product end to end on one machine, in one command.
//!
//! Starts the simulators (Customer.io App API, CleverTap, Meta, Google, an
//! analytics webhook), loads the example activation spec, syncs every
//! segment export in batch, replays the sample webhook stream through the
//! intake server, runs a second batch pass, delivers, reconciles and prints
//! the report. No network, no cloud account.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use dataout::customerio::app_api::{AppApiClient, AppApiConfig, Region};
use dataout::customerio::webhook::sign;
use dataout::domain::config::parse_spec;
use dataout::domain::model::{counter, CounterScope, RunStatus};
use dataout::domain::spec::{
    ActivationSpec, DestinationKind, DestinationSettings, ExportMode, ExportSource,
    GoogleCredentialsSpec,
};
use dataout::local::LocalRuntime;
use dataout::pipeline::forward::{EVENTS_FORWARDED, EVENTS_INVALID};
use dataout::pipeline::intake::IntakeConfig;
use dataout::ports::{Clock, MapSecrets, Secret, SystemClock};
use dataout_sim::clevertap::{self, ClevertapSimConfig};
use dataout_sim::customerio::{self as cio_sim, CioSimConfig, CioSimHandle};
use dataout_sim::google_dm::{DataManagerSim, DataManagerSimConfig};
use dataout_sim::meta::{MetaSim, MetaSimConfig};
use dataout_sim::webhook::{self as webhook_sim, WebhookSimConfig};

const EXAMPLE_SPEC: &str = include_str!("../../config/exports.example.yaml");
const DEMO_STREAM: &str = include_str!("../../events/customerio/demo-stream.jsonl");

pub const CIO_KEY: &str = "demo-app-api-key";
pub const SIGNING_SECRET: &str = "demo-reporting-signing-secret";
pub const ACTION_SECRET: &str = "demo-action-secret";
pub const WEBHOOK_SECRET: &str = "demo-analytics-secret";
/// Share of identifiers the demo's Meta simulator matches to no Meta user,
/// so the report's match rate comes from the platform's numbers.
pub const DEMO_META_UNMATCHED_SHARE: f64 = 0.2;
/// Share of identifiers the demo's Google simulator matches to no Google
/// user: Google's size estimate (the report's dest. column) counts only
/// matched members.
pub const DEMO_GOOGLE_UNMATCHED_SHARE: f64 = 0.2;
/// How long the demo's Google simulator keeps a request PROCESSING (the
/// platform: minutes to hours).
pub const GOOGLE_PROCESSING_DELAY: Duration = Duration::from_secs(1);

struct Progress {
    started: Instant,
    step: usize,
    steps: usize,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.step += 1;
        eprint!("[{}/{}] {what} … ", self.step, self.steps);
        let _ = std::io::stderr().flush();
    }
    fn done(&self, detail: &str) {
        eprintln!("{detail} ({:.1}s)", self.started.elapsed().as_secs_f64());
    }
}

/// The simulators and the example spec pointed at them: what the demo and
/// the end-to-end tests run against.
pub struct SimEnv {
    pub cio: cio_sim::CioSim,
    pub clevertap_server: dataout_sim::RunningSim,
    pub clevertap: Arc<clevertap::ClevertapState>,
    pub meta_server: dataout_sim::RunningSim,
    pub meta: MetaSim,
    pub google_server: dataout_sim::RunningSim,
    /// Google through the Data Manager API (and its OAuth token endpoint).
    pub google: DataManagerSim,
    pub hook_server: dataout_sim::RunningSim,
    pub hook: Arc<webhook_sim::WebhookState>,
    pub spec: ActivationSpec,
    pub secrets: MapSecrets,
}

impl SimEnv {
    /// Start every simulator and load the example spec with its destinations
    /// pointed at them; the warehouse writes under `warehouse_dir`.
    pub async fn start(people: usize, warehouse_dir: &Path) -> anyhow::Result<SimEnv> {
        Self::start_with(people, warehouse_dir, MetaSimConfig::default()).await
    }

    /// As [`SimEnv::start`], with the Meta simulator configured (population,
    /// delays, quota).
    pub async fn start_with(
        people: usize,
        warehouse_dir: &Path,
        meta_config: MetaSimConfig,
    ) -> anyhow::Result<SimEnv> {
        let now_s = chrono::Utc::now().timestamp();
        let workspace = cio_sim::demo_workspace_at(7, people, now_s);
        let cio = cio_sim::start(CioSimConfig::new(CIO_KEY, workspace)).await?;
        let ct_config = ClevertapSimConfig::default();
        let (clevertap_server, clevertap) = clevertap::start(ct_config.clone()).await?;
        let (meta_server, meta) = MetaSim::start(meta_config).await?;
        let (google_server, google) = DataManagerSim::start(DataManagerSimConfig {
            processing_delay: GOOGLE_PROCESSING_DELAY,
            non_matching_share: DEMO_GOOGLE_UNMATCHED_SHARE,
            ..DataManagerSimConfig::default()
        })
        .await?;
        let (hook_server, hook) = webhook_sim::start(WebhookSimConfig {
            secret: WEBHOOK_SECRET.into(),
            ..WebhookSimConfig::default()
        })
        .await?;
        let mut spec = parse_spec(EXAMPLE_SPEC, "config/exports.example.yaml")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for dest in spec.destinations.values_mut() {
            match &mut dest.settings {
                DestinationSettings::Warehouse { location } => {
                    *location = warehouse_dir.display().to_string()
                }
                DestinationSettings::Webhook {
                    url,
                    allow_private_network,
                    ..
                } => {
                    // The receiver is the simulator on loopback.
                    *url = format!("{}/hooks/dataout", hook_server.base_url);
                    *allow_private_network = true;
                }
                DestinationSettings::GoogleDataManager {
                    auth,
                    status_poll_after_ms,
                    ..
                } => {
                    auth.token_url = format!("{}/token", google_server.base_url);
                    // The demo reads request statuses as soon as they are processed.
                    *status_poll_after_ms = 0;
                }
                _ => {}
            }
            dest.base_url = match dest.kind {
                DestinationKind::Clevertap => Some(clevertap_server.base_url.clone()),
                DestinationKind::MetaAudience | DestinationKind::MetaConversions => {
                    Some(meta_server.base_url.clone())
                }
                DestinationKind::GoogleDataManager => Some(google_server.base_url.clone()),
                _ => dest.base_url.take(),
            };
        }
        create_sim_audiences(&spec, &meta, &google);
        let mut secrets = demo_secrets(&spec, &ct_config);
        for dest in spec.destinations.values() {
            if let DestinationSettings::GoogleDataManager { auth, .. } = &dest.settings {
                if let GoogleCredentialsSpec::ServiceAccount { key_env } = &auth.credentials {
                    secrets = secrets.with(
                        key_env,
                        &dataout_sim::google_oauth::test_service_account_json(&auth.token_url),
                    );
                }
            }
        }
        Ok(SimEnv {
            cio,
            clevertap_server,
            clevertap,
            meta_server,
            meta,
            google_server,
            google,
            hook_server,
            hook,
            spec,
            secrets,
        })
    }

    /// The local runtime on fresh or existing state under `state_dir`.
    pub fn runtime(&self, state_dir: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<LocalRuntime> {
        Ok(LocalRuntime::open(
            self.spec.clone(),
            state_dir,
            &self.secrets,
            clock,
            intake_config(),
            state_dir,
        )?)
    }

    /// The App API client pointed at the Customer.io simulator.
    pub fn source(&self) -> anyhow::Result<AppApiClient> {
        Ok(AppApiClient::new(
            AppApiConfig {
                base_url: Some(self.cio.base_url().to_string()),
                region: Region::Us,
                ..AppApiConfig::default()
            },
            &self.secrets,
            reqwest::Client::new(),
        )?)
    }
}

pub async fn run(people: usize, out: &Path) -> anyhow::Result<()> {
    let mut progress = Progress {
        started: Instant::now(),
        step: 0,
        steps: 9,
    };
    progress.step("starting simulators");
    let env = start_demo_env(people, out).await?;
    progress.done("Customer.io, CleverTap, Meta, Google, webhook");
    run_steps(&env, out, progress).await
}

/// The demo's simulators (Meta's population leaves some people unmatched,
/// as Google's does), with `out`'s warehouse and state cleared.
pub async fn start_demo_env(people: usize, out: &Path) -> anyhow::Result<SimEnv> {
    let warehouse_dir = std::path::absolute(out.join("warehouse"))?;
    let state_dir = out.join("state");
    for dir in [&warehouse_dir, &state_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
    }
    let meta_config = MetaSimConfig {
        unmatched_share: DEMO_META_UNMATCHED_SHARE,
        ..MetaSimConfig::default()
    };
    SimEnv::start_with(people, &warehouse_dir, meta_config).await
}

/// The demo on simulators the caller started ([`start_demo_env`]) and
/// keeps, so a test can read afterwards what the platforms hold.
pub async fn run_on(env: &SimEnv, out: &Path) -> anyhow::Result<()> {
    let progress = Progress {
        started: Instant::now(),
        step: 1,
        steps: 9,
    };
    run_steps(env, out, progress).await
}

async fn run_steps(env: &SimEnv, out: &Path, mut progress: Progress) -> anyhow::Result<()> {
    let state_dir = out.join("state");
    let spec = env.spec.clone();

    progress.step("loading config/exports.example.yaml");
    progress.done(&format!(
        "{} exports, {} destinations, config {}",
        spec.exports.len(),
        spec.destinations.len(),
        &spec.config_hash[..12]
    ));

    let rt = Arc::new(env.runtime(&state_dir, Arc::new(SystemClock))?);
    rt.start_workers().await?;
    let server = dataout_sim::serve(rt.router()).await?;
    let source = env.source()?;

    progress.step("batch export: first sync of every segment");
    let mut lines = Vec::new();
    for (name, export) in &spec.exports {
        if !matches!(export.source, ExportSource::Segment { .. }) {
            continue;
        }
        let run = rt.run_batch(&source, name).await?;
        lines.push(format!(
            "{name}: {} members, +{} adds{}",
            run.stats.members,
            run.stats.adds,
            held(&run.status)
        ));
    }
    progress.done(&lines.join("; "));

    progress.step("delivering");
    rt.wait_idle(Duration::from_secs(60)).await?;
    progress.done("queues empty");

    progress.step("replaying events/customerio/demo-stream.jsonl through intake");
    let replay = replay_stream(&server.base_url, &env.cio.handle, &spec).await?;
    rt.wait_idle(Duration::from_secs(60)).await?;
    progress.done(&format!(
        "{} webhooks: {} accepted, {} duplicate, {} quarantined, {} refused",
        replay.sent, replay.accepted, replay.duplicate, replay.quarantined, replay.refused
    ));

    progress.step("batch export: second pass (diff against state)");
    let mut lines = Vec::new();
    for (name, export) in &spec.exports {
        if !matches!(export.source, ExportSource::Segment { .. }) {
            continue;
        }
        let run = rt.run_batch(&source, name).await?;
        lines.push(format!(
            "{name}: +{} -{} ~{} tier moves {}{}",
            run.stats.adds,
            run.stats.removes,
            run.stats.changed,
            run.stats.tier_moves,
            held(&run.status)
        ));
    }
    progress.done(&lines.join("; "));

    progress.step("delivering");
    rt.wait_idle(Duration::from_secs(60)).await?;
    progress.done("queues empty");

    settle_google(env, &rt).await?;

    progress.step("reconciling source, state and destinations");
    let report = rt.reconcile(Some(&source)).await?;
    progress.done(&format!("{} rows", report.rows.len()));

    let intake = rt
        .deps
        .state
        .get_counters(&CounterScope::intake())
        .await
        .unwrap_or_default();
    println!();
    println!(
        "Customer.io Data Out — demo report (config {})",
        &spec.config_hash[..12]
    );
    println!();
    print!("{}", crate::report::render(&report));
    println!();
    println!(
        "Intake: {} webhooks accepted, {} duplicates dropped, {} quarantined (see `dataout quarantine list --state-dir {}`).",
        intake.get(counter::WEBHOOKS_ACCEPTED).copied().unwrap_or(0),
        intake.get(counter::WEBHOOKS_DUPLICATE).copied().unwrap_or(0),
        intake.get(counter::WEBHOOKS_QUARANTINED).copied().unwrap_or(0),
        state_dir.display()
    );
    println!(
        "Simulators saw: CleverTap {} profiles, Meta {} requests, Google {} requests, analytics webhook {} deliveries; Customer.io App API {} requests.",
        env.clevertap.profiles().len(),
        env.meta.requests().len(),
        env.google.request_count(),
        env.hook.deliveries().len(),
        env.cio.handle.counters().total_requests()
    );
    println!(
        "Events: {} forwarded, {} kept back by the event taxonomy (a required property missing).",
        intake.get(EVENTS_FORWARDED).copied().unwrap_or(0),
        intake.get(EVENTS_INVALID).copied().unwrap_or(0),
    );
    println!("What the simulators hold of them (read from the simulators, not a platform API):");
    for line in platform_events(env, &spec) {
        println!("  {line}");
    }
    println!(
        "Columns: source = Customer.io segment count, state = our members, delivered = adds - removes accepted, accepted/rejected/unmatched = our per-person outcomes, p50/p95 = source event to destination acknowledgement."
    );
    println!(
        "Simulated population: the Meta simulator matches {:.0} % of identifiers to no Meta user (deterministically, by hashing each row's most stable key), and the Data Manager simulator {:.0} % of members to no Google user (by hashing each member's smallest identifier digest), so Meta's and Google's counts and match rates sit near {:.0} % and {:.0} % of what we delivered (one deterministic draw per person, so a few points either way); these figures are measured against simulators, not the platforms.",
        DEMO_META_UNMATCHED_SHARE * 100.0,
        DEMO_GOOGLE_UNMATCHED_SHARE * 100.0,
        (1.0 - DEMO_META_UNMATCHED_SHARE) * 100.0,
        (1.0 - DEMO_GOOGLE_UNMATCHED_SHARE) * 100.0
    );
    progress.step("qa: cart_abandoners' canaries through every destination");
    let verdicts = crate::qa::run(&rt, Some(&source), "cart_abandoners").await?;
    progress.done(&format!(
        "{} of {} destinations pass",
        verdicts.iter().filter(|v| v.pass).count(),
        verdicts.len()
    ));
    println!();
    print!("{}", crate::qa::render("cart_abandoners", &verdicts));
    println!(
        "Finished in {:.1}s.",
        progress.started.elapsed().as_secs_f64()
    );

    rt.shutdown().await;
    server.shutdown().await;
    Ok(())
}

/// Per events-export binding, what the simulator behind it holds: Meta's
/// distinct events (after its event_id dedup), Google's counted
/// conversions (after its order-id dedup), CleverTap's stored events.
fn platform_events(env: &SimEnv, spec: &ActivationSpec) -> Vec<String> {
    let mut lines = Vec::new();
    for export in spec.exports.values() {
        if !matches!(export.mode, ExportMode::Events | ExportMode::Conversions) {
            continue;
        }
        for binding in &export.destinations {
            let Some(dest) = spec.destination(&binding.destination) else {
                continue;
            };
            let held = match &dest.settings {
                DestinationSettings::MetaConversions { pixel_id, .. } => format!(
                    "Meta pixel {pixel_id}: {} distinct events ({} received)",
                    env.meta.capi_events(pixel_id).len(),
                    env.meta.capi_received(pixel_id)
                ),
                DestinationSettings::GoogleDataManager {
                    operating_account_id,
                    ..
                } => format!(
                    "Google conversion action {}: {} conversions counted ({} received)",
                    binding.audience,
                    env.google
                        .conversions(operating_account_id, &binding.audience)
                        .len(),
                    env.google
                        .received_events(operating_account_id, &binding.audience)
                        .len()
                ),
                DestinationSettings::Clevertap { .. } => format!(
                    "CleverTap: {} `{}` events",
                    env.clevertap
                        .events()
                        .iter()
                        .filter(|e| e.name == binding.audience)
                        .count(),
                    binding.audience
                ),
                DestinationSettings::Webhook { .. } => format!(
                    "analytics webhook: {} signed deliveries in all",
                    env.hook.deliveries().len()
                ),
                DestinationSettings::Warehouse { location } => {
                    let dir = Path::new(location)
                        .join("events")
                        .join(format!("export={}", export.name));
                    format!(
                        "warehouse `events` table: {} event objects under {}",
                        count_files(&dir),
                        dir.display()
                    )
                }
                // The loader binds these kinds to membership exports only.
                DestinationSettings::MetaAudience { .. }
                | DestinationSettings::GoogleCustomerMatch { .. } => continue,
            };
            lines.push(format!(
                "{:<18} {:<18} {held}",
                export.name, binding.destination
            ));
        }
    }
    lines
}

/// Files under `dir`, at any depth (0 when it does not exist).
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                count_files(&path)
            } else {
                1
            }
        })
        .sum()
}

/// Google applies requests asynchronously: wait until the simulator has
/// processed every request, then read their statuses (what the next
/// delivery run would do), so the report's Google rows are final.
pub async fn settle_google(env: &SimEnv, rt: &LocalRuntime) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.google.pending_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for dest in rt.destinations.values() {
        if dest.kind() == DestinationKind::GoogleDataManager {
            let summary = dest.settle().await?;
            tracing::info!(
                destination = dest.name(),
                ?summary,
                "Google request statuses read"
            );
        }
    }
    Ok(())
}

fn held(status: &RunStatus) -> String {
    match status {
        RunStatus::Held { reason } => format!(" (HELD: {reason})"),
        _ => String::new(),
    }
}

/// Intake settings of the demo: the secrets the replay signs with.
pub fn intake_config() -> IntakeConfig {
    dataout::settings::intake::defaults(Secret::new(SIGNING_SECRET), Secret::new(ACTION_SECRET))
}

/// The simulators' credentials under the names the spec gives.
fn demo_secrets(spec: &ActivationSpec, ct: &ClevertapSimConfig) -> MapSecrets {
    let mut secrets = MapSecrets::default().with("CIO_APP_API_KEY", CIO_KEY);
    for dest in spec.destinations.values() {
        secrets = match &dest.settings {
            DestinationSettings::Clevertap {
                account_id_env,
                passcode_env,
                ..
            } => secrets
                .with(account_id_env, &ct.account_id)
                .with(passcode_env, &ct.passcode),
            DestinationSettings::MetaAudience {
                access_token_env, ..
            } => secrets.with(access_token_env, dataout_sim::meta::DEFAULT_ACCESS_TOKEN),
            // The demo's Google is the Data Manager simulator (its service
            // account key is added once its token URL is known); the Ads
            // API kind gets the Ads simulator's developer token.
            DestinationSettings::GoogleCustomerMatch {
                developer_token_env,
                ..
            } => secrets.with(
                developer_token_env,
                dataout_sim::google::DEFAULT_DEVELOPER_TOKEN,
            ),
            DestinationSettings::GoogleDataManager { .. } => secrets,
            DestinationSettings::Webhook { secret_env, .. } => {
                secrets.with(secret_env, WEBHOOK_SECRET)
            }
            DestinationSettings::Warehouse { .. } => secrets,
            DestinationSettings::MetaConversions {
                access_token_env, ..
            } => secrets.with(access_token_env, dataout_sim::meta::DEFAULT_ACCESS_TOKEN),
        };
    }
    secrets
}

/// Meta audiences and Google user lists exist before anything is sent to them.
fn create_sim_audiences(spec: &ActivationSpec, meta: &MetaSim, google: &DataManagerSim) {
    for export in spec.exports.values() {
        for binding in &export.destinations {
            let Some(dest) = spec.destination(&binding.destination) else {
                continue;
            };
            let audiences =
                std::iter::once(&binding.audience).chain(binding.tier_audiences.values());
            for audience in audiences {
                let events = matches!(export.mode, ExportMode::Events | ExportMode::Conversions);
                match &dest.settings {
                    DestinationSettings::MetaAudience { .. } => meta.create_audience(audience),
                    DestinationSettings::MetaConversions { pixel_id, .. } => {
                        meta.create_pixel(pixel_id)
                    }
                    // On an events export the binding names a conversion action.
                    DestinationSettings::GoogleDataManager {
                        operating_account_id,
                        ..
                    } if events => google.create_conversion_action(operating_account_id, audience),
                    DestinationSettings::GoogleDataManager {
                        operating_account_id,
                        ..
                    } => google.create_user_list(operating_account_id, audience),
                    _ => {}
                }
            }
        }
    }
}

#[derive(Default)]
pub struct Replay {
    sent: usize,
    accepted: usize,
    duplicate: usize,
    quarantined: usize,
    refused: usize,
}

/// Post every line of the stream to the intake server, signed as
/// Customer.io would, with its relative times moved onto now. What the
/// stream says happened is mirrored into the simulated workspace so the
/// source agrees with the webhooks at reconciliation.
pub async fn replay_stream(
    base_url: &str,
    cio: &CioSimHandle,
    spec: &ActivationSpec,
) -> anyhow::Result<Replay> {
    let http = reqwest::Client::new();
    let now_s = chrono::Utc::now().timestamp();
    let base = now_s - 600;
    let segments: BTreeMap<&str, u64> = spec
        .exports
        .values()
        .filter_map(|e| match e.source {
            ExportSource::Segment { segment_id } => Some((e.name.as_str(), segment_id)),
            _ => None,
        })
        .collect();
    let mut replay = Replay::default();
    for (n, line) in DEMO_STREAM.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut entry: Value = serde_json::from_str(line)
            .with_context(|| format!("demo-stream.jsonl line {}", n + 1))?;
        let route = entry["route"].as_str().unwrap_or("reporting").to_string();
        let body = &mut entry["body"];
        for key in ["timestamp", "sent_at"] {
            if let Some(rel) = body.get(key).and_then(Value::as_i64) {
                body[key] = Value::from(base + rel);
            }
        }
        mirror_into_workspace(cio, body, &segments, spec);
        let bytes = serde_json::to_vec(body)?;
        let request = if route == "actions" {
            http.post(format!("{base_url}/webhooks/actions"))
                .header("x-dataout-token", ACTION_SECRET)
        } else {
            http.post(format!("{base_url}/webhooks/customerio"))
                .header("X-CIO-Timestamp", now_s.to_string())
                .header(
                    "X-CIO-Signature",
                    sign(SIGNING_SECRET.as_bytes(), now_s, &bytes),
                )
        };
        let resp = request
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await?;
        replay.sent += 1;
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        match (status, answer["status"].as_str()) {
            (401, _) => replay.refused += 1,
            (_, Some("duplicate")) => replay.duplicate += 1,
            (_, Some("quarantined")) => replay.quarantined += 1,
            (200..=299, _) => replay.accepted += 1,
            _ => replay.refused += 1,
        }
    }
    Ok(replay)
}

fn mirror_into_workspace(
    cio: &CioSimHandle,
    body: &Value,
    segments: &BTreeMap<&str, u64>,
    spec: &ActivationSpec,
) {
    let person = &body["person"];
    let index = cio.update(|ws| {
        person["id"]
            .as_str()
            .and_then(|id| ws.index_of_id(id))
            .or_else(|| {
                person["cio_id"]
                    .as_str()
                    .and_then(|c| ws.index_of_cio_id(c))
            })
    });
    let Some(index) = index else { return };
    match body["action"].as_str() {
        Some("enter") | Some("exit") => {
            let Some(segment) = body["export"].as_str().and_then(|e| segments.get(e)) else {
                return;
            };
            if body["action"] == "enter" {
                cio.add_member(*segment, index);
            } else {
                cio.remove_member(*segment, index);
            }
        }
        Some("event") => {
            let Some(name) = body["event"]["name"].as_str() else {
                return;
            };
            for export in spec.exports_exiting_on(name) {
                if let Some(segment) = segments.get(export.name.as_str()) {
                    cio.remove_member(*segment, index);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn demo_and_replay_keep_event_ids_and_claims_as_long_as_the_lambda() {
        // Customer.io retries for up to 7 days (docs/customerio.md): event
        // ids are kept 8 days; a claim holds 30 s, past one 8 s request.
        for cfg in [super::intake_config(), crate::ops::replay_intake()] {
            assert_eq!(cfg.dedup_ttl, Duration::from_secs(691_200));
            assert_eq!(cfg.in_progress_ttl, Duration::from_secs(30));
        }
    }
}
