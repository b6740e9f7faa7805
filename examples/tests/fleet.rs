//! A fleet endpoint end to end: three real MCP servers (the expenses server and two instances
//! of the conformance fixture, whose tool names collide, one of them paginated) behind one
//! `/mcp/office`, reached by rmcp clients of both protocol eras and by raw HTTP for the
//! refusals.

use std::collections::BTreeSet;

use portcullis_examples::agent::{ClientCredentials, IssuerClient, McpSession, connect};
use portcullis_examples::stack::{Stack, StackOptions};
use rmcp::ServiceError;
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::ClientServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

struct Fleet {
    stack: Stack,
    office: String,
    issuer: IssuerClient,
    agent: ClientCredentials,
    /// A tool of `beta` that sits on its third page.
    deep_tool: String,
    _dir: tempfile::TempDir,
}

async fn fixture(page: Option<usize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(portcullis_examples::conformance::serve(listener, page));
    url
}

async fn fleet() -> Fleet {
    let dir = tempfile::TempDir::new().unwrap();
    let alpha = fixture(None).await;
    let beta = fixture(Some(5)).await;
    let mut options = StackOptions::sqlite(dir.path());
    options.extra_upstreams = vec![
        format!("{{name: alpha, url: '{alpha}'}}"),
        format!("{{name: beta, url: '{beta}'}}"),
    ];
    options.gateway_extra_yaml =
        "fleets: [{name: office, members: [expenses, alpha, beta]}]\n".into();
    let stack = Stack::start(&options).await.unwrap();
    let office = format!("{}/mcp/office", stack.gateway_url);
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("office-agent", "Office agent")
        .await
        .unwrap();
    Fleet {
        deep_tool: portcullis_examples::conformance::tool_names()[12].clone(),
        stack,
        office,
        issuer,
        agent,
        _dir: dir,
    }
}

impl Fleet {
    /// A delegation token for the fleet: expense submission within limits, and the simple
    /// text tool of both fixtures plus one deep in beta's pages.
    async fn token(&self, user: &str) -> String {
        let details = json!([{
            "type": "mcp_tools",
            "tools": ["expenses/submit_expense", "alpha/test_simple_text",
                      "beta/test_simple_text", format!("beta/{}", self.deep_tool)],
            "limits": [{"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500}],
            "max_depth": 0
        }]);
        self.issuer
            .delegation(&self.agent, user, &self.office, details)
            .await
            .unwrap()
            .1
    }

    fn expected_tools(&self) -> BTreeSet<String> {
        [
            "expenses__submit_expense".to_owned(),
            "alpha__test_simple_text".to_owned(),
            "beta__test_simple_text".to_owned(),
            format!("beta__{}", self.deep_tool),
        ]
        .into()
    }
}

async fn tool_names(session: &McpSession) -> BTreeSet<String> {
    let listed = session.peer().list_tools(None).await.unwrap();
    assert!(listed.next_cursor.is_none(), "one merged page");
    listed
        .tools
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect()
}

async fn call(session: &McpSession, name: &str, arguments: Value) -> Result<Value, ServiceError> {
    let mut params = CallToolRequestParams::new(name.to_owned());
    if let Value::Object(arguments) = arguments {
        params = params.with_arguments(arguments);
    }
    let result = session.peer().call_tool(params).await?;
    Ok(serde_json::to_value(result).unwrap())
}

fn error_of(result: Result<Value, ServiceError>) -> rmcp::model::ErrorData {
    match result {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_lists_each_members_granted_tools_namespaced_and_routes_each_call_home() {
    let f = fleet().await;
    let session = connect(&f.office, &f.token("alice").await).await.unwrap();
    assert_eq!(tool_names(&session).await, f.expected_tools());

    // Same tool name at two members: each namespaced name reaches its own.
    for name in ["alpha__test_simple_text", "beta__test_simple_text"] {
        let result = call(&session, name, json!({})).await.unwrap();
        assert_eq!(
            result["content"][0]["text"],
            "This is a simple text response for testing."
        );
    }
    let result = call(
        &session,
        "expenses__submit_expense",
        json!({"amount": 42, "category": "travel"}),
    )
    .await
    .unwrap();
    assert_ne!(result["isError"], true, "{result}");
    let expenses = f.stack.expenses.expenses();
    assert_eq!(expenses.len(), 1);
    assert_eq!(expenses[0].user, "alice");
    assert_eq!(expenses[0].actors, ["office-agent"]);
    // The member got a token minted for it alone, never the agent's fleet token.
    let seen = f.stack.expenses.seen_requests();
    let reached = seen
        .iter()
        .find(|r| r.rpc_method.as_deref() == Some("tools/call"))
        .unwrap();
    assert!(reached.verified);
    assert_eq!(
        reached.audience,
        std::slice::from_ref(&f.stack.upstream_url)
    );

    // The member's grant limits hold on the fleet endpoint.
    let over = error_of(
        call(
            &session,
            "expenses__submit_expense",
            json!({"amount": 900, "category": "travel"}),
        )
        .await,
    );
    assert_eq!(over.code.0, -31001, "{over:?}");
    let data = over.data.unwrap();
    assert_eq!(data["tool"], "expenses/submit_expense");
    assert_eq!(f.stack.expenses.expenses().len(), 1, "nothing more ran");

    let hidden = error_of(call(&session, "alpha__test_image_content", json!({})).await);
    assert_eq!(hidden.code.0, -31001);
    assert_eq!(hidden.data.unwrap()["reason"], "tool_not_granted");

    // Names that route nowhere are unknown tools, never a guess at a member.
    for name in [
        "test_simple_text",
        "nosuch__test_simple_text",
        "alpha__",
        "alpha_test_simple_text",
    ] {
        let unknown = error_of(call(&session, name, json!({})).await);
        assert_eq!(unknown.code.0, -32602, "{name}: {unknown:?}");
    }
    session.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_agent_reaches_the_members_through_the_fleet() {
    let f = fleet().await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(f.office.clone())
            .auth_header(f.token("alice").await),
    );
    let lifecycle = rmcp::service::ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let session = ClientConfig::default()
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .unwrap();
    assert_eq!(tool_names(&session).await, f.expected_tools());
    let result = call(&session, "beta__test_simple_text", json!({}))
        .await
        .unwrap();
    assert_eq!(
        result["content"][0]["text"],
        "This is a simple text response for testing."
    );
    let hidden = error_of(call(&session, "beta__test_image_content", json!({})).await);
    assert_eq!(hidden.code.0, -31001);
    session.cancel().await.unwrap();
}

async fn post(
    url: &str,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, id, body)
}

fn list() -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_refuses_member_tokens_foreign_sessions_and_requests_out_of_order() {
    let f = fleet().await;
    let alice = f.token("alice").await;

    // A token for one member is not a token for the fleet, nor the other way round.
    let (_, expenses_token) = f
        .issuer
        .delegation(
            &f.agent,
            "alice",
            &f.stack.resource,
            portcullis_examples::agent::expense_grant(),
        )
        .await
        .unwrap();
    let (status, _, _) = post(&f.office, &expenses_token, None, list()).await;
    assert_eq!(status, 401);
    let (status, _, _) = post(&f.stack.resource, &alice, None, list()).await;
    assert_eq!(status, 401);

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let (status, session, body) = post(&f.office, &alice, None, initialize).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(body["result"]["capabilities"], json!({"tools": {}}));
    let session = session.expect("the fleet opens a session");

    let (status, _, body) = post(&f.office, &alice, Some(&session), list()).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["tools"].as_array().unwrap().len(), 4);

    // A call hidden in a batch is refused whole: a fleet takes one message per request.
    let seen_before = f.stack.expenses.seen_requests().len();
    let batch = json!([{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "expenses__submit_expense",
        "arguments": {"amount": 12, "category": "travel"}}}]);
    let (_, _, body) = post(&f.office, &alice, Some(&session), batch).await;
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(
        f.stack.expenses.seen_requests().len(),
        seen_before,
        "nothing of the batch reached the member"
    );

    // Before initialize, and with another principal's session: refused.
    let (status, _, body) = post(&f.office, &alice, None, list()).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!(-32600))
    );
    let bob = f.token("bob").await;
    let (status, _, _) = post(&f.office, &bob, Some(&session), list()).await;
    assert_eq!(status, 404, "a session is worth nothing with another token");

    let other = json!({"jsonrpc": "2.0", "id": 3, "method": "resources/list"});
    let (status, _, body) = post(&f.office, &alice, Some(&session), other).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (200, json!(-32601))
    );

    let http = reqwest::Client::new();
    let stream = http
        .get(&f.office)
        .bearer_auth(&alice)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 405);

    let ended = http
        .delete(&f.office)
        .bearer_auth(&alice)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success());
    let (status, _, _) = post(&f.office, &alice, Some(&session), list()).await;
    assert_eq!(status, 404, "an ended session stays ended");

    let metadata: Value = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp/office",
            f.stack.gateway_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], f.office);
    assert_eq!(metadata["authorization_servers"][0], f.stack.issuer_url);
}

#[tokio::test]
async fn a_large_call_through_the_fleet_reaches_its_member_whole_under_the_members_name() {
    let f = fleet().await;
    let details = json!([{"type": "mcp_tools", "tools": ["expenses/attach_receipt"]}]);
    let (_, token) = f
        .issuer
        .delegation(&f.agent, "alice", &f.office, details)
        .await
        .unwrap();
    let session = portcullis_examples::agent::RawSession::open(&f.office, &token)
        .await
        .unwrap();
    // Over Pingora's 64 KiB replay buffer: the gateway sends the member's body itself.
    let content = "receipt line\n".repeat(100_000);
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "expenses__attach_receipt",
        "arguments": {"expense": 3, "content": content}}});
    let response = session
        .post(serde_json::to_vec(&call).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = portcullis_examples::agent::answer(response).await.unwrap();
    assert_eq!(
        answer["result"]["content"][0]["text"],
        format!("receipt of {} bytes attached to expense #3", content.len()),
        "{answer}"
    );
    let receipts = f.stack.expenses.receipts();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].content, content);
}
