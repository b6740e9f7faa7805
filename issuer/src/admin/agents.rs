//! `/admin/clients`: agents, registered as OAuth clients.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ErrorBody, created, ok, require_admin};
use crate::clients::{self, Client, ClientError, NewClient};
use crate::oauth_error::OAuthError;
use crate::request::json_body;
use crate::{AppState, now};

/// An agent to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAgent {
    /// Its `client_id`; generated when absent.
    #[serde(default)]
    client_id: Option<String>,
    /// A name people read (consent page, account page, console).
    name: String,
    /// Where authorization responses may go: https, or http to a loopback host.
    #[serde(default)]
    redirect_uris: Vec<String>,
}

/// Every registered agent.
#[utoipa::path(get, path = "/admin/clients", tag = "agents",
    responses((status = 200, body = Vec<Client>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    Ok(ok(clients::list(&state.db).await?))
}

/// Registers an agent; the answer holds its secret, shown only this once.
#[utoipa::path(post, path = "/admin/clients", tag = "agents", request_body = NewAgent,
    responses((status = 201, body = NewClient), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let request: NewAgent = json_body(&body)?;
    if let Some(bad) = request
        .redirect_uris
        .iter()
        .find(|u| !crate::client_metadata::valid_redirect_uri(u))
    {
        return Err(OAuthError::InvalidRequest(format!(
            "redirect URI {bad}: use https, or http to a loopback host"
        )));
    }
    let registered = clients::register(
        &state.db,
        request.client_id.as_deref(),
        &request.name,
        request.redirect_uris,
        now(),
    )
    .await
    .map_err(|e| match e {
        ClientError::InvalidId | ClientError::Exists(_) => {
            OAuthError::InvalidRequest(e.to_string())
        }
        ClientError::Db(e) => e.into(),
    })?;
    Ok(created(registered))
}

/// One agent.
#[utoipa::path(get, path = "/admin/clients/{client_id}", tag = "agents",
    params(("client_id" = String, Path, description = "Its client_id")),
    responses((status = 200, body = Client), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let client = clients::get(&state.db, &client_id)
        .await?
        .ok_or_else(|| OAuthError::NotFound(format!("no agent {client_id:?}")))?;
    Ok(ok(client))
}
