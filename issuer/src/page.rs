//! The frame of every page the issuer shows people: one layout and style, HTML escaping, and
//! the headers that keep a page out of frames, caches and `Referer`s.
//!
//! Pages are rendered on the server as plain HTML forms: they work in any browser, by
//! keyboard, and are easy to drive from a test. Every value that comes from outside (names,
//! tool names, arguments) goes through [`escape`]. The one script, the console's live stream
//! ([`CONSOLE_SCRIPT`]), is a file of this issuer's own: no page runs inline script, and the
//! CSP says so.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// `text` with the characters HTML gives meaning to replaced by entities.
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

/// One stylesheet for every page: readable on a phone, visible keyboard focus.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;\
padding:0 1em;line-height:1.45;color:#1b1b1b}main{max-width:42em;margin:0 auto}\
main.wide{max-width:80em}\
table{border-collapse:collapse;width:100%;font-size:.92em}th,td{text-align:left;\
padding:.3em .5em;border-bottom:1px solid #e4e4e4;vertical-align:top}\
.scroll{overflow-x:auto}tr.deny td.outcome,tr.revoked td.outcome{color:#a00;font-weight:600}\
tr.allow td.outcome{color:#060}tr.frozen td.outcome{color:#8a4b00;font-weight:600}\
.badge{display:inline-block;background:#e7f3e7;color:#060;border-radius:4px;padding:0 .4em;\
font-size:.85em}form.inline{display:inline}form.inline button{padding:.2em .7em;font-size:.9em;\
margin:0 0 0 .5em}.filters label{margin-right:.8em;display:inline-block}\
h1{font-size:1.5em}h2{font-size:1.1em;margin-top:1.6em}\
.who{background:#f4f4f4;padding:.6em 1em;border-radius:6px}.err{color:#a00}.ok{color:#060}\
li{margin:.3em 0}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1em}\
dt{font-weight:600}dd{margin:0}\
pre{background:#f6f6f6;border:1px solid #ddd;border-radius:6px;padding:.8em;overflow-x:auto;\
white-space:pre-wrap;word-break:break-word}\
button{margin-right:1em;padding:.5em 1.3em;font-size:1em}\
button:focus,input:focus,a:focus{outline:3px solid #2a6fdb;outline-offset:2px}\
input{padding:.3em;font-size:1em}";

/// The console's script: it follows `/console/events` and adds each line as text.
pub(crate) const CONSOLE_SCRIPT: &str = include_str!("console/console.js");

/// A whole page: `body` is trusted HTML (built from escaped parts); `title` is escaped here.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    frame(status, title, body, Layout::Narrow)
}

/// A page whose form is answered with a redirect to `origin` (the consent page, whose answer
/// goes back to the client): its CSP lets forms lead there too. An `origin` that is not a
/// plain `scheme://host[:port]` is left out.
pub(crate) fn page_sending_to(
    status: StatusCode,
    title: &str,
    body: &str,
    origin: &str,
) -> Response {
    let mut response = frame(status, title, body, Layout::Narrow);
    let plain = !origin.is_empty()
        && origin.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'.' | b'-' | b'[' | b']')
        });
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {origin}; \
         frame-ancestors 'none'"
    );
    if plain && let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// A page laid out wide for tables, with the console's script.
pub(crate) fn console_page(status: StatusCode, title: &str, body: &str) -> Response {
    frame(status, title, body, Layout::Console)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Narrow,
    Console,
}

fn frame(status: StatusCode, title: &str, body: &str, layout: Layout) -> Response {
    let (main, script, csp) = match layout {
        Layout::Narrow => (
            "<main>",
            "",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
        Layout::Console => (
            "<main class=\"wide\">",
            "<script src=\"/console.js\" defer></script>",
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Portcullis</title><style>{STYLE}</style>{script}</head>\
         <body>{main}<h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Unix seconds as `2026-12-07 14:05 UTC`.
pub(crate) fn when(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| at.to_string())
}

/// Unix seconds as `2026-12-07 14:05:09`, for lines a second apart.
pub(crate) fn when_precise(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| at.to_string())
}

/// The page shown when `what` (a page's name, for the log) cannot reach the database.
pub(crate) fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!("{what}: {e}");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again shortly",
        "<p class=\"err\">The issuer cannot reach its database.</p>",
    )
}

/// `<p class="err">` with `message` escaped, or nothing.
pub(crate) fn error_line(message: Option<&str>) -> String {
    message.map_or_else(String::new, |m| {
        format!("<p class=\"err\" role=\"alert\">{}</p>", escape(m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csp(response: &Response) -> &str {
        response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
    }

    #[test]
    fn a_consent_form_may_lead_to_its_clients_origin_and_nowhere_else() {
        let to_client = page_sending_to(StatusCode::OK, "t", "", "https://app.example:8443");
        assert!(csp(&to_client).contains("form-action 'self' https://app.example:8443;"));
        // Anything that could add a directive or another source is left out.
        for hostile in [
            "https://a.example; script-src *",
            "https://a.example 'unsafe-inline'",
            "",
        ] {
            let response = page_sending_to(StatusCode::OK, "t", "", hostile);
            assert!(csp(&response).contains("form-action 'self';"), "{hostile}");
        }
        assert!(csp(&page(StatusCode::OK, "t", "")).contains("form-action 'self';"));
    }
}
