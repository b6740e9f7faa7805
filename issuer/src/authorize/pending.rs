//! Authorization requests a person is answering, kept server-side: the SQL of the flow's
//! pages.
//!
//! A request is stored under a random handle for [`REQUEST_TTL`]; the pages carry the handle
//! and a CSRF token, and only hashes of both are stored. A form post is loaded back by its
//! handle and counts only with its CSRF token ([`crate::authorize::csrf`]). A request is
//! answered once, whatever the answer: [`take`] deletes it in the statement that finds it.

use axum::http::HeaderMap;
use sqlx::Row;

use crate::authorize::csrf;
use crate::authorize::error::{AuthorizeError, Refusal};
use crate::authorize::redirect::ReturnTo;
use crate::authorize::request::AuthorizationRequest;
use crate::client_auth::Params;
use crate::clients::Client;
use crate::db::Database;
use crate::secret::hash_secret;
use crate::{AppState, now};

/// How long a person has to sign in and decide.
pub(crate) const REQUEST_TTL: i64 = 600;

/// A request the person is answering, as stored.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// The hash of its handle.
    pub(crate) handle_hash: String,
    /// The hash of its CSRF token.
    pub(crate) csrf_hash: String,
    /// What was asked.
    pub(crate) request: AuthorizationRequest,
    /// Who signed in to answer it, once someone has.
    pub(crate) username: Option<String>,
}

impl Pending {
    /// A refusal sent back to the client that asked.
    pub(crate) fn refuse(&self, reason: Refusal) -> AuthorizeError {
        AuthorizeError::refused(&self.request.return_to, reason)
    }
}

/// Stores a new request.
pub(crate) async fn store(db: &Database, pending: &Pending) -> Result<(), sqlx::Error> {
    let (pending, expires_at) = (pending.clone(), now() + REQUEST_TTL);
    db.write(|tx| {
        let pending = pending.clone();
        Box::pin(async move {
            // Abandoned requests go as new ones arrive.
            sqlx::query("DELETE FROM authorization_requests WHERE expires_at < $1")
                .bind(now())
                .execute(&mut **tx)
                .await?;
            let request = &pending.request;
            sqlx::query(
                "INSERT INTO authorization_requests
                   (handle_hash, csrf_hash, client_id, redirect_uri, code_challenge, state,
                    resource, requested, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&pending.handle_hash)
            .bind(&pending.csrf_hash)
            .bind(&request.client_id)
            .bind(&request.return_to.redirect_uri)
            .bind(&request.code_challenge)
            .bind(&request.return_to.state)
            .bind(&request.resource)
            .bind(
                request
                    .requested
                    .as_ref()
                    .map(|c| serde_json::to_string(c).expect("constraints serialise")),
            )
            .bind(expires_at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
    })
    .await
}

/// A form post of the flow: the pending request it answers, checked against its CSRF token in
/// both the form and the cookie.
pub(crate) struct FormPost {
    /// The form's fields.
    pub(crate) params: Params,
    /// The request it answers.
    pub(crate) pending: Pending,
    /// The client that asked, still enabled.
    pub(crate) client: Client,
    /// The handle, to render the next page with.
    pub(crate) handle: String,
    /// The CSRF token, likewise.
    pub(crate) csrf: String,
}

/// Loads the pending request a form answers.
pub(crate) async fn load(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<FormPost, AuthorizeError> {
    let params = Params::parse(headers, body).map_err(AuthorizeError::MalformedParams)?;
    let handle = params
        .get("request")
        .ok_or(AuthorizeError::MissingHandle)?
        .to_owned();
    let csrf = params
        .get("csrf")
        .ok_or(AuthorizeError::MissingCsrf)?
        .to_owned();
    let row = sqlx::query(
        "SELECT handle_hash, csrf_hash, client_id, redirect_uri, code_challenge, state, resource,
                requested, username
         FROM authorization_requests WHERE handle_hash = $1 AND expires_at >= $2",
    )
    .bind(hash_secret(&handle))
    .bind(now())
    .fetch_optional(state.db.pool())
    .await?
    .ok_or(AuthorizeError::UnknownRequest)?;
    let requested: Option<String> = row.try_get("requested")?;
    let pending = Pending {
        handle_hash: row.try_get("handle_hash")?,
        csrf_hash: row.try_get("csrf_hash")?,
        request: AuthorizationRequest {
            client_id: row.try_get("client_id")?,
            return_to: ReturnTo {
                redirect_uri: row.try_get("redirect_uri")?,
                state: row.try_get("state")?,
            },
            code_challenge: row.try_get("code_challenge")?,
            resource: row.try_get("resource")?,
            requested: requested
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(AuthorizeError::StoredRequest)?,
        },
        username: row.try_get("username")?,
    };
    csrf::check(headers, &state.config.issuer, &csrf, &pending.csrf_hash)?;
    let client = crate::clients::get_enabled(&state.db, &pending.request.client_id)
        .await?
        .ok_or_else(|| pending.refuse(Refusal::ClientDisabled))?;
    Ok(FormPost {
        params,
        pending,
        client,
        handle,
        csrf,
    })
}

/// Records who signed in to answer the request.
pub(crate) async fn signed_in(
    db: &Database,
    pending: &Pending,
    username: &str,
) -> Result<(), sqlx::Error> {
    let (username, hash) = (username.to_owned(), pending.handle_hash.clone());
    db.write(|tx| {
        let (username, hash) = (username.clone(), hash.clone());
        Box::pin(async move {
            sqlx::query("UPDATE authorization_requests SET username = $1 WHERE handle_hash = $2")
                .bind(username)
                .bind(hash)
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
    })
    .await
}

/// Removes the request for its one answer; `false` if it was already answered.
pub(crate) async fn take(db: &Database, pending: &Pending) -> Result<bool, sqlx::Error> {
    let hash = pending.handle_hash.clone();
    let deleted = db
        .write(|tx| {
            let hash = hash.clone();
            Box::pin(async move {
                Ok(
                    sqlx::query("DELETE FROM authorization_requests WHERE handle_hash = $1")
                        .bind(hash)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected(),
                )
            })
        })
        .await?;
    Ok(deleted != 0)
}
