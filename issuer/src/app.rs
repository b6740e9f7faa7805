//! The issuer's HTTP surface: thin axum handlers over the plain functions of the other modules.
//!
//! | route | what |
//! |---|---|
//! | `GET /authorize` | authorization code + PKCE: the sign-in page |
//! | `POST /authorize/sign-in`, `POST /authorize/consent` | the sign-in and consent forms |
//! | `POST /token` | `authorization_code`, `refresh_token`, `client_credentials`, RFC 8693 exchange |
//! | `POST /register` | RFC 7591 dynamic client registration (unless switched off) |
//! | `GET /.well-known/jwks.json` | the public signing keys |
//! | `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata |
//! | `POST /revoke` | RFC 7009: a client revokes a token issued to it |
//! | `POST /introspect` | RFC 7662: is this token active? (client authentication required) |
//! | `GET /.well-known/revoked` | the signed revocation feed (JWS) |
//! | `GET /revocations/stream` | revocations as they commit (SSE, resumable with `Last-Event-ID`) |
//! | `POST /audit/decisions` | gateways ship their decision events (gateway token) |
//! | `POST /approvals` | a gateway asks about a call that needs approval: spent, pending or denied (gateway token) |
//! | `GET`, `POST /approvals/{id}` | the approval page: a signed-in person approves or denies one call |
//! | `GET`, `POST /sign-in`, `POST /sign-out` | the browser session of the pages people use |
//! | `GET /account`, `POST /account/grants/{id}/revoke`, `POST /account/grants/{id}/branches/{agent}/revoke` | a person's grants and waiting approvals; revoking one of their grants, or one sub-agent's branch of it |
//! | `GET /console`, `GET /console/events`, `POST /console/revoke`, `POST /console/freezes`, `POST /console/freezes/lift` | the operator console: the live decision stream (SSE), the authority graph, revocations and freezes (operators signed in) |
//! | `GET /console.js` | the console's script |
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (database reachable, signing key loaded) |
//! | `GET /metrics` | Prometheus metrics |
//! | `/admin/…` | the admin API (admin token): people, agents, grants, revocations, keys, freezes, audit ([`crate::admin`]) |
//! | `GET /openapi.json`, `GET /docs` | the admin API's OpenAPI 3.1 document and its interactive docs |

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::oauth_error::OAuthError;
use crate::request::{json_body, require_bearer};
use crate::token::{self, GrantType};
use crate::{AppState, now};
use crate::{introspection, metrics as issuer_metrics, revocation};

/// The issuer's router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/authorize", get(authorize))
        .route("/authorize/sign-in", post(sign_in))
        .route("/authorize/consent", post(consent))
        .route("/token", post(token))
        .route("/register", post(register))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/revoke", post(revoke))
        .route("/introspect", post(introspect))
        .route("/.well-known/revoked", get(revoked_feed))
        .route("/revocations/stream", get(revocation_stream))
        .route("/audit/decisions", post(ingest_decisions))
        .route("/approvals", post(ask_approval))
        .route("/upstream-token", post(upstream_token))
        .route("/link", get(link))
        .route("/link/callback", get(link_callback))
        .route("/account/links/unlink", post(account_unlink))
        .route("/approvals/{id}", get(approval_page).post(approval_answer))
        .route("/sign-in", get(sign_in_form).post(sign_in_session))
        .route("/sign-out", post(sign_out))
        .route("/account", get(account))
        .route("/account/grants/{id}/revoke", post(account_revoke))
        .route(
            "/account/grants/{id}/branches/{agent}/revoke",
            post(account_revoke_branch),
        )
        .route("/console", get(console))
        .route("/console/events", get(console_events))
        .route("/console/revoke", post(console_revoke))
        .route("/console/freezes", post(console_freeze))
        .route("/console/freezes/lift", post(console_lift))
        .route("/console.js", get(console_script))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::admin::router())
        .with_state(state)
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let response = token::token(&state, &headers, &body).await?;
    Ok(no_store(Json(response).into_response()))
}

async fn authorize(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
    crate::authorize::start(&state, uri.query().unwrap_or_default())
        .await
        .unwrap_or_else(|e| e.into_response(&state.config.issuer))
}

/// The TCP peer's address, when served with connection info (not in-process tests).
fn peer(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

async fn sign_in(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::authorize::sign_in(&state, peer(&extensions), &headers, &body)
        .await
        .unwrap_or_else(|e| e.into_response(&state.config.issuer))
}

async fn consent(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    crate::authorize::consent(&state, &headers, &body)
        .await
        .unwrap_or_else(|e| e.into_response(&state.config.issuer))
}

async fn register(State(state): State<AppState>, body: Bytes) -> Result<Response, OAuthError> {
    let answer = crate::registration::register(&state, &body).await?;
    Ok(no_store(
        (StatusCode::CREATED, Json(answer)).into_response(),
    ))
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys().jwks().clone()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn metadata(State(state): State<AppState>) -> Json<Value> {
    let issuer = &state.config.issuer;
    let client_auth = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    let mut document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GrantType::ALL.map(GrantType::wire_name),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
        "dpop_signing_alg_values_supported":
            portcullis_policy::dpop::ALGORITHMS.map(portcullis_policy::Algorithm::as_str),
        "authorization_details_types_supported": [portcullis_policy::constraint::MCP_TOOLS_TYPE],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "revocation_endpoint": format!("{issuer}/revoke"),
        "revocation_endpoint_auth_methods_supported": client_auth,
        "introspection_endpoint": format!("{issuer}/introspect"),
        "introspection_endpoint_auth_methods_supported": client_auth,
    });
    if state.config.dynamic_registration {
        document["registration_endpoint"] = json!(format!("{issuer}/register"));
    }
    Json(document)
}

/// Gateways' own endpoints take the gateway token (`--audit-ingest-token-file`).
fn require_gateway(state: &AppState, headers: &HeaderMap) -> Result<(), OAuthError> {
    let Some(expected) = &state.config.audit_ingest_token else {
        return Err(OAuthError::NotFound(
            "gateway endpoints are disabled (no gateway ingest token configured)".into(),
        ));
    };
    require_bearer(expected, headers)
}

async fn ingest_decisions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_gateway(&state, &headers)?;
    let batch = json_body(&body)?;
    let ack = crate::audit_ingest::ingest(&state, batch).await?;
    Ok(Json(ack).into_response())
}

async fn ask_approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_gateway(&state, &headers)?;
    let request = json_body(&body)?;
    let answer = crate::approvals::ask(&state, request, now()).await?;
    Ok(no_store(Json(answer).into_response()))
}

async fn upstream_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_gateway(&state, &headers)?;
    let request = json_body(&body)?;
    let answer = crate::upstream_links::token_for(&state, request, now()).await?;
    Ok(no_store(Json(answer).into_response()))
}

#[derive(Deserialize)]
struct LinkQuery {
    resource: String,
}

async fn link(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<LinkQuery>,
    headers: HeaderMap,
) -> Response {
    crate::upstream_links::flow::start(&state, &headers, &query.resource).await
}

async fn link_callback(
    State(state): State<AppState>,
    axum::extract::Query(answer): axum::extract::Query<crate::upstream_links::flow::Callback>,
    headers: HeaderMap,
) -> Response {
    crate::upstream_links::flow::callback(&state, &headers, answer).await
}

async fn account_unlink(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::account::unlink(&state, &headers, &body).await
}

async fn approval_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    crate::approvals::show(&state, &headers, &id).await
}

async fn approval_answer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::approvals::decide_form(&state, &headers, &id, &body).await
}

#[derive(Deserialize)]
struct SignInQuery {
    #[serde(default)]
    next: Option<String>,
}

async fn sign_in_form(axum::extract::Query(query): axum::extract::Query<SignInQuery>) -> Response {
    crate::sign_in::form(query.next.as_deref().unwrap_or("/"), None, StatusCode::OK)
}

async fn sign_in_session(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::sign_in::sign_in(&state, peer(&extensions), &headers, &body, now()).await
}

#[derive(Deserialize)]
struct AccountQuery {
    #[serde(default)]
    revoked: Option<String>,
}

async fn account(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<AccountQuery>,
    headers: HeaderMap,
) -> Response {
    crate::account::show(&state, &headers, query.revoked.as_deref()).await
}

async fn account_revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::account::revoke(&state, &headers, &id, crate::account::Revoked::Grant, &body).await
}

async fn account_revoke_branch(
    State(state): State<AppState>,
    Path((id, agent)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let what = crate::account::Revoked::Branch(&agent);
    crate::account::revoke(&state, &headers, &id, what, &body).await
}

#[derive(Deserialize)]
struct ConsoleQuery {
    #[serde(flatten)]
    filter: crate::console::Filter,
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// The console's query; one it cannot read shows everything rather than an error.
fn console_query(uri: &axum::http::Uri) -> ConsoleQuery {
    axum::extract::Query::try_from_uri(uri).map_or(
        ConsoleQuery {
            filter: crate::console::Filter::default(),
            done: None,
            after: None,
        },
        |q| q.0,
    )
}

async fn console(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let query = console_query(&uri);
    crate::console::show(&state, &headers, &query.filter, query.done.as_deref()).await
}

async fn console_events(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let query = console_query(&uri);
    let after = query.after.and_then(|a| a.parse().ok()).unwrap_or(0);
    crate::console::events(&state, &headers, query.filter, after).await
}

async fn console_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::console::act(&state, &headers, crate::console::Action::Revoke, &body).await
}

async fn console_freeze(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::console::act(&state, &headers, crate::console::Action::Freeze, &body).await
}

async fn console_lift(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    crate::console::act(&state, &headers, crate::console::Action::Lift, &body).await
}

async fn console_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        crate::page::CONSOLE_SCRIPT,
    )
        .into_response()
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    crate::sign_in::sign_out(&state, &headers).await
}

async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    introspection::revoke(&state, &headers, &body).await?;
    Ok(no_store(StatusCode::OK.into_response()))
}

async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let answer = introspection::introspect(&state, &headers, &body).await?;
    Ok(no_store(Json(answer).into_response()))
}

async fn revoked_feed(State(state): State<AppState>) -> Result<Response, OAuthError> {
    let feed = revocation::feed(&state.db, &state.keys(), &state.config.issuer, now()).await?;
    let mut response = feed.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwt"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(default)]
    after: Option<i64>,
}

async fn revocation_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<StreamQuery>,
) -> Result<Response, OAuthError> {
    // Last-Event-ID (set by SSE clients on reconnect) wins over ?after=.
    let last_event = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    OAuthError::InvalidRequest("Last-Event-ID is not a sequence number".into())
                })
        })
        .transpose()?;
    let after = last_event.or(query.after).unwrap_or(0).max(0);
    let events = revocation::stream(state.db.clone(), &state.hub, after, now()).await?;
    let sse = axum::response::sse::Sse::new(events).keep_alive(
        axum::response::sse::KeepAlive::new().interval(std::time::Duration::from_secs(15)),
    );
    let mut response = sse.into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

async fn readyz(State(state): State<AppState>) -> Response {
    let database = sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(state.db.pool())
        .await;
    match database {
        Ok(_) => (
            StatusCode::OK,
            format!("ready (signing key {})\n", state.keys().active().kid()),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!("not ready: database: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        issuer_metrics::render(),
    )
        .into_response()
}
