//! The domain: pure logic, no IO.

pub mod attributes;
pub mod config;
pub mod events;
pub mod identity;
pub mod membership;
pub mod model;
pub mod spec;
