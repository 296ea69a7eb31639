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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

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

// ---------------------------------------------------------------- workspace

/// A person in the simulated workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimPerson {
    /// `None` for people known only by `cio_id` and email.
    pub id: Option<String>,
    pub email: Option<String>,
    /// Set by Customer.io, immutable, always present.
    pub cio_id: String,
    /// Profile attributes, all strings (as the App API returns them).
    pub attributes: BTreeMap<String, String>,
    /// Unix seconds the profile was created (used for `timestamps`).
    pub created_at: i64,
    pub unsubscribed: bool,
}

/// A segment and its members (indexes into [`CioWorkspace::people`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimSegment {
    pub name: String,
    pub description: String,
    /// Ordered by person index: the membership paging order.
    pub members: BTreeSet<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CioWorkspace {
    pub people: Vec<SimPerson>,
    pub segments: BTreeMap<u64, SimSegment>,
}

impl CioWorkspace {
    /// Members of a segment (person indexes), empty for an unknown segment.
    pub fn members(&self, segment: u64) -> Vec<usize> {
        self.segments
            .get(&segment)
            .map(|s| s.members.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Index of the person with this `id`.
    pub fn index_of_id(&self, id: &str) -> Option<usize> {
        self.people.iter().position(|p| p.id.as_deref() == Some(id))
    }

    /// Index of the person with this `cio_id`.
    pub fn index_of_cio_id(&self, cio_id: &str) -> Option<usize> {
        self.people.iter().position(|p| p.cio_id == cio_id)
    }

    /// Index of the person with this email (case and surrounding spaces ignored).
    pub fn index_of_email(&self, email: &str) -> Option<usize> {
        let wanted = email.trim().to_lowercase();
        self.people.iter().position(|p| {
            p.email
                .as_deref()
                .is_some_and(|e| e.trim().to_lowercase() == wanted)
        })
    }

    /// Re-evaluate the demo segments (101 to 107) from the people's
    /// attributes at `now_secs`, e.g. after a test changed attributes.
    pub fn recompute_demo_segments(&mut self, now_secs: i64) {
        let mut carts = BTreeSet::new();
        let mut recent = BTreeSet::new();
        let mut lapsed = BTreeSet::new();
        let mut replenish = BTreeSet::new();
        let mut checkout = BTreeSet::new();
        let mut browse = BTreeSet::new();
        let mut ltv: Vec<(f64, usize)> = Vec::new();
        for (i, p) in self.people.iter().enumerate() {
            let num = |k: &str| p.attributes.get(k).and_then(|v| v.parse::<i64>().ok());
            let last_order = num("last_order_at");
            let cart = num("cart_started_at");
            let recent_order = last_order.is_some_and(|t| t > now_secs - 30 * DAY && t <= now_secs);
            if recent_order {
                recent.insert(i);
            }
            let recent_cart = cart.is_some_and(|c| c > now_secs - DAY && c <= now_secs);
            let ordered_since = matches!((last_order, cart), (Some(o), Some(c)) if o >= c);
            if recent_cart && !ordered_since && !recent_order {
                carts.insert(i);
            }
            let vip = matches!(
                p.attributes.get("vip_tier").map(String::as_str),
                Some("gold" | "silver")
            );
            if vip && last_order.is_some_and(|t| t < now_secs - 90 * DAY) {
                lapsed.insert(i);
            }
            if last_order.is_some_and(|t| t >= now_secs - 40 * DAY && t <= now_secs - 25 * DAY) {
                replenish.insert(i);
            }
            let checkout_at = num("checkout_started_at");
            let ordered_after_checkout =
                matches!((last_order, checkout_at), (Some(o), Some(c)) if o >= c);
            if checkout_at.is_some_and(|c| c > now_secs - DAY && c <= now_secs)
                && !ordered_after_checkout
                && !recent_order
            {
                checkout.insert(i);
            }
            if num("product_views_7d").is_some_and(|v| v >= 2) && !recent_order {
                browse.insert(i);
            }
            let value = p
                .attributes
                .get("lifetime_value")
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if value > 0.0 {
                ltv.push((value, i));
            }
        }
        // The top 10 % of customers by lifetime value (a lookalike seed).
        ltv.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let top: BTreeSet<usize> = ltv
            .iter()
            .take(ltv.len().div_ceil(10))
            .map(|(_, i)| *i)
            .collect();
        for (id, name, description, members) in [
            (
                SEGMENT_CART_ABANDONERS,
                "Cart abandoners (24h)",
                "Started a cart in the last 24 hours and did not order",
                carts,
            ),
            (
                SEGMENT_RECENT_PURCHASERS,
                "Recent purchasers (30d)",
                "Ordered in the last 30 days",
                recent,
            ),
            (
                SEGMENT_LAPSED_VIPS,
                "Lapsed VIPs",
                "Gold or silver tier, no order for more than 90 days",
                lapsed,
            ),
            (
                SEGMENT_REPLENISHMENT,
                "Replenishment window",
                "Last order 25 to 40 days ago",
                replenish,
            ),
            (
                SEGMENT_VIP_TOP_LTV,
                "Top 10 % by lifetime value",
                "The customers with the highest lifetime value, 10 % of those who ordered",
                top,
            ),
            (
                SEGMENT_CHECKOUT_STARTERS,
                "Checkout starters (24h)",
                "Started checkout in the last 24 hours and did not order",
                checkout,
            ),
            (
                SEGMENT_BROWSE_INTENT,
                "Browse intent",
                "Viewed products 2+ times in 7 days, no order in 30 days",
                browse,
            ),
        ] {
            self.segments.insert(
                id,
                SimSegment {
                    name: name.to_string(),
                    description: description.to_string(),
                    members,
                },
            );
        }
    }
}

// ---------------------------------------------------------------- demo data

const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Susan",
    "Oliver",
    "Amelia",
    "Harry",
    "Isla",
    "George",
    "Ava",
    "Jack",
    "Emily",
    "Aarav",
    "Priya",
    "Vihaan",
    "Ananya",
    "Arjun",
    "Diya",
    "Rohan",
    "Kavya",
    "Lachlan",
    "Chloe",
    "Liam",
    "Olivia",
    "Noah",
    "Mia",
    "Ethan",
    "Zoe",
    "Lucas",
    "Grace",
    "Mateo",
    "Sofia",
];

const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Anderson",
    "Thomas",
    "Moore",
    "Martin",
    "Clarke",
    "Evans",
    "Walker",
    "Wright",
    "Roberts",
    "Hughes",
    "Sharma",
    "Patel",
    "Iyer",
    "Reddy",
    "Gupta",
    "Nair",
    "Kumar",
    "Singh",
    "Nguyen",
    "Kelly",
    "O'Brien",
    "Murphy",
    "Ryan",
    "Campbell",
    "Stewart",
    "Lee",
    "Chen",
    "Lopez",
    "Hernandez",
    "King",
];

/// (city, state, zip prefix, area codes)
const US_CITIES: &[(&str, &str, &str, &[&str])] = &[
    ("San Francisco", "CA", "941", &["415", "628"]),
    ("New York", "NY", "100", &["212", "646", "917"]),
    ("Chicago", "IL", "606", &["312", "773"]),
    ("Boston", "MA", "021", &["617", "857"]),
    ("Seattle", "WA", "981", &["206"]),
    ("Denver", "CO", "802", &["303", "720"]),
    ("Austin", "TX", "787", &["512", "737"]),
    ("Atlanta", "GA", "303", &["404", "678"]),
];

/// (city, region, postcode outward codes)
const GB_CITIES: &[(&str, &str, &[&str])] = &[
    (
        "London",
        "Greater London",
        &["SW1A", "E1", "N1", "SE10", "W2"],
    ),
    ("Manchester", "Greater Manchester", &["M1", "M4", "M20"]),
    ("Birmingham", "West Midlands", &["B1", "B15"]),
    ("Leeds", "West Yorkshire", &["LS1", "LS6"]),
    ("Edinburgh", "Scotland", &["EH1", "EH3"]),
];

/// (city, state, PIN prefix)
const IN_CITIES: &[(&str, &str, &str)] = &[
    ("Mumbai", "MH", "400"),
    ("Bengaluru", "KA", "560"),
    ("New Delhi", "DL", "110"),
    ("Chennai", "TN", "600"),
    ("Pune", "MH", "411"),
];

/// (city, state, postcode range)
const AU_CITIES: &[(&str, &str, u32, u32)] = &[
    ("Sydney", "NSW", 2000, 2234),
    ("Melbourne", "VIC", 3000, 3207),
    ("Brisbane", "QLD", 4000, 4179),
    ("Perth", "WA", 6000, 6199),
    ("Adelaide", "SA", 5000, 5199),
];

/// The demo workspace with timestamps relative to the current time, so its
/// segments hold at the moment a demo runs. Names, ids and shares depend on
/// `seed` only.
pub fn demo_workspace(seed: u64, people: usize) -> CioWorkspace {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1_750_000_000);
    demo_workspace_at(seed, people, now)
}

/// The demo workspace as of `now_secs` (Unix seconds): fully deterministic.
///
/// About 10 % cart abandoners (101), 15 % recent purchasers (102, disjoint
/// from 101), 6 % lapsed VIPs (103); about 3 % of people have no `id`.
pub fn demo_workspace_at(seed: u64, people: usize, now_secs: i64) -> CioWorkspace {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ws = CioWorkspace::default();
    for i in 0..people {
        let person = demo_person(&mut rng, i, now_secs);
        ws.people.push(person);
    }
    ws.recompute_demo_segments(now_secs);
    ws
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    // The lists are non-empty constants; fall back to the first item anyway.
    items.choose(rng).unwrap_or(&items[0])
}

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn money(rng: &mut StdRng, lo: f64, hi: f64) -> String {
    format!("{:.2}", rng.random_range(lo..hi))
}

fn demo_person(rng: &mut StdRng, i: usize, now: i64) -> SimPerson {
    let first = *pick(rng, FIRST_NAMES);
    let last = *pick(rng, LAST_NAMES);
    let country = match rng.random_range(0..100) {
        0..=59 => "US",
        60..=74 => "GB",
        75..=89 => "IN",
        _ => "AU",
    };
    let mut attrs = BTreeMap::new();
    let (city, state, zip, phone) = match country {
        "US" => {
            let (city, state, zip, areas) = *pick(rng, US_CITIES);
            let zip = format!("{zip}{}", digits(rng, 2));
            let area = *pick(rng, areas);
            (city, state.to_string(), zip, Some(us_phone(rng, area)))
        }
        "GB" => {
            let (city, region, outward) = *pick(rng, GB_CITIES);
            const INWARD: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";
            let a = char::from(*pick(rng, INWARD));
            let b = char::from(*pick(rng, INWARD));
            let zip = format!("{} {}{a}{b}", pick(rng, outward), rng.random_range(1..10));
            (city, region.to_string(), zip, Some(gb_phone(rng)))
        }
        "IN" => {
            let (city, state, pin) = *pick(rng, IN_CITIES);
            let zip = format!("{pin}{}", digits(rng, 3));
            (city, state.to_string(), zip, Some(in_phone(rng)))
        }
        _ => {
            let (city, state, lo, hi) = *pick(rng, AU_CITIES);
            let zip = rng.random_range(lo..=hi).to_string();
            (city, state.to_string(), zip, Some(au_phone(rng)))
        }
    };
    let phone = phone.filter(|_| rng.random_bool(0.9));

    let email = demo_email(rng, first, last, i, country);
    let has_id = !rng.random_bool(0.03);
    let created_at = now - rng.random_range(60 * DAY..900 * DAY);

    attrs.insert("first_name".into(), first.to_string());
    attrs.insert("last_name".into(), last.to_string());
    attrs.insert("city".into(), city.to_string());
    attrs.insert("state".into(), state);
    attrs.insert("zip".into(), zip);
    attrs.insert("country".into(), country.to_string());
    attrs.insert("email".into(), email.clone());
    attrs.insert("created_at".into(), created_at.to_string());
    if let Some(phone) = phone {
        attrs.insert("phone".into(), phone);
    }

    // One behaviour group per person; segment membership is then derived
    // from the attributes by the segment rules.
    let roll = rng.random_range(0..1000);
    let (last_order, cart, tier) = match roll {
        // recent purchasers (102)
        0..=149 => {
            let order = now - rng.random_range(HOUR..30 * DAY - HOUR);
            let cart = rng
                .random_bool(0.5)
                .then(|| order - rng.random_range(300..3 * HOUR));
            (Some(order), cart, Some(random_tier(rng)))
        }
        // cart abandoners (101)
        150..=249 => {
            let cart = now - rng.random_range(300..DAY - 300);
            if rng.random_bool(0.4) {
                (None, Some(cart), None)
            } else {
                let order = now - rng.random_range(31 * DAY..400 * DAY);
                let tier = if order < now - 90 * DAY {
                    "bronze"
                } else {
                    random_tier(rng)
                };
                (Some(order), Some(cart), Some(tier))
            }
        }
        // lapsed VIPs (103)
        250..=309 => {
            let order = now - rng.random_range(91 * DAY..700 * DAY);
            let tier = if rng.random_bool(0.35) {
                "gold"
            } else {
                "silver"
            };
            (Some(order), old_cart(rng, now), Some(tier))
        }
        _ => {
            if rng.random_bool(0.35) {
                (None, old_cart(rng, now), None)
            } else {
                let order = now - rng.random_range(31 * DAY..700 * DAY);
                let tier = if order < now - 90 * DAY {
                    "bronze"
                } else {
                    random_tier(rng)
                };
                (Some(order), old_cart(rng, now), Some(tier))
            }
        }
    };
    if let Some(cart) = cart {
        attrs.insert("cart_started_at".into(), cart.to_string());
        attrs.insert("cart_value".into(), money(rng, 10.0, 400.0));
    }
    match (last_order, tier) {
        (Some(order), Some(tier)) => {
            let (orders, ltv) = match tier {
                "gold" => (rng.random_range(12..40), money(rng, 1500.0, 6000.0)),
                "silver" => (rng.random_range(5..12), money(rng, 600.0, 1500.0)),
                _ => (rng.random_range(1..5), money(rng, 20.0, 600.0)),
            };
            attrs.insert("last_order_at".into(), order.to_string());
            attrs.insert("orders_count".into(), orders.to_string());
            attrs.insert("lifetime_value".into(), ltv);
            attrs.insert("vip_tier".into(), tier.to_string());
        }
        _ => {
            attrs.insert("orders_count".into(), "0".into());
            attrs.insert("lifetime_value".into(), "0.00".into());
        }
    }

    // Checkout starts and product views, derived from the person's number
    // (not the seeded generator, so every other attribute stays as it was).
    if let Some(cart) = cart {
        if i.is_multiple_of(3) {
            attrs.insert(
                "checkout_started_at".into(),
                (cart + 90).min(now).to_string(),
            );
        }
    }
    let views = if (i * 37) % 10 < 2 { 2 + i % 4 } else { i % 2 };
    attrs.insert("product_views_7d".into(), views.to_string());

    SimPerson {
        id: has_id.then(|| format!("cust_{i:05}")),
        email: Some(email),
        cio_id: format!("{:08x}", 0x0300_0000u64 + i as u64),
        attributes: attrs,
        created_at,
        unsubscribed: rng.random_bool(0.02),
    }
}

fn random_tier(rng: &mut StdRng) -> &'static str {
    match rng.random_range(0..100) {
        0..=14 => "gold",
        15..=39 => "silver",
        _ => "bronze",
    }
}

fn old_cart(rng: &mut StdRng, now: i64) -> Option<i64> {
    rng.random_bool(0.3)
        .then(|| now - rng.random_range(2 * DAY..60 * DAY))
}

fn demo_email(rng: &mut StdRng, first: &str, last: &str, i: usize, country: &str) -> String {
    let domains: &[&str] = match country {
        "US" => &[
            "gmail.com",
            "yahoo.com",
            "outlook.com",
            "icloud.com",
            "hey.com",
        ],
        "GB" => &[
            "gmail.com",
            "hotmail.co.uk",
            "btinternet.com",
            "outlook.com",
        ],
        "IN" => &["gmail.com", "rediffmail.com", "yahoo.co.in"],
        _ => &["gmail.com", "bigpond.com", "outlook.com.au"],
    };
    let domain = *pick(rng, domains);
    let f = first.to_lowercase();
    let l: String = last
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect();
    let mut local = match rng.random_range(0..4) {
        0 => format!("{f}.{l}{i}"),
        1 => format!("{}{l}{i}", &f[..1]),
        2 => format!("{f}_{l}{i}"),
        _ => format!("{f}{l}{i}"),
    };
    if domain == "gmail.com" && rng.random_bool(0.3) {
        // Gmail ignores dots: the same mailbox written with extra ones.
        let cut = rng.random_range(1..f.len().max(2));
        local = format!(
            "{}.{}",
            &local[..cut.min(local.len())],
            &local[cut.min(local.len())..]
        );
        local = local.replace("..", ".");
    }
    let mut email = format!("{local}@{domain}");
    if rng.random_bool(0.08) {
        email = capitalise_parts(&email);
    }
    if rng.random_bool(0.03) {
        email = format!(" {email} ");
    }
    email
}

fn capitalise_parts(email: &str) -> String {
    let mut out = String::with_capacity(email.len());
    let mut upper_next = true;
    for c in email.chars() {
        if upper_next {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper_next = matches!(c, '.' | '@' | '_');
    }
    out
}

fn us_phone(rng: &mut StdRng, area: &str) -> String {
    // Exchange 2xx-9xx, not N11 and not 555.
    let exchange = loop {
        let e = rng.random_range(200..1000u32);
        if e % 100 != 11 && e != 555 {
            break e;
        }
    };
    let line = digits(rng, 4);
    match rng.random_range(0..5) {
        0 => format!("+1{area}{exchange}{line}"),
        1 => format!("({area}) {exchange}-{line}"),
        2 => format!("{area}-{exchange}-{line}"),
        3 => format!("{area}.{exchange}.{line}"),
        _ => format!("+1 {area} {exchange} {line}"),
    }
}

fn gb_phone(rng: &mut StdRng) -> String {
    // Mobile 071xx-073xx.
    let n = format!("7{}{}", rng.random_range(1..4), digits(rng, 8));
    match rng.random_range(0..3) {
        0 => format!("+44{n}"),
        1 => format!("0{} {}", &n[..4], &n[4..]),
        _ => format!("+44 {} {}", &n[..4], &n[4..]),
    }
}

fn in_phone(rng: &mut StdRng) -> String {
    // Mobile 98xxx / 99xxx.
    let n = format!("9{}{}", rng.random_range(8..10), digits(rng, 8));
    match rng.random_range(0..3) {
        0 => format!("+91{n}"),
        1 => format!("0{} {}", &n[..5], &n[5..]),
        _ => format!("+91 {} {}", &n[..5], &n[5..]),
    }
}

fn au_phone(rng: &mut StdRng) -> String {
    // Mobile 040x-043x.
    let n = format!("4{}{}", rng.random_range(0..4), digits(rng, 7));
    match rng.random_range(0..3) {
        0 => format!("+61{n}"),
        1 => format!("0{} {} {}", &n[..3], &n[3..6], &n[6..]),
        _ => format!("+61 {} {} {}", &n[..3], &n[3..6], &n[6..]),
    }
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

/// The App API routes, for callers that serve them themselves.
pub fn router(handle: CioSimHandle) -> Router {
    Router::new()
        .route("/v1/segments", get(list_segments))
        .route("/v1/segments/{id}", get(get_segment))
        .route("/v1/segments/{id}/customer_count", get(customer_count))
        .route("/v1/segments/{id}/membership", get(membership))
        .route("/v1/customers/attributes", post(bulk_attributes))
        .route("/v1/customers/{id}/attributes", get(customer_attributes))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .with_state(handle)
}

// ---------------------------------------------------------------- handlers

/// An error answer in the App API's error shape.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    detail: String,
    retry_after: Option<u64>,
}

fn error(status: StatusCode, detail: impl Into<String>) -> Refusal {
    Refusal {
        status,
        detail: detail.into(),
        retry_after: None,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({
            "errors": [{ "detail": self.detail, "status": self.status.as_u16().to_string() }]
        });
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

type Answer = Result<Response, Refusal>;

impl Inner {
    /// Count, authenticate, rate-limit and inject failures, in that order.
    fn gate(&self, headers: &HeaderMap, endpoint: &'static str) -> Result<(), Refusal> {
        *lock(&self.counters).requests.entry(endpoint).or_default() += 1;
        lock(&self.arrivals).push(Instant::now());

        let expected = format!("Bearer {}", self.config.api_key);
        let authorised = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected);
        if !authorised {
            lock(&self.counters).unauthorized += 1;
            return Err(error(StatusCode::UNAUTHORIZED, "unauthorized"));
        }

        if self.config.rate_limit > 0 {
            let rate = f64::from(self.config.rate_limit);
            let cap = f64::from(self.config.burst.unwrap_or(self.config.rate_limit).max(1));
            let mut b = lock(&self.bucket);
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(cap);
            b.last = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
            } else {
                drop(b);
                let mut c = lock(&self.counters);
                c.rate_limited += 1;
                c.status_429 += 1;
                return Err(self.too_many());
            }
        }

        let injected = lock(&self.failures).pop_front();
        if let Some(status) = injected {
            let mut c = lock(&self.counters);
            c.injected += 1;
            if status == 429 {
                c.status_429 += 1;
                return Err(self.too_many());
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(error(status, "injected failure"));
        }
        Ok(())
    }

    fn too_many(&self) -> Refusal {
        Refusal {
            retry_after: self.config.retry_after_secs,
            ..error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
        }
    }
}

fn segment_json(id: u64, s: &SimSegment) -> Value {
    json!({
        "id": id,
        "deduplicate_id": format!("{id}:1700000000"),
        "name": s.name,
        "description": s.description,
        "state": "finished",
        "progress": null,
        "type": "dynamic",
        "tags": [],
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_000,
    })
}

fn parse_segment(raw: &str) -> Result<u64, Refusal> {
    raw.parse::<u64>()
        .map_err(|_| error(StatusCode::BAD_REQUEST, "segment id must be a number"))
}

async fn list_segments(State(h): State<CioSimHandle>, headers: HeaderMap) -> Answer {
    h.inner.gate(&headers, endpoint::LIST_SEGMENTS)?;
    let ws = lock(&h.inner.workspace);
    let segments: Vec<Value> = ws
        .segments
        .iter()
        .map(|(id, s)| segment_json(*id, s))
        .collect();
    Ok(Json(json!({ "segments": segments })).into_response())
}

async fn get_segment(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    h.inner.gate(&headers, endpoint::GET_SEGMENT)?;
    let id = parse_segment(&id)?;
    let ws = lock(&h.inner.workspace);
    let segment = ws
        .segments
        .get(&id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "segment not found"))?;
    Ok(Json(json!({ "segment": segment_json(id, segment) })).into_response())
}

async fn customer_count(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    h.inner.gate(&headers, endpoint::CUSTOMER_COUNT)?;
    let id = parse_segment(&id)?;
    let ws = lock(&h.inner.workspace);
    let segment = ws
        .segments
        .get(&id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "segment not found"))?;
    Ok(Json(json!({ "count": segment.members.len() })).into_response())
}

fn encode_token(segment: u64, after: usize) -> String {
    B64.encode(format!("{{\"s\":{segment},\"after\":{after}}}"))
}

fn decode_token(segment: u64, token: &str) -> Option<usize> {
    let raw = B64.decode(token).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    if v.get("s")?.as_u64()? != segment {
        return None;
    }
    usize::try_from(v.get("after")?.as_u64()?).ok()
}

async fn membership(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let inner = &h.inner;
    inner.gate(&headers, endpoint::MEMBERSHIP)?;
    let id = parse_segment(&id)?;
    let max = inner.config.max_page_limit;
    let limit = match q.get("limit").map(|l| l.parse::<u32>()) {
        None => inner.config.default_page_limit,
        Some(Ok(l)) if (1..=max).contains(&l) => l,
        Some(_) => {
            let msg = format!("limit must be between 1 and {max}");
            return Err(error(StatusCode::BAD_REQUEST, msg));
        }
    };
    let after = match q.get("start").filter(|s| !s.is_empty()) {
        None => None,
        Some(token) => Some(
            decode_token(id, token)
                .ok_or_else(|| error(StatusCode::BAD_REQUEST, "invalid start token"))?,
        ),
    };
    let ws = lock(&inner.workspace);
    let segment = ws
        .segments
        .get(&id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "segment not found"))?;
    let range = match after {
        Some(a) => segment.members.range(a + 1..),
        None => segment.members.range(0..),
    };
    let page: Vec<usize> = range.take(limit as usize).copied().collect();
    let more = page
        .last()
        .is_some_and(|last| segment.members.range(last + 1..).next().is_some());
    let next = match page.last() {
        Some(last) if more || inner.config.trailing_empty_page => encode_token(id, *last),
        _ => String::new(),
    };
    let mut ids = Vec::with_capacity(page.len());
    let mut identifiers = Vec::with_capacity(page.len());
    for p in page.iter().filter_map(|i| ws.people.get(*i)) {
        ids.push(Value::String(p.id.clone().unwrap_or_default()));
        identifiers.push(json!({ "id": p.id, "email": p.email, "cio_id": p.cio_id }));
    }
    drop(ws);
    lock(&inner.counters).page_limits.push(limit);
    Ok(Json(json!({ "ids": ids, "identifiers": identifiers, "next": next })).into_response())
}

fn customer_json(p: &SimPerson) -> Value {
    let mut attributes: Map<String, Value> = p
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    attributes.insert("cio_id".into(), Value::String(p.cio_id.clone()));
    if let Some(id) = &p.id {
        attributes.insert("id".into(), Value::String(id.clone()));
    }
    if let Some(email) = &p.email {
        attributes.insert("email".into(), Value::String(email.clone()));
    }
    attributes.insert(
        "_created_in_customerio_at".into(),
        Value::String(p.created_at.to_string()),
    );
    let timestamps: Map<String, Value> = attributes
        .keys()
        .map(|k| (k.clone(), Value::from(p.created_at)))
        .collect();
    json!({
        "id": p.id,
        "identifiers": { "id": p.id, "email": p.email, "cio_id": p.cio_id },
        "attributes": attributes,
        "timestamps": timestamps,
        "unsubscribed": p.unsubscribed,
        "devices": [],
    })
}

/// Resolve `key` under `id_type`; `Err` for an id type the workspace refuses.
fn find(
    config: &CioSimConfig,
    ws: &CioWorkspace,
    id_type: &str,
    key: &str,
) -> Result<Option<usize>, Refusal> {
    match id_type {
        "id" => Ok(ws.index_of_id(key)),
        "cio_id" => Ok(ws.index_of_cio_id(key)),
        "email" if config.email_lookup => Ok(ws.index_of_email(key)),
        "email" | "phone" => Err(error(
            StatusCode::BAD_REQUEST,
            "id_type not enabled in this workspace",
        )),
        _ => Err(error(StatusCode::BAD_REQUEST, "unknown id_type")),
    }
}

async fn bulk_attributes(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Answer {
    let inner = &h.inner;
    inner.gate(&headers, endpoint::BULK_ATTRIBUTES)?;
    let id_type = q.get("id_type").map(String::as_str).unwrap_or("id");
    let body = serde_json::from_slice::<Value>(&body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "body must be JSON"))?;
    let ids = body
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "body needs an ids array"))?;
    if ids.is_empty() || ids.len() > MAX_BULK_IDS {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "ids must hold 1 to 100 entries",
        ));
    }
    let ws = lock(&inner.workspace);
    let mut customers = Vec::new();
    for raw in ids {
        let key = match raw {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(error(StatusCode::BAD_REQUEST, "ids must be strings")),
        };
        if let Some(p) = find(&inner.config, &ws, id_type, &key)?.and_then(|i| ws.people.get(i)) {
            customers.push(json!({ "customer": customer_json(p) }));
        }
    }
    drop(ws);
    lock(&inner.counters).bulk_batch_sizes.push(ids.len());
    Ok(Json(json!({ "customers": customers })).into_response())
}

async fn customer_attributes(
    State(h): State<CioSimHandle>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    let inner = &h.inner;
    inner.gate(&headers, endpoint::CUSTOMER_ATTRIBUTES)?;
    let id_type = q.get("id_type").map(String::as_str).unwrap_or("id");
    let ws = lock(&inner.workspace);
    let person = find(&inner.config, &ws, id_type, &key)?
        .and_then(|i| ws.people.get(i))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "customer not found"))?;
    Ok(Json(json!({ "customer": customer_json(person) })).into_response())
}

#[cfg(test)]
#[path = "customerio_tests.rs"]
mod tests;
