//! The minting core: every token that leaves the token endpoint is recorded in the audit log
//! and then signed with the active key, here and nowhere else in the endpoint.
//!
//! [`delegate`] is the core of the two grants that yield delegation tokens (RFC 8693 exchange
//! and the authorization-code flow): it attenuates the parent with
//! [`portcullis_policy::attenuate`], so a delegation token never has more tools, looser limits,
//! a later expiry or a deeper chain than its parent, and counts the mint against the grant's
//! rate cap. The grant files depend on this file, never on each other's internals.

use portcullis_policy::{
    Actor, AttenuationError, Claims, Constraints, DelegationRequest, attenuate,
};
use serde::Serialize;
use serde_json::Value;

use crate::AppState;
use crate::clients::Client;
use crate::grants::{self, Grant};
use crate::oauth_error::OAuthError;
use crate::secret::random_token;

/// RFC 8693 token type of an access token: what every token from this endpoint is.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// The token.
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a token bound to a key.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// For exchanges: the type of the issued token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    /// For the authorization-code flow: the next refresh token of the family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// Records `event` with `data` in the audit log, then signs `claims`: a token the log does not
/// know of never leaves.
pub(crate) async fn sign(
    state: &AppState,
    claims: &Claims,
    event: &'static str,
    data: Value,
    now: i64,
) -> Result<String, OAuthError> {
    state.audit.record(event, data, now).await?;
    Ok(portcullis_policy::sign(claims, state.keys().active()))
}

/// What a new delegation token is made from.
#[derive(Debug)]
pub(crate) struct Delegation<'a> {
    /// The token (or a grant's own claims) it narrows.
    pub(crate) parent: &'a Claims,
    /// The grant it stems from.
    pub(crate) grant: &'a Grant,
    /// The agent that will hold it.
    pub(crate) actor: String,
    /// Where it may be used.
    pub(crate) resource: String,
    /// Narrower constraints than the parent's, if asked for.
    pub(crate) requested: Option<Constraints>,
    /// The thumbprint of the actor's key, if its tokens are bound (DPoP).
    pub(crate) confirmation: Option<String>,
}

/// Signs a delegation token from `parent` (a token or a grant's own claims) for `actor` at
/// `resource`: attenuated, counted against the grant's rate cap, and audited.
pub(crate) async fn delegate(
    state: &AppState,
    client: &Client,
    Delegation {
        parent,
        grant,
        actor,
        resource,
        requested,
        confirmation,
    }: Delegation<'_>,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let ttl = state.config.delegation_ttl;
    let child = attenuate(
        parent,
        DelegationRequest {
            actor: Actor { sub: actor },
            audience: resource,
            constraints: requested,
            issued_at: now,
            expires_at: (now + ttl).min(grant.expires_at),
            confirmation,
            token_id: random_token(16),
        },
    )
    .map_err(|e| match e {
        AttenuationError::BindingDropped => OAuthError::InvalidDpopProof(
            "the parent token is bound to a key (DPoP): the agent it goes to needs a bound \
             client token too"
                .into(),
        ),
        e => OAuthError::InvalidScope(e.to_string()),
    })?;
    if let Some(rate) = child.constraints.as_ref().and_then(|c| c.rate())
        && !grants::admit_mint(&state.db, &grant.id, rate.per_hour, now).await?
    {
        return Err(OAuthError::RateLimited(format!(
            "the grant's limit of {} tokens per hour is reached",
            rate.per_hour
        )));
    }
    let actors: Vec<&str> = child
        .actors
        .iter()
        .flat_map(|chain| chain.actors())
        .map(|a| a.sub.as_str())
        .collect();
    let event = serde_json::json!({
        "grant_id": child.grant_id, "sub": child.subject, "act": actors,
        "client_id": client.client_id, "aud": child.audience, "jti": child.token_id,
        "exp": child.expires_at, "parent_jti": parent.token_id, "jkt": child.confirmation,
    });
    Ok(TokenResponse {
        access_token: sign(state, &child, "token.exchanged", event, now).await?,
        token_type: crate::token::dpop::token_type(child.confirmation.as_deref()),
        expires_in: child.expires_at - now,
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
        refresh_token: None,
    })
}
