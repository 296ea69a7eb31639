//! Google OAuth 2.0 access tokens that last, shared by both Google kinds
//! (`API-CONTRACTS.md` §4b).
//!
//! Credentials come from the secret store (the `Secrets` port), one of:
//! * a service-account key (the JSON file Google's console gives): a JWT
//!   signed RS256 with its private key (`jsonwebtoken`), exchanged with the
//!   `urn:ietf:params:oauth:grant-type:jwt-bearer` grant;
//! * a user's OAuth client id, client secret and refresh token, exchanged
//!   with the `refresh_token` grant;
//! * a fixed access token (tests, or a deployment that rotates the secret
//!   itself); it cannot be refreshed, so its 401 is permanent.
//!
//! The access token is cached and refreshed `REFRESH_MARGIN` before Google's
//! `expires_in` runs out. A caller that gets 401 calls [`GoogleTokens::invalidate`]
//! with the token it used and retries once with a fresh one. The token URL
//! is a setting (`token_url`, default Google's) so tests point it at `sim/`.
//!
//! Errors: the token endpoint's `invalid_grant` / `invalid_client` /
//! `invalid_scope` (bad key, revoked refresh token) are permanent; 429, 5xx
//! and transport failures are retryable.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use super::{status_is_retryable, DestinationError};
use crate::domain::spec::{GoogleAuthSpec, GoogleCredentialsSpec};
use crate::ports::{Clock, Secret, Secrets};

pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const DATA_MANAGER_SCOPE: &str = "https://www.googleapis.com/auth/datamanager";
pub const ADS_SCOPE: &str = "https://www.googleapis.com/auth/adwords";
/// Refresh this long before the token's stated expiry.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
const JWT_LIFETIME_S: i64 = 3600;

enum Credentials {
    ServiceAccount {
        email: String,
        key_id: Option<String>,
        key: Box<jsonwebtoken::EncodingKey>,
    },
    RefreshToken {
        client_id: Secret,
        client_secret: Secret,
        refresh_token: Secret,
    },
    Fixed(Secret),
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    /// Clock ms after which we no longer use it.
    refresh_at: i64,
}

/// Access tokens of one destination; cheap to share.
pub struct GoogleTokens {
    destination: String,
    token_url: String,
    scope: &'static str,
    credentials: Credentials,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for GoogleTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.credentials {
            Credentials::ServiceAccount { .. } => "service_account",
            Credentials::RefreshToken { .. } => "refresh_token",
            Credentials::Fixed(_) => "access_token",
        };
        f.debug_struct("GoogleTokens")
            .field("destination", &self.destination)
            .field("token_url", &self.token_url)
            .field("credentials", &kind)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl GoogleTokens {
    /// Read the credentials the spec names from `secrets`. A missing secret
    /// or an unreadable key is permanent and says which.
    pub fn new(
        destination: &str,
        auth: &GoogleAuthSpec,
        scope: &'static str,
        secrets: &dyn Secrets,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DestinationError> {
        let permanent = |message: String| DestinationError::Permanent {
            destination: destination.to_string(),
            message,
        };
        let secret = |env: &str| super::required_secret(secrets, destination, env);
        let credentials = match &auth.credentials {
            GoogleCredentialsSpec::ServiceAccount { key_env } => {
                let raw = secret(key_env)?;
                let key: ServiceAccountKey = serde_json::from_str(raw.expose()).map_err(|e| {
                    permanent(format!(
                        "{key_env} is not a service-account key file (JSON with client_email and private_key): line {}, column {}",
                        e.line(),
                        e.column()
                    ))
                })?;
                let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes())
                    .map_err(|_| {
                        permanent(format!(
                            "{key_env}: private_key is not an RSA private key in PEM form"
                        ))
                    })?;
                Credentials::ServiceAccount {
                    email: key.client_email,
                    key_id: key.private_key_id,
                    key: Box::new(encoding),
                }
            }
            GoogleCredentialsSpec::RefreshToken {
                client_id_env,
                client_secret_env,
                refresh_token_env,
            } => Credentials::RefreshToken {
                client_id: secret(client_id_env)?,
                client_secret: secret(client_secret_env)?,
                refresh_token: secret(refresh_token_env)?,
            },
            GoogleCredentialsSpec::AccessToken { access_token_env } => {
                Credentials::Fixed(secret(access_token_env)?)
            }
        };
        Ok(GoogleTokens {
            destination: destination.to_string(),
            token_url: auth.token_url.clone(),
            scope,
            credentials,
            http,
            clock,
            cached: Mutex::new(None),
        })
    }

    /// Whether a 401 can be cured by fetching a new token.
    pub fn can_refresh(&self) -> bool {
        !matches!(self.credentials, Credentials::Fixed(_))
    }

    /// A live access token: the cached one, or a new one when it is within
    /// `REFRESH_MARGIN` of expiry.
    pub async fn token(&self) -> Result<Secret, DestinationError> {
        if let Credentials::Fixed(token) = &self.credentials {
            return Ok(token.clone());
        }
        let mut cached = self.cached.lock().await;
        let now = self.clock.now_ms();
        if let Some(c) = cached.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let (token, expires_in) = self.fetch(now).await?;
        let margin = (REFRESH_MARGIN.as_millis() as i64).min(expires_in * 1000 / 2);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: now + expires_in * 1000 - margin,
        });
        tracing::info!(destination = %self.destination, expires_in, "Google access token fetched");
        Ok(token)
    }

    /// Forget `used` after the API refused it (401), so the next `token()`
    /// fetches a new one. A token another caller already replaced is kept.
    pub async fn invalidate(&self, used: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == *used) {
            *cached = None;
        }
    }

    fn permanent(&self, message: String) -> DestinationError {
        DestinationError::Permanent {
            destination: self.destination.clone(),
            message,
        }
    }

    fn retryable(&self, message: String) -> DestinationError {
        DestinationError::Retryable {
            destination: self.destination.clone(),
            message,
            retry_after: None,
        }
    }

    async fn fetch(&self, now_ms: i64) -> Result<(Secret, i64), DestinationError> {
        let form: Vec<(&str, String)> = match &self.credentials {
            Credentials::ServiceAccount { email, key_id, key } => {
                let iat = now_ms.div_euclid(1000);
                let claims = Claims {
                    iss: email,
                    scope: self.scope,
                    aud: &self.token_url,
                    iat,
                    exp: iat + JWT_LIFETIME_S,
                };
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
                header.kid = key_id.clone();
                let assertion = jsonwebtoken::encode(&header, &claims, key).map_err(|e| {
                    self.permanent(format!("could not sign the service-account JWT: {e}"))
                })?;
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                    ),
                    ("assertion", assertion),
                ]
            }
            Credentials::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => vec![
                ("grant_type", "refresh_token".to_string()),
                ("client_id", client_id.expose().to_string()),
                ("client_secret", client_secret.expose().to_string()),
                ("refresh_token", refresh_token.expose().to_string()),
            ],
            Credentials::Fixed(token) => return Ok((token.clone(), i64::MAX / 4000)),
        };
        let resp = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| self.retryable(format!("token endpoint: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let error = body.get("error").and_then(Value::as_str).unwrap_or("");
            let description = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let message = format!("token endpoint HTTP {status} {error}: {description}");
            return Err(if status_is_retryable(status) {
                self.retryable(message)
            } else {
                self.permanent(message)
            });
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.retryable("token endpoint answered no access_token".into()))?;
        let expires_in = body
            .get("expires_in")
            .and_then(Value::as_i64)
            .unwrap_or(3600)
            .max(1);
        Ok((Secret::new(token), expires_in))
    }
}
