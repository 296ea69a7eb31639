//! The common crate of the Customer.io Data Out bundle.
//!
//! * `domain`: the model, the activation spec and its validation, identity
//!   normalisation and hashing, membership rules (tiers, exits, suppression),
//!   guard rails.
//! * `ports`: the traits at every IO seam; `adapters`: their AWS and embedded
//!   implementations; `conformance`: the suites both must pass.
//! * `customerio`: the source (webhooks in, App API out).
//! * `destinations`: one module per destination API.
//! * `pipeline`: intake, batch export, delivery, reconcile, written against
//!   the ports only, so the Lambda functions and the local CLI share them.
//! * `report`: the HTML report page (charts inline), read through the ports.

pub mod adapters;
pub mod aws;
pub mod conformance;
pub mod customerio;
pub mod destinations;
pub mod domain;
pub mod local;
pub mod pipeline;
pub mod ports;
pub mod report;
pub mod settings;
pub mod telemetry;
