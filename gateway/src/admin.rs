//! The admin listener: `/metrics`, `/healthz`, `/readyz`, and the operator's local controls
//! under `/control/*` (see [`crate::controls`]). It runs as its own Pingora service on a
//! separate address, so it can stay private while the proxy port is public.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use portcullis_policy::RevocationKind;

use crate::state::GatewayState;
use crate::{clock, kill};
use portcullis_policy::freeze::FreezePattern;

/// Serves the admin endpoints.
#[derive(Debug)]
pub(crate) struct AdminApp {
    state: Arc<GatewayState>,
}

impl AdminApp {
    /// An admin app over the gateway's shared state.
    pub(crate) fn new(state: Arc<GatewayState>) -> Self {
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
        let now = clock::now();
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
            path if path.starts_with("/control/") && self.state.controls.enabled() => {
                self.control(session, now).await
            }
            _ => respond(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", body.to_string().into_bytes())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KillRequest {
    kind: String,
    value: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeRequest {
    pattern: FreezePattern,
}

const MAX_CONTROL_BODY: usize = 16 * 1024;

async fn read_json<T: for<'de> serde::Deserialize<'de>>(
    session: &mut ServerSession,
) -> Result<T, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_CONTROL_BODY {
                    return Err(json(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        serde_json::json!({"error": "body too large"}),
                    ));
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": e.to_string()}),
                ));
            }
        }
    }
    portcullis_policy::strict_json::from_slice_to(&body).map_err(|e| {
        json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": e.to_string()}),
        )
    })
}

impl AdminApp {
    async fn control(&self, session: &mut ServerSession, now: i64) -> Response<Vec<u8>> {
        let req = session.req_header();
        let authorization = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !self.state.controls.authorized(authorization) {
            return json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "admin token required"}),
            );
        }
        let method = req.method.clone();
        let path = req.uri.path().to_owned();
        let result = match (method, path.as_str()) {
            (http::Method::POST, "/control/kill") => self.kill(session, now).await,
            (http::Method::GET, "/control/freezes") => {
                Ok(json(StatusCode::OK, serde_json::json!({"freezes": self.state.controls.freezes()})))
            }
            (http::Method::POST, "/control/freezes") => read_json::<FreezeRequest>(session).await.map(|r| {
                let added = self.state.controls.freeze(r.pattern.clone());
                tracing::info!(target: "audit", pattern = r.pattern.as_str(), "change freeze set");
                json(
                    if added { StatusCode::CREATED } else { StatusCode::OK },
                    serde_json::json!({"freezes": self.state.controls.freezes()}),
                )
            }),
            (http::Method::DELETE, "/control/freezes") => read_json::<FreezeRequest>(session).await.map(|r| {
                if self.state.controls.unfreeze(&r.pattern) {
                    tracing::info!(target: "audit", pattern = r.pattern.as_str(), "change freeze lifted");
                    json(StatusCode::OK, serde_json::json!({"freezes": self.state.controls.freezes()}))
                } else {
                    json(StatusCode::NOT_FOUND, serde_json::json!({"error": "no such freeze"}))
                }
            }),
            _ => Ok(json(StatusCode::NOT_FOUND, serde_json::json!({"error": "no such control"}))),
        };
        result.unwrap_or_else(|response| response)
    }

    async fn kill(
        &self,
        session: &mut ServerSession,
        now: i64,
    ) -> Result<Response<Vec<u8>>, Response<Vec<u8>>> {
        let request: KillRequest = read_json(session).await?;
        let kind = RevocationKind::from_name(&request.kind).ok_or_else(|| {
            json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "kind must be token, grant, agent, user or session"}),
            )
        })?;
        if request.value.is_empty() || request.value.len() > 512 {
            return Err(json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "value must be 1 to 512 characters"}),
            ));
        }
        let (entry, count) = kill::kill_locally(
            &self.state.revocations,
            &self.state.canceller,
            kind,
            &request.value,
            now,
        );
        tracing::info!(
            target: "audit",
            kind = kind.as_str(), value = %request.value, killed = count,
            "local kill at this gateway"
        );
        Ok(json(
            StatusCode::OK,
            serde_json::json!({"revocation": entry.seq, "killed": count}),
        ))
    }
}
