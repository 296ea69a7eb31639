//! The deterministic demo shop: people with plausible names, addresses,
//! phones and order histories, from a seed.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::{CioWorkspace, SimPerson, DAY, HOUR};

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
