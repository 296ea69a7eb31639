//! `dataout demo` as a new user runs it: its stored report says, from the
//! platforms' own numbers, that Meta and Google hold the matched share of
//! what we delivered (the simulators leave 20 % of people unmatched), that
//! nothing drifted beyond tolerance, and that every conversion reached its
//! platform. Its whole output at `RUST_LOG=debug` holds no email address
//! and no phone number.

use std::process::Command;

use dataout::adapters::embedded::state::EmbeddedStateStore;
use dataout::ports::StateStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_reports_the_platforms_match_rate_near_eighty_percent_and_no_alarm() {
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
