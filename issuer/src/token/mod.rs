//! The token endpoint, `POST /token`: one dispatch over the grant types, a file per grant
//! type, and one minting core every token goes through.
//!
//! Three kinds of token leave this endpoint, told apart by audience and `act` (RFC 8725 §3.12
//! asks for mutually exclusive validation rules):
//!
//! | token | `aud` | `act` | `gid` | use |
//! |---|---|---|---|---|
//! | client token (`client_credentials`) | this issuer | no | no | an agent's `actor_token` |
//! | subject token (minted for a grant) | this issuer | no | yes | the user's `subject_token` |
//! | delegation token (exchange, code, refresh) | one resource | yes | yes | `Authorization: Bearer` at the gateway |
//!
//! | file | what |
//! |---|---|
//! | [`grant_type`] | the grant types by wire name: dispatch, metadata, registration, metrics |
//! | `client_credentials` | an agent's own token |
//! | `exchange` | RFC 8693: a first exchange or a re-delegation |
//! | `authorization_code` | codes made at consent, redeemed once with PKCE |
//! | `refresh_token` | a consent's refresh family: rotation and reuse detection |
//! | [`mint`] | the minting core: attenuation, rate cap, audit, signing |
//! | `dpop` | RFC 9449 proofs at this endpoint, and what a bound token's `token_type` is |
//!
//! Before any grant file runs, the dispatch refuses (`unauthorized_client`) a grant type the
//! client may not use: a public client anything outside the code flow, and every client a
//! grant type not stored with it ([`grant_type::GrantTypes`]). The grant files can therefore
//! take the client's right to their grant as given.
//!
//! The grant files depend on [`mint`] and never on this file, so the dispatch can name them
//! all without an import circle.

pub(crate) mod authorization_code;
mod client_credentials;
mod dpop;
mod exchange;
pub mod grant_type;
pub mod mint;
pub(crate) mod refresh_token;

use axum::http::HeaderMap;

pub use grant_type::GrantType;
pub use mint::{ACCESS_TOKEN_TYPE, TokenResponse};

use crate::AppState;
use crate::client_auth::{Params, authenticate};
use crate::clients::AuthMethod;
use crate::oauth_error::OAuthError;

/// Handles `POST /token`.
pub async fn token(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let params = Params::parse(headers, body)?;
    let grant_type = params.get("grant_type").and_then(GrantType::from_wire);
    let result = grant(state, headers, &params, grant_type).await;
    crate::metrics::token_request(
        grant_type,
        result.as_ref().map_or_else(OAuthError::code, |_| "ok"),
    );
    result
}

async fn grant(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    grant_type: Option<GrantType>,
) -> Result<TokenResponse, OAuthError> {
    let client = authenticate(state, headers, params).await?;
    let name = params.require("grant_type")?;
    // A public client proves nothing about itself; PKCE and rotation protect only the
    // authorization-code flow.
    if client.auth_method == AuthMethod::None && !grant_type.is_some_and(GrantType::is_code_flow) {
        return Err(OAuthError::UnauthorizedClient(format!(
            "a public client cannot use {name}"
        )));
    }
    let Some(grant_type) = grant_type else {
        return Err(OAuthError::UnsupportedGrantType(format!(
            "grant_type {name} is not supported"
        )));
    };
    // Whatever the grant, a client uses only the grant types stored with it: a client that
    // registered itself for the code flow must not mint agent tokens or exchange them.
    if !client.grant_types.permits(grant_type) {
        return Err(OAuthError::UnauthorizedClient(format!(
            "this client is not registered for {name}"
        )));
    }
    let proof = dpop::proof(state, headers, crate::now()).await?;
    match (grant_type, proof) {
        (GrantType::AuthorizationCode | GrantType::RefreshToken, Some(_)) => {
            // Asked for a bound token and not able to give one: refused, never a bearer token
            // the client did not ask for.
            Err(OAuthError::InvalidDpopProof(format!(
                "DPoP-bound tokens are not issued for {name} yet"
            )))
        }
        (GrantType::AuthorizationCode, None) => {
            authorization_code::redeem(state, &client, params).await
        }
        (GrantType::RefreshToken, None) => refresh_token::rotate(state, &client, params).await,
        (GrantType::ClientCredentials, proof) => {
            client_credentials::issue(state, &client, params, proof).await
        }
        (GrantType::TokenExchange, proof) => {
            exchange::exchange(state, &client, params, proof).await
        }
    }
}
