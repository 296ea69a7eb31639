//! Customer.io App API simulator (the batch source), per API-CONTRACTS.md §1c.
//!
//! Enforces what a client can get wrong: the Bearer key (401), the rate limit
//! (token bucket, 429), the membership page limit (≤ 30000, else 400), the
//! bulk attribute batch size (≤ 100 ids, else 400), unknown segments (404),
//! and answers with the documented shapes: opaque base64 paging tokens, `""`
//! in `ids` for people without an `id`, attribute values as strings, unknown
//! people left out of bulk answers. Responses carry a few extra fields, as the
//! real API may, so clients must ignore unknown keys.
//!
//! Public API:
//! * [`demo_workspace`] / [`demo_workspace_at`]: a deterministic shop with a
//!   few thousand people and segments 101 (cart abandoners), 102 (recent
//!   purchasers), 103 (lapsed VIPs), 104 (replenishment window, last order
//!   25–40 days ago), 105 (top 10 % by lifetime value), 106 (checkout
//!   starters) and 107 (browse intent: 2+ product views, no recent order).
//! * [`start`] with a [`CioSimConfig`] gives a [`CioSim`]: the running server
//!   plus a [`CioSimHandle`] to move people between segments, change
//!   attributes, inject failures and read [`SimCounters`] between runs.

mod demo;
pub mod reporting;
mod serve;
mod workspace;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use crate::wire::WireExchange;
use crate::wire::WireLog;
pub use demo::{demo_workspace, demo_workspace_at};
pub use serve::{router, Refusal};
pub use workspace::{CioWorkspace, SimPerson, SimSegment};

use crate::RunningSim;

/// Segment ids of the demo workspace.
pub const SEGMENT_CART_ABANDONERS: u64 = 101;
pub const SEGMENT_RECENT_PURCHASERS: u64 = 102;
pub const SEGMENT_LAPSED_VIPS: u64 = 103;
pub const SEGMENT_REPLENISHMENT: u64 = 104;
pub const SEGMENT_VIP_TOP_LTV: u64 = 105;
pub const SEGMENT_CHECKOUT_STARTERS: u64 = 106;
pub const SEGMENT_BROWSE_INTENT: u64 = 107;

/// The App API's documented maximum membership page size.
pub const MAX_PAGE_LIMIT: u32 = 30_000;
/// The documented maximum of ids in one bulk attributes request.
pub const MAX_BULK_IDS: usize = 100;

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// Endpoint names used as counter keys.
pub mod endpoint {
    pub const LIST_SEGMENTS: &str = "list_segments";
    pub const GET_SEGMENT: &str = "get_segment";
    pub const CUSTOMER_COUNT: &str = "customer_count";
    pub const MEMBERSHIP: &str = "membership";
    pub const BULK_ATTRIBUTES: &str = "bulk_attributes";
    pub const CUSTOMER_ATTRIBUTES: &str = "customer_attributes";
}

// ---------------------------------------------------------------- config

/// How the simulator behaves. Build with [`CioSimConfig::new`] and the
/// chained setters.
#[derive(Clone, Debug)]
pub struct CioSimConfig {
    /// The App API key expected as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// Sustained requests per second; 0 disables the limit. Default 10.
    pub rate_limit: u32,
    /// Token bucket size; `None` = `rate_limit` (one second of burst).
    pub burst: Option<u32>,
    /// Largest accepted membership `limit`. Default 30000.
    pub max_page_limit: u32,
    /// Page size when the request gives none (not documented; a guess).
    pub default_page_limit: u32,
    /// `Retry-After` seconds sent with 429s; `None` sends no header.
    pub retry_after_secs: Option<u64>,
    /// Accept `id_type=email` (workspace setting; 400 when off).
    pub email_lookup: bool,
    /// End paging with an extra empty page (the last full page still carries
    /// a token) instead of an empty `next` on the last page with members.
    pub trailing_empty_page: bool,
    /// Failures to serve first: `(count, status)`.
    pub fail_first: Vec<(u32, u16)>,
    pub workspace: CioWorkspace,
}

impl CioSimConfig {
    pub fn new(api_key: impl Into<String>, workspace: CioWorkspace) -> Self {
        Self {
            api_key: api_key.into(),
            rate_limit: 10,
            burst: None,
            max_page_limit: MAX_PAGE_LIMIT,
            default_page_limit: 1_000,
            retry_after_secs: None,
            email_lookup: true,
            trailing_empty_page: false,
            fail_first: Vec::new(),
            workspace,
        }
    }
    pub fn rate_limit(mut self, per_second: u32) -> Self {
        self.rate_limit = per_second;
        self
    }
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }
    pub fn email_lookup(mut self, enabled: bool) -> Self {
        self.email_lookup = enabled;
        self
    }
    pub fn trailing_empty_page(mut self, enabled: bool) -> Self {
        self.trailing_empty_page = enabled;
        self
    }
    /// Answer the next `n` requests with `status` (429, 500, 503 …).
    pub fn fail_next(mut self, n: u32, status: u16) -> Self {
        self.fail_first.push((n, status));
        self
    }
}

// ---------------------------------------------------------------- counters

/// What the simulator served, for assertions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Requests per endpoint (see [`endpoint`]), whatever the answer.
    pub requests: BTreeMap<&'static str, u64>,
    /// 429s from the token bucket (the client went too fast).
    pub rate_limited: u64,
    /// Every 429 served, injected ones included.
    pub status_429: u64,
    /// Failures served from `fail_next`.
    pub injected: u64,
    pub unauthorized: u64,
    /// `ids` count of every accepted bulk attributes request.
    pub bulk_batch_sizes: Vec<usize>,
    /// `limit` of every accepted membership request.
    pub page_limits: Vec<u32>,
}

impl SimCounters {
    pub fn requests_to(&self, endpoint: &str) -> u64 {
        self.requests.get(endpoint).copied().unwrap_or(0)
    }
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

// ---------------------------------------------------------------- running sim

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Inner {
    config: CioSimConfig,
    workspace: Mutex<CioWorkspace>,
    counters: Mutex<SimCounters>,
    bucket: Mutex<Bucket>,
    failures: Mutex<VecDeque<u16>>,
    /// When each request arrived (for [`CioSimHandle::peak_per_second`]).
    arrivals: Mutex<Vec<Instant>>,
    /// Every exchange while recording ([`CioSimHandle::record_wire`]).
    wire: WireLog,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Mutates the running simulator's workspace and reads its counters.
#[derive(Clone)]
pub struct CioSimHandle {
    inner: Arc<Inner>,
}

impl CioSimHandle {
    /// Change the workspace in place; returns what the closure returns.
    pub fn update<R>(&self, f: impl FnOnce(&mut CioWorkspace) -> R) -> R {
        f(&mut lock(&self.inner.workspace))
    }
    /// A copy of the workspace as it is now.
    pub fn snapshot(&self) -> CioWorkspace {
        lock(&self.inner.workspace).clone()
    }
    /// Put person `index` into `segment` (created empty if unknown).
    /// Returns false if they were already a member or do not exist.
    pub fn add_member(&self, segment: u64, index: usize) -> bool {
        self.update(|ws| {
            index < ws.people.len()
                && ws
                    .segments
                    .entry(segment)
                    .or_default()
                    .members
                    .insert(index)
        })
    }
    /// Take person `index` out of `segment`; false if they were not in it.
    pub fn remove_member(&self, segment: u64, index: usize) -> bool {
        self.update(|ws| {
            ws.segments
                .get_mut(&segment)
                .is_some_and(|s| s.members.remove(&index))
        })
    }
    /// Set (or add) one attribute of person `index`; false if no such person.
    pub fn set_attribute(&self, index: usize, key: &str, value: impl Into<String>) -> bool {
        let value = value.into();
        self.update(|ws| match ws.people.get_mut(index) {
            Some(p) => {
                if key == "email" {
                    p.email = Some(value.clone());
                }
                p.attributes.insert(key.to_string(), value);
                true
            }
            None => false,
        })
    }
    /// Add a person; returns their index.
    pub fn add_person(&self, person: SimPerson) -> usize {
        self.update(|ws| {
            ws.people.push(person);
            ws.people.len() - 1
        })
    }
    /// Answer the next `n` requests with `status`.
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut q = lock(&self.inner.failures);
        q.extend(std::iter::repeat_n(status, n as usize));
    }
    /// Start (or stop) keeping every exchange as it crossed the wire.
    /// Turning it on while it is on keeps what was kept.
    pub fn record_wire(&self, on: bool) {
        if !(on && self.inner.wire.is_recording()) {
            self.inner.wire.record(on);
        }
    }
    /// The exchanges recorded so far.
    pub fn wire(&self) -> Vec<WireExchange> {
        self.inner.wire.exchanges()
    }
    pub fn counters(&self) -> SimCounters {
        lock(&self.inner.counters).clone()
    }
    pub fn reset_counters(&self) {
        *lock(&self.inner.counters) = SimCounters::default();
        lock(&self.inner.arrivals).clear();
    }

    /// The most requests that arrived within any one second (a sliding
    /// window `[t, t + 1s)` over every arrival, whatever the answer): what
    /// a client's pace looks like from the server.
    pub fn peak_per_second(&self) -> usize {
        peak_within(&lock(&self.inner.arrivals), Duration::from_secs(1))
    }
}

/// The largest number of instants within any half-open window of `width`.
fn peak_within(instants: &[Instant], width: Duration) -> usize {
    let mut sorted = instants.to_vec();
    sorted.sort_unstable();
    let mut peak = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= width {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}

/// The running simulator.
pub struct CioSim {
    pub server: RunningSim,
    pub handle: CioSimHandle,
}

impl CioSim {
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Start the simulator on a free loopback port.
pub async fn start(config: CioSimConfig) -> anyhow::Result<CioSim> {
    let handle = CioSimHandle {
        inner: Arc::new(Inner {
            workspace: Mutex::new(config.workspace.clone()),
            counters: Mutex::new(SimCounters::default()),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(config.burst.unwrap_or(config.rate_limit).max(1)),
                last: Instant::now(),
            }),
            arrivals: Mutex::new(Vec::new()),
            wire: WireLog::default(),
            failures: Mutex::new(
                config
                    .fail_first
                    .iter()
                    .flat_map(|(n, s)| std::iter::repeat_n(*s, *n as usize))
                    .collect(),
            ),
            config,
        }),
    };
    let server = crate::serve(router(handle.clone())).await?;
    Ok(CioSim { server, handle })
}
