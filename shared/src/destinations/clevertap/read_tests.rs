//! Read-back tests: CleverTap's answer shape, its HTTP errors, and a round
//! trip through the simulator.

use serde_json::{json, Value};

use super::tests::{binding, dest_spec, export, http, op, secrets, setup};
use super::ClevertapDestination;
use crate::destinations::{Destination, OpOutcome, ReadBack};
use crate::domain::model::OpKind;

/// A stand-in CleverTap answering every profile lookup with `status` and
/// `body`, as recorded.
async fn answering(
    status: u16,
    body: Value,
) -> anyhow::Result<(dataout_sim::RunningSim, ClevertapDestination)> {
    use axum::http::StatusCode;
    let code = StatusCode::from_u16(status)?;
    let router = axum::Router::new().route(
        "/1/profile.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { (code, axum::Json(body)) }
        }),
    );
    let running = dataout_sim::serve(router).await?;
    let dest = ClevertapDestination::new(
        "ct".into(),
        &dest_spec(&running.base_url, 100),
        &secrets("TEST-PASSCODE"),
        http(),
    )?;
    Ok((running, dest))
}

#[tokio::test]
async fn read_back_reads_clevertaps_answer_shape_folded_keys_text_flags_email_on_the_record(
) -> anyhow::Result<()> {
    // The shape of CleverTap's answer (its recorded example puts `email` on
    // the record; custom keys come back lower-cased without spaces, flags as
    // text), written here by hand, not produced by our simulator.
    let (_server, dest) = answering(
        200,
        json!({"status": "success", "record": {
            "identity": "u1",
            "email": "ann@example.com",
            "name": "Ann Lee",
            "profileData": {"cio_cart_abandoners": "true", "cartvalue": 140, "plan": "pro"},
            "events": {"App Launched": {"count": 1, "first_seen": 1457271567, "last_seen": 1457271567}},
            "platformInfo": [{"platform": "Web", "objectId": "a8ffcbc9"}]
        }}),
    )
    .await?;
    let mut add = op(OpKind::Add, Some("u1"), Some("ann@example.com"));
    add.attributes.insert("Cart Value".into(), json!(140));
    add.attributes.insert("plan".into(), json!("pro"));
    add.attributes.insert("Name".into(), json!("Ann Lee"));
    let answer = dest.read_back(&export(), &binding(), &add).await?;
    assert!(matches!(answer, ReadBack::Agrees(_)), "{answer:?}");

    // The same answer disagrees with a value that was not stored.
    add.attributes.insert("plan".into(), json!("free"));
    let answer = dest.read_back(&export(), &binding(), &add).await?;
    assert!(
        matches!(&answer, ReadBack::Disagrees(why) if why.contains("`plan`")),
        "{answer:?}"
    );
    Ok(())
}

#[tokio::test]
async fn read_back_sees_a_false_flag_given_as_text() -> anyhow::Result<()> {
    let (_server, dest) = answering(
        200,
        json!({"status": "success", "record": {"identity": "u1",
            "profileData": {"cio_cart_abandoners": "false"}}}),
    )
    .await?;
    let add = op(OpKind::Add, Some("u1"), None);
    let answer = dest.read_back(&export(), &binding(), &add).await?;
    assert!(
        matches!(&answer, ReadBack::Disagrees(why) if why.contains("is false")),
        "{answer:?}"
    );
    let remove = op(OpKind::Remove, Some("u1"), None);
    let answer = dest.read_back(&export(), &binding(), &remove).await?;
    assert!(matches!(answer, ReadBack::Agrees(_)), "{answer:?}");
    Ok(())
}

#[tokio::test]
async fn read_back_of_an_http_error_is_an_error_never_no_profile() -> anyhow::Result<()> {
    // A Remove would read "no profile" as agreement: the error must surface.
    let remove = op(OpKind::Remove, Some("u1"), None);
    for (status, body, retryable) in [
        (
            401,
            json!({"status": "fail", "error": "invalid credentials or URL", "code": 401}),
            false,
        ),
        (
            429,
            json!({"status": "fail", "error": "Too many concurrent requests", "code": 429}),
            true,
        ),
        (
            503,
            json!({"status": "fail", "error": "Service Unavailable", "code": 503}),
            true,
        ),
    ] {
        let (_server, dest) = answering(status, body).await?;
        match dest.read_back(&export(), &binding(), &remove).await {
            Err(e) => assert_eq!(e.is_retryable(), retryable, "{status}: {e}"),
            Ok(answer) => panic!("{status} read as {answer:?}"),
        }
    }
    // A 200 that says `fail` with an auth code is no "no profile" either.
    let (_server, dest) = answering(
        200,
        json!({"status": "fail", "error": "invalid credentials or URL", "code": 401}),
    )
    .await?;
    assert!(dest
        .read_back(&export(), &binding(), &remove)
        .await
        .is_err());
    // Not found is an answer: no profile, so no membership.
    let (_server, dest) = answering(
        200,
        json!({"status": "fail", "error": "Profile not found", "code": 404}),
    )
    .await?;
    let answer = dest.read_back(&export(), &binding(), &remove).await?;
    assert!(matches!(answer, ReadBack::Agrees(_)), "{answer:?}");
    Ok(())
}

#[tokio::test]
async fn read_back_after_an_upload_to_the_simulator_agrees() -> anyhow::Result<()> {
    let (_sim, _state, dest) = setup(100).await?;
    let mut add = op(OpKind::Add, Some("u1"), Some("ann@example.com"));
    add.attributes.insert("Cart Value".into(), json!(140));
    add.attributes.insert("Name".into(), json!("Ann Lee"));
    let out = dest
        .send(&export(), &binding(), std::slice::from_ref(&add))
        .await?;
    assert_eq!(out, vec![OpOutcome::Accepted]);
    let answer = dest.read_back(&export(), &binding(), &add).await?;
    assert!(matches!(answer, ReadBack::Agrees(_)), "{answer:?}");
    Ok(())
}
