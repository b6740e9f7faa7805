//! The issuer's cookies: read from a request, and written host-only, `HttpOnly`,
//! `SameSite=Lax`, and `Secure` with the `__Host-` prefix when the issuer is served over
//! HTTPS (browsers refuse `Secure` cookies over plain HTTP, so development issuers use the
//! plain name).

use axum::http::{HeaderMap, HeaderValue, header};

/// The name `base` goes by at this issuer.
pub(crate) fn name(issuer: &str, base: &'static str) -> String {
    if issuer.starts_with("https://") {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// The `Set-Cookie` value for `base` = `value`, kept `max_age` seconds (0 deletes it).
pub(crate) fn set(issuer: &str, base: &'static str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        name(issuer, base)
    ))
    .expect("base64url tokens are valid header values")
}

/// The value of the cookie `base` in the request, if sent.
pub(crate) fn read<'a>(
    headers: &'a HeaderMap,
    issuer: &str,
    base: &'static str,
) -> Option<&'a str> {
    let name = name(issuer, base);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}
