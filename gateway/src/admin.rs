//! The admin listener: `/metrics`, `/healthz`, `/readyz`. It runs as its own Pingora service on
//! a separate address, so it can stay private while the proxy port is public.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::proxy::GatewayState;

/// Serves the admin endpoints.
#[derive(Debug)]
pub struct AdminApp {
    state: Arc<GatewayState>,
}

impl AdminApp {
    /// An admin app over the gateway's shared state.
    pub fn new(state: Arc<GatewayState>) -> Self {
        Self { state }
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let revocations = &self.state.revocations;
        match session.req_header().uri.path() {
            "/metrics" => {
                crate::metrics::revocation_staleness(revocations.staleness(now));
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    crate::metrics::render(),
                )
            }
            "/healthz" => respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            // Ready once the issuer's keys are known (before that every token would be refused)
            // and, in strict mode, while the revocation knowledge is fresh enough to serve.
            "/readyz" if !self.state.keys.is_loaded() => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"issuer keys not loaded\n".to_vec(),
            ),
            "/readyz" if revocations.refuses_for_staleness(now) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"revocation knowledge is stale (strict mode)\n".to_vec(),
            ),
            "/readyz" => respond(StatusCode::OK, "text/plain", b"ready\n".to_vec()),
            _ => respond(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}
