//! The self-service page of a signed-in person, `/account`: the grants they gave (the agent,
//! where, and the terms in plain words), the approvals waiting for them, and a button that
//! revokes a grant, which ends its live work at every gateway (the revocation is pushed to
//! them as an operator's is).
//!
//! The page shares the sign-in session of the approval page ([`crate::sign_in`]); its forms
//! carry that session's form token. A person can see and revoke only their own grants.

mod page;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_policy::revocation::RevocationKind;

use crate::approvals::{self, Approval};
use crate::client_auth::Params;
use crate::grants::{self, Grant};
use crate::page::page;
use crate::revocation::{self, RevokeError, RevokeRequest};
use crate::sign_in::{self, SignedIn};
use crate::{AppState, audit, clients, now, upstream_links};

/// A grant as the page shows it: with its agent's display name, and the agent chains that
/// acted under it (each from the grant's own agent to the one that acted) with when each
/// last did.
pub(crate) struct Shown {
    pub(crate) grant: Grant,
    pub(crate) agent: String,
    pub(crate) delegations: Vec<(Vec<String>, i64)>,
    /// Sub-agents whose branch of it is revoked.
    pub(crate) revoked_branches: Vec<String>,
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    crate::page::unavailable("account page", e)
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<SignedIn, Response> {
    match sign_in::current(state, headers, now()).await {
        Ok(Some(person)) => Ok(person),
        Ok(None) => Err(Redirect::to("/sign-in?next=/account").into_response()),
        Err(e) => Err(unavailable(e)),
    }
}

/// What the page shows: grants, approvals waiting, upstream accounts.
type Gathered = (Vec<Shown>, Vec<Approval>, Links);

/// The person's accounts at upstreams that take their own: linked (with when), and not yet.
pub(crate) struct Links {
    pub(crate) linked: Vec<(String, i64)>,
    pub(crate) unlinked: Vec<String>,
}

async fn gather(state: &AppState, person: &SignedIn) -> Result<Gathered, sqlx::Error> {
    let mut shown = Vec::new();
    for grant in grants::of_subject(&state.db, &person.username).await? {
        let agent = clients::get(&state.db, &grant.client_id)
            .await?
            .map_or_else(|| grant.client_id.clone(), |client| client.name);
        let delegations = audit::delegations_of(&state.db, &grant.id).await?;
        let revoked_branches = revocation::revoked_branches(&state.db, &grant.id).await?;
        shown.push(Shown {
            grant,
            agent,
            delegations,
            revoked_branches,
        });
    }
    let waiting = approvals::waiting_for(state, &person.username, now()).await?;
    let linked = upstream_links::links_of(&state.db, &person.username).await?;
    let unlinked = upstream_links::registered(&state.db)
        .await?
        .into_iter()
        .filter(|resource| !linked.iter().any(|(r, _)| r == resource))
        .collect();
    Ok((shown, waiting, Links { linked, unlinked }))
}

/// `GET /account` (`?revoked=ID` after a revocation, to say so).
pub(crate) async fn show(state: &AppState, headers: &HeaderMap, revoked: Option<&str>) -> Response {
    let person = match signed_in(state, headers).await {
        Ok(person) => person,
        Err(response) => return response,
    };
    match gather(state, &person).await {
        Ok((shown, waiting, links)) => {
            page::render(&person, (&shown, &waiting, &links), revoked, now())
        }
        Err(e) => unavailable(e),
    }
}

/// `POST /account/links/unlink`: the person unlinks their account at an upstream; their
/// agents' next call there asks them to link it again.
pub(crate) async fn unlink(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Response {
    let person = match signed_in(state, headers).await {
        Ok(person) => person,
        Err(response) => return response,
    };
    let params = Params::parse(headers, body).ok();
    let field = |name: &str| params.as_ref().and_then(|p| p.get(name)).map(str::to_owned);
    if !field("form_token").is_some_and(|t| person.sent_form(&t)) {
        return page(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "<p class=\"err\">Open your account page again and unlink from there.</p>",
        );
    }
    let Some(resource) = field("resource") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Nothing to unlink",
            "<p class=\"err\">The form names no upstream.</p>",
        );
    };
    match upstream_links::unlink(&state.db, &person.username, &resource, now()).await {
        Ok(_) => Redirect::to("/account").into_response(),
        Err(e) => unavailable(e),
    }
}

/// What a person revokes on the page.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Revoked<'a> {
    /// A whole grant: `POST /account/grants/{id}/revoke`.
    Grant,
    /// One sub-agent's branch of it: `POST /account/grants/{id}/branches/{agent}/revoke`.
    Branch(&'a str),
}

/// The person revokes one of their own grants, or one sub-agent's branch of it.
pub(crate) async fn revoke(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    what: Revoked<'_>,
    body: &[u8],
) -> Response {
    let person = match signed_in(state, headers).await {
        Ok(person) => person,
        Err(response) => return response,
    };
    let params = Params::parse(headers, body).ok();
    let sent = params
        .as_ref()
        .and_then(|p| p.get("form_token"))
        .is_some_and(|t| person.sent_form(t));
    if !sent {
        return page(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "<p class=\"err\">Open your account page again and revoke from there.</p>",
        );
    }
    let grant = match grants::get(&state.db, id).await {
        Ok(grant) => grant,
        Err(e) => return unavailable(e),
    };
    // Another person's grant is answered as a missing one: ids are not to be probed.
    let Some(grant) = grant.filter(|g| g.subject == person.username) else {
        return page(
            StatusCode::NOT_FOUND,
            "No such grant",
            "<p class=\"err\">You have no grant with this id.</p>",
        );
    };
    let (kind, value, what_went) = match what {
        Revoked::Grant => (RevocationKind::Grant, grant.id.clone(), grant.id.clone()),
        Revoked::Branch(agent) => (
            RevocationKind::Branch,
            portcullis_policy::revocation::branch(&grant.id, agent),
            format!("{agent} under {}", grant.id),
        ),
    };
    let request = RevokeRequest {
        kind,
        value,
        reason: format!("revoked by {} on the account page", person.username),
        token_expires_at: None,
    };
    let max_lifetime = state.config.max_token_lifetime();
    match revocation::revoke(&state.db, &state.hub, request, max_lifetime, now()).await {
        Ok(_) => Redirect::to(&format!(
            "/account?revoked={}",
            form_urlencoded::byte_serialize(what_went.as_bytes()).collect::<String>()
        ))
        .into_response(),
        Err(RevokeError::InvalidBranch) => page(
            StatusCode::BAD_REQUEST,
            "Not a sub-agent",
            "<p class=\"err\">That agent is the grant's own: revoke the grant instead.</p>",
        ),
        Err(e) => unavailable(e),
    }
}
