//! The Lambda error shape of the batch-export function.

use lambda_runtime::Diagnostic;

use crate::handler::ExportError;

impl From<ExportError> for Diagnostic {
    fn from(e: ExportError) -> Self {
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
