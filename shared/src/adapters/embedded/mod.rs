//! Embedded adapters: real product code for the local run (one machine, no
//! cloud account), persistent across restarts.

pub mod queue;
pub mod state;
