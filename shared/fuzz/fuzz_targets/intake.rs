#![no_main]
//! The whole intake handler on the embedded adapters, with every body
//! correctly signed: the fuzzer reaches parsing, dedup, membership changes
//! and enqueueing, not just the signature check. A signed body must never be
//! refused or lost: the answer is 2xx (acted on, duplicate, or quarantined).
//!
//! Input: byte 0 picks the route and auth (bit 0: actions, bit 1: HMAC
//! instead of the shared token) and the body's form (bit 2: JSON built from
//! the rest of the bytes in the shape of the route's bodies; otherwise the
//! rest is the body, byte for byte).

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
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

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
            basic: None,
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

// ---------------------------------------------------------------------------
// Structured bodies: JSON shaped like a reporting event or a webhook action,
// its values drawn from the input bytes, so most inputs get past parsing and
// reach membership changes, dedup and the queue.
// ---------------------------------------------------------------------------

const REPORTING_KEYS: &[&str] = &["event_id", "object_type", "metric", "timestamp", "data"];
const ACTION_KEYS: &[&str] = &[
    "action",
    "export",
    "id",
    "person",
    "attributes",
    "event",
    "sent_at",
];
const DATA_KEYS: &[&str] = &[
    "identifiers",
    "customer_id",
    "email_address",
    "recipient",
    "content",
    "machine",
    "campaign_id",
    "broadcast_id",
    "transactional_message_id",
];
const ID_KEYS: &[&str] = &["id", "cio_id", "email", "phone"];
const EVENT_KEYS: &[&str] = &["name", "id", "data"];
const ATTRIBUTE_KEYS: &[&str] = &["cart_value", "cart_currency", "vip_tier", "lifetime_value"];
const OBJECT_TYPES: &[&str] = &[
    "email", "customer", "sms", "whatsapp", "push", "*", "pigeon",
];
const METRICS: &[&str] = &[
    "unsubscribed",
    "spammed",
    "bounced",
    "delivered",
    "subscribed",
    "cio_subscription_preferences_changed",
];
const ACTIONS: &[&str] = &["enter", "exit", "event", "EXIT", "leave"];
const EXPORTS: &[&str] = &[
    "cart_abandoners",
    "recent_purchasers",
    "lapsed_vips",
    "email_suppression",
    "no_such_export",
];
const EVENTS: &[&str] = &["order_placed", "cart_started", "checkout_started", "other"];
const STRINGS: &[&str] = &[
    "",
    " ",
    "cust_1",
    "cust_2",
    "d9c106000001",
    "a@example.com",
    "B@Example.com",
    "not-an-email",
    "+15551234567",
    "129.90",
    "1751371200",
    "2025-07-01T12:00:00Z",
    "{\"topics\":{\"topic_1\":true}}",
];

type Gen<T> = libfuzzer_sys::arbitrary::Result<T>;

/// Any JSON value, `depth` levels deep at most.
fn any_value(u: &mut Unstructured, depth: u32) -> Gen<Value> {
    let top = if depth == 0 { 5 } else { 7 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<f64>()?),
        4 => Value::from(*u.choose(STRINGS)?),
        5 => Value::from(u.arbitrary::<&str>()?),
        6 => {
            let n = u.int_in_range(0..=3)?;
            Value::Array(
                (0..n)
                    .map(|_| any_value(u, depth - 1))
                    .collect::<Gen<_>>()?,
            )
        }
        _ => {
            let mut m = Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                m.insert(u.arbitrary::<&str>()?.to_string(), any_value(u, depth - 1)?);
            }
            Value::Object(m)
        }
    })
}

/// Unix seconds or milliseconds near now, or something else time-like.
fn time_value(u: &mut Unstructured) -> Gen<Value> {
    let base = 1_751_371_200i64 + i64::from(u.arbitrary::<i16>()?);
    Ok(match u.int_in_range(0..=3)? {
        0 => Value::from(base),
        1 => Value::from(base * 1000),
        2 => Value::from(base.to_string()),
        _ => Value::from(base as f64 + 0.5),
    })
}

/// An object holding some of `keys`, each with a value shaped for it.
fn object(u: &mut Unstructured, keys: &[&str], depth: u32) -> Gen<Value> {
    let mut m = Map::new();
    for key in keys {
        if u.ratio(7u8, 8u8)? {
            m.insert((*key).to_string(), field(u, key, depth)?);
        }
    }
    if u.ratio(1u8, 8u8)? {
        m.insert(u.arbitrary::<&str>()?.to_string(), any_value(u, 2)?);
    }
    Ok(Value::Object(m))
}

/// A value for `key`: usually of the type the parsers expect, sometimes not.
fn field(u: &mut Unstructured, key: &str, depth: u32) -> Gen<Value> {
    if depth == 0 || u.ratio(1u8, 10u8)? {
        return any_value(u, depth.min(2));
    }
    let pick =
        |u: &mut Unstructured, from: &[&str]| -> Gen<Value> { Ok(Value::from(*u.choose(from)?)) };
    match key {
        "data" if depth > 2 => object(u, DATA_KEYS, depth - 1),
        "data" => object(u, ATTRIBUTE_KEYS, depth - 1),
        "identifiers" | "person" => object(u, ID_KEYS, depth - 1),
        "attributes" => object(u, ATTRIBUTE_KEYS, depth - 1),
        "event" => object(u, EVENT_KEYS, depth - 1),
        "timestamp" | "sent_at" => time_value(u),
        "object_type" => pick(u, OBJECT_TYPES),
        "metric" => pick(u, METRICS),
        "action" => pick(u, ACTIONS),
        "export" => pick(u, EXPORTS),
        "name" => pick(u, EVENTS),
        "machine" => Ok(Value::Bool(u.arbitrary()?)),
        "event_id" | "id" if u.ratio(1u8, 2u8)? => {
            Ok(Value::from(format!("E{}", u.arbitrary::<u16>()?)))
        }
        _ => pick(u, STRINGS),
    }
}

fn structured_body(route: Route, bytes: &[u8]) -> Vec<u8> {
    let mut u = Unstructured::new(bytes);
    let keys = match route {
        Route::Reporting => REPORTING_KEYS,
        Route::Actions => ACTION_KEYS,
    };
    let value = object(&mut u, keys, 4).unwrap_or(Value::Null);
    serde_json::to_vec(&value).unwrap_or_default()
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

/// `FUZZ_INTAKE_VERBOSE=1` prints every answer (to see why inputs land
/// where they do when replaying a corpus).
fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("FUZZ_INTAKE_VERBOSE").is_some())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let h = harness();
    let route = if selector & 1 == 0 {
        Route::Reporting
    } else {
        Route::Actions
    };
    let structured;
    let body = if selector & 4 == 0 {
        body
    } else {
        structured = structured_body(route, body);
        structured.as_slice()
    };
    let deps = next_deps(h);
    let now_s = deps.clock.now_ms().div_euclid(1000);
    let (cfg, headers): (&IntakeConfig, BTreeMap<String, String>) = match route {
        Route::Reporting => (&h.shared, signed_headers(SECRET.as_bytes(), now_s, body)),
        Route::Actions if selector & 2 == 0 => {
            (&h.shared, action_headers(&h.shared.actions, now_s, body))
        }
        Route::Actions => (&h.hmac, action_headers(&h.hmac.actions, now_s, body)),
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
    if verbose() {
        eprintln!("intake {}: {} {}", route.as_str(), resp.status, resp.body);
    }
    assert!(
        matches!(
            status,
            "accepted" | "quarantined" | "duplicate" | "in_progress"
        ),
        "unexpected intake status: {}",
        resp.body
    );
});
