//! What drives the pipeline in the scenario: the delivery workers (the
//! deliver Lambda's loop), the webhook senders (Customer.io's retries), the
//! batch rounds (the scheduler's invocations) and the segment churn.

use super::*;

/// The orders (`ord_…`) a worker is delivering right now: if it is killed
/// mid-delivery, a platform may hold what it sent without the pipeline
/// knowing.
pub(super) type InFlight = Arc<Mutex<Vec<String>>>;

fn orders_in(jobs: &[dataout::ports::ReceivedJob]) -> Vec<String> {
    jobs.iter()
        .flat_map(|j| &j.job.ops)
        .filter_map(|op| op.event.as_ref()?.order_id.clone())
        .collect()
}

/// One delivery worker: the deliver Lambda's loop, until `stop`.
pub(super) async fn worker(
    pipeline: Arc<Pipeline>,
    name: &'static str,
    stop: Arc<AtomicBool>,
    in_flight: InFlight,
) {
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
        let carried = orders_in(&jobs);
        in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone_from(&carried);
        let started = Instant::now();
        let (dispositions, _) = deliver_jobs(&pipeline.deps, &destination, &jobs, &opts).await;
        in_flight.lock().unwrap_or_else(|e| e.into_inner()).clear();
        // An attempt that outlived its claim may have been taken over by
        // another worker that sent the same jobs. (The deliver Lambda's
        // timeout is far below its claim; this loop has no timeout.)
        if started.elapsed() >= VISIBILITY {
            pipeline.outlived_claim.fetch_add(1, Ordering::Relaxed);
            pipeline
                .killed_carrying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(carried.into_iter().map(|o| (name, o)));
        }
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
    let body = match w.order {
        Some(n) => json!({
            "action": "event",
            "id": format!("order_placed:{}", order_id(n)),
            "person": person,
            "event": {
                "name": "order_placed",
                "id": order_id(n),
                "data": {"order_id": order_id(n), "total": order_total(n), "currency": "EUR"},
            },
            "sent_at": w.sent_at_ms,
        }),
        None => json!({
            "action": if w.enter { "enter" } else { "exit" },
            "export": w.export,
            "person": person,
            "sent_at": w.sent_at_ms,
        }),
    };
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

/// Between rounds: people join and leave the segments, some lifetime
/// values change (moving people across the `vip` tier), and some emails
/// change (an identifier ad platforms match on).
pub(super) fn churn(sims: &Sims, scale: &Scale, round: usize) {
    let mut rng = StdRng::seed_from_u64(scale.seed + 100 + round as u64);
    for i in 0..scale.batch_people {
        if rng.random::<f64>() < 0.05 {
            let value = rng.random_range(0..1_000u32).to_string();
            sims.cio.handle.set_attribute(i, "lifetime_value", value);
        }
        if rng.random::<f64>() < 0.03 {
            if let Some(email) = changed_email(i, round + 1) {
                sims.cio.handle.set_attribute(i, "email", email);
            }
        }
    }
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
