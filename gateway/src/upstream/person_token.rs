//! The person's own token at an upstream with `downstream_auth: oauth`, asked of the issuer.
//!
//! Such an upstream wants a token of its own authorization server for each person. The
//! issuer holds them (people link their accounts there once); the gateway asks
//! `POST /upstream-token` with its gateway token and keeps the answer until shortly before it
//! expires, by person, resource and grant: a new grant asks again, so a link that a
//! revocation dropped is not used by the person's next grant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::clock;
use crate::config::ApprovalsConfig;
use crate::secret::Secret;

/// How long the issuer has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A token this close to its end is asked for again.
const MARGIN: i64 = 10;
/// The most tokens kept; past it the expired ones go, then everything.
const MAX_KEPT: usize = 10_000;

/// Why there is no token to send.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PersonTokenError {
    /// The person has not linked an account there: they do it at `link_url`.
    #[error("the person has not linked an account at this upstream")]
    NotLinked {
        /// The issuer's page that links it.
        link_url: String,
    },
    /// The issuer could not be asked, or could not get a fresh token.
    #[error("the issuer could not give the person's token: {0}")]
    Unavailable(String),
}

/// Whose token, where, under which grant.
type Key = (String, String, Option<String>);

/// The client of the issuer's `/upstream-token`, with the tokens it was given.
#[derive(Debug)]
pub(crate) struct PersonTokens {
    config: Option<ApprovalsConfig>,
    http: reqwest::Client,
    kept: Mutex<HashMap<Key, (Secret, i64)>>,
}

#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Answer {
    Linked {
        access_token: String,
        expires_in: i64,
    },
    NotLinked {
        link_url: String,
    },
}

impl PersonTokens {
    /// A client of the issuer that `config` names; without one there are no tokens.
    pub(crate) fn new(config: Option<ApprovalsConfig>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .expect("a reqwest client with static settings builds");
        Self {
            config,
            http,
            kept: Mutex::default(),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Secret, i64)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token kept for `user` at `resource` under `grant`, if it is still good.
    pub(crate) fn kept_token(
        &self,
        user: &str,
        resource: &str,
        grant: Option<&str>,
    ) -> Option<Secret> {
        let key = (
            user.to_owned(),
            resource.to_owned(),
            grant.map(str::to_owned),
        );
        let now = clock::now();
        self.kept()
            .get(&key)
            .filter(|(_, expires_at)| expires_at - now > MARGIN)
            .map(|(token, _)| token.clone())
    }

    /// The token of `user` at the upstream of `resource`: kept, or asked of the issuer.
    pub(crate) async fn token(
        &self,
        user: &str,
        resource: &str,
        grant: Option<&str>,
    ) -> Result<Secret, PersonTokenError> {
        if let Some(token) = self.kept_token(user, resource, grant) {
            return Ok(token);
        }
        let config = self.config.as_ref().ok_or_else(|| {
            PersonTokenError::Unavailable("no issuer gateway token is configured".into())
        })?;
        let unavailable = |e: reqwest::Error| PersonTokenError::Unavailable(e.to_string());
        let response = self
            .http
            .post(&config.upstream_token_url)
            .bearer_auth(config.token.expose())
            .json(&json!({"user": user, "resource": resource}))
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        if !status.is_success() {
            let detail = response.text().await.unwrap_or_default();
            return Err(PersonTokenError::Unavailable(format!("{status}: {detail}")));
        }
        match response.json::<Answer>().await.map_err(unavailable)? {
            Answer::Linked {
                access_token,
                expires_in,
            } => {
                let token = Secret::new(access_token);
                let now = clock::now();
                let mut kept = self.kept();
                if kept.len() >= MAX_KEPT {
                    kept.retain(|_, (_, expires_at)| *expires_at - now > MARGIN);
                    if kept.len() >= MAX_KEPT {
                        kept.clear();
                    }
                }
                let key = (
                    user.to_owned(),
                    resource.to_owned(),
                    grant.map(str::to_owned),
                );
                kept.insert(key, (token.clone(), now + expires_in));
                Ok(token)
            }
            Answer::NotLinked { link_url } => Err(PersonTokenError::NotLinked { link_url }),
        }
    }

    /// Forgets the token kept for `user` at `resource` (the upstream refused it).
    pub(crate) fn forget(&self, user: &str, resource: &str) {
        self.kept()
            .retain(|(u, r, _), _| !(u == user && r == resource));
    }
}
