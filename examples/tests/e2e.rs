//! End to end with real processes' parts on loopback: the issuer (SQLite), the gateway
//! (Pingora) and the rmcp expenses server, driven by an rmcp client holding a delegation token.
//! Every denial is checked at both ends: the agent gets the reason, and the upstream saw
//! nothing.

use portcullis_examples::agent::{
    ClientCredentials, IssuerClient, McpSession, call, connect, expense_grant,
};
use portcullis_examples::stack::{Stack, StackOptions};
use serde_json::{Value, json};

struct World {
    stack: Stack,
    issuer: IssuerClient,
    agent: ClientCredentials,
    sub_agent: ClientCredentials,
    token: String,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::TempDir::new().unwrap();
    let stack = Stack::start(&StackOptions::sqlite(dir.path()))
        .await
        .unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("expense-agent", "Expense agent")
        .await
        .unwrap();
    let sub_agent = issuer
        .register_agent("receipts-agent", "Receipts agent")
        .await
        .unwrap();
    let (_, token) = issuer
        .delegation(&agent, "alice", &stack.resource, expense_grant())
        .await
        .unwrap();
    World {
        stack,
        issuer,
        agent,
        sub_agent,
        token,
        _dir: dir,
    }
}

impl World {
    async fn session(&self, token: &str) -> McpSession {
        connect(&self.stack.resource, token).await.unwrap()
    }

    /// `tools/call` requests that reached the upstream so far (other requests, such as the
    /// client's GET stream, come and go on their own schedule).
    fn upstream_requests(&self) -> usize {
        self.stack
            .expenses
            .seen_requests()
            .iter()
            .filter(|r| r.rpc_method.as_deref() == Some("tools/call"))
            .count()
    }
}

fn assert_denied(error: &rmcp::model::ErrorData, reason: &str) {
    assert_eq!(error.code.0, -31001, "{error:?}");
    let data = error.data.as_ref().expect("a denial carries data");
    assert_eq!(data["reason"], reason, "{error:?}");
}

#[tokio::test]
async fn agent_sees_only_the_granted_tools() {
    let w = world().await;
    let session = w.session(&w.token).await;
    let mut names: Vec<String> = session
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["list_expenses", "submit_expense"]);
    session.cancel().await.unwrap();
}

#[tokio::test]
async fn call_within_limits_reaches_the_upstream_as_the_user_via_the_agent() {
    let w = world().await;
    let session = w.session(&w.token).await;
    let text = call(
        &session,
        "submit_expense",
        json!({"amount": 120, "category": "travel"}),
    )
    .await
    .unwrap();
    assert_eq!(
        text,
        "expense #1 recorded: 120 travel for alice via expense-agent"
    );
    let expenses = w.stack.expenses.expenses();
    assert_eq!(expenses.len(), 1);
    assert_eq!(expenses[0].user, "alice");
    assert_eq!(expenses[0].actors, ["expense-agent"]);

    // Every request that reached the upstream carried a token the gateway minted for it, and
    // none carried the agent's own token.
    let seen = w.stack.expenses.seen_requests();
    assert!(!seen.is_empty());
    for request in &seen {
        assert!(request.verified, "{request:?}");
        assert_eq!(
            request.issuer.as_deref(),
            Some(w.stack.gateway_url.as_str())
        );
        assert_eq!(
            request.audience,
            std::slice::from_ref(&w.stack.upstream_url)
        );
        assert_ne!(request.bearer.as_deref(), Some(w.token.as_str()));
    }
    session.cancel().await.unwrap();
}

#[tokio::test]
async fn amount_over_the_limit_is_denied_before_the_upstream() {
    let w = world().await;
    let session = w.session(&w.token).await;
    let before = w.upstream_requests();
    let error = call(
        &session,
        "submit_expense",
        json!({"amount": 620, "category": "travel"}),
    )
    .await
    .unwrap_err();
    assert_denied(&error, "limit_max");
    let data = error.data.unwrap();
    assert_eq!(data["detail"], "/amount 620 exceeds max 500");
    assert_eq!(data["pointer"], "/amount");
    assert_eq!(
        w.upstream_requests(),
        before,
        "the denied call reached the upstream"
    );
    assert!(w.stack.expenses.expenses().is_empty());
    session.cancel().await.unwrap();
}

#[tokio::test]
async fn category_outside_the_grant_is_denied_before_the_upstream() {
    let w = world().await;
    let session = w.session(&w.token).await;
    let before = w.upstream_requests();
    let error = call(
        &session,
        "submit_expense",
        json!({"amount": 20, "category": "jewelry"}),
    )
    .await
    .unwrap_err();
    assert_denied(&error, "limit_in");
    assert_eq!(w.upstream_requests(), before);
    session.cancel().await.unwrap();
}

#[tokio::test]
async fn hidden_tool_is_denied_and_never_runs() {
    let w = world().await;
    let session = w.session(&w.token).await;
    call(
        &session,
        "submit_expense",
        json!({"amount": 10, "category": "meal"}),
    )
    .await
    .unwrap();
    let before = w.upstream_requests();
    let error = call(&session, "delete_all_expenses", json!({}))
        .await
        .unwrap_err();
    assert_denied(&error, "tool_not_granted");
    assert_eq!(w.upstream_requests(), before);
    assert_eq!(w.stack.expenses.expenses().len(), 1, "nothing was deleted");
    session.cancel().await.unwrap();
}

#[tokio::test]
async fn sub_agent_with_a_tighter_limit_is_denied_where_its_parent_is_allowed() {
    let w = world().await;
    let sub_actor = w.issuer.client_token(&w.sub_agent).await.unwrap();
    let tighter = json!([{"type": "mcp_tools", "tools": ["expenses/submit_expense"],
        "limits": [{"tool": "expenses/submit_expense", "pointer": "/amount", "max": 100}]}]);
    let sub_token = w
        .issuer
        .exchange(
            &w.agent,
            &w.token,
            &sub_actor,
            &w.stack.resource,
            Some(&tighter),
        )
        .await
        .unwrap()
        .unwrap();

    let sub_session = w.session(&sub_token).await;
    let before = w.upstream_requests();
    let error = call(
        &sub_session,
        "submit_expense",
        json!({"amount": 300, "category": "meal"}),
    )
    .await
    .unwrap_err();
    assert_denied(&error, "limit_max");
    assert_eq!(w.upstream_requests(), before);

    let text = call(
        &sub_session,
        "submit_expense",
        json!({"amount": 90, "category": "meal"}),
    )
    .await
    .unwrap();
    assert!(
        text.ends_with("for alice via receipts-agent via expense-agent"),
        "{text}"
    );

    let parent_session = w.session(&w.token).await;
    call(
        &parent_session,
        "submit_expense",
        json!({"amount": 300, "category": "meal"}),
    )
    .await
    .expect("the parent token allows 300");
    sub_session.cancel().await.unwrap();
    parent_session.cancel().await.unwrap();
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}"#;

async fn post(w: &World, authorization: Option<&str>, body: &str) -> (u16, Option<String>, Value) {
    post_with(w, authorization, body, &[]).await
}

async fn post_with(
    w: &World,
    authorization: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(&w.stack.resource)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, challenge, body)
}

#[tokio::test]
async fn requests_without_a_valid_delegation_token_are_refused_with_401() {
    let w = world().await;
    let before = w.upstream_requests();

    let (status, challenge, body) = post(&w, None, INITIALIZE).await;
    assert_eq!(status, 401);
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource/mcp/expenses",
        w.stack.gateway_url
    );
    assert_eq!(
        challenge.as_deref(),
        Some(format!(r#"Bearer realm="portcullis", resource_metadata="{metadata}""#).as_str())
    );
    assert_eq!(body["error"]["code"], -31002);

    let (status, challenge, _) = post(&w, Some("Bearer not.a.token"), INITIALIZE).await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains(r#"error="invalid_token""#));

    // The agent's own client token is for the issuer, not for this resource, and carries no
    // delegation.
    let client_token = w.issuer.client_token(&w.agent).await.unwrap();
    let (status, _, body) = post(&w, Some(&format!("Bearer {client_token}")), INITIALIZE).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["data"]["reason"], "wrong_audience");

    assert_eq!(
        w.upstream_requests(),
        before,
        "refused requests reached the upstream"
    );
}

#[tokio::test]
async fn a_body_that_reads_two_ways_is_refused_before_the_upstream() {
    let w = world().await;
    let session = w.session(&w.token).await;
    let before = w.upstream_requests();
    let smuggled = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"list_expenses","name":"delete_all_expenses","arguments":{}}}"#;
    let (status, _, body) = post(&w, Some(&format!("Bearer {}", w.token)), smuggled).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(w.upstream_requests(), before);
    session.cancel().await.unwrap();
}

#[tokio::test]
async fn routing_headers_that_disagree_with_the_body_are_refused_before_the_upstream() {
    let w = world().await;
    let session = initialize(&w, &w.token).await;
    let bearer = format!("Bearer {}", w.token);
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"delete_all_expenses","arguments":{}}}"#;
    let before = w.upstream_requests();
    for headers in [
        [
            ("mcp-method", "tools/list"),
            ("mcp-name", "delete_all_expenses"),
        ],
        [("mcp-method", "tools/call"), ("mcp-name", "list_expenses")],
    ] {
        let (status, _, body) = post_with(&w, Some(&bearer), call, &headers).await;
        assert_eq!(status, 400, "{headers:?}: {body}");
        assert_eq!(body["error"]["code"], -32020, "HeaderMismatch");
        assert_eq!(body["id"], 9, "answered with the request's id");
    }
    assert_eq!(
        w.upstream_requests(),
        before,
        "nothing smuggled reached the upstream"
    );
    // Headers that agree change nothing: the call is judged on its body as always.
    let allowed = r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"list_expenses","arguments":{}}}"#;
    let (status, _, body) = post_with(
        &w,
        Some(&bearer),
        allowed,
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "list_expenses"),
            ("mcp-session-id", &session),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_tools_call_hidden_in_a_batch_is_judged_and_refuses_the_whole_batch() {
    let w = world().await;
    let session = initialize(&w, &w.token).await;
    let bearer = format!("Bearer {}", w.token);
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},
                   {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_all_expenses","arguments":{}}},
                   {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}]"#;
    let seen_before = w.stack.expenses.seen_requests().len();
    // Without MCP-Protocol-Version the request is of revision 2025-03-26, which has batches.
    let (status, _, body) =
        post_with(&w, Some(&bearer), batch, &[("mcp-session-id", &session)]).await;
    assert_eq!(status, 200, "{body}");
    let answers = body.as_array().expect("a batch of answers");
    assert_eq!(
        answers.len(),
        2,
        "one per request, none for the notification: {body}"
    );
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[0]["error"]["data"]["reason"], "batch_refused");
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(answers[1]["error"]["code"], -31001);
    assert_eq!(answers[1]["error"]["data"]["reason"], "tool_not_granted");
    assert_eq!(
        w.stack.expenses.seen_requests().len(),
        seen_before,
        "no element of a refused batch reached the upstream"
    );

    // Later revisions have no batches at all.
    let (status, _, body) = post_with(
        &w,
        Some(&bearer),
        batch,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], -32600);

    // A batch whose every element is allowed goes on to the upstream.
    let allowed = r#"[{"jsonrpc":"2.0","id":3,"method":"tools/list"},
                     {"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"list_expenses","arguments":{}}}]"#;
    post_with(&w, Some(&bearer), allowed, &[("mcp-session-id", &session)]).await;
    assert_eq!(w.stack.expenses.seen_requests().len(), seen_before + 1);
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let w = world().await;
    let before = w.upstream_requests();
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"submit_expense","arguments":{{"note":"{}"}}}}}}"#,
        // Above the default `max_body_bytes` (4 MiB).
        "x".repeat(5 * 1024 * 1024)
    );
    let (status, _, body) = post(&w, Some(&format!("Bearer {}", w.token)), &huge).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], -31005);
    assert_eq!(w.upstream_requests(), before);
}

#[tokio::test]
async fn gateway_publishes_the_key_upstreams_verify_with_and_its_metrics() {
    let w = world().await;
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", w.stack.gateway_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert!(jwks["keys"][0].get("d").is_none(), "no private material");

    let session = w.session(&w.token).await;
    let denied = call(&session, "delete_all_expenses", json!({}))
        .await
        .unwrap_err();
    assert_denied(&denied, "tool_not_granted");
    let metrics = w.stack.gateway_metrics().await.unwrap();
    assert!(
        metrics.contains(r#"portcullis_gateway_decisions_total{decision="deny",reason="tool_not_granted",upstream="expenses"}"#),
        "{metrics}"
    );
    session.cancel().await.unwrap();
}

#[tokio::test]
async fn compressed_or_doubly_authorized_requests_are_refused() {
    let w = world().await;
    let before = w.upstream_requests();
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"submit_expense","arguments":{"amount":1,"category":"meal"}}}"#;
    let response = reqwest::Client::new()
        .post(&w.stack.resource)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .bearer_auth(&w.token)
        .body(call)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);

    let response = reqwest::Client::new()
        .post(&w.stack.resource)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", w.token))
        .header("authorization", "Bearer something-else")
        .body(call)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(w.upstream_requests(), before);
}

#[tokio::test]
async fn the_users_grant_token_and_the_gateways_own_downstream_token_are_refused() {
    let w = world().await;
    let session = w.session(&w.token).await;
    call(&session, "list_expenses", json!({})).await.unwrap();
    let downstream = w
        .stack
        .expenses
        .seen_requests()
        .into_iter()
        .find_map(|r| r.bearer)
        .unwrap();
    let (status, _, _) = post(&w, Some(&format!("Bearer {downstream}")), INITIALIZE).await;
    assert_eq!(
        status, 401,
        "a token minted for the upstream must not work at the gateway"
    );

    let grant_id = w
        .issuer
        .grant("alice", "expense-agent", &w.stack.resource, expense_grant())
        .await
        .unwrap();
    let subject = w.issuer.subject_token(&grant_id).await.unwrap();
    let (status, _, body) = post(&w, Some(&format!("Bearer {subject}")), INITIALIZE).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["data"]["reason"], "wrong_audience");
    session.cancel().await.unwrap();
}

#[tokio::test]
async fn clients_discover_the_issuer_through_protected_resource_metadata() {
    let w = world().await;
    let metadata: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp/expenses",
        w.stack.gateway_url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(metadata["resource"], w.stack.resource.as_str());
    assert_eq!(
        metadata["authorization_servers"][0],
        w.stack.issuer_url.as_str()
    );
}

#[tokio::test]
async fn dns_rebinding_and_unknown_protocol_versions_are_refused() {
    let w = world().await;
    let before = w.upstream_requests();
    let send = |host: &'static str, origin: Option<&'static str>, version: Option<&'static str>| {
        let mut request = reqwest::Client::new()
            .post(&w.stack.resource)
            .bearer_auth(&w.token)
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(INITIALIZE);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(version) = version {
            request = request.header("mcp-protocol-version", version);
        }
        request.send()
    };
    let status_of = |r: &reqwest::Response| r.status().as_u16();
    let status = |r: reqwest::Response| status_of(&r);
    assert_eq!(
        status(
            send("evil.example.com", Some("http://evil.example.com"), None)
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(
            send("localhost:1", Some("http://evil.example.com"), None)
                .await
                .unwrap()
        ),
        403
    );
    let refused = send("localhost:1", None, Some("1999-01-01")).await.unwrap();
    assert_eq!(status_of(&refused), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["id"], 1, "answered with the request's id: {body}");
    assert_eq!(body["error"]["code"], -32022, "UnsupportedProtocolVersion");
    assert_eq!(body["error"]["data"]["requested"], "1999-01-01");
    assert!(
        body["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2025-11-25"))
    );
    assert_eq!(status(send("localhost:1", None, None).await.unwrap()), 200);
    assert_eq!(w.upstream_requests(), before);
}

async fn initialize(w: &World, token: &str) -> String {
    let response = reqwest::Client::new()
        .post(&w.stack.resource)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "initialize: {body}");
    session.expect("the gateway names the session")
}

/// The first UUID-shaped run in `text`, if any.
fn uuid_like(text: &str) -> Option<&str> {
    (0..text.len().saturating_sub(35)).find_map(|start| {
        let run = text.get(start..start + 36)?;
        let shaped = run.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
        shaped.then_some(run)
    })
}

async fn in_session(w: &World, token: &str, session: &str, method: reqwest::Method) -> u16 {
    let mut request = reqwest::Client::new()
        .request(method.clone(), &w.stack.resource)
        .bearer_auth(token)
        .header("mcp-session-id", session)
        .header("accept", "application/json, text/event-stream");
    if method == reqwest::Method::POST {
        request = request
            .header("content-type", "application/json")
            .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_session_id_is_useless_to_anyone_but_the_principal_that_opened_it() {
    let w = world().await;
    let session = initialize(&w, &w.token).await;
    // The gateway's sealed id (nonce, then the upstream's id encrypted), never the
    // upstream's own, which the expenses server mints as a UUID.
    assert!(session.len() > 80, "{session}");
    assert!(uuid_like(&session).is_none(), "{session}");
    assert_eq!(
        in_session(&w, &w.token, &session, reqwest::Method::POST).await,
        202
    );

    // The same user's grant to another agent is another principal.
    let other = w
        .issuer
        .register_agent("other-agent", "Other")
        .await
        .unwrap();
    let (_, other_token) = w
        .issuer
        .delegation(&other, "alice", &w.stack.resource, expense_grant())
        .await
        .unwrap();
    assert_eq!(
        in_session(&w, &other_token, &session, reqwest::Method::POST).await,
        404
    );
    assert_eq!(
        in_session(&w, &other_token, &session, reqwest::Method::DELETE).await,
        404
    );

    // Its owner ends it; then it is gone for everyone.
    let ended = in_session(&w, &w.token, &session, reqwest::Method::DELETE).await;
    assert!((200..300).contains(&ended), "{ended}");
    assert_eq!(
        in_session(&w, &w.token, &session, reqwest::Method::POST).await,
        404
    );
}

#[tokio::test]
async fn calls_beyond_the_grants_hourly_rate_are_denied() {
    let w = world().await;
    let limited = json!([{"type": "mcp_tools", "tools": ["expenses/list_expenses"],
        "rate": {"per_hour": 2}}]);
    let (_, token) = w
        .issuer
        .delegation(&w.agent, "alice", &w.stack.resource, limited)
        .await
        .unwrap();
    let session = w.session(&token).await;
    for _ in 0..2 {
        call(&session, "list_expenses", json!({})).await.unwrap();
    }
    let error = call(&session, "list_expenses", json!({}))
        .await
        .unwrap_err();
    assert_denied(&error, "rate_limited");
    session.cancel().await.unwrap();
}

#[tokio::test]
async fn resources_and_prompts_the_grant_does_not_name_are_denied_before_the_upstream() {
    let w = world().await;
    for (body, reason) in [
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#,
            "resource_not_granted",
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"prompts/get","params":{"name":"leak_everything"}}"#,
            "prompt_not_granted",
        ),
    ] {
        let (status, _, response) = post(&w, Some(&format!("Bearer {}", w.token)), body).await;
        assert_eq!(status, 200);
        assert_eq!(response["error"]["code"], -31001, "{response}");
        assert_eq!(response["error"]["data"]["reason"], reason);
    }
    let reached = w
        .stack
        .expenses
        .seen_requests()
        .iter()
        .filter(|r| {
            matches!(
                r.rpc_method.as_deref(),
                Some("resources/read" | "prompts/get")
            )
        })
        .count();
    assert_eq!(reached, 0);
}
