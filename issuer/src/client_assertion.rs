//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Connect Core §9).
//!
//! The client signs a short-lived JWT with a key it registered (`jwks`), so it holds no secret
//! the issuer also knows. The assertion must name the client as `iss` and `sub`, this issuer
//! or its token endpoint as `aud`, expire within five minutes, and carry a `jti` never seen
//! before: a captured assertion cannot be replayed.

use portcullis_policy::{KeySet, Verifier};
use serde::Deserialize;

use crate::clients::{AuthMethod, Client};
use crate::oauth_error::OAuthError;
use crate::{AppState, now};

/// RFC 7523 §2.2 `client_assertion_type`.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may live, seconds.
const MAX_LIFETIME: i64 = 300;
/// Allowed clock skew, seconds.
const LEEWAY: i64 = 30;

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    jti: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &[String]) -> bool {
        match self {
            Audience::One(a) => wanted.contains(a),
            Audience::Many(list) => list.iter().any(|a| wanted.contains(a)),
        }
    }
}

fn invalid(reason: impl Into<String>) -> OAuthError {
    OAuthError::InvalidClient(format!("client_assertion: {}", reason.into()))
}

/// The client that signed `assertion`.
pub(crate) async fn authenticate(
    state: &AppState,
    claimed_client_id: Option<&str>,
    assertion: &str,
) -> Result<Client, OAuthError> {
    // The client is named inside the assertion; read it before verifying only to pick keys.
    let unverified_sub = unverified_subject(assertion).ok_or_else(|| invalid("malformed JWT"))?;
    if claimed_client_id.is_some_and(|id| id != unverified_sub) {
        return Err(OAuthError::InvalidRequest(
            "client_id disagrees with the client_assertion".into(),
        ));
    }
    let client = crate::clients::get_enabled(&state.db, &unverified_sub)
        .await?
        .filter(|c| c.auth_method == AuthMethod::PrivateKeyJwt)
        .ok_or_else(|| invalid("unknown client, or not registered for private_key_jwt"))?;
    let jwks = client
        .jwks
        .as_ref()
        .ok_or_else(|| invalid("the client registered no keys"))?;
    let keys = KeySet::from_jwks(jwks).map_err(|e| invalid(format!("registered keys: {e}")))?;
    let payload = Verifier::new(client.client_id.clone(), keys)
        .verify_assertion_payload(assertion)
        .map_err(|e| invalid(e.to_string()))?;
    let claims: AssertionClaims = portcullis_policy::strict_json::from_slice_to(&payload)
        .map_err(|e| invalid(e.to_string()))?;
    let now = now();
    let issuer = &state.config.issuer;
    if claims.iss != client.client_id || claims.sub != client.client_id {
        return Err(invalid("iss and sub must both be the client_id"));
    }
    if !claims
        .aud
        .contains(&[issuer.clone(), format!("{issuer}/token")])
    {
        return Err(invalid("aud must be this issuer or its token endpoint"));
    }
    if claims.exp <= now - LEEWAY {
        return Err(invalid("expired"));
    }
    if claims.exp > now + MAX_LIFETIME + LEEWAY {
        return Err(invalid(format!("lives longer than {MAX_LIFETIME} seconds")));
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY)
        || claims.iat.is_some_and(|iat| iat > now + LEEWAY)
    {
        return Err(invalid("not valid yet"));
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(invalid("jti must be 1-256 characters"));
    }
    // The client's id, as before the namespace: assertions spent earlier stay spent.
    let fresh = crate::spent::spend(
        state,
        &client.client_id,
        &claims.jti,
        claims.exp + LEEWAY,
        now,
    )
    .await?;
    if !fresh {
        return Err(invalid("this assertion was already used (jti replay)"));
    }
    Ok(client)
}

fn unverified_subject(assertion: &str) -> Option<String> {
    use base64::Engine;
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(Deserialize)]
    struct Sub {
        sub: String,
    }
    serde_json::from_slice::<Sub>(&bytes).ok().map(|s| s.sub)
}
