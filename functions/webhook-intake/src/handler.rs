//! Routing and the answer. The pipeline's intake decides everything about
//! a webhook; this layer only maps the URL to a route and refuses what is
//! not a webhook POST.

use std::collections::BTreeMap;

use dataout::pipeline::intake::{handle, IntakeConfig, IntakeResponse, Route};
use dataout::pipeline::Deps;
use serde_json::json;
use tracing::info;

/// Path of the reporting webhooks.
pub const REPORTING_PATH: &str = "/webhooks/customerio";
/// Path of the campaign webhook actions.
pub const ACTIONS_PATH: &str = "/webhooks/actions";

/// An HTTP request as the handler needs it (converted from the Lambda
/// event in `event`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Lowercased names.
    pub headers: BTreeMap<String, String>,
    /// The raw bytes (base64 already decoded): signatures cover these.
    pub body: Vec<u8>,
}

/// The route of a request path. An API Gateway stage prefix
/// (`/prod/webhooks/actions`) and a trailing slash are allowed.
pub fn route_for(path: &str) -> Option<Route> {
    let path = path.trim_end_matches('/');
    if path.ends_with(REPORTING_PATH) {
        Some(Route::Reporting)
    } else if path.ends_with(ACTIONS_PATH) {
        Some(Route::Actions)
    } else {
        None
    }
}

pub async fn handle_request(deps: &Deps, cfg: &IntakeConfig, req: &HttpRequest) -> IntakeResponse {
    let Some(route) = route_for(&req.path) else {
        return IntakeResponse {
            status: 404,
            body: json!({
                "status": "not_found",
                "reason": format!("no webhook here; POST to {REPORTING_PATH} or {ACTIONS_PATH}"),
            }),
        };
    };
    if !req.method.eq_ignore_ascii_case("POST") {
        return IntakeResponse {
            status: 405,
            body: json!({"status": "method_not_allowed", "reason": "webhooks are POSTed"}),
        };
    }
    let response = handle(deps, cfg, route, &req.headers, &req.body).await;
    info!(
        route = route.as_str(),
        status = response.status,
        outcome = response.body.get("status").and_then(|s| s.as_str()),
        bytes = req.body.len(),
        "webhook answered"
    );
    response
}
