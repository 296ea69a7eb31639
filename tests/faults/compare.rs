//! After the run: state against the source of truth, each destination's
//! audience against state, and the counters against the ops enqueued.

use super::arrivals::{self, Arrival};
use super::*;

/// Every (export, destination) the fault suite's spec routes.
const ROUTES: [(&str, &str); 14] = [
    ("orders", "clevertap"),
    ("orders", "warehouse"),
    ("purchases", "capi"),
    ("cart", "meta"),
    ("cart", "clevertap"),
    ("purchasers", "google"),
    ("purchasers", "warehouse"),
    ("newsletter", "hook"),
    ("newsletter", "clevertap"),
    ("vip", "google"),
    ("vip", "clevertap"),
    ("vip", "warehouse"),
    ("winback", "meta"),
    ("winback", "hook"),
];

/// The world's changes to `export`'s membership, by person key.
fn world_changes(history: &History, export: &str) -> arrivals::Changes {
    match history.rounds.get(export) {
        Some(rounds) => {
            arrivals::batch_changes(rounds, &history.profiles, export == "vip", batch_id)
        }
        None => arrivals::realtime_changes(&history.webhooks, export),
    }
}

/// The members state holds for `export`, by person key.
async fn state_members(store: &Arc<dyn StateStore>, export: &str) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = store.list_memberships(export, cursor, 1_000).await?;
        out.extend(
            page.items
                .into_iter()
                .filter(|r| r.current.member)
                .map(|r| r.person_key.0),
        );
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    Ok(out)
}

fn diff(out: &mut Outcome, what: &str, expected: &BTreeSet<String>, got: &BTreeSet<String>) {
    let missing: Vec<_> = expected.difference(got).take(5).collect();
    let extra: Vec<_> = got.difference(expected).take(5).collect();
    let (m, e) = (
        expected.difference(got).count(),
        got.difference(expected).count(),
    );
    if m + e > 0 {
        out.mismatches.push(format!(
            "{what}: expected {}, found {}: {m} missing (e.g. {missing:?}), {e} unexpected (e.g. {extra:?})",
            expected.len(),
            got.len()
        ));
    }
}

/// Replay add/remove rows (warehouse objects, webhook deliveries) in
/// source order: who is in each audience at the end. An update row says
/// nothing about membership.
fn replay(rows: &[(String, String, String, i64)]) -> BTreeMap<String, BTreeSet<String>> {
    // (audience, person) → (source_ts, in)
    let mut last: HashMap<(String, String), (i64, bool)> = HashMap::new();
    for (audience, person, op, ts) in rows {
        if op != "add" && op != "remove" {
            continue;
        }
        let entry = last
            .entry((audience.clone(), person.clone()))
            .or_insert((i64::MIN, false));
        if *ts >= entry.0 {
            *entry = (*ts, op == "add");
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((audience, person), (_, member)) in last {
        if member {
            out.entry(audience).or_default().insert(person);
        }
    }
    out
}

fn row_of(v: &Value) -> Option<(String, String, String, i64)> {
    Some((
        v.get("audience")?.as_str()?.to_string(),
        v.get("person_key")?.as_str()?.to_string(),
        v.get("op")?.as_str()?.to_string(),
        v.get("source_ts")?.as_i64()?,
    ))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn compare(
    sims: &Sims,
    scale: &Scale,
    pipeline: &Pipeline,
    store: &Arc<dyn StateStore>,
    warehouse: &Arc<dyn ObjectStore>,
    history: &History,
    realtime_truth: &BTreeMap<&'static str, BTreeSet<usize>>,
    rejections: &Rejections,
    out: &mut Outcome,
) -> Result<()> {
    // 1. State against the source of truth.
    let mut truth: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (export, people) in realtime_truth {
        truth.insert(
            export,
            people.iter().map(|p| key_of(&realtime_id(*p))).collect(),
        );
    }
    let ws = sims.cio.handle.snapshot();
    for (export, segment) in BATCH {
        let members = ws
            .members(segment)
            .into_iter()
            .filter_map(|i| ws.people[i].id.clone())
            .map(|id| key_of(&id))
            .collect();
        truth.insert(export, members);
    }
    for (export, expected) in &truth {
        let got = state_members(store, export).await?;
        diff(out, &format!("state of `{export}`"), expected, &got);
    }

    // Who must be refused or left unmatched comes from the world's design;
    // what the delivery logged must be exactly that, person for person.
    let design = history.refused_by_design();
    for (export, destination) in ROUTES {
        let want: BTreeSet<String> = design
            .get(&(export, destination))
            .map(|keys| {
                keys.iter()
                    .map(|k| PersonKey(k.clone()).log_safe())
                    .collect()
            })
            .unwrap_or_default();
        let logged: BTreeSet<String> = rejections
            .get(&(export.to_string(), destination.to_string()))
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        diff(
            out,
            &format!("people refused or unmatched at {export}→{destination}"),
            &want,
            &logged,
        );
    }
    if let Some(stray) = rejections
        .keys()
        .find(|(e, d)| !ROUTES.contains(&(e.as_str(), d.as_str())))
    {
        out.mismatches.push(format!(
            "people refused on a route the spec does not have: {stray:?}"
        ));
    }
    // What each destination should hold: the truth, less whom the design
    // makes it refuse.
    let unnamed = history.unnamed_by_design(scale.faults);
    let expected_at = |export: &str, destination: &str| -> BTreeSet<String> {
        let left_out = |k: &String| {
            [&design, &unnamed].iter().any(|m| {
                m.iter()
                    .any(|((e, d), r)| *e == export && *d == destination && r.contains(k))
            })
        };
        truth[export]
            .iter()
            .filter(|k| !left_out(k))
            .cloned()
            .collect()
    };
    let id_of = |key: &str| key.trim_start_matches("id:").to_string();
    // Each person's email as the source holds it at the end.
    let email_now = |id: &str| -> Option<String> {
        match id.strip_prefix('r') {
            Some(n) => realtime_email(n.parse().ok()?),
            None => ws.people[ws.index_of_id(id)?].email.clone(),
        }
    };

    // 2. Meta: members by EXTERN_ID; the population leaves some unmatched.
    for (export, audience) in [("cart", META_CART), ("winback", META_WINBACK)] {
        let got: BTreeSet<String> = sims
            .meta
            .members(audience)
            .iter()
            .flat_map(|m| {
                m.iter()
                    .filter(|(k, _)| k == "EXTERN_ID")
                    .map(|(_, v)| key_of(v))
            })
            .collect();
        let expected: BTreeSet<String> = expected_at(export, "meta")
            .into_iter()
            .filter(|k| {
                sims.meta
                    .would_match(&BTreeSet::from([("EXTERN_ID".to_string(), id_of(k))]))
            })
            .collect();
        diff(
            out,
            &format!("Meta audience of `{export}`"),
            &expected,
            &got,
        );
        // A changed email must leave with the old address: every EMAIL a
        // member carries is the digest of the person's email now.
        let stale: Vec<String> = sims
            .meta
            .members(audience)
            .iter()
            .flat_map(|m| {
                let id = m
                    .iter()
                    .find(|(k, _)| k == "EXTERN_ID")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let now = email_now(&id).map(|e| sha256_hex(&e));
                m.iter()
                    .filter(|(k, v)| k == "EMAIL" && Some(v) != now.as_ref())
                    .map(|(_, v)| format!("{id}: EMAIL {}…", &v[..v.len().min(12)]))
                    .collect::<Vec<_>>()
            })
            .collect();
        if !stale.is_empty() {
            out.mismatches.push(format!(
                "Meta audience of `{export}`: {} members carry an email that is not theirs now (e.g. {:?})",
                stale.len(),
                &stale[..stale.len().min(3)]
            ));
        }
    }

    // 3. CleverTap: the membership property on each profile.
    for (export, property) in [
        ("cart", "cio_cart"),
        ("newsletter", "cio_newsletter"),
        ("vip", "cio_vip"),
    ] {
        let expected = expected_at(export, "clevertap");
        let universe: BTreeSet<String> = if export == "vip" {
            ws.people.iter().filter_map(|p| p.id.clone()).collect()
        } else {
            (0..scale.realtime_people).map(realtime_id).collect()
        };
        let got: BTreeSet<String> = universe
            .iter()
            .filter(|id| {
                sims.clevertap
                    .profile(id)
                    .is_some_and(|p| p.data.get(property) == Some(&Value::Bool(true)))
            })
            .map(|id| key_of(id))
            .collect();
        diff(
            out,
            &format!("CleverTap property `{property}`"),
            &expected,
            &got,
        );
    }

    // 3b. The `vip` tier by lifetime value, and the properties a batch run
    // carries to CleverTap: each member's lifetime value and email now.
    let vip_now: BTreeSet<usize> = ws.members(BATCH[0].1).into_iter().collect();
    let ltv = |i: usize| {
        ws.people[i]
            .attributes
            .get("lifetime_value")
            .and_then(|v| v.parse::<f64>().ok())
    };
    let expected_high: BTreeSet<String> = vip_now
        .iter()
        .filter(|i| ltv(**i).is_some_and(|v| v >= f64::from(VIP_HIGH_MIN)))
        .map(|i| key_of(&batch_id(*i)))
        .collect();
    let got_high: BTreeSet<String> = (0..ws.people.len())
        .map(batch_id)
        .filter(|id| {
            sims.clevertap
                .profile(id)
                .is_some_and(|p| p.data.get(VIP_HIGH_PROPERTY) == Some(&Value::Bool(true)))
        })
        .map(|id| key_of(&id))
        .collect();
    diff(
        out,
        &format!("CleverTap tier property `{VIP_HIGH_PROPERTY}`"),
        &expected_high,
        &got_high,
    );
    let mut stale = Vec::new();
    for &i in &vip_now {
        let id = batch_id(i);
        let profile = sims.clevertap.profile(&id);
        let data = profile.as_ref().map(|p| &p.data);
        let got_ltv = data
            .and_then(|d| d.get("lifetime_value"))
            .and_then(Value::as_f64);
        if got_ltv != ltv(i) {
            stale.push(format!(
                "{id}: lifetime_value {got_ltv:?}, source {:?}",
                ltv(i)
            ));
        }
        // A malformed email is refused (515) and the record sent without it.
        let email = ws.people[i].email.clone().unwrap_or_default();
        let got_email = data.and_then(|d| d.get("Email")).and_then(Value::as_str);
        if !email.contains("@@") && got_email != Some(email.as_str()) {
            stale.push(format!("{id}: Email is not the source's"));
        }
    }
    if !stale.is_empty() {
        out.mismatches.push(format!(
            "CleverTap profiles of `vip`: {} properties differ from the source's (e.g. {:?})",
            stale.len(),
            &stale[..stale.len().min(3)]
        ));
    }

    // 4. Google: the lists' members by hashed email, every digest the list
    // holds (an old address left behind is one too many).
    let mut whose: BTreeMap<String, String> = BTreeMap::new();
    for p in 0..scale.realtime_people {
        if let Some(e) = realtime_email(p) {
            whose.insert(sha256_hex(&e), key_of(&realtime_id(p)));
        }
    }
    for i in 0..ws.people.len() {
        let emails = history.emails_of(i);
        for (n, e) in emails.iter().enumerate() {
            let label = if n + 1 == emails.len() {
                key_of(&batch_id(i))
            } else {
                format!("{} (old email)", key_of(&batch_id(i)))
            };
            whose.insert(sha256_hex(e), label);
        }
    }
    let label = |digest: &String| {
        whose
            .get(digest)
            .cloned()
            .unwrap_or_else(|| format!("unknown digest {}…", &digest[..digest.len().min(12)]))
    };
    for (export, list) in [("purchasers", GOOGLE_PURCHASERS), ("vip", GOOGLE_VIP)] {
        let got: BTreeSet<String> = sims
            .google
            .members(GOOGLE_ACCOUNT, list)
            .into_iter()
            .flatten()
            .map(|(_, v)| label(&v))
            .collect();
        let expected: BTreeSet<String> = expected_at(export, "google")
            .iter()
            .filter_map(|k| email_now(&id_of(k)))
            .map(|e| label(&sha256_hex(&e)))
            .collect();
        diff(out, &format!("Google list of `{export}`"), &expected, &got);
    }

    // 5. Warehouse: replay every row written.
    let mut values = Vec::new();
    for key in warehouse.list("").await? {
        let Some(mut bytes) = warehouse.get(&key).await? else {
            continue;
        };
        // Event objects are gzip-compressed JSON lines.
        if key.ends_with(".gz") {
            let mut plain = Vec::new();
            match std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(bytes.as_slice()),
                &mut plain,
            ) {
                Ok(_) => bytes = plain,
                Err(e) => {
                    out.mismatches
                        .push(format!("warehouse object {key}: not gzip: {e}"));
                    continue;
                }
            }
        }
        for line in String::from_utf8_lossy(&bytes).lines() {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => values.push(v),
                Err(e) => out
                    .mismatches
                    .push(format!("warehouse object {key}: a line is not JSON: {e}")),
            }
        }
    }
    let rows: Vec<_> = values.iter().filter_map(row_of).collect();
    let held = replay(&rows);
    for (export, audience) in [("purchasers", "purchasers"), ("vip", "vip")] {
        let arrivals: Vec<Arrival> = values
            .iter()
            .filter_map(|v| Arrival::of(v, audience))
            .collect();
        let line = arrivals::check(
            &format!("warehouse rows of `{export}`"),
            &arrivals,
            &world_changes(history, export),
            out,
        );
        out.figures.push(line);
        let got = held.get(audience).cloned().unwrap_or_default();
        diff(
            out,
            &format!("warehouse table of `{export}`"),
            &expected_at(export, "warehouse"),
            &got,
        );
    }

    let cut_short: Vec<String> = pipeline
        .killed_carrying
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(d, _)| *d == "clevertap")
        .map(|(_, o)| o.clone())
        .collect();
    super::events::compare(sims, history, &values, &cut_short, out);

    // 6. Webhook: replay every op received.
    let ops = sims.hook.ops();
    let rows: Vec<_> = ops.iter().filter_map(row_of).collect();
    let held = replay(&rows);
    for (export, audience) in [("newsletter", "newsletter"), ("winback", "winback")] {
        let arrivals: Vec<Arrival> = ops
            .iter()
            .filter_map(|v| Arrival::of(v, audience))
            .collect();
        let line = arrivals::check(
            &format!("webhook receiver's `{export}`"),
            &arrivals,
            &world_changes(history, export),
            out,
        );
        out.figures.push(line);
        let got = held.get(audience).cloned().unwrap_or_default();
        diff(
            out,
            &format!("webhook receiver's `{export}`"),
            &expected_at(export, "hook"),
            &got,
        );
    }

    // 7. Counters: every op enqueued reached exactly one outcome, once.
    let exports: Vec<&str> = REALTIME
        .iter()
        .copied()
        .chain(BATCH.iter().map(|(e, _)| *e))
        .chain(EVENT_EXPORTS)
        .collect();
    let mut line = Vec::new();
    for destination in DESTINATIONS {
        let sent = pipeline.queue.sent(destination);
        for export in &exports {
            let enqueued: i64 = sent
                .values()
                .filter(|j| j.export == *export)
                .map(|j| j.ops as i64)
                .sum();
            if enqueued == 0 {
                continue;
            }
            let c = pipeline
                .state
                .get_counters(&CounterScope::delivery(export, destination))
                .await?;
            let get = |k: &str| c.get(k).copied().unwrap_or(0);
            let settled = get(counter::ACCEPTED)
                + get(counter::REJECTED)
                + get(counter::UNMATCHED)
                + get(counter::INVALID)
                + get(counter::SUPERSEDED);
            line.push(format!(
                "{export}→{destination}: enqueued {enqueued} = accepted {} + rejected {} + unmatched {} + invalid {} + superseded {} (duplicates {}, dead-lettered {})",
                get(counter::ACCEPTED),
                get(counter::REJECTED),
                get(counter::UNMATCHED),
                get(counter::INVALID),
                get(counter::SUPERSEDED),
                get(counter::JOBS_DUPLICATE),
                get(counter::JOBS_DEAD)
            ));
            if settled != enqueued {
                out.mismatches.push(format!(
                    "counters of {export}→{destination}: {enqueued} ops enqueued, {settled} settled ({c:?})"
                ));
            }
            if get(counter::SENT) != get(counter::ACCEPTED) + get(counter::REJECTED) {
                out.mismatches.push(format!(
                    "counters of {export}→{destination}: sent ≠ accepted + rejected ({c:?})"
                ));
            }
            let logged = rejections
                .get(&(export.to_string(), destination.to_string()))
                .map_or(0, |r| r.len() as i64);
            let refused_people =
                get(counter::REJECTED) + get(counter::UNMATCHED) + get(counter::INVALID);
            if logged > refused_people {
                out.mismatches.push(format!(
                    "{export}→{destination}: {logged} people logged refused, counters say {refused_people}"
                ));
            }
        }
    }
    out.figures.extend(line);
    let refused: usize = rejections.values().map(BTreeMap::len).sum();
    let reasons: BTreeSet<&str> = rejections
        .values()
        .flat_map(|r| r.values().map(String::as_str))
        .collect();
    out.figures.push(format!(
        "people refused or unmatched at a destination, each with its reason: {refused} ({} distinct reasons: {:?})",
        reasons.len(),
        reasons.iter().take(6).collect::<Vec<_>>()
    ));
    Ok(())
}
