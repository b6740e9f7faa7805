//! RFC 7662 introspection and RFC 7009 revocation, for clients holding tokens.
//!
//! Both require client authentication (introspection must not be an oracle for anyone who
//! found a token). A token is active when it verifies as one of this issuer's (any audience),
//! has not expired, and no revocation covers it — which is also how a resource server that
//! cannot follow the revocation stream can ask.

use axum::http::HeaderMap;
use portcullis_policy::revocation::RevocationKind;
use portcullis_policy::{RawClaims, VerifiedToken};
use serde_json::{Value, json};

use crate::client_auth::{Params, authenticate};
use crate::clients::{AuthMethod, Client};
use crate::oauth_error::OAuthError;
use crate::revocation::{self, RevokeRequest};
use crate::{AppState, now};

/// The authenticated caller, and the token it names if that is one of ours and unexpired.
async fn caller_and_token(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    at: i64,
) -> Result<(Client, Option<VerifiedToken>), OAuthError> {
    let params = Params::parse(headers, body)?;
    let client = authenticate(state, headers, &params).await?;
    let token = params.require("token")?;
    let verified = state
        .keys()
        .verifier()
        .dangerous_verify_any_audience(token, at)
        .ok();
    Ok((client, verified))
}

/// Handles `POST /introspect`.
pub async fn introspect(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, OAuthError> {
    let now = now();
    let (client, verified) = caller_and_token(state, headers, body, now).await?;
    if client.auth_method == AuthMethod::None {
        return Err(OAuthError::UnauthorizedClient(
            "public clients cannot introspect tokens".into(),
        ));
    }
    let Some(verified) = verified else {
        return Ok(json!({"active": false}));
    };
    let claims = verified.claims();
    if revocation::covering(&state.db, claims, now)
        .await?
        .is_some()
    {
        return Ok(json!({"active": false}));
    }
    let mut body = serde_json::to_value(RawClaims::from(claims))
        .map_err(|e| OAuthError::Server(e.to_string()))?;
    body["active"] = json!(true);
    body["token_type"] = json!("Bearer");
    Ok(body)
}

/// Handles `POST /revoke`: a client revokes a token issued to it. Unknown, invalid and
/// expired tokens answer 200 as well (RFC 7009 §2.2): there is nothing left to revoke.
/// Revoking a refresh token ends its whole grant, access tokens included (RFC 7009 §2.1).
pub async fn revoke(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    let now = now();
    let (client, verified) = caller_and_token(state, headers, body, now).await?;
    let Some(verified) = verified else {
        let params = Params::parse(headers, body)?;
        let token = params.require("token")?;
        if let Some(grant_id) =
            crate::token::refresh_token::grant_of(&state.db, token, &client.client_id).await?
        {
            revocation::revoke(
                &state.db,
                &state.hub,
                RevokeRequest {
                    kind: RevocationKind::Grant,
                    value: grant_id,
                    reason: format!("refresh token revoked by its holder {}", client.client_id),
                    token_expires_at: None,
                },
                state.config.max_token_lifetime(),
                now,
            )
            .await
            .map_err(|e| OAuthError::Server(e.to_string()))?;
        }
        return Ok(());
    };
    let claims = verified.claims();
    if claims.client_id != client.client_id {
        return Err(OAuthError::UnauthorizedClient(
            "the token was not issued to this client".into(),
        ));
    }
    revocation::revoke(
        &state.db,
        &state.hub,
        RevokeRequest {
            kind: RevocationKind::Token,
            value: claims.token_id.clone(),
            reason: format!("revoked by its holder {} (RFC 7009)", client.client_id),
            token_expires_at: Some(claims.expires_at),
        },
        state.config.max_token_lifetime(),
        now,
    )
    .await
    .map_err(|e| OAuthError::Server(e.to_string()))?;
    Ok(())
}
