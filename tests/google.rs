//! Google through the Data Manager API end to end: batch runs → delivery
//! workers → the Data Manager simulator, on the embedded adapters.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataout::ports::SystemClock;
use dataout_cli::demo::SimEnv;
use dataout_sim::customerio::{SEGMENT_CART_ABANDONERS, SEGMENT_RECENT_PURCHASERS};
use dataout_sim::platform_keys::google_email_sha256;

#[tokio::test]
async fn google_list_holds_exactly_the_source_segments_members_and_counts_only_the_matched_share() {
    let dir = tempfile::tempdir().unwrap();
    let env = SimEnv::start(3000, &dir.path().join("warehouse"))
        .await
        .unwrap();
    let rt = Arc::new(
        env.runtime(&dir.path().join("state"), Arc::new(SystemClock))
            .unwrap(),
    );
    let source = env.source().unwrap();
    for export in ["cart_abandoners", "recent_purchasers"] {
        rt.run_batch(&source, export).await.unwrap();
    }
    rt.start_workers().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let depth = rt.deps.queue.depth("google").await.unwrap();
        if depth.visible == 0 && depth.in_flight == 0 {
            assert_eq!(depth.dead, 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "google queue never settled: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Processing is asynchronous at Google: finish what is still pending.
    env.google.process_now();

    // The source: the Customer.io simulator's segments. cart_abandoners
    // suppresses recent purchasers (the example spec); every demo person
    // has an email, and the spec grants consent, so Google is sent every
    // member, matched or not.
    let ws = env.cio.handle.snapshot();
    let buyers = &ws.segments[&SEGMENT_RECENT_PURCHASERS].members;
    for (export, segment, list) in [
        ("cart_abandoners", SEGMENT_CART_ABANDONERS, "7000000101"),
        ("recent_purchasers", SEGMENT_RECENT_PURCHASERS, "7000000102"),
    ] {
        let suppressed = |i: &usize| export == "cart_abandoners" && buyers.contains(i);
        let expected: BTreeSet<String> = ws.segments[&segment]
            .members
            .iter()
            .filter(|i| !suppressed(i))
            .filter_map(|i| ws.people[*i].email.as_deref())
            .map(google_email_sha256)
            .collect();
        let members = env.google.members("1234567890", list);
        let held: Vec<String> = members
            .iter()
            .flat_map(|m| {
                m.iter()
                    .filter(|(kind, _)| kind == "emailAddress")
                    .map(|(_, digest)| digest.clone())
            })
            .collect();
        let held_set: BTreeSet<String> = held.iter().cloned().collect();
        let size = env.google.size("1234567890", list);
        println!(
            "{export}: source {}, list members {}, Google's size {size}",
            expected.len(),
            members.len()
        );
        assert!(expected.len() > 100, "{export}: {}", expected.len());
        assert_eq!(
            held.len(),
            members.len(),
            "{export}: a member without exactly one email"
        );
        assert_eq!(held.len(), held_set.len(), "{export}: someone twice");
        let missing: Vec<_> = expected.difference(&held_set).collect();
        let extra: Vec<_> = held_set.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{export}: {} source members missing from the list, {} on it not in the source",
            missing.len(),
            extra.len()
        );
        // The demo's population leaves 20 % unmatched: the size is the matched share.
        let members = members.len() as u64;
        assert!(size < members, "{export}: {size} of {members}");
        assert!(size * 100 >= members * 65, "{export}: {size} of {members}");
    }
    rt.shutdown().await;
}
