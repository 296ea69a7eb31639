//! The deliver function: one deployment per destination queue. SQS hands it
//! up to ten job messages; it delivers them in one pass (filling the
//! destination's largest batch across jobs) and answers with a partial
//! batch response, so only the jobs that must be retried come back.
//!
//! `main.rs` wires the AWS adapters; `handler` works on the ports only;
//! `event` converts the Lambda event and response.

pub mod config;
pub mod event;
pub mod handler;
