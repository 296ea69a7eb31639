//! `dataout qa`: an export's canaries through every destination, read back
//! where the API allows. On the demo's simulators the example's
//! cart_abandoners passes everywhere; once CleverTap silently drops a
//! canary's profile, only the read-back can tell, and qa fails there.

use std::sync::Arc;

use dataout::ports::SystemClock;
use dataout_cli::demo::SimEnv;
use dataout_sim::customerio::{SEGMENT_CART_ABANDONERS, SEGMENT_RECENT_PURCHASERS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qa_passes_on_faithful_simulators_and_fails_when_clevertap_drops_a_canary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = SimEnv::start(300, &dir.path().join("warehouse"))
        .await
        .expect("simulators");
    // cust_00001 is a shopper, never a recent buyer (whom the export suppresses).
    let index = env
        .cio
        .handle
        .update(|ws| ws.index_of_id("cust_00001"))
        .expect("canary");
    env.cio
        .handle
        .remove_member(SEGMENT_RECENT_PURCHASERS, index);
    env.cio.handle.add_member(SEGMENT_CART_ABANDONERS, index);
    let rt = env
        .runtime(&dir.path().join("state"), Arc::new(SystemClock))
        .expect("runtime");
    let source = env.source().expect("source");

    let verdicts = dataout_cli::qa::run(&rt, Some(&source), "cart_abandoners")
        .await
        .expect("qa");
    let text = dataout_cli::qa::render("cart_abandoners", &verdicts);
    let names: Vec<&str> = verdicts.iter().map(|v| v.destination.as_str()).collect();
    assert_eq!(names, ["clevertap", "google", "meta", "warehouse"]);
    assert!(verdicts.iter().all(|v| v.pass), "{text}");
    let clevertap = &verdicts[0];
    let actions: Vec<&str> = clevertap
        .steps
        .iter()
        .filter(|s| s.canary == "cust_00001")
        .map(|s| s.action)
        .collect();
    assert_eq!(actions, ["enter", "attribute change", "exit"], "{text}");
    assert!(
        clevertap
            .steps
            .iter()
            .filter(|s| s.ops > 0)
            .all(|s| s.read_back.starts_with("read back:")),
        "{text}"
    );
    // Google: the request status, read once the platform has processed it.
    let google = &verdicts[1];
    assert!(
        google
            .steps
            .iter()
            .filter(|s| s.ops > 0)
            .all(|s| s.read_back.starts_with("read back: request ")
                && s.read_back.ends_with("SUCCESS")),
        "{text}"
    );
    // The canary was left as found: outside the export.
    let profile = env.clevertap.profile("cust_00001").expect("profile");
    assert_eq!(profile.data["cio_cart_abandoners"], false);

    // CleverTap answers success but keeps nothing of the canary.
    env.clevertap.drop_profiles_of("cust_00001");
    let verdicts = dataout_cli::qa::run(&rt, Some(&source), "cart_abandoners")
        .await
        .expect("qa");
    let text = dataout_cli::qa::render("cart_abandoners", &verdicts);
    let clevertap = verdicts
        .iter()
        .find(|v| v.destination == "clevertap")
        .expect("clevertap");
    assert!(!clevertap.pass, "{text}");
    assert!(text.contains("READ BACK DISAGREES"), "{text}");
    // The others still pass: the loss is CleverTap's alone.
    assert!(
        verdicts
            .iter()
            .filter(|v| v.destination != "clevertap")
            .all(|v| v.pass),
        "{text}"
    );
    rt.shutdown().await;
}
