//! The approval page: the person signs in, reads exactly what the agent wants to do, and
//! approves or denies it.
//!
//! It shows the user, the agent chain, the upstream, the tool and the arguments
//! (pretty-printed, escaped: they are the agent's text), who else must approve, and how long
//! the request stays open. The form carries the session's form token ([`crate::sign_in`]).

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::{Approval, ApprovalError, Verdict, decide, get};
use crate::client_auth::Params;
use crate::page::{error_line, escape, page, when};
use crate::sign_in::{self, SignedIn};
use crate::{AppState, now};

fn unavailable(e: sqlx::Error) -> Response {
    crate::page::unavailable("approval page", e)
}

/// The person behind the request, or the sign-in page that comes back here.
async fn signed_in(state: &AppState, headers: &HeaderMap, id: &str) -> Result<SignedIn, Response> {
    match sign_in::current(state, headers, now()).await {
        Ok(Some(person)) => Ok(person),
        Ok(None) => Err(Redirect::to(&format!(
            "/sign-in?next=/approvals/{}",
            form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        ))
        .into_response()),
        Err(e) => Err(unavailable(e)),
    }
}

/// `GET /approvals/{id}`.
pub(crate) async fn show(state: &AppState, headers: &HeaderMap, id: &str) -> Response {
    let person = match signed_in(state, headers, id).await {
        Ok(person) => person,
        Err(response) => return response,
    };
    match get(state, id).await {
        Ok(Some(approval)) => render(&approval, &person, None, None),
        Ok(None) => not_found(&person),
        Err(e) => unavailable(e),
    }
}

/// `POST /approvals/{id}`: `decision` = `approve` or `deny`, and the form token.
pub(crate) async fn decide_form(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
) -> Response {
    let person = match signed_in(state, headers, id).await {
        Ok(person) => person,
        Err(response) => return response,
    };
    let params = Params::parse(headers, body).ok();
    let field = |name| params.as_ref().and_then(|p| p.get(name));
    if !field("form_token").is_some_and(|token| person.sent_form(token)) {
        return page(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "<p class=\"err\">Open the approval page again and answer there.</p>",
        );
    }
    let verdict = match field("decision") {
        Some("approve") => Verdict::Approve,
        Some("deny") => Verdict::Deny,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Approve or deny",
                "<p class=\"err\">Choose Approve or Deny.</p>",
            );
        }
    };
    match decide(state, id, &person.username, verdict, now()).await {
        Ok(approval) => {
            let done = match approval.status.as_str() {
                "approved" => "Approved: the agent may now make this call once.",
                "denied" => "Denied: the agent is told so if it tries again.",
                _ => "Your approval is recorded; the call waits for the second approval.",
            };
            render(&approval, &person, Some(done), None)
        }
        Err(ApprovalError::NotFound) => not_found(&person),
        Err(ApprovalError::Db(e)) => unavailable(e),
        Err(refused) => match get(state, id).await {
            Ok(Some(approval)) => {
                let mut response = render(&approval, &person, None, Some(&refused.to_string()));
                *response.status_mut() = StatusCode::CONFLICT;
                response
            }
            Ok(None) => not_found(&person),
            Err(e) => unavailable(e),
        },
    }
}

fn not_found(person: &SignedIn) -> Response {
    page(
        StatusCode::NOT_FOUND,
        "No such request",
        &format!(
            "<p class=\"err\">There is no approval request at this address.</p>{}",
            sign_in::sign_out_button(&person.username)
        ),
    )
}

fn render(
    approval: &Approval,
    person: &SignedIn,
    done: Option<&str>,
    error: Option<&str>,
) -> Response {
    let chain = approval
        .actors
        .iter()
        // `act` lists the current actor first; read from the grant's own agent onward.
        .rev()
        .map(|agent| format!("<code>{}</code>", escape(agent)))
        .collect::<Vec<_>>()
        .join(" → ");
    let arguments =
        serde_json::to_string_pretty(&approval.arguments).unwrap_or_else(|_| "{}".into());
    let who = match &approval.four_eyes {
        None => format!("<code>{}</code>", escape(&approval.subject)),
        Some(people) if people.is_empty() => "nobody: the grant's terms name no second approver \
                                              they agree on, so this call cannot run"
            .to_owned(),
        Some(people) => format!(
            "<code>{}</code>, then a second person: one of {}",
            escape(&approval.subject),
            people
                .iter()
                .map(|p| format!("<code>{}</code>", escape(p)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let given: Vec<String> = [&approval.approved_by_user, &approval.approved_by_second]
        .into_iter()
        .flatten()
        .map(|p| format!("<code>{}</code>", escape(p)))
        .collect();
    let until = when(approval.expires_at);
    let status = match approval.status.as_str() {
        "pending" if given.is_empty() => format!("waiting for approval until {until}"),
        "pending" => format!(
            "approved by {}; waiting for the second approval until {until}",
            given.join(", ")
        ),
        "approved" => format!(
            "approved by {}; good for one call until {until}",
            given.join(", ")
        ),
        "spent" => "approved and used: the call ran".to_owned(),
        "denied" => "denied".to_owned(),
        "expired" => "expired without being used".to_owned(),
        "void" => "void: the grant was revoked".to_owned(),
        other => escape(other),
    };
    let form = if approval.status == "pending" && approval.role_of(&person.username).is_some() {
        format!(
            "<form method=\"post\" action=\"/approvals/{id}\">\
             <input type=\"hidden\" name=\"form_token\" value=\"{token}\">\
             <p><button type=\"submit\" name=\"decision\" value=\"approve\">Approve this call</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></p></form>",
            id = escape(&approval.id),
            token = escape(&person.form_token),
        )
    } else {
        String::new()
    };
    let done = done.map_or_else(String::new, |d| {
        format!("<p class=\"ok\" role=\"status\">{}</p>", escape(d))
    });
    let body = format!(
        "{done}{error}<p class=\"who\">An agent acting for <b>{user}</b> asks to make this call \
         once, with exactly these arguments.</p>\
         <dl><dt>Agents</dt><dd>{chain}</dd><dt>Service</dt><dd><code>{upstream}</code></dd>\
         <dt>Tool</dt><dd><code>{tool}</code></dd><dt>Who approves</dt><dd>{who}</dd>\
         <dt>Status</dt><dd id=\"status\">{status}</dd></dl>\
         <h2>Arguments</h2><pre id=\"arguments\">{arguments}</pre>{form}\
         <p><a href=\"/account\">Your delegations</a></p>{sign_out}",
        error = error_line(error),
        user = escape(&approval.subject),
        upstream = escape(&approval.upstream),
        tool = escape(&approval.tool),
        arguments = escape(&arguments),
        sign_out = sign_in::sign_out_button(&person.username),
    );
    let mut response = page(StatusCode::OK, "Approve this call?", &body);
    response
        .headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static("Cookie"));
    response
}
