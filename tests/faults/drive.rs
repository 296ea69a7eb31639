//! What drives the pipeline in the scenario: the delivery workers (the
//! deliver Lambda's loop), the webhook senders (Customer.io's retries), the
//! batch rounds (the scheduler's invocations) and the segment churn.

use super::*;

/// One delivery worker: the deliver Lambda's loop, until `stop`.
pub(super) async fn worker(pipeline: Arc<Pipeline>, name: &'static str, stop: Arc<AtomicBool>) {
    let Ok(destination) = pipeline.destination(name) else {
        return;
    };
    let opts = delivery_options(name);
    while !stop.load(Ordering::SeqCst) {
        let jobs = match pipeline.deps.queue.receive(name, 10).await {
            Ok(j) => j,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if jobs.is_empty() {
            // Asynchronous work (Google request statuses) is settled by
            // delivery runs even when nothing new arrives.
            let _ = destination.settle().await;
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let (dispositions, _) = deliver_jobs(&pipeline.deps, &destination, &jobs, &opts).await;
        for (job, d) in jobs.iter().zip(dispositions) {
            // A failed ack or delay leaves the message to come back by itself.
            let _ = match d {
                Disposition::Done => pipeline.deps.queue.ack(name, &job.receipt).await,
                Disposition::RetryAfter(delay) => {
                    pipeline
                        .deps
                        .queue
                        .retry_later(name, &job.receipt, delay)
                        .await
                }
            };
        }
    }
}

/// Send one webhook as Customer.io does: again after any 5xx or transport
/// failure, until it is answered 2xx. Returns the attempts it took.
pub(super) async fn send_webhook(deps: &Deps, cfg: &IntakeConfig, w: &Webhook) -> Result<u32> {
    let id = realtime_id(w.person);
    let mut person = json!({"id": id});
    if let Some(email) = realtime_email(w.person) {
        person["email"] = json!(email);
    }
    let body = json!({
        "action": if w.enter { "enter" } else { "exit" },
        "export": w.export,
        "person": person,
        "sent_at": w.sent_at_ms,
    });
    let body = serde_json::to_vec(&body)?;
    let headers: BTreeMap<String, String> =
        [("x-dataout-token".to_string(), ACTION_SECRET.to_string())].into();
    for attempt in 1..=50u32 {
        let resp = handle(deps, cfg, Route::Actions, &headers, &body).await;
        match resp.status {
            200..=299 => return Ok(attempt),
            500..=599 => tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await,
            other => bail!("webhook refused with {other}: {resp:?}"),
        }
    }
    bail!("webhook never accepted after 50 attempts")
}

pub(super) fn intake_config() -> IntakeConfig {
    IntakeConfig {
        reporting: SignatureConfig {
            secret: Secret::new("unused-reporting-secret"),
            tolerance: Duration::from_secs(300),
        },
        actions: ActionAuthConfig {
            header_name: "x-dataout-token".into(),
            secret: Secret::new(ACTION_SECRET),
            mode: ActionAuthMode::SharedSecret,
            tolerance: Duration::from_secs(300),
            basic: None,
        },
        dedup_ttl: Duration::from_secs(3600),
        in_progress_ttl: Duration::from_secs(2),
    }
}

/// Run every batch export to the end of its run, continuing after
/// failures as the scheduler's next invocation would.
pub(super) async fn batch_round(pipeline: &Pipeline, source: &AppApiClient) -> Result<u64> {
    let mut changes = 0;
    let opts = ExportOptions::default();
    for (export, _) in BATCH {
        let started = Instant::now();
        loop {
            match run_export(&pipeline.deps, source, export, &opts).await {
                Ok(run) if run.status == RunStatus::Running => continue,
                Ok(run) if run.status == RunStatus::Finished => {
                    changes += run.stats.adds + run.stats.removes;
                    break;
                }
                Ok(run) => bail!("run {} of {export} ended {:?}", run.run_id, run.status),
                Err(e) if e.is_retryable() && started.elapsed() < Duration::from_secs(600) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return Err(e).context(format!("batch run of {export}")),
            }
        }
    }
    Ok(changes)
}

pub(super) fn churn(sims: &Sims, scale: &Scale, round: usize) {
    let mut rng = StdRng::seed_from_u64(scale.seed + 100 + round as u64);
    for (_, segment) in BATCH {
        let members: BTreeSet<usize> = sims
            .cio
            .handle
            .snapshot()
            .members(segment)
            .into_iter()
            .collect();
        for i in 0..scale.batch_people {
            let draw: f64 = rng.random();
            if members.contains(&i) && draw < scale.churn {
                sims.cio.handle.remove_member(segment, i);
            } else if !members.contains(&i) && draw < scale.churn * 0.6 {
                sims.cio.handle.add_member(segment, i);
            }
        }
    }
}
