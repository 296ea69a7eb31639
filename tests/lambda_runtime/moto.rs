//! Secrets Manager on moto without an SDK crate: its JSON protocol, and a
//! stand-in for the AWS Parameters and Secrets Lambda Extension (a layer
//! binary no registry ships) that answers the functions' `GET
//! /secretsmanager/get?secretId=` from moto, as the extension answers from
//! Secrets Manager.

use std::collections::HashMap;

use anyhow::{bail, Result};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{json, Value};

/// One Secrets Manager call (`X-Amz-Target: secretsmanager.<action>`).
/// moto routes on the credential scope and does not check the signature.
pub async fn secretsmanager_raw(
    endpoint: &str,
    action: &str,
    body: &Value,
) -> Result<(u16, String)> {
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("secretsmanager.{action}"))
        .header("x-amz-date", "20260101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

pub async fn secretsmanager(endpoint: &str, action: &str, body: &Value) -> Result<Value> {
    let (status, text) = secretsmanager_raw(endpoint, action, body).await?;
    if status != 200 {
        bail!("secretsmanager {action}: {status} {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

#[derive(Clone)]
struct Ext {
    endpoint: String,
    token: String,
}

async fn get_secret(
    State(ext): State<Ext>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    // The extension refuses calls without the function's session token.
    let token = headers
        .get("x-aws-parameters-secrets-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if token != ext.token {
        return (StatusCode::FORBIDDEN, "bad token".into());
    }
    let Some(id) = q.get("secretId") else {
        return (StatusCode::BAD_REQUEST, "secretId is required".into());
    };
    match secretsmanager_raw(&ext.endpoint, "GetSecretValue", &json!({"SecretId": id})).await {
        Ok((status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            body,
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// Start the stand-in; its port goes in `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`.
pub async fn secrets_extension(endpoint: &str, token: &str) -> Result<dataout_sim::RunningSim> {
    let router = axum::Router::new()
        .route("/secretsmanager/get", get(get_secret))
        .with_state(Ext {
            endpoint: endpoint.to_string(),
            token: token.to_string(),
        });
    dataout_sim::serve(router).await
}
