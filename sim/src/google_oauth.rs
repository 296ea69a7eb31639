//! Google's OAuth 2.0 token endpoint, simulated (`API-CONTRACTS.md` §4b).
//!
//! `POST /token` (form-encoded), two grants:
//! * `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`:
//!   a service account's self-signed RS256 JWT. The signature is verified
//!   with the service account's public key; `iss` must be the service account
//!   e-mail, `aud` the token URL (anything ending in `/token`), `scope` must
//!   name the required scope, `exp` must lie in the future and at most one
//!   hour after `iat`. Otherwise 400 `invalid_grant`.
//! * `grant_type=refresh_token&refresh_token=…&client_id=…&client_secret=…`:
//!   a user's refresh token; a wrong client is 401 `invalid_client`, a wrong
//!   token 400 `invalid_grant`.
//!
//! Both answer `{access_token, expires_in, token_type: "Bearer", scope}`.
//! Tokens live `token_lifetime` (Google: 3,600 s) and then stop working: an
//! API simulator holding a [`TokenAuthority`] answers 401 UNAUTHENTICATED to
//! an expired or unknown token. Tests can expire every token at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

/// The scope the Data Manager API requires.
pub const DATA_MANAGER_SCOPE: &str = "https://www.googleapis.com/auth/datamanager";
/// The scope the Google Ads API requires.
pub const ADS_SCOPE: &str = "https://www.googleapis.com/auth/adwords";
pub const TEST_SERVICE_ACCOUNT_EMAIL: &str = "dataout-sim@dataout-sim.iam.gserviceaccount.com";
/// A key pair made for the simulator only (never used anywhere real).
pub const TEST_SERVICE_ACCOUNT_PRIVATE_KEY_PEM: &str =
    include_str!("keys/test_service_account.pem");
pub const TEST_SERVICE_ACCOUNT_PUBLIC_KEY_PEM: &str =
    include_str!("keys/test_service_account.pub.pem");
pub const TEST_CLIENT_ID: &str = "dataout-sim-client.apps.googleusercontent.com";
pub const TEST_CLIENT_SECRET: &str = "dataout-sim-client-secret";
pub const TEST_REFRESH_TOKEN: &str = "1//dataout-sim-refresh-token";

/// The service-account key file (JSON) of the simulator's test account, as
/// Google's console would give it, with `token_uri` pointed at the sim.
pub fn test_service_account_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "dataout-sim",
        "private_key_id": "sim-key-1",
        "private_key": TEST_SERVICE_ACCOUNT_PRIVATE_KEY_PEM,
        "client_email": TEST_SERVICE_ACCOUNT_EMAIL,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    })
    .to_string()
}

#[derive(Clone, Debug)]
pub struct OAuthSimConfig {
    pub service_account_email: String,
    pub service_account_public_key_pem: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// Lifetime of issued access tokens (Google: one hour).
    pub token_lifetime: Duration,
    /// Scopes a token must carry to be accepted (any one of them).
    pub accepted_scopes: Vec<String>,
    /// Scopes the user granted with the refresh token (its tokens carry them).
    pub refresh_token_scopes: Vec<String>,
}

impl Default for OAuthSimConfig {
    fn default() -> Self {
        OAuthSimConfig {
            service_account_email: TEST_SERVICE_ACCOUNT_EMAIL.into(),
            service_account_public_key_pem: TEST_SERVICE_ACCOUNT_PUBLIC_KEY_PEM.into(),
            client_id: TEST_CLIENT_ID.into(),
            client_secret: TEST_CLIENT_SECRET.into(),
            refresh_token: TEST_REFRESH_TOKEN.into(),
            token_lifetime: Duration::from_secs(3600),
            accepted_scopes: vec![DATA_MANAGER_SCOPE.into(), ADS_SCOPE.into()],
            refresh_token_scopes: vec![DATA_MANAGER_SCOPE.into(), ADS_SCOPE.into()],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    Valid,
    Expired,
    Unknown,
}

struct AuthorityState {
    config: OAuthSimConfig,
    /// token -> expiry.
    issued: BTreeMap<String, Instant>,
    /// token -> the scopes it was granted.
    scopes: BTreeMap<String, Vec<String>>,
    next: u64,
    grants: Vec<String>,
}

/// Issues and checks access tokens; shared by the token endpoint and the
/// API simulators. Cheap to clone.
#[derive(Clone)]
pub struct TokenAuthority {
    state: Arc<Mutex<AuthorityState>>,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAuthority")
    }
}

impl TokenAuthority {
    pub fn new(config: OAuthSimConfig) -> Self {
        TokenAuthority {
            state: Arc::new(Mutex::new(AuthorityState {
                config,
                issued: BTreeMap::new(),
                scopes: BTreeMap::new(),
                next: 0,
                grants: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, AuthorityState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a bearer token is one we issued and still live.
    pub fn check(&self, token: &str) -> TokenCheck {
        match self.lock().issued.get(token) {
            None => TokenCheck::Unknown,
            Some(expiry) if *expiry <= Instant::now() => TokenCheck::Expired,
            Some(_) => TokenCheck::Valid,
        }
    }

    /// Whether a token we issued was granted `scope` (an API accepts only
    /// tokens of its own scope: 403 ACCESS_TOKEN_SCOPE_INSUFFICIENT).
    pub fn has_scope(&self, token: &str, scope: &str) -> bool {
        self.lock()
            .scopes
            .get(token)
            .is_some_and(|s| s.iter().any(|x| x == scope))
    }

    /// Expire every token issued so far (a token "expiring mid-run").
    pub fn expire_all(&self) {
        let now = Instant::now();
        for expiry in self.lock().issued.values_mut() {
            *expiry = now;
        }
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().config.token_lifetime = lifetime;
    }

    /// Grants served, in order (`jwt-bearer` / `refresh_token`).
    pub fn grants(&self) -> Vec<String> {
        self.lock().grants.clone()
    }

    fn issue(&self, grant: &str, scopes: Vec<String>) -> (String, u64) {
        let mut state = self.lock();
        state.next += 1;
        let token = format!("ya29.sim-{}-{}", state.next, rand::random::<u32>());
        let lifetime = state.config.token_lifetime;
        state
            .issued
            .insert(token.clone(), Instant::now() + lifetime);
        state.scopes.insert(token.clone(), scopes);
        state.grants.push(grant.to_string());
        (token, lifetime.as_secs())
    }

    /// The router serving `POST /token`; merge it into an API simulator's.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/token", post(token))
            .with_state(self.clone())
    }
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    assertion: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    scope: String,
    iat: u64,
    exp: u64,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn token(State(auth): State<TokenAuthority>, Form(form): Form<TokenForm>) -> Response {
    let config = auth.lock().config.clone();
    match form.grant_type.as_deref() {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let Some(assertion) = form.assertion else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "assertion is required",
                );
            };
            let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(
                config.service_account_public_key_pem.as_bytes(),
            ) else {
                return oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "bad sim key",
                );
            };
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.validate_aud = false;
            validation.leeway = 0;
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            let claims = match jsonwebtoken::decode::<Claims>(&assertion, &key, &validation) {
                Ok(data) => data.claims,
                Err(e) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        &format!("Invalid JWT Signature or claims: {e}"),
                    )
                }
            };
            if claims.iss != config.service_account_email {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid issuer");
            }
            if !claims.aud.ends_with("/token") {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid audience");
            }
            if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid JWT: exp must be within one hour of iat",
                );
            }
            let scopes: Vec<&str> = claims.scope.split_whitespace().collect();
            if !config
                .accepted_scopes
                .iter()
                .any(|s| scopes.contains(&s.as_str()))
            {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "Invalid OAuth scope",
                );
            }
            let granted: Vec<String> = config
                .accepted_scopes
                .iter()
                .filter(|s| scopes.contains(&s.as_str()))
                .cloned()
                .collect();
            let scope = granted.join(" ");
            let (token, expires_in) = auth.issue("jwt-bearer", granted);
            Json(json!({
                "access_token": token,
                "expires_in": expires_in,
                "token_type": "Bearer",
                "scope": scope,
            }))
            .into_response()
        }
        Some("refresh_token") => {
            if form.client_id.as_deref() != Some(config.client_id.as_str())
                || form.client_secret.as_deref() != Some(config.client_secret.as_str())
            {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
            }
            if form.refresh_token.as_deref() != Some(config.refresh_token.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token has been expired or revoked.",
                );
            }
            let scopes = config.refresh_token_scopes.clone();
            let scope = scopes.join(" ");
            let (token, expires_in) = auth.issue("refresh_token", scopes);
            Json(json!({
                "access_token": token,
                "expires_in": expires_in,
                "token_type": "Bearer",
                "scope": scope,
            }))
            .into_response()
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        ),
    }
}
