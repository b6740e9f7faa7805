//! The client's return address: where answers go once the client and its `redirect_uri` are
//! known good, refusals and codes alike.
//!
//! Every answer carries the client's `state`, so it can tell which request is answered, and
//! our `iss` (RFC 9207), so it can tell which server answered; none may be cached.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

/// A client's registered `redirect_uri` and the `state` it sent with its request.
#[derive(Debug, Clone)]
pub(crate) struct ReturnTo {
    /// Registered by the client, matched exactly.
    pub(crate) redirect_uri: String,
    /// Echoed back as sent.
    pub(crate) state: Option<String>,
}

impl ReturnTo {
    /// A redirect carrying `params`, then `state` and `iss`.
    pub(crate) fn send(&self, params: &[(&str, &str)], issuer: &str) -> Response {
        let mut url =
            url::Url::parse(&self.redirect_uri).expect("registered redirect URIs are valid URLs");
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            if let Some(state) = &self.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", issuer);
        }
        let mut response = Redirect::to(url.as_str()).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
