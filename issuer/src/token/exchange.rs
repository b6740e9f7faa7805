//! RFC 8693 token exchange: a first exchange or a re-delegation, both yielding a delegation
//! token for one resource.
//!
//! A first exchange takes the user's subject token (or a trusted identity provider's token
//! for the user, whose grant to this agent is then looked up) and the grant's agent's own
//! client token, and starts the actor chain. A re-delegation takes an agent's delegation
//! token and a sub-agent's client token, is made by the agent that holds the delegation
//! token, and yields a token attenuated by [`crate::token::mint::delegate`]: never more
//! tools, looser limits, a later expiry or a deeper chain than its parent.
//!
//! With DPoP, the new token is bound to the key the actor's client token is bound to, and a
//! bound subject token is only exchanged with a proof signed by its key: so a bound token is
//! worth nothing to whoever steals it, here as at the gateway.

use portcullis_policy::dpop::Proof;
use portcullis_policy::{ActorRule, Constraints, Expected, VerifiedToken, VerifyError};

use crate::client_auth::Params;
use crate::clients::Client;
use crate::oauth_error::OAuthError;
use crate::token::mint::{self, ACCESS_TOKEN_TYPE, Delegation, TokenResponse};
use crate::{AppState, now};
use crate::{grants, revocation};

const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

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
    // Bound tokens are welcome here: the binding is checked against this request's proof.
    state.keys().verifier().verify_unbound_or_bound(
        token,
        &Expected {
            audience,
            now: now(),
            actor,
        },
    )
}

/// The RFC 8693 token-exchange grant.
pub(crate) async fn exchange(
    state: &AppState,
    client: &Client,
    params: &Params,
    proof: Option<Proof>,
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

    // A bound token is exchanged only by the holder of its key; the new token is bound to the
    // key of the agent it goes to (its client token's), never to none.
    if let Some(jkt) = &parent.confirmation
        && proof.as_ref().map(|p| &p.thumbprint) != Some(jkt)
    {
        return Err(OAuthError::InvalidDpopProof(
            "the subject_token is bound to a key: send a DPoP proof signed with it".into(),
        ));
    }
    mint::delegate(
        state,
        client,
        Delegation {
            parent: &parent,
            grant: &grant,
            actor: actor.subject,
            resource,
            requested,
            confirmation: actor.confirmation,
        },
        now,
    )
    .await
}
