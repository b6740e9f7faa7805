//! The operator console, `/console`: the live stream of every gateway's decisions (and every
//! revocation, freeze and delegation) filterable by user, agent, upstream and outcome; the
//! authority graph; and buttons that act: revoke a user, an agent, a grant or one sub-agent's
//! branch, and set or lift a change freeze.
//!
//! Operators are people of the user store with the operator role (`users create --operator`,
//! `users operator NAME`) who sign in like anyone ([`crate::sign_in`]); the role is checked on
//! every request, so taking it away takes effect at once. Forms carry the session's form
//! token. What they do is what the admin API and the CLI do, audited with the operator's name.

mod feed;
mod graph;
mod page;

use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_policy::revocation::RevocationKind;

pub use feed::DecisionFeed;
pub(crate) use feed::Filter;

use crate::client_auth::Params;
use crate::freezes::{self, FreezeError};
use crate::page::{console_page, page};
use crate::revocation::{self, RevokeError, RevokeRequest};
use crate::sign_in::{self, SignedIn};
use crate::{AppState, now, users};

/// Lines the page shows before the stream adds more.
const FIRST_LINES: usize = 100;

fn unavailable(e: impl std::fmt::Display) -> Response {
    crate::page::unavailable("console", e)
}

/// The signed-in operator, or the response that sends anyone else away: to sign in, or a
/// 403 for a person without the role.
async fn operator(state: &AppState, headers: &HeaderMap, next: &str) -> Result<SignedIn, Response> {
    let person = match sign_in::current(state, headers, now()).await {
        Ok(Some(person)) => person,
        Ok(None) => {
            let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            return Err(Redirect::to(&format!("/sign-in?next={next}")).into_response());
        }
        Err(e) => return Err(unavailable(e)),
    };
    match users::get(&state.db, &person.username).await {
        Ok(Some(user)) if user.operator && user.disabled_at.is_none() => Ok(person),
        Ok(_) => Err(page(
            StatusCode::FORBIDDEN,
            "Operators only",
            "<p class=\"err\">The console is for operators. Your own grants are on \
             <a href=\"/account\">your account page</a>.</p>",
        )),
        Err(e) => Err(unavailable(e)),
    }
}

/// `GET /console?user=&agent=&upstream=&outcome=&done=`.
pub(crate) async fn show(
    state: &AppState,
    headers: &HeaderMap,
    filter: &Filter,
    done: Option<&str>,
) -> Response {
    let person = match operator(state, headers, "/console").await {
        Ok(person) => person,
        Err(response) => return response,
    };
    let now = now();
    let gathered = async {
        let graph = graph::gather(&state.db, now).await?;
        let freezes = freezes::list(&state.db).await?;
        let (lines, head) = feed::recent(&state.db, filter, FIRST_LINES).await?;
        Ok::<_, sqlx::Error>((graph, freezes, lines, head))
    };
    match gathered.await {
        Ok((graph, freezes, lines, head)) => {
            let view = page::View {
                person: &person,
                graph: &graph,
                freezes: &freezes,
                lines: &lines,
                head,
                filter,
                done,
                now,
            };
            console_page(StatusCode::OK, "Console", &page::render(&view))
        }
        Err(e) => unavailable(e),
    }
}

/// `GET /console/events`: the live lines matching the filter, after `Last-Event-ID` (an
/// `EventSource` reconnecting) or `after` (the page's last line).
pub(crate) async fn events(
    state: &AppState,
    headers: &HeaderMap,
    filter: Filter,
    after: i64,
) -> Response {
    if let Err(response) = operator(state, headers, "/console").await {
        return response;
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(after);
    match feed::stream(&state.console, filter, after).await {
        Ok(lines) => {
            let mut response = Sse::new(lines)
                .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
                .into_response();
            response.headers_mut().insert(
                "x-accel-buffering",
                axum::http::HeaderValue::from_static("no"),
            );
            response
        }
        Err(e) => unavailable(e),
    }
}

/// What an operator does from the console.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    /// `POST /console/revoke`: `kind` (user, agent, grant or branch) and `value`.
    Revoke,
    /// `POST /console/freezes`: `pattern` and `reason`.
    Freeze,
    /// `POST /console/freezes/lift`: `pattern`.
    Lift,
}

/// Runs an operator's action and returns to the console saying what was done.
pub(crate) async fn act(
    state: &AppState,
    headers: &HeaderMap,
    action: Action,
    body: &[u8],
) -> Response {
    let person = match operator(state, headers, "/console").await {
        Ok(person) => person,
        Err(response) => return response,
    };
    let Ok(params) = Params::parse(headers, body) else {
        return refused("Send the form as it is.");
    };
    if !params
        .get("form_token")
        .is_some_and(|t| person.sent_form(t))
    {
        return page(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "<p class=\"err\">Open the console again and act from there.</p>",
        );
    }
    let field = |name: &str| params.get(name).unwrap_or_default().to_owned();
    let done = match action {
        Action::Revoke => revoke(state, &person, &field("kind"), &field("value")).await,
        Action::Freeze => freeze(state, &person, &field("pattern"), &field("reason")).await,
        Action::Lift => lift(state, &person, &field("pattern")).await,
    };
    match done {
        Ok(said) => {
            let said: String = form_urlencoded::byte_serialize(said.as_bytes()).collect();
            Redirect::to(&format!("/console?done={said}")).into_response()
        }
        Err(response) => response,
    }
}

fn refused(why: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Not done",
        &format!(
            "<p class=\"err\" role=\"alert\">{}</p><p><a href=\"/console\">Back to the console</a></p>",
            crate::page::escape(why)
        ),
    )
}

async fn revoke(
    state: &AppState,
    person: &SignedIn,
    kind: &str,
    value: &str,
) -> Result<String, Response> {
    let kind = match RevocationKind::from_name(kind) {
        Some(
            kind @ (RevocationKind::User
            | RevocationKind::Agent
            | RevocationKind::Grant
            | RevocationKind::Branch),
        ) => kind,
        _ => return Err(refused("Revoke a user, an agent, a grant or a branch.")),
    };
    let request = RevokeRequest {
        kind,
        value: value.to_owned(),
        reason: format!("revoked by {} from the console", person.username),
        token_expires_at: None,
    };
    let lifetime = state.config.max_token_lifetime();
    match revocation::revoke(&state.db, &state.hub, request, lifetime, now()).await {
        Ok(_) => {
            state.console.poke();
            Ok(format!("Revoked {} {value}.", kind.as_str()))
        }
        Err(RevokeError::Db(e)) => Err(unavailable(e)),
        Err(e) => Err(refused(&e.to_string())),
    }
}

async fn freeze(
    state: &AppState,
    person: &SignedIn,
    pattern: &str,
    reason: &str,
) -> Result<String, Response> {
    match freezes::set(&state.db, pattern, reason, &person.username, now()).await {
        Ok(freeze) => {
            state.hub.poke().await;
            state.console.poke();
            Ok(format!("Froze {}.", freeze.pattern.as_str()))
        }
        Err(FreezeError::Db(e)) => Err(unavailable(e)),
        Err(e) => Err(refused(&e.to_string())),
    }
}

async fn lift(state: &AppState, person: &SignedIn, pattern: &str) -> Result<String, Response> {
    match freezes::lift(&state.db, pattern, &person.username, now()).await {
        Ok(()) => {
            state.hub.poke().await;
            state.console.poke();
            Ok(format!("Lifted the freeze on {pattern}."))
        }
        Err(FreezeError::Db(e)) => Err(unavailable(e)),
        Err(e) => Err(refused(&e.to_string())),
    }
}
