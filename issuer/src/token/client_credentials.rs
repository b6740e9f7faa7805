//! The `client_credentials` grant: an agent's own token, for this issuer only.
//!
//! It names the agent and nothing else (no grant, no `act`): its one use is as the
//! `actor_token` of an exchange, which is why a `resource` or `audience` is refused here.
//! With a DPoP proof it is bound to the agent's key, and so is every token delegated to it.

use portcullis_policy::Claims;
use portcullis_policy::dpop::Proof;

use crate::client_auth::Params;
use crate::clients::Client;
use crate::oauth_error::OAuthError;
use crate::secret::random_token;
use crate::token::dpop;
use crate::token::mint::{self, TokenResponse};
use crate::{AppState, now};

/// The `client_credentials` grant.
pub(crate) async fn issue(
    state: &AppState,
    client: &Client,
    params: &Params,
    proof: Option<Proof>,
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
        confirmation: proof.map(|p| p.thumbprint),
        constraints: None,
    };
    let event = serde_json::json!({"kind": "client", "client_id": client.client_id,
                                   "jti": claims.token_id, "exp": claims.expires_at,
                                   "jkt": claims.confirmation});
    Ok(TokenResponse {
        access_token: mint::sign(state, &claims, "token.minted", event, now).await?,
        token_type: dpop::token_type(claims.confirmation.as_deref()),
        expires_in: ttl,
        issued_token_type: None,
        refresh_token: None,
    })
}
