//! Customer.io: the source. Reporting webhooks and campaign webhook actions
//! come in; the App API is read in batch.

pub mod actions;
pub mod app_api;
pub mod budget;
pub mod webhook;
