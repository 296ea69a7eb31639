//! The reconcile function: once a day, for every export and destination,
//! compare Customer.io's count, our state and what was delivered; store the
//! report and print one CloudWatch EMF line per row (drift, match rate,
//! alarm) plus a summary line the template's drift alarm watches.
//!
//! `main.rs` wires the AWS adapters; `handler` works on the ports only.

pub mod config;
pub mod event;
pub mod handler;
