//! CSRF protection of the sign-in and consent forms.
//!
//! A random token goes into a hidden field of each page and into a cookie; a form counts only
//! when both come back and match the hash stored with the pending request, so it cannot be
//! submitted from another site or another browser.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::authorize::error::AuthorizeError;
use crate::secret::secret_matches;

/// The name of the cookie: `__Host-` (host-only, `Secure`, path `/`) when the issuer is served
/// over HTTPS; browsers refuse `Secure` cookies over plain HTTP, so development issuers use a
/// plain name.
fn cookie_name(issuer: &str) -> &'static str {
    if issuer.starts_with("https://") {
        "__Host-portcullis-csrf"
    } else {
        "portcullis-csrf"
    }
}

/// The `Set-Cookie` value carrying `token` for `max_age` seconds.
pub(crate) fn set_cookie(issuer: &str, token: &str, max_age: i64) -> HeaderValue {
    let secure = if issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        cookie_name(issuer)
    ))
    .expect("base64url tokens are valid header values")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Checks the form's token against this browser's cookie and the stored hash.
pub(crate) fn check(
    headers: &HeaderMap,
    issuer: &str,
    token: &str,
    stored_hash: &str,
) -> Result<(), AuthorizeError> {
    let cookie_matches = cookie(headers, cookie_name(issuer)) == Some(token);
    if cookie_matches && secret_matches(token, stored_hash) {
        Ok(())
    } else {
        Err(AuthorizeError::CsrfMismatch)
    }
}
