//! The webhook-intake function: Customer.io's reporting webhooks
//! (`POST /webhooks/customerio`) and campaign webhook actions
//! (`POST /webhooks/actions`) through a Lambda Function URL or an API
//! Gateway HTTP API. Signatures are checked in code (the URL itself is
//! public); the answer comes well inside Customer.io's 4 s wait, and the
//! delivery work goes to the destination queues.
//!
//! `main.rs` wires the AWS adapters; `handler` works on the ports only;
//! `event` converts the Lambda HTTP event and response.

pub mod config;
pub mod event;
pub mod handler;
