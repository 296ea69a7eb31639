#![no_main]
//! The whole intake handler on the embedded adapters, with every body
//! correctly signed: the fuzzer reaches parsing, dedup, membership changes
//! and enqueueing, not just the signature check. A signed body must never be
//! refused or lost: the answer is 2xx (acted on, duplicate, or quarantined).
//!
//! Input: byte 0 picks the route and auth (bit 0: actions, bit 1: HMAC
//! instead of the shared token); the rest is the body.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dataout::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::customerio::actions::{action_headers, ActionAuthConfig, ActionAuthMode};
use dataout::customerio::webhook::{signed_headers, SignatureConfig};
use dataout::domain::config::parse_spec;
use dataout::domain::spec::ActivationSpec;
use dataout::pipeline::intake::{handle, IntakeConfig, Route};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, Secret, SystemClock};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-intake-secret";
/// Fresh stores after this many inputs: bounds the files' growth (and the
/// slowdown that comes with it) on long runs.
const INPUTS_PER_STORE: u32 = 50_000;

/// Built once per process.
struct Harness {
    rt: tokio::runtime::Runtime,
    spec: Arc<ActivationSpec>,
    shared: IntakeConfig,
    hmac: IntakeConfig,
}

/// The embedded state store and queue, and how many inputs they have seen.
struct Stores {
    deps: Deps,
    used: u32,
}

fn config(mode: ActionAuthMode) -> IntakeConfig {
    IntakeConfig {
        reporting: SignatureConfig {
            secret: Secret::new(SECRET),
            tolerance: Duration::from_secs(300),
        },
        actions: ActionAuthConfig {
            header_name: "x-dataout-token".into(),
            secret: Secret::new(SECRET),
            mode,
            tolerance: Duration::from_secs(300),
        },
        dedup_ttl: Duration::from_secs(3600),
        in_progress_ttl: Duration::from_secs(30),
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let spec = parse_spec(
            include_str!("../../../config/exports.example.yaml"),
            "exports.example.yaml",
        )
        .expect("the example spec parses");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Harness {
            rt,
            spec: Arc::new(spec),
            shared: config(ActionAuthMode::SharedSecret),
            hmac: config(ActionAuthMode::Hmac),
        }
    })
}

/// New stores in a temp dir (tmpfs when there is one: they write on every
/// request). The dir is removed as soon as the files are open: libFuzzer
/// ends the process without running destructors, and the open files stay
/// usable until they are dropped.
fn open_stores(spec: &Arc<ActivationSpec>) -> Deps {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("dataout-fuzz")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("dataout-fuzz").tempdir()
    }
    .expect("temp dir for the fuzz stores");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deps = Deps {
        spec: spec.clone(),
        state: Arc::new(
            EmbeddedStateStore::open(&dir.path().join("state.redb")).expect("state store"),
        ),
        queue: Arc::new(
            EmbeddedQueue::open(
                &dir.path().join("queue.redb"),
                QueueSettings::default(),
                clock.clone(),
            )
            .expect("queue"),
        ),
        clock,
    };
    dir.close().expect("remove the fuzz stores' temp dir");
    deps
}

/// The stores for the next input, renewed every [`INPUTS_PER_STORE`].
fn next_deps(h: &Harness) -> Deps {
    static STORES: Mutex<Option<Stores>> = Mutex::new(None);
    let mut slot = STORES.lock().unwrap_or_else(|p| p.into_inner());
    match slot.as_mut() {
        Some(s) if s.used < INPUTS_PER_STORE => {
            s.used += 1;
            s.deps.clone()
        }
        _ => {
            report_tally();
            // The old stores (if any) are dropped first, freeing their files.
            *slot = None;
            let deps = open_stores(&h.spec);
            *slot = Some(Stores {
                deps: deps.clone(),
                used: 1,
            });
            deps
        }
    }
}

/// How many answers of each status the current stores gave: printed at
/// each renewal, to see that inputs reach `accepted`, not only quarantine.
static TALLY: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn record(status: &str) {
    let mut tally = TALLY.lock().unwrap_or_else(|p| p.into_inner());
    *tally.entry(status.to_string()).or_default() += 1;
}

fn report_tally() {
    let mut tally = TALLY.lock().unwrap_or_else(|p| p.into_inner());
    if !tally.is_empty() {
        let parts: Vec<String> = tally.iter().map(|(k, n)| format!("{k} {n}")).collect();
        eprintln!("intake answers: {}", parts.join(", "));
        tally.clear();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let h = harness();
    let deps = next_deps(h);
    let now_s = deps.clock.now_ms().div_euclid(1000);
    let (route, cfg, headers): (Route, &IntakeConfig, BTreeMap<String, String>) =
        match (selector & 1, selector & 2) {
            (0, _) => (
                Route::Reporting,
                &h.shared,
                signed_headers(SECRET.as_bytes(), now_s, body),
            ),
            (_, 0) => (
                Route::Actions,
                &h.shared,
                action_headers(&h.shared.actions, now_s, body),
            ),
            _ => (
                Route::Actions,
                &h.hmac,
                action_headers(&h.hmac.actions, now_s, body),
            ),
        };
    let resp = h.rt.block_on(handle(&deps, cfg, route, &headers, body));
    assert!(
        (200..300).contains(&resp.status),
        "signed {} body answered {}: {}",
        route.as_str(),
        resp.status,
        resp.body
    );
    let status = resp.body["status"].as_str().unwrap_or_default();
    record(&format!("{} {status}", route.as_str()));
    assert!(
        matches!(
            status,
            "accepted" | "quarantined" | "duplicate" | "in_progress"
        ),
        "unexpected intake status: {}",
        resp.body
    );
});
