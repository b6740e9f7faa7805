//! What the issuer's JSON endpoints (the admin API, the gateways' own) read from a request: a
//! body parsed strictly, and a bearer token compared in constant time.

use axum::http::{HeaderMap, header};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::oauth_error::OAuthError;

/// Checks `Authorization: Bearer` against `expected`, in constant time.
pub(crate) fn require_bearer(expected: &str, headers: &HeaderMap) -> Result<(), OAuthError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(OAuthError::Unauthorized("bearer token required"))?;
    let equal: bool = crate::secret::hash_secret(presented)
        .as_bytes()
        .ct_eq(crate::secret::hash_secret(expected).as_bytes())
        .into();
    if equal {
        Ok(())
    } else {
        Err(OAuthError::Unauthorized("wrong bearer token"))
    }
}

/// A JSON body, strictly parsed (no duplicate keys), or a 400 naming what is wrong.
pub(crate) fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, OAuthError> {
    portcullis_policy::strict_json::from_slice_to(body)
        .map_err(|e| OAuthError::InvalidRequest(format!("body: {e}")))
}
