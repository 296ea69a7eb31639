//! `dataout demo` as a new user runs it: its stored report says, from the
//! platforms' own numbers, that Meta and Google hold the matched share of
//! what we delivered (the simulators leave 20 % of people unmatched), that
//! nothing drifted beyond tolerance, and that every conversion reached its
//! platform.

use std::process::Command;

use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::ports::StateStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_reports_the_platforms_match_rate_near_eighty_percent_and_no_alarm() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_dataout"))
        .args(["demo", "--out"])
        .arg(out.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "demo failed: {}\n{text}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(text.contains("Events and conversions:"), "{text}");

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
        let platform = matches!(row.destination.as_str(), "meta" | "google");
        if !platform || row.events || row.delivered_members < 50 {
            continue;
        }
        platform_rows += 1;
        // Everything we hold was delivered ...
        assert_eq!(
            row.delivered_members, row.state_count as i64,
            "{} / {}",
            row.export, row.destination
        );
        // ... and the platform counts the matched share of it, by its own
        // numbers (Meta's sessions, Google's list size).
        let rate = row
            .match_rate
            .unwrap_or_else(|| panic!("{} / {}: no match rate", row.export, row.destination));
        assert!(
            (0.70..=0.90).contains(&rate),
            "{} / {}: match {rate}",
            row.export,
            row.destination
        );
        let count = row.destination_count.expect("the platform's count") as i64;
        assert!(count < row.delivered_members, "{row:?}");
    }
    assert!(platform_rows >= 8, "{platform_rows} Meta / Google rows");

    // Every conversion the stream carried reached Meta and Google once.
    for dest in ["meta_capi", "google"] {
        let row = report
            .rows
            .iter()
            .find(|r| r.export == "purchases" && r.destination == dest)
            .unwrap_or_else(|| panic!("no purchases / {dest} row"));
        assert!(row.events);
        assert_eq!(
            (row.accepted, row.rejected, row.invalid),
            (4, 0, 0),
            "{row:?}"
        );
    }
    assert!(
        text.contains("Meta pixel 555000111: 4 distinct events (4 received)"),
        "{text}"
    );
    assert!(
        text.contains("4 conversions counted (4 received)"),
        "{text}"
    );
}
