//! The expenses server over real HTTP, with a JWKS served like the gateway serves it: an rmcp
//! client presenting a gateway token, and hand-made requests that must be refused.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use portcullis_examples::expenses::{self, DownstreamAuth, Expense, ExpensesConfig, ExpensesState};
use portcullis_policy::{Actor, ActorChain, Claims, JwkSet, SigningKey, sign};
use rmcp::model::{
    CallToolRequestParams, ClientConfig, ClientRequest, ProgressNotificationParam, Request,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const ISSUER: &str = "https://gateway.test";
const AUDIENCE: &str = "https://gateway.test/mcp/expenses";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;

fn gateway_key() -> SigningKey {
    SigningKey::ed25519_from_seed("gw-test", &[5; 32]).unwrap()
}

fn token_signed_by(key: &SigningKey) -> String {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let claims = Claims {
        issuer: ISSUER.into(),
        subject: "alice".into(),
        audience: vec![AUDIENCE.into()],
        expires_at: now + 300,
        not_before: None,
        issued_at: now,
        token_id: "token-1".into(),
        client_id: "expense-agent".into(),
        scope: None,
        actors: Some(ActorChain::new(Actor {
            sub: "expense-agent".into(),
        })),
        grant_id: None,
        confirmation: None,
        constraints: None,
    };
    sign(&claims, key)
}

struct Server {
    url: String,
    state: ExpensesState,
}

/// Starts a JWKS endpoint publishing the gateway key, and the expenses server trusting it.
async fn start_server() -> Server {
    let jwks = JwkSet {
        keys: vec![gateway_key().public_jwk()],
    };
    let jwks_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", jwks_listener.local_addr().unwrap());
    let jwks_app = Router::new().route("/jwks.json", get(move || async move { Json(jwks) }));
    tokio::spawn(async move { axum::serve(jwks_listener, jwks_app).await });

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let config = ExpensesConfig {
        auth: Some(DownstreamAuth {
            issuer: ISSUER.into(),
            jwks_url,
            audience: AUDIENCE.into(),
        }),
    };
    let state = ExpensesState::default();
    tokio::spawn(expenses::serve(listener, config, state.clone()));
    Server { url, state }
}

async fn connect<H: ClientHandler>(server: &Server, handler: H) -> RunningService<RoleClient, H> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url.clone())
            .auth_header(token_signed_by(&gateway_key())),
    );
    handler.serve(transport).await.unwrap()
}

async fn post_initialize(server: &Server, authorization: Option<String>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(&server.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn an_agent_with_a_gateway_token_sees_the_four_expense_tools() {
    let server = start_server().await;
    let client = connect(&server, ClientConfig::default()).await;

    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect();
    names.sort();

    assert_eq!(
        names,
        [
            "attach_receipt",
            "delete_all_expenses",
            "list_expenses",
            "slow_report",
            "submit_expense"
        ]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_submitted_expense_is_recorded_for_the_token_user_and_actor_chain() {
    let server = start_server().await;
    let client = connect(&server, ClientConfig::default()).await;

    let arguments = serde_json::json!({"amount": 120, "category": "travel"});
    let result = client
        .call_tool(
            CallToolRequestParams::new("submit_expense")
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await
        .unwrap();

    assert_eq!(
        result.content[0].as_text().unwrap().text,
        "expense #1 recorded: 120 travel for alice via expense-agent"
    );
    assert_eq!(
        server.state.expenses(),
        [Expense {
            id: 1,
            amount: 120.0,
            category: "travel".into(),
            user: "alice".into(),
            actors: vec!["expense-agent".into()],
        }]
    );
    let seen = server.state.seen_requests();
    assert!(seen.iter().all(|request| request.verified));
    assert_eq!(seen[0].subject.as_deref(), Some("alice"));
    assert_eq!(seen[0].audience, [AUDIENCE]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused_with_401() {
    let server = start_server().await;
    let forger = SigningKey::ed25519_from_seed("gw-test", &[6; 32]).unwrap();
    let forged = token_signed_by(&forger);

    let response = post_initialize(&server, Some(format!("Bearer {forged}"))).await;

    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    let seen = server.state.seen_requests();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].verified);
    assert_eq!(seen[0].bearer.as_deref(), Some(forged.as_str()));
    assert_eq!(seen[0].subject, None);
}

#[tokio::test]
async fn a_request_without_a_token_is_refused_with_401() {
    let server = start_server().await;

    let response = post_initialize(&server, None).await;

    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(server.state.seen_requests()[0].bearer, None);
}

/// A client that signals its first progress notification.
#[derive(Clone, Default)]
struct ProgressWatcher {
    progressed: Arc<Notify>,
}

impl ClientHandler for ProgressWatcher {
    async fn on_progress(
        &self,
        _params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progressed.notify_one();
    }
}

#[tokio::test]
async fn a_slow_report_sends_progress_and_stops_when_cancelled() {
    let server = start_server().await;
    let watcher = ProgressWatcher::default();
    let progressed = watcher.progressed.clone();
    let client = connect(&server, watcher).await;

    let arguments = serde_json::json!({"seconds": 30});
    let call = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(
                CallToolRequestParams::new("slow_report")
                    .with_arguments(arguments.as_object().unwrap().clone()),
            )),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), progressed.notified())
        .await
        .expect("a progress notification within 5 s");
    call.cancel(Some("test is done".into())).await.unwrap();

    tokio::time::timeout(Duration::from_secs(5), async {
        while server.state.cancelled_reports() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the report to stop within 5 s of the cancellation");
    client.cancel().await.unwrap();
}
