//! The kill switch with real parts on loopback: a revocation at the issuer ends a tool call
//! that is streaming through the gateway, cancels it upstream, and refuses what comes next;
//! a gateway cut off from the issuer catches up on reconnect; strict mode refuses when stale.

use std::time::{Duration, Instant};

use portcullis_examples::agent::{ClientCredentials, IssuerClient, McpSession, connect};
use portcullis_examples::stack::{Stack, StackOptions};
use rmcp::ServiceError;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

struct World {
    stack: Stack,
    issuer: IssuerClient,
    agent: ClientCredentials,
    grant_id: String,
    token: String,
    _dir: tempfile::TempDir,
}

fn grant() -> Value {
    json!([{"type": "mcp_tools",
            "tools": ["expenses/slow_report", "expenses/list_expenses"],
            "max_depth": 1}])
}

async fn world(extra_yaml: &str, relay: bool) -> World {
    let dir = tempfile::TempDir::new().unwrap();
    let stack = Stack::start(&StackOptions {
        gateway_extra_yaml: extra_yaml.to_owned(),
        issuer_relay: relay,
        ..StackOptions::sqlite(dir.path())
    })
    .await
    .unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("report-agent", "Report agent")
        .await
        .unwrap();
    let (grant_id, token) = issuer
        .delegation(&agent, "alice", &stack.resource, grant())
        .await
        .unwrap();
    World {
        stack,
        issuer,
        agent,
        grant_id,
        token,
        _dir: dir,
    }
}

impl World {
    async fn revoke(&self, kind: &str, value: &str) -> i64 {
        let response = reqwest::Client::new()
            .post(format!("{}/admin/revocations", self.stack.issuer_url))
            .bearer_auth(&self.stack.admin_token)
            .json(&json!({"kind": kind, "value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        response.json::<Value>().await.unwrap()["seq"]
            .as_i64()
            .unwrap()
    }

    async fn sub_agent_token(&self) -> String {
        let sub = self
            .issuer
            .register_agent("helper-agent", "Helper")
            .await
            .unwrap();
        let actor = self.issuer.client_token(&sub).await.unwrap();
        self.issuer
            .exchange(&self.agent, &self.token, &actor, &self.stack.resource, None)
            .await
            .unwrap()
            .unwrap()
    }

    /// The HTTP status and JSON-RPC error an `initialize` gets with `token`.
    async fn probe(&self, token: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(&self.stack.resource)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}"#)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start_report(
    session: &McpSession,
) -> impl std::future::Future<Output = Result<rmcp::model::CallToolResult, ServiceError>> + use<> {
    let peer = session.peer().clone();
    async move {
        peer.call_tool(
            CallToolRequestParams::new("slow_report")
                .with_arguments(json!({"seconds": 20}).as_object().unwrap().clone()),
        )
        .await
    }
}

#[tokio::test]
async fn revoking_the_root_grant_ends_a_streaming_call_and_everything_delegated_from_it() {
    let w = world("", false).await;
    let sub_token = w.sub_agent_token().await;
    let session = connect(&w.stack.resource, &w.token).await.unwrap();
    let call = tokio::spawn(start_report(&session));
    // Let the call reach the upstream and start streaming.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!call.is_finished());

    let revoked_at = Instant::now();
    let seq = w.revoke("grant", &w.grant_id).await;
    let outcome = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the streaming call was not ended by the revocation")
        .unwrap();
    let ended_after = revoked_at.elapsed();
    match outcome {
        Err(ServiceError::McpError(error)) => {
            assert_eq!(error.code.0, -31007, "{error:?}");
            assert_eq!(error.data.unwrap()["revocation"], seq);
        }
        other => panic!("expected a revocation error, got {other:?}"),
    }
    assert!(ended_after < Duration::from_secs(3), "took {ended_after:?}");

    // The upstream was told to stop, and its MCP session was ended.
    eventually("the upstream cancels the report", async || {
        w.stack.expenses.cancelled_reports() == 1
    })
    .await;
    eventually("the upstream session is ended", async || {
        w.stack.expenses.seen_requests().iter().any(|r| {
            r.http_method == "DELETE" && r.verified && r.subject.as_deref() == Some("alice")
        })
    })
    .await;

    // Everything derived from the grant is refused from now on.
    for token in [&w.token, &sub_token] {
        let (status, body) = w.probe(token).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], -31007);
        assert_eq!(body["error"]["data"]["revocation"], seq);
    }
}

#[tokio::test]
async fn a_gateway_cut_off_from_the_issuer_applies_missed_revocations_on_reconnect() {
    let w = world("", true).await;
    assert_eq!(w.probe(&w.token).await.0, 200);
    let relay = w.stack.issuer_relay.as_ref().unwrap();
    relay.cut();
    let seq = w.revoke("agent", "report-agent").await;
    // Lenient: while cut off, the gateway serves on what it knew.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.probe(&w.token).await.0, 200);

    relay.restore();
    eventually("the missed revocation applies", async || {
        let (status, body) = w.probe(&w.token).await;
        status == 401 && body["error"]["data"]["revocation"] == seq
    })
    .await;
}

#[tokio::test]
async fn strict_mode_refuses_when_the_issuer_is_unreachable_beyond_the_bound() {
    let w = world(
        "revocation: {mode: strict, max_staleness_seconds: 2}\n",
        true,
    )
    .await;
    assert_eq!(w.probe(&w.token).await.0, 200);
    w.stack.issuer_relay.as_ref().unwrap().cut();
    eventually("strict mode refuses", async || {
        let (status, body) = w.probe(&w.token).await;
        status == 503 && body["error"]["code"] == -31008
    })
    .await;
    let ready = reqwest::get(format!("{}/readyz", w.stack.gateway_admin_url))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    w.stack.issuer_relay.as_ref().unwrap().restore();
    eventually("service resumes", async || w.probe(&w.token).await.0 == 200).await;
}

const CONTROL_TOKEN: &str = "control-token-for-tests-0123456789";

async fn world_with_controls() -> (World, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, CONTROL_TOKEN.as_bytes()).unwrap();
    let yaml = format!("admin_token_file: '{}'\n", file.path().display());
    (world(&yaml, false).await, file)
}

async fn control(
    w: &World,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", w.stack.gateway_admin_url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_operator_kills_a_users_live_work_at_the_gateway_without_the_issuer() {
    let (w, _file) = world_with_controls().await;
    let session = connect(&w.stack.resource, &w.token).await.unwrap();
    let call = tokio::spawn(start_report(&session));
    tokio::time::sleep(Duration::from_millis(700)).await;

    let (status, _) = control(
        &w,
        reqwest::Method::POST,
        "/control/kill",
        "wrong-token",
        json!({"kind": "user", "value": "alice"}),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        !call.is_finished(),
        "an unauthenticated kill must do nothing"
    );

    let (status, body) = control(
        &w,
        reqwest::Method::POST,
        "/control/kill",
        CONTROL_TOKEN,
        json!({"kind": "user", "value": "alice"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The streaming call, and the client's own GET stream when it has opened one.
    assert!(body["killed"].as_u64().unwrap() >= 1, "{body}");
    let outcome = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap();
    match outcome {
        Err(ServiceError::McpError(error)) => assert_eq!(error.code.0, -31007),
        other => panic!("expected a revocation error, got {other:?}"),
    }
    assert_eq!(w.probe(&w.token).await.0, 401);
}

#[tokio::test]
async fn a_change_freeze_denies_matching_calls_until_lifted() {
    let (w, _file) = world_with_controls().await;
    let session = connect(&w.stack.resource, &w.token).await.unwrap();
    let freeze = json!({"pattern": "expenses/*report*"});
    let (status, _) = control(
        &w,
        reqwest::Method::POST,
        "/control/freezes",
        CONTROL_TOKEN,
        freeze.clone(),
    )
    .await;
    assert_eq!(status, 201);

    let report = || {
        CallToolRequestParams::new("slow_report")
            .with_arguments(json!({"seconds": 1}).as_object().unwrap().clone())
    };
    match session.call_tool(report()).await {
        Err(ServiceError::McpError(error)) => {
            assert_eq!(error.code.0, -31001);
            assert_eq!(error.data.unwrap()["reason"], "change_freeze");
        }
        other => panic!("expected a freeze denial, got {other:?}"),
    }
    let listed = session
        .call_tool(CallToolRequestParams::new("list_expenses"))
        .await;
    assert!(listed.is_ok(), "other tools are not frozen: {listed:?}");

    let (status, _) = control(
        &w,
        reqwest::Method::DELETE,
        "/control/freezes",
        CONTROL_TOKEN,
        freeze,
    )
    .await;
    assert_eq!(status, 200);
    assert!(session.call_tool(report()).await.is_ok());
    session.cancel().await.unwrap();
}
