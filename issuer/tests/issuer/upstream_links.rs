//! People's accounts at upstreams, at the issuer's edges on every backend: only a gateway
//! holding the gateway token is told a person's upstream token, an unregistered upstream is
//! an error rather than a link, and a registration names http(s) URLs or is refused before
//! anything is fetched. (The whole round trip, with a real authorization server, is
//! `examples/tests/upstream_oauth.rs`.)

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;

use crate::support::*;

const GATEWAY: &str = "gateway-token-for-tests-only";

#[tokio::test]
async fn only_the_gateway_is_told_tokens_and_only_for_registered_upstreams() {
    for backend in backends().await {
        let name = backend.name;
        let issuer =
            open_issuer_with(&backend, |c| c.audit_ingest_token = Some(GATEWAY.into())).await;
        let app = portcullis_issuer::app(issuer.state().clone());
        let ask = |bearer: Option<&str>| {
            let mut request =
                Request::post("/upstream-token").header(header::CONTENT_TYPE, "application/json");
            if let Some(bearer) = bearer {
                request = request.header(header::AUTHORIZATION, format!("Bearer {bearer}"));
            }
            let body = json!({"user": "alice", "resource": "https://gw.example/mcp/notes"});
            request.body(Body::from(body.to_string())).unwrap()
        };
        for bearer in [None, Some("guessed"), Some(ADMIN)] {
            let (status, body) = send(&app, ask(bearer)).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{name} {bearer:?}: {body}"
            );
        }
        let (status, body) = send(&app, ask(Some(GATEWAY))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {body}");
        assert!(
            body.get("link_url").is_none(),
            "{name}: no link to nowhere: {body}"
        );

        for (resource, upstream_url) in [
            ("not a url", "http://127.0.0.1:1/mcp"),
            ("https://gw.example/mcp/notes", "file:///etc/passwd"),
        ] {
            let (status, body) = admin(
                &app,
                "/admin/upstreams",
                json!({"resource": resource, "upstream_url": upstream_url}),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        }
    }
}
