//! Destination limits honoured in-process: at most `max_concurrency` sends
//! in flight and at most `max_requests_per_second` requests per second to
//! one destination, across every delivery worker of the process.
//!
//! Concurrency is a tokio [`Semaphore`]; the rate is a `governor` GCRA
//! limiter (burst = the rate rounded down, at least 1). Both live in a
//! process-wide registry keyed by the destination's name and limits, so
//! every worker of the local runtime, every test worker and every
//! invocation a Lambda process serves take their permits from the same
//! pool.
//!
//! What counts as a request: a send to CleverTap, a webhook or the
//! warehouse is one request; a send to an ad platform is one request per
//! audience and direction among its ops (Meta and Google take adds and
//! removes for each audience in separate calls), so the rate limiter
//! takes that many cells. A send keeps one concurrency permit while its
//! requests go out one after the other.
//!
//! On Lambda each deliver instance is one process: the limits bind per
//! instance, and the event source's `MaximumConcurrency` caps the number of
//! instances. See the README, "Destination limits".

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::destinations::DestinationError;
use crate::domain::model::{DeliveryOp, OpKind};
use crate::domain::spec::{DestinationKind, DestinationSpec};

/// The limits of one destination in this process.
pub struct DestinationLimiter {
    name: String,
    max_concurrency: usize,
    concurrency: Arc<Semaphore>,
    rate: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl std::fmt::Debug for DestinationLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationLimiter")
            .field("name", &self.name)
            .field("max_concurrency", &self.max_concurrency)
            .field("rate_limited", &self.rate.is_some())
            .finish()
    }
}

/// A send's right to go out; dropping it frees the concurrency slot.
#[derive(Debug)]
pub struct SendPermit {
    _permit: OwnedSemaphorePermit,
}

impl DestinationLimiter {
    /// `max_concurrency` sends at once (at least 1); `max_requests_per_second`
    /// when given and positive.
    pub fn new(name: &str, max_concurrency: u32, max_requests_per_second: Option<f64>) -> Self {
        let max_concurrency = usize::try_from(max_concurrency.max(1)).unwrap_or(1);
        let rate = max_requests_per_second
            .filter(|r| r.is_finite() && *r > 0.0)
            .and_then(|r| {
                let burst = NonZeroU32::new((r.floor() as u32).max(1))?;
                let period = Duration::from_secs_f64(1.0 / r);
                let quota = Quota::with_period(period)?.allow_burst(burst);
                Some((RateLimiter::direct(quota), burst))
            });
        DestinationLimiter {
            name: name.to_string(),
            max_concurrency,
            concurrency: Arc::new(Semaphore::new(max_concurrency)),
            rate,
        }
    }

    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// Sends holding a permit right now.
    pub fn in_flight(&self) -> usize {
        self.max_concurrency
            .saturating_sub(self.concurrency.available_permits())
    }

    /// Wait for a concurrency slot, then for `requests` cells of the rate.
    pub async fn acquire(&self, requests: u32) -> Result<SendPermit, DestinationError> {
        let permit = self
            .concurrency
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DestinationError::Retryable {
                destination: self.name.clone(),
                message: format!("concurrency limiter closed: {e}"),
                retry_after: None,
            })?;
        if let Some((rate, burst)) = &self.rate {
            // More cells than the burst can never be granted at once: take
            // them a burst at a time.
            let mut left = requests.max(1);
            while left > 0 {
                let take = left.min(burst.get());
                if let Some(n) = NonZeroU32::new(take) {
                    if rate.until_n_ready(n).await.is_err() {
                        rate.until_ready().await;
                    }
                }
                left -= take;
            }
        }
        Ok(SendPermit { _permit: permit })
    }
}

type Registry = Mutex<HashMap<(String, u32, Option<u64>), Arc<DestinationLimiter>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The process-wide limiter of a destination with these limits.
pub fn limiter_for(
    name: &str,
    max_concurrency: u32,
    max_requests_per_second: Option<f64>,
) -> Arc<DestinationLimiter> {
    let key = (
        name.to_string(),
        max_concurrency,
        max_requests_per_second.map(f64::to_bits),
    );
    let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key)
        .or_insert_with(|| {
            Arc::new(DestinationLimiter::new(
                name,
                max_concurrency,
                max_requests_per_second,
            ))
        })
        .clone()
}

/// The process-wide limiter of a configured destination.
pub fn limiter_for_spec(spec: &DestinationSpec) -> Arc<DestinationLimiter> {
    limiter_for(
        &spec.name,
        spec.max_concurrency,
        spec.max_requests_per_second,
    )
}

/// Requests one send of `ops` makes: one per audience and direction on the
/// ad platforms, one otherwise.
pub fn requests_for(kind: DestinationKind, ops: &[DeliveryOp]) -> u32 {
    if !kind.is_ad_platform() {
        return 1;
    }
    let groups: BTreeSet<(&str, bool)> = ops
        .iter()
        .map(|op| (op.audience.as_str(), op.op == OpKind::Remove))
        .collect();
    u32::try_from(groups.len()).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_never_exceed_max_concurrency() {
        let limiter = Arc::new(DestinationLimiter::new("t", 2, None));
        let a = limiter.acquire(1).await;
        let b = limiter.acquire(1).await;
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(limiter.in_flight(), 2);
        let waiting = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire(1).await.is_ok() })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a third permit was granted");
        drop(a);
        assert!(waiting.await.unwrap_or(false));
    }

    #[tokio::test]
    async fn rate_budget_is_spent_by_a_send() {
        // One request per 10 s: the first goes at once, the second must wait.
        let limiter = DestinationLimiter::new("t", 10, Some(0.1));
        assert!(limiter.acquire(1).await.is_ok());
        let spent = limiter
            .rate
            .as_ref()
            .is_some_and(|(r, _)| r.check().is_err());
        assert!(spent, "a second request within 10 s was allowed");
        let unlimited = DestinationLimiter::new("t", 10, None);
        assert!(unlimited.rate.is_none());
    }

    #[test]
    fn same_destination_and_limits_share_one_limiter() {
        let a = limiter_for("shared-test-dest", 3, Some(5.0));
        let b = limiter_for("shared-test-dest", 3, Some(5.0));
        let c = limiter_for("shared-test-dest", 4, Some(5.0));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn ad_platform_sends_count_one_request_per_audience_and_direction() {
        use crate::domain::model::PersonKey;
        let op = |audience: &str, kind: OpKind| DeliveryOp {
            op: kind,
            person_key: PersonKey("id:p".into()),
            ids: Default::default(),
            audience: audience.into(),
            tier: None,
            attributes: Default::default(),
            event: None,
            source_ts: 0,
            intake_ts: 0,
        };
        let ops = vec![
            op("a", OpKind::Add),
            op("a", OpKind::Remove),
            op("a", OpKind::Add),
            op("b", OpKind::Add),
        ];
        assert_eq!(requests_for(DestinationKind::MetaAudience, &ops), 3);
        assert_eq!(requests_for(DestinationKind::Clevertap, &ops), 1);
        assert_eq!(requests_for(DestinationKind::MetaAudience, &[]), 1);
    }

    /// Workers of one process delivering to the CleverTap simulator (which
    /// holds every request 150 ms and counts its peak of concurrent
    /// requests) never have more than `max_concurrency` requests in flight.
    #[tokio::test]
    async fn workers_never_exceed_max_concurrency_at_the_clevertap_simulator() {
        use crate::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
        use crate::adapters::embedded::state::EmbeddedStateStore;
        use crate::domain::config::parse_spec;
        use crate::domain::model::{DeliveryJob, Identifiers, PersonKey};
        use crate::pipeline::deliver::{drain_once, DeliveryOptions};
        use crate::pipeline::Deps;
        use crate::ports::{JobQueue, MapSecrets, SystemClock};
        use dataout_sim::clevertap::{self as sim, ClevertapSimConfig};

        let (server, ct) = sim::start(ClevertapSimConfig {
            response_delay: Some(Duration::from_millis(150)),
            ..ClevertapSimConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // A destination name of its own: the registry is process-wide.
        let yaml = format!(
            r#"version: 1
destinations:
  ct_limit_test:
    kind: clevertap
    region: us1
    base_url: {}
    account_id_env: CT_ACCOUNT
    passcode_env: CT_PASSCODE
    max_concurrency: 3
    max_requests_per_second: 1000
exports:
  carts:
    source: {{segment: 1}}
    mode: membership
    cadence: {{every: 15m}}
    identity: id
    destinations:
      ct_limit_test: {{audience: cio_carts}}
"#,
            server.base_url
        );
        let spec = parse_spec(&yaml, "limits-test.yaml").unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let clock: Arc<dyn crate::ports::Clock> = Arc::new(SystemClock);
        let state = Arc::new(
            EmbeddedStateStore::open(&dir.path().join("state.redb"))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let queue = Arc::new(
            EmbeddedQueue::open(
                &dir.path().join("queue.redb"),
                QueueSettings {
                    visibility_timeout: Duration::from_secs(60),
                    max_receives: 5,
                },
                clock.clone(),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let secrets = MapSecrets::default()
            .with("CT_ACCOUNT", "TEST-ACC-1")
            .with("CT_PASSCODE", "TEST-PASSCODE");
        let dest_spec = spec
            .destination("ct_limit_test")
            .cloned()
            .unwrap_or_else(|| panic!("destination missing"));
        let destination = crate::destinations::build(
            &dest_spec,
            &secrets,
            reqwest::Client::new(),
            None,
            clock.clone(),
            state.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let deps = Deps {
            spec: Arc::new(spec),
            state,
            queue: queue.clone(),
            clock,
        };
        let jobs: Vec<DeliveryJob> = (0..12)
            .map(|i| DeliveryJob {
                replace: false,
                replace_from: None,
                repair: false,
                job_id: format!("limit-job-{i}"),
                export: "carts".into(),
                destination: "ct_limit_test".into(),
                run_id: None,
                created_at: 0,
                config_hash: deps.spec.config_hash.clone(),
                attempt: 0,
                ops: vec![DeliveryOp {
                    op: OpKind::Add,
                    person_key: PersonKey(format!("id:p{i}")),
                    ids: Identifiers {
                        id: Some(format!("p{i}")),
                        ..Identifiers::default()
                    },
                    audience: "cio_carts".into(),
                    tier: None,
                    attributes: Default::default(),
                    event: None,
                    source_ts: 0,
                    intake_ts: 0,
                }],
            })
            .collect();
        queue
            .send("ct_limit_test", &jobs)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Eight workers, each taking one job at a time.
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let deps = deps.clone();
                let destination = destination.clone();
                tokio::spawn(async move {
                    let opts = DeliveryOptions::default();
                    loop {
                        match drain_once(&deps, &destination, &opts, 1).await {
                            Ok((0, _)) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
        let counters = ct.counters();
        assert_eq!(ct.profiles().len(), 12, "every job delivered: {counters:?}");
        assert_eq!(counters.throttled, 0);
        assert!(
            counters.peak_concurrent <= 3,
            "{} requests in flight at once, max_concurrency is 3",
            counters.peak_concurrent
        );
        assert!(
            counters.peak_concurrent >= 2,
            "the workers never overlapped: {counters:?}"
        );
    }
}
