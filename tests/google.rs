//! Google through the Data Manager API end to end: batch runs → delivery
//! workers → the Data Manager simulator, on the embedded adapters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dataout::ports::SystemClock;
use dataout_cli::demo::SimEnv;

#[tokio::test]
async fn google_list_holds_exactly_our_members_and_counts_only_the_matched_share() {
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
    for (export, list) in [
        ("cart_abandoners", "7000000101"),
        ("recent_purchasers", "7000000102"),
    ] {
        let state = rt.deps.state.count_members(export).await.unwrap();
        let members = env.google.member_count("1234567890", list) as u64;
        let size = env.google.size("1234567890", list);
        println!("{export}: state {state}, list members {members}, Google's size {size}");
        assert!(state > 100, "{export}: {state}");
        assert_eq!(
            members, state,
            "{export}: every member reached the list, none twice"
        );
        // The demo's population leaves 20 % unmatched: the size is the matched share.
        assert!(size < members, "{export}: {size} of {members}");
        assert!(size * 100 >= members * 65, "{export}: {size} of {members}");
    }
    rt.shutdown().await;
}
