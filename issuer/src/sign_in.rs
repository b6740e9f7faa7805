//! Signed-in browser sessions: who is at the approval page (and the account pages after it).
//!
//! Signing in (`GET`/`POST /sign-in`) checks the password with [`users::authenticate`] and
//! sets a cookie holding 32 random bytes; the database keeps only its SHA-256, so a copy of
//! the database signs no one in. A session ends after [`IDLE_TIMEOUT`] without a request, after
//! [`ABSOLUTE_TIMEOUT`] whatever happens, or on `POST /sign-out`.
//!
//! Forms of a signed-in person carry a token derived from the session cookie (a hash of it
//! under its own label): a page of another site can neither read the cookie nor compute the
//! token, and the cookie is `SameSite=Lax` besides.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::client_auth::Params;
use crate::page::{error_line, escape, page};
use crate::secret::{hash_secret, random_token};
use crate::throttle::{self, Attempt};
use crate::{AppState, cookie, users};

/// A session ends this long after its last request.
pub(crate) const IDLE_TIMEOUT: i64 = 30 * 60;
/// A session ends this long after sign-in, however busy.
pub(crate) const ABSOLUTE_TIMEOUT: i64 = 12 * 60 * 60;
const COOKIE: &str = "portcullis-session";

/// A person with a live session.
#[derive(Debug)]
pub(crate) struct SignedIn {
    /// Who.
    pub(crate) username: String,
    /// The token their forms carry.
    pub(crate) form_token: String,
}

impl SignedIn {
    /// Whether a form came from this person's own page.
    pub(crate) fn sent_form(&self, token: &str) -> bool {
        self.form_token.as_bytes().ct_eq(token.as_bytes()).into()
    }
}

fn form_token(session: &str) -> String {
    hash_secret(&format!("form:{session}"))
}

/// The person signed in on this request's session cookie, if any; marks the session used.
pub(crate) async fn current(
    state: &AppState,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<SignedIn>, sqlx::Error> {
    let Some(session) = cookie::read(headers, &state.config.issuer, COOKIE) else {
        return Ok(None);
    };
    let id_hash = hash_secret(session);
    let row = sqlx::query(
        "UPDATE sign_in_sessions SET last_seen_at = $1
         WHERE id_hash = $2 AND last_seen_at > $3 AND created_at > $4
         RETURNING username",
    )
    .bind(now)
    .bind(&id_hash)
    .bind(now - IDLE_TIMEOUT)
    .bind(now - ABSOLUTE_TIMEOUT)
    .fetch_optional(state.db.pool())
    .await?;
    Ok(match row {
        Some(row) => Some(SignedIn {
            username: row.try_get("username")?,
            form_token: form_token(session),
        }),
        None => None,
    })
}

/// Where to go after signing in: a path of this issuer, never another site.
fn local_path(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if local { next } else { "/" }
}

/// `GET /sign-in?next=…`: the sign-in form.
pub(crate) fn form(next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let body = format!(
        "{error}<form method=\"post\" action=\"/sign-in\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <p><label>Username <input name=\"username\" autocomplete=\"username\" required \
         autofocus></label></p>\
         <p><label>Password <input name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\">Sign in</button></p></form>",
        error = error_line(error),
        next = escape(local_path(next)),
    );
    page(status, "Sign in", &body)
}

/// `POST /sign-in`: a new session and a redirect to `next`, or the form again; throttled per
/// user and per address ([`crate::throttle`]), and audited.
pub(crate) async fn sign_in(
    state: &AppState,
    address: Option<IpAddr>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Response {
    let Ok(params) = Params::parse(headers, body) else {
        return form(
            "/",
            Some("Send the form as it is."),
            StatusCode::BAD_REQUEST,
        );
    };
    let next = params.get("next").unwrap_or("/");
    let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
        return form(next, Some("Fill in both fields."), StatusCode::BAD_REQUEST);
    };
    let attempt = Attempt::new(username, address);
    match check_password(state, &attempt, username, password, now).await {
        Ok(Checked::Throttled(wait)) => form(
            next,
            Some(&throttle::refusal(wait)),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Ok(Checked::Wrong) => form(
            next,
            Some("Wrong username or password."),
            StatusCode::UNAUTHORIZED,
        ),
        Ok(Checked::Session(session)) => {
            let location = HeaderValue::from_str(local_path(next))
                .unwrap_or_else(|_| HeaderValue::from_static("/"));
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, location);
            headers.insert(
                header::SET_COOKIE,
                cookie::set(&state.config.issuer, COOKIE, &session, ABSOLUTE_TIMEOUT),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            tracing::error!("sign-in: {e}");
            form(
                next,
                Some("Sign-in is unavailable; try again."),
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
    }
}

/// How a sign-in went.
enum Checked {
    /// Refused without looking at the password, for this many more seconds.
    Throttled(i64),
    /// Unknown user or wrong password (counted).
    Wrong,
    /// Signed in: the new session's cookie value.
    Session(String),
}

async fn check_password(
    state: &AppState,
    attempt: &Attempt,
    username: &str,
    password: &str,
    now: i64,
) -> Result<Checked, Box<dyn std::error::Error + Send + Sync>> {
    if let Some(wait) = attempt.refused_for(&state.db, now).await? {
        return Ok(Checked::Throttled(wait));
    }
    let Some(user) = users::authenticate(&state.db, username, password).await? else {
        attempt.failed(&state.db, now).await?;
        let data = json!({"username": username, "via": "pages"});
        state.audit.record("user.sign_in_failed", data, now).await?;
        return Ok(Checked::Wrong);
    };
    attempt.succeeded(&state.db).await?;
    let session = random_token(32);
    sqlx::query(
        "INSERT INTO sign_in_sessions (id_hash, username, created_at, last_seen_at)
         VALUES ($1, $2, $3, $3)",
    )
    .bind(hash_secret(&session))
    .bind(&user.username)
    .bind(now)
    .execute(state.db.pool())
    .await?;
    let data = json!({"username": user.username, "via": "pages"});
    state.audit.record("user.signed_in", data, now).await?;
    Ok(Checked::Session(session))
}

/// `POST /sign-out`: the session ends here and in the database.
pub(crate) async fn sign_out(state: &AppState, headers: &HeaderMap) -> Response {
    if let Some(session) = cookie::read(headers, &state.config.issuer, COOKIE)
        && let Err(e) = sqlx::query("DELETE FROM sign_in_sessions WHERE id_hash = $1")
            .bind(hash_secret(session))
            .execute(state.db.pool())
            .await
    {
        tracing::error!("sign-out: {e}");
    }
    let mut response = page(StatusCode::OK, "Signed out", "<p>You are signed out.</p>");
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie::set(&state.config.issuer, COOKIE, "", 0),
    );
    response
}

/// A sign-out button for pages of a signed-in person.
pub(crate) fn sign_out_button(username: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/sign-out\"><p>Signed in as <b>{}</b> \
         <button type=\"submit\">Sign out</button></p></form>",
        escape(username)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_paths_of_this_issuer_are_followed() {
        assert_eq!(local_path("/approvals/abc"), "/approvals/abc");
        for away in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "approvals",
        ] {
            assert_eq!(local_path(away), "/", "{away}");
        }
    }

    #[test]
    fn a_form_token_is_tied_to_its_session() {
        assert_eq!(form_token("a"), form_token("a"));
        assert_ne!(form_token("a"), form_token("b"));
        let signed_in = SignedIn {
            username: "alice".into(),
            form_token: form_token("a"),
        };
        assert!(signed_in.sent_form(&form_token("a")));
        assert!(!signed_in.sent_form(&form_token("b")));
    }
}
