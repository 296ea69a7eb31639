//! Conversions between the Lambda SQS event / response and the handler's
//! plain types.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::Diagnostic;

use crate::handler::{DeliverError, QueueRecord};

/// The records of an SQS event. A record without a message id keeps an
/// empty one: reported back, it makes Lambda retry the whole batch, which
/// is the safe reading of a malformed event.
pub fn records(event: SqsEvent) -> Vec<QueueRecord> {
    event
        .records
        .into_iter()
        .map(|m| QueueRecord {
            receive_count: m
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            message_id: m.message_id.unwrap_or_default(),
            receipt_handle: m.receipt_handle.unwrap_or_default(),
            body: m.body.unwrap_or_default(),
        })
        .collect()
}

pub fn batch_response(failed_message_ids: &[String]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in failed_message_ids {
        response.add_failure(id.clone());
    }
    response
}

impl From<DeliverError> for Diagnostic {
    fn from(e: DeliverError) -> Self {
        Diagnostic {
            error_type: if e.is_retryable() {
                "Retryable".into()
            } else {
                "NonRetryable".into()
            },
            error_message: e.to_string(),
        }
    }
}
