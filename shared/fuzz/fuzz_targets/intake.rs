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
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dataout::adapters::embedded::queue::{EmbeddedQueue, QueueSettings};
use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::customerio::actions::{action_headers, ActionAuthConfig, ActionAuthMode};
use dataout::customerio::webhook::{signed_headers, SignatureConfig};
use dataout::domain::config::parse_spec;
use dataout::pipeline::intake::{handle, IntakeConfig, Route};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, Secret, SystemClock};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-intake-secret";

struct Harness {
    rt: tokio::runtime::Runtime,
    deps: Deps,
    shared: IntakeConfig,
    hmac: IntakeConfig,
    /// Kept so the state and queue files live as long as the process.
    _dir: tempfile::TempDir,
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
        // tmpfs when there is one: the stores write on every request.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("dataout-fuzz")
                .tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("dataout-fuzz").tempdir()
        }
        .expect("temp dir for the fuzz stores");
        let spec = parse_spec(
            include_str!("../../../config/exports.example.yaml"),
            "exports.example.yaml",
        )
        .expect("the example spec parses");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let deps = Deps {
            spec: Arc::new(spec),
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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Harness {
            rt,
            deps,
            shared: config(ActionAuthMode::SharedSecret),
            hmac: config(ActionAuthMode::Hmac),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let h = harness();
    let now_s = h.deps.clock.now_ms().div_euclid(1000);
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
    let resp = h.rt.block_on(handle(&h.deps, cfg, route, &headers, body));
    assert!(
        (200..300).contains(&resp.status),
        "signed {} body answered {}: {}",
        route.as_str(),
        resp.status,
        resp.body
    );
    let status = resp.body["status"].as_str().unwrap_or_default();
    assert!(
        matches!(
            status,
            "accepted" | "quarantined" | "duplicate" | "in_progress"
        ),
        "unexpected intake status: {}",
        resp.body
    );
});
