//! Integration tests across crates.
//!
//! Shared by the AWS test binaries: the SDK set up for moto's server on
//! loopback, and names unique per case.

pub mod contract_support;
pub mod faults;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// Where moto's server listens; `scripts/moto-server start` prints it.
pub const ENDPOINT_VAR: &str = "DATAOUT_TEST_AWS_ENDPOINT";

/// The moto endpoint. Panics with the way to start it: these tests never skip.
pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_VAR) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => panic!(
            "{ENDPOINT_VAR} is not set: these tests need moto's server on loopback. \
             Start it with scripts/moto-server start (and export the line it prints), \
             or run ./scripts/test"
        ),
    }
}

/// An SDK config aimed at moto, with static test credentials so no real
/// account or profile is ever read.
pub async fn test_sdk_config() -> SdkConfig {
    sdk_config_at(&endpoint()).await
}

/// The same configuration at another endpoint (a fault proxy in front of moto).
pub async fn sdk_config_at(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "dataout-tests",
        ))
        .load()
        .await
}

/// A name no other case (or earlier run on the same server) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!("{prefix}-{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}
