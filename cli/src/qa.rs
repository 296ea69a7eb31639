//! `dataout qa --export <name>`: the export's canary profiles
//! (`test_profiles`) through every destination of the export, for real.
//!
//! Each canary makes three moves, in an order that leaves it as it was
//! found: a canary outside the export enters, has an attribute changed and
//! exits; a canary inside has an attribute changed, exits and enters again
//! with its own attributes. Each move is applied to state as a change
//! (`origin: action`) and delivered at once to every destination, through
//! the same delivery code as the workers (claims, counters, limits). After
//! each delivery the destination is read back where its API allows
//! (CleverTap's profile lookup, the warehouse object); elsewhere its own
//! acknowledgement is the evidence and the report says so. A destination
//! passes when every op of every move was accepted and no read-back
//! disagrees. Latency is the wall time from applying the move to the
//! destination's acknowledgement.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use dataout::destinations::ReadBack;
use dataout::domain::membership::ops_for_export;
use dataout::domain::model::{
    ChangeKind, ChangeOrigin, DeliveryOp, Identifiers, MembershipChange, OpKind, Person,
};
use dataout::domain::spec::{ExportMode, ExportSpec, Transform};
use dataout::local::LocalRuntime;
use dataout::pipeline::changes::{apply_one, new_job};
use dataout::pipeline::deliver::deliver_jobs;
use dataout::ports::{ReceivedJob, SegmentSource};
use serde::Serialize;
use serde_json::Value;

/// How long a read-back that the platform is still processing is retried.
const READ_BACK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// A canary's move: its name, the change kind and the raw attributes sent.
type Move = (&'static str, (ChangeKind, BTreeMap<String, Value>));

/// One move of one canary at one destination.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub canary: String,
    pub action: &'static str,
    pub ops: u64,
    pub accepted: u64,
    /// What kept an op from being accepted (outcome counts), if anything.
    pub problem: Option<String>,
    pub read_back: String,
    pub read_back_ok: bool,
    pub latency_ms: u128,
}

/// Every move at one destination, and its verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub destination: String,
    pub pass: bool,
    pub steps: Vec<Step>,
}

/// The canary as the source (or, failing that, our state) knows it.
async fn canary_person(
    rt: &LocalRuntime,
    export: &ExportSpec,
    source: Option<&dyn SegmentSource>,
    id: &str,
) -> anyhow::Result<(Person, bool)> {
    let ids = Identifiers {
        id: Some(id.to_string()),
        ..Default::default()
    };
    let key = ids
        .person_key()
        .ok_or_else(|| anyhow!("canary `{id}`: not a usable id"))?;
    let stored = rt.deps.state.get_membership(&export.name, &key).await?;
    let member = stored.as_ref().is_some_and(|r| r.current.member);
    if let Some(source) = source {
        let found = source
            .attributes(std::slice::from_ref(&ids))
            .await
            .with_context(|| format!("canary `{id}`: reading it from Customer.io"))?;
        if let Some(person) = found.into_iter().next() {
            return Ok((person, member));
        }
    }
    match stored {
        Some(r) => Ok((
            Person {
                ids: r.current.ids.clone(),
                attributes: r.current.attributes.clone(),
            },
            member,
        )),
        None => bail!(
            "canary `{id}` is neither in Customer.io (no App API key set, or no such person) nor in our state"
        ),
    }
}

/// The raw attributes with one allow-listed attribute changed, so the
/// destinations that carry attributes see an update. `None` when the
/// export carries none.
fn changed_attributes(export: &ExportSpec, person: &Person) -> Option<BTreeMap<String, Value>> {
    let spec = export
        .attributes
        .iter()
        .find(|a| matches!(a.transform, Transform::Number | Transform::Identity))?;
    let mut attrs = person.attributes.clone();
    let next = match attrs.get(&spec.from) {
        Some(Value::Number(n)) => Value::from(n.as_f64().unwrap_or(0.0) + 1.0),
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(n) => Value::String(format!("{}", n + 1.0)),
            Err(_) => Value::String(format!("{s} (qa)")),
        },
        _ if spec.transform == Transform::Number => Value::from(1),
        _ => Value::String("qa".into()),
    };
    attrs.insert(spec.from.clone(), next);
    Some(attrs)
}

/// Run the export's canaries through its destinations.
pub async fn run(
    rt: &LocalRuntime,
    source: Option<&dyn SegmentSource>,
    export_name: &str,
) -> anyhow::Result<Vec<Verdict>> {
    let export = rt
        .deps
        .spec
        .export(export_name)
        .ok_or_else(|| anyhow!("no export `{export_name}` in the spec"))?
        .clone();
    if export.mode != ExportMode::Membership && export.mode != ExportMode::Attributes {
        bail!("export `{export_name}` forwards events: qa moves canaries in and out of audiences");
    }
    if export.test_profiles.is_empty() {
        bail!("export `{export_name}` has no test_profiles: list the person ids of its canaries");
    }
    let mut verdicts: BTreeMap<String, Verdict> = export
        .destinations
        .iter()
        .map(|b| {
            (
                b.destination.clone(),
                Verdict {
                    destination: b.destination.clone(),
                    pass: true,
                    steps: Vec::new(),
                },
            )
        })
        .collect();
    let run_id = format!("qa{}", rt.deps.clock.now_ms());
    for id in &export.test_profiles {
        let (person, member) = canary_person(rt, &export, source, id).await?;
        let changed = changed_attributes(&export, &person);
        let enter = |attrs: BTreeMap<String, Value>| (ChangeKind::Enter, attrs);
        let mut moves: Vec<Move> = Vec::new();
        if member {
            if let Some(c) = changed.clone() {
                moves.push(("attribute change", enter(c)));
            }
            moves.push(("exit", (ChangeKind::Exit, BTreeMap::new())));
            moves.push(("enter", enter(person.attributes.clone())));
        } else {
            moves.push(("enter", enter(person.attributes.clone())));
            if let Some(c) = changed {
                moves.push(("attribute change", enter(c)));
            }
            moves.push(("exit", (ChangeKind::Exit, BTreeMap::new())));
        }
        for (n, (action, (kind, attributes))) in moves.into_iter().enumerate() {
            let started = Instant::now();
            let now = rt.deps.clock.now_ms();
            let change = MembershipChange {
                export: export.name.clone(),
                person: Person {
                    ids: person.ids.clone(),
                    attributes,
                },
                kind,
                // Strictly later than anything before, so it is never stale.
                source_ts: now.max(1) + n as i64,
                intake_ts: now,
                origin: ChangeOrigin::Action,
                change_id: format!("{run_id}:{id}:{n}"),
            };
            let (written, _) = apply_one(&rt.deps, &change).await?;
            let Some(record) = written else {
                bail!("canary `{id}`: the {action} was not applied (stale or unidentifiable)");
            };
            let held_out = kind == ChangeKind::Enter && !record.current.member;
            for binding in &export.destinations {
                let Some(dest) = rt.destinations.get(&binding.destination) else {
                    continue;
                };
                let verdict = verdicts
                    .get_mut(&binding.destination)
                    .ok_or_else(|| anyhow!("no verdict for `{}`", binding.destination))?;
                let ops = ops_for_export(&export, &record, binding, dest.kind());
                if ops.is_empty() {
                    let why = if held_out {
                        "not entered: a suppressing export holds the person, so nothing is sent"
                    } else {
                        "nothing to send (the destination carries no such change)"
                    };
                    verdict.steps.push(Step {
                        canary: id.clone(),
                        action,
                        ops: 0,
                        accepted: 0,
                        problem: None,
                        read_back: why.into(),
                        read_back_ok: true,
                        latency_ms: started.elapsed().as_millis(),
                    });
                    continue;
                }
                let job = new_job(
                    &rt.deps,
                    &export,
                    &binding.destination,
                    &change.change_id,
                    None,
                    ops.clone(),
                );
                let received = ReceivedJob {
                    message_id: job.job_id.clone(),
                    receipt: job.job_id.clone(),
                    receive_count: 1,
                    job,
                };
                let (_, totals) = deliver_jobs(
                    &rt.deps,
                    dest,
                    std::slice::from_ref(&received),
                    &rt.delivery,
                )
                .await;
                let latency_ms = started.elapsed().as_millis();
                let sent = ops.len() as u64;
                let problem = (totals.accepted != sent).then(|| {
                    format!(
                        "accepted {} of {sent} (rejected {}, unmatched {}, invalid {}, to retry {})",
                        totals.accepted,
                        totals.rejected,
                        totals.unmatched,
                        totals.invalid,
                        totals.jobs_retry
                    )
                });
                // The person's own audience, not a tier's, is read back.
                let main: &DeliveryOp = ops
                    .iter()
                    .find(|o| o.tier.is_none() && o.op != OpKind::Event)
                    .unwrap_or(&ops[0]);
                // A platform still processing (Google) is asked again for
                // a while; past it, the step says so and does not fail.
                let mut answer = dest.read_back(&export, binding, main).await;
                let asking_until = Instant::now() + READ_BACK_PATIENCE;
                while matches!(answer, Ok(ReadBack::Pending(_))) && Instant::now() < asking_until {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    answer = dest.read_back(&export, binding, main).await;
                }
                let (read_back, read_back_ok) = match answer {
                    Ok(ReadBack::Agrees(s)) => (format!("read back: {s}"), true),
                    Ok(ReadBack::Pending(s)) => (
                        format!("acknowledged; {s} after {} s", READ_BACK_PATIENCE.as_secs()),
                        true,
                    ),
                    Ok(ReadBack::Disagrees(s)) => (format!("READ BACK DISAGREES: {s}"), false),
                    Ok(ReadBack::NotReadable(s)) => (format!("acknowledged; {s}"), true),
                    Err(e) => (format!("read back failed: {e}"), false),
                };
                verdict.pass &= problem.is_none() && read_back_ok;
                verdict.steps.push(Step {
                    canary: id.clone(),
                    action,
                    ops: sent,
                    accepted: totals.accepted,
                    problem,
                    read_back,
                    read_back_ok,
                    latency_ms,
                });
            }
        }
    }
    // A destination no canary's op reached was not tested.
    for v in verdicts.values_mut() {
        if v.steps.iter().all(|s| s.ops == 0) {
            v.pass = false;
            v.steps.push(Step {
                canary: "-".into(),
                action: "-",
                ops: 0,
                accepted: 0,
                problem: Some("no canary reached this destination: add a test profile that can enter the export".into()),
                read_back: String::new(),
                read_back_ok: false,
                latency_ms: 0,
            });
        }
    }
    Ok(verdicts.into_values().collect())
}

/// The verdicts for a terminal.
pub fn render(export: &str, verdicts: &[Verdict]) -> String {
    let mut out = format!("qa {export}: canaries through every destination\n");
    for v in verdicts {
        out.push_str(&format!(
            "{} {}\n",
            if v.pass { "PASS" } else { "FAIL" },
            v.destination
        ));
        for s in &v.steps {
            out.push_str(&format!(
                "  {:<12} {:<17} {:>3} ops {:>3} accepted {:>6} ms  {}{}\n",
                s.canary,
                s.action,
                s.ops,
                s.accepted,
                s.latency_ms,
                s.problem
                    .as_deref()
                    .map(|p| format!("{p}; "))
                    .unwrap_or_default(),
                s.read_back
            ));
        }
    }
    out
}
