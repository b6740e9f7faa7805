//! The sign-in, consent and error pages of the authorization-code flow, rendered on the server.
//!
//! Plain HTML forms with no script: they work in any browser and are easy to drive from a test
//! with an HTTP client. Every value is HTML-escaped. Pages are never framed (clickjacking),
//! never cached, and leak nothing through `Referer`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use portcullis_policy::Constraints;

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
    /// The resource the agent will act at.
    pub(crate) resource: &'a str,
}

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title} · Portcullis</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}\
         .who{{background:#f4f4f4;padding:.6em 1em;border-radius:6px}}.err{{color:#a00}}\
         li{{margin:.3em 0}}button{{margin-right:1em;padding:.4em 1.2em}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>",
        title = escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
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
    let error = error.map_or_else(String::new, |e| {
        format!("<p class=\"err\">{}</p>", escape(e))
    });
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
    let error = error.map_or_else(String::new, |e| {
        format!("<p class=\"err\">{}</p>", escape(e))
    });
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
    page(StatusCode::OK, "Allow this agent?", &body)
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
