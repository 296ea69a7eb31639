//! Canary test profiles: an export's `test_profiles` go first in every batch
//! run. On the demo's simulators, the example spec's cart_abandoners run
//! reaches Meta, Google and CleverTap with its canaries before anyone else
//! of the run. The canaries are the workspace's last two people, whose keys
//! sort last: key order alone would send them last.

use std::sync::Arc;
use std::time::Duration;

use dataout::ports::SystemClock;
use dataout_cli::demo::SimEnv;
use dataout_sim::customerio::{SEGMENT_CART_ABANDONERS, SEGMENT_RECENT_PURCHASERS};

const CANARIES: [&str; 2] = ["cust_00598", "cust_00599"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_arrive_before_any_other_person_of_their_run_at_every_simulator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = SimEnv::start(600, &dir.path().join("warehouse"))
        .await
        .expect("simulators");
    env.spec
        .exports
        .get_mut("cart_abandoners")
        .expect("export")
        .test_profiles = CANARIES.map(String::from).to_vec();
    let export = env.spec.export("cart_abandoners").expect("export").clone();
    // The canaries are shoppers with a cart, not recent buyers (whom the
    // export suppresses).
    for id in CANARIES {
        let index = env
            .cio
            .handle
            .update(|ws| ws.index_of_id(id))
            .expect("canary in the workspace");
        env.cio
            .handle
            .remove_member(SEGMENT_RECENT_PURCHASERS, index);
        env.cio.handle.add_member(SEGMENT_CART_ABANDONERS, index);
    }
    let rt = Arc::new(
        env.runtime(&dir.path().join("state"), Arc::new(SystemClock))
            .expect("runtime"),
    );
    rt.start_workers().await.expect("workers");
    let source = env.source().expect("source");
    let run = rt.run_batch(&source, "cart_abandoners").await.expect("run");
    assert!(run.stats.adds > 20, "{:?}", run.stats);
    assert!(
        rt.wait_idle(Duration::from_secs(60)).await.expect("idle"),
        "delivery did not finish"
    );

    // Meta: the audience's first rows are the canaries', and the first
    // upload to it carries them alone.
    let meta_audience = &export.binding("meta").expect("meta").audience;
    let members = env.meta.members(meta_audience);
    assert!(members.len() > 20);
    let first: Vec<&str> = members
        .iter()
        .take(2)
        .filter_map(|m| {
            m.iter()
                .find(|(k, _)| k == "EXTERN_ID")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert_eq!(sorted(first), CANARIES, "first Meta members");
    let uploads: Vec<_> = env
        .meta
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains(meta_audience.as_str()))
        .collect();
    assert_eq!(uploads.first().map(|r| r.rows), Some(2), "{uploads:?}");

    // Google (Data Manager): the first ingest carries the two canaries.
    let ingests: Vec<_> = env
        .google
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("audienceMembers:ingest"))
        .collect();
    assert!(ingests.len() >= 2, "{ingests:?}");
    assert_eq!(ingests[0].members, 2, "{ingests:?}");

    // CleverTap: every record stored before the first other person's is a
    // canary's (their main and tier records), and both canaries are there.
    let order = env.clevertap.arrival_order();
    let first_other = order
        .iter()
        .position(|k| !CANARIES.contains(&k.as_str()))
        .expect("others delivered");
    assert!(first_other >= 2, "{:?}", &order[..first_other]);
    for id in CANARIES {
        assert!(
            order[..first_other].iter().any(|k| k == id),
            "{id}: {order:?}"
        );
    }
    rt.shutdown().await;
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}
