//! Lambda entry point of `deliver`: wiring only. One deployment per
//! destination queue (`DATAOUT_DESTINATION`); the SQS event source mapping
//! must enable `ReportBatchItemFailures`.

use std::sync::Arc;

use anyhow::anyhow;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use dataout::destinations::Destination;
use dataout::pipeline::deliver::DeliveryOptions;
use dataout::pipeline::Deps;
use dataout::settings::fail_cold_start;
use dataout::telemetry::{self, LogFormat};
use deliver::config::DeliverSettings;
use deliver::event::{batch_response, records};
use deliver::handler::{alert_lines, handle_batch, metrics_line, DeliverError};
use lambda_runtime::{service_fn, LambdaEvent};
use tracing::warn;

struct Function {
    deps: Deps,
    destination: Arc<dyn Destination>,
    opts: DeliveryOptions,
    settings: DeliverSettings,
}

async fn invoke(
    f: &Function,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, DeliverError> {
    let records = records(event.payload);
    let result = handle_batch(&f.deps, &f.destination, &f.opts, &records).await;
    let outcome = match &result {
        Ok(o) => o,
        Err(DeliverError::AllFailed { outcome, .. }) => outcome,
    };
    // EMF goes to stdout, where CloudWatch turns it into metrics.
    println!(
        "{}",
        metrics_line(
            &f.settings.metrics_namespace,
            &f.settings.destination,
            outcome,
            f.deps.clock.now_ms()
        )
    );
    for line in alert_lines(
        &f.settings.metrics_namespace,
        &f.settings.destination,
        &f.destination.alerts(),
        f.deps.clock.now_ms(),
    ) {
        println!("{line}");
    }
    result.map(|o| batch_response(&o.failed_message_ids))
}

async fn cold_start() -> anyhow::Result<Function> {
    let settings = DeliverSettings::from_env()?;
    let wiring = dataout::aws::wire().await?;
    let destination = wiring.destination(&settings.destination)?;
    let spec_attempts = wiring
        .deps
        .spec
        .destination(&settings.destination)
        .map(|d| d.max_attempts)
        .unwrap_or(dataout::domain::config::DEFAULT_MAX_ATTEMPTS);
    let max_attempts = settings.max_attempts(spec_attempts);
    if max_attempts != spec_attempts {
        warn!(
            destination = %settings.destination,
            spec_max_attempts = spec_attempts,
            queue_max_receive_count = max_attempts,
            "the queue's maxReceiveCount differs from the spec's max_attempts; the queue's count applies"
        );
    }
    Ok(Function {
        deps: wiring.deps,
        destination,
        opts: DeliveryOptions {
            max_attempts,
            ..DeliveryOptions::default()
        },
        settings,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init(LogFormat::Json, "info");
    let function = match cold_start().await {
        Ok(f) => f,
        Err(e) => fail_cold_start("deliver", &e),
    };
    let function = &function;
    lambda_runtime::run(service_fn(move |event| invoke(function, event)))
        .await
        .map_err(|e| anyhow!(e))
}
