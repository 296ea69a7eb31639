//! The pipeline, written against the ports only.

pub mod deliver;
pub mod export;
pub mod intake;
pub mod reconcile;
