//! CSRF protection of the sign-in and consent forms.
//!
//! A random token goes into a hidden field of each page and into a cookie; a form counts only
//! when both come back and match the hash stored with the pending request, so it cannot be
//! submitted from another site or another browser.

use axum::http::{HeaderMap, HeaderValue};

use crate::authorize::error::AuthorizeError;
use crate::cookie;
use crate::secret::secret_matches;

const COOKIE: &str = "portcullis-csrf";

/// The `Set-Cookie` value carrying `token` for `max_age` seconds.
pub(crate) fn set_cookie(issuer: &str, token: &str, max_age: i64) -> HeaderValue {
    cookie::set(issuer, COOKIE, token, max_age)
}

/// Checks the form's token against this browser's cookie and the stored hash.
pub(crate) fn check(
    headers: &HeaderMap,
    issuer: &str,
    token: &str,
    stored_hash: &str,
) -> Result<(), AuthorizeError> {
    let cookie_matches = cookie::read(headers, issuer, COOKIE) == Some(token);
    if cookie_matches && secret_matches(token, stored_hash) {
        Ok(())
    } else {
        Err(AuthorizeError::CsrfMismatch)
    }
}
