//! People's own accounts at upstreams that have an authorization server of their own
//! (`downstream_auth: oauth` at the gateway).
//!
//! Such an upstream cannot verify the gateway's minted tokens; it wants tokens of its own
//! server, one per person, so it can tell them apart. The issuer holds them:
//!
//! 1. An operator registers the upstream ([`register`]: `POST /admin/upstreams` or
//!    `portcullis-issuer upstreams add`). The issuer reads the upstream's RFC 9728 metadata,
//!    its authorization server's RFC 8414 metadata, and registers itself there as a client
//!    (RFC 7591), sent back to `{issuer}/link/callback`.
//! 2. A person links their account once ([`flow`]): a gateway that has no token for them
//!    sends their agent's client to `{issuer}/link?resource=…` (as a URL elicitation, as it
//!    does for approvals), or they start from their account page. They sign in here, are sent
//!    to the upstream's server (authorization code, PKCE, the upstream as `resource`), and
//!    come back; the tokens are stored sealed (`KeyEncryption::seal_token`, bound to the
//!    person and the resource).
//! 3. On each call the gateway asks for the person's access token ([`token_for`],
//!    `POST /upstream-token` with the gateway token) and sends it upstream in place of its own
//!    credential. A token near its end is refreshed first; a refresh the server refuses
//!    unlinks the account, and the person is asked to link it again.
//!
//! Revoking the grant for the upstream, or the person, deletes the link in the revocation's
//! transaction ([`drop_links`]); so does unlinking from the account page.

pub mod flow;
pub mod oauth_client;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use self::oauth_client::{Client, Tokens, UpstreamOAuthError};
use crate::db::Database;
use crate::oauth_error::OAuthError;
use crate::{AppState, audit};

/// A token this close to its end is refreshed before it is handed out.
const REFRESH_MARGIN: i64 = 30;
/// What a server that does not say how long its token lasts is taken to mean.
const DEFAULT_ACCESS_TTL: i64 = 3600;

/// An upstream with an authorization server of its own, as registered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpstreamOAuth {
    /// The resource grants name for it at the gateway.
    pub resource: String,
    /// Its own resource identifier, sent to its server as `resource`.
    pub upstream_resource: String,
    /// Its server's issuer identifier.
    pub authorization_server: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// The issuer's client id there.
    pub client_id: String,
    /// The scope asked for, if any.
    pub scope: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    client_secret: Option<String>,
}

impl UpstreamOAuth {
    fn client(&self) -> Client {
        Client {
            id: self.client_id.clone(),
            secret: self.client_secret.clone(),
        }
    }
}

/// Why an upstream could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The resource or URL is not an absolute http(s) URL.
    #[error("{0}")]
    Invalid(String),
    /// The upstream or its server.
    #[error(transparent)]
    Upstream(#[from] UpstreamOAuthError),
    /// The server lets no client register, and none was given.
    #[error("the authorization server has no registration endpoint")]
    NoRegistration,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The redirect URI the issuer registers at upstreams' servers.
fn callback(state: &AppState) -> String {
    format!("{}/link/callback", state.config.issuer)
}

/// Where a person links their account at the upstream of `resource`.
pub fn link_url(issuer: &str, resource: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("resource", resource)
        .finish();
    format!("{issuer}/link?{query}")
}

/// Registers the upstream at `upstream_url` for the gateway resource `resource`: discovers its
/// server, registers the issuer there, and stores both (replacing an earlier registration;
/// links made under it stay).
pub async fn register(
    state: &AppState,
    resource: &str,
    upstream_url: &str,
    now: i64,
) -> Result<UpstreamOAuth, RegisterError> {
    for url in [resource, upstream_url] {
        let parsed =
            url::Url::parse(url).map_err(|e| RegisterError::Invalid(format!("{url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(RegisterError::Invalid(format!(
                "{url:?} is not an http(s) URL"
            )));
        }
    }
    let http = oauth_client::http();
    let found = oauth_client::discover(&http, upstream_url).await?;
    let endpoint = found
        .registration_endpoint
        .as_deref()
        .ok_or(RegisterError::NoRegistration)?;
    let client = oauth_client::register(&http, endpoint, &callback(state)).await?;
    let upstream = UpstreamOAuth {
        resource: resource.to_owned(),
        upstream_resource: found.upstream_resource,
        authorization_server: found.authorization_server,
        authorization_endpoint: found.authorization_endpoint,
        token_endpoint: found.token_endpoint,
        client_id: client.id,
        scope: found.offline_access.then(|| "offline_access".to_owned()),
        client_secret: client.secret,
    };
    let sealed_secret = upstream
        .client_secret
        .as_deref()
        .map(|secret| state.sealing.seal_token(&upstream.resource, secret));
    let row = upstream.clone();
    state
        .db
        .write(|tx| {
            let (up, secret) = (row.clone(), sealed_secret.clone());
            Box::pin(async move {
                sqlx::query("DELETE FROM upstream_oauth WHERE resource = $1")
                    .bind(&up.resource)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO upstream_oauth (resource, upstream_resource, authorization_server,
                       authorization_endpoint, token_endpoint, client_id, client_secret, scope,
                       created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&up.resource)
                .bind(&up.upstream_resource)
                .bind(&up.authorization_server)
                .bind(&up.authorization_endpoint)
                .bind(&up.token_endpoint)
                .bind(&up.client_id)
                .bind(secret)
                .bind(&up.scope)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                audit::append(
                    tx,
                    "upstream.registered",
                    json!({"resource": up.resource, "authorization_server": up.authorization_server,
                           "client_id": up.client_id}),
                    now,
                )
                .await?;
                Ok(())
            })
        })
        .await?;
    Ok(upstream)
}

/// The registration for `resource`, with its client secret opened.
pub async fn get(state: &AppState, resource: &str) -> Result<Option<UpstreamOAuth>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT resource, upstream_resource, authorization_server, authorization_endpoint,
                token_endpoint, client_id, client_secret, scope
         FROM upstream_oauth WHERE resource = $1",
    )
    .bind(resource)
    .fetch_optional(state.db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let sealed: Option<String> = row.try_get("client_secret")?;
    let client_secret = match sealed {
        Some(sealed) => Some(state.sealing.open_token(resource, &sealed).ok_or_else(|| {
            sqlx::Error::Decode("an upstream client secret that does not open".into())
        })?),
        None => None,
    };
    Ok(Some(UpstreamOAuth {
        resource: row.try_get("resource")?,
        upstream_resource: row.try_get("upstream_resource")?,
        authorization_server: row.try_get("authorization_server")?,
        authorization_endpoint: row.try_get("authorization_endpoint")?,
        token_endpoint: row.try_get("token_endpoint")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        client_secret,
    }))
}

/// What a gateway asks: the access token of `user` at the upstream of `resource`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    pub user: String,
    pub resource: String,
}

/// What it is told.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TokenAnswer {
    /// The person's access token there.
    Linked {
        access_token: String,
        expires_in: i64,
    },
    /// The person has not linked an account there (or it was unlinked): send them here.
    NotLinked { link_url: String },
}

/// The sealing's binding: a token opens only for its person and resource.
fn aad(user: &str, resource: &str) -> String {
    format!("{user}\n{resource}")
}

/// Stores (or replaces) `user`'s link at `resource`.
async fn store(
    state: &AppState,
    user: &str,
    resource: &str,
    tokens: &Tokens,
    refresh_token: Option<&str>,
    now: i64,
    event: Option<&'static str>,
) -> Result<(), sqlx::Error> {
    let bound = aad(user, resource);
    let access = state.sealing.seal_token(&bound, &tokens.access_token);
    let refresh = refresh_token.map(|token| state.sealing.seal_token(&bound, token));
    let expires_at = now + tokens.expires_in.unwrap_or(DEFAULT_ACCESS_TTL).max(1);
    let (user, resource) = (user.to_owned(), resource.to_owned());
    state
        .db
        .write(|tx| {
            let (user, resource, access, refresh) =
                (user.clone(), resource.clone(), access.clone(), refresh.clone());
            Box::pin(async move {
                sqlx::query("DELETE FROM upstream_links WHERE username = $1 AND resource = $2")
                    .bind(&user)
                    .bind(&resource)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO upstream_links (username, resource, access_token,
                       access_expires_at, refresh_token, linked_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&user)
                .bind(&resource)
                .bind(&access)
                .bind(expires_at)
                .bind(&refresh)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                if let Some(kind) = event {
                    audit::append(tx, kind, json!({"user": user, "resource": resource}), now)
                        .await?;
                }
                Ok(())
            })
        })
        .await
}

/// One refresh at a time in this process: servers that rotate refresh tokens revoke the whole
/// grant when one is used twice, as two concurrent refreshes would. (Replicas of the issuer
/// each refresh on their own; the gateways' caching keeps that rare.)
static REFRESHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The access token of `request.user` at the upstream of `request.resource`: the stored one,
/// refreshed first when it is near its end.
pub async fn token_for(
    state: &AppState,
    request: TokenRequest,
    now: i64,
) -> Result<TokenAnswer, OAuthError> {
    if get(state, &request.resource).await?.is_none() {
        return Err(OAuthError::NotFound(format!(
            "no upstream authorization server is registered for {}",
            request.resource
        )));
    }
    if let Some(answer) = stored_token(state, &request, now).await? {
        return Ok(answer);
    }
    let _one_at_a_time = REFRESHING.lock().await;
    // Another request may have refreshed it while this one waited.
    if let Some(answer) = stored_token(state, &request, now).await? {
        return Ok(answer);
    }
    refresh(state, request, now).await
}

/// The stored token when it is good for a while yet, or `NotLinked`; `None` when it needs a
/// refresh.
async fn stored_token(
    state: &AppState,
    request: &TokenRequest,
    now: i64,
) -> Result<Option<TokenAnswer>, OAuthError> {
    let row = sqlx::query(
        "SELECT access_token, access_expires_at FROM upstream_links
         WHERE username = $1 AND resource = $2",
    )
    .bind(&request.user)
    .bind(&request.resource)
    .fetch_optional(state.db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(Some(TokenAnswer::NotLinked {
            link_url: link_url(&state.config.issuer, &request.resource),
        }));
    };
    let expires_at: i64 = row.try_get("access_expires_at")?;
    if expires_at - now <= REFRESH_MARGIN {
        return Ok(None);
    }
    let sealed: String = row.try_get("access_token")?;
    let access_token = state
        .sealing
        .open_token(&aad(&request.user, &request.resource), &sealed)
        .ok_or_else(|| OAuthError::Server("a stored upstream access token does not open".into()))?;
    Ok(Some(TokenAnswer::Linked {
        access_token,
        expires_in: expires_at - now,
    }))
}

/// Refreshes the stored token with the stored refresh token.
async fn refresh(
    state: &AppState,
    request: TokenRequest,
    now: i64,
) -> Result<TokenAnswer, OAuthError> {
    let Some(upstream) = get(state, &request.resource).await? else {
        return Err(OAuthError::NotFound(format!(
            "no upstream authorization server is registered for {}",
            request.resource
        )));
    };
    let not_linked = || TokenAnswer::NotLinked {
        link_url: link_url(&state.config.issuer, &request.resource),
    };
    let row = sqlx::query(
        "SELECT refresh_token FROM upstream_links WHERE username = $1 AND resource = $2",
    )
    .bind(&request.user)
    .bind(&request.resource)
    .fetch_optional(state.db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(not_linked());
    };
    let sealed: Option<String> = row.try_get("refresh_token")?;
    let refresh_token = sealed
        .map(|sealed| {
            state
                .sealing
                .open_token(&aad(&request.user, &request.resource), &sealed)
                .ok_or_else(|| {
                    OAuthError::Server("a stored upstream refresh token does not open".into())
                })
        })
        .transpose()?;
    let Some(refresh_token) = refresh_token else {
        unlink(&state.db, &request.user, &request.resource, now).await?;
        return Ok(not_linked());
    };
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
        ("resource", upstream.upstream_resource.as_str()),
    ];
    let http = oauth_client::http();
    match oauth_client::token(&http, &upstream.token_endpoint, &upstream.client(), &form).await {
        Ok(tokens) => {
            // A server that rotates refresh tokens sends a new one; one that does not, keeps it.
            let refresh = tokens.refresh_token.as_deref().unwrap_or(&refresh_token);
            store(
                state,
                &request.user,
                &request.resource,
                &tokens,
                Some(refresh),
                now,
                None,
            )
            .await?;
            Ok(TokenAnswer::Linked {
                expires_in: tokens.expires_in.unwrap_or(DEFAULT_ACCESS_TTL),
                access_token: tokens.access_token,
            })
        }
        Err(UpstreamOAuthError::Refused { error, .. }) if error == "invalid_grant" => {
            tracing::info!(user = %request.user, resource = %request.resource,
                "the upstream's server refused the refresh token; the account is unlinked");
            unlink(&state.db, &request.user, &request.resource, now).await?;
            Ok(not_linked())
        }
        Err(e) => Err(OAuthError::Server(format!(
            "refreshing the upstream token failed: {e}"
        ))),
    }
}

/// Deletes `user`'s link at `resource`; whether there was one.
pub async fn unlink(
    db: &Database,
    user: &str,
    resource: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let (user, resource) = (user.to_owned(), resource.to_owned());
    db.write(|tx| {
        let (user, resource) = (user.clone(), resource.clone());
        Box::pin(async move {
            let removed = drop_links(tx, &user, Some(&resource)).await?;
            if removed > 0 {
                audit::append(
                    tx,
                    "upstream.unlinked",
                    json!({"user": user, "resource": resource}),
                    now,
                )
                .await?;
            }
            Ok(removed > 0)
        })
    })
    .await
}

/// Deletes `user`'s links: at `resource`, or everywhere. Runs inside the caller's transaction
/// (a revocation's); how many went.
pub(crate) async fn drop_links(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: &str,
    resource: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let done = match resource {
        Some(resource) => {
            sqlx::query("DELETE FROM upstream_links WHERE username = $1 AND resource = $2")
                .bind(user)
                .bind(resource)
                .execute(&mut **tx)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM upstream_links WHERE username = $1")
                .bind(user)
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(done.rows_affected())
}

/// The resources of every registered upstream, in order.
pub async fn registered(db: &Database) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT resource FROM upstream_oauth ORDER BY resource")
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(|row| row.try_get("resource")).collect()
}

/// The resources where `user` has linked an account, with when.
pub async fn links_of(db: &Database, user: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT resource, linked_at FROM upstream_links WHERE username = $1 ORDER BY resource",
    )
    .bind(user)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("resource")?, row.try_get("linked_at")?)))
        .collect()
}
