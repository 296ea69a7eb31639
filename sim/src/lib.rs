//! Local simulators of Customer.io's App API and of each destination API.
//! Each enforces the documented contract of `API-CONTRACTS.md` (auth, batch
//! limits, hashing, error and rate-limit answers) so a wrong request fails
//! the way the real API would, and records what it accepted for assertions.

pub mod clevertap;
pub mod customerio;
pub mod google;
pub mod meta;
pub mod webhook;
