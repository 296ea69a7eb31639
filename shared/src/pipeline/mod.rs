//! The pipeline, written against the ports only, so the Lambda functions and
//! the local CLI run the very same code.

use std::sync::Arc;

use thiserror::Error;

use crate::domain::spec::ActivationSpec;
use crate::ports::{Clock, JobQueue, QueueError, SourceError, StateError, StateStore};

pub mod changes;
pub mod deliver;
pub mod export;
pub mod forward;
pub mod intake;
pub mod limits;
pub mod reconcile;
pub mod rollback;

/// The adapters every stage needs.
#[derive(Clone)]
pub struct Deps {
    pub spec: Arc<ActivationSpec>,
    pub state: Arc<dyn StateStore>,
    pub queue: Arc<dyn JobQueue>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The request names something the activation spec does not have.
    #[error("{0}")]
    Config(String),
}

impl PipelineError {
    /// Whether trying the same work again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::State(e) => e.is_retryable(),
            PipelineError::Queue(e) => e.is_retryable(),
            PipelineError::Source(e) => e.is_retryable(),
            PipelineError::Config(_) => false,
        }
    }
}
