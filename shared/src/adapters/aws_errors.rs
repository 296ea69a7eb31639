//! One classification and retry policy of AWS SDK errors, shared by the AWS
//! adapters (DynamoDB, SQS, S3, the App API budget): which failures are
//! worth retrying, how one is described, and the in-adapter retry loop.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// The SDK crates share these types; DynamoDB's re-export serves them all.
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use backon::{ExponentialBuilder, Retryable};

/// Error codes that mean "slow down or try again", whatever the service.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "AWS.SimpleQueueService.ServiceUnavailable",
    "KmsThrottled",
];

/// Whether an SDK error is worth retrying: throttling, 5xx, timeouts and IO
/// failures.
pub(crate) fn sdk_error_is_transient<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(ctx) => {
            ctx.raw().status().as_u16() >= 500
                || ctx.raw().status().as_u16() == 429
                || err.code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        _ => false,
    }
}

/// One line describing an SDK error: code and message when the service sent
/// them, else the whole cause chain.
pub(crate) fn describe_sdk_error<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(err).to_string(),
    }
}

/// An SDK error sorted into retryable or permanent, with its description
/// and the error itself as source: each adapter maps it onto its own type.
pub(crate) struct SdkFailure {
    pub retryable: bool,
    pub message: String,
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl SdkFailure {
    /// `what` names the operation, first in the message.
    pub(crate) fn of<E>(what: &str, err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        SdkFailure {
            retryable: sdk_error_is_transient(&err),
            message: format!("{what}: {}", describe_sdk_error(&err)),
            source: Box::new(err),
        }
    }
}

/// Backoff of in-adapter retries of transient failures.
pub(crate) fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(3)
        .with_jitter()
}

/// Run one AWS request with in-adapter retries of transient failures,
/// counting every attempt in `requests` (it sizes the bill). `port` names
/// the caller in the retry log.
pub(crate) async fn retry_counted<T, E, F, Fut>(
    requests: &AtomicU64,
    port: &'static str,
    what: &'static str,
    is_retryable: fn(&E) -> bool,
    mut f: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    (move || {
        requests.fetch_add(1, Ordering::Relaxed);
        f()
    })
    .retry(backoff())
    .sleep(tokio::time::sleep)
    .when(is_retryable)
    .notify(|e, delay| {
        tracing::warn!(
            operation = what,
            error = %e,
            delay_ms = delay.as_millis() as u64,
            "{} call failed; retrying",
            port
        );
    })
    .await
}
