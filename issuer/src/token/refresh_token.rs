//! Refresh tokens of the authorization-code flow: rotated on every use, with reuse detection.
//!
//! Each consent is one grant and one family of refresh tokens. Redeeming a refresh token spends
//! it and returns a new one (OAuth 2.1 §4.3.1 requires rotation for public clients; we rotate
//! for all). Presenting a spent token means two parties hold the family, one of them a thief:
//! the grant is revoked, which ends the family and every access token made from it, at the
//! gateways too. A refresh token never outlives its grant.

use portcullis_policy::RevocationKind;
use sqlx::Row;

use crate::client_auth::Params;
use crate::clients::Client;
use crate::grants;
use crate::oauth_error::OAuthError;
use crate::revocation::{self, RevokeRequest};
use crate::secret::{hash_secret, random_token};
use crate::token::mint::{self, Delegation, TokenResponse};
use crate::{AppState, now};

/// A delegation token for `resource` from the grant `grant_id`, if it is still active, held by
/// `client` itself, with a new refresh token of the grant's family.
pub(crate) async fn issue_with_access_token(
    state: &AppState,
    client: &Client,
    grant_id: &str,
    resource: &str,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let grant = &grants::get(&state.db, grant_id)
        .await?
        .filter(|g| g.is_active(now))
        .ok_or_else(|| OAuthError::InvalidGrant("the grant is revoked or expired".into()))?;
    // The grant's own claims stand in for the user's token: they must live at least as long
    // as the delegation token made from them, which is clamped to its parent's expiry.
    let ttl = state.config.delegation_ttl;
    let parent = grants::subject_token_claims(grant, &state.config.issuer, now, ttl);
    let mut response = mint::delegate(
        state,
        client,
        Delegation {
            parent: &parent,
            grant,
            actor: client.client_id.clone(),
            resource: resource.to_owned(),
            requested: None,
            confirmation: None,
        },
        now,
    )
    .await?;
    let refresh = format!("pcr_{}", random_token(32));
    let row = (
        hash_secret(&refresh),
        grant.id.clone(),
        client.client_id.clone(),
        resource.to_owned(),
        grant.expires_at,
    );
    state
        .db
        .write(|tx| {
            let (hash, grant_id, client_id, resource, expires_at) = row.clone();
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO refresh_tokens
                       (token_hash, grant_id, client_id, resource, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(hash)
                .bind(grant_id)
                .bind(client_id)
                .bind(resource)
                .bind(now)
                .bind(expires_at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await?;
    response.refresh_token = Some(refresh);
    Ok(response)
}

/// Revokes the grant behind a replayed code or refresh token, and names the replay.
pub(crate) async fn revoke_family(
    state: &AppState,
    grant_id: &str,
    what: &str,
) -> Result<OAuthError, OAuthError> {
    tracing::warn!(grant_id, "{what} was used twice: revoking the grant");
    revocation::revoke(
        &state.db,
        &state.hub,
        RevokeRequest {
            kind: RevocationKind::Grant,
            value: grant_id.to_owned(),
            reason: format!("{what} replayed"),
            token_expires_at: None,
        },
        state.config.max_token_lifetime(),
        now(),
    )
    .await
    .map_err(|e| OAuthError::Server(e.to_string()))?;
    Ok(OAuthError::InvalidGrant(format!(
        "the {what} was already used; every token from it is now revoked"
    )))
}

/// The `refresh_token` grant.
pub(crate) async fn rotate(
    state: &AppState,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let presented = params.require("refresh_token")?;
    let hash = hash_secret(presented);
    let now = now();
    let spent = state
        .db
        .write(|tx| {
            let (hash, client_id) = (hash.clone(), client.client_id.clone());
            Box::pin(async move {
                Ok(sqlx::query(
                    "UPDATE refresh_tokens SET used_at = $1
                     WHERE token_hash = $2 AND client_id = $3 AND used_at IS NULL",
                )
                .bind(now)
                .bind(hash)
                .bind(client_id)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                    == 1)
            })
        })
        .await?;
    let row = sqlx::query(
        "SELECT grant_id, client_id, resource, expires_at FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(state.db.pool())
    .await?
    .ok_or_else(|| OAuthError::InvalidGrant("unknown refresh token".into()))?;
    let grant_id: String = row.try_get("grant_id")?;
    if row.try_get::<String, _>("client_id")? != client.client_id {
        return Err(OAuthError::InvalidGrant(
            "the refresh token was issued to another client".into(),
        ));
    }
    if !spent {
        return Err(revoke_family(state, &grant_id, "refresh token").await?);
    }
    if now >= row.try_get::<i64, _>("expires_at")? {
        return Err(OAuthError::InvalidGrant(
            "the refresh token has expired".into(),
        ));
    }
    let resource: String = row.try_get("resource")?;
    if params.all("resource").any(|r| r != resource) {
        return Err(OAuthError::InvalidTarget(format!(
            "the refresh token is for {resource} only"
        )));
    }
    issue_with_access_token(state, client, &grant_id, &resource, now).await
}

/// The grant of a live refresh token held by `client_id` (for RFC 7009 revocation).
pub(crate) async fn grant_of(
    db: &crate::db::Database,
    token: &str,
    client_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT grant_id FROM refresh_tokens
         WHERE token_hash = $1 AND client_id = $2 AND used_at IS NULL",
    )
    .bind(hash_secret(token))
    .bind(client_id)
    .fetch_optional(db.pool())
    .await
}
