//! Linking a person's account at an upstream, in their browser: `GET /link?resource=…` sends
//! the signed-in person to the upstream's authorization server (authorization code, PKCE
//! S256, a one-time `state`, the upstream as `resource`); `GET /link/callback` takes the code
//! back, for the same person, within ten minutes, once, and stores their tokens.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::oauth_client;
use crate::page::{escape, page};
use crate::secret::{hash_secret, random_token};
use crate::sign_in::{self, SignedIn};
use crate::{AppState, now};

/// How long a person has to come back from the upstream's server.
const REQUEST_TTL: i64 = 600;

fn unavailable(e: impl std::fmt::Display) -> Response {
    crate::page::unavailable("account linking", e)
}

fn failed(status: StatusCode, why: &str) -> Response {
    page(
        status,
        "The account was not linked",
        &format!(
            "<p class=\"err\">{}</p><p><a href=\"/account\">Your account page</a></p>",
            escape(why)
        ),
    )
}

async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    back: &str,
) -> Result<SignedIn, Response> {
    match sign_in::current(state, headers, now()).await {
        Ok(Some(person)) => Ok(person),
        Ok(None) => {
            let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
            Err(Redirect::to(&format!("/sign-in?next={next}")).into_response())
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// `GET /link?resource=…`.
pub async fn start(state: &AppState, headers: &HeaderMap, resource: &str) -> Response {
    let person = match signed_in(state, headers, &super::link_url("", resource)).await {
        Ok(person) => person,
        Err(response) => return response,
    };
    let upstream = match super::get(state, resource).await {
        Ok(Some(upstream)) => upstream,
        Ok(None) => {
            return failed(
                StatusCode::NOT_FOUND,
                "No upstream with an authorization server of its own is registered here.",
            );
        }
        Err(e) => return unavailable(e),
    };
    let link_state = random_token(32);
    let verifier = random_token(48);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let (created, username) = (now(), person.username.clone());
    let stored = state
        .db
        .write(|tx| {
            let (hash, username, resource, verifier) = (
                hash_secret(&link_state),
                username.clone(),
                resource.to_owned(),
                verifier.clone(),
            );
            Box::pin(async move {
                sqlx::query("DELETE FROM upstream_link_requests WHERE created_at < $1")
                    .bind(created - REQUEST_TTL)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO upstream_link_requests (state_hash, username, resource, verifier,
                       created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(hash)
                .bind(username)
                .bind(resource)
                .bind(verifier)
                .bind(created)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await;
    if let Err(e) = stored {
        return unavailable(e);
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &upstream.client_id)
        .append_pair("redirect_uri", &super::callback(state))
        .append_pair("state", &link_state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &upstream.upstream_resource);
    if let Some(scope) = &upstream.scope {
        // A refresh token for offline access is asked for with consent (OpenID Connect).
        query
            .append_pair("scope", scope)
            .append_pair("prompt", "consent");
    }
    let separator = if upstream.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    Redirect::to(&format!(
        "{}{separator}{}",
        upstream.authorization_endpoint,
        query.finish()
    ))
    .into_response()
}

/// The query the upstream's server sends the person back with.
#[derive(Debug, Deserialize)]
pub struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /link/callback`.
pub async fn callback(state: &AppState, headers: &HeaderMap, answer: Callback) -> Response {
    let person = match signed_in(state, headers, "/account").await {
        Ok(person) => person,
        Err(response) => return response,
    };
    let Some(link_state) = answer.state else {
        return failed(StatusCode::BAD_REQUEST, "The answer carries no state.");
    };
    // Taken once, whatever comes next.
    let hash = hash_secret(&link_state);
    let taken = state
        .db
        .write(|tx| {
            let hash = hash.clone();
            Box::pin(async move {
                let row = sqlx::query(
                    "SELECT username, resource, verifier, created_at FROM upstream_link_requests
                     WHERE state_hash = $1",
                )
                .bind(&hash)
                .fetch_optional(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM upstream_link_requests WHERE state_hash = $1")
                    .bind(&hash)
                    .execute(&mut **tx)
                    .await?;
                row.map(
                    |row| -> Result<(String, String, String, i64), sqlx::Error> {
                        Ok((
                            row.try_get("username")?,
                            row.try_get("resource")?,
                            row.try_get("verifier")?,
                            row.try_get("created_at")?,
                        ))
                    },
                )
                .transpose()
            })
        })
        .await;
    let (username, resource, verifier, created_at) = match taken {
        Ok(Some(request)) => request,
        Ok(None) => {
            return failed(
                StatusCode::BAD_REQUEST,
                "This link request is unknown or was used.",
            );
        }
        Err(e) => return unavailable(e),
    };
    // Another person's request, finished in this browser, links nobody.
    if username != person.username || now() - created_at > REQUEST_TTL {
        return failed(
            StatusCode::BAD_REQUEST,
            "This link request is not yours, or it expired.",
        );
    }
    if let Some(error) = answer.error {
        return failed(
            StatusCode::BAD_REQUEST,
            &format!("The upstream's server said: {error}."),
        );
    }
    let Some(code) = answer.code else {
        return failed(StatusCode::BAD_REQUEST, "The answer carries no code.");
    };
    let upstream = match super::get(state, &resource).await {
        Ok(Some(upstream)) => upstream,
        Ok(None) => {
            return failed(
                StatusCode::NOT_FOUND,
                "The upstream is no longer registered.",
            );
        }
        Err(e) => return unavailable(e),
    };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", &super::callback(state)),
        ("code_verifier", verifier.as_str()),
        ("resource", upstream.upstream_resource.as_str()),
    ];
    let http = oauth_client::http();
    let tokens =
        match oauth_client::token(&http, &upstream.token_endpoint, &upstream.client(), &form).await
        {
            Ok(tokens) => tokens,
            Err(e) => return failed(StatusCode::BAD_GATEWAY, &e.to_string()),
        };
    let refresh = tokens.refresh_token.clone();
    let now = now();
    let stored = super::store(
        state,
        &username,
        &resource,
        &tokens,
        refresh.as_deref(),
        now,
        Some("upstream.linked"),
    )
    .await;
    match stored {
        Ok(()) => page(
            StatusCode::OK,
            "Account linked",
            &format!(
                "<p>Your account at <strong>{}</strong> is linked. Your agents' calls there now \
                 go as you; you can close this tab.</p><p><a href=\"/account\">Your account \
                 page</a>, where you can unlink it.</p>",
                escape(&resource)
            ),
        ),
        Err(e) => unavailable(e),
    }
}
