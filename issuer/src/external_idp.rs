//! Trusted external identity providers: people who sign in with Keycloak, Okta or Entra can
//! delegate without an account at the issuer.
//!
//! An ID or access token from a configured provider is accepted as the `subject_token` of a
//! first token exchange. The provider is picked by the token's `iss`, which must be configured
//! exactly; the token must verify against that provider's JWKS with one of its configured
//! algorithms (never an HMAC or `none`), carry the expected audience, be unexpired, and name
//! the user in the configured claim. The user's authority still comes from a grant here: the
//! exchange looks up the active grant that user gave the requesting agent for the resource.
//!
//! JWKS are fetched from the operator's configured URL (so the network checks for URLs chosen
//! by clients do not apply), cached, refreshed every five minutes and at most every
//! 30 seconds on an unknown `kid` (key rotation at the provider).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

/// How long fetched keys are used before they are fetched again.
const KEYS_TTL: Duration = Duration::from_secs(300);
/// The least time between two fetches for an unknown `kid`.
const MIN_REFRESH: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One trusted provider, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIdp {
    /// Its `iss`, exactly as in its tokens.
    pub issuer: String,
    /// Where its signing keys are published.
    pub jwks_uri: String,
    /// The `aud` its tokens must carry for us.
    pub audience: String,
    /// The claim naming the user (default `sub`).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Accepted signature algorithms (default RS256, ES256, EdDSA).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_user_claim() -> String {
    "sub".into()
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}

/// Why a configuration or a token from a provider was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The configuration file is unusable.
    #[error("trusted identity providers: {0}")]
    Config(String),
    /// The token is not a JWT, or its header or payload cannot be read.
    #[error("not a readable JWT: {0}")]
    Malformed(String),
    /// Its signature, algorithm, audience or times are wrong.
    #[error("the token from {issuer} does not verify: {reason}")]
    Invalid {
        /// The provider.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The provider's keys could not be fetched.
    #[error("cannot fetch the keys of {issuer}: {reason}")]
    Keys {
        /// The provider.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The user claim is missing or not a non-empty string.
    #[error("the token has no usable {0:?} claim naming the user")]
    NoUser(String),
}

#[derive(Debug)]
struct Provider {
    config: TrustedIdp,
    algorithms: Vec<Algorithm>,
    keys: Mutex<Option<(JwkSet, Instant)>>,
}

/// The configured providers, with their cached keys.
#[derive(Debug, Default)]
pub struct Idps {
    providers: HashMap<String, Provider>,
}

impl Idps {
    /// Checks and loads `configs`.
    pub fn new(configs: Vec<TrustedIdp>) -> Result<Self, IdpError> {
        let mut providers = HashMap::new();
        for config in configs {
            let jwks_ok = url::Url::parse(&config.jwks_uri).is_ok_and(|u| {
                u.scheme() == "https"
                    || (u.scheme() == "http"
                        && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")))
            });
            if !jwks_ok {
                return Err(IdpError::Config(format!(
                    "{}: jwks_uri must be https (http only to loopback)",
                    config.issuer
                )));
            }
            if config.audience.is_empty() || config.user_claim.is_empty() {
                return Err(IdpError::Config(format!(
                    "{}: audience and user_claim must not be empty",
                    config.issuer
                )));
            }
            let algorithms = config
                .algorithms
                .iter()
                .map(|name| match name.as_str() {
                    "RS256" => Ok(Algorithm::RS256),
                    "RS384" => Ok(Algorithm::RS384),
                    "RS512" => Ok(Algorithm::RS512),
                    "PS256" => Ok(Algorithm::PS256),
                    "ES256" => Ok(Algorithm::ES256),
                    "ES384" => Ok(Algorithm::ES384),
                    "EdDSA" => Ok(Algorithm::EdDSA),
                    other => Err(IdpError::Config(format!(
                        "{}: algorithm {other} is not allowed (asymmetric algorithms only)",
                        config.issuer
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if algorithms.is_empty() {
                return Err(IdpError::Config(format!(
                    "{}: no algorithms",
                    config.issuer
                )));
            }
            let issuer = config.issuer.clone();
            let provider = Provider {
                config,
                algorithms,
                keys: Mutex::new(None),
            };
            if providers.insert(issuer.clone(), provider).is_some() {
                return Err(IdpError::Config(format!("{issuer} is configured twice")));
            }
        }
        Ok(Self { providers })
    }

    /// Whether any provider is configured.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The user a token from a trusted provider names, `Ok(None)` when the token does not
    /// claim to come from one (it may be one of ours), and an error when it does but fails.
    pub async fn user_of(&self, token: &str) -> Result<Option<String>, IdpError> {
        if self.providers.is_empty() {
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct Iss {
            #[serde(default)]
            iss: Option<String>,
        }
        let Ok(claimed) = jsonwebtoken::dangerous::insecure_decode::<Iss>(token) else {
            return Ok(None);
        };
        let Some(provider) = claimed.claims.iss.and_then(|iss| self.providers.get(&iss)) else {
            return Ok(None);
        };
        provider.verify(token).await.map(Some)
    }
}

impl Provider {
    fn invalid(&self, reason: impl ToString) -> IdpError {
        IdpError::Invalid {
            issuer: self.config.issuer.clone(),
            reason: reason.to_string(),
        }
    }

    async fn verify(&self, token: &str) -> Result<String, IdpError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| IdpError::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(self.invalid(format!("algorithm {:?} is not allowed", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| self.invalid("no kid"))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = self.algorithms.clone();
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| self.invalid(e))?;
        data.claims
            .get(&self.config.user_claim)
            .and_then(serde_json::Value::as_str)
            .filter(|user| !user.is_empty() && user.len() <= 256)
            .map(str::to_owned)
            .ok_or_else(|| IdpError::NoUser(self.config.user_claim.clone()))
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, IdpError> {
        let mut cache = self.keys.lock().await;
        let age = cache.as_ref().map(|(_, at)| at.elapsed());
        let known = cache.as_ref().and_then(|(set, _)| set.find(kid)).is_some();
        let refresh = match age {
            None => true,
            Some(age) => age > KEYS_TTL || (!known && age > MIN_REFRESH),
        };
        if refresh {
            match self.fetch().await {
                Ok(set) => *cache = Some((set, Instant::now())),
                // Keep serving known keys while the provider is briefly unreachable.
                Err(e) if cache.is_some() && known => tracing::warn!("{e}"),
                Err(e) => return Err(e),
            }
        }
        let jwk = cache
            .as_ref()
            .and_then(|(set, _)| set.find(kid))
            .ok_or_else(|| self.invalid(format!("no key {kid:?} in its JWKS")))?;
        DecodingKey::from_jwk(jwk).map_err(|e| self.invalid(e))
    }

    async fn fetch(&self) -> Result<JwkSet, IdpError> {
        let fail = |reason: String| IdpError::Keys {
            issuer: self.config.issuer.clone(),
            reason,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut response = client
            .get(&self.config.jwks_uri)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(fail("the JWKS is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("not a JWKS: {e}")))
    }
}
