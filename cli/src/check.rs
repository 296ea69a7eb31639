//! `dataout check`: the weekly check from the seeds, on a local state dir
//! or a deployed stack. One line per check, PASS / FAIL / SKIP and why;
//! the command exits non-zero when any line fails, so a schedule or CI can
//! run it.
//!
//! * **suppression** — for every `suppress` rule (export E must never
//!   contain members of S) and every destination of E: how many members of
//!   S are members of E in our state, and so were sent to that destination
//!   as members of E (`dataout::report::overlap`: matched on any shared
//!   identifier; counts only, never an address or a number). Any overlap
//!   fails. The destinations' own member lists are not read back (their
//!   APIs give counts at best), so "at the destination" means what we told
//!   it; the line says how many members that destination accepted.
//! * **freshness** — every batch export (`cadence.every`) has a finished
//!   run no older than its cadence plus a grace: `grace_pct` of the cadence
//!   (default 50 %), at least `min_grace` (default 15 minutes) — a run
//!   takes time and schedules start late, a whole missed tick does not
//!   pass. Realtime-only exports have no cadence to be late against (SKIP).
//! * **growth** — the export's size (our members) inside its size band
//!   (`guard_rails.size`), the member count of its latest finished run
//!   against the previous finished run and against the last finished run
//!   at least a week older, both within `max_churn_pct` (the same bound the
//!   guard rail holds a single run to), and the latest run not held by a
//!   guard rail. An export with no bounds set is skipped.

use std::fmt;

use dataout::domain::model::{Millis, RunRecord, RunStatus};
use dataout::domain::spec::{ActivationSpec, ExportSpec};
use dataout::ports::StateStore;
use dataout::report::suppression_overlaps;

const MINUTE: Millis = 60_000;
const WEEK: Millis = 7 * 24 * 60 * MINUTE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        })
    }
}

/// One printed line.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckLine {
    pub check: &'static str,
    pub subject: String,
    pub verdict: Verdict,
    pub why: String,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  {:<11}  {}: {}",
            self.verdict, self.check, self.subject, self.why
        )
    }
}

#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Grace after the cadence, as a share of it (percent).
    pub grace_pct: u32,
    /// The smallest grace, in minutes.
    pub min_grace_minutes: u32,
    /// Runs read per export.
    pub runs_per_export: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            grace_pct: 50,
            min_grace_minutes: 15,
            runs_per_export: 500,
        }
    }
}

fn age(ms: Millis) -> String {
    let minutes = ms / MINUTE;
    if minutes < 120 {
        format!("{minutes} min")
    } else if minutes < 48 * 60 {
        format!("{:.1} h", ms as f64 / (60 * MINUTE) as f64)
    } else {
        format!("{:.1} days", ms as f64 / (24 * 60 * MINUTE) as f64)
    }
}

fn finished_at(r: &RunRecord) -> Millis {
    r.finished_at.unwrap_or(r.started_at)
}

/// Freshness of one export from its runs (newest first).
pub fn freshness(
    export: &ExportSpec,
    runs: &[RunRecord],
    now: Millis,
    opts: &CheckOptions,
) -> CheckLine {
    let line = |verdict, why: String| CheckLine {
        check: "freshness",
        subject: export.name.clone(),
        verdict,
        why,
    };
    let Some(every) = export.cadence.every_minutes else {
        return line(
            Verdict::Skip,
            "realtime only: no batch cadence to be late against".into(),
        );
    };
    let cadence = i64::from(every) * MINUTE;
    let grace =
        (cadence * i64::from(opts.grace_pct) / 100).max(i64::from(opts.min_grace_minutes) * MINUTE);
    let allowed = cadence + grace;
    let latest_note = match runs.first().map(|r| &r.status) {
        Some(RunStatus::Held { reason }) => format!("; its latest run is held ({reason})"),
        Some(RunStatus::Failed { reason }) => format!("; its latest run failed ({reason})"),
        _ => String::new(),
    };
    let Some(last) = runs.iter().find(|r| r.status == RunStatus::Finished) else {
        return line(
            Verdict::Fail,
            format!("no finished run yet (cadence every {every} min){latest_note}"),
        );
    };
    let since = now - finished_at(last);
    if since > allowed {
        line(
            Verdict::Fail,
            format!(
                "last finished run {} ago ({}), more than the cadence of {every} min plus {} min grace{latest_note}",
                age(since),
                last.run_id,
                grace / MINUTE
            ),
        )
    } else {
        line(
            Verdict::Pass,
            format!(
                "last finished run {} ago, within {every} min + {} min grace",
                age(since.max(0)),
                grace / MINUTE
            ),
        )
    }
}

fn change_pct(from: u64, to: u64) -> f64 {
    (to as f64 - from as f64) * 100.0 / (from.max(1) as f64)
}

/// Growth and decay of one export: its size now (`members`, our state)
/// and its runs (newest first).
pub fn growth(export: &ExportSpec, members: u64, runs: &[RunRecord]) -> CheckLine {
    let rails = &export.guard_rails;
    let mut line = CheckLine {
        check: "growth",
        subject: export.name.clone(),
        verdict: Verdict::Pass,
        why: String::new(),
    };
    if rails.min_size.is_none() && rails.max_size.is_none() && rails.max_churn_pct.is_none() {
        line.verdict = Verdict::Skip;
        line.why = format!("{members} members; no size band or max_churn_pct set");
        return line;
    }
    let mut fails = Vec::new();
    let mut facts = vec![format!("{members} members")];
    if let Some(min) = rails.min_size.filter(|m| members < *m) {
        fails.push(format!("{members} members is under the size band's {min}"));
    }
    if let Some(max) = rails.max_size.filter(|m| members > *m) {
        fails.push(format!("{members} members is over the size band's {max}"));
    }
    if rails.min_size.is_some() || rails.max_size.is_some() {
        facts.push(format!(
            "band [{}, {}]",
            rails
                .min_size
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            rails
                .max_size
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        ));
    }
    if let Some(RunStatus::Held { reason }) = runs.first().map(|r| &r.status) {
        fails.push(format!(
            "latest run {} is held by a guard rail ({reason})",
            runs[0].run_id
        ));
    }
    let finished: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Finished)
        .collect();
    if let (Some(max), Some(latest)) = (rails.max_churn_pct, finished.first()) {
        let now_n = latest.stats.members;
        let compare = [
            ("previous run", finished.get(1).copied()),
            (
                "run a week before",
                finished
                    .iter()
                    .copied()
                    .find(|r| r.started_at <= latest.started_at - WEEK),
            ),
        ];
        for (what, other) in compare {
            let Some(other) = other else {
                facts.push(format!("no {what} to compare"));
                continue;
            };
            let pct = change_pct(other.stats.members, now_n);
            let text = format!("{:+.1}% vs {what} ({} → {now_n})", pct, other.stats.members);
            if pct.abs() > max {
                fails.push(format!("{text} is beyond max_churn_pct {max}%"));
            } else {
                facts.push(text);
            }
        }
    }
    if fails.is_empty() {
        line.why = facts.join(", ");
    } else {
        line.verdict = Verdict::Fail;
        line.why = fails.join("; ");
    }
    line
}

/// Every check of the spec against the state.
pub async fn run_checks(
    state: &dyn StateStore,
    spec: &ActivationSpec,
    now: Millis,
    opts: &CheckOptions,
) -> anyhow::Result<Vec<CheckLine>> {
    let mut lines = Vec::new();
    let overlaps = suppression_overlaps(state, spec).await?;
    if overlaps.is_empty() {
        lines.push(CheckLine {
            check: "suppression",
            subject: "spec".into(),
            verdict: Verdict::Skip,
            why: "no export lists a suppression export (`suppress`)".into(),
        });
    }
    for o in overlaps {
        let at = if o.destination.is_empty() {
            "(no destination)".to_string()
        } else {
            o.destination.clone()
        };
        let subject = format!("{} suppresses {} @ {at}", o.export, o.suppression);
        let (verdict, why) = if o.people > 0 {
            (
                Verdict::Fail,
                format!(
                    "{} member(s) of {} are members of {} and so targeted at {at} ({} members of {}, {} accepted there)",
                    o.people, o.suppression, o.export, o.export_members, o.export, o.delivered_members
                ),
            )
        } else {
            (
                Verdict::Pass,
                format!(
                    "none of the {} members of {} is among the {} members of {} ({} accepted at {at})",
                    o.suppression_members, o.suppression, o.export_members, o.export, o.delivered_members
                ),
            )
        };
        lines.push(CheckLine {
            check: "suppression",
            subject,
            verdict,
            why,
        });
    }
    for export in spec.exports.values() {
        let runs = state.list_runs(&export.name, opts.runs_per_export).await?;
        lines.push(freshness(export, &runs, now, opts));
        let members = state.count_members(&export.name).await?;
        lines.push(growth(export, members, &runs));
    }
    Ok(lines)
}

/// The command: print every line, exit non-zero on any failure.
pub async fn command(
    target: &crate::ops::Target,
    opts: &CheckOptions,
) -> anyhow::Result<std::process::ExitCode> {
    use dataout::ports::{Clock, SystemClock};
    let spec = target.spec().await?;
    let state = target.state()?;
    let lines = run_checks(state.as_ref(), &spec, SystemClock.now_ms(), opts).await?;
    for line in &lines {
        println!("{line}");
    }
    let failed = lines.iter().filter(|l| l.verdict == Verdict::Fail).count();
    let passed = lines.iter().filter(|l| l.verdict == Verdict::Pass).count();
    println!(
        "{} check(s): {passed} passed, {failed} failed, {} skipped",
        lines.len(),
        lines.len() - passed - failed
    );
    Ok(if failed > 0 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataout::domain::model::{RunKind, RunStats};
    use dataout::domain::spec::GuardRails;

    fn export(every: Option<u32>, rails: GuardRails) -> ExportSpec {
        let yaml = "version: 1\ndestinations:\n  wh:\n    kind: warehouse\n    location: ./out\nexports:\n  vips:\n    source: {segment: 1}\n    mode: membership\n    cadence: {every: 60m}\n    identity: {golden: id}\n    destinations:\n      wh:\n";
        let spec = dataout::domain::config::parse_spec(yaml, "t.yaml").unwrap();
        let mut e = spec.exports["vips"].clone();
        e.cadence.every_minutes = every;
        e.guard_rails = rails;
        e
    }

    fn run(id: &str, at: Millis, status: RunStatus, members: u64) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            export: "vips".into(),
            kind: RunKind::Batch,
            status,
            config_hash: "h".into(),
            started_at: at,
            finished_at: Some(at + MINUTE),
            checkpoint: Default::default(),
            stats: RunStats {
                members,
                ..RunStats::default()
            },
        }
    }

    const NOW: Millis = 1_800_000_000_000;

    #[test]
    fn a_run_older_than_cadence_plus_grace_is_stale_and_a_recent_one_is_not() {
        let e = export(Some(60), GuardRails::default());
        let opts = CheckOptions::default();
        // 60 min cadence + 30 min grace: finished 80 min ago passes.
        let fresh = freshness(
            &e,
            &[run("r1", NOW - 81 * MINUTE, RunStatus::Finished, 1)],
            NOW,
            &opts,
        );
        assert_eq!(fresh.verdict, Verdict::Pass, "{fresh}");
        let stale = freshness(
            &e,
            &[run("r1", NOW - 100 * MINUTE, RunStatus::Finished, 1)],
            NOW,
            &opts,
        );
        assert_eq!(stale.verdict, Verdict::Fail, "{stale}");
        // A held newer run does not count as a successful one.
        let held = freshness(
            &e,
            &[
                run(
                    "r2",
                    NOW - 5 * MINUTE,
                    RunStatus::Held {
                        reason: "churn".into(),
                    },
                    1,
                ),
                run("r1", NOW - 100 * MINUTE, RunStatus::Finished, 1),
            ],
            NOW,
            &opts,
        );
        assert_eq!(held.verdict, Verdict::Fail, "{held}");
        assert!(held.why.contains("held"), "{held}");
        let never = freshness(&e, &[], NOW, &opts);
        assert_eq!(never.verdict, Verdict::Fail);
        let realtime = freshness(&export(None, GuardRails::default()), &[], NOW, &opts);
        assert_eq!(realtime.verdict, Verdict::Skip);
    }

    #[test]
    fn growth_beyond_max_churn_or_outside_the_band_fails() {
        let rails = GuardRails {
            min_size: Some(50),
            max_size: Some(500),
            max_churn_pct: Some(20.0),
            ..GuardRails::default()
        };
        let e = export(Some(60), rails);
        let steady = [
            run("r2", NOW - MINUTE, RunStatus::Finished, 110),
            run("r1", NOW - 61 * MINUTE, RunStatus::Finished, 100),
        ];
        assert_eq!(growth(&e, 110, &steady).verdict, Verdict::Pass);
        let jump = [
            run("r2", NOW - MINUTE, RunStatus::Finished, 150),
            run("r1", NOW - 61 * MINUTE, RunStatus::Finished, 100),
        ];
        let line = growth(&e, 150, &jump);
        assert_eq!(line.verdict, Verdict::Fail, "{line}");
        assert!(line.why.contains("+50.0% vs previous run"), "{line}");
        // Slow growth run to run, too much over the week.
        let weekly = [
            run("r3", NOW, RunStatus::Finished, 140),
            run("r2", NOW - WEEK + MINUTE, RunStatus::Finished, 130),
            run("r1", NOW - WEEK - MINUTE, RunStatus::Finished, 100),
        ];
        let line = growth(&e, 140, &weekly);
        assert_eq!(line.verdict, Verdict::Fail, "{line}");
        assert!(line.why.contains("run a week before"), "{line}");
        let small = growth(&e, 10, &steady);
        assert!(small.why.contains("under the size band"), "{small}");
        let none = growth(&export(Some(60), GuardRails::default()), 10, &steady);
        assert_eq!(none.verdict, Verdict::Skip);
    }
}
