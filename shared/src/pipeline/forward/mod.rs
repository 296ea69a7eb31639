//! Event forwarding: an event (a webhook action's `event`, or a reporting
//! metric such as `email.opened`) goes to every events or conversions
//! export that names it, shaped by the spec's event taxonomy. An event the
//! taxonomy rejects (a required property missing, a value that is not a
//! number) is never forwarded: it is counted as `invalid` at each of the
//! export's destinations and under the intake's `events_invalid`, and its
//! reason is logged (never its values).

use serde_json::{Map, Value};
use tracing::warn;

use super::changes::{enqueue, mapped_attributes, new_job, ApplySummary};
use super::{Deps, PipelineError};
use crate::domain::events::shape_event;
use crate::domain::model::{
    counter, Attributes, CounterScope, DeliveryOp, EventPayload, Identifiers, Millis, OpKind,
};
use crate::domain::spec::{ExportMode, ExportSource};

/// Intake counter: events the taxonomy kept from being forwarded.
pub const EVENTS_INVALID: &str = "events_invalid";
/// Intake counter: events forwarded (once per export that takes them).
pub const EVENTS_FORWARDED: &str = "events_forwarded";

/// One event as intake received it.
pub struct IncomingEvent<'a> {
    pub event_id: &'a str,
    pub name: &'a str,
    pub data: &'a Map<String, Value>,
    pub person: &'a Identifiers,
    /// The person's attributes sent with the event (webhook actions).
    pub attributes: &'a Attributes,
    pub source_ts: Millis,
}

/// Enqueue `event` for every export that forwards it.
pub async fn forward_event(
    deps: &Deps,
    event: &IncomingEvent<'_>,
    now: Millis,
) -> Result<ApplySummary, PipelineError> {
    let Some(key) = event.person.person_key() else {
        return Ok(ApplySummary::default());
    };
    let mut jobs = Vec::new();
    let mut summary = ApplySummary::default();
    for export in deps.spec.exports.values() {
        let forwards = matches!(export.mode, ExportMode::Events | ExportMode::Conversions)
            && matches!(&export.source, ExportSource::Events { names } if names.iter().any(|n| n == event.name));
        if !forwards {
            continue;
        }
        // The loader refuses an events export naming an undeclared event.
        let Some(taxonomy) = deps.spec.events.get(event.name) else {
            continue;
        };
        let shaped = match shape_event(taxonomy, event.data) {
            Ok(shaped) => shaped,
            Err(rejected) => {
                warn!(export = %export.name, event = %event.name, event_id = %event.event_id,
                      person = %key.log_safe(), reason = %rejected.reason, "event not forwarded");
                for binding in &export.destinations {
                    deps.state
                        .add_counters(
                            &CounterScope::delivery(&export.name, &binding.destination),
                            &[(counter::INVALID, 1)],
                        )
                        .await?;
                }
                deps.state
                    .add_counters(
                        &CounterScope::intake(),
                        &[
                            (EVENTS_INVALID, 1),
                            (
                                &format!("{EVENTS_INVALID}:{}:{}", export.name, event.name),
                                1,
                            ),
                        ],
                    )
                    .await?;
                summary.events_invalid += 1;
                continue;
            }
        };
        summary.events_forwarded += 1;
        let attributes = mapped_attributes(export, event.attributes);
        for binding in &export.destinations {
            let op = DeliveryOp {
                op: OpKind::Event,
                person_key: key.clone(),
                ids: event.person.clone(),
                audience: binding.audience.clone(),
                tier: None,
                attributes: attributes.clone(),
                event: Some(EventPayload {
                    event_id: event.event_id.to_string(),
                    name: event.name.to_string(),
                    data: shaped.data.clone(),
                    value: shaped.value,
                    currency: shaped.currency.clone(),
                    order_id: shaped.order_id.clone(),
                }),
                source_ts: event.source_ts,
                intake_ts: now,
            };
            jobs.push(new_job(
                deps,
                export,
                &binding.destination,
                &format!("event:{}", event.event_id),
                None,
                vec![op],
            ));
        }
    }
    if summary.events_forwarded > 0 {
        deps.state
            .add_counters(
                &CounterScope::intake(),
                &[(EVENTS_FORWARDED, summary.events_forwarded as i64)],
            )
            .await?;
    }
    summary.merge(enqueue(deps, jobs).await?);
    Ok(summary)
}

#[cfg(test)]
mod tests;
