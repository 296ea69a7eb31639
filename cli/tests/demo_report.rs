//! `dataout demo` as a new user runs it, and checked against the world it
//! runs in. As a process at `RUST_LOG=debug`: it succeeds, and its whole
//! output holds no email address and no phone number. In process, on
//! simulators the test keeps: each platform holds exactly the Customer.io
//! segments' members (the source as the Customer.io simulator has it at
//! the end) less those the simulated world leaves unmatched, computed here
//! from the source's people and the simulators' population models, never
//! from our state, counters or logs; and the stored report's counts are
//! those expected sets and the platforms' own counts, with no alarm.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::domain::spec::{DestinationSettings, ExportMode, ExportSource, MatchKey};
use dataout::ports::StateStore;
use dataout_cli::demo::{run_on, start_demo_env, SimEnv};
use dataout_sim::customerio::{CioWorkspace, SimPerson};
use dataout_sim::platform_keys::{
    clevertap_email_identity, google_email_sha256, meta_email_sha256,
};

const DEMO_PEOPLE: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_as_a_process_succeeds_and_logs_no_email_or_phone() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_dataout"))
        .args(["demo", "--out"])
        .arg(out.path())
        .env("RUST_LOG", "debug")
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "demo failed: {}\n{text}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(text.contains("Events and conversions:"), "{text}");
    let logs = String::from_utf8_lossy(&run.stderr);
    assert!(logs.lines().count() > 200, "debug logs expected on stderr");
    for (stream, body) in [("stdout", &text), ("stderr", &logs)] {
        for line in body.lines() {
            assert!(
                !has_email(line),
                "an email address in the demo's {stream}: {line}"
            );
            assert!(
                !has_phone(line),
                "a phone number in the demo's {stream}: {line}"
            );
        }
    }
    // The stream's four orders, as the simulators report holding them.
    assert!(
        text.contains("Meta pixel 555000111: 4 distinct events (4 received)"),
        "{text}"
    );
    assert!(
        text.contains("4 conversions counted (4 received)"),
        "{text}"
    );
}

/// A segment member as each platform keys them.
struct Expected {
    /// Meta `EMAIL` digests of the members Meta's population matches.
    meta: BTreeSet<String>,
    /// Data Manager `emailAddress` digests of every member (the list holds
    /// unmatched members too; only its size leaves them out).
    google: BTreeSet<String>,
    /// CleverTap identities (`id`, else the email).
    clevertap: BTreeSet<String>,
    /// Members in all, after suppression.
    members: usize,
}

/// Members of a segment export in the source `ws`, less the members of the
/// exports it suppresses (their segments in the same source).
fn source_members<'a>(env: &SimEnv, ws: &'a CioWorkspace, export: &str) -> Vec<&'a SimPerson> {
    let segment_of = |name: &str| match env.spec.export(name).map(|e| &e.source) {
        Some(ExportSource::Segment { segment_id }) => Some(*segment_id),
        _ => None,
    };
    let Some(segment) = segment_of(export) else {
        return Vec::new();
    };
    let suppressed: BTreeSet<usize> = env
        .spec
        .export(export)
        .expect("export")
        .suppress
        .iter()
        .filter_map(|s| segment_of(s))
        .flat_map(|seg| ws.members(seg))
        .collect();
    ws.members(segment)
        .into_iter()
        .filter(|i| !suppressed.contains(i))
        .map(|i| &ws.people[i])
        .collect()
}

fn expected(env: &SimEnv, ws: &CioWorkspace, export: &str) -> Expected {
    let people = source_members(env, ws, export);
    let email = |p: &SimPerson| p.email.clone().expect("every demo person has an email");
    // Every Meta binding of the example spec sends EXTERN_ID (listed, or
    // by default), so Meta's population model decides a person by their id,
    // and by their email digest when they have none.
    let meta_matches = |p: &SimPerson| {
        let row: BTreeSet<(String, String)> = match &p.id {
            Some(id) => [("EXTERN_ID".to_string(), id.clone())].into(),
            None => [("EMAIL".to_string(), meta_email_sha256(&email(p)))].into(),
        };
        env.meta.would_match(&row)
    };
    Expected {
        meta: people
            .iter()
            .filter(|p| meta_matches(p))
            .map(|p| meta_email_sha256(&email(p)))
            .collect(),
        google: people
            .iter()
            .map(|p| google_email_sha256(&email(p)))
            .collect(),
        clevertap: people
            .iter()
            .map(|p| {
                p.id.clone()
                    .unwrap_or_else(|| clevertap_email_identity(&email(p)))
            })
            .collect(),
        members: people.len(),
    }
}

fn values_of(members: &[BTreeSet<(String, String)>], key: &str) -> BTreeSet<String> {
    members
        .iter()
        .flat_map(|m| m.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()))
        .collect()
}

/// "n missing, m extra" when two sets differ (never their values: digests
/// of people's emails).
fn same_set(what: &str, held: &BTreeSet<String>, want: &BTreeSet<String>) -> Result<(), String> {
    let missing = want.difference(held).count();
    let extra = held.difference(want).count();
    if missing + extra == 0 {
        Ok(())
    } else {
        Err(format!(
            "{what}: {missing} of the source's {} missing, {extra} not in the source",
            want.len()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_leaves_each_platform_holding_the_source_segments_less_the_unmatched() {
    let out = tempfile::tempdir().expect("tempdir");
    let env = start_demo_env(DEMO_PEOPLE, out.path())
        .await
        .expect("simulators");
    run_on(&env, out.path()).await.expect("demo");
    env.google.process_now();
    let ws = env.cio.handle.snapshot();

    let mut failures = Vec::new();
    let mut expected_members: BTreeMap<(String, String), usize> = BTreeMap::new();
    for export in env.spec.exports.values() {
        if export.mode != ExportMode::Membership
            || !matches!(export.source, ExportSource::Segment { .. })
        {
            continue;
        }
        let want = expected(&env, &ws, &export.name);
        for binding in &export.destinations {
            let Some(dest) = env.spec.destination(&binding.destination) else {
                continue;
            };
            let what = format!("{} / {}", export.name, binding.destination);
            let check = match &dest.settings {
                DestinationSettings::MetaAudience { .. } => {
                    assert!(
                        binding.keys.is_empty() || binding.keys.contains(&MatchKey::ExternId),
                        "{what}: the expectation assumes EXTERN_ID is sent"
                    );
                    let held = values_of(&env.meta.members(&binding.audience), "EMAIL");
                    same_set(&what, &held, &want.meta)
                }
                DestinationSettings::GoogleDataManager {
                    operating_account_id,
                    ..
                } => {
                    let members = env.google.members(operating_account_id, &binding.audience);
                    let held = values_of(&members, "emailAddress");
                    if held.len() != members.len() {
                        Err(format!("{what}: a member without exactly one email"))
                    } else {
                        same_set(&what, &held, &want.google)
                    }
                }
                DestinationSettings::Clevertap { .. } => {
                    let held: BTreeSet<String> = env
                        .clevertap
                        .profiles()
                        .into_iter()
                        .filter(|p| {
                            p.data.get(&binding.audience) == Some(&serde_json::Value::Bool(true))
                        })
                        .map(|p| p.key)
                        .collect();
                    same_set(&what, &held, &want.clevertap)
                }
                _ => continue,
            };
            if let Err(e) = check {
                failures.push(e);
            }
            expected_members.insert(
                (export.name.clone(), binding.destination.clone()),
                want.members,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(expected_members.len() >= 15, "{expected_members:?}");

    // The stored report: no alarm; for Meta and Google, delivered is the
    // source's members and the destination's count is the platform's own.
    let state =
        EmbeddedStateStore::open(&out.path().join("state").join("state.redb")).expect("demo state");
    let report = state
        .latest_report()
        .await
        .expect("read")
        .expect("a report");
    let mut platform_rows = 0;
    for row in &report.rows {
        assert!(
            !row.alarm,
            "{} / {} alarms: {:?}",
            row.export, row.destination, row.check.alarm_reasons
        );
        let key = (row.export.clone(), row.destination.clone());
        let Some(members) = expected_members.get(&key) else {
            continue;
        };
        let export = env.spec.export(&row.export).expect("export");
        let binding = export.binding(&row.destination).expect("binding");
        let platform = match &env
            .spec
            .destination(&row.destination)
            .expect("dest")
            .settings
        {
            DestinationSettings::MetaAudience { .. } => {
                Some(env.meta.member_count(&binding.audience) as u64)
            }
            DestinationSettings::GoogleDataManager {
                operating_account_id,
                ..
            } => Some(env.google.size(operating_account_id, &binding.audience)),
            _ => None,
        };
        let Some(platform) = platform else { continue };
        platform_rows += 1;
        assert_eq!(
            (row.delivered_members, row.destination_count),
            (*members as i64, Some(platform)),
            "{} / {}: delivered and the platform's count",
            row.export,
            row.destination
        );
    }
    assert!(platform_rows >= 8, "{platform_rows} Meta / Google rows");

    // Every order the stream carries reached Meta and Google once.
    let orders = stream_orders();
    assert_eq!(orders.len(), 4, "the demo stream's orders");
    for dest in ["meta_capi", "google"] {
        let row = report
            .rows
            .iter()
            .find(|r| r.export == "purchases" && r.destination == dest)
            .unwrap_or_else(|| panic!("no purchases / {dest} row"));
        assert!(row.events);
        assert_eq!(
            (row.accepted, row.rejected, row.invalid),
            (orders.len() as u64, 0, 0),
            "{row:?}"
        );
    }
    assert_eq!(env.meta.capi_events("555000111").len(), orders.len());
    assert_eq!(
        env.google.conversions("1234567890", "555000111").len(),
        orders.len()
    );
}

/// Distinct order ids of the `order_placed` events in the demo stream.
fn stream_orders() -> BTreeSet<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/customerio/demo-stream.jsonl"
    ))
    .expect("the demo stream");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["body"]["event"]["name"] == "order_placed")
        .filter_map(|l| {
            l["body"]["event"]["data"]["order_id"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

/// `local@domain.tld` anywhere in the line.
fn has_email(line: &str) -> bool {
    line.match_indices('@').any(|(at, _)| {
        let local_ok = line[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c));
        let domain: String = line[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
            .collect();
        local_ok && domain.contains('.') && !domain.ends_with('.')
    })
}

/// An E.164 number (`+` and 10 to 15 digits), as the demo's people have.
fn has_phone(line: &str) -> bool {
    line.match_indices('+').any(|(i, _)| {
        let digits = line[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        (10..=15).contains(&digits)
    })
}

#[test]
fn the_log_scanners_see_what_they_look_for() {
    assert!(has_email("person=ann.lee+3@example.com sent"));
    assert!(!has_email("pk_1a2b3c @ 12:00, user@localhost"));
    assert!(has_phone("phone=+447946000012"));
    assert!(!has_phone("+1 ops, +12345"));
}
