//! The admin API: the whole operator surface as JSON over HTTP, under `/admin/`, behind the
//! admin token (`Authorization: Bearer`, `--admin-token-file`; without one configured the API
//! answers 404). It offers what the CLI does: people, agents, grants (list with filters and
//! pagination, get, create, revoke), revocations, signing keys, change freezes, upstreams with
//! an authorization server of their own, and the audit log (query, verify).
//!
//! The OpenAPI 3.1 document is generated from these handlers ([`ApiDoc`]) and served at
//! `/openapi.json`, with Swagger UI at `/docs` (its assets are built into the binary). Errors
//! are the issuer's one JSON error body ([`ErrorBody`]).
//!
//! Lists page with an opaque `cursor`: pass a page's `next_cursor` to get the next; a page
//! without one is the last.

mod agents;
mod audit;
mod freezes;
mod grants;
mod keys;
mod people;
mod revocations;
mod upstreams;

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::AppState;
use crate::oauth_error::OAuthError;

/// Who the audit log names for what is done through the API.
const ACTOR: &str = "admin API";
/// Page sizes.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;

/// The routes under `/admin/`, and the document and docs that describe them.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(people::list).post(people::create))
        .route("/admin/users/{username}", get(people::get))
        .route(
            "/admin/users/{username}/operator",
            put(people::set_operator),
        )
        .route("/admin/clients", get(agents::list).post(agents::create))
        .route("/admin/clients/{client_id}", get(agents::get))
        .route("/admin/grants", get(grants::list).post(grants::create))
        .route("/admin/grants/{id}", get(grants::get))
        .route("/admin/grants/{id}/revoke", post(grants::revoke))
        .route(
            "/admin/grants/{id}/subject-token",
            post(grants::subject_token),
        )
        .route(
            "/admin/revocations",
            get(revocations::list).post(revocations::create),
        )
        .route("/admin/keys", get(keys::list))
        .route("/admin/keys/rotate", post(keys::rotate))
        .route("/admin/freezes", get(freezes::list).post(freezes::set))
        .route("/admin/freezes/lift", post(freezes::lift))
        .route("/admin/upstreams", post(upstreams::register))
        .route("/admin/audit", get(audit::query))
        .route("/admin/audit/verify", get(audit::verify))
        .route("/openapi.json", get(openapi))
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs").url("/docs/openapi.json", ApiDoc::openapi()),
        )
}

/// The admin API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portcullis issuer admin API",
        description = "The operator surface of the Portcullis issuer: people, agents, grants, \
                       revocations, signing keys, change freezes and the audit log. Every \
                       operation needs the admin token as a bearer token.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        people::list, people::create, people::get, people::set_operator,
        agents::list, agents::create, agents::get,
        grants::list, grants::create, grants::get, grants::revoke, grants::subject_token,
        revocations::list, revocations::create,
        keys::list, keys::rotate,
        freezes::list, freezes::set, freezes::lift,
        upstreams::register,
        audit::query, audit::verify,
    ),
    components(schemas(ErrorBody, crate::grants::GrantStatus)),
    modifiers(&BearerAuth),
    security(("admin_token" = [])),
    tags(
        (name = "people", description = "People who sign in, consent and approve; operators"),
        (name = "agents", description = "Agents (OAuth clients)"),
        (name = "grants", description = "What a user allows an agent"),
        (name = "revocations", description = "Revocations pushed to every gateway"),
        (name = "keys", description = "Token signing keys"),
        (name = "freezes", description = "Change freezes in force at every gateway"),
        (name = "upstreams", description = "Upstreams with an authorization server of their own"),
        (name = "audit", description = "The hash-chained audit log"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The issuer's admin token (--admin-token-file)"))
                    .build(),
            ),
        );
    }
}

async fn openapi() -> Response {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Json(ApiDoc::openapi()),
    )
        .into_response()
}

/// The body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request`, `unauthorized`, `not_found`, `server_error`, …
    pub error: String,
    /// What was wrong, for people.
    pub error_description: Option<String>,
}

/// A page of a list, and where the next starts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Checks the admin token, in constant time.
fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), OAuthError> {
    let Some(expected) = &state.config.admin_token else {
        return Err(OAuthError::NotFound(
            "the admin API is disabled (no admin token configured)".into(),
        ));
    };
    crate::request::require_bearer(expected, headers)
}

/// A request's query, or a 400 naming what is wrong with it.
fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, OAuthError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| OAuthError::InvalidRequest(format!("query: {}", e.body_text())))
}

/// A page size: `limit`, or the default; 1 to [`MAX_LIMIT`].
fn limit(limit: Option<i64>) -> Result<i64, OAuthError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(OAuthError::InvalidRequest(format!(
            "limit must be 1 to {MAX_LIMIT}"
        ))),
    }
}

/// A cursor that is a sequence number (revocations, audit events), or a 400.
fn seq_cursor(cursor: Option<&str>) -> Result<Option<i64>, OAuthError> {
    cursor.map(parse_cursor).transpose()
}

/// A cursor this API gave, parsed by `parse`, or a 400.
fn parse_cursor<T: std::str::FromStr>(cursor: &str) -> Result<T, OAuthError> {
    cursor
        .parse()
        .map_err(|_| OAuthError::InvalidRequest("cursor: not one this API gave".into()))
}

fn created<T: Serialize>(value: T) -> Response {
    no_store((StatusCode::CREATED, Json(value)).into_response())
}

fn ok<T: Serialize>(value: T) -> Response {
    no_store(Json(value).into_response())
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}
