//! The `order_placed` events against the world's orders, event by event:
//! the warehouse (one row each: its objects are named so a rewrite lands
//! on the same row), Meta's pixel (which keeps one event per name and
//! `event_id`, so every event must carry the id), and CleverTap, which
//! keeps every event record it is sent (its upload API takes no event id):
//! an order held twice there is only acceptable where the proxy saw a
//! request carrying it applied while the client could not know (answered
//! 500, held past the timeout, or the client gone), or an attempt
//! delivering it was killed, or outlived its claim (so another worker
//! could take the job over).

use super::*;

/// The world's orders: order id → (person key, total).
fn world_orders(history: &History) -> BTreeMap<String, (String, f64)> {
    history
        .webhooks
        .iter()
        .filter_map(|w| {
            let n = w.order?;
            let total = order_total(n).parse().ok()?;
            Some((order_id(n), (key_of(&realtime_id(w.person)), total)))
        })
        .collect()
}

/// Check one destination's copies of each order against the world's:
/// every order there with its person, nothing else. Returns the orders
/// held more than once, with how many times.
fn check_orders(
    what: &str,
    held: &[(String, String)],
    world: &BTreeMap<String, (String, f64)>,
    out: &mut Outcome,
) -> BTreeMap<String, usize> {
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong_person = Vec::new();
    for (order, person) in held {
        *times.entry(order.as_str()).or_default() += 1;
        match world.get(order) {
            Some((owner, _)) if owner != person => wrong_person.push(order.clone()),
            _ => {}
        }
    }
    let missing: Vec<&String> = world
        .keys()
        .filter(|o| !times.contains_key(o.as_str()))
        .collect();
    let unknown: Vec<&&str> = times.keys().filter(|o| !world.contains_key(**o)).collect();
    if !missing.is_empty() || !unknown.is_empty() || !wrong_person.is_empty() {
        out.mismatches.push(format!(
            "{what}: {} of the world's {} orders missing (e.g. {:?}), {} not the world's (e.g. {:?}), {} under another person (e.g. {:?})",
            missing.len(),
            world.len(),
            &missing[..missing.len().min(3)],
            unknown.len(),
            &unknown[..unknown.len().min(3)],
            wrong_person.len(),
            &wrong_person[..wrong_person.len().min(3)]
        ));
    }
    times
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(o, n)| (o.to_string(), n))
        .collect()
}

/// `cut_short`: the orders CleverTap attempts carried as they were killed
/// or outlived their claim (one entry per attempt).
pub(super) fn compare(
    sims: &Sims,
    history: &History,
    warehouse_rows: &[Value],
    cut_short: &[String],
    out: &mut Outcome,
) {
    let world = world_orders(history);

    // The warehouse: each order exactly once.
    let rows: Vec<(String, String)> = warehouse_rows
        .iter()
        .filter(|v| v.get("audience").and_then(Value::as_str) == Some("orders"))
        .filter_map(|v| {
            Some((
                v.get("properties")?.get("order_id")?.as_str()?.to_string(),
                v.get("person_key")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let twice = check_orders("warehouse rows of `orders`", &rows, &world, out);
    if !twice.is_empty() {
        out.mismatches.push(format!(
            "warehouse rows of `orders`: {} orders written more than once (e.g. {:?})",
            twice.len(),
            twice.iter().take(3).collect::<Vec<_>>()
        ));
    }

    // Meta's pixel: one event per order, each with its event_id and value.
    let capi = sims.meta.capi_events(META_PIXEL);
    let without_id = capi.iter().filter(|e| e.event_id.is_none()).count();
    if without_id > 0 {
        out.mismatches.push(format!(
            "Meta pixel: {without_id} events without an event_id (Meta would count a resend twice)"
        ));
    }
    // Meta matches the buyer by the person id, hashed (`external_id`: the
    // binding lists no keys, so every key the person has goes), and by the
    // hashed email where there is one: both must be the buyer's.
    let by_digest: BTreeMap<String, String> = world
        .values()
        .flat_map(|(key, _)| {
            let id = key.trim_start_matches("id:");
            let email = id
                .strip_prefix('r')
                .and_then(|n| n.parse().ok())
                .and_then(realtime_email);
            std::iter::once((sha256_hex(id), key.clone()))
                .chain(email.map(|e| (sha256_hex(&e), key.clone())))
                .collect::<Vec<_>>()
        })
        .collect();
    let first = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::Array(a) => Some(a.first()?.as_str()?.to_string()),
            other => Some(other.as_str()?.to_string()),
        }
    };
    let held: Vec<(String, String)> = capi
        .iter()
        .filter_map(|e| {
            let order = e.custom_data.get("order_id")?.as_str()?.to_string();
            let by_id = first(e.user_data.get("external_id")).map(|d| {
                by_digest
                    .get(&d)
                    .cloned()
                    .unwrap_or(format!("external_id {d}"))
            });
            let by_email = first(e.user_data.get("em"))
                .map(|d| by_digest.get(&d).cloned().unwrap_or(format!("em {d}")));
            let person = match (by_id, by_email) {
                (Some(a), Some(b)) if a != b => format!("{a} / {b}"),
                (Some(a), _) => a,
                (None, Some(b)) => b,
                (None, None) => "no user_data".to_string(),
            };
            Some((order, person))
        })
        .collect();
    let twice = check_orders("Meta pixel's Purchase events", &held, &world, out);
    if !twice.is_empty() {
        out.mismatches.push(format!(
            "Meta pixel: {} orders counted more than once (e.g. {:?})",
            twice.len(),
            twice.iter().take(3).collect::<Vec<_>>()
        ));
    }
    let wrong_value: Vec<&String> = capi
        .iter()
        .filter_map(|e| {
            let order = e.custom_data.get("order_id")?.as_str()?;
            let (key, (_, total)) = world.get_key_value(order)?;
            let value = e.custom_data.get("value").and_then(Value::as_f64);
            (value != Some(*total)).then_some(key)
        })
        .collect();
    if !wrong_value.is_empty() {
        out.mismatches.push(format!(
            "Meta pixel: {} events carry another value than the order's total (e.g. {:?})",
            wrong_value.len(),
            &wrong_value[..wrong_value.len().min(3)]
        ));
    }

    // CleverTap keeps every event record: a second copy is acceptable only
    // where a request carrying the order was applied without the client
    // knowing.
    let held: Vec<(String, String)> = sims
        .clevertap
        .events()
        .into_iter()
        .filter(|e| e.name == CT_ORDER_EVENT)
        .filter_map(|e| {
            let order = e.data.get("order_id")?.as_str()?.to_string();
            Some((order, key_of(&e.key)))
        })
        .collect();
    let twice = check_orders("CleverTap `Placed Order` events", &held, &world, out);
    let ambiguous = sims
        .proxies
        .iter()
        .find(|(n, _)| *n == "clevertap")
        .map(|(_, p)| p.ambiguous())
        .unwrap_or_default();
    let unexplained: Vec<(&String, usize, usize)> = twice
        .iter()
        .filter_map(|(order, n)| {
            let needle = format!("\"{order}\"");
            let lost_answers = ambiguous
                .iter()
                .filter(|b| String::from_utf8_lossy(b).contains(&needle))
                .count();
            let killed = cut_short.iter().filter(|o| *o == order).count();
            (*n > 1 + lost_answers + killed).then_some((order, *n, lost_answers + killed))
        })
        .collect();
    let copies: usize = twice.values().map(|n| n - 1).sum();
    if !unexplained.is_empty() {
        out.mismatches.push(format!(
            "CleverTap `Placed Order` events: {} orders held more often than a lost answer explains (order, copies, requests applied unknown to the client, attempts killed or outliving their claim carrying it; e.g. {:?})",
            unexplained.len(),
            &unexplained[..unexplained.len().min(3)]
        ));
    }
    out.figures.push(format!(
        "order_placed: {} orders; warehouse {} rows; Meta pixel {} distinct events of {} received; CleverTap {} events ({copies} second copies; at CleverTap {} requests applied unknown to the client, {} orders in an attempt killed mid-delivery or outliving its claim)",
        world.len(),
        rows.len(),
        capi.len(),
        sims.meta.capi_received(META_PIXEL),
        held.len(),
        ambiguous.len(),
        cut_short.len()
    ));
}
