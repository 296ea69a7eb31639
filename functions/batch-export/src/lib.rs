//! The batch-export function: on each EventBridge Scheduler tick, run (or
//! continue) the batch export named in the schedule's input.
//!
//! A run that cannot finish before the invocation's deadline checkpoints
//! and returns `running`; the next tick of the same schedule continues it
//! (the pipeline resumes the export's latest running run), so a long
//! export spans ticks without ever restarting or double-sending. The
//! schedule's rate must be at least the function timeout, so two
//! invocations of one export never overlap.
//!
//! `main.rs` wires the AWS adapters; `handler` works on the ports only.

pub mod config;
pub mod event;
pub mod handler;
