//! The `client_credentials` grant: an agent's own token, for this issuer only.
//!
//! It names the agent and nothing else (no grant, no `act`): its one use is as the
//! `actor_token` of an exchange, which is why a `resource` or `audience` is refused here.

use portcullis_policy::Claims;

use crate::client_auth::Params;
use crate::clients::Client;
use crate::oauth_error::OAuthError;
use crate::secret::random_token;
use crate::token::mint::{self, TokenResponse};
use crate::{AppState, now};

/// The `client_credentials` grant.
pub(crate) async fn issue(
    state: &AppState,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    if params.get("resource").is_some() || params.get("audience").is_some() {
        return Err(OAuthError::InvalidTarget(
            "client tokens are only for this issuer (as an actor_token); exchange for a resource"
                .into(),
        ));
    }
    let now = now();
    let ttl = state.config.client_token_ttl;
    let claims = Claims {
        issuer: state.config.issuer.clone(),
        subject: client.client_id.clone(),
        audience: vec![state.config.issuer.clone()],
        expires_at: now + ttl,
        not_before: Some(now),
        issued_at: now,
        token_id: random_token(16),
        client_id: client.client_id.clone(),
        scope: None,
        actors: None,
        grant_id: None,
        confirmation: None,
        constraints: None,
    };
    let event = serde_json::json!({"kind": "client", "client_id": client.client_id,
                                   "jti": claims.token_id, "exp": claims.expires_at});
    Ok(TokenResponse {
        access_token: mint::sign(state, &claims, "token.minted", event, now).await?,
        token_type: "Bearer",
        expires_in: ttl,
        issued_token_type: None,
        refresh_token: None,
    })
}
