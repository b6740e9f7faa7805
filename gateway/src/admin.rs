//! The admin listener: `/metrics`, `/healthz`, `/readyz`. It runs as its own Pingora service on
//! a separate address, so it can stay private while the proxy port is public.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::issuer_keys::IssuerKeys;

/// Serves the admin endpoints.
#[derive(Debug)]
pub struct AdminApp {
    keys: Arc<IssuerKeys>,
}

impl AdminApp {
    /// An admin app reporting readiness from the issuer key cache.
    pub fn new(keys: Arc<IssuerKeys>) -> Self {
        Self { keys }
    }
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                crate::metrics::render(),
            ),
            "/healthz" => respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            // Ready once the issuer's keys are known: before that every token would be refused.
            "/readyz" if self.keys.is_loaded() => {
                respond(StatusCode::OK, "text/plain", b"ready\n".to_vec())
            }
            "/readyz" => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"issuer keys not loaded\n".to_vec(),
            ),
            _ => respond(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}
