//! The authorization endpoint: authorization code with PKCE (S256 only), sign-in and consent.
//!
//! The three handlers here are sequences of the steps in the files beside them:
//!
//! | file | what |
//! |---|---|
//! | `request` | `GET /authorize`'s parameters, validated client and `redirect_uri` first |
//! | `pending` | the requests people are answering, stored under a random handle (the SQL) |
//! | `csrf` | the token a form must carry in a field and in a cookie |
//! | `consent` | the offer (allowance narrowed by the request) and the approval |
//! | `error` | [`AuthorizeError`]: one mapping to a page or a redirect |
//! | `redirect` | the client's return address: `state` and `iss` on every answer |
//! | `page` | the sign-in, consent and error pages |
//!
//! `GET /authorize` stores the request and shows the sign-in page. Signing in
//! (`POST /authorize/sign-in`) shows the consent page: the agent, the person, the resource, and
//! the tools and terms on offer. Approving (`POST /authorize/consent`), possibly with fewer
//! tools, creates a grant for that agent and redirects with a one-time code that
//! [`crate::token::authorization_code`] redeems.

mod consent;
mod csrf;
mod error;
mod page;
mod pending;
mod redirect;
mod request;

use axum::http::{HeaderMap, header};
use axum::response::Response;

pub(crate) use error::AuthorizeError;
use error::Refusal;
use page::RequestView;
use pending::{Pending, REQUEST_TTL};

use crate::clients::Client;
use crate::grants::{self, GrantRequest};
use crate::secret::{hash_secret, random_token};
use crate::throttle::{self, Attempt};
use crate::{AppState, now, users};

/// Handles `GET /authorize`.
pub(crate) async fn start(state: &AppState, query: &str) -> Result<Response, AuthorizeError> {
    let (client, request) = request::validate(state, query).await?;
    let (handle, csrf) = (random_token(32), random_token(32));
    let pending = Pending {
        handle_hash: hash_secret(&handle),
        csrf_hash: hash_secret(&csrf),
        request,
        username: None,
    };
    pending::store(&state.db, &pending).await?;
    let mut response = page::sign_in(&view(&pending, &client, &handle, &csrf), None);
    response.headers_mut().insert(
        header::SET_COOKIE,
        csrf::set_cookie(&state.config.issuer, &csrf, REQUEST_TTL),
    );
    Ok(response)
}

fn view<'a>(
    pending: &'a Pending,
    client: &'a Client,
    handle: &'a str,
    csrf: &'a str,
) -> RequestView<'a> {
    let redirect = url::Url::parse(&pending.request.return_to.redirect_uri).ok();
    RequestView {
        handle,
        csrf,
        client_name: &client.name,
        client_id: &client.client_id,
        redirect_host: redirect
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default(),
        redirect_origin: redirect
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default(),
        resource: &pending.request.resource,
    }
}

/// Handles `POST /authorize/sign-in`.
pub(crate) async fn sign_in(
    state: &AppState,
    address: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AuthorizeError> {
    let form = pending::load(state, headers, body).await?;
    let view = view(&form.pending, &form.client, &form.handle, &form.csrf);
    let (Some(username), Some(password)) =
        (form.params.get("username"), form.params.get("password"))
    else {
        return Ok(page::sign_in(
            &view,
            Some("enter your username and password"),
        ));
    };
    let now = now();
    let attempt = Attempt::new(username, address);
    if let Some(wait) = attempt.refused_for(&state.db, now).await? {
        let mut page = page::sign_in(&view, Some(&throttle::refusal(wait)));
        *page.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
        return Ok(page);
    }
    let Some(user) = users::authenticate(&state.db, username, password).await? else {
        attempt.failed(&state.db, now).await?;
        state
            .audit
            .record(
                "user.sign_in_failed",
                serde_json::json!({"username": username, "client_id": form.client.client_id}),
                now,
            )
            .await?;
        return Ok(page::sign_in(&view, Some("wrong username or password")));
    };
    attempt.succeeded(&state.db).await?;
    state
        .audit
        .record(
            "user.signed_in",
            serde_json::json!({"username": user.username, "client_id": form.client.client_id}),
            now,
        )
        .await?;
    let offered = consent::offer(&user, &form.pending)?;
    pending::signed_in(&state.db, &form.pending, &user.username).await?;
    Ok(page::consent(&view, &user.username, &offered, None))
}

/// Handles `POST /authorize/consent`.
pub(crate) async fn consent(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, AuthorizeError> {
    let form = pending::load(state, headers, body).await?;
    let pending = &form.pending;
    let request = &pending.request;
    let username = pending
        .username
        .clone()
        .ok_or(AuthorizeError::NotSignedIn)?;
    // The request is answered once, whatever the answer.
    if !pending::take(&state.db, pending).await? {
        return Err(AuthorizeError::AlreadyAnswered);
    }
    let now = now();
    if form.params.get("decision") != Some("approve") {
        state
            .audit
            .record(
                "consent.denied",
                serde_json::json!({"username": username, "client_id": request.client_id}),
                now,
            )
            .await?;
        return Err(pending.refuse(Refusal::Denied { username }));
    }
    let user = users::get(&state.db, &username)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(|| pending.refuse(Refusal::AccountDisabled))?;
    let offered = consent::offer(&user, pending)?;
    let chosen: Vec<&str> = form.params.all("tool").collect();
    let approved = consent::approve(&offered, &chosen, pending, &username)?;
    let grant = grants::create(
        &state.db,
        GrantRequest {
            name: None,
            subject: user.username.clone(),
            client_id: request.client_id.clone(),
            resources: vec![request.resource.clone()],
            authorization_details: approved,
            expires_in: state.config.consent_ttl,
        },
        now,
    )
    .await?;
    state
        .audit
        .record(
            "consent.approved",
            serde_json::json!({"username": user.username, "client_id": request.client_id,
                               "grant_id": grant.id, "resource": request.resource, "tools": chosen}),
            now,
        )
        .await?;
    let code = crate::token::authorization_code::create(
        state,
        &grant,
        &request.return_to.redirect_uri,
        &request.code_challenge,
        now,
    )
    .await?;
    Ok(request
        .return_to
        .send(&[("code", code.as_str())], &state.config.issuer))
}
