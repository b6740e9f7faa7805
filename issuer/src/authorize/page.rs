//! The sign-in, consent and error pages of the authorization-code flow, rendered on the server.
//!
//! In the frame of [`crate::page`]: plain forms, every value escaped, never framed or cached.

use axum::http::StatusCode;
use axum::response::Response;
use portcullis_policy::Constraints;

use crate::page::{error_line, escape, page, page_sending_to};

/// What the pages show about the request being authorized.
#[derive(Debug)]
pub(crate) struct RequestView<'a> {
    /// The opaque handle of the pending request.
    pub(crate) handle: &'a str,
    /// The CSRF token, echoed in a hidden field.
    pub(crate) csrf: &'a str,
    /// The client's display name.
    pub(crate) client_name: &'a str,
    /// Its id.
    pub(crate) client_id: &'a str,
    /// The host that receives the answer: people must see where they are sending it.
    pub(crate) redirect_host: String,
    /// Its origin, which the consent form's answer is redirected to (the page's CSP allows it).
    pub(crate) redirect_origin: String,
    /// The resource the agent will act at.
    pub(crate) resource: &'a str,
}

fn intro(view: &RequestView<'_>) -> String {
    format!(
        "<p class=\"who\"><b>{name}</b> (<code>{id}</code>) asks to act on your behalf at \
         <code>{resource}</code>. Your answer goes to <b>{host}</b>.</p>",
        name = escape(view.client_name),
        id = escape(view.client_id),
        resource = escape(view.resource),
        host = escape(&view.redirect_host),
    )
}

fn hidden(view: &RequestView<'_>) -> String {
    format!(
        "<input type=\"hidden\" name=\"request\" value=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(view.handle),
        escape(view.csrf)
    )
}

/// Step one: who are you?
pub(crate) fn sign_in(view: &RequestView<'_>, error: Option<&str>) -> Response {
    let error = error_line(error);
    let body = format!(
        "{intro}{error}<form method=\"post\" action=\"/authorize/sign-in\">{hidden}\
         <p><label>Username <input name=\"username\" autocomplete=\"username\" required></label></p>\
         <p><label>Password <input name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required></label></p>\
         <p><button type=\"submit\">Sign in</button></p></form>",
        intro = intro(view),
        hidden = hidden(view),
    );
    page(
        if error.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        },
        "Sign in",
        &body,
    )
}

/// Step two: what may the agent do? Each tool pattern has a checkbox, so the person can give
/// less than was asked; everything else (limits, windows, rate, depth) is shown as it will
/// apply.
pub(crate) fn consent(
    view: &RequestView<'_>,
    username: &str,
    offered: &Constraints,
    error: Option<&str>,
) -> Response {
    let error = error_line(error);
    let tools: String = offered
        .tools()
        .iter()
        .map(|tool| {
            format!(
                "<li><label><input type=\"checkbox\" name=\"tool\" value=\"{t}\" checked> \
                 <code>{t}</code></label></li>",
                t = escape(tool.as_str())
            )
        })
        .collect();
    let terms: String = offered
        .describe()
        .iter()
        .map(|line| format!("<li>{}</li>", escape(line)))
        .collect();
    let body = format!(
        "{intro}<p>Signed in as <b>{user}</b>.</p>{error}\
         <form method=\"post\" action=\"/authorize/consent\">{hidden}\
         <h2>Tools it may call</h2><ul>{tools}</ul>\
         <h2>On these terms</h2><ul>{terms}</ul>\
         <p><button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></p></form>",
        intro = intro(view),
        user = escape(username),
        hidden = hidden(view),
    );
    // The answer is a redirect to the client: `form-action` must allow its origin, or the
    // browser stops there.
    page_sending_to(
        StatusCode::OK,
        "Allow this agent?",
        &body,
        &view.redirect_origin,
    )
}

/// A request that cannot be answered by redirecting (unknown client, unregistered
/// `redirect_uri`): telling the client would mean trusting where it asked us to send people.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "This request cannot be authorized",
        &format!("<p class=\"err\">{}</p>", escape(message)),
    )
}
