//! Authentication: the agent's bearer token, verified offline against the issuer's keys for
//! the resource the request is routed to (`aud`), with `act` required, and cached once
//! verified.

use std::sync::Arc;

use http::header;
use pingora::http::RequestHeader;
use portcullis_policy::{ActorRule, Expected, VerifiedToken, VerifyError};

use crate::clock;
use crate::jsonrpc_error::GatewayError;
use crate::state::GatewayState;

/// The request's verified token for `audience`.
pub(super) async fn authenticate(
    state: &GatewayState,
    req: &RequestHeader,
    audience: &str,
) -> Result<Arc<VerifiedToken>, GatewayError> {
    let token = bearer(req)?;
    verify(state, token, audience)
        .await
        .map_err(GatewayError::InvalidToken)
}

/// The one `Authorization: Bearer` credential; two headers are malformed, another scheme is
/// no token.
fn bearer(req: &RequestHeader) -> Result<&str, GatewayError> {
    let mut values = req.headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(match req.headers.contains_key(header::AUTHORIZATION) {
            true => GatewayError::InvalidToken(VerifyError::Malformed),
            false => GatewayError::MissingToken,
        });
    };
    let value = value
        .to_str()
        .map_err(|_| GatewayError::InvalidToken(VerifyError::Malformed))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token),
        _ => Err(GatewayError::MissingToken),
    }
}

async fn verify(
    state: &GatewayState,
    token: &str,
    audience: &str,
) -> Result<Arc<VerifiedToken>, VerifyError> {
    let now = clock::now();
    let keys = &state.keys;
    let cache = &state.token_cache;
    if let Some(hit) = cache.get(audience, token, keys.version(), now) {
        return Ok(hit);
    }
    let expected = Expected {
        audience,
        now,
        actor: ActorRule::Required,
    };
    // Read the key-set version before the keys: a concurrent refresh can then only make the
    // cache entry look older than it is, never newer.
    let mut version = keys.version();
    let verified = match keys.verifier().verify(token, &expected) {
        Err(VerifyError::UnknownKid(_)) if keys.refresh_for_unknown_kid().await => {
            version = keys.version();
            keys.verifier().verify(token, &expected)
        }
        other => other,
    }?;
    let verified = Arc::new(verified);
    cache.insert(audience, token, verified.clone(), version, now);
    Ok(verified)
}
