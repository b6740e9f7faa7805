//! The authorization endpoint: authorization code with PKCE (S256 only), sign-in and consent.
//!
//! `GET /authorize` checks the client and its `redirect_uri` first: until both are known good,
//! errors are shown on a page and never redirected (an open redirector would otherwise be one
//! bad `redirect_uri` away). Later errors go back to the client as RFC 6749 §4.1.2.1 redirects
//! carrying `state` and `iss` (RFC 9207).
//!
//! The request is kept server-side under a random handle; the pages carry the handle and a CSRF
//! token that must also come back in a cookie, so a form cannot be submitted from another
//! site or another browser. Signing in (`POST /authorize/sign-in`) shows the consent page: the
//! agent, the person, the resource, and the tools and terms on offer, which are the person's
//! allowance narrowed by the agent's request. Approving (`POST /authorize/consent`), possibly
//! with fewer tools, creates a grant for that agent and redirects with a one-time code that
//! [`crate::token::authorization_code`] redeems.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_policy::{Constraints, narrow};
use sqlx::Row;

use crate::client_auth::Params;
use crate::clients::Client;
use crate::consent_page::{self, RequestView};
use crate::grants::{self, GrantRequest};
use crate::secret::{hash_secret, random_token, secret_matches};
use crate::users::{self, User};
use crate::{AppState, client_metadata, now};

/// How long a person has to sign in and decide.
const REQUEST_TTL: i64 = 600;

/// Why an authorization request failed, and how the answer travels.
#[derive(Debug)]
pub(crate) enum AuthorizeError {
    /// Shown on a page: the client or its redirect cannot be trusted with the answer.
    Page(StatusCode, String),
    /// Sent back to the client's registered `redirect_uri`.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
    /// Our fault; logged, shown as a page.
    Server(String),
}

impl From<sqlx::Error> for AuthorizeError {
    fn from(e: sqlx::Error) -> Self {
        AuthorizeError::Server(format!("database: {e}"))
    }
}

/// A redirect back to the client, with `iss` so it can tell which server answered (RFC 9207).
fn redirect_to(redirect_uri: &str, params: &[(&str, &str)], issuer: &str) -> Response {
    let mut url = url::Url::parse(redirect_uri).expect("registered redirect URIs are valid URLs");
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        query.append_pair("iss", issuer);
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl AuthorizeError {
    pub(crate) fn into_response(self, issuer: &str) -> Response {
        match self {
            AuthorizeError::Page(status, message) => consent_page::error(status, &message),
            AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut params = vec![("error", error), ("error_description", &description)];
                if let Some(state) = &state {
                    params.push(("state", state));
                }
                redirect_to(&redirect_uri, &params, issuer)
            }
            AuthorizeError::Server(detail) => {
                tracing::error!(%detail, "authorization request failed");
                consent_page::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the issuer failed; see its log",
                )
            }
        }
    }
}

/// A request the person is answering, as stored.
#[derive(Debug, Clone)]
struct Pending {
    handle_hash: String,
    csrf_hash: String,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    state: Option<String>,
    resource: String,
    requested: Option<Constraints>,
    username: Option<String>,
}

impl Pending {
    fn redirect_error(
        &self,
        error: &'static str,
        description: impl Into<String>,
    ) -> AuthorizeError {
        AuthorizeError::Redirect {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            error,
            description: description.into(),
        }
    }
}

/// The name of the CSRF cookie: `__Host-` (host-only, `Secure`, path `/`) when the issuer is
/// served over HTTPS; browsers refuse `Secure` cookies over plain HTTP, so development
/// issuers use a plain name.
fn csrf_cookie_name(issuer: &str) -> &'static str {
    if issuer.starts_with("https://") {
        "__Host-portcullis-csrf"
    } else {
        "portcullis-csrf"
    }
}

fn csrf_cookie(issuer: &str, value: &str) -> HeaderValue {
    let secure = if issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={REQUEST_TTL}{secure}",
        csrf_cookie_name(issuer)
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

fn valid_code_challenge(challenge: &str) -> bool {
    // base64url(SHA-256) is 43 characters; RFC 7636 §4.2 allows 43-128 unreserved characters.
    (43..=128).contains(&challenge.len())
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Scopes of the form `mcp:tools:<pattern>` ask for those tools; other scopes ask for nothing
/// (the resource server's own scopes mean nothing here: authority is the `mcp_tools` detail).
fn requested_from_scope(scope: &str) -> Result<Option<Constraints>, String> {
    let tools: Vec<&str> = scope
        .split(' ')
        .filter_map(|s| s.strip_prefix("mcp:tools:"))
        .collect();
    if tools.is_empty() {
        return Ok(None);
    }
    let detail = serde_json::json!([{"type": portcullis_policy::constraint::MCP_TOOLS_TYPE, "tools": tools}]);
    Constraints::from_authorization_details(detail.as_array().expect("an array"))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Handles `GET /authorize`.
pub(crate) async fn start(state: &AppState, query: &str) -> Result<Response, AuthorizeError> {
    let params = Params::from_query(query)
        .map_err(|e| AuthorizeError::Page(StatusCode::BAD_REQUEST, e.to_string()))?;
    let client_id = params.get("client_id").ok_or_else(|| {
        AuthorizeError::Page(StatusCode::BAD_REQUEST, "client_id is required".into())
    })?;
    let client = find_client(state, client_id).await?;
    let redirect_uri = match (params.get("redirect_uri"), &client.redirect_uris[..]) {
        (Some(uri), registered) if registered.iter().any(|r| r == uri) => uri.to_owned(),
        (None, [only]) => only.clone(),
        (Some(_), _) => {
            return Err(AuthorizeError::Page(
                StatusCode::BAD_REQUEST,
                "redirect_uri is not registered for this client (exact match required)".into(),
            ));
        }
        (None, _) => {
            return Err(AuthorizeError::Page(
                StatusCode::BAD_REQUEST,
                "redirect_uri is required".into(),
            ));
        }
    };
    let oauth_state = params.get("state").map(str::to_owned);
    let fail = |error: &'static str, description: &str| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: oauth_state.clone(),
        error,
        description: description.to_owned(),
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        None => return Err(fail("invalid_request", "response_type is required")),
    }
    match params.get("code_challenge_method") {
        Some("S256") => {}
        Some(_) => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        None => {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge_method=S256",
            ));
        }
    }
    let code_challenge = params
        .get("code_challenge")
        .filter(|c| valid_code_challenge(c))
        .ok_or_else(|| {
            fail(
                "invalid_request",
                "code_challenge must be 43-128 characters of base64url",
            )
        })?
        .to_owned();
    let resource = match params.all("resource").collect::<Vec<_>>()[..] {
        [one] if grants::valid_resource(one) => one.to_owned(),
        [_] => {
            return Err(fail(
                "invalid_target",
                "resource must be an absolute http(s) URI without a fragment",
            ));
        }
        [] => {
            return Err(fail(
                "invalid_target",
                "resource is required (RFC 8707): name the MCP server",
            ));
        }
        _ => {
            return Err(fail(
                "invalid_target",
                "ask for one resource per authorization",
            ));
        }
    };
    let requested = match params.get("authorization_details") {
        Some(text) => {
            let details: Vec<serde_json::Value> =
                portcullis_policy::strict_json::from_slice_to(text.as_bytes())
                    .map_err(|e| fail("invalid_authorization_details", &e.to_string()))?;
            Some(
                Constraints::from_authorization_details(&details)
                    .map_err(|e| fail("invalid_authorization_details", &e.to_string()))?,
            )
        }
        None => params
            .get("scope")
            .map(requested_from_scope)
            .transpose()
            .map_err(|e| fail("invalid_scope", &e))?
            .flatten(),
    };

    let (handle, csrf) = (random_token(32), random_token(32));
    let pending = Pending {
        handle_hash: hash_secret(&handle),
        csrf_hash: hash_secret(&csrf),
        client_id: client.client_id.clone(),
        redirect_uri,
        code_challenge,
        state: oauth_state.clone(),
        resource,
        requested,
        username: None,
    };
    store(state, &pending).await?;
    let mut response = consent_page::sign_in(&view(&pending, &client, &handle, &csrf), None);
    response
        .headers_mut()
        .insert(header::SET_COOKIE, csrf_cookie(&state.config.issuer, &csrf));
    Ok(response)
}

async fn find_client(state: &AppState, client_id: &str) -> Result<Client, AuthorizeError> {
    let client = if client_metadata::is_metadata_url(client_id) {
        client_metadata::resolve(state, client_id)
            .await
            .map_err(|e| match e {
                client_metadata::MetadataError::Db(e) => e.into(),
                e => AuthorizeError::Page(
                    StatusCode::BAD_REQUEST,
                    format!("client {client_id}: {e}"),
                ),
            })?
    } else {
        crate::clients::get_enabled(&state.db, client_id)
            .await?
            .ok_or_else(|| {
                AuthorizeError::Page(
                    StatusCode::BAD_REQUEST,
                    format!("unknown client {client_id}"),
                )
            })?
    };
    if client.redirect_uris.is_empty() {
        return Err(AuthorizeError::Page(
            StatusCode::BAD_REQUEST,
            format!("client {client_id} has no redirect URIs registered"),
        ));
    }
    Ok(client)
}

fn view<'a>(
    pending: &'a Pending,
    client: &'a Client,
    handle: &'a str,
    csrf: &'a str,
) -> RequestView<'a> {
    RequestView {
        handle,
        csrf,
        client_name: &client.name,
        client_id: &client.client_id,
        redirect_host: url::Url::parse(&pending.redirect_uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default(),
        resource: &pending.resource,
    }
}

async fn store(state: &AppState, pending: &Pending) -> Result<(), sqlx::Error> {
    let (pending, expires_at) = (pending.clone(), now() + REQUEST_TTL);
    state
        .db
        .write(|tx| {
            let pending = pending.clone();
            Box::pin(async move {
                // Abandoned requests go as new ones arrive.
                sqlx::query("DELETE FROM authorization_requests WHERE expires_at < $1")
                    .bind(now())
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO authorization_requests
                       (handle_hash, csrf_hash, client_id, redirect_uri, code_challenge, state,
                        resource, requested, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&pending.handle_hash)
                .bind(&pending.csrf_hash)
                .bind(&pending.client_id)
                .bind(&pending.redirect_uri)
                .bind(&pending.code_challenge)
                .bind(&pending.state)
                .bind(&pending.resource)
                .bind(
                    pending
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
struct FormPost {
    params: Params,
    pending: Pending,
    client: Client,
    handle: String,
    csrf: String,
}

async fn load(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<FormPost, AuthorizeError> {
    let bad = |message: &str| AuthorizeError::Page(StatusCode::BAD_REQUEST, message.to_owned());
    let params = Params::parse(headers, body).map_err(|e| bad(&e.to_string()))?;
    let handle = params
        .get("request")
        .ok_or_else(|| bad("the form has no request handle"))?
        .to_owned();
    let csrf = params
        .get("csrf")
        .ok_or_else(|| bad("the form has no CSRF token"))?
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
    .ok_or_else(|| {
        bad("this authorization request is unknown or expired; start again from the application")
    })?;
    let requested: Option<String> = row.try_get("requested")?;
    let pending = Pending {
        handle_hash: row.try_get("handle_hash")?,
        csrf_hash: row.try_get("csrf_hash")?,
        client_id: row.try_get("client_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        code_challenge: row.try_get("code_challenge")?,
        state: row.try_get("state")?,
        resource: row.try_get("resource")?,
        requested: requested
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| AuthorizeError::Server(format!("stored request: {e}")))?,
        username: row.try_get("username")?,
    };
    let cookie_matches =
        cookie(headers, csrf_cookie_name(&state.config.issuer)) == Some(csrf.as_str());
    if !cookie_matches || !secret_matches(&csrf, &pending.csrf_hash) {
        return Err(AuthorizeError::Page(
            StatusCode::FORBIDDEN,
            "the form's CSRF token does not match this browser's; start again from the application"
                .into(),
        ));
    }
    let client = crate::clients::get_enabled(&state.db, &pending.client_id)
        .await?
        .ok_or_else(|| pending.redirect_error("access_denied", "the client was disabled"))?;
    Ok(FormPost {
        params,
        pending,
        client,
        handle,
        csrf,
    })
}

/// What the person can give this request: their allowance narrowed by what the agent asked.
fn offer(user: &User, pending: &Pending) -> Result<Constraints, AuthorizeError> {
    if !user.resources.contains(&pending.resource) {
        return Err(pending.redirect_error(
            "invalid_target",
            format!(
                "{} may not delegate access to {}",
                user.username, pending.resource
            ),
        ));
    }
    match &pending.requested {
        None => Ok(user.authorization_details.clone()),
        Some(requested) => narrow(&user.authorization_details, requested).map_err(|e| {
            pending.redirect_error(
                "access_denied",
                format!(
                    "the request asks for more than {} may delegate: {e}",
                    user.username
                ),
            )
        }),
    }
}

/// Handles `POST /authorize/sign-in`.
pub(crate) async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AuthorizeError> {
    let form = load(state, headers, body).await?;
    let view = view(&form.pending, &form.client, &form.handle, &form.csrf);
    let (Some(username), Some(password)) =
        (form.params.get("username"), form.params.get("password"))
    else {
        return Ok(consent_page::sign_in(
            &view,
            Some("enter your username and password"),
        ));
    };
    let now = now();
    let Some(user) = users::authenticate(&state.db, username, password).await? else {
        state
            .audit
            .record(
                "user.sign_in_failed",
                serde_json::json!({"username": username, "client_id": form.client.client_id}),
                now,
            )
            .await
            .map_err(|e| AuthorizeError::Server(e.to_string()))?;
        return Ok(consent_page::sign_in(
            &view,
            Some("wrong username or password"),
        ));
    };
    state
        .audit
        .record(
            "user.signed_in",
            serde_json::json!({"username": user.username, "client_id": form.client.client_id}),
            now,
        )
        .await
        .map_err(|e| AuthorizeError::Server(e.to_string()))?;
    let offered = offer(&user, &form.pending)?;
    state
        .db
        .write(|tx| {
            let (username, hash) = (user.username.clone(), form.pending.handle_hash.clone());
            Box::pin(async move {
                sqlx::query(
                    "UPDATE authorization_requests SET username = $1 WHERE handle_hash = $2",
                )
                .bind(username)
                .bind(hash)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await?;
    Ok(consent_page::consent(&view, &user.username, &offered, None))
}

/// Handles `POST /authorize/consent`.
pub(crate) async fn consent(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AuthorizeError> {
    let form = load(state, headers, body).await?;
    let pending = &form.pending;
    let username = pending.username.clone().ok_or_else(|| {
        AuthorizeError::Page(StatusCode::FORBIDDEN, "sign in before answering".into())
    })?;
    // The request is answered once, whatever the answer.
    let deleted = state
        .db
        .write(|tx| {
            let hash = pending.handle_hash.clone();
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
    if deleted == 0 {
        return Err(AuthorizeError::Page(
            StatusCode::BAD_REQUEST,
            "this request was already answered".into(),
        ));
    }
    let now = now();
    let decision = form.params.get("decision");
    if decision != Some("approve") {
        state
            .audit
            .record(
                "consent.denied",
                serde_json::json!({"username": username, "client_id": pending.client_id}),
                now,
            )
            .await
            .map_err(|e| AuthorizeError::Server(e.to_string()))?;
        return Err(
            pending.redirect_error("access_denied", format!("{username} denied the request"))
        );
    }
    let user = users::get(&state.db, &username)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(|| pending.redirect_error("access_denied", "the account was disabled"))?;
    let offered = offer(&user, pending)?;
    let chosen: Vec<&str> = form.params.all("tool").collect();
    if chosen.is_empty() {
        return Err(pending.redirect_error("access_denied", format!("{username} approved no tool")));
    }
    let mut narrowed = offered.to_raw();
    if let Some(unknown) = chosen
        .iter()
        .find(|t| !narrowed.tools.iter().any(|p| p.as_str() == **t))
    {
        return Err(AuthorizeError::Page(
            StatusCode::BAD_REQUEST,
            format!("{unknown} was not on offer"),
        ));
    }
    narrowed.tools.retain(|p| chosen.contains(&p.as_str()));
    // Fewer tools of the offer is always within it; narrowing again proves it.
    let server =
        |e: &dyn std::fmt::Display| AuthorizeError::Server(format!("narrowing a consent: {e}"));
    let approved = Constraints::new(narrowed).map_err(|e| server(&e))?;
    let approved = narrow(&offered, &approved).map_err(|e| server(&e))?;
    let grant = grants::create(
        &state.db,
        GrantRequest {
            name: None,
            subject: user.username.clone(),
            client_id: pending.client_id.clone(),
            resources: vec![pending.resource.clone()],
            authorization_details: approved,
            expires_in: state.config.consent_ttl,
        },
        now,
    )
    .await
    .map_err(|e| AuthorizeError::Server(e.to_string()))?;
    state
        .audit
        .record(
            "consent.approved",
            serde_json::json!({"username": user.username, "client_id": pending.client_id,
                               "grant_id": grant.id, "resource": pending.resource, "tools": chosen}),
            now,
        )
        .await
        .map_err(|e| AuthorizeError::Server(e.to_string()))?;
    let code = crate::token::authorization_code::create(
        state,
        &grant,
        &pending.redirect_uri,
        &pending.code_challenge,
        now,
    )
    .await?;
    let mut params = vec![("code", code.as_str())];
    if let Some(oauth_state) = &pending.state {
        params.push(("state", oauth_state));
    }
    Ok(redirect_to(
        &pending.redirect_uri,
        &params,
        &state.config.issuer,
    ))
}
