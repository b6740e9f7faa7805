//! DPoP at the token endpoint (RFC 9449 §5): a client that sends a proof gets a token bound
//! to the proof's key (`cnf.jkt`, `token_type: DPoP`).
//!
//! The proof is checked as the gateway checks one, for `POST {issuer}/token` and without a
//! token hash, and its `jti` is spent once (in the database, so across issuer replicas). What
//! the binding means for each grant is the grant file's: a client token is bound to the
//! caller's key; an exchange binds the new token to the actor's (the sub-agent's) key, and a
//! bound subject token may only be exchanged by the holder of its key.

use axum::http::HeaderMap;
use portcullis_policy::dpop::{self, Expectation, Proof};

use crate::oauth_error::OAuthError;
use crate::{AppState, spent};

/// How old a proof may be, in seconds.
const MAX_AGE: i64 = 60;
/// Allowed clock skew, in seconds, both ways.
const LEEWAY: i64 = 5;

/// The `token_type` of a token bound to `confirmation`, or of a bearer token.
pub(crate) fn token_type(confirmation: Option<&str>) -> &'static str {
    match confirmation {
        Some(_) => "DPoP",
        None => "Bearer",
    }
}

/// The request's DPoP proof, verified and spent, if it carries one.
pub(crate) async fn proof(
    state: &AppState,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<Proof>, OAuthError> {
    let mut values = headers.get_all("dpop").iter();
    let proof = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(proof), None) => proof
            .to_str()
            .map_err(|_| OAuthError::InvalidDpopProof("the proof is not text".into()))?,
        (Some(_), Some(_)) => {
            return Err(OAuthError::InvalidDpopProof(
                "one DPoP proof, not several".into(),
            ));
        }
    };
    let url = format!("{}/token", state.config.issuer);
    let expected = Expectation {
        method: "POST",
        url: &url,
        access_token: None,
        nonces: None,
        now,
        max_age: MAX_AGE,
        leeway: LEEWAY,
    };
    let proof = dpop::verify_proof(proof, &expected)
        .map_err(|e| OAuthError::InvalidDpopProof(e.to_string()))?;
    let namespace = format!("dpop:{}", proof.thumbprint);
    let until = proof.issued_at + MAX_AGE + 2 * LEEWAY;
    if !spent::spend(state, &namespace, &proof.jti, until, now).await? {
        return Err(OAuthError::InvalidDpopProof(
            "the proof was used before".into(),
        ));
    }
    Ok(Some(proof))
}
