//! The Lambda error shape of the reconcile function.

use lambda_runtime::Diagnostic;

use crate::handler::ReconcileError;

impl From<ReconcileError> for Diagnostic {
    fn from(e: ReconcileError) -> Self {
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
