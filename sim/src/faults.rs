//! A fault-injection reverse proxy on loopback, to put in front of any
//! simulator (or any HTTP server).
//!
//! ## Why
//! A simulator kinder than the platform hides bugs: each simulator answers
//! its documented errors, but real traffic also crosses load balancers,
//! gateways and overloaded backends that fail in ways no API contract
//! lists. The nastiest is the request that *was applied* while the client
//! saw a failure (a 500 or a timeout after the backend wrote): a client
//! that retries it must be idempotent, and one that does not must not
//! report a loss that did not happen. This proxy injects those
//! load-balancer-style faults in front of any simulator, with no change to
//! the simulator, so every destination's client meets them in tests.
//!
//! ## Faults
//! Per request, one uniform draw `u` in `[0, 1)` from a seeded RNG (the
//! same seed and request order give the same faults) picks, in this order:
//! * `u < server_error` → 503 `injected 503`, not forwarded;
//! * then `server_error_after_apply` → forwarded, the upstream answer
//!   discarded, 500 `injected 500 after the upstream applied the request`;
//! * then `rate_limited` → 429 with `Retry-After: <retry_after_secs>`, not
//!   forwarded;
//! * then `timeout` → forwarded (so it is applied), then held
//!   `timeout_hold` before a 504: the client is expected to time out first;
//! * otherwise forwarded transparently: same method, path, query, headers
//!   (less hop-by-hop ones, `Host` and `Content-Length`) and body; the
//!   upstream status, headers and body come back. An unreachable upstream
//!   is a 502.
//!
//! A request the proxy decided to forward reaches the upstream even if the
//! client gives up first. [`RunningSim::shutdown`] waits for requests still
//! held by the timeout fault; drop the [`RunningSim`] instead, or keep
//! `timeout_hold` short, to stop at once.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use dataout_sim::faults::{self, FaultPlan};
//! let (sim, _state) = dataout_sim::clevertap::start(Default::default()).await?;
//! let plan = FaultPlan { server_error_after_apply: 0.1, seed: 7, ..Default::default() };
//! let (proxy, faults) = faults::start(&sim.base_url, plan).await?;
//! // Point the client at `proxy.base_url`; at the end:
//! faults.set_plan(FaultPlan::default());
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::RunningSim;

/// Largest request body the proxy accepts (bigger than any simulator's).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Which faults to inject, as shares of requests (each in `0..=1`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultPlan {
    /// 503 without forwarding.
    pub server_error: f64,
    /// Forwarded (applied upstream), then answered 500.
    pub server_error_after_apply: f64,
    /// 429 with `Retry-After: retry_after_secs`, without forwarding.
    pub rate_limited: f64,
    pub retry_after_secs: u64,
    /// Forwarded (applied upstream), then held `timeout_hold` before a 504.
    pub timeout: f64,
    pub timeout_hold: Duration,
    /// Seed of the RNG drawing the faults.
    pub seed: u64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self {
            server_error: 0.0,
            server_error_after_apply: 0.0,
            rate_limited: 0.0,
            retry_after_secs: 1,
            timeout: 0.0,
            timeout_hold: Duration::from_secs(30),
            seed: 0,
        }
    }
}

/// How many requests met each fault. The five outcomes add up to `total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Forwarded transparently (no fault).
    pub forwarded: u64,
    pub server_errors: u64,
    pub server_errors_after_apply: u64,
    pub rate_limited: u64,
    pub timeouts: u64,
    /// Every request the proxy received.
    pub total: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    ServerError,
    ServerErrorAfterApply,
    RateLimited,
    Timeout,
}

struct Inner {
    plan: FaultPlan,
    rng: StdRng,
    counts: FaultCounts,
    /// Bodies of forwarded requests whose client could not know the
    /// upstream applied them (see [`FaultProxyState::ambiguous`]).
    ambiguous: Vec<Bytes>,
}

/// Shared state of a running fault proxy.
pub struct FaultProxyState {
    /// Upstream base URL without a trailing `/` (may carry a path prefix).
    upstream: String,
    client: reqwest::Client,
    inner: Mutex<Inner>,
}

impl FaultProxyState {
    /// A proxy state forwarding to `upstream_base_url` (`http://host:port`,
    /// optionally followed by a path prefix).
    pub fn new(upstream_base_url: &str, plan: FaultPlan) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(upstream_base_url)?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "upstream must be an http(s) URL: {upstream_base_url}"
        );
        anyhow::ensure!(
            parsed.query().is_none() && parsed.fragment().is_none(),
            "upstream base URL must carry no query or fragment: {upstream_base_url}"
        );
        let client = forwarding_client()?;
        Ok(Self {
            upstream: upstream_base_url.trim_end_matches('/').to_string(),
            client,
            inner: Mutex::new(Inner {
                plan,
                rng: StdRng::seed_from_u64(plan.seed),
                counts: FaultCounts::default(),
                ambiguous: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the state from the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace the plan (e.g. [`FaultPlan::default`] to turn faults off at
    /// the end of a test) and reseed the RNG with its seed. Counts are kept.
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut inner = self.lock();
        inner.plan = plan;
        inner.rng = StdRng::seed_from_u64(plan.seed);
    }

    pub fn plan(&self) -> FaultPlan {
        self.lock().plan
    }

    pub fn counts(&self) -> FaultCounts {
        self.lock().counts
    }

    /// Bodies of the requests the upstream applied while the client got no
    /// success: answered 500 or held past its timeout after forwarding, or
    /// the client hung up before its answer. A platform that keeps every
    /// record (events without an id) may hold these twice once the client
    /// sends them again; nothing else may.
    pub fn ambiguous(&self) -> Vec<Bytes> {
        self.lock().ambiguous.clone()
    }

    /// The upstream base URL requests are forwarded to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Draw this request's fault and count it.
    fn decide(&self) -> (Fault, FaultPlan) {
        let mut inner = self.lock();
        let plan = inner.plan;
        let u: f64 = inner.rng.random();
        let shares = [
            (plan.server_error, Fault::ServerError),
            (plan.server_error_after_apply, Fault::ServerErrorAfterApply),
            (plan.rate_limited, Fault::RateLimited),
            (plan.timeout, Fault::Timeout),
        ];
        let mut edge = 0.0;
        let mut fault = Fault::None;
        for (share, candidate) in shares {
            edge += share;
            if u < edge {
                fault = candidate;
                break;
            }
        }
        let counts = &mut inner.counts;
        counts.total += 1;
        match fault {
            Fault::None => counts.forwarded += 1,
            Fault::ServerError => counts.server_errors += 1,
            Fault::ServerErrorAfterApply => counts.server_errors_after_apply += 1,
            Fault::RateLimited => counts.rate_limited += 1,
            Fault::Timeout => counts.timeouts += 1,
        }
        (fault, plan)
    }
}

/// Namespace of the fault proxy; see the module documentation.
pub struct FaultProxy;

impl FaultProxy {
    /// Same as [`start`].
    pub async fn start(
        upstream_base_url: &str,
        plan: FaultPlan,
    ) -> anyhow::Result<(RunningSim, Arc<FaultProxyState>)> {
        start(upstream_base_url, plan).await
    }
}

/// The router, for embedding the proxy in a bigger app: every method and
/// path goes through the faults.
pub fn router(state: Arc<FaultProxyState>) -> Router {
    Router::new()
        .fallback(proxy)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serve a fault proxy in front of `upstream_base_url` on 127.0.0.1 at a
/// free port; `RunningSim::base_url` is the proxy's base URL.
pub async fn start(
    upstream_base_url: &str,
    plan: FaultPlan,
) -> anyhow::Result<(RunningSim, Arc<FaultProxyState>)> {
    let state = Arc::new(FaultProxyState::new(upstream_base_url, plan)?);
    let running = crate::serve(router(state.clone())).await?;
    Ok((running, state))
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn proxy(
    State(state): State<Arc<FaultProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fault, plan) = state.decide();
    match fault {
        Fault::ServerError => {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "injected 503".into());
        }
        Fault::RateLimited => {
            let retry_after = plan.retry_after_secs;
            let mut resp = plain(
                StatusCode::TOO_MANY_REQUESTS,
                format!("injected 429: rate limited, retry after {retry_after} s"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return resp;
        }
        Fault::None | Fault::ServerErrorAfterApply | Fault::Timeout => {}
    }

    // Until the success goes out, the request counts as applied without the
    // client knowing (the guard records it if this future is dropped, e.g.
    // by a client hanging up).
    let mut pending = Unanswered {
        state: state.clone(),
        body: Some(body.clone()),
    };
    // Forward on a task of its own: once decided, the request reaches the
    // upstream even if the client hangs up meanwhile.
    let forwarding = tokio::spawn(forward(state.clone(), method, uri, headers, body));
    let upstream = match forwarding.await {
        Ok(answer) => answer,
        Err(e) => Err(format!("forwarding task failed: {e}")),
    };
    match fault {
        Fault::ServerErrorAfterApply => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected 500 after the upstream applied the request".into(),
        ),
        Fault::Timeout => {
            tokio::time::sleep(plan.timeout_hold).await;
            plain(
                StatusCode::GATEWAY_TIMEOUT,
                "injected 504 after the upstream applied the request".into(),
            )
        }
        _ => {
            if upstream.as_ref().is_ok_and(|r| r.status().is_success()) {
                pending.body = None;
            }
            upstream.unwrap_or_else(|e| plain(StatusCode::BAD_GATEWAY, e))
        }
    }
}

/// A forwarded request not yet answered with a success (see
/// [`FaultProxyState::ambiguous`]).
struct Unanswered {
    state: Arc<FaultProxyState>,
    body: Option<Bytes>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(body) = self.body.take() {
            self.state.lock().ambiguous.push(body);
        }
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded, plus the names
/// the `Connection` header lists.
fn hop_by_hop(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
    .into_iter()
    .map(HeaderName::from_static)
    .collect();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        names.extend(
            value
                .split(',')
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok()),
        );
    }
    names
}

fn strip(mut headers: HeaderMap, extra: &[HeaderName]) -> HeaderMap {
    for name in hop_by_hop(&headers).iter().chain(extra) {
        headers.remove(name);
    }
    headers
}

async fn forward(
    state: Arc<FaultProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    forward_to(&state.client, &state.upstream, method, uri, headers, body).await
}

/// A client for [`forward_to`]: no redirects, no proxy, bodies untouched.
pub(crate) fn forwarding_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .build()
}

/// Forward one request to `upstream` (a base URL without a trailing `/`)
/// and bring its answer back, less hop-by-hop headers.
pub(crate) async fn forward_to(
    client: &reqwest::Client,
    upstream: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{upstream}{path}");
    let had_body = !body.is_empty() || headers.contains_key(header::CONTENT_LENGTH);
    let headers = strip(headers, &[header::HOST, header::CONTENT_LENGTH]);
    let mut request = client.request(method, &url).headers(headers);
    if had_body {
        request = request.body(body);
    }
    let answer = request
        .send()
        .await
        .map_err(|e| format!("upstream error: {e}"))?;
    let status = answer.status();
    let headers = strip(
        answer.headers().clone(),
        &[header::CONTENT_LENGTH, header::TRANSFER_ENCODING],
    );
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| format!("upstream error reading the body: {e}"))?;
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::any;

    /// What the upstream saw of one request.
    #[derive(Clone, Debug, Default)]
    struct Hit {
        method: String,
        path_and_query: String,
        custom_header: Option<String>,
        body: Vec<u8>,
    }

    type Hits = Arc<Mutex<Vec<Hit>>>;

    /// An upstream under `/prefix` recording every request and echoing its
    /// body with status 201 and an `x-upstream` header.
    async fn upstream() -> anyhow::Result<(RunningSim, Hits)> {
        async fn echo(
            State(hits): State<Hits>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            hits.lock().unwrap_or_else(|p| p.into_inner()).push(Hit {
                method: method.to_string(),
                path_and_query: uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                custom_header: headers
                    .get("x-custom")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                body: body.to_vec(),
            });
            (
                StatusCode::CREATED,
                [
                    ("x-upstream", "yes"),
                    ("content-type", "application/octet-stream"),
                ],
                body,
            )
                .into_response()
        }
        let hits = Hits::default();
        let app = Router::new()
            .route("/prefix/{*rest}", any(echo))
            .with_state(hits.clone());
        Ok((crate::serve(app).await?, hits))
    }

    fn hit_count(hits: &Hits) -> usize {
        hits.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn proxied(
        plan: FaultPlan,
    ) -> anyhow::Result<(RunningSim, RunningSim, Arc<FaultProxyState>, Hits)> {
        let (up, hits) = upstream().await?;
        let (proxy, state) = start(&format!("{}/prefix/", up.base_url), plan).await?;
        Ok((up, proxy, state, hits))
    }

    #[tokio::test]
    async fn no_faults_forwards_everything_transparently() -> anyhow::Result<()> {
        let (_up, proxy, state, hits) = proxied(FaultPlan::default()).await?;
        let client = reqwest::Client::new();
        let resp = client
            .put(format!("{}/a/b?x=1&y=two", proxy.base_url))
            .header("x-custom", "kept")
            .header("connection", "close")
            .body("payload bytes")
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 201);
        assert_eq!(resp.headers()["x-upstream"], "yes");
        assert_eq!(resp.headers()["content-type"], "application/octet-stream");
        assert_eq!(resp.bytes().await?.as_ref(), b"payload bytes");

        let get = client.get(format!("{}/c", proxy.base_url)).send().await?;
        assert_eq!(get.status().as_u16(), 201);

        let seen = hits.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].method, "PUT");
        assert_eq!(seen[0].path_and_query, "/prefix/a/b?x=1&y=two");
        assert_eq!(seen[0].custom_header.as_deref(), Some("kept"));
        assert_eq!(seen[0].body, b"payload bytes");
        assert_eq!(seen[1].method, "GET");
        assert_eq!(seen[1].path_and_query, "/prefix/c");
        assert!(seen[1].body.is_empty());
        assert_eq!(
            state.counts(),
            FaultCounts {
                forwarded: 2,
                total: 2,
                ..Default::default()
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn only_requests_applied_without_a_success_reaching_the_client_are_ambiguous(
    ) -> anyhow::Result<()> {
        let (_up, proxy, state, _hits) = proxied(FaultPlan::default()).await?;
        let client = reqwest::Client::new();
        let url = format!("{}/x", proxy.base_url);
        client.post(&url).body("answered").send().await?;
        state.set_plan(FaultPlan {
            server_error_after_apply: 1.0,
            ..Default::default()
        });
        client.post(&url).body("answered 500").send().await?;
        state.set_plan(FaultPlan {
            timeout: 1.0,
            timeout_hold: Duration::from_secs(5),
            ..Default::default()
        });
        // The client gives up first: the proxy's answer never reaches it.
        let gone = client
            .post(&url)
            .body("client gone")
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(gone.is_err());
        state.set_plan(FaultPlan {
            server_error: 1.0,
            ..Default::default()
        });
        client.post(&url).body("never forwarded").send().await?;
        // The dropped request is noted as its handler is dropped.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while state.ambiguous().len() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut bodies: Vec<String> = state
            .ambiguous()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        bodies.sort();
        assert_eq!(bodies, ["answered 500", "client gone"]);
        Ok(())
    }

    #[tokio::test]
    async fn server_error_answers_503_without_reaching_the_upstream() -> anyhow::Result<()> {
        let plan = FaultPlan {
            server_error: 1.0,
            ..Default::default()
        };
        let (_up, proxy, state, hits) = proxied(plan).await?;
        let resp = reqwest::Client::new()
            .post(format!("{}/x", proxy.base_url))
            .body("b")
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(resp.text().await?, "injected 503");
        assert_eq!(hit_count(&hits), 0);
        assert_eq!(state.counts().server_errors, 1);
        Ok(())
    }

    #[tokio::test]
    async fn server_error_after_apply_reaches_the_upstream_once_and_answers_500(
    ) -> anyhow::Result<()> {
        let plan = FaultPlan {
            server_error_after_apply: 1.0,
            ..Default::default()
        };
        let (_up, proxy, state, hits) = proxied(plan).await?;
        let resp = reqwest::Client::new()
            .post(format!("{}/x", proxy.base_url))
            .body("b")
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 500);
        assert!(resp.headers().get("x-upstream").is_none());
        assert_eq!(
            resp.text().await?,
            "injected 500 after the upstream applied the request"
        );
        assert_eq!(hit_count(&hits), 1);
        assert_eq!(state.counts().server_errors_after_apply, 1);
        Ok(())
    }

    #[tokio::test]
    async fn rate_limited_answers_429_with_retry_after() -> anyhow::Result<()> {
        let plan = FaultPlan {
            rate_limited: 1.0,
            retry_after_secs: 7,
            ..Default::default()
        };
        let (_up, proxy, state, hits) = proxied(plan).await?;
        let resp = reqwest::Client::new()
            .get(format!("{}/x", proxy.base_url))
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
        assert_eq!(hit_count(&hits), 0);
        assert_eq!(state.counts().rate_limited, 1);
        Ok(())
    }

    #[tokio::test]
    async fn timeout_applies_upstream_while_the_client_times_out() -> anyhow::Result<()> {
        let plan = FaultPlan {
            timeout: 1.0,
            timeout_hold: Duration::from_secs(2),
            ..Default::default()
        };
        let (_up, proxy, state, hits) = proxied(plan).await?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()?;
        let err = client
            .post(format!("{}/x", proxy.base_url))
            .body("b")
            .send()
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("the held request was answered"))?;
        assert!(err.is_timeout(), "{err}");
        // The forward runs on its own task: give it a moment if needed.
        for _ in 0..50 {
            if hit_count(&hits) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(hit_count(&hits), 1);
        assert_eq!(state.counts().timeouts, 1);
        // Dropping the proxy (not `shutdown`) does not wait for the hold.
        drop(proxy);
        Ok(())
    }

    #[tokio::test]
    async fn mixed_shares_are_drawn_in_proportion() -> anyhow::Result<()> {
        let plan = FaultPlan {
            server_error: 0.1,
            server_error_after_apply: 0.1,
            rate_limited: 0.1,
            timeout: 0.1,
            timeout_hold: Duration::from_millis(1),
            seed: 42,
            ..Default::default()
        };
        let (_up, proxy, state, hits) = proxied(plan).await?;
        let client = reqwest::Client::new();
        let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
        for i in 0..2_000 {
            let resp = client
                .post(format!("{}/r/{i}", proxy.base_url))
                .body("b")
                .send()
                .await?;
            *statuses.entry(resp.status().as_u16()).or_default() += 1;
        }
        let c = state.counts();
        assert_eq!(c.total, 2_000);
        assert_eq!(
            c.forwarded
                + c.server_errors
                + c.server_errors_after_apply
                + c.rate_limited
                + c.timeouts,
            2_000
        );
        // Expected 200 each (sd about 13) and 1,200 forwarded (sd about 22).
        for n in [
            c.server_errors,
            c.server_errors_after_apply,
            c.rate_limited,
            c.timeouts,
        ] {
            assert!((120..=280).contains(&n), "{c:?}");
        }
        assert!((1_080..=1_320).contains(&c.forwarded), "{c:?}");
        // Each status matches its fault, and what reached the upstream too.
        assert_eq!(statuses.get(&201).copied().unwrap_or(0), c.forwarded);
        assert_eq!(statuses.get(&503).copied().unwrap_or(0), c.server_errors);
        assert_eq!(
            statuses.get(&500).copied().unwrap_or(0),
            c.server_errors_after_apply
        );
        assert_eq!(statuses.get(&429).copied().unwrap_or(0), c.rate_limited);
        assert_eq!(statuses.get(&504).copied().unwrap_or(0), c.timeouts);
        assert_eq!(
            hit_count(&hits) as u64,
            c.forwarded + c.server_errors_after_apply + c.timeouts
        );

        // Faults off: everything passes again.
        state.set_plan(FaultPlan::default());
        let resp = client
            .get(format!("{}/after", proxy.base_url))
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 201);
        assert_eq!(state.counts().total, 2_001);
        Ok(())
    }

    #[test]
    fn bad_upstream_urls_are_refused() {
        assert!(FaultProxyState::new("not a url", FaultPlan::default()).is_err());
        assert!(FaultProxyState::new("ftp://127.0.0.1/", FaultPlan::default()).is_err());
        assert!(FaultProxyState::new("http://127.0.0.1:1/?q=1", FaultPlan::default()).is_err());
    }

    #[tokio::test]
    async fn unreachable_upstream_is_502() -> anyhow::Result<()> {
        // Bind then free a port so nothing listens on it.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await?
            .local_addr()?;
        let (proxy, _state) = start(&format!("http://{addr}"), FaultPlan::default()).await?;
        let resp = reqwest::get(format!("{}/x", proxy.base_url)).await?;
        assert_eq!(resp.status().as_u16(), 502);
        Ok(())
    }
}
