//! The token endpoint: `client_credentials` and RFC 8693 token exchange.
//!
//! Three kinds of token leave this endpoint, told apart by audience and `act` (RFC 8725 §3.12
//! asks for mutually exclusive validation rules):
//!
//! | token | `aud` | `act` | `gid` | use |
//! |---|---|---|---|---|
//! | client token (`client_credentials`) | this issuer | no | no | an agent's `actor_token` |
//! | subject token (minted for a grant) | this issuer | no | yes | the user's `subject_token` |
//! | delegation token (exchange) | one resource | yes | yes | `Authorization: Bearer` at the gateway |
//!
//! A first exchange takes the user's subject token and the grant's agent's own client token
//! and starts the actor chain. A re-delegation takes an agent's delegation token and a
//! sub-agent's client token, is made by the agent that holds the delegation token, and yields
//! a token attenuated by [`portcullis_policy::attenuate`]: never more tools, looser limits,
//! a later expiry or a deeper chain than its parent.

use axum::http::HeaderMap;
use portcullis_policy::{
    Actor, ActorRule, Claims, Constraints, DelegationRequest, Expected, VerifiedToken, VerifyError,
    attenuate,
};
use serde::Serialize;

use crate::client_auth::{Params, authenticate};
use crate::clients::{AuthMethod, Client};
use crate::oauth_error::OAuthError;
use crate::secret::random_token;
use crate::{AppState, now};
use crate::{grants, revocation};

/// RFC 8693 grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token type of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// The token.
    pub access_token: String,
    /// Always `Bearer` for now.
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

/// Handles `POST /token`.
pub async fn token(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let params = Params::parse(headers, body)?;
    let grant_type = params.get("grant_type").unwrap_or_default().to_owned();
    let result = grant(state, headers, &params).await;
    crate::metrics::token_request(
        &grant_type,
        result.as_ref().map_or_else(OAuthError::code, |_| "ok"),
    );
    result
}

async fn grant(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let client = authenticate(state, headers, params).await?;
    let grant_type = params.require("grant_type")?;
    // A public client proves nothing about itself; PKCE and rotation protect only the
    // authorization-code flow.
    if client.auth_method == AuthMethod::None
        && !matches!(grant_type, "authorization_code" | "refresh_token")
    {
        return Err(OAuthError::UnauthorizedClient(format!(
            "a public client cannot use {grant_type}"
        )));
    }
    match grant_type {
        "authorization_code" => crate::authorization_code::redeem(state, &client, params).await,
        "refresh_token" => crate::refresh_token::rotate(state, &client, params).await,
        "client_credentials" => client_credentials(state, &client, params).await,
        TOKEN_EXCHANGE => exchange(state, &client, params).await,
        other => Err(OAuthError::UnsupportedGrantType(format!(
            "grant_type {other} is not supported"
        ))),
    }
}
async fn client_credentials(
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
        constraints: None,
    };
    state
        .audit
        .record(
            "token.minted",
            serde_json::json!({"kind": "client", "client_id": client.client_id, "jti": claims.token_id, "exp": claims.expires_at}),
            now,
        )
        .await?;
    Ok(TokenResponse {
        access_token: portcullis_policy::sign(&claims, state.keys().active()),
        token_type: "Bearer",
        expires_in: ttl,
        issued_token_type: None,
        refresh_token: None,
    })
}

fn check_token_type(params: &Params, name: &str) -> Result<(), OAuthError> {
    match params.require(name)? {
        ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE => Ok(()),
        other => Err(OAuthError::InvalidRequest(format!(
            "{name} {other} is not supported"
        ))),
    }
}

fn verify(
    state: &AppState,
    token: &str,
    audience: &str,
    actor: ActorRule,
) -> Result<VerifiedToken, VerifyError> {
    state.keys().verifier().verify(
        token,
        &Expected {
            audience,
            now: now(),
            actor,
        },
    )
}

async fn exchange(
    state: &AppState,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let issuer = state.config.issuer.as_str();
    let subject_token = params.require("subject_token")?;
    if params.get("subject_token_type") != Some(ID_TOKEN_TYPE) {
        check_token_type(params, "subject_token_type")?;
    }
    let actor_token = params.get("actor_token").ok_or_else(|| {
        OAuthError::InvalidRequest(
            "delegation needs an actor_token naming the agent that will act".into(),
        )
    })?;
    check_token_type(params, "actor_token_type")?;
    if let Some(requested) = params.get("requested_token_type")
        && requested != ACCESS_TOKEN_TYPE
    {
        return Err(OAuthError::InvalidRequest(format!(
            "requested_token_type {requested} is not supported"
        )));
    }
    if params.get("audience").is_some() {
        return Err(OAuthError::InvalidTarget(
            "name the target with resource, not audience".into(),
        ));
    }
    let resource = match params.all("resource").collect::<Vec<_>>()[..] {
        [one] => one.to_owned(),
        [] => {
            return Err(OAuthError::InvalidRequest(
                "resource is required (RFC 8707)".into(),
            ));
        }
        _ => return Err(OAuthError::InvalidTarget("one resource per token".into())),
    };
    let requested = params
        .get("authorization_details")
        .map(|text| {
            let details: Vec<serde_json::Value> =
                portcullis_policy::strict_json::from_slice_to(text.as_bytes())
                    .map_err(|e| OAuthError::InvalidAuthorizationDetails(e.to_string()))?;
            Constraints::from_authorization_details(&details)
                .map_err(|e| OAuthError::InvalidAuthorizationDetails(e.to_string()))
        })
        .transpose()?;

    let actor = verify(state, actor_token, issuer, ActorRule::Forbidden)
        .map_err(|e| OAuthError::InvalidRequest(format!("actor_token: {e}")))?
        .into_claims();
    if actor.grant_id.is_some() || actor.subject != actor.client_id {
        return Err(OAuthError::InvalidRequest(
            "actor_token is not a client token".into(),
        ));
    }

    // The subject is a token from a trusted identity provider (the user signed in there; their
    // grant to this agent is looked up), the user's grant token (audience: this issuer), or a
    // delegation token for the very resource requested, which is how a re-delegation cannot
    // widen `aud`.
    let external_user = state
        .idps
        .user_of(subject_token)
        .await
        .map_err(|e| OAuthError::InvalidRequest(format!("subject_token: {e}")))?;
    let (parent, first_hop) =
        if let Some(user) = external_user {
            let grant = grants::find_active(&state.db, &user, &client.client_id, &resource, now())
                .await?
                .ok_or_else(|| {
                    OAuthError::InvalidGrant(format!(
                        "{user} has given this client no grant for {resource}"
                    ))
                })?;
            let ttl = state.config.subject_token_ttl;
            (
                grants::subject_token_claims(&grant, issuer, now(), ttl),
                true,
            )
        } else {
            match verify(state, subject_token, issuer, ActorRule::Forbidden) {
                Ok(token) => (token.into_claims(), true),
                Err(VerifyError::WrongAudience { .. } | VerifyError::UnexpectedActor) => {
                    let token = verify(state, subject_token, &resource, ActorRule::Required)
                        .map_err(|e| match e {
                            VerifyError::WrongAudience { .. } => OAuthError::InvalidTarget(
                                "the subject_token is not valid for this resource".into(),
                            ),
                            e => OAuthError::InvalidRequest(format!("subject_token: {e}")),
                        })?;
                    (token.into_claims(), false)
                }
                Err(e) => return Err(OAuthError::InvalidRequest(format!("subject_token: {e}"))),
            }
        };
    let now = now();
    let revoked = revocation::revoked_set(&state.db, &[&parent, &actor], now).await?;
    if let Some(entry) = revoked.covering(&parent) {
        return Err(OAuthError::InvalidGrant(format!(
            "the subject_token was revoked (revocation {})",
            entry.seq
        )));
    }
    if revoked.covering(&actor).is_some() {
        return Err(OAuthError::InvalidRequest(
            "the actor_token was revoked".into(),
        ));
    }
    let grant_id = parent
        .grant_id
        .as_deref()
        .ok_or_else(|| OAuthError::InvalidRequest("subject_token carries no grant".into()))?;
    let grant = grants::get(&state.db, grant_id)
        .await?
        .ok_or_else(|| OAuthError::InvalidGrant("the grant does not exist".into()))?;
    if !grant.is_active(now) {
        return Err(OAuthError::InvalidGrant(
            "the grant is revoked or expired".into(),
        ));
    }
    if parent.subject != grant.subject {
        return Err(OAuthError::InvalidRequest(
            "subject_token names another user than its grant".into(),
        ));
    }

    if first_hop {
        if grant.client_id != client.client_id {
            return Err(OAuthError::InvalidGrant(
                "the grant was not given to this client".into(),
            ));
        }
        if actor.subject != client.client_id {
            return Err(OAuthError::InvalidRequest(
                "a first exchange's actor_token must be the authenticated client's own".into(),
            ));
        }
        if !grant.resources.contains(&resource) {
            return Err(OAuthError::InvalidTarget(format!(
                "the grant does not cover {resource}"
            )));
        }
    } else {
        let holder = parent
            .actors
            .as_ref()
            .map(|chain| chain.current().sub.as_str());
        if holder != Some(client.client_id.as_str()) {
            return Err(OAuthError::InvalidRequest(
                "only the current actor of a delegation token may re-delegate it".into(),
            ));
        }
        if actor.subject == client.client_id {
            return Err(OAuthError::InvalidRequest(
                "an agent cannot re-delegate to itself".into(),
            ));
        }
    }

    delegate(
        state,
        client,
        Delegation {
            parent: &parent,
            grant: &grant,
            actor: actor.subject,
            resource,
            requested,
        },
        now,
    )
    .await
}

/// What a new delegation token is made from.
#[derive(Debug)]
pub(crate) struct Delegation<'a> {
    /// The token (or a grant's own claims) it narrows.
    pub(crate) parent: &'a Claims,
    /// The grant it stems from.
    pub(crate) grant: &'a grants::Grant,
    /// The agent that will hold it.
    pub(crate) actor: String,
    /// Where it may be used.
    pub(crate) resource: String,
    /// Narrower constraints than the parent's, if asked for.
    pub(crate) requested: Option<Constraints>,
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
            token_id: random_token(16),
        },
    )
    .map_err(|e| OAuthError::InvalidScope(e.to_string()))?;
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
    state
        .audit
        .record(
            "token.exchanged",
            serde_json::json!({
                "grant_id": child.grant_id, "sub": child.subject, "act": actors,
                "client_id": client.client_id, "aud": child.audience, "jti": child.token_id,
                "exp": child.expires_at, "parent_jti": parent.token_id,
            }),
            now,
        )
        .await?;
    Ok(TokenResponse {
        expires_in: child.expires_at - now,
        access_token: portcullis_policy::sign(&child, state.keys().active()),
        token_type: "Bearer",
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
        refresh_token: None,
    })
}
