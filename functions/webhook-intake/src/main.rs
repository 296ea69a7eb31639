//! Lambda entry point of `webhook-intake`: wiring only. Serves a Function
//! URL (auth NONE: signatures are checked in code) or an HTTP API route.

use std::convert::Infallible;

use anyhow::anyhow;
use dataout::pipeline::intake::IntakeConfig;
use dataout::pipeline::Deps;
use dataout::settings::fail_cold_start;
use dataout::telemetry::{self, LogFormat};
use lambda_http::{service_fn, Body, Request, Response};
use webhook_intake::config::intake_config;
use webhook_intake::event::{http_request, http_response};
use webhook_intake::handler::handle_request;

struct Function {
    deps: Deps,
    cfg: IntakeConfig,
}

async fn invoke(f: &Function, req: Request) -> Result<Response<Body>, Infallible> {
    let req = http_request(req);
    Ok(http_response(&handle_request(&f.deps, &f.cfg, &req).await))
}

async fn cold_start() -> anyhow::Result<Function> {
    let wiring = dataout::aws::wire().await?;
    let cfg = intake_config(|name| std::env::var(name).ok(), wiring.secrets.as_ref())?;
    Ok(Function {
        deps: wiring.deps,
        cfg,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init(LogFormat::Json, "info");
    let function = match cold_start().await {
        Ok(f) => f,
        Err(e) => fail_cold_start("webhook-intake", &e),
    };
    let function = &function;
    lambda_http::run(service_fn(move |req| invoke(function, req)))
        .await
        .map_err(|e| anyhow!(e))
}
