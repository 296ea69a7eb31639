//! Conformance suites: one per port, run unchanged against every adapter.

pub mod queue;
pub mod state;
