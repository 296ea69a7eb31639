//! The local runtime: the whole pipeline on one machine, on the embedded
//! adapters. `dataout serve` and `dataout demo` run it; tests drive it.
//!
//! It serves intake over HTTP (the same handler the Lambda calls), runs one
//! delivery worker per destination queue and, when a source is given, the
//! batch schedules of the activation spec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use crate::adapters::embedded::state::EmbeddedStateStore;
use crate::adapters::local_fs::LocalDirStore;
use crate::destinations::{self, Destination, DestinationError};
use crate::domain::model::{ReconcileReport, RunRecord};
use crate::domain::spec::{ActivationSpec, DestinationSettings};
use crate::pipeline::deliver::{drain_once, DeliveryOptions};
use crate::pipeline::export::{run_export, ExportOptions};
use crate::pipeline::intake::{
    handle, too_large, IntakeConfig, IntakeResponse, Route, MAX_BODY_BYTES,
};
use crate::pipeline::reconcile::{reconcile, ReconcileOptions};
use crate::pipeline::Deps;
use crate::pipeline::PipelineError;
use crate::ports::{
    Clock, JobQueue, ObjectStore, QueueError, Secrets, SegmentSource, StateError, StateStore,
};

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    Setup(String),
}

/// The pipeline wired on embedded adapters.
pub struct LocalRuntime {
    pub deps: Deps,
    pub queue: Arc<EmbeddedQueue>,
    pub store: Arc<EmbeddedStateStore>,
    pub destinations: BTreeMap<String, Arc<dyn Destination>>,
    pub intake: IntakeConfig,
    pub delivery: DeliveryOptions,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Build every destination of the spec. Warehouse locations are local
/// directories, resolved against `base_dir` when relative.
pub fn build_destinations(
    spec: &ActivationSpec,
    secrets: &dyn Secrets,
    clock: Arc<dyn Clock>,
    base_dir: &Path,
    state: Arc<dyn StateStore>,
) -> Result<BTreeMap<String, Arc<dyn Destination>>, RuntimeError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| RuntimeError::Setup(format!("http client: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, dest) in &spec.destinations {
        let store: Option<Arc<dyn ObjectStore>> = match &dest.settings {
            DestinationSettings::Warehouse { location } => {
                if location.starts_with("s3://") {
                    return Err(RuntimeError::Setup(format!(
                        "destination `{name}`: {location} is an S3 location; the local runtime writes to a directory"
                    )));
                }
                let path = PathBuf::from(location);
                let path = if path.is_absolute() {
                    path
                } else {
                    base_dir.join(path)
                };
                Some(Arc::new(LocalDirStore::new(path)))
            }
            _ => None,
        };
        let built = destinations::build(
            dest,
            secrets,
            http.clone(),
            store,
            clock.clone(),
            state.clone(),
        )?;
        out.insert(name.clone(), built);
    }
    Ok(out)
}

impl LocalRuntime {
    /// Open (or reopen) the state under `state_dir` and wire everything.
    pub fn open(
        spec: ActivationSpec,
        state_dir: &Path,
        secrets: &dyn Secrets,
        clock: Arc<dyn Clock>,
        intake: IntakeConfig,
        output_base: &Path,
    ) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| RuntimeError::Setup(format!("state dir {}: {e}", state_dir.display())))?;
        let state = Arc::new(EmbeddedStateStore::open(&state_dir.join("state.redb"))?);
        let queue = Arc::new(EmbeddedQueue::open(
            &state_dir.join("queue.redb"),
            QueueSettings {
                visibility_timeout: Duration::from_secs(60),
                max_receives: 5,
            },
            clock.clone(),
        )?);
        for (name, dest) in &spec.destinations {
            queue.set_queue_settings(
                name,
                QueueSettings {
                    visibility_timeout: Duration::from_secs(60),
                    max_receives: dest.max_attempts.max(1),
                },
            );
        }
        let destinations =
            build_destinations(&spec, secrets, clock.clone(), output_base, state.clone())?;
        let (stop, _) = watch::channel(false);
        Ok(LocalRuntime {
            deps: Deps {
                spec: Arc::new(spec),
                state: state.clone(),
                queue: queue.clone(),
                clock,
            },
            queue,
            store: state,
            destinations,
            intake,
            // One worker per destination here, and a request never takes
            // longer than the HTTP timeout: a claim older than that is dead.
            delivery: DeliveryOptions {
                in_progress_ttl: Duration::from_secs(45),
                ..DeliveryOptions::default()
            },
            stop,
            tasks: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// One delivery worker per destination queue. Jobs a killed process
    /// had received come back at once.
    pub async fn start_workers(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let released = self.queue.release_in_flight().await?;
        let claims = self.store.release_in_progress_claims().await?;
        if released + claims > 0 {
            info!(
                jobs = released,
                claims, "work left half-done by a previous process is picked up again"
            );
        }
        for (name, dest) in &self.destinations {
            let rt = self.clone();
            let dest = dest.clone();
            let name = name.clone();
            let mut stop = self.stop.subscribe();
            let max_attempts = self
                .deps
                .spec
                .destination(&name)
                .map(|d| d.max_attempts)
                .unwrap_or(5);
            let task = tokio::spawn(async move {
                let opts = DeliveryOptions {
                    max_attempts,
                    ..rt.delivery.clone()
                };
                loop {
                    if *stop.borrow() {
                        break;
                    }
                    match drain_once(&rt.deps, &dest, &opts, 10).await {
                        Ok((0, _)) => {
                            tokio::select! {
                                _ = rt.queue.wait_for_jobs(&name, Duration::from_millis(500)) => {}
                                _ = stop.changed() => break,
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(destination = %name, error = %e, "delivery worker: queue error");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            });
            self.push_task(task);
        }
        Ok(())
    }

    /// Run each segment export's batch on its cadence.
    pub fn start_schedules(self: &Arc<Self>, source: Arc<dyn SegmentSource>) {
        for export in self.deps.spec.exports.values() {
            let (Some(minutes), crate::domain::spec::ExportSource::Segment { .. }) =
                (export.cadence.every_minutes, &export.source)
            else {
                continue;
            };
            let rt = self.clone();
            let source = source.clone();
            let name = export.name.clone();
            let mut stop = self.stop.subscribe();
            let task = tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_secs(u64::from(minutes.max(1)) * 60));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.changed() => break,
                    }
                    match rt.run_batch(source.as_ref(), &name).await {
                        Ok(run) => {
                            info!(export = %name, run_id = %run.run_id, status = ?run.status, "scheduled run")
                        }
                        Err(e) => warn!(export = %name, error = %e, "scheduled run failed"),
                    }
                }
            });
            self.push_task(task);
        }
    }

    fn push_task(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }

    /// A batch run of one export, continued until it finishes or is held.
    pub async fn run_batch(
        &self,
        source: &dyn SegmentSource,
        export: &str,
    ) -> Result<RunRecord, RuntimeError> {
        let opts = ExportOptions::default();
        loop {
            let run = run_export(&self.deps, source, export, &opts).await?;
            if run.status != crate::domain::model::RunStatus::Running {
                return Ok(run);
            }
        }
    }

    /// Wait until every destination queue is empty (nothing visible or in
    /// flight), or the timeout passes. Returns whether it drained.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<bool, RuntimeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut busy = false;
            for name in self.destinations.keys() {
                let d = self.queue.depth(name).await?;
                if d.visible + d.in_flight > 0 {
                    busy = true;
                }
            }
            if !busy {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn reconcile(
        &self,
        source: Option<&dyn SegmentSource>,
    ) -> Result<ReconcileReport, RuntimeError> {
        Ok(reconcile(
            &self.deps,
            source,
            &self.destinations,
            &ReconcileOptions::default(),
        )
        .await?)
    }

    /// The intake routes and a health check.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/webhooks/customerio", post(reporting))
            .route("/webhooks/actions", post(actions))
            .route("/healthz", get(healthz))
            // Stop reading a body one byte past the limit: a 10 MB body is
            // never buffered whole.
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 1))
            .with_state(self.clone())
    }

    /// Stop workers and schedules and wait for them.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for t in tasks {
            let _ = t.await;
        }
    }

    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.deps.state
    }

    pub fn job_queue(&self) -> &Arc<dyn JobQueue> {
        &self.deps.queue
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_string()))
        })
        .collect()
}

async fn intake_route(
    rt: Arc<LocalRuntime>,
    route: Route,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    let resp = match body {
        Ok(body) => handle(&rt.deps, &rt.intake, route, &header_map(&headers), &body).await,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let len = headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(MAX_BODY_BYTES + 1);
            too_large(route, len)
        }
        Err(e) => IntakeResponse::new(
            400,
            serde_json::json!({"status": "bad_request", "reason": format!("could not read the body: {e}")}),
        ),
    };
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(resp.body))
}

async fn reporting(
    State(rt): State<Arc<LocalRuntime>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    intake_route(rt, Route::Reporting, headers, body).await
}

async fn actions(
    State(rt): State<Arc<LocalRuntime>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    intake_route(rt, Route::Actions, headers, body).await
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, Json(serde_json::json!({"status": "ok"})))
}
